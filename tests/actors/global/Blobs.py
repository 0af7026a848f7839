import hashlib
import random

from beach.actor import Actor


class Blobs(Actor):
    """Large payloads: their digests, made to order, and echoed."""

    async def init(self, parameters):
        self.handle('digest', self.digest)
        self.handle('make', self.make)
        self.handle('echo', self.echo)
        self.handle('repeat', self.repeat)

    async def digest(self, msg):
        blob = msg.data['blob']
        return (True, {'sha256': hashlib.sha256(blob).hexdigest(), 'size': len(blob)})

    def make(self, msg):  # (a def handler: its reply goes out the same way)
        return (True, {'blob': random.Random(msg.data['seed']).randbytes(msg.data['size'])})

    async def echo(self, msg):
        return (True, msg.data)

    async def repeat(self, msg):
        return (True, {'blob': msg.data['text'].encode() * msg.data['times']})
