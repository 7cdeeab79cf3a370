#!/bin/sh
# Puts redis-server on PATH for the Redis store's tests (see ensure-package.sh).
exec sh "$(dirname "$0")/ensure-package.sh" redis-server redis-server "the Redis store tests"
