"""The A1111 web UI API (``/sdapi/v1``), the subset that real clients use, through the same queue.

Field names, defaults and the response shape follow A1111 1.10 (``modules/api/models.py``):
``seed`` -1 is random, ``sampler_name`` falls back to ``sampler_index`` ("Euler"), 50 steps,
512×512 (generated at the model's largest size and upscaled by the engine's size policy), and
fields brushwork does not implement (scripts, face restoration…) are accepted and ignored, as A1111
ignores what it does not know. txt2img honours hires fix (``enable_hr``, ``hr_*``); img2img takes one
base64 init image and an optional mask, which are stored in the home and named in the job by hash. ``n_iter`` × ``batch_size`` images come back in
``images`` (no grid), each PNG carrying its infotext.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import time
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from brushwork import __version__
from brushwork.engine.params import HIRES_UPSCALERS, SEED_RANGE, GenerationParams
from brushwork.errors import BrushworkError, InvalidParameter
from brushwork.serve.service import Service, with_field

router = APIRouter(prefix="/sdapi/v1", tags=["A1111-compatible"])

# engine field → the A1111 field a client sent it in (for error messages)
RENAME = {"n": "batch_size", "sampler": "sampler_name", "model": "override_settings.sd_model_checkpoint",
          "cfg_scale": "cfg_scale", "negative_prompt": "negative_prompt", "init_image_sha256": "init_images",
          "mask_sha256": "mask"}


class _Request(BaseModel):
    """The fields A1111's txt2img and img2img requests share; those brushwork does not use are accepted and
    ignored."""

    model_config = ConfigDict(extra="allow")

    prompt: str = ""
    negative_prompt: str = ""
    styles: list[str] | None = None
    seed: int = Field(-1, description="-1 picks a random seed")
    sampler_name: str | None = None
    sampler_index: str | None = "Euler"
    scheduler: str | None = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 50
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    override_settings: dict[str, Any] | None = None
    send_images: bool = True
    save_images: bool = False


class Txt2ImgRequest(_Request):
    """A1111's ``StableDiffusionTxt2ImgProcessingAPI``, with hires fix (``enable_hr``, ``hr_*``)."""

    denoising_strength: float | None = Field(None, description="hires fix's second pass (default 0.7)")
    enable_hr: bool = False
    hr_scale: float = 2.0
    hr_upscaler: str | None = Field(None, description="Latent (default), Lanczos or Nearest")
    hr_second_pass_steps: int = 0
    hr_resize_x: int = 0
    hr_resize_y: int = 0


class Img2ImgRequest(_Request):
    """A1111's ``StableDiffusionImg2ImgProcessingAPI``: img2img, and inpainting with ``mask``."""

    init_images: list[str] = Field(..., description="one base64 image (a data: URL prefix is accepted)")
    resize_mode: int = Field(0, description="0 just resize, 1 crop and resize, 2 resize and fill, 3 latent upscale")
    denoising_strength: float = 0.75
    mask: str | None = Field(None, description="base64 mask, white = repaint, the init image's size")
    mask_blur: int = 4
    inpainting_fill: int = Field(1, description="0 fill, 1 original, 2 latent noise, 3 latent nothing")
    inpaint_full_res: bool = False
    inpaint_full_res_padding: int = 32
    inpainting_mask_invert: int = Field(0, ge=0, le=1)
    include_init_images: bool = False


class PngInfoRequest(BaseModel):
    image: str = Field(..., description="base64 PNG (a data: URL prefix is accepted)")


def service(request: Request) -> Service:
    return request.app.state.service


