"""Shared test helpers: skip-or-fail on missing system / Python packages, free loopback ports,
process-group cleanup, and the small generated sample the operations tests run on.

A test that needs something outside the project's Python dependencies (Debian's chromium or
postgresql, PyPI's playwright / moto / dagster-postgres) calls `require_*`: on a developer's
machine without it the test is skipped with a message naming the package and how to install it;
in CI (``MTVCRAFT_REQUIRE_ALL_TESTS=1``) the same test FAILS, so a missing install step can't
hide behind a green run.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import ModuleType
from typing import Callable

import pytest

REQUIRE_ALL_ENV = "MTVCRAFT_REQUIRE_ALL_TESTS"
REPO_ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------- skip or fail

def require_all() -> bool:
    """True when CI asked that no test be skipped for a missing package."""
    return os.environ.get(REQUIRE_ALL_ENV, "").strip().lower() in ("1", "true", "yes")


def missing(package: str, install: str) -> None:
    """Skip the calling test because ``package`` is missing, or fail it under MTVCRAFT_REQUIRE_ALL_TESTS=1."""
    message = f"missing {package} (install: {install})"
    if require_all():
        pytest.fail(f"{message}; {REQUIRE_ALL_ENV}=1 makes a missing package a failure", pytrace=False)
    pytest.skip(message)


def require_module(name: str, package: str, install: str) -> ModuleType:
    """Import ``name`` or skip/fail naming the PyPI ``package``."""
    try:
        return importlib.import_module(name)
    except ImportError:
        missing(f"Python package {package}", install)
        raise  # unreachable: missing() raises


def require_executable(name: str, package: str, install: str) -> str:
    """Path of executable ``name`` on PATH, or skip/fail naming the system ``package``."""
    path = shutil.which(name)
    if path is None:
        missing(f"system package {package} (no `{name}` on PATH)", install)
    return path


def postgres_bin_dir() -> Path | None:
    """Debian's PostgreSQL server binaries: the newest /usr/lib/postgresql/<version>/bin with initdb and pg_ctl."""
    found = [d for d in Path("/usr/lib/postgresql").glob("*/bin") if (d / "initdb").is_file() and (d / "pg_ctl").is_file()]
    found.sort(key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0)
    return found[-1] if found else None


def require_postgres_bin() -> Path:
    path = postgres_bin_dir()
    if path is None:
        missing("system package postgresql (initdb / pg_ctl under /usr/lib/postgresql/*/bin)",
                "apt-get install -y postgresql")
    return path


# ---------------------------------------------------------------------------- processes and ports

def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(check: Callable[[], object], timeout: float, what: str, interval: float = 0.5,
               alive: subprocess.Popen | None = None, log: Path | None = None):
    """Poll ``check`` until it returns something truthy; fail naming ``what`` (and the log's tail) on timeout
    or when the ``alive`` process exits first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception:  # not up yet
            value = None
        if value:
            return value
        if alive is not None and alive.poll() is not None:
            break
        time.sleep(interval)
    tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
    state = f" (process exited with {alive.returncode})" if alive is not None and alive.poll() is not None else ""
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}{state}\n{tail}", pytrace=False)


def start_group(cmd: list[str], log: Path, env: dict | None = None, cwd: Path = REPO_ROOT) -> subprocess.Popen:
    """Start ``cmd`` in its own process group (so that stopping it stops its children), output to ``log``."""
    out = open(log, "ab")
    try:
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=cwd, start_new_session=True)
    finally:
        out.close()


def stop_group(proc: subprocess.Popen, timeout: float = 30.0) -> None:
    """SIGTERM the process group of ``proc``; SIGKILL what is left after ``timeout`` seconds."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # children that outlived their parent
    except ProcessLookupError:
        pass
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        pass


