"""Scenes: concrete objects on a background, sampled from a ``Spec`` and a seed.

A ``Scene`` fixes every number the renderer needs (colours after jitter, sizes, centres,
rotations, the background gradient and the noise seed), so ``render(scene)`` involves no
randomness. ``sample_scene(spec, seed)`` fills in whatever the spec leaves open.

Placement policy (fractions of the canvas side; see ``vocab``): objects' bounding boxes keep a
gap of ``MIN_GAP`` between them and ``EDGE_MARGIN`` from the edges, so objects never overlap or
touch; a centre is the shape's area centroid, which is what the judge measures.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from brushwork.errors import PromptError
from brushwork.world import vocab
from brushwork.world.grammar import Group, Spec
from brushwork.world.holdout import NO_HOLDOUT, Holdout
from brushwork.world.shapes import centred_extent, placed_at_centroid

GRADIENT_MAX = 16.0  # peak-to-peak brightness change of the background across the canvas
COLOUR_JITTER = 10  # each channel of an object's colour moves by at most this much
BG_JITTER = 6


@dataclass
class Obj:
    shape: str
    colour: str
    size: str  # "small" | "medium" | "large"
    scale: float  # side of the unrotated shape's box, as a fraction of min(width, height)
    cx: float  # area centroid, fraction of width
    cy: float  # area centroid, fraction of height
    rotation: float  # degrees, |rotation| <= MAX_ROTATION_DEG
    rgb: tuple[int, int, int]


@dataclass
class Scene:
    width: int
    height: int
    background: str
    bg_rgb: tuple[int, int, int]
    gradient: tuple[float, float]  # brightness change across the full width / height
    noise_seed: int
    objects: list[Obj] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Scene":
        d = dict(d)
        d["objects"] = [Obj(**{**o, "rgb": tuple(o["rgb"])}) for o in d.get("objects", [])]
        d["bg_rgb"] = tuple(d["bg_rgb"])
        d["gradient"] = tuple(d["gradient"])
        return cls(**d)


def _jitter(rgb, amount, rng) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.integers(-amount, amount + 1), 0, 255)) for c in rgb)


def object_bbox(o: Obj, width: int, height: int) -> tuple[float, float, float, float]:
    """Pixel bounding box (x0, y0, x1, y1) of an object's outline."""
    pts = object_polygon(o, width, height)
    return (*pts.min(0), *pts.max(0))


def object_polygon(o: Obj, width: int, height: int) -> np.ndarray:
    return placed_at_centroid(o.shape, o.scale * min(width, height), o.rotation, o.cx * width, o.cy * height)


def _pick_colour(shape: str, exclude: set[str], holdout: Holdout, rng) -> str:
    options = [c for c in vocab.COLOURS if c not in exclude and holdout.allows(c, shape)]
    if not options:
        raise PromptError(f"no colour left for a {shape} on this background")
    return options[rng.integers(len(options))]


def _pick_size(n_objects: int, rng) -> str:
    weights = {1: (1, 1, 1), 2: (1, 1, 1), 3: (2, 2, 1), 4: (3, 2, 1)}[min(n_objects, 4)]
    p = np.array(weights, float) / sum(weights)
    return ("small", "medium", "large")[rng.choice(3, p=p)]


def _region_box(region: str | None) -> tuple[float, float, float, float]:
    if region is None:
        return (0.0, 1.0, 0.0, 1.0)
    x0, x1, y0, y1 = vocab.REGIONS[region]
    m = vocab.REGION_PLACE_MARGIN
    # shrink only the sides that border another region
    return (x0 + (m if x0 > 0 else 0), x1 - (m if x1 < 1 else 0), y0 + (m if y0 > 0 else 0), y1 - (m if y1 < 1 else 0))


def _relation_ok(a: Obj, b: Obj, relation: str) -> bool:
    dx, dy = b.cx - a.cx, b.cy - a.cy
    main, other = {"above": (dy, dx), "below": (-dy, dx), "left of": (dx, dy), "right of": (-dx, dy)}[relation]
    return main >= vocab.RELATION_PLACE_MIN and abs(other) <= main


def _cells(n: int, width: int, height: int, rng) -> list[tuple[float, float, float, float]]:
    """Pixel boxes of a grid with at least ``n`` cells, in random order."""
    cols, rows = ((2, 1) if rng.random() < 0.5 else (1, 2)) if n <= 2 else (2, 2)
    cells = [(c * width / cols, (c + 1) * width / cols, r * height / rows, (r + 1) * height / rows)
             for r in range(rows) for c in range(cols)]
    return [cells[i] for i in rng.permutation(len(cells))]


