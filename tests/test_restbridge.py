"""The REST bridge, run for real (``python -m beach.restbridge``) against the session node and
driven with httpx: the original's parameters and headers, every status code, both body forms,
msgpack, from-all, 200 concurrent requests, HTTPS with a kept self-signed certificate."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgpack
import psutil
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from .conftest import LEDGER, free_port, ledger, wait_for, write_config

SECRET = "sesame"
MB = 1024 * 1024


class Bridge:
    """A REST bridge process on a free port."""

    def __init__(self, config: Path, *extra: str, scheme: str = "http") -> None:
        self.config = config
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
    # the exception's kind and message only: the traceback (file paths, beach's insides) stays in beach logs
    assert resp.status_code == 400 and resp.json() == {
        "error": "exception: RuntimeError: handler blew up on purpose", "kind": "exception",
        "data": {"exception": "RuntimeError", "message": "handler blew up on purpose"}}
    assert "Traceback" not in resp.text and ".py" not in resp.text
    resp = post(bridge, "rest/faulty", data={**ok, "_action": "fail"})
    assert resp.status_code == 400 and resp.json() == {"error": "it went wrong", "kind": "failed",
                                                       "data": {"why": "test"}}
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
    # no unbounded wait: every wait finite and capped by the config
    ({"_timeout": "nan"}, "_timeout must be a finite number"),
    ({"_timeout": "inf"}, "_timeout must be a finite number"),
    ({"_timeout": "1e309"}, "_timeout must be a finite number"),
    ({"_timeout": "61"}, "_timeout '61' is over the bridge's limit of 60 (restbridge.max_timeout)"),
    ({"_n_retries": "1000"}, "_n_retries '1000' is over the bridge's limit of 10 (restbridge.max_retries)"),
    ({"_n_retries": "1.5"}, "_n_retries must be a number"),
    ({"_from_all": "maybe"}, "_from_all must be true or false"),
])
def test_bad_input_is_a_clear_400(beach, bridge, data, error):
    assert beach.addActor("Pong", "rest/pong").isSuccess
    resp = post(bridge, "rest/pong", data={"_action": "ping", "_secret": SECRET, **data})
    assert resp.status_code == 400 and error in resp.json()["error"], resp.text
    assert resp.json()["kind"] == "bad_request"


def test_bodies_that_cannot_be_sent(beach, bridge):
    resp = post(bridge, "rest/pong", params={"_action": "ping", "_secret": SECRET}, content=b"x" * (2 * 1024 * 1024),
                headers={"content-type": "application/octet-stream"})
    assert resp.status_code == 415 and "application/octet-stream" in resp.json()["error"]
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
    assert set(spec["paths"]["/{category}"]["post"]["responses"]) == {"200", "400", "401", "404", "405", "408", "413",
                                                                      "415", "502", "503"}


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


# ---------------------------------------------------------------------------- hostile input: bounded, never a 500


def _error(resp: httpx.Response, status: int, kind: str, words: str = "") -> dict:
    """The JSON error of ``resp``, checked: its status, its kind, and that it says ``words``."""
    assert resp.status_code == status and resp.headers["content-type"] == "application/json", (status, resp.text)
    body = resp.json()
    assert body["kind"] == kind and words in body["error"], (kind, words, body)
    return body


def test_a_5000_character_category_is_a_400_and_the_bridge_keeps_serving(beach, bridge):
    assert beach.addActor("Pong", "rest/pong").isSuccess
    for _ in range(3):
        resp = post(bridge, "a" * 5000, params={"_action": "echo", "_secret": SECRET})
        _error(resp, 400, "bad_request", "max_control_line of 4096 bytes")
    assert httpx.get(f"{bridge.url}/healthz").status_code == 200
    assert post(bridge, "rest/pong", data={"_action": "ping", "_secret": SECRET}).status_code == 200


def test_json_that_nests_too_deep_is_a_400_naming_the_limit(beach, bridge):
    assert beach.addActor("Pong", "rest/pong").isSuccess
    ok = {"_action": "ping", "_secret": SECRET}

    def nested(depth: int) -> str:  # {"a": [[...]]}: the object itself is level 1
        return f'{{"_action": "ping", "_secret": "{SECRET}", "a": {"[" * (depth - 1)}{"]" * (depth - 1)}}}'

    resp = post(bridge, "rest/pong", content=nested(64), headers={"content-type": "application/json"})
    assert resp.status_code == 200, resp.text
    for depth in (65, 1000, 100_000):
        resp = post(bridge, "rest/pong", content=nested(depth), headers={"content-type": "application/json"})
        _error(resp, 400, "bad_request", "nests deeper than 64 levels, the bridge's limit (restbridge.max_json_depth)")
    resp = post(bridge, "rest/pong", data={**ok, "_json_data": "[" * 1000 + "]" * 1000})
    _error(resp, 400, "bad_request", "_json_data nests deeper than 64 levels")
    # _json_data as an object in a JSON body is merged; anything else is a clear 400, never a TypeError's 500
    resp = post(bridge, "rest/pong", json={**ok, "_json_data": {"n": 1}})
    assert resp.status_code == 200 and resp.json()["echo"] == {"n": 1}
    _error(post(bridge, "rest/pong", json={**ok, "_json_data": 5}), 400, "bad_request", "_json_data must be")
    for name in ("_ident", "_action", "_format", "_secret"):
        _error(post(bridge, "rest/pong", json={**ok, name: {"a": 1}}), 400, "bad_request", f"{name} must be a string")
    _error(post(bridge, "rest/pong", json={**ok, "_key": {"a": 1}}), 400, "bad_request", "affinity key")
    _error(post(bridge, "rest/pong", content=b'{"_action": "ping", "x": NaN}',
                headers={"content-type": "application/json"}), 400, "bad_request", "NaN is not a JSON number")
    _error(post(bridge, "rest/pong", content=b'{"_action": "ping", "x": 1e999}',
                headers={"content-type": "application/json"}), 400, "bad_request", "out of range")


def test_a_body_over_max_payload_goes_through_the_object_store(beach, bridge):
    assert beach.addActor("Blobs", "rest/blobs").isSuccess
    text = os.urandom(3 * MB).hex()  # 6 MB of JSON, over the server's max_payload of 1 MB, both ways
    resp = post(bridge, "rest/blobs", json={"_action": "echo", "_secret": SECRET, "text": text, "n": 7})
    assert resp.status_code == 200, resp.text[:300]
    assert resp.json() == {"text": text, "n": 7}
    # a form's field too (Starlette's own limit on a part is 1 MB)
    resp = post(bridge, "rest/blobs", data={"_action": "echo", "_secret": SECRET}, files={"text": (None, text)})
    assert resp.status_code == 200 and resp.json() == {"text": text}, resp.text[:300]


@pytest.fixture
def small_bridge(node, config_path, tmp_path) -> Iterator[Bridge]:
    """A bridge whose config takes payloads of 4 MB at most."""
    servers = yaml.safe_load(config_path.read_text())["nats"]["servers"]
    running = Bridge(write_config(tmp_path / "beach.yaml", servers[0], payloads={"max_bytes": 4 * MB}))
    yield running
    running.stop()


def test_a_body_over_payloads_max_bytes_is_refused_before_it_is_read(beach, small_bridge):
    bridge = small_bridge
    process = psutil.Process(bridge.process.pid)
    before = process.memory_info().rss
    huge = 300 * 1024 * 1024
    # the Content-Length says it: 413 at once, without reading a byte of the body
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", bridge.port), timeout=10) as sock:
        sock.sendall(b"POST /rest/pong?_action=ping HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n{" % huge)
        head = b""
        while b"}" not in head and (data := sock.recv(65536)):  # the head, then the JSON body
            head += data
        head = head.decode()
    assert head.startswith("HTTP/1.1 413 ") and f"{huge} bytes" in head, head
    assert json.loads(head.split("\r\n\r\n", 1)[1])["kind"] == "too_large", head
    assert time.monotonic() - started < 5

    # no Content-Length (chunked): answered 413 as soon as the limit is passed, while the client still
    # has 296 MB to go (it stops here, and waits for the answer)
    with socket.create_connection(("127.0.0.1", bridge.port), timeout=10) as sock:
        sock.sendall(b"POST /rest/pong?_action=ping HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
        for _ in range(5 * MB // 65536):
            sock.sendall(chunk)
        answer = b""
        while b"}" not in answer and (data := sock.recv(65536)):
            answer += data
    assert answer.startswith(b"HTTP/1.1 413 ") and b"over the bridge's limit of 4194304 (payloads.max_bytes)" \
        in answer, answer
    grown = process.memory_info().rss - before
    print(f"\n300 MB bodies refused; the bridge's memory grew by {grown / 1e6:.1f} MB")
    assert grown < 50 * 1024 * 1024
    assert httpx.get(f"{bridge.url}/healthz").status_code == 200


def test_a_request_whose_http_client_went_away_is_abandoned(beach, bridge):
    # an empty category with retries: the bridge would back off and retry for seconds after the
    # client gave up, and deliver the request to an actor started meanwhile
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{bridge.url}/rest/later", timeout=2, data={
            "_action": "work", "_secret": SECRET, "_n_retries": "10", "_timeout": "60", "tag": "abandoned"})
    time.sleep(1)
    uid = beach.addActor(LEDGER, "rest/later").data["uid"]
    time.sleep(12)  # the backoff (0.5, 1, 2, 4, 4... s) would have retried by now
    assert [e for e in ledger(beach, uid) if e["tag"] == "abandoned"] == []


def test_every_error_is_json_with_its_kind(beach, bridge):
    assert beach.addActor("Pong", "rest/pong").isSuccess
    assert beach.addActor("Faulty", "rest/faulty").isSuccess
    ok = {"_action": "ping", "_secret": SECRET}
    url = bridge.url
    _error(httpx.get(f"{url}/rest/pong", params=ok), 405, "method_not_allowed", "GET is not allowed")
    assert httpx.get(f"{url}/rest/pong", params=ok).headers["allow"] == "POST"
    for method in ("PUT", "DELETE", "PATCH"):
        resp = httpx.request(method, f"{url}/rest/pong", params=ok)
        assert _error(resp, 405, "method_not_allowed") and resp.headers["allow"] == "POST"
    # the bridge's own paths are never categories
    for path in ("/healthz", "/openapi.json"):
        resp = httpx.post(f"{url}{path}", data=ok)
        assert _error(resp, 405, "method_not_allowed") and resp.headers["allow"] == "GET"
    uid = beach.getActorHandle("rest/pong").request("ping").data["uid"]
    _error(post(bridge, f"_ACTORS/{uid}", data=ok), 404, "not_found", "hidden one-actor category")
    _error(post(bridge, f"/_ACTORS/{uid}/", data=ok), 404, "not_found")
    # bodies that are neither JSON nor a form: 415, not a silent {}
    for content_type, body in (("text/plain", b"hello"), ("application/msgpack", b"\xc1\xc1garbage"), ("", b"x=1")):
        resp = post(bridge, "rest/pong", params=ok, content=body, headers={"content-type": content_type})
        _error(resp, 415, "unsupported_media_type", "cannot be read")
    _error(post(bridge, "rest/pong", data={**ok, "_secret": "no"}), 401, "wrong_secret")
    _error(post(bridge, "rest/nobody", data=ok), 404, "no_actor", "no actor available")
    _error(post(bridge, "rest/faulty", data={**ok, "_action": "nope"}), 400, "unsupported")
    # a reply as deep as msgpack carries is still valid JSON; NaN and Infinity are written as null
    deep = post(bridge, "rest/faulty", data={**ok, "_action": "deep", "depth": "500"})
    assert deep.status_code == 200 and json.loads(deep.text), deep.text
    deep = post(bridge, "rest/faulty", data={**ok, "_action": "deep", "_format": "msgpack"})
    assert deep.status_code == 200 and deep.headers["content-type"] == "application/msgpack"
    resp = post(bridge, "rest/faulty", data={**ok, "_action": "nan"})
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    strict = json.loads(resp.text, parse_constant=lambda name: pytest.fail(f"{name} is not JSON"))
    assert strict == {"nan": None, "inf": None, "ninf": None, "ok": 1.5}


def test_the_openapi_document_passes_a_schemathesis_fuzz_run(beach, bridge, tmp_path):
    """A bounded schemathesis run (a few hundred cases per operation) against /openapi.json, with its
    checks: no 5xx, every status code, content type and header the document's; errors as described."""
    assert beach.addActor("AsyncEcho", "fuzz").isSuccess
    # half the cases reach a real actor (random categories are empty: 404s teach little)
    (tmp_path / "schemathesis.toml").write_text(
        '[dictionaries.categories]\nvalues = ["fuzz", "_ACTORS/x", "fuzz/a.b"]\n'
        '[dictionaries.actions]\nvalues = ["echo"]\n'
        '[parameters]\n"path.category" = { dictionary = "categories", probability = 0.5 }\n'
        '"query._action" = { dictionary = "actions", probability = 0.5 }\n')
    # tighter bounds than the defaults, so that no case waits long (an empty category retried: 0.5 + 1 s)
    config = yaml.safe_load(bridge.config.read_text())
    config["restbridge"] = {"max_timeout": 5, "max_retries": 2}
    (tmp_path / "fuzz.yaml").write_text(yaml.safe_dump(config))
    fuzz = Bridge(tmp_path / "fuzz.yaml", "-g")
    try:
        result = subprocess.run(
            [str(Path(sys.executable).with_name("st")), "run", f"{fuzz.url}/openapi.json", "--checks", "all",
             "--exclude-checks", "positive_data_acceptance", "--max-examples", "300", "--seed", "25",
             "--max-response-time", "20", "--generation-database", "none", "--request-timeout", "30",
             "--no-color", "--workers", "2",
             "--phases", "examples,coverage,fuzzing", "--suppress-health-check", "all"],
            capture_output=True, text=True, timeout=900, cwd=tmp_path)
    finally:
        stderr = fuzz.stop()
    print(result.stdout[-3000:])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "Traceback" not in stderr


