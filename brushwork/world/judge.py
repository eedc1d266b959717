"""Judge whether an image matches a shapes-world prompt, from pixels alone.

``judge(pixels, prompt)`` parses the prompt, detects objects (``detect.py``) and checks every
attribute the prompt names:

* **object** – an object of the group's shape (and colour, if named) is present;
* **size** – one of those has the named size (small / large; see ``vocab`` thresholds);
* **position** – one of those (of the right size) has its centroid in the named region;
* **count** – a number word asks for *exactly* that many objects matching the whole group;
  ``a``/``an`` asks for at least one (as in GenEval). Extra unrelated objects never fail;
* **distinct** – with several groups, each is matched by its own object(s);
* **relation** – centroids compare with a margin of ``RELATION_MARGIN`` of the canvas;
* **background** – the detected background colour is the named one.

The scene JSON of a generated image is never consulted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import permutations, product

import numpy as np

from brushwork.world import vocab
from brushwork.world.detect import Detected, Detection, detect
from brushwork.world.grammar import Group, Spec, group_text, parse, relation_text


@dataclass
class Check:
    name: str
    target: str
    passed: bool
    detail: str = ""

    def to_dict(self) -> dict:
        return {"check": self.name, "target": self.target, "pass": self.passed, "detail": self.detail}


@dataclass
class Verdict:
    prompt: str
    passed: bool
    checks: list[Check] = field(default_factory=list)
    detection: Detection | None = None

    def to_dict(self) -> dict:
        return {"prompt": self.prompt, "pass": self.passed, "checks": [c.to_dict() for c in self.checks],
                "detected": self.detection.to_dict() if self.detection else None}


def in_region(o: Detected, region: str) -> bool:
    x0, x1, y0, y1 = vocab.REGIONS[region]
    return x0 <= o.centroid[0] <= x1 and y0 <= o.centroid[1] <= y1


def relation_holds(a: Detected, b: Detected, relation: str) -> bool:
    m = vocab.RELATION_MARGIN
    (ax, ay), (bx, by) = a.centroid, b.centroid
    return {"above": ay + m < by, "below": ay > by + m, "left of": ax + m < bx, "right of": ax > bx + m}[relation]


def matches(o: Detected, g: Group) -> bool:
    return (o.shape == g.shape and (g.colour is None or o.colour == g.colour)
            and (g.size is None or o.size_class == g.size) and (g.region is None or in_region(o, g.region)))


def _group_checks(g: Group, objs: list[Detected]) -> tuple[list[Check], list[int]]:
    target = group_text(g)
    checks = []
    stage = [i for i, o in enumerate(objs) if o.shape == g.shape and (g.colour is None or o.colour == g.colour)]
    what = f"{g.colour + ' ' if g.colour else ''}{g.shape}"
    checks.append(Check("object", target, bool(stage), f"{len(stage)} {what}(s) found"))
    if g.size:
        stage = [i for i in stage if objs[i].size_class == g.size]
        checks.append(Check("size", target, bool(stage), f"{len(stage)} of them {g.size}"))
    if g.region:
        stage = [i for i in stage if in_region(objs[i], g.region)]
        checks.append(Check("position", target, bool(stage), f"{len(stage)} of them in the {g.region} region"))
    if g.exact:
        checks.append(Check("count", target, len(stage) == g.count, f"expected exactly {g.count}, found {len(stage)}"))
    return checks, stage


def _assignment_exists(spec: Spec, cands: list[list[int]], objs: list[Detected]) -> bool:
    """Distinct objects for every group (exact groups use all their matches), relation included."""
    used_exact: set[int] = set()
    for g, c in zip(spec.groups, cands):
        if g.exact:
            if used_exact & set(c):
                return False
            used_exact |= set(c)
    free = [(k, [i for i in c if i not in used_exact]) for k, (g, c) in enumerate(zip(spec.groups, cands)) if not g.exact]
    for choice in product(*[c for _, c in free]):
        if len(set(choice)) != len(choice):
            continue
        picked = dict(zip([k for k, _ in free], choice))
        if spec.relation:
            a_opts = [picked[0]] if 0 in picked else cands[0]
            b_opts = [picked[1]] if 1 in picked else cands[1]
            if not any(a != b and relation_holds(objs[a], objs[b], spec.relation) for a in a_opts for b in b_opts):
                continue
        return True
    return not free and not spec.relation


def judge_spec(detection: Detection, spec: Spec, prompt: str = "") -> Verdict:
    objs = detection.objects
    checks, cands = [], []
    for g in spec.groups:
        c, stage = _group_checks(g, objs)
        checks += c
        cands.append(stage)
    groups_ok = all(c.passed for c in checks)
    if groups_ok and (len(spec.groups) > 1 or spec.relation):
        ok = _assignment_exists(spec, cands, objs)
        if spec.relation:
            target = f"{group_text(spec.groups[0])} {relation_text(spec.relation)} {group_text(spec.groups[1])}"
            checks.append(Check("relation", target, ok, "centroids compared with margin "
                                f"{vocab.RELATION_MARGIN} of the canvas"))
        else:
            checks.append(Check("distinct", "groups", ok, "each group matched by its own objects"))
    elif spec.relation:
        checks.append(Check("relation", spec.relation, False, "not checked: an object is missing"))
    if spec.background:
        checks.append(Check("background", spec.background, detection.background == spec.background,
                            f"detected {detection.background}"))
    return Verdict(prompt, all(c.passed for c in checks), checks, detection)


def judge(pixels: np.ndarray, prompt: str | Spec) -> Verdict:
    """Judge one image (``(h, w, 3)`` uint8 RGB) against a prompt or a parsed spec."""
    spec = parse(prompt) if isinstance(prompt, str) else prompt
    return judge_spec(detect(pixels), spec, prompt if isinstance(prompt, str) else "")
