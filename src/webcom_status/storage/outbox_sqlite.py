"""The sender's outbox on SQLite, on the receiver's storage: its writer thread and readers."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Sequence

import orjson

from webcom_status.errors import ConfigError, StorageError, UnknownEndpoint
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
from webcom_status.sender.outbox import Row, rows
from webcom_status.storage._outbox_rows import (
    claimed_from_row,
    delivery_from_row,
    endpoint_from_row,
    endpoint_params,
)
from webcom_status.storage._queries import load_queries
from webcom_status.storage.sqlite import SqliteStorage

Q = load_queries("sqlite", "outbox")
# Ids per group, on average, from which one statement per group beats one for all.
ROWS_PER_GROUP = 8


def settlement_rows(settlement: Settlement) -> tuple[str, str]:
    """``settlement``'s delivered rows ({id: version}) and failed rows, as the queries take them."""
    delivered = orjson.dumps(dict(settlement.delivered), option=orjson.OPT_NON_STR_KEYS).decode()
    # SQLite's JSON functions end a string at NUL: keep U+FFFD in its place,
    # as PostgreSQL must (its text cannot hold NUL either).
    failed = orjson.dumps(
        [
            (f.id, f.attempts, f.error.replace("\x00", "\ufffd"), f.delay, f.version)
            for f in settlement.failures
        ]
    )
    return delivered, failed.decode()


def enqueue_statements(checked: list[Row]) -> list[tuple[str, dict[str, object]]]:
    """The statements that enqueue ``checked``: one per group of ids sharing their fields.

    When the groups are too small for that to pay, one statement for all.
    """
    groups: dict[tuple[str, str, str | None, str | None, str], list[int]] = {}
    for id_sms, status, time_raw, sms, viber, key in checked:
        groups.setdefault((status, time_raw, sms, viber, key), []).append(id_sms)
    if len(groups) * ROWS_PER_GROUP > len(checked):
        return [(Q["enqueue"], {"rows": orjson.dumps(checked).decode()})]
    return [
        (
            Q["enqueue_group"],
            {
                "ids": orjson.dumps(ids).decode(),
                "status": status,
                "time_raw": time_raw,
                "sms": sms,
                "viber": viber,
                "sort_key": key,
            },
        )
        for (status, time_raw, sms, viber, key), ids in groups.items()
    ]