def test_a_traceparent_header_is_the_parent_of_the_request(beach, bridge, config_path):
    """An HTTP caller's W3C trace context goes on into beach: the actor's line carries its trace id
    (the bridge records no span of its own here: it has no tracer provider)."""
    assert beach.addActor("Chatty", "rest/chatty").isSuccess
    trace_id, marker = os.urandom(16).hex(), os.urandom(6).hex()
    resp = post(bridge, "rest/chatty", headers={"traceparent": f"00-{trace_id}-{os.urandom(8).hex()}-01"},
                data={"_action": "say", "_secret": SECRET, "text": f"traced {marker}"})
    assert resp.status_code == 200, resp.text

    def lines() -> list[dict]:
        shown = subprocess.run([sys.executable, "-m", "beach.cli", "logs", str(config_path), "--request", trace_id,
                                "--json"], capture_output=True, text=True, timeout=60)
        return [json.loads(line) for line in shown.stdout.splitlines()]

    deadline = time.monotonic() + 10
    while not (found := lines()) and time.monotonic() < deadline:
        time.sleep(0.3)
    assert [(x["msg"], x["trace"]) for x in found] == [(f"traced {marker}", trace_id)]


def progress(beach, uid, tag):
    return beach.getActorHandle(f"_ACTORS/{uid}").request("progress", {"tag": tag}).data


