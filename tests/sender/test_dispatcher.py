"""The dispatcher against real receivers on 127.0.0.1: honest ones, and ones that misbehave.

Each test runs a :class:`Dispatcher` in the test's event loop over a real
outbox (SQLite; the key ones on PostgreSQL too) and pushes to a
:mod:`tests.sender.faulty` receiver in a thread, or to a real ``webcom-status
serve`` process. What the receiver recorded and what the outbox says are then
compared: every state delivered or dead, never more pushes than the retry
policy allows, the reason of each failed attempt kept, an acknowledgement
never taken for a state it did not cover, and a broken endpoint never in the
way of a healthy one. No assertion is about how long anything took.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.sender.faulty import (
    FAR_ID,
    Behaviour,
    FaultyReceiver,
    Seen,
    answered,
    pushes_per_id,
)
from webcom_status.model import Flavour
from webcom_status.protocol import Outgoing
from webcom_status.sender.dispatcher import Dispatcher, DispatchSettings, PushReport
from webcom_status.sender.model import Delivery, DeliveryState, EndpointSettings
from webcom_status.sender.outbox import Outbox
from webcom_status.sender.retry import RetryPolicy
from webcom_status.storage import open_outbox

T1 = "2024-03-01 12:00:00"
T2 = "2024-03-01 12:05:00"
RETRY = RetryPolicy(attempts=3, schedule=(0, 0.05, 0.1))
SETTINGS = DispatchSettings(
    retry=RETRY, linger=0.01, poll=0.02, pause_after=None, lease_margin=1.0, name="test"
)
SETTLE_SECONDS = 30.0  # a test waiting longer than this for its outbox has failed
NOT_ACKNOWLEDGED = "not acknowledged"
RATE = 20.0  # documents per second, for the rate limit's test
JITTER = 0.04  # seconds one push's claim and request may take longer than another's
PENDING, DELIVERED, DEAD = DeliveryState.PENDING, DeliveryState.DELIVERED, DeliveryState.DEAD


def states(ids: Sequence[int], status: str = "deliver", time_: str = T1) -> list[Outgoing]:
    return [Outgoing(i, status, time_, sms=status) for i in ids]


def endpoint(receiver: FaultyReceiver, **settings: Any) -> EndpointSettings:
    """An endpoint on ``receiver`` with short timeouts; ``settings`` override the rest."""
    base = EndpointSettings(url=receiver.url + "/hook", connect_timeout=1.0, read_timeout=2.0)
    return replace(base, **settings)


@pytest.fixture
async def outbox(db_url: str) -> AsyncIterator[Outbox]:
    """An outbox on each engine in turn."""
    opened = await open_outbox(db_url)
    yield opened
    await opened.close()


@pytest.fixture
async def sqlite_outbox(tmp_path: Path) -> AsyncIterator[Outbox]:
    """An outbox in a fresh SQLite file, for the tests that need one engine only."""
    opened = await open_outbox(f"sqlite:///{tmp_path / 'outbox.db'}")
    yield opened
    await opened.close()


@pytest.fixture
def receivers() -> Iterator[Callable[..., FaultyReceiver]]:
    """``receivers(Behaviour(...))`` starts a receiver in a thread; all stop at the end."""
    started: list[FaultyReceiver] = []

    def start(behaviour: Behaviour | None = None) -> FaultyReceiver:
        receiver = FaultyReceiver(behaviour)
        started.append(receiver)
        return receiver.start()

    yield start
    for receiver in started:
        receiver.stop()


@asynccontextmanager
async def dispatching(
    outbox: Outbox, settings: DispatchSettings = SETTINGS, reports: list[PushReport] | None = None
) -> AsyncIterator[Dispatcher]:
    """A dispatcher running in the background; stopped (pushes in flight recorded) at the end."""
    dispatcher = Dispatcher(outbox, settings, observer=None if reports is None else reports.append)
    task = asyncio.create_task(dispatcher.run())
    try:
        yield dispatcher
    finally:
        dispatcher.stop()
        async with asyncio.timeout(SETTLE_SECONDS):
            await task


async def settled(outbox: Outbox, name: str) -> list[Delivery]:
    """Wait until ``name`` has no pending row; then every row of it, in id order."""
    async with asyncio.timeout(SETTLE_SECONDS):
        while any(t.endpoint == name and t.pending for t in await outbox.tally()):
            await asyncio.sleep(0.02)
    return await every_row(outbox, name)


async def every_row(outbox: Outbox, name: str) -> list[Delivery]:
    rows: list[Delivery] = []
    while page := await outbox.deliveries(name, after_id=rows[-1].id if rows else 0, limit=500):
        rows += page
    return rows


async def until(condition: Callable[[], bool]) -> None:
    """Wait until ``condition()`` holds (checked every 10 ms)."""
    async with asyncio.timeout(SETTLE_SECONDS):
        while not condition():
            await asyncio.sleep(0.01)


def by_state(rows: list[Delivery]) -> dict[DeliveryState, set[int]]:
    found: dict[DeliveryState, set[int]] = {PENDING: set(), DELIVERED: set(), DEAD: set()}
    for row in rows:
        found[row.status].add(row.state.id_sms)
    return found


async def test_honest_receiver_gets_every_state_exactly_once(
    outbox: Outbox, receivers: Callable[..., FaultyReceiver]
) -> None:
    """500 states, batches of 50, two pushes at a time: each delivered after one push, as sent."""
    receiver = receivers()
    await outbox.add_endpoint("a", endpoint(receiver, batch_size=50, concurrency=2))
    sent = states(range(1, 501))
    await outbox.enqueue("a", sent)
    async with dispatching(outbox):
        rows = await settled(outbox, "a")
    assert by_state(rows)[DELIVERED] == set(range(1, 501))
    assert {r.attempts for r in rows} == {1}
    records = receiver.records()
    assert pushes_per_id(records) == dict.fromkeys(range(1, 501), 1)
    assert max(len(r.ids) for r in records) == 50
    assert all(r.http_status == 200 and r.echoed == r.ids for r in records)
    seen = {s for r in records for s in r.states}
    assert seen == {Seen(s.id_sms, s.status, s.time, s.sms, s.viber) for s in sent}


async def test_own_receiver_acknowledges_everything_and_stores_it(
    outbox: Outbox, server: ServerProcess
) -> None:
    """The project's ``serve`` process echoes every id; its API then shows each state pushed.

    Every state is pushed exactly once: none is pushed again after its acknowledgement.
    """
    statuses = ("send", "deliver", "read", "not_deliver", "expired", "partly_deliver")
    sent = [
        Outgoing(i, statuses[i % 6], "" if i % 6 == 0 else T1, sms="deliver", viber=None)
        for i in range(1, 301)
    ]
    settings = EndpointSettings(url=f"{server.url}/webhook", batch_size=40, concurrency=3)
    await outbox.add_endpoint("own", settings)
    await outbox.enqueue("own", sent)
    reports: list[PushReport] = []
    async with dispatching(outbox, reports=reports):
        rows = await settled(outbox, "own")
    assert by_state(rows)[DELIVERED] == set(range(1, 301))
    pushed = [i for report in reports for i in report.ids]
    assert sorted(pushed) == list(range(1, 301))
    assert all(r.acknowledged == r.ids and not r.findings for r in reports)
    async with httpx.AsyncClient(base_url=server.url) as client:
        for state in sent:
            body = (await client.get(f"/api/messages/{state.id_sms}")).json()
            assert (body["status"], body["sms"], body["viber"], body["time_raw"]) == (
                state.status,
                state.sms,
                state.viber,
                state.time,
            )


async def test_partial_answers_deliver_the_echoed_ids_and_retry_the_rest_to_the_limit(
    outbox: Outbox, receivers: Callable[..., FaultyReceiver]
) -> None:
    """Only the even ids are echoed: they are delivered after one push; the odd ones are
    pushed exactly three times (the limit), then dead with the reason of each attempt."""
    receiver = receivers(Behaviour("partial"))
    await outbox.add_endpoint("a", endpoint(receiver, batch_size=10))
    await outbox.enqueue("a", states(range(1, 41)))
    async with dispatching(outbox):
        rows = await settled(outbox, "a")
    found = by_state(rows)
    assert found[DELIVERED] == set(range(2, 41, 2))
    assert found[DEAD] == set(range(1, 41, 2))
    assert all(r.attempts == (1 if r.state.id_sms % 2 == 0 else 3) for r in rows)
    counts = pushes_per_id(receiver.records())
    assert counts == {i: 1 if i % 2 == 0 else 3 for i in range(1, 41)}
    for row in rows:
        attempts = await outbox.attempts(row.id)
        if row.status is DEAD:
            assert [a.attempt for a in attempts] == [1, 2, 3]
            assert all(NOT_ACKNOWLEDGED in a.error for a in attempts)
            assert row.last_error is not None
            assert NOT_ACKNOWLEDGED in row.last_error
        else:
            assert attempts == []


@pytest.mark.parametrize(("failures", "outcome"), [(2, DELIVERED), (3, DEAD)])
async def test_server_errors_are_retried_until_the_limit(
    sqlite_outbox: Outbox,
    receivers: Callable[..., FaultyReceiver],
    failures: int,
    outcome: DeliveryState,
) -> None:
    """HTTP 500 for the first requests: delivered on the third push after two failures,
    dead after three; three pushes of the document either way, never a fourth."""
    outbox = sqlite_outbox
    receiver = receivers(Behaviour("fail_first", failures=failures))
    await outbox.add_endpoint("a", endpoint(receiver))
    await outbox.enqueue("a", states(range(1, 21)))
    settings = replace(SETTINGS, retry=replace(RETRY, jitter=0))  # the document stays whole
    async with dispatching(outbox, settings):
        rows = await settled(outbox, "a")
    assert by_state(rows)[outcome] == set(range(1, 21))
    assert {r.attempts for r in rows} == {3}
    records = receiver.records()
    assert [r.http_status for r in records] == [500] * failures + [200] * (3 - failures)
    assert all(set(r.ids) == set(range(1, 21)) for r in records)
    for row in rows:
        errors = [a.error for a in await outbox.attempts(row.id)]
        assert errors == ["HTTP 500"] * failures


async def dead_after_three_pushes(
    outbox: Outbox, receiver: FaultyReceiver, **settings: Any
) -> list[Delivery]:
    """States 1-5 pushed to ``receiver`` until they die: three pushes each, no more.

    ``settings`` override the endpoint's; the rows come back for their reasons.
    """
    await outbox.add_endpoint("a", endpoint(receiver, **settings))
    await outbox.enqueue("a", states(range(1, 6)))
    async with dispatching(outbox):
        rows = await settled(outbox, "a")
    assert by_state(rows)[DEAD] == set(range(1, 6))
    assert pushes_per_id(receiver.records()) == dict.fromkeys(range(1, 6), 3)
    return rows


async def test_a_hanging_receiver_times_out_and_its_states_die_after_three_pushes(
    sqlite_outbox: Outbox, receivers: Callable[..., FaultyReceiver]
) -> None:
    """A receiver that never answers: each push ends at the read timeout (the dispatcher
    goes away), three pushes in all, then dead with a timeout as the reason."""
    outbox = sqlite_outbox
    receiver = receivers(Behaviour("hang"))
    rows = await dead_after_three_pushes(outbox, receiver, connect_timeout=0.5, read_timeout=0.3)
    await until(lambda: all(r.gone_at is not None for r in receiver.records()))
    assert not answered(receiver.records())
    for row in rows:
        errors = [a.error for a in await outbox.attempts(row.id)]
        assert len(errors) == 3
        assert all(e.startswith("no answer within") for e in errors)


async def test_a_garbage_answer_is_a_failed_push(
    sqlite_outbox: Outbox, receivers: Callable[..., FaultyReceiver]
) -> None:
    """200 with bytes that are not XML acknowledges nothing: three pushes, then dead."""
    outbox = sqlite_outbox
    rows = await dead_after_three_pushes(outbox, receivers(Behaviour("garbage")))
    for row in rows:
        errors = [a.error for a in await outbox.attempts(row.id)]
        assert len(errors) == 3
        assert all(e.startswith("unreadable answer") for e in errors)
    assert (await outbox.endpoint("a")).failing_since is not None


async def test_a_non_2xx_answer_listing_the_ids_acknowledges_nothing(
    sqlite_outbox: Outbox, receivers: Callable[..., FaultyReceiver]
) -> None:
    """302 with a body echoing every id: not followed, not read as an acknowledgement;
    each attempt is one request, and the states end dead with the status as reason."""
    outbox = sqlite_outbox
    rows = await dead_after_three_pushes(outbox, receivers(Behaviour("redirect")))
    for row in rows:
        assert [a.error for a in await outbox.attempts(row.id)] == ["HTTP 302"] * 3


async def test_ids_echoed_but_not_pushed_are_never_marked(
    sqlite_outbox: Outbox, receivers: Callable[..., FaultyReceiver]
) -> None:
    """Each answer also echoes the next two ids (pending, in the next document) and one
    never enqueued: those are ignored, so every id is still pushed, once, and delivered."""
    outbox = sqlite_outbox
    receiver = receivers(Behaviour("unknown"))
    await outbox.add_endpoint("a", endpoint(receiver, batch_size=10))
    await outbox.enqueue("a", states(range(1, 31)))
    async with dispatching(outbox):
        rows = await settled(outbox, "a")
    assert by_state(rows)[DELIVERED] == set(range(1, 31))
    assert {r.attempts for r in rows} == {1}
    assert FAR_ID not in {r.state.id_sms for r in rows}
    records = receiver.records()
    assert pushes_per_id(records) == dict.fromkeys(range(1, 31), 1)
    assert all(set(r.echoed) - set(r.ids) for r in records), "every answer echoed extra ids"


async def test_dead_letters_redelivered_to_a_receiver_now_honest_are_delivered(
    sqlite_outbox: Outbox, receivers: Callable[..., FaultyReceiver]
) -> None:
    """The odd ids die at a partial receiver; once it is honest, ``redeliver`` puts them
    back with a new round of attempts and they are delivered on the next push."""
    outbox = sqlite_outbox
    receiver = receivers(Behaviour("partial"))
    await outbox.add_endpoint("a", endpoint(receiver, batch_size=10))
    await outbox.enqueue("a", states(range(1, 21)))
    async with dispatching(outbox) as dispatcher:
        rows = await settled(outbox, "a")
        assert by_state(rows)[DEAD] == set(range(1, 21, 2))
        receiver.set_behaviour(Behaviour("honest"))
        assert await outbox.redeliver(endpoint="a") == 10
        dispatcher.wake()
        rows = await settled(outbox, "a")
    assert by_state(rows)[DELIVERED] == set(range(1, 21))
    assert pushes_per_id(receiver.records()) == {i: 1 if i % 2 == 0 else 4 for i in range(1, 21)}
    for row in rows:
        if row.state.id_sms % 2:
            assert row.attempts == 1
            assert len(await outbox.attempts(row.id)) == 3  # the first round's


async def test_a_newer_state_enqueued_while_the_older_is_in_flight_is_pushed_next(
    outbox: Outbox, receivers: Callable[..., FaultyReceiver]
) -> None:
    """``send`` is in flight (the receiver holds its answer) when ``deliver`` replaces it
    in the outbox: the acknowledgement of ``send`` does not mark ``deliver`` delivered;
    ``deliver`` is pushed after that answer, and then the row is delivered with it."""
    receiver = receivers()
    receiver.hold(True)
    await outbox.add_endpoint("a", endpoint(receiver))
    await outbox.enqueue("a", [Outgoing(1, "send")])
    async with dispatching(outbox):
        await until(lambda: bool(receiver.records()))
        assert await outbox.enqueue("a", [Outgoing(1, "deliver", T1)]) == 1
        receiver.hold(False)
        rows = await settled(outbox, "a")
    records = receiver.records()
    assert [[s.status for s in r.states] for r in records] == [["send"], ["deliver"]]
    first_answer = records[0].answered_at
    assert first_answer is not None
    assert records[1].received_at > first_answer
    assert [(r.status, r.state.status) for r in rows] == [(DELIVERED, "deliver")]


async def test_a_hanging_endpoint_does_not_delay_a_healthy_one(
    sqlite_outbox: Outbox, receivers: Callable[..., FaultyReceiver]
) -> None:
    """While a push to a hanging endpoint waits for its 2 s timeout, all 400 states of a
    healthy endpoint (20 documents) are delivered: before the hanging push even timed out."""
    outbox = sqlite_outbox
    stuck, healthy = receivers(Behaviour("hang")), receivers()
    await outbox.add_endpoint("stuck", endpoint(stuck, read_timeout=2.0))
    await outbox.add_endpoint("healthy", endpoint(healthy, batch_size=20))
    await outbox.enqueue("stuck", states(range(1, 11)))
    async with dispatching(outbox):
        await until(lambda: bool(stuck.records()))
        await outbox.enqueue("healthy", states(range(1, 401)))
        rows = await settled(outbox, "healthy")
        assert by_state(rows)[DELIVERED] == set(range(1, 401))
        stuck_rows = await every_row(outbox, "stuck")
        assert [(r.status, r.attempts) for r in stuck_rows] == [(PENDING, 0)] * 10
        first_stuck = stuck.records()[0]
    assert first_stuck.gone_at is None, "the hanging push timed out before the healthy ones"
    assert len(answered(healthy.records())) == 20
    assert (await outbox.attempts(stuck_rows[0].id))[0].error.startswith("no answer within")


async def test_an_endpoint_gets_its_concurrency_in_documents_at_once_and_never_more(
    outbox: Outbox, receivers: Callable[..., FaultyReceiver]
) -> None:
    """A held receiver sees exactly ``concurrency`` documents arrive, each of
    ``batch_size`` states; released, it gets the rest, never more at a time."""
    receiver = receivers()
    receiver.hold(True)
    await outbox.add_endpoint("a", endpoint(receiver, batch_size=10, concurrency=4))
    await outbox.enqueue("a", states(range(1, 101)))
    async with dispatching(outbox):
        await until(lambda: len(receiver.records()) == 4)
        await asyncio.sleep(0.2)  # room for a fifth document, which must not come
        held = receiver.records()
        assert [len(r.states) for r in held] == [10] * 4
        receiver.hold(False)
        rows = await settled(outbox, "a")
    assert by_state(rows)[DELIVERED] == set(range(1, 101))
    records = receiver.records()
    assert pushes_per_id(records) == dict.fromkeys(range(1, 101), 1)
    spans = [(r.received_at, r.answered_at) for r in records]
    for at, _ in spans:
        assert sum(1 for start, end in spans if start <= at and (end is None or end > at)) <= 4


async def test_an_endpoint_failing_for_pause_after_is_paused_then_resumed(
    sqlite_outbox: Outbox, receivers: Callable[..., FaultyReceiver]
) -> None:
    """Every push fails for 0.2 s: the endpoint is paused, no request reaches it after the
    pause; once resumed (and the receiver honest) its states are delivered."""
    outbox = sqlite_outbox
    receiver = receivers(Behaviour("fail_first", failures=1_000_000))
    await outbox.add_endpoint("a", endpoint(receiver, batch_size=5))
    await outbox.enqueue("a", states(range(1, 51)))
    retry = RetryPolicy(attempts=100, schedule=(0, 0.02))
    settings = replace(SETTINGS, retry=retry, pause_after=0.2)
    async with dispatching(outbox, settings) as dispatcher:
        async with asyncio.timeout(SETTLE_SECONDS):
            while (paused := await outbox.endpoint("a")).paused_at is None:
                await asyncio.sleep(0.02)
        assert paused.pause_reason is not None
        assert "HTTP 500" in paused.pause_reason
        await asyncio.sleep(0.5)  # failed pushes came every few ms: any more would be here
        after_pause = receiver.records()
        receiver.set_behaviour(Behaviour("honest"))
        await outbox.set_paused("a", None)
        dispatcher.wake()
        rows = await settled(outbox, "a")
    assert paused.paused_at is not None
    assert all(r.received_at < paused.paused_at for r in after_pause)
    assert by_state(rows)[DELIVERED] == set(range(1, 51))
    assert all(r.received_at > paused.paused_at for r in receiver.records()[len(after_pause) :])


async def test_the_rate_limit_spaces_the_requests(
    sqlite_outbox: Outbox, receivers: Callable[..., FaultyReceiver]
) -> None:
    """20 documents a second at most, even with 4 pushes allowed at a time: of twelve
    one-state documents, the n-th after any one arrives at least n/20 s after it, less
    what one push's latency may vary (``JITTER``); the last 11/20 s after the first, so."""
    outbox = sqlite_outbox
    receiver = receivers()
    settings = endpoint(receiver, batch_size=1, concurrency=4, rate_limit=RATE)
    await outbox.add_endpoint("a", settings)
    await outbox.enqueue("a", states(range(1, 13)))
    async with dispatching(outbox):
        await settled(outbox, "a")
    arrivals = sorted(r.received_at for r in receiver.records())
    assert len(arrivals) == 12
    too_soon = [
        (i, j, b - a)
        for (i, a), (j, b) in itertools.combinations(enumerate(arrivals), 2)
        if b - a < (j - i) / RATE - JITTER
    ]
    assert not too_soon, too_soon


