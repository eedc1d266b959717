"""Dataset generation speed: images/s written by ``make_dataset`` at 128x128 on this machine.

    .venv/bin/python benchmarks/dataset_speed.py [--size 128] [--count 4000] [--workers N]

Baseline in the same run: PNG-encoding already rendered pixels and writing them (the I/O floor).
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

from brushwork.world.dataset import make_dataset
from brushwork.world.holdout import load_holdout
from brushwork.world.render import to_png_bytes


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--count", type=int, default=4000)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        make_dataset(Path(tmp) / "d", args.count, seed=0, size=args.size, holdout=load_holdout(), workers=args.workers)
        dt = time.perf_counter() - t
        import numpy as np
        from PIL import Image
        imgs = [np.asarray(Image.open(p)) for p in sorted((Path(tmp) / "d").glob("*.png"))[:500]]
        t = time.perf_counter()
        for i, img in enumerate(imgs):
            (Path(tmp) / f"b{i}.png").write_bytes(to_png_bytes(img))
        base = (time.perf_counter() - t) / len(imgs)
    print(f"dataset: {args.count / dt:.1f} images/s at {args.size}x{args.size} "
          f"({args.workers or min(os.cpu_count() or 1, 4)} workers, {os.cpu_count()} cores)")
    print(f"baseline PNG encode+write, one process: {1 / base:.1f} images/s; "
          f"dataset/baseline per-image time ratio {(dt / args.count) / base:.2f}x")


if __name__ == "__main__":
    main()
