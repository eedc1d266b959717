"""Training specs and varied captions.

``random_spec`` draws a prompt-like spec with the mix of situations the benchmark measures
(single objects, two or three kinds, counting, relations, absolute positions, backgrounds).
``caption`` describes a rendered scene in one of many phrasings of the grammar; a caption may
leave out the colour, the size or the background, but it never says anything the image contradicts, and
every caption parses with ``grammar.parse``.
"""

from __future__ import annotations

import numpy as np

from brushwork.world import vocab
from brushwork.world.grammar import LEADS, Group, Spec, article
from brushwork.world.holdout import NO_HOLDOUT, Holdout
from brushwork.world.scene import Scene

CATEGORIES = ("single", "counting", "multi", "relation")
CATEGORY_WEIGHTS = (0.28, 0.2, 0.27, 0.25)
# How often a caption names an object's colour and the background. Short prompts ("a star", "two circles",
# "a square and a triangle") are common in use and in the benchmark, so they must be common in training too:
# captions that always named the colour left such prompts almost unseen (1.8 % of single-object captions).
P_NAME_COLOUR = 0.6
P_NAME_BACKGROUND = 0.6


def _choice(rng, seq):
    return seq[int(rng.integers(len(seq)))]


def _group(rng, shape, count, holdout, *, p_colour, p_size, bg_used: set[str]) -> Group:
    colour = None
    if rng.random() < p_colour:
        options = [c for c in vocab.COLOURS if holdout.allows(c, shape) and c not in bg_used]
        colour = _choice(rng, options)
    size = _choice(rng, ("small", "large")) if rng.random() < p_size else None
    return Group(shape=shape, count=count, exact=count > 1, colour=colour, size=size)


def random_spec(rng: np.random.Generator, holdout: Holdout = NO_HOLDOUT,
                shapes: tuple[str, ...] = vocab.TRAIN_SHAPES) -> Spec:
    """A random spec for training data; never names a held-out pair."""
    cat = CATEGORIES[int(rng.choice(len(CATEGORIES), p=CATEGORY_WEIGHTS))]
    background = _choice(rng, vocab.COLOURS) if rng.random() < 0.35 else None
    used = {background} if background else set()
    relation = None
    if cat == "single":
        g = _group(rng, _choice(rng, shapes), 1, holdout, p_colour=0.85, p_size=0.35, bg_used=used)
        if rng.random() < 0.3:
            g = Group(**{**g.__dict__, "region": _choice(rng, tuple(vocab.REGIONS))})
        groups = [g]
    elif cat == "counting":
        groups = [_group(rng, _choice(rng, shapes), int(rng.integers(2, 5)), holdout, p_colour=0.6, p_size=0.1, bg_used=used)]
    elif cat == "multi":
        k = 2 if rng.random() < 0.8 else 3
        counts = [1] * k
        if k == 2 and rng.random() < 0.3:
            counts[int(rng.integers(2))] = 2
        # distinct shapes, so that a number word in one group never counts another group's objects
        kinds = [shapes[i] for i in rng.choice(len(shapes), size=k, replace=False)]
        groups = [_group(rng, s, c, holdout, p_colour=0.8, p_size=0.12, bg_used=used) for s, c in zip(kinds, counts)]
    else:
        while True:
            a, b = _choice(rng, shapes), _choice(rng, shapes)
            relation = _choice(rng, vocab.RELATIONS)
            if holdout.allows_relation(a, relation, b):
                break
        groups = [_group(rng, s, 1, holdout, p_colour=0.8, p_size=0.1, bg_used=used) for s in (a, b)]
    return Spec(tuple(groups), relation, background)


# ------------------------------------------------------------------------- phrasing

_SIZE_WORDS = {"small": ("small", "small", "tiny", "little"), "large": ("large", "large", "big")}
_REGION_WORDS = {
    "left": ("on the left",), "right": ("on the right",), "top": ("at the top",), "bottom": ("at the bottom",),
    "center": ("in the center", "in the middle", "in the centre"),
}
_RELATION_WORDS = {
    "above": ("above",), "below": ("below", "under", "beneath"),
    "left of": ("to the left of", "left of", "on the left of"),
    "right of": ("to the right of", "right of", "on the right of"),
}


def _region_words(region: str, rng) -> str:
    if region in _REGION_WORDS:
        return _choice(rng, _REGION_WORDS[region])
    return f"{_choice(rng, ('in the', 'at the'))} {region}{_choice(rng, (' corner', ' corner', ''))}"


def _group_words(g: Group, rng, unique: bool) -> str:
    """``unique``: the scene holds no other object of this shape, so "one" is true."""
    size = _choice(rng, _SIZE_WORDS[g.size]) if g.size else None
    first = size or g.colour or g.shape
    if g.count == 1:
        words = ["one" if unique and rng.random() < 0.1 else ("an" if first[0] in "aeiou" else "a")]
    else:
        words = [vocab.NUMBER_NAMES[g.count]]
    words += [w for w in (size, g.colour) if w]
    words.append(vocab.PLURALS[g.shape] if g.count > 1 else g.shape)
    if g.region:
        words.append(_region_words(g.region, rng))
    return " ".join(words)


def caption(spec: Spec, scene: Scene, rng: np.random.Generator) -> str:
    """Describe ``scene`` (sampled from ``spec``) in a random phrasing of the grammar."""
    groups, k = [], 0
    for g in spec.groups:
        objs = scene.objects[k : k + g.count]
        k += g.count
        colours = {o.colour for o in objs}
        sizes = {o.size for o in objs}
        colour = g.colour or (next(iter(colours)) if len(colours) == 1 else None)
        if colour and rng.random() >= P_NAME_COLOUR:
            colour = None
        size = g.size if g.size and rng.random() < 0.85 else None
        if size is None and len(sizes) == 1 and next(iter(sizes)) != "medium" and rng.random() < 0.25:
            size = next(iter(sizes))
        groups.append(Group(g.shape, g.count, g.count > 1, colour, size, g.region))
    shape_count = {}
    for o in scene.objects:
        shape_count[o.shape] = shape_count.get(o.shape, 0) + 1

    def words(g: Group) -> str:
        return _group_words(g, rng, shape_count[g.shape] == 1)

    if spec.relation:
        a, b = groups
        rel = spec.relation
        if rng.random() < 0.5:
            a, b, rel = b, a, vocab.SWAPPED_RELATION[rel]
        body = f"{words(a)} {_choice(rng, _RELATION_WORDS[rel])} {words(b)}"
    else:
        order = [groups[i] for i in rng.permutation(len(groups))]
        parts = [words(g) for g in order]
        body = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + _choice(rng, (" and ", ", and ")) + parts[-1]
    text = body
    if rng.random() < (P_NAME_BACKGROUND if spec.background else P_NAME_BACKGROUND / 2):
        text += f" {_choice(rng, ('on', 'on', 'against', 'with'))} {article(scene.background)} {scene.background} background"
    if rng.random() < 0.2:
        lead = _choice(rng, LEADS[:5])
        text = f"{lead} {text}"
    if rng.random() < 0.15:
        text += "."
    return text
