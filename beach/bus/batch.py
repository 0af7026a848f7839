"""Atomic batch publishing (JetStream, server 2.12 and later): every message of a batch is stored,
or none is.

nats-py 2.16 has no batch publisher, so the headers are built here, as ADR-50 ("JetStream Batch
Publishing") and nats-server's ``server/stream.go`` define them: every message of a batch carries
``Nats-Batch-Id`` (at most 64 characters) and ``Nats-Batch-Sequence`` (1, 2, ... with no gap), and
the last one also ``Nats-Batch-Commit: 1``. Messages before the last are plain publishes (no reply
asked: the server acknowledges only the commit); the commit is a request, answered with a PubAck
whose ``seq`` is the last message's stream sequence (the others precede it, in order) and whose
``count`` is the batch's size — or with an error, and then nothing of the batch was stored.

The server checks each message's ``Nats-Expected-Last-Subject-Sequence`` (and
``...-Subject``, to check another subject) against the stream as it was before the batch, under
its lock, at the commit. It refuses ``Nats-Msg-Id`` inside a batch, allows at most 1000 messages
in one (``max_msgs``), and at most 50 batches of one stream in flight at once
(``jetstream { limits { batch { max_inflight_per_stream } } }``): a batch is in flight from its
first message to its commit, which this module sends back to back.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import nats.errors
from nats.aio.client import Client

from beach.errors import BusError

BATCH_ID = "Nats-Batch-Id"
BATCH_SEQUENCE = "Nats-Batch-Sequence"
BATCH_COMMIT = "Nats-Batch-Commit"
EXPECTED_LAST_SUBJECT_SEQUENCE = "Nats-Expected-Last-Subject-Sequence"
EXPECTED_LAST_SUBJECT_SEQUENCE_SUBJECT = "Nats-Expected-Last-Subject-Sequence-Subject"
TTL = "Nats-TTL"
MAX_MESSAGES = 1000  # the server's default limit on one batch

# The server's refusals that mean "a check failed" (another writer came first), not "broken".
WRONG_LAST_SEQUENCE = 10071
WRONG_LAST_SEQUENCE_CONSTANT = 10164  # the subject is being written by a proposal still in flight
TOO_MANY_INFLIGHT = 10210
CONFLICTS = frozenset({WRONG_LAST_SEQUENCE, WRONG_LAST_SEQUENCE_CONSTANT})

Message = tuple[str, bytes, dict[str, str]]
"""One message of a batch: ``(subject, payload, headers)``."""


class BatchRefused(BusError):
    """The server refused a batch (nothing of it was stored): ``err_code`` is JetStream's
    (`WRONG_LAST_SEQUENCE`: a subject's last sequence was not the one expected)."""

    def __init__(self, err_code: int, description: str) -> None:
        super().__init__(f"batch refused by JetStream: {description} (error {err_code})")
        self.err_code = err_code
        self.description = description


class BatchUnknown(BusError):
    """The commit of a batch went unanswered: it may have been stored, or not."""


async def publish(nc: Client, messages: Sequence[Message], timeout: float) -> dict[str, Any]:
    """Publish ``messages`` as one atomic batch and return the server's PubAck (``stream``,
    ``seq`` of the last message, ``count``).

    Raises `BatchRefused` when the server refused it (nothing stored), `BatchUnknown` when its
    commit was not acknowledged within ``timeout`` seconds or the connection failed midway (it may
    have been stored), and ``ValueError`` for a batch of no message or over `MAX_MESSAGES` (a
    caller's bug)."""
    if not 0 < len(messages) <= MAX_MESSAGES:
        raise ValueError(f"a batch holds 1 to {MAX_MESSAGES} messages, not {len(messages)}")
    batch_id = os.urandom(12).hex()
    last = len(messages)
    try:
        for sequence, (subject, payload, headers) in enumerate(messages[:-1], 1):
            await nc.publish(subject, payload, headers={**headers, BATCH_ID: batch_id, BATCH_SEQUENCE: str(sequence)})
        subject, payload, headers = messages[-1]
        response = await nc.request(subject, payload, timeout=timeout, headers={
            **headers, BATCH_ID: batch_id, BATCH_SEQUENCE: str(last), BATCH_COMMIT: "1"})
    except (nats.errors.TimeoutError, TimeoutError):
        raise BatchUnknown(f"the commit of a batch of {last} message(s) was not acknowledged within "
                           f"{timeout:g}s") from None
    except nats.errors.NoRespondersError:  # nothing behind the subject: no stream, nothing stored
        raise BatchRefused(0, f"no JetStream stream takes {messages[0][0]}") from None
    except nats.errors.Error as err:
        raise BatchUnknown(f"a batch of {last} message(s) not sent whole: {err or type(err).__name__}") from None
    try:
        ack = json.loads(response.data)
    except ValueError:
        raise BatchUnknown(f"the commit of a batch got an answer that is not a PubAck: {response.data[:80]!r}") \
            from None
    if not isinstance(ack, dict):
        raise BatchUnknown(f"the commit of a batch got an answer that is not a PubAck: {ack!r}")
    error = ack.get("error")
    if isinstance(error, dict):
        raise BatchRefused(int(error.get("err_code") or 0), str(error.get("description") or error))
    if not isinstance(ack.get("seq"), int) or ack.get("count") != last:
        # a server without atomic batches stores each message alone: say so loudly
        raise BatchUnknown(f"the commit of a batch got a PubAck that is not a batch's (a server before "
                           f"2.12?): {ack!r}")
    return ack
