"""The local model hub: a SQLite registry in the brushwork home, and name → path resolution.

Layout of the home::

    $BRUSHWORK_HOME/registry.sqlite3   this registry (WAL, schema_version table, migrations)
    $BRUSHWORK_HOME/models/            files added with --copy / --link, and files dropped in

Every model name goes through ``check_name`` and every file under the home through
``paths.safe_join``: ``..``, absolute paths where a name is expected, and symlinks that lead out
of the home are refused. A registered in-place entry resolves only to the real path recorded when
it was added (an explicitly added path); if that path now resolves elsewhere it is refused.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from brushwork.errors import InvalidParameter, ModelFileError, NotFound, UnsafePath
from brushwork.paths import brushwork_home, package_data, safe_join
from brushwork.sqlite_schema import migrate, schema_version

BUNDLED_NAME = "default"
DB_NAME = "registry.sqlite3"
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$")

MIGRATIONS = [
    # 1: models and a cache of file hashes
    """
    CREATE TABLE models (
        name TEXT PRIMARY KEY,
        path TEXT NOT NULL,
        storage TEXT NOT NULL,
        format TEXT NOT NULL,
        kind TEXT NOT NULL,
        base TEXT,
        size INTEGER NOT NULL,
        sha256 TEXT,
        short_hash TEXT,
        license TEXT NOT NULL,
        license_source TEXT NOT NULL,
        base_model TEXT,
        tags TEXT NOT NULL DEFAULT '[]',
        architecture TEXT NOT NULL DEFAULT '{}',
        card TEXT NOT NULL DEFAULT '{}',
        source_path TEXT,
        added_at TEXT NOT NULL
    );
    CREATE TABLE file_hashes (
        path TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        mtime_ns INTEGER NOT NULL,
        sha256 TEXT NOT NULL
    );
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


@dataclass
class Entry:
    """One registered model."""

    name: str
    path: Path
    storage: str  # in-place | copy | link | bundled
    format: str
    kind: str
    base: str | None
    size: int
    sha256: str | None
    short_hash: str | None
    license: str
    license_source: str  # card | user | bundled | none
    base_model: str | None
    tags: list
    architecture: dict
    card: dict
    source_path: str | None
    added_at: str

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        d["path"] = str(self.path)
        return d


def check_name(name: str) -> str:
    """A registry name: letters, digits, ``._+-``; never a path."""
    if not isinstance(name, str) or not name:
        raise UnsafePath("empty model name")
    if "/" in name or "\\" in name or name.startswith((".", "~")) or os.path.isabs(name) or ".." in name:
        raise UnsafePath(f"{name!r} is not a model name (no paths, '..' or leading dots)")
    if not _NAME_RE.match(name):
        raise InvalidParameter(f"{name!r} is not a valid model name (letters, digits and ._+- only, at most 128)")
    return name


def name_from_path(path: Path) -> str:
    stem = path.name if path.is_dir() else path.stem
    cleaned = re.sub(r"[^A-Za-z0-9._+-]+", "-", stem).strip("-.") or "model"
    return cleaned[:128]


