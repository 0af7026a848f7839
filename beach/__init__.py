"""beach: a Python private compute cloud. Plain Python actors, routed by category over NATS."""

from beach.actor import Actor, ActorRequest
from beach.client.blocking import Beach
from beach.client.core import AsyncBeach
from beach.client.group import ActorHandleGroup
from beach.client.handle import DEFAULT_TIMEOUT, ActorHandle
from beach.client.response import ActorResponse, FutureResults
from beach.errors import (
    ActorLoadError,
    BeachError,
    BundleError,
    BusError,
    CategoryError,
    ClosedError,
    ConfigError,
    EncodeError,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    Refused,
    SealError,
    StateError,
    UsageError,
)

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_TIMEOUT",
    "Actor",
    "ActorHandle",
    "ActorHandleGroup",
    "ActorLoadError",
    "ActorRequest",
    "ActorResponse",
    "AsyncBeach",
    "Beach",
    "BeachError",
    "BundleError",
    "BusError",
    "CategoryError",
    "ClosedError",
    "ConfigError",
    "EncodeError",
    "FutureResults",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "Refused",
    "SealError",
    "StateError",
    "UsageError",
]
