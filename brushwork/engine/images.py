"""Input images for image-conditioned generation: reading, fitting, masks, outpainting canvases.

Pure Pillow/numpy/OpenCV, no torch. Every function takes and returns ``PIL.Image`` or uint8 arrays;
the denoising itself is in ``engine.img2img``.

    read_image(bytes | path) ──► ImageInputs(init, mask) ──► fit(init, w, h, mode) ──► prepare_mask
                                                             outpaint_canvas (new area masked, filled)
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from brushwork.engine.params import FILL_MODES, MAX_INPUT_PIXELS, RESIZE_MODES, Extend
from brushwork.errors import InvalidParameter


@dataclass
class ImageInputs:
    """The images a request conditions on: an init image (RGB or RGBA) and an optional mask.

    ``mask`` is white where the image is repainted. ``alpha_mask`` turns an image's transparent
    area into such a mask (the OpenAI edits route uses it when no mask is sent).
    """

    init: Image.Image
    mask: Image.Image | None = None
    init_sha256: str | None = None  # pixel_sha256 of each, computed when not given
    mask_sha256: str | None = None


def read_image(data: bytes | str | os.PathLike, *, field: str = "image") -> tuple[Image.Image, str]:
    """Decode an uploaded or named image; return it (fully loaded) with its ``pixel_sha256``.

    Refuses, in one line naming ``field``: a file that is not an image, one over the pixel cap
    (checked from the header, before the pixels are decoded), and a missing file.
    """
    if not isinstance(data, (bytes, bytearray)):
        try:
            with open(data, "rb") as handle:
                data = handle.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise InvalidParameter(f"{field}: no such file: {data}", field=field) from None
    try:
        with Image.open(io.BytesIO(data)) as probe:
            w, h = probe.size
            if w * h > MAX_INPUT_PIXELS:
                raise InvalidParameter(f"{field}: {w}x{h} is over the cap of {MAX_INPUT_PIXELS:,} pixels",
                                       field=field)
            probe.load()
            image = ImageOps.exif_transpose(probe)
            image = image.copy() if image is probe else image
    except InvalidParameter:
        raise
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidParameter(f"{field}: not a readable image ({type(exc).__name__})", field=field) from None
    return image, pixel_sha256(image)


def pixel_sha256(image: Image.Image) -> str:
    """sha256 of an image's mode, size and pixels: the same picture hashes the same in any file format."""
    h = hashlib.sha256(f"{image.mode} {image.width}x{image.height}\n".encode())
    h.update(image.tobytes())
    return h.hexdigest()


def has_alpha_hole(image: Image.Image) -> bool:
    return image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)