def child_env(**extra: str) -> dict:
    """This process's environment for a child, with Ray's token warning and hub downloads off."""
    env = dict(os.environ)
    env.update({"RAY_AUTH_MODE": "disabled", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


# ---------------------------------------------------------------------------- shared data

SHARED = REPO_ROOT.parent / "shared"  # the project's shared data folder beside the clone (../shared)


def shared_path(relative: str) -> Path:
    """``../shared/<relative>``, or skip the calling test naming the missing path (fail under
    MTVCRAFT_REQUIRE_ALL_TESTS=1, as CI sets it): a clone without ../shared runs with skips only."""
    path = SHARED / relative
    if not path.exists():
        message = f"shared test data missing: {path} (../shared/{relative} beside the repository)"
        if require_all():
            pytest.fail(f"{message}; {REQUIRE_ALL_ENV}=1 makes missing shared data a failure", pytrace=False)
        pytest.skip(message)
    return path

@pytest.fixture(scope="module")
def one_torch_thread():
    """Torch on one thread for a module of small models: faster than two threads on a shared 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_sample(tmp_path_factory):
    """The ``tiny`` generated sample (2 short videos with sidecars): the operations tests' input."""
    from pipeline.synthetic import make_sample

    return make_sample(tmp_path_factory.mktemp("tiny_sample"), seed=0, preset="tiny")


# ---------------------------------------------------------------------------- a Ray cluster on loopback

RAY_NODE_IPS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")  # loopback addresses: Ray rewrites 127.0.0.1 to the LAN IP


class LoopbackRayCluster:
    """Ray nodes started with ``ray start --block`` on this machine, each on its own loopback address and
    temp dir, each in its own process group, so that `stop` ends exactly these nodes (``ray stop`` would
    end every Ray on the machine, other people's included).

    Ray replaces 127.0.0.1 / localhost by the machine's network address ("remotely reachable"); other
    loopback addresses (127.0.0.2, ...) are kept, so all cluster traffic stays on loopback.
    """

    def __init__(self, root: Path):
        self.root = Path(root)
        self.nodes: list[tuple[subprocess.Popen, Path]] = []
        self.temp_dirs: list[Path] = []
        self.address = ""

    def _ray(self) -> str:
        return str(Path(os.sys.executable).parent / "ray")

    def add_node(self, num_cpus: float, resources: dict[str, float] | None = None, wait: bool = True) -> str:
        """Start the head (first call) or a worker node; returns the node's IP (once it is up, with ``wait``)."""
        import json as _json

        index = len(self.nodes)
        ip = RAY_NODE_IPS[index]
        temp = Path(tempfile_short(f"ray{index}_"))  # unix socket paths must stay under 107 characters
        self.temp_dirs.append(temp)
        cmd = [self._ray(), "start", "--block", f"--node-ip-address={ip}", f"--num-cpus={num_cpus}",
               f"--resources={_json.dumps(resources or {})}", "--disable-usage-stats", f"--temp-dir={temp}",
               f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}",
               f"--runtime-env-agent-port={free_port()}", f"--node-manager-port={free_port()}",
               f"--object-manager-port={free_port()}", "--object-store-memory=200000000"]
        if index == 0:
            port = free_port()
            cmd += ["--head", f"--port={port}", "--include-dashboard=false", f"--ray-client-server-port={free_port()}"]
            self.address = f"{ip}:{port}"
        else:
            cmd += [f"--address={self.address}"]
        log = self.root / f"ray_node{index}.log"
        proc = start_group(cmd, log, env=child_env())
        self.nodes.append((proc, log))
        if wait:
            self.wait_ready()
        return ip

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Wait until every node started so far says it is up."""
        for index, (proc, log) in enumerate(self.nodes):
            wait_until(lambda: "Ray runtime started" in log.read_text(errors="replace"), timeout,
                       f"Ray node {index} ({RAY_NODE_IPS[index]}) to start", alive=proc, log=log)

    def stop(self) -> None:
        """Workers first, then the head (SIGTERM, then SIGKILL of the process group)."""
        for proc, _ in reversed(self.nodes):
            stop_group(proc, timeout=10)
        self.nodes.clear()
        for temp in self.temp_dirs:  # session logs and spill files
            shutil.rmtree(temp, ignore_errors=True)
        self.temp_dirs.clear()


def tempfile_short(prefix: str) -> str:
    import tempfile

    return tempfile.mkdtemp(prefix=prefix, dir="/tmp")


@contextlib.contextmanager
def connected_ray_cluster(prefix: str, nodes: list[dict]):
    """A `LoopbackRayCluster` of ``nodes`` (`LoopbackRayCluster.add_node` keyword arguments, one dict a node) with
    this process connected to it; everything stopped and removed afterwards. A local Ray left by an earlier test
    module is shut down first, so the tests use this cluster."""
    import ray

    root = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    cluster = LoopbackRayCluster(root)
    if ray.is_initialized():
        ray.shutdown()
    try:
        for node in nodes:
            cluster.add_node(**node)
        os.environ.setdefault("RAY_AUTH_MODE", "disabled")
        ray.init(address=cluster.address, log_to_driver=False)
        yield cluster
    finally:
        ray.shutdown()
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)
