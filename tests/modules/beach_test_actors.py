"""An actor loaded as ``module:Class`` (this directory is put on the hosts' PYTHONPATH by the tests)."""

from beach.actor import Actor


class Echo(Actor):
    def init(self, parameters):
        self.handle("echo", self.echo)

    async def echo(self, msg):
        return (True, msg.data)
