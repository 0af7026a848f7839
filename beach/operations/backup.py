"""``beach backup`` / ``beach restore``: the desired state and the actor state in one file.

A backup holds what beach must not lose — supervised actors, patrol specs, deployed code versions
(and the bundles they name, so that a fresh cluster can run them), and the actors' state (every
key of every category, as stored: the values encoded, not sealed) — as one msgpack map. The
supervisor lease and cordons are left out: they belong to the running cluster's nodes, and so are
the records of recent requests (a retry after a restore may apply again). Restoring writes the
records and the state through a node (admin rights) after uploading the bundles; the supervisor
then starts what the records ask for. A backup is a snapshot key by key, not of one instant:
turns that commit while it is read may be in it or not, each key whole.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Literal

import msgspec

from beach import wire
from beach.code import store as codestore
from beach.code.bundle import Bundle, verify
from beach.errors import Refused, UsageError
from beach.security import authority
from beach.state import desired, stateview
from beach.state.desired import CodeVersion
from beach.wire import typed

if TYPE_CHECKING:
    from beach.client.core import AsyncBeach

VERSION = 1
KEPT = ("sup.", "patrol.", "code.")
RESTORE_KEYS = 200            # keys of actor state written per node operation
RESTORE_BYTES = 256 * 1024    # and their bytes at most (the operation is one message)


class StateItem(msgspec.Struct, kw_only=True):
    """One key of actor state in a backup: where it is and its value (packed, not sealed)."""

    realm: str
    category: str
    key: str
    value: bytes


class Backup(msgspec.Struct, kw_only=True):
    """A backup file: the kept desired-state records by key (as stored) and the bundles they name,
    by digest, and the actor state. ``v``: its format."""

    format: Literal["beach-backup"] = "beach-backup"
    v: int = VERSION
    when: float = 0.0
    desired: dict[str, Any]
    bundles: dict[str, bytes]
    state: list[StateItem] = []  # (backups of earlier releases have none)

    def __post_init__(self) -> None:
        if self.v > VERSION:
            raise ValueError(f"a backup of format {self.v}, from a newer beach")


async def backup(client: AsyncBeach) -> Backup:
    """The desired state and the bundles it needs."""
    records = {key: value for key, (value, _) in (await desired.everything(await client._desired())).items()
               if key.startswith(KEPT)}
    bundles = {}
    for record in records.values():
        if isinstance(record, CodeVersion) and record.digest not in bundles:
            bundles[record.digest] = await codestore.fetch(client.session, record.digest)
    realm = authority.scope(client.session.config)  # a realm admin reads its realm's state only
    state = [StateItem(realm=item["realm"], category=item["category"], key=item["key"], value=item["value"])
             for item in await stateview.read(client.session, realm)]
    return Backup(when=time.time(), desired=records, bundles=bundles, state=state)


def write(path: str | os.PathLike[str], content: Backup) -> int:
    """Write a backup to ``path`` (readable by its owner only: it holds code); return its size."""
    data = wire.pack(content)
    descriptor = os.open(os.fspath(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "wb") as f:
        f.write(data)
    return len(data)


def read(path: str | os.PathLike[str]) -> Backup:
    """A backup read back from ``path``; raises `UsageError` naming what is wrong with the file."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise UsageError(f"cannot read backup {os.fspath(path)}: {err.strerror or err}") from None
    return typed.decode(data, Backup, f"{os.fspath(path)} is not a beach backup", UsageError)


async def restore(client: AsyncBeach, content: Backup) -> dict[str, int]:
    """Upload the backup's bundles (checked against their digests) and write its records; return
    how many of each. Raises `BundleError` for a damaged bundle, `UsageError` when a node refuses."""
    client.session.require_admin("restore")
    for digest, data in content.bundles.items():
        verify(data, digest)
        await codestore.upload(client.session, Bundle(data, digest, len(data), 0))
    records = {k: v for k, v in content.desired.items() if k.startswith(KEPT)}
    await _restore_state(client, content.state)  # first: the actors restarted below find it
    if records:
        response = await client._change_desired(put=records)
        if not response.isSuccess:
            raise Refused(f"the desired state was not restored: {response.error}")
    return counts(msgspec.structs.replace(content, desired=records))


async def _restore_state(client: AsyncBeach, items: list[StateItem]) -> None:
    """Write the backup's actor state, a category at a time, in chunks a node operation carries."""
    chunks: list[tuple[str, str, dict[str, bytes]]] = []
    size = 0
    for item in sorted(items, key=lambda i: (i.realm, i.category)):
        last = chunks[-1] if chunks else None
        if (last is None or (last[0], last[1]) != (item.realm, item.category) or len(last[2]) >= RESTORE_KEYS
                or size + len(item.value) > RESTORE_BYTES):
            chunks.append((item.realm, item.category, {}))
            size = 0
        chunks[-1][2][item.key] = item.value
        size += len(item.value) + len(item.key)
    for realm, category, put in chunks:
        response = await client._change_state({"realm": realm, "category": category, "put": put}, realm)
        if not response.isSuccess:
            raise Refused(f"the actor state of category {category!r} (realm {realm!r}) was not restored: "
                          f"{response.error}")


def counts(content: Backup) -> dict[str, int]:
    """How many records of each kind (``sup``, ``patrol``, ``code``), bundles and keys of actor
    state a backup holds."""
    kinds = {kind.rstrip("."): sum(1 for k in content.desired if k.startswith(kind)) for kind in KEPT}
    return {**kinds, "bundles": len(content.bundles), "state": len(content.state)}
