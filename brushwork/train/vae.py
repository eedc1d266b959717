"""Train a small ``AutoencoderKL`` (the VAE) on an imagefolder dataset.

Crops keep the cost down: the autoencoder is convolutional, so it learns on ``crop``-pixel
patches and then encodes whole images. Loss: L1 + 0.1·MSE + ``kl_weight``·KL, each pixel's
reconstruction term weighted by ``1 + detail_weight`` on and next to objects (anything that is
not the flat background) and 1 elsewhere. Without it the loss is mostly background, and the
thin parts that tell a star or a cross from a blob are what the VAE learns last.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL
from tqdm.auto import tqdm

from brushwork.train.checkpoint import EMA, apply_update, load_checkpoint, out_of_time, save_checkpoint
from brushwork.train.data import batch_indices, load_imagefolder
from brushwork.train.plot import loss_curve

# Factor 4 (two downsamples), 4 latent channels, no attention in the middle block.
DEFAULT_VAE_CONFIG = dict(
    in_channels=3, out_channels=3, latent_channels=4, sample_size=64,
    down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
    block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=16, mid_block_add_attention=False,
)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def detail_mask(images: np.ndarray, tol: int = 12) -> np.ndarray:
    """1 where a pixel (or one of its 8 neighbours) differs from the image's background colour.

    The background is the median of the border pixels; ``images`` is N×H×W×3 uint8.
    """
    border = np.concatenate([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], axis=1)
    bg = np.median(border, axis=1)[:, None, None, :]
    fg = (np.abs(images.astype(np.int16) - bg).max(axis=3) > tol).astype(np.float32)
    return torch.nn.functional.max_pool2d(torch.from_numpy(fg)[:, None], 3, 1, 1)[:, 0].numpy()


def train_vae(data_dir, out_dir, *, steps: int = 1500, batch: int = 32, crop: int = 32, lr: float = 1e-3,
              kl_weight: float = 1e-6, detail_weight: float = 0.0, seed: int = 0, max_minutes: float | None = None,
              ckpt_every: int = 250,
              config: dict | None = None, progress: bool = True) -> Path:
    """Train (or resume) and write ``out_dir/vae`` (diffusers layout) when ``steps`` are done.

    Returns the folder of the finished VAE, or of the checkpoint if ``max_minutes`` ran out first.
    """
    start = time.monotonic()  # --max-minutes counts loading the images too
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    data = load_imagefolder(data_dir)
    images = data.load_images()
    vae = AutoencoderKL(**(config or DEFAULT_VAE_CONFIG))
    opt = torch.optim.AdamW(vae.parameters(), lr=lr, weight_decay=0.0)
    ema = EMA(vae, 0.999)
    ckpt = out_dir / "checkpoint"
    step, losses, _ = load_checkpoint(ckpt, {"vae": vae}, {"vae": ema}, opt)
    h, w = images.shape[1:3]
    bar = tqdm(total=steps, initial=step, desc="vae", disable=not progress)
    while step < steps:
        idx = batch_indices(data.weights, seed, step, batch)
        rng = np.random.default_rng([seed, step, 1])
        ys, xs = rng.integers(0, h - crop + 1, batch), rng.integers(0, w - crop + 1, batch)
        x = to_tensor(np.stack([images[i, y:y + crop, x_:x_ + crop] for i, y, x_ in zip(idx, ys, xs)]))
        pix_w = 1.0
        if detail_weight:
            m = detail_mask(images[idx])
            pix_w = 1.0 + detail_weight * torch.from_numpy(
                np.stack([m[k, y:y + crop, x_:x_ + crop] for k, (y, x_) in enumerate(zip(ys, xs))]))[:, None]
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        rec = vae.decode(z).sample
        err = rec - x
        loss = (pix_w * (err.abs() + 0.1 * err.pow(2))).mean() + kl_weight * post.kl().mean()
        step = apply_update(loss, opt, vae.parameters(), {"vae": vae}, {"vae": ema}, step, losses, bar)
        stop = out_of_time(start, max_minutes)
        if step % ckpt_every == 0 or step == steps or stop:
            save_checkpoint(ckpt, step, {"vae": vae}, {"vae": ema}, opt, losses)
            loss_curve(losses, out_dir / "vae_loss.png", "VAE loss")
        if stop and step < steps:
            bar.close()
            return ckpt
    bar.close()
    ema.copy_to(vae)
    vae.eval()
    vae.register_to_config(scaling_factor=latent_scale(vae, images[:512]))
    vae.save_pretrained(out_dir / "vae")
    return out_dir / "vae"


@torch.no_grad()
def latent_scale(vae: AutoencoderKL, images: np.ndarray) -> float:
    """1 / std of the latents of ``images``, as SD's ``scaling_factor``."""
    lat = torch.cat([vae.encode(to_tensor(images[i:i + 64])).latent_dist.mean for i in range(0, len(images), 64)])
    return float(1.0 / lat.std())


@torch.no_grad()
def encode_all(vae: AutoencoderKL, images: np.ndarray, batch: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Latent mean and std of every image (unscaled), as float16 CPU tensors; the VAE runs where its weights are."""
    means, stds = [], []
    for i in range(0, len(images), batch):
        d = vae.encode(to_tensor(images[i:i + batch]).to(vae.device)).latent_dist
        means.append(d.mean.half().cpu())
        stds.append(d.std.half().cpu())
    return torch.cat(means), torch.cat(stds)
