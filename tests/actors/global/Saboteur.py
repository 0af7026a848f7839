import nats.aio.client

from beach.actor import Actor


class Saboteur(Actor):
    """Breaks its own host's NATS connection on request, the way a bug or a hostile name once did:
    a protocol line over the server's max_control_line, sent with nats-py's own publish (beach's
    client would refuse it), so that the server closes the connection for good."""

    def init(self, parameters):
        self.handle('protocol_error', self.protocol_error)
        self.handle('ping', lambda msg: (True, {'uid': self.name}))

    async def protocol_error(self, msg):
        nc = self._runtime.host.session.nc
        await nats.aio.client.Client.publish(nc, 'x' * 5000, b'')
        return (True, {})
