"""What a model file *is*, decided from its bytes, never from its name.

``sniff(path)`` reads at most the first few kilobytes (and, for safetensors, the JSON header,
capped at ``MAX_HEADER``) and answers one of: ``safetensors``, ``pickle`` (a plain pickle, or a
``torch.save`` zip holding ``data.pkl``), ``gguf``, ``diffusers-folder`` or ``unknown``. Files that
are recognisably *not* a model (a git-lfs pointer, an HTML page, a zip of something else, a
truncated file) raise ``ModelFileError`` with a one-line explanation. Nothing here unpickles.
"""

from __future__ import annotations

import json
import os
import pickletools
import struct
import zipfile
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path

from brushwork.errors import ModelFileError, NotFound

MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit; a 7 GB SDXL file has a ~200 KB header
HEAD_BYTES = 64 * 1024

# safetensors dtype name -> bytes per element
ST_DTYPES = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
    "U16": 2, "U32": 4, "U64": 8, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1,
    "F4": 1, "F6_E2M3": 1, "F6_E3M2": 1, "C64": 8,
}


@dataclass
class Sniffed:
    """The result of looking at a path's content."""

    path: Path
    format: str  # safetensors | pickle | gguf | diffusers-folder | unknown
    size: int  # bytes (a folder: sum of its files)
    container: str | None = None  # pickle: "torch-zip" or "plain-pickle"
    tensors: dict[str, dict] = field(default_factory=dict)  # safetensors: name -> {dtype, shape}
    metadata: dict[str, str] = field(default_factory=dict)  # safetensors __metadata__


def human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.2f} {unit}"
        n /= 1000
    return f"{n} B"  # unreachable


def sniff(path: str | os.PathLike) -> Sniffed:
    """Decide what ``path`` holds from its content. Raises ``ModelFileError`` for non-models."""
    p = Path(path)
    if not p.exists():
        raise NotFound(f"no such file or folder: {p}")
    if p.is_dir():
        return _sniff_folder(p)
    if not p.is_file():
        raise ModelFileError(f"{p.name}: not a regular file")
    size = p.stat().st_size
    if size == 0:
        raise ModelFileError(f"{p.name}: the file is empty (0 bytes)")
    with open(p, "rb") as f:
        head = f.read(HEAD_BYTES)
    return _sniff_bytes(p, head, size)


def _sniff_bytes(p: Path, head: bytes, size: int) -> Sniffed:
    name = p.name
    st = _sniff_safetensors(p, head, size)
    if st is not None:
        return st
    text = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if text.startswith(b"version https://git-lfs"):
        raise ModelFileError(
            f"{name}: this is a git-lfs pointer ({size} bytes of text), not the model; "
            "fetch the real file with 'git lfs pull' in its repository"
        )
    low = text[:1024].lower()
    if low.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or (
        low.startswith(b"<") and b"<html" in low
    ):
        raise ModelFileError(
            f"{name}: this is an HTML page ({size} bytes), not a model; the download probably "
            "returned a log-in or error page"
        )
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _sniff_zip(p, size)
    if head.startswith(b"GGUF"):
        return Sniffed(p, "gguf", size)
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return Sniffed(p, "pickle", size, container="plain-pickle")
    if _looks_like_text_pickle(head):
        return Sniffed(p, "pickle", size, container="plain-pickle")
    return Sniffed(p, "unknown", size)


def _sniff_zip(p: Path, size: int) -> Sniffed:
    try:
        with zipfile.ZipFile(p) as z:
            names = z.namelist()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise ModelFileError(f"{p.name}: a damaged or truncated zip archive ({exc})") from None
    if any(n == "data.pkl" or n.endswith("/data.pkl") for n in names):
        return Sniffed(p, "pickle", size, container="torch-zip")
    shown = ", ".join(names[:3]) + (", …" if len(names) > 3 else "")
    raise ModelFileError(
        f"{p.name}: a zip archive of {len(names)} file(s) ({shown or 'empty'}), not a model file; "
        "unpack it and point brushwork at the model inside"
    )


