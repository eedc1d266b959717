"""Find the objects in an image from pixels alone: background, colour, shape, size, place.

1. The background is a plane (per channel) fitted to the border pixels, refitted without the
   outliers; its colour is the nearest palette colour.
2. Foreground is every pixel far enough from that plane (less than half the distance from the
   background colour to its nearest palette neighbour); connected components of it larger
   than ``MIN_OBJECT_AREA`` of the canvas are objects.
3. An object's colour is the nearest palette colour to the median of its most
   foreground-like pixels; its soft mask (how far each pixel moved from background towards
   the object colour) gives area and centroid.
4. Its shape is the best template match: the soft mask is normalised for position and area
   and compared, by soft IoU, with every shape outline at rotations of -15°..15°. A best
   score below ``MIN_SHAPE_SCORE`` reads as "unknown", which matches no prompt.
5. Its size is the side of the shape's box implied by its area (area / fill ratio).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache

import cv2
import numpy as np

from brushwork.world import vocab
from brushwork.world.shapes import fill_ratio, placed_at_centroid

FRAME = 40  # side of the normalised frame shapes are compared in
FRAME_AREA = 0.22 * FRAME * FRAME  # every mask is scaled to this area before comparison
ROTATIONS = tuple(range(-15, 16, 5))
MIN_SHAPE_SCORE = 0.62
_PAL_NAMES = list(vocab.PALETTE)
_PAL = np.array([vocab.PALETTE[c] for c in _PAL_NAMES], np.float32)
_PAL_DIST = np.linalg.norm(_PAL[:, None] - _PAL[None], axis=2) + np.eye(len(_PAL)) * 1e9


@dataclass
class Detected:
    shape: str  # a shape name or "unknown"
    shape_score: float
    colour: str
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 in pixels (x1, y1 exclusive)
    centroid: tuple[float, float]  # fractions of width and height
    size: float  # box side as a fraction of min(width, height)
    size_class: str  # small | medium | large
    area: float  # pixels (soft)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["centroid"] = [round(v, 4) for v in self.centroid]
        d["size"], d["shape_score"], d["area"] = round(self.size, 4), round(self.shape_score, 3), round(self.area, 1)
        return d


@dataclass
class Detection:
    width: int
    height: int
    background: str
    objects: list[Detected]

    def to_dict(self) -> dict:
        return {"width": self.width, "height": self.height, "background": self.background,
                "objects": [o.to_dict() for o in self.objects]}


def nearest_colour(rgb) -> str:
    return _PAL_NAMES[int(np.argmin(np.linalg.norm(_PAL - np.asarray(rgb, np.float32), axis=1)))]


def size_class(size: float) -> str:
    return "small" if size < vocab.SMALL_MAX else ("large" if size > vocab.LARGE_MIN else "medium")


@lru_cache(maxsize=None)
def _templates() -> tuple[list[str], np.ndarray]:
    """Soft masks of every shape at every rotation, area FRAME_AREA, centroid at the centre."""
    names, masks = [], []
    ss = 4
    for shape in vocab.SHAPES:
        size = np.sqrt(FRAME_AREA / fill_ratio(shape))
        for rot in ROTATIONS:
            pts = placed_at_centroid(shape, size * ss, rot, FRAME * ss / 2, FRAME * ss / 2)
            img = np.zeros((FRAME * ss, FRAME * ss), np.uint8)
            cv2.fillPoly(img, [np.round(pts * 16).astype(np.int32)], 255, lineType=cv2.LINE_AA, shift=4)
            m = cv2.resize(img, (FRAME, FRAME), interpolation=cv2.INTER_AREA).astype(np.float32) / 255
            names.append(shape)
            masks.append(m.ravel())
    return names, np.stack(masks)


# x^T W y with W = M^T diag(1, c, c) M, M = RGB -> YCbCr: luma counts fully, chroma by c = 0.03
# (chosen on the benchmark, 3 seeds x 4 renders at 64 px: JPEG q30 accuracy 92.5% with c = 0.3, 96.1% with
# c = 0.03; chroma-only contrast still works, since the projection divides by the same weighted norm).
_YCC = np.array([[0.299, 0.587, 0.114], [-0.1687, -0.3313, 0.5], [0.5, -0.4187, -0.0813]], np.float32)
_WEIGHT = _YCC.T @ np.diag([1.0, 0.03, 0.03]).astype(np.float32) @ _YCC


def _components(fg: np.ndarray) -> tuple[np.ndarray, int]:
    """Connected components that a one-pixel bridge (codec ringing) does not join.

    Components are found on the mask after a 3x3 opening; the pixels the opening removed go to
    the nearest component (or form their own, if nothing survived there).
    """
    opened = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    n, labels = cv2.connectedComponents(opened, connectivity=8)
    rest = (fg > 0) & (labels == 0)
    if n > 1 and rest.any():
        _, nearest = cv2.distanceTransformWithLabels((labels == 0).astype(np.uint8), cv2.DIST_L2, 3,
                                                     labelType=cv2.DIST_LABEL_PIXEL)
        ys, xs = np.nonzero(labels)
        lut = np.zeros(nearest.max() + 1, np.int32)
        lut[nearest[ys, xs]] = labels[ys, xs]
        labels = np.where(rest, lut[nearest], labels)
    if (rest := (fg > 0) & (labels == 0)).any():  # thin things the opening erased entirely
        m, extra = cv2.connectedComponents(rest.astype(np.uint8), connectivity=8)
        labels = np.where(extra > 0, extra + n - 1, labels)
        n += m - 1
    return labels.astype(np.int32), n


def _stats(labels: np.ndarray, n: int) -> np.ndarray:
    """x, y, w, h, area per label (as cv2.connectedComponentsWithStats)."""
    stats = np.zeros((n, 5), np.int64)
    for i in range(1, n):
        ys, xs = np.nonzero(labels == i)
        if len(xs):
            stats[i] = (xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1, len(xs))
    return stats


def _fit_background(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w, _ = img.shape
    b = max(1, min(h, w) // 32)
    yy, xx = np.mgrid[0:h, 0:w]
    border = np.zeros((h, w), bool)
    border[:b], border[-b:], border[:, :b], border[:, -b:] = True, True, True, True
    ys, xs = yy[border], xx[border]
    A = np.stack([np.ones_like(xs), xs / w - 0.5, ys / h - 0.5], 1).astype(np.float32)
    v = img[border]
    keep = np.ones(len(v), bool)
    for _ in range(2):
        coef, *_ = np.linalg.lstsq(A[keep], v[keep], rcond=None)
        resid = np.linalg.norm(A @ coef - v, axis=1)
        keep = resid < max(20.0, float(np.median(resid) * 3))
        if keep.sum() < 8:
            keep[:] = True
            coef = np.median(v, axis=0, keepdims=True) * np.array([[1], [0], [0]])
            break
    X = (np.arange(w, dtype=np.float32) + 0.0) / w - 0.5
    Y = (np.arange(h, dtype=np.float32) + 0.0) / h - 0.5
    plane = coef[0][None, None] + X[None, :, None] * coef[1][None, None] + Y[:, None, None] * coef[2][None, None]
    return plane.astype(np.float32), coef[0]


def detect(pixels: np.ndarray) -> Detection:
    """Detect objects in an ``(h, w, 3)`` uint8 RGB array (an alpha channel is ignored)."""
    img = np.asarray(pixels)[:, :, :3].astype(np.float32)
    h, w, _ = img.shape
    plane, bg_mean = _fit_background(img)
    bg_name = nearest_colour(bg_mean)
    bg_idx = _PAL_NAMES.index(bg_name)
    thresh = float(np.clip(0.45 * _PAL_DIST[bg_idx].min(), 30.0, 70.0))
    diff = img - plane
    dist = np.linalg.norm(diff, axis=2)
    fg = (dist > thresh).astype(np.uint8)
    labels, n = _components(fg)
    stats = _stats(labels, n)
    side = min(h, w)
    min_area = vocab.MIN_OBJECT_AREA * h * w
    names, tmpl = _templates()
    objects = []
    for i in range(1, n):
        x, y, bw, bh, area = stats[i]
        if area < min_area:
            continue
        x0, y0, x1, y1 = max(x - 1, 0), max(y - 1, 0), min(x + bw + 1, w), min(y + bh + 1, h)
        lab = labels[y0:y1, x0:x1] == i
        d = dist[y0:y1, x0:x1]
        core = d[lab] >= np.percentile(d[lab], 60)
        rgb = np.median(img[y0:y1, x0:x1][lab][core], axis=0)
        colour = nearest_colour(rgb)
        # soft mask: projection of each pixel's move away from the background onto the object
        # colour, in a luma-weighted space (lossy codecs and upscalers blur chroma, not luma)
        obj_vec = rgb - plane[(y0 + y1) // 2, (x0 + x1) // 2]
        wvec = _WEIGHT @ obj_vec
        norm2 = float(obj_vec @ wvec) or 1.0
        near = cv2.dilate(lab.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        alpha = np.clip((diff[y0:y1, x0:x1] @ wvec) / norm2, 0, 1) * near
        soft_area = float(alpha.sum())
        if soft_area < min_area * 0.5:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        cx, cy = float((alpha * (xx + 0.5)).sum() / soft_area), float((alpha * (yy + 0.5)).sum() / soft_area)
        k = np.sqrt(FRAME_AREA / soft_area)
        M = np.array([[k, 0, FRAME / 2 - k * (cx - x0)], [0, k, FRAME / 2 - k * (cy - y0)]], np.float32)
        norm = cv2.warpAffine(alpha.astype(np.float32), M, (FRAME, FRAME), flags=cv2.INTER_LINEAR).ravel()
        inter = np.minimum(tmpl, norm).sum(1)
        union = np.maximum(tmpl, norm).sum(1)
        scores = inter / np.maximum(union, 1e-6)
        best = int(np.argmax(scores))
        score = float(scores[best])
        shape = names[best] if score >= MIN_SHAPE_SCORE else "unknown"
        size = float(np.sqrt(soft_area / fill_ratio(names[best])) / side)
        objects.append(Detected(shape, score, colour, (int(x), int(y), int(x + bw), int(y + bh)),
                                (cx / w, cy / h), size, size_class(size), soft_area))
    return Detection(w, h, bg_name, objects)
