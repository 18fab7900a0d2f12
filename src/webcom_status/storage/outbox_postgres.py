"""The sender's outbox on PostgreSQL, on the pool of the receiver's storage.

Times come from the database's clock, not from the workers': several hosts
share one database. Each method runs on one pooled connection, one statement
at a time or in one transaction where several statements must agree. Those
safe to run again are retried after a lost connection or a deadlock: a claim
repeated after its commit was lost only leaves rows leased until the lease
ends, and settling checks the lease owner, so a second run changes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors
from psycopg.rows import TupleRow
from psycopg_pool import PoolClosed, PoolTimeout

from webcom_status.errors import ConfigError, StorageClosed, StorageError, UnknownEndpoint
from webcom_status.protocol import Outgoing
from webcom_status.sender.model import (
    Attempt,
    Claimed,
    Delivery,
    DeliveryState,
    Endpoint,
    EndpointSettings,
    Settlement,
    Tally,
)
from webcom_status.sender.outbox import rows
from webcom_status.storage._outbox_rows import (
    claimed_from_row,
    delivery_from_row,
    endpoint_from_row,
    endpoint_params,
)
from webcom_status.storage._queries import load_queries
from webcom_status.storage.postgres import RETRIES, PostgresStorage

Q = load_queries("postgresql", "outbox")
log = logging.getLogger(__name__)
_RETRYABLE = (psycopg.OperationalError, pg_errors.DeadlockDetected)

T = TypeVar("T")
Conn = psycopg.AsyncConnection[TupleRow]


def _text(value: str) -> str:
    # PostgreSQL text cannot hold NUL, which an error quoting an answer can.
    return value.replace("\x00", "\ufffd")


def _pause_reason(settlement: Settlement) -> str:
    return _text(
        f"every push failed for {settlement.pause_after:g} s; last error: {settlement.error}"
    )


class PostgresOutbox:
    """The outbox in the PostgreSQL database of a :class:`PostgresStorage`, on its pool."""

    def __init__(self, storage: PostgresStorage) -> None:
        self.storage = storage
        self._pool = storage.pool

    async def _run(
        self, job: Callable[[Conn], Awaitable[T]], *, retry: bool = True, kind: str = "write"
    ) -> T:
        """``job`` on a pooled connection; driver failures become ``StorageError``.

        With ``retry``, a lost connection or a deadlock runs ``job`` again, on
        another connection, up to ``RETRIES`` times in all.
        """
        attempt = 1
        while True:
            try:
                async with self._pool.connection() as conn:
                    return await job(conn)
            except PoolClosed as exc:
                raise StorageClosed("storage is closed") from exc
            except PoolTimeout as exc:
                raise StorageError(f"no database connection available: {exc}") from exc
            except _RETRYABLE as exc:
                if not retry or attempt >= RETRIES:
                    raise StorageError(f"database {kind} failed: {exc}") from exc
                log.warning("database %s retried: %s", kind, exc)
                attempt += 1
                await self._check()
            except psycopg.Error as exc:
                raise StorageError(f"database {kind} failed: {exc}") from exc

    async def _check(self) -> None:
        """Drop every idle connection the server closed, before the next attempt."""
        try:
            await self._pool.check()
        except PoolClosed as exc:
            raise StorageClosed("storage is closed") from exc

    async def _one_endpoint(self, query: str, params: Any, name: str, kind: str) -> Endpoint:
        async def run(conn: Conn) -> TupleRow | None:
            return await (await conn.execute(query, params)).fetchone()

        row = await self._run(run, kind=kind)
        if row is None:
            raise UnknownEndpoint(name)
        return endpoint_from_row(row)

    async def add_endpoint(self, name: str, settings: EndpointSettings) -> Endpoint:
        params = endpoint_params(name, settings)

        async def insert(conn: Conn) -> TupleRow | None:
            try:
                return await (await conn.execute(Q["insert_endpoint"], params)).fetchone()
            except pg_errors.UniqueViolation:
                raise ConfigError(f"an endpoint named {name!r} exists already") from None

        # Not retried: had the lost insert committed, its second run would
        # call the new endpoint a duplicate.
        row = await self._run(insert, retry=False)
        assert row is not None
        return endpoint_from_row(row)

    async def update_endpoint(self, name: str, settings: EndpointSettings) -> Endpoint:
        params = endpoint_params(name, settings)
        return await self._one_endpoint(Q["update_endpoint"], params, name, "write")

    async def set_paused(self, name: str, reason: str | None) -> Endpoint:
        params = {
            "name": name,
            "reason": None if reason is None else _text(reason),
            "pause": bool(reason),
        }
        return await self._one_endpoint(Q["set_paused"], params, name, "write")

    async def remove_endpoint(self, name: str) -> int:
        async def remove(conn: Conn) -> int:
            async with conn.transaction():
                row = await (await conn.execute(Q["lock_endpoint"], (name,))).fetchone()
                if row is None:
                    raise UnknownEndpoint(name)
                await conn.execute(Q["delete_endpoint_attempts"], row)
                removed = (await conn.execute(Q["delete_endpoint_deliveries"], row)).rowcount
                await conn.execute(Q["delete_endpoint"], row)
                return removed

        # Not retried: had the lost removal committed, its second run would
        # find no endpoint.
        return await self._run(remove, retry=False)

    async def endpoints(self) -> list[Endpoint]:
        async def run(conn: Conn) -> list[TupleRow]:
            return await (await conn.execute(Q["list_endpoints"])).fetchall()

        return [endpoint_from_row(row) for row in await self._run(run, kind="read")]

    async def endpoint(self, name: str) -> Endpoint:
        return await self._one_endpoint(Q["get_endpoint"], (name,), name, "read")

    async def enqueue(self, endpoint: str, states: Sequence[Outgoing]) -> int:
        checked = rows(states)
        params: dict[str, object] = {
            "ids": [r[0] for r in checked],
            "statuses": [r[1] for r in checked],
            "times": [r[2] for r in checked],
            "sms": [r[3] for r in checked],
            "vibers": [r[4] for r in checked],
            "keys": [r[5] for r in checked],
        }

        async def upsert(conn: Conn) -> int:
            found = await (await conn.execute(Q["get_endpoint"], (endpoint,))).fetchone()
            if found is None:
                raise UnknownEndpoint(endpoint)
            try:
                cursor = await conn.execute(Q["enqueue"], params | {"endpoint_id": found[0]})
            except pg_errors.ForeignKeyViolation:
                raise UnknownEndpoint(endpoint) from None  # removed in between
            return cursor.rowcount

        # Safe to repeat: a state already enqueued is not later than itself.
        return await self._run(upsert)

    async def due(self) -> dict[int, float]:
        async def run(conn: Conn) -> list[TupleRow]:
            return await (await conn.execute(Q["due"])).fetchall()

        return {row[0]: row[1] for row in await self._run(run, kind="read")}

    async def claim(self, endpoint_id: int, owner: str, limit: int, lease: float) -> list[Claimed]:
        params = {"endpoint_id": endpoint_id, "owner": owner, "limit": limit, "lease": lease}

        async def take(conn: Conn) -> list[TupleRow]:
            return await (await conn.execute(Q["claim"], params)).fetchall()

        return [claimed_from_row(row) for row in await self._run(take)]

    async def settle(self, settlement: Settlement) -> bool:
        owner = settlement.owner
        endpoint_id = settlement.endpoint_id
        delivered = {
            "ids": [d[0] for d in settlement.delivered],
            "versions": [d[1] for d in settlement.delivered],
            "owner": owner,
        }
        failed = {
            "ids": [f.id for f in settlement.failures],
            "attempts": [f.attempts for f in settlement.failures],
            "errors": [_text(f.error) for f in settlement.failures],
            "delays": [f.delay for f in settlement.failures],
            "versions": [f.version for f in settlement.failures],
            "owner": owner,
        }
        every = {
            "ids": [d[0] for d in settlement.delivered] + [f.id for f in settlement.failures],
            "owner": owner,
        }

        async def record(conn: Conn) -> bool:
            async with conn.transaction():
                if settlement.delivered:
                    await conn.execute(Q["settle_delivered"], delivered)
                if settlement.failures:
                    await conn.execute(Q["record_attempts"], failed)
                    await conn.execute(Q["settle_failed"], failed)
                await conn.execute(Q["settle_replaced"], every)
                if settlement.endpoint_ok:
                    await conn.execute(Q["endpoint_ok"], (endpoint_id,))
                    return False
                await conn.execute(Q["endpoint_failed"], {"endpoint_id": endpoint_id})
                if settlement.pause_after is None:
                    return False
                params = {
                    "endpoint_id": endpoint_id,
                    "pause_after": settlement.pause_after,
                    "reason": _pause_reason(settlement),
                }
                paused = await (await conn.execute(Q["pause_failing"], params)).fetchone()
                return paused is not None

        return await self._run(record)

    async def deliveries(
        self,
        endpoint: str | None = None,
        state: DeliveryState | None = None,
        after_id: int = 0,
        limit: int = 100,
    ) -> list[Delivery]:
        params = {
            "endpoint": endpoint,
            "state": None if state is None else state.value,
            "after_id": after_id,
            "limit": limit,
        }

        async def run(conn: Conn) -> list[TupleRow]:
            return await (await conn.execute(Q["list_deliveries"], params)).fetchall()

        return [delivery_from_row(row) for row in await self._run(run, kind="read")]

    async def attempts(self, delivery_id: int) -> list[Attempt]:
        async def run(conn: Conn) -> list[TupleRow]:
            return await (await conn.execute(Q["list_attempts"], (delivery_id,))).fetchall()

        return [Attempt(*row) for row in await self._run(run, kind="read")]

    async def redeliver(
        self,
        *,
        delivery_id: int | None = None,
        endpoint: str | None = None,
        since: float | None = None,
    ) -> int:
        endpoint_id = None if endpoint is None else (await self.endpoint(endpoint)).id
        params = {"delivery_id": delivery_id, "endpoint_id": endpoint_id, "since": since}

        async def run(conn: Conn) -> int:
            return (await conn.execute(Q["redeliver"], params)).rowcount

        # Not retried: had the lost statement committed, its second run would
        # count none of the rows it put back.
        return await self._run(run, retry=False)

    async def tally(self) -> list[Tally]:
        async def run(conn: Conn) -> list[TupleRow]:
            return await (await conn.execute(Q["tally"])).fetchall()

        return [Tally(*row) for row in await self._run(run, kind="read")]

    async def close(self) -> None:
        await self.storage.close()
