"""The job queue: SQLite in the brushwork home (WAL, a schema version, migrations).

One row per job: its ``GenerationParams`` JSON, status, attempts, progress, outputs and timings.
The HTTP process submits, reads and cancels; the worker process claims, reports progress and
finishes. Both open the same file; SQLite's locking makes each change atomic.

States::

    queued ──claim──► running ──► done | failed | cancelled
      │                  │
      └──cancel──► cancelled   └──worker died──► queued (attempt 1) / failed (attempt 2)

Jobs run in submission order (``seq``). A job left ``running`` by a dead worker is handled
explicitly by ``recover``: put back in line once, then failed with the reason, so a job that
kills the worker cannot crash-loop it.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brushwork.errors import BrushworkError, NotFound
from brushwork.sqlite_schema import migrate, schema_version

DB_NAME = "queue.sqlite3"
ACTIVE = ("queued", "running")
FINISHED = ("done", "failed", "cancelled")
STATUSES = ACTIVE + FINISHED
MAX_ATTEMPTS = 2  # the first run and one retry after a worker death

# Until a job of the same kind has run, estimates use these (seconds).
DEFAULT_SEC_PER_IMAGE_STEP = 0.5
DEFAULT_OVERHEAD = 2.0

MIGRATIONS = [
    # 1: jobs, in submission order
    """
    CREATE TABLE jobs (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        source TEXT NOT NULL,
        params TEXT NOT NULL,
        status TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        worker_pid INTEGER,
        step INTEGER NOT NULL DEFAULT 0,
        total_steps INTEGER NOT NULL DEFAULT 0,
        outputs TEXT NOT NULL DEFAULT '[]',
        result TEXT,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL
    );
    CREATE INDEX jobs_status_seq ON jobs (status, seq);
    """,
    # 2: measured step times (for ETAs) and server settings (A1111's options)
    """
    CREATE TABLE timings (
        key TEXT PRIMARY KEY,
        sec_per_image_step REAL NOT NULL,
        overhead REAL NOT NULL,
        samples INTEGER NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    """,
    # 3: what the line's positions and ETAs need, in columns, so that reading a job's status never decodes
    #    the parameters (prompts of up to 32,000 characters each) of every job ahead of it
    """
    ALTER TABLE jobs ADD COLUMN n INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE jobs ADD COLUMN timing_key TEXT NOT NULL DEFAULT 'default|nativexnative';
    UPDATE jobs SET n = COALESCE(json_extract(params, '$.n'), 1),
        timing_key = COALESCE(json_extract(params, '$.model'), 'default') || '|'
            || COALESCE(json_extract(params, '$.width'), 'native') || 'x'
            || COALESCE(json_extract(params, '$.height'), 'native');
    UPDATE jobs SET total_steps = COALESCE(json_extract(params, '$.steps'), 20) WHERE total_steps = 0;
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


class QueueFull(BrushworkError):
    """The queue already holds ``max_queue`` waiting jobs; try again after ``retry_after`` s."""

    http_status = 429

    def __init__(self, message: str, *, retry_after: int):
        super().__init__(message, field="queue")
        self.retry_after = retry_after


class JobFinished(BrushworkError):
    """A cancel (or similar) for a job that has already finished."""

    http_status = 409


@dataclass
class Job:
    """One row of the queue, decoded."""

    id: str
    seq: int
    source: str
    params: dict
    status: str
    attempts: int
    cancel_requested: bool
    error: str | None
    worker_pid: int | None
    step: int
    total_steps: int
    outputs: list[str]
    result: dict | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    # filled in by ``JobQueue.snapshot`` for active jobs
    position: int | None = None  # 1 = first in line (the running job, if any, counts)
    queue_length: int | None = None  # active jobs in line, this one included
    eta: float | None = None  # seconds until this job is done
    extra: dict = field(default_factory=dict)

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    @property
    def n(self) -> int:
        return int(self.params.get("n") or 1)

    @property
    def steps(self) -> int:
        return int(self.params.get("steps") or 20)


def timing_key(params: dict) -> str:
    """Jobs with the same key take about the same time per image-step."""
    w, h = params.get("width") or "native", params.get("height") or "native"
    return f"{params.get('model') or 'default'}|{w}x{h}"


class JobQueue:
    """The queue database in ``folder`` (created if missing). Safe to share between threads."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.path = self.folder / DB_NAME
        self._local = threading.local()
        self._migrate()

    # ------------------------------------------------------------ connections

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")  # durable across process crashes, fast commits
            db.execute("PRAGMA busy_timeout=30000")
            self._local.db = db
        return db

    def _write(self):
        """A write transaction that takes the lock up front (no upgrade deadlocks)."""
        return _Immediate(self._db())

    def close(self) -> None:
        db = getattr(self._local, "db", None)
        if db is not None:
            db.close()
            self._local.db = None

    def _migrate(self) -> None:
        migrate(self._db(), MIGRATIONS, f"the job queue {self.path}")

    @property
    def schema_version(self) -> int:
        return schema_version(self._db())

    # ------------------------------------------------------------ submitting and reading

    def submit(self, params: dict, *, source: str = "api", max_queue: int | None = None) -> Job:
        """Append a job; raise ``QueueFull`` when ``max_queue`` jobs are already waiting."""
        job_id = uuid.uuid4().hex
        now = time.time()
        with self._write() as db:
            if max_queue is not None:
                waiting = db.execute("SELECT COUNT(*) FROM jobs WHERE status = 'queued'").fetchone()[0]
                if waiting >= max_queue:
                    retry = self._retry_after(db)
                    raise QueueFull(f"the queue is full ({waiting} jobs waiting, at most {max_queue}); "
                                    f"retry in about {retry} s", retry_after=retry)
            db.execute(
                "INSERT INTO jobs (id, source, params, status, total_steps, n, timing_key, created_at) "
                "VALUES (?,?,?,?,?,?,?,?)",
                (job_id, source, json.dumps(params, sort_keys=True), "queued", int(params.get("steps") or 20),
                 int(params.get("n") or 1), timing_key(params), now),
            )
        return self.get(job_id)

    def _retry_after(self, db) -> int:
        line = self._line(db)
        if not line or line[0]["status"] != "running":
            return 1
        return max(1, math.ceil(line[0]["eta"]))

    def get(self, job_id: str) -> Job | None:
        """One job; an active one with its place in line (found without decoding the other jobs' rows)."""
        db = self._db()
        row = db.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            return None
        job = _job(row)
        if job.status in ACTIVE:
            for place in self._line(db):
                if place["id"] == job.id:
                    job.position, job.queue_length, job.eta = place["position"], place["queue_length"], place["eta"]
        return job

    def require(self, job_id: str) -> Job:
        job = self.get(job_id) if isinstance(job_id, str) else None
        if job is None:
            raise NotFound(f"no job {job_id!r}", field="id")
        return job

    def list(self, *, status: str | None = None, limit: int = 50, source: str | None = None) -> list[Job]:
        """Most recent first."""
        sql, args = "SELECT * FROM jobs", []
        where = []
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if source is not None:
            where.append("source = ?")
            args.append(source)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq DESC LIMIT ?"
        args.append(int(limit))
        places = {p["id"]: p for p in self._line(self._db())}
        jobs = [_job(row) for row in self._db().execute(sql, args)]
        for job in jobs:
            if job.id in places:
                p = places[job.id]
                job.position, job.queue_length, job.eta = p["position"], p["queue_length"], p["eta"]
        return jobs

    def finished_oldest_first(self) -> list[Job]:
        """Finished jobs, the one that finished first first."""
        rows = self._db().execute("SELECT * FROM jobs WHERE status IN ('done', 'failed', 'cancelled') "
                                  "ORDER BY finished_at, seq").fetchall()
        return [_job(r) for r in rows]

    def delete_finished(self, job_ids: list[str]) -> int:
        """Delete these jobs' rows if they have finished (a queued or running job is never deleted)."""
        with self._write() as db:
            return sum(db.execute("DELETE FROM jobs WHERE id = ? AND status IN ('done', 'failed', 'cancelled')",
                                  (i,)).rowcount for i in job_ids)

    def finished_since(self, when: float) -> list[Job]:
        """Jobs that finished at or after ``when`` (a ``time.time()``), in line order."""
        rows = self._db().execute("SELECT * FROM jobs WHERE finished_at >= ? ORDER BY seq", (when,)).fetchall()
        return [_job(r) for r in rows]

    def counts(self) -> dict[str, int]:
        rows = self._db().execute("SELECT status, COUNT(*) FROM jobs GROUP BY status").fetchall()
        out = {s: 0 for s in STATUSES}
        out.update({r[0]: r[1] for r in rows})
        return out

    def line(self) -> list[dict]:
        """The active jobs in line order (the running one first): ``id, status, step, total_steps,
        position, queue_length, eta`` each; their parameters are not read."""
        return self._line(self._db())

    def _line(self, db) -> list[dict]:
        rows = db.execute(
            "SELECT id, status, step, total_steps, n, timing_key FROM jobs WHERE status IN ('queued', 'running') "
            "ORDER BY CASE status WHEN 'running' THEN 0 ELSE 1 END, seq"
        ).fetchall()
        timings, elapsed, out = self._timings(db), 0.0, []
        for i, r in enumerate(rows):
            per_step, overhead = self.estimate_key(r["timing_key"], timings)
            left = max(0, r["total_steps"] - r["step"]) if r["status"] == "running" else r["total_steps"]
            elapsed += left * r["n"] * per_step + overhead
            out.append({"id": r["id"], "status": r["status"], "step": r["step"], "total_steps": r["total_steps"],
                        "position": i + 1, "queue_length": len(rows), "eta": elapsed})
        return out

    def snapshot(self) -> list[Job]:
        """Active jobs in line order (the running one first), whole, with position, length and ETA."""
        db = self._db()
        line = self._line(db)
        rows = {r["id"]: r for r in db.execute("SELECT * FROM jobs WHERE status IN ('queued', 'running')")}
        jobs = []
        for place in line:
            if place["id"] in rows:
                job = _job(rows[place["id"]])
                job.position, job.queue_length, job.eta = place["position"], place["queue_length"], place["eta"]
                jobs.append(job)
        return jobs

    # ------------------------------------------------------------ estimates

    def _timings(self, db) -> dict[str, tuple[float, float]]:
        return {r["key"]: (r["sec_per_image_step"], r["overhead"])
                for r in db.execute("SELECT key, sec_per_image_step, overhead FROM timings")}

    def estimate(self, params: dict, timings: dict | None = None) -> tuple[float, float]:
        """``(seconds per image-step, overhead seconds)`` for a job, from measured runs.

        Same model and size first, then the mean over the same model, then over everything.
        """
        return self.estimate_key(timing_key(params), timings)

    def estimate_key(self, key: str, timings: dict | None = None) -> tuple[float, float]:
        timings = self._timings(self._db()) if timings is None else timings
        if key in timings:
            return timings[key]
        model = key.split("|")[0] + "|"
        for pool in ([v for k, v in timings.items() if k.startswith(model)], list(timings.values())):
            if pool:
                return (sum(p[0] for p in pool) / len(pool), sum(p[1] for p in pool) / len(pool))
        return DEFAULT_SEC_PER_IMAGE_STEP, DEFAULT_OVERHEAD

    def record_timing(self, params: dict, *, sec_per_step: float, overhead: float) -> None:
        """Fold one job's measurement into the running average (exponential, weight 0.3)."""
        per_image_step = sec_per_step / max(1, int(params.get("n") or 1))
        key = timing_key(params)
        with self._write() as db:
            row = db.execute("SELECT * FROM timings WHERE key = ?", (key,)).fetchone()
            if row is not None:
                per_image_step = 0.7 * row["sec_per_image_step"] + 0.3 * per_image_step
                overhead = 0.7 * row["overhead"] + 0.3 * overhead
            db.execute("INSERT OR REPLACE INTO timings VALUES (?,?,?,?,?)",
                       (key, per_image_step, overhead, (row["samples"] if row else 0) + 1, time.time()))

    # ------------------------------------------------------------ the worker's side

    def claim(self, worker_pid: int) -> Job | None:
        """Take the oldest queued job: mark it running and count the attempt."""
        with self._write() as db:
            row = db.execute("SELECT id FROM jobs WHERE status = 'queued' ORDER BY seq LIMIT 1").fetchone()
            if row is None:
                return None
            db.execute(
                "UPDATE jobs SET status = 'running', attempts = attempts + 1, worker_pid = ?, step = 0, "
                "started_at = ? WHERE id = ?",
                (worker_pid, time.time(), row["id"]),
            )
        return _job(self._db().execute("SELECT * FROM jobs WHERE id = ?", (row["id"],)).fetchone())

    def progress(self, job_id: str, step: int, total: int) -> bool:
        """Record progress; return True when a cancel was requested."""
        with self._write() as db:
            db.execute("UPDATE jobs SET step = ?, total_steps = ? WHERE id = ?", (step, total, job_id))
        return self.cancel_requested(job_id)

    def cancel_requested(self, job_id: str) -> bool:
        row = self._db().execute("SELECT cancel_requested FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return bool(row and row[0])

    def running(self, *, worker_pid: int) -> tuple[str, float] | None:
        """``(job id, started_at)`` of the job a worker is running, if any."""
        row = self._db().execute("SELECT id, started_at FROM jobs WHERE status = 'running' AND worker_pid = ? "
                                 "LIMIT 1", (worker_pid,)).fetchone()
        return (row[0], row[1]) if row else None

    def add_output(self, job_id: str, name: str) -> None:
        """Record a file the running job has written, as soon as it exists (a retry removes it)."""
        with self._write() as db:
            db.execute("UPDATE jobs SET outputs = json_insert(outputs, '$[#]', ?) WHERE id = ? AND status = 'running'",
                       (name, job_id))

    def clear_outputs(self, job_id: str) -> None:
        with self._write() as db:
            db.execute("UPDATE jobs SET outputs = '[]' WHERE id = ? AND status = 'running'", (job_id,))

    def finish(self, job_id: str, outputs: list[str], result: dict) -> None:
        with self._write() as db:
            db.execute(
                "UPDATE jobs SET status = 'done', outputs = ?, result = ?, step = total_steps, finished_at = ?, "
                "error = NULL WHERE id = ? AND status = 'running'",
                (json.dumps(outputs), json.dumps(result, sort_keys=True), time.time(), job_id),
            )

    def fail(self, job_id: str, error: str) -> None:
        with self._write() as db:
            db.execute("UPDATE jobs SET status = 'failed', error = ?, finished_at = ? WHERE id = ? AND status = 'running'",
                       (error, time.time(), job_id))

    def mark_cancelled(self, job_id: str, note: str) -> None:
        with self._write() as db:
            db.execute("UPDATE jobs SET status = 'cancelled', error = ?, finished_at = ? "
                       "WHERE id = ? AND status = 'running'", (note, time.time(), job_id))

    def requeue(self, job_id: str) -> None:
        """Put a running job back in line without counting the attempt (graceful shutdown)."""
        with self._write() as db:
            db.execute("UPDATE jobs SET status = 'queued', attempts = MAX(0, attempts - 1), worker_pid = NULL, "
                       "step = 0, started_at = NULL WHERE id = ? AND status = 'running'", (job_id,))

    def recover(self, *, worker_pid: int | None = None, reason: str = "the worker process died") -> list[Job]:
        """Handle jobs left ``running`` by a dead worker (``None``: by any process, at start-up).

        Each goes back in line if it has had fewer than ``MAX_ATTEMPTS`` attempts, and is failed
        with the reason otherwise (so a job that kills the worker cannot loop). A cancel requested
        for it is honoured instead. Returns the jobs as they are now.
        """
        now = time.time()
        with self._write() as db:
            sql, args = "SELECT * FROM jobs WHERE status = 'running'", []
            if worker_pid is not None:
                sql += " AND worker_pid = ?"
                args.append(worker_pid)
            orphans = [_job(r) for r in db.execute(sql, args)]
            for job in orphans:
                if job.cancel_requested:
                    db.execute("UPDATE jobs SET status = 'cancelled', error = ?, finished_at = ? WHERE id = ?",
                               (f"cancelled ({reason})", now, job.id))
                elif job.attempts >= MAX_ATTEMPTS:
                    db.execute(
                        "UPDATE jobs SET status = 'failed', error = ?, finished_at = ? WHERE id = ?",
                        (f"{reason} while running this job, on {job.attempts} attempts; not retried again",
                         now, job.id),
                    )
                else:
                    db.execute("UPDATE jobs SET status = 'queued', worker_pid = NULL, step = 0, started_at = NULL "
                               "WHERE id = ?", (job.id,))
        return [self.get(j.id) for j in orphans]

    # ------------------------------------------------------------ cancelling

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued job now, or ask the worker to stop a running one at its next step."""
        with self._write() as db:
            row = db.execute("SELECT status FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is None:
                raise NotFound(f"no job {job_id!r}", field="id")
            if row["status"] in FINISHED:
                raise JobFinished(f"job {job_id} has already finished ({row['status']})", field="id")
            if row["status"] == "queued":
                db.execute("UPDATE jobs SET status = 'cancelled', error = 'cancelled while queued', "
                           "finished_at = ? WHERE id = ?", (time.time(), job_id))
            else:
                db.execute("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
        return self.get(job_id)

    def cancel_running(self) -> list[str]:
        """Ask the worker to stop whatever it is running (A1111's ``/interrupt``)."""
        with self._write() as db:
            ids = [r[0] for r in db.execute("SELECT id FROM jobs WHERE status = 'running'")]
            db.execute("UPDATE jobs SET cancel_requested = 1 WHERE status = 'running'")
        return ids

    # ------------------------------------------------------------ settings

    def setting(self, key: str, default: Any = None) -> Any:
        row = self._db().execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else default

    def set_setting(self, key: str, value: Any) -> None:
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO settings VALUES (?, ?)", (key, json.dumps(value)))


class _Immediate:
    def __init__(self, db: sqlite3.Connection):
        self.db = db

    def __enter__(self) -> sqlite3.Connection:
        self.db.execute("BEGIN IMMEDIATE")
        return self.db

    def __exit__(self, exc_type, exc, tb) -> None:
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


def _job(row: sqlite3.Row) -> Job:
    d = dict(row)
    return Job(
        id=d["id"], seq=d["seq"], source=d["source"], params=json.loads(d["params"]), status=d["status"],
        attempts=d["attempts"], cancel_requested=bool(d["cancel_requested"]), error=d["error"],
        worker_pid=d["worker_pid"], step=d["step"], total_steps=d["total_steps"],
        outputs=json.loads(d["outputs"] or "[]"), result=json.loads(d["result"]) if d["result"] else None,
        created_at=d["created_at"], started_at=d["started_at"], finished_at=d["finished_at"],
    )
