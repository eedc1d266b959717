"""What every front end of the server shares: validate a request into ``GenerationParams``, put
it in the queue, wait for it, and describe jobs and models.

The native API, the A1111 and OpenAI routes and the Gradio UI all call this one object, so a
job from any of them waits in the same line and is checked the same way before it is accepted:
an unknown model or sampler, or a size the model cannot take, is refused at submission (4xx),
never discovered later by the worker.
"""

from __future__ import annotations

import asyncio
import copy
import fcntl
import json
import os
import random
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from brushwork.engine.params import SCHEMA_VERSION, SEED_RANGE, GenerationParams
from brushwork.errors import BrushworkError, InvalidParameter, NotFound
from brushwork.serve.inputs import InputStore
from brushwork.serve.limits import Limits, native_side
from brushwork.serve.queue import Job, JobQueue

VIEW_TEXT_CHARS = 300  # job views cut longer strings (prompts, infotexts) unless asked for in full
ALLOWED_IMAGE_TYPES = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}


@dataclass
class ServeConfig:
    """Everything ``brushwork serve`` was started with.

    Attributes:
        home: the brushwork home (registry, queue database under ``serve/``).
        outputs: where finished images are written (default ``<home>/outputs``).
        token: required on every request when set (Bearer, or Basic with any user name).
        max_queue: most jobs allowed to wait; beyond it submissions get 429 + Retry-After.
        cors: allowed origins; empty means no CORS headers at all. Also the only foreign origins whose
            POST/PUT/PATCH/DELETE requests are accepted (``auth.Guard``).
        allow_hosts: ``Host`` names served without a token besides loopback (``--allow-host``):
            ``NAME`` for any port, ``NAME:PORT`` for one.
        model: the model used when a request names none (A1111's ``sd_model_checkpoint``).
        device, dtype: passed to the worker's ``Studio``.
        threads: torch CPU threads in the worker (``None``: torch's default, one per core).
        ui: mount the Gradio UI at ``/ui``.
        worker: start the worker process (tests of routes that never generate may turn it off).
        max_body: largest request body in bytes (413 beyond).
        max_upload_pixels: largest image accepted for decoding (png-info, later img2img).
        limits: what one request may ask for (prompt length, job budget, inline bytes, job time; ``limits.py``).
        max_models: models the worker holds besides the one it preloads (least recently used dropped first).
        keep_days, max_outputs_gb: retention (``Service.retain``): finished jobs older than this, or the oldest
            beyond this many GB of their images, are deleted with their images. ``None``: keep everything.
    """

    home: Path
    outputs: Path | None = None
    token: str | None = None
    max_queue: int = 100
    cors: list[str] = field(default_factory=list)
    allow_hosts: list[str] = field(default_factory=list)
    model: str = "default"
    device: str = "cpu"
    dtype: str = "fp32"
    threads: int | None = None
    ui: bool = True
    worker: bool = True
    max_body: int = 32 * 1024 * 1024
    max_upload_pixels: int = 4096 * 4096
    limits: Limits = field(default_factory=Limits)
    max_models: int = 1
    keep_days: float | None = None
    max_outputs_gb: float | None = None

    def __post_init__(self):
        self.home = Path(self.home)
        self.outputs = Path(self.outputs) if self.outputs is not None else self.home / "outputs"

    @property
    def queue_dir(self) -> Path:
        return self.home / "serve"


class ServerBusy(BrushworkError):
    """Another server already owns this brushwork home's queue."""

    exit_code = 2


