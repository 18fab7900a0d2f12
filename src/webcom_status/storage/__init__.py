"""Storage engines behind one interface, chosen by a database URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from webcom_status.errors import ConfigError
from webcom_status.storage.base import Storage
from webcom_status.storage.postgres import PostgresStorage
from webcom_status.storage.sqlite import SqliteStorage

POSTGRES_SCHEMES = frozenset({"postgresql", "postgres"})

__all__ = ["Storage", "open_storage", "sqlite_path"]


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite:///relative`` or ``sqlite:////absolute`` URL."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite" or parts.netloc or not parts.path.startswith("/"):
        raise ConfigError(f"not a SQLite URL: {url!r}; use sqlite:///path/to/file.db")
    path = parts.path[1:]
    if not path or path == ":memory:":
        raise ConfigError("an in-memory SQLite database keeps nothing: give a file path")
    return Path(path)


async def open_storage(
    url: str, *, busy_timeout_ms: int = 5000, synchronous: str = "FULL", pool_size: int = 4
) -> Storage:
    """Open (creating and migrating as needed) the database at ``url``.

    ``busy_timeout_ms`` and ``synchronous`` are SQLite's; ``pool_size`` is the
    most connections one process opens to PostgreSQL.
    """
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        return await SqliteStorage.open(
            sqlite_path(url), busy_timeout_ms=busy_timeout_ms, synchronous=synchronous
        )
    if scheme in POSTGRES_SCHEMES:
        return await PostgresStorage.open(url, pool_size=pool_size)
    raise ConfigError(
        f"unsupported database URL {url!r}: use sqlite:///path/to/file.db "
        "or postgresql://user@host/dbname"
    )
