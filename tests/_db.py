"""Read-only looks into a test database, on either engine, given its URL.

Most tests check what was stored through the server's API. Where a test needs
what the API does not show (the exact rows after a crash, the raw bytes of a
reject, the applied migrations), it reads them here: ``sqlite3`` for a
``sqlite:///`` URL, ``psycopg`` for a ``postgresql://`` one, the connection
read-only either way. Rows come back in one shape whatever the engine: an
absent channel is ``None`` (events store it as ``''`` in both engines), times
are aware UTC datetimes (TEXT in SQLite, ``timestamptz`` in PostgreSQL), raw
bodies are ``bytes`` (BLOB and ``bytea``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple, Protocol
from urllib.parse import urlsplit

import psycopg

from webcom_status.storage import sqlite_path

APP_TABLES = frozenset(
    {
        "delivery_attempts",
        "deliveries",
        "endpoints",
        "events",
        "heartbeat",
        "messages",
        "rejects",
        "status_ranks",
    }
)
_TABLES = {
    "sqlite": "SELECT name FROM sqlite_master WHERE type = 'table'",
    "postgresql": "SELECT table_name FROM information_schema.tables"
    " WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
}


class MessageRow(NamedTuple):
    """One row of ``messages``: the current state of a message."""

    id_sms: int
    status: str
    sms: str | None
    viber: str | None
    time_raw: str
    time_utc: datetime | None

    @property
    def stored(self) -> tuple[str, str | None, str | None, str]:
        """``(status, sms, viber, time_raw)``, as :class:`tests.e2e._load.Pushed` shows it."""
        return (self.status, self.sms, self.viber, self.time_raw)


class EventRow(NamedTuple):
    """One row of ``events``: a distinct state as received."""

    id_sms: int
    status: str
    sms: str | None
    viber: str | None
    time_raw: str
    time_utc: datetime | None
    received_at: datetime

    @property
    def stored(self) -> tuple[str, str | None, str | None, str]:
        return (self.status, self.sms, self.viber, self.time_raw)


class RejectRow(NamedTuple):
    """One row of ``rejects``, ``raw`` as the exact bytes kept."""

    id: int
    received_at: datetime
    scope: str
    reason: str
    id_sms_raw: str | None
    http_status: int | None
    remote: str | None
    raw: bytes


class _Reader(Protocol):
    def __call__(self, sql: str, *params: object) -> list[tuple[Any, ...]]: ...


def engine_of(url: str) -> str:
    """``"sqlite"`` or ``"postgresql"``, from the URL's scheme."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        return "sqlite"
    if scheme in ("postgresql", "postgres"):
        return "postgresql"
    raise ValueError(f"not a test database URL: {url!r}")


@contextmanager
def reading(url: str) -> Iterator[_Reader]:
    """A read-only connection to ``url``, as a function ``(sql, *params) -> rows``.

    ``sql`` takes ``?`` placeholders on both engines.
    """
    if engine_of(url) == "sqlite":
        with closing(_sqlite_connect(sqlite_path(url))) as conn:
            conn.execute("PRAGMA query_only = 1")
            yield lambda sql, *params: conn.execute(sql, params).fetchall()
        return
    with psycopg.connect(url, connect_timeout=5) as pg:
        pg.read_only = True
        yield lambda sql, *params: pg.execute(sql.replace("?", "%s"), params).fetchall()


def _sqlite_connect(path: Path) -> sqlite3.Connection:
    # mode=rw: a check must never create the file it was meant to find.
    return sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True)


def utc(value: str | datetime | None) -> datetime | None:
    """A stored time as an aware UTC datetime: SQLite keeps UTC text, PostgreSQL timestamptz."""
    if value is None:
        return None
    if isinstance(value, str):
        return datetime.fromisoformat(value).replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _utc_required(value: str | datetime) -> datetime:
    result = utc(value)
    assert result is not None
    return result


def messages(url: str) -> dict[int, MessageRow]:
    """Every row of ``messages``, by ``id_sms``."""
    with reading(url) as rows:
        found = rows("SELECT id_sms, status, sms, viber, time_raw, time_utc FROM messages")
    return {r[0]: MessageRow(r[0], r[1], r[2], r[3], r[4], utc(r[5])) for r in found}


def stored_ids(url: str) -> set[int]:
    """Every ``id_sms`` with a current state."""
    with reading(url) as rows:
        return {r[0] for r in rows("SELECT id_sms FROM messages")}


def events(url: str) -> list[EventRow]:
    """Every row of ``events``, ordered by id then as the history shows them."""
    with reading(url) as rows:
        found = rows(
            "SELECT id_sms, status, nullif(sms, ''), nullif(viber, ''), time_raw, time_utc,"
            " received_at FROM events ORDER BY id_sms, received_at, time_utc NULLS FIRST, status"
        )
    return [EventRow(r[0], r[1], r[2], r[3], r[4], utc(r[5]), _utc_required(r[6])) for r in found]


def rejects(url: str) -> list[RejectRow]:
    """Every row of ``rejects``, oldest first."""
    with reading(url) as rows:
        found = rows(
            "SELECT id, received_at, scope, reason, id_sms_raw, http_status, remote, raw"
            " FROM rejects ORDER BY id"
        )
    return [
        RejectRow(r[0], _utc_required(r[1]), r[2], r[3], r[4], r[5], r[6], bytes(r[7]))
        for r in found
    ]


def reject_raw(url: str, reject_id: int) -> bytes:
    """The exact bytes kept for one reject."""
    with reading(url) as rows:
        found = rows("SELECT raw FROM rejects WHERE id = ?", reject_id)
    assert found, f"no reject {reject_id}"
    return bytes(found[0][0])


def counts(url: str) -> dict[str, int]:
    """The number of rows of each of the application's tables."""
    with reading(url) as rows:
        return {table: rows(f"SELECT count(*) FROM {table}")[0][0] for table in sorted(APP_TABLES)}


def tables(url: str) -> set[str]:
    """The names of every table, yoyo's included."""
    with reading(url) as rows:
        return {r[0] for r in rows(_TABLES[engine_of(url)])}


def applied_migrations(url: str) -> list[str]:
    """The ids of the migrations yoyo recorded as applied, one entry per row."""
    with reading(url) as rows:
        return [r[0] for r in rows("SELECT migration_id FROM _yoyo_migration ORDER BY 1")]


def integrity(path: Path) -> str:
    """``PRAGMA integrity_check`` of a SQLite file (SQLite only: PostgreSQL has no such check)."""
    with closing(_sqlite_connect(path)) as conn:
        return "\n".join(row[0] for row in conn.execute("PRAGMA integrity_check"))