def to_params(req: _Request) -> dict:
    for name in ("batch_size", "n_iter"):
        if getattr(req, name) < 1:
            raise InvalidParameter(f"{name}: must be at least 1 (got {getattr(req, name)})", field=name)
    n = req.batch_size * req.n_iter
    if n > 64:
        raise InvalidParameter(f"batch_size: batch_size × n_iter is {n}; at most 64 images per request",
                               field="batch_size")
    if req.seed != -1 and not SEED_RANGE[0] <= req.seed <= SEED_RANGE[1] - n + 1:
        raise InvalidParameter(f"seed: must be -1 (random) or 0..{SEED_RANGE[1] - n + 1} (got {req.seed})",
                               field="seed")
    model = None
    if req.override_settings:
        model = req.override_settings.get("sd_model_checkpoint")
        if model is not None and not isinstance(model, str):
            raise InvalidParameter("override_settings.sd_model_checkpoint: must be a string",
                                   field="override_settings.sd_model_checkpoint")
    values = {
        "prompt": req.prompt, "negative_prompt": req.negative_prompt,
        "width": req.width, "height": req.height, "steps": req.steps, "cfg_scale": req.cfg_scale,
        "sampler": req.sampler_name or req.sampler_index or "Euler", "scheduler": req.scheduler or "Automatic",
        "seed": None if req.seed == -1 else req.seed, "n": n, "model": model or None,
    }
    if isinstance(req, Txt2ImgRequest) and req.enable_hr:
        for name in ("hr_resize_x", "hr_resize_y"):
            if getattr(req, name):
                raise InvalidParameter(f"{name}: a hires target size is not supported; use hr_scale", field=name)
        values.update(enable_hr=True, hr_scale=req.hr_scale, hr_upscaler=req.hr_upscaler or "Latent",
                      hr_second_pass_steps=req.hr_second_pass_steps,
                      denoising_strength=0.7 if req.denoising_strength is None else req.denoising_strength)
    if isinstance(req, Img2ImgRequest):
        values.update(denoising_strength=req.denoising_strength, resize_mode=req.resize_mode,
                      mask_blur=req.mask_blur, inpainting_fill=req.inpainting_fill,
                      inpaint_full_res=req.inpaint_full_res, inpaint_full_res_padding=req.inpaint_full_res_padding,
                      inpainting_mask_invert=bool(req.inpainting_mask_invert))
    return values


def decode_b64(data: str, field: str) -> bytes:
    text = data.split(",", 1)[1] if data.startswith("data:") else data
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidParameter(f"{field}: not valid base64", field=field) from None


async def _run(req: _Request, request: Request, values: dict) -> dict:
    svc = service(request)
    params = await run_in_threadpool(svc.prepare, values, rename=RENAME,
                                     inline_field="send_images" if req.send_images else None)
    job = await run_in_threadpool(svc.submit, params, source="a1111")
    job = await svc.wait(job.id, request)
    if job.status != "done":
        raise JobNotDone(job.status, job.error)
    images = []
    if req.send_images:
        for name in job.outputs:
            path = await run_in_threadpool(svc.output_path, name)
            images.append(base64.b64encode(path.read_bytes()).decode())
    r = job.result or {}
    p = r.get("params", job.params)
    n = len(r.get("seeds", []))
    image_based = p.get("init_image_sha256") is not None or p.get("enable_hr")
    info = {
        "prompt": p["prompt"], "all_prompts": [p["prompt"]] * n,
        "negative_prompt": p["negative_prompt"], "all_negative_prompts": [p["negative_prompt"]] * n,
        "seed": r.get("seed"), "all_seeds": r.get("seeds", []),
        "subseed": r.get("seed"), "all_subseeds": r.get("seeds", []), "subseed_strength": 0,
        "width": r.get("requested_size", [req.width])[0], "height": r.get("requested_size", [0, req.height])[1],
        "sampler_name": p["sampler"], "cfg_scale": p["cfg_scale"], "steps": p["steps"],
        "batch_size": req.batch_size, "restore_faces": False, "face_restoration_model": None,
        "sd_model_name": r.get("model_name"), "sd_model_hash": r.get("model_hash"),
        "sd_vae_name": None, "sd_vae_hash": None, "seed_resize_from_w": -1, "seed_resize_from_h": -1,
        "denoising_strength": p.get("denoising_strength") if image_based else None,
        "extra_generation_params": {"Schedule type": p["scheduler"],
                                    "Generated size": "x".join(map(str, r.get("generated_size", [])))},
        "index_of_first_image": 0, "infotexts": r.get("infotexts", []), "styles": req.styles or [],
        "job_timestamp": time.strftime("%Y%m%d%H%M%S", time.localtime(job.started_at or job.created_at)),
        "clip_skip": 1, "is_using_inpainting_conditioning": False, "version": f"brushwork {__version__}",
    }
    if p.get("enable_hr"):
        info["extra_generation_params"].update({"Hires upscale": p["hr_scale"], "Hires upscaler": p["hr_upscaler"],
                                                "Hires steps": p["hr_second_pass_steps"] or None})
    echo = req.model_dump()
    if isinstance(req, Img2ImgRequest) and not req.include_init_images:
        echo.update(init_images=None, mask=None)  # as A1111 does
    return {"images": images, "parameters": echo, "info": json.dumps(info)}


@router.post("/txt2img", summary="A1111 txt2img, with hires fix (waits for the job in the shared queue)")
async def txt2img(req: Txt2ImgRequest, request: Request) -> dict:
    return await _run(req, request, to_params(req))


