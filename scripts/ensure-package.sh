#!/bin/sh
# Usage: ensure-package.sh COMMAND PACKAGE PURPOSE
# Puts COMMAND on PATH for PURPOSE, installing Debian's PACKAGE when it is missing (CI runs
# `make test` as root on a clean machine). Without it the tests that need it skip, except under
# CI (CI set), where they fail; so here too a failure to install is fatal only under CI.
set -eu

command_name=$1
package=$2
purpose=$3
me="ensure-$package"

command -v "$command_name" >/dev/null 2>&1 && exit 0

give_up() {
    echo "$me: $1; install Debian's $package to run $purpose" >&2
    if [ -n "${CI:-}" ]; then exit 1; fi
    exit 0
}

command -v apt-get >/dev/null 2>&1 || give_up "no apt-get on this machine"
if [ "$(id -u)" -eq 0 ]; then
    as_root=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root="sudo -n"
else
    give_up "not root and no password-less sudo"
fi

echo "$me: installing $package with apt-get" >&2
$as_root apt-get update -qq >/dev/null || give_up "apt-get update failed"
DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq --no-install-recommends \
    "$package" >/dev/null || give_up "apt-get install $package failed"
command -v "$command_name" >/dev/null 2>&1 || give_up "$command_name is still not on PATH"
