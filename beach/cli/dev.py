"""``beach dev REALM DIR [--config CONFIG]``: the actor developer's loop.

Deploys DIR as REALM (to the cluster of CONFIG, or to a `beach.testing.LocalCluster` it runs),
then watches DIR (watchfiles, as uvicorn's ``--reload``). On each save it checks that every module
compiles, deploys the directory as a new version (``dev-<n>``) and rolls out, all at once, the
running actors of the realm whose code changed (`beach.code.changes`: an actor's file and what it
imports relatively), new actor first, so no request fails; it prints the actors' log lines as they
come. A syntax error is shown and nothing is deployed; a replacement whose module or ``init``
fails is shown with its traceback, and the realm goes back to the previous version (the actors
already replaced too), which keeps serving. It keeps the last ``--keep`` versions it made and
forgets older ones (`beach.code.deploy.prune`).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import os
import re
import signal
import time
from collections import Counter
from collections.abc import Callable, Collection
from typing import Any

from beach import logs
from beach import loop as beach_loop
from beach.cli.node import Scripts
from beach.client.core import AsyncBeach
from beach.code import bundle, changes, deploy
from beach.code import store as codestore
from beach.errors import BeachError, UsageError
from beach.operations import rollout
from beach.state.desired import CodeCurrent
from beach.state.records import ActorEntry
from beach.wire import subjects

KEEP = 3  # versions made by beach dev that are kept (with the current one and any a live actor runs)
DEBOUNCE_MS = 1600  # watchfiles: the longest a burst of changes is gathered...
STEP_MS = 50  # ...and the quiet that ends one (an editor's save is a few events within milliseconds)
GRACE = 0.5  # an old actor serves on after leaving the directory (clients see it leave within ms here)
_DEV = re.compile(r"dev-(\d+)")


def say(message: str) -> None:
    """A line of beach dev's own (the actors' log lines are printed as they are)."""
    print(f"[dev] {message}", flush=True)


def _skipped(path: str, top: str) -> bool:
    """What a bundle leaves out (dot-names, ``__pycache__``, bytecode): not worth a reload."""
    parts = os.path.relpath(path, top).split(os.sep)
    return any(p.startswith(".") or p == "__pycache__" for p in parts) or path.endswith(".pyc")


class DevLoop:
    """Deploys ``directory`` as ``realm`` through ``client`` on each change, rolling out the actors
    whose code changed."""

    def __init__(self, client: AsyncBeach, realm: str, directory: str, keep: int = KEEP,
                 grace: float = GRACE) -> None:
        self.client = client
        self.realm = subjects.check_realm(realm)
        self.directory = os.path.abspath(directory)
        self.keep = keep
        self.grace = grace
        self._trees: dict[str, dict[str, bytes]] = {}  # bundle digest → its files
        self.reloads = 0

    def _actors(self) -> list[ActorEntry]:
        """The live actors of the realm that run its code (not ``module:Class`` ones)."""
        return [a for a in self.client.session.view.live(self.realm) if ":" not in a.name]

    def _picker(self, uids: Collection[str]) -> Callable[[], list[ActorEntry]]:
        """What `rollout.replace_all` replaces: those of ``uids`` still live."""
        return lambda: [a for a in self._actors() if a.uid in uids]

    def announce(self) -> None:
        """Say whose actors each save will roll out."""
        actors = self._actors()
        me = self.client.caller
        if not actors:
            say(f"realm {self.realm!r} runs no actor yet: start some (beach add, addActor, --run SCRIPT); each save "
                f"will roll out those whose code changed")
            return
        owners = Counter((a.owner or "no owner") for a in actors)
        names = Counter(f"{a.name} ({', '.join(a.categories)})" for a in actors)
        say(f"each save rolls out the actors of realm {self.realm!r} whose code changed; running now: "
            + ", ".join(f"{n} × {name}" for name, n in sorted(names.items())))
        say("their owners: " + ", ".join(f"{owner} ({n})" for owner, n in sorted(owners.items()))
            + f"; you are {me}")

    async def _tree(self, version: str | None) -> dict[str, bytes] | None:
        """The files of ``version`` of the realm's code (None: from the code directory, unknown)."""
        if version is None:
            return None
        try:
            record = await codestore.resolve(await self.client._desired(), self.realm, version)
        except UsageError:  # forgotten meanwhile
            return None
        if record is None:
            return None
        digest = record.digest
        if digest not in self._trees:
            data = await codestore.fetch(self.client.session, digest)
            self._trees[digest] = await asyncio.to_thread(bundle.files, data)
        return self._trees[digest]

    async def _next_version(self) -> str:
        known = await deploy.versions(self.client, self.realm)
        numbers = [int(m.group(1)) for v, _ in known if (m := _DEV.fullmatch(v.version))]
        return f"dev-{max(numbers, default=0) + 1}"

    async def reload(self) -> bool:
        """Deploy the directory if it changed and roll out the actors whose code changed; False
        (having said why) if it could not, the previous version serving on."""
        started = time.monotonic()
        self.reloads += 1
        limit = self.client.session.config.code.max_bundle_bytes
        try:
            packed = await asyncio.to_thread(bundle.pack, self.directory, limit)
            requirements = bundle.requirements(self.directory)
            files = await asyncio.to_thread(bundle.files, packed.data, limit)
        except BeachError as err:
            say(f"cannot deploy: {err}; the previous version keeps serving")
            return False
        errors = changes.syntax_errors(files)
        if errors:
            for error in errors:
                say(error)
            say("not deployed: the previous version keeps serving")
            return False
        self._trees[packed.digest] = files
        kv = await self.client._desired()
        pointer = await codestore.current(kv, self.realm)
        current = await codestore.resolve(kv, self.realm) if pointer is not None else None
        if current is not None and current.digest == packed.digest:
            target = current.version
        else:
            target = (await deploy.deploy_bundle(self.client, self.realm, packed, requirements,
                                                 await self._next_version())).version
        todo = []
        for actor in self._actors():
            if actor.version != target and changes.changed(await self._tree(actor.version), files, actor.name):
                todo.append(actor)
        if not todo:
            say(f"{target} deployed ({len(files)} files); no running actor's code changed")
            await self._prune()
            return True
        uids = {a.uid: a for a in todo}
        say(f"{target}: rolling out " + ", ".join(f"{n} × {name}" for name, n in
                                                   sorted(Counter(a.name for a in todo).items())))
        result = await rollout.replace_all(self.client, self._picker(uids), target, batch=len(todo),
                                           grace=self.grace)
        if result["failed"]:
            for uid, error in result["failed"].items():
                say(f"{uids[uid].name} {uid[:8]}: {error}")
                if uid in result["tracebacks"]:
                    print(result["tracebacks"][uid].rstrip(), flush=True)
            await self._revert(target, pointer, uids, result["replaced"])
            return False
        say(f"{target} serving: {len(result['replaced'])} actor(s) rolled out in {time.monotonic() - started:.1f}s")
        await self._prune()
        return True

    async def _revert(self, target: str, pointer: CodeCurrent | None, old: dict[str, ActorEntry],
                      replaced: list[dict[str, str]]) -> None:
        """Go back to the version before ``target``: the realm's pointer, and the actors replaced."""
        if pointer is not None and pointer.version != target:  # the pointer as it was
            await deploy.set_current(self.client, self.realm, pointer.version, pointer.previous)
        back: dict[str | None, set[str]] = {}
        for r in replaced:
            back.setdefault(old[r["old"]].version, set()).add(r["new"])
        for version, news in back.items():
            await rollout.replace_all(self.client, self._picker(news), version, batch=len(news), grace=self.grace)
        await deploy.prune(self.client, self.realm, [target])
        say(f"not rolled out: {pointer.version if pointer else 'the previous version'} keeps serving")

    async def _prune(self) -> None:
        mine = [v for v, _ in await deploy.versions(self.client, self.realm)
                if _DEV.fullmatch(v.version) and v.who == self.client.caller]
        mine.sort(key=lambda v: int(v.version[4:]))
        doomed = [v.version for v in mine[:-self.keep]] if self.keep else [v.version for v in mine]
        if doomed:
            forgotten = await deploy.prune(self.client, self.realm, doomed)
            if forgotten:
                say(f"forgot {', '.join(forgotten)} (keeping the last {self.keep} versions made here)")

    async def follow_logs(self) -> None:
        """Print the realm's actors' log lines as they come."""
        since = datetime.datetime.now(datetime.UTC)
        try:
            async for line in logs.read(self.client.session.nc, logs.subject_filter("app", self.realm), since=since,
                                        follow=True, sealer=self.client.session.sealer):
                print(logs.format_line(line), flush=True)
        except BeachError as err:
            say(f"not following the logs: {err}")

    async def watch(self, stop: asyncio.Event) -> None:
        """Reload on each change of the directory until ``stop`` is set."""
        import watchfiles

        async for _ in watchfiles.awatch(self.directory, stop_event=stop, debounce=DEBOUNCE_MS, step=STEP_MS,
                                         watch_filter=lambda _, path: not _skipped(path, self.directory)):
            try:
                await self.reload()
            except BeachError as err:  # the bus or a node refused this once: the next save tries again
                say(f"reload failed: {err}; the previous version keeps serving")


