"""``python -m beach.cli``: the ``beach`` command."""

import sys

from . import main

sys.exit(main())
