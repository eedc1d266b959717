"""Model cards: the YAML front matter of a ``README.md`` next to a model, as on the Hugging Face Hub.

Only ``license``, ``base_model``, ``tags`` and brushwork's own ``brushwork: {native_size,
max_size, prediction_type}`` are read. The YAML is parsed with ``yaml.safe_load`` and the file is
capped in size, so a card cannot do anything but describe.
"""

from __future__ import annotations

from pathlib import Path

MAX_CARD_BYTES = 1024 * 1024


def card_path(model_path: Path) -> Path | None:
    """``README.md`` inside a model folder, or next to a single file."""
    folder = model_path if model_path.is_dir() else model_path.parent
    p = folder / "README.md"
    return p if p.is_file() else None


def read_card(model_path: Path) -> dict:
    """``{"license": str|None, "base_model": str|None, "tags": [..], "brushwork": {..}}`` or ``{}``."""
    p = card_path(model_path)
    if p is None:
        return {}
    try:
        with open(p, "rb") as f:
            text = f.read(MAX_CARD_BYTES).decode("utf-8", errors="replace")
    except OSError:
        return {}
    meta = parse_front_matter(text)
    if not meta:
        return {}
    base = meta.get("base_model")
    if isinstance(base, list):
        base = base[0] if base else None
    tags = meta.get("tags") or []
    if isinstance(tags, str):
        tags = [tags]
    bw = meta.get("brushwork") if isinstance(meta.get("brushwork"), dict) else {}
    out = {
        "license": meta.get("license"),
        "base_model": str(base) if base is not None else None,
        "tags": [str(t) for t in tags if isinstance(t, (str, int, float))],
        "brushwork": {k: bw[k] for k in ("native_size", "max_size", "prediction_type") if k in bw},
        "card": str(p),
    }
    return out


def parse_front_matter(text: str) -> dict:
    import yaml

    text = text.lstrip("\ufeff")
    if not text.startswith("---"):
        return {}
    lines = text.splitlines()
    try:
        end = next(i for i, line in enumerate(lines[1:], 1) if line.strip() == "---")
    except StopIteration:
        return {}
    try:
        data = yaml.safe_load("\n".join(lines[1:end]))
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}
