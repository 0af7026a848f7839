"""Shared keys: the file that ``private_key`` in the config names.

A key file holds 32 random bytes, as the original's ``gen_key`` wrote them (an AES-256 key).
"""

from __future__ import annotations

import os

from beach.errors import UsageError

KEY_BYTES = 32


def generate_key(path: str | os.PathLike[str], overwrite: bool = False) -> str:
    """Write a new random key to ``path`` (readable by its owner only) and return the path.

    Raises `UsageError` if the file exists (unless ``overwrite``) or cannot be written.
    """
    path = os.fspath(path)
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise UsageError(f"{path} exists: a key is not overwritten (remove it first)") from None
    except OSError as err:
        raise UsageError(f"cannot write a key to {path}: {err.strerror}") from None
    with os.fdopen(fd, "wb") as f:
        f.write(os.urandom(KEY_BYTES))
    return path
