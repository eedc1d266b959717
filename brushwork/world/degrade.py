"""Degradations that make a clean render look like a generated image (for judging the judge)."""

from __future__ import annotations

import cv2
import numpy as np

BLUR_SIGMA = 0.8  # pixels
JPEG_QUALITY = 30
COLOUR_SHIFT = (12, -10, 8)  # added to R, G, B


def blur(img: np.ndarray) -> np.ndarray:
    return cv2.GaussianBlur(img, (0, 0), BLUR_SIGMA)


def jpeg(img: np.ndarray) -> np.ndarray:
    ok, buf = cv2.imencode(".jpg", img[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    return cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1].copy()


def colour_shift(img: np.ndarray) -> np.ndarray:
    return np.clip(img.astype(np.int16) + np.array(COLOUR_SHIFT, np.int16), 0, 255).astype(np.uint8)


def half_scale(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(w // 2, 1), max(h // 2, 1)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


DEGRADATIONS = {"blur": blur, "jpeg30": jpeg, "colour_shift": colour_shift, "half_scale": half_scale}
