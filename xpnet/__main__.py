"""``python -m xpnet``: the same command line as the ``xpnet`` script."""

import sys

from .cli import main

sys.exit(main())