class SqliteOutbox:
    """The outbox in the SQLite file of a :class:`SqliteStorage`, through its writer."""

    def __init__(self, storage: SqliteStorage) -> None:
        self.storage = storage

    async def add_endpoint(self, name: str, settings: EndpointSettings) -> Endpoint:
        params = endpoint_params(name, settings) | {"now": time.time()}
        try:
            await self.storage.write(lambda conn: conn.execute(Q["insert_endpoint"], params))
        except StorageError as exc:
            if isinstance(exc.__cause__, sqlite3.IntegrityError):
                raise ConfigError(f"an endpoint named {name!r} exists already") from None
            raise
        return await self.endpoint(name)

    async def update_endpoint(self, name: str, settings: EndpointSettings) -> Endpoint:
        params = endpoint_params(name, settings)
        changed = await self.storage.write(
            lambda conn: conn.execute(Q["update_endpoint"], params).rowcount
        )
        if not changed:
            raise UnknownEndpoint(name)
        return await self.endpoint(name)

    async def set_paused(self, name: str, reason: str | None) -> Endpoint:
        params = {"name": name, "reason": reason, "paused_at": time.time() if reason else None}
        changed = await self.storage.write(
            lambda conn: conn.execute(Q["set_paused"], params).rowcount
        )
        if not changed:
            raise UnknownEndpoint(name)
        return await self.endpoint(name)

    async def remove_endpoint(self, name: str) -> int:
        endpoint = await self.endpoint(name)

        def remove(conn: sqlite3.Connection) -> int:
            conn.execute(Q["delete_endpoint_attempts"], (endpoint.id,))
            removed = conn.execute(Q["delete_endpoint_deliveries"], (endpoint.id,)).rowcount
            conn.execute(Q["delete_endpoint"], (endpoint.id,))
            return removed

        return await self.storage.write(remove)

    async def endpoints(self) -> list[Endpoint]:
        found = await self.storage.read(lambda conn: conn.execute(Q["list_endpoints"]).fetchall())
        return [endpoint_from_row(row) for row in found]

    async def endpoint(self, name: str) -> Endpoint:
        row = await self.storage.read(
            lambda conn: conn.execute(Q["get_endpoint"], (name,)).fetchone()
        )
        if row is None:
            raise UnknownEndpoint(name)
        return endpoint_from_row(row)

    async def enqueue(self, endpoint: str, states: Sequence[Outgoing]) -> int:
        statements = enqueue_statements(rows(states))
        target = await self.endpoint(endpoint)

        def insert(conn: sqlite3.Connection) -> int:
            common = {"endpoint_id": target.id, "now": time.time()}
            return sum(
                conn.execute(query, params | common).rowcount for query, params in statements
            )

        return await self.storage.write(insert)

    async def due(self) -> dict[int, float]:
        found = await self.storage.read(lambda conn: conn.execute(Q["due"]).fetchall())
        return {row[0]: row[1] for row in found}

    async def claim(self, endpoint_id: int, owner: str, limit: int, lease: float) -> list[Claimed]:
        def take(conn: sqlite3.Connection) -> str:
            now = time.time()
            params = {"endpoint_id": endpoint_id, "limit": limit, "now": now}
            picked, ids = conn.execute(Q["claim_pick"], params).fetchone()
            if picked != "[]":
                lease_params = {"ids": ids, "owner": owner, "lease": lease, "now": now}
                conn.execute(Q["claim_lease"], lease_params)
            return str(picked)

        return [claimed_from_row(row) for row in orjson.loads(await self.storage.write(take))]

    async def settle(self, settlement: Settlement) -> bool:
        delivered, failed = settlement_rows(settlement)
        owner = settlement.owner

        def record(conn: sqlite3.Connection) -> bool:
            now = time.time()
            settled = 0
            if settlement.delivered:
                params = {"rows": delivered, "owner": owner, "now": now}
                settled += conn.execute(Q["settle_delivered"], params).rowcount
            if settlement.failures:
                params = {"rows": failed, "owner": owner, "now": now}
                conn.execute(Q["record_attempts"], params)
                settled += conn.execute(Q["settle_failed"], params).rowcount
            # A row left unsettled was replaced in flight (or its lease was
            # lost): settle_replaced releases it. Most documents have none,
            # and skip that statement.
            if settled < len(settlement.delivered) + len(settlement.failures):
                every = [row_id for row_id, _ in settlement.delivered]
                every += [f.id for f in settlement.failures]
                params = {"ids": orjson.dumps(every).decode(), "owner": owner, "now": now}
                conn.execute(Q["settle_replaced"], params)
            if settlement.endpoint_ok:
                conn.execute(Q["endpoint_ok"], (settlement.endpoint_id,))
                return False
            conn.execute(Q["endpoint_failed"], {"endpoint_id": settlement.endpoint_id, "now": now})
            if settlement.pause_after is None:
                return False
            paused = conn.execute(
                Q["pause_failing"],
                {
                    "endpoint_id": settlement.endpoint_id,
                    "now": now,
                    "pause_after": settlement.pause_after,
                    "reason": f"every push failed for {settlement.pause_after:g} s; "
                    f"last error: {settlement.error}",
                },
            ).fetchone()
            return paused is not None

        return await self.storage.write(record)

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
            "now": time.time(),
        }
        found = await self.storage.read(
            lambda conn: conn.execute(Q["list_deliveries"], params).fetchall()
        )
        return [delivery_from_row(row) for row in found]

    async def attempts(self, delivery_id: int) -> list[Attempt]:
        found = await self.storage.read(
            lambda conn: conn.execute(Q["list_attempts"], (delivery_id,)).fetchall()
        )
        return [Attempt(*row) for row in found]

    async def redeliver(
        self,
        *,
        delivery_id: int | None = None,
        endpoint: str | None = None,
        since: float | None = None,
    ) -> int:
        endpoint_id = None if endpoint is None else (await self.endpoint(endpoint)).id
        params = {
            "delivery_id": delivery_id,
            "endpoint_id": endpoint_id,
            "since": since,
        }
        return await self.storage.write(
            lambda conn: conn.execute(Q["redeliver"], params | {"now": time.time()}).rowcount
        )

    async def tally(self) -> list[Tally]:
        found = await self.storage.read(lambda conn: conn.execute(Q["tally"]).fetchall())
        return [Tally(*row) for row in found]

    async def close(self) -> None:
        await self.storage.close()
