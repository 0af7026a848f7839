"""The web dashboard, for real: ``python -m beach.dashboard`` in a subprocess against the session's
nats-server and node agent, driven over HTTP (httpx) and in a real headless Chromium (Playwright
with Debian's /usr/bin/chromium: no browser download, no network but 127.0.0.1)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from beach import __version__ as beach_version
from beach.beach_api import Beach

from .conftest import NODE_ID, free_port, wait_for, write_config

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs Debian's chromium at /usr/bin/chromium")


class Dashboard:
    """``python -m beach.dashboard ARGS...`` in a subprocess, on a free port of 127.0.0.1."""

    def __init__(self, args: list[str], port: int) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.output = tempfile.TemporaryFile("w+")  # not a pipe: a chatty dashboard must never block on it
        self.process = subprocess.Popen([sys.executable, "-m", "beach.dashboard", *args], cwd=ROOT,
                                        stdout=self.output, stderr=subprocess.STDOUT, text=True,
                                        start_new_session=True)
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def wait_ready(self) -> None:
        def ready() -> bool:
            assert self.process.poll() is None, f"the dashboard exited: {self.said()}"
            try:
                return NODE_ID in {n["id"] for n in self.http.get("/api/nodes").json()["nodes"]}
            except httpx.TransportError:
                return False
        wait_for(ready, 30, 0.1, "the dashboard to answer")

    def said(self) -> str:
        """What the dashboard printed so far."""
        self.output.seek(0)
        return self.output.read()

    def stop(self) -> int:
        """SIGTERM, as a service manager would; the exit code."""
        self.http.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
            raise
        finally:
            self.output.close()
        return code


@pytest.fixture(scope="module")
def dashboard(node: Any, config_path: Path) -> Iterator[Dashboard]:
    """The dashboard with the admin token, started the original's way: ``PORT CONFIG``."""
    port = free_port()
    dash = Dashboard([str(port), str(config_path)], port)
    dash.wait_ready()
    assert f"beach dashboard: http://127.0.0.1:{port}/ (admin actions on)" in dash.said()
    yield dash
    assert dash.stop() == 0


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


class Page:
    """A 1280×800 page that records console errors and uncaught exceptions."""

    def __init__(self, browser: Any) -> None:
        self.context = browser.new_context(viewport={"width": 1280, "height": 800})
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.page.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

    def open(self, url: str) -> Any:
        self.page.goto(url)
        # the live stream is up (its first read of the cluster's logs can take seconds on a loaded machine)
        self.page.wait_for_selector("#live.ok", timeout=15000)
        return self.page

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    opened = Page(browser)
    yield opened
    opened.close()


def csrf_session(dash: Dashboard) -> tuple[httpx.Client, str]:
    """A client holding the dashboard's CSRF cookie, and the token of its page."""
    client = httpx.Client(base_url=dash.url, timeout=10, headers={"Origin": dash.url})
    html = client.get("/").text
    token = html.split('<meta name="beach-csrf" content="', 1)[1].split('"', 1)[0]
    return client, token


# ---------------------------------------------------------------------------- in the browser


def test_page_is_live_draws_charts_and_stops_an_actor(dashboard: Dashboard, page: Page, beach: Beach,
                                                       tmp_path: Path) -> None:
    p = page.open(dashboard.url)
    assert p.inner_text("#summary .counter:first-child .value") == "1"
    assert p.is_visible(f'#nodes tr[data-node="{NODE_ID}"]')
    keep = beach.addActor("Pong", "dash/keep").data["uid"]
    uid = beach.addActor("Pong", "dash/pong").data["uid"]
    p.wait_for_selector(f'#actors tr[data-uid="{uid}"]', timeout=5000)  # no reload: the stream brought it
    p.wait_for_selector('#realms a:text-is("dash/pong")', timeout=5000)
    assert "global/Pong" in p.inner_text(f'#actors tr[data-uid="{uid}"]')

    # the charts drew points: CPU and memory of the node, requests/s of the new actor class
    p.wait_for_function("""() => ['node_cpu', 'node_mem', 'realm_rps', 'class_rps'].every(key => {
        const chart = beach.charts[key];
        return chart.plot && chart.plot.data[0].length > 0
            && chart.plot.data.slice(1).some(ys => ys.some(v => v != null));
    }) && beach.charts.class_rps.series.has('global/Pong')""", timeout=8000)
    assert p.evaluate("document.documentElement.scrollWidth") <= 1280
    p.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)

    # cancelling the confirmation leaves the actor alone
    p.click(f'tr[data-uid="{keep}"] button[data-action="stop"]')
    p.wait_for_selector("#confirm[open]", timeout=2000)
    assert "Stop actor global/Pong?" in p.inner_text("#confirm")
    p.click("#confirm button[value=cancel]")
    # confirming stops it: the row goes, and the actor leaves the directory
    p.click(f'tr[data-uid="{uid}"] button[data-action="stop"]')
    p.wait_for_selector("#confirm[open]", timeout=2000)
    p.click("#confirm-ok")
    p.wait_for_selector(f'#actors tr[data-uid="{uid}"]', state="detached", timeout=10000)
    p.wait_for_selector('#toast:has-text("stopped")', timeout=5000)
    wait_for(lambda: uid not in beach.getDirectory()["reverse"], 5, what="the actor to leave the directory")
    assert keep in beach.getDirectory()["reverse"]
    assert p.is_visible(f'#actors tr[data-uid="{keep}"]')
    assert page.errors == []


