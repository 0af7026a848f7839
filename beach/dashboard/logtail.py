"""`LogQuery`: which of the model's live log lines a page or ``/api/logs`` shows."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from beach.dashboard import params as read
from beach.logs import LogLine
from beach.state import model as beach_model

LIMIT = 100  # lines a page shows (and ``/api/logs`` gives by default)


@dataclass(frozen=True)
class LogQuery:
    """The arguments of `ClusterModel.logs`, plus ``node`` (the lines of one machine)."""

    realm: str | None = None
    category: str | None = None
    uid: str | None = None
    node: str | None = None
    level: int = logging.INFO
    kind: str | None = "app"
    limit: int = LIMIT

    def lines(self, model: beach_model.ClusterModel) -> list[LogLine]:
        """The latest matching lines, oldest first."""
        if self.node is None:
            return model.logs(self.realm, self.category, self.uid, self.level, self.kind, self.limit)
        # the model has no node filter: take its whole tail, then this node's lines of it
        tail = model.logs(self.realm, self.category, self.uid, self.level, self.kind, beach_model.LOG_TAIL)
        return [line for line in tail if line.node == self.node][-self.limit:]

    @property
    def level_name(self) -> str:
        """The level as its lower-case name (``info``)."""
        return logging.getLevelName(self.level).lower()


def from_params(params: read.Params) -> LogQuery:
    """The query ``?realm=&category=&uid=&level=&kind=&limit=`` asks for."""
    return LogQuery(realm=read.realm(params), category=read.category(params), uid=read.text(params, "uid"),
                    level=read.level(params), kind=read.kind(params),
                    limit=read.integer(params, "limit", LIMIT, 1, beach_model.LOG_TAIL))


PARAMS = ("realm", "category", "uid", "level", "kind", "limit")
