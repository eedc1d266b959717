"""Fixtures for the model-hub tests: a private BRUSHWORK_HOME, no network, tiny model files."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest

# --import-mode=importlib does not put test folders on sys.path; the tiny-model helpers live here.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import tinymodels as tiny  # noqa: E402


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    """Every test gets its own brushwork home, offline hub settings and no bundled model."""
    h = tmp_path / "home"
    monkeypatch.setenv("BRUSHWORK_HOME", str(h))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setattr("brushwork.models.registry.package_data", lambda *p: tmp_path / "no-bundled-model")
    return h


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every test here runs with the network unreachable; the attempts (there should be none) are recorded."""
    attempts: list = []

    def refuse(*args, **kwargs):
        attempts.append(args[1:] if args else kwargs)
        raise OSError("network is unreachable (test)")

    monkeypatch.setattr(socket.socket, "connect", lambda self, *a, **k: refuse(self, *a, **k))
    monkeypatch.setattr(socket.socket, "connect_ex", lambda self, *a, **k: refuse(self, *a, **k))
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: refuse(None, *a, **k))
    monkeypatch.setattr(socket, "getaddrinfo", lambda *a, **k: refuse(None, *a, **k))
    return attempts


@pytest.fixture(scope="session")
def fixtures(tmp_path_factory):
    """``{kind: {"folder", "single", "config"}}`` for sd1, sd2 and sdxl (written once per session)."""
    root = tmp_path_factory.mktemp("tiny-models")
    return {kind: tiny.write_fixtures(kind, root) for kind in ("sd1", "sd2", "sdxl")}


@pytest.fixture
def cli(monkeypatch, capsys):
    """Run ``brushwork models …`` in-process; returns (exit code, stdout, stderr)."""
    from brushwork import cli as cli_mod

    monkeypatch.setattr(cli_mod, "COMMAND_MODULES", ["brushwork.models.commands"])

    def run(*argv: str):
        code = cli_mod.main(["models", *argv])
        out = capsys.readouterr()
        return code, out.out, out.err

    return run
