"""``GenerationParams``: the one typed object every layer reads and writes.

The CLI, the Python API, the server, the queue, the PNG metadata and ``--from-png`` all carry
this object. Add a field here once and every layer sees it. ``schema_version`` is bumped when a
field changes meaning; readers of older JSON go through ``GenerationParams.from_json``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from brushwork.errors import InvalidParameter

SCHEMA_VERSION = 3  # 2: image-conditioned fields (img2img, inpainting, outpainting, hires fix); 3: LoRAs, embeddings
MAX_SIDE = 2048  # hard cap on a requested width or height, in pixels
MAX_INPUT_PIXELS = 4096 * 4096  # hard cap on an init image or mask, in pixels

# Documented ranges (inclusive). The CLI, the API and the UI show these.
STEPS_RANGE = (1, 150)
CFG_RANGE = (0.0, 30.0)
COUNT_RANGE = (1, 64)
SEED_RANGE = (0, 2**32 - 1)
HR_SCALE_RANGE = (1.0, 4.0)
EXTEND_MAX = 1024  # pixels added on one side by outpainting

# A1111's integer codes, and the names the CLI takes
RESIZE_MODES = ("just resize", "crop and resize", "resize and fill", "latent upscale")
FILL_MODES = ("fill", "original", "noise", "nothing")
HIRES_UPSCALERS = ("Latent", "Lanczos", "Nearest")
LORA_WEIGHT_RANGE = (-10.0, 10.0)
MAX_NETWORKS = 16  # LoRAs (or embeddings) in one request
_HASH12 = r"^[0-9a-f]{12}$"


class Extend(BaseModel):
    """Pixels added to each side of the init image by outpainting."""

    model_config = ConfigDict(extra="forbid")

    left: int = Field(default=0, ge=0, le=EXTEND_MAX)
    right: int = Field(default=0, ge=0, le=EXTEND_MAX)
    top: int = Field(default=0, ge=0, le=EXTEND_MAX)
    bottom: int = Field(default=0, ge=0, le=EXTEND_MAX)

    @property
    def any(self) -> bool:
        return bool(self.left or self.right or self.top or self.bottom)


class LoraUse(BaseModel):
    """A LoRA applied at ``weight`` (``--lora NAME:WEIGHT``; ``<lora:NAME:WEIGHT>`` in the prompt is the other way)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=512)
    weight: float = Field(default=1.0, ge=LORA_WEIGHT_RANGE[0], le=LORA_WEIGHT_RANGE[1])


