"""The native API against a live server: jobs, events, cancel at the next step, A1111 progress and
interrupt, models and options, and a small run of the load benchmark."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from PIL import Image

from brushwork.engine.metadata import parse_infotext

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "serve_load.py"
LONG = {"prompt": "long", "steps": 150, "n": 8, "width": 32, "height": 32}


@pytest.fixture(scope="module")
def client(live_server):
    with httpx.Client(base_url=live_server.url, timeout=120) as c:
        yield c


def _running(client, job_id, min_step=1):
    job = client.get(f"/api/v1/jobs/{job_id}").json()
    return job if job["status"] == "running" and job["progress"]["step"] >= min_step else None


def test_submit_poll_fetch(client, tools):
    r = client.post("/api/v1/jobs", json={"prompt": "a red circle", "steps": 3, "seed": 11, "n": 2, "width": 64,
                                          "height": 48})
    assert r.status_code == 202
    job = r.json()
    assert job["status"] in ("queued", "running") and job["position"] >= 1 and job["eta_seconds"] > 0
    assert job["params"]["seed"] == 11 and job["params"]["model"] == "tiny"
    done = tools.wait_done(client, job["id"])
    assert done["status"] == "done" and done["progress"]["fraction"] == 1.0 and done["position"] is None
    assert done["result"]["seeds"] == [11, 12] and done["result"]["requested_size"] == [64, 48]
    assert done["result"]["generated_size"] == [32, 24]  # the tiny model's largest side is 32
    for out, seed in zip(done["outputs"], (11, 12), strict=True):
        image = Image.open(io.BytesIO(client.get(out["url"]).content))
        assert image.size == (64, 48)
        info = parse_infotext(image.info["parameters"])
        assert info["Seed"] == str(seed) and info["Generated size"] == "32x24"
    listed = client.get("/api/v1/jobs", params={"status": "done"}).json()
    assert done["id"] in [j["id"] for j in listed["jobs"]] and listed["counts"]["done"] >= 1


def test_random_seed_is_fixed_at_submission(client, tools):
    job = client.post("/api/v1/jobs", json={"prompt": "x", "steps": 2}).json()
    assert isinstance(job["params"]["seed"], int)  # a retried job makes the same image
    assert tools.wait_done(client, job["id"])["result"]["seed"] == job["params"]["seed"]


def test_event_stream_follows_a_job(client, live_server):
    job = client.post("/api/v1/jobs", json={"prompt": "events", "steps": 8}).json()
    events = []
    with httpx.stream("GET", f"{live_server.url}/api/v1/events", params={"job": job["id"]}, timeout=120) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in r.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
    assert all(n == "job" for n, _ in events)
    assert events[-1][1]["status"] == "done" and events[-1][1]["outputs"]
    steps = [d["progress"]["step"] for _, d in events]
    assert steps == sorted(steps)


def test_queue_event_stream(client, live_server):
    with httpx.stream("GET", f"{live_server.url}/api/v1/events", params={"max_seconds": 30}, timeout=60) as r:
        lines = r.iter_lines()
        first = next(lines), next(lines)
        assert first[0] == "event: queue" and "queue_length" in json.loads(first[1][6:])
        job = client.post("/api/v1/jobs", json={"prompt": "seen", "steps": 2}).json()
        for line in lines:
            if line.startswith("data: ") and job["id"] in line and '"status": "done"' in line:
                break


def test_cancel_running_job_takes_effect_at_next_step(client, tools):
    job = client.post("/api/v1/jobs", json=LONG).json()
    waiting = client.post("/api/v1/jobs", json={"prompt": "behind", "steps": 2}).json()
    running = tools.wait_for(lambda: _running(client, job["id"]), 180, 0.05, "the job to run")
    r = client.delete(f"/api/v1/jobs/{job['id']}")
    assert r.status_code == 202 and r.json()["cancel_requested"]
    final = tools.wait_done(client, job["id"], timeout=120)
    assert final["status"] == "cancelled" and final["outputs"] == []
    assert final["progress"]["step"] <= running["progress"]["step"] + 3, final  # the next step, not the end
    assert tools.wait_done(client, waiting["id"])["status"] == "done"


def test_cancel_queued_job(client, tools):
    first = client.post("/api/v1/jobs", json=LONG).json()
    second = client.post("/api/v1/jobs", json={"prompt": "never", "steps": 2}).json()
    r = client.delete(f"/api/v1/jobs/{second['id']}")
    assert r.json()["status"] == "cancelled" and r.json()["error"] == "cancelled while queued"
    client.delete(f"/api/v1/jobs/{first['id']}")
    tools.wait_done(client, first["id"])


def test_a1111_progress_and_interrupt(client, tools):
    job = client.post("/api/v1/jobs", json=LONG).json()
    behind = client.post("/api/v1/jobs", json={"prompt": "behind", "steps": 2}).json()
    tools.wait_for(lambda: _running(client, job["id"]), 180, 0.05, "the job to run")
    p = client.get("/sdapi/v1/progress").json()
    assert 0 < p["progress"] < 1 and p["eta_relative"] > 0
    assert p["state"]["job_count"] >= 2 and p["state"]["sampling_steps"] == 150
    assert client.post("/sdapi/v1/interrupt").status_code == 200
    assert tools.wait_done(client, job["id"])["status"] == "cancelled"
    tools.wait_done(client, behind["id"])
    idle = client.get("/sdapi/v1/progress").json()
    assert idle["progress"] == 0 and idle["state"]["job_count"] == 0  # what SillyTavern polls for


def test_models_samplers_options(client):
    models = client.get("/api/v1/models").json()
    assert models["current"] == "tiny" and "tiny" in [m["name"] for m in models["models"]]
    sd_models = client.get("/sdapi/v1/sd-models").json()
    tiny = next(m for m in sd_models if m["model_name"] == "tiny")
    assert tiny["title"] == f"tiny [{tiny['hash']}]" and len(tiny["sha256"]) == 64 and tiny["hash"] == tiny["sha256"][:10]
    assert "/" not in tiny["filename"]  # no server paths
    assert client.post("/sdapi/v1/options", json={"sd_model_checkpoint": tiny["title"]}).status_code == 200
    assert client.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == tiny["title"]
    names = [s["name"] for s in client.get("/api/v1/samplers").json()["samplers"]]
    assert {"Euler a", "DPM++ 2M", "DDIM"} <= set(names)
    assert [s["label"] for s in client.get("/sdapi/v1/schedulers").json()][:3] == ["Automatic", "Uniform", "Karras"]


def test_load_benchmark_runs_small(live_server):
    r = subprocess.run([sys.executable, str(BENCH), "--url", live_server.url, "--model", "tiny",
                        "--jobs", "6", "--clients", "3", "--single-jobs", "2", "--steps", "2", "--no-baseline",
                        "--max-seconds", "300"], capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 client(s): 6 jobs, 6 images" in r.stdout and "errors 0, lost 0" in r.stdout


def test_refuses_non_loopback_benchmark_target():
    r = subprocess.run([sys.executable, str(BENCH), "--url", "http://10.0.0.1:7860"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and "loopback" in r.stderr


def test_a1111_client_that_gives_up_cancels_its_job(client, live_server, tools):
    """SillyTavern-style: a client that disconnects does not leave its job in line."""
    with pytest.raises(httpx.TimeoutException):
        httpx.post(f"{live_server.url}/sdapi/v1/txt2img", timeout=3,
                   json={"prompt": "abandoned", "steps": 150, "batch_size": 8, "width": 32, "height": 32})
    job = client.get("/api/v1/jobs", params={"source": "a1111", "limit": 1}).json()["jobs"][0]
    assert job["params"]["prompt"] == "abandoned"
    assert tools.wait_done(client, job["id"], timeout=60)["status"] == "cancelled"


def test_one_server_per_home(tmp_path):
    from brushwork.serve.service import ServeConfig, ServerBusy, Service

    first = Service(ServeConfig(home=tmp_path, worker=False))
    first.take_lock()
    second = Service(ServeConfig(home=tmp_path, worker=False))
    with pytest.raises(ServerBusy, match=f"pid {__import__('os').getpid()}"):
        second.take_lock()
    first.stop()
    second.take_lock()  # free again
    second.stop()