def alpha_mask(image: Image.Image) -> Image.Image | None:
    """White where ``image`` is transparent (alpha < 255), or ``None`` if nothing is."""
    if not has_alpha_hole(image):
        return None
    alpha = np.asarray(image.convert("RGBA"))[..., 3]
    if (alpha == 255).all():
        return None
    return Image.fromarray(np.where(alpha < 255, 255, 0).astype(np.uint8), "L")


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with transparent pixels over black (their colour is about to be repainted anyway)."""
    if image.mode == "RGB":
        return image
    if has_alpha_hole(image):
        rgba = image.convert("RGBA")
        base = Image.new("RGB", rgba.size, (0, 0, 0))
        base.paste(rgba, mask=rgba.getchannel("A"))
        return base
    return image.convert("RGB")


def mask_to_l(mask: Image.Image) -> Image.Image:
    """A mask as 8-bit grey: an RGBA mask uses its alpha where it has any (OpenAI), else its brightness."""
    if mask.mode in ("RGBA", "LA"):
        alpha = mask.getchannel("A")
        if alpha.getextrema()[0] < 255:  # transparent = edit, as OpenAI defines it
            return ImageOps.invert(alpha)
    return mask.convert("L")


def fit(image: Image.Image, width: int, height: int, mode: int, *, resample=Image.LANCZOS) -> Image.Image:
    """Fit ``image`` to ``width`` × ``height`` by A1111's resize modes 0–2 (3, latent upscale,
    resizes like 0 here; the engine upscales its latents instead)."""
    if mode not in range(len(RESIZE_MODES)):
        raise InvalidParameter(f"resize_mode {mode} is not one of 0-{len(RESIZE_MODES) - 1} "
                               f"({', '.join(RESIZE_MODES)})", field="resize_mode")
    if image.size == (width, height):
        return image
    if mode in (0, 3):
        return image.resize((width, height), resample)
    w, h = image.size
    if mode == 1:  # cover, then crop the centre
        k = max(width / w, height / h)
        big = image.resize((max(width, round(w * k)), max(height, round(h * k))), resample)
        left, top = (big.width - width) // 2, (big.height - height) // 2
        return big.crop((left, top, left + width, top + height))
    # mode 2: fit inside, then fill the bars by stretching the image's edge rows and columns
    k = min(width / w, height / h)
    small = image.resize((max(1, round(w * k)), max(1, round(h * k))), resample)
    arr = np.asarray(small)
    pad_x, pad_y = width - small.width, height - small.height
    pads = ((pad_y // 2, pad_y - pad_y // 2), (pad_x // 2, pad_x - pad_x // 2)) + ((0, 0),) * (arr.ndim - 2)
    return Image.fromarray(np.pad(arr, pads, mode="edge"))


def parse_resize_mode(name: str) -> int:
    """A CLI name ("crop and resize", "crop-and-resize" or "1") → A1111's integer code."""
    key = name.strip().lower().replace("-", " ").replace("_", " ")
    if key.isdigit() and int(key) in range(len(RESIZE_MODES)):
        return int(key)
    if key in RESIZE_MODES:
        return RESIZE_MODES.index(key)
    raise InvalidParameter(f"unknown resize mode {name!r}; known: {', '.join(RESIZE_MODES)}", field="resize_mode")


def parse_fill(name: str) -> int:
    key = name.strip().lower()
    if key not in FILL_MODES:
        raise InvalidParameter(f"unknown fill {name!r}; known: {', '.join(FILL_MODES)}", field="inpainting_fill")
    return FILL_MODES.index(key)


def parse_extend(text: str) -> dict:
    """``left=32,right=32`` → ``{"left": 32, "right": 32}`` (sides: left, right, top, bottom)."""
    sides = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        side, sep, value = part.partition("=")
        side = side.strip().lower()
        if not sep or side not in ("left", "right", "top", "bottom") or side in sides:
            raise InvalidParameter(f"--extend: {part!r} is not SIDE=PIXELS with a side of left, right, top or "
                                   "bottom (each once)", field="outpaint")
        try:
            sides[side] = int(value)
        except ValueError:
            raise InvalidParameter(f"--extend: {value.strip()!r} is not a whole number of pixels",
                                   field="outpaint") from None
    if not any(sides.values()):
        raise InvalidParameter("--extend: give at least one side, e.g. right=32", field="outpaint")
    return sides


def prepare_mask(mask: Image.Image, size: tuple[int, int], *, invert: bool, blur: int) -> np.ndarray:
    """The mask as float32 HxW in [0, 1] (1 = repaint): inverted if asked, then blurred by ``blur`` px.

    ``mask`` must already have the init image's size (checked by the caller, before any resize).
    """
    m = mask_to_l(mask)
    if m.size != size:
        m = m.resize(size, Image.LANCZOS)
    if invert:
        m = ImageOps.invert(m)
    if blur > 0:
        m = m.filter(ImageFilter.GaussianBlur(blur))
    return np.asarray(m, dtype=np.float32) / 255.0


