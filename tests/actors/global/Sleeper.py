import time

from beach.actor import Actor


class Sleeper(Actor):
    def init(self, parameters, resources):
        time.sleep(parameters.get('init_seconds', 0))
        self.handle('sleep', self.sleep_handler)
        self.handle('nosleep', lambda msg: (True, {'time': time.time()}))

    def sleep_handler(self, msg):
        time.sleep((msg.data or {}).get('seconds', 10))
        return (True, {'time': time.time()})
