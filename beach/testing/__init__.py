"""Testing beach actors like any Python code.

* `ActorHarness`  one actor in this process, no NATS: requests, stubs of other categories, a fake
  clock for its timers, ``self.state`` in memory, its logs captured;
* `LocalCluster`  a real cluster on this machine (a nats-server and node agents on loopback ports,
  in a temporary directory), stopped at the end of its ``with`` block;
* a pytest plugin (`beach.testing.plugin`, loaded by pytest once beach is installed): the fixture
  ``beach_cluster``.

See docs/testing.md.
"""

from beach.testing.cluster import LocalCluster
from beach.testing.harness import ActorHarness
from beach.testing.state import MemoryState
from beach.testing.stubs import StubCall

__all__ = ["ActorHarness", "LocalCluster", "MemoryState", "StubCall"]
