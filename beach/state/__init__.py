"""Cluster state: what the cluster holds in JetStream KV, and the one model of it the tools read.

* `beach.state.records`        every record read off the bus, checked at the boundary (one schema each);
* `beach.state.directory`      the directory (actors, nodes) and a process's live view of it;
* `beach.state.desired`        the desired state: supervised actors, patrol specs, code versions;
* `beach.state.spawn`          the spawn request: `addActor`'s arguments as a node agent takes them;
* `beach.state.placement`      choosing a node for a new actor;
* `beach.state.patrol`         patrol specs: which actors should run, and how many;
* `beach.state.clusterconfig`  shared settings in KV, for nodes joining with only a NATS URL;
* `beach.state.model`          `ClusterModel`, fed by the watches: the CLI, console and dashboard's state.

``python -m beach.patrol`` (the seed's entry point) applies a patrol spec.
"""
