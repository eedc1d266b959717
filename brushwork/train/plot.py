"""A loss-curve PNG drawn with Pillow (no plotting library needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def loss_curve(losses: list[float], path: str | Path, title: str = "loss", smooth: int = 50) -> Path:
    w, h, pad = 640, 360, 40
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    d.text((pad, 10), f"{title}  (steps: {len(losses)}, last {smooth}-step mean: "
           f"{np.mean(losses[-smooth:]) if losses else float('nan'):.4f})", fill="black")
    d.rectangle([pad, pad, w - pad, h - pad], outline="gray")
    if len(losses) >= 2:
        y = np.log10(np.maximum(np.asarray(losses, np.float64), 1e-8))
        k = max(1, min(smooth, len(y) // 10))
        ys = np.convolve(y, np.ones(k) / k, mode="valid")
        lo, hi = float(ys.min()), float(ys.max()) or 1.0
        hi = hi if hi > lo else lo + 1
        xs = np.linspace(pad, w - pad, len(ys))
        pts = [(float(x), float(h - pad - (v - lo) / (hi - lo) * (h - 2 * pad))) for x, v in zip(xs, ys)]
        d.line(pts, fill=(200, 40, 40), width=2)
        d.text((4, pad), f"{10**hi:.3g}", fill="black")
        d.text((4, h - pad - 10), f"{10**lo:.3g}", fill="black")
    path = Path(path)
    img.save(path)
    return path
