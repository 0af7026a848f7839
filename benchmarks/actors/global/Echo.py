"""Benchmark actor: echoes the request's data from an ``async def`` handler (on the host's loop)."""

from beach.actor import Actor


class Echo(Actor):
    def init(self, parameters):
        self.handle('echo', self.echo)

    async def echo(self, msg):
        return (True, msg.data)
