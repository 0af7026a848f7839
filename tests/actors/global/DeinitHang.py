import time

from beach.actor import Actor


class DeinitHang(Actor):
    """A deinit() that never returns."""

    def init(self, parameters):
        self.handle('ping', lambda msg: (True, {}))

    def deinit(self):
        time.sleep(600)
