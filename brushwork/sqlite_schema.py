"""Versioned SQLite schemas: one ``schema_version`` row, and migrations applied in one transaction.

The model registry and the job queue both keep their state in SQLite. Each owns a list of migration
scripts; migration ``i`` takes the schema from version ``i`` to ``i + 1``. ``migrate`` applies the
missing ones and the version bump atomically, so a crash part-way leaves the old schema intact, and it
refuses a database made by a newer brushwork rather than guessing at it.
"""

from __future__ import annotations

import sqlite3

from brushwork.errors import InvalidParameter


def statements(script: str) -> list[str]:
    """Split a migration script into complete SQL statements (semicolons inside strings are safe)."""
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        raise ValueError(f"incomplete SQL statement in a migration: {buf.strip()[:60]!r}")
    return out


def migrate(db: sqlite3.Connection, migrations: list[str], what: str) -> int:
    """Bring ``db`` to ``len(migrations)``; ``what`` names the database in errors. Returns the old version."""
    target = len(migrations)
    db.execute("BEGIN IMMEDIATE")  # takes the write lock now: two processes cannot migrate at once
    try:
        db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = db.execute("SELECT version FROM schema_version").fetchone()
        current = row[0] if row else 0
        if current > target:
            raise InvalidParameter(
                f"{what} has schema version {current}; this brushwork knows up to {target} "
                f"(a newer brushwork made it)")
        for version in range(current, target):
            for statement in statements(migrations[version]):
                db.execute(statement)
        if row is None:
            db.execute("INSERT INTO schema_version VALUES (?)", (target,))
        else:
            db.execute("UPDATE schema_version SET version = ?", (target,))
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return current


def schema_version(db: sqlite3.Connection) -> int:
    return db.execute("SELECT version FROM schema_version").fetchone()[0]
