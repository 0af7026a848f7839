from beach.actor import Actor


class Quitter(Actor):
    """Stops itself when asked."""

    def init(self, parameters):
        self.handle('ping', lambda msg: (True, {'uid': self.name}))
        self.handle('quit', self.quit)

    def quit(self, msg):
        self.stop()
        return (True, {'uid': self.name})
