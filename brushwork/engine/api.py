"""The Python API: a ``Studio`` holds loaded models; ``generate`` turns parameters into images.

    studio = Studio()
    gen = studio.generate(GenerationParams.build(prompt="a red circle", seed=1, n=4))
    paths = studio.save(gen, "outputs", grid=True)

The CLI, the server and the UI call exactly this. Nothing loads at import time.
"""

from __future__ import annotations

import json
import os
import random
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from brushwork import __version__
from brushwork.engine.metadata import format_infotext, save_png
from brushwork.engine.params import GenerationParams
from brushwork.engine.pipeline import Components, SizePlan, StepCallback, txt2img
from brushwork.engine.samplers import resolve_sampler
from brushwork.errors import InvalidParameter


@dataclass
class Generation:
    """The images of one request, each with its own seed and infotext."""

    params: GenerationParams  # as requested, with the seed filled in
    images: list[Image.Image]
    seeds: list[int]
    infotexts: list[str]
    model_name: str
    model_hash: str | None
    plan: SizePlan
    image_params: list[dict] = field(default_factory=list)  # what re-makes image i alone


class Studio:
    """Loaded models plus generation. Pass one around; do not make it global."""

    def __init__(self, *, device: str = "cpu", dtype: str = "fp32", home: str | os.PathLike | None = None,
                 allow_pickle: bool = False, allow_paths: bool = True):
        self.device, self.dtype, self.home = device, dtype, home
        self.allow_pickle, self.allow_paths = allow_pickle, allow_paths
        self._models: dict[str | None, object] = {}

    def model(self, ref: str | None, *, commercial: bool = False):
        """The ``LoadedModel`` for a registry name, folder or file (``None``: the bundled model)."""
        from brushwork.models.licenses import check_commercial
        from brushwork.models.load import load_pipeline

        if ref not in self._models:
            self._models[ref] = load_pipeline(ref, dtype=self.dtype, device=self.device, home=self.home,
                                              allow_pickle=self.allow_pickle, allow_paths=self.allow_paths)
        loaded = self._models[ref]
        if commercial:
            check_commercial(loaded.name, loaded.license)
        return loaded

    def generate(self, params: GenerationParams, *, on_step: StepCallback | None = None) -> Generation:
        sampler, schedule = resolve_sampler(params.sampler, params.scheduler)
        seed = params.seed if params.seed is not None else random.randrange(2**32 - params.n)
        params = params.replace(seed=seed, sampler=sampler, scheduler=schedule)
        loaded = self.model(params.model, commercial=params.commercial)
        comps = Components.from_pipeline(loaded.pipe, loaded.native_size, loaded.max_size)
        pixels, plan = txt2img(comps, params, seed=seed, on_step=on_step, device=self.device)
        images = [Image.fromarray(p) for p in pixels]
        extra = {}
        if plan.upscaled:
            images = [im.resize(plan.requested, Image.LANCZOS) for im in images]
            extra = {"Generated size": f"{plan.generated[0]}x{plan.generated[1]}", "Upscaler": "Lanczos"}
        seeds = [seed + i for i in range(params.n)]
        w, h = plan.requested
        infotexts = [format_infotext(params, seed=s, width=w, height=h, model_name=loaded.name,
                                     model_hash=loaded.short_hash or "", version=__version__, extra=extra)
                     for s in seeds]
        image_params = [{"params": params.replace(seed=s, n=1).model_dump(),
                         "batch": {"seed": seed, "n": params.n, "index": i},
                         "generated_size": list(plan.generated), "model": loaded.name,
                         "model_hash": loaded.short_hash, "version": __version__} for i, s in enumerate(seeds)]
        return Generation(params, images, seeds, infotexts, loaded.name, loaded.short_hash, plan, image_params)

    def save(self, gen: Generation, out_dir: str | os.PathLike, *, grid: bool = False) -> list[Path]:
        """Write each image (atomically, never over an existing file) and optionally a grid."""
        out = writable_dir(out_dir)
        index = _next_index(out)
        paths = []
        for k, (im, s, info, meta) in enumerate(zip(gen.images, gen.seeds, gen.infotexts, gen.image_params)):
            path = out / f"{index + k:05d}-{s}.png"
            paths.append(save_png(im, path, info, json.dumps(meta, sort_keys=True)))
        if grid:
            path = out / f"grid-{index:05d}-{gen.seeds[0]}.png"
            paths.append(save_png(contact_sheet(gen.images), path, gen.infotexts[0],
                                  json.dumps({"grid_of": [p.name for p in paths]}, sort_keys=True)))
        return paths


def writable_dir(path: str | os.PathLike) -> Path:
    out = Path(path)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".brushwork-write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise InvalidParameter(f"cannot write to output directory {out}: {exc.strerror}", field="out") from None
    return out


def _next_index(out: Path) -> int:
    nums = [int(m.group(1)) for p in out.iterdir() if (m := re.match(r"(?:grid-)?(\d{5,})-", p.name))]
    return max(nums, default=-1) + 1


def contact_sheet(images: list[Image.Image]) -> Image.Image:
    cols = int(np.ceil(np.sqrt(len(images))))
    rows = int(np.ceil(len(images) / cols))
    w, h = images[0].size
    sheet = Image.new("RGB", (cols * w, rows * h), "white")
    for i, im in enumerate(images):
        sheet.paste(im, ((i % cols) * w, (i // cols) * h))
    return sheet
