"""Train the denoiser (UNet) and, optionally jointly, the text encoder on cached VAE latents.

Objective: v-prediction, with min-SNR-γ loss weighting (Hang et al. 2023; ``loss_weight``, optionally floored) or none
(``snr_gamma=None``: the plain v-loss; recipe v5 used it and scored far worse). The weighting is applied either to
the loss of uniformly drawn timesteps (``timesteps="uniform"``) or by drawing timesteps in proportion to it, with an
unweighted loss (``"weighted"``: the same expected objective, but no draw is spent on a near-zero weight). Captions
are dropped to the empty prompt with probability ``uncond_p`` so classifier-free guidance works, EMA weights for
sampling. Everything random at step ``s`` is seeded from ``(seed, s)``: a resumed run is the
same as an uninterrupted one.
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import torch
from diffusers import AutoencoderKL, DDPMScheduler
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from brushwork.train.checkpoint import EMA, apply_update, load_checkpoint, out_of_time, save_checkpoint
from brushwork.train.data import batch_indices, load_imagefolder
from brushwork.train.plot import loss_curve
from brushwork.train.vae import encode_all

DEFAULT_UNET_CONFIG = dict(
    sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(64, 128, 192),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    cross_attention_dim=128, attention_head_dim=4, norm_num_groups=32,
)
DEFAULT_TEXT_CONFIG = dict(hidden_size=128, intermediate_size=512, num_hidden_layers=3, num_attention_heads=4,
                           max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=128)
DEFAULT_SCHEDULER_CONFIG = dict(num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085,
                                beta_end=0.02, prediction_type="v_prediction", steps_offset=1,
                                timestep_spacing="trailing", clip_sample=False)


def unet_config_for(vae: AutoencoderKL, config: dict | None = None) -> dict:
    """``config`` (default ``DEFAULT_UNET_CONFIG``) with channels and sample size matched to the VAE's latents."""
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    return {**(config or DEFAULT_UNET_CONFIG), "in_channels": vae.config.latent_channels,
            "out_channels": vae.config.latent_channels, "sample_size": vae.config.sample_size // factor}


def make_text_encoder(tokenizer: CLIPTokenizer, config: dict | None = None) -> CLIPTextModel:
    cfg = CLIPTextConfig(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         **(config or DEFAULT_TEXT_CONFIG))
    return CLIPTextModel(cfg)


def _latent_cache(out_dir: Path, data_dir, vae: AutoencoderKL, data,
                  device: torch.device = torch.device("cpu")) -> tuple[torch.Tensor, torch.Tensor]:
    path = out_dir / "latents.safetensors"
    if path.is_file():
        t = load_file(path)
        if t["mean"].shape[0] == len(data):
            return t["mean"], t["std"]
    mean, std = encode_all(vae.to(device), data.load_images())
    vae.to("cpu")  # the training step never runs the VAE
    save_file({"mean": mean.contiguous(), "std": std.contiguous()}, path)
    return mean, std


def lr_at(step: int, lr: float, warmup: int, steps: int, final_frac: float = 1.0) -> float:
    """Linear warm-up over ``warmup`` steps, then a cosine from ``lr`` down to ``final_frac * lr`` at ``steps``
    (``final_frac=1`` keeps it constant)."""
    if step < warmup:
        return lr * (step + 1) / warmup
    done = min(1.0, (step - warmup) / max(1, steps - warmup))
    # a Python float: a numpy scalar in the optimizer state would not load with torch.load(weights_only=True)
    return float(lr * (final_frac + (1 - final_frac) * 0.5 * (1 + math.cos(math.pi * done))))


def loss_weight(snr: torch.Tensor, snr_gamma: float | None, snr_floor: float = 0.0,
                v_pred: bool = True) -> torch.Tensor:
    """Per-sample weight on the v-loss: min-SNR-γ is ``min(snr, γ) / (snr + 1)``; ``snr_floor`` F raises the clamp's
    lower end, so a high-noise step (snr below F) weighs ``F / (snr + 1)`` (with F = 1: close to the plain v-loss's
    1 at the highest noise) while the low-noise ones stay down-weighted. ``snr_gamma=None``: the plain loss.
    For an ε-prediction model (``v_pred=False``, when continuing from SD1.x) min-SNR-γ is ``min(snr, γ) / snr``."""
    if snr_gamma is None:
        return torch.ones_like(snr)
    clamped = torch.clamp(snr, min=snr_floor, max=snr_gamma)
    if v_pred:
        return clamped / (snr + 1)
    return torch.where(snr > 0, clamped / snr.clamp(min=1e-12), torch.ones_like(snr))  # SNR 0: ε-loss weight 1


TIMESTEP_SAMPLING = ("uniform", "weighted")


def timestep_probs(snr_all: torch.Tensor, snr_gamma: float | None, snr_floor: float = 0.0,
                   v_pred: bool = True) -> torch.Tensor:
    """The ``"weighted"`` sampling distribution over training timesteps: ``loss_weight`` normalised to sum 1."""
    w = loss_weight(snr_all, snr_gamma, snr_floor, v_pred).double()
    return (w / w.sum()).float()


def train_unet(data_dir, vae_dir=None, tokenizer_dir=None, out_dir=None, *, steps: int = 3000, batch: int = 64,
               lr: float = 3e-4, warmup: int = 200, final_lr_frac: float = 1.0, uncond_p: float = 0.1,
               snr_gamma: float | None = 5.0, snr_floor: float = 0.0, timesteps: str = "uniform",
               train_text_encoder: bool = True, text_encoder_lr: float | None = None, text_encoder_dir=None,
               text_rows: list[int] | None = None, teacher_files: set[str] | None = None, init=None,
               bf16: bool = False, seed: int = 0, device: str = "cpu",
               max_minutes: float | None = None, ckpt_every: int = 250, unet_config: dict | None = None,
               text_config: dict | None = None, progress: bool = True) -> dict:
    """Train (or resume). Returns {"done": bool, "step": int, "step_offset": int, "unet": UNet, "text_encoder": TE}
    with EMA weights loaded when done. ``timesteps``: "uniform" draws, loss weighted by ``loss_weight``; "weighted"
    draws in proportion to ``loss_weight``, loss unweighted.

    Where the components come from:
    - from scratch: the VAE at ``vae_dir``, the tokenizer at ``tokenizer_dir``, a new UNet (``unet_config``) and
      either a new text encoder (``text_config``) or the pretrained one at ``text_encoder_dir`` (a ``CLIPTextModel``
      folder, e.g. ``train.clip``'s);
    - ``init``: a ``Start`` (``train.init.load_start``) holding a trained model's components, its scheduler and the
      step offset its training reached: batch ``s`` of this run is batch ``offset + s`` of the chain, so a
      continuation does not replay what the model has seen. ``vae_dir``/``tokenizer_dir`` must then be None.

    With ``train_text_encoder=False`` the text encoder is frozen and the text states of every caption are computed
    once, so a step runs the UNet alone. ``text_encoder_lr`` (default ``lr``) is the text encoder's peak learning
    rate when it trains; it follows the same warm-up and cosine. ``text_rows`` (with ``train_text_encoder=False``):
    train only these rows of the text encoder's token-embedding table (at ``text_encoder_lr``, no weight decay), the
    rest of it frozen: DreamBooth's way to give a word the base model never learnt a meaning without moving any
    other word. ``teacher_files``: rows of these ``file_name``s learn the starting UNet's own prediction (a frozen
    copy, on the starting text encoder's states) instead of the noise: prior preservation with an exact target.

    ``device`` ("cpu", "cuda", "cuda:1"...): where the step runs. On CPU the noise comes from a CPU generator; on an
    accelerator from one on that device, so a run is reproducible on the same kind of device, not across kinds.
    The returned modules are on the CPU."""
    from brushwork.train.init import Start

    if timesteps not in TIMESTEP_SAMPLING:
        raise ValueError(f"timesteps must be one of {TIMESTEP_SAMPLING} (got {timesteps!r})")
    start = time.monotonic()  # --max-minutes counts loading and latent caching too
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: this torch build sees no CUDA device")
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True  # TF32 tensor cores for the fp32 matmuls (cuDNN convs use them)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    data = load_imagefolder(data_dir)
    if init is None:
        init = Start.fresh(vae_dir, tokenizer_dir, text_encoder_dir, unet_config, text_config)
    elif vae_dir is not None or tokenizer_dir is not None or text_encoder_dir is not None:
        raise ValueError("init takes the VAE, tokenizer and text encoder from the model: pass none of them")
    tokenizer, vae, unet, te = init.tokenizer, init.vae.eval(), init.unet, init.text_encoder
    scale = float(vae.config.scaling_factor)
    mean, std = (t.to(dev) for t in _latent_cache(out_dir, data_dir, vae, data, dev))
    ids = tokenizer(data.texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids.to(dev)
    empty = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length,
                      return_tensors="pt").input_ids.to(dev)
    unet.to(dev)
    te.to(dev)
    te.requires_grad_(train_text_encoder)
    rows = _train_rows(te, text_rows) if text_rows else None
    if rows is not None and train_text_encoder:
        raise ValueError("text_rows trains part of a frozen text encoder: not with train_text_encoder")
    states = None if train_text_encoder or rows is not None else _text_states(te, torch.cat([ids, empty]))
    teacher, is_taught = None, None
    if teacher_files:  # copied before any checkpoint is loaded: the model this run started from
        is_taught = torch.tensor([f in teacher_files for f in data.files], device=dev)
        teacher = copy.deepcopy(unet).requires_grad_(False).eval()
        teacher_states = states if states is not None else _text_states(te, torch.cat([ids, empty]))
    sched = DDPMScheduler.from_config(init.scheduler_config)
    v_pred = sched.config.prediction_type == "v_prediction"
    groups = [{"params": list(unet.parameters()), "scale": 1.0}]
    if train_text_encoder:
        groups.append({"params": list(te.parameters()), "scale": (text_encoder_lr or lr) / lr})
    if rows is not None:  # no weight decay: AdamW would shrink every row of the table, trained or not
        groups.append({"params": [rows], "scale": (text_encoder_lr or lr) / lr, "weight_decay": 0.0})
    params = [p for g in groups for p in g["params"]]
    opt = torch.optim.AdamW(groups, lr=lr, weight_decay=0.01, fused=dev.type == "cuda" or None)
    modules = {"unet": unet, "text_encoder": te}
    emas = {"unet": EMA(unet), "text_encoder": EMA(te)}
    ckpt = out_dir / "checkpoint"
    step, losses, _ = load_checkpoint(ckpt, modules, emas, opt, device=dev)
    resumed_from, offset = step, init.step_offset
    alphas = sched.alphas_cumprod.to(dev)
    snr_all = alphas / (1 - alphas)
    probs = timestep_probs(snr_all, snr_gamma, snr_floor, v_pred) if timesteps == "weighted" else None
    bar = tqdm(total=steps, initial=step, desc="unet", disable=not progress)
    unet.train()
    te.train(train_text_encoder)
    while step < steps:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, lr, warmup, steps, final_lr_frac) * g["scale"]
        idx = torch.from_numpy(batch_indices(data.weights, seed, offset + step, batch)).to(dev)
        gen = torch.Generator(dev).manual_seed(seed * 1_000_003 + offset + step)
        lat = (mean[idx].float() + std[idx].float() * torch.randn(mean[idx].shape, generator=gen, device=dev)) * scale
        drop = torch.rand(batch, generator=gen, device=dev) < uncond_p
        noise = torch.randn(lat.shape, generator=gen, device=dev)
        if probs is None:
            t = torch.randint(0, sched.config.num_train_timesteps, (batch,), generator=gen, device=dev)
        else:
            t = torch.multinomial(probs, batch, replacement=True, generator=gen)  # probs is on dev (from snr_all)
        noisy = sched.add_noise(lat, noise, t)
        target = sched.get_velocity(lat, noise, t) if v_pred else noise
        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):  # weights, loss and optimizer stay fp32
            if states is None:
                tok = ids[idx].clone()
                tok[drop] = empty[0]
                cond = te(tok).last_hidden_state
            else:
                cond = states[torch.where(drop, len(ids), idx)].float()
            pred = unet(noisy, t, cond).sample.float()
            taught = is_taught[idx] if teacher is not None else None
            if taught is not None and bool(taught.any()):
                with torch.no_grad():
                    target = target.clone()
                    tcond = teacher_states[torch.where(drop, len(ids), idx)][taught].float()
                    target[taught] = teacher(noisy[taught], t[taught], tcond).sample.float()
        snr = snr_all[t]
        weight = loss_weight(snr, snr_gamma, snr_floor, v_pred) if probs is None else torch.ones_like(snr)
        loss = (weight * (pred - target).pow(2).mean(dim=(1, 2, 3))).mean()
        step = apply_update(loss, opt, params, modules, emas, step, losses, bar)
        stop = out_of_time(start, max_minutes)
        if step % ckpt_every == 0 or step == steps or stop:
            save_checkpoint(ckpt, step, modules, emas, opt, losses, {"step_offset": offset})
            weighting = "" if snr_gamma is None else f", min-SNR-{snr_gamma:g} " + (
                "sampled" if probs is not None else "weighted") + (f", floor {snr_floor:g}" if snr_floor else "")
            loss_curve(losses, out_dir / "unet_loss.png", f"UNet loss ({'v' if v_pred else 'ε'}-pred{weighting})")
        if stop and step < steps:
            bar.close()
            unet.to("cpu")
            te.to("cpu")
            return {"done": False, "step": step, "step_offset": offset, "resumed_from": resumed_from, "unet": unet,
                    "text_encoder": te}
    bar.close()
    for name, m in modules.items():
        emas[name].copy_to(m)
        m.eval().to("cpu")
    return {"done": True, "step": step, "step_offset": offset, "resumed_from": resumed_from, "unet": unet,
            "text_encoder": te,
            "tokenizer": tokenizer, "vae": vae, "scheduler_config": dict(init.scheduler_config)}


def _train_rows(te: CLIPTextModel, rows: list[int]) -> torch.nn.Parameter:
    """The token-embedding table of ``te``, trainable, its gradient kept to ``rows`` (every other row gets 0)."""
    table = te.get_input_embeddings().weight
    if min(rows) < 0 or max(rows) >= len(table):
        raise ValueError(f"text_rows must be rows of the {len(table)}-row token table (got {sorted(set(rows))})")
    mask = torch.zeros(len(table), 1, dtype=table.dtype, device=table.device)
    mask[sorted(set(rows))] = 1.0
    table.requires_grad_(True)
    table.register_hook(lambda grad: grad * mask)
    return table


@torch.no_grad()
def _text_states(te: CLIPTextModel, ids: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """``te``'s last hidden states for every row of ``ids`` (fp16; the rows repeat, so unique ones are encoded once)."""
    uniq, inverse = torch.unique(ids, dim=0, return_inverse=True)
    te.eval()
    out = torch.cat([te(uniq[i:i + batch]).last_hidden_state.half() for i in range(0, len(uniq), batch)])
    return out[inverse]
