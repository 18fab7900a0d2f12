"""Fresh PostgreSQL databases for tests, cloned from a migrated template.

The server is ``WEBCOM_STATUS_TEST_POSTGRES`` (a URL to a database the user
may create databases from), by default ``postgresql://postgres@127.0.0.1:5432/postgres``.
Where no server answers, PostgreSQL tests are skipped, except under ``CI=true``,
where they fail: CI must never pass by skipping them.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from webcom_status.storage.postgres import PostgresStorage

ADMIN_URL = os.environ.get(
    "WEBCOM_STATUS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)
HOW_TO = (
    "PostgreSQL is not reachable at {url} ({error}); point WEBCOM_STATUS_TEST_POSTGRES "
    "at a server where the user may CREATE DATABASE, e.g. "
    "postgresql://postgres@127.0.0.1:5432/postgres"
)


def database_url(name: str) -> str:
    """The admin URL with its database replaced by ``name``."""
    parts = urlsplit(ADMIN_URL)
    return urlunsplit(parts._replace(path=f"/{name}"))


def admin() -> psycopg.Connection[tuple[object, ...]]:
    """An autocommit connection to the admin database, for CREATE DATABASE and the like."""
    return psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)


async def _migrate(url: str) -> None:
    storage = await PostgresStorage.open(url)
    await storage.close()


class PostgresDatabases:
    """Creates a migrated template once, then one clone per request."""

    def __init__(self) -> None:
        self.template = f"webcom_test_template_{uuid.uuid4().hex[:8]}"
        self.created: list[str] = []
        self.error: str | None = None
        try:
            with admin() as conn:
                conn.execute(f'CREATE DATABASE "{self.template}"')
        except psycopg.Error as exc:
            self.error = HOW_TO.format(url=ADMIN_URL, error=str(exc).strip())
            return
        asyncio.run(_migrate(database_url(self.template)))

    def new(self) -> str:
        """The URL of a new database with the current schema."""
        return self._create(f'TEMPLATE "{self.template}"')

    def empty(self, options: str = "") -> str:
        """The URL of a new database without any table: nothing migrated yet.

        ``options`` go to ``CREATE DATABASE``, e.g. another locale.
        """
        return self._create(f"TEMPLATE template0 {options}")

    def _create(self, options: str) -> str:
        if self.error is not None:
            if os.environ.get("CI") == "true":
                pytest.fail(self.error)
            pytest.skip(self.error)
        name = f"webcom_test_{uuid.uuid4().hex[:12]}"
        with admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}" {options}')
        self.created.append(name)
        return database_url(name)

    def drop_all(self) -> None:
        """Drop every database made, the template last."""
        if self.error is not None:
            return
        with admin() as conn:
            for name in [*self.created, self.template]:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
