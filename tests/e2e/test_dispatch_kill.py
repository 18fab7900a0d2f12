"""SIGKILL a ``dispatch`` worker mid-push: another worker finishes, and no state is lost.

The dispatcher's promise (``sender/dispatcher.py``): work is claimed under a
lease, so the states of a worker that dies mid-push are claimed again once
the lease ends; delivery is at least once, and a state acknowledged (and
recorded) is never pushed again. Here a real ``webcom-status dispatch``
process pushes to a slow receiver process and is killed while requests are
in flight; a second worker must deliver everything, pushing twice only what
the first one had in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests import _db
from tests.conftest import free_port
from tests.sender.faulty import Behaviour, ReceiverProcess, answered, pushes_per_id, unanswered
from webcom_status.protocol import Outgoing
from webcom_status.sender.model import EndpointSettings
from webcom_status.storage import open_outbox

STATES = 2000
WAIT_SECONDS = 60.0  # any wait of these tests longer than this is a failure
T1 = "2024-03-01 12:00:00"


def wait_for(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds; fail saying ``what`` was awaited if it never does."""
    deadline = time.monotonic() + WAIT_SECONDS
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"gave up waiting for {what}")
        time.sleep(0.02)


@contextlib.contextmanager
def processes(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """``start(*args)`` runs ``webcom-status ARGS``; all are killed at the end.

    The output of the n-th process goes to ``tmp_path/<command>-<n>.log``.
    """
    started: list[subprocess.Popen[bytes]] = []

    def start(*args: str) -> subprocess.Popen[bytes]:
        log_path = tmp_path / f"{args[0]}-{len(started)}.log"
        with log_path.open("ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "webcom_status", *args],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


def dispatch_args(db_url: str, *extra: str) -> tuple[str, ...]:
    """``dispatch`` with fast polling, five attempts, and a one-second lease margin."""
    return (
        "dispatch",
        "--db",
        db_url,
        "--attempts",
        "5",
        "--retry-schedule",
        "0,0.1",
        "--lease-margin",
        "1",
        "--linger",
        "0.01",
        "--poll",
        "0.05",
        *extra,
    )


def stop(proc: subprocess.Popen[bytes]) -> int:
    """SIGTERM, and the exit status."""
    proc.send_signal(signal.SIGTERM)
    return proc.wait(WAIT_SECONDS)


def rows(db_url: str) -> list[tuple[int, str, int]]:
    """``(id_sms, state, attempts)`` of every outbox row."""
    with _db.reading(db_url) as read:
        return [(r[0], r[1], r[2]) for r in read("SELECT id_sms, state, attempts FROM deliveries")]


def pending(db_url: str) -> int:
    with _db.reading(db_url) as read:
        count: int = read("SELECT count(*) FROM deliveries WHERE state = 'pending'")[0][0]
        return count


def delivered(db_url: str) -> set[int]:
    with _db.reading(db_url) as read:
        return {r[0] for r in read("SELECT id_sms FROM deliveries WHERE state = 'delivered'")}


async def add_endpoints(db_url: str, endpoints: dict[str, EndpointSettings]) -> None:
    outbox = await open_outbox(db_url)
    try:
        for name, settings in endpoints.items():
            await outbox.add_endpoint(name, settings)
    finally:
        await outbox.close()


async def enqueue(db_url: str, names: list[str], ids: range) -> None:
    """Enqueue a ``deliver`` state for each id, to each endpoint of ``names`` in turn."""
    outbox = await open_outbox(db_url)
    try:
        for n, name in enumerate(names):
            await outbox.enqueue(name, [Outgoing(i, "deliver", T1) for i in ids[n :: len(names)]])
    finally:
        await outbox.close()


@pytest.mark.slow
def test_a_worker_killed_mid_push_leaves_its_states_to_another(tmp_path: Path) -> None:
    """2,000 states to a receiver that answers after 0.3 s; the first worker is SIGKILLed
    with requests in flight, the second one finishes: every state delivered, and only the
    ones the first worker had in flight pushed twice.

    To know exactly what was in flight, the receiver is held (it answers nothing more)
    and the test waits until every answer it gave is recorded in the outbox before
    the kill; then it turns honest and fast for the second worker.
    """
    db_url = f"sqlite:///{tmp_path / 'outbox.db'}"
    receiver = ReceiverProcess(free_port(), Behaviour("slow", delay=0.3), tmp_path / "rx.log")
    settings = EndpointSettings(
        url=f"{receiver.url}/hook", batch_size=50, concurrency=2, connect_timeout=1, read_timeout=3
    )
    with processes(tmp_path) as start:
        try:
            receiver.start()
            asyncio.run(add_endpoints(db_url, {"slow": settings}))
            asyncio.run(enqueue(db_url, ["slow"], range(1, STATES + 1)))
            first = start(*dispatch_args(db_url))
            wait_for(lambda: len(answered(receiver.records())) >= 3, "three answered pushes")
            receiver.hold(True)
            acknowledged = {i for r in answered(receiver.records()) for i in r.echoed}
            wait_for(lambda: acknowledged <= delivered(db_url), "the answers to be recorded")
            wait_for(lambda: bool(unanswered(receiver.records())), "a push in flight")
            first.kill()
            assert first.wait(WAIT_SECONDS) == -signal.SIGKILL
            at_kill = receiver.records()
            receiver.set_behaviour(Behaviour("honest"))
            receiver.hold(False)
            second = start(*dispatch_args(db_url))
            wait_for(lambda: pending(db_url) == 0, "no pending state")
            assert stop(second) == 0
            records = receiver.records()
        finally:
            receiver.stop()
    in_flight = {i for r in unanswered(at_kill) for i in r.ids}
    assert in_flight, "the first worker had nothing in flight when killed"
    assert {i for r in at_kill for i in r.ids} - in_flight == acknowledged
    outcome = rows(db_url)
    assert sorted(r[0] for r in outcome) == list(range(1, STATES + 1)), "a state was lost"
    assert {r[1] for r in outcome} == {"delivered"}
    assert {r[2] for r in outcome} == {1}, "an interrupted push counts as no attempt"
    echoed = {i for r in answered(records) for i in r.echoed}
    assert echoed == set(range(1, STATES + 1))
    counts = pushes_per_id(records)
    assert {i for i, n in counts.items() if n > 1} == in_flight
    assert max(counts.values()) == 2
    assert all(r.gone_at is not None for r in unanswered(records))
    assert len(records) > len(at_kill), "the second worker pushed nothing"
