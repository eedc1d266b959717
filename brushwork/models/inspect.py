"""``inspect_model``: what a file or folder is, by content; optionally its hashes.

Hashes:
- a single file: ``sha256`` of its bytes; ``short_hash`` is the first 10 hex characters, which is
  what A1111 shows as the model hash and writes into PNG parameters (``Model hash: …``);
- a diffusers folder: ``sha256`` of a manifest with one line ``<relative/posix/path>\\t<size>\\t
  <sha256 of the file>\\n`` per file, sorted by path, leaving out ``README.md`` and hidden files
  and folders (so editing the model card does not change the model's identity). ``hash_scope``
  in the output says which of the two was hashed.

Without ``hash=True`` a safetensors file is read only up to the end of its header (capped), so
inspecting a 7 GB checkpoint is instant.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from pathlib import Path

from brushwork.errors import ModelFileError
from brushwork.models.formats import (
    Sniffed,
    component_weight_files,
    human_size,
    pickle_refusal,
    read_json,
    sniff,
)
from brushwork.models.kinds import WIDTH_TO_BASE, classify
from brushwork.models.modelcard import read_card

CHUNK = 4 * 1024 * 1024
FOLDER_HASH_SCOPE = "diffusers-folder manifest (path, size, sha256 of every file except README.md and hidden ones)"


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def folder_files(folder: Path) -> list[Path]:
    """The files that make up a diffusers folder's identity (see the module docstring)."""
    out = []
    for f in folder.rglob("*"):
        rel = f.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts) or rel.as_posix() == "README.md":
            continue
        if f.is_file():
            out.append(f)
    return sorted(out, key=lambda f: f.relative_to(folder).as_posix())


def sha256_folder(folder: Path, file_hash=sha256_file) -> str:
    h = hashlib.sha256()
    for f in folder_files(folder):
        h.update(f"{f.relative_to(folder).as_posix()}\t{f.stat().st_size}\t{file_hash(f)}\n".encode())
    return h.hexdigest()


def sha256_of(path: Path) -> tuple[str, str]:
    """``(sha256, hash_scope)`` of a file or a diffusers folder."""
    if path.is_dir():
        return sha256_folder(path), FOLDER_HASH_SCOPE
    return sha256_file(path), "file"


def inspect_model(path: str | os.PathLike, *, hash: bool = False, allow_pickle: bool = False) -> dict:
    """Describe a model file or folder, deciding everything from its content.

    Args:
        path: a single file (any name) or a diffusers folder.
        hash: also compute ``sha256`` and the A1111 ``short_hash`` (reads the whole file).
        allow_pickle: read a pickle's tensor names with ``torch.load(weights_only=True)``;
            without it a pickle is refused with ``ModelFileError``.

    Returns a JSON-able dict: ``path, name, format, kind, base, architecture, size,
    size_human`` (+ ``sha256, short_hash, hash_scope`` with ``hash``; ``card`` when a model card
    sits next to it; ``metadata`` for safetensors).
    """
    p = Path(path)
    s = sniff(p)
    out: dict = {"path": str(p.resolve()), "name": p.name, "format": s.format}
    if s.format == "safetensors":
        kind, base, arch = classify(s.tensors)
        out["metadata"] = {k: (v if len(v) <= 200 else v[:200] + "…") for k, v in sorted(s.metadata.items())[:50]}
        if kind in ("lora", "textual-inversion"):
            from brushwork.models.networks import metadata_license, network_base

            base = network_base(base, arch, s.metadata)
            if metadata_license(s.metadata):
                out["card"] = {"license": metadata_license(s.metadata), "base_model": s.metadata.get(
                    "brushwork.base_model"), "tags": [], "brushwork": {}, "card": "safetensors metadata"}
    elif s.format == "pickle":
        kind, base, arch = _inspect_pickle(s, allow_pickle)
    elif s.format == "diffusers-folder":
        kind, base, arch = _inspect_folder(p, allow_pickle)
    else:
        kind, base, arch = "unknown", None, {}
    out.update({"kind": kind, "base": base, "architecture": arch, "size": s.size, "size_human": human_size(s.size)})
    card = read_card(p) if "card" not in out else {}
    if card:
        out["card"] = card
    if hash:
        digest, scope = sha256_of(p)
        out.update({"sha256": digest, "short_hash": digest[:10], "hash_scope": scope})
    return out


