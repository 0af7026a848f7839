"""Beach beside its peers: raw nats-py, beach, Ray actors and Thespian, the same echo calls in one run.

Ray and Thespian are not beach's dependencies: they live in a venv of their own, made when asked::

    .venv/bin/python benchmarks/peers/run.py --install      # once: creates benchmarks/peers/.venv
    .venv/bin/python benchmarks/peers/run.py [--quick]

Each system echoes a small dict from one actor (one responder process for raw nats-py), called
sequentially and with 64 calls in flight; beach twice: its async API, and the seed's blocking API
(``request()``, and ``isWithFuture=True`` futures for 64 in flight). Everything runs on 127.0.0.1
and is stopped at the end. Without the peers' venv, Ray and Thespian are left out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import msgpack
import nats

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from _harness import (  # noqa: E402
    ECHO_RESPONDER,
    TIMEOUT,
    Result,
    Table,
    checked,
    cluster,
    in_flight,
    main_guard,
    raw_peer,
    sequential,
    wait_registered,
)

from beach.client.core import AsyncBeach  # noqa: E402

VENV = HERE / ".venv"
PEERS = {"ray": ("ray==2.60.0", "ray_echo.py"), "thespian": ("thespian==4.0.1", "thespian_echo.py")}


def install() -> None:
    """Create the peers' venv and install Ray and Thespian into it."""
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin" / "pip"), "install", "--quiet", *(p for p, _ in PEERS.values())], check=True)


def run_peer(script: str, n_seq: int, n_par: int) -> dict[str, float]:
    """Run one peer's script in the peers' venv; its JSON figures."""
    out = subprocess.run([str(VENV / "bin" / "python"), str(HERE / script), str(n_seq), str(n_par)],
                         capture_output=True, text=True, timeout=600, start_new_session=True)
    if out.returncode != 0:
        raise RuntimeError(f"{script} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


async def beach_and_raw(bench, n_seq: int, n_par: int) -> dict[str, dict[str, float]]:
    client = await AsyncBeach.open(bench.config)
    results: dict[str, dict[str, float]] = {}
    try:
        await wait_registered(client, bench.node, bench.node_log)
        checked(await client.addActor("Echo", "bench/echo"))
        handle = client.getActorHandle("bench/echo")
        with raw_peer(ECHO_RESPONDER, bench.url, "bench.raw.echo"):
            nc = await nats.connect(bench.url)
            try:
                async def raw(i: int) -> None:
                    await nc.request("bench.raw.echo", msgpack.packb({"n": i}), timeout=TIMEOUT)

                async def beach(i: int) -> None:
                    checked(await handle.arequest("echo", {"n": i}))

                for name, call in (("raw nats-py", raw), ("beach", beach)):
                    await in_flight(call, 500)  # warm up
                    seq: Result = await sequential(call, n_seq)
                    par: Result = await in_flight(call, n_par)
                    results[name] = {"sequential": seq.rate, "p50_us": seq.p50 or 0.0, "in_flight_64": par.rate}
            finally:
                await nc.close()
    finally:
        await client.close()
    return results


SEED = "beach, blocking API"


def seed_api(bench, n_seq: int, n_par: int) -> dict[str, float]:
    """The seed's blocking API on the same actor: sequential ``request()``, and 64 in flight through
    ``request(..., isWithFuture=True)`` polled with ``isFinished()`` (`benchmarks/seed_api.py`)."""
    from seed_api import blocking_futures, blocking_sequential

    from beach.beach_api import Beach

    with Beach(bench.config) as client:
        handle = client.getActorHandle("bench/echo", timeout=TIMEOUT)
        blocking_sequential(handle, 300)  # warm up
        seq = blocking_sequential(handle, n_seq)
        par = blocking_futures(handle, n_par)
    return {"sequential": seq.rate, "p50_us": seq.p50 or 0.0, "in_flight_64": par.rate}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--install", action="store_true", help="create the peers' venv (Ray, Thespian) and exit")
    parser.add_argument("--quick", action="store_true", help="a short run")
    args = parser.parse_args()
    if args.install:
        install()
        return 0
    peers = (VENV / "bin" / "python").exists()
    if not peers:
        print(f"no peers venv at {VENV}: Ray and Thespian left out (run with --install first)", file=sys.stderr)
    n_seq, n_par = (300, 2000) if args.quick else (2000, 10000)
    with tempfile.TemporaryDirectory(prefix="beach-peers-") as tmp, cluster(tmp) as bench:
        figures = asyncio.run(beach_and_raw(bench, n_seq, n_par))
        figures[SEED] = seed_api(bench, n_seq, n_par)
    for name, (_, script) in PEERS.items() if peers else ():
        figures[name] = run_peer(script, n_seq, n_par)
    raw = figures["raw nats-py"]
    table = Table(header=("system", "sequential req/s", "p50 µs", "64 in flight req/s", "vs raw (64 in flight)"))
    for name, f in figures.items():
        table.row(name if name in ("raw nats-py", "beach", SEED) else f.get("peer", name), f"{f['sequential']:,.0f}",
                  f"{f['p50_us']:,.0f}", f"{f['in_flight_64']:,.0f}", f"{f['in_flight_64'] / raw['in_flight_64']:.2f}")
    print(table)
    return 0


if __name__ == "__main__":
    main_guard(main)
