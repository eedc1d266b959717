"""Image-conditioned generation: img2img, inpainting, outpainting and hires fix, on the loop in ``pipeline``.

    init image ──► fit to size ──► (mask: blur, fill) ──► VAE encode ──► denoise the last steps × strength
               ──► decode ──► paste back only where the mask is ≠ 0

Any text-to-image UNet inpaints by latent blending (``pipeline.Keep``); an inpainting UNet (9 input
channels: latents, mask, masked-image latents) gets the mask as input instead. Either way the pixels
outside the blurred mask are the original's, composited after decoding, as A1111 does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from brushwork.engine import images as im
from brushwork.engine.params import FILL_MODES, MAX_SIDE, GenerationParams
from brushwork.engine.pipeline import (Components, Keep, SizePlan, Start, StepCallback, decode, denoise, encode,
                                       plan_size, whole_image_cond)
from brushwork.errors import InvalidParameter


@dataclass
class Result:
    pixels: list[np.ndarray]  # uint8 HxWx3 at the final size
    plan: SizePlan  # requested: the size the request named (first pass for hires); generated: the UNet's
    extra: dict  # infotext pairs (A1111's keys)


def _default_size(c: Components, image: Image.Image) -> tuple[int, int]:
    """The init image's own size, rounded to the model's latent factor (the size used when none is asked)."""
    f = c.latent_factor
    return tuple(max(f, int(round(v / f)) * f) for v in image.size)


@torch.inference_mode()
def img2img(c: Components, params: GenerationParams, inputs: im.ImageInputs, *, seed: int,
            on_step: StepCallback | None = None, device: str | torch.device = "cpu") -> Result:
    """img2img (no mask), inpainting (mask) or outpainting (``params.outpaint``) of one init image."""
    im.check_inputs(params, inputs)
    init, mask = inputs.init, inputs.mask
    if params.outpaint is not None and params.outpaint.any:
        init, mask = im.outpaint_canvas(init, params.outpaint)
    width, height = params.width, params.height
    if width is None or height is None:
        dw, dh = _default_size(c, init)
        width, height = width or dw, height or dh
    plan = plan_size(c, width, height)
    W, H = plan.requested
    gw, gh = plan.generated
    mode = params.resize_mode

    original = np.asarray(im.fit(im.to_rgb(init), W, H, mode))  # what the result is pasted onto
    m_full = None
    if mask is not None:
        m_full = im.prepare_mask(im.fit(im.mask_to_l(mask), W, H, mode), (W, H),
                                 invert=params.inpainting_mask_invert, blur=params.mask_blur)
        if params.outpaint is not None and params.outpaint.any:  # feather into the new area only
            m_full *= np.asarray(im.fit(mask, W, H, mode), dtype=np.float32) > 0
        if not m_full.any():
            raise InvalidParameter("mask: it is empty (nothing to repaint)" +
                                   (" after inverting" if params.inpainting_mask_invert else ""), field="mask")

    region = None  # (left, top, right, bottom) of the crop that "only masked" generates at full size
    if m_full is not None and params.inpaint_full_res:
        region = im.masked_region(m_full, params.inpaint_full_res_padding, gw / gh)
    if region is not None:
        source = Image.fromarray(original).crop(region).resize((gw, gh), Image.LANCZOS)
        m_gen = np.asarray(Image.fromarray(m_full).crop(region).resize((gw, gh), Image.BILINEAR))
    else:
        source = Image.fromarray(original).resize((gw, gh), Image.LANCZOS) if (gw, gh) != (W, H) else \
            Image.fromarray(original)
        m_gen = None if m_full is None else np.asarray(Image.fromarray(m_full).resize((gw, gh), Image.BILINEAR))

    seeds = [seed + i for i in range(params.n)]
    n = len(seeds)
    pixels = np.asarray(source)
    if m_gen is not None and FILL_MODES[params.inpainting_fill] == "fill":
        pixels = im.fill_masked(pixels, m_gen)
    if mode == 3 and region is None:  # latent upscale: encode at the image's own size, resize the latents
        own = im.to_rgb(init).resize(_default_size(c, init), Image.LANCZOS)
        latents = F.interpolate(encode(c, np.asarray(own)[None], device), size=(gh // c.latent_factor,
                                gw // c.latent_factor), mode="bilinear", align_corners=False)
    else:
        latents = encode(c, pixels[None], device)
    latents = latents.expand(n, -1, -1, -1)

    keep = image_cond = None
    if m_gen is None and c.inpainting:  # img2img on an inpainting UNet: the whole image is re-drawn
        image_cond = whole_image_cond(c, n, (gw, gh), device)
    if m_gen is not None:
        f = c.latent_factor
        m_lat = torch.from_numpy(np.array(m_gen, dtype=np.float32))[None, None].to(device, latents.dtype)
        m_lat = F.interpolate(m_lat, size=(gh // f, gw // f), mode="area").expand(n, -1, -1, -1)
        fill = FILL_MODES[params.inpainting_fill]
        if fill == "noise":
            gens = [torch.Generator("cpu").manual_seed(s + (1 << 32)) for s in seeds]
            noise = torch.cat([torch.randn((1, *latents.shape[1:]), generator=g) for g in gens]).to(latents)
            latents = latents * (1 - m_lat) + noise * m_lat
        elif fill == "nothing":
            latents = latents * (1 - m_lat)
        if c.inpainting:
            hole = (m_gen >= 0.5)[..., None]
            masked = encode(c, np.where(hole, 127, np.asarray(source)).astype(np.uint8)[None], device)
            image_cond = torch.cat([(m_lat >= 0.5).to(latents.dtype), masked.expand(n, -1, -1, -1)], dim=1)
        else:
            keep = Keep(mask=m_lat, original=latents)
    out = denoise(c, params, seeds=seeds, size=(gw, gh), start=Start(latents, params.denoising_strength),
                  keep=keep, image_cond=image_cond, on_step=on_step, device=device)
    results = decode(c, out)

    final = []
    for px in results:
        if region is not None:
            px = _paste(original, px, region)
        elif (gw, gh) != (W, H):
            px = np.asarray(Image.fromarray(px).resize((W, H), Image.LANCZOS))
        final.append(px if m_full is None else im.composite(original, px, m_full))
    extra = {"Denoising strength": params.denoising_strength}
    if m_full is not None:
        extra["Mask blur"] = params.mask_blur
        if params.inpaint_full_res:
            extra.update({"Inpaint area": "Only masked", "Masked area padding": params.inpaint_full_res_padding})
    if params.outpaint is not None and params.outpaint.any:
        o = params.outpaint
        extra["Outpaint"] = f"left {o.left} right {o.right} top {o.top} bottom {o.bottom}"
    if plan.upscaled:
        extra.update({"Generated size": f"{gw}x{gh}", "Upscaler": "Lanczos"})
    return Result(final, plan, extra)


def _paste(original: np.ndarray, px: np.ndarray, region: tuple[int, int, int, int]) -> np.ndarray:
    left, top, right, bottom = region
    out = original.copy()
    out[top:bottom, left:right] = np.asarray(Image.fromarray(px).resize((right - left, bottom - top), Image.LANCZOS))
    return out


def hires_size(params: GenerationParams, plan: SizePlan, factor: int) -> tuple[int, int]:
    """The second pass's size: the requested size × ``hr_scale``, on the latent grid, at most ``MAX_SIDE``."""
    w, h = (int(round(v * params.hr_scale / factor)) * factor for v in plan.requested)
    if max(w, h) > MAX_SIDE:
        raise InvalidParameter(f"hr_scale: {plan.requested[0]}x{plan.requested[1]} × {params.hr_scale:g} is "
                               f"{w}x{h}, over the {MAX_SIDE}-pixel cap", field="hr_scale")
    return w, h


