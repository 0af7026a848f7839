"""Beach's exceptions.

Every error beach raises is a :class:`BeachError`::

    BeachError
    ├── ConfigError          the config file is missing, unreadable or wrong (names the key)
    ├── CategoryError        a category or realm name beach cannot route (empty segment, wrong type)
    ├── EncodeError          a value msgpack cannot carry (names its type)
    ├── PayloadTooLarge      an encoded message over the server's max_payload, a payload over
    │                        payloads.max_bytes
    ├── ActorLoadError       an actor class that cannot be found or imported
    ├── ActorInitError       an actor's init() raised (the traceback is the message)
    ├── BusError             NATS cannot be reached, or a bus operation failed
    │   ├── ClosedError      the connection was closed before or during the call
    │   ├── PermissionDenied NATS refused a publish or subscription (names the subject and the user)
    │   ├── BatchRefused     JetStream refused an atomic batch: nothing of it stored (beach.bus.batch)
    │   └── BatchUnknown     an atomic batch's commit went unanswered: stored or not (beach.bus.batch)
    ├── SealError            a sealed message or value refused: tampered, replayed, unknown key
    ├── BundleError          code that cannot be deployed or run: an empty directory, a link, an
    │                        entry out of bounds, a digest mismatch (`beach.code.bundle`)
    ├── Refused              a node refused or failed an admin operation (says why)
    ├── Unhealthy            a health probe failed: the bus or a node is not up (says why;
    │                        beach.operations.health)
    ├── PlacementError       no node fits a spawn's strategy (beach.state.placement; a failed spawn)
    ├── RecordError          a record off the bus that is not one: names the record and the field
    │                        (beach.state.records; also a ValueError)
    ├── NotFound             no live actor has that uid (or uid prefix); also a LookupError
    ├── StateError           an actor state operation refused: a bad key, a value over the size
    │                        limit, a category at its cap of keys, a turn already ended
    ├── StreamError          a stream of items ended in a failure: the handler raised, no actor,
    │                        no item in time (names it; beach.client.stream)
    └── UsageError           the API was called the wrong way (names the argument)

Failures that happen *inside* the cluster (a handler raised, an actor was busy, a request timed
out) are not raised: they come back as a failed :class:`beach.ActorResponse`, as in the original.
"""

from __future__ import annotations


class BeachError(Exception):
    """Base class of every exception beach raises."""


class ConfigError(BeachError):
    """The config is missing, unreadable, or has an unknown key or a value of the wrong type."""


class CategoryError(BeachError, ValueError):
    """A category or realm name that cannot be routed (empty, empty segment, not a string)."""


class EncodeError(BeachError, TypeError):
    """A value that the wire format (msgpack) cannot carry."""


class PayloadTooLarge(BeachError, ValueError):
    """An encoded message is larger than the NATS server accepts (its ``max_payload``), or a
    payload larger than the config allows (``payloads.max_bytes``: ``over`` names that limit)."""

    def __init__(self, size: int, limit: int, what: str = "message",
                 over: str = "the NATS server's max_payload") -> None:
        self.size = size
        self.limit = limit
        super().__init__(f"{what} is {size} bytes encoded, over {over} of {limit} bytes")


class ActorLoadError(BeachError):
    """An actor class that cannot be found, imported or is not an Actor subclass."""


class ActorInitError(BeachError):
    """An actor's ``init()`` raised; the message holds the traceback (a spawn reports it)."""


class BusError(BeachError, ConnectionError):
    """NATS cannot be reached, or a bus operation (KV, subscribe) failed."""


CLOSED = "this beach connection is closed"
CLOSED_DURING_CALL = "the beach connection was closed while this call was in progress"


class ClosedError(BusError):
    """The beach connection was closed before the call, or while the call was in progress."""


class UsageError(BeachError, ValueError):
    """The API was called with an argument it cannot accept."""


class NotFound(BeachError, LookupError):
    """No live actor has the uid (or the uid prefix) given."""


class PermissionDenied(BusError, PermissionError):
    """The NATS server refused a publish or a subscription: the credentials this connection uses
    do not allow it. The message names the subject (and the user, when known)."""


class BundleError(BeachError, ValueError):
    """A code bundle was refused: a directory that cannot be packed, an archive that cannot be
    safely unpacked, a digest that does not match, or a requirement that is not a plain specifier."""


class Refused(BeachError):
    """A node refused or could not do an admin operation (deploy, rollback, restore, cordon...):
    its reason, e.g. ``unprivileged``, is in the message."""


class Unhealthy(BeachError):
    """A health probe failed (`beach.operations.health`, ``beach health``): the bus is not ready or
    the node is not up; the message says what is wrong."""


class StateError(BeachError, ValueError):
    """An actor state operation (``self.state``, ``beach state``) was refused: a key that is not a
    non-empty string or is too long, a value over ``state.max_value_bytes``, a new key in a category
    holding ``state.max_keys`` keys, a write after the request's turn ended. Says which."""


class SealError(BeachError, ValueError):
    """A sealed body was refused (``reason``: not sealed, unknown key, tampered or misplaced,
    outside the replay window, replayed)."""

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class StreamError(BeachError):
    """A stream of items ended in a failure (`beach.client.stream.Stream`): the handler raised or
    returned one, no actor answered, or no item came in time. ``failure`` is its kind
    (`beach.wire.Failure`, None for a handler's own error text), ``error`` the text, ``data`` what
    came with it (a handler's traceback: ``{'st': ...}``)."""

    def __init__(self, failure: str | None, error: str, data: object = None) -> None:
        self.failure = failure
        self.error = error
        self.data = data
        super().__init__(error)
