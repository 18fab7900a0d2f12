"""The PostgreSQL engine: a bounded pool, one statement per group of writes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from webcom_status.errors import StorageError
from webcom_status.model import Event, Message, Reject, State, Stats, StoredReject
from webcom_status.storage._async_group import AsyncGroupCommitter
from webcom_status.storage._migrate import migrate
from webcom_status.storage._prune import Pruned, prune_keyed, prune_until_done
from webcom_status.storage._queries import load_queries
from webcom_status.storage._rows import events_records, join_arrays

Q = load_queries("postgresql")
log = logging.getLogger(__name__)
MIGRATION_LOCK = 0x77656263  # pg_advisory_lock key: "webc"
MAX_GROUP_STATES = 5000
RETRIES = 3
_RETRYABLE = (psycopg.OperationalError, pg_errors.DeadlockDetected)


@dataclass(frozen=True, slots=True)
class _Write:
    events: str  # events_records of the request's states
    count: int
    rejects: Sequence[Reject]


def _weight(write: _Write) -> int:
    return write.count + len(write.rejects) + 1


def _text(value: str | None) -> str | None:
    # PostgreSQL text cannot hold NUL, which a JSON string can (a bad id_sms
    # kept as written): U+FFFD stands in for it; ``raw`` keeps the exact bytes.
    return None if value is None else value.replace("\x00", "\ufffd")


def _params(writes: list[_Write]) -> dict[str, Any]:
    rejects = [r for w in writes for r in w.rejects]
    return {
        "now": datetime.now(UTC),
        "events": join_arrays([w.events for w in writes]),
        "r_scopes": [r.scope for r in rejects],
        "r_reasons": [_text(r.reason) for r in rejects],
        "r_ids": [_text(r.id_sms_raw) for r in rejects],
        "r_statuses": [r.http_status for r in rejects],
        "r_remotes": [_text(r.remote) for r in rejects],
        "r_raws": [r.raw for r in rejects],
    }


def yoyo_url(url: str) -> str:
    """The URL yoyo needs for the same database (psycopg 3 driver)."""
    return "postgresql+psycopg" + url[url.index("://") :]


class PostgresStorage:
    """:class:`~webcom_status.storage.base.Storage` on PostgreSQL."""

    def __init__(self, pool: AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]]) -> None:
        self._pool = pool
        self._writer = AsyncGroupCommitter(
            self._commit, _weight, workers=pool.max_size, max_weight=MAX_GROUP_STATES
        )

    @property
    def pool(self) -> AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]]:
        """The connection pool, which the sender's outbox shares."""
        return self._pool

    @classmethod
    async def open(cls, url: str, *, pool_size: int = 4, timeout: float = 5.0) -> PostgresStorage:
        """Migrate (once, under an advisory lock), then open the pool."""
        try:
            await _migrate(url, timeout)
        except psycopg.Error as exc:
            raise StorageError(f"cannot open PostgreSQL database: {exc}") from exc
        pool: AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]] = AsyncConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True},
            timeout=timeout,
            open=False,
        )
        await pool.open()
        return cls(pool)

    async def store(self, states: Sequence[State], rejects: Sequence[Reject]) -> None:
        if states or rejects:
            await self._writer.submit(_Write(events_records(states), len(states), rejects))

    async def _commit(self, writes: list[_Write]) -> None:
        params = _params(writes)
        for attempt in range(RETRIES):
            try:
                async with self._pool.connection() as conn:
                    await conn.execute(Q["store"], params)
            except _RETRYABLE as exc:
                # Events and messages are idempotent: running the statement
                # again after a lost connection or a deadlock cannot store a
                # state twice. Only its rejects can be kept twice, when the
                # lost connection had committed them: noise in an inspection
                # table, never an acknowledgement.
                if attempt == RETRIES - 1:
                    raise StorageError(f"database write failed: {exc}") from exc
                log.warning("database write retried: %s", exc)
                await self._pool.check()  # drop every connection the server closed
            except PoolTimeout as exc:
                raise StorageError(f"no database connection available: {exc}") from exc
            else:
                return

    async def message(self, id_sms: int) -> Message | None:
        row, history = await self._fetch_message(id_sms)
        if row is None:
            return None
        return Message(
            id_sms=row[0],
            status=row[1],
            sms=row[2],
            viber=row[3],
            time_raw=row[4],
            time_utc=row[5],
            first_seen=row[6],
            updated_at=row[7],
            history=tuple(Event(*h) for h in history),
        )

    async def _fetch_message(self, id_sms: int) -> tuple[TupleRow | None, list[TupleRow]]:
        async with self._read() as conn:
            row = await (await conn.execute(Q["get_message"], (id_sms,))).fetchone()
            if row is None:
                return None, []
            history = await (await conn.execute(Q["get_history"], (id_sms,))).fetchall()
            return row, history

    async def rejects(self, after_id: int = 0, limit: int = 100) -> list[StoredReject]:
        async with self._read() as conn:
            rows = await (await conn.execute(Q["list_rejects"], (after_id, limit))).fetchall()
        return [StoredReject(r[0], r[1], r[2], r[3], bytes(r[4]), r[5], r[6], r[7]) for r in rows]

    async def stats(self) -> Stats:
        async with self._read() as conn:
            row = await (await conn.execute(Q["stats"])).fetchone()
        assert row is not None
        return Stats(*row)

    async def ping(self) -> None:
        await self._execute(Q["ping"], ())

    async def prune(self, before: datetime, batch_size: int = 1000) -> Pruned:
        async def boundary(table: str, after: int, size: int) -> int | None:
            async with self._read() as conn:
                cursor = await conn.execute(Q[f"{table}_boundary"], (after, size))
                row = await cursor.fetchone()
            return None if row is None else int(row[0])

        async def delete(table: str, after: int, upper: int) -> int:
            return await self._execute(Q[f"prune_{table}"], (after, upper, before))

        async def rejects() -> int:
            return await self._execute(Q["prune_rejects"], (before, batch_size))

        return Pruned(
            events=await prune_keyed("events", batch_size, boundary, delete),
            messages=await prune_keyed("messages", batch_size, boundary, delete),
            rejects=await prune_until_done(rejects, batch_size),
        )

    async def _execute(self, query: str, params: tuple[Any, ...]) -> int:
        try:
            async with self._pool.connection() as conn:
                cursor = await conn.execute(query, params)
                return cursor.rowcount
        except (psycopg.Error, PoolTimeout) as exc:
            raise StorageError(f"database write failed: {exc}") from exc

    async def close(self) -> None:
        await self._writer.close()
        await self._pool.close()

    def _read(self) -> _Reading:
        return _Reading(self._pool)


