import os

from beach.actor import Actor


class DeinitMarker(Actor):
    def init(self, parameters):
        self.path = parameters['path']
        self.handle('pid', lambda msg: (True, {'pid': os.getpid()}))

    def deinit(self):
        with open(self.path, 'w') as f:
            f.write(self.name)
