"""The outbox's contract, on each engine: what ``open_outbox`` gives the sender.

Endpoints are added, listed, changed, paused and removed by name; states are
enqueued durably, a later state replacing a pending one; due rows are taken
under a lease, oldest first, and settled (delivered, retried later, or dead)
only by the worker that still holds them; an endpoint failing for long
enough is paused; dead letters are put back for a new round of attempts.
Every test runs on SQLite and on PostgreSQL (a fresh database each); the
last ones are about several workers sharing one database (on both engines),
then PostgreSQL only: lost connections, and the database's collation.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import cast
from urllib.parse import urlsplit

import pytest

from tests._postgres import PostgresDatabases, admin
from webcom_status.errors import ConfigError, InvalidOutgoing, StorageError, UnknownEndpoint
from webcom_status.model import Flavour
from webcom_status.protocol import Outgoing
from webcom_status.sender.model import (
    Claimed,
    Delivery,
    DeliveryState,
    Endpoint,
    EndpointSettings,
    Failure,
    Settlement,
    Tally,
)
from webcom_status.sender.outbox import Outbox, rows, sort_key
from webcom_status.storage import open_outbox
from webcom_status.storage.outbox_sqlite import Q as SQLITE_QUERIES
from webcom_status.storage.outbox_sqlite import enqueue_statements

T1 = "2024-03-01 12:00:00"
T2 = "2024-03-01 12:05:00"
SETTINGS = EndpointSettings(url="http://127.0.0.1:9/webhook")
LEASE = 0.2  # seconds; the tests wait WAIT for a lease to end
WAIT = 0.35
LONG = 60.0  # a lease or a delay that outlasts any test
CLOCK_SLACK = 2.0  # seconds between the test's clock and the database's, at most

PENDING, DELIVERED, DEAD = DeliveryState.PENDING, DeliveryState.DELIVERED, DeliveryState.DEAD


def out(id_sms: int, status: str = "deliver", time_: str = T1, **channels: str) -> Outgoing:
    """A state to push; ``sms=`` and ``viber=`` as keywords."""
    return Outgoing(id_sms, status, time_, channels.get("sms"), channels.get("viber"))


@pytest.fixture
async def outbox(db_url: str) -> AsyncIterator[Outbox]:
    """The outbox of a fresh database, with the endpoint ``a``; closed at the end."""
    opened = await open_outbox(db_url)
    await opened.add_endpoint("a", SETTINGS)
    yield opened
    await opened.close()


async def endpoint_id(outbox: Outbox, name: str = "a") -> int:
    return (await outbox.endpoint(name)).id


async def row(outbox: Outbox, delivery_id: int) -> Delivery:
    """The outbox row with id ``delivery_id``."""
    found = await outbox.deliveries(after_id=delivery_id - 1, limit=1)
    assert found, f"no delivery {delivery_id}"
    assert found[0].id == delivery_id
    return found[0]


async def take(
    outbox: Outbox, owner: str = "w1", limit: int = 100, lease: float = LONG
) -> list[Claimed]:
    """Claim the due rows of endpoint ``a``."""
    return await outbox.claim(await endpoint_id(outbox), owner, limit, lease)


async def settle(
    outbox: Outbox,
    owner: str = "w1",
    delivered: tuple[Claimed, ...] = (),
    failures: tuple[Failure, ...] = (),
    *,
    ok: bool = True,
    error: str | None = None,
    pause_after: float | None = None,
    name: str = "a",
) -> bool:
    settlement = Settlement(
        endpoint_id=await endpoint_id(outbox, name),
        owner=owner,
        delivered=tuple((c.id, c.version) for c in delivered),
        failures=failures,
        endpoint_ok=ok,
        error=error,
        pause_after=pause_after,
    )
    return await outbox.settle(settlement)


async def dead_letter(outbox: Outbox, state: Outgoing, name: str = "a") -> int:
    """Enqueue ``state`` for endpoint ``name`` and make it a dead letter at once; its row id."""
    await outbox.enqueue(name, [state])
    claimed = await outbox.claim(await endpoint_id(outbox, name), "w-dead", 100, LONG)
    assert [c.state for c in claimed] == [state]
    failure = Failure(claimed[0].id, 1, "HTTP 500", None)
    await settle(outbox, "w-dead", failures=(failure,), name=name)
    return claimed[0].id


# Endpoints


async def test_endpoints_are_added_listed_changed_and_removed(outbox: Outbox) -> None:
    before = time.time()
    settings = EndpointSettings(
        url="https://client.example/status",
        username="user",
        password="secret",
        flavour=Flavour.JSON,
        batch_size=50,
        concurrency=3,
        rate_limit=2.5,
        connect_timeout=1.5,
        read_timeout=7.0,
    )
    added = await outbox.add_endpoint("B", settings)
    assert (added.name, added.settings) == ("B", settings)
    assert before - CLOCK_SLACK <= added.created_at <= time.time() + CLOCK_SLACK
    assert (added.failing_since, added.paused_at, added.pause_reason) == (None, None, None)
    assert await outbox.endpoint("B") == added
    # By name, in byte order ("B" < "a"), whatever the database's collation.
    assert [e.name for e in await outbox.endpoints()] == ["B", "a"]
    assert len({e.id for e in await outbox.endpoints()}) == 2

    changed = EndpointSettings(url="https://client.example/v2", rate_limit=None)
    updated = await outbox.update_endpoint("B", changed)
    assert updated == Endpoint(added.id, "B", changed, added.created_at)
    assert await outbox.endpoint("B") == updated

    await outbox.enqueue("B", [out(1), out(2)])
    await outbox.enqueue("a", [out(1)])
    assert await outbox.remove_endpoint("B") == 2
    with pytest.raises(UnknownEndpoint):
        await outbox.endpoint("B")
    assert [e.name for e in await outbox.endpoints()] == ["a"]
    assert [(d.endpoint, d.state.id_sms) for d in await outbox.deliveries()] == [("a", 1)]
    assert await outbox.tally() == [Tally("a", 1, 0, 0)]
    assert await outbox.remove_endpoint("a") == 1
    assert await outbox.endpoints() == []


async def test_removing_an_endpoint_takes_its_attempts_along(outbox: Outbox) -> None:
    await dead_letter(outbox, out(1))
    assert await outbox.remove_endpoint("a") == 1
    assert await outbox.deliveries() == []
    assert await outbox.tally() == []


async def test_a_taken_name_is_a_config_error(outbox: Outbox) -> None:
    with pytest.raises(ConfigError, match="'a' exists already"):
        await outbox.add_endpoint("a", EndpointSettings(url="http://other.example/"))
    assert [(e.name, e.settings) for e in await outbox.endpoints()] == [("a", SETTINGS)]


async def test_an_unknown_name_is_unknown_endpoint(outbox: Outbox) -> None:
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: outbox.endpoint("nope"),
        lambda: outbox.update_endpoint("nope", SETTINGS),
        lambda: outbox.set_paused("nope", "why"),
        lambda: outbox.set_paused("nope", None),
        lambda: outbox.remove_endpoint("nope"),
        lambda: outbox.enqueue("nope", [out(1)]),
        lambda: outbox.redeliver(endpoint="nope"),
    ]
    for call in calls:
        with pytest.raises(UnknownEndpoint) as caught:
            await call()
        assert caught.value.name == "nope"
    assert await outbox.deliveries() == []
    assert await outbox.deliveries(endpoint="nope") == []


async def test_a_closed_outbox_raises_storage_error(
    db_url: str, engine: str, request: pytest.FixtureRequest
) -> None:
    outbox = await open_outbox(db_url)
    await outbox.add_endpoint("a", SETTINGS)
    await outbox.close()
    calls: list[Callable[[], Awaitable[object]]] = [
        lambda: outbox.enqueue("a", [out(1)]),
        lambda: outbox.add_endpoint("b", SETTINGS),
        outbox.endpoints,
        outbox.deliveries,
    ]
    for call in calls:
        with pytest.raises(StorageError):
            await call()


# Enqueue


async def test_enqueued_states_survive_a_reopen(db_url: str) -> None:
    first = await open_outbox(db_url)
    try:
        await first.add_endpoint("a", SETTINGS)
        before = time.time()
        states = [
            out(1, "send", ""),
            out(2, "deliver", T1, sms="deliver"),
            out(3, "x", T2, viber="read"),
        ]
        assert await first.enqueue("a", states) == 3
        assert await first.enqueue("a", []) == 0
    finally:
        await first.close()

    again = await open_outbox(db_url)
    try:
        found = await again.deliveries()
        assert [d.state for d in found] == states
        for delivery in found:
            assert (delivery.endpoint, delivery.status, delivery.attempts) == ("a", PENDING, 0)
            assert (delivery.settled_at, delivery.last_error, delivery.claimed) == (
                None,
                None,
                False,
            )
            assert before - CLOCK_SLACK <= delivery.enqueued_at <= time.time() + CLOCK_SLACK
            assert delivery.next_at == pytest.approx(delivery.enqueued_at)
        assert await again.tally() == [Tally("a", 3, 0, 0)]
        assert set(await again.due()) == {await endpoint_id(again)}
    finally:
        await again.close()


async def test_a_later_state_replaces_a_pending_one_and_bumps_its_version(outbox: Outbox) -> None:
    assert await outbox.enqueue("a", [out(1, "send", ""), out(2, "deliver")]) == 2
    assert await outbox.enqueue("a", [out(1, "deliver", T1, sms="deliver")]) == 1
    assert await outbox.enqueue("a", [out(1, "read", T2)]) == 1
    # Neither an earlier state nor the same one again replaces it.
    assert await outbox.enqueue("a", [out(1, "deliver", T2), out(1, "send", "")]) == 0
    assert await outbox.enqueue("a", [out(1, "read", T2), out(2, "send", "")]) == 0
    found = await outbox.deliveries()
    assert [d.state for d in found] == [out(1, "read", T2), out(2, "deliver")]
    claimed = {c.state.id_sms: c for c in await take(outbox)}
    assert (claimed[1].version, claimed[1].state) == (3, out(1, "read", T2))
    assert (claimed[2].version, claimed[2].state) == (1, out(2, "deliver"))


async def test_a_later_time_wins_within_one_rank(outbox: Outbox) -> None:
    await outbox.enqueue("a", [out(1, "deliver", T2)])
    assert await outbox.enqueue("a", [out(1, "deliver", T1)]) == 0
    assert await outbox.enqueue("a", [out(1, "read", T1)]) == 1
    assert [d.state for d in await outbox.deliveries()] == [out(1, "read", T1)]


async def test_repeated_ids_in_one_call_keep_the_latest_state(outbox: Outbox) -> None:
    states = [out(7, "deliver", T1), out(7, "read", T2), out(7, "send", ""), out(8, "send", "")]
    assert await outbox.enqueue("a", states) == 2
    assert [d.state for d in await outbox.deliveries()] == [out(7, "read", T2), out(8, "send", "")]


@pytest.mark.parametrize("times", [2, 1000], ids=["shared-fields", "distinct-fields"])
async def test_large_calls_keep_the_latest_state_of_each_id(outbox: Outbox, times: int) -> None:
    """Calls of 1,000 states over 300 ids, their fields shared by many states (one
    statement per group on SQLite) or by few (one statement for all): each id
    ends with the greatest state it was given, and the count says which changed."""
    generator = random.Random(times)
    statuses = ["send", "deliver", "partly_deliver", "read", "expired", "queued"]
    clock = [f"2024-03-01 12:{m // 60:02d}:{m % 60:02d}" for m in range(times)]
    best: dict[int, Outgoing] = {}
    grouped: set[bool] = set()
    for _ in range(5):
        call = [
            out(generator.randint(1, 300), generator.choice(statuses), generator.choice(clock))
            for _ in range(1000)
        ]
        grouped.add(enqueue_statements(rows(call))[0][0] == SQLITE_QUERIES["enqueue_group"])
        latest: dict[int, Outgoing] = {}
        for state in call:
            if state.id_sms not in latest or sort_key(state) > sort_key(latest[state.id_sms]):
                latest[state.id_sms] = state
        changed = [i for i, s in latest.items() if i not in best or sort_key(s) > sort_key(best[i])]
        assert await outbox.enqueue("a", call) == len(changed)
        best.update((i, latest[i]) for i in changed)
    found = await outbox.deliveries(limit=1000)
    assert {d.state.id_sms: d.state for d in found} == best
    assert len(found) == len(best)
    assert grouped == {times == 2}, "the test no longer takes the path it is named for"


async def test_a_state_after_a_delivered_one_is_a_new_row(outbox: Outbox) -> None:
    await outbox.enqueue("a", [out(1, "deliver")])
    await settle(outbox, delivered=tuple(await take(outbox)))
    assert await outbox.enqueue("a", [out(1, "read", T2)]) == 1
    found = await outbox.deliveries()
    assert [(d.state, d.status) for d in found] == [
        (out(1, "deliver"), DELIVERED),
        (out(1, "read", T2), PENDING),
    ]


@pytest.mark.parametrize(
    "bad",
    [
        out(0),
        out(-5),
        Outgoing(cast(int, "12a"), "deliver", T1),
        Outgoing(cast(int, None), "deliver", T1),
        out(1, "deliver", "yesterday"),
        out(1, "deliver", "2024-02-30 12:00:00"),
        Outgoing(1, "deliver", cast(str, None)),
        out(1, ""),
        out(1, "   "),
        out(1, "deli\nver"),
        out(1, "deliver", T1, sms="bad\x00"),
    ],
    ids=[
        "id-0",
        "id-negative",
        "id-not-an-integer",
        "id-missing",
        "time-not-a-time",
        "time-no-such-day",
        "time-not-a-string",
        "status-empty",
        "status-blank",
        "status-control-character",
        "channel-control-character",
    ],
)
async def test_an_invalid_state_enqueues_nothing_of_its_call(outbox: Outbox, bad: Outgoing) -> None:
    await outbox.enqueue("a", [out(1, "send", "")])
    with pytest.raises(InvalidOutgoing):
        await outbox.enqueue("a", [out(1, "read"), out(2), bad, out(3)])
    assert [d.state for d in await outbox.deliveries()] == [out(1, "send", "")]
    with pytest.raises(InvalidOutgoing):
        await outbox.enqueue("nope", [bad])  # checked before the endpoint is looked up


async def test_ids_are_read_from_text_and_big_ones_kept(outbox: Outbox) -> None:
    big = 2**63 - 1
    assert (
        await outbox.enqueue("a", [Outgoing(cast(int, " 42 "), "deliver", f" {T1} "), out(big)])
        == 2
    )
    assert [d.state for d in await outbox.deliveries()] == [out(42), out(big)]


# Due and claim


async def test_due_names_each_unpaused_endpoint_with_work(outbox: Outbox) -> None:
    await outbox.add_endpoint("b", SETTINGS)
    await outbox.add_endpoint("idle", SETTINGS)
    assert await outbox.due() == {}
    before = time.time()
    await outbox.enqueue("a", [out(1)])
    await outbox.enqueue("b", [out(1), out(2)])
    a, b = await endpoint_id(outbox, "a"), await endpoint_id(outbox, "b")
    due = await outbox.due()
    assert set(due) == {a, b}
    assert all(before - CLOCK_SLACK <= at <= time.time() + CLOCK_SLACK for at in due.values())

    await outbox.set_paused("b", "maintenance")
    assert set(await outbox.due()) == {a}
    await outbox.set_paused("b", None)
    assert set(await outbox.due()) == {a, b}

    # A claimed row stays in due (its lease end), a delivered one leaves.
    claimed = await take(outbox, lease=LONG)
    assert (await outbox.due())[a] > time.time() + LONG - CLOCK_SLACK
    await settle(outbox, delivered=tuple(claimed))
    assert set(await outbox.due()) == {b}


async def test_claim_takes_at_most_limit_rows_oldest_first(outbox: Outbox) -> None:
    for id_sms in (30, 10, 20, 40):
        await outbox.enqueue("a", [out(id_sms)])
    first = await take(outbox, "w1", limit=2)
    assert [c.state.id_sms for c in first] == [30, 10]
    assert all((c.version, c.attempts) == (1, 0) for c in first)
    second = await take(outbox, "w2", limit=5)
    assert [c.state.id_sms for c in second] == [20, 40]
    assert await take(outbox, "w3") == []
    assert await outbox.claim(await endpoint_id(outbox), "w3", 0, LONG) == []


async def test_claim_goes_by_due_time_not_by_age(outbox: Outbox) -> None:
    await outbox.enqueue("a", [out(1)])
    [first] = await take(outbox)
    await settle(outbox, failures=(Failure(first.id, 1, "timeout", WAIT),), ok=False)
    await outbox.enqueue("a", [out(2)])  # a newer row, due before the retry
    await asyncio.sleep(WAIT + 0.1)
    [taken] = await take(outbox, "w2", limit=1)
    assert taken.state == out(2)
    [retried] = await take(outbox, "w2", limit=1)
    assert (retried.id, retried.attempts) == (first.id, 1)


async def test_claim_takes_only_its_endpoints_rows(outbox: Outbox) -> None:
    await outbox.add_endpoint("b", SETTINGS)
    await outbox.enqueue("a", [out(1)])
    await outbox.enqueue("b", [out(2)])
    assert [c.state.id_sms for c in await take(outbox)] == [1]
    b = await endpoint_id(outbox, "b")
    assert [c.state.id_sms for c in await outbox.claim(b, "w1", 10, LONG)] == [2]


async def test_a_leased_row_is_skipped_until_its_lease_ends(outbox: Outbox) -> None:
    await outbox.enqueue("a", [out(1), out(2)])
    held = await take(outbox, "w1", lease=LEASE)
    assert len(held) == 2
    assert await take(outbox, "w2") == []
    assert [d.claimed for d in await outbox.deliveries()] == [True, True]
    await asyncio.sleep(WAIT)
    assert [d.claimed for d in await outbox.deliveries()] == [False, False]
    again = await take(outbox, "w2", lease=LONG)
    assert [(c.id, c.version, c.state) for c in again] == [(c.id, c.version, c.state) for c in held]
    assert [d.claimed for d in await outbox.deliveries()] == [True, True]
    assert await take(outbox, "w1") == []


# Settle


async def test_delivered_rows_are_settled(outbox: Outbox) -> None:
    await outbox.enqueue("a", [out(1), out(2)])
    claimed = await take(outbox)
    before = time.time()
    assert await settle(outbox, delivered=(claimed[0],)) is False
    done, other = await outbox.deliveries()
    assert (done.status, done.attempts, done.next_at, done.last_error) == (DELIVERED, 1, None, None)
    assert done.claimed is False
    assert done.settled_at is not None
    assert before - CLOCK_SLACK <= done.settled_at <= time.time() + CLOCK_SLACK
    assert (other.status, other.attempts, other.claimed) == (PENDING, 0, True)
    assert await outbox.attempts(done.id) == []
    assert await outbox.tally() == [Tally("a", 1, 1, 0)]
    # Settling it once more changes nothing: the lease is gone.
    await settle(outbox, delivered=(claimed[0],))
    assert await row(outbox, done.id) == done


async def test_a_row_replaced_in_flight_stays_pending_and_goes_again(outbox: Outbox) -> None:
    await outbox.enqueue("a", [out(1, "deliver"), out(2, "deliver")])
    claimed = await take(outbox)
    assert await outbox.enqueue("a", [out(1, "read", T2)]) == 1  # while in flight
    await settle(outbox, delivered=tuple(claimed))
    replaced, done = await outbox.deliveries()
    # The older state's push succeeded: it does not count against the newer one.
    assert (replaced.status, replaced.attempts, replaced.claimed) == (PENDING, 0, False)
    assert replaced.state == out(1, "read", T2)
    assert done.status is DELIVERED
    [again] = await take(outbox, "w2")
    assert (again.id, again.version, again.attempts) == (replaced.id, 2, 0)
    assert again.state == out(1, "read", T2)
    await settle(outbox, "w2", delivered=(again,))
    final = await row(outbox, replaced.id)
    assert (final.status, final.attempts, final.state) == (DELIVERED, 1, out(1, "read", T2))


async def test_a_failure_with_a_delay_waits_and_keeps_its_error(outbox: Outbox) -> None:
    await outbox.enqueue("a", [out(1)])
    [claimed] = await take(outbox)
    before = time.time()
    failure = Failure(claimed.id, 1, "HTTP 503 from the client", LONG)
    assert await settle(outbox, failures=(failure,), ok=False, error="HTTP 503") is False
    failed = await row(outbox, claimed.id)
    assert (failed.status, failed.attempts, failed.claimed) == (PENDING, 1, False)
    assert failed.last_error == "HTTP 503 from the client"
    assert failed.settled_at is None
    assert failed.next_at is not None
    assert before + LONG - CLOCK_SLACK <= failed.next_at <= time.time() + LONG + CLOCK_SLACK
    [attempt] = await outbox.attempts(claimed.id)
    assert (attempt.attempt, attempt.error) == (1, "HTTP 503 from the client")
    assert before - CLOCK_SLACK <= attempt.at <= time.time() + CLOCK_SLACK
    assert await take(outbox, "w2") == []
    assert (await outbox.due())[await endpoint_id(outbox)] == pytest.approx(failed.next_at)


async def test_an_error_may_hold_any_character(
    outbox: Outbox, engine: str, request: pytest.FixtureRequest
) -> None:
    """An error quoting a client's answer may hold NUL, which PostgreSQL text cannot
    (it keeps U+FFFD in its place); the rest of the error is kept whole."""
    await outbox.enqueue("a", [out(1)])
    [claimed] = await take(outbox)
    failure = Failure(claimed.id, 1, "bad\x00body é", None)
    await settle(outbox, failures=(failure,), ok=False, error="bad\x00body", pause_after=0)
    reason = (await outbox.endpoint("a")).pause_reason
    assert reason is not None
    assert reason.endswith(("bad\x00body", "bad\ufffdbody"))
    expected = {"bad\x00body é", "bad\ufffdbody é"}
    assert (await row(outbox, claimed.id)).last_error in expected
    assert {a.error for a in await outbox.attempts(claimed.id)} <= expected


async def test_failures_count_up_then_the_row_is_dead(outbox: Outbox) -> None:
    await outbox.enqueue("a", [out(1)])
    for attempt, delay in ((1, 0.0), (2, 0.0), (3, None)):
        [claimed] = await take(outbox)
        assert claimed.attempts == attempt - 1
        failure = Failure(claimed.id, attempt, f"error {attempt}", delay)
        await settle(outbox, failures=(failure,), ok=False)
    dead = await row(outbox, claimed.id)
    assert (dead.status, dead.attempts, dead.next_at, dead.claimed) == (DEAD, 3, None, False)
    assert (dead.last_error, dead.settled_at is not None) == ("error 3", True)
    assert [(a.attempt, a.error) for a in await outbox.attempts(claimed.id)] == [
        (1, "error 1"),
        (2, "error 2"),
        (3, "error 3"),
    ]
    assert await take(outbox) == []
    assert await outbox.due() == {}
    assert await outbox.tally() == [Tally("a", 0, 0, 1)]


async def test_documents_settled_at_once_are_each_recorded_by_their_owner(
    outbox: Outbox,
) -> None:
    """Settlements arriving together (SQLite records them in one job): two documents
    of one claim, one of another, a row replaced in flight, and a settlement by an
    owner that holds none of its rows."""
    await outbox.enqueue("a", [out(i) for i in range(1, 41)])
    first = await take(outbox, "w1", limit=20)
    second = await take(outbox, "w2", limit=20)
    assert await outbox.enqueue("a", [out(5, "read", T2)]) == 1  # row 5 replaced in flight
    await asyncio.gather(
        settle(outbox, "w-stale", delivered=tuple(second[10:])),  # still w2's
        settle(outbox, "w1", delivered=tuple(first[:10])),
        settle(outbox, "w1", delivered=tuple(first[10:])),
        settle(outbox, "w2", delivered=tuple(second[:10])),
    )
    rows = {d.state.id_sms: d for d in await outbox.deliveries()}
    assert (rows[5].status, rows[5].attempts, rows[5].claimed) == (PENDING, 0, False)
    assert rows[5].state == out(5, "read", T2)
    held = {c.state.id_sms for c in second[10:]}
    assert all((rows[i].status, rows[i].claimed) == (PENDING, True) for i in held)
    done = set(rows) - held - {5}
    assert all((rows[i].status, rows[i].attempts) == (DELIVERED, 1) for i in done)
    assert await outbox.tally() == [Tally("a", 11, 29, 0)]
    [again] = await take(outbox, "w3")
    assert (again.state, again.version) == (out(5, "read", T2), 2)


async def test_one_settlement_records_deliveries_and_failures_together(outbox: Outbox) -> None:
    await outbox.enqueue("a", [out(1), out(2), out(3)])
    one, two, three = await take(outbox)
    failures = (Failure(two.id, 1, "id not acknowledged", LONG), Failure(three.id, 1, "bad", None))
    await settle(outbox, delivered=(one,), failures=failures)
    assert [(d.status, d.attempts) for d in await outbox.deliveries()] == [
        (DELIVERED, 1),
        (PENDING, 1),
        (DEAD, 1),
    ]


async def test_a_stale_owner_changes_nothing(outbox: Outbox) -> None:
    await outbox.enqueue("a", [out(1), out(2)])
    one, two = await take(outbox, "w1", lease=LEASE)
    await asyncio.sleep(WAIT)
    taken_over = await take(outbox, "w2", lease=LONG)
    assert [c.id for c in taken_over] == [one.id, two.id]
    before = await outbox.deliveries()

    await settle(outbox, "w1", delivered=(one,), failures=(Failure(two.id, 1, "late", None),))
    assert await outbox.deliveries() == before
    assert [(d.status, d.attempts, d.claimed) for d in before] == [(PENDING, 0, True)] * 2
    assert await outbox.attempts(two.id) == []

    await settle(outbox, "w2", delivered=(one,), failures=(Failure(two.id, 1, "bad", None),))
    assert [d.status for d in await outbox.deliveries()] == [DELIVERED, DEAD]
    assert [a.error for a in await outbox.attempts(two.id)] == ["bad"]


async def test_an_expired_lease_can_still_be_settled_by_its_owner(outbox: Outbox) -> None:
    await outbox.enqueue("a", [out(1)])
    claimed = await take(outbox, "w1", lease=LEASE)
    await asyncio.sleep(WAIT)  # nobody took it over
    await settle(outbox, "w1", delivered=tuple(claimed))
    assert [d.status for d in await outbox.deliveries()] == [DELIVERED]


# Endpoint health


async def test_a_failing_endpoint_is_paused_after_pause_after(outbox: Outbox) -> None:
    before = time.time()
    assert await settle(outbox, ok=False, error="refused", pause_after=None) is False
    failing = await outbox.endpoint("a")
    assert failing.failing_since is not None
    assert before - CLOCK_SLACK <= failing.failing_since <= time.time() + CLOCK_SLACK
    assert failing.paused_at is None

    # The start of the failures stays; an hour has not passed.
    assert await settle(outbox, ok=False, error="refused", pause_after=3600) is False
    assert await outbox.endpoint("a") == failing

    await outbox.enqueue("a", [out(1)])
    assert await settle(outbox, ok=False, error="connection refused", pause_after=0) is True
    paused = await outbox.endpoint("a")
    assert paused.paused_at is not None
    assert paused.paused_at >= failing.failing_since
    assert paused.pause_reason is not None
    assert "connection refused" in paused.pause_reason
    assert paused.failing_since == failing.failing_since
    assert await outbox.due() == {}
    # Paused already: no second pause.
    assert await settle(outbox, ok=False, error="again", pause_after=0) is False
    assert await outbox.endpoint("a") == paused

    resumed = await outbox.set_paused("a", None)
    assert (resumed.failing_since, resumed.paused_at, resumed.pause_reason) == (None, None, None)
    assert await outbox.endpoint("a") == resumed
    assert set(await outbox.due()) == {resumed.id}


async def test_an_answer_clears_failing_since(outbox: Outbox) -> None:
    await settle(outbox, ok=False, error="timeout")
    assert (await outbox.endpoint("a")).failing_since is not None
    assert await settle(outbox, ok=True, pause_after=0) is False
    healthy = await outbox.endpoint("a")
    assert (healthy.failing_since, healthy.paused_at) == (None, None)


async def test_an_endpoint_is_paused_and_resumed_by_hand(outbox: Outbox) -> None:
    await outbox.add_endpoint("b", SETTINGS)
    await settle(outbox, ok=False, error="timeout")
    before = time.time()
    paused = await outbox.set_paused("a", "client asked")
    assert paused.pause_reason == "client asked"
    assert paused.paused_at is not None
    assert before - CLOCK_SLACK <= paused.paused_at <= time.time() + CLOCK_SLACK
    assert paused.failing_since is not None  # kept while paused
    assert await outbox.endpoint("a") == paused
    assert (await outbox.endpoint("b")).paused_at is None
    resumed = await outbox.set_paused("a", None)
    assert (resumed.paused_at, resumed.pause_reason, resumed.failing_since) == (None, None, None)


# Redeliver


async def test_redeliver_everything_starts_a_new_round(outbox: Outbox) -> None:
    await outbox.add_endpoint("b", SETTINGS)
    first = await dead_letter(outbox, out(1))
    second = await dead_letter(outbox, out(2), "b")
    await outbox.enqueue("a", [out(3)])
    assert await outbox.redeliver() == 2
    assert await outbox.redeliver() == 0
    for delivery_id in (first, second):
        back = await row(outbox, delivery_id)
        assert (back.status, back.attempts, back.settled_at, back.claimed) == (
            PENDING,
            0,
            None,
            False,
        )
    assert await outbox.tally() == [Tally("a", 2, 0, 0), Tally("b", 1, 0, 0)]

    claimed = [c for c in await take(outbox) if c.id == first]
    assert [c.attempts for c in claimed] == [0]
    await settle(outbox, failures=(Failure(first, 1, "still broken", None),))
    # Both rounds' attempts are listed, the first round's first.
    attempts = await outbox.attempts(first)
    assert [(a.attempt, a.error) for a in attempts] == [(1, "HTTP 500"), (1, "still broken")]
    assert attempts[0].at <= attempts[1].at


async def test_redeliver_by_row_by_endpoint_and_since(outbox: Outbox) -> None:
    await outbox.add_endpoint("b", SETTINGS)
    one = await dead_letter(outbox, out(1))
    two = await dead_letter(outbox, out(2))
    three = await dead_letter(outbox, out(3), "b")
    await asyncio.sleep(0.1)
    cut = time.time()
    await asyncio.sleep(0.1)
    four = await dead_letter(outbox, out(4))

    assert await outbox.redeliver(delivery_id=two) == 1
    assert await outbox.redeliver(delivery_id=two) == 0
    assert await outbox.redeliver(delivery_id=999_999) == 0
    assert await outbox.redeliver(endpoint="b") == 1
    assert await outbox.redeliver(since=cut) == 1
    statuses = {d.id: d.status for d in await outbox.deliveries()}
    assert statuses == {one: DEAD, two: PENDING, three: PENDING, four: PENDING}
    assert await outbox.redeliver(endpoint="b", since=cut) == 0
    assert await outbox.redeliver(endpoint="a") == 1


async def test_redeliver_brings_back_one_state_per_id(outbox: Outbox) -> None:
    # The later state died first; the earlier one got a row of its own and died too.
    later = await dead_letter(outbox, out(1, "read", T2))
    earlier = await dead_letter(outbox, out(1, "deliver", T1))
    assert earlier > later
    assert await outbox.redeliver() == 1
    assert {d.id: d.status for d in await outbox.deliveries()} == {later: PENDING, earlier: DEAD}
    assert [c.state for c in await take(outbox)] == [out(1, "read", T2)]


async def test_redeliver_skips_an_id_that_is_pending_already(outbox: Outbox) -> None:
    dead = await dead_letter(outbox, out(1, "deliver"))
    await outbox.enqueue("a", [out(1, "read", T2)])
    assert await outbox.redeliver() == 0
    assert await outbox.redeliver(delivery_id=dead) == 0
    assert [(d.state, d.status) for d in await outbox.deliveries()] == [
        (out(1, "deliver"), DEAD),
        (out(1, "read", T2), PENDING),
    ]


# Listings


async def test_tally_counts_rows_per_endpoint_and_state(outbox: Outbox) -> None:
    await outbox.add_endpoint("b", SETTINGS)
    await outbox.add_endpoint("c", SETTINGS)
    await dead_letter(outbox, out(1))
    await outbox.enqueue("a", [out(2), out(3), out(4)])
    claimed = await take(outbox, limit=1)
    await settle(outbox, delivered=tuple(claimed))
    await outbox.enqueue("b", [out(1)])
    assert await outbox.tally() == [Tally("a", 2, 1, 1), Tally("b", 1, 0, 0), Tally("c", 0, 0, 0)]


async def test_deliveries_are_filtered_and_paged(outbox: Outbox) -> None:
    await outbox.add_endpoint("b", SETTINGS)
    dead = await dead_letter(outbox, out(1))
    await outbox.enqueue("a", [out(2), out(3)])
    await outbox.enqueue("b", [out(4), out(5)])
    every = await outbox.deliveries()
    ids = [d.id for d in every]
    assert ids == sorted(ids)
    assert [(d.endpoint, d.state.id_sms) for d in every] == [
        ("a", 1),
        ("a", 2),
        ("a", 3),
        ("b", 4),
        ("b", 5),
    ]
    assert [d.state.id_sms for d in await outbox.deliveries(endpoint="b")] == [4, 5]
    assert [d.id for d in await outbox.deliveries(state=DEAD)] == [dead]
    assert [d.state.id_sms for d in await outbox.deliveries(endpoint="a", state=PENDING)] == [2, 3]
    assert await outbox.deliveries(endpoint="b", state=DELIVERED) == []
    assert await outbox.deliveries(after_id=ids[1]) == every[2:]
    assert await outbox.deliveries(limit=2) == every[:2]
    assert await outbox.deliveries(after_id=ids[1], limit=2) == every[2:4]
    assert await outbox.deliveries(endpoint="b", after_id=ids[3]) == every[4:]
    assert await outbox.deliveries(after_id=ids[-1]) == []


# Several workers share one database: processes on one host (SQLite), or on
# several hosts (PostgreSQL).


@pytest.fixture
def pg_url(postgres_databases: PostgresDatabases) -> str:
    """A fresh PostgreSQL database (these tests run once, on PostgreSQL)."""
    return postgres_databases.new()


async def test_concurrent_claimers_never_share_a_leased_row(db_url: str) -> None:
    """Two outboxes on one database (two processes' worth of pools or writer threads),
    four claims at a time."""
    first, second = await open_outbox(db_url), await open_outbox(db_url)
    try:
        await first.add_endpoint("a", SETTINGS)
        target = await endpoint_id(first)
        count = 400
        await first.enqueue("a", [out(i) for i in range(1, count + 1)])
        claims: dict[int, list[str]] = {}
        rounds = 0
        while True:
            rounds += 1
            taken = await asyncio.gather(
                *(
                    outbox.claim(target, f"{name}{n}", 7, LONG)
                    for n in range(2)
                    for name, outbox in (("first", first), ("second", second))
                )
            )
            owners = [f"{name}{n}" for n in range(2) for name in ("first", "second")]
            if not any(taken):
                break
            for owner, claimed in zip(owners, taken, strict=True):
                for c in claimed:
                    claims.setdefault(c.id, []).append(owner)
            assert rounds < count
        shared = {k: v for k, v in claims.items() if len(v) > 1}
        assert not shared, shared
        assert len(claims) == count
        owners_seen = {owner for holders in claims.values() for owner in holders}
        assert {o[:-1] for o in owners_seen} == {"first", "second"}
        assert all(d.claimed for d in await first.deliveries(limit=count))
    finally:
        await first.close()
        await second.close()


async def test_concurrent_claim_and_settle_deliver_each_row_once(db_url: str) -> None:
    """Workers claiming with a short lease and settling what they hold: every row is
    delivered exactly once, and no worker holds a row another holds under a live lease."""
    outboxes = [await open_outbox(db_url), await open_outbox(db_url)]
    try:
        await outboxes[0].add_endpoint("a", SETTINGS)
        target = await endpoint_id(outboxes[0])
        count = 200
        await outboxes[0].enqueue("a", [out(i) for i in range(1, count + 1)])
        delivered: list[int] = []

        async def worker(outbox: Outbox, owner: str) -> None:
            while True:
                claimed = await outbox.claim(target, owner, 5, 5.0)
                if not claimed:
                    if not await outbox.due():
                        return
                    await asyncio.sleep(0.01)
                    continue
                delivered.extend(c.state.id_sms for c in claimed)
                settlement = Settlement(
                    target, owner, tuple((c.id, c.version) for c in claimed), (), True
                )
                await outbox.settle(settlement)

        await asyncio.gather(*(worker(outboxes[n % 2], f"w{n}") for n in range(6)))
        assert sorted(delivered) == list(range(1, count + 1))
        assert await outboxes[1].tally() == [Tally("a", 0, count, 0)]
    finally:
        for outbox in outboxes:
            await outbox.close()


async def test_concurrent_enqueues_of_one_id_keep_the_latest_state(pg_url: str) -> None:
    first, second = await open_outbox(pg_url), await open_outbox(pg_url)
    try:
        await first.add_endpoint("a", SETTINGS)
        states = [out(1, "deliver", f"2024-03-01 12:{minute:02}:00") for minute in range(40)]
        await asyncio.gather(
            *(
                (first if n % 2 else second).enqueue("a", [state, out(100 + n)])
                for n, state in enumerate(states)
            )
        )
        found = await first.deliveries(limit=1000)
        assert len(found) == 41
        assert [d.state for d in found if d.state.id_sms == 1] == [states[-1]]
    finally:
        await first.close()
        await second.close()


async def test_lost_connections_are_retried(pg_url: str) -> None:
    outbox = await open_outbox(pg_url)
    try:
        await outbox.add_endpoint("a", SETTINGS)
        with admin() as conn:
            conn.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE datname = %s AND pid <> pg_backend_pid()",
                (urlsplit(pg_url).path[1:],),
            )
        assert await outbox.enqueue("a", [out(1)]) == 1
        assert [d.state for d in await outbox.deliveries()] == [out(1)]
    finally:
        await outbox.close()


async def test_sort_keys_compare_in_byte_order_whatever_the_collation(
    postgres_databases: PostgresDatabases,
) -> None:
    """In an ICU ``en-US`` database (where ``b`` < ``C``), ``b`` is still the later value,
    as in ``rules.py``; endpoint names are listed in byte order too."""
    url = postgres_databases.empty("LOCALE_PROVIDER icu ICU_LOCALE 'en-US'")
    outbox = await open_outbox(url)
    try:
        await outbox.add_endpoint("b", SETTINGS)
        await outbox.add_endpoint("C", SETTINGS)
        assert [e.name for e in await outbox.endpoints()] == ["C", "b"]
        await outbox.enqueue("b", [out(1, "C"), out(2, "b")])
        assert await outbox.enqueue("b", [out(1, "b")]) == 1
        assert await outbox.enqueue("b", [out(2, "C")]) == 0
        assert [d.state.status for d in await outbox.deliveries()] == ["b", "b"]
        assert [t.endpoint for t in await outbox.tally()] == ["C", "b"]
    finally:
        await outbox.close()


# A newer state while an older one is pending or in flight


async def test_a_failed_push_of_a_replaced_row_does_not_count_against_the_newer_state(
    outbox: Outbox,
) -> None:
    await outbox.enqueue("a", [out(1, "deliver")])
    [claimed] = await take(outbox)
    assert await outbox.enqueue("a", [out(1, "read", T2)]) == 1  # while in flight
    last = Failure(claimed.id, claimed.attempts + 1, "timeout", None, claimed.version)
    await settle(outbox, failures=(last,), ok=False, error="timeout")
    replaced = await row(outbox, claimed.id)
    # Not dead: the newer state was never pushed; it goes next with all its attempts.
    assert (replaced.status, replaced.attempts, replaced.claimed) == (PENDING, 0, False)
    assert await outbox.attempts(claimed.id) == []
    [again] = await take(outbox, "w2")
    assert (again.state, again.attempts) == (out(1, "read", T2), 0)


async def test_a_row_replaced_in_flight_leaves_the_other_rows_settlement_whole(
    outbox: Outbox,
) -> None:
    """One document: a delivered row replaced in flight, another delivered, a third failed.

    Releasing the replaced row must not release the failed row before its
    attempt is recorded.
    """
    await outbox.enqueue("a", [out(1), out(2), out(3)])
    one, two, three = await take(outbox)
    assert await outbox.enqueue("a", [out(1, "read", T2)]) == 1  # while in flight
    failure = Failure(three.id, 1, "not acknowledged", 0.0, three.version)
    await settle(outbox, delivered=(one, two), failures=(failure,))
    first, second, third = await outbox.deliveries()
    assert (first.status, first.attempts, first.claimed) == (PENDING, 0, False)
    assert (second.status, second.attempts) == (DELIVERED, 1)
    assert (third.status, third.attempts, third.last_error) == (PENDING, 1, "not acknowledged")
    assert [a.error for a in await outbox.attempts(three.id)] == ["not acknowledged"]
    assert sorted(c.id for c in await take(outbox, "w2")) == [one.id, three.id]


async def test_a_replacing_state_gets_a_new_round_of_attempts(outbox: Outbox) -> None:
    await outbox.enqueue("a", [out(1, "deliver")])
    [claimed] = await take(outbox)
    failure = Failure(claimed.id, 1, "HTTP 500", 0.0, claimed.version)
    await settle(outbox, failures=(failure,), ok=False, error="HTTP 500")
    assert (await row(outbox, claimed.id)).attempts == 1
    await outbox.enqueue("a", [out(1, "read", T2)])
    replaced = await row(outbox, claimed.id)
    assert (replaced.attempts, replaced.state) == (0, out(1, "read", T2))
    [history] = await outbox.attempts(claimed.id)  # the earlier round's failure stays listed
    assert history.error == "HTTP 500"


async def test_a_state_changing_a_channel_only_replaces_the_pending_one(outbox: Outbox) -> None:
    await outbox.enqueue("a", [out(1, "send", "", viber="send")])
    fallback = out(1, "send", "", viber="not_deliver", sms="send")
    assert await outbox.enqueue("a", [fallback]) == 1
    assert await outbox.enqueue("a", [out(1, "send", "", viber="send")]) == 0  # not a step back
    [pending] = await outbox.deliveries()
    assert pending.state == fallback
