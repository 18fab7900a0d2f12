"""Each storage engine against ``rules.py``, on a real database of each engine.

The SQL merges each new event into the current state (a trigger in SQLite,
the ``store`` statement in PostgreSQL); whatever the order, grouping or
concurrency of the writes, the result must be ``rules.fold`` of everything
stored. Every test runs once per engine.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.test_rules import state, states
from webcom_status import rules
from webcom_status.errors import StorageError
from webcom_status.model import Message, Reject, State
from webcom_status.storage import Storage, open_storage

IDS = (1, 2, 3)
_bases = itertools.count(0, 10)


@pytest.fixture
async def storage(db_url: str) -> AsyncIterator[Storage]:
    """An open storage on a fresh database, of each engine in turn."""
    opened = await open_storage(db_url)
    yield opened
    await opened.close()


def event_key(s: State) -> tuple[str, str, str, str]:
    """What makes a stored event distinct (an absent channel is stored as '')."""
    return (s.status, s.sms or "", s.viber or "", s.time_raw)


def assert_matches_rules(message: Message | None, history: Sequence[State]) -> None:
    """The stored current state is the fold of the states, and each distinct one is one event."""
    current = rules.fold(history)
    assert current is not None
    assert message is not None
    assert (message.status, message.time_raw, message.time_utc) == (
        current.overall.value,
        current.overall.time_raw,
        current.overall.time_utc,
    )
    assert message.sms == (current.sms.value if current.sms else None)
    assert message.viber == (current.viber.value if current.viber else None)
    assert len(message.history) == len({event_key(s) for s in history})


def groups(items: list[State], cuts: list[int]) -> list[list[State]]:
    """``items`` split at the ``cuts`` positions (empty groups dropped)."""
    bounds = [0, *sorted(c % (len(items) + 1) for c in cuts), len(items)]
    return [items[a:b] for a, b in itertools.pairwise(bounds) if b > a]


# One database per engine serves every example: each example takes ids no other
# one used, and checks what it added to the counts. (A database per example
# would cost ~100 ms each on PostgreSQL.)
@settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    history=st.lists(states(st.sampled_from(IDS)), min_size=1, max_size=12),
    data=st.data(),
)
async def test_stored_state_equals_fold_in_any_order_and_grouping(
    storage: Storage, history: list[State], data: st.DataObject
) -> None:
    """Random order, random pushes, redeliveries, sequential or concurrent: SQL == fold."""
    base = next(_bases)
    history = [
        State(base + s.id_sms, s.status, s.sms, s.viber, s.time_raw, s.time_utc) for s in history
    ]
    redelivered = data.draw(st.lists(st.sampled_from(history), max_size=4), label="redelivered")
    order = data.draw(st.permutations(history + redelivered), label="order")
    pushes = groups(order, data.draw(st.lists(st.integers(0, 20), max_size=5), label="cuts"))
    concurrent = data.draw(st.booleans(), label="concurrent")
    then = await storage.stats()
    if concurrent:
        await asyncio.gather(*(storage.store(push, ()) for push in pushes))
    else:
        for push in pushes:
            await storage.store(push, ())
    for id_sms in (base + i for i in IDS):
        mine = [s for s in history if s.id_sms == id_sms]
        message = await storage.message(id_sms)
        if mine:
            assert_matches_rules(message, mine)
        else:
            assert message is None
    stats = await storage.stats()
    distinct = {(s.id_sms, *event_key(s)) for s in history}
    assert stats.messages - then.messages == len({s.id_sms for s in history})
    assert stats.events - then.events == len(distinct)
    assert stats.unknown_status_events - then.unknown_status_events == sum(
        not rules.is_known(k[1]) for k in distinct
    )


T1, T2, T3 = "2011-01-01 12:00:00", "2011-01-01 13:00:00", "2011-01-02 08:00:00"


@pytest.mark.parametrize(
    "sequence",
    [
        pytest.param([state("send", sms="send"), state("deliver", T1, sms="deliver")], id="up"),
        pytest.param([state("deliver", T1), state("read", T2, viber="read")], id="deliver-read"),
        pytest.param([state("read", T2, viber="read"), state("deliver", T3)], id="late-deliver"),
        pytest.param([state("expired", T1), state("send")], id="final-then-send"),
        pytest.param([state("queued", T1), state("send", T3)], id="unknown-above-send"),
        pytest.param([state("queued", T3), state("partly_deliver", T1)], id="pd-above-unknown"),
        pytest.param([state("read", T1), state("expired", T1)], id="tie-by-value"),
        pytest.param(
            [state("deliver", "2011-01-01 12:57:46"), state("deliver", "2011-01-01T12:57:46")],
            id="tie-by-raw",
        ),
        pytest.param(
            [state("deliver", T1, sms="deliver"), state("deliver", T2, viber="send")],
            id="channels-independent",
        ),
        pytest.param([state("z"), state("é"), state("ж"), state("✓")], id="unicode-values"),
    ],
)
async def test_one_push_per_state_matches_rules(storage: Storage, sequence: list[State]) -> None:
    """Named cases of the rules, each state in its own push, both orders."""
    for id_sms, order in ((1, sequence), (2, sequence[::-1])):
        renumbered = [
            State(id_sms, s.status, s.sms, s.viber, s.time_raw, s.time_utc) for s in order
        ]
        for single in renumbered:
            await storage.store([single], ())
        assert_matches_rules(await storage.message(id_sms), renumbered)


async def test_identical_redelivery_adds_no_history(storage: Storage) -> None:
    """A push delivered again changes nothing: same events, same message, same timestamps."""
    push = [state("deliver", T1, sms="deliver"), state("send", sms="send")]
    await storage.store(push, ())
    first = await storage.message(1)
    for _ in range(3):
        await storage.store(push, ())
    await asyncio.gather(*(storage.store(push[::-1], ()) for _ in range(3)))
    assert await storage.message(1) == first
    assert first is not None
    assert len(first.history) == 2
    assert (await storage.stats()).events == 2


async def test_a_new_time_is_a_new_event(storage: Storage) -> None:
    """The same status at another time is history, even when it does not win."""
    await storage.store([state("deliver", T2)], ())
    await storage.store([state("deliver", T1)], ())
    message = await storage.message(1)
    assert message is not None
    assert (message.time_raw, len(message.history)) == (T2, 2)


async def test_history_is_ordered_by_receipt_then_time_then_status(storage: Storage) -> None:
    """History: by ``received_at``, then time (no time first), then status in byte order."""
    await storage.store([state("b", T2), state("C", T2), state("send"), state("a", T1)], ())
    await storage.store([state("deliver", T1)], ())
    message = await storage.message(1)
    assert message is not None
    assert [(e.status, e.time_raw) for e in message.history] == [
        ("send", ""),
        ("a", T1),
        ("C", T2),
        ("b", T2),
        ("deliver", T1),
    ]


REJECTS = [
    Reject("state", "id_sms is missing", b'<state time="">deliver</state>'),
    Reject("state", "status is empty", b'{"id_sms":9}', id_sms_raw="9"),
    Reject("document", "body is empty", b"", http_status=400, remote="127.0.0.1"),
    Reject(
        "document", "body is not well-formed XML", b"\x00\xff\xfe<", http_status=400, remote="::1"
    ),
]


async def test_rejects_are_stored_and_listed(storage: Storage) -> None:
    """Rejects come back field for field, oldest first, raw bytes intact."""
    await storage.store([state("send")], REJECTS[:2])
    await storage.store((), REJECTS[2:])
    listed = await storage.rejects()
    assert [(r.scope, r.reason, r.raw, r.id_sms_raw, r.http_status, r.remote) for r in listed] == [
        (r.scope, r.reason, r.raw, r.id_sms_raw, r.http_status, r.remote) for r in REJECTS
    ]
    assert [r.id for r in listed] == sorted(r.id for r in listed)
    assert all(r.received_at.tzinfo is not None for r in listed)
    assert (await storage.stats()).rejects == len(REJECTS)


async def test_rejects_are_paged_by_id(storage: Storage) -> None:
    """``after_id`` and ``limit`` walk the rejects in order without gaps or repeats."""
    await storage.store((), REJECTS)
    first = await storage.rejects(limit=3)
    rest = await storage.rejects(after_id=first[-1].id, limit=3)
    assert [r.reason for r in first + rest] == [r.reason for r in REJECTS]
    assert await storage.rejects(after_id=rest[-1].id) == []


async def test_failed_write_stores_nothing_of_the_push(storage: Storage) -> None:
    """A push whose write fails is all-or-nothing: its states are not stored either."""
    bad = Reject("elsewhere", "scope the schema does not allow", b"x")
    with pytest.raises(StorageError):
        await storage.store([state("deliver", T1)], [bad])
    assert await storage.message(1) is None
    assert await storage.rejects() == []
