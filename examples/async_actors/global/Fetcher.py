from beach.actor import Actor


class Fetcher(Actor):
    """Answers 'get' by asking the Store: an async handler awaiting another actor."""

    async def init(self, parameters):
        self.store = self.getActorHandle('store')
        self.handle('get', self.get)

    async def get(self, msg):
        resp = await self.store.arequest('read', msg.data)
        return (True, resp.data) if resp.isSuccess else (False, resp.error)
