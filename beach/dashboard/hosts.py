"""`AllowedHosts` and `HostCheck`: the dashboard answers only requests addressed to a name it serves.

DNS rebinding: a page of ``attacker.example`` whose name is then made to resolve to 127.0.0.1 can
send requests to the dashboard from the victim's browser, as its own origin — same-origin, so it
reads the answers, gets a CSRF token and posts admin actions. Every such request names the
attacker's host in its ``Host`` header, so the dashboard refuses (400) any ``Host`` that is not one
of its own (as Starlette's ``TrustedHostMiddleware`` does):

* the address it listens on (``--host``), and the loopback forms ``localhost``, ``127.0.0.1``,
  ``[::1]``;
* when it listens on every address (``0.0.0.0``, ``::``), any IP address (no rebinding comes with
  a bare address: the attacker's page would have to be served from that address);
* the names given with ``--allowed-host`` (``dash.example.com``, or ``*.example.com`` for every
  name under it) — the machine's DNS names, or a reverse proxy's.

The CSRF check of the admin POSTs (`beach.dashboard.csrf`) compares the request's ``Origin`` to
the same list.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from beach import output

LOOPBACK = ("localhost", "127.0.0.1", "::1")
WILDCARD = ("0.0.0.0", "::", "")


def split_host(value: str) -> tuple[str, str]:
    """``(host, port)`` of a ``Host`` header or an origin's netloc (``[v6]:port`` included); the host
    in lower case, without brackets or a trailing dot; the port '' when none is given."""
    value = value.strip().lower()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, rest.removeprefix(":")
    host, _, port = value.rpartition(":") if value.count(":") == 1 else (value, "", "")
    return host.rstrip("."), port


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class AllowedHosts:
    """The host names and addresses a dashboard listening on ``bind`` answers to (see the module docs)."""

    def __init__(self, bind: str = "127.0.0.1", extra: Iterable[str] = ()) -> None:
        self.bind = bind.strip("[]").lower()
        self.any_address = self.bind in WILDCARD
        self.names = ({self.bind} - set(WILDCARD)) | set(LOOPBACK)
        self.suffixes: set[str] = set()
        for name in extra:
            name = split_host(name)[0]
            if name.startswith("*."):
                self.suffixes.add(name[1:])  # ".example.com"
            elif name:
                self.names.add(name)

    def allows(self, host: str) -> bool:
        """True if ``host`` (a name or address, no port) is one this dashboard answers to."""
        return (host in self.names or any(host.endswith(suffix) for suffix in self.suffixes)
                or (self.any_address and _is_address(host)))

    def describe(self) -> str:
        """The list, for an error message."""
        listed = sorted(self.names) + [f"*{suffix}" for suffix in sorted(self.suffixes)]
        return ", ".join(listed) + (" and any IP address" if self.any_address else "")


class HostCheck:
    """ASGI middleware: a 400 (JSON ``{"error": ...}``) for any request whose ``Host`` is not allowed."""

    def __init__(self, app: ASGIApp, allowed: AllowedHosts) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("host", "")
        if self.allowed.allows(split_host(given)[0]):
            await self.app(scope, receive, send)
            return
        error = (f"Host {given!r} is not one this dashboard serves ({self.allowed.describe()}): start it with "
                 f"--allowed-host NAME for each name it is reached by")
        body = output.dumps_line({"error": error})
        await send({"type": "http.response.start", "status": 400,
                    "headers": [(b"content-type", b"application/json"), (b"cache-control", b"no-store")]})
        await send({"type": "http.response.body", "body": body.encode()})