def _sniff_safetensors(p: Path, head: bytes, size: int) -> Sniffed | None:
    """Parse a safetensors header, or return None when the bytes are not safetensors at all."""
    if len(head) < 9 or head[8:9] != b"{":
        return None
    (n,) = struct.unpack("<Q", head[:8])
    if n < 2:
        return None
    if n > MAX_HEADER:
        raise ModelFileError(
            f"{p.name}: safetensors header of {n} bytes exceeds the {MAX_HEADER // 2**20} MiB cap; refusing to read it"
        )
    if 8 + n > size:
        raise ModelFileError(
            f"{p.name}: truncated safetensors file: its header alone needs {8 + n} bytes, "
            f"the file has {size}"
        )
    raw = head[8 : 8 + n] if 8 + n <= len(head) else _read_range(p, 8, n)
    try:
        header = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ModelFileError(f"{p.name}: corrupt safetensors header (not valid JSON)") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{p.name}: corrupt safetensors header (not a JSON object)")
    metadata = header.pop("__metadata__", None) or {}
    data_len = size - 8 - n
    tensors: dict[str, dict] = {}
    end_max = 0
    for key, info in header.items():
        try:
            dtype, shape, (start, end) = info["dtype"], list(info["shape"]), info["data_offsets"]
            count = 1
            for d in shape:
                count *= int(d)
            want = count * ST_DTYPES[dtype] if dtype not in ("F4", "F6_E2M3", "F6_E3M2") else None
        except (KeyError, TypeError, ValueError):
            raise ModelFileError(f"{p.name}: corrupt safetensors header (bad entry {key!r})") from None
        if not (0 <= start <= end) or (want is not None and end - start != want):
            raise ModelFileError(f"{p.name}: corrupt safetensors header (offsets of {key!r})")
        end_max = max(end_max, end)
        tensors[key] = {"dtype": dtype, "shape": tuple(int(d) for d in shape)}
    if end_max > data_len:
        raise ModelFileError(
            f"{p.name}: truncated safetensors file: the header describes {end_max} bytes of "
            f"tensors, the file holds {data_len}; download it again"
        )
    meta = {str(k): str(v) for k, v in metadata.items()} if isinstance(metadata, dict) else {}
    return Sniffed(p, "safetensors", size, tensors=tensors, metadata=meta)


def _read_range(p: Path, offset: int, n: int) -> bytes:
    with open(p, "rb") as f:
        f.seek(offset)
        data = f.read(n)
    if len(data) != n:
        raise ModelFileError(f"{p.name}: truncated while reading its header")
    return data


_TEXT_PICKLE_STARTS = {"MARK", "GLOBAL", "EMPTY_DICT", "EMPTY_LIST", "DICT", "LIST", "NONE", "INST"}


def _looks_like_text_pickle(head: bytes) -> bool:
    """Protocol 0/1 pickles have no magic number: walk their opcodes without executing them."""
    count = 0
    try:
        for i, (op, _arg, _pos) in enumerate(pickletools.genops(BytesIO(head))):
            if i == 0 and op.name not in _TEXT_PICKLE_STARTS:
                return False
            count += 1
            if op.name == "STOP" or count >= 8:
                return True
    except Exception:  # noqa: BLE001 - any parse failure simply means "not a pickle"
        return False
    return False


def pickle_refusal(s: Sniffed) -> ModelFileError:
    """The error for a pickle met without ``allow_pickle``: says why, and how to convert."""
    what = "a torch.save zip holding a pickle" if s.container == "torch-zip" else "a Python pickle"
    misnamed = ""
    if s.path.suffix.lower() in (".safetensors", ".gguf"):
        misnamed = f" although its name ends in {s.path.suffix}"
    return ModelFileError(
        f"{s.path.name} is {what}{misnamed}; unpickling can run arbitrary code, so brushwork "
        f"refuses it by default. Convert it once with 'brushwork models convert {s.path} "
        "--to safetensors --allow-pickle' (tensors only, via torch.load(weights_only=True)), "
        "or pass --allow-pickle / allow_pickle=True"
    )


# ---------------------------------------------------------------- folders

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".ckpt", ".pt", ".pth")


def _sniff_folder(p: Path) -> Sniffed:
    size = sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    if (p / "model_index.json").is_file() or (p / "config.json").is_file():
        return Sniffed(p, "diffusers-folder", size)
    raise ModelFileError(
        f"{p.name}/: a folder without model_index.json or config.json is not a diffusers model"
    )


def component_weight_files(folder: Path) -> list[Path]:
    """The weight files diffusers/transformers would load from one component folder.

    safetensors are preferred (``use_safetensors``); pickled ``.bin`` files count only when a
    component has no safetensors at all.
    """
    files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix in WEIGHT_SUFFIXES)
    st = [f for f in files if f.suffix == ".safetensors"]
    return st or files


def read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path.parent.name}/{path.name}: unreadable JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ModelFileError(f"{path.parent.name}/{path.name}: not a JSON object")
    return data
