"""``python -m beach.dashboard [PORT] CONFIG``."""

from __future__ import annotations

import sys

from beach.dashboard.cli import main

sys.exit(main())
