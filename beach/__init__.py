"""beach: a Python private compute cloud. Plain Python actors, routed by category over NATS."""

from .actor import Actor, ActorRequest
from .beach_api import Beach
from .client import AsyncBeach
from .errors import (
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
from .group import ActorHandleGroup
from .handle import DEFAULT_TIMEOUT, ActorHandle
from .response import ActorResponse, FutureResults

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
