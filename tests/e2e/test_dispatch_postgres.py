"""Two ``dispatch`` workers on one PostgreSQL database share the work, never a document.

Claims take rows with ``FOR UPDATE SKIP LOCKED`` under a lease: two workers
polling the same outbox must split it between them, neither pushing a state
the other is pushing. Here two real worker processes push 10,000 states to
four endpoints of one recording receiver, which also tells which process
each request came from (the client end of its connection, found in
``/proc``).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import defaultdict
from pathlib import Path

import pytest

from tests._postgres import PostgresDatabases
from tests.conftest import free_port
from tests.e2e.test_dispatch_kill import (
    add_endpoints,
    dispatch_args,
    enqueue,
    pending,
    processes,
    rows,
    stop,
    wait_for,
)
from tests.sender.faulty import Behaviour, ReceiverProcess, Request, pushes_per_id
from webcom_status.sender.model import EndpointSettings

STATES = 10_000
ENDPOINTS = 4


def overlapping(a: Request, b: Request) -> bool:
    """Whether two requests were open at the same time (one unanswered is open for ever)."""
    a_end = float("inf") if a.answered_at is None else a.answered_at
    b_end = float("inf") if b.answered_at is None else b.answered_at
    return a.received_at < b_end and b.received_at < a_end


@pytest.mark.slow
def test_two_workers_on_one_postgresql_database_never_push_a_state_twice(
    tmp_path: Path, postgres_databases: PostgresDatabases
) -> None:
    """Both workers run before 10,000 states are enqueued to four endpoints (batches of
    50, two pushes at a time per endpoint and worker): every state is delivered after
    exactly one push, no two requests carrying one id_sms overlap, both workers pushed."""
    db_url = postgres_databases.new()
    receiver = ReceiverProcess(
        free_port(), Behaviour("slow", delay=0.05), tmp_path / "rx.log", identify_clients=True
    )
    logs = [tmp_path / "dispatch-0.log", tmp_path / "dispatch-1.log"]
    with processes(tmp_path) as start:
        try:
            receiver.start()
            endpoints = {
                f"e{n}": EndpointSettings(f"{receiver.url}/e{n}", batch_size=50, concurrency=2)
                for n in range(ENDPOINTS)
            }
            asyncio.run(add_endpoints(db_url, endpoints))
            workers = [start(*dispatch_args(db_url, "--pool-size", "2")) for _ in logs]
            wait_for(lambda: all("dispatching as" in log.read_text() for log in logs), "workers")
            asyncio.run(enqueue(db_url, sorted(endpoints), range(1, STATES + 1)))
            wait_for(lambda: pending(db_url) == 0, "no pending state")
            assert [stop(w) for w in workers] == [0, 0]
            records = receiver.records()
        finally:
            receiver.stop()
    outcome = rows(db_url)
    assert sorted(r[0] for r in outcome) == list(range(1, STATES + 1))
    assert {(r[1], r[2]) for r in outcome} == {("delivered", 1)}
    assert pushes_per_id(records) == dict.fromkeys(range(1, STATES + 1), 1)
    by_id: dict[int, list[Request]] = defaultdict(list)
    for record in records:
        for id_sms in record.ids:
            by_id[id_sms].append(record)
    concurrent = [
        i
        for i, rs in by_id.items()
        if any(overlapping(a, b) for a, b in itertools.combinations(rs, 2))
    ]
    assert not concurrent, f"ids pushed twice at once: {concurrent[:10]}"
    per_worker = {w.pid: sum(1 for r in records if r.client_pid == w.pid) for w in workers}
    assert sum(per_worker.values()) == len(records), "a request from neither worker"
    print(f"{len(records)} requests; per worker pid: {per_worker}")
    assert all(per_worker.values()), f"requests per worker pid: {per_worker}"
