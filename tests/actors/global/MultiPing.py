import time

from beach.actor import Actor


class MultiPing(Actor):
    def init(self, parameters):
        self.handle('ping', lambda msg: (True, {'time': time.time()}))
        self.handle('oob', lambda msg: (True, {'cmdresult': 42}))
        self.handle('who', lambda msg: (True, {'uid': self.name}))
