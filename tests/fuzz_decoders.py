"""A long fuzz run of every decoder of what comes off the bus (the suite runs a few hundred inputs
each; this runs as many as asked), with the strategies of tests/unit/test_records.py:

    .venv/bin/python -m tests.fuzz_decoders --examples 100000

Exits 1 with the failing input if a decoder raises anything but its own error.
"""

from __future__ import annotations

import argparse
import sys
import time

import msgpack
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from beach import logs, wire
from beach.state import desired, records
from beach.state.records import RecordError
from beach.wire import typed

from .unit.test_records import GOOD, mutations, values


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz_decoders", description=__doc__)
    parser.add_argument("--examples", type=int, default=100_000, help="inputs per decoder (default 100000)")
    args = parser.parse_args()
    run = settings(max_examples=args.examples, deadline=None, database=None,
                   suppress_health_check=list(HealthCheck))
    counts: dict[str, int] = {}

    def count(name: str) -> None:
        counts[name] = counts.get(name, 0) + 1

    def fuzz_record(kind: str, type_: type, good: dict) -> None:
        @run
        @given(value=values | mutations(good))
        def record(value: object) -> None:
            count(kind)
            try:
                records.check(type_, value, "fuzz")
            except RecordError:
                pass

        record()

    for kind, (type_, good) in sorted(GOOD.items()):
        started = time.monotonic()
        fuzz_record(kind, type_, good)
        print(f"{kind:12} {counts[kind]:>8} inputs in {time.monotonic() - started:6.1f}s: no stray exception")

    @run
    @given(key=st.sampled_from(["sup.a.b", "patrol.x", "lease.supervisor", "x"]), value=values)
    def desired_records(key: str, value: object) -> None:
        count("desired")
        try:
            desired.check(key, value)
        except RecordError:
            pass

    @run
    @given(body=st.binary(max_size=300) | values.map(lambda v: msgpack.packb(v, use_bin_type=True)))
    def envelopes(body: bytes) -> None:
        count("envelopes")
        for decode in (wire.unpack_request, wire.unpack_reply):
            try:
                decode(body)
            except ValueError:
                pass
        try:
            typed.decode(body, logs.LogLine, "line", ValueError)
        except ValueError:
            pass

    for name, fuzz in (("desired", desired_records), ("envelopes", envelopes)):
        started = time.monotonic()
        fuzz()
        print(f"{name:12} {counts[name]:>8} inputs in {time.monotonic() - started:6.1f}s: no stray exception")
    return 0


if __name__ == "__main__":
    sys.exit(main())
