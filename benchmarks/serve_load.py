"""Server load: images per minute with 1 and with 4 concurrent clients, 0 errors and 0 lost jobs.

    .venv/bin/python benchmarks/serve_load.py [--jobs 40] [--clients 4] [--single-jobs 10] [--steps 20]
                                              [--model default|tiny|NAME] [--url http://127.0.0.1:PORT]

Starts ``brushwork serve`` on a free loopback port with a fresh home (or uses ``--url``, which
must be a loopback address), then:

1. one client runs ``--single-jobs`` jobs, one after another;
2. ``--clients`` clients run ``--jobs`` jobs in all, concurrently; each client cycles through the
   three ways in (native submit + poll, A1111 ``txt2img``, OpenAI ``images/generations``).

Every image is decoded and checked not to be a flat colour. Afterwards the server's own job list
must hold every submitted job as done with its files: any other outcome is an error or a lost
job. Baseline in the same run: the same generation through ``Studio.generate`` in this process,
with no server. Bounded: loopback only, a fixed number of jobs, and ``--max-seconds`` overall.
The model defaults to the bundled one when installed, and otherwise a tiny random model built
here (which the output says).
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

import httpx
import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def build_tiny(folder: Path) -> Path:
    import importlib.util

    spec = importlib.util.spec_from_file_location("_engine_conftest", REPO / "tests" / "engine" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_tiny_model(folder)


def prepare_home(home: Path, model: str) -> tuple[str, str]:
    """Register the model to serve; returns (name, description)."""
    from brushwork.models.registry import Registry

    bundled = (REPO / "brushwork" / "default_model" / "model_index.json").is_file()
    if model == "default" and not bundled:
        model = "tiny"
    if model == "tiny":
        path = build_tiny(home.parent / "tiny-model")
        with Registry(home) as reg:
            reg.add(path, name="tiny")
        return "tiny", "tiny random model (16 px native, 32 px max)" + ("" if bundled else "; bundled model not installed")
    if model == "default":
        return "default", "bundled default model"
    return model, f"registered model {model!r}"


def start_server(home: Path, model: str, threads: int | None = None, max_queue: int = 1000):
    import socket
    import subprocess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "BRUSHWORK_HOME": str(home), "HF_HUB_OFFLINE": "1", "GRADIO_ANALYTICS_ENABLED": "False"}
    log = open(home / "server.log", "ab")
    proc = subprocess.Popen([sys.executable, "-m", "brushwork", "serve", "--host", "127.0.0.1", "--port", str(port),
                             "--model", model, "--no-ui", "--max-queue", str(max_queue)]
                            + (["--threads", str(threads)] if threads else []),
                            env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {(home / 'server.log').read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=5).json()["worker"]["ready"]:
                return proc, url
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise SystemExit("server did not become ready in 300 s")


def check_image(data: bytes) -> None:
    pixels = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float32)
    if pixels.std() <= 1.0:
        raise ValueError("flat image")


class Load:
    def __init__(self, url: str, params: dict, deadline: float):
        self.url, self.params, self.deadline = url, params, deadline
        self.errors: list[str] = []
        self.submitted: list[str] = []  # native job ids; A1111/OpenAI jobs are counted by source
        self.by_route = {"native": 0, "a1111": 0, "openai": 0}
        self.images = 0
        self.attempted = 0
        self.lock = threading.Lock()

    def one(self, client: httpx.Client, k: int) -> None:
        p = self.params
        route = ("native", "a1111", "openai")[k % 3]
        try:
            if route == "native":
                r = client.post("/api/v1/jobs", json=p)
                r.raise_for_status()
                job_id = r.json()["id"]
                with self.lock:
                    self.submitted.append(job_id)
                while time.monotonic() < self.deadline:
                    job = client.get(f"/api/v1/jobs/{job_id}").json()
                    if job["status"] in ("done", "failed", "cancelled"):
                        break
                    time.sleep(0.1)
                if job["status"] != "done":
                    raise ValueError(f"job {job_id} {job['status']}: {job['error']}")
                blobs = [client.get(o["url"]).content for o in job["outputs"]]
            elif route == "a1111":
                body = {"prompt": p["prompt"], "steps": p["steps"], "seed": -1, "batch_size": p["n"],
                        "width": p.get("width") or 0, "height": p.get("height") or 0}
                body = {k: v for k, v in body.items() if v != 0}
                r = client.post("/sdapi/v1/txt2img", json=body)
                r.raise_for_status()
                blobs = [base64.b64decode(b) for b in r.json()["images"]]
            else:
                size = f"{p['width']}x{p['height']}" if p.get("width") else "auto"
                r = client.post("/v1/images/generations", json={"prompt": p["prompt"], "n": p["n"], "size": size,
                                                                "response_format": "b64_json", "steps": p["steps"]})
                r.raise_for_status()
                blobs = [base64.b64decode(d["b64_json"]) for d in r.json()["data"]]
            if len(blobs) != p["n"]:
                raise ValueError(f"{len(blobs)} images for n={p['n']}")
            for blob in blobs:
                check_image(blob)
            with self.lock:
                self.images += len(blobs)
                self.by_route[route] += 1
        except Exception as exc:  # counted and reported, never hidden
            with self.lock:
                self.errors.append(f"{route}: {type(exc).__name__}: {exc}")

    def run(self, jobs: int, clients: int) -> float:
        counter = iter(range(jobs))
        lock = threading.Lock()

        def client_loop():
            with httpx.Client(base_url=self.url, timeout=max(5.0, self.deadline - time.monotonic())) as c:
                while time.monotonic() < self.deadline:
                    with lock:
                        k = next(counter, None)
                        if k is not None:
                            self.attempted += 1
                    if k is None:
                        return
                    self.one(c, k)

        start = time.perf_counter()
        threads = [threading.Thread(target=client_loop) for _ in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.perf_counter() - start


def lost_jobs(url: str, since: float, expected: int) -> tuple[int, int]:
    """(jobs not done, jobs missing) among those submitted after ``since``, from the server's list."""
    jobs = httpx.get(f"{url}/api/v1/jobs", params={"limit": 500}, timeout=30).json()["jobs"]
    mine = [j for j in jobs if j["created_at"] >= since]
    not_done = sum(j["status"] != "done" for j in mine)
    return not_done, max(0, expected - len(mine))


