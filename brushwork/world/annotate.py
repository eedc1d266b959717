"""Draw what the judge detected, so that a person can check it."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from brushwork.world.judge import Verdict


def annotate(pixels: np.ndarray, verdict: Verdict, scale: int | None = None) -> Image.Image:
    h, w = pixels.shape[:2]
    scale = scale or max(1, 256 // max(h, w))
    img = Image.fromarray(np.asarray(pixels)[:, :, :3]).resize((w * scale, h * scale), Image.NEAREST)
    band = 14 * (2 + len(verdict.checks))
    canvas = Image.new("RGB", (max(img.width, 480), img.height + band), "white")
    canvas.paste(img, (0, 0))
    d = ImageDraw.Draw(canvas)
    for o in verdict.detection.objects if verdict.detection else []:
        x0, y0, x1, y1 = (v * scale for v in o.bbox)
        ok = o.shape != "unknown"
        d.rectangle([x0, y0, x1 - 1, y1 - 1], outline=(0, 200, 0) if ok else (255, 0, 0), width=2)
        cx, cy = o.centroid[0] * w * scale, o.centroid[1] * h * scale
        d.ellipse([cx - 2, cy - 2, cx + 2, cy + 2], fill=(255, 0, 255))
        d.text((x0 + 2, max(y0 - 12, 0)), f"{o.colour} {o.shape} {o.size_class}", fill=(0, 0, 0))
    y = img.height + 2
    bg = verdict.detection.background if verdict.detection else "?"
    d.text((4, y), f"{'PASS' if verdict.passed else 'FAIL'}  background: {bg}", fill=(0, 120, 0) if verdict.passed else (200, 0, 0))
    for c in verdict.checks:
        y += 14
        d.text((4, y), f"{'ok ' if c.passed else 'NO '} {c.name}: {c.target} ({c.detail})", fill=(0, 0, 0))
    return canvas