class Service:
    def __init__(self, config: ServeConfig):
        self.config = config
        config.outputs.mkdir(parents=True, exist_ok=True)
        self.queue = JobQueue(config.queue_dir)
        self.inputs = InputStore(config.queue_dir / "inputs")
        self.supervisor = None
        self._lock_file = None
        self._retention: threading.Event | None = None

    # ------------------------------------------------------------ life cycle

    def start(self) -> None:
        self.take_lock()
        if self.config.worker:
            from brushwork.serve.worker import Supervisor

            self.supervisor = Supervisor(self.queue, outputs=self.config.outputs, home=str(self.config.home),
                                         device=self.config.device, dtype=self.config.dtype,
                                         preload=self.current_model(), threads=self.config.threads,
                                         max_models=self.config.max_models,
                                         job_timeout=self.config.limits.job_timeout)
            self.supervisor.start()
        self.start_retention()

    def stop(self) -> None:
        if self._retention is not None:
            self._retention.set()
            self._retention = None
        if self.supervisor is not None:
            self.supervisor.stop()
            self.supervisor = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def start_retention(self, every: float = 600.0) -> None:
        """Apply retention now and then every ``every`` seconds, in a thread, until ``stop``."""
        if self.config.keep_days is None and self.config.max_outputs_gb is None:
            return
        stop = self._retention = threading.Event()

        def loop():
            while True:
                try:
                    self.retain()
                except Exception as exc:  # retention must never take the server down; it tries again later
                    print(f"[brushwork] retention failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                if stop.wait(every):
                    return

        threading.Thread(target=loop, name="brushwork-retention", daemon=True).start()

    def retain(self, now: float | None = None) -> list[str]:
        """Delete finished jobs (rows and images) older than ``keep_days``, then the oldest while their
        images exceed ``max_outputs_gb``. Only images that jobs of this server wrote are deleted, never a
        symlink, never a queued or running job. Returns the deleted jobs' ids."""
        from brushwork.paths import safe_join

        cfg = self.config
        now = time.time() if now is None else now
        jobs = self.queue.finished_oldest_first()

        def files(job):
            out = []
            for name in job.outputs:
                try:
                    path = safe_join(cfg.outputs, name)
                except BrushworkError:
                    continue
                link = cfg.outputs / name
                if not link.is_symlink() and path.is_file():
                    out.append(path)
            return out

        owned = {job.id: files(job) for job in jobs}
        total = sum(p.stat().st_size for paths in owned.values() for p in paths)
        limit = None if cfg.max_outputs_gb is None else cfg.max_outputs_gb * 1e9
        removed = []
        for job in jobs:
            old = cfg.keep_days is not None and (job.finished_at or now) < now - cfg.keep_days * 86400
            over = limit is not None and total > limit
            if not (old or over):
                break
            for path in owned[job.id]:
                total -= path.stat().st_size
                path.unlink(missing_ok=True)
            removed.append(job.id)
        self.queue.delete_finished(removed)
        return removed

    def take_lock(self) -> None:
        """One server per home: two workers on one queue would each take jobs the other owns."""
        if self._lock_file is not None:
            return
        path = self.config.queue_dir / "server.lock"
        handle = open(path, "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            other = handle.read().strip() or "?"
            handle.close()
            raise ServerBusy(f"another brushwork server (pid {other}) is already serving {self.config.home}") from None
        handle.seek(0)
        handle.truncate()
        handle.write(str(os.getpid()))
        handle.flush()
        self._lock_file = handle

    # ------------------------------------------------------------ models

    def current_model(self) -> str:
        return self.queue.setting("sd_model_checkpoint", self.config.model)

    def set_current_model(self, ref: str, *, field: str = "sd_model_checkpoint") -> str:
        name = self.resolve_model(ref, field=field)["name"]
        self.queue.set_setting("sd_model_checkpoint", name)
        return name

    def models(self) -> list[dict]:
        """Registered models (the bundled one included when installed), as the APIs list them."""
        from brushwork.models.registry import Registry

        with Registry(self.config.home) as reg:
            entries = reg.list()
        out = []
        for e in entries:
            title = f"{e.name} [{e.short_hash}]" if e.short_hash else e.name
            out.append({"name": e.name, "title": title, "hash": e.short_hash, "sha256": e.sha256, "kind": e.kind,
                        "license": e.license, "format": e.format, "filename": e.path.name})
        return out

    def resolve_model(self, ref: str | None, *, field: str = "model") -> dict:
        """``{"name", "path", "license"}`` for a model reference a client sent.

        Accepts a registry name, an A1111 title (``name [hash]``), ``default`` (the bundled
        model), or a file or folder inside ``<home>/models``; never a filesystem path.
        """
        from brushwork.models.licenses import normalize_license
        from brushwork.models.modelcard import read_card
        from brushwork.models.registry import Registry, resolve_model

        ref = self.current_model() if ref is None or ref == "" else ref
        if not isinstance(ref, str):
            raise InvalidParameter(f"{field}: must be a string", field=field)
        name = re.sub(r"\s*\[[0-9a-fA-F]{6,64}\]$", "", ref.strip())
        try:
            with Registry(self.config.home) as reg:
                res = resolve_model(name, registry=reg, allow_paths=False)
        except BrushworkError as exc:
            raise with_field(exc, f"{field}: {exc}", field) from None
        license_id = res.entry.license if res.entry else normalize_license(read_card(res.path).get("license"))
        return {"name": res.name, "path": res.path, "license": license_id,
                "kind": getattr(res.entry, "kind", None)}

    def networks(self, params: GenerationParams):
        """The LoRA and embedding files a request names (``engine.networks.resolve``), never by path."""
        from brushwork.engine.networks import resolve
        from brushwork.models.networks import network_names

        home = self.config.home
        try:
            return resolve(params, home=home, allow_paths=False,
                           known_embeddings=network_names("textual-inversion", home=home))
        except BrushworkError as exc:
            field = exc.field or ("prompt" if "<lora:" in params.prompt else "loras")
            raise with_field(exc, str(exc) if str(exc).startswith(f"{field}:") else f"{field}: {exc}", field) from None

    def list_networks(self, kind: str) -> list:
        from brushwork.models.networks import list_networks

        return list_networks(kind, home=self.config.home)

    # ------------------------------------------------------------ submitting

    def prepare(self, values: dict[str, Any], *, rename: dict[str, str] | None = None,
                inline_field: str | None = None) -> GenerationParams:
        """Validate request values into complete ``GenerationParams`` (model, seed, sampler filled).

        ``rename`` maps engine field names to the names the client used, so that errors name
        the client's field (``n`` → ``batch_size`` for A1111). The server's ``limits`` apply; with
        ``inline_field`` (the request field that asked for base64 images in the response) so does
        the inline-bytes limit.
        """
        from brushwork.engine.images import check_inputs
        from brushwork.engine.samplers import resolve_sampler

        rename = rename or {}
        try:
            version = values.get("schema_version", SCHEMA_VERSION)
            if not isinstance(version, int) or not 1 <= version <= SCHEMA_VERSION:
                raise InvalidParameter(f"schema_version: this server reads parameters of schema version 1 to "
                                       f"{SCHEMA_VERSION}, not {version!r}", field="schema_version")
            limits = self.config.limits
            for name in ("prompt", "negative_prompt"):  # before parsing: a huge prompt is refused cheaply
                if isinstance(values.get(name), str):
                    limits.check_prompt(name, values[name])
            params = GenerationParams.build(**{**values, "schema_version": SCHEMA_VERSION})
            sampler, schedule = resolve_sampler(params.sampler, params.scheduler)
            model = self.resolve_model(params.model, field="model")
            nets = self.networks(params)  # every LoRA and embedding the request names exists
            if params.commercial:
                from brushwork.models.licenses import check_commercial

                check_commercial(model["name"], model["license"], loras=nets.licenses())
            factor = latent_factor(str(model["path"]))
            for name in ("width", "height"):
                v = getattr(params, name)
                if v is not None and v % factor:
                    raise InvalidParameter(f"{name}: {v} is not a multiple of {factor}, which model "
                                           f"{model['name']} needs", field=name)
            side = native_side(str(model["path"]), model["kind"])
            default = (side, side)
            if params.init_image_sha256 is not None:  # img2img's size defaults to the image's own
                w, h = self.inputs.size(params.init_image_sha256, field="init_image_sha256")
                o = params.outpaint
                default = (w + o.left + o.right, h + o.top + o.bottom) if o is not None else (w, h)
            if params.mask_sha256 is not None:  # both exist, and the mask fits the image
                check_inputs(params, self.inputs.inputs(params.init_image_sha256, params.mask_sha256))
            elif params.outpaint is not None and params.init_image_sha256 is None:
                raise InvalidParameter("outpaint: outpainting needs an init image", field="outpaint")
            width, height = params.width or default[0], params.height or default[1]
            steps = params.steps
            if params.enable_hr:  # the second pass runs at hr_scale² the pixels
                steps += (params.hr_second_pass_steps or params.steps) * params.hr_scale ** 2
            limits.check_job(params.n, steps, width, height)
            if inline_field is not None:
                scale = params.hr_scale if params.enable_hr else 1
                limits.check_inline(params.n, round(width * scale), round(height * scale), field=inline_field)
            seed = params.seed
            if seed is None:
                seed = random.randrange(SEED_RANGE[0], SEED_RANGE[1] - params.n)
            return params.replace(model=model["name"], seed=seed, sampler=sampler, scheduler=schedule)
        except BrushworkError as exc:
            if exc.field in rename:
                new = rename[exc.field]
                message = str(exc)
                if message.startswith(f"{exc.field}:"):
                    message = new + message[len(exc.field):]
                elif not message.startswith(f"{new}:"):
                    message = f"{new}: {message}"
                raise with_field(exc, message, new) from None
            raise

    def submit(self, params: GenerationParams, *, source: str) -> Job:
        job = self.queue.submit(params.model_dump(), source=source, max_queue=self.config.max_queue)
        if self.supervisor is not None:
            self.supervisor.wake()
        return job

    async def wait(self, job_id: str, request=None, *, poll: float = 0.1) -> Job:
        """Wait for a job to finish; cancel it if the HTTP client goes away first."""
        from starlette.concurrency import run_in_threadpool

        while True:
            job = await run_in_threadpool(self.queue.get, job_id)
            if job is None or job.finished:
                return job
            if request is not None and await request.is_disconnected():
                await run_in_threadpool(self._cancel_quietly, job_id)
                return job
            await asyncio.sleep(poll)

    def _cancel_quietly(self, job_id: str) -> None:
        try:
            self.queue.cancel(job_id)
        except BrushworkError:
            pass

    # ------------------------------------------------------------ describing

    def view(self, job: Job, image_url=None, *, full: bool = False) -> dict:
        """The native API's description of a job. ``image_url(name)`` makes output URLs.

        Unless ``full``, strings in ``params`` and ``result`` longer than ``VIEW_TEXT_CHARS`` (long prompts,
        and the infotexts that repeat them) are cut there and ``truncated`` is true, so that status reads
        stay small; ``GET /api/v1/jobs/{id}?full=true`` returns them whole.
        """
        total = job.total_steps or job.steps
        params, result, cut = job.params, job.result, False
        if not full:
            (params, result), cut = _shorten((params, result), VIEW_TEXT_CHARS)
        outputs = [{"name": n, "url": image_url(n) if image_url else f"/api/v1/images/{n}"} for n in job.outputs]
        return {
            "id": job.id,
            "status": job.status,
            "source": job.source,
            "position": job.position,
            "queue_length": job.queue_length,
            "eta_seconds": round(job.eta, 1) if job.eta is not None else None,
            "progress": {"step": job.step, "total": total,
                         "fraction": 1.0 if job.status == "done" else round(job.step / total, 4) if total else 0.0},
            "attempts": job.attempts,
            "cancel_requested": job.cancel_requested,
            "error": job.error,
            "params": params,
            "outputs": outputs,
            "result": result,
            "truncated": cut,
            "created_at": job.created_at,
            "started_at": job.started_at,
            "finished_at": job.finished_at,
        }

    def output_path(self, name: str) -> Path:
        """An output file by name, through ``safe_join``; only PNG/JPEG/WebP, never hidden files."""
        from brushwork.errors import UnsafePath
        from brushwork.paths import safe_join

        try:  # first: '..', absolute paths, NUL bytes and links out of the folder are refused as unsafe (400)
            path = safe_join(self.config.outputs, name)
        except UnsafePath as exc:
            raise with_field(exc, f"name: {exc}", "name") from None
        if any(part.startswith(".") for part in name.replace("\\", "/").split("/")):
            raise NotFound(f"no image {name!r}", field="name")
        if path.suffix.lower() not in ALLOWED_IMAGE_TYPES:
            raise NotFound(f"{name!r} is not an image this server serves (PNG, JPEG or WebP only)", field="name")
        if not path.is_file():
            raise NotFound(f"no image {name!r}", field="name")
        return path

    def gallery(self, limit: int = 200) -> list[Path]:
        files = [p for p in self.config.outputs.iterdir()  # symlinks are never shown, wherever they point
                 if not p.is_symlink() and p.is_file() and not p.name.startswith(".")
                 and p.suffix.lower() in ALLOWED_IMAGE_TYPES]
        files.sort(key=lambda p: p.stat().st_mtime, reverse=True)
        return files[:limit]


def _shorten(value, limit: int):
    """``(value with every string longer than limit cut to limit + "…", whether any was cut)``."""
    if isinstance(value, str):
        return (value[:limit] + "…", True) if len(value) > limit else (value, False)
    if isinstance(value, dict):
        pairs = {k: _shorten(v, limit) for k, v in value.items()}
        return {k: v for k, (v, _) in pairs.items()}, any(c for _, c in pairs.values())
    if isinstance(value, (list, tuple)):
        items = [_shorten(v, limit) for v in value]
        return type(value)(v for v, _ in items), any(c for _, c in items)
    return value, False


def with_field(exc: BrushworkError, message: str, field: str) -> BrushworkError:
    """A copy of ``exc`` (same type and status) with a new message and field name."""
    new = copy.copy(exc)
    new.message, new.field = message, field
    new.args = (message,)
    return new


@lru_cache(maxsize=64)
def latent_factor(path: str) -> int:
    """How many pixels one latent cell covers for a model (8 for Stable Diffusion)."""
    config = Path(path) / "vae" / "config.json"
    try:
        blocks = json.loads(config.read_text()).get("block_out_channels")
        if isinstance(blocks, list) and blocks:
            return 2 ** (len(blocks) - 1)
    except (OSError, ValueError):
        pass
    return 8


def sniff_image(head: bytes) -> str | None:
    """The media type of an image from its first bytes, or None when it is not PNG/JPEG/WebP."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    return None