@router.post("/img2img", summary="A1111 img2img and inpainting (waits for the job in the shared queue)")
async def img2img(req: Img2ImgRequest, request: Request) -> dict:
    svc = service(request)
    values = to_params(req)
    GenerationParams.build(**values)  # parameter errors first: nothing is stored for a request that is refused
    if len(req.init_images) != 1:
        raise InvalidParameter(f"init_images: one init image per request (got {len(req.init_images)})",
                               field="init_images")
    init = decode_b64(req.init_images[0], "init_images")
    mask = None if req.mask is None else decode_b64(req.mask, "mask")
    values["init_image_sha256"], values["mask_sha256"] = await run_in_threadpool(store_inputs, svc, init, mask)
    return await _run(req, request, values)


def store_inputs(svc: Service, init: bytes, mask: bytes | None, *, init_field: str = "init_images",
                 mask_field: str = "mask") -> tuple[str, str | None]:
    """Decode and check both images (size match included) before storing either."""
    from brushwork.engine.images import check_mask_size, read_image

    image = read_image(init, field=init_field)[0]
    mask_image = None if mask is None else read_image(mask, field=mask_field)[0]
    if mask_image is not None:
        try:
            check_mask_size(image, mask_image)
        except InvalidParameter as exc:
            raise with_field(exc, str(exc).replace("mask:", f"{mask_field}:", 1), mask_field) from None
    init_hash = svc.inputs.put(image, field=init_field)[1]
    mask_hash = None if mask_image is None else svc.inputs.put(mask_image, field=mask_field)[1]
    return init_hash, mask_hash


class JobNotDone(BrushworkError):
    """The job behind a synchronous request was cancelled or failed."""

    def __init__(self, status: str, error: str | None):
        super().__init__(f"the job was {status}: {error or 'no reason recorded'}", field="job")
        # input was validated before the job was queued, so a failure here is the server's
        self.http_status = 409 if status == "cancelled" else 500


@router.get("/progress", summary="Progress of the running job (A1111 shape)")
async def progress(request: Request, skip_current_image: bool = False) -> dict:
    svc = service(request)
    line = await run_in_threadpool(svc.queue.line)
    running = next((j for j in line if j["status"] == "running"), None)
    total = running["total_steps"] if running else 0
    fraction = running["step"] / total if running and total else 0.0
    interrupted = bool(running) and await run_in_threadpool(svc.queue.cancel_requested, running["id"])
    return {
        "progress": round(fraction, 4),
        "eta_relative": round(running["eta"], 2) if running else 0.0,
        "state": {"skipped": False, "interrupted": interrupted,
                  "stopping_generation": False, "job": running["id"] if running else "",
                  "job_count": len(line), "job_timestamp": time.strftime("%Y%m%d%H%M%S"),
                  "job_no": 0, "sampling_step": running["step"] if running else 0,
                  "sampling_steps": total},
        "current_image": None,
        "textinfo": None,
        "current_task": running["id"] if running else None,
    }


@router.post("/interrupt", summary="Stop the running job at its next step")
async def interrupt(request: Request) -> dict:
    await run_in_threadpool(service(request).queue.cancel_running)
    return {}


@router.post("/skip", summary="Same as interrupt (brushwork runs a batch as one job)")
async def skip(request: Request) -> dict:
    await run_in_threadpool(service(request).queue.cancel_running)
    return {}


def _options(svc: Service) -> dict:
    current = svc.current_model()
    title = current
    for m in svc.models():
        if m["name"] == current:
            title = m["title"]
    return {"sd_model_checkpoint": title, "sd_checkpoint_hash": None, "sd_vae": "Automatic",
            "CLIP_stop_at_last_layers": 1, "samples_format": "png", "eta_noise_seed_delta": 0,
            "sd_model_checkpoint_name": current}


@router.get("/options", summary="Server options (sd_model_checkpoint)")
async def get_options(request: Request) -> dict:
    return await run_in_threadpool(_options, service(request))


@router.post("/options", summary="Set options: sd_model_checkpoint picks the model; others are ignored")
async def set_options(body: dict[str, Any], request: Request):
    svc = service(request)
    if "sd_model_checkpoint" in body:
        value = body["sd_model_checkpoint"]
        if not isinstance(value, str) or not value.strip():
            raise InvalidParameter("sd_model_checkpoint: must be a model title or name", field="sd_model_checkpoint")
        await run_in_threadpool(svc.set_current_model, value)
    return None


