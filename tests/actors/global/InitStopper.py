from beach.actor import Actor


class InitStopper(Actor):
    """Decides in init() that it should not run."""

    def init(self, parameters):
        self.handle('ping', lambda msg: (True, {}))
        self.stop()
