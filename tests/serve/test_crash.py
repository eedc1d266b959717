"""Crash safety with a live server: the worker is killed by its PID (found from the process tree)
while a job runs; the server restarts it; no job is lost; a job that kills it twice fails.
"""

from __future__ import annotations

import os
import signal
import time

import httpx
import psutil

from brushwork.serve.queue import JobQueue


def _running(client, min_step=1, max_left=15, attempts=None):
    for job in client.get("/api/v1/jobs", params={"status": "running"}).json()["jobs"]:
        step, total = job["progress"]["step"], job["progress"]["total"]
        if step >= min_step and total - step >= max_left and (attempts is None or job["attempts"] == attempts):
            return job
    return None


def test_ten_jobs_survive_a_worker_kill(start_server, tools):
    server = start_server()
    client = httpx.Client(base_url=server.url, timeout=60)
    ids = []
    for i in range(10):  # the first is long enough to be caught running; the rest are quick
        body = {"prompt": f"a red circle {i}", "steps": 150, "n": 2, "width": 32, "height": 32} if i == 0 else \
            {"prompt": f"a red circle {i}", "steps": 3}
        r = client.post("/api/v1/jobs", json={**body, "seed": 100 + 10 * i})
        assert r.status_code == 202, r.text
        ids.append(r.json()["id"])
    victim = tools.wait_for(lambda: _running(client, max_left=40), 180, 0.02, "a job to be running")
    pid = server.worker_pid()
    os.kill(pid, signal.SIGKILL)
    jobs = [tools.wait_done(client, job_id, timeout=300) for job_id in ids]

    listed = {j["id"] for j in client.get("/api/v1/jobs", params={"limit": 100}).json()["jobs"]}
    assert set(ids) <= listed  # none lost
    for job in jobs:
        assert job["status"] in ("done", "failed"), job
        if job["status"] == "failed":
            assert job["error"], job
        else:
            assert len(job["outputs"]) == job["params"]["n"]
            for out in job["outputs"]:
                path = server.home / "outputs" / out["name"]
                assert path.is_file() and path.stat().st_size > 0
                assert client.get(out["url"]).status_code == 200
    killed = next(j for j in jobs if j["id"] == victim["id"])
    assert killed["attempts"] == 2 and killed["status"] == "done", killed  # retried once, then fine
    assert sum(j["attempts"] == 2 for j in jobs) == 1
    assert [j["status"] for j in jobs].count("done") == 10
    health = client.get("/api/v1/health").json()
    assert health["worker"]["restarts"] >= 1 and health["worker"]["alive"]
    assert server.worker_pid() != pid
    assert "killed by signal 9" in server.log()


def test_job_that_kills_the_worker_twice_fails(start_server, tools):
    server = start_server()
    client = httpx.Client(base_url=server.url, timeout=60)
    poison = client.post("/api/v1/jobs", json={"prompt": "poison", "steps": 150, "n": 16}).json()["id"]
    after = client.post("/api/v1/jobs", json={"prompt": "after", "steps": 2}).json()["id"]
    pids = []
    for attempt in (1, 2):
        tools.wait_for(lambda a=attempt: _running(client, attempts=a), 180, 0.05, f"attempt {attempt} to run")
        pids.append(server.worker_pid())
        os.kill(pids[-1], signal.SIGKILL)
    job = tools.wait_done(client, poison, timeout=120)
    assert job["status"] == "failed" and job["attempts"] == 2, job
    assert "killed by signal 9" in job["error"] and "not retried" in job["error"]
    assert tools.wait_done(client, after, timeout=180)["status"] == "done"  # the line moved on
    time.sleep(1)
    assert client.get(f"/api/v1/jobs/{poison}").json()["status"] == "failed"  # and stays failed
    assert len(set(pids)) == 2


def test_queue_survives_server_restarts_and_cancel_stops_a_running_job(start_server, tmp_path, tools):
    home = tmp_path / "home"
    server = start_server(home=home)
    client = httpx.Client(base_url=server.url, timeout=60)
    early = client.post("/api/v1/jobs", json={"prompt": "early", "steps": 2}).json()["id"]
    early_files = [o["name"] for o in tools.wait_done(client, early)["outputs"]]
    # long enough never to finish here: it is cancelled at the end
    long_job = client.post("/api/v1/jobs", json={"prompt": "long", "steps": 150, "n": 32, "width": 32,
                                                  "height": 32}).json()["id"]
    short = [client.post("/api/v1/jobs", json={"prompt": f"s{i}", "steps": 3}).json()["id"] for i in range(3)]
    tools.wait_for(lambda: _running(client), 180, 0.05, "the long job to run")

    server.stop(signal.SIGTERM)  # graceful: the running job goes back in line, attempt not counted
    queue = JobQueue(home / "serve")
    states = {j.id: (j.status, j.attempts) for j in queue.snapshot()}
    queue.close()
    assert states == {long_job: ("queued", 0), **{s: ("queued", 0) for s in short}}

    server = start_server(home=home)
    client = httpx.Client(base_url=server.url, timeout=60)
    tools.wait_for(lambda: _running(client), 180, 0.05, "the long job to run again")
    worker = psutil.Process(server.worker_pid())
    server.stop(signal.SIGKILL)  # abrupt: the worker must not outlive its server
    worker.wait(timeout=30)

    server = start_server(home=home)
    client = httpx.Client(base_url=server.url, timeout=60)
    tools.wait_for(lambda: _running(client), 180, 0.05, "the long job to run a third time")
    assert client.delete(f"/api/v1/jobs/{long_job}").status_code == 202
    cancelled = tools.wait_done(client, long_job, timeout=60)
    assert cancelled["status"] == "cancelled" and cancelled["progress"]["step"] < 150, cancelled
    assert "cancelled before step" in cancelled["error"]
    for job_id in short:
        job = tools.wait_done(client, job_id, timeout=300)
        assert job["status"] == "done", job
        assert all((home / "outputs" / out["name"]).is_file() for out in job["outputs"])
    again = client.get(f"/api/v1/jobs/{early}").json()  # finished before the restarts: still there
    assert again["status"] == "done" and [o["name"] for o in again["outputs"]] == early_files
    assert client.get(again["outputs"][0]["url"]).status_code == 200
