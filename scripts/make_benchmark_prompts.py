"""Write the frozen shapes-world benchmark prompt set (run once; the output is committed).

    python scripts/make_benchmark_prompts.py > brushwork/evaluate/prompts/shapes_bench.jsonl

``--seed S --per-category K`` writes another set from the same generator, e.g. a small validation set
for choosing sampling settings without looking at the benchmark's seeds (simple categories such as
single_object have few distinct prompts, so those overlap with the benchmark's).

60 prompts in each of GenEval's six categories plus 40 absolute-position prompts. Counting is
mostly 2–4, the four relations are balanced, sizes vary, and >= 10% of prompts name a
colour–shape pair held out of the default model's training data (``unseen: true``).
"""

import argparse
import json
import sys

import numpy as np

from brushwork.world import vocab
from brushwork.world.grammar import Group, Spec, format_spec, parse
from brushwork.world.holdout import load_holdout

HOLD = load_holdout()
BENCH_SEED = 20261121
RNG = np.random.default_rng(BENCH_SEED)
SHAPES = vocab.TRAIN_SHAPES
HELD = sorted(HOLD.pairs)


def pick(seq):
    return seq[int(RNG.integers(len(seq)))]


def colour_for(shape, *, unseen=False, avoid=()):
    if unseen:
        options = [c for c, s in HELD if s == shape and c not in avoid]
        if options:
            return pick(options)
    return pick([c for c in vocab.COLOURS if HOLD.allows(c, shape) and c not in avoid])


def background(p, avoid):
    return pick([c for c in vocab.COLOURS if c not in avoid]) if RNG.random() < p else None


def size(p):
    return pick(("small", "large")) if RNG.random() < p else None


def held_shape():
    return pick(HELD)


def make(category, i):
    unseen_slot = i % 5 == 0  # every fifth colour-naming prompt uses a held-out pair
    if category == "single_object":
        g = Group(pick(SHAPES), size=size(0.4))
        return Spec((g,), None, background(0.3, ()))
    if category == "two_object":
        a, b = RNG.choice(len(SHAPES), 2, replace=False)
        return Spec((Group(SHAPES[a]), Group(SHAPES[b])), None, background(0.2, ()))
    if category == "counting":
        n = int(RNG.choice([1, 2, 3, 4], p=[0.13, 0.33, 0.3, 0.24]))
        shape = pick(SHAPES)
        colour = None
        if RNG.random() < 0.3:
            colour = held_shape()[0] if unseen_slot and shape == held_shape()[1] else colour_for(shape)
        g = Group(shape, n, True, colour, size(0.1) if n <= 2 else None)
        return Spec((g,), None, background(0.15, (colour,)))
    if category == "colors":
        if unseen_slot:
            colour, shape = held_shape()
        else:
            shape = pick(SHAPES)
            colour = colour_for(shape)
        return Spec((Group(shape, colour=colour, size=size(0.15)),), None, background(0.25, (colour,)))
    if category == "position":
        rel = vocab.RELATIONS[i % 4]
        a, b = (SHAPES[k] for k in RNG.choice(len(SHAPES), 2, replace=False))
        ca = cb = None
        if RNG.random() < 0.35:
            ca = colour_for(a)
            cb = colour_for(b, avoid=(ca,))
        return Spec((Group(a, colour=ca), Group(b, colour=cb)), rel, background(0.1, (ca, cb)))
    if category == "color_attr":
        a, b = (SHAPES[k] for k in RNG.choice(len(SHAPES), 2, replace=False))
        if unseen_slot or i % 5 == 2:
            ca, a = held_shape()
            b = pick([s for s in SHAPES if s != a])
        else:
            ca = colour_for(a)
        cb = colour_for(b, avoid=(ca,))
        return Spec((Group(a, colour=ca), Group(b, colour=cb)), None, background(0.15, (ca, cb)))
    if category == "absolute_position":
        region = list(vocab.REGIONS)[i % len(vocab.REGIONS)]
        shape = pick(SHAPES)
        colour = colour_for(shape, unseen=unseen_slot) if RNG.random() < 0.6 or unseen_slot else None
        return Spec((Group(shape, colour=colour, size=size(0.2), region=region),), None, background(0.15, (colour,)))
    raise ValueError(category)


def main():
    global RNG
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=BENCH_SEED)
    ap.add_argument("--per-category", type=int, default=None, help="prompts per category (default 60, 40)")
    args = ap.parse_args()
    if args.per_category is not None and args.per_category < 1:
        sys.exit("error: --per-category must be positive")
    RNG = np.random.default_rng(args.seed)
    counts = {"single_object": 60, "two_object": 60, "counting": 60, "colors": 60, "position": 60,
              "color_attr": 60, "absolute_position": 40}
    if args.per_category is not None:
        counts = dict.fromkeys(counts, args.per_category)
    seen = set()
    for category, n in counts.items():
        i = 0
        while i < n:
            spec = make(category, i)
            text = format_spec(spec)
            if text in seen:
                continue
            assert parse(text) == spec, text
            seen.add(text)
            unseen = any(g.colour and not HOLD.allows(g.colour, g.shape) for g in spec.groups)
            sys.stdout.write(json.dumps({"prompt": text, "category": category, "unseen": unseen}) + "\n")
            i += 1


if __name__ == "__main__":
    main()