def _inspect_pickle(s: Sniffed, allow_pickle: bool) -> tuple[str, str | None, dict]:
    if not allow_pickle:
        raise pickle_refusal(s)
    from brushwork.models.tensors import read_state_dict, shapes_of

    tensors, extras = read_state_dict(s, allow_pickle=True)
    kind, base, arch = classify(shapes_of(tensors))
    arch["pickle"] = {"container": s.container, "read_with": "torch.load(weights_only=True)"}
    if "global_step" in extras:
        arch["global_step"] = extras["global_step"]
    return kind, base, arch


def _inspect_folder(p: Path, allow_pickle: bool) -> tuple[str, str | None, dict]:
    if (p / "model_index.json").is_file():
        index = read_json(p / "model_index.json")
        components = sorted(k for k, v in index.items() if isinstance(v, list) and len(v) == 2 and v[0])
        params, dtypes, pickles = _folder_weights(p, components, allow_pickle)
        unet = read_json(p / "unet" / "config.json") if (p / "unet" / "config.json").is_file() else {}
        width = unet.get("cross_attention_dim")
        cls = index.get("_class_name")
        kind = folder_kind(p, index, unet)
        arch = {
            "layout": "diffusers", "pipeline": cls, "components": components, "cross_attention_dim": width,
            "parameters": params, "dtype": dtypes.most_common(1)[0][0] if dtypes else None, "dtypes": dict(dtypes),
        }
        if pickles:
            arch["pickled_weights"] = pickles
        return kind, (kind if kind in ("sd1", "sd2", "sdxl") else None), arch
    config = read_json(p / "config.json")
    params, dtypes, pickles = _folder_weights(p, [""], allow_pickle)
    cls = config.get("_class_name") or (config.get("architectures") or [None])[0]
    arch = {"layout": "diffusers", "class": cls, "parameters": params,
            "dtype": dtypes.most_common(1)[0][0] if dtypes else None}
    if cls == "AutoencoderKL":
        arch["latent_channels"] = config.get("latent_channels")
        return "vae", None, arch
    if cls == "ControlNetModel":
        width = config.get("cross_attention_dim")
        arch["cross_attention_dim"] = width
        base = "sdxl" if config.get("addition_embed_type") == "text_time" else WIDTH_TO_BASE.get(width)
        return "controlnet", base, arch
    return "unknown", None, arch


def folder_kind(p: Path, index: dict, unet: dict) -> str:
    """sd1 / sd2 / sdxl for a diffusers pipeline folder, from its configs."""
    width = unet.get("cross_attention_dim")
    cls = index.get("_class_name", "")
    if isinstance(width, int) and width in WIDTH_TO_BASE:
        return WIDTH_TO_BASE[width]
    if cls.startswith("StableDiffusionXL"):
        return "sdxl"
    if cls.startswith("StableDiffusion"):
        te = p / "text_encoder" / "config.json"
        if te.is_file() and read_json(te).get("hidden_act") == "gelu":
            return "sd2"
        return "sd1"
    return "unknown"


def _folder_weights(p: Path, components: list[str], allow_pickle: bool) -> tuple[int, Counter, list[str]]:
    params = 0
    dtypes: Counter = Counter()
    pickles = []
    for comp in components:
        sub = p / comp if comp else p
        if not sub.is_dir():
            continue
        for f in component_weight_files(sub):
            s = sniff(f)
            if s.format == "pickle":
                if not allow_pickle:
                    raise pickle_refusal(s)
                pickles.append(f.relative_to(p).as_posix())
            elif s.format == "safetensors":
                for info in s.tensors.values():
                    n = 1
                    for d in info["shape"]:
                        n *= d
                    params += n
                    dtypes[info["dtype"]] += n
            elif f.suffix == ".safetensors":
                raise ModelFileError(f"{f.relative_to(p)}: named .safetensors but its content is {s.format}")
    return params, dtypes, pickles