def baseline(model: str, home: Path, params: dict, count: int) -> float:
    """Images per minute from ``Studio.generate`` in this process (no server)."""
    os.environ["BRUSHWORK_HOME"] = str(home)
    from brushwork.engine.api import Studio
    from brushwork.engine.params import GenerationParams

    studio = Studio(allow_paths=False)
    gp = GenerationParams.build(**{**params, "model": model, "seed": 1})
    studio.generate(gp.replace(steps=1))  # load and warm up
    start = time.perf_counter()
    for i in range(count):
        studio.generate(gp.replace(seed=1 + i * gp.n))
    return count * gp.n / (time.perf_counter() - start) * 60


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--jobs", type=int, default=40, help="jobs for the concurrent run (default 40)")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--single-jobs", type=int, default=10, help="jobs for the one-client run (default 10)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--n", type=int, default=1, help="images per job")
    ap.add_argument("--size", type=int, default=0, help="width=height; 0 = the model's native size")
    ap.add_argument("--model", default="default")
    ap.add_argument("--url", default=None, help="an already running server (loopback only)")
    ap.add_argument("--max-seconds", type=float, default=1800)
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--threads", type=int, default=None, help="torch threads in the worker and the baseline")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args()
    for name in ("jobs", "clients", "single_jobs"):
        if not 1 <= getattr(args, name) <= 1000:
            raise SystemExit(f"--{name.replace('_', '-')} must be 1..1000")

    params = {"prompt": "a red circle above a blue square", "steps": args.steps, "n": args.n}
    if args.size:
        params.update(width=args.size, height=args.size)
    tmp = tempfile.TemporaryDirectory()
    home = Path(tmp.name) / "home"
    home.mkdir()
    proc = None
    if args.url:
        host = urlparse(args.url).hostname or ""
        from brushwork.serve.auth import is_loopback

        if not is_loopback(host):
            raise SystemExit("--url must be a loopback address (this benchmark never sends traffic elsewhere)")
        url, model, described = args.url.rstrip("/"), args.model, f"model {args.model!r} on {args.url}"
    else:
        model, described = prepare_home(home, args.model)
        proc, url = start_server(home, model, args.threads)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    params["model"] = model
    figures: dict = {"model": described, "params": params, "cores": os.cpu_count(), "threads": args.threads}
    deadline = time.monotonic() + args.max_seconds
    try:
        warm = Load(url, {**params, "steps": 1}, deadline)
        warm.run(3, 1)  # warm every route once; not counted
        results = {}
        for clients, jobs in ((1, args.single_jobs), (args.clients, args.jobs)):
            since = time.time()
            load = Load(url, params, deadline)
            wall = load.run(jobs, clients)
            time.sleep(0.5)
            not_done, missing = lost_jobs(url, since, load.attempted)
            done_jobs = sum(load.by_route.values())
            results[clients] = {
                "clients": clients, "jobs": jobs, "completed": done_jobs, "images": load.images,
                "seconds": round(wall, 2), "images_per_minute": round(load.images / wall * 60, 2),
                "errors": len(load.errors), "error_samples": load.errors[:5], "lost": missing,
                "not_attempted": jobs - load.attempted,
                "server_jobs_not_done": not_done, "by_route": load.by_route,
            }
            r = results[clients]
            print(f"{clients} client(s): {r['jobs']} jobs, {r['images']} images in {r['seconds']} s = "
                  f"{r['images_per_minute']} images/min; errors {r['errors']}, lost {r['lost']}, "
                  f"not attempted (time limit) {r['not_attempted']}, "
                  f"server jobs not done {r['server_jobs_not_done']}; by route {r['by_route']}", flush=True)
            for e in load.errors[:5]:
                print(f"  error: {e}")
        figures["runs"] = list(results.values())
        if not args.no_baseline and proc is not None and time.monotonic() < deadline:
            base = baseline(model, home, {k: v for k, v in params.items() if k != "model"}, min(10, args.single_jobs))
            figures["baseline_images_per_minute"] = round(base, 2)
            one = results[1]["images_per_minute"]
            many = results[args.clients]["images_per_minute"]
            print(f"baseline Studio.generate in-process, no server: {base:.2f} images/min; "
                  f"server/baseline: 1 client {one / base:.2f}x, {args.clients} clients {many / base:.2f}x")
        print(f"model: {described}; {os.cpu_count()} cores; worker threads {args.threads or 'default'}")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(timeout=60)
        tmp.cleanup()
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    bad = sum(r["errors"] + r["lost"] + r["server_jobs_not_done"] + r["not_attempted"] for r in figures["runs"])
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
