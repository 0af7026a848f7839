"""The bus: beach's connection to NATS and what it opens there (I/O; the format is `beach.wire`).

* `beach.bus.connection`  connecting (retries, pings, refusals), closing, the JetStream KV buckets
  (its names are re-exported here: ``from beach import bus; await bus.connect(...)``);
* `beach.bus.inbox`       one reply subscription shared by every request of a connection;
* `beach.bus.kvwatch`     following a KV bucket: its current values, then every change;
* `beach.bus.embedded`    running a ``nats-server`` process;
* `beach.bus.clustering`  a node's own server: its identity, configuration, routes and the
  system account's requests (the node agent runs it: ``nodeagent.busserver``).
* `beach.bus.batch`       atomic batch publishes (ADR-50: all of a batch is stored, or none);
"""

from beach.bus.connection import (
    ACTORS_BUCKET,
    CONNECT_TRIES,
    CONSUMER_INACTIVE,
    DESIRED_BUCKET,
    JETSTREAM_WAIT,
    JS_TIMEOUT,
    MEMBERS_BUCKET,
    NODES_BUCKET,
    PING_SECONDS,
    PINGS_MISSED,
    PLACED_BUCKET,
    STATE_BUCKET,
    BusClient,
    Refusals,
    auto_replicas,
    close,
    connect,
    exposed,
    failure,
    lost_reason,
    lost_suffix,
    open_bucket,
    open_buckets,
    open_desired,
    open_indexes,
    open_state,
    sealed,
    through_election,
    translated,
)

__all__ = [
    "ACTORS_BUCKET", "CONNECT_TRIES", "CONSUMER_INACTIVE", "DESIRED_BUCKET", "JETSTREAM_WAIT", "JS_TIMEOUT",
    "MEMBERS_BUCKET", "NODES_BUCKET", "PINGS_MISSED", "PLACED_BUCKET",
    "PING_SECONDS", "STATE_BUCKET", "BusClient", "Refusals", "auto_replicas", "close", "connect", "exposed",
    "failure", "lost_reason", "lost_suffix", "open_bucket", "open_buckets", "open_desired", "open_indexes",
    "open_state", "sealed",
    "through_election",
    "translated",
]
