"""The shared schema migrator used by the model registry and the job queue."""

from __future__ import annotations

import sqlite3

import pytest

from brushwork.errors import InvalidParameter
from brushwork.sqlite_schema import migrate, schema_version, statements

V1 = "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);\nINSERT INTO notes (body) VALUES ('a; b');"
V2 = "ALTER TABLE notes ADD COLUMN tag TEXT;"


@pytest.mark.parametrize("isolation", ["", None], ids=["implicit-transactions", "autocommit"])
def test_fresh_database_reaches_the_latest_version(tmp_path, isolation):
    db = sqlite3.connect(tmp_path / "x.sqlite3", isolation_level=isolation)
    assert migrate(db, [V1, V2], "x") == 0
    assert schema_version(db) == 2
    assert db.execute("SELECT body, tag FROM notes").fetchall() == [("a; b", None)]  # ';' inside a string kept
    assert migrate(db, [V1, V2], "x") == 2  # idempotent
    assert db.execute("SELECT count(*) FROM notes").fetchone()[0] == 1


def test_a_failing_migration_leaves_the_old_schema_and_data(tmp_path):
    path = tmp_path / "x.sqlite3"
    db = sqlite3.connect(path)
    migrate(db, [V1], "x")
    bad = "ALTER TABLE notes ADD COLUMN tag TEXT;\nINSERT INTO no_such_table VALUES (1);"
    with pytest.raises(sqlite3.OperationalError, match="no_such_table"):
        migrate(db, [V1, bad], "x")
    db.close()
    db = sqlite3.connect(path)
    assert schema_version(db) == 1
    cols = [r[1] for r in db.execute("PRAGMA table_info(notes)")]
    assert cols == ["id", "body"]  # the ALTER before the failure was rolled back too
    assert db.execute("SELECT body FROM notes").fetchall() == [("a; b",)]


def test_a_newer_database_is_refused_with_its_name(tmp_path):
    db = sqlite3.connect(tmp_path / "x.sqlite3")
    migrate(db, [V1, V2], "the test db")
    with pytest.raises(InvalidParameter, match="the test db has schema version 2; this brushwork knows up to 1"):
        migrate(db, [V1], "the test db")


def test_statements_splits_only_complete_statements():
    assert statements(V1) == ["CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);",
                              "INSERT INTO notes (body) VALUES ('a; b');"]
    with pytest.raises(ValueError, match="incomplete SQL"):
        statements("CREATE TABLE t (a INTEGER")
