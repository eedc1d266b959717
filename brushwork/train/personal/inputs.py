"""What a personalisation run is given, checked before anything is written.

A training folder holds 3–20 images (``.png``, ``.jpg``/``.jpeg``, ``.webp``) and, optionally, one caption file per
image (``x.png`` + ``x.txt``); an image without one is captioned with the instance prompt (``--prompt``). A caption
file holds one caption per line; with several, each training step draws one of them for the image (several
phrasings of what it shows, so the new word is learnt in more than one context). Hidden
files (``.name``) are skipped; anything else (another file, a sub-folder, a caption without its image) is refused,
naming it. Every image is decoded here, so a corrupt one is refused before the model loads. ``Inputs.pixels(size)``
gives them centre-cropped to a square and resized to the model's native size.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from brushwork.errors import InvalidParameter
from brushwork.train.personal import DEFAULTS

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
MIN_IMAGES, MAX_IMAGES = 3, 20
METHODS = ("lora", "embedding", "dreambooth")
PRIOR_TARGETS = ("noise", "base")  # --prior-target: what class rows learn (their noise, or the base's prediction)


@dataclass
class Settings:
    """The flags of ``brushwork train lora|embedding|dreambooth`` (defaults per method: ``DEFAULTS``)."""

    method: str
    images: str
    out: str
    prompt: str | None = None
    model: str = "default"
    steps: int | None = None
    lr: float | None = None
    batch: int | None = None
    rank: int = 8
    alpha: float | None = None  # None: the rank (LoRA scale 1)
    layers: str = "attention"  # LoRA: "attention", "all" (LoCon: convolutions and feed-forward layers too) or
    # "cross" (cross-attention keys and values only)
    text_encoder: bool = False
    words: list[str] = field(default_factory=list)  # LoRA, DreamBooth: words whose token embeddings train too
    word_lr: float | None = None  # DreamBooth: the --train-word rows' learning rate
    token: str | None = None
    vectors: int = 2
    init_word: str | None = None
    class_prompt: str | None = None
    class_prompts: list[str] = field(default_factory=list)  # DreamBooth: --class-prompts FILE's lines
    class_images: int = 32
    prior_weight: float = 1.0
    prior_target: str = "noise"  # "noise" (DreamBooth's) or "base" (the base model's predictions)
    flip: bool = False  # LoRA, embedding: also train on each image's mirror image (a symmetric subject)
    seed: int = 0
    max_minutes: float | None = None
    work: str | None = None
    sample_every: int = 100  # a sample grid every this many steps (and checkpoints as often); 0: at the end only
    progress: bool = True

    def __post_init__(self):
        d = DEFAULTS[self.method]
        for k in ("steps", "lr", "batch", "word_lr"):
            if getattr(self, k) is None and k in d:
                setattr(self, k, d[k])

    @property
    def class_prompt_list(self) -> list[str]:
        """The class images' prompts: ``--class-prompts``' lines, or ``--class-prompt`` alone (none: no prior)."""
        return list(self.class_prompts) or ([self.class_prompt] if self.class_prompt else [])

    @property
    def work_dir(self) -> Path:
        """``--work``, default beside the output: ``x.safetensors`` → ``x.work``, folder ``x`` → ``x.work``."""
        if self.work:
            return Path(self.work)
        out = Path(self.out)
        return out.with_suffix(".work") if self.method != "dreambooth" else out.with_name(out.name + ".work")


def check_settings(s: Settings) -> None:
    """Every number in range, and each method's own required flags; raises ``InvalidParameter`` naming the flag."""
    if s.method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}")

    def need(ok: bool, flag: str, rule: str, value) -> None:
        if not ok:
            raise InvalidParameter(f"{flag} must be {rule} (got {value!r})")

    def is_int(v) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    def is_num(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)

    need(is_int(s.steps) and 1 <= s.steps <= 1_000_000, "--steps", "a whole number from 1 to 1000000", s.steps)
    need(is_num(s.lr) and 0 < s.lr <= 1, "--lr", "a number in (0, 1]", s.lr)
    need(is_int(s.batch) and 1 <= s.batch <= 1024, "--batch", "a whole number from 1 to 1024", s.batch)
    need(is_int(s.seed) and s.seed >= 0, "--seed", "a whole number >= 0", s.seed)
    need(is_int(s.sample_every) and s.sample_every >= 0, "--sample-every", "a whole number >= 0", s.sample_every)
    need(s.max_minutes is None or (is_num(s.max_minutes) and s.max_minutes > 0), "--max-minutes", "positive",
         s.max_minutes)
    if s.method == "lora":
        need(is_int(s.rank) and 1 <= s.rank <= 1024, "--rank", "a whole number from 1 to 1024", s.rank)
        need(s.alpha is None or (is_num(s.alpha) and s.alpha > 0), "--alpha", "a positive number", s.alpha)
        need(s.layers in ("attention", "all", "cross"), "--layers", "attention, all or cross", s.layers)
    if s.method == "embedding":
        if not s.token or not s.token.strip() or s.token != s.token.strip() or any(c.isspace() for c in s.token):
            raise InvalidParameter(f"--token must be one word without spaces (got {s.token!r})")
        need(is_int(s.vectors) and 1 <= s.vectors <= 16, "--vectors", "a whole number from 1 to 16", s.vectors)
        if s.prompt is not None and s.token not in s.prompt:
            raise InvalidParameter(f"--prompt must contain the token {s.token} (got {s.prompt!r})")
    if s.method in ("lora", "dreambooth"):  # prior preservation: required by DreamBooth, optional for a LoRA
        if s.class_prompts and s.class_prompt:
            raise InvalidParameter("give --class-prompt or --class-prompts, not both")
        if s.class_prompts:
            blank = [i + 1 for i, p in enumerate(s.class_prompts) if not isinstance(p, str) or not p.strip()]
            if blank:
                raise InvalidParameter(f"--class-prompts: line {blank[0]} is empty")
        elif s.class_prompt is not None and not s.class_prompt.strip():
            raise InvalidParameter("--class-prompt is empty")
        elif s.method == "dreambooth" and s.class_prompt is None:
            raise InvalidParameter("train dreambooth needs --class-prompt (e.g. 'a square' for diamonds) or "
                                   "--class-prompts FILE (one prompt per line)")
        need(is_int(s.class_images) and 1 <= s.class_images <= 1000, "--class-images",
             "a whole number from 1 to 1000", s.class_images)
        need(is_num(s.prior_weight) and s.prior_weight >= 0, "--prior-weight", "a number >= 0", s.prior_weight)
        need(s.prior_target in PRIOR_TARGETS, "--prior-target", " or ".join(PRIOR_TARGETS), s.prior_target)
    if s.method == "dreambooth":
        if s.words and s.text_encoder:
            raise InvalidParameter("--train-word trains one word's rows of a frozen text encoder; with "
                                   "--text-encoder the whole encoder trains: give one of them")
        need(s.word_lr is None or (is_num(s.word_lr) and 0 < s.word_lr <= 1), "--word-lr", "a number in (0, 1]",
             s.word_lr)
    if s.prompt is not None and not s.prompt.strip():
        raise InvalidParameter("--prompt is empty")


