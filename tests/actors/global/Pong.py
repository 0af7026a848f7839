import time

from beach.actor import Actor


class Pong(Actor):
    def init(self, parameters, resources):
        self.handle('ping', self.ponger)

    def ponger(self, msg):
        return (True, {'time': time.time(), 'echo': msg.data, 'id': msg.id, 'uid': self.name})
