import asyncio
import sys

from beach.actor import Actor


class Misbehaving(Actor):
    """Handlers that raise what is not an Exception: CancelledError, SystemExit, KeyboardInterrupt."""

    def init(self, parameters):
        self.handle('acancel', self.acancel)
        self.handle('acancel_later', self.acancel_later)
        self.handle('exit', lambda msg: sys.exit(3))
        self.handle('aexit', self.aexit)
        self.handle('interrupt', self.interrupt)
        self.handle('ping', lambda msg: (True, {}))

    async def acancel(self, msg):
        cancelled = asyncio.get_running_loop().create_future()
        cancelled.cancel()
        await cancelled  # raises CancelledError before the handler ever suspends

    async def acancel_later(self, msg):
        await asyncio.sleep(0.01)
        raise asyncio.CancelledError()

    async def aexit(self, msg):
        sys.exit(3)

    def interrupt(self, msg):
        raise KeyboardInterrupt()
