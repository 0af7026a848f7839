"""Benchmark actor: does nothing (an ``async def`` handler ``ping``); for the directory-scale benchmark."""

from beach.actor import Actor


class Idle(Actor):
    async def init(self, parameters):
        self.handle('ping', self.ping)

    async def ping(self, msg):
        return (True,)
