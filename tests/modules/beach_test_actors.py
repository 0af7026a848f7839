"""An actor loaded as ``module:Class`` (this directory is put on the hosts' PYTHONPATH by the tests)."""

import asyncio
import time

from beach.actor import Actor


class Echo(Actor):
    def init(self, parameters):
        self.handle("echo", self.echo)

    async def echo(self, msg):
        return (True, msg.data)


class Gate(Actor):
    """Holds requests as long as asked; counts what ran, per request id and type."""

    def init(self, parameters):
        self.runs = {}
        self.handle('hold', self.hold)
        self.handle('ping', self.ping)
        self.handle('fail', self.fail)
        self.handle('runs', lambda msg: (True, {'runs': self.runs.get(msg.data['id'], 0),
                                                 'by_type': self.by_type()}))

    def count(self, msg):
        self.runs[msg.id] = self.runs.get(msg.id, 0) + 1
        self.runs[msg.req] = self.runs.get(msg.req, 0) + 1

    def by_type(self):
        return {k: v for k, v in self.runs.items() if k in ('hold', 'ping', 'fail')}

    async def hold(self, msg):
        self.count(msg)
        await asyncio.sleep(msg.data.get('seconds', 1))
        return (True, {'uid': self.name, 'id': msg.id, 'runs': self.runs[msg.id]})

    async def ping(self, msg):
        self.count(msg)
        return (True, {'uid': self.name})

    async def fail(self, msg):
        self.count(msg)
        return (False, 'application error', {'uid': self.name})



class CachedGate(Gate):
    """Gate with a reply cache: a retried request runs once."""

    reply_cache = 100


class Ledger(Actor):
    """Records everything it serves — ``(uid, request id, request type, tag)`` plus when it started
    and ended — so tests can say exactly where each request went and how often. ``ledger`` returns
    the records (and is not recorded itself)."""

    def init(self, parameters):
        self.entries = []
        self.handle('work', self.work)
        self.handle('work_sync', self.work_sync)
        self.handle('who', self.work)
        self.handle('inner', self.inner)
        self.handle('ledger', lambda msg: (True, {'uid': self.name, 'entries': list(self.entries)}))
        self.handle('wait', self.wait)
        self.handle('spin', self.spin)
        self.handle('wait_event', self.wait_event)
        self.handle('nest', self.nest)

    def record(self, msg, **extra):
        tag = msg.data.get('tag') if isinstance(msg.data, dict) else None
        entry = {'uid': self.name, 'id': msg.id, 'req': msg.req, 'tag': tag, 'start': time.time(), **extra}
        self.entries.append(entry)
        return entry

    async def work(self, msg):
        entry = self.record(msg)
        await asyncio.sleep(msg.data.get('seconds', 0) if isinstance(msg.data, dict) else 0)
        entry['end'] = time.time()
        return (True, {'uid': self.name, 'id': msg.id})

    def work_sync(self, msg):
        entry = self.record(msg)
        time.sleep(msg.data.get('seconds', 0))
        entry['end'] = time.time()
        return (True, {'uid': self.name, 'id': msg.id})

    async def wait(self, msg):
        # cancelled when its caller gives up: recorded, then the cancellation goes on
        entry = self.record(msg)
        try:
            await asyncio.sleep(msg.data.get('seconds', 30))
        except asyncio.CancelledError:
            entry.update(cancelled=True, end=time.time())
            raise
        entry['end'] = time.time()
        return (True, {})

    def spin(self, msg):
        # a def handler: it checks isCancelled() and stops early
        entry = self.record(msg)
        deadline = time.monotonic() + msg.data.get('seconds', 30)
        while not self.isCancelled() and time.monotonic() < deadline:
            time.sleep(0.02)
        entry.update(saw_cancelled=self.isCancelled(), end=time.time())
        return (True, {})

    def wait_event(self, msg):
        entry = self.record(msg)
        entry.update(saw_cancelled=self.cancelled.wait(msg.data.get('seconds', 30)), end=time.time())
        return (True, {})

    async def nest(self, msg):
        # an async handler waiting on another actor: cancelled with its own request, which cancels that one
        entry = self.record(msg)
        try:
            await self.getActorHandle(msg.data['category']).arequest('wait', {'tag': msg.data.get('tag'),
                                                                                'seconds': 30}, timeout=30)
        except asyncio.CancelledError:
            entry.update(cancelled=True, end=time.time())
            raise
        entry['end'] = time.time()
        return (True, {})

    def inner(self, msg):
        # A plain handler asking another actor with a long timeout of its own: what it gets is
        # capped by the time left of the request it serves. Recorded, since its caller may have
        # given up by the time it ends.
        entry = self.record(msg)
        started = time.monotonic()
        resp = self.getActorHandle(msg.data['category']).request(msg.data.get('req', 'work'),
                                                                 msg.data.get('data', {}), timeout=30)
        entry.update(inner_elapsed=time.monotonic() - started, inner_timed_out=resp.isTimedOut,
                     inner_ok=resp.isSuccess, inner_error=resp.error, end=time.time())
        return (True, {'inner_timed_out': resp.isTimedOut})


class Tally(Actor):
    """Counts in actor state (any realm: the security tests' realms have no code directory)."""

    def init(self, parameters):
        self.handle("add", self.add)

    async def add(self, msg):
        return (True, {"value": await self.state.aupdate(msg.data["key"], lambda v: (v or 0) + 1)})
