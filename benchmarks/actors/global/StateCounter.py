"""Benchmark actor: ``add`` counts ``data['key']`` up by one in actor state (``self.state``, one
turn committed before the reply); ``echo`` answers the same data without touching state (the
stateless baseline: the same actor, class and path, less the state)."""

from beach.actor import Actor


class StateCounter(Actor):
    def init(self, parameters):
        self.handle('add', self.add)
        self.handle('echo', self.echo)

    async def add(self, msg):
        return (True, {'n': await self.state.aupdate(msg.data['key'], lambda n: (n or 0) + 1)})

    async def echo(self, msg):
        return (True, {'n': msg.data['key']})
