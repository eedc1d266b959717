"""The worker process that owns a ``Studio``, and the supervisor that keeps one running.

The HTTP process never generates: it starts ``python -m brushwork.serve.worker`` and watches it.
The worker takes jobs from the queue in order, one at a time, reports progress at every step,
checks for a cancel before every step, and writes outputs atomically before it marks a job done.

If the worker dies (killed, out of memory, a crash in native code), the supervisor hands the job
it was running to ``JobQueue.recover`` (retry once, then fail with the reason) and starts a new
worker, backing off if workers keep dying at once. The worker also stops when the server that
started it goes away (``PR_SET_PDEATHSIG`` on Linux, and a parent check between jobs).
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from brushwork.serve.queue import Job, JobQueue

POLL_SECONDS = 1.0  # idle re-check; a new job also wakes the worker through its stdin pipe
PROGRESS_EVERY = 0.1  # seconds between progress writes (cancel is checked at every step)


# ---------------------------------------------------------------------------- the worker


class Worker:
    def __init__(self, queue: JobQueue, outputs: Path, *, device: str = "cpu", dtype: str = "fp32",
                 home: str | None = None, max_models: int | None = None, keep: str | None = None):
        from brushwork.engine.api import Studio

        self.queue, self.outputs = queue, Path(outputs)
        self.studio = Studio(device=device, dtype=dtype, home=home, allow_paths=False, max_models=max_models,
                             keep=keep)
        self.stop = threading.Event()
        self.pid = os.getpid()
        self.wake_fd: int | None = None  # the supervisor writes a byte here when a job is queued

    def preload(self, model: str | None) -> None:
        try:
            self.studio.model(model)
        except Exception as exc:  # the job that uses it will report the error properly
            log(f"could not preload model {model!r}: {exc}")

    def serve_forever(self, parent_pid: int | None = None) -> None:
        self.queue.set_setting("worker", {"pid": self.pid, "ready_at": time.time()})
        while not self.stop.is_set():
            if parent_pid is not None and os.getppid() != parent_pid:
                log("the server went away; stopping")
                return
            job = self.queue.claim(self.pid)
            if job is None:
                self._idle(POLL_SECONDS)
                continue
            self.run(job)

    def _idle(self, timeout: float) -> None:
        """Sleep until woken by the supervisor (a job was queued) or ``timeout`` passes."""
        if self.wake_fd is None:
            self.stop.wait(timeout)
            return
        try:
            ready, _, _ = select.select([self.wake_fd], [], [], timeout)
            if ready and not os.read(self.wake_fd, 4096):  # EOF: the server closed its end
                log("the server went away; stopping")
                self.stop.set()
        except (OSError, ValueError):
            self.stop.wait(timeout)

    def run(self, job: Job) -> None:
        from brushwork.engine.params import GenerationParams
        from brushwork.engine.pipeline import Cancelled
        from brushwork.errors import BrushworkError
        from brushwork.serve.inputs import InputStore

        state = {"last_write": 0.0, "step": 0, "total": 0, "first": None, "last": None, "cancel": False}

        def on_step(i: int, total: int, _latents) -> bool:
            now = time.monotonic()
            if state["first"] is None:
                state["first"] = now
            state["last"], state["step"], state["total"] = now, i, total
            if self.stop.is_set():
                return True
            if now - state["last_write"] >= PROGRESS_EVERY or i in (0, total):
                state["last_write"] = now
                state["cancel"] = self.queue.progress(job.id, i, total)
            else:
                state["cancel"] = self.queue.cancel_requested(job.id)
            return state["cancel"]

        started = time.monotonic()
        if job.outputs:
            self._remove_partial(job)
        try:
            params = GenerationParams.from_json(json.dumps(job.params))
            images = InputStore(self.queue.folder / "inputs").inputs(params.init_image_sha256, params.mask_sha256)
            gen = self.studio.generate(params, images=images, on_step=on_step)
            paths = self.studio.save(gen, self.outputs, on_saved=lambda p: self.queue.add_output(job.id, p.name))
        except Cancelled:
            if self.stop.is_set() and not state["cancel"]:
                self.queue.requeue(job.id)
                log(f"job {job.id} put back in line (worker stopping)")
            else:
                self.queue.mark_cancelled(job.id, f"cancelled before step {state['step'] + 1} of {params.steps}")
            return
        except BrushworkError as exc:
            self._fail(job, str(exc))
            return
        except Exception as exc:  # a bug: record it on the job, keep serving
            traceback.print_exc()
            self._fail(job, f"internal error: {type(exc).__name__}: {exc}")
            return
        done = time.monotonic()
        steps = max(1, state["total"] or params.steps)  # img2img runs steps × strength of them
        if state["first"] is not None and state["last"] is not None and state["last"] > state["first"]:
            per_step = (state["last"] - state["first"]) / steps
            self.queue.record_timing(job.params, sec_per_step=per_step, overhead=max(0.0, done - started - per_step * steps))
        result = {
            "seed": gen.params.seed,
            "seeds": gen.seeds,
            "infotexts": gen.infotexts,
            "model_name": gen.model_name,
            "model_hash": gen.model_hash,
            "requested_size": list(gen.plan.requested),
            "generated_size": list(gen.plan.generated),
            "params": gen.params.model_dump(),
            "seconds": round(done - started, 3),
        }
        self.queue.finish(job.id, [p.name for p in paths], result)


    def _fail(self, job: Job, message: str) -> None:
        """Fail the job with a message clients may read: server paths become file names (logged in full)."""
        from brushwork.paths import hide_paths, server_roots

        shown = hide_paths(message, server_roots(self.outputs, self.studio.home))
        if shown != message:
            log(f"job {job.id} failed: {message}")
        self.queue.fail(job.id, shown)

    def _remove_partial(self, job: Job) -> None:
        """Delete the files an earlier attempt wrote before it died; this attempt writes them again."""
        from brushwork.paths import safe_join

        for name in job.outputs:
            try:
                safe_join(self.outputs, name).unlink(missing_ok=True)
            except Exception as exc:  # a name that is not ours to delete is left alone, and logged
                log(f"job {job.id}: could not remove partial output {name!r}: {exc}")
        self.queue.clear_outputs(job.id)
        log(f"job {job.id}: removed {len(job.outputs)} output(s) of an earlier attempt")


def log(message: str) -> None:
    print(f"[brushwork worker {os.getpid()}] {message}", file=sys.stderr, flush=True)


def _die_with_parent() -> None:
    """Ask Linux to send SIGTERM when the parent exits (no-op elsewhere)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="brushwork-worker")
    p.add_argument("--queue", required=True, help="folder holding the queue database")
    p.add_argument("--outputs", required=True)
    p.add_argument("--home", default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="fp32")
    p.add_argument("--preload", default=None, help="model to load before taking jobs")
    p.add_argument("--parent-pid", type=int, default=None)
    p.add_argument("--wake-stdin", action="store_true", help="stdin is the supervisor's wake-up pipe")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--max-models", type=int, default=None, help="models held besides --preload (default: all)")
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    _die_with_parent()
    if args.parent_pid is not None and os.getppid() != args.parent_pid:
        return 0
    worker = Worker(JobQueue(args.queue), Path(args.outputs), device=args.device, dtype=args.dtype, home=args.home,
                    max_models=args.max_models, keep=args.preload)
    signal.signal(signal.SIGTERM, lambda *_: worker.stop.set())
    signal.signal(signal.SIGINT, lambda *_: worker.stop.set())
    if args.wake_stdin:
        worker.wake_fd = sys.stdin.fileno()
    if args.preload:
        worker.preload(args.preload)
    log("ready")
    worker.serve_forever(parent_pid=args.parent_pid)
    return 0