AXE = Path(__file__).with_name("vendor") / "axe.min.js"
SCREENSHOTS = os.environ.get("BEACH_SCREENSHOTS")  # a folder to keep the pages' screenshots in, to look at them


def _axe(p: Any) -> list[dict[str, Any]]:
    """The serious and critical violations axe-core finds on the page."""
    p.add_script_tag(path=str(AXE))
    found = p.evaluate("""async () => (await axe.run(document, {resultTypes: ['violations']})).violations.map(
        v => ({id: v.id, impact: v.impact, nodes: v.nodes.slice(0, 4).map(n => n.target.join(' ') + ' ' +
                                                                          (n.failureSummary || ''))}))""")
    return [v for v in found if v["impact"] in ("serious", "critical")]


@pytest.mark.parametrize("width,height", [(390, 844), (1280, 800)], ids=["phone", "desktop"])
def test_every_page_reads_on_a_phone_and_passes_axe(dashboard: Dashboard, browser: Any, beach: Beach,
                                                    tmp_path: Path, width: int, height: int) -> None:
    uid = beach.addActor("Chatty", "dash/phone/a-rather-long-category-name", parameters={"tag": "phone"}).data["uid"]
    handle = beach.getActorHandle("dash/phone")
    for i in range(3):
        assert handle.request("say", {"text": f"line {i}: a log line long enough to wrap on a phone's screen, "
                                               "as the lines of real actors are"}).isSuccess
    folder = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    folder.mkdir(parents=True, exist_ok=True)
    # the context bypasses the pages' Content-Security-Policy, so that axe-core can be injected: the test only
    context = browser.new_context(viewport={"width": width, "height": height}, bypass_csp=True)
    problems: list[str] = []
    try:
        p = context.new_page()
        pages = {"overview": "/", "node": f"/nodes/{NODE_ID}", "actor": f"/actors/{uid}", "logs": "/logs",
                 "error": "/nodes/no-such-node"}
        for name, path in pages.items():
            p.goto(dashboard.url + path)
            if name != "error":
                p.wait_for_selector("#live.ok", timeout=5000)
            if name in ("actor", "logs"):
                p.wait_for_selector('#log-rows td.msg:has-text("long enough to wrap")', state="attached", timeout=5000)
            p.screenshot(path=str(folder / f"{name}-{width}x{height}.png"), full_page=True)
            wide = p.evaluate("document.documentElement.scrollWidth")
            if wide > width:
                culprits = p.evaluate("""(width) => {  // what sticks out: past the right edge, and not clipped
                    const clipped = (e) => { for (let a = e.parentElement; a; a = a.parentElement)
                        if (getComputedStyle(a).overflowX !== 'visible') return true; return false; };
                    return [...document.querySelectorAll('body *')]
                        .filter(e => e.getBoundingClientRect().right > width
                                     && (!clipped(e) || getComputedStyle(e).position === 'absolute')).slice(0, 3)
                        .map(e => `${e.tagName}.${e.className} ${Math.round(e.getBoundingClientRect().right)}`);
                }""", width)
                problems.append(f"{name}: the page is {wide} px wide in a {width} px viewport: {culprits}")
            for box in p.eval_on_selector_all("header.top .pill, header.top nav a",
                                              "els => els.map(e => e.getBoundingClientRect().right)"):
                if box > width:
                    problems.append(f"{name}: a header item ends at {box:.0f} px, off the {width} px screen")
            if name in ("overview", "node"):  # the actors' actions, without scrolling sideways
                for right in p.eval_on_selector_all("#actors button[data-action]",
                                                    "els => els.map(e => e.getBoundingClientRect().right)"):
                    if right > width:
                        problems.append(f"{name}: an actor's action button ends at {right:.0f} px")
            if name in ("actor", "logs", "overview"):
                for cell in p.eval_on_selector_all("#log-rows td.msg", "els => els.map(e => e.clientWidth)"):
                    if cell < min(200, width // 2):
                        problems.append(f"{name}: the log message column is {cell} px wide")
            problems += [f"{name}: axe {v['id']} ({v['impact']}): {v['nodes']}" for v in _axe(p)]
    finally:
        context.close()
    assert problems == [], "\n".join(problems)


def test_detail_pages_show_parameters_counters_and_live_logs(dashboard: Dashboard, page: Page,
                                                             beach: Beach) -> None:
    uid = beach.addActor("Chatty", "dash/chatty", parameters={"tag": "visible-tag", "_token": "s3cret"}).data["uid"]
    p = page.open(f"{dashboard.url}/actors/{uid}")
    facts = p.inner_text("#actor")
    assert "visible-tag" in facts and "private" in facts and "s3cret" not in p.content()
    assert "dash/chatty" in facts and NODE_ID in facts
    assert beach.getActorHandle("dash/chatty").request("say", data={"text": "hello from the test"}).isSuccess
    p.wait_for_selector('#log-rows td.msg:text-is("hello from the test")', timeout=5000)
    p.wait_for_function("() => /Processed\\s+1\\b/.test(document.querySelector('#actor').innerText)", timeout=5000)

    p = page.open(f"{dashboard.url}/nodes/{NODE_ID}")
    assert p.is_visible(f'#actors tr[data-uid="{uid}"]')
    p.wait_for_selector('#log-rows td.msg:text-is("chatty up: visible-tag")', timeout=5000)
    # the node's load as it says it every second (beach.stats.node.<node>), not once at registration
    p.wait_for_function("() => beach.charts.node_cpu.plot && beach.charts.node_cpu.plot.data[0].length >= 3",
                        timeout=8000)

    p = page.open(f"{dashboard.url}/actors/{uid}")
    assert beach.stopActors(withId=uid).isSuccess
    p.wait_for_selector("#gone", state="visible", timeout=5000)  # the page says its actor left
    assert page.errors == []


def test_the_actor_state_card_follows_keys_and_bytes(dashboard: Dashboard, page: Page, beach: Beach,
                                                     tmp_path: Path) -> None:
    assert beach.addActor("Counter", "dash/counter").isSuccess
    handle = beach.getActorHandle("dash/counter")
    for word in ("don't", "café", "river"):
        assert handle.request("add", {"key": word}).isSuccess
    p = page.open(dashboard.url)
    row = '#state tr:has(td:text-is("dash/counter"))'
    p.wait_for_selector(row, timeout=10000)  # the lease holder's sizes, pushed every 2 s
    assert p.inner_text(row).split("\t")[2:5] == ["3", "3 B", "1"]
    assert handle.request("set", {"key": "long", "value": "x" * 5000}).isSuccess
    wait_for(lambda: p.inner_text(row).split("\t")[2] == "4", 10, what="the card to show the new key")
    assert "KV_beach_state" in p.inner_text("#state table.buckets")
    p.locator("#state-card").scroll_into_view_if_needed()
    p.screenshot(path=str(tmp_path / "state.png"), full_page=True)
    sizes = dashboard.http.get("/api/state", params={"realm": "global"}).json()["state"]
    [mine] = [c for c in sizes["categories"] if c["category"] == "dash/counter"]
    assert mine["keys"] == 4 and mine["bytes"] > 5000 and mine["actors"] == 1
    assert dashboard.http.get("/api/state", params={"nope": "1"}).status_code == 400
    assert page.errors == []


def test_without_the_admin_token_no_actions_and_403(node: Any, nats_server: Any, page: Page, beach: Beach,
                                                     tmp_path: Path) -> None:
    config = write_config(tmp_path / "read-only.yaml", nats_server.url, admin_token=None)
    port = free_port()
    dash = Dashboard([str(config), "--host", "127.0.0.1", "--port", str(port)], port)
    try:
        dash.wait_ready()
        assert "read-only: the config has no admin_token" in dash.said()
        uid = beach.addActor("Pong", "dash/readonly").data["uid"]
        p = page.open(dash.url)
        p.wait_for_selector(f'#actors tr[data-uid="{uid}"]', timeout=5000)
        assert p.query_selector_all("button[data-action]") == []
        assert "read-only" in p.inner_text("#status")
        assert p.query_selector('meta[name="beach-csrf"]') is None
        for path in (f"/api/actors/{uid}/stop", "/api/flush"):
            response = dash.http.post(path, headers={"Origin": dash.url, "X-CSRF-Token": "x"})
            assert response.status_code == 403
            assert "admin_token" in response.json()["error"]
        assert uid in beach.getDirectory()["reverse"]
        assert page.errors == []
    finally:
        code = dash.stop()
    assert code == 0
    p.wait_for_selector("#banner", state="visible", timeout=5000)  # the stream dropped: the page says so
    assert "reconnecting" in p.inner_text("#live")


# ---------------------------------------------------------------------------- metrics, API, input


def _samples(found: dict[str, Any], family: str, **labels: str) -> dict[str, float]:
    """``{sample name + the labels not given: value}`` of ``family``'s samples that carry ``labels``."""
    result = {}
    for sample in found[family].samples:
        if all(sample.labels.get(k) == v for k, v in labels.items()):
            rest = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k not in labels)
            result[f"{sample.name}{{{rest}}}"] = sample.value
    return result


