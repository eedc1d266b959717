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
from brushwork.world.scene import Scene, sample_scene


def describe_item(seed: int, index: int, size: int, holdout: Holdout) -> tuple[Scene, dict]:
    """Item ``index``'s scene and metadata row, without rendering it."""
    rng = np.random.default_rng([seed, index])
    spec = random_spec(rng, holdout)
    scene = sample_scene(spec, int(rng.integers(2**31)), width=size, holdout=holdout)
    text = caption(spec, scene, rng)  # drawn after the scene: a change of phrasing never changes the image
    category = "relation" if spec.relation else ("counting" if len(spec.groups) == 1 and spec.groups[0].count > 1
                                                 else ("single" if len(spec.groups) == 1 else "multi"))
    return scene, {"file_name": f"{index:07d}.png", "text": text, "category": category, "scene": scene.to_dict()}


def make_item(seed: int, index: int, size: int, holdout: Holdout) -> tuple[bytes, dict]:
    scene, row = describe_item(seed, index, size, holdout)
    return to_png_bytes(render(scene)), row


def recaption(out: str | os.PathLike, seed: int = 0, size: int = 64, holdout: Holdout | None = None) -> int:
    """Rewrite the captions of a dataset made by ``make_dataset`` with the current phrasing; the images stay.

    Each row's scene is re-derived from ``(seed, index)`` and must equal the stored one, so a dataset made
    with other settings is refused rather than mislabelled. Returns the number of captions changed."""
    out = Path(out)
    holdout = holdout or Holdout()
    rows, changed = [], 0
    with open(out / "metadata.jsonl", encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            try:
                index = int(Path(row["file_name"]).stem)
                stored = row["scene"]
            except (KeyError, TypeError, ValueError):
                raise InvalidParameter(f"{out}: a row without make_dataset's file_name and scene: {line[:80]!r}") from None
            _, new = describe_item(seed, index, size, holdout)
            if json.dumps(new["scene"]) != json.dumps(stored):
                raise InvalidParameter(f"{out}: {row['file_name']} was not made with seed {seed} at {size}px")
            changed += new["text"] != row["text"]
            rows.append({**row, "text": new["text"]})
    tmp = out / "metadata.jsonl.tmp"
    tmp.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows), encoding="utf-8")
    meta = out / "metadata.jsonl"
    previous = out / "metadata.jsonl.previous"
    if not previous.exists():  # the original captions are kept, not lost, even if recaptioned twice
        meta.replace(previous)
    tmp.replace(meta)
    return changed


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
