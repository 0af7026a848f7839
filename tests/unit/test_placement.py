"""beach.state.placement: which node a spawn goes to, strategy by strategy (through `Placer.choose`)."""

from __future__ import annotations

from beach.state.placement import Placer


def test_resource_strategy():
    nodes = {"busy": {"cpu": [90.0, 80.0], "mem": 70.0}, "idle": {"cpu": [5.0, 15.0], "mem": 30.0},
             "mid": {"cpu": [50.0, 50.0], "mem": 10.0}}
    assert Placer().choose("resource", None, nodes, list, ["x"]) == "idle"
