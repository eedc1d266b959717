"""Bad input, route by route, against a live server: malformed and out-of-range payloads get a 4xx
JSON body naming the field, never a 500; a valid control beside each succeeds.

The table must cover every route in the server's OpenAPI schema (checked below), so a new route
without a row here fails this test.
"""

from __future__ import annotations

import base64
import io
import json

import httpx
import pytest
from PIL import Image

OK = "ok"


def bad(field: str | None = None, status: int | None = None):
    return ("bad", field, status)


def _png_b64(size=(8, 8)) -> str:
    buf = io.BytesIO()
    Image.new("L", size).save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode()


def _png(size=(8, 8), mode="L") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, 128).save(buf, format="PNG")
    return buf.getvalue()


IMG64 = base64.b64encode(_png((64, 64), "RGB")).decode()
MASK64 = base64.b64encode(_png((64, 64), "L")).decode()
MASK_SMALL = base64.b64encode(_png((32, 32), "L")).decode()
SVG64 = base64.b64encode(b"<svg/>").decode()
HUGE64 = _png_b64((5000, 5000))
GOOD_IMG2IMG = {"init_images": [IMG64], "steps": 2, "width": 64, "height": 64, "seed": 5}
EDIT = {"prompt": "a red circle", "size": "64x64", "response_format": "b64_json", "steps": "2"}


def _files(image=None, mask=None) -> dict:
    files = {} if image is None else {"image": ("image.png", image, "image/png")}
    if mask is not None:
        files["mask"] = ("mask.png", mask, "image/png")
    return files


GOOD_JOB = {"prompt": "a red circle", "steps": 2}
GOOD_A1111 = {"prompt": "a red circle", "steps": 2, "width": 64, "height": 64, "seed": 5}
GOOD_OPENAI = {"prompt": "a red circle", "size": "64x64", "response_format": "b64_json", "steps": 2}

