"""`main`: ``python -m beach.dashboard [PORT] CONFIG`` (the original's form: the config last, an
optional port before it) and ``CONFIG [--host H] [--port P] [--allowed-host NAME]...`` (what
``beach dashboard`` passes).

It connects first, then listens (127.0.0.1:8080 unless told otherwise) and serves with uvicorn on
the same loop. A bad config or an unreachable NATS is one line, ``beach: <message>``, and exit 2
or 1; SIGINT or SIGTERM stops it cleanly (exit 0).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import socket
import sys
from types import FrameType

import uvicorn
from starlette.applications import Starlette

from beach import loop as beach_loop
from beach.dashboard.app import create_app
from beach.dashboard.state import Dashboard
from beach.errors import BeachError, BusError
from beach.output import run_tool

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
GRACEFUL_SECONDS = 5  # a request still running at shutdown gets this long


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{port} is not a port number (0 to 65535)")
    return port


def parser(prog: str) -> argparse.ArgumentParser:
    """The command line."""
    result = argparse.ArgumentParser(
        prog=prog, usage="%(prog)s [PORT] CONFIG [--host HOST] [--port PORT] [--allowed-host NAME]...",
        description="The live web dashboard of a beach cluster: nodes, actors, charts, logs, a JSON API "
                    "(/api/openapi.json) and Prometheus metrics (/metrics).")
    result.add_argument("args", nargs="+", metavar="[PORT] CONFIG",
                        help=f"the cluster's config file (YAML) or a NATS URL, last; before it, optionally, the port "
                             f"(default {DEFAULT_PORT})")
    result.add_argument("--host", default=DEFAULT_HOST,
                        help=f"the address to listen on (default {DEFAULT_HOST}: this machine only)")
    result.add_argument("--port", type=_port, default=None, help=f"the port (default {DEFAULT_PORT})")
    result.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                        help="also answer requests addressed to NAME (a DNS name of this machine, or a proxy's; "
                             "*.example.com for every name under it); may be repeated. Requests for any other "
                             "host are refused (DNS rebinding)")
    return result


def _where(args: argparse.Namespace, cli: argparse.ArgumentParser) -> tuple[str, str, int]:
    if len(args.args) > 2:
        cli.error("too many arguments: give [PORT] CONFIG")
    port = args.port
    if len(args.args) == 2:
        if port is not None:
            cli.error("give the port once: as PORT or as --port")
        try:
            port = _port(args.args[0])
        except argparse.ArgumentTypeError as err:
            cli.error(f"PORT: {err}")
    return args.args[-1], args.host, DEFAULT_PORT if port is None else port


def _listen(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]
        sock = socket.socket(family, kind, proto)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as err:
        raise BeachError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    return sock


class _Server(uvicorn.Server):
    """uvicorn's server, ending the live streams as soon as it is told to stop (open streams would
    hold its graceful shutdown until the timeout)."""

    def __init__(self, config: uvicorn.Config, dash: Dashboard, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(config)
        self._dash = dash
        self._loop = loop

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Stop serving, and end the live streams now."""
        super().handle_exit(sig, frame)
        self._loop.call_soon_threadsafe(self._dash.hub.close)  # we are in a signal handler


async def serve(app: Starlette, host: str, port: int) -> None:
    """Run the app's lifespan (connect, follow the cluster), then serve it on ``host:port`` until told
    to stop; raise `BusError` if the NATS server closes the connection for good (the dashboard exits 1)."""
    dash: Dashboard = app.state.dashboard
    async with app.router.lifespan_context(app):  # connecting first: no port is taken for a dead cluster
        sock = _listen(host, port)
        config = uvicorn.Config(app, lifespan="off", log_level="warning", access_log=False,
                                timeout_graceful_shutdown=GRACEFUL_SECONDS)
        server = _Server(config, dash, asyncio.get_running_loop())
        shown = f"[{host}]" if ":" in host else host
        mode = "admin actions on" if dash.admin else dash.client.session.read_only()
        print(f"beach dashboard: http://{shown}:{sock.getsockname()[1]}/ ({mode})", file=sys.stderr, flush=True)
        notice = dash.client.session.open_notice()
        if notice:
            print(f"beach: {notice}", file=sys.stderr, flush=True)
        lost: list[str] = []

        def stop(reason: str) -> None:  # deaf, the dashboard would only show a frozen cluster: it exits
            lost.append(reason)
            server.should_exit = True
            dash.hub.close()

        dash.client.session.lost_listeners.append(stop)
        with beach_loop.after_uvicorn():
            await server.serve(sockets=[sock])
    if lost:
        raise BusError(f"the NATS server closed the dashboard's connection for good ({lost[0]}): exiting")


def main(argv: list[str] | None = None, prog: str = "python -m beach.dashboard") -> int:
    """Run the dashboard; returns the exit code (0, 1 when the cluster cannot be reached, 2 for a bad
    config or usage)."""
    cli = parser(prog)
    args = cli.parse_args(argv)
    config, host, port = _where(args, cli)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return run_tool(lambda: beach_loop.run(serve(create_app(config, host, args.allowed_host), host, port)))