async def _run(config: str, args: argparse.Namespace) -> int:
    client = await AsyncBeach.open(config, realm=args.realm)
    notice = client.session.open_notice()
    if notice:
        say(notice)
    loop = DevLoop(client, args.realm, args.directory, args.keep, args.grace)
    tasks: list[asyncio.Task[Any]] = []
    scripts = Scripts(args.run or [], dict(os.environ, BEACH_CONFIG=config))
    try:
        loop.announce()
        await loop.reload()
        tasks.append(asyncio.create_task(loop.follow_logs()))
        if args.run:
            tasks.append(asyncio.create_task(scripts.run()))
        say(f"watching {loop.directory} (Ctrl-C ends)")
        await client.session.unless_lost(loop.watch(asyncio.Event()))  # a connection gone for good ends it
        return 0
    finally:
        await scripts.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()


def dev(args: argparse.Namespace) -> int:
    """Deploy DIR as REALM and keep it deployed: on each save, redeploy and roll out the running
    actors whose code changed (no request fails), following their logs; a syntax error or a
    failing init() is shown and the previous version keeps serving. Without --config, on a local
    cluster of its own (its config path is printed, for other 'beach' commands)."""
    if not os.path.isdir(args.directory):
        raise UsageError(f"{args.directory!r} is not a directory (the realm's code: what <code_directory>/"
                         f"<realm>/ would hold)")
    subjects.check_realm(args.realm)
    if args.keep < 1:
        raise UsageError(f"--keep must be 1 or more, not {args.keep}")
    signal.signal(signal.SIGTERM, _interrupt)  # a SIGTERM stops it as Ctrl-C does (the local cluster too)
    try:  # Ctrl-C (or SIGTERM) is how it ends: exit code 0
        if args.config:
            return beach_loop.run(_run(args.config, args))
        from beach.testing.cluster import LocalCluster

        with LocalCluster(nodes=args.nodes, realm=args.realm) as cluster:
            say(f"local cluster: {args.nodes} node(s), config {cluster.config_path} (nats {cluster.url})")
            return beach_loop.run(_run(cluster.config_path, args))
    except KeyboardInterrupt:
        say("stopped")
        return 0


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``dev``."""
    p = sub.add_parser("dev", help="deploy a realm's code on every save, rolling out the actors it changes",
                       description=dev.__doc__)
    p.add_argument("realm", metavar="REALM", help="the realm the code is for")
    p.add_argument("directory", metavar="DIR", help="the realm's code directory (what <code_directory>/<realm>/ holds)")
    p.add_argument("--config", metavar="CONFIG", help="the cluster's config (default: run a local cluster)")
    p.add_argument("--run", action="append", metavar="SCRIPT", help="a script to run after the first deploy, "
                   "with the config's path in BEACH_CONFIG (repeatable; e.g. one that starts the actors)")
    p.add_argument("--nodes", type=int, default=1, help="without --config: the local cluster's nodes (default 1)")
    p.add_argument("--keep", type=int, default=KEEP,
                   help=f"how many of the versions it makes are kept (default {KEEP})")
    p.add_argument("--grace", type=float, default=GRACE,
                   help=f"seconds a replaced actor serves on after leaving the directory (default {GRACE:g})")
    p.set_defaults(func=dev)
