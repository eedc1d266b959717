"""Worker kills: distinct jobs, each with its worker killed (SIGKILL) once mid-job, on a loopback server.

    .venv/bin/python benchmarks/worker_kills.py [--jobs 20] [--steps 100] [--n 2] [--model default|tiny]

Starts ``brushwork serve`` on a free loopback port with a fresh home, then for each job in turn:
submit it, wait until the worker has run at least one denoising step of it, kill the worker with
``kill -9`` (its pid from ``/api/v1/health``), and wait for the supervisor to restart the worker
and the retried job to finish. Afterwards it counts:

- jobs lost (not ``done``), and jobs left running;
- finished images lost (a listed output that is not on disk, checked for every job at the end);
- duplicate or orphan images (files in the outputs folder that no job lists).

Expected: 0 of each. Bounded: loopback only, ``--jobs`` jobs, ``--max-seconds`` overall.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent


def serve_load():
    spec = importlib.util.spec_from_file_location("serve_load", HERE / "serve_load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wait(predicate, deadline: float, what: str):
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise SystemExit(f"timed out waiting for {what}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--n", type=int, default=2)
    ap.add_argument("--model", default="default")
    ap.add_argument("--max-seconds", type=float, default=1200)
    args = ap.parse_args()
    load = serve_load()
    deadline = time.monotonic() + args.max_seconds
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        model, label = load.prepare_home(home, args.model)
        proc, url = load.start_server(home, model)
        killed, ids = 0, []
        try:
            client = httpx.Client(base_url=url, timeout=60)
            for k in range(args.jobs):
                r = client.post("/api/v1/jobs", json={"prompt": "a red circle above a blue square", "seed": 100 + k,
                                                      "steps": args.steps, "n": args.n, "model": model})
                r.raise_for_status()
                job_id = r.json()["id"]
                ids.append(job_id)
                wait(lambda: (j := client.get(f"/api/v1/jobs/{job_id}").json())["status"] == "running"
                     and j["progress"]["step"] >= 1, deadline, f"job {k} to start")
                pid = client.get("/api/v1/health").json()["worker"]["pid"]
                os.kill(pid, signal.SIGKILL)
                killed += 1
                wait(lambda: client.get(f"/api/v1/jobs/{job_id}").json()["status"] in ("done", "failed", "cancelled"),
                     deadline, f"job {k} to finish after the kill")
            jobs = [client.get(f"/api/v1/jobs/{i}").json() for i in ids]
            counts = client.get("/api/v1/health").json()["counts"]
        finally:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except Exception:
                proc.kill()
        outputs = home / "outputs"
        listed = [o["name"] for j in jobs for o in j["outputs"]]
        on_disk = {p.name for p in outputs.iterdir() if p.is_file() and not p.name.startswith(".")}
        lost_jobs = [j["id"] for j in jobs if j["status"] != "done"]
        lost_images = [n for n in listed if n not in on_disk]
        extra = sorted(on_disk - set(listed))
    print(f"model {label}: {args.jobs} jobs of {args.n} images × {args.steps} steps, worker killed {killed} times "
          f"(once per job, mid-job)")
    print(f"jobs lost {len(lost_jobs)}, still running {counts['running']}, attempts per job "
          f"{sorted({j['attempts'] for j in jobs})}")
    print(f"images listed {len(listed)} (expected {args.jobs * args.n}), finished images lost {len(lost_images)}, "
          f"duplicate or orphan files {len(extra)}{(': ' + ', '.join(extra[:5])) if extra else ''}")
    return 0 if not (lost_jobs or lost_images or extra or counts["running"]) else 1


if __name__ == "__main__":
    sys.exit(main())
