"""`Dashboard`: what a running dashboard holds, and how a request finds it."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from starlette.requests import HTTPConnection

from beach.client.core import AsyncBeach
from beach.dashboard.hosts import AllowedHosts
from beach.dashboard.hub import Hub
from beach.metering import HttpStats
from beach.state.model import ClusterModel

if TYPE_CHECKING:
    from starlette.applications import Starlette


class Dashboard:
    """The client and cluster model of one dashboard (opened by the app's lifespan, on the server's
    loop), the hub of its live streams, the secret its CSRF tokens are made with, and the host
    names it answers to."""

    def __init__(self, config_path: str, allowed: AllowedHosts | None = None) -> None:
        self.config_path = config_path
        self.allowed = allowed or AllowedHosts()
        self.hub = Hub()
        self.http = HttpStats("beach_dashboard")  # its own HTTP requests, for /metrics
        self.secret = secrets.token_bytes(32)  # per process: a restart only re-issues page tokens
        self._client: AsyncBeach | None = None
        self._model: ClusterModel | None = None

    async def open(self) -> None:
        """Connect and start following the cluster; raises `ConfigError` or `BusError`."""
        client = await AsyncBeach.open(self.config_path)
        self.hub.limits = client.session.config.dashboard
        model = ClusterModel(client)
        try:
            await model.start()
        except BaseException:
            await client.close()
            raise
        model.listeners.append(self.hub.notify)
        self._client, self._model = client, model

    async def close(self) -> None:
        """End the live streams, stop following the cluster, disconnect."""
        self.hub.close()
        model, client, self._model, self._client = self._model, self._client, None, None
        if model is not None:
            if self.hub.notify in model.listeners:
                model.listeners.remove(self.hub.notify)
            await model.stop()
        if client is not None:
            await client.close()

    @property
    def client(self) -> AsyncBeach:
        """The cluster client (only while the app runs)."""
        if self._client is None:
            raise RuntimeError("the dashboard is not running (its lifespan has not started)")
        return self._client

    @property
    def model(self) -> ClusterModel:
        """The cluster model (only while the app runs)."""
        if self._model is None:
            raise RuntimeError("the dashboard is not running (its lifespan has not started)")
        return self._model

    @property
    def admin(self) -> bool:
        """True when this dashboard has admin rights (the nodes' admin token, an admin role, or an
        open cluster): only then are admin actions offered."""
        return self.client.session.read_only() is None

    @property
    def open_notice(self) -> str | None:
        """What the pages say about an open cluster (see `beach.security.authority.open_notice`)."""
        return self.client.session.open_notice()


def dashboard(conn: HTTPConnection) -> Dashboard:
    """The `Dashboard` of the app serving ``conn``."""
    app: Starlette = conn.app
    return app.state.dashboard  # type: ignore[no-any-return]
