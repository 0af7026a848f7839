"""The REST bridge, run for real (``python -m beach.restbridge``) against the session node and
driven with httpx: the original's parameters and headers, every status code, both body forms,
msgpack, from-all, 200 concurrent requests, HTTPS with a kept self-signed certificate."""

from __future__ import annotations

import asyncio
import json
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgpack
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import free_port, wait_for

SECRET = "sesame"


class Bridge:
    """A REST bridge process on a free port."""

    def __init__(self, config: Path, *extra: str, scheme: str = "http") -> None:
        self.port = free_port()
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.process = subprocess.Popen([sys.executable, "-m", "beach.restbridge", str(self.port), str(config),
                                         "global", *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                        text=True)

        def up() -> bool:
            assert self.process.poll() is None, self.process.communicate()[1]
            try:
                return httpx.get(f"{self.url}/healthz", verify=False, timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 30, 0.1, what="the bridge to answer /healthz")

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
        try:
            _, stderr = self.process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, stderr = self.process.communicate()
        assert "Traceback" not in stderr, stderr
        return stderr


@pytest.fixture(scope="module")
def bridge(node, config_path) -> Iterator[Bridge]:
    running = Bridge(config_path, "-s", SECRET)
    yield running
    running.stop()


def post(bridge: Bridge, category: str, **kwargs) -> httpx.Response:
    return httpx.post(f"{bridge.url}/{category}", timeout=30, **kwargs)


def test_the_originals_form_parameters(beach, bridge):
    assert beach.addActor("Pong", "rest/pong").isSuccess
    resp = post(bridge, "rest/pong", data={"_action": "ping", "_secret": SECRET, "a": "1", "b": "two"})
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/json"
    assert resp.json()["echo"] == {"a": "1", "b": "two"}
    resp = post(bridge, "rest/pong", params={"_action": "ping", "_secret": SECRET, "q": "x"},
                data={"_json_data": json.dumps({"n": 3, "nested": {"k": [1, 2]}})})
    assert resp.status_code == 200 and resp.json()["echo"] == {"q": "x", "n": 3, "nested": {"k": [1, 2]}}
    resp = post(bridge, "rest/pong", data={"_action": "ping", "_secret": SECRET, "_format": "msgpack", "a": "1"})
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/msgpack"
    assert msgpack.unpackb(resp.content)["echo"] == {"a": "1"}
    resp = post(bridge, "rest/pong", json={"_action": "ping", "_secret": SECRET, "a": 1})
    assert resp.status_code == 200 and resp.json()["echo"] == {"a": 1}, "a JSON body works too"


def test_the_headers_form(beach, bridge):
    assert beach.addActor("Pong", "rest/pong").isSuccess
    headers = {"Beach-Action": "ping", "Beach-Secret": SECRET, "Beach-Timeout": "5"}
    resp = post(bridge, "rest/pong", headers=headers, data={"a": "1", "_action_ignored": "x"})
    assert resp.status_code == 200 and resp.json()["echo"] == {"a": "1"}
    resp = post(bridge, "rest/pong", headers={**headers, "Beach-Secret": "wrong"})
    assert resp.status_code == 401


def test_every_status_code(beach, bridge):
    assert beach.addActor("Pong", "rest/pong").isSuccess
    assert beach.addActor("Faulty", "rest/faulty").isSuccess
    assert beach.addActor("Sleeper", "rest/sleepy").isSuccess
    ok = {"_secret": SECRET}
    resp = post(bridge, "rest/pong", data={"_action": "ping", "_secret": "nope"})
    assert resp.status_code == 401 and resp.json()["error"] == "wrong or missing secret"
    assert post(bridge, "rest/pong", data={"_action": "ping"}).status_code == 401
    resp = post(bridge, "rest/pong", headers={"Beach-Secret": SECRET})  # without _action, the headers count
    assert resp.status_code == 400 and "no request type" in resp.json()["error"]
    resp = post(bridge, "rest/faulty", data={**ok, "_action": "raise"})
    assert resp.status_code == 400 and resp.json()["error"] == "exception: RuntimeError: handler blew up on purpose"
    assert "handler blew up on purpose" in resp.json()["data"]["st"]
    resp = post(bridge, "rest/faulty", data={**ok, "_action": "fail"})
    assert resp.status_code == 400 and resp.json() == {"error": "it went wrong", "data": {"why": "test"}}
    resp = post(bridge, "rest/sleepy", data={**ok, "_action": "sleep", "_json_data": json.dumps({"seconds": 3}),
                                             "_timeout": "0.5"})
    assert resp.status_code == 408 and resp.json()["error"] == "timeout"
    resp = post(bridge, "rest/nobody", data={**ok, "_action": "ping"})
    assert resp.status_code == 404 and "no actor available in category 'rest/nobody'" in resp.json()["error"]
    assert httpx.get(f"{bridge.url}/rest/pong", params={**ok, "_action": "ping"}).status_code == 405


@pytest.mark.parametrize("data, error", [
    ({"_json_data": "{not json"}, "_json_data is not valid JSON"),
    ({"_json_data": "[1, 2]"}, "_json_data must be a JSON object"),
    ({"_timeout": "soon"}, "_timeout must be a number"),
    ({"_n_retries": "-1"}, "_n_retries must be 0 or more"),
    ({"_format": "xml"}, "_format must be json or msgpack"),
])
def test_bad_input_is_a_clear_400(beach, bridge, data, error):
    assert beach.addActor("Pong", "rest/pong").isSuccess
    resp = post(bridge, "rest/pong", data={"_action": "ping", "_secret": SECRET, **data})
    assert resp.status_code == 400 and error in resp.json()["error"], resp.text


def test_bodies_that_cannot_be_sent(beach, bridge):
    resp = post(bridge, "rest/pong", params={"_action": "ping", "_secret": SECRET}, content=b"x" * (2 * 1024 * 1024),
                headers={"content-type": "application/octet-stream"})
    assert resp.status_code == 413 and "over the bus's limit" in resp.json()["error"]
    resp = post(bridge, "rest/pong", params={"_action": "ping", "_secret": SECRET}, content=b"{nope",
                headers={"content-type": "application/json"})
    assert resp.status_code == 400 and "not valid JSON" in resp.json()["error"]
    resp = post(bridge, "a//b", data={"_action": "ping", "_secret": SECRET})
    assert resp.status_code == 400 and "empty segment" in resp.json()["error"]


def test_from_all_returns_the_successful_replies(beach, bridge):
    uids = {beach.addActor("Pong", "rest/many").data["uid"] for _ in range(2)}
    resp = post(bridge, "rest/many", data={"_action": "ping", "_secret": SECRET, "_from_all": "true"})
    assert resp.status_code == 200 and {r["uid"] for r in resp.json()} == uids
    resp = post(bridge, "rest/none", data={"_action": "ping", "_secret": SECRET, "_from_all": "true"})
    assert resp.status_code == 404


def test_200_concurrent_requests_are_all_answered_correctly(beach, bridge):
    for _ in range(2):
        assert beach.addActor("AsyncEcho", "rest/echo").isSuccess

    async def flood() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=200)) as client:
            return await asyncio.gather(*(client.post(f"{bridge.url}/rest/echo", data={
                "_action": "echo", "_secret": SECRET, "i": str(i)}) for i in range(200)))

    started = time.monotonic()
    responses = asyncio.run(flood())
    print(f"\n200 concurrent HTTP requests answered in {time.monotonic() - started:.2f}s")
    assert [r.status_code for r in responses] == [200] * 200
    assert sorted(int(r.json()["echo"]["i"]) for r in responses) == list(range(200))


