"""The server's limits, in one place: what one request may ask of it.

Every front end (native API, A1111, OpenAI, the web UI) goes through ``Service.prepare``, which applies
``Limits.check``; the same numbers are served at ``GET /api/v1/limits`` and set with ``brushwork serve``
flags. A request past a limit is refused before it is queued, with a 422 that names the field.

- ``prompt_chars``: characters in ``prompt`` and in ``negative_prompt``, each (OpenAI's own limit is 32,000).
- ``job_budget``: ``n × steps × (width × height / 512²)``, in "SD1 image-steps"; a size left to the
  model counts as the model's native size.
- ``inline_bytes``: routes that answer with base64 images inline (A1111 ``send_images``, OpenAI
  ``b64_json``) refuse a job whose images could exceed this many bytes uncompressed (``n × w × h × 3``);
  ask for URLs, or fewer or smaller images.
- ``job_timeout``: seconds a job may run before the worker is stopped and the job failed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path

from brushwork.errors import InvalidParameter

BUDGET_SIDE = 512  # the job budget counts pixels in units of one 512×512 image


class LimitExceeded(InvalidParameter):
    """A request that asks for more than the server's limits allow."""

    http_status = 422


@dataclass(frozen=True)
class Limits:
    prompt_chars: int = 32_000
    job_budget: float = 2_000.0
    inline_bytes: int = 64 * 2**20
    job_timeout: float = 600.0

    def __post_init__(self):
        for name in ("prompt_chars", "job_budget", "inline_bytes", "job_timeout"):
            if not getattr(self, name) > 0:
                raise InvalidParameter(f"{name} must be positive, not {getattr(self, name)!r}", field=name)

    def describe(self) -> dict:
        return {**asdict(self), "job_budget_formula": "n * steps * (width * height / 512**2)",
                "inline_bytes_formula": "n * width * height * 3"}

    def check_prompt(self, field: str, text: str) -> None:
        if len(text) > self.prompt_chars:
            raise LimitExceeded(f"{field}: {len(text):,} characters; this server takes at most "
                                f"{self.prompt_chars:,}", field=field)

    def check_job(self, n: int, steps: int, width: int, height: int, *, field: str = "n") -> None:
        cost = job_cost(n, steps, width, height)
        if cost > self.job_budget:
            raise LimitExceeded(
                f"{field}: this job costs {cost:,.0f} (n {n} × steps {steps} × {width}×{height} / 512²); this "
                f"server takes at most {self.job_budget:,.0f}: ask for fewer images, fewer steps or a smaller size",
                field=field)

    def check_inline(self, n: int, width: int, height: int, *, field: str) -> None:
        size = n * width * height * 3
        if size > self.inline_bytes:
            raise LimitExceeded(
                f"{field}: {n} images of {width}×{height} could take {size / 2**20:,.1f} MiB inline; this server "
                f"inlines at most {self.inline_bytes / 2**20:,.1f} MiB: ask for URLs, or fewer or smaller images",
                field=field)


def job_cost(n: int, steps: int, width: int, height: int) -> float:
    return n * steps * (width * height) / BUDGET_SIDE**2


NATIVE_BY_KIND = {"sdxl": 1024, "sd2": 768}


@lru_cache(maxsize=64)
def native_side(path: str, kind: str | None = None) -> int:
    """A model's native side in pixels: its UNet's sample size × the VAE factor when it is a folder,
    else by kind (SDXL 1024, SD2 768, otherwise 512)."""
    folder = Path(path)
    try:
        unet = json.loads((folder / "unet" / "config.json").read_text())
        blocks = json.loads((folder / "vae" / "config.json").read_text()).get("block_out_channels") or [0] * 4
        sample = unet.get("sample_size")
        if isinstance(sample, int) and sample > 0:
            return sample * 2 ** (len(blocks) - 1)
    except (OSError, ValueError, AttributeError):
        pass
    return NATIVE_BY_KIND.get(kind or "", 512)
