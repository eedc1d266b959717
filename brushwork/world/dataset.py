"""Export the shapes world as a Hugging Face imagefolder: ``DIR/*.png`` + ``DIR/metadata.jsonl``.

Each metadata line holds ``file_name``, ``text`` (a caption), ``category`` and the full
structured ``scene``. Item ``i`` depends only on ``(seed, i)``, so a dataset is the same
whatever the number of worker processes, and a larger ``count`` extends a smaller one.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from brushwork.errors import InvalidParameter
from brushwork.world.captions import caption, random_spec
from brushwork.world.holdout import Holdout
from brushwork.world.render import render, to_png_bytes
from brushwork.world.scene import sample_scene


def make_item(seed: int, index: int, size: int, holdout: Holdout) -> tuple[bytes, dict]:
    rng = np.random.default_rng([seed, index])
    spec = random_spec(rng, holdout)
    scene = sample_scene(spec, int(rng.integers(2**31)), width=size, holdout=holdout)
    text = caption(spec, scene, rng)
    category = "relation" if spec.relation else ("counting" if len(spec.groups) == 1 and spec.groups[0].count > 1
                                                 else ("single" if len(spec.groups) == 1 else "multi"))
    png = to_png_bytes(render(scene))
    return png, {"file_name": f"{index:07d}.png", "text": text, "category": category, "scene": scene.to_dict()}


def _chunk(args) -> list[tuple[bytes, dict]]:
    seed, start, stop, size, holdout = args
    return [make_item(seed, i, size, holdout) for i in range(start, stop)]


def make_dataset(out: str | os.PathLike, count: int, seed: int = 0, size: int = 64,
                 holdout: Holdout | None = None, workers: int | None = None, chunk: int = 256) -> Path:
    """Write ``count`` images and ``metadata.jsonl`` into ``out`` and return its path."""
    if count < 1:
        raise InvalidParameter(f"--count must be at least 1 (got {count})")
    if not 16 <= size <= 2048:
        raise InvalidParameter(f"--size must be 16..2048 pixels (got {size})")
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InvalidParameter(f"cannot write to {out}: {exc.strerror}") from None
    holdout = holdout or Holdout()
    workers = workers or min(os.cpu_count() or 1, 4)
    jobs = [(seed, s, min(s + chunk, count), size, holdout) for s in range(0, count, chunk)]
    meta_tmp = out / "metadata.jsonl.tmp"
    with open(meta_tmp, "w", encoding="utf-8") as meta:
        if workers == 1:
            results = map(_chunk, jobs)
        else:
            pool = ProcessPoolExecutor(workers)
            results = pool.map(_chunk, jobs)
        for items in results:
            for png, row in items:
                (out / row["file_name"]).write_bytes(png)
                meta.write(json.dumps(row, separators=(",", ":")) + "\n")
        if workers != 1:
            pool.shutdown()
    meta_tmp.replace(out / "metadata.jsonl")
    return out
