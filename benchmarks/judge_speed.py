"""Judging speed on one core: images/s for 128x128 renders of the benchmark prompts.

    .venv/bin/python benchmarks/judge_speed.py [--size 128] [--images 800]

Baseline in the same run: decoding the same images from PNG (what any judge must do first);
the ratio says how many PNG decodes one judgement costs.
"""

import argparse
import io
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from brushwork.evaluate.prompt_sets import load_prompts  # noqa: E402
from brushwork.world.judge import judge  # noqa: E402
from brushwork.world.render import render, to_png_bytes  # noqa: E402
from brushwork.world.scene import sample_scene  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--images", type=int, default=800)
    args = ap.parse_args()
    cv2.setNumThreads(1)
    prompts = load_prompts()
    items = [(prompts[i % len(prompts)].spec, render(sample_scene(prompts[i % len(prompts)].spec, i, width=args.size)))
             for i in range(args.images)]
    pngs = [to_png_bytes(img) for _, img in items]
    judge(items[0][1], items[0][0])  # build templates outside the timing
    t = time.perf_counter()
    for b in pngs:
        np.asarray(Image.open(io.BytesIO(b)).convert("RGB"))
    decode = time.perf_counter() - t
    t = time.perf_counter()
    passed = sum(judge(img, spec).passed for spec, img in items)
    dt = time.perf_counter() - t
    print(f"judge: {args.images / dt:.1f} images/s at {args.size}x{args.size} on one core "
          f"({passed}/{args.images} passed)")
    print(f"baseline PNG decode: {args.images / decode:.1f} images/s; judge/decode time ratio {dt / decode:.1f}x")


if __name__ == "__main__":
    main()
