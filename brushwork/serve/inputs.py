"""Uploaded init images and masks, stored as files in the home and named by their pixel hash.

A job row carries only ``init_image_sha256`` / ``mask_sha256``; the worker reads the images from here.
The same picture uploaded twice is one file. Names are 64 hex digits, checked before any path is made.
"""

from __future__ import annotations

import os
import re
import secrets
from pathlib import Path

from PIL import Image

from brushwork.engine.images import ImageInputs, pixel_sha256, read_image
from brushwork.errors import InvalidParameter, NotFound

_SHA = re.compile(r"^[0-9a-f]{64}$")
_KEEP_MODES = ("RGB", "RGBA", "L")


class InputStore:
    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)

    def put(self, data: bytes | Image.Image, *, field: str = "image") -> tuple[Image.Image, str]:
        """Store an uploaded image (bytes) or a decoded one; return it and its pixel sha256.

        The image is kept as PNG in RGB, RGBA or L (other modes are converted first, so that the hash
        of the stored file is the hash the job records)."""
        image = read_image(bytes(data), field=field)[0] if isinstance(data, (bytes, bytearray)) else data
        if image.mode not in _KEEP_MODES:
            transparent = image.mode in ("LA", "PA") or "transparency" in image.info
            image = image.convert("RGBA" if transparent else ("L" if image.mode in ("1", "I", "F", "I;16") else "RGB"))
        digest = pixel_sha256(image)
        path = self.folder / f"{digest}.png"
        if not path.is_file():
            self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            tmp = self.folder / f".{digest}.{secrets.token_hex(4)}.tmp"
            try:
                image.save(tmp, format="PNG")
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
        return image, digest

    def path(self, digest: str, *, field: str) -> Path:
        if not isinstance(digest, str) or not _SHA.fullmatch(digest):
            raise InvalidParameter(f"{field}: not a sha256 (64 lowercase hex digits)", field=field)
        path = self.folder / f"{digest}.png"
        if not path.is_file():
            raise NotFound(f"{field}: no uploaded image with sha256 {digest[:12]}… (upload it first)", field=field)
        return path

    def size(self, digest: str, *, field: str) -> tuple[int, int]:
        with Image.open(self.path(digest, field=field)) as image:
            return image.size

    def get(self, digest: str, *, field: str) -> Image.Image:
        with Image.open(self.path(digest, field=field)) as image:
            image.load()
            return image.copy()

    def inputs(self, init_sha256: str | None, mask_sha256: str | None) -> ImageInputs | None:
        """The ``ImageInputs`` a job's parameters name, or ``None`` for txt2img."""
        if init_sha256 is None:
            if mask_sha256 is not None:
                raise InvalidParameter("mask_sha256: a mask needs an init image", field="mask_sha256")
            return None
        init = self.get(init_sha256, field="init_image_sha256")
        mask = None if mask_sha256 is None else self.get(mask_sha256, field="mask_sha256")
        return ImageInputs(init, mask, init_sha256, mask_sha256)
