"""Benchmark actor: takes a large payload and answers its size, or answers a payload of the size asked."""

import os

from beach.actor import Actor


class Sink(Actor):
    def init(self, parameters):
        self.handle('take', self.take)
        self.handle('give', self.give)

    async def take(self, msg):
        return (True, {'n': msg.data['n'], 'size': len(msg.data['blob'])})

    async def give(self, msg):
        return (True, {'n': msg.data['n'], 'blob': os.urandom(msg.data['size'])})
