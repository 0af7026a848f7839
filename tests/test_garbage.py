"""State no bad record can poison: garbage written into every bucket by a plain nats-py client
leaves the cluster serving — heartbeats, placement, supervision, the directory and the tools —
and a node restarted over that state comes up. Also: desired state in the previous release's format
is read and acted on; a record from a newer format is refused, not acted on."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

import msgpack
import nats

from beach.beach_api import Beach
from beach.bus.embedded import EmbeddedServer
from beach.state import records
from beach.state.directory import FAILURE_DETECTION

from .conftest import NodeProcess, free_port, holds_for, wait_for, write_config

SPAWN = {"name": "Pong", "categories": ["garbage/old"], "realm": "global", "parameters": {}, "resources": {},
         "ident": None, "trusted": [], "isolated": False, "n_concurrent": 1, "max_concurrent": None,
         "is_drainable": False, "time_to_drain": None, "owner": None, "log_level": None, "timeout": 60.0,
         "strategy": "random", "strategy_hint": None, "restart": "on-failure"}
GARBAGE = {
    "KV_beach_actors": {"global.aaa": b"\xc1 not msgpack", "global.bbb": msgpack.packb([1, 2, 3]),
                        "global.ccc": msgpack.packb({"uid": 5, "realm": None}), "nodot": msgpack.packb({}),
                        "global.ddd": msgpack.packb({"uid": "ddd", "realm": "global", "name": "X", "categories": ["c"],
                                                     "node": "n", "host": "h", "v": 99})},
    "KV_beach_nodes": {"fake-node": msgpack.packb({"id": "fake-node", "cpu": "x", "mem": "lots"}),
                       "bad": b"garbage", "liar": msgpack.packb({"id": "someone-else"})},
    "KV_beach_desired": {"sup.aaa.first": msgpack.packb({"sid": 1}), "sup.aaa.second": b"\x00\x01",
                         "patrol.bad": msgpack.packb({"owner": 3, "actors": "many"}),
                         "sup.aaa.future": msgpack.packb({"sid": "f", "spawn": SPAWN, "restart": "always", "uid": "u",
                                                          "v": 99}),
                         # written by the previous release (no format version): read and acted on
                         "sup.global.oldformat": msgpack.packb({"kind": "actor", "sid": "oldformat", "spawn": SPAWN,
                                                                "restart": "on-failure", "max_restarts": 5,
                                                                "restart_window": 60, "uid": "gone-long-ago",
                                                                "state": "running", "restarts": [], "created": 1.0})},
}


async def plant(url: str) -> None:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        for stream, values in GARBAGE.items():
            bucket = stream[3:]
            for key, body in values.items():
                await js.publish(f"$KV.{bucket}.{key}", body)
    finally:
        await nc.close()


def test_garbage_in_every_bucket_leaves_the_cluster_serving(tmp_path):
    server = EmbeddedServer(free_port(), str(tmp_path / "js"), log_file=str(tmp_path / "nats.log")).start()
    config = write_config(tmp_path / "beach.yaml", server.url, n_processes=1)
    node = NodeProcess(config, "garbage-node", module="nodeagent")
    try:
        with Beach(config) as client:
            node.wait_registered(client)
            sup = client.addActor("Pong", "garbage/sup", restart="on-failure")
            assert sup.isSuccess
            asyncio.run(plant(server.url))
            view = client._core.session.view
            # the old-format supervision record is read and acted on: its actor is started
            wait_for(lambda: client.getActorHandle("garbage/old").getNumAvailable() == 1, 15,
                     what="the previous release's supervised actor to be started")
            assert records.rejected["beach_actors"] >= 4 and records.rejected["beach_nodes"] >= 3
            assert set(view.nodes) == {"garbage-node"}, "fake, bad and lying node entries are not nodes"
            holds_for(lambda: "garbage-node" in view.nodes, FAILURE_DETECTION + 2, "the node staying registered")
            directory = client.getDirectory()
            assert set(directory["realms"]["global"]) >= {"garbage/sup", "garbage/old"}
            assert client.addActor("Pong", "garbage/placed", strategy="resource").isSuccess
            assert client.getActorHandle("garbage/placed").request("ping").isSuccess
            supervised = client.getSupervised()
            assert {r["categories"][0] for r in supervised.values()} == {"garbage/sup", "garbage/old"}
            # supervision still works: a killed actor comes back
            os.kill(view.actors[sup.data["uid"]].pid, signal.SIGKILL)
            wait_for(lambda: client.getActorHandle("garbage/sup").getNumAvailable() == 1
                     and sup.data["uid"] not in view.actors, 15, what="the supervised actor to be restarted")
            for command in (["status"], ["actors"], ["nodes"], ["patrol", "list"]):
                result = subprocess.run([sys.executable, "-m", "beach.cli", *command, str(config)],
                                        capture_output=True, text=True, timeout=60)
                assert result.returncode == 0 and "Traceback" not in result.stderr, (command, result.stderr)
        # a node restarted over that state comes up and serves
        assert node.terminate() == 0
        node = NodeProcess(config, "garbage-node-2", module="nodeagent")
        with Beach(config) as client:
            node.wait_registered(client)
            wait_for(lambda: client.getActorHandle("garbage/sup").getNumAvailable() == 1, 15,
                     what="the supervised actors to be restarted on the new node")
            assert client.getActorHandle("garbage/sup").request("ping").isSuccess
            assert client.flush()
        assert node.terminate() == 0
        log = (tmp_path / "nats.log").read_text()
        assert "panic" not in log.lower()
    finally:
        node.terminate()
        server.stop()
