"""brushwork's own API under ``/api/v1``: jobs, inputs, events, images, models, samplers, health.

img2img, inpainting and outpainting: upload the init image and the mask with ``POST /api/v1/inputs``
(the raw image bytes as the body), then queue a job whose ``init_image_sha256`` / ``mask_sha256`` name them.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Literal

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import FileResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from brushwork.engine.params import GenerationParams
from brushwork.errors import InvalidParameter, NotFound
from brushwork.serve.service import Service, sniff_image

router = APIRouter(prefix="/api/v1", tags=["brushwork"])

JOB_ID = Path(..., pattern=r"^[0-9a-f]{32}$", description="a job id as returned by POST /api/v1/jobs")
Status = Literal["queued", "running", "done", "failed", "cancelled"]


def service(request: Request) -> Service:
    return request.app.state.service


def image_url(request: Request):
    return lambda name: str(request.url_for("get_image", name=name))


@router.post("/jobs", status_code=202, summary="Queue a generation")
async def submit_job(params: GenerationParams, request: Request) -> dict:
    """Takes the engine's ``GenerationParams``; returns the job with its id, queue position and ETA.

    A missing ``seed`` is chosen now and recorded, so a retried job makes the same images.
    """
    svc = service(request)
    prepared = await run_in_threadpool(svc.prepare, params.model_dump(exclude_unset=True))
    job = await run_in_threadpool(svc.submit, prepared, source="api")
    job = await run_in_threadpool(svc.queue.require, job.id)
    return svc.view(job, image_url(request))


@router.post("/inputs", status_code=201, summary="Upload an init image or mask (the image file as the body)")
async def upload_input(request: Request) -> dict:
    """Stores the image in the server's home, named by the sha256 of its pixels, and returns that name
    for a job's ``init_image_sha256`` or ``mask_sha256``. PNG, JPEG or WebP, within the pixel cap."""
    svc = service(request)
    data = await request.body()
    if sniff_image(data[:16]) is None:
        raise InvalidParameter("image: the body is not a PNG, JPEG or WebP file", field="image")
    image, digest = await run_in_threadpool(svc.inputs.put, data)
    return {"sha256": digest, "width": image.width, "height": image.height, "mode": image.mode}


@router.get("/jobs/{job_id}", summary="A job: status, position, progress, ETA, outputs")
async def get_job(request: Request, job_id: str = JOB_ID,
                  full: bool = Query(False, description="prompts and infotexts whole (default: cut at 300 "
                                                        "characters, with truncated: true)")) -> dict:
    svc = service(request)
    job = await run_in_threadpool(svc.queue.require, job_id)
    return svc.view(job, image_url(request), full=full)


@router.delete("/jobs/{job_id}", status_code=202, summary="Cancel a queued or running job")
async def cancel_job(request: Request, job_id: str = JOB_ID) -> dict:
    """A queued job is cancelled at once; a running one stops before its next denoising step."""
    svc = service(request)
    job = await run_in_threadpool(svc.queue.cancel, job_id)
    return svc.view(job, image_url(request))


@router.get("/jobs", summary="List jobs, newest first")
async def list_jobs(request: Request, status: Status | None = None,
                    source: Literal["api", "a1111", "openai", "ui"] | None = None,
                    limit: int = Query(50, ge=1, le=500)) -> dict:
    svc = service(request)
    jobs = await run_in_threadpool(svc.queue.list, status=status, source=source, limit=limit)
    counts = await run_in_threadpool(svc.queue.counts)
    return {"jobs": [svc.view(j, image_url(request)) for j in jobs], "counts": counts,
            "queue_length": counts["queued"] + counts["running"]}


