from beach.actor import Actor


class Faulty(Actor):
    def init(self, parameters):
        self.handle('raise', self.raiser)
        self.handle('lookup', self.lookup)
        self.handle('dict', lambda msg: {'not': 'a tuple'})
        self.handle('string', lambda msg: 'just a string')
        self.handle('fail', lambda msg: (False, 'it went wrong', {'why': 'test'}))
        self.handle('fail1', lambda msg: (False,))
        self.handle('ok1', lambda msg: (True,))
        self.handle('ok3', lambda msg: (True, 1, 2))
        self.handle('unencodable', lambda msg: (True, {'obj': object()}))
        self.handle('big', lambda msg: (True, b'x' * (2 * 1024 * 1024)))
        self.handle('nan', lambda msg: (True, {'nan': float('nan'), 'inf': float('inf'), 'ninf': float('-inf'),
                                               'ok': 1.5}))
        self.handle('deep', self.deep)

    def deep(self, msg):
        value = []
        for _ in range(int(msg.data.get('depth', 300))):
            value = [value]
        return (True, value)

    def raiser(self, msg):
        raise RuntimeError('handler blew up on purpose')

    def lookup(self, msg):
        return (True, self._title(msg.data))

    def _title(self, data):
        return data['doc'].title()
