"""``python -m beach.console CONFIG [--realm REALM]``."""

from __future__ import annotations

import sys

from beach.console import main

sys.exit(main())
