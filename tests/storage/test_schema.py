"""The SQLite schema: from scratch it equals the sum of the migrations, and matches rules.py."""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from webcom_status import rules
from webcom_status.storage._migrate import migrate
from webcom_status.storage._queries import migrations_dir, schema_file

Row = tuple[str, str, str, str]
_COMMENT = re.compile(r"--[^\n]*")


def normalise(sql: str | None) -> str:
    """The statement without comments, with every run of whitespace as one space."""
    return " ".join(_COMMENT.sub("", sql or "").split())


def is_yoyo(table: str) -> bool:
    return table.startswith("_yoyo") or table == "yoyo_lock"


def master(path: Path) -> list[Row]:
    """The project's objects in ``sqlite_master``, sorted, yoyo's own tables left out."""
    with closing(sqlite3.connect(path)) as conn:
        rows = conn.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall()
    return sorted((t, n, table, normalise(sql)) for t, n, table, sql in rows if not is_yoyo(table))


def ranks(path: Path) -> dict[str, int]:
    with closing(sqlite3.connect(path)) as conn:
        return dict(conn.execute("SELECT value, rank FROM status_ranks").fetchall())


@pytest.fixture
def from_schema(tmp_path: Path) -> Path:
    """A database built by running ``schema.sql`` as one script."""
    path = tmp_path / "schema.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript(schema_file("sqlite").read_text(encoding="utf-8"))
    return path


@pytest.fixture
def from_migrations(tmp_path: Path) -> Path:
    """A database built by applying every migration with yoyo."""
    path = tmp_path / "migrated.db"
    migrate(f"sqlite:///{path}", "sqlite")
    return path


def test_schema_file_equals_applied_migrations(from_schema: Path, from_migrations: Path) -> None:
    """Tables, indexes and triggers from ``schema.sql`` and from the migrations are the same."""
    expected = master(from_schema)
    assert {row[0] for row in expected} >= {"table", "trigger"}
    assert master(from_migrations) == expected


def test_seed_data_is_the_same_both_ways(from_schema: Path, from_migrations: Path) -> None:
    """``status_ranks`` holds the same rows in both databases."""
    assert ranks(from_migrations) == ranks(from_schema)


def test_status_ranks_table_equals_rules_ranks(from_migrations: Path) -> None:
    """The SQL's ranks are exactly ``rules.RANKS``; any other value ranks ``UNKNOWN_RANK``."""
    assert ranks(from_migrations) == rules.RANKS
    trigger = dict((name, sql) for _, name, _, sql in master(from_migrations))["events_merge"]
    cases = re.findall(r"CASE new\.(\w+)((?: WHEN '\w+' THEN \d+)+) ELSE (\d+) END", trigger)
    assert sorted(column for column, _, _ in cases) == ["sms", "status", "viber"]
    for _, whens, other in cases:
        assert dict(re.findall(r"WHEN '(\w+)' THEN (\d+)", whens)) == {
            value: str(rank) for value, rank in rules.RANKS.items()
        }
        assert int(other) == rules.UNKNOWN_RANK


def test_migrations_are_numbered_sql_files() -> None:
    """Each migration is ``NNNN_name.sql`` and the numbers run 1, 2, 3… without gaps."""
    names = sorted(p.name for p in migrations_dir("sqlite").iterdir() if p.suffix == ".sql")
    assert names
    assert all(re.fullmatch(r"\d{4}_[a-z0-9_]+\.sql", name) for name in names)
    assert [int(name[:4]) for name in names] == list(range(1, len(names) + 1))


def test_migrate_reports_what_it_applied_then_nothing(tmp_path: Path) -> None:
    """A fresh database gets every migration; the second run applies none and changes nothing."""
    path = tmp_path / "twice.db"
    url = f"sqlite:///{path}"
    expected = sorted(p.stem for p in migrations_dir("sqlite").glob("*.sql"))
    assert migrate(url, "sqlite") == expected
    before, seeded = master(path), ranks(path)
    assert migrate(url, "sqlite") == []
    assert (master(path), ranks(path)) == (before, seeded)


def test_migrations_are_recorded(from_migrations: Path) -> None:
    """yoyo keeps a table of the applied migrations, one row each."""
    with closing(sqlite3.connect(from_migrations)) as conn:
        applied = [r[0] for r in conn.execute("SELECT migration_id FROM _yoyo_migration")]
    assert sorted(applied) == sorted(p.stem for p in migrations_dir("sqlite").glob("*.sql"))
