import sys

from emoclient._cli import main

sys.exit(main())
