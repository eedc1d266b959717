"""txt2img: the denoising loop, written out step by step over explicit diffusers components.

    prompt ──► conditioning ──► sampler loop ──► decoder ──► checked pixels
               (prompts.py)     (UNet + CFG,      (VAE)      (NaN / all-zero refused)
                                 samplers.py)

Seeds: image *i* of a request uses ``seed + i``; its initial noise and every noise a stochastic
sampler draws come from its own CPU generator (or Brownian tree), so any image can be re-made
alone and a seed means the same thing on every device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from brushwork.engine.params import GenerationParams
from brushwork.engine.prompts import encode_pair
from brushwork.engine.samplers import (effective_schedule, make_scheduler, resolve_sampler, seed_scheduler_noise,
                                       set_steps)
from brushwork.errors import BrushworkError, InvalidParameter, OutputCheckFailed


class Cancelled(BrushworkError):
    """The per-step callback asked to stop; raised before the next denoising step runs."""

    exit_code = 130
    http_status = 409


@dataclass
class Components:
    """What one denoising run needs (all diffusers/transformers objects, nothing hidden)."""

    unet: Any
    vae: Any
    text_encoder: Any
    tokenizer: Any
    scheduler_config: dict
    native_size: int
    max_size: int

    @classmethod
    def from_pipeline(cls, pipe, native_size: int | None = None, max_size: int | None = None) -> "Components":
        native = native_size or pipe.unet.config.sample_size * pipe.vae_scale_factor
        return cls(pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer, dict(pipe.scheduler.config),
                   native, max_size or native)

    @property
    def latent_factor(self) -> int:
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def latent_channels(self) -> int:
        return self.vae.config.latent_channels

    @property
    def inpainting(self) -> bool:
        """An inpainting UNet: its input is the latents plus a mask and the masked image's latents."""
        return self.unet.config.in_channels == 2 * self.latent_channels + 1


@dataclass
class SizePlan:
    requested: tuple[int, int]
    generated: tuple[int, int]

    @property
    def upscaled(self) -> bool:
        return self.requested != self.generated


# on_step(step, total, latents) -> True to cancel before the next step
StepCallback = Callable[[int, int, torch.Tensor], bool | None]


def plan_size(c: Components, width: int | None, height: int | None) -> SizePlan:
    """Refuse sizes the model cannot take; fit oversized requests to the model's largest direct size."""
    w, h = width or c.native_size, height or c.native_size
    f = c.latent_factor
    for name, v in (("width", w), ("height", h)):
        if v <= 0 or v % f:
            raise InvalidParameter(f"{name} {v} must be a positive multiple of {f} for this model", field=name)
    if max(w, h) <= c.max_size:
        return SizePlan((w, h), (w, h))
    k = c.max_size / max(w, h)
    gw, gh = (max(f, int(round(v * k / f)) * f) for v in (w, h))
    return SizePlan((w, h), (gw, gh))


@dataclass
class Keep:
    """Latent blending for inpainting with a text-to-image UNet: where ``mask`` is 0 the latents are
    reset after every step to ``original`` noised to the next step's level, and at the end to ``original``."""

    mask: torch.Tensor  # (n, 1, h, w) in [0, 1] at latent size; 1 = repaint
    original: torch.Tensor  # clean latents of the init image, (n, C, h, w)


@dataclass
class Start:
    """Where the denoising loop starts from: pure noise (txt2img) or an image's latents (img2img)."""

    latents: torch.Tensor | None = None  # clean latents; None: start from noise at the full schedule
    strength: float = 1.0  # the share of the schedule that runs; 0 returns ``latents`` unchanged


def encode_prompts(c: Components, params: GenerationParams, n: int, device) -> tuple[torch.Tensor, bool]:
    """The UNet's ``encoder_hidden_states`` for ``n`` images: [uncond × n, cond × n] under CFG, else [cond × n]."""
    cond, uncond = encode_pair(c.tokenizer, c.text_encoder, params.prompt, params.negative_prompt,
                               device=device, dtype=c.unet.dtype)
    guided = params.cfg_scale != 1.0
    context = torch.cat([uncond.expand(n, -1, -1), cond.expand(n, -1, -1)]) if guided else cond.expand(n, -1, -1)
    return context, guided


