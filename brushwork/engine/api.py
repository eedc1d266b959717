"""The Python API: a ``Studio`` holds loaded models; ``generate`` turns parameters into images.

    studio = Studio()
    gen = studio.generate(GenerationParams.build(prompt="a red circle", seed=1, n=4))
    paths = studio.save(gen, "outputs", grid=True)

The CLI, the server and the UI call exactly this. Nothing loads at import time.
"""

from __future__ import annotations

import gc
import json
import os
import random
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from brushwork import __version__
from brushwork.engine.images import ImageInputs
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
    """Loaded models plus generation. Pass one around; do not make it global.

    With ``max_models``, at most that many models are held besides ``keep`` (the one a server
    always serves): the least recently used is dropped before another is loaded.
    """

    def __init__(self, *, device: str = "cpu", dtype: str = "fp32", home: str | os.PathLike | None = None,
                 allow_pickle: bool = False, allow_paths: bool = True, max_models: int | None = None,
                 keep: str | None = None):
        self.device, self.dtype, self.home = device, dtype, home
        self.allow_pickle, self.allow_paths = allow_pickle, allow_paths
        self.max_models, self.keep = max_models, _model_key(keep)
        self._models: OrderedDict[str, object] = OrderedDict()  # least recently used first

    def model(self, ref: str | None, *, commercial: bool = False):
        """The ``LoadedModel`` for a registry name, folder or file (``None`` or "default": the bundled model)."""
        from brushwork.models.licenses import check_commercial
        from brushwork.models.load import load_pipeline

        key = _model_key(ref)
        if key not in self._models:
            self._evict(room_for=key)
            self._models[key] = load_pipeline(None if key == BUNDLED else key, dtype=self.dtype,
                                              device=self.device, home=self.home, allow_pickle=self.allow_pickle,
                                              allow_paths=self.allow_paths)
        self._models.move_to_end(key)
        loaded = self._models[key]
        if commercial:
            check_commercial(loaded.name, loaded.license)
        return loaded

    def networks(self, params: GenerationParams):
        """The LoRA and embedding files ``params`` names (``engine.networks.Networks``), found by name or by the
        hashes it records; a missing one raises ``NotFound`` naming the known ones. Loads no model."""
        from brushwork.engine.networks import resolve
        from brushwork.models.networks import network_names

        return resolve(params, home=self.home, allow_paths=self.allow_paths,
                       known_embeddings=network_names("textual-inversion", home=self.home))

    def loaded_models(self) -> list[str]:
        return list(self._models)

    def _evict(self, room_for: str) -> None:
        if self.max_models is None or room_for == self.keep:
            return
        others = [k for k in self._models if k != self.keep]
        for key in others[:max(0, len(others) - self.max_models + 1)]:
            del self._models[key]
        gc.collect()  # the pipeline's tensors go now, before the next model is loaded

    def generate(self, params: GenerationParams, *, images: ImageInputs | None = None,
                 on_step: StepCallback | None = None) -> Generation:
        """txt2img (with hires fix when ``params.enable_hr``), or, given ``images``, img2img, inpainting
        (with a mask) or outpainting (``params.outpaint``)."""
        from brushwork.engine.images import check_inputs
        from brushwork.engine.img2img import img2img, txt2img_hires
        from brushwork.engine.networks import apply as apply_networks
        from brushwork.models.licenses import check_commercial

        sampler, schedule = resolve_sampler(params.sampler, params.scheduler)
        seed = params.seed if params.seed is not None else random.randrange(2**32 - params.n)
        params = params.replace(seed=seed, sampler=sampler, scheduler=schedule, **_input_hashes(params, images))
        if images is not None:
            check_inputs(params, images)  # before a model is loaded
        nets = self.networks(params)  # every LoRA and embedding found before a model is loaded
        loaded = self.model(params.model, commercial=params.commercial)
        if params.commercial and nets.licenses():
            check_commercial(loaded.name, loaded.license, loras=nets.licenses())
        nets = apply_networks(loaded, nets, allow_pickle=self.allow_pickle)
        params = params.replace(**nets.hashes())
        run = params.replace(prompt=nets.prompt, negative_prompt=nets.negative_prompt)  # what the encoder sees
        comps = Components.from_pipeline(loaded.pipe, loaded.native_size, loaded.max_size)
        extra = {}
        if images is not None:
            res = img2img(comps, run, images, seed=seed, on_step=on_step, device=self.device)
            pixels, plan, extra = res.pixels, res.plan, res.extra
        elif params.enable_hr:
            res = txt2img_hires(comps, run, seed=seed, on_step=on_step, device=self.device)
            pixels, plan, extra = res.pixels, res.plan, res.extra
        else:
            pixels, plan = txt2img(comps, run, seed=seed, on_step=on_step, device=self.device)
            if plan.upscaled:
                pixels = [np.asarray(Image.fromarray(p).resize(plan.requested, Image.LANCZOS)) for p in pixels]
                extra = {"Generated size": f"{plan.generated[0]}x{plan.generated[1]}", "Upscaler": "Lanczos"}
        extra = {**extra, **nets.infotext()}
        images_out = [Image.fromarray(p) for p in pixels]
        seeds = [seed + i for i in range(params.n)]
        w, h = plan.requested
        infotexts = [format_infotext(params, seed=s, width=w, height=h, model_name=loaded.name,
                                     model_hash=loaded.short_hash or "", version=__version__, extra=extra)
                     for s in seeds]
        image_params = [{"params": params.replace(seed=s, n=1).model_dump(),
                         "batch": {"seed": seed, "n": params.n, "index": i},
                         "generated_size": list(plan.generated), "model": loaded.name,
                         "model_hash": loaded.short_hash, "version": __version__} for i, s in enumerate(seeds)]
        return Generation(params, images_out, seeds, infotexts, loaded.name, loaded.short_hash, plan, image_params)

    def save(self, gen: Generation, out_dir: str | os.PathLike, *, grid: bool = False,
             on_saved=None) -> list[Path]:
        """Write each image (atomically, never over an existing file) and optionally a grid.

        Files are numbered ``NNNNN-SEED.png`` after the highest number in the folder; when another
        process takes a name first, the image gets the next free number. ``on_saved(path)`` is called
        after each file is written.
        """
        out = writable_dir(out_dir)
        paths = []
        start = None  # the first image numbers after the folder's highest; the next ones follow it
        for im, s, info, meta in zip(gen.images, gen.seeds, gen.infotexts, gen.image_params):
            path = _save_numbered(out, "{:05d}-%d.png" % s, im, info, json.dumps(meta, sort_keys=True),
                                  on_saved, start=start)
            paths.append(path)
            start = _number(path) + 1
        if grid:
            meta = json.dumps({"grid_of": [p.name for p in paths]}, sort_keys=True)
            paths.append(_save_numbered(out, "grid-{:05d}-%d.png" % gen.seeds[0], contact_sheet(gen.images),
                                        gen.infotexts[0], meta, on_saved, start=_number(paths[0])))
        return paths


