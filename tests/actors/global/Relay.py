from beach.actor import Actor


class Relay(Actor):
    def init(self, parameters):
        self.handle('relay', self.relay)
        self.handle('deadline', self.deadline)
        self.handle('spread', self.spread)

    def relay(self, msg):
        # A plain (def) handler making a blocking request to another actor.
        resp = self.getActorHandle(msg.data['category']).request('ping', {'via': 'sync'}, timeout=5)
        return (True, resp.data) if resp.isSuccess else (False, resp.error, resp.data)

    def deadline(self, msg):
        # The inner request inherits what is left of this request's deadline.
        resp = self.getActorHandle(msg.data['category']).request('sleep', {'seconds': 5}, timeout=30)
        return (True, {'inner_timed_out': resp.isTimedOut})

    def spread(self, msg):
        # Where do this actor's requests land? (mode 'local' by default inside actors)
        handle = self.getActorHandle(msg.data['category'], **msg.data.get('options', {}))
        uids = [handle.request('ping', timeout=5).data.get('uid') for _ in range(msg.data.get('n', 20))]
        return (True, {'uids': uids})
