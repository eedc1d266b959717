"""Train a small CLIP (a text encoder and a ViT image encoder, contrastive loss) on an imagefolder dataset.

Stable Diffusion conditions its UNet on a *pretrained* CLIP text encoder and keeps it frozen. The shapes world has
no pretrained one, so the recipe trains its own first: ``transformers.CLIPModel`` with the recipe's 3-layer text
encoder and a 3-layer ViT on 64 px images (8 px patches), InfoNCE over the batch (``return_loss=True``). Its text
encoder, frozen, then conditions the UNet: prompts that differ give different conditioning from the UNet's first
step, and the UNet trains without the text encoder's forward and backward pass (``train.diffusion`` caches the
text states of every caption). The whole CLIP model is kept too (``out/clip``), for ranking and search.

Everything random at step ``s`` is seeded from ``(seed, s)``; checkpoints are those of ``train.checkpoint``.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import CLIPConfig, CLIPModel, CLIPTextModel, CLIPTokenizer

from brushwork.train.checkpoint import EMA, apply_update, load_checkpoint, out_of_time, save_checkpoint
from brushwork.train.data import batch_indices, load_imagefolder
from brushwork.train.plot import loss_curve
from brushwork.train.vae import to_tensor

DEFAULT_VISION_CONFIG = dict(image_size=64, patch_size=8, num_channels=3, hidden_size=128, intermediate_size=512,
                             num_hidden_layers=3, num_attention_heads=4, hidden_act="quick_gelu")


def make_clip(tokenizer: CLIPTokenizer, text_config: dict | None = None, vision_config: dict | None = None,
              projection_dim: int = 128) -> CLIPModel:
    from brushwork.train.diffusion import DEFAULT_TEXT_CONFIG

    text = {"vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id,
            **(text_config or DEFAULT_TEXT_CONFIG)}
    text.pop("projection_dim", None)
    cfg = CLIPConfig(text_config=text, vision_config=vision_config or DEFAULT_VISION_CONFIG,
                     projection_dim=projection_dim)
    return CLIPModel(cfg)


def text_encoder_of(clip: CLIPModel) -> CLIPTextModel:
    """The CLIP model's text tower as a ``CLIPTextModel`` (what a Stable Diffusion pipeline holds)."""
    te = CLIPTextModel(clip.config.text_config)
    te.load_state_dict(clip.text_model.state_dict())
    return te.eval()


@torch.no_grad()
def retrieval_top1(clip: CLIPModel, pixels: torch.Tensor, ids: torch.Tensor) -> float:
    """Share of images whose best-matching caption, among the batch's, is their own (in-batch top-1)."""
    clip.eval()
    logits = clip(input_ids=ids, pixel_values=pixels).logits_per_image
    return float((logits.argmax(dim=1) == torch.arange(len(ids))).float().mean())


def train_clip(data_dir, tokenizer_dir, out_dir, *, steps: int = 1500, batch: int = 256, lr: float = 1e-3,
               warmup: int = 100, seed: int = 0, max_minutes: float | None = None, ckpt_every: int = 250,
               progress: bool = True, log=print) -> dict:
    """Train (or resume). When ``steps`` are done, writes ``out_dir/clip`` (the ``CLIPModel``) and
    ``out_dir/text_encoder`` (its text tower, EMA weights) and returns {"done": True, "top1": ...}, the in-batch
    top-1 of 256 held-back draws; {"done": False, "step": s} when ``max_minutes`` ran out first."""
    from brushwork.train.diffusion import lr_at

    start = time.monotonic()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    data = load_imagefolder(data_dir)
    images = data.load_images()
    tokenizer = CLIPTokenizer.from_pretrained(str(tokenizer_dir))
    # padded to the longest caption, not to 77: the text encoder is causal and pools at the first end token, so
    # the states it is trained on are those it gives when padded to 77 (as the UNet and the engine pad)
    ids = tokenizer(data.texts, padding="longest", max_length=tokenizer.model_max_length, truncation=True,
                    return_tensors="pt").input_ids
    clip = make_clip(tokenizer)
    opt = torch.optim.AdamW(clip.parameters(), lr=lr, weight_decay=0.1)
    ema = EMA(clip, 0.998)
    ckpt = out_dir / "checkpoint"
    step, losses, _ = load_checkpoint(ckpt, {"clip": clip}, {"clip": ema}, opt)
    bar = tqdm(total=steps, initial=step, desc="clip", disable=not progress)
    clip.train()
    while step < steps:
        for g in opt.param_groups:
            g["lr"] = lr_at(step, lr, warmup, steps, 0.1)
        idx = batch_indices(data.weights, seed, step, batch)
        loss = clip(input_ids=ids[idx], pixel_values=to_tensor(images[idx]), return_loss=True).loss
        step = apply_update(loss, opt, clip.parameters(), {"clip": clip}, {"clip": ema}, step, losses, bar, digits=3)
        stop = out_of_time(start, max_minutes)
        if step % ckpt_every == 0 or step == steps or stop:
            save_checkpoint(ckpt, step, {"clip": clip}, {"clip": ema}, opt, losses)
            loss_curve(losses, out_dir / "clip_loss.png", "CLIP loss (InfoNCE)")
        if stop and step < steps:
            bar.close()
            return {"done": False, "step": step}
    bar.close()
    ema.copy_to(clip)
    held = batch_indices(data.weights, seed + 1, 10**9, 256)  # a draw no training step made
    top1 = retrieval_top1(clip, to_tensor(images[held]), ids[held])
    log(f"clip: in-batch top-1 {top1:.3f} on 256 draws")
    clip.save_pretrained(out_dir / "clip", safe_serialization=True)
    tokenizer.save_pretrained(out_dir / "clip")
    text_encoder_of(clip).save_pretrained(out_dir / "text_encoder", safe_serialization=True)
    return {"done": True, "step": step, "top1": top1}
