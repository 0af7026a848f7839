import asyncio

from beach.actor import Actor


class Store(Actor):
    """A key-value store whose handlers are coroutines."""

    async def init(self, parameters):
        self.data = dict(parameters.get('initial', {}))
        self.handle('read', self.read)
        self.handle('write', self.write)

    async def read(self, msg):
        await asyncio.sleep(0.01)  # pretend to do I/O without blocking the host
        key = msg.data['key']
        if key not in self.data:
            return (False, 'no such key', {'key': key})
        return (True, {'key': key, 'value': self.data[key]})

    async def write(self, msg):
        self.data[msg.data['key']] = msg.data['value']
        return (True,)