# (method, path, request kwargs, expectation). {done} is a finished job's id, {image} its output.
CASES = [
    # ---------------------------------------------------------------- native
    ("POST", "/api/v1/jobs", {"json": GOOD_JOB}, OK),
    ("POST", "/api/v1/jobs", {"json": {**GOOD_JOB, "commercial": True, "sampler": "euler a", "width": 64}}, OK),
    ("POST", "/api/v1/jobs", {"content": b'{"prompt": "x",', "headers": {"content-type": "application/json"}}, bad("body")),
    ("POST", "/api/v1/jobs", {"content": b"prompt=x", "headers": {"content-type": "text/plain"}}, bad()),
    ("POST", "/api/v1/jobs", {"json": []}, bad("body")),
    ("POST", "/api/v1/jobs", {"json": {"prompt": 5}}, bad("prompt")),
    ("POST", "/api/v1/jobs", {"json": {"steps": 0}}, bad("steps")),
    ("POST", "/api/v1/jobs", {"json": {"steps": 151}}, bad("steps")),
    ("POST", "/api/v1/jobs", {"json": {"steps": "many"}}, bad("steps")),
    ("POST", "/api/v1/jobs", {"json": {"cfg_scale": -1}}, bad("cfg_scale")),
    ("POST", "/api/v1/jobs", {"json": {"cfg_scale": "NaN"}}, bad("cfg_scale")),
    ("POST", "/api/v1/jobs", {"json": {"n": 0}}, bad("n")),
    ("POST", "/api/v1/jobs", {"json": {"n": 65}}, bad("n")),
    ("POST", "/api/v1/jobs", {"json": {"width": 4096}}, bad("width")),
    ("POST", "/api/v1/jobs", {"json": {"width": 0}}, bad("width")),
    ("POST", "/api/v1/jobs", {"json": {"height": 33}}, bad("height")),  # not a multiple of the latent factor
    ("POST", "/api/v1/jobs", {"json": {"seed": -5}}, bad("seed")),
    ("POST", "/api/v1/jobs", {"json": {"seed": 2**40}}, bad("seed")),
    ("POST", "/api/v1/jobs", {"json": {"sampler": "nope"}}, bad("sampler")),
    ("POST", "/api/v1/jobs", {"json": {"sampler": "Euler a", "scheduler": "Karras"}}, bad("scheduler")),
    ("POST", "/api/v1/jobs", {"json": {"model": "nope"}}, bad("model", 404)),
    ("POST", "/api/v1/jobs", {"json": {"model": "../../etc"}}, bad("model")),
    ("POST", "/api/v1/jobs", {"json": {"model": "/etc/passwd"}}, bad("model")),
    ("POST", "/api/v1/jobs", {"json": {"surprise": 1}}, bad("surprise")),
    ("POST", "/api/v1/jobs", {"json": {"schema_version": 99}}, bad()),
    # limits (serve/limits.py): prompt length, per-job budget
    ("POST", "/api/v1/jobs", {"json": {**GOOD_JOB, "prompt": "red " * 8_000}}, OK),  # 32,000 characters
    ("POST", "/api/v1/jobs", {"json": {"prompt": "x" * 32_001}}, bad("prompt", 422)),
    ("POST", "/api/v1/jobs", {"json": {"negative_prompt": "x" * 1_000_000}}, bad("negative_prompt", 422)),
    ("POST", "/api/v1/jobs", {"json": {"n": 64, "steps": 150, "width": 2048, "height": 2048}}, bad("n", 422)),
    # img2img through the native API: inputs uploaded first, named by hash in the job
    ("POST", "/api/v1/inputs", {"content": _png((64, 64), "RGB"), "headers": {"content-type": "image/png"}}, OK),
    ("POST", "/api/v1/inputs", {"content": b"<svg/>", "headers": {"content-type": "image/svg+xml"}}, bad("image")),
    ("POST", "/api/v1/inputs", {"content": _png((5000, 5000))}, bad("image")),  # over the pixel cap
    ("POST", "/api/v1/inputs", {"content": _png()[:40]}, bad("image")),  # a truncated PNG
    ("POST", "/api/v1/jobs", {"json": {**GOOD_JOB, "init_image_sha256": "{input}", "denoising_strength": 0.5}}, OK),
    ("POST", "/api/v1/jobs", {"json": {**GOOD_JOB, "init_image_sha256": "{input}", "outpaint": {"right": 16}}}, OK),
    ("POST", "/api/v1/jobs", {"json": {"init_image_sha256": "0" * 64}}, bad("init_image_sha256", 404)),
    ("POST", "/api/v1/jobs", {"json": {"init_image_sha256": "../x"}}, bad("init_image_sha256")),
    ("POST", "/api/v1/jobs", {"json": {"init_image_sha256": "{input}", "mask_sha256": "f" * 64}}, bad("mask_sha256", 404)),
    ("POST", "/api/v1/jobs", {"json": {"mask_sha256": "{input}"}}, bad("mask_sha256")),
    ("POST", "/api/v1/jobs", {"json": {"init_image_sha256": "{input}", "mask_sha256": "{small_mask}"}}, bad("mask")),
    ("POST", "/api/v1/jobs", {"json": {"outpaint": {"left": 8}}}, bad("outpaint")),
    ("POST", "/api/v1/jobs", {"json": {"outpaint": {"up": 8}}}, bad("outpaint.up")),
    ("POST", "/api/v1/jobs", {"json": {"denoising_strength": 1.5}}, bad("denoising_strength")),
    ("POST", "/api/v1/jobs", {"json": {"inpainting_fill": 4}}, bad("inpainting_fill")),
    ("POST", "/api/v1/jobs", {"json": {"resize_mode": -1}}, bad("resize_mode")),
    ("POST", "/api/v1/jobs", {"json": {"enable_hr": True, "hr_upscaler": "ESRGAN_4x"}}, bad("hr_upscaler")),
    ("POST", "/api/v1/jobs", {"json": {"enable_hr": True, "n": 64, "steps": 150, "width": 1024, "height": 1024}},
     bad("n", 422)),  # the hires pass counts in the job budget
    ("GET", "/api/v1/jobs/{done}", {}, OK),
    ("GET", "/api/v1/jobs/not-a-job", {}, bad("job_id")),
    ("GET", "/api/v1/jobs/" + "0" * 32, {}, bad("id", 404)),
    ("DELETE", "/api/v1/jobs/{queued}", {}, OK),
    ("DELETE", "/api/v1/jobs/{done}", {}, bad("id", 409)),
    ("DELETE", "/api/v1/jobs/" + "f" * 32, {}, bad("id", 404)),
    ("DELETE", "/api/v1/jobs/x'or'1", {}, bad("job_id")),
    ("GET", "/api/v1/jobs", {"params": {"status": "done", "limit": 5, "source": "api"}}, OK),
    ("GET", "/api/v1/jobs", {"params": {"status": "weird"}}, bad("status")),
    ("GET", "/api/v1/jobs", {"params": {"limit": 0}}, bad("limit")),
    ("GET", "/api/v1/jobs", {"params": {"limit": "lots"}}, bad("limit")),
    ("GET", "/api/v1/events", {"params": {"job": "{done}"}}, OK),
    ("GET", "/api/v1/events", {"params": {"max_seconds": 0.5}}, OK),
    ("GET", "/api/v1/events", {"params": {"job": "zzz"}}, bad("job")),
    ("GET", "/api/v1/events", {"params": {"job": "0" * 32}}, bad("id", 404)),
    ("GET", "/api/v1/events", {"params": {"max_seconds": -1}}, bad("max_seconds")),
    ("GET", "/api/v1/images/{image}", {}, OK),
    ("GET", "/api/v1/images/../queue.sqlite3", {}, bad()),
    ("GET", "/api/v1/images/%2e%2e/serve/queue.sqlite3", {}, bad()),
    ("GET", "/api/v1/images/nothing.png", {}, bad("name", 404)),
    ("GET", "/api/v1/models", {}, OK),
    ("POST", "/api/v1/models", {}, bad(None, 405)),
    ("GET", "/api/v1/samplers", {}, OK),
    ("DELETE", "/api/v1/samplers", {}, bad(None, 405)),
    ("GET", "/api/v1/health", {}, OK),
    ("GET", "/api/v1/limits", {}, OK),
    ("POST", "/api/v1/limits", {}, bad(None, 405)),
    ("POST", "/api/v1/health", {}, bad(None, 405)),
    # ---------------------------------------------------------------- A1111
    ("POST", "/sdapi/v1/txt2img", {"json": GOOD_A1111}, OK),
    ("POST", "/sdapi/v1/txt2img", {"json": {**GOOD_A1111, "enable_hr": True, "alwayson_scripts": {"x": {"args": []}},
                                           "unknown_field": [1, 2], "sampler_index": "Euler", "scheduler": "karras",
                                           "override_settings": {"sd_model_checkpoint": "tiny", "CLIP_stop_at_last_layers": 2}}}, OK),
    ("POST", "/sdapi/v1/txt2img", {"content": b"{not json", "headers": {"content-type": "application/json"}}, bad("body")),
    ("POST", "/sdapi/v1/txt2img", {"json": {"steps": 0}}, bad("steps")),
    ("POST", "/sdapi/v1/txt2img", {"json": {"steps": "x"}}, bad("steps")),
    ("POST", "/sdapi/v1/txt2img", {"json": {"batch_size": 0}}, bad("batch_size")),
    ("POST", "/sdapi/v1/txt2img", {"json": {"n_iter": -1}}, bad("n_iter")),
    ("POST", "/sdapi/v1/txt2img", {"json": {"batch_size": 8, "n_iter": 9}}, bad("batch_size")),
    ("POST", "/sdapi/v1/txt2img", {"json": {"seed": -2}}, bad("seed")),
    ("POST", "/sdapi/v1/txt2img", {"json": {"seed": 2**33}}, bad("seed")),
    ("POST", "/sdapi/v1/txt2img", {"json": {"sampler_name": "nope"}}, bad("sampler_name")),
    ("POST", "/sdapi/v1/txt2img", {"json": {"scheduler": "nope"}}, bad("scheduler")),
    ("POST", "/sdapi/v1/txt2img", {"json": {"width": 0}}, bad("width")),
    ("POST", "/sdapi/v1/txt2img", {"json": {"width": 513}}, bad("width")),
    ("POST", "/sdapi/v1/txt2img", {"json": {"height": 4096}}, bad("height")),
    ("POST", "/sdapi/v1/txt2img", {"json": {"cfg_scale": 31}}, bad("cfg_scale")),
    ("POST", "/sdapi/v1/txt2img", {"json": {"override_settings": {"sd_model_checkpoint": "nope"}}},
     bad("override_settings.sd_model_checkpoint", 404)),
    ("POST", "/sdapi/v1/txt2img", {"json": {"override_settings": "tiny"}}, bad("override_settings")),
    ("POST", "/sdapi/v1/txt2img", {"json": {"prompt": ["a", "b"]}}, bad("prompt")),
    ("POST", "/sdapi/v1/txt2img", {"json": {"prompt": "x" * 32_001}}, bad("prompt", 422)),
    ("POST", "/sdapi/v1/txt2img", {"json": {"batch_size": 8, "n_iter": 8, "steps": 150, "width": 2048,
                                           "height": 2048}}, bad("batch_size", 422)),
    ("POST", "/sdapi/v1/txt2img", {"json": {"batch_size": 64, "steps": 1, "width": 2048, "height": 2048}},
     bad("send_images", 422)),  # within the job budget, but 768 MiB of images inline
    ("POST", "/sdapi/v1/txt2img", {"json": {**GOOD_A1111, "enable_hr": True, "hr_upscaler": "ESRGAN_4x"}},
     bad("hr_upscaler")),
    ("POST", "/sdapi/v1/txt2img", {"json": {**GOOD_A1111, "enable_hr": True, "hr_scale": 10}}, bad("hr_scale")),
    ("POST", "/sdapi/v1/txt2img", {"json": {**GOOD_A1111, "enable_hr": True, "hr_resize_x": 128}}, bad("hr_resize_x")),
    ("POST", "/sdapi/v1/txt2img", {"json": {**GOOD_A1111, "enable_hr": True, "denoising_strength": 2}},
     bad("denoising_strength")),
    ("POST", "/sdapi/v1/img2img", {"json": GOOD_IMG2IMG}, OK),
    ("POST", "/sdapi/v1/img2img", {"json": {**GOOD_IMG2IMG, "mask": MASK64, "inpainting_fill": 2,
                                           "init_images": ["data:image/png;base64," + IMG64]}}, OK),
    ("POST", "/sdapi/v1/img2img", {"json": {"prompt": "x"}}, bad("init_images")),
    ("POST", "/sdapi/v1/img2img", {"json": {**GOOD_IMG2IMG, "init_images": []}}, bad("init_images")),
    ("POST", "/sdapi/v1/img2img", {"json": {**GOOD_IMG2IMG, "init_images": [IMG64, IMG64]}}, bad("init_images")),
    ("POST", "/sdapi/v1/img2img", {"json": {**GOOD_IMG2IMG, "init_images": ["!!!"]}}, bad("init_images")),
    ("POST", "/sdapi/v1/img2img", {"json": {**GOOD_IMG2IMG, "init_images": [SVG64]}}, bad("init_images")),
    ("POST", "/sdapi/v1/img2img", {"json": {**GOOD_IMG2IMG, "init_images": [HUGE64]}}, bad("init_images")),
    ("POST", "/sdapi/v1/img2img", {"json": {**GOOD_IMG2IMG, "mask": MASK_SMALL}}, bad("mask")),
    ("POST", "/sdapi/v1/img2img", {"json": {**GOOD_IMG2IMG, "mask": SVG64}}, bad("mask")),
    ("POST", "/sdapi/v1/img2img", {"json": {**GOOD_IMG2IMG, "denoising_strength": 1.5}}, bad("denoising_strength")),
    ("POST", "/sdapi/v1/img2img", {"json": {**GOOD_IMG2IMG, "inpainting_fill": 7}}, bad("inpainting_fill")),
    ("POST", "/sdapi/v1/img2img", {"json": {**GOOD_IMG2IMG, "resize_mode": 9}}, bad("resize_mode")),
    ("POST", "/sdapi/v1/img2img", {"json": {**GOOD_IMG2IMG, "inpainting_mask_invert": 3}}, bad("inpainting_mask_invert")),
    ("POST", "/sdapi/v1/img2img", {"json": {**GOOD_IMG2IMG, "steps": 0}}, bad("steps")),
    ("GET", "/sdapi/v1/img2img", {}, bad(None, 405)),
    ("GET", "/sdapi/v1/progress", {"params": {"skip_current_image": "false"}}, OK),
    ("GET", "/sdapi/v1/progress", {"params": {"skip_current_image": "maybe"}}, bad("skip_current_image")),
    ("POST", "/sdapi/v1/interrupt", {}, OK),
    ("GET", "/sdapi/v1/interrupt", {}, bad(None, 405)),
    ("POST", "/sdapi/v1/skip", {}, OK),
    ("GET", "/sdapi/v1/skip", {}, bad(None, 405)),
    ("GET", "/sdapi/v1/options", {}, OK),
    ("POST", "/sdapi/v1/options", {"json": {"sd_model_checkpoint": "tiny", "sd_vae": "Automatic"}}, OK),
    ("POST", "/sdapi/v1/options", {"json": {"sd_model_checkpoint": "nope"}}, bad("sd_model_checkpoint", 404)),
    ("POST", "/sdapi/v1/options", {"json": {"sd_model_checkpoint": 5}}, bad("sd_model_checkpoint")),
    ("POST", "/sdapi/v1/options", {"json": ["sd_model_checkpoint"]}, bad("body")),
    ("GET", "/sdapi/v1/sd-models", {}, OK),
    ("POST", "/sdapi/v1/sd-models", {}, bad(None, 405)),
    ("POST", "/sdapi/v1/refresh-checkpoints", {}, OK),
    ("GET", "/sdapi/v1/refresh-checkpoints", {}, bad(None, 405)),
    ("GET", "/sdapi/v1/samplers", {}, OK),
    ("PUT", "/sdapi/v1/samplers", {}, bad(None, 405)),
    ("GET", "/sdapi/v1/schedulers", {}, OK),
    ("POST", "/sdapi/v1/schedulers", {}, bad(None, 405)),
    ("GET", "/sdapi/v1/upscalers", {}, OK),
    ("POST", "/sdapi/v1/upscalers", {}, bad(None, 405)),
    ("GET", "/sdapi/v1/latent-upscale-modes", {}, OK),
    ("POST", "/sdapi/v1/latent-upscale-modes", {}, bad(None, 405)),
    ("GET", "/sdapi/v1/sd-vae", {}, OK),
    ("POST", "/sdapi/v1/sd-vae", {}, bad(None, 405)),
    ("GET", "/sdapi/v1/loras", {}, OK),
    ("POST", "/sdapi/v1/loras", {}, bad(None, 405)),
    ("POST", "/sdapi/v1/refresh-loras", {}, OK),
    ("GET", "/sdapi/v1/refresh-loras", {}, bad(None, 405)),
    ("GET", "/sdapi/v1/embeddings", {}, OK),
    ("POST", "/sdapi/v1/embeddings", {}, bad(None, 405)),
    ("GET", "/sdapi/v1/scripts", {}, OK),
    ("POST", "/sdapi/v1/scripts", {}, bad(None, 405)),
    ("POST", "/sdapi/v1/png-info", {"json": {"image": "{image_b64}"}}, OK),
    ("POST", "/sdapi/v1/png-info", {"json": {"image": "data:image/png;base64,{image_b64}"}}, OK),
    ("POST", "/sdapi/v1/png-info", {"json": {}}, bad("image")),
    ("POST", "/sdapi/v1/png-info", {"json": {"image": "!!!"}}, bad("image")),
    ("POST", "/sdapi/v1/png-info", {"json": {"image": base64.b64encode(b"<svg/>").decode()}}, bad("image")),
    ("POST", "/sdapi/v1/png-info", {"json": {"image": _png_b64((5000, 5000))}}, bad("image")),  # pixel cap
    # ---------------------------------------------------------------- OpenAI
    ("POST", "/v1/images/generations", {"json": GOOD_OPENAI}, OK),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "model": "dall-e-3", "size": "1024x1024", "steps": 2,
                                                 "quality": "hd", "style": "vivid", "user": "u"}}, OK),
    ("POST", "/v1/images/generations", {"json": {}}, bad("prompt")),
    ("POST", "/v1/images/generations", {"content": b"][", "headers": {"content-type": "application/json"}}, bad("body")),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "n": 0}}, bad("n")),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "n": 11}}, bad("n")),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "size": "big"}}, bad("size")),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "size": "1025x1024"}}, bad("width")),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "size": "4096x4096"}}, bad("width")),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "response_format": "gif"}}, bad("response_format")),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "model": "nope"}}, bad("model", 404)),
    ("POST", "/v1/images/generations", {"json": {"prompt": 5}}, bad("prompt")),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x" * 32_001}}, bad("prompt", 422)),
    ("POST", "/v1/images/generations", {"json": {"prompt": "x", "n": 10, "size": "2048x2048", "steps": 1,
                                                 "response_format": "b64_json"}}, bad("response_format", 422)),
    ("GET", "/v1/images/generations", {}, bad(None, 405)),
    ("POST", "/v1/images/edits", {"files": _files(_png((64, 64), "RGBA")), "data": EDIT}, OK),
    ("POST", "/v1/images/edits", {"files": _files(_png((64, 64), "RGB"), _png((64, 64))), "data": EDIT}, OK),
    ("POST", "/v1/images/edits", {"files": _files(), "data": EDIT}, bad("image")),
    ("POST", "/v1/images/edits", {"files": _files(b"<svg/>"), "data": EDIT}, bad("image")),
    ("POST", "/v1/images/edits", {"files": _files(_png((5000, 5000))), "data": EDIT}, bad("image")),
    ("POST", "/v1/images/edits", {"files": _files(_png((64, 64)), _png((32, 32))), "data": EDIT}, bad("mask")),
    ("POST", "/v1/images/edits", {"files": _files(_png((64, 64)), b"nope"), "data": EDIT}, bad("mask")),
    ("POST", "/v1/images/edits", {"files": _files(_png((64, 64))), "data": {**EDIT, "n": "11"}}, bad("n")),
    ("POST", "/v1/images/edits", {"files": _files(_png((64, 64))), "data": {**EDIT, "size": "big"}}, bad("size")),
    ("POST", "/v1/images/edits", {"files": _files(_png((64, 64))), "data": {"size": "64x64"}}, bad("prompt")),
    ("POST", "/v1/images/edits", {"files": _files(_png((64, 64))), "data": {**EDIT, "response_format": "gif"}},
     bad("response_format")),
    ("GET", "/v1/images/edits", {}, bad(None, 405)),
    # ---------------------------------------------------------------- docs and UI
    ("GET", "/docs", {}, OK),
    ("POST", "/docs", {}, bad(None, 405)),
    ("GET", "/openapi.json", {}, OK),
    ("POST", "/openapi.json", {}, bad(None, 405)),
    ("GET", "/redoc", {}, OK),
    ("GET", "/ui/", {}, OK),
    ("GET", "/no/such/route", {}, bad(None, 404)),
]


