"""The worker's housekeeping: a retried job's earlier files, the model LRU, and the per-job time limit."""

from __future__ import annotations

import os
import shutil

from brushwork.engine.metadata import read_png_info
from brushwork.engine.params import GenerationParams
from brushwork.serve.queue import JobQueue


def test_a_retried_job_removes_the_files_of_the_attempt_that_died(tmp_path, tiny_model_dir, tools):
    from brushwork.serve.worker import Worker

    home = tools.make_home(tmp_path / "home", tiny_model_dir)
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    queue = JobQueue(tmp_path / "q")
    params = GenerationParams.build(prompt="a red circle", seed=5, steps=2, n=2, model="tiny").model_dump()
    job = queue.submit(params)
    queue.claim(worker_pid=999_999)  # attempt 1 saved one image, then its worker was killed
    (outputs / "00000-5.png").write_bytes(b"half of a batch")
    queue.add_output(job.id, "00000-5.png")
    (outputs / "00001-9.png").write_bytes(b"another job's image")  # not this job's: must survive
    queue.recover(worker_pid=999_999)
    job = queue.claim(worker_pid=os.getpid())
    assert job.attempts == 2 and job.outputs == ["00000-5.png"]

    Worker(queue, outputs, home=str(home)).run(job)

    done = queue.get(job.id)
    assert done.status == "done" and len(done.outputs) == 2, done
    assert sorted(p.name for p in outputs.iterdir()) == sorted(done.outputs + ["00001-9.png"])  # no duplicates
    assert (outputs / "00001-9.png").read_bytes() == b"another job's image"
    assert all(read_png_info(outputs / name)["brushwork"] for name in done.outputs)


def test_models_beyond_max_models_are_dropped_least_recently_used_first(tmp_path, tiny_model_dir):
    from brushwork.engine.api import Studio

    a, b, c = (shutil.copytree(tiny_model_dir, tmp_path / name) for name in "abc")
    studio = Studio(max_models=1, keep=str(a))
    for ref in (a, b, a, c):
        studio.model(str(ref))
    assert studio.loaded_models() == [str(a), str(c)]  # a is kept; b went when c came
    plain = Studio(max_models=2)
    for ref in (a, b, a, c):
        plain.model(str(ref))
    assert plain.loaded_models() == [str(a), str(c)]  # b was the least recently used


def test_the_bundled_model_is_one_entry_whatever_it_is_called(tiny_model_dir, monkeypatch):
    from brushwork.engine import api
    from brushwork.models import load

    calls = []
    monkeypatch.setattr(load, "load_pipeline", lambda ref, **kw: calls.append(ref) or object())
    studio = api.Studio(max_models=1, keep="default")
    for ref in (None, "default", "", None):
        studio.model(ref)
    assert calls == [None] and studio.loaded_models() == ["default"]


def test_a_job_past_the_time_limit_is_failed_not_retried_and_its_worker_killed(tmp_path):
    import subprocess
    import time

    from brushwork.serve.worker import Supervisor

    queue = JobQueue(tmp_path / "q")
    proc = subprocess.Popen(["sleep", "60"])  # stands in for a worker that hangs
    try:
        supervisor = Supervisor(queue, outputs=tmp_path, home=None, job_timeout=5.0)
        job = queue.submit({"prompt": "x", "steps": 2})
        queue.claim(worker_pid=proc.pid)
        supervisor._stop_overdue(proc)  # 0 s in: nothing happens
        assert proc.poll() is None and queue.get(job.id).status == "running"
        with queue._write() as db:
            db.execute("UPDATE jobs SET started_at = ? WHERE id = ?", (time.time() - 6, job.id))
        supervisor._stop_overdue(proc)
        assert proc.wait(timeout=10) == -9
        failed = queue.get(job.id)
        assert failed.status == "failed" and "job time limit (5 s)" in failed.error and failed.attempts == 1
        assert queue.recover(worker_pid=proc.pid) == []  # what the supervisor does next: nothing to retry
    finally:
        proc.kill()
        proc.wait()
