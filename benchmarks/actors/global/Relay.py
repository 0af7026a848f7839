"""Benchmark actor: a plain ``def`` handler that passes the request on to ``bench/echo`` with a
blocking ``request()`` and returns its answer (client → Relay → Echo)."""

from beach.actor import Actor


class Relay(Actor):
    def init(self, parameters):
        self.echo = self.getActorHandle('bench/echo', timeout=5)
        self.handle('relay', self.relay)

    def relay(self, msg):
        response = self.echo.request('echo', msg.data)
        if not response.isSuccess:
            return (False, response.error)
        return (True, response.data)
