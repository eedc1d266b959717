"""Judge LoRA files already trained, alone or stacked, on the stacking or the crescent prompts: a quick probe.

    HF_HUB_OFFLINE=1 .venv/bin/python scripts/lora_probe.py --out runs/probe/NAME --prompts stack|crescent \\
        --set NAME=FILE:WEIGHT[,FILE:WEIGHT...] [--set ...] [--images-per-prompt 4]

``stack``: ``personalize_eval.py``'s 10 prompts naming a diamond and a crescent. ``crescent``: 12 prompts of a
crescent alone (8 single-object: plain, small, large, on 5 backgrounds) and beside a circle, square, triangle or
star (4 two-object). Each ``--set`` is judged on them (4 images per prompt, seed 0, as ``personalize_eval.py``
judges); its report and sample grid go to ``OUT/NAME``, and a line per set is printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

CRESCENT = ([("a crescent", "single_object"), ("a small crescent", "single_object"),
             ("a large crescent", "single_object")]
            + [(f"a crescent on a {c} background", "single_object")
               for c in ("orange", "cyan", "pink", "white", "black")]
            + [(f"a crescent and a {o}", "two_object") for o in ("circle", "square", "triangle", "star")])


def parse_set(text: str) -> tuple[str, list[dict]]:
    """``NAME=FILE:WEIGHT,FILE:WEIGHT`` → (NAME, the engine's LoRA list)."""
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise argparse.ArgumentTypeError(f"--set {text!r}: write NAME=FILE:WEIGHT[,FILE:WEIGHT...]")
    loras = []
    for item in rest.split(","):
        path, _, weight = item.rpartition(":")
        try:
            loras.append({"name": path, "weight": float(weight)})
        except ValueError:
            raise argparse.ArgumentTypeError(f"--set {text!r}: {weight!r} is not a number (FILE:WEIGHT)") from None
        if not path:
            raise argparse.ArgumentTypeError(f"--set {text!r}: {item!r} has no file (FILE:WEIGHT)")
    return name, loras


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--prompts", choices=("stack", "crescent"), default="stack")
    ap.add_argument("--set", dest="sets", action="append", type=parse_set, required=True)
    ap.add_argument("--images-per-prompt", type=int, default=4)
    args = ap.parse_args(argv)

    from brushwork.engine.api import Studio
    from brushwork.engine.bench import engine_generate
    from personalize_eval import bench_prompts, judged, stack_prompts

    pairs = stack_prompts() if args.prompts == "stack" else CRESCENT
    out, studio, res = Path(args.out), Studio(), {}
    for name, loras in args.sets:
        rep = judged(bench_prompts(pairs), engine_generate("default", studio, loras=loras)[0],
                     args.images_per_prompt, out / name)
        res[name] = {"loras": loras, **rep}
        print(name, round(rep["overall"], 3), json.dumps(rep["categories"]), flush=True)
    (out / f"probe-{args.prompts}.json").write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
