"""CLI: ``brushwork dataset make``, ``brushwork render``, ``brushwork judge``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from brushwork.errors import InvalidParameter, NotFound


def register(sub) -> None:
    p = sub.add_parser("dataset", help="shapes-world datasets")
    dsub = p.add_subparsers(dest="dataset_command", metavar="ACTION")
    m = dsub.add_parser("make", help="write a captioned imagefolder of the shapes world")
    m.add_argument("--out", required=True, help="output folder (DIR/*.png + DIR/metadata.jsonl)")
    m.add_argument("--count", type=int, required=True, help="number of images")
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--size", type=int, default=64, help="canvas side in pixels (default 64)")
    m.add_argument("--holdout", help="holdout file (default: the default model's, brushwork/world/holdout.txt)")
    m.add_argument("--no-holdout", action="store_true", help="hold nothing out")
    m.add_argument("--workers", type=int, default=None)
    m.set_defaults(handler=_dataset_make)
    p.set_defaults(handler=lambda a: p.print_help(sys.stderr) or 2)

    r = sub.add_parser("render", help="render a shapes-world prompt with the ground-truth renderer")
    r.add_argument("prompt")
    r.add_argument("--out", required=True, help="PNG file to write")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--size", type=int, default=64)
    r.set_defaults(handler=_render)

    j = sub.add_parser("judge", help="judge images against a shapes-world prompt (JSON per image)")
    j.add_argument("images", nargs="+", metavar="IMAGE")
    j.add_argument("--prompt", required=True)
    j.add_argument("--annotate", metavar="OUT.png",
                   help="draw what was detected (with several images: a folder for <name>.judged.png)")
    j.set_defaults(handler=_judge)


def _dataset_make(args) -> int:
    from brushwork.world.dataset import make_dataset
    from brushwork.world.holdout import NO_HOLDOUT, load_holdout

    holdout = NO_HOLDOUT if args.no_holdout else load_holdout(args.holdout)
    out = make_dataset(args.out, args.count, seed=args.seed, size=args.size, holdout=holdout, workers=args.workers)
    print(out / "metadata.jsonl")
    return 0


def _render(args) -> int:
    from brushwork.world.grammar import parse
    from brushwork.world.render import render, to_png_bytes
    from brushwork.world.scene import sample_scene

    if not 16 <= args.size <= 2048:
        raise InvalidParameter(f"--size must be 16..2048 pixels (got {args.size})")
    png = to_png_bytes(render(sample_scene(parse(args.prompt), args.seed, width=args.size)))
    out = Path(args.out)
    try:
        out.write_bytes(png)
    except OSError as exc:
        raise InvalidParameter(f"cannot write {out}: {exc.strerror}") from None
    print(out)
    return 0


def load_rgb(path: str):
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except FileNotFoundError:
        raise NotFound(f"no such image: {path}") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise InvalidParameter(f"cannot read {path} as an image: {exc}") from None


def _judge(args) -> int:
    from brushwork.world.annotate import annotate
    from brushwork.world.grammar import parse
    from brushwork.world.judge import judge

    spec = parse(args.prompt)
    all_pass = True
    for path in args.images:
        pixels = load_rgb(path)
        verdict = judge(pixels, spec)
        verdict.prompt = args.prompt
        all_pass &= verdict.passed
        print(json.dumps({"image": path, **verdict.to_dict()}))
        if args.annotate:
            out = Path(args.annotate)
            if len(args.images) > 1:
                out.mkdir(parents=True, exist_ok=True)
                out = out / (Path(path).stem + ".judged.png")
            try:
                annotate(pixels, verdict).save(out)
            except OSError as exc:
                raise InvalidParameter(f"cannot write {out}: {exc.strerror}") from None
    return 0 if all_pass else 1
