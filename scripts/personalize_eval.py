"""Personalisation on a model (default: the bundled one): 5 diamond renders → LoRA, textual inversion, DreamBooth.

    .venv/bin/python scripts/personalize_eval.py --work runs/personalize [--model default] [--steps N]
        [--class-images K] [--only lora,embedding,dreambooth]

1. renders 5 images of "a <colour> diamond" (five colours; diamonds are never in the default model's training data)
   at the model's native size into ``WORK/images``;
2. trains each method with its defaults (or ``--steps``): ``brushwork train lora --prompt "a diamond"``,
   ``train embedding --token "<diamond>"``, ``train dreambooth --class-prompt "a square"``, timing each run;
3. prints one JSON report (also ``WORK/report.json``): per method, done, steps, wall-clock minutes of this run and
   the trainer's own count (every run of its work folder), and the output's size in bytes.

The acceptance limits (issue): LoRA and textual inversion ≤ 5 minutes, DreamBooth ≤ 15 minutes. The sample grids
are in each output's work folder (``WORK/<method>.work/samples.png``); judging them is left to the benchmark.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

COLOURS = ("red", "blue", "green", "yellow", "purple")
LIMITS = {"lora": 5, "embedding": 5, "dreambooth": 15}


def render_diamonds(folder: Path, size: int, seed: int = 0) -> Path:
    from PIL import Image

    from brushwork.world.grammar import parse
    from brushwork.world.render import render
    from brushwork.world.scene import sample_scene

    folder.mkdir(parents=True, exist_ok=True)
    for i, colour in enumerate(COLOURS):
        px = render(sample_scene(parse(f"a {colour} diamond"), seed + i, width=size))
        Image.fromarray(px).save(folder / f"diamond_{colour}.png")
    return folder


def size_of(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main(argv: list[str] | None = None) -> int:
    from brushwork.models.load import load_pipeline
    from brushwork.train.personal import run
    from brushwork.train.personal.inputs import Settings

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work", required=True)
    ap.add_argument("--model", default="default")
    ap.add_argument("--steps", type=int, default=None, help="override every method's default steps")
    ap.add_argument("--class-images", type=int, default=32)
    ap.add_argument("--only", default="lora,embedding,dreambooth")
    args = ap.parse_args(argv)
    work = Path(args.work)
    native = load_pipeline(args.model, hash=False).native_size
    images = render_diamonds(work / "images", native)
    jobs = {
        "lora": dict(prompt="a diamond", out=str(work / "diamond-lora.safetensors")),
        "embedding": dict(token="<diamond>", out=str(work / "diamond-embedding.safetensors")),
        "dreambooth": dict(prompt="a diamond", class_prompt="a square", class_images=args.class_images,
                           out=str(work / "diamond-dreambooth")),
    }
    report = {"model": args.model, "images": len(COLOURS), "size": native, "methods": {}}
    for method in args.only.split(","):
        s = Settings(method=method, images=str(images), model=args.model, steps=args.steps,
                     work=str(work / f"{method}.work"), **jobs[method])
        t = time.monotonic()
        res = run(s, start=t)
        minutes = (time.monotonic() - t) / 60
        out = Path(jobs[method]["out"])
        report["methods"][method] = {
            "done": res["done"], "steps": res["step"], "minutes_this_run": round(minutes, 2),
            "minutes_total": round(res["minutes"], 2), "limit_minutes": LIMITS[method],
            "within_limit": res["minutes"] <= LIMITS[method], "bytes": size_of(out) if out.exists() else None,
            "samples": res.get("samples"),
        }
        print(f"{method}: {minutes:.2f} min, {report['methods'][method]['bytes']} bytes", file=sys.stderr)
    (work / "report.json").write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
