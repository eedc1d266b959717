"""``GenerationParams``: the one typed object every layer reads and writes.

The CLI, the Python API, the server, the queue, the PNG metadata and ``--from-png`` all carry
this object. Add a field here once and every layer sees it. ``schema_version`` is bumped when a
field changes meaning; readers of older JSON go through ``GenerationParams.from_json``.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from brushwork.errors import InvalidParameter

SCHEMA_VERSION = 1
MAX_SIDE = 2048  # hard cap on a requested width or height, in pixels

# Documented ranges (inclusive). The CLI, the API and the UI show these.
STEPS_RANGE = (1, 150)
CFG_RANGE = (0.0, 30.0)
COUNT_RANGE = (1, 64)
SEED_RANGE = (0, 2**32 - 1)


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
