"""The OpenAI Images API: ``POST /v1/images/generations`` and ``/v1/images/edits``, through the same queue.

``{model, prompt, n, size, response_format}`` → ``{"created", "data": [{"b64_json"|"url"}]}``.
OpenAI's own model names (``dall-e-2``, ``dall-e-3``, ``gpt-image-1``…) mean the server's
current model; any other name must be a model this server has. ``size`` is any ``WxH`` (the
OpenAI sizes included; larger than the model's own size is generated at its largest and
upscaled) or ``auto`` (the model's native size); left out, it is 1024x1024 as at OpenAI
(``auto`` for ``gpt-image-*``), and ``response_format`` is ``url`` (``b64_json`` for ``gpt-image-*``). ``quality``, ``style``, ``user``, ``background``
and ``moderation`` are accepted and ignored. Errors use OpenAI's error object (see ``app.py``).
Extensions, not in OpenAI's API: ``negative_prompt``, ``steps``, ``cfg_scale``, ``sampler``, ``seed``.

``edits`` is multipart: ``image`` (or ``image[]``, one file), optional ``mask``, ``prompt``, ``n``, ``size``
(default: the image's own size) and ``response_format``. Transparent pixels mark the area to repaint: the
mask's, or with no mask the image's own. That area is repainted from scratch (strength 1, filled from its
surroundings first); an image with no mask and no transparency is re-drawn whole (img2img at 0.75).
"""

from __future__ import annotations

import base64
import re
import time
from typing import Literal

from fastapi import APIRouter, Form, Request, UploadFile
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from brushwork.engine.params import GenerationParams
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
    return await _finish(request, svc, values, fmt, source="openai")


async def _finish(request: Request, svc: Service, values: dict, fmt: str, *, source: str) -> dict:
    params = await run_in_threadpool(svc.prepare, values,
                                     inline_field="response_format" if fmt == "b64_json" else None)
    job = await run_in_threadpool(svc.submit, params, source=source)
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


@router.post("/images/edits", summary="OpenAI-compatible image edits (inpainting; multipart form)")
async def edits(request: Request, prompt: str = Form(...), image: list[UploadFile] | None = None,
                image_list: list[UploadFile] | None = Form(None, alias="image[]"), mask: UploadFile | None = None,
                model: str | None = Form(None), n: int = Form(1), size: str | None = Form(None),
                response_format: Literal["url", "b64_json"] | None = Form(None),
                negative_prompt: str = Form(""), steps: int | None = Form(None), cfg_scale: float | None = Form(None),
                sampler: str | None = Form(None), seed: int | None = Form(None)) -> dict:
    svc = service(request)
    files = [*(image or []), *(image_list or [])]
    if len(files) != 1:
        raise InvalidParameter(f"image: send one image file (got {len(files)})", field="image")
    if not 1 <= n <= 10:
        raise InvalidParameter(f"n: must be 1-10 (got {n})", field="n")
    width, height = parse_size(size)
    gpt_image = (model or "").startswith("gpt-image")
    values = {"prompt": prompt, "negative_prompt": negative_prompt, "n": n, "width": width, "height": height,
              "seed": seed, "model": None if model is None or OPENAI_MODELS.match(model) else model}
    for name, value in (("steps", steps), ("cfg_scale", cfg_scale), ("sampler", sampler)):
        if value is not None:
            values[name] = value
    GenerationParams.build(**values)  # parameter errors first: nothing is stored for a request that is refused
    init = await files[0].read()
    mask_bytes = await mask.read() if mask is not None else None
    values.update(await run_in_threadpool(_edit_inputs, svc, init, mask_bytes))
    fmt = response_format or ("b64_json" if gpt_image else "url")
    return await _finish(request, svc, values, fmt, source="openai")


def _edit_inputs(svc: Service, init: bytes, mask: bytes | None) -> dict:
    """Store the image and the mask (with no mask, the image's transparent pixels), and choose the edit."""
    from brushwork.engine.images import alpha_mask, read_image

    if mask is None:
        image = read_image(init, field="image")[0]
        holes = alpha_mask(image)
        if holes is None:  # nothing transparent: re-draw the whole image
            return {"init_image_sha256": svc.inputs.put(image, field="image")[1], "denoising_strength": 0.75}
        mask_image = holes
        init_hash = svc.inputs.put(image, field="image")[1]
        mask_hash = svc.inputs.put(mask_image, field="mask")[1]
    else:
        from brushwork.serve.routes_a1111 import store_inputs

        init_hash, mask_hash = store_inputs(svc, init, mask, init_field="image", mask_field="mask")
    return {"init_image_sha256": init_hash, "mask_sha256": mask_hash, "denoising_strength": 1.0,
            "inpainting_fill": 0, "mask_blur": 0}