@torch.inference_mode()
def txt2img_hires(c: Components, params: GenerationParams, *, seed: int, on_step: StepCallback | None = None,
                  device: str | torch.device = "cpu") -> Result:
    """Hires fix: txt2img at the requested size, upscale by ``hr_scale``, then an img2img pass there."""
    plan = plan_size(c, params.width, params.height)
    tw, th = hires_size(params, plan, c.latent_factor)
    seeds = [seed + i for i in range(params.n)]
    if c.inpainting:
        raise InvalidParameter("enable_hr: hires fix needs a text-to-image model, not an inpainting one",
                               field="enable_hr")
    steps = params.hr_second_pass_steps or params.steps
    second = min(int(steps * params.denoising_strength), steps)
    first = denoise(c, params, seeds=seeds, size=plan.generated, device=device,
                    on_step=_shifted(on_step, 0, second))
    f = c.latent_factor
    if params.hr_upscaler == "Latent":
        start = F.interpolate(first, size=(th // f, tw // f), mode="bilinear", align_corners=False)
    else:
        resample = Image.LANCZOS if params.hr_upscaler == "Lanczos" else Image.NEAREST
        big = [np.asarray(Image.fromarray(p).resize((tw, th), resample)) for p in decode(c, first)]
        start = encode(c, np.stack(big), device)
    out = denoise(c, params, seeds=seeds, size=(tw, th), start=Start(start, params.denoising_strength),
                  steps=steps, on_step=_shifted(on_step, params.steps, 0), device=device)
    extra = {"Denoising strength": params.denoising_strength, "Hires upscale": f"{params.hr_scale:g}",
             "Hires steps": params.hr_second_pass_steps or None, "Hires upscaler": params.hr_upscaler}
    if plan.upscaled:
        extra["First pass size"] = f"{plan.generated[0]}x{plan.generated[1]}"
    return Result(decode(c, out), plan, extra)


def _shifted(on_step: StepCallback | None, before: int, after: int) -> StepCallback | None:
    """Report one pass of several as steps of the whole: ``before`` steps done earlier, ``after`` to come."""
    if on_step is None:
        return None
    return lambda i, total, latents: on_step(before + i, before + total + after, latents)
