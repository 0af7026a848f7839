"""``python -m beach.hostmanager CONFIG``: the original's way to start a node (the node agent)."""

from __future__ import annotations

import sys

from nodeagent.__main__ import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m beach.hostmanager"))
