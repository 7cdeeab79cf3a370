#!/bin/sh
# Puts Debian's chromium on PATH for the browser test of examples/web_service: Playwright drives
# it, and nothing downloads a browser of its own (see ensure-package.sh).
exec sh "$(dirname "$0")/ensure-package.sh" chromium chromium "the browser test"
