"""The beach web dashboard: the cluster model (`beach.state.model.ClusterModel`) as live web pages, a JSON
API with its OpenAPI description, and Prometheus metrics.

Run it with ``python -m beach.dashboard [PORT] CONFIG`` (the original's form) or ``beach dashboard
CONFIG [--host H] [--port P]``; it listens on 127.0.0.1:8080 unless told otherwise. Pages are
rendered on the server with their data in the HTML and kept live by server-sent events fed by the
model's listeners. Every page has a JSON twin under ``/api``; admin actions (stop an actor, flush)
are offered only when the config has the cluster's ``admin_token``.

The package, a module per concept:

* `app`        `create_app`: routes, lifespan, error pages
* `cli`        `main`: the command line, uvicorn
* `state`      `Dashboard`: the client, the model, the live hub, the CSRF secret
* `hub`        fans the model's change notices out to the open live streams
* `params`     reading query parameters (a bad one is a 400)
* `templating` the Jinja2 environment and its filters
* `history`    the chart series (12 h, bounded by the model)
* `logtail`    which log lines a page shows
* `views/`     one page per file: overview, nodes, actors, logs (`views.page` is what they share)
* `api`        the JSON twins and the other ``/api`` reads; `responses` JSON bodies and errors
* `events`     ``/events``: a page's live stream
* `actions`    the admin POSTs, `csrf` what protects them
* `metrics`    ``/metrics`` in the Prometheus text format
* `openapi`    ``/api/openapi.json``
* `headers`    the security headers of every response (a strict Content-Security-Policy)
"""

from __future__ import annotations

from beach.dashboard.app import create_app
from beach.dashboard.cli import main

__all__ = ["create_app", "main"]
