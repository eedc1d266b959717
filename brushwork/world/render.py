"""Render a ``Scene`` to pixels: deterministic, anti-aliased, with mild background variation."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from brushwork.world.scene import Scene, object_polygon

SUPERSAMPLE = 4
NOISE_SIGMA = 2.0  # per-pixel Gaussian noise on every channel, in 0–255 units


def render(scene: Scene) -> np.ndarray:
    """The scene as an ``(height, width, 3)`` uint8 array. Same scene, same bytes."""
    w, h = scene.width, scene.height
    xs = (np.arange(w, dtype=np.float32) + 0.5) / w - 0.5
    ys = (np.arange(h, dtype=np.float32) + 0.5) / h - 0.5
    shade = scene.gradient[0] * xs[None, :] + scene.gradient[1] * ys[:, None]
    img = np.empty((h, w, 3), np.float32)
    img[:] = np.asarray(scene.bg_rgb, np.float32)
    img += shade[:, :, None]
    for obj in scene.objects:
        pts = object_polygon(obj, w, h)
        x0, y0 = np.floor(pts.min(0)).astype(int)
        x1, y1 = np.ceil(pts.max(0)).astype(int) + 1
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
        if x1 <= x0 or y1 <= y0:
            continue
        mask = Image.new("L", ((x1 - x0) * SUPERSAMPLE, (y1 - y0) * SUPERSAMPLE), 0)
        local = (pts - [x0, y0]) * SUPERSAMPLE
        ImageDraw.Draw(mask).polygon([tuple(p) for p in local], fill=255)
        alpha = np.asarray(mask.reduce(SUPERSAMPLE), np.float32)[:, :, None] / 255.0
        region = img[y0:y1, x0:x1]
        region += (np.asarray(obj.rgb, np.float32) - region) * alpha
    noise = np.random.default_rng(scene.noise_seed).standard_normal(size=img.shape, dtype=np.float32)
    img += noise * NOISE_SIGMA
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def to_png_bytes(pixels: np.ndarray, compress_level: int = 1) -> bytes:
    """PNG bytes with no timestamps or other varying chunks."""
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()
