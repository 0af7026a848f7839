"""Deployed code on a node: which bundle a spawn needs, fetched once, cached by digest.

An actor host asks `DeployedCode.find` before it loads an actor class: a realm with a current
version (or a spawn naming one) runs that version's bundle, fetched from the code store on first
use, checked against its digest and unpacked into the node's cache (``code.cache``; the hosts of a
node share it). A realm never deployed loads from the code directory, as before. A bundle's
``requirements.txt`` is pip-installed into a directory of its own beside the bundle, once, where
the config allows it (``code.pip``).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

from beach import bus
from beach.client.session import Session
from beach.code import store as codestore
from beach.code.bundle import REQUIREMENTS, BundleError, Cache
from beach.config import Config
from beach.errors import ActorLoadError, BeachError
from beach.state.desired import CodeVersion

log = logging.getLogger("beach.host")

PIP_SECONDS = 300.0


@dataclass(frozen=True)
class Deployed:
    """The bundle an actor runs: its version record and where it is unpacked."""

    version: str
    digest: str
    directory: str


class DeployedCode:
    """Finds, fetches and caches the deployed bundles this host's spawns need."""

    def __init__(self, session: Session, config: Config) -> None:
        self.session = session
        self.config = config
        self.cache = Cache(os.path.expanduser(config.code.cache), config.code.cache_bytes,
                           config.code.max_bundle_bytes)
        self._fetching: dict[str, asyncio.Future[str]] = {}  # digest → its fetch, shared by spawns
        self._on_path: set[str] = set()
        self._kv: Any = None  # the desired-state bucket, opened on the first spawn (not once per spawn)

    async def find(self, realm: str, version: str | None) -> Deployed | None:
        """The deployed code a spawn in ``realm`` runs (``version``, else the current one), or None
        for a realm that was never deployed. Raises `ActorLoadError` saying why it cannot be had."""
        try:
            if self._kv is None:
                self._kv = await bus.open_desired(self.session.nc, self.config)
            record = await codestore.resolve(self._kv, realm, version)
        except BeachError as err:
            raise ActorLoadError(str(err)) from None
        if record is None:
            return None
        digest = record.digest
        try:
            directory = await self._unpacked(digest)
        except BeachError as err:
            raise ActorLoadError(f"realm {realm!r} version {record.version!r}: {err}") from None
        if record.requirements:
            await self._install(realm, record, directory)
        return Deployed(record.version, digest, directory)

    async def _unpacked(self, digest: str) -> str:
        path = await asyncio.to_thread(self.cache.get, digest)  # (raises for a tampered copy: refused)
        if path is not None:
            return str(path)
        fetching = self._fetching.get(digest)
        if fetching is None:
            fetching = self._fetching[digest] = asyncio.ensure_future(self._fetch(digest))
            fetching.add_done_callback(lambda _: self._fetching.pop(digest, None))
        return await asyncio.shield(fetching)

    async def _fetch(self, digest: str) -> str:
        data = await codestore.fetch(self.session, digest)
        log.info("fetched bundle %s (%d bytes)", digest, len(data))
        try:
            return str(await asyncio.to_thread(self.cache.put, data, digest))
        except BundleError as err:
            raise BundleError(f"bundle {digest} refused: {err}") from None

    async def _install(self, realm: str, record: CodeVersion, directory: str) -> None:
        """Make the bundle's pip requirements importable (installed once per bundle)."""
        if not self.config.code.pip:
            raise ActorLoadError(f"realm {realm!r} version {record.version!r} needs pip requirements "
                                 f"({', '.join(record.requirements)}) and this node's config does not allow "
                                 f"installing them (code.pip: false)")
        target = os.path.join(os.path.dirname(directory), "deps")
        try:
            await asyncio.to_thread(self._pip, directory, target)
        except BundleError as err:
            raise ActorLoadError(f"realm {realm!r} version {record.version!r}: {err}") from None
        if target not in self._on_path:
            self._on_path.add(target)
            sys.path.append(target)

    def _pip(self, directory: str, target: str) -> None:
        done = target + ".done"
        with open(target + ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # the node's other hosts wait for the one installing
            if os.path.exists(done):
                return
            command = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
                       "--quiet", "--target", target, *self.config.code.pip_args,
                       "-r", os.path.join(directory, REQUIREMENTS)]
            try:
                result = subprocess.run(command, capture_output=True, text=True, timeout=PIP_SECONDS)
            except subprocess.TimeoutExpired:
                raise BundleError(f"pip did not install the requirements within {PIP_SECONDS:g}s") from None
            if result.returncode != 0:
                lines = (result.stderr or result.stdout).strip().splitlines()
                raise BundleError("pip could not install the requirements: " + (lines[-1] if lines else "failed"))
            with open(done, "w"):
                pass