def stream_lines(bridge: Bridge, category: str, **params) -> tuple[httpx.Response, list]:
    with httpx.stream("POST", f"{bridge.url}/{category}", timeout=30,
                      json={"_secret": SECRET, "_stream": True, **params}) as resp:
        return resp, [json.loads(line) for line in resp.iter_lines()]


def test_a_stream_through_the_bridge_is_ndjson_sent_as_it_is_yielded(beach, bridge):
    uid = beach.addActor("Streamer", "rest/streams").data["uid"]
    resp, lines = stream_lines(bridge, "rest/streams", _action="count", tag="rest", n=2000)
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/x-ndjson"
    assert lines == [{"i": i, "pad": ""} for i in range(2000)]
    assert progress(beach, uid, "rest") == {"produced": 2000, "closed": True}
    # each line as its item is yielded: the first long before the handler's end
    started = time.monotonic()
    with httpx.stream("POST", f"{bridge.url}/rest/streams", timeout=30, headers={
            "Beach-Action": "slow", "Beach-Secret": SECRET, "Beach-Stream": "true"}, json={"seconds": 4}) as resp:
        lines = resp.iter_lines()
        assert json.loads(next(lines)) == "first" and time.monotonic() - started < 3
        assert [json.loads(line) for line in lines] == ["late"] and time.monotonic() - started > 4
    # a handler that is no generator: one line; a generator that yields nothing: no line
    assert stream_lines(bridge, "rest/streams", _action="plain")[1] == [{"one": 1}]
    resp, lines = stream_lines(bridge, "rest/streams", _action="count", tag="none", n=0)
    assert resp.status_code == 200 and lines == []


