"""The actor runtime: what runs one actor, beside `beach.actor.Actor` in the library.

* `beach.runtime.actor_runtime`  `ActorRuntime`: lifecycle, subscriptions, dispatch, timers, stop,
  and the `Host` protocol through which the process hosting actors gives it what it needs;
* `beach.runtime.workers`        the thread pool that runs ``def`` handlers.

The process that hosts actors is the node agent's actor host (`nodeagent.host`).
"""