@router.get("/sd-models", summary="Models, as A1111 lists checkpoints")
async def sd_models(request: Request) -> list[dict]:
    models = await run_in_threadpool(service(request).models)
    return [{"title": m["title"], "model_name": m["name"], "hash": m["hash"], "sha256": m["sha256"],
             "filename": m["filename"], "config": None} for m in models]


@router.post("/refresh-checkpoints", summary="No-op: the registry is read on every request")
async def refresh_checkpoints() -> dict:
    return {}


@router.get("/samplers", summary="Samplers (A1111 shape)")
async def samplers() -> list[dict]:
    from brushwork.engine.samplers import list_samplers

    return [{"name": s["name"], "aliases": s["aliases"], "options": {}} for s in list_samplers()]


@router.get("/schedulers", summary="Schedule types (A1111 shape)")
async def schedulers() -> list[dict]:
    from brushwork.engine.samplers import list_schedule_types

    return [{**s, "default_rho": -1, "need_inner_model": False} for s in list_schedule_types()]


@router.get("/upscalers", summary="Pixel upscalers for hires fix (hr_upscaler)")
async def upscalers() -> list[dict]:
    return [{"name": name, "model_name": None, "model_path": None, "model_url": None, "scale": 4}
            for name in HIRES_UPSCALERS if name != "Latent"]


@router.get("/latent-upscale-modes", summary="Latent upscalers for hires fix (hr_upscaler)")
async def latent_upscale_modes() -> list[dict]:
    return [{"name": "Latent"}]


@router.get("/sd-vae", summary="Separate VAEs (none yet)")
async def sd_vae() -> list[dict]:
    return []


@router.get("/loras", summary="LoRAs: the registry's and those in <home>/loras (use as <lora:NAME:WEIGHT>)")
async def loras(request: Request) -> list[dict]:
    files = await run_in_threadpool(service(request).list_networks, "lora")
    return [{"name": f.name, "alias": f.name, "path": f.path.name, "metadata": _public_metadata(f),
             "hash": f.hash12, "base": f.base, "license": f.license, "size": f.size} for f in files]


@router.post("/refresh-loras", summary="Rescan <home>/loras (the list is read again on every request)")
async def refresh_loras(request: Request) -> None:
    await run_in_threadpool(service(request).list_networks, "lora")


@router.get("/embeddings", summary="Textual-inversion embeddings: write the name in the prompt")
async def embeddings(request: Request) -> dict:
    files = await run_in_threadpool(service(request).list_networks, "textual-inversion")
    model = service(request).current_model()

    def item(f):
        return {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": model, "vectors": f.architecture.get(
            "vectors"), "shape": f.architecture.get("width"), "hash": f.hash12, "base": f.base}
    return {"loaded": {f.name: item(f) for f in files}, "skipped": {}}


def _public_metadata(f) -> dict:
    """The file's safetensors metadata, without what would disclose the training machine's paths."""
    hidden = ("ss_dataset_dirs", "ss_output_name", "ss_sd_model_name", "ss_vae_name", "ss_training_comment")
    return {k: v[:500] for k, v in f.metadata.items() if k not in hidden and "path" not in k.lower()}


@router.get("/scripts", summary="Scripts (none: clients use this to detect extensions)")
async def scripts() -> dict:
    return {"txt2img": [], "img2img": []}


@router.post("/png-info", summary="Read an image's generation parameters")
async def png_info(req: PngInfoRequest, request: Request) -> dict:
    svc = service(request)
    return await run_in_threadpool(read_png_info_b64, req.image, svc.config.max_upload_pixels)


def read_png_info_b64(data: str, max_pixels: int) -> dict:
    """``{info, items, parameters}`` from a base64 image, checked in bytes and pixels before decoding."""
    from PIL import Image

    from brushwork.engine.metadata import parse_infotext

    raw = decode_b64(data, "image")
    try:
        with Image.open(io.BytesIO(raw), formats=["PNG", "JPEG", "WEBP"]) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise InvalidParameter(f"image: {w}x{h} is more than {max_pixels} pixels", field="image")
            im.load()  # text chunks after the image data need a full read
            items = {k: v for k, v in getattr(im, "text", {}).items() if isinstance(v, str)}
    except InvalidParameter:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as exc:
        raise InvalidParameter(f"image: cannot read it as PNG, JPEG or WebP ({type(exc).__name__})",
                               field="image") from None
    info = items.pop("parameters", "")
    parameters = parse_infotext(info) if info else {}
    return {"info": info, "items": items, "parameters": parameters}
