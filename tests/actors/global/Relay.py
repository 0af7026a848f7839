from beach.actor import Actor


class Relay(Actor):
    def init(self, parameters):
        self.handle('relay', self.relay)
        self.handle('deadline', self.deadline)

    def relay(self, msg):
        # A plain (def) handler making a blocking request to another actor.
        resp = self.getActorHandle(msg.data['category']).request('ping', {'via': 'sync'}, timeout=5)
        return (True, resp.data) if resp.isSuccess else (False, resp.error, resp.data)

    def deadline(self, msg):
        # The inner request inherits what is left of this request's deadline.
        resp = self.getActorHandle(msg.data['category']).request('sleep', {'seconds': 5}, timeout=30)
        return (True, {'inner_timed_out': resp.isTimedOut})