def test_a_stream_that_fails_ends_with_a_line_naming_the_error(beach, bridge):
    assert beach.addActor("Streamer", "rest/streams/bad").isSuccess
    resp, lines = stream_lines(bridge, "rest/streams/bad", _action="fail")
    assert resp.status_code == 200 and lines[:3] == [0, 1, 2] and len(lines) == 4
    assert lines[3] == {"error": "exception: ValueError: the fourth row was bad", "kind": "exception",
                        "data": {"exception": "ValueError", "message": "the fourth row was bad"}}
    resp, lines = stream_lines(bridge, "rest/streams/bad", _action="slow", seconds=5, _timeout=1)
    assert lines[0] == "first" and lines[1]["kind"] == "timeout" and "no item of stream 'slow' came in 1 s" \
        in lines[1]["error"] and len(lines) == 2
    # before the first item, a failure is answered as any request's
    _error(post(bridge, "rest/streams/nobody", data={"_action": "count", "_secret": SECRET, "_stream": "1"}),
           404, "no_actor")
    for extra, words in (({"_from_all": "true"}, "_from_all"), ({"_n_retries": "2"}, "not retried"),
                         ({"_format": "msgpack"}, "NDJSON")):
        _error(post(bridge, "rest/streams/bad", data={"_action": "count", "_secret": SECRET, "_stream": "true",
                                                      **extra}), 400, "bad_request", words)


