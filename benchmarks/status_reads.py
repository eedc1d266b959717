"""Status reads under a long queue: time and size of ``GET /api/v1/jobs/{id}``.

    .venv/bin/python benchmarks/status_reads.py [--jobs 30] [--reads 200]

Queues ``--jobs`` jobs, each with a maximum-length prompt and negative prompt (the server's
``prompt_chars``, 32,000 by default), on a server without a worker (so they stay queued), then
reads the last job's status ``--reads`` times through the app (in process, no network) and prints
the median time and the response size. Baseline in the same run: the pre-limits way of placing a
job in line, which decoded every active job's row (``JobQueue.snapshot``), timed the same way.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=30)
    ap.add_argument("--reads", type=int, default=200)
    args = ap.parse_args()

    from fastapi.testclient import TestClient

    from brushwork.serve.app import create_app
    from brushwork.serve.service import ServeConfig

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "engine"))
    from conftest import build_tiny_model  # the tests' tiny random model: no bundled model needed

    from brushwork.models.registry import Registry

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        with Registry(home) as reg:
            reg.add(build_tiny_model(Path(tmp) / "tiny"), name="tiny")
        config = ServeConfig(home=home, worker=False, ui=False, model="tiny", max_queue=args.jobs + 1)
        prompt = ("a red circle above a blue square " * 1_000)[:config.limits.prompt_chars]
        with TestClient(create_app(config), base_url="http://127.0.0.1") as client:
            ids = []
            for _ in range(args.jobs):
                r = client.post("/api/v1/jobs", json={"prompt": prompt, "negative_prompt": prompt, "steps": 2})
                assert r.status_code == 202, r.text
                ids.append(r.json()["id"])
            queue = client.app.state.service.queue

            def timed(fn) -> float:
                times = []
                for _ in range(args.reads):
                    t = time.perf_counter()
                    fn()
                    times.append(time.perf_counter() - t)
                return statistics.median(times)

            route = timed(lambda: client.get(f"/api/v1/jobs/{ids[-1]}"))
            size = len(client.get(f"/api/v1/jobs/{ids[-1]}").content)
            full = len(client.get(f"/api/v1/jobs/{ids[-1]}", params={"full": True}).content)
            get = timed(lambda: queue.get(ids[-1]))
            old = timed(lambda: [j for j in queue.snapshot() if j.id == ids[-1]])
    print(f"{args.jobs} queued jobs, prompt and negative prompt of {len(prompt):,} characters each")
    print(f"GET /api/v1/jobs/{{id}}: median {route * 1e3:.2f} ms, {size:,} bytes ({full:,} with ?full=true)")
    print(f"queue.get (placing the job in line): median {get * 1e3:.3f} ms")
    print(f"baseline, decoding every active job (the old way): median {old * 1e3:.3f} ms "
          f"({old / get:.1f}x queue.get)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
