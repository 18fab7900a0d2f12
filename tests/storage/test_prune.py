"""Retention in the storage engines: ``prune(before, batch_size)`` on each engine.

``prune`` deletes the events received before the cut-off, then the messages
last changed before it that have no event left, then the rejects received
before it, walking the tables in batches. These tests pin the counts it
returns and the rows it leaves, on a real SQLite file and a real PostgreSQL
database. "Old" rows are made by storing, waiting a moment, taking the
cut-off, waiting again and storing the "new" ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from webcom_status.model import Reject, State
from webcom_status.protocol import parse_time
from webcom_status.storage import Storage, open_storage
from webcom_status.storage._prune import Pruned

ZONE = ZoneInfo("Europe/Moscow")
MAX_ID = 2**63 - 1
# Enough to put received_at on either side of a cut-off taken in between.
TICK = 0.02


@pytest.fixture
async def storage(db_url: str) -> AsyncIterator[Storage]:
    """The storage of a fresh database, on each engine in turn; closed afterwards."""
    opened = await open_storage(db_url)
    try:
        yield opened
    finally:
        await opened.close()


def state(id_sms: int, status: str = "deliver", time_raw: str = "2024-03-01 12:00:00") -> State:
    """A state as the parser makes it, the time read in Europe/Moscow."""
    return State(id_sms, status, sms=status, time_raw=time_raw, time_utc=parse_time(time_raw, ZONE))


def events_of(id_sms: int, count: int) -> list[State]:
    """``count`` distinct events of one message (different times of one status)."""
    return [state(id_sms, "deliver", f"2024-03-01 12:{minute:02d}:00") for minute in range(count)]


def reject(n: int) -> Reject:
    """A refused state, told apart by its raw ``id_sms`` ``x<n>``."""
    raw = f"<state id_sms='x{n}'/>".encode()
    return Reject("state", f"id_sms is not an integer: 'x{n}'", raw, id_sms_raw=f"x{n}")


async def cut_off() -> datetime:
    """A cut-off strictly after everything stored so far and before anything stored next."""
    await asyncio.sleep(TICK)
    before = datetime.now(UTC)
    await asyncio.sleep(TICK)
    return before


def everything() -> datetime:
    """A cut-off after everything stored so far."""
    return datetime.now(UTC) + timedelta(seconds=1)


async def counts(storage: Storage) -> tuple[int, int, int]:
    """``(messages, events, rejects)`` in the database."""
    stats = await storage.stats()
    return stats.messages, stats.events, stats.rejects


async def history(storage: Storage, id_sms: int) -> set[tuple[str, str]] | None:
    """``{(status, time_raw)}`` of the events kept for a message; ``None`` if it is gone."""
    message = await storage.message(id_sms)
    if message is None:
        return None
    return {(e.status, e.time_raw) for e in message.history}


async def test_prune_of_an_empty_database_deletes_nothing(storage: Storage) -> None:
    """On a database with no rows, every count returned is zero."""
    assert await storage.prune(everything()) == Pruned(0, 0, 0)
    assert await storage.prune(everything(), batch_size=1) == Pruned(0, 0, 0)
    assert await counts(storage) == (0, 0, 0)


async def test_a_cut_off_before_everything_deletes_nothing(storage: Storage) -> None:
    """A cut-off in the past leaves every event, message and reject, and returns zeros."""
    await storage.store([state(1), state(1, "read"), state(2)], [reject(1)])
    assert await storage.prune(datetime.now(UTC) - timedelta(hours=1)) == Pruned(0, 0, 0)
    assert await counts(storage) == (2, 3, 1)
    assert await history(storage, 1) == {
        ("deliver", "2024-03-01 12:00:00"),
        ("read", "2024-03-01 12:00:00"),
    }


async def test_a_cut_off_after_everything_deletes_everything(storage: Storage) -> None:
    """A cut-off in the future deletes every row and returns how many of each.

    The smallest and the largest possible ``id_sms`` are included: the
    keyset walk must reach both ends.
    """
    ids = [1, 2, 3, MAX_ID]
    await storage.store([s for i in ids for s in events_of(i, 3)], [reject(1), reject(2)])
    assert await counts(storage) == (4, 12, 2)
    assert await storage.prune(everything()) == Pruned(events=12, messages=4, rejects=2)
    assert await counts(storage) == (0, 0, 0)
    for id_sms in ids:
        assert await storage.message(id_sms) is None
    assert await storage.rejects() == []


@pytest.mark.parametrize("batch_size", [1, 3, 7, 100, 1000])
async def test_batches_smaller_than_the_data_delete_all_old_rows_and_no_new_one(
    storage: Storage, batch_size: int
) -> None:
    """100 old events over 20 ids, then new events on some of those ids and on others.

    Whatever the batch size (even one row, or smaller than one message's
    events), every old event is deleted and every new one kept; messages
    with only old events go, messages with a new event stay.
    """
    old_ids = range(10, 210, 10)  # 20 ids, 5 events each, gaps between them
    await storage.store([s for i in old_ids for s in events_of(i, 5)], [])
    before = await cut_off()
    kept_ids = [10, 50, 200, 205, 1000]  # three old ids, two new ones
    new_events = [state(i, "read", "2024-03-02 09:00:00") for i in kept_ids]
    await storage.store(new_events, [])

    pruned = await storage.prune(before, batch_size=batch_size)

    assert pruned == Pruned(events=100, messages=17, rejects=0)
    assert await counts(storage) == (5, 5, 0)
    for id_sms in kept_ids:
        assert await history(storage, id_sms) == {("read", "2024-03-02 09:00:00")}
    for id_sms in set(old_ids) - set(kept_ids):
        assert await storage.message(id_sms) is None


async def test_a_message_with_an_old_and_a_newer_event_keeps_the_newer_event(
    storage: Storage,
) -> None:
    """An old event is deleted, the newer event of the same message is kept with its message.

    Message 1's newer event wins (its state changed after the cut-off);
    message 2's newer event loses to the old final (its state last changed
    before the cut-off): both messages stay, each with only its newer event,
    and their current state is not changed by the prune.
    """
    await storage.store([state(1, "deliver"), state(2, "read")], [])
    before = await cut_off()
    await storage.store(
        [state(1, "read", "2024-03-02 09:00:00"), state(2, "deliver", "2024-03-02 09:00:00")], []
    )
    current = {i: await storage.message(i) for i in (1, 2)}

    assert await storage.prune(before, batch_size=1) == Pruned(events=2, messages=0, rejects=0)

    assert await history(storage, 1) == {("read", "2024-03-02 09:00:00")}
    assert await history(storage, 2) == {("deliver", "2024-03-02 09:00:00")}
    for id_sms, message in current.items():
        after = await storage.message(id_sms)
        assert message is not None
        assert after is not None
        assert (after.status, after.time_raw, after.updated_at) == (
            message.status,
            message.time_raw,
            message.updated_at,
        )


async def test_a_second_prune_of_the_same_cut_off_deletes_nothing(storage: Storage) -> None:
    """Pruning is idempotent: the same cut-off again returns zeros and keeps the new rows."""
    await storage.store(events_of(1, 4), [reject(1)])
    before = await cut_off()
    await storage.store(events_of(2, 2), [reject(2)])
    assert await storage.prune(before, batch_size=3) == Pruned(events=4, messages=1, rejects=1)
    assert await storage.prune(before, batch_size=3) == Pruned(0, 0, 0)
    assert await counts(storage) == (1, 2, 1)


@pytest.mark.parametrize("batch_size", [1, 7, 25, 1000])
async def test_old_rejects_are_pruned_in_batches_and_new_ones_kept(
    storage: Storage, batch_size: int
) -> None:
    """25 old rejects are deleted whatever the batch size (also an exact multiple); 5 new stay."""
    await storage.store([], [reject(n) for n in range(25)])
    before = await cut_off()
    await storage.store([], [reject(n) for n in range(100, 105)])

    assert await storage.prune(before, batch_size=batch_size) == Pruned(0, 0, 25)

    left = await storage.rejects()
    assert [r.id_sms_raw for r in left] == [f"x{n}" for n in range(100, 105)]


async def test_a_message_stored_again_after_its_events_were_pruned_is_kept(
    storage: Storage,
) -> None:
    """A redelivered old state after a prune is a new event: the message lives on."""
    await storage.store([state(1, "read")], [])
    before = await cut_off()
    await storage.store([state(1, "read")], [])  # the same state: nothing new
    assert await storage.prune(before) == Pruned(events=1, messages=1, rejects=0)
    assert await storage.message(1) is None
    await storage.store([state(1, "read")], [])
    assert await history(storage, 1) == {("read", "2024-03-01 12:00:00")}
    assert await storage.prune(before) == Pruned(0, 0, 0)
    assert await history(storage, 1) == {("read", "2024-03-01 12:00:00")}


RACE_IDS = 1000
RACE_BATCH = 50
RACE_PUSHERS = 8
# One writer thread serialises everything on SQLite: a couple of rounds pin it.
RACE_ROUNDS = {"sqlite": 2, "postgresql": 8}


async def test_a_state_stored_while_a_prune_runs_keeps_its_message(
    storage: Storage, engine: str
) -> None:
    """Pushes racing a prune: every state acknowledged after the cut-off stays readable.

    Each round stores a final ``read`` for 1,000 ids, takes a cut-off, then
    prunes in batches of 50 while eight writers store a (losing, so the
    message row is not changed) ``deliver`` for every id, walking the ids
    against the prune's direction so that some arrive while the prune
    deletes their message. A prune must never leave a stored event without
    its message (``GET /api/messages/{id}`` would say 404 for a state that
    was acknowledged): afterwards there are exactly as many messages as
    events, one per id. Several rounds, to meet the race; each starts empty.
    """
    late = "2024-02-01 10:00:00"
    ids = range(1, RACE_IDS + 1)

    async def push(first: int) -> None:
        for i in reversed(ids[first::RACE_PUSHERS]):
            await storage.store([state(i, "deliver", late)], [])

    for round_ in range(RACE_ROUNDS[engine]):
        await storage.prune(everything())
        await storage.store([state(i, "read") for i in ids], [])
        before = await cut_off()
        pushers = [asyncio.create_task(push(k)) for k in range(RACE_PUSHERS)]
        await storage.prune(before, batch_size=RACE_BATCH)
        await asyncio.gather(*pushers)

        stats = await storage.stats()
        orphaned = [i for i in ids if await storage.message(i) is None]
        assert orphaned == [], f"round {round_}: events with no message"
        assert (stats.messages, stats.events) == (RACE_IDS, RACE_IDS), f"round {round_}"