def test_metrics_in_the_prometheus_format(dashboard: Dashboard, beach: Beach) -> None:
    uid = beach.addActor("Pong", "dash/metrics").data["uid"]
    beach.addActor("Faulty", "dash/faulty")
    beach.addActor("Relay", "dash/relay")
    both = beach.addActor("Pong", ["dash/first", "dash/second"]).data["uid"]
    handle = beach.getActorHandle("dash/metrics")
    for i in range(5):
        assert handle.request("ping", data={"i": i}).isSuccess
    assert handle.request("no such type").failure == "request type not supported by actor"
    faulty = beach.getActorHandle("dash/faulty")
    assert [faulty.request(t).failure for t in ("raise", "raise", "fail")] == ["exception", "exception", None]
    relay = beach.getActorHandle("dash/relay")
    assert relay.request("relay", {"category": "dash/metrics"}).isSuccess
    assert not relay.request("relay", {"category": "dash/nobody"}).isSuccess  # the relay's call: no actor
    for category, n in (("dash/first", 3), ("dash/second", 2)):  # one actor, two categories
        for _ in range(n):
            assert beach.getActorHandle(category).request("ping").isSuccess

    def families() -> dict[str, Any] | None:
        response = dashboard.http.get("/metrics")
        assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
        found = {f.name: f for f in text_string_to_metric_families(response.text)}
        calls = _samples(found, "beach_calls", category="dash/nobody")
        second = _samples(found, "beach_requests", category="dash/second")
        # each host sends its figures every second: the last of them, after every request, from
        # both hosts (the actors are on either)
        pings = _samples(found, "beach_requests", realm="global", category="dash/metrics").get(
            "beach_requests_total{outcome=ok,request_type=ping}")
        faults = _samples(found, "beach_requests", category="dash/faulty").get(
            "beach_requests_total{outcome=exception,realm=global,request_type=raise}")
        return (found, response.text) if calls and second and pings == 6 and faults == 2 else None

    found, text = wait_for(families, 10, 0.2, "the actors' figures in /metrics")
    assert shutil.which("promtool"), "needs promtool: apt-get install prometheus (as .ci/run does)"
    checked = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert checked.returncode == 0 and not checked.stdout.strip() and not checked.stderr.strip(), checked
    for name, kind in [("beach_build_info", "gauge"), ("beach_connected", "gauge"), ("beach_nodes", "gauge"),
                       ("beach_actors", "gauge"), ("beach_node_cpu_ratio", "gauge"),
                       ("beach_node_memory_ratio", "gauge"), ("beach_requests", "counter"),
                       ("beach_request_duration_seconds", "histogram"), ("beach_calls", "counter"),
                       ("beach_call_duration_seconds", "histogram"), ("beach_call_retries", "counter"),
                       ("beach_category_actors", "gauge"), ("beach_actor_requests", "counter"),
                       ("beach_actor_inflight", "gauge"), ("beach_actor_restarts", "gauge"),
                       ("beach_actor_log_lines_dropped", "counter"), ("beach_dashboard_streams", "gauge"),
                       ("beach_dashboard_http_requests", "counter"),
                       ("beach_dashboard_http_request_duration_seconds", "histogram")]:
        assert found[name].type == kind, name
    cpu = [s for s in found["beach_node_cpu_ratio"].samples if s.labels["node"] == NODE_ID]
    assert len(cpu) == 1 and set(cpu[0].labels) == {"node", "hostname"} and 0 <= cpu[0].value <= 1
    assert found["beach_build_info"].samples[0].labels["version"] == beach_version

    # every request is counted, failures included, by outcome; unknown types are "other"
    pong = {"realm": "global", "category": "dash/metrics"}
    assert _samples(found, "beach_requests", **pong) == {  # five, and the relay's (addressed by uid: local)
        "beach_requests_total{outcome=ok,request_type=ping}": 6.0,
        "beach_requests_total{outcome=unsupported,request_type=other}": 1.0}
    assert _samples(found, "beach_requests", category="dash/faulty") == {
        "beach_requests_total{outcome=error,realm=global,request_type=fail}": 1.0,
        "beach_requests_total{outcome=exception,realm=global,request_type=raise}": 2.0}
    histogram = _samples(found, "beach_request_duration_seconds", **pong, request_type="ping")
    assert histogram["beach_request_duration_seconds_count{}"] == 6.0
    assert histogram["beach_request_duration_seconds_bucket{le=+Inf}"] == 6.0
    assert 0 < histogram["beach_request_duration_seconds_sum{}"] < 6
    assert set(histogram) >= {f"beach_request_duration_seconds_bucket{{le={b}}}" for b in ("0.005", "0.1", "10.0")}
    # the relay's own calls, as made: one answered, one to a category with nobody in it
    assert _samples(found, "beach_calls", category="dash/metrics", request_type="ping")[
        "beach_calls_total{outcome=ok,realm=global}"] >= 1.0
    assert _samples(found, "beach_calls", category="dash/nobody") == {
        "beach_calls_total{outcome=no_actor,realm=global,request_type=ping}": 1.0}
    # an actor serving two categories is counted in the one each request was addressed to
    for category, n in (("dash/first", 3.0), ("dash/second", 2.0)):
        assert _samples(found, "beach_requests", category=category) == {
            "beach_requests_total{outcome=ok,realm=global,request_type=ping}": n}
    assert _samples(found, "beach_actor_requests", uid=both)[
        "beach_actor_requests_total{actor=Pong,node=" + NODE_ID + ",outcome=ok,realm=global}"] == 5.0
    actor = next(s for s in found["beach_actor_requests"].samples if s.labels.get("uid") == uid
                 and s.labels["outcome"] == "unsupported")
    assert actor.name == "beach_actor_requests_total" and actor.value == 1
    assert actor.labels == {"uid": uid, "realm": "global", "actor": "Pong", "node": NODE_ID, "outcome": "unsupported"}
    # the dashboard's own HTTP requests, by route template
    assert _samples(found, "beach_dashboard_http_requests", route="/api/nodes", status="200")
    # the pages of the tests before are closed: their live streams have ended
    wait_for(lambda: families() and families()[0]["beach_dashboard_streams"].samples[0].value == 0, 5, 0.2,
             "the closed pages' streams to end")