def denoise(c: Components, params: GenerationParams, *, seeds: list[int], size: tuple[int, int],
            start: Start | None = None, keep: Keep | None = None, image_cond: torch.Tensor | None = None,
            steps: int | None = None, on_step: StepCallback | None = None,
            device: str | torch.device = "cpu") -> torch.Tensor:
    """Run the sampler and return clean latents (n, C, h, w) for images of ``size`` (w, h) pixels.

    ``start`` gives init latents and a strength (img2img: only the last ``steps × strength`` steps run,
    from the init latents noised to the first of them); ``keep`` blends the unmasked area back after
    each step; ``image_cond`` is the extra input of an inpainting UNet (mask and masked-image latents).
    """
    sampler, schedule = resolve_sampler(params.sampler, params.scheduler)
    steps = steps or params.steps
    n, f, dtype = len(seeds), c.latent_factor, c.unet.dtype
    w, h = size

    # 1. conditioning: weighted, chunked prompt and negative prompt
    context, guided = encode_prompts(c, params, n, device)

    # 2. noise, one CPU generator per image
    gens = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    shape = (1, c.latent_channels, h // f, w // f)
    noise = torch.cat([torch.randn(shape, generator=g, dtype=torch.float32) for g in gens]).to(device, dtype)

    # 3. the sampler: a diffusers scheduler built from the model's own config
    scheduler = make_scheduler(sampler, schedule, c.scheduler_config)
    set_steps(scheduler, steps, sampler=sampler, device=device,
              schedule=effective_schedule(sampler, schedule, c.scheduler_config))
    step_kwargs = seed_scheduler_noise(scheduler, seeds, generators=gens)
    timesteps = scheduler.timesteps
    if start is None or start.latents is None:
        latents = noise * scheduler.init_noise_sigma
    else:  # img2img: skip the first (1 - strength) of the schedule, as diffusers and A1111 do
        order = getattr(scheduler, "order", 1)
        skip = steps - min(int(steps * start.strength), steps)
        timesteps = timesteps[skip * order:]
        if len(timesteps) == 0:
            return start.latents
        if hasattr(scheduler, "set_begin_index"):
            scheduler.set_begin_index(skip * order)
        latents = scheduler.add_noise(start.latents, noise, timesteps[:1])

    # 4. the denoising loop with classifier-free guidance
    for i, t in enumerate(timesteps):
        if on_step is not None and on_step(i, len(timesteps), latents):
            raise Cancelled(f"cancelled before step {i + 1} of {len(timesteps)}")
        x = torch.cat([latents] * 2) if guided else latents
        x = scheduler.scale_model_input(x, t)
        if image_cond is not None:
            x = torch.cat([x, torch.cat([image_cond] * 2) if guided else image_cond], dim=1)
        pred = c.unet(x, t, encoder_hidden_states=context).sample
        if guided:
            pred_uncond, pred_cond = pred.chunk(2)
            pred = pred_uncond + params.cfg_scale * (pred_cond - pred_uncond)
        latents = scheduler.step(pred, t, latents, **step_kwargs).prev_sample
        if keep is not None:
            if i + 1 < len(timesteps):
                known = scheduler.add_noise(keep.original, noise, timesteps[i + 1:i + 2])
            else:
                known = keep.original
            latents = keep.mask * latents + (1 - keep.mask) * known
    if on_step is not None:
        on_step(len(timesteps), len(timesteps), latents)
    return latents


def decode(c: Components, latents: torch.Tensor) -> list[np.ndarray]:
    """Latents → checked uint8 HxWx3 images (NaN and all-zero decodes refused)."""
    decoded = c.vae.decode(latents / c.vae.config.scaling_factor).sample.float()
    if torch.isnan(decoded).any():
        raise OutputCheckFailed("the decoded image contains NaN values (try fp32 or a different VAE)")
    for i, d in enumerate(decoded):
        if bool((d == 0).all()):
            raise OutputCheckFailed(f"image {i} decoded to all zeros (the classic fp16 VAE failure); try fp32")
    pixels = ((decoded / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
    return list(pixels)


def encode(c: Components, pixels: np.ndarray, device: str | torch.device = "cpu") -> torch.Tensor:
    """uint8 (n, H, W, 3) images → scaled latents (the posterior's mean: deterministic)."""
    x = torch.from_numpy(np.array(pixels, dtype=np.uint8)).permute(0, 3, 1, 2).float() / 127.5 - 1
    x = x.to(device, c.vae.dtype)
    return c.vae.encode(x).latent_dist.mean * c.vae.config.scaling_factor


def whole_image_cond(c: Components, n: int, size: tuple[int, int], device) -> torch.Tensor:
    """An inpainting UNet's extra input when the whole image is to be drawn: all masked, a grey masked image."""
    w, h = size
    grey = encode(c, np.full((1, h, w, 3), 127, np.uint8), device)
    return torch.cat([torch.ones_like(grey[:, :1]), grey], dim=1).expand(n, -1, -1, -1)


@torch.inference_mode()
def txt2img(c: Components, params: GenerationParams, *, seed: int, on_step: StepCallback | None = None,
            device: str | torch.device = "cpu") -> tuple[list[np.ndarray], SizePlan]:
    """Generate ``params.n`` images (uint8 HxWx3) for ``params`` with image *i* seeded ``seed + i``."""
    plan = plan_size(c, params.width, params.height)
    seeds = [seed + i for i in range(params.n)]
    image_cond = whole_image_cond(c, len(seeds), plan.generated, device) if c.inpainting else None
    latents = denoise(c, params, seeds=seeds, size=plan.generated, image_cond=image_cond, on_step=on_step,
                      device=device)
    return decode(c, latents), plan
