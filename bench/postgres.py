"""PostgreSQL databases for the benchmark: one fresh database per server run.

The server is ``WEBCOM_STATUS_BENCH_POSTGRES`` (a URL to a database whose user
may create databases), by default ``postgresql://postgres@127.0.0.1:5432/postgres``.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

ADMIN_URL = os.environ.get(
    "WEBCOM_STATUS_BENCH_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
_created: list[str] = []


def url_file(db: Path) -> Path:
    """Where a run's PostgreSQL URL is kept, beside the SQLite path it stands for."""
    return db.with_suffix(".postgres-url")


def new_database(db: Path) -> str:
    """Create a fresh database, remember its URL beside ``db``, return the URL."""
    name = f"webcom_bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    _created.append(name)
    url = urlunsplit(urlsplit(ADMIN_URL)._replace(path=f"/{name}"))
    url_file(db).write_text(url)
    return url


def count_events(db: Path) -> int | None:
    """Rows in the run's ``events`` table, or None when the run was not on PostgreSQL."""
    if not url_file(db).exists():
        return None
    with psycopg.connect(url_file(db).read_text()) as conn:
        row = conn.execute("SELECT count(*) FROM events").fetchone()
    return None if row is None else int(row[0])


def drop_all() -> None:
    """Drop every database this benchmark created."""
    if not _created:
        return
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        for name in _created:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _created.clear()