# ---------------------------------------------------------------------------- the supervisor


class Supervisor:
    """Runs one worker process, restarts it when it dies, and recovers its jobs."""

    def __init__(self, queue: JobQueue, *, outputs: Path, home: str | None, device: str = "cpu",
                 dtype: str = "fp32", preload: str | None = None, threads: int | None = None,
                 max_models: int | None = None, job_timeout: float | None = None):
        self.queue, self.outputs, self.home, self.threads = queue, Path(outputs), home, threads
        self.device, self.dtype, self.preload = device, dtype, preload
        self.max_models, self.job_timeout = max_models, job_timeout
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self.last_exit: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> None:
        recovered = self.queue.recover(reason="the server stopped")
        for job in recovered:
            print(f"[brushwork] job {job.id} was running when the last server stopped: now {job.status}",
                  file=sys.stderr, flush=True)
        self._thread = threading.Thread(target=self._watch, name="brushwork-supervisor", daemon=True)
        self._thread.start()

    def _spawn(self) -> None:
        cmd = [sys.executable, "-m", "brushwork.serve.worker", "--queue", str(self.queue.folder),
               "--outputs", str(self.outputs), "--device", self.device, "--dtype", self.dtype,
               "--parent-pid", str(os.getpid()), "--wake-stdin"]
        if self.home is not None:
            cmd += ["--home", str(self.home)]
        if self.preload:
            cmd += ["--preload", self.preload]
        if self.threads:
            cmd += ["--threads", str(self.threads)]
        if self.max_models is not None:
            cmd += ["--max-models", str(self.max_models)]
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        with self._lock:
            self.proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE)
            os.set_blocking(self.proc.stdin.fileno(), False)
            self.started_at = time.monotonic()

    def wake(self) -> None:
        """Tell an idle worker that a job was queued (it re-checks every second anyway)."""
        with self._lock:
            proc = self.proc
            if proc is None or proc.poll() is not None:
                return
            try:
                os.write(proc.stdin.fileno(), b"j")
            except (BlockingIOError, BrokenPipeError, OSError, ValueError):
                pass  # busy (pipe full) or gone: it will look at the queue anyway

    def _watch(self) -> None:
        backoff = 1.0
        self._spawn()
        while not self._stop.wait(0.25):
            proc = self.proc
            code = proc.poll() if proc else 0
            if code is None:
                if time.monotonic() - self.started_at > 60:
                    backoff = 1.0
                self._stop_overdue(proc)
                continue
            if self._stop.is_set():
                return
            _close(proc)
            how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
            self.last_exit = how
            for job in self.queue.recover(worker_pid=proc.pid, reason=f"the worker process died ({how})"):
                print(f"[brushwork] job {job.id}: worker {proc.pid} died ({how}); job is now {job.status}",
                      file=sys.stderr, flush=True)
            quick = time.monotonic() - self.started_at < 10
            if quick and self._stop.wait(backoff):
                return
            backoff = min(30.0, backoff * 2) if quick else 1.0
            self.restarts += 1
            print(f"[brushwork] worker {proc.pid} died ({how}); starting a new one", file=sys.stderr, flush=True)
            self._spawn()

    def _stop_overdue(self, proc: subprocess.Popen) -> None:
        """A job running past ``job_timeout`` fails with the reason (not retried), and its worker is killed."""
        if self.job_timeout is None:
            return
        running = self.queue.running(worker_pid=proc.pid)
        if running is None or time.time() - running[1] <= self.job_timeout:
            return
        self.queue.fail(running[0], f"ran past the job time limit ({self.job_timeout:g} s); the worker was "
                                    "stopped and the job is not retried")
        print(f"[brushwork] job {running[0]} ran past {self.job_timeout:g} s: stopping worker {proc.pid}",
              file=sys.stderr, flush=True)
        proc.kill()

    def status(self) -> dict:
        proc = self.proc
        return {"pid": proc.pid if proc else None, "alive": bool(proc and proc.poll() is None),
                "restarts": self.restarts, "last_exit": self.last_exit}

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the worker: it puts a running job back in line at its next step, then exits."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        with self._lock:
            proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        _close(proc)


def _close(proc: subprocess.Popen) -> None:
    try:
        if proc.stdin is not None:
            proc.stdin.close()
    except OSError:
        pass


if __name__ == "__main__":
    sys.exit(main())
