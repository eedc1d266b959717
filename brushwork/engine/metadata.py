"""PNG metadata: A1111's ``parameters`` infotext, and brushwork's own JSON chunk.

A PNG written by ``save_png`` carries two text chunks:

- ``parameters``: the A1111 1.10 infotext, which A1111, Forge, SD.Next, civitai and most image
  browsers read::

      a red circle
      Negative prompt: blurry
      Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, Seed: 1, Size: 128x128, Model hash: 0123456789, Model: shapes, Version: brushwork 0.1.0

- ``brushwork``: the full ``GenerationParams`` JSON, which ``--from-png`` reads back exactly.

Text that is not Latin-1 goes into an iTXt chunk of the same name (Pillow's choice, as in A1111).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import zlib
from pathlib import Path
from typing import Any

from brushwork.engine.params import GenerationParams
from brushwork.errors import InvalidParameter, NotFound

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
NEGATIVE_PREFIX = "Negative prompt:"

# One "Key: value" pair of the last infotext line; a value is JSON-quoted or runs to the comma.
_PARAM_RE = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_KEY_RE = re.compile(r"\w[\w \-/]+")


def _number(value: float) -> str:
    """``7.0`` → ``7``, ``7.5`` → ``7.5`` (how A1111's infotexts show CFG scale)."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def quote(value: Any) -> str:
    """A value as it appears in infotext: JSON-quoted if it holds ``,`` ``:`` ``"`` or a newline."""
    text = str(value)
    if any(ch in text for ch in ',:"\n'):
        return json.dumps(text, ensure_ascii=False)
    return text


def unquote(value: str) -> str:
    """Inverse of ``quote``; a value that looks quoted but is not valid JSON is kept as it is."""
    if len(value) >= 2 and value[0] == '"' and value[-1] == '"':
        try:
            return str(json.loads(value))
        except json.JSONDecodeError:
            return value
    return value


def format_infotext(
    params: GenerationParams,
    *,
    seed: int,
    width: int,
    height: int,
    model_name: str,
    model_hash: str,
    version: str,
    extra: dict[str, Any] | None = None,
) -> str:
    """The A1111 1.10 infotext for one image.

    Args:
        params: the request; prompt, negative prompt, steps, sampler, schedule type and CFG scale
            come from here.
        seed: this image's seed (``params.seed + i`` for image *i*).
        width, height: the size actually generated.
        model_name, model_hash: shown as ``Model`` and ``Model hash`` (first 10 hex digits of the
            file's sha256); an empty value is left out.
        version: brushwork's version, written as ``Version: brushwork <version>``.
        extra: more ``key: value`` pairs (``Hires upscale``, size-policy notes), placed before
            ``Version``. ``None`` values are skipped.
    """
    pairs: dict[str, Any] = {
        "Steps": params.steps,
        "Sampler": params.sampler,
        "Schedule type": params.scheduler,
        "CFG scale": _number(params.cfg_scale),
        "Seed": seed,
        "Size": f"{width}x{height}",
        "Model hash": model_hash[:10] if model_hash else None,
        "Model": model_name or None,
    }
    for key, value in (extra or {}).items():
        if not _KEY_RE.fullmatch(str(key)) or key in pairs or key == "Version":
            raise InvalidParameter(f"infotext key {key!r} is not allowed", field="extra")
        pairs[key] = value
    pairs["Version"] = f"brushwork {version}"
    last = ", ".join(f"{k}: {quote(v)}" for k, v in pairs.items() if v is not None)

    lines = [params.prompt]
    if params.negative_prompt:
        lines.append(f"{NEGATIVE_PREFIX} {params.negative_prompt}")
    lines.append(last)
    return "\n".join(lines)


def parse_infotext(text: str) -> dict[str, str]:
    """Inverse of ``format_infotext`` (and reads A1111's own infotexts).

    Returns ``{"Prompt": …, "Negative prompt": …, "Steps": "20", "Sampler": …, …}``: every value
    a string, quoted values unquoted, ``Size`` also split into ``Size-1`` (width) and ``Size-2``
    (height). The prompt and negative prompt may span several lines; leading and trailing
    whitespace of the whole text is dropped, as A1111 does.
    """
    *lines, last = text.strip().split("\n")
    if len(_PARAM_RE.findall(last)) < 3:  # no parameter line: it is part of the prompt
        lines.append(last)
        last = ""

    prompt: list[str] = []
    negative: list[str] = []
    target = prompt
    for line in lines:
        if target is prompt and line.startswith(NEGATIVE_PREFIX):
            target = negative
            line = line[len(NEGATIVE_PREFIX):].lstrip(" ")
        target.append(line)

    result = {"Prompt": "\n".join(prompt).strip(), "Negative prompt": "\n".join(negative).strip()}
    for key, value in _PARAM_RE.findall(last):
        value = unquote(value.strip())
        result[key.strip()] = value
        size = re.fullmatch(r"(\d+)x(\d+)", value) if key.strip() == "Size" else None
        if size:
            result["Size-1"], result["Size-2"] = size.group(1), size.group(2)
    return result


def params_from_infotext(text: str) -> GenerationParams:
    """``GenerationParams`` from an infotext (for ``--from-png`` on an A1111 image).

    Fields the infotext does not carry keep their defaults. Sampler names are made canonical,
    so an older ``Sampler: DPM++ 2M Karras`` becomes ``DPM++ 2M`` + ``Karras``. ``Model`` is not
    taken (it names the other program's file); read it from ``parse_infotext`` if wanted.
    """
    from brushwork.engine.samplers import resolve_sampler

    info = parse_infotext(text)
    values: dict[str, Any] = {"prompt": info["Prompt"], "negative_prompt": info["Negative prompt"]}
    numbers = {"Steps": ("steps", int), "CFG scale": ("cfg_scale", float), "Seed": ("seed", int),
               "Size-1": ("width", int), "Size-2": ("height", int)}
    for key, (name, convert) in numbers.items():
        if key in info:
            try:
                values[name] = convert(info[key])
            except ValueError:
                message = f"infotext {key} is not a number: {info[key]!r}"
                raise InvalidParameter(message, field=name) from None
    if "Sampler" in info:
        sampler, schedule = resolve_sampler(info["Sampler"], info.get("Schedule type"))
        values.update(sampler=sampler, scheduler=schedule)
    for key, name in (("Lora hashes", "lora_hashes"), ("TI hashes", "ti_hashes")):
        if key in info:
            values[name] = _name_hashes(info[key], key)
    return GenerationParams.build(**values)


def _name_hashes(text: str, key: str) -> dict[str, str]:
    """``"name: hash, name: hash"`` (A1111's ``Lora hashes`` / ``TI hashes``) → ``{name: hash}``."""
    out = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, digest = item.rpartition(":")
        if not sep or not name.strip() or not re.fullmatch(r"[0-9a-fA-F]{12}", digest.strip()):
            raise InvalidParameter(f"infotext {key}: {item!r} is not 'name: 12-hex hash'", field=key)
        out[name.strip()] = digest.strip().lower()
    return out


def save_png(image, path: str | os.PathLike, infotext: str, params_json: str) -> Path:
    """Write ``image`` as PNG with ``parameters`` and ``brushwork`` text chunks, atomically and exclusively.

    The file appears complete or not at all (a temporary file in the same folder, then a hard link to
    ``path``), and an existing file is never replaced: ``FileExistsError`` if ``path`` exists, so two
    processes sharing a folder cannot overwrite each other. The bytes depend only on the inputs: no
    time chunk is written. ``path`` is used as given; callers pass it through ``paths.safe_join`` first.
    """
    from PIL.PngImagePlugin import PngInfo

    try:
        if not isinstance(json.loads(params_json), dict):
            raise ValueError
    except ValueError:
        raise InvalidParameter("params_json must be a JSON object", field="params_json") from None
    info = PngInfo()
    info.add_text("parameters", infotext)
    info.add_text("brushwork", params_json)

    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            image.save(handle, format="PNG", pnginfo=info, optimize=False)
            handle.flush()
            os.fsync(handle.fileno())
        _publish(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _publish(tmp: Path, path: Path) -> None:
    """Give the finished ``tmp`` the name ``path`` unless that name exists (then ``FileExistsError``)."""
    try:
        os.link(tmp, path)  # atomic, and fails if path exists
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: create the name exclusively, then copy
        with open(path, "xb") as out, open(tmp, "rb") as src:
            shutil.copyfileobj(src, out)
            out.flush()
            os.fsync(out.fileno())


def read_png_info(path: str | os.PathLike) -> dict[str, Any]:
    """``{"parameters": str | None, "brushwork": dict | None}`` from a PNG's text chunks.

    Raises ``NotFound`` for a missing file and ``InvalidParameter`` for anything that is not a
    readable PNG, or whose ``brushwork`` chunk is not a JSON object.
    """
    from PIL import Image

    path = Path(path)
    try:
        with open(path, "rb") as handle:
            if handle.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
                raise InvalidParameter(f"not a PNG file: {path}", field="path")
            handle.seek(0)
            with Image.open(handle, formats=["PNG"]) as image:
                chunks = dict(image.text)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        raise NotFound(f"no such file: {path}", field="path") from None
    except InvalidParameter:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, zlib.error, Image.DecompressionBombError) as exc:
        message = f"cannot read PNG {path}: {type(exc).__name__}: {exc}"
        raise InvalidParameter(message, field="path") from None

    own = chunks.get("brushwork")
    if own is not None:
        try:
            own = json.loads(own)
        except json.JSONDecodeError:
            own = None
        if not isinstance(own, dict):
            message = f"the brushwork chunk of {path} is not a JSON object"
            raise InvalidParameter(message, field="path")
    return {"parameters": chunks.get("parameters"), "brushwork": own}
