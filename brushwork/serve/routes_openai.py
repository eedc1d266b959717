"""The OpenAI Images API: ``POST /v1/images/generations``, through the same queue.

``{model, prompt, n, size, response_format}`` → ``{"created", "data": [{"b64_json"|"url"}]}``.
OpenAI's own model names (``dall-e-2``, ``dall-e-3``, ``gpt-image-1``…) mean the server's
current model; any other name must be a model this server has. ``size`` is any ``WxH`` (the
OpenAI sizes included; larger than the model's own size is generated at its largest and
upscaled) or ``auto`` (the model's native size); left out, it is 1024x1024 as at OpenAI
(``auto`` for ``gpt-image-*``), and ``response_format`` is ``url`` (``b64_json`` for ``gpt-image-*``). ``quality``, ``style``, ``user``, ``background``
and ``moderation`` are accepted and ignored. Errors use OpenAI's error object (see ``app.py``).
Extensions, not in OpenAI's API: ``negative_prompt``, ``steps``, ``cfg_scale``, ``sampler``, ``seed``.
"""

from __future__ import annotations

import base64
import re
import time
from typing import Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from brushwork.errors import InvalidParameter
from brushwork.serve.routes_a1111 import JobNotDone
from brushwork.serve.service import Service

router = APIRouter(prefix="/v1", tags=["OpenAI-compatible"])

OPENAI_MODELS = re.compile(r"^(dall-e-\d|gpt-image-\S+|gpt-image)$")


class ImageGenerationRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    prompt: str = Field(..., description="at most the server's prompt_chars (GET /api/v1/limits; 32,000 by default)")
    model: str | None = None
    n: int = Field(1, ge=1, le=10)
    size: str | None = Field(None, description="WxH, or auto for the model's native size; default 1024x1024 "
                                               "(auto for gpt-image models), as OpenAI's")
    response_format: Literal["url", "b64_json"] | None = None
    output_format: Literal["png"] | None = None
    quality: str | None = None
    style: str | None = None
    user: str | None = None
    # brushwork extensions
    negative_prompt: str = ""
    steps: int | None = None
    cfg_scale: float | None = None
    sampler: str | None = None
    seed: int | None = None


def service(request: Request) -> Service:
    return request.app.state.service


def parse_size(size: str | None) -> tuple[int | None, int | None]:
    if size is None or size == "auto":
        return None, None
    m = re.fullmatch(r"(\d{1,5})x(\d{1,5})", size.strip())
    if not m:
        raise InvalidParameter(f"size: {size!r} is not WIDTHxHEIGHT (e.g. 1024x1024) or auto", field="size")
    return int(m.group(1)), int(m.group(2))


@router.post("/images/generations", summary="OpenAI-compatible image generation")
async def generations(req: ImageGenerationRequest, request: Request) -> dict:
    svc = service(request)
    gpt_image = (req.model or "").startswith("gpt-image")
    width, height = parse_size(req.size or ("auto" if gpt_image else "1024x1024"))
    values = {"prompt": req.prompt, "negative_prompt": req.negative_prompt, "n": req.n,
              "width": width, "height": height, "seed": req.seed,
              "model": None if req.model is None or OPENAI_MODELS.match(req.model) else req.model}
    for name in ("steps", "cfg_scale", "sampler"):
        if getattr(req, name) is not None:
            values[name] = getattr(req, name)
    fmt = req.response_format or ("b64_json" if gpt_image else "url")
    params = await run_in_threadpool(svc.prepare, values,
                                     inline_field="response_format" if fmt == "b64_json" else None)
    job = await run_in_threadpool(svc.submit, params, source="openai")
    job = await svc.wait(job.id, request)
    if job.status != "done":
        raise JobNotDone(job.status, job.error)
    data = []
    for name in job.outputs:
        if fmt == "b64_json":
            path = await run_in_threadpool(svc.output_path, name)
            data.append({"b64_json": base64.b64encode(path.read_bytes()).decode()})
        else:
            data.append({"url": str(request.url_for("get_image", name=name))})
    return {"created": int(job.finished_at or time.time()), "data": data, "output_format": "png",
            "size": f"{job.result['requested_size'][0]}x{job.result['requested_size'][1]}" if job.result else None}
