"""Helpers the original exported from ``beach.utils``."""

from __future__ import annotations

from typing import Any


def isMessageSuccess(msg: Any) -> bool:
    """True if ``msg`` (an `ActorResponse` or an original-style envelope dict) is a success."""
    if msg is None or msg is False:
        return False
    if not hasattr(msg, "get"):
        return False
    status = msg.get("status")
    return bool(status) and status.get("success") is not False


is_message_success = isMessageSuccess
