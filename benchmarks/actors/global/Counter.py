"""Benchmark actor: counts the ``hit`` requests it receives (shoot, broadcast) from an ``async def``
handler; ``count`` returns ``{'n': hits, 'last': time.monotonic() of the last hit}``, ``reset`` zeroes."""

import time

from beach.actor import Actor


class Counter(Actor):
    def init(self, parameters):
        self.n = 0
        self.last = None
        self.handle('hit', self.hit)
        self.handle('count', self.count)
        self.handle('reset', self.reset)

    async def hit(self, msg):
        self.n += 1
        self.last = time.monotonic()
        return (True,)

    async def count(self, msg):
        return (True, {'n': self.n, 'last': self.last})

    async def reset(self, msg):
        self.n = 0
        self.last = None
        return (True,)
