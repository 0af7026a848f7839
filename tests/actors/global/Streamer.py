import asyncio

from beach.actor import Actor


class Streamer(Actor):
    """Generator handlers: items counted as they are produced, and whether each stream was closed."""

    def init(self, parameters):
        self.produced = {}
        self.closed = {}
        self.handle('count', self.count)
        self.handle('acount', self.acount)
        self.handle('fail', self.fail)
        self.handle('slow', self.slow)
        self.handle('plain', self.plain)
        self.handle('trickle', self.trickle)
        self.handle('split', self.split)
        self.handle('progress', self.progress)

    def count(self, msg):  # a def generator: its body runs in worker threads
        tag = msg.data['tag']
        self.produced[tag] = 0
        try:
            for i in range(msg.data['n']):
                self.produced[tag] = i + 1
                yield {'i': i, 'pad': 'x' * msg.data.get('pad', 0)}
        finally:
            self.closed[tag] = True

    async def acount(self, msg):  # an async generator: on the host's loop
        tag = msg.data['tag']
        self.produced[tag] = 0
        try:
            for i in range(msg.data['n']):
                self.produced[tag] = i + 1
                await asyncio.sleep(0)
                yield i
        finally:
            self.closed[tag] = True

    async def fail(self, msg):
        for i in range(3):
            yield i
        raise ValueError('the fourth row was bad')

    async def slow(self, msg):
        yield 'first'
        await asyncio.sleep(msg.data['seconds'])
        yield 'late'

    async def trickle(self, msg):  # an item every so many seconds
        tag = msg.data['tag']
        self.produced[tag] = 0
        try:
            for i in range(msg.data['n']):
                self.produced[tag] = i + 1
                yield i
                await asyncio.sleep(msg.data['every'])
        finally:
            self.closed[tag] = True

    def split(self, msg):  # its data's blob, in pieces of 'size' bytes
        blob, size = msg.data['blob'], msg.data['size']
        tag = msg.data.get('tag', 'split')
        self.produced[tag] = 0
        try:
            for start in range(0, len(blob), size):
                self.produced[tag] += 1
                yield blob[start:start + size]
        finally:
            self.closed[tag] = True

    async def plain(self, msg):
        return (True, {'one': 1})

    async def progress(self, msg):
        tag = msg.data['tag']
        return (True, {'produced': self.produced.get(tag), 'closed': self.closed.get(tag, False)})