def check_mask_size(image: Image.Image, mask: Image.Image) -> None:
    if image.size != mask.size:
        raise InvalidParameter(f"mask: its size {mask.size[0]}x{mask.size[1]} differs from the image's "
                               f"{image.size[0]}x{image.size[1]}", field="mask")


def check_inputs(params, inputs: ImageInputs) -> None:
    """Refuse inputs that cannot work, before any model is loaded: a mask beside outpainting (which makes
    its own), a mask of another size than the image, and a mask with nothing to repaint."""
    mask = inputs.mask
    if mask is None:
        return
    if params.outpaint is not None and params.outpaint.any:
        raise InvalidParameter("mask: outpainting makes its own mask (the new area); send none", field="mask")
    check_mask_size(inputs.init, mask)
    lo, hi = mask_to_l(mask).getextrema()
    if (hi == 0 and not params.inpainting_mask_invert) or (lo == 255 and params.inpainting_mask_invert):
        raise InvalidParameter("mask: it is empty (nothing to repaint)" +
                               (" after inverting" if params.inpainting_mask_invert else ""), field="mask")


def fill_masked(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``inpainting_fill`` 0: replace the masked area by colours spread in from its surroundings (OpenCV's
    Telea inpainting), so the sampler starts from the neighbourhood's colours, not the old content."""
    import cv2

    hole = (mask > 0.5).astype(np.uint8)
    if not hole.any() or hole.all():
        return np.full_like(image, int(image.mean())) if hole.all() else image
    radius = max(3, int(round(0.05 * max(image.shape[:2]))))
    return cv2.inpaint(np.ascontiguousarray(image), hole, radius, cv2.INPAINT_TELEA)


def outpaint_canvas(image: Image.Image, extend: Extend) -> tuple[Image.Image, Image.Image]:
    """The image on a larger canvas and its mask (white = the new area). The new area is filled by
    stretching the image's edge pixels, which the inpainting pass then repaints."""
    arr = np.asarray(to_rgb(image))
    pads = ((extend.top, extend.bottom), (extend.left, extend.right), (0, 0))
    canvas = np.pad(arr, pads, mode="edge")
    mask = np.full(canvas.shape[:2], 255, np.uint8)
    mask[extend.top:extend.top + arr.shape[0], extend.left:extend.left + arr.shape[1]] = 0
    return Image.fromarray(canvas), Image.fromarray(mask, "L")


def masked_region(mask: np.ndarray, padding: int, aspect: float) -> tuple[int, int, int, int] | None:
    """The box (left, top, right, bottom) around the mask's nonzero pixels, grown by ``padding`` and then
    to the aspect ratio ``aspect`` (w / h) of the size it will be generated at, clipped to the image.
    ``None`` for an empty mask."""
    ys, xs = np.nonzero(mask > 0)
    if len(xs) == 0:
        return None
    H, W = mask.shape
    x0, x1 = max(0, xs.min() - padding), min(W, xs.max() + 1 + padding)
    y0, y1 = max(0, ys.min() - padding), min(H, ys.max() + 1 + padding)
    w, h = x1 - x0, y1 - y0
    if w / h < aspect:  # widen
        grow = min(W, int(round(h * aspect))) - w
        x0 = max(0, min(x0 - grow // 2, W - (w + grow)))
        x1 = x0 + w + grow
    elif w / h > aspect:  # heighten
        grow = min(H, int(round(w / aspect))) - h
        y0 = max(0, min(y0 - grow // 2, H - (h + grow)))
        y1 = y0 + h + grow
    return int(x0), int(y0), int(x1), int(y1)


def composite(original: np.ndarray, generated: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Keep ``original`` where ``mask`` is 0, ``generated`` where it is 1, and blend between (uint8 HxWx3)."""
    m = mask[..., None]
    out = original.astype(np.float32) * (1 - m) + generated.astype(np.float32) * m
    out = np.where(m == 0, original, np.clip(np.round(out), 0, 255).astype(np.uint8))
    return out.astype(np.uint8)
