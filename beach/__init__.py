"""beach: a Python private compute cloud. Plain Python actors, routed by category over NATS."""

from beach.actor import Actor, ActorRequest
from beach.beach_api import Beach
from beach.client import AsyncBeach
from beach.errors import (
    ActorLoadError,
    BeachError,
    BundleError,
    BusError,
    CategoryError,
    ClosedError,
    ConfigError,
    EncodeError,
    PayloadTooLarge,
    PermissionDenied,
    Refused,
    SealError,
    UsageError,
)
from beach.group import ActorHandleGroup
from beach.handle import DEFAULT_TIMEOUT, ActorHandle
from beach.response import ActorResponse, FutureResults

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
    "PayloadTooLarge",
    "PermissionDenied",
    "Refused",
    "SealError",
    "UsageError",
]
