"""Storage engines behind one interface, chosen by a database URL."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from webcom_status.errors import ConfigError
from webcom_status.sender.outbox import Outbox
from webcom_status.storage.base import Storage
from webcom_status.storage.outbox_sqlite import SqliteOutbox
from webcom_status.storage.sqlite import SqliteStorage

# The PostgreSQL engine is imported when a PostgreSQL URL is opened: psycopg
# takes a tenth of a second to import, which every command and every SQLite
# deployment would otherwise pay at start.

POSTGRES_SCHEMES = frozenset({"postgresql", "postgres"})

__all__ = ["Outbox", "Storage", "open_outbox", "open_storage", "outbox_for", "sqlite_path"]


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
        from webcom_status.storage.postgres import PostgresStorage  # noqa: PLC0415 - see above

        return await PostgresStorage.open(url, pool_size=pool_size)
    raise ConfigError(
        f"unsupported database URL {url!r}: use sqlite:///path/to/file.db "
        "or postgresql://user@host/dbname"
    )


def outbox_for(storage: Storage) -> Outbox:
    """The sender's outbox in the database of ``storage``, sharing its connections."""
    if isinstance(storage, SqliteStorage):
        return SqliteOutbox(storage)
    from webcom_status.storage.outbox_postgres import PostgresOutbox  # noqa: PLC0415 - see above
    from webcom_status.storage.postgres import PostgresStorage  # noqa: PLC0415 - see above

    if isinstance(storage, PostgresStorage):
        return PostgresOutbox(storage)
    raise ConfigError(f"no outbox for {type(storage).__name__}")


async def open_outbox(url: str, *, pool_size: int = 4) -> Outbox:
    """Open (creating and migrating as needed) the outbox in the database at ``url``.

    Closing the outbox closes the storage it opened.
    """
    return outbox_for(await open_storage(url, pool_size=pool_size))
