"""``python -m beach.console CONFIG [--realm REALM]``."""

from __future__ import annotations

import sys

from . import main

sys.exit(main())