class Registry:
    """The SQLite registry in ``home`` (``brushwork_home()`` by default). Use as a context manager."""

    def __init__(self, home: str | os.PathLike | None = None):
        self.home = Path(home) if home is not None else brushwork_home()
        self.home.mkdir(parents=True, exist_ok=True)
        self.models_dir = self.home / "models"
        self.models_dir.mkdir(exist_ok=True)
        self.db = sqlite3.connect(self.home / DB_NAME, timeout=30)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self._migrate()

    def __enter__(self) -> "Registry":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.db.close()

    def _migrate(self) -> None:
        migrate(self.db, MIGRATIONS, f"the registry in {self.home}")

    @property
    def schema_version(self) -> int:
        return schema_version(self.db)

    # ------------------------------------------------------------ entries

    def get(self, name: str) -> Entry | None:
        if name == BUNDLED_NAME:
            self.sync_bundled()
        row = self.db.execute("SELECT * FROM models WHERE name = ?", (name,)).fetchone()
        return _entry(row) if row else None

    def list(self) -> list[Entry]:
        self.sync_bundled()
        return [_entry(r) for r in self.db.execute("SELECT * FROM models ORDER BY name")]

    def add(self, path: str | os.PathLike, *, name: str | None = None, license: str | None = None,
            storage: str = "in-place", allow_pickle: bool = False, replace: bool = False,
            hash: bool = True) -> Entry:
        """Inspect ``path`` and record it. ``storage``: in-place (default), copy or link (hard links)."""
        from brushwork.models.inspect import inspect_model
        from brushwork.models.licenses import normalize_license

        src = Path(path).expanduser()
        if not src.exists():
            raise NotFound(f"no such file or folder: {src}")
        name = check_name(name or name_from_path(src))
        if name == BUNDLED_NAME:
            raise InvalidParameter(f"{BUNDLED_NAME!r} is reserved for the bundled model")
        existing = self.get(name)
        if existing and not replace:
            raise InvalidParameter(f"a model named {name!r} is already registered (use --replace, or another --name)")
        info = inspect_model(src, hash=False, allow_pickle=allow_pickle)
        if storage not in ("in-place", "copy", "link"):
            raise InvalidParameter(f"storage must be in-place, copy or link, not {storage!r}")
        if existing and existing.storage in ("copy", "link"):
            self._delete_stored(existing)
        target = self._store(src, name, storage) if storage != "in-place" else src.resolve()
        card = info.get("card", {})
        if license is not None:
            lic, lic_source = normalize_license(license), "user"
        elif card.get("license") is not None:
            lic, lic_source = normalize_license(card["license"]), "card"
        else:
            lic, lic_source = "unknown", "none"
        digest = self.file_hash(target) if hash else None
        entry = Entry(
            name=name, path=target, storage=storage, format=info["format"], kind=info["kind"], base=info["base"],
            size=info["size"], sha256=digest, short_hash=digest[:10] if digest else None, license=lic,
            license_source=lic_source, base_model=card.get("base_model"), tags=card.get("tags", []),
            architecture=info["architecture"], card=card, source_path=str(src.resolve()),
            added_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        )
        self._put(entry)
        return entry

    def remove(self, name: str, *, delete_files: bool = False) -> Entry:
        name = check_name(name)
        if name == BUNDLED_NAME:
            raise InvalidParameter("the bundled model cannot be removed")
        entry = self.get(name)
        if entry is None:
            raise NotFound(f"no model named {name!r} (see 'brushwork models list')")
        with self.db:
            self.db.execute("DELETE FROM models WHERE name = ?", (name,))
        if delete_files and entry.storage in ("copy", "link"):
            self._delete_stored(entry)
        return entry

    def _put(self, e: Entry) -> None:
        with self.db:
            self.db.execute(
                "INSERT OR REPLACE INTO models VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (e.name, str(e.path), e.storage, e.format, e.kind, e.base, e.size, e.sha256, e.short_hash,
                 e.license, e.license_source, e.base_model, json.dumps(e.tags), json.dumps(e.architecture),
                 json.dumps(e.card), e.source_path, e.added_at),
            )

    def _store(self, src: Path, name: str, storage: str) -> Path:
        dest = safe_join(self.models_dir, name + ("" if src.is_dir() else src.suffix.lower()))
        if dest.exists():
            raise InvalidParameter(f"{dest} already exists in the model home")
        try:
            if storage == "copy":
                (shutil.copytree if src.is_dir() else shutil.copy2)(src, dest)
            elif src.is_dir():
                shutil.copytree(src, dest, copy_function=os.link)
            else:
                os.link(src, dest)
        except OSError as exc:
            if dest.exists():
                (shutil.rmtree if dest.is_dir() else os.unlink)(dest)
            how = "hard-link" if storage == "link" else "copy"
            raise InvalidParameter(f"cannot {how} {src} into {self.models_dir}: {exc.strerror or exc}") from None
        return dest

    def _delete_stored(self, entry: Entry) -> None:
        p = safe_join(self.models_dir, entry.path.name)
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()

    # ------------------------------------------------------------ the bundled model

    def sync_bundled(self) -> None:
        """Keep the ``default`` row in step with the bundled model folder (if it is installed)."""
        from brushwork.models.licenses import normalize_license
        from brushwork.models.modelcard import read_card

        folder = package_data("default_model")
        row = self.db.execute("SELECT path, size FROM models WHERE name = ?", (BUNDLED_NAME,)).fetchone()
        if not (folder / "model_index.json").is_file():
            if row:
                with self.db:
                    self.db.execute("DELETE FROM models WHERE name = ?", (BUNDLED_NAME,))
            return
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        if row and row["path"] == str(folder) and row["size"] == size:
            return
        from brushwork.models.inspect import inspect_model

        info = inspect_model(folder)
        card = read_card(folder)
        self._put(Entry(
            name=BUNDLED_NAME, path=folder, storage="bundled", format=info["format"], kind=info["kind"],
            base=info["base"], size=size, sha256=None, short_hash=None,
            license=normalize_license(card.get("license")), license_source="bundled",
            base_model=card.get("base_model"), tags=card.get("tags", []), architecture=info["architecture"],
            card=card, source_path=str(folder), added_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        ))

    # ------------------------------------------------------------ hashes

    def file_hash(self, path: Path) -> str:
        """sha256 of a file or diffusers folder, cached by (path, size, mtime)."""
        from brushwork.models.inspect import sha256_file, sha256_folder

        path = Path(path)
        if path.is_dir():
            return sha256_folder(path, file_hash=self.file_hash)
        st = path.stat()
        key = str(path.resolve())
        row = self.db.execute("SELECT size, mtime_ns, sha256 FROM file_hashes WHERE path = ?", (key,)).fetchone()
        if row and row["size"] == st.st_size and row["mtime_ns"] == st.st_mtime_ns:
            return row["sha256"]
        digest = sha256_file(path)
        with self.db:
            self.db.execute("INSERT OR REPLACE INTO file_hashes VALUES (?,?,?,?)", (key, st.st_size, st.st_mtime_ns, digest))
        return digest


