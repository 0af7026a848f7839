"""beach.logs: how a log line reads."""

from __future__ import annotations

import msgspec

from beach import logs


def test_a_log_line_names_its_node_actor_or_system():
    app = logs.LogLine(t=0, level="INFO", levelno=20, kind="app", realm="global", actor="Pong", uid="ab" * 16,
                       node="n1", host="n1-h2", msg="hello")
    assert logs.format_line(app).endswith(" INFO     global/Pong abababab @n1  hello")
    agent = msgspec.structs.replace(app, kind="sys", host="agent", msg="disk full")
    assert logs.format_line(agent).endswith(" INFO     n1/agent  disk full")
    host = msgspec.structs.replace(agent, host="n1-h2")
    assert logs.format_line(host).endswith(" INFO     n1/h2  disk full")
    # a line logged while serving a traced request: its request and the start of its trace id
    served = msgspec.structs.replace(app, req="12345678" + "0" * 16, trace="fe" * 16)
    assert logs.format_line(served).endswith(" global/Pong abababab @n1 req 12345678 trace fefefefe  hello")
    traced = msgspec.structs.replace(agent, trace="cd" * 16)
    assert logs.format_line(traced).endswith(" n1/agent trace cdcdcdcd  disk full")


def test_request_selects_the_lines_of_a_request_or_of_a_trace():
    trace = "ab" * 16
    lines = [logs.LogLine(t=0, levelno=20, req="r" * 24, trace=trace, msg="relaying"),
             logs.LogLine(t=0, levelno=20, req="s" * 24, trace=trace, msg="echoing"),
             logs.LogLine(t=0, levelno=20, req="t" * 24, trace=None, msg="elsewhere")]
    assert [x.msg for x in lines if logs.accept(request="r" * 8)(x)] == ["relaying"]
    assert [x.msg for x in lines if logs.accept(request=trace[:8])(x)] == ["relaying", "echoing"]
    assert [x.msg for x in lines if logs.accept(request="cd" * 4)(x)] == []
