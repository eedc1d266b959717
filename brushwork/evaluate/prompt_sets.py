"""Prompt files for the ``eval`` commands: JSONL with ``prompt``, ``category`` and optional ``unseen``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from brushwork.errors import InvalidParameter, PromptError
from brushwork.jsonl import read_jsonl
from brushwork.paths import package_data
from brushwork.world.grammar import Spec, parse

GENEVAL_CATEGORIES = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
EXTRA_CATEGORIES = ("absolute_position",)
DEFAULT_PROMPTS = package_data("evaluate", "prompts", "shapes_bench.jsonl")


@dataclass(frozen=True)
class BenchPrompt:
    prompt: str
    category: str
    unseen: bool
    spec: Spec


def load_prompts(path: str | Path | None = None, limit: int | None = None) -> list[BenchPrompt]:
    """Read and validate a prompt file; a bad line raises with its line number and reason."""
    path = Path(path) if path else DEFAULT_PROMPTS
    out = []
    for i, row in read_jsonl(path, "prompt file"):
        if not isinstance(row.get("prompt"), str):
            raise InvalidParameter(f"{path}:{i}: each line needs a string 'prompt'")
        category = row.get("category")
        if category not in GENEVAL_CATEGORIES + EXTRA_CATEGORIES:
            raise InvalidParameter(f"{path}:{i}: unknown category {category!r}; expected one of "
                                   + ", ".join(GENEVAL_CATEGORIES + EXTRA_CATEGORIES))
        try:
            spec = parse(row["prompt"])
        except PromptError as exc:
            raise PromptError(f"{path}:{i}: {exc}") from None
        out.append(BenchPrompt(row["prompt"], category, bool(row.get("unseen", False)), spec))
        if limit and len(out) >= limit:
            break
    if not out:
        raise InvalidParameter(f"{path}: no prompts")
    return out
