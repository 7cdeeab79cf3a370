"""python -m benchmarks [--quick] [--only NAME]: see benchmarks/harness.py."""

import sys

from benchmarks.harness import main

sys.exit(main())
