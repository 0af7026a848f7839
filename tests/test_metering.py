"""`beach.metering` on its own: outcomes, the histogram and its quantiles, the bound on rows, the
wire form read back (garbage skipped), and the Prometheus text of a histogram."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from beach import metering, wire


def test_outcomes_are_the_failure_kinds_in_snake_case() -> None:
    assert metering.outcome(True, "") == "ok"
    assert metering.outcome(False, "timeout") == "timeout"
    assert metering.outcome(False, "no actor available in category 'x' of realm 'y'") == "no_actor"
    assert metering.outcome(False, "request type not supported by actor") == "unsupported"
    assert metering.outcome(False, "the bank said no") == "error"  # a handler's own failure


def test_histogram_buckets_and_quantiles() -> None:
    row = metering.Row()
    for seconds in (0.0003, 0.0004, 0.002, 0.2, 100.0):
        row.add("ok", seconds)
    assert row.counts[0] == 2 and row.counts[metering.BUCKETS.index(0.0025)] == 1 and row.counts[-1] == 1
    assert sum(row.counts) == row.total == 5 and abs(row.sum - 100.2027) < 1e-9
    assert 0 < row.quantile(0.4) <= 0.0005  # within the first bucket, interpolated
    assert row.quantile(0.99) == metering.BUCKETS[-1]  # past the last bound: that bound
    assert metering.Row().quantile(0.5) is None
    row.add("busy")  # counted, not timed
    assert row.total == 6 and sum(row.counts) == 5 and row.failed == 1
    later = row.copy()
    later.add("exception", 0.01)
    delta = later.since(row)
    assert delta.outcomes == {"ok": 0, "busy": 0, "exception": 1} and sum(delta.counts) == 1


def test_a_meter_keeps_at_most_its_rows_then_counts_other() -> None:
    meter = metering.Meter(max_rows=3)
    for i in range(10):
        meter.add("cat", f"type-{i}", "ok")
    assert set(meter.rows) == {("cat", "type-0"), ("cat", "type-1"), ("cat", "type-2"), ("cat", "other")}
    assert meter.rows[("cat", "other")].total == 7


def test_the_wire_form_reads_back_and_garbage_is_skipped() -> None:
    meter = metering.Meter()
    meter.add("a/b", "ping", "ok", 0.001)
    meter.row("a/b", "ping").retries += 2
    snapshot = wire.unpack(wire.pack(meter.snapshot()))
    (key, row), = metering.rows_of([*snapshot, ["x"], "junk", ["c", "t", {"ok": 1}, [1, 2], 0.0, 0]])
    assert key == ("a/b", "ping") and row.dump() == meter.rows[key].dump()
    assert list(metering.rows_of("not a list")) == []


def test_a_histogram_in_the_text_format_is_cumulative() -> None:
    row = metering.Row()
    for seconds in (0.0001, 0.003, 0.003, 7.0):
        row.add("ok", seconds)
    family = metering.Family("x_duration_seconds", "histogram", "how long")
    family.histogram({"category": 'a"b'}, row)
    parsed, = text_string_to_metric_families(metering.exposition([family]))
    buckets = {s.labels["le"]: s.value for s in parsed.samples if s.name.endswith("_bucket")}
    assert buckets["0.0005"] == 1 and buckets["0.005"] == 3 and buckets["10.0"] == 4 and buckets["+Inf"] == 4
    assert all(s.labels["category"] == 'a"b' for s in parsed.samples)


def test_request_type_is_read_without_the_data() -> None:
    assert wire.request_type(wire.pack_request("id", "ping", {"big": b"x" * 100_000}, None, 1.0)) == "ping"
    assert wire.request_type(b"\xc1garbage") is None
    assert wire.request_type(wire.pack([4, "id", "ping", {}, None, None, "extra"])) is None  # a format it does not read
    assert wire.request_type(wire.pack_request("id", "ping", {}, None, 1.0, wire.TraceContext("00-x", ""))) == "ping"
