from beach.actor import Actor


class Ping(Actor):
    def init(self, parameters, resources):
        self.pongs = []
        self.zPong = self.getActorHandle(resources.get('pongers', 'pongers'))
        self.handle('count', lambda msg: (True, {'pongs': len(self.pongs)}))
        self.schedule(1, self.pinger)

    def pinger(self):
        resp = self.zPong.request('ping', data={'from': self.name}, timeout=5)
        if resp.isSuccess:
            self.pongs.append(resp.data)
