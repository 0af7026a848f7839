from beach.actor import Actor


class Pong(Actor):
    """realm-one's own Pong: code is looked up per realm."""

    def init(self, parameters):
        self.handle('ping', lambda msg: (True, {'realm': self._realm}))
