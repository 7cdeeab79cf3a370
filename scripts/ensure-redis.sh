#!/bin/sh
# Puts redis-server on PATH for the Redis store's tests, installing Debian's package when it is
# missing (CI runs `make test` as root on a clean machine). Without it the tests skip, except
# under CI (CI set), where they fail; so here too a failure to install is fatal only under CI.
set -eu

command -v redis-server >/dev/null 2>&1 && exit 0

give_up() {
    echo "ensure-redis: $1; install redis-server to run the Redis store tests" >&2
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

echo "ensure-redis: installing redis-server with apt-get" >&2
$as_root apt-get update -qq >/dev/null || give_up "apt-get update failed"
DEBIAN_FRONTEND=noninteractive $as_root apt-get install -y -qq --no-install-recommends \
    redis-server >/dev/null || give_up "apt-get install redis-server failed"
command -v redis-server >/dev/null 2>&1 || give_up "redis-server is still not on PATH"
