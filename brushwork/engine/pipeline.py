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


@torch.inference_mode()
def txt2img(c: Components, params: GenerationParams, *, seed: int, on_step: StepCallback | None = None,
            device: str | torch.device = "cpu") -> tuple[list[np.ndarray], SizePlan]:
    """Generate ``params.n`` images (uint8 HxWx3) for ``params`` with image *i* seeded ``seed + i``."""
    plan = plan_size(c, params.width, params.height)
    gw, gh = plan.generated
    sampler, schedule = resolve_sampler(params.sampler, params.scheduler)
    n, f = params.n, c.latent_factor
    dtype = c.unet.dtype

    # 1. conditioning: weighted, chunked prompt and negative prompt
    cond, uncond = encode_pair(c.tokenizer, c.text_encoder, params.prompt, params.negative_prompt,
                               device=device, dtype=dtype)
    guided = params.cfg_scale != 1.0
    context = torch.cat([uncond.expand(n, -1, -1), cond.expand(n, -1, -1)]) if guided else cond.expand(n, -1, -1)

    # 2. initial noise, one CPU generator per image
    seeds = [seed + i for i in range(n)]
    gens = [torch.Generator("cpu").manual_seed(s) for s in seeds]
    shape = (1, c.unet.config.in_channels, gh // f, gw // f)
    latents = torch.cat([torch.randn(shape, generator=g, dtype=torch.float32) for g in gens]).to(device, dtype)

    # 3. the sampler: a diffusers scheduler built from the model's own config
    scheduler = make_scheduler(sampler, schedule, c.scheduler_config)
    set_steps(scheduler, params.steps, sampler=sampler, device=device,
              schedule=effective_schedule(sampler, schedule, c.scheduler_config))
    step_kwargs = seed_scheduler_noise(scheduler, seeds, generators=gens)
    latents = latents * scheduler.init_noise_sigma

    # 4. the denoising loop with classifier-free guidance
    timesteps = scheduler.timesteps
    for i, t in enumerate(timesteps):
        if on_step is not None and on_step(i, len(timesteps), latents):
            raise Cancelled(f"cancelled before step {i + 1} of {len(timesteps)}")
        x = torch.cat([latents] * 2) if guided else latents
        x = scheduler.scale_model_input(x, t)
        pred = c.unet(x, t, encoder_hidden_states=context).sample
        if guided:
            pred_uncond, pred_cond = pred.chunk(2)
            pred = pred_uncond + params.cfg_scale * (pred_cond - pred_uncond)
        latents = scheduler.step(pred, t, latents, **step_kwargs).prev_sample
    if on_step is not None:
        on_step(len(timesteps), len(timesteps), latents)

    # 5. decode and check
    decoded = c.vae.decode(latents / c.vae.config.scaling_factor).sample.float()
    if torch.isnan(decoded).any():
        raise OutputCheckFailed("the decoded image contains NaN values (try fp32 or a different VAE)")
    pixels = ((decoded / 2 + 0.5).clamp(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255).round().astype(np.uint8)
    for i, d in enumerate(decoded):
        if bool((d == 0).all()):
            raise OutputCheckFailed(f"image {i} decoded to all zeros (the classic fp16 VAE failure); try fp32")
    return list(pixels), plan
