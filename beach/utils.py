"""The original's ``beach.utils``: its envelope helpers, its network helpers and its small tools.

``isMessageSuccess``, ``errorMessage`` and ``successMessage`` build and read the original's reply
envelopes (``{'status': {'success': ..., 'error': ...}, 'data': ...}``); ``isMessageSuccess`` also
reads an `ActorResponse`. ``_getIpv4ForIface`` and ``_getPublicInterfaces`` find addresses (the
original's test suite and examples import them). ``parallelExec``, ``loadModuleFrom``, ``RWLock``,
``Counter`` and ``CreateOnAccess`` are the original's tools, on threads where it used gevent. What
the original had and this module has not (its ZeroMQ sockets) is listed in docs/compatibility.md.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import socket
import sys
import threading
import types
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import Any

import psutil

from beach.errors import UsageError


def isMessageSuccess(msg: Any) -> bool:
    """True if ``msg`` (an `ActorResponse` or an original-style envelope dict) is a success."""
    if msg is None or msg is False:
        return False
    if not hasattr(msg, "get"):
        return False
    status = msg.get("status")
    return bool(status) and status.get("success") is not False


def errorMessage(errorString: str, data: Any = None) -> dict[str, Any]:
    """The original's failure envelope: ``{'status': {'success': False, 'error': errorString}}``,
    with ``'data'`` when given."""
    msg: dict[str, Any] = {"status": {"success": False, "error": errorString}}
    if data is not None:
        msg["data"] = data
    return msg


def successMessage(data: Any = None) -> dict[str, Any]:
    """The original's success envelope: ``{'status': {'success': True}}``, with ``'data'`` when given."""
    msg: dict[str, Any] = {"status": {"success": True}}
    if data is not None:
        msg["data"] = data
    return msg


def _getIpv4ForIface(iface: str) -> str | None:
    """The first IPv4 address of network interface ``iface``, or None (no such interface, or none)."""
    for addr in psutil.net_if_addrs().get(iface, []):
        if addr.family == socket.AF_INET:
            return str(addr.address)
    return None


def _getPublicInterfaces() -> list[str]:
    """The interfaces with an IPv4 address that is not loopback (and whose name is not ``lo*``)."""
    return [name for name, addrs in psutil.net_if_addrs().items() if not name.startswith("lo") and
            any(a.family == socket.AF_INET and not a.address.startswith("127.") for a in addrs)]


def parallelExec(f: Callable[[Any], Any], objects: Iterable[Any], timeout: float | None = None) -> list[Any]:
    """Call ``f(o)`` for every object at once (one thread each) and return the results in the order
    they finished; an exception takes its call's place in the list. After ``timeout`` seconds, the
    results so far (the calls still running finish unseen)."""
    objects = list(objects)
    results: list[Any] = []
    lock = threading.Lock()

    def call(o: Any) -> None:
        try:
            value = f(o)
        except Exception as err:
            value = err
        with lock:
            results.append(value)

    pool = ThreadPoolExecutor(max_workers=max(1, len(objects)), thread_name_prefix="parallelExec")
    futures = [pool.submit(call, o) for o in objects]
    wait(futures, timeout=timeout)
    pool.shutdown(wait=False)
    with lock:
        return list(results)


def loadModuleFrom(path: str, realm: str) -> types.ModuleType:
    """Load the Python file at ``path`` (a path or a ``file://`` URL) as a module named after it and
    its content's hash, once per content (as the original). Raises `UsageError` for another kind of
    URL (code comes from this machine only) and ``OSError`` for a file that cannot be read."""
    if "://" in path and not path.startswith("file://"):
        raise UsageError(f"loadModuleFrom {path!r}: only files of this machine (a path or file://), not URLs")
    filename = os.path.abspath(path[len("file://"):] if path.startswith("file://") else path)
    with open(filename, "rb") as f:
        content = f.read()
    base = os.path.basename(filename)
    name = f"{base[:-3] if base.endswith('.py') else base}_{hashlib.sha1(content).hexdigest()}"
    module = sys.modules.get(name)
    if module is None:
        module = types.ModuleType(name)
        module.__dict__.update(_beach_path=filename, __file__=filename, _beach_realm=realm)
        exec(compile(content, filename, "exec"), module.__dict__)
        sys.modules[name] = module
    return module


class RWLock:
    """A readers-writer lock: many readers at once, or one writer (writers first once waiting).
    Use ``with lock.reader():`` / ``with lock.writer():``, or ``rLock``/``rUnlock``/``wLock``/``wUnlock``."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writing = False
        self._writers_waiting = 0

    def rLock(self) -> None:
        """Take the lock for reading (waits while a writer holds or waits for it)."""
        with self._cond:
            self._cond.wait_for(lambda: not self._writing and not self._writers_waiting)
            self._readers += 1

    def rUnlock(self) -> None:
        """Release a read hold."""
        with self._cond:
            self._readers -= 1
            self._cond.notify_all()

    def wLock(self) -> None:
        """Take the lock for writing (waits until no reader or writer holds it)."""
        with self._cond:
            self._writers_waiting += 1
            self._cond.wait_for(lambda: not self._writing and not self._readers)
            self._writers_waiting -= 1
            self._writing = True

    def wUnlock(self) -> None:
        """Release the write hold."""
        with self._cond:
            self._writing = False
            self._cond.notify_all()

    @contextmanager
    def reader(self) -> Iterator[RWLock]:
        """Hold the lock for reading in a ``with`` block."""
        self.rLock()
        try:
            yield self
        finally:
            self.rUnlock()

    @contextmanager
    def writer(self) -> Iterator[RWLock]:
        """Hold the lock for writing in a ``with`` block."""
        self.wLock()
        try:
            yield self
        finally:
            self.wUnlock()


class Counter:
    """Counts how often each line calls `count` (``counters``: line number → calls), for debugging."""

    def __init__(self) -> None:
        self.counters: dict[int, int] = {}

    def count(self) -> None:
        """Count one call from the caller's line."""
        frame = inspect.currentframe()
        line = frame.f_back.f_lineno if frame is not None and frame.f_back is not None else 0
        self.counters[line] = self.counters.get(line, 0) + 1


class CreateOnAccess:
    """A stand-in that builds ``toCall(*args, **kwargs)`` at the first attribute access and then
    passes every access on to it."""

    def __init__(self, toCall: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._toCall = toCall
        self._args = args
        self._kwargs = kwargs
        self._instance: Any = None

    def __getattr__(self, item: str) -> Any:
        if self._instance is None:
            self._instance = self._toCall(*self._args, **self._kwargs)
        return getattr(self._instance, item)


is_message_success = isMessageSuccess
