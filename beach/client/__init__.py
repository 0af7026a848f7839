"""The client: how a program talks to the cluster.

* `beach.client.core`      `AsyncBeach`, the cluster API as coroutines: the one implementation;
* `beach.client.blocking`  `Beach`, the seed's blocking API: a thin face over `AsyncBeach`;
* `beach.client.handle`    `ActorHandle`: requests to a category (random, local, affinity routing);
* `beach.client.group`     `ActorHandleGroup`: one handle per category under a prefix;
* `beach.client.response`  `ActorResponse` and `FutureResults`, what requests return;
* `beach.client.routing`   choosing the actor when the client chooses (the consistent-hash ring);
* `beach.client.session`   a process's connection, inbox and directory view, shared by its handles;
* `beach.client.runner`    running the async core from blocking code (`DrivenLoop`).
"""

from beach.client.blocking import Beach
from beach.client.core import AsyncBeach

__all__ = ["AsyncBeach", "Beach"]