def _entry(row: sqlite3.Row) -> Entry:
    d = dict(row)
    d["path"] = Path(d["path"])
    for k, default in (("tags", []), ("architecture", {}), ("card", {})):
        d[k] = json.loads(d[k]) if d[k] else default
    return Entry(**d)


# ---------------------------------------------------------------- resolution


@dataclass
class Resolved:
    """Where a model reference leads."""

    name: str  # display name (registry name, or the file/folder name)
    path: Path
    entry: Entry | None


def resolve_model(ref: str | None, *, registry: Registry, allow_paths: bool = True) -> Resolved:
    """Turn ``--model`` into a path.

    Order: ``None`` → the bundled model; a registry name; a file or folder inside
    ``$BRUSHWORK_HOME/models`` (through ``safe_join``); then, only when ``allow_paths`` (the local
    CLI and Python API, never the server), a filesystem path.
    """
    if ref is None or ref == BUNDLED_NAME:
        folder = package_data("default_model")
        if not (folder / "model_index.json").is_file():
            raise NotFound(
                f"the bundled default model is not installed (expected a diffusers folder at {folder}); "
                "pass a model with --model, or add one with 'brushwork models add PATH'"
            )
        return Resolved(BUNDLED_NAME, folder, registry.get(BUNDLED_NAME))
    if not isinstance(ref, str) or not ref.strip():
        raise UnsafePath("empty model name")
    looks_like_name = _NAME_RE.match(ref) is not None and ".." not in ref
    if looks_like_name:
        entry = registry.get(ref)
        if entry is not None:
            return Resolved(entry.name, _checked_entry_path(entry, registry), entry)
    if allow_paths and (os.path.isabs(ref) or ref.startswith("~") or ".." in Path(ref).parts):
        path = Path(ref).expanduser()
        if path.exists():
            return Resolved(path.name, path, None)
        raise NotFound(f"no such file or folder: {ref}")
    inside = safe_join(registry.models_dir, ref)  # refuses '..', absolute names, symlinks out
    if inside.exists():
        return Resolved(ref, inside, None)
    if allow_paths:
        path = Path(ref)
        if path.exists():
            return Resolved(path.name, path, None)
    raise NotFound(f"no model named {ref!r} in the registry, and no such file or folder")


def _checked_entry_path(entry: Entry, registry: Registry) -> Path:
    if entry.storage in ("copy", "link"):
        path = safe_join(registry.models_dir, entry.path.name)
    elif entry.storage == "bundled":
        path = package_data("default_model")
    else:
        path = entry.path
        if path.resolve() != path:
            raise UnsafePath(
                f"model {entry.name!r}: {path} now resolves to {path.resolve()}, not the path that was added; "
                "add it again if that is intended"
            )
    if not path.exists():
        raise ModelFileError(f"model {entry.name!r}: its file {path} is missing (moved or deleted?)")
    return path
