"""The actor runtime: what runs one actor, beside `beach.actor.Actor` in the library.

* `beach.runtime.actor_runtime`  `ActorRuntime`: lifecycle (init, subscriptions, stop, deinit), calls
  into the actor's code, the backends of the `Actor` API, and the `Host` protocol through which the
  process hosting actors gives it what it needs;
* `beach.runtime.dispatch`       `Dispatcher`: one actor's requests, from the NATS message to the
  reply (the bound, busy, the backlog, trust, deadlines, handler errors, the counters);
* `beach.runtime.replycache`     `ReplyCache`: a request run at most once per id (opt-in);
* `beach.runtime.timers`         `Timers`: ``schedule`` and ``delay``;
* `beach.runtime.trace`          what a person sees of an exception in actor code (one line, their frames);
* `beach.runtime.workers`        `WorkerPool`: the threads that run ``def`` handlers.

The process that hosts actors is the node agent's actor host (`nodeagent.host`).
"""
