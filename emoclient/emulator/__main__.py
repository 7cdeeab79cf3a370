"""``python -m emoclient.emulator``: the same as ``emoclient emulator``."""

from __future__ import annotations

import sys

from emoclient._cli import main

if __name__ == "__main__":  # pragma: no cover - exercised through the emoclient command
    sys.exit(main(["emulator", *sys.argv[1:]]))
