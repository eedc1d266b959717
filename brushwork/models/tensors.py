"""Reading tensors out of a model file: safetensors memory-mapped, pickles only on request.

A pickle is read only when the caller passes ``allow_pickle=True``, and then only with
``torch.load(weights_only=True)`` (torch >= 2.6: earlier versions had the CVE-2025-32434 bypass).
There is no fallback to full unpickling anywhere in brushwork.
"""

from __future__ import annotations

from typing import Any

from brushwork.errors import ModelFileError
from brushwork.models.formats import Sniffed, pickle_refusal

MIN_TORCH_FOR_PICKLES = (2, 6)


def read_state_dict(s: Sniffed, *, allow_pickle: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """Return ``(tensors, extras)`` of the single file ``s``.

    ``tensors`` maps names to tensors (memory-mapped where the format allows, so a checkpoint is
    not held twice in RAM); ``extras`` holds non-tensor values found in a pickle (``global_step``).
    """
    if s.format == "safetensors":
        from safetensors.torch import load_file

        extras: dict[str, Any] = {}
        step = s.metadata.get("brushwork.global_step")  # kept by 'models convert' (SD2 512 vs 768)
        if step is not None and step.isdigit():
            extras["global_step"] = int(step)
        try:
            return load_file(str(s.path)), extras
        except Exception as exc:  # noqa: BLE001 - the header was valid; the body is not
            raise ModelFileError(f"{s.path.name}: unreadable safetensors body ({_one_line(exc)})") from None
    if s.format == "pickle":
        if not allow_pickle:
            raise pickle_refusal(s)
        return _flatten(load_pickle_weights_only(s))
    if s.format == "gguf":
        raise ModelFileError(f"{s.path.name}: GGUF files can be inspected but not loaded by brushwork yet")
    raise ModelFileError(f"{s.path.name}: not a model file brushwork recognises (format {s.format})")


def load_pickle_weights_only(s: Sniffed) -> Any:
    """``torch.load(weights_only=True)``; any refusal becomes a one-line ``ModelFileError``."""
    import torch

    version = tuple(int(x) for x in torch.__version__.split("+")[0].split(".")[:2])
    if version < MIN_TORCH_FOR_PICKLES:
        raise ModelFileError(
            f"{s.path.name}: reading pickles needs torch >= 2.6 (weights_only was bypassable before, "
            f"CVE-2025-32434); this is torch {torch.__version__}"
        )
    try:
        return torch.load(
            str(s.path), map_location="cpu", weights_only=True, mmap=s.container == "torch-zip"
        )
    except Exception as exc:  # noqa: BLE001 - weights_only refusals come as several types
        raise ModelFileError(
            f"{s.path.name}: torch.load(weights_only=True) refused this pickle, so it was not "
            f"loaded ({_one_line(exc)})"
        ) from None


def _flatten(obj: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    import torch

    extras: dict[str, Any] = {}
    while isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        extras.update({k: v for k, v in obj.items() if isinstance(v, (int, float, str, bool))})
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise ModelFileError(f"the pickle holds a {type(obj).__name__}, not a dictionary of tensors")
    tensors: dict[str, Any] = {}

    def walk(prefix: str, d: dict) -> None:
        for k, v in d.items():
            key = f"{prefix}{k}"
            if isinstance(v, torch.Tensor):
                tensors[key] = v
            elif isinstance(v, dict):
                walk(key + ".", v)
            elif isinstance(v, (int, float, str, bool)) or v is None:
                extras[key] = v

    walk("", obj)
    return tensors, extras


def shapes_of(tensors: dict[str, Any]) -> dict[str, dict]:
    """``{name: {"dtype": "F16", "shape": (...)}}`` in safetensors' naming, for ``kinds``."""
    names = {
        "torch.float32": "F32", "torch.float16": "F16", "torch.bfloat16": "BF16", "torch.float64": "F64",
        "torch.int64": "I64", "torch.int32": "I32", "torch.int16": "I16", "torch.int8": "I8",
        "torch.uint8": "U8", "torch.bool": "BOOL",
    }
    return {k: {"dtype": names.get(str(t.dtype), str(t.dtype)), "shape": tuple(t.shape)} for k, t in tensors.items()}


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] + ("…" if len(text) > 300 else "")
