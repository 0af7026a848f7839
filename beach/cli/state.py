"""``beach state``: the actor state of a category — its keys and values, one key, or deleting one."""

from __future__ import annotations

import argparse

from beach import output, wire
from beach.cli.common import add_config, add_json, add_realm, connected, emit, fail
from beach.client.core import AsyncBeach
from beach.state import stateview

VALUE_WIDTH = 60  # characters of a value shown in a table (--json shows it whole)


def _short(value: object) -> str:
    text = output.dumps_line(value)
    return text if len(text) <= VALUE_WIDTH else text[:VALUE_WIDTH - 1] + "…"


def state(args: argparse.Namespace) -> int:
    """List the actor state of CATEGORY (its keys, values, sizes and revisions), show one KEY, or
    delete one (--delete KEY: an admin operation, carried out by a node and audited). Reading needs
    admin rights (a realm admin reads its own realm's)."""

    async def run(client: AsyncBeach) -> int:
        realm, category = args.realm or client.realm, args.category  # (the config's realm, else global)
        if args.delete is not None:
            response = await client.deleteState(category, args.delete, realm)
            if not response.isSuccess:
                return fail(f"state key {args.delete!r} not deleted: {output.describe_failure(response)}")
            result = {"realm": realm, "category": category, "deleted": args.delete}
            emit(args, result, ("realm", "category", "deleted"), lambda: [[realm, category, args.delete]])
            return 0
        if args.key is not None:
            revision, packed = await stateview.read_key(client.session, realm, category, args.key)
            if packed is None:
                return fail(f"no state key {args.key!r} in category {category!r} of realm {realm!r}")
            value = wire.unpack(packed)
            if args.json:
                emit(args, {"key": args.key, "value": value, "bytes": len(packed), "revision": revision})
            else:
                print(output.dumps(value))
            return 0
        found = await stateview.read(client.session, realm, category)
        items = [{"key": i["key"], "value": wire.unpack(i["value"]), "bytes": len(i["value"]),
                  "revision": i["revision"]} for i in found]
        emit(args, items, ("key", "value", "bytes", "revision"),
             lambda: [[i["key"], _short(i["value"]), output.size(i["bytes"]), i["revision"]] for i in items],
             title=f"{category} ({realm}): {len(items)} key(s)")
        return 0

    return connected(args, run)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``state``."""
    p = sub.add_parser("state", help="the actor state of a category: keys and values", description=state.__doc__)
    add_config(p)
    p.add_argument("category", metavar="CATEGORY", help="the category whose state to show")
    p.add_argument("key", metavar="KEY", nargs="?", help="show only this key's value")
    add_realm(p, "the realm of the category")
    p.add_argument("--delete", metavar="KEY", help="delete this key (admin; audited)")
    add_json(p)
    p.set_defaults(func=state)
