"""beach's pytest plugin (the ``pytest11`` entry point: loaded by pytest once beach is installed).

The fixture ``beach_cluster`` is a running `beach.testing.LocalCluster`. Its code directory
comes from, the first that says: the test's marker ``@pytest.mark.beach_cluster(code_directory=DIR,
nodes=N, realm=R, **config)`` (on the test, its class or its module), the command line
``--beach-code-directory DIR``, the ini option ``beach_code_directory`` (relative to the ini
file); else an empty one. One cluster per set of settings is started for the session and made
clean between tests (no actors, supervision, patrols or deployed code; logs from the test's start);
a test that killed or added a node gets a fresh one after it. All are stopped when the session
ends, also when it is interrupted.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from beach.testing.cluster import LocalCluster

INI = "beach_code_directory"
MARKER = "beach_cluster"


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--beach-code-directory DIR`` and the ini option ``beach_code_directory``."""
    group = parser.getgroup("beach", "beach actors (beach.testing)")
    group.addoption("--beach-code-directory", dest=INI, metavar="DIR", default=None,
                    help="the code directory of the beach_cluster fixture's cluster (<DIR>/<realm>/<Name>.py)")
    parser.addini(INI, "the code directory of the beach_cluster fixture's cluster, relative to this file",
                  default="")


def pytest_configure(config: pytest.Config) -> None:
    """Declare the marker (so ``--strict-markers`` knows it)."""
    config.addinivalue_line("markers", f"{MARKER}(code_directory=None, nodes=1, realm='global', **config): the "
                                       "settings of the beach_cluster fixture's LocalCluster for this test")


def _settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    config = request.config
    marker = request.node.get_closest_marker(MARKER)
    settings: dict[str, Any] = dict(marker.kwargs) if marker is not None else {}
    if marker is not None and marker.args:
        settings.setdefault("code_directory", marker.args[0])
    directory = settings.get("code_directory")
    if directory is not None:  # relative to the test's file
        settings["code_directory"] = os.path.join(os.path.dirname(str(request.node.path)), os.fspath(directory))
    elif config.getoption(INI):
        settings["code_directory"] = os.path.abspath(config.getoption(INI))
    elif config.getini(INI):
        base = config.inipath.parent if config.inipath is not None else config.rootpath
        settings["code_directory"] = os.path.join(str(base), str(config.getini(INI)))
    return settings


class _Clusters:
    """The session's clusters, one per set of settings."""

    def __init__(self) -> None:
        self.running: dict[str, LocalCluster] = {}

    def get(self, settings: dict[str, Any]) -> tuple[str, LocalCluster]:
        from beach.testing.cluster import LocalCluster

        key = repr(sorted(settings.items()))
        if key not in self.running:
            self.running[key] = LocalCluster(**settings).start()
        return key, self.running[key]

    def release(self, key: str) -> None:
        cluster = self.running[key]
        try:
            clean = cluster.reset()
        except Exception:
            clean = False
        if not clean:
            del self.running[key]
            cluster.stop()

    def stop(self) -> None:
        while self.running:
            self.running.popitem()[1].stop()


@pytest.fixture(scope="session")
def _beach_clusters() -> Iterator[_Clusters]:
    clusters = _Clusters()
    try:
        yield clusters
    finally:
        clusters.stop()


@pytest.fixture
def beach_cluster(request: pytest.FixtureRequest, _beach_clusters: _Clusters) -> Iterator[LocalCluster]:
    """A running `beach.testing.LocalCluster` (see this module's docstring for its settings)."""
    key, cluster = _beach_clusters.get(_settings(request))
    try:
        yield cluster
    finally:
        _beach_clusters.release(key)
