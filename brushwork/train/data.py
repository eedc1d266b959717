"""Imagefolder datasets (``metadata.jsonl`` with ``file_name``, ``text`` and optional ``weight``)
and a step-indexed weighted sampler.

The batch drawn at step ``s`` depends only on ``(seed, s)``, so a resumed run sees exactly the
batches an uninterrupted run would. A row's chance of being drawn is proportional to its
``weight`` (default 1); rows with weight 0 are never drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from brushwork.errors import InvalidParameter
from brushwork.jsonl import read_jsonl
from brushwork.paths import safe_join


@dataclass
class ImageFolder:
    root: Path
    files: list[str]
    texts: list[str]
    weights: np.ndarray

    def __len__(self) -> int:
        return len(self.files)

    def load_images(self, size: int | None = None) -> np.ndarray:
        """All images as one ``(n, h, w, 3)`` uint8 array (resized to ``size`` if given)."""
        out = None
        for i, name in enumerate(self.files):
            img = Image.open(safe_join(self.root, name)).convert("RGB")
            if size and img.size != (size, size):
                img = img.resize((size, size), Image.LANCZOS)
            arr = np.asarray(img)
            if out is None:
                out = np.empty((len(self.files), *arr.shape), np.uint8)
            if arr.shape != out.shape[1:]:
                raise InvalidParameter(f"{name}: size {arr.shape[1]}x{arr.shape[0]} differs from the first image; pass a size")
            out[i] = arr
        return out


def load_imagefolder(root: str | Path) -> ImageFolder:
    root = Path(root)
    meta = root / "metadata.jsonl"
    if not meta.is_file():
        raise InvalidParameter(f"{root} is not an imagefolder dataset: no metadata.jsonl")
    files, texts, weights = [], [], []
    for i, row in read_jsonl(meta, "dataset metadata"):
        if not isinstance(row.get("file_name"), str) or not isinstance(row.get("text"), str):
            raise InvalidParameter(f"{meta}:{i}: each row needs string 'file_name' and 'text'")
        w = row.get("weight", 1.0)
        if isinstance(w, bool) or not isinstance(w, (int, float)) or not math.isfinite(w) or w < 0:
            raise InvalidParameter(f"{meta}:{i}: 'weight' must be a finite number >= 0 (got {w!r})")
        safe_join(root, row["file_name"])  # refuses names that leave the dataset folder
        files.append(row["file_name"])
        texts.append(row["text"])
        weights.append(float(w))
    if not files:
        raise InvalidParameter(f"{meta}: no rows")
    weights = np.asarray(weights, np.float64)
    if weights.sum() <= 0:
        raise InvalidParameter(f"{meta}: every row has weight 0")
    return ImageFolder(root, files, texts, weights)


def batch_indices(weights: np.ndarray, seed: int, step: int, batch: int) -> np.ndarray:
    """Rows for ``step``: drawn with replacement, probability proportional to weight."""
    rng = np.random.default_rng([seed, step])
    p = weights / weights.sum()
    return rng.choice(len(weights), size=batch, replace=True, p=p)