@router.get("/events", summary="Server-sent events: queue changes and job progress")
async def events(request: Request, job: str | None = Query(None, pattern=r"^[0-9a-f]{32}$"),
                 max_seconds: float = Query(3600, gt=0, le=86400)) -> StreamingResponse:
    """``event: queue`` carries the line (id, status, position, progress, ETA of each active job);
    ``event: job`` a job that changed or finished. With ``job=<id>`` only that job is followed and
    the stream ends when it finishes."""
    svc = service(request)
    if job is not None:
        await run_in_threadpool(svc.queue.require, job)

    async def stream():
        last_queue, last_jobs = None, {}
        deadline, keepalive = time.monotonic() + max_seconds, time.monotonic()
        checked = time.time()
        while time.monotonic() < deadline and not await request.is_disconnected():
            now = time.time()
            active = await run_in_threadpool(svc.queue.line)
            ended = [] if job else await run_in_threadpool(svc.queue.finished_since, checked - 1.0)
            checked = now
            line = [{"id": j["id"], "status": j["status"], "position": j["position"], "step": j["step"],
                     "total": j["total_steps"], "eta_seconds": round(j["eta"], 1)} for j in active]
            watch = [job] if job else [j.id for j in ended] + [j["id"] for j in active]
            out = []
            if job is None and line != last_queue:
                out.append(("queue", {"queue_length": len(line), "jobs": line}))
                last_queue = line
            finished = False
            for jid in watch:
                current = await run_in_threadpool(svc.queue.get, jid)
                if current is None:
                    continue
                view = svc.view(current, image_url(request))
                key = (view["status"], view["progress"]["step"], view["position"])
                if last_jobs.get(jid) != key:
                    out.append(("job", view))
                    last_jobs[jid] = key
                finished = finished or (job is not None and current.finished)
            last_jobs = {k: v for k, v in last_jobs.items() if k in watch}  # bounded
            for name, data in out:
                yield f"event: {name}\ndata: {json.dumps(data)}\n\n"
            if finished:
                return
            if out:
                keepalive = time.monotonic()
            elif time.monotonic() - keepalive > 15:
                keepalive = time.monotonic()
                yield ": keepalive\n\n"
            await asyncio.sleep(0.25)

    return StreamingResponse(stream(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/images/{name:path}", name="get_image", summary="An output image (PNG, JPEG or WebP only)",
            response_class=FileResponse)
async def get_image(request: Request, name: str):
    svc = service(request)
    path = await run_in_threadpool(svc.output_path, name)
    with open(path, "rb") as handle:
        media = sniff_image(handle.read(16))
    if media is None:
        raise NotFound(f"{name!r} is not a PNG, JPEG or WebP image", field="name")
    return FileResponse(path, media_type=media, headers={
        "X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'",
        "Cache-Control": "private, max-age=3600"})


@router.get("/models", summary="Models this server can use")
async def models(request: Request) -> dict:
    svc = service(request)
    return {"models": await run_in_threadpool(svc.models), "current": await run_in_threadpool(svc.current_model)}


@router.get("/samplers", summary="Sampler names and schedule types")
async def samplers() -> dict:
    from brushwork.engine.samplers import list_samplers, list_schedule_types

    return {"samplers": list_samplers(), "schedule_types": list_schedule_types()}


@router.get("/limits", summary="What one request may ask for (prompt length, job budget, queue, sizes)")
async def limits(request: Request) -> dict:
    from brushwork.engine.params import COUNT_RANGE, MAX_SIDE, STEPS_RANGE

    config = service(request).config
    return {**config.limits.describe(), "max_queue": config.max_queue, "max_body_bytes": config.max_body,
            "max_upload_pixels": config.max_upload_pixels, "max_side": MAX_SIDE, "steps": list(STEPS_RANGE),
            "n": list(COUNT_RANGE)}


@router.get("/health", summary="Is the server up, and is its worker alive?")
async def health(request: Request) -> dict:
    svc = service(request)
    counts = await run_in_threadpool(svc.queue.counts)
    worker = svc.supervisor.status() if svc.supervisor else {"pid": None, "alive": False, "restarts": 0}
    ready = await run_in_threadpool(svc.queue.setting, "worker", None)
    worker["ready"] = bool(worker.get("alive") and ready and ready.get("pid") == worker.get("pid"))
    return {"ok": True, "worker": worker, "queue_length": counts["queued"] + counts["running"], "counts": counts}