BUNDLED = "default"


def _input_hashes(params: GenerationParams, images: ImageInputs | None) -> dict:
    """The sha256 of the init image and mask, checked against those ``params`` recorded (``--from-png``)."""
    from brushwork.engine.images import pixel_sha256

    if images is None:
        if params.init_image_sha256 or params.outpaint is not None:
            raise InvalidParameter("image: these parameters were made from an init image; pass it again",
                                   field="image")
        return {}
    found = {"init_image_sha256": images.init_sha256 or pixel_sha256(images.init),
             "mask_sha256": None if images.mask is None else images.mask_sha256 or pixel_sha256(images.mask)}
    remaking = params.init_image_sha256 is not None  # parameters read back from a PNG
    for key, field in (("init_image_sha256", "image"), ("mask_sha256", "mask")):
        recorded = getattr(params, key)
        if remaking and recorded is None and found[key] is not None:
            raise InvalidParameter(f"{field}: the parameters were made without a {field}; leave it out",
                                   field=field)
        if recorded is not None and recorded != found[key]:
            what = "no mask was given" if found[key] is None else f"its sha256 is {found[key][:12]}…"
            raise InvalidParameter(f"{field}: the parameters were made with a {field} of sha256 "
                                   f"{recorded[:12]}…, but {what}", field=field)
    return found


def _model_key(ref: str | None) -> str | None:
    """One key per model: ``None`` and "default" are both the bundled model."""
    return BUNDLED if ref in (None, "", BUNDLED) else ref


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


def _save_numbered(out: Path, pattern: str, image, info: str, meta: str, on_saved, *, start: int | None = None,
                   tries: int = 1000) -> Path:
    """Save as ``pattern.format(i)`` for the first free number ``i`` (from ``start``, else after the highest)."""
    index = _next_index(out) if start is None else start
    for _ in range(tries):
        try:
            path = save_png(image, out / pattern.format(index), info, meta)
        except FileExistsError:  # another process took the name first
            index = max(index + 1, _next_index(out))
            continue
        if on_saved is not None:
            on_saved(path)
        return path
    raise InvalidParameter(f"no free file name in {out} after {tries} tries", field="out")


def _number(path: Path) -> int:
    return int(path.name.removeprefix("grid-").split("-")[0])


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
