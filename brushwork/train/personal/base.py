"""The base model of a personalisation run, its training objective, a resumable loop, samples and model cards.

The objective is the base model's own: v-prediction or ε-prediction as its scheduler says, timesteps drawn
uniformly, the loss weighted by min-SNR-5 (``train.diffusion.loss_weight``). Everything random at step ``s`` is
seeded from ``(seed, s)`` and the optimizer state is checkpointed, so a resumed run is the same as an
uninterrupted one.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from PIL import Image

from brushwork.errors import InvalidParameter

SNR_GAMMA = 5.0
RUN_FILE = "run.json"


@dataclass
class Base:
    """A loaded base model (fp32, frozen) and what an output must say about it."""

    ref: str  # as given to --model
    name: str
    pipe: Any  # StableDiffusionPipeline
    kind: str  # sd1 / sd2
    sha256: str
    license: str
    native_size: int
    max_size: int
    path: Path
    scheduler_config: dict  # the DDPM training schedule
    record: dict  # the model's brushwork_training.json ({} if none)

    @property
    def family(self) -> str:
        """kohya's ``ss_base_model_version``; brushwork's own shapes models (128-wide cross-attention) are
        ``brushwork-shapes``."""
        if self.pipe.unet.config.cross_attention_dim == 128:
            return "brushwork-shapes"
        return {"sd1": "sd_v1", "sd2": "sd_v2"}[self.kind]

    @property
    def v_pred(self) -> bool:
        return self.scheduler_config["prediction_type"] == "v_prediction"


def load_base(ref: str) -> Base:
    """The model ``ref`` names (registry name, diffusers folder, SD1.x/2.x file, "default"), offline, fp32, every
    component frozen and in eval mode."""
    from diffusers import DDPMScheduler

    from brushwork.models.load import load_pipeline
    from brushwork.train.init import read_record

    m = load_pipeline(ref, dtype=torch.float32, hash=True)
    if m.kind not in ("sd1", "sd2"):
        raise InvalidParameter(f"--model {m.name}: a {m.kind} model cannot be personalised here; these trainers take "
                               "Stable Diffusion 1.x/2.x-style models (one CLIP text encoder, one UNet)")
    sched = DDPMScheduler.from_config(m.pipe.scheduler.config)
    if sched.config.prediction_type not in ("epsilon", "v_prediction"):
        raise InvalidParameter(f"--model {m.name}: prediction type {sched.config.prediction_type!r} is not trainable "
                               "here (epsilon or v_prediction)")
    for mod in (m.pipe.vae, m.pipe.text_encoder, m.pipe.unet):
        mod.requires_grad_(False)
        mod.eval()
    m.pipe.set_progress_bar_config(disable=True)
    config = {k: v for k, v in sched.config.items() if not k.startswith("_")}
    return Base(ref, m.name, m.pipe, m.kind, m.sha256, m.license, m.native_size, m.max_size, m.path, config,
                read_record(m.path) if m.path.is_dir() else {})


def check_run(work: Path, fingerprint: dict) -> None:
    """Continue only a run of the same settings: ``work/run.json`` is written on the first run and compared after."""
    path = work / RUN_FILE
    if path.is_file():
        before = json.loads(path.read_text())
        diff = [k for k in sorted(set(before) | set(fingerprint)) if before.get(k) != fingerprint.get(k)]
        if diff:
            k = diff[0]
            raise InvalidParameter(f"--work {work} holds a run with other settings ({k}: {before.get(k)!r}, now "
                                   f"{fingerprint.get(k)!r}); use a new --work folder or the same settings")
    else:
        work.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(fingerprint, indent=1))


class Objective:
    """The base model's denoising loss on cached latents: ``loss(unet, rows, cond, step)``.

    ``captions[i]`` are image ``i``'s captions; ``texts`` is all of them, and ``caption_index(rows, step)`` draws
    one of its image's captions for each row (always the same one when an image has one caption). With ``flip``,
    each image's mirror image is a row too, unless a caption of it names a side (``--flip``: for subjects that
    look the same mirrored; a crescent or a logo does not). ``weights[i]`` is how often image ``i`` is drawn,
    shared with its mirror image when it has one (default: every row alike)."""

    def __init__(self, base: Base, pixels: np.ndarray, captions: list[list[str]], seed: int,
                 weights: list[float] | None = None, flip: bool = False):
        from diffusers import DDPMScheduler

        from brushwork.train.vae import encode_all

        self.sched = DDPMScheduler.from_config(base.scheduler_config)
        self.v_pred, self.seed = base.v_pred, seed
        alphas = self.sched.alphas_cumprod
        self.snr_all = alphas / (1 - alphas)
        self.scale = float(base.pipe.vae.config.scaling_factor)
        self.texts = [c for options in captions for c in options]
        firsts = np.cumsum([0] + [len(options) for options in captions])
        # each image, and with ``flip`` its mirror image unless a caption of it names a side: a row is (latent
        # mean/std, image)
        mirrored = [i for i, options in enumerate(captions) if flip and not any(
            {"left", "right"} & set(c.lower().replace(",", " ").split()) for c in options)]
        with torch.no_grad():
            mean, std = encode_all(base.pipe.vae, pixels)
            fmean, fstd = encode_all(base.pipe.vae, np.ascontiguousarray(pixels[mirrored, :, ::-1])) if mirrored \
                else (mean[:0], std[:0])
        self.mean, self.std = torch.cat([mean, fmean]).float(), torch.cat([std, fstd]).float()
        image_of = list(range(len(captions))) + mirrored
        self.first = torch.tensor([int(firsts[i]) for i in image_of])  # each row's first caption in ``texts``
        self.count = torch.tensor([len(captions[i]) for i in image_of])
        if weights is None:  # every row alike
            self.weights = np.ones(len(image_of))
        else:
            copies = np.bincount(image_of, minlength=len(captions))
            self.weights = np.array([float(weights[i]) / copies[i] for i in image_of])

    def rows(self, step: int, batch: int) -> torch.Tensor:
        from brushwork.train.data import batch_indices

        return torch.from_numpy(batch_indices(self.weights, self.seed, step, batch))

    def caption_index(self, rows: torch.Tensor, step: int) -> torch.Tensor:
        """For each row, the index in ``texts`` of the caption it trains with at ``step``."""
        count = self.count[rows]
        if int(count.max()) == 1:
            return self.first[rows]
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + step + 500_009)
        return self.first[rows] + (torch.rand(len(rows), generator=gen) * count).long().clamp(max=count - 1)

    def noised(self, rows: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(noisy latents, timesteps, target)`` for ``rows`` at ``step``: a latent sample of each row's image,
        noised at a uniform timestep; the target is the noise (ε) or the velocity, as the model predicts."""
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        lat = (self.mean[rows] + self.std[rows] * torch.randn(self.mean[rows].shape, generator=gen)) * self.scale
        noise = torch.randn(lat.shape, generator=gen)
        t = torch.randint(0, self.sched.config.num_train_timesteps, (len(rows),), generator=gen)
        noisy = self.sched.add_noise(lat, noise, t)
        return noisy, t, (self.sched.get_velocity(lat, noise, t) if self.v_pred else noise)

    def row_losses(self, pred: torch.Tensor, target: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Each row's squared error, weighted by min-SNR-5 at its timestep."""
        from brushwork.train.diffusion import loss_weight

        weight = loss_weight(self.snr_all[t], SNR_GAMMA, 0.0, self.v_pred)
        return weight * (pred.float() - target).pow(2).mean(dim=(1, 2, 3))

    def loss(self, unet, rows: torch.Tensor, cond: torch.Tensor, step: int) -> torch.Tensor:
        noisy, t, target = self.noised(rows, step)
        return self.row_losses(unet(noisy, t, cond).sample, target, t).mean()


class BaseTargets:
    """Prior preservation by the base model's own predictions (``--prior-target base``): each class image noised
    ``draws`` times at uniform timesteps, with what the frozen base UNet predicts for it as the target, computed
    once before any adapter exists. One draw in four is conditioned on the empty prompt, so the unconditional
    prediction that classifier-free guidance leans on is held too. Unlike class images with their own noise as
    the target (DreamBooth's prior), the target here is exact: a few rows a step hold the model to what it did.

    ``pick(step, count)`` gives the entries a training step adds to its batch: ``noisy``, ``t``, ``ids`` (token
    ids of each entry's prompt), ``cond`` (the frozen text encoder's states for them) and ``target``."""

    def __init__(self, obj: Objective, unet, tokenize, text_encoder, draws: int, seed: int, chunk: int = 32):
        """``obj``: the class images with their prompts (one each); ``tokenize(texts)`` gives padded token ids."""
        rows = torch.arange(len(obj.weights))
        noisy, ts, texts = [], [], []
        for d in range(draws):
            n, t, _ = obj.noised(rows, 1_000_000_000 + d)  # steps no training step uses
            noisy.append(n)
            ts.append(t)
            texts += ["" if d % 4 == 3 else obj.texts[int(obj.first[r])] for r in rows]
        self.noisy, self.t, self.seed = torch.cat(noisy), torch.cat(ts), seed
        self.ids = tokenize(texts)
        with torch.no_grad():
            self.cond = torch.cat([text_encoder(self.ids[i:i + chunk]).last_hidden_state
                                   for i in range(0, len(texts), chunk)])
            self.target = torch.cat([unet(self.noisy[i:i + chunk], self.t[i:i + chunk],
                                          self.cond[i:i + chunk]).sample.float()
                                     for i in range(0, len(texts), chunk)])

    def __len__(self) -> int:
        return len(self.t)

    def pick(self, step: int, count: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + step + 700_001)
        return torch.randint(0, len(self), (count,), generator=gen)


def fit(work: Path, params: dict[str, torch.nn.Parameter], loss_at: Callable[[int], torch.Tensor], *, steps: int,
        lr: float, warmup: int, start: float, max_minutes: float | None, desc: str, title: str,
        on_save: Callable[[int], None] | None = None, ckpt_every: int = 100, progress: bool = True) -> dict:
    """Train ``params`` (AdamW, no weight decay; warm-up then a cosine to a tenth of ``lr``) on ``loss_at(step)``,
    resuming from ``work/checkpoint``; checkpoint, loss curve (``work/loss.png``) and ``on_save(step)`` every
    ``ckpt_every`` steps, at the end and when ``max_minutes`` (counted from ``start``) runs out.
    Returns {"done", "step", "minutes"} (minutes: this work folder's runs together)."""
    from tqdm.auto import tqdm

    from brushwork.train.checkpoint import apply_update, load_checkpoint, out_of_time, save_checkpoint
    from brushwork.train.diffusion import lr_at
    from brushwork.train.plot import loss_curve

    holder = torch.nn.ParameterDict({k.replace(".", "/"): p for k, p in params.items()})
    plist = list(holder.values())
    opt = torch.optim.AdamW(plist, lr=lr, weight_decay=0.0)
    ckpt = work / "checkpoint"
    step, losses, state = load_checkpoint(ckpt, {"params": holder}, {}, opt)
    before = float(state.get("minutes", 0.0))

    def minutes() -> float:
        return before + (time.monotonic() - start) / 60

    bar = tqdm(total=steps, initial=min(step, steps), desc=desc, disable=not progress)
    while step < steps:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, lr, warmup, steps, 0.1)
        step = apply_update(loss_at(step), opt, plist, {}, {}, step, losses, bar)
        stop = out_of_time(start, max_minutes)
        if step % ckpt_every == 0 or step == steps or stop:
            save_checkpoint(ckpt, step, {"params": holder}, {}, opt, losses, {"minutes": minutes()})
            loss_curve(losses, work / "loss.png", title)
            if on_save is not None:
                on_save(step)
        if stop and step < steps:
            bar.close()
            return {"done": False, "step": step, "minutes": minutes()}
    bar.close()
    return {"done": True, "step": step, "minutes": minutes()}


