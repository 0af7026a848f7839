import asyncio

from beach.actor import Actor


class AsyncEcho(Actor):
    async def init(self, parameters):
        self.seen = 0
        self.handle('echo', self.echo)
        self.handle('relay', self.relay)

    async def echo(self, msg):
        self.seen += 1
        await asyncio.sleep((msg.data or {}).get('sleep', 0))
        return (True, {'echo': msg.data, 'seen': self.seen})

    async def relay(self, msg):
        # An async handler calling another actor: the awaitable form.
        resp = await self.getActorHandle(msg.data['category']).arequest('ping', {'via': 'async'})
        return (True, resp.data) if resp.isSuccess else (False, resp.error, resp.data)
