"""``python -m nodeagent.host CONFIG --node NODE_ID --host HOST_ID``: run an actor host."""

import sys

from nodeagent.host.actorhost import main

sys.exit(main())