def sample_grid(pipe, prompts: list[str], path: Path, size: int, *, training: np.ndarray | None = None,
                seed: int = 0, steps: int = 20, cfg: float = 7.0) -> Path:
    """One row of (up to 4) training images, one of images generated for ``prompts`` (DPM++ 2M, ``steps`` steps,
    CFG ``cfg``, seeds ``seed``…), at ``size`` pixels."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline

    sampler = StableDiffusionPipeline(**{**pipe.components, "scheduler": DPMSolverMultistepScheduler.from_config(
        pipe.scheduler.config)}, requires_safety_checker=False)
    sampler.set_progress_bar_config(disable=True)
    gens = [torch.Generator().manual_seed(seed + i) for i in range(len(prompts))]
    with torch.no_grad():
        out = sampler(prompt=prompts, num_inference_steps=steps, guidance_scale=cfg, height=size, width=size,
                      generator=gens, output_type="np").images
    rows = [] if training is None else [[Image.fromarray(np.asarray(im)).resize((size, size)) for im in training[:4]]]
    rows.append([Image.fromarray((np.clip(im, 0, 1) * 255).round().astype(np.uint8)) for im in out])
    cols = max(len(r) for r in rows)
    sheet = Image.new("RGB", (cols * size, len(rows) * size), "white")
    for y, row in enumerate(rows):
        for x, im in enumerate(row):
            sheet.paste(im, (x * size, y * size))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def make_class_images(pipe, data: Path, class_prompts: list[str], count: int, size: int, seed: int, progress: bool,
                      batch: int = 8) -> None:
    """``class_NNNN.png`` for i < ``count`` (of ``class_prompts[i % n]``), generated by the base model; those
    already there are kept."""
    from diffusers import DPMSolverMultistepScheduler, StableDiffusionPipeline
    from tqdm.auto import tqdm

    data.mkdir(parents=True, exist_ok=True)
    todo = [i for i in range(count) if not (data / f"class_{i:04d}.png").is_file()]
    if not todo:
        return
    sampler = StableDiffusionPipeline(**{**pipe.components, "scheduler": DPMSolverMultistepScheduler.from_config(
        pipe.scheduler.config)}, requires_safety_checker=False)
    sampler.set_progress_bar_config(disable=True)
    with tqdm(total=count, initial=count - len(todo), desc="class images", disable=not progress) as bar:
        for j in range(0, len(todo), batch):
            chunk = todo[j:j + batch]
            gens = [torch.Generator().manual_seed(seed * 10_000 + i) for i in chunk]
            with torch.no_grad():
                images = sampler(prompt=[class_prompts[i % len(class_prompts)] for i in chunk],
                                 num_inference_steps=20, guidance_scale=7.0,
                                 height=size, width=size, generator=gens, output_type="pil").images
            for i, im in zip(chunk, images):
                tmp = data / f"class_{i:04d}.tmp.png"
                im.save(tmp)
                tmp.replace(data / f"class_{i:04d}.png")
                bar.update(1)


def read_class_images(folder: Path, count: int) -> np.ndarray:
    """``make_class_images``' images 0..count-1 as one uint8 array ``[count, H, W, 3]``."""
    return np.stack([np.asarray(Image.open(folder / f"class_{i:04d}.png").convert("RGB")) for i in range(count)])


def write_card(path: Path, title: str, base: Base, facts: dict, *, front: dict | None = None) -> Path:
    """A small model card: YAML front matter (licence, base model, ``front``) and the facts as a list."""
    import yaml

    from brushwork.models.licenses import get_license

    meta = {"license": base.license, "base_model": base.name, **(front or {})}
    lic = get_license(base.license)
    lines = ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).strip(), "---", f"# {title}", "",
             f"- **Base model:** {base.name} (sha256 `{base.sha256}`)",
             f"- **Licence:** {base.license} ({lic.title}), inherited from the base model"]
    lines += [f"- **{k}:** {v}" for k, v in facts.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path
