"""A counter kept in actor state (``def`` handlers): the test of ``self.state``'s blocking forms."""

import time

from beach.actor import Actor


class Opaque:
    """A value msgpack cannot carry."""


class Counter(Actor):
    def init(self, parameters):
        self.handle("add", self.add)
        self.handle("get", self.get)
        self.handle("set", self.put)
        self.handle("delete", self.remove)
        self.handle("keys", self.list_keys)
        self.handle("add_then_raise", self.add_then_raise)
        self.handle("add_slowly", self.add_slowly)
        self.handle("transfer", self.transfer)
        self.handle("other", self.other)
        self.handle("set_unencodable", self.set_unencodable)
        self.handle("set_many", self.set_many)
        self.handle("read_wait_add", self.read_wait_add)

    def add(self, msg):
        n = msg.data.get("n", 1)
        value = self.state.update(msg.data["key"], lambda v: (v or 0) + n)
        return (True, {"value": value, "uid": self.name})

    def get(self, msg):
        return (True, {"value": self.state.get(msg.data["key"], msg.data.get("default")), "uid": self.name})

    def put(self, msg):
        self.state.set(msg.data["key"], msg.data["value"])
        return (True, {})

    def remove(self, msg):
        self.state.delete(msg.data["key"])
        return (True, {})

    def list_keys(self, msg):
        return (True, {"keys": self.state.keys(msg.data.get("prefix", ""))})

    def add_then_raise(self, msg):
        self.state.update(msg.data["key"], lambda v: (v or 0) + 1)
        raise RuntimeError("after set()")

    def add_slowly(self, msg):
        time.sleep(msg.data["before"].get(self.name, 0.0))  # seconds, by actor
        value = self.state.update(msg.data["key"], lambda v: (v or 0) + 1)
        return (True, {"value": value, "uid": self.name})

    def read_wait_add(self, msg):
        value = self.state.get(msg.data["key"], 0)  # read now (its revision is noted) ...
        time.sleep(msg.data["wait"])  # ... another actor writes it meanwhile ...
        self.state.set(msg.data.get("to", msg.data["key"]), value + 1)  # ... so this write must not commit
        return (True, {"value": value + 1, "uid": self.name})

    def set_unencodable(self, msg):
        self.state.set(msg.data["key"], Opaque())  # (a Decimal travels: msgspec encodes it as text)
        return (True, {})

    def transfer(self, msg):
        a, b, n = msg.data["from"], msg.data["to"], msg.data["n"]
        have = self.state.get(a, 0)
        if have < n:
            return (False, "insufficient", {"have": have})
        self.state.set(a, have - n)
        self.state.set(b, self.state.get(b, 0) + n)
        return (True, {})

    def other(self, msg):
        other = self.stateFor(msg.data["category"])
        return (True, {"value": other.update(msg.data["key"], lambda v: (v or 0) + 1)})

    def set_many(self, msg):
        for i in range(msg.data["n"]):
            if msg.data.get("delete"):
                self.state.delete(f"{msg.data['prefix']}{i}")
            else:
                self.state.set(f"{msg.data['prefix']}{i}", i)
        return (True, {})
