"""Capture what a release of beach writes and sends, for the test that this one still reads it.

Run with that release's code first on the path (``PYTHONPATH=/path/to/checkout python
tests/data/capture_release.py OUT.json``): it starts a nats-server and a node agent, drives the
release's own client through spawns (supervised, with every option), requests, a patrol spec, a
deployed version, a cordon and the control operations, records every message on ``beach.>`` and
the inboxes, and at the end the raw bytes of every key of the directory and desired-state buckets.
Nothing here is beach code of this tree: whatever ``beach`` the path finds writes the bytes.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nats
import yaml

HERE = Path(__file__).resolve().parent.parent  # tests/
SKIP = ("beach.log.", "beach.audit.", "$JS.", "$O.")  # log lines and JetStream's own traffic are not ours


async def capture(out: Path) -> None:
    import beach
    from beach.bus.embedded import EmbeddedServer
    from beach.client.core import AsyncBeach
    from beach.code import deploy
    from beach.operations import rollout

    tmp = Path(tempfile.mkdtemp(prefix="beach-capture-"))
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = EmbeddedServer(port, str(tmp / "js"), name="capture", log_file=str(tmp / "nats.log")).start()
    config = tmp / "beach.yaml"
    config.write_text(yaml.safe_dump({"code_directory": str(HERE / "actors"), "n_processes": 1,
                                      "admin_token": "capture-token", "nats": {"servers": [server.url]},
                                      "code": {"cache": str(tmp / "cache")}}))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.environ.get("PYTHONPATH", ""), str(HERE / "modules")]))
    agent = subprocess.Popen([sys.executable, "-m", "nodeagent", str(config), "--node-id", "capture-node"],
                             env=env, start_new_session=True)
    messages: list[dict[str, str]] = []
    raw = await nats.connect(server.url)

    async def keep(msg) -> None:
        if not msg.subject.startswith(SKIP) and len(messages) < 1000:
            messages.append({"subject": msg.subject, "reply": msg.reply or "",
                             "data": base64.b64encode(msg.data).decode()})

    await raw.subscribe(">", cb=keep)
    try:
        client = await AsyncBeach.open(str(config))
        while "capture-node" not in client.session.view.nodes:
            await asyncio.sleep(0.1)
        spawned = await client.addActor("AsyncEcho", ["capture/echo", "capture/more"], strategy="resource",
                                        parameters={"x": 1, "_secret": "s"}, resources={"gpu": 0},
                                        secretIdent="me", trustedIdents=["you"], n_concurrent=2,
                                        max_concurrent=50, is_drainable=True, time_to_drain=3600.0,
                                        owner="capture", log_level="INFO", restart="on-failure", max_restarts=3,
                                        restart_window=30.0, timeout=30.0)
        assert spawned.isSuccess, spawned
        plain = await client.addActor("Pong", "capture/pong")
        assert plain.isSuccess, plain
        handle = client.getActorHandle("capture/echo", ident="you")
        assert (await handle.arequest("echo", {"n": 1, "l": [1, 2], "b": b"\x00"})).isSuccess
        await handle.arequest("nope", {})
        await handle.ashoot("echo", {"n": 2})
        await handle.abroadcast("echo", {"n": 3})
        await (await handle.arequestFromAll("echo", {"n": 4})).wait(5)
        await client.getActorHandle("capture/empty").arequest("x", timeout=0.5)
        await client.applyPatrol({"owner": "capture", "realm": "global", "actors": [
            {"name": "p", "actor": "Pong", "category": "capture/patrol", "instances": {"per_node": 1, "max": 3},
             "strategy": "random", "parameters": {"k": "v"}, "isIsolated": False}]})
        code = tmp / "code"
        code.mkdir()
        (code / "Hello.py").write_text("from beach.actor import Actor\n\nclass Hello(Actor):\n    pass\n")
        await deploy.deploy(client, "global", code, "v1")
        await client.addToCategory(plain.data["uid"], "capture/extra")
        await client.removeFromCategory(plain.data["uid"], "capture/extra")
        await client.getStacks(plain.data["uid"])
        await client.getLoadInfo()
        await rollout.cordon(client, "capture-node", True)
        await asyncio.sleep(3)  # the supervisor's lease, a patrol round, heartbeats
        kv = {}
        js = raw.jetstream()
        for bucket in ("beach_actors", "beach_nodes", "beach_desired"):
            store = await js.key_value(bucket)
            kv[bucket] = {}
            for key in await store.keys():
                entry = await store.get(key)
                kv[bucket][key] = base64.b64encode(entry.value).decode()
        await rollout.cordon(client, "capture-node", False)
        await client.stopActors(withId=plain.data["uid"])
        await client.flush()
        await asyncio.sleep(0.5)
        await client.close()
        version = getattr(beach, "__version__", "?")
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(beach.__file__).parent, capture_output=True,
                                text=True).stdout.strip()
        out.write_text(json.dumps({"beach": version, "commit": commit, "captured": time.strftime("%Y-%m-%d"),
                                   "kv": kv, "messages": messages}, indent=1) + "\n")
    finally:
        await raw.close()
        agent.terminate()
        agent.wait(30)
        server.stop()


if __name__ == "__main__":
    asyncio.run(capture(Path(sys.argv[1])))
