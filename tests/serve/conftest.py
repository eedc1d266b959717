"""Fixtures for the server tests: a tiny model in a registry, and live servers in subprocesses.

A live server is the real thing: ``python -m brushwork serve`` on a free loopback port, with its
own worker process, its own brushwork home, and a log file kept for failures. Tests that want
"the bundled model" get it when ``brushwork/default_model`` is installed, and otherwise the tiny
random model in the same architecture, which ``served_model.label`` says.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BUNDLED = REPO / "brushwork" / "default_model" / "model_index.json"


def _engine_conftest():
    spec = importlib.util.spec_from_file_location("_engine_conftest", REPO / "tests" / "engine" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    return _engine_conftest().build_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def make_home(folder: Path, tiny: Path) -> Path:
    """A brushwork home whose registry holds the tiny model as ``tiny``."""
    from brushwork.models.registry import Registry

    folder.mkdir(parents=True, exist_ok=True)
    with Registry(folder) as reg:
        if reg.get("tiny") is None:
            reg.add(tiny, name="tiny")
    return folder


@dataclass
class ServedModel:
    name: str  # what to pass as --model
    label: str  # for test ids and reports
    bundled: bool


def _served() -> ServedModel:
    if BUNDLED.is_file():
        return ServedModel("default", "bundled model", True)
    return ServedModel("tiny", "tiny random model, bundled model not installed", False)


@pytest.fixture(scope="session", params=[_served()], ids=lambda m: m.label)
def served_model(request) -> ServedModel:
    """The bundled model when installed; otherwise the tiny random model (the test id says which)."""
    return request.param


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    """``brushwork serve`` in a subprocess. ``start`` waits until its worker is ready."""

    def __init__(self, home: Path, *, model: str = "tiny", token: str | None = None, extra: list[str] = (),
                 log: Path | None = None):
        self.home, self.model, self.token, self.extra = Path(home), model, token, list(extra)
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log or self.home / f"server-{self.port}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def headers(self) -> dict:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def start(self, timeout: float = 240) -> "LiveServer":
        import httpx

        # one torch thread: tiny models gain nothing from more, and tests share the CPU
        cmd = [sys.executable, "-m", "brushwork", "serve", "--port", str(self.port), "--model", self.model,
               "--threads", "1", *self.extra]
        if self.token:
            cmd += ["--token", self.token]
        env = {**os.environ, "BRUSHWORK_HOME": str(self.home), "HF_HUB_OFFLINE": "1",
               "GRADIO_ANALYTICS_ENABLED": "False"}
        env.pop("BRUSHWORK_TOKEN", None)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(cmd, env=env, stdout=self._log, stderr=subprocess.STDOUT, cwd=REPO)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                r = httpx.get(f"{self.url}/api/v1/health", headers=self.headers, timeout=5)
                if r.status_code == 200 and r.json()["worker"]["ready"]:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"server did not become ready in {timeout} s:\n{self.log()}")

    def wait_ready(self, timeout: float = 240) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r = httpx.get(f"{self.url}/api/v1/health", headers=self.headers, timeout=5)
            if r.json()["worker"]["ready"]:
                return
            time.sleep(0.3)
        raise TimeoutError(f"worker not ready after {timeout} s:\n{self.log()}")

    def worker_pid(self) -> int:
        """The worker's PID, found from the server's process tree (not from any API)."""
        import psutil

        children = [c for c in psutil.Process(self.proc.pid).children(recursive=True)
                    if "brushwork.serve.worker" in " ".join(c.cmdline())]
        assert len(children) == 1, f"expected one worker process, found {children}"
        return children[0].pid

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-6000:]
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        import psutil

        if self.proc is None:
            return
        try:
            kids = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            kids = []
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        _, alive = psutil.wait_procs(kids, timeout=15)
        for k in alive:  # only our own server's children, by PID
            k.kill()
        self._log.close()
        self.proc = None


@pytest.fixture
def start_server(tmp_path, tiny_model_dir):
    """Factory: ``start_server(home=None, **kw)`` → a started ``LiveServer``; all stopped at teardown."""
    servers = []

    def start(home: Path | None = None, **kw) -> LiveServer:
        home = make_home(home or tmp_path / "home", tiny_model_dir)
        server = LiveServer(home, **kw)
        servers.append(server)
        return server.start()

    yield start
    for s in servers:
        s.stop()


@pytest.fixture(scope="module")
def live_server(tmp_path_factory, tiny_model_dir):
    """One server (tiny model) shared by a test module."""
    home = make_home(tmp_path_factory.mktemp("live") / "home", tiny_model_dir)
    server = LiveServer(home).start()
    yield server
    server.stop()


def wait_for(predicate, timeout: float = 120, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout} s waiting for {what}")


def wait_done(client, job_id: str, timeout: float = 180) -> dict:
    def done():
        job = client.get(f"/api/v1/jobs/{job_id}").json()
        return job if job["status"] in ("done", "failed", "cancelled") else None

    return wait_for(done, timeout, 0.2, f"job {job_id}")


@pytest.fixture(scope="session")
def tools():
    """The helpers above, for test modules (conftest modules are not importable by name)."""
    from types import SimpleNamespace

    return SimpleNamespace(LiveServer=LiveServer, make_home=make_home, wait_for=wait_for, wait_done=wait_done,
                           free_port=free_port)
