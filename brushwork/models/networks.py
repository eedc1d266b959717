"""LoRA and textual-inversion files ("extra networks", as A1111 calls them): where they are, what they are for.

A name finds a file in this order: a registry entry of that kind (``brushwork models add FILE``), a file named
``NAME.safetensors`` in ``$BRUSHWORK_HOME/loras/`` (embeddings: ``embeddings/``), then, only where paths are
allowed (the local CLI and Python API, never the server), a file path. Pickled files (``.pt``/``.ckpt``/``.bin``)
are found too, and loading them is refused unless pickles are allowed (then ``torch.load(weights_only=True)``).

Each file has:
- ``hash12``: A1111's short hash, written in the PNG ``Lora hashes`` / ``TI hashes`` text: the first 12 hex
  digits of the sha256 of the bytes after the safetensors header (the "AddNet" hash; a pickle: the whole file);
- ``base``: the model family it was made for: ``sd1`` / ``sd2`` / ``sdxl`` from its shapes or kohya's
  ``ss_base_model_version``, or ``brushwork-shapes`` for the bundled model's family (cross-attention width 128);
- ``license`` from the safetensors metadata (``modelspec.license``) or the registry entry.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from brushwork.errors import InvalidParameter, ModelFileError, NotFound
from brushwork.models.formats import sniff
from brushwork.models.kinds import WIDTH_TO_BASE, classify

KINDS = {"lora": "loras", "textual-inversion": "embeddings"}  # kind → folder in the brushwork home
WHAT = {"lora": "LoRA", "textual-inversion": "embedding"}
SUFFIXES = (".safetensors", ".pt", ".ckpt", ".bin")
SHAPES_FAMILY = "brushwork-shapes"  # the bundled model and every model of its width
FAMILY_WIDTHS = {**WIDTH_TO_BASE, 128: SHAPES_FAMILY}
KOHYA_BASES = {"sd_v1": "sd1", "sd_v2": "sd2", "sd_v2_768_v": "sd2", "sdxl_base_v1-0": "sdxl", "sdxl": "sdxl",
               SHAPES_FAMILY: SHAPES_FAMILY}
FAMILY_TO_KOHYA = {"sd1": "sd_v1", "sd2": "sd_v2", "sdxl": "sdxl_base_v1-0", SHAPES_FAMILY: SHAPES_FAMILY}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")


@dataclass(frozen=True)
class NetworkFile:
    """One LoRA or embedding file, described from its header (no weights read)."""

    kind: str  # lora | textual-inversion
    name: str
    path: Path
    hash12: str
    base: str | None
    license: str
    size: int
    format: str  # safetensors | pickle
    architecture: dict = field(default_factory=dict, hash=False, compare=False)
    metadata: dict = field(default_factory=dict, hash=False, compare=False)

    @property
    def what(self) -> str:
        return WHAT[self.kind]


def network_dir(home: str | os.PathLike | None, kind: str) -> Path:
    from brushwork.paths import brushwork_home

    return (Path(home) if home is not None else brushwork_home()) / KINDS[kind]


def short_hash(path: Path, fmt: str) -> str:
    """A1111's 12-hex hash: sha256 of a safetensors file's bytes after its header (AddNet), else of the file."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if fmt == "safetensors":
            n = int.from_bytes(f.read(8), "little")
            f.seek(8 + n)
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:12]


def describe(path: Path, name: str, *, kind: str | None = None, license: str | None = None) -> NetworkFile:
    """A ``NetworkFile`` for ``path``; ``ModelFileError`` when it is not a LoRA/embedding (or not ``kind``)."""
    from brushwork.models.licenses import normalize_license

    s = sniff(path)
    if s.format == "safetensors":
        found, base, arch = classify(s.tensors)
        meta = dict(s.metadata)
    elif s.format == "pickle":
        found = kind or ("textual-inversion" if path.suffix.lower() == ".pt" and kind is None else "lora")
        base, arch, meta = None, {}, {}
    else:
        raise ModelFileError(f"{path.name}: not a LoRA or embedding file (format {s.format})")
    if found not in KINDS or (kind is not None and found != kind):
        want = WHAT[kind] if kind else "LoRA or embedding"
        raise ModelFileError(f"{path.name}: not a {want} file (it looks like: {found})")
    base = network_base(base, arch, meta)
    lic = license or metadata_license(meta)
    return NetworkFile(found, name, path, short_hash(path, s.format), base, normalize_license(lic), s.size, s.format,
                       arch, meta)


def network_base(base: str | None, arch: dict, meta: dict) -> str | None:
    """A LoRA's or embedding's family: kohya's ``ss_base_model_version`` (or ``ss_v2``), else what its shapes
    say (``kinds.classify``), else its width (128: ``brushwork-shapes``)."""
    declared = KOHYA_BASES.get(meta.get("ss_base_model_version", ""))
    if declared is None and meta.get("ss_v2") == "True":
        declared = "sd2"
    return declared or base or FAMILY_WIDTHS.get(arch.get("cross_attention_dim") or arch.get("width"))