def sample_scene(
    spec: Spec,
    seed: int,
    *,
    width: int = 64,
    height: int | None = None,
    holdout: Holdout = NO_HOLDOUT,
    max_tries: int = 400,
) -> Scene:
    """Draw a concrete scene satisfying ``spec``; deterministic in ``seed``.

    With a ``holdout``, every object (named or not) avoids the held-out colour–shape pairs; a
    spec that names one is refused.
    """
    height = height or width
    rng = np.random.default_rng(seed)
    named = {g.colour for g in spec.groups if g.colour}
    for g in spec.groups:
        if g.colour and not holdout.allows(g.colour, g.shape):
            raise PromptError(f"'{g.colour} {g.shape}' is held out")
    if spec.relation and not holdout.allows_relation(spec.groups[0].shape, spec.relation, spec.groups[1].shape):
        raise PromptError("that relation is held out")
    if spec.background:
        background = spec.background
    else:
        bg_options = [c for c in vocab.COLOURS if c not in named]
        background = bg_options[rng.integers(len(bg_options))]
    side = min(width, height)
    n = spec.n_objects
    # Attributes first (they do not depend on placement), so retries only move objects.
    proto: list[tuple[Group, Obj]] = []
    for g in spec.groups:
        group_colour = None
        if g.colour is None and rng.random() < 0.7:
            group_colour = _pick_colour(g.shape, {background}, holdout, rng)
        for _ in range(g.count):
            colour = g.colour or group_colour or _pick_colour(g.shape, {background}, holdout, rng)
            size = g.size or _pick_size(n, rng)
            rot = 0.0 if g.shape == "circle" else float(rng.uniform(-vocab.MAX_ROTATION_DEG, vocab.MAX_ROTATION_DEG))
            rgb = _jitter(vocab.PALETTE[colour], COLOUR_JITTER, rng)
            proto.append((g, Obj(g.shape, colour, size, 0.0, 0.5, 0.5, rot, rgb)))
    gap = vocab.MIN_GAP * side
    edge = vocab.EDGE_MARGIN * side
    for attempt in range(max_tries):
        # Three phases: free placement; one object per cell of a 2x2 (or 1x2) grid; the grid
        # again with unnamed sizes a step smaller and rotations damped, for crowded scenes.
        phase = 0 if attempt < 0.4 * max_tries else (1 if attempt < 0.7 * max_tries else 2)
        cells = _cells(n, width, height, rng) if phase else None
        objs, boxes = [], []
        for k, (g, o) in enumerate(proto):
            size = o.size
            if phase == 2 and g.size is None:
                size = {"large": "medium", "medium": "small"}.get(size, size)
            rot = o.rotation * (0.3 if phase == 2 else 1.0)
            lo, hi = vocab.SIZE_RANGES[size]
            scale = float(rng.uniform(lo, hi))
            obj = Obj(o.shape, o.colour, size, scale, 0.5, 0.5, rot, o.rgb)
            mnx, mny, mxx, mxy = (v * scale * side for v in centred_extent(o.shape, rot))
            rx0, rx1, ry0, ry1 = _region_box(g.region)
            xlo, xhi = max(rx0 * width, edge - mnx), min(rx1 * width, width - edge - mxx)
            ylo, yhi = max(ry0 * height, edge - mny), min(ry1 * height, height - edge - mxy)
            if cells is not None:
                cx0, cx1, cy0, cy1 = cells[k]
                xlo, xhi = max(xlo, cx0 + gap / 2 - mnx), min(xhi, cx1 - gap / 2 - mxx)
                ylo, yhi = max(ylo, cy0 + gap / 2 - mny), min(yhi, cy1 - gap / 2 - mxy)
            if xlo > xhi or ylo > yhi:
                break
            x, y = rng.uniform(xlo, xhi), rng.uniform(ylo, yhi)
            box = (x + mnx - gap / 2, y + mny - gap / 2, x + mxx + gap / 2, y + mxy + gap / 2)
            if any(box[0] < b[2] and b[0] < box[2] and box[1] < b[3] and b[1] < box[3] for b in boxes):
                break
            obj.cx, obj.cy = float(x / width), float(y / height)
            objs.append(obj)
            boxes.append(box)
        else:
            if spec.relation and not _relation_ok(objs[0], objs[1], spec.relation):
                continue
            return Scene(
                width, height, background, _jitter(vocab.PALETTE[background], BG_JITTER, rng),
                tuple(float(v) for v in rng.uniform(-GRADIENT_MAX / 2, GRADIENT_MAX / 2, size=2)),
                int(rng.integers(2**31)), objs,
            )
    raise PromptError(f"cannot place {n} objects as asked on a {width}x{height} canvas")
