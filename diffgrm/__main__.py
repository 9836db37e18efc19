"""``python -m diffgrm`` is the ``diffgrm`` command."""

import sys

from diffgrm.cli import main

sys.exit(main())
