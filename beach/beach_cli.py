"""``python -m beach.beach_cli CONFIG [options]``: the original's shell and one-shot request mode
(see `beach.shell`)."""

from __future__ import annotations

import sys

from beach.shell import main

if __name__ == "__main__":
    sys.exit(main())
