"""The brushwork home, and the one ``safe_join`` that every user-supplied path goes through."""

from __future__ import annotations

import os
from pathlib import Path

from brushwork.errors import UnsafePath


def brushwork_home() -> Path:
    """``$BRUSHWORK_HOME``, or the platform's user data directory for brushwork."""
    env = os.environ.get("BRUSHWORK_HOME")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("brushwork", appauthor=False))


def package_data(*parts: str) -> Path:
    """A file shipped inside the package (configs, prompt sets, the bundled model)."""
    return Path(__file__).resolve().parent.joinpath(*parts)


def hide_paths(text: str, roots) -> str:
    """``text`` with every path under one of ``roots`` replaced by its last component, for messages
    that leave the machine (server errors name the model or file, never where it lives)."""
    import re

    names = set()
    for root in roots:
        if root is None:
            continue
        names |= {str(Path(root)), str(Path(root).resolve())}
    for name in sorted((n for n in names if n not in ("/", ".")), key=len, reverse=True):
        text = re.sub(re.escape(name) + r"(/[^\s'\"),;]*)?", lambda m: Path(m.group(0)).name or m.group(0), text)
    return text


def server_roots(*extra) -> list:
    """The folders a server's messages must not reveal: its own, the package, Python's, the user's home."""
    import sys

    return [*extra, package_data(), sys.prefix, sys.base_prefix, Path.home(), Path.cwd()]


def safe_join(root: str | os.PathLike, name: str) -> Path:
    """Resolve ``name`` inside ``root`` or raise ``UnsafePath``.

    Refuses empty names, absolute paths, ``..`` components, NUL bytes, and anything (a symlink
    included) whose resolved location falls outside the resolved ``root``.
    """
    if not isinstance(name, str) or not name.strip():
        raise UnsafePath("empty name")
    if "\x00" in name:
        raise UnsafePath("name contains a NUL byte")
    pure = Path(name)
    if pure.is_absolute() or name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafePath(f"absolute path not allowed here: {name!r}")
    if any(part == ".." for part in Path(name.replace("\\", "/")).parts):
        raise UnsafePath(f"'..' not allowed in {name!r}")
    root_resolved = Path(root).resolve()
    target = (root_resolved / pure).resolve()
    if target != root_resolved and root_resolved not in target.parents:
        raise UnsafePath(f"{name!r} points outside its folder")  # the server path is not shown to clients
    return target
