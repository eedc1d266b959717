"""Held-out combinations: colour–shape (and optional shape–relation–shape) pairs kept out of training.

File format: see ``holdout.txt`` next to this module (the default model's list).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from brushwork.errors import InvalidParameter
from brushwork.paths import package_data
from brushwork.world import vocab

DEFAULT_HOLDOUT = package_data("world", "holdout.txt")


@dataclass(frozen=True)
class Holdout:
    pairs: frozenset[tuple[str, str]] = frozenset()  # (colour, shape)
    relations: frozenset[tuple[str, str, str]] = field(default=frozenset())  # (shape, relation, shape)

    def allows(self, colour: str, shape: str) -> bool:
        return (colour, shape) not in self.pairs

    def allows_relation(self, a: str, relation: str, b: str) -> bool:
        if (a, relation, b) in self.relations:
            return False
        return (b, vocab.SWAPPED_RELATION[relation], a) not in self.relations


NO_HOLDOUT = Holdout()


def load_holdout(path: str | Path | None = None) -> Holdout:
    """Read a holdout file (default: the default model's). Bad lines raise with their number."""
    path = Path(path) if path else DEFAULT_HOLDOUT
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InvalidParameter(f"cannot read holdout file {path}: {exc.strerror}") from None
    pairs, relations = set(), set()
    for i, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].lower().split()
        if not words:
            continue
        if len(words) == 2 and words[0] in vocab.PALETTE and words[1] in vocab.SHAPES:
            pairs.add((words[0], words[1]))
            continue
        rel = " ".join(words[1:-1])
        if len(words) >= 3 and words[0] in vocab.SHAPES and words[-1] in vocab.SHAPES and rel in vocab.RELATIONS:
            relations.add((words[0], rel, words[-1]))
            continue
        raise InvalidParameter(f"{path}:{i}: expected '<colour> <shape>' or '<shape> <relation> <shape>', got {line.strip()!r}")
    return Holdout(frozenset(pairs), frozenset(relations))