def test_health_and_openapi(bridge):
    health = httpx.get(f"{bridge.url}/healthz").json()
    assert health["ok"] is True and health["realm"] == "global" and health["nodes"] >= 1
    spec = httpx.get(f"{bridge.url}/openapi.json").json()
    assert spec["openapi"].startswith("3.") and "/{category}" in spec["paths"]
    assert {p["name"] for p in spec["paths"]["/{category}"]["post"]["parameters"]} >= {"_action", "_from_all"}
    assert set(spec["paths"]["/{category}"]["post"]["responses"]) == {"200", "400", "401", "404", "405", "408", "413"}


def test_metrics_count_the_bridges_http_requests_and_its_calls(bridge, beach):
    assert beach.addActor("Pong", "rest/metered").isSuccess
    for _ in range(3):
        assert httpx.post(f"{bridge.url}/rest/metered", data={"_action": "ping", "_secret": SECRET}).status_code == 200
    assert httpx.post(f"{bridge.url}/rest/nobody-here",  # tried twice: one retry
                      data={"_action": "ping", "_secret": SECRET, "_n_retries": "1"}).status_code == 404
    text = httpx.get(f"{bridge.url}/metrics").text
    assert shutil.which("promtool"), "needs promtool: apt-get install prometheus (as .ci/run does)"
    checked = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert checked.returncode == 0 and not checked.stdout.strip() and not checked.stderr.strip(), checked
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    route = (("method", "POST"), ("route", "/{category:path}"))
    assert samples[("beach_restbridge_http_requests_total", (*route, ("status", "200")))] >= 3
    assert samples[("beach_restbridge_http_requests_total", (*route, ("status", "404")))] >= 1
    assert samples[("beach_restbridge_http_request_duration_seconds_count", route)] >= 4
    call = (("category", "rest/metered"), ("outcome", "ok"), ("realm", "global"), ("request_type", "ping"))
    assert samples[("beach_calls_total", call)] == 3
    assert samples[("beach_calls_total", (("category", "rest/nobody-here"), ("outcome", "no_actor"),
                                          ("realm", "global"), ("request_type", "ping")))] == 1
    assert samples[("beach_call_retries_total", (("category", "rest/nobody-here"), ("realm", "global"),
                                                 ("request_type", "ping")))] == 1
    assert samples[("beach_call_retries_total", call[:1] + call[2:])] == 0
    assert any(name == "beach_build_info" for name, _ in samples)


