"""``models convert FILE --to safetensors``: turn a pickled checkpoint into a safetensors file.

The pickle is read under the same rule as loading: refused unless ``allow_pickle=True``, and then
only through ``torch.load(weights_only=True)``. Only tensors are written; ``global_step`` and other
plain values from the pickle are kept as safetensors metadata. The output is written to a
temporary name and renamed into place, so a failed conversion never leaves half a file.
"""

from __future__ import annotations

import os
from pathlib import Path

from brushwork.errors import InvalidParameter, ModelFileError
from brushwork.models.formats import sniff
from brushwork.models.tensors import read_state_dict


def default_output(src: Path) -> Path:
    if src.suffix.lower() == ".safetensors":  # a pickle wearing a safetensors name
        return src.with_name(src.stem + ".converted.safetensors")
    return src.with_suffix(".safetensors")


def convert_to_safetensors(src: str | os.PathLike, *, out: str | os.PathLike | None = None,
                           allow_pickle: bool = False, force: bool = False) -> dict:
    """Convert the pickle ``src`` to safetensors at ``out`` (default: next to it). Returns a summary."""
    from safetensors.torch import save_file

    from brushwork.models.inspect import sha256_file

    src = Path(src)
    s = sniff(src)
    if s.format == "safetensors":
        raise InvalidParameter(f"{src.name} is already a safetensors file; nothing to convert")
    if s.format != "pickle":
        raise ModelFileError(f"{src.name}: only pickled checkpoints can be converted (this is {s.format})")
    dest = Path(out) if out is not None else default_output(src)
    if dest.resolve() == src.resolve():
        raise InvalidParameter("the output would overwrite the input; choose another -o")
    if dest.exists() and not force:
        raise InvalidParameter(f"{dest} exists; pass --force to overwrite it")
    tensors, extras = read_state_dict(s, allow_pickle=allow_pickle)
    if not tensors:
        raise ModelFileError(f"{src.name}: the pickle holds no tensors")
    emb = [k for k in tensors if k.startswith("string_to_param.")]
    if emb and len(emb) == 1:  # A1111 textual inversion .pt -> A1111 safetensors naming
        tensors = {"emb_params": tensors[emb[0]]}
    seen: set[int] = set()
    clean = {}
    for k, t in tensors.items():
        t = t.detach().contiguous()
        ptr = t.untyped_storage().data_ptr()
        if ptr in seen:  # safetensors refuses shared storage: copy the duplicates
            t = t.clone()
        seen.add(ptr)
        clean[k] = t
    metadata = {"format": "pt", "brushwork.converted_from": src.name, "brushwork.source_sha256": sha256_file(src)}
    metadata.update({f"brushwork.{k}": str(v) for k, v in extras.items() if len(str(v)) < 200})
    tmp = dest.with_name(dest.name + ".partial")
    try:
        save_file(clean, str(tmp), metadata=metadata)
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return {"source": str(src), "output": str(dest), "tensors": len(clean), "size": dest.stat().st_size,
            "sha256": sha256_file(dest)}
