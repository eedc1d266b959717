"""Negative renders: images that violate exactly one attribute a prompt names (plus blanks and noise).

``negative(spec, kind, seed, size)`` returns an image for the prompt ``spec`` that must *fail*
the judge, or ``None`` when the prompt names nothing that kind can violate.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from brushwork.world import vocab
from brushwork.world.grammar import Spec
from brushwork.world.render import render
from brushwork.world.scene import Scene, sample_scene

KINDS = ("wrong_shape", "wrong_colour", "wrong_count", "swapped_relation", "wrong_region",
         "wrong_size", "wrong_background", "blank", "noise")


def _pick(rng, options):
    return options[int(rng.integers(len(options)))] if options else None


def violated_spec(spec: Spec, kind: str, rng: np.random.Generator) -> Spec | None:
    groups = list(spec.groups)
    idx = list(range(len(groups)))
    if kind == "wrong_shape":
        k = _pick(rng, idx)
        others = {g.shape for g in groups}
        groups[k] = replace(groups[k], shape=_pick(rng, [s for s in vocab.SHAPES if s not in others]))
    elif kind == "wrong_colour":
        k = _pick(rng, [i for i in idx if groups[i].colour])
        if k is None:
            return None
        used = {g.colour for g in groups} | {spec.background}
        groups[k] = replace(groups[k], colour=_pick(rng, [c for c in vocab.COLOURS if c not in used]))
    elif kind == "wrong_count":
        k = _pick(rng, [i for i in idx if groups[i].exact])
        if k is None:
            return None
        n = groups[k].count
        new = n + 1 if spec.n_objects < vocab.MAX_OBJECTS else n - 1
        if new == 0:
            groups.pop(k)
            if not groups:
                return None
        else:
            groups[k] = replace(groups[k], count=new)
    elif kind == "swapped_relation":
        if not spec.relation:
            return None
        a, b = spec.groups
        if a.shape == b.shape and not (a.colour and b.colour and a.colour != b.colour):
            return None  # "a star above a star": swapping the two changes nothing
        return replace(spec, relation=vocab.SWAPPED_RELATION[spec.relation])
    elif kind == "wrong_region":
        k = _pick(rng, [i for i in idx if groups[i].region])
        if k is None:
            return None
        groups[k] = replace(groups[k], region=vocab.OPPOSITE_REGION[groups[k].region])
    elif kind == "wrong_size":
        k = _pick(rng, [i for i in idx if groups[i].size])
        if k is None:
            return None
        groups[k] = replace(groups[k], size={"small": "large", "large": "small"}[groups[k].size])
    elif kind == "wrong_background":
        if not spec.background:
            return None
        used = {g.colour for g in groups} | {spec.background}
        return replace(spec, background=_pick(rng, [c for c in vocab.COLOURS if c not in used]))
    else:
        raise ValueError(kind)
    return replace(spec, groups=tuple(groups))


def negative(spec: Spec, kind: str, seed: int, size: int = 64) -> np.ndarray | None:
    rng = np.random.default_rng([seed, KINDS.index(kind)])
    if kind == "noise":
        return rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
    if kind == "blank":
        scene = sample_scene(spec, seed, width=size)
        return render(Scene(**{**scene.__dict__, "objects": []}))
    bad = violated_spec(spec, kind, rng)
    if bad is None:
        return None
    return render(sample_scene(bad, seed, width=size))