def test_get_with_g_and_https_with_a_kept_self_signed_certificate(beach, config_path, tmp_path):
    assert beach.addActor("Pong", "rest/pong").isSuccess
    cert, key = tmp_path / "rest.crt", tmp_path / "rest.key"
    first = Bridge(config_path, "-g", "--ssl-self-signed", "--ssl-cert", str(cert), "--ssl-key", str(key),
                   scheme="https")
    try:
        resp = httpx.get(f"{first.url}/rest/pong", params={"_action": "ping", "a": "1"}, verify=False)
        assert resp.status_code == 200 and resp.json()["echo"] == {"a": "1"}
        made = cert.read_bytes()
        assert (key.stat().st_mode & 0o777) == 0o600
    finally:
        first.stop()
    second = Bridge(config_path, "--ssl-self-signed", "--ssl-cert", str(cert), "--ssl-key", str(key), scheme="https")
    try:
        assert cert.read_bytes() == made, "the certificate is kept, not made anew at every start"
        assert httpx.post(f"{second.url}/rest/pong", data={"_action": "ping"}, verify=False).status_code == 200
    finally:
        second.stop()


def test_bad_config_and_dead_bus_are_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "beach.restbridge", "8099", str(tmp_path / "none.yaml"), "global"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and result.stderr.startswith("beach: config file not found")
    from .conftest import write_config

    dead = write_config(tmp_path / "dead.yaml", f"nats://127.0.0.1:{free_port()}")
    result = subprocess.run([sys.executable, "-m", "beach.restbridge", str(free_port()), str(dead), "global"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and result.stderr.startswith("beach: cannot connect to NATS")
    assert result.stderr.count("\n") == 1