def metadata_license(meta: dict) -> str | None:
    return meta.get("modelspec.license") or meta.get("license")


def list_networks(kind: str, *, home=None) -> list[NetworkFile]:
    """Every ``kind`` file the registry and the home folder know, by name (a registry entry wins a name)."""
    from brushwork.models.registry import Registry

    out: dict[str, NetworkFile] = {}
    with Registry(home) as reg:
        for e in reg.list():
            if e.kind == kind and e.path.is_file():
                try:
                    out[e.name] = describe(e.path, e.name, kind=kind, license=e.license)
                except (ModelFileError, OSError):
                    continue
    folder = network_dir(home, kind)
    if folder.is_dir():
        for p in sorted(folder.iterdir()):
            if p.suffix.lower() in SUFFIXES and p.is_file() and not p.is_symlink() and _NAME.match(p.stem):
                if p.stem not in out:
                    try:
                        out[p.stem] = describe(p, p.stem, kind=kind)
                    except (ModelFileError, OSError):
                        continue
    return [out[k] for k in sorted(out)]


def network_names(kind: str, *, home=None) -> list[str]:
    """The names ``find_network`` knows for ``kind``, from the registry and the folder (no file is read)."""
    from brushwork.models.registry import Registry

    names = set()
    with Registry(home) as reg:
        names.update(e.name for e in reg.list() if e.kind == kind)
    folder = network_dir(home, kind)
    if folder.is_dir():
        names.update(p.stem for p in folder.iterdir() if p.suffix.lower() in SUFFIXES and _NAME.match(p.stem))
    return sorted(names)


def find_network(kind: str, ref: str, *, home=None, allow_paths: bool = False,
                 want_hash: str | None = None) -> NetworkFile:
    """The file ``ref`` names (see the module docstring). With ``want_hash`` (from a PNG's ``Lora hashes``), the
    file with that hash: by name when its hash matches, else any known file with that hash."""
    from brushwork.models.registry import Registry, check_name

    what = WHAT[kind]
    found: NetworkFile | None = None
    if _NAME.match(ref) and ".." not in ref:
        with Registry(home) as reg:
            entry = reg.get(check_name(ref))
        if entry is not None and entry.kind == kind:
            found = describe(entry.path, entry.name, kind=kind, license=entry.license)
        else:
            found = _in_folder(kind, ref, home)
    if found is None and allow_paths and Path(ref).expanduser().is_file():
        p = Path(ref).expanduser()
        found = describe(p, _stem_name(p), kind=kind)
    if want_hash is not None and (found is None or found.hash12 != want_hash):
        for f in list_networks(kind, home=home):
            if f.hash12 == want_hash:
                return f
        have = "no such file" if found is None else f"the file named {ref!r} has hash {found.hash12}"
        raise NotFound(f"{what} {ref!r}: the image was made with the {what} of hash {want_hash}, and none is known "
                       f"with that hash ({have})")
    if found is None:
        known = ", ".join(f.name for f in list_networks(kind, home=home)) or "none"
        folder = network_dir(home, kind)
        raise NotFound(f"no {what} named {ref!r} (known: {known}; add one with 'brushwork models add FILE' or put it "
                       f"in {folder})")
    return found


def _in_folder(kind: str, name: str, home) -> NetworkFile | None:
    from brushwork.paths import safe_join

    folder = network_dir(home, kind)
    if not folder.is_dir():
        return None
    for suffix in SUFFIXES:
        p = safe_join(folder, name + suffix)
        if p.is_file():
            return describe(p, name, kind=kind)
    return None


def _stem_name(p: Path) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", p.stem).strip("-.")[:128] or "network"


def read_network(f: NetworkFile, *, allow_pickle: bool = False) -> dict:
    """The tensors of ``f`` (a pickle only with ``allow_pickle``, and then with ``weights_only``)."""
    from brushwork.models.tensors import read_state_dict

    tensors, _ = read_state_dict(sniff(f.path), allow_pickle=allow_pickle)
    if not tensors:
        raise ModelFileError(f"{f.path.name}: holds no tensors")
    return tensors


def model_family(pipe, kind: str) -> str:
    """The family a LoRA must be made for to apply to this pipeline: sd1 / sd2 / sdxl, or brushwork-shapes."""
    width = getattr(pipe.unet.config, "cross_attention_dim", None)
    if kind == "sdxl":
        return "sdxl"
    return FAMILY_WIDTHS.get(width, kind)


def check_family(f: NetworkFile, family: str, model_name: str) -> None:
    if f.base is not None and f.base != family:
        raise InvalidParameter(f"{f.what} {f.name!r} is for {f.base} models; {model_name!r} is {family}",
                               field=f.kind)
