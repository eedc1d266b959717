"""The server's limits (``serve/limits.py``) and small status reads.

The route-by-route refusals (prompt length, job budget, inline bytes on every API) are rows of
``test_bad_input.py``; this module checks the limits object, that limits are configurable and
served, and that reading one job's status neither decodes every queued job nor returns their prompts.
"""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from brushwork.errors import InvalidParameter
from brushwork.serve import queue as queue_module
from brushwork.serve.app import create_app
from brushwork.serve.limits import LimitExceeded, Limits, job_cost
from brushwork.serve.service import ServeConfig

LONG = ("a red circle " * 2_462)[:32_000]  # 32,000 characters, the default maximum


@pytest.fixture
def app_client(tmp_path, tiny_model_dir, tools):
    def make(**config) -> TestClient:
        home = tools.make_home(tmp_path / "home", tiny_model_dir)
        app = create_app(ServeConfig(home=home, worker=False, ui=False, model="tiny", **config))
        return TestClient(app, base_url="http://127.0.0.1")

    return make


def test_limits_object_checks_and_refuses_nonsense():
    limits = Limits()
    assert len(LONG) == limits.prompt_chars == 32_000
    limits.check_prompt("prompt", LONG)
    with pytest.raises(LimitExceeded, match=r"^negative_prompt: 32,001 characters"):
        limits.check_prompt("negative_prompt", LONG + "x")
    assert job_cost(4, 50, 1024, 1024) == 800
    limits.check_job(10, 50, 1024, 1024)  # 2,000: exactly the budget
    with pytest.raises(LimitExceeded, match="costs 2,001"):
        limits.check_job(2_001, 1, 512, 512)
    with pytest.raises(LimitExceeded, match="^send_images: 22 images of 1024×1024"):
        limits.check_inline(22, 1024, 1024, field="send_images")
    for bad in ({"prompt_chars": 0}, {"job_budget": -1}, {"job_timeout": 0}):
        with pytest.raises(InvalidParameter, match=next(iter(bad))):
            Limits(**bad)


def test_limits_are_configurable_and_served(app_client):
    with app_client(limits=Limits(prompt_chars=10, job_budget=5), max_queue=7) as client:
        served = client.get("/api/v1/limits").json()
        assert served["prompt_chars"] == 10 and served["job_budget"] == 5 and served["max_queue"] == 7
        r = client.post("/api/v1/jobs", json={"prompt": "a red circle"})  # 12 characters
        assert r.status_code == 422 and r.json()["field"] == "prompt", r.text
        r = client.post("/api/v1/jobs", json={"prompt": "a", "n": 2, "steps": 20})  # tiny model: 32 px
        assert r.status_code == 202, r.text
        r = client.post("/api/v1/jobs", json={"prompt": "a", "n": 2, "steps": 20, "width": 512, "height": 512})
        assert r.status_code == 422 and r.json()["field"] == "n" and "costs 40" in r.json()["detail"], r.text
        r = client.post("/v1/images/generations", json={"prompt": "a red circle", "size": "64x64"})
        assert r.status_code == 422 and r.json()["error"]["param"] == "prompt", r.text


def test_status_read_of_a_long_queue_is_small_and_reads_one_row(app_client, monkeypatch):
    with app_client() as client:
        ids = [client.post("/api/v1/jobs", json={"prompt": LONG, "negative_prompt": LONG, "steps": 2}).json()["id"]
               for _ in range(30)]
        decoded = []
        real = queue_module._job
        monkeypatch.setattr(queue_module, "_job", lambda row: decoded.append(row["id"]) or real(row))
        r = client.get(f"/api/v1/jobs/{ids[-1]}")
        assert r.status_code == 200
        assert decoded == [ids[-1]], "reading one job's status decoded other jobs' rows"
        body = r.json()
        assert len(r.content) < 4096, len(r.content)
        assert body["position"] == 30 and body["queue_length"] == 30 and body["truncated"] is True
        assert body["params"]["prompt"].startswith("a red circle") and len(body["params"]["prompt"]) == 301
        whole = client.get(f"/api/v1/jobs/{ids[-1]}", params={"full": True}).json()
        assert whole["params"]["prompt"] == LONG and whole["truncated"] is False
        listing = client.get("/api/v1/jobs", params={"limit": 30})
        assert len(listing.content) < 30 * 4096 and len(listing.json()["jobs"]) == 30


def test_a_queue_made_before_the_line_columns_is_migrated(tmp_path):
    """Schema 2 → 3 fills ``n`` and ``timing_key`` from each job's parameters."""
    import sqlite3

    from brushwork.serve.queue import MIGRATIONS, JobQueue, timing_key

    folder = tmp_path / "q"
    folder.mkdir()
    db = sqlite3.connect(folder / queue_module.DB_NAME)
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    for script in MIGRATIONS[:2]:
        db.executescript(script)
    db.execute("INSERT INTO schema_version VALUES (2)")
    params = {"prompt": "x", "n": 3, "steps": 7, "model": "tiny", "width": 64}
    db.execute("INSERT INTO jobs (id, source, params, status, total_steps, created_at) VALUES (?,?,?,?,?,?)",
               ("a" * 32, "api", json.dumps(params), "queued", 7, 0.0))
    db.commit()
    db.close()
    queue = JobQueue(folder)
    row = queue._db().execute("SELECT n, timing_key FROM jobs").fetchone()
    assert (row[0], row[1]) == (3, timing_key(params)) == (3, "tiny|64xnative")
    assert queue.get("a" * 32).position == 1


@pytest.mark.parametrize("flag, value", [("--max-prompt-chars", "0"), ("--job-budget", "-5"),
                                         ("--max-inline-mb", "0"), ("--job-timeout", "0"), ("--max-models", "0"),
                                         ("--keep-days", "0"), ("--max-outputs-gb", "-1")])
def test_serve_refuses_nonpositive_limits_in_one_line(flag, value, tmp_path, monkeypatch, capsys):
    from brushwork.cli import main

    monkeypatch.setenv("BRUSHWORK_HOME", str(tmp_path))
    monkeypatch.delenv("BRUSHWORK_TOKEN", raising=False)
    assert main(["serve", "--port", "1", flag, value]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {flag} must be positive, not "), err
