"""A Docker engine for the compose test: the running one, or a ``dockerd`` started (and stopped) here,
and local stand-ins for the two base images deploy/ names, since no registry is reachable.

How the stand-ins are made is ../shared/reference/compose-standin.md's recipe: ``python:3.11-slim``
from a Debian bookworm ``debootstrap`` with Python 3.11, and the nats image ``FROM scratch`` with
the venv's own ``nats-server`` binary and a static busybox (``sh`` and the ``wget`` of its health
check). Both are kept between runs (built once per machine, under a lock); the rootfs and build
directories are removed once imported. Each run builds on the first a base with a wheelhouse of the
project's dependencies (`offline_base`), so that building the beach image needs no network: the
stand-ins come from the Debian mirror apt uses and this machine's files, the wheels from where this
machine's pip installed the venv.

Several test runs may share the machine: each holds a shared lock on the engine while it uses it;
the run that ends with nobody else holding it stops the ``dockerd`` that a test run started (a
marker file says which one), and never one that it did not start (CI's, or a person's).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import psutil

from beach.bus.embedded import server_binary

STATE = Path(tempfile.gettempdir()) / "beach-tests-docker"
ENGINE_LOCK = STATE / "engine.lock"
STARTED = STATE / "dockerd.pid"  # written when a test run started the engine
BUILD_LOCK = STATE / "standins.lock"
PYTHON_IMAGE = "python:3.11-slim"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
START_SECONDS = 60.0
ENV = {**os.environ, "DOCKER_BUILDKIT": "0"}  # the classic builder: a fresh machine has no buildx
_process: subprocess.Popen[bytes] | None = None  # the dockerd this run started


class Unavailable(Exception):
    """No Docker engine can run here (the reason is the message)."""


def docker(*args: str, timeout: float = 120, check: bool = True, **kwargs: object) -> subprocess.CompletedProcess[str]:
    """Run the docker CLI; raise `AssertionError` with its output when ``check`` and it fails."""
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, env=ENV,
                            **kwargs)  # type: ignore[call-overload]
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} failed ({result.returncode}): {result.stderr[-2000:]}")
    return result


def answering() -> bool:
    """True if a Docker engine answers the CLI."""
    if shutil.which("docker") is None:
        return False
    try:
        return docker("info", "--format", "{{.ServerVersion}}", timeout=20, check=False).returncode == 0
    except subprocess.TimeoutExpired:
        return False


def _starting() -> bool:
    """True once a ``dockerd`` that was already starting (CI's, say) answers; False if none runs.
    Raise `Unavailable` if one runs but does not answer within `START_SECONDS`."""
    try:
        pid = int(Path("/var/run/docker.pid").read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return False
    deadline = time.monotonic() + START_SECONDS
    while not answering():
        if time.monotonic() > deadline:
            raise Unavailable(f"dockerd (pid {pid}) runs but does not answer")
        time.sleep(0.5)
    return True


def _start() -> None:
    """Start ``dockerd`` (as root) and wait until it answers; raise `Unavailable` saying why not."""
    if shutil.which("dockerd") is None:
        raise Unavailable("no Docker engine answers and dockerd is not installed (Debian: apt-get install docker.io)")
    if os.geteuid() != 0:
        raise Unavailable("no Docker engine answers, and starting dockerd needs root")
    global _process
    with open(STATE / "dockerd.log", "wb") as log:
        process = _process = subprocess.Popen(["dockerd"], stdout=log, stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL, start_new_session=True)
    # (its own session: it outlives a Ctrl-C of pytest, and the next run stops it)
    STARTED.write_text(str(process.pid))
    deadline = time.monotonic() + START_SECONDS
    while not answering():
        if process.poll() is not None or time.monotonic() > deadline:
            _stop()
            tail = (STATE / "dockerd.log").read_text(errors="replace")[-1500:]
            raise Unavailable(f"dockerd did not start: {tail}")
        time.sleep(0.5)


def _stop() -> None:
    """Stop the ``dockerd`` a test run started (SIGTERM, then SIGKILL after 60 s)."""
    global _process
    try:
        pid = int(STARTED.read_text())
    except (OSError, ValueError):
        return
    if _process is not None and _process.pid == pid:  # this run's child: wait for it (and reap it)
        _process.terminate()
        try:
            _process.wait(60)
        except subprocess.TimeoutExpired:
            _process.kill()
            _process.wait()
        _process = None
    else:  # another run started it
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                os.kill(pid, 0)
                time.sleep(0.2)
            os.kill(pid, signal.SIGKILL)
    STARTED.unlink(missing_ok=True)


@contextlib.contextmanager
def engine() -> Iterator[None]:
    """A Docker engine for the duration; raise `Unavailable` where none can run."""
    STATE.mkdir(parents=True, exist_ok=True)
    with open(ENGINE_LOCK, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one run at a time decides whether to start it
        try:
            if not answering() and not _starting():
                STARTED.unlink(missing_ok=True)  # (a marker of an engine that is gone)
                _start()
        finally:
            fcntl.flock(lock, fcntl.LOCK_SH)  # users share it
        try:
            yield
        finally:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # nobody else uses it now
            except BlockingIOError:
                pass
            else:
                _stop()


# ---------------------------------------------------------------- stand-in base images

def has_image(name: str) -> bool:
    """True if the engine holds image ``name``."""
    return docker("image", "inspect", name, check=False).returncode == 0


def _unmount_under(path: Path) -> None:
    """Unmount what debootstrap may have left mounted in ``path`` (before it is removed)."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(str(path) + "/")), reverse=True):
        subprocess.run(["umount", "-l", mount], check=False)


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (where a fresh machine's one update went), else
    deb.debian.org."""
    sources = [*Path("/etc/apt/sources.list.d").glob("*.sources"), Path("/etc/apt/sources.list"),
               *Path("/etc/apt/sources.list.d").glob("*.list")]
    for path in sources:
        try:
            lines = path.read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            words = line.split()
            if words[:1] in (["URIs:"], ["deb"]):
                urls = [w for w in words[1:] if "://" in w and not w.rstrip("/").endswith("-security")]
                if urls:
                    return urls[0]
    return DEBIAN_MIRROR


def build_python(name: str = PYTHON_IMAGE) -> None:
    """``python:3.11-slim``: Debian bookworm (its Python is 3.11) with pip, as the official image has."""
    for tool in ("debootstrap", "chroot"):
        if shutil.which(tool) is None:
            raise AssertionError(f"{tool} is needed to build the {name} stand-in: apt-get install debootstrap "
                                 "(.ci/run does)")
    root = Path(tempfile.mkdtemp(prefix="beach-rootfs-", dir="/var/tmp"))
    try:
        subprocess.run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv,python3-pip,"
                        "ca-certificates", "bookworm", str(root), debian_mirror()],
                       check=True, capture_output=True, timeout=900)
        for link, target in (("python", "/usr/bin/python3"), ("python3", "/usr/bin/python3"),
                             ("pip", "/usr/bin/pip3"), ("pip3", "/usr/bin/pip3")):
            (root / "usr/local/bin" / link).symlink_to(target)
        # Debian marks its Python externally managed; the official image does not
        (root / "etc/pip.conf").write_text("[global]\nbreak-system-packages = true\n")
        # PyPI may be reached through a TLS-intercepting proxy: this machine's extra CAs, trusted inside too
        for cert in Path("/usr/local/share/ca-certificates").glob("*.crt"):
            shutil.copy(cert, root / "usr/local/share/ca-certificates" / cert.name)
        subprocess.run(["chroot", str(root), "update-ca-certificates"], check=True, capture_output=True, timeout=120)
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for item in (root / cache).glob("*"):
                if item.is_file():
                    item.unlink()
        with subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE) as tar:
            docker("import", "--change", "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                   "--change", "ENV LANG=C.UTF-8", "--change", 'CMD ["python3"]', "-", name, stdin=tar.stdout,
                   timeout=600)
        if tar.returncode != 0:
            remove_image(name)
            raise AssertionError(f"tar of the {name} rootfs failed ({tar.returncode})")
    finally:
        _unmount_under(root)
        shutil.rmtree(root, ignore_errors=True)


ENTRYPOINT = """#!/bin/sh
set -e
# as the official image: arguments that start with '-' go to nats-server
if [ "${1#-}" != "$1" ]; then
    set -- nats-server "$@"
fi
exec "$@"
"""

NATS_CONF = """port: 4222
monitor_port: 8222
cluster {
  name: NATS
  port: 6222
  routes: []
}
"""

NATS_DOCKERFILE = """FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "--install", "-s", "/bin"]
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
COPY nats-server docker-entrypoint.sh /usr/local/bin/
COPY nats-server.conf /etc/nats/nats-server.conf
RUN mkdir -p /tmp && chmod 1777 /tmp
EXPOSE 4222 8222 6222
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["nats-server", "--config", "/etc/nats/nats-server.conf"]
"""


def build_nats(name: str) -> None:
    """The nats image (tag ``name``): the venv's static nats-server and a static busybox, FROM scratch."""
    busybox = shutil.which("busybox")
    if busybox is None:
        raise AssertionError(f"a static busybox is needed to build the {name} stand-in: apt-get install "
                             "busybox-static (.ci/run does)")
    with tempfile.TemporaryDirectory(prefix="beach-nats-image-") as context:
        here = Path(context)
        shutil.copy(busybox, here / "busybox")
        shutil.copy(server_binary(), here / "nats-server")
        (here / "docker-entrypoint.sh").write_text(ENTRYPOINT)
        (here / "docker-entrypoint.sh").chmod(0o755)
        (here / "nats-server.conf").write_text(NATS_CONF)
        (here / "Dockerfile").write_text(NATS_DOCKERFILE)
        docker("build", "-q", "--force-rm", "-t", name, context, timeout=300)


OFFLINE_DOCKERFILE = f"""FROM {PYTHON_IMAGE}
COPY wheels /wheels
ENV PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels
"""


def offline_base(name: str, repo: Path) -> None:
    """Image ``name``: `PYTHON_IMAGE` with a wheelhouse of the project's dependencies (and its build
    backend) that its pip installs from, never an index: the beach image is then built without the
    network. The wheels are fetched by this machine's pip, from where it installed the venv.
    Raise `AssertionError` if this machine's Python cannot make wheels for the image's (3.11)."""
    if sys.version_info[:2] != (3, 11):
        raise AssertionError(f"the wheelhouse for the {PYTHON_IMAGE} stand-in needs Python 3.11 here "
                             f"(this is {sys.version.split()[0]}): its compiled wheels must fit the image's")
    project = tomllib.loads((repo / "pyproject.toml").read_text())
    # (the image installs beach with the extras the compose file builds it with: otel)
    wanted = [*project["project"]["dependencies"], *project["project"]["optional-dependencies"]["otel"],
              *project["build-system"]["requires"]]
    with tempfile.TemporaryDirectory(prefix="beach-offline-base-") as context:
        here = Path(context)
        result = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(here / "wheels"), *wanted],
                                capture_output=True, text=True, timeout=600, cwd=context)
        if result.returncode != 0:
            raise AssertionError(f"pip wheel of the project's dependencies failed: {result.stderr[-2000:]}")
        (here / "Dockerfile").write_text(OFFLINE_DOCKERFILE)
        docker("build", "-q", "--force-rm", "-t", name, context, timeout=300)


