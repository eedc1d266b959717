"""JSON Lines files (prompt sets, imagefolder metadata), read with errors naming file and line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from brushwork.errors import InvalidParameter


def read_jsonl(path: str | Path, what: str = "file") -> Iterator[tuple[int, dict]]:
    """Yield ``(line_number, object)`` for each non-blank line; a bad line raises ``path:line: why``."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise InvalidParameter(f"cannot read {what} {path}: {exc.strerror}") from None
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidParameter(f"{path}:{i}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise InvalidParameter(f"{path}:{i}: each line must be a JSON object")
        yield i, row