class _Reading:
    """A pooled connection for reads; driver failures become ``StorageError``.

    Those of the queries in the block too: a connection the server closed must
    give a 503, not an unhandled error. After such a loss the pool checks its
    idle connections, so that the next reads do not meet the same fate.
    """

    def __init__(self, pool: AsyncConnectionPool[psycopg.AsyncConnection[TupleRow]]) -> None:
        self._pool = pool
        self._context = pool.connection()

    async def __aenter__(self) -> psycopg.AsyncConnection[TupleRow]:
        try:
            return await self._context.__aenter__()
        except (psycopg.Error, PoolTimeout) as exc:
            raise StorageError(f"database read failed: {exc}") from exc

    async def __aexit__(self, *exc_info: Any) -> None:
        try:
            await self._context.__aexit__(*exc_info)
        except (psycopg.Error, PoolTimeout) as exc:
            raise StorageError(f"database read failed: {exc}") from exc
        error = exc_info[1]
        if isinstance(error, psycopg.OperationalError):
            await self._pool.check()
        if isinstance(error, psycopg.Error):
            raise StorageError(f"database read failed: {error}") from error


async def _migrate(url: str, timeout: float) -> None:
    conn = await psycopg.AsyncConnection.connect(
        url, autocommit=True, connect_timeout=max(1, round(timeout))
    )
    async with conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            await asyncio.to_thread(migrate, yoyo_url(url), "postgresql")
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
