import asyncio

from beach.actor import Actor


class Drainer(Actor):
    """Slow requests; records the order of its lifecycle hooks in a file."""

    def init(self, parameters):
        self.path = parameters['path']
        self.handle('slow', self.slow)
        self.handle('ping', lambda msg: (True, {'uid': self.name}))

    def note(self, what):
        with open(self.path, 'a') as f:
            f.write(what + '\n')

    async def slow(self, msg):
        await asyncio.sleep(msg.data.get('seconds', 1))
        self.note('served')
        return (True, {'uid': self.name})

    def drain(self):
        self.note('drain')

    def deinit(self):
        self.note('deinit')