def _schema(spec: dict[str, Any], path: str, method: str = "get", status: str = "200") -> dict[str, Any]:
    schema = spec["paths"][path][method]["responses"][status]["content"]["application/json"]["schema"]
    return {**schema, "components": spec["components"]}  # so that "#/components/..." resolves


def test_every_api_response_matches_its_openapi_schema(dashboard: Dashboard, beach: Beach) -> None:
    spec = dashboard.http.get("/api/openapi.json").json()
    assert spec["openapi"].startswith("3.")
    pong = beach.addActor("Pong", "dash/api", parameters={"_key": "k"}).data["uid"]
    beach.addActor("Chatty", "dash/api/chatty", restart="on-failure", parameters={"tag": "api"})
    beach.applyPatrol({"owner": "dashtest", "realm": "global",
                       "actors": [{"name": "pongs", "actor": "Pong", "category": ["dash/patrolled"], "instances": 1}]})
    assert beach.getActorHandle("dash/api").request("ping").isSuccess
    wait_for(lambda: dashboard.http.get("/api/patrols").json()["patrols"]
             and dashboard.http.get("/api/patrols").json()["patrols"][0]["entries"][0]["running"] == 1
             and dashboard.http.get("/api/supervision").json()["supervision"]
             and dashboard.http.get("/api/logs").json()["logs"], 15, 0.2, "patrol, supervision and logs in the API")

    gets = [path for path, ops in spec["paths"].items() if "get" in ops]
    assert {"/api/cluster", "/api/nodes", "/api/nodes/{node}", "/api/actors", "/api/actors/{uid}", "/api/categories",
            "/api/logs", "/api/supervision", "/api/patrols", "/api/history", "/api/requests"} <= set(gets)
    extra = {"/api/actors": "?realm=global&category=dash", "/api/logs": "?level=debug&kind=all&limit=5",
             "/api/history": f"?node={NODE_ID}", "/api/categories": "?realm=global", "/api/cluster": "?category=dash",
             "/api/requests": "?realm=global"}
    for path in gets:
        for query in ("", extra.get(path)):
            if query is None:
                continue
            url = path.replace("{node}", NODE_ID).replace("{uid}", pong) + query
            response = dashboard.http.get(url)
            assert response.status_code == 200, (url, response.text)
            jsonschema.validate(response.json(), _schema(spec, path), cls=jsonschema.Draft202012Validator)
    actor = dashboard.http.get(f"/api/actors/{pong}").json()["actor"]
    assert actor["params"] == {"_key": "<PRIVATE>"}
    cluster = dashboard.http.get("/api/cluster").json()
    assert cluster["admin"] is True and cluster["summary"]["nodes"] == 1
    assert any(s["name"] == "Chatty" and s["running"] for s in cluster["supervision"])
    history = dashboard.http.get("/api/history").json()
    assert set(history) == {"node_cpu", "node_mem", "realm_rps", "class_rps", "category_p50", "category_p99",
                            "category_errors"} and history["node_cpu"][NODE_ID]

    error = dashboard.http.get("/api/actors/nope")
    jsonschema.validate(error.json(), _schema(spec, "/api/actors/{uid}", status="404"))


