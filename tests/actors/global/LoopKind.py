import asyncio

from beach.actor import Actor


class LoopKind(Actor):
    """Answers which event loop its actor host runs on (`beach.loop`), and what a blocking request
    from a def handler gets from an async one."""

    def init(self, parameters):
        self.handle('loop', self.loop)
        self.handle('relay', self.relay)

    async def loop(self, msg):
        return (True, {'loop': type(asyncio.get_running_loop()).__module__.split('.')[0]})

    def relay(self, msg):
        resp = self.getActorHandle(msg.data['category']).request('loop', timeout=10)
        return (True, resp.data) if resp.isSuccess else (False, resp.error)
