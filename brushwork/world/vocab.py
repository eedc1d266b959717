"""The shapes world's vocabulary: shapes, colours, sizes, counts, regions and relations.

All geometry is in fractions of the canvas (width for x, height for y) so that every canvas
size means the same thing. The numbers here are the documentation: the renderer draws inside
these ranges and the judge decides with the thresholds beside them.
"""

from __future__ import annotations

# Shapes the default model learns, and shapes kept out of its training data entirely
# (the renderer and the judge know them; they are for teaching a new concept later).
TRAIN_SHAPES = ("circle", "square", "triangle", "star", "heart", "cross")
RESERVED_SHAPES = ("diamond", "crescent")
SHAPES = TRAIN_SHAPES + RESERVED_SHAPES
PLURALS = {s: s + "s" for s in SHAPES}
PLURALS["cross"] = "crosses"

# Named colours (sRGB). Pairwise distances are >= 90 so they survive JPEG and blur.
PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 40),
    "orange": (250, 140, 0),
    "yellow": (245, 225, 30),
    "green": (30, 160, 60),
    "cyan": (40, 210, 230),
    "blue": (30, 60, 210),
    "purple": (130, 40, 180),
    "pink": (250, 140, 200),
    "white": (245, 245, 245),
    "black": (20, 20, 20),
}
COLOURS = tuple(PALETTE)

# Object size: the side of the square box that holds the unrotated shape, as a fraction of the
# canvas side. "small" and "large" are named; the middle is never named in a prompt.
SIZE_RANGES = {"small": (0.20, 0.24), "medium": (0.29, 0.33), "large": (0.38, 0.42)}
SIZE_WORDS = {"small": "small", "tiny": "small", "little": "small", "large": "large", "big": "large"}
# The judge's size thresholds (midway between the ranges): below SMALL_MAX reads as small,
# above LARGE_MIN as large.
SMALL_MAX = 0.265
LARGE_MIN = 0.355

MAX_ROTATION_DEG = 10.0  # |rotation| <= 10 degrees: a square never reads as a diamond
MIN_GAP = 0.04  # minimum gap between objects' bounding boxes: objects never touch or overlap
EDGE_MARGIN = 0.03  # minimum distance from an object's bounding box to the canvas edge
MIN_OBJECT_AREA = 0.012  # the judge ignores blobs smaller than this fraction of the canvas

COUNT_WORDS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4}
NUMBER_NAMES = {1: "one", 2: "two", 3: "three", 4: "four"}
MAX_OBJECTS = 4

# Absolute regions: a centroid inside the judge's box counts; the renderer places centroids in
# the narrower "place" box so that a correct render is never near the judge's boundary.
# Each entry: (x_lo, x_hi, y_lo, y_hi) for the judge.
REGIONS: dict[str, tuple[float, float, float, float]] = {
    "left": (0.0, 0.40, 0.0, 1.0),
    "right": (0.60, 1.0, 0.0, 1.0),
    "top": (0.0, 1.0, 0.0, 0.40),
    "bottom": (0.0, 1.0, 0.60, 1.0),
    "center": (0.35, 0.65, 0.35, 0.65),
    "top left": (0.0, 0.40, 0.0, 0.40),
    "top right": (0.60, 1.0, 0.0, 0.40),
    "bottom left": (0.0, 0.40, 0.60, 1.0),
    "bottom right": (0.60, 1.0, 0.60, 1.0),
}
REGION_PLACE_MARGIN = 0.08  # renders keep centroids this far inside the judge's box
OPPOSITE_REGION = {
    "left": "right", "right": "left", "top": "bottom", "bottom": "top",
    "center": "top left", "top left": "bottom right", "bottom right": "top left",
    "top right": "bottom left", "bottom left": "top right",
}

# Relations compare centroids: "A above B" passes when A's centre is at least RELATION_MARGIN
# of the canvas higher than B's. Renders separate the two centres by >= RELATION_PLACE_MIN.
RELATIONS = ("above", "below", "left of", "right of")
RELATION_MARGIN = 0.05
RELATION_PLACE_MIN = 0.25
SWAPPED_RELATION = {"above": "below", "below": "above", "left of": "right of", "right of": "left of"}
