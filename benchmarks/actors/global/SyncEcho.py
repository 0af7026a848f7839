"""Benchmark actor: echoes the request's data from a plain ``def`` handler (in a host worker thread)."""

from beach.actor import Actor


class SyncEcho(Actor):
    def init(self, parameters):
        self.handle('echo', self.echo)

    def echo(self, msg):
        return (True, msg.data)