def remove_image(name: str) -> None:
    """Remove image ``name`` (and its untagged layers) if it exists."""
    docker("rmi", "-f", name, check=False)


def sweep(prefix: str) -> list[str]:
    """Remove what an earlier test run that died (SIGKILL, a timeout) left: the containers, networks
    and volumes of compose projects, and the images, named ``prefix<pid>...`` whose process is gone
    (never those of a run still going). Return what was removed."""
    def dead(name: str) -> bool:
        pid = name.removeprefix(prefix).split("-")[0].split(":")[0]
        return name.startswith(prefix) and pid.isdigit() and not psutil.pid_exists(int(pid))

    label = '{{.Label "com.docker.compose.project"}}'
    removed = []
    kinds = (("container", ["ps", "-a", "--format", f"{{{{.ID}}}} {label}"], ["rm", "-f", "-v"]),
             ("network", ["network", "ls", "--format", f"{{{{.ID}}}} {label}"], ["network", "rm"]),
             ("volume", ["volume", "ls", "--format", f"{{{{.Name}}}} {label}"], ["volume", "rm", "-f"]),
             ("image", ["images", "--format", "{{.ID}} {{.Repository}}:{{.Tag}}"], ["rmi", "-f"]))
    for kind, listing, remove in kinds:
        for line in docker(*listing).stdout.splitlines():
            ident, _, name = line.partition(" ")
            if dead(name):
                docker(*remove, ident, check=False)
                removed.append(f"{kind} {name}")
    return removed


def standins(nats_image: str) -> dict[str, float]:
    """Make sure both base images exist (building what is missing, one run at a time); return the
    seconds each build took (none when both were there)."""
    STATE.mkdir(parents=True, exist_ok=True)
    took: dict[str, float] = {}
    with open(BUILD_LOCK, "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for name, build in ((PYTHON_IMAGE, build_python), (nats_image, build_nats)):
            if not has_image(name):
                started = time.monotonic()
                build(name)
                took[name] = time.monotonic() - started
    return took
