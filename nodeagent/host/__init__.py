"""The actor host: the process a node agent starts to run actors (``python -m nodeagent.host``).

* `nodeagent.host.actorhost`  `ActorHost`: one asyncio process, one NATS connection, many actors;
* `beach.runtime.loader`      (in the library) finding an actor class in the code directory or a deployed bundle;
* `nodeagent.host.deployed`   fetching, checking and caching deployed bundles on this node.

The rest of `nodeagent` is the agent itself (registry, spawns, supervision, recycling).
"""
