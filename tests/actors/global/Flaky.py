import asyncio

from beach.actor import Actor


class Flaky(Actor):
    """Too slow the first time it sees a request id, quick on a retry of the same id."""

    def init(self, parameters):
        self.seen = {}
        self.handle('once', self.once)

    async def once(self, msg):
        n = self.seen[msg.id] = self.seen.get(msg.id, 0) + 1
        if n == 1:
            await asyncio.sleep(3)
        return (True, {'attempts': n, 'id': msg.id})