@pytest.mark.parametrize("request_type", ["count", "trickle"])
def test_a_stream_client_that_goes_away_stops_the_producer(beach, bridge, request_type):
    uid = beach.addActor("Streamer", "rest/streams/gone").data["uid"]
    with socket.create_connection(("127.0.0.1", bridge.port), timeout=10) as sock:
        body = json.dumps({"_action": request_type, "_secret": SECRET, "_stream": True, "_timeout": 60, "tag": "gone",
                           "n": 1_000_000, "every": 60}).encode()
        sock.sendall(b"POST /rest/streams/gone HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                     b"application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        head = b""
        while b"\r\n\r\n" not in head or not head.endswith(b"\n"):  # the head and a line or more; then it
            head += sock.recv(256)  # stops reading, and goes away
        assert head.startswith(b"HTTP/1.1 200 ") and b"application/x-ndjson" in head
    # the producer stops at once: whether it was waiting for its reader a window ahead (count), or
    # between two items a minute apart (trickle: no write would tell the bridge the client is gone)
    started = time.monotonic()
    done = wait_for(lambda: progress(beach, uid, "gone")["closed"] and progress(beach, uid, "gone"), 10,
                    what="the producer to stop")
    assert time.monotonic() - started < 5 and done["produced"] < 1_000_000, done
    assert httpx.get(f"{bridge.url}/healthz").status_code == 200
