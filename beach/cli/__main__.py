"""``python -m beach.cli``: the ``beach`` command."""

import sys

from beach.cli import main

sys.exit(main())
