"""A counter kept in actor state (``async def`` handlers): the awaitable forms."""

from beach.actor import Actor


class AsyncCounter(Actor):
    async def init(self, parameters):
        self.handle("add", self.add)
        self.handle("get", self.get)
        self.handle("keys", self.list_keys)
        self.handle("blocking_get", self.blocking_get)

    async def add(self, msg):
        n = msg.data.get("n", 1)
        value = await self.state.aupdate(msg.data["key"], lambda v: (v or 0) + n)
        return (True, {"value": value, "uid": self.name})

    async def get(self, msg):
        return (True, {"value": await self.state.aget(msg.data["key"]), "uid": self.name})

    async def list_keys(self, msg):
        return (True, {"keys": await self.state.akeys(msg.data.get("prefix", ""))})

    async def blocking_get(self, msg):
        return (True, {"value": self.state.get(msg.data["key"])})
