from beach.actor import Actor


class Router(Actor):
    """Where this actor's requests to a category land, by routing mode (its handle made at the
    first request, so its host's view of the category starts then)."""

    def init(self, parameters):
        self.handle('route', self.route)

    def route(self, msg):
        handle = self.getActorHandle(msg.data['category'], mode=msg.data['mode'])
        uids = {}
        for key in msg.data.get('keys', ['-']):
            response = handle.request('ping', key=key, timeout=5)
            uids[key] = response.uid if response.isSuccess else None
        return (True, {'uids': uids, 'available': handle.getNumAvailable()})
