#!/bin/sh
# Puts Debian's chromium on PATH for the browser test of examples/web_service (Playwright drives
# it; nothing downloads a browser of its own), installing the package when it is missing (CI
# runs `make test` as root on a clean machine). Without it that test skips, except under CI
# (CI set), where it fails; so here too a failure to install is fatal only under CI.
set -eu

command -v chromium >/dev/null 2>&1 && exit 0

give_up() {
    echo "ensure-chromium: $1; install Debian's chromium to run the browser test" >&2
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

echo "ensure-chromium: installing chromium with apt-get" >&2
$as_root apt-get update -qq >/dev/null || give_up "apt-get update failed"
DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq --no-install-recommends \
    chromium >/dev/null || give_up "apt-get install chromium failed"
command -v chromium >/dev/null 2>&1 || give_up "chromium is still not on PATH"
