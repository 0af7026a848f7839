"""Benchmark actor: streams ``n`` small items, from an ``async def`` generator (on the host's loop)
and from a plain ``def`` generator (its body in worker threads)."""

from beach.actor import Actor


class Streamer(Actor):
    def init(self, parameters):
        self.handle('items', self.items)
        self.handle('items_sync', self.items_sync)

    async def items(self, msg):
        for i in range(msg.data['n']):
            yield {'i': i}

    def items_sync(self, msg):
        for i in range(msg.data['n']):
            yield {'i': i}
