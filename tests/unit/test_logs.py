"""beach.logs: how a log line reads."""

from __future__ import annotations

from beach import logs


def test_a_log_line_names_its_node_actor_or_system():
    app = {"t": 0, "level": "INFO", "kind": "app", "realm": "global", "actor": "Pong", "uid": "ab" * 16,
           "node": "n1", "host": "n1-h2", "msg": "hello"}
    assert logs.format_line(app).endswith(" INFO     global/Pong abababab @n1  hello")
    agent = {**app, "kind": "sys", "host": "agent", "msg": "disk full"}
    assert logs.format_line(agent).endswith(" INFO     n1/agent  disk full")
    host = {**agent, "host": "n1-h2"}
    assert logs.format_line(host).endswith(" INFO     n1/h2  disk full")