class GenerationParams(BaseModel):
    """Everything that determines a generated image.

    Attributes:
        prompt: the text; A1111 attention syntax ``(word:1.3)`` is allowed. Empty means
            unconditional generation.
        negative_prompt: what to steer away from (replaces the unconditional embedding).
        width, height: output size in pixels; ``None`` means the model's native size.
        steps: denoising steps, 1–150. Default 20.
        cfg_scale: classifier-free guidance scale, 0–30. Default 7.
        sampler: A1111 sampler name (``brushwork samplers`` lists them). Default ``DPM++ 2M``.
        scheduler: A1111 schedule type (Automatic, Karras, Exponential, …). Default Automatic.
        seed: seed of image 0; image *i* uses ``seed + i``. ``None`` picks one at random and
            records it.
        n: number of images, 1–64.
        model: registry name or path; ``None`` means the bundled default model.
        commercial: refuse models whose licence does not permit commercial use.

    Image-conditioned generation (the images themselves travel beside this object, as
    ``engine.images.ImageInputs``; only their sha256 is recorded here):
        denoising_strength: 0–1, how much of the init image is re-drawn (img2img and inpainting:
            ``steps × strength`` steps run), and the second pass of hires fix. Default 0.75.
        resize_mode: how the init image is fitted to width × height: 0 just resize, 1 crop and
            resize, 2 resize and fill, 3 latent upscale (A1111's codes). Default 0.
        mask_blur: Gaussian blur radius of the mask in pixels. Default 4.
        inpainting_fill: what the masked area starts from: 0 fill (surrounding colours),
            1 original, 2 latent noise, 3 latent nothing (zeros). Default 1.
        inpaint_full_res: inpaint only the masked region, cropped with
            ``inpaint_full_res_padding`` pixels around it, at the full size, then pasted back.
        inpainting_mask_invert: repaint the black part of the mask instead of the white.
        outpaint: pixels to add on each side; the new area is filled and inpainted.
        enable_hr, hr_scale, hr_upscaler, hr_second_pass_steps: hires fix: generate, upscale by
            ``hr_scale`` (``Latent``, ``Lanczos`` or ``Nearest``), then an img2img pass of
            ``hr_second_pass_steps`` (0: ``steps``) at ``denoising_strength``.
        init_image_sha256, mask_sha256: the inputs' hashes, set by the engine.

    Extra networks (``engine.networks``):
        loras: LoRAs to apply besides those the prompt names with ``<lora:NAME:WEIGHT>``.
        embeddings: textual-inversion embeddings to load besides those whose name the prompt uses.
        lora_hashes, ti_hashes: name → the file's 12-hex A1111 hash, set by the engine; a request
            that carries them (``--from-png``) loads the files with those hashes.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    schema_version: int = SCHEMA_VERSION
    prompt: str = ""
    negative_prompt: str = ""
    width: int | None = Field(default=None, ge=1, le=MAX_SIDE)
    height: int | None = Field(default=None, ge=1, le=MAX_SIDE)
    steps: int = Field(default=20, ge=STEPS_RANGE[0], le=STEPS_RANGE[1])
    cfg_scale: float = Field(default=7.0, ge=CFG_RANGE[0], le=CFG_RANGE[1])
    sampler: str = "DPM++ 2M"
    scheduler: str = "Automatic"
    seed: int | None = Field(default=None, ge=SEED_RANGE[0], le=SEED_RANGE[1])
    n: int = Field(default=1, ge=COUNT_RANGE[0], le=COUNT_RANGE[1])
    model: str | None = None
    commercial: bool = False
    denoising_strength: float = Field(default=0.75, ge=0.0, le=1.0)
    resize_mode: int = Field(default=0, ge=0, le=len(RESIZE_MODES) - 1)
    mask_blur: int = Field(default=4, ge=0, le=64)
    inpainting_fill: int = Field(default=1, ge=0, le=len(FILL_MODES) - 1)
    inpaint_full_res: bool = False
    inpaint_full_res_padding: int = Field(default=32, ge=0, le=1024)
    inpainting_mask_invert: bool = False
    outpaint: Extend | None = None
    enable_hr: bool = False
    hr_scale: float = Field(default=2.0, ge=HR_SCALE_RANGE[0], le=HR_SCALE_RANGE[1])
    hr_upscaler: str = "Latent"
    hr_second_pass_steps: int = Field(default=0, ge=0, le=STEPS_RANGE[1])
    init_image_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    mask_sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    loras: list[LoraUse] = Field(default_factory=list, max_length=MAX_NETWORKS)
    embeddings: list[str] = Field(default_factory=list, max_length=MAX_NETWORKS)
    lora_hashes: dict[str, Annotated[str, Field(pattern=_HASH12)]] | None = None
    ti_hashes: dict[str, Annotated[str, Field(pattern=_HASH12)]] | None = None

    @field_validator("hr_upscaler")
    @classmethod
    def _known_upscaler(cls, value: str) -> str:
        for name in HIRES_UPSCALERS:
            if value.lower() == name.lower():
                return name
        raise ValueError(f"unknown hires upscaler {value!r}; known: {', '.join(HIRES_UPSCALERS)}")

    @classmethod
    def build(cls, **values: Any) -> "GenerationParams":
        """Validate ``values`` and raise one ``InvalidParameter`` naming the first bad field."""
        try:
            return cls(**values)
        except ValidationError as exc:
            raise invalid_parameter(exc) from None

    def replace(self, **changes: Any) -> "GenerationParams":
        return GenerationParams.build(**{**self.model_dump(), **changes})

    def to_json(self) -> str:
        return json.dumps(self.model_dump(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "GenerationParams":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise InvalidParameter(f"parameters are not valid JSON: {exc.msg}") from None
        if not isinstance(data, dict):
            raise InvalidParameter("parameters JSON must be an object")
        version = data.get("schema_version", SCHEMA_VERSION)
        if version > SCHEMA_VERSION:
            raise InvalidParameter(
                f"parameters have schema_version {version}; this brushwork reads up to {SCHEMA_VERSION}"
            )
        data["schema_version"] = SCHEMA_VERSION
        return cls.build(**data)


def invalid_parameter(exc: ValidationError) -> InvalidParameter:
    """Turn pydantic's multi-line report into one line that names the field."""
    err = exc.errors()[0]
    field = ".".join(str(p) for p in err.get("loc", ())) or "parameters"
    msg = err.get("msg", "invalid value")
    got = err.get("input")
    shown = "" if isinstance(got, dict) else f" (got {got!r})"
    return InvalidParameter(f"{field}: {msg}{shown}", field=field)
