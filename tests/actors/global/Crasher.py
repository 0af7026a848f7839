import os

from beach.actor import Actor


class Crasher(Actor):
    """Kills its own (isolated) process shortly after starting."""

    def init(self, parameters):
        self.handle('ping', lambda msg: (True, {'uid': self.name}))
        self.delay(parameters.get('crash_after', 0.3), os._exit, 1)
