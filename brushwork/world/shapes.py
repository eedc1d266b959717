"""Shape geometry: each shape is a polygon in a unit box, shared by the renderer and the judge.

Every outline is normalised so that its bounding box is centred on the origin and its longer
side is 1. An object of size ``s`` (a fraction of the canvas side) is this outline scaled by
``s`` times the canvas side, rotated by a small angle and moved to its centre. Coordinates are
image coordinates: x to the right, y down, so "up" is negative y.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np


def _regular(n: int, start_deg: float = -90.0) -> np.ndarray:
    t = np.deg2rad(start_deg) + np.arange(n) * 2 * np.pi / n
    return np.stack([np.cos(t), np.sin(t)], axis=1) * 0.5


def _star(points: int = 5, inner: float = 0.46) -> np.ndarray:
    t = np.deg2rad(-90.0) + np.arange(2 * points) * np.pi / points
    r = np.where(np.arange(2 * points) % 2 == 0, 0.5, 0.5 * inner)
    return np.stack([np.cos(t) * r, np.sin(t) * r], axis=1)


def _heart(n: int = 96) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    x = 16 * np.sin(t) ** 3
    y = -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))
    return np.stack([x, y], axis=1)


def _cross(arm: float = 0.36) -> np.ndarray:
    a, h = arm / 2, 0.5
    return np.array(
        [(-a, -h), (a, -h), (a, -a), (h, -a), (h, a), (a, a), (a, h), (-a, h), (-a, a), (-h, a), (-h, -a), (-a, -a)]
    )


def _crescent(n: int = 48, offset: float = 0.2, inner_r: float = 0.42) -> np.ndarray:
    # Outer circle radius 0.5 at the origin minus an inner circle shifted right: horns point right.
    xi = (0.25 - inner_r**2 + offset**2) / (2 * offset)
    yi = np.sqrt(0.25 - xi**2)
    a0 = np.arctan2(yi, xi)
    outer_t = np.linspace(a0, 2 * np.pi - a0, n)
    outer = np.stack([np.cos(outer_t), np.sin(outer_t)], axis=1) * 0.5
    b0 = np.arctan2(yi, xi - offset)
    inner_t = np.linspace(2 * np.pi - b0, b0, n)
    inner = np.stack([offset + inner_r * np.cos(inner_t), inner_r * np.sin(inner_t)], axis=1)
    return np.concatenate([outer, inner[1:-1]])


_BUILDERS = {
    "circle": lambda: _regular(96),
    "square": lambda: np.array([(-0.5, -0.5), (0.5, -0.5), (0.5, 0.5), (-0.5, 0.5)]),
    "triangle": lambda: _regular(3),
    "star": _star,
    "heart": _heart,
    "cross": _cross,
    "diamond": lambda: np.array([(0.0, -0.5), (0.36, 0.0), (0.0, 0.5), (-0.36, 0.0)]),
    "crescent": _crescent,
}


@lru_cache(maxsize=None)
def outline(shape: str) -> np.ndarray:
    """The shape's polygon, bounding box centred on the origin, longer side 1 (read-only)."""
    pts = np.asarray(_BUILDERS[shape](), dtype=np.float64)
    lo, hi = pts.min(0), pts.max(0)
    pts = (pts - (lo + hi) / 2) / (hi - lo).max()
    pts.setflags(write=False)
    return pts


def polygon_area(pts: np.ndarray) -> float:
    x, y = pts[:, 0], pts[:, 1]
    return float(abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2)


@lru_cache(maxsize=None)
def fill_ratio(shape: str) -> float:
    """Area of the unit outline: an object of side ``s`` px covers ``fill_ratio * s**2`` px."""
    return polygon_area(outline(shape))


@lru_cache(maxsize=None)
def unit_centroid(shape: str) -> tuple[float, float]:
    """Area centroid of the unit outline (not the box centre: a triangle's sits low)."""
    pts = outline(shape)
    x, y = pts[:, 0], pts[:, 1]
    cross = x * np.roll(y, -1) - np.roll(x, -1) * y
    a = cross.sum() / 2
    return float(((x + np.roll(x, -1)) * cross).sum() / (6 * a)), float(((y + np.roll(y, -1)) * cross).sum() / (6 * a))


def _rotation(rotation_deg: float) -> np.ndarray:
    t = np.deg2rad(rotation_deg)
    return np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])


@lru_cache(maxsize=4096)
def centred_extent(shape: str, rotation_deg: float) -> tuple[float, float, float, float]:
    """Bounding box (x0, y0, x1, y1) of the rotated unit outline around its area centroid."""
    pts = (outline(shape) - unit_centroid(shape)) @ _rotation(rotation_deg).T
    return (*pts.min(0), *pts.max(0))


def placed_at_centroid(shape: str, size_px: float, rotation_deg: float, cx: float, cy: float) -> np.ndarray:
    """Like ``placed`` but with the shape's area centroid (not its box centre) at (cx, cy)."""
    return (outline(shape) - unit_centroid(shape)) * size_px @ _rotation(rotation_deg).T + np.array([cx, cy])


def placed(shape: str, size_px: float, rotation_deg: float, cx: float, cy: float) -> np.ndarray:
    """The outline scaled to ``size_px``, rotated (clockwise on screen) and centred at (cx, cy)."""
    return outline(shape) * size_px @ _rotation(rotation_deg).T + np.array([cx, cy])
