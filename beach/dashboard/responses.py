"""JSON responses: data as `beach.output` shows it (bytes as text, sets as lists), errors as
``{"error": message}``."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from beach import output


class JSON(JSONResponse):
    """A JSON response whose body takes whatever the model holds (msgpack values included)."""

    def render(self, content: Any) -> bytes:
        """``content`` as one line of UTF-8 JSON."""
        return output.dumps_line(content).encode("utf-8")


def error(status: int, message: str) -> JSON:
    """``{"error": message}`` with HTTP ``status``."""
    return JSON({"error": message}, status_code=status)
