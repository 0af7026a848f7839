"""Deploying realms' code over the bus: what ``beach deploy``, ``beach code list`` and ``beach code
rollback`` do, as coroutines over a connected `AsyncBeach`.

A deploy packs the directory (refused before any upload when it is empty, holds a link or is over
``code.max_bundle_bytes``), uploads the bundle unless the store holds it already, then asks a node
to record the version and make it current; the node checks the bundle is there first. Both steps
need admin rights: the NATS credentials' (the object store is theirs to write) or the admin
token's (the node checks it).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from beach.code import bundle
from beach.code import store as codestore
from beach.code.store import Progress
from beach.errors import Refused, UsageError
from beach.state import desired
from beach.state.desired import CodeCurrent, CodeVersion
from beach.state.patrol import PatrolSpec
from beach.wire import subjects

if TYPE_CHECKING:
    from beach.client.core import AsyncBeach


def _next_version(known: list[tuple[CodeVersion, bool]]) -> str:
    taken = {v.version for v, _ in known}
    n = len(known) + 1
    while f"v{n}" in taken:
        n += 1
    return f"v{n}"


async def deploy(client: AsyncBeach, realm: str, directory: str | os.PathLike[str], version: str | None = None,
                 progress: Progress | None = None) -> CodeVersion:
    """Upload ``directory`` as the code of ``realm`` and make it the realm's current version
    (named ``version``, default ``v<n>``); return the version record. Raises `BundleError` for a
    directory that cannot be deployed, `UsageError` for a bad realm or version name or a version
    name already taken by other code, `PermissionDenied` / `BusError` from the bus."""
    client.session.require_admin("deploy")
    packed = bundle.pack(directory, client.session.config.code.max_bundle_bytes)
    return await deploy_bundle(client, realm, packed, bundle.requirements(directory), version, progress)


async def deploy_bundle(client: AsyncBeach, realm: str, packed: bundle.Bundle, requirements: list[str],
                        version: str | None = None, progress: Progress | None = None) -> CodeVersion:
    """`deploy` of a bundle packed already (with its pip ``requirements``)."""
    realm = subjects.check_realm(realm)
    if version is not None:
        subjects.check_version(version)
    config = client.session.config
    client.session.require_admin("deploy")
    down = client.session.view.jetstream_down
    if down is not None:  # the upload would only wait out its timeouts
        raise Refused(f"realm {realm!r} not deployed: {down}")
    kv = await client._desired()
    known = await codestore.versions(kv, realm)
    name = version or _next_version(known)
    same = next((v for v, _ in known if v.version == name), None)
    if same is not None and same.digest != packed.digest:
        raise UsageError(f"realm {realm!r} already has a version {name!r} with other code ({same.digest}): "
                         f"versions are immutable, give the new one another name")
    await codestore.upload(client.session, packed, progress)
    record = same or codestore.version_record(realm, name, packed, client.caller, requirements,
                                              config.sealer is not None)
    current = next((v.version for v, is_current in known if is_current), None)
    put = {codestore.version_key(realm, name): record,
           codestore.current_key(realm): codestore.pointer(realm, name, client.caller, current)}
    response = await client._change_desired(put=put, realm=realm)
    if not response.isSuccess:
        raise Refused(f"realm {realm!r} version {name!r} uploaded but not recorded: {response.error}")
    return record


async def rollback(client: AsyncBeach, realm: str, version: str | None = None) -> CodeCurrent:
    """Make ``version`` (default: the one before the current) the realm's current version again;
    return the new current record. Raises `UsageError` when there is nothing to go back to or the
    version is unknown."""
    realm = subjects.check_realm(realm)
    client.session.require_admin("rollback")
    kv = await client._desired()
    pointer = await codestore.current(kv, realm)
    if pointer is None:
        raise UsageError(f"realm {realm!r} has no deployed code to roll back")
    if version is None:
        version = pointer.previous
        if not version:
            raise UsageError(f"realm {realm!r} has only version {pointer.version!r}: nothing before it")
    target = await codestore.resolve(kv, realm, version)
    assert target is not None
    return await set_current(client, realm, target.version, pointer.version)


async def set_current(client: AsyncBeach, realm: str, version: str, previous: str | None) -> CodeCurrent:
    """Make ``version`` (deployed) the realm's current version, naming ``previous`` as the one
    before it; return the pointer record. Raises `Refused` if the node refuses."""
    record = codestore.pointer(realm, version, client.caller, previous)
    response = await client._change_desired(put={codestore.current_key(realm): record}, realm=realm)
    if not response.isSuccess:
        raise Refused(f"realm {realm!r} not rolled back: {response.error}")
    return record


async def prune(client: AsyncBeach, realm: str, doomed: list[str]) -> list[str]:
    """Forget the versions ``doomed`` of ``realm`` — except the current one, the one before it, and
    any a live actor runs or a supervision record or patrol spec names — and delete from the store
    the bundles no version names any more; return the versions forgotten. Needs admin rights."""
    realm = subjects.check_realm(realm)
    client.session.require_admin("prune")
    kv = await client._desired()
    pointer = await codestore.current(kv, realm)
    kept = {a.version for a in client.session.view.live() if a.realm == realm}
    if pointer is not None:
        kept |= {pointer.version, pointer.previous}
    for record, _ in (await desired.snapshot(kv, "sup.", desired.SupervisionRecord)).values():
        if record.spawn.realm == realm:
            kept.add(record.spawn.version)
    for spec, _ in (await desired.snapshot(kv, "patrol.", PatrolSpec)).values():
        if spec.realm == realm:
            kept |= {entry.version for entry in spec.actors}
    known = [v for v, _ in await codestore.versions(kv)]
    forget = [v for v in known if v.realm == realm and v.version in doomed and v.version not in kept]
    if not forget:
        return []
    response = await client._change_desired(delete=[codestore.version_key(realm, v.version) for v in forget],
                                            realm=realm)
    if not response.isSuccess:
        raise Refused(f"versions of realm {realm!r} not forgotten: {response.error}")
    named = {v.digest for v in known if v not in forget}
    for digest in sorted({v.digest for v in forget} - named):
        await codestore.delete(client.session, digest)
    return [v.version for v in forget]


async def versions(client: AsyncBeach, realm: str | None = None) -> list[tuple[CodeVersion, bool]]:
    """Every deployed version (of ``realm``, or of every realm), oldest first, with whether it is current."""
    return await codestore.versions(await client._desired(), None if realm is None else subjects.check_realm(realm))