def test_bad_input_is_a_clear_4xx_with_a_json_error(dashboard: Dashboard, beach: Beach) -> None:
    http = dashboard.http
    cases = [("/api/actors/no-such-uid", 404, "no actor 'no-such-uid'"), ("/api/nodes/no-such-node", 404, "no node"),
             ("/api/logs?level=loud", 400, "level 'loud'"), ("/api/logs?kind=x", 400, "kind 'x'"),
             ("/api/logs?limit=0", 400, "limit"), ("/api/actors?categroy=x", 400, "unknown query parameter 'categroy'"),
             ("/api/actors?category=a//b", 400, "empty segment"), ("/api/history?since=soon", 400, "since"),
             ("/api/history?node=a&class=b", 400, "not both"), ("/events?view=nope", 400, "view 'nope'"),
             ("/api/nowhere", 404, ""), ("/metrics?x=1", 400, "unknown query parameter")]
    for url, status, message in cases:
        response = http.get(url)
        assert response.status_code == status, url
        assert response.headers["content-type"] == "application/json", url
        assert message in response.json()["error"], (url, response.json())
    assert http.post("/api/flush").status_code == 403  # no Origin, no cookie, no token
    assert http.get("/api/flush").status_code == 405
    page = http.get("/actors/no-such-uid")
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "no actor" in page.text and "Traceback" not in page.text
    assert http.get("/logs?level=loud").status_code == 400

    uid = beach.addActor("Pong", "dash/csrf").data["uid"]
    client, token = csrf_session(dashboard)
    try:
        assert client.cookies.get("beach_csrf")
        stop = f"/api/actors/{uid}/stop"
        wrong = token[:-1] + ("1" if token.endswith("0") else "0")
        refused = [client.post(stop),  # the cookie and the Origin, but no token
                   client.post(stop, headers={"X-CSRF-Token": wrong}),
                   client.post(stop, headers={"X-CSRF-Token": token, "Origin": "http://evil.example"}),
                   client.post(stop, headers={"X-CSRF-Token": token, "Origin": "null"})]
        for response in refused:
            assert response.status_code == 403 and response.json()["error"]
        assert uid in beach.getDirectory()["reverse"]
        assert client.post("/api/actors/no-such-uid/stop", headers={"X-CSRF-Token": token}).status_code == 404
        done = client.post(stop, headers={"X-CSRF-Token": token})
        assert done.status_code == 200 and done.json()["stopped"] == [uid]
        headers = client.get("/").headers
    finally:
        client.close()
    assert "default-src 'self'" in headers["content-security-policy"] and headers["x-frame-options"] == "DENY"


