"""The blocking face (`Beach`) drives its event loop from the calling thread (`DrivenLoop`): what
must keep working when nobody calls, from many threads, and with futures polled by hand."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from beach.beach_api import Beach

from .conftest import wait_for


def test_an_idle_script_keeps_a_live_connection_and_a_current_directory(beach: Beach, config_path: Path) -> None:
    with Beach(config_path) as idle:
        nc = idle._core.session.nc
        pongs = nc._pongs_received
        time.sleep(5)  # longer than the client's ping interval times the pings it may miss: nobody calls
        assert nc.is_connected and nc.stats["reconnects"] == 0, "an idle script must keep its connection"
        assert nc._pongs_received >= pongs + 2, "its pings were answered while it slept"
        uid = beach.addActor("Pong", "idle/seen").data["uid"]
        # getDirectory() reads the view without running anything: only the helper thread applies updates
        wait_for(lambda: uid in idle.getDirectory()["reverse"], 10, what="the idle client's view to follow")
        assert idle.getActorHandle("idle/seen").request("ping", {"x": 1}, timeout=10).data["echo"] == {"x": 1}


def test_futures_polled_with_is_finished_complete_with_no_other_call(beach: Beach) -> None:
    beach.addActor("Pong", "idle/futures")
    handle = beach.getActorHandle("idle/futures")
    futures = [handle.request("ping", {"n": i}, isWithFuture=True) for i in range(50)]
    deadline = time.monotonic() + 20
    while not all(f.isFinished() for f in futures):
        assert time.monotonic() < deadline, "futures polled by hand never finished"
    assert sorted(f.getNewResults()[0].data["echo"]["n"] for f in futures) == list(range(50))
    for wait in ("waitForResults", "waitAll"):
        waited = handle.request("ping", {"n": wait}, isWithFuture=True)
        started = time.monotonic()
        assert getattr(waited, wait)(10)
        assert time.monotonic() - started < 5, f"{wait} saw its result only at its timeout"
        assert waited.getAllResults()[0].data["echo"] == {"n": wait}


def test_many_threads_share_one_client(beach: Beach) -> None:
    beach.addActor("Pong", "idle/threads")
    handle = beach.getActorHandle("idle/threads")
    got: dict[int, list[int]] = {}

    def work(t: int) -> None:
        got[t] = [handle.request("ping", {"n": i}, timeout=10).data["echo"]["n"] for i in range(100)]

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert {t: v for t, v in got.items()} == {t: list(range(100)) for t in range(8)}
