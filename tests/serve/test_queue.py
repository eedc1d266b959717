"""The SQLite job queue on its own: order, crash recovery, cancel, backpressure, migrations, ETA."""

from __future__ import annotations

import sqlite3

import pytest

from brushwork.errors import InvalidParameter, NotFound
from brushwork.serve.queue import MIGRATIONS, SCHEMA_VERSION, JobFinished, JobQueue, QueueFull

P = {"prompt": "a red circle", "steps": 10, "n": 1, "model": "tiny", "seed": 1}


def test_new_queue_is_wal_with_current_schema(tmp_path):
    q = JobQueue(tmp_path)
    assert q.schema_version == SCHEMA_VERSION
    assert q._db().execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_old_schema_is_migrated_and_keeps_its_jobs(tmp_path):
    db = sqlite3.connect(tmp_path / "queue.sqlite3")
    db.executescript(MIGRATIONS[0])
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    db.execute("INSERT INTO schema_version VALUES (1)")
    db.execute("INSERT INTO jobs (id, source, params, status, created_at) VALUES ('a'||hex(randomblob(15)), 'api', "
               "'{\"prompt\": \"old\", \"steps\": 5}', 'queued', 1.0)")
    db.commit()
    db.close()
    q = JobQueue(tmp_path)
    assert q.schema_version == SCHEMA_VERSION == 3
    [job] = q.snapshot()
    assert job.params["prompt"] == "old" and job.status == "queued"
    assert job.total_steps == 5 and job.position == 1  # migration 3 fills the line's columns
    q.set_setting("x", 1)  # the table from migration 2 exists


def test_newer_schema_is_refused(tmp_path):
    q = JobQueue(tmp_path)
    with q._write() as db:
        db.execute("UPDATE schema_version SET version = 99")
    q.close()
    with pytest.raises(InvalidParameter, match="schema version 99"):
        JobQueue(tmp_path)


def test_jobs_run_in_submission_order_and_survive_reopening(tmp_path):
    q = JobQueue(tmp_path)
    ids = [q.submit({**P, "prompt": f"p{i}"}).id for i in range(4)]
    q.close()
    q2 = JobQueue(tmp_path)  # a restarted server
    assert [j.id for j in q2.snapshot()] == ids
    assert [q2.claim(111).id for _ in range(2)] == ids[:2]


def test_positions_and_eta(tmp_path):
    q = JobQueue(tmp_path)
    ids = [q.submit(P).id for _ in range(3)]
    q.claim(1)
    jobs = q.snapshot()
    assert [(j.id, j.position, j.queue_length) for j in jobs] == [(ids[0], 1, 3), (ids[1], 2, 3), (ids[2], 3, 3)]
    assert jobs[0].eta < jobs[1].eta < jobs[2].eta
    # measured timings replace the defaults: 0.01 s/step, 0.5 s overhead → 10 steps ≈ 0.6 s per job
    q.record_timing(P, sec_per_step=0.01, overhead=0.5)
    assert q.estimate(P) == pytest.approx((0.01, 0.5))
    assert q.snapshot()[2].eta == pytest.approx(3 * (10 * 0.01 + 0.5))
    q.progress(ids[0], 5, 10)
    assert q.snapshot()[0].eta == pytest.approx(5 * 0.01 + 0.5)
    # a different size of the same model falls back to that model's mean
    assert q.estimate({**P, "width": 32}) == pytest.approx((0.01, 0.5))


def test_dead_worker_job_is_retried_once_then_failed(tmp_path):
    q = JobQueue(tmp_path)
    job = q.submit(P)
    other = q.submit(P)
    assert q.claim(100).id == job.id
    [after] = q.recover(worker_pid=100, reason="the worker process died (killed by signal 9)")
    assert after.status == "queued" and after.attempts == 1
    assert q.snapshot()[0].id == job.id  # keeps its place in line
    assert q.claim(200).id == job.id
    assert q.recover(worker_pid=999) == []  # another pid's jobs are not touched
    [after] = q.recover(worker_pid=200, reason="the worker process died (killed by signal 9)")
    assert after.status == "failed" and after.attempts == 2
    assert "killed by signal 9" in after.error and "not retried" in after.error
    assert q.claim(300).id == other.id  # the line moves on: no crash loop


def test_startup_recovery_and_cancel_during_crash(tmp_path):
    q = JobQueue(tmp_path)
    a, b = q.submit(P), q.submit(P)
    q.claim(1)
    q.cancel(a.id)
    [after] = q.recover(reason="the server stopped")
    assert after.status == "cancelled"
    assert q.get(b.id).status == "queued"


def test_cancel(tmp_path):
    q = JobQueue(tmp_path)
    running, queued = q.submit(P), q.submit(P)
    q.claim(1)
    assert q.cancel(queued.id).status == "cancelled"
    job = q.cancel(running.id)
    assert job.status == "running" and job.cancel_requested
    assert q.progress(running.id, 3, 10) is True  # the worker sees it at its next step
    q.mark_cancelled(running.id, "cancelled before step 4 of 10")
    with pytest.raises(JobFinished):
        q.cancel(running.id)
    with pytest.raises(NotFound):
        q.cancel("0" * 32)


def test_requeue_on_graceful_stop_does_not_count_an_attempt(tmp_path):
    q = JobQueue(tmp_path)
    job = q.submit(P)
    q.claim(1)
    q.requeue(job.id)
    again = q.get(job.id)
    assert again.status == "queued" and again.attempts == 0


def test_backpressure(tmp_path):
    q = JobQueue(tmp_path)
    q.submit(P, max_queue=2)
    q.submit(P, max_queue=2)
    with pytest.raises(QueueFull) as info:
        q.submit(P, max_queue=2)
    assert info.value.retry_after >= 1 and info.value.http_status == 429
    q.claim(1)  # a running job no longer counts as waiting
    q.submit(P, max_queue=2)


def test_finish_records_outputs(tmp_path):
    q = JobQueue(tmp_path)
    job = q.submit(P)
    q.claim(1)
    q.finish(job.id, ["00000-1.png"], {"seeds": [1]})
    done = q.get(job.id)
    assert (done.status, done.outputs, done.result, done.position) == ("done", ["00000-1.png"], {"seeds": [1]}, None)
    assert q.counts()["done"] == 1