@pytest.fixture(scope="module")
def server(live_server, tools):
    """The live server, with a finished job (and its image) and a queued one to cancel."""
    client = httpx.Client(base_url=live_server.url, timeout=120)
    r = client.post("/api/v1/jobs", json={"prompt": "a blue square", "steps": 2, "seed": 9})
    assert r.status_code == 202, r.text
    done = tools.wait_done(client, r.json()["id"])
    assert done["status"] == "done", done
    image = done["outputs"][0]["name"]
    image_b64 = base64.b64encode(client.get(f"/api/v1/images/{image}").content).decode()
    r = client.post("/api/v1/inputs", content=_png((64, 64), "RGB"))
    small = client.post("/api/v1/inputs", content=_png((32, 32), "L"))
    assert r.status_code == 201 and small.status_code == 201, r.text
    return client, {"done": done["id"], "image": image, "image_b64": image_b64, "input": r.json()["sha256"],
                    "small_mask": small.json()["sha256"]}


def _fill(value, subs: dict):
    if isinstance(value, str):
        for key, sub in subs.items():
            value = value.replace("{%s}" % key, sub)
        return value
    if isinstance(value, dict):
        return {k: _fill(v, subs) for k, v in value.items()}
    return value


def _case_id(case) -> str:
    method, path, kwargs, expect = case
    detail = json.dumps(kwargs.get("json", kwargs.get("params", kwargs.get("data", ""))))[:40] if kwargs else ""
    if "files" in kwargs or "content" in kwargs:
        sizes = [len(f[1]) for f in kwargs.get("files", {}).values()] or [len(kwargs.get("content", b""))]
        detail += f"-bytes{sizes}"
    return f"{'ok' if expect == OK else 'bad'}-{method}-{path}-{detail}"


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_route_input(server, case):
    client, subs = server
    method, path, kwargs, expect = case
    subs = dict(subs)
    if "{queued}" in path:  # a long job to cancel: queued or running, never finished yet
        r = client.post("/api/v1/jobs", json={"prompt": "x", "steps": 150, "n": 8})
        subs["queued"] = r.json()["id"]
    r = client.request(method, _fill(path, subs), **_fill(kwargs, subs))
    assert r.status_code != 500, r.text
    if expect == OK:
        assert r.status_code < 300, r.text
        if path == "/sdapi/v1/txt2img":
            body = r.json()
            assert json.loads(body["info"])["all_seeds"] and body["images"]
            Image.open(io.BytesIO(base64.b64decode(body["images"][0]))).verify()
        if path == "/v1/images/generations":
            Image.open(io.BytesIO(base64.b64decode(r.json()["data"][0]["b64_json"]))).verify() \
                if "b64_json" in r.json()["data"][0] else None
        if path in ("/sdapi/v1/img2img", "/v1/images/edits"):
            body = r.json()
            data = body["images"][0] if "images" in body else body["data"][0]["b64_json"]
            assert Image.open(io.BytesIO(base64.b64decode(data))).size == (64, 64)
        if path == "/sdapi/v1/png-info":
            assert "Steps: 2" in r.json()["info"] and r.json()["parameters"]["Seed"] == "9"
        return
    _, field, status = expect
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    if status is not None:
        assert r.status_code == status, r.text
    body = r.json()
    if path.startswith("/v1/"):
        err = body["error"]
        assert set(err) >= {"message", "type", "param", "code"}
        if field is not None:
            assert err["param"] == field and field.split(".")[0] in err["message"], body
    else:
        assert set(body) >= {"error", "detail", "field"}
        if field is not None:
            assert body["field"] == field and field in body["detail"], body
    if "{queued}" in path:
        client.delete(f"/api/v1/jobs/{subs['queued']}")


