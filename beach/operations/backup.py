"""``beach backup`` / ``beach restore``: the desired state in one file.

A backup holds what beach must not lose — supervised actors, patrol specs, deployed code versions
(and the bundles they name, so that a fresh cluster can run them) — as one msgpack map. The
supervisor lease and cordons are left out: they belong to the running cluster's nodes. Restoring
writes the records through a node (admin rights) after uploading the bundles; the supervisor then
starts what the records ask for.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any

from beach import wire
from beach.code import store as codestore
from beach.code.bundle import Bundle, verify
from beach.errors import Refused, UsageError
from beach.state import desired

if TYPE_CHECKING:
    from beach.client.core import AsyncBeach

FORMAT = "beach-backup"
VERSION = 1
KEPT = ("sup.", "patrol.", "code.")


async def backup(client: AsyncBeach) -> dict[str, Any]:
    """The desired state and the bundles it needs, as a map ready to pack."""
    records = {key: {k: v for k, v in value.items()}
               for key, (value, _) in (await desired.snapshot(await client._desired(), "")).items()
               if key.startswith(KEPT)}
    bundles = {}
    for key, record in records.items():
        if key.startswith("code.") and not key.endswith(".current") and record["digest"] not in bundles:
            bundles[record["digest"]] = await codestore.fetch(client.session, record["digest"])
    return {"format": FORMAT, "v": VERSION, "when": time.time(), "desired": records, "bundles": bundles}


def write(path: str | os.PathLike[str], content: dict[str, Any]) -> int:
    """Write a backup to ``path`` (readable by its owner only: it holds code); return its size."""
    data = wire.pack(content)
    descriptor = os.open(os.fspath(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as f:
        f.write(data)
    return len(data)


def read(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A backup read back from ``path``; raises `UsageError` naming what is wrong with the file."""
    try:
        with open(path, "rb") as f:
            content = wire.unpack(f.read())
    except OSError as err:
        raise UsageError(f"cannot read backup {os.fspath(path)}: {err.strerror or err}") from None
    except ValueError as err:
        raise UsageError(f"{os.fspath(path)} is not a beach backup: {err}") from None
    if not isinstance(content, dict) or content.get("format") != FORMAT:
        raise UsageError(f"{os.fspath(path)} is not a beach backup")
    if not isinstance(content.get("v"), int) or content["v"] > VERSION:
        raise UsageError(f"{os.fspath(path)}: a backup of format {content.get('v')!r}, from a newer beach")
    if not isinstance(content.get("desired"), dict) or not isinstance(content.get("bundles"), dict):
        raise UsageError(f"{os.fspath(path)}: a damaged backup (no desired state or bundles)")
    return content


async def restore(client: AsyncBeach, content: dict[str, Any]) -> dict[str, int]:
    """Upload the backup's bundles (checked against their digests) and write its records; return
    how many of each. Raises `BundleError` for a damaged bundle, `UsageError` when a node refuses."""
    client.session.require_admin("restore")
    for digest, data in content["bundles"].items():
        verify(data, digest)
        await codestore.upload(client.session, Bundle(data, digest, len(data), 0))
    records = {k: v for k, v in content["desired"].items() if isinstance(k, str) and k.startswith(KEPT)}
    if records:
        response = await client._change_desired(put=records)
        if not response.isSuccess:
            raise Refused(f"the desired state was not restored: {response.error}")
    return counts({**content, "desired": records})


def counts(content: dict[str, Any]) -> dict[str, int]:
    """How many records of each kind (``sup``, ``patrol``, ``code``) and bundles a backup holds."""
    kinds = {kind.rstrip("."): sum(1 for k in content["desired"] if k.startswith(kind)) for kind in KEPT}
    return {**kinds, "bundles": len(content["bundles"])}