async def test_basic_credentials_and_headers_are_sent(
    sqlite_outbox: Outbox, receivers: Callable[..., FaultyReceiver]
) -> None:
    """An endpoint with a username and password gets HTTP Basic credentials on each push,
    the XML content type, and the package's User-Agent."""
    outbox = sqlite_outbox
    receiver = receivers()
    await outbox.add_endpoint("a", endpoint(receiver, username="client", password="s3cret:x"))
    await outbox.enqueue("a", states(range(1, 4)))
    async with dispatching(outbox):
        await settled(outbox, "a")
    (record,) = receiver.records()
    expected = "Basic " + base64.b64encode(b"client:s3cret:x").decode()
    assert record.headers["authorization"] == expected
    assert record.headers["content-type"] == "text/xml; charset=utf-8"
    assert record.headers["user-agent"].startswith("webcom-status/")


async def test_json_flavour_pushes_a_json_array_and_reads_a_json_answer(
    sqlite_outbox: Outbox, receivers: Callable[..., FaultyReceiver]
) -> None:
    """A JSON endpoint gets the JSON flavour; the receiver answers in JSON, which is read."""
    outbox = sqlite_outbox
    receiver = receivers(Behaviour("partial"))
    await outbox.add_endpoint("a", endpoint(receiver, flavour=Flavour.JSON))
    await outbox.enqueue("a", states(range(1, 5)))
    async with dispatching(outbox):
        rows = await settled(outbox, "a")
    records = receiver.records()
    assert {r.flavour for r in records} == {"json"}
    assert {r.headers["content-type"] for r in records} == {"application/json"}
    assert by_state(rows) == {PENDING: set(), DELIVERED: {2, 4}, DEAD: {1, 3}}


@pytest.mark.parametrize(
    ("behaviour", "limit"), [(Behaviour("honest"), 50), (Behaviour("flood"), 1 << 20)]
)
async def test_an_answer_larger_than_the_limit_is_a_failure(
    sqlite_outbox: Outbox,
    receivers: Callable[..., FaultyReceiver],
    behaviour: Behaviour,
    limit: int,
) -> None:
    """An honest answer over a 200-byte limit, or an answer that never ends: reading stops
    at the limit (not at the read timeout) and the push failed."""
    outbox = sqlite_outbox
    receiver = receivers(behaviour)
    await outbox.add_endpoint("a", endpoint(receiver))
    await outbox.enqueue("a", states(range(1, 21)))
    async with dispatching(outbox, replace(SETTINGS, max_answer=limit)):
        rows = await settled(outbox, "a")
    assert by_state(rows)[DEAD] == set(range(1, 21))
    assert pushes_per_id(receiver.records()) == dict.fromkeys(range(1, 21), 3)
    errors = [a.error for a in await outbox.attempts(rows[0].id)]
    assert errors == [f"answer larger than {limit} B"] * 3