def check_out(s: Settings) -> None:
    """``--out`` can be written (its folder exists; a file ends in .safetensors) and ``--work`` is a folder."""
    out = Path(s.out)
    if not out.parent.is_dir():
        raise InvalidParameter(f"--out {s.out}: the folder {out.parent} does not exist")
    if s.method == "dreambooth":
        if out.is_file():
            raise InvalidParameter(f"--out {s.out} is a file; train dreambooth writes a diffusers folder")
        if out.is_dir() and any(out.iterdir()) and not (out / "model_index.json").is_file():
            raise InvalidParameter(f"--out {s.out} is a folder that holds something other than a diffusers model")
    else:
        if out.suffix.lower() != ".safetensors":
            raise InvalidParameter(f"--out {s.out} must end in .safetensors")
        if out.is_dir():
            raise InvalidParameter(f"--out {s.out} is a folder; train {s.method} writes one .safetensors file")
    work = s.work_dir
    if work.exists() and not work.is_dir():
        raise InvalidParameter(f"--work {work} is a file, not a folder")
    if s.work and not work.parent.is_dir():
        raise InvalidParameter(f"--work {s.work}: the folder {work.parent} does not exist")


@dataclass
class Inputs:
    folder: Path
    files: list[str]
    captions: list[list[str]]  # each image's captions (one per line of its x.txt; the instance prompt without one)
    images: list[Image.Image]
    sha256: str  # of every image's bytes and caption: a work folder is only continued on the same inputs

    def pixels(self, size: int) -> np.ndarray:
        """``(n, size, size, 3)`` uint8: each image centre-cropped to a square, resized with Lanczos."""
        out = np.empty((len(self.images), size, size, 3), np.uint8)
        for i, img in enumerate(self.images):
            w, h = img.size
            side = min(w, h)
            box = ((w - side) // 2, (h - side) // 2, (w - side) // 2 + side, (h - side) // 2 + side)
            sq = img.crop(box) if (w, h) != (side, side) else img
            out[i] = np.asarray(sq if side == size else sq.resize((size, size), Image.LANCZOS))
        return out


def read_folder(folder: str | Path, prompt: str | None, flag: str = "--images") -> Inputs:
    """The images and their captions in ``folder``; ``InvalidParameter`` naming the folder or file otherwise."""
    root = Path(folder)
    if not root.exists():
        raise InvalidParameter(f"{flag} {folder}: no such folder")
    if not root.is_dir():
        raise InvalidParameter(f"{flag} {folder} is not a folder")
    entries = sorted(p for p in root.iterdir() if not p.name.startswith("."))
    images = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
    stems = {p.stem for p in images}
    for p in entries:
        if p in images:
            continue
        if p.is_file() and p.suffix.lower() == ".txt":
            if p.stem not in stems:
                raise InvalidParameter(f"{flag}: caption file {p.name} has no image {p.stem}.png/.jpg/.webp beside it")
            continue
        what = "a folder" if p.is_dir() else "not an image"
        raise InvalidParameter(f"{flag}: {p.name} is {what}; the training folder holds only images "
                               f"({', '.join(IMAGE_SUFFIXES)}) and x.txt captions")
    if not images:
        raise InvalidParameter(f"{flag} {folder} is empty: it needs {MIN_IMAGES}–{MAX_IMAGES} images")
    if not MIN_IMAGES <= len(images) <= MAX_IMAGES:
        raise InvalidParameter(f"{flag} {folder} holds {len(images)} images; it needs {MIN_IMAGES}–{MAX_IMAGES}")
    if len(stems) != len(images):
        raise InvalidParameter(f"{flag}: two images share a name ({_first_duplicate(images)}); captions would clash")
    h = hashlib.sha256()
    captions, decoded = [], []
    for p in images:
        data = p.read_bytes()
        decoded.append(_decode(p, flag))
        txt = p.with_suffix(".txt")
        if txt.is_file():
            try:
                lines = txt.read_text(encoding="utf-8").splitlines()
            except (UnicodeDecodeError, OSError) as exc:
                raise InvalidParameter(f"{flag}: cannot read caption {txt.name}: {exc}") from None
            options = [" ".join(line.split()) for line in lines if line.strip()]
            if not options:
                raise InvalidParameter(f"{flag}: caption {txt.name} is empty")
        elif prompt is not None:
            options = [prompt]
        else:
            raise InvalidParameter(f"{flag}: {p.name} has no caption file ({p.stem}.txt) and no --prompt was given")
        captions.append(options)
        h.update(hashlib.sha256(data).digest() + "\n".join(options).encode() + b"\0")
    return Inputs(root, [p.name for p in images], captions, decoded, h.hexdigest())


def _decode(path: Path, flag: str) -> Image.Image:
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                flat = Image.new("RGB", rgba.size, (255, 255, 255))
                flat.paste(rgba, mask=rgba.getchannel("A"))
                return flat
            return im.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidParameter(f"{flag}: cannot read {path.name} as an image ({exc})") from None


def _first_duplicate(paths: list[Path]) -> str:
    seen: dict[str, str] = {}
    for p in paths:
        if p.stem in seen:
            return f"{seen[p.stem]} and {p.name}"
        seen[p.stem] = p.name
    return ""
