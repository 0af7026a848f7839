"""What ``beach logs --request ID`` costs: a scan of the log stream, against the alternative of a
subject per request that the server would filter on.

The script starts, on 127.0.0.1 only, one nats-server (temporary store) and fills two streams with
the same log lines (``--lines`` of them, each ``{'msg': ..., 'req': <24 hex>, ...}`` as
`beach.logs.record` makes them, one request id per 4 lines, sealed with a random key as a sealed
cluster's are):

* ``beach_logs`` as beach stores them — subject ``beach.log.app.<realm>.<uid>``, the request id in
  the (sealed) body — read the way ``beach logs --request ID`` reads it (`beach.logs.read` with
  `beach.logs.accept`): every line is fetched, opened and checked;
* ``alt_logs`` with the request id as a last subject token (``alt.log.app.<realm>.<uid>.<req>``),
  read with a subject filter ``alt.log.app.*.*.<req>`` that the server applies: what beach chose
  not to do.

It prints, per case: seconds to find the 4 lines of one request (median of 3), lines scanned per
second, and the server's memory after filling each stream (its per-subject index grows with the
number of distinct subjects). Run it from the repository root::

    .venv/bin/python benchmarks/logs_request.py [--quick] [--lines N] [--out FILE]
"""

from __future__ import annotations

import asyncio
import os
import statistics
import tempfile
import time

import nats
import psutil
from _harness import arguments, free_port, main_guard, publish
from nats.js.api import StorageType, StreamConfig

from beach import logs, wire
from beach.bus.embedded import EmbeddedServer
from beach.security.seal import Sealer

PER_REQUEST = 4
UIDS = [os.urandom(16).hex() for _ in range(20)]


async def fill(nc: nats.NATS, sealer: Sealer, n: int, root: str, per_request_subject: bool) -> str:
    """Publish ``n`` lines; return the request id of one in the middle."""
    js = nc.jetstream()
    wanted = ""
    source = logs.Source("app", "node-1", "host-1", "bench", "", "Bench", ["bench/logs"])
    for i in range(n):
        req = wanted if i % PER_REQUEST and wanted and i < n // 2 + PER_REQUEST else os.urandom(12).hex()
        if i == n // 2:
            wanted = req
        source.uid = UIDS[i % len(UIDS)]
        subject = root + source.subject.removeprefix("beach.log") + (f".{req}" if per_request_subject else "")
        body = wire.pack(logs.record(source, 20, f"line {i} of a benchmark that fills the log stream", "bench",
                                     request=req))
        await nc.publish(subject, sealer.seal(f"{subject} ", body))
        if i % 1000 == 999:
            await nc.flush()
    await nc.flush()
    await js.stream_info("beach_logs")
    return wanted


async def find(nc: nats.NATS, sealer: Sealer, stream: str, subject: str, req: str) -> tuple[float, int]:
    started = time.perf_counter()
    found = [line async for line in logs.read(nc, subject, accept=logs.accept(request=req), sealer=sealer,
                                              stream=stream)]
    return time.perf_counter() - started, len(found)


async def run(lines: int) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedServer(free_port(), os.path.join(tmp, "js"), name="bench-logs").start()
        try:
            nc = await nats.connect(server.url)
            js = nc.jetstream()
            sealer = Sealer([os.urandom(32)])
            process = psutil.Process(server.process.pid)
            rows = []
            for stream, root, per_request in (("beach_logs", "beach.log", False), ("alt_logs", "alt.log", True)):
                await js.add_stream(StreamConfig(name=stream, subjects=[f"{root}.>"], storage=StorageType.FILE))
                before = process.memory_info().rss
                req = await fill(nc, sealer, lines, root, per_request)
                rss = (process.memory_info().rss - before) / 2**20
                subject = f"{root}.app.*.*" + (f".{req}" if per_request else "")
                times = []
                for _ in range(3):
                    seconds, found = await find(nc, sealer, stream, subject, req)
                    assert found == PER_REQUEST, (stream, found)
                    times.append(seconds)
                seconds = statistics.median(times)
                how = "scan (beach)" if not per_request else "server filter, subject per request"
                rows.append(f"| {how} | {lines:,} | {seconds:.3f} | {lines / seconds:,.0f} | {rss:,.0f} |")
            await nc.close()
        finally:
            server.stop()
    return ("| --request ID | lines in the stream | seconds | lines/s scanned | server memory added (MiB) |\n"
            "|---|---|---|---|---|\n" + "\n".join(rows) + "\n")


def main() -> int:
    parser = arguments(__doc__ or "")
    parser.add_argument("--lines", type=int, default=200_000, help="log lines in the stream (default 200,000)")
    args = parser.parse_args()
    publish(asyncio.run(run(10_000 if args.quick else args.lines)), args.out)
    return 0


if __name__ == "__main__":
    main_guard(main)