# ---------------------------------------------------------------------------- the command line, the wheel


def test_command_line_failures_are_one_line(tmp_path: Path) -> None:
    dead = write_config(tmp_path / "dead.yaml", f"nats://127.0.0.1:{free_port()}")
    bad = tmp_path / "bad.yaml"
    bad.write_text("nats: {servers: 5}\n")
    runs = {name: subprocess.Popen([sys.executable, "-m", "beach.dashboard", *args], cwd=ROOT, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for name, args in {"missing": [str(tmp_path / "nope.yaml")], "bad": [str(free_port()), str(bad)],
                               "dead": [str(dead), "--port", str(free_port())],
                               "usage": ["1", "2", "3"]}.items()}
    results = {name: (run.wait(30), run.communicate()[1]) for name, run in runs.items()}
    for name, code in {"missing": 2, "bad": 2, "dead": 1}.items():
        status, stderr = results[name]
        assert status == code, (name, stderr)
        assert len(stderr.strip().splitlines()) == 1 and stderr.startswith("beach: "), (name, stderr)
        assert "Traceback" not in stderr
    assert "cannot connect to NATS" in results["dead"][1] and "config file not found" in results["missing"][1]
    assert results["usage"][0] == 2 and "too many arguments" in results["usage"][1]


@pytest.mark.timeout(300)
def test_the_wheel_ships_templates_and_assets(tmp_path: Path) -> None:
    # built from a copy, so the build leaves nothing (build/, *.egg-info) in the work tree
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info",
                                                                 "__pycache__", ".pytest_cache", "*beach-state"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(source)],
                   check=True, timeout=280, capture_output=True)
    (wheel,) = tmp_path.glob("beach-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"beach/dashboard/templates/{t}.html" for t in ("base", "overview", "node", "actor", "logs")}
    expected |= {"beach/dashboard/static/dashboard.js", "beach/dashboard/static/dashboard.css",
                 "beach/dashboard/static/vendor/uPlot.iife.min.js", "beach/dashboard/static/vendor/uPlot.min.css",
                 "beach/dashboard/static/vendor/LICENSE", "beach/dashboard/__main__.py", "beach/dashboard/app.py"}
    assert expected <= names, expected - names


# ---------------------------------------------------------------------------- hostile input


def test_dns_rebinding_is_refused_with_a_forged_host_and_origin(dashboard: Dashboard, beach: Beach) -> None:
    uid = beach.addActor("Pong", "dash/rebind").data["uid"]
    port = dashboard.url.rsplit(":", 1)[1]
    forged = f"attacker.example:{port}"
    # the attacker's page, its name now resolving to 127.0.0.1: Host and Origin are its own, and match
    attacker = httpx.Client(base_url=dashboard.url, timeout=10,
                            headers={"Host": forged, "Origin": f"http://{forged}"})
    try:
        for path in ("/", "/api/cluster", "/events", "/metrics", "/static/dashboard.js"):
            response = attacker.get(path)
            assert response.status_code == 400, path
            assert "attacker.example" in response.json()["error"] and "--allowed-host" in response.json()["error"]
            assert "beach_csrf" not in response.cookies and "beach-csrf" not in response.text
        stop = attacker.post(f"/api/actors/{uid}/stop", headers={"X-CSRF-Token": "x"})
        assert stop.status_code == 400
    finally:
        attacker.close()
    assert uid in beach.getDirectory()["reverse"]
    # with a token of a real page: an Origin outside the allow-list is refused, whatever the Host says
    client, token = csrf_session(dashboard)
    try:
        for origin in (f"http://{forged}", "http://127.0.0.1:1", "http://localhost.attacker.example"):
            refused = client.post(f"/api/actors/{uid}/stop", headers={"X-CSRF-Token": token, "Origin": origin})
            assert refused.status_code == 403 and "not one of this dashboard's" in refused.json()["error"]
        assert client.get("/", headers={"Host": f"localhost:{port}"}).status_code == 200  # a localhost form
    finally:
        client.close()
    assert uid in beach.getDirectory()["reverse"]


def test_allowed_host_names_are_served(node: Any, config_path: Path, beach: Beach) -> None:
    port = free_port()
    dash = Dashboard([str(config_path), "--port", str(port), "--allowed-host", "dash.test",
                      "--allowed-host", "*.corp.test"], port)
    try:
        dash.wait_ready()
        uid = beach.addActor("Pong", "dash/allowed").data["uid"]
        for name in ("dash.test", "a.corp.test", "DASH.TEST."):
            assert dash.http.get("/api/nodes", headers={"Host": f"{name}:{port}"}).status_code == 200, name
        assert dash.http.get("/api/nodes", headers={"Host": f"corp.test:{port}"}).status_code == 400
        # a page loaded through an allowed name posts from that origin
        client = httpx.Client(base_url=dash.url, timeout=10,
                              headers={"Host": f"dash.test:{port}", "Origin": f"http://dash.test:{port}"})
        try:
            html = client.get("/").text
            token = html.split('<meta name="beach-csrf" content="', 1)[1].split('"', 1)[0]
            done = client.post(f"/api/actors/{uid}/stop", headers={"X-CSRF-Token": token})
            assert done.status_code == 200 and done.json()["stopped"] == [uid]
        finally:
            client.close()
    finally:
        assert dash.stop() == 0


def capped(config_path: Path, tmp_path: Path, **limits: int) -> tuple[Dashboard, Path]:
    """A dashboard whose config caps its live streams."""
    raw = yaml.safe_load(config_path.read_text())
    raw["dashboard"] = limits
    config = tmp_path / "capped.yaml"
    config.write_text(yaml.safe_dump(raw))
    port = free_port()
    dash = Dashboard([str(config), "--port", str(port)], port)
    dash.wait_ready()
    return dash, config


def run_async(coroutine: Any) -> Any:
    """Run ``coroutine`` to its end in a thread of its own (Playwright's sync API holds this thread's loop)."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _open_streams(url: str, addresses: list[str]) -> tuple[list[Any], list[httpx.Response]]:
    """Open one stream from each of ``addresses`` (loopback source addresses); the open ones (still
    streaming: close them) and the refused responses."""
    opened, refused = [], []
    for address in addresses:
        client = httpx.AsyncClient(transport=httpx.AsyncHTTPTransport(local_address=address), timeout=10)
        response = await client.send(client.build_request("GET", f"{url}/events?view=overview"), stream=True)
        if response.status_code == 200:
            opened.append((client, response))
        else:
            await response.aread()
            refused.append(response)
            await client.aclose()
    return opened, refused


async def _close_streams(opened: list[Any]) -> None:
    for client, response in opened:
        await response.aclose()
        await client.aclose()


def test_live_streams_are_capped_per_client_and_in_all(node: Any, config_path: Path, tmp_path: Path) -> None:
    dash, _ = capped(config_path, tmp_path, max_streams=5, max_streams_per_client=2)
    try:
        async def run() -> None:
            opened, refused = await _open_streams(dash.url, ["127.0.0.1"] * 3)
            assert len(opened) == 2 and len(refused) == 1
            body = refused[0]
            assert body.status_code == 503 and body.headers["retry-after"] == "30"
            assert "127.0.0.1 has 2 live streams open" in body.json()["error"]
            assert "dashboard.max_streams_per_client" in body.json()["error"] and "polling" in body.json()["error"]
            more, refused = await _open_streams(dash.url, ["127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.3"])
            assert len(more) == 3 and len(refused) == 1, "five in all"
            assert "its limit (dashboard.max_streams)" in refused[0].json()["error"]
            # polling works meanwhile, for every page
            frames = dash.http.get("/events/poll", params={"view": "overview"}).json()
            assert set(frames) == {"fragments", "logs", "history", "gone"} and "nodes" in frames["fragments"]
            assert NODE_ID in frames["fragments"]["nodes"]
            # a stream that ends gives its place back
            await _close_streams(more[:1])
            wait_for(lambda: metric(dash, "beach_dashboard_streams") == 4, 5, 0.1, "the closed stream's place")
            again, refused = await _open_streams(dash.url, ["127.0.0.4"])
            assert len(again) == 1 and not refused
            assert metric(dash, "beach_dashboard_streams_refused") == 2
            await _close_streams(opened + more[1:] + again)

        run_async(run())
    finally:
        assert dash.stop() == 0


def metric(dash: Dashboard, name: str) -> float:
    families = {f.name: f for f in text_string_to_metric_families(dash.http.get("/metrics").text)}
    return families[name].samples[0].value


def test_a_page_refused_a_stream_polls_instead(node: Any, config_path: Path, tmp_path: Path, browser: Any,
                                               beach: Beach) -> None:
    dash, _ = capped(config_path, tmp_path, max_streams=1, max_streams_per_client=1)
    first, second = Page(browser), Page(browser)
    try:
        first.open(dash.url)  # takes the one stream
        p = second.page
        p.goto(dash.url)
        p.wait_for_selector("#live.warn", timeout=10000)
        assert p.inner_text("#live") == "polling" and p.is_hidden("#banner")
        assert "refreshes every 5 s" in p.get_attribute("#live", "title")
        uid = beach.addActor("Pong", "dash/polled").data["uid"]
        p.wait_for_selector(f'#actors tr[data-uid="{uid}"]', timeout=12000)  # the next poll brought it
        p.screenshot(path=str(tmp_path / "polling.png"), full_page=True)
        shutil.copy(tmp_path / "polling.png", Path(tempfile.gettempdir()) / "beach-dashboard-polling.png")
        assert first.page.inner_text("#live") == "live"
        assert second.errors == [] or all("503" in e for e in second.errors), second.errors
    finally:
        first.close()
        second.close()
        assert dash.stop() == 0


def test_300_streams_against_the_dashboard_while_its_api_is_timed(node: Any, config_path: Path, beach: Beach) -> None:
    """Reported, not asserted (speed is measured in benchmarks/dashboard_streams.py): /api/cluster's
    time alone and with 300 streams asked for (at most dashboard.max_streams of them open)."""
    for _ in range(20):
        assert beach.addActor("Pong", "dash/load").isSuccess
    port = free_port()
    dash = Dashboard([str(config_path), "--port", str(port)], port)
    try:
        dash.wait_ready()

        async def timed(client: httpx.AsyncClient, n: int = 20) -> list[float]:
            times = []
            for _ in range(n):
                started = time.monotonic()
                assert (await client.get(f"{dash.url}/api/cluster")).status_code == 200
                times.append(time.monotonic() - started)
            return times

        async def run() -> tuple[list[float], list[float], int, int]:
            async with httpx.AsyncClient(timeout=60) as client:
                alone = await timed(client)
                addresses = [f"127.0.{i // 200}.{i % 200 + 2}" for i in range(300)]
                opened, refused = await _open_streams(dash.url, addresses)
                await asyncio.sleep(2)
                loaded = await timed(client)
                await _close_streams(opened)
                return alone, loaded, len(opened), len(refused)

        alone, loaded, n_open, n_refused = run_async(run())
        assert n_open + n_refused == 300 and n_open <= 64
        print(f"\n/api/cluster (20 actors): median {statistics.median(alone) * 1000:.1f} ms alone, "
              f"{statistics.median(loaded) * 1000:.1f} ms with 300 streams asked for ({n_open} open, {n_refused} "
              f"refused 503): x{statistics.median(loaded) / statistics.median(alone):.2f} (machine shared with "
              f"other work)")
    finally:
        assert dash.stop() == 0


def test_the_openapi_document_passes_a_schemathesis_fuzz_run(dashboard: Dashboard, beach: Beach,
                                                             tmp_path: Path) -> None:
    """A bounded schemathesis run (a hundred cases per operation, a dozen operations) against
    /api/openapi.json with its checks: no 5xx, every status code, content type, header and response
    schema the document's. The admin POSTs are fuzzed too: without a page's CSRF token, all 403."""
    uid = beach.addActor("Pong", "dash/fuzz").data["uid"]
    result = subprocess.run(
        [str(Path(sys.executable).with_name("st")), "run", f"{dashboard.url}/api/openapi.json", "--checks", "all",
         "--exclude-checks", "positive_data_acceptance", "--max-examples", "100", "--seed", "25",
         "--generation-database", "none", "--request-timeout", "20", "--no-color", "--workers", "2",
         "--phases", "examples,coverage,fuzzing", "--suppress-health-check", "all"],
        capture_output=True, text=True, timeout=900, cwd=tmp_path)
    print(result.stdout[-2000:])
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert uid in beach.getDirectory()["reverse"], "no fuzzed POST got past the CSRF check"
