"""An actor loaded as ``module:Class`` (this directory is put on the hosts' PYTHONPATH by the tests)."""

import asyncio

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