def test_table_covers_every_route(server):
    client, _ = server
    schema = client.get("/openapi.json").json()
    covered = {(m, p) for m, p, _, _ in CASES}
    for path, ops in schema["paths"].items():
        for method in ops:
            template = path.replace("{job_id}", "").replace("{name}", "")
            hits = [p for m, p in covered if m == method.upper() and (p == path or (
                template != path and p.startswith(template.rstrip("/")) and p.count("/") == path.count("/")))]
            assert hits, f"no bad-input row for {method.upper()} {path}"


def test_backpressure_429_with_retry_after(tmp_path, tiny_model_dir, tools):
    from fastapi.testclient import TestClient

    from brushwork.serve.app import create_app
    from brushwork.serve.service import ServeConfig

    home = tools.make_home(tmp_path / "home", tiny_model_dir)
    app = create_app(ServeConfig(home=home, worker=False, ui=False, max_queue=2, model="tiny"))
    with TestClient(app, base_url="http://127.0.0.1") as client:  # a loopback Host, as a browser sends
        for _ in range(2):
            assert client.post("/api/v1/jobs", json=GOOD_JOB).status_code == 202
        for path, body in (("/api/v1/jobs", GOOD_JOB), ("/sdapi/v1/txt2img", GOOD_A1111),
                           ("/v1/images/generations", GOOD_OPENAI)):
            r = client.post(path, json=body)
            assert r.status_code == 429, r.text
            assert int(r.headers["retry-after"]) >= 1
            assert "queue is full" in (r.json()["error"]["message"] if path.startswith("/v1/") else r.json()["detail"])


def test_server_logged_no_traceback(server, live_server):
    """Every bad request above was answered as a 4xx, not as an exception the server logged."""
    assert "Traceback" not in live_server.log(), live_server.log()


def test_refused_image_requests_store_nothing(server, live_server):
    """Every refused img2img, edit or upload leaves the server's stored inputs as they were."""
    client, subs = server
    folder = live_server.home / "serve" / "inputs"
    before = sorted(p.name for p in folder.iterdir())
    refused = [c for c in CASES if c[3] != OK and c[1] in ("/sdapi/v1/img2img", "/v1/images/edits", "/api/v1/inputs")
               and c[0] == "POST"]
    assert len(refused) >= 20
    for method, path, kwargs, _ in refused:
        r = client.request(method, path, **_fill(kwargs, subs))
        assert 400 <= r.status_code < 500, r.text
    assert sorted(p.name for p in folder.iterdir()) == before
