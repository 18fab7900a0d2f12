"""Scale-out: many ``serve`` processes on one database, and ``serve --workers N``.

The README promises that any number of ``serve`` processes may share one
PostgreSQL database with the guarantees intact (each acknowledged state
stored once, the current state decided by the status rules whatever the
order of arrival), that ``--workers N`` runs N processes on one port, and
that processes starting together on an empty database migrate it exactly
once. Here real processes get the same ids from concurrent clients at once;
the database is then read directly.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest

from tests import _db
from tests._postgres import PostgresDatabases
from tests.conftest import STARTUP_SECONDS, ServerProcess
from tests.e2e._load import REQUEST_TIMEOUT, Pushed, acknowledged, document, random_channels
from webcom_status import rules
from webcom_status.model import Flavour, State
from webcom_status.protocol import parse_time
from webcom_status.storage._queries import migrations_dir

ZONE = ZoneInfo("Europe/Moscow")
MAX_STATES_PER_DOCUMENT = 25
JOIN_SECONDS = 120.0
ADMIN_URL = os.environ.get(
    "WEBCOM_STATUS_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres"
)

EventKey = tuple[int, str, str | None, str | None, str]
Current = tuple[str, str | None, str | None, str, Any]


def states_of(id_sms: int, rng: random.Random) -> list[Pushed]:
    """Distinct states of one message, chosen so that the order of arrival would matter.

    ``send`` without a time, non-finals, an unknown value, finals at one
    instant spelled three ways (ties broken by value and raw text), and a
    ``deliver`` later than the finals; each status on one or two channel sets.
    """
    day = rng.randint(1, 20)
    instant = f"2024-03-{day:02d} 12:00:00"
    spellings = (instant, instant.replace(" ", "T"), f"2024-03-{day:02d}T09:00:00+00:00")
    plan = [
        ("send", ""),
        ("moderation", f"2024-03-{day:02d} 10:00:00"),
        ("deliver", f"2024-03-{day:02d} 11:00:00"),
        ("partly_deliver", f"2024-03-{day:02d} 11:30:00"),
        (rng.choice(("read", "not_deliver", "expired")), spellings[0]),
        (rng.choice(("read", "not_deliver", "expired")), spellings[1]),
        ("expired", spellings[2]),
        ("deliver", f"2024-03-{day + 1:02d} 08:00:00"),
    ]
    states: set[Pushed] = set()
    for status, time_raw in plan:
        for _ in range(rng.randint(1, 2)):
            sms, viber = random_channels(rng)
            states.add(Pushed(id_sms, status, sms, viber, time_raw))
    return sorted(states, key=repr)


def as_state(pushed: Pushed) -> State:
    """The state the receiver must make of a pushed one (times read in Europe/Moscow)."""
    return State(
        pushed.id_sms,
        pushed.status,
        pushed.sms,
        pushed.viber,
        pushed.time_raw,
        parse_time(pushed.time_raw, ZONE),
    )


@dataclass
class Client:
    """One client thread: its server, flavour and documents, and what it learnt."""

    url: str
    flavour: Flavour
    documents: list[list[Pushed]]
    acked: set[Pushed] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)

    def run(self, start: threading.Barrier) -> None:
        """Wait for the other clients, then push every document back to back."""
        rng = random.Random(self.url)
        try:
            with httpx.Client(base_url=self.url, timeout=REQUEST_TIMEOUT) as client:
                start.wait()
                for states in self.documents:
                    reply = client.post("/webhook", content=document(states, self.flavour, rng))
                    self._account(reply, states)
        except Exception as exc:  # noqa: BLE001 - reported by the test, not lost in the thread
            self.problems.append(repr(exc))

    def _account(self, reply: httpx.Response, states: list[Pushed]) -> None:
        if reply.status_code != 200:
            self.problems.append(f"{reply.status_code}: {reply.text[:200]}")
            return
        echoed = set(acknowledged(reply, self.flavour))
        if echoed != {s.id_sms for s in states}:
            self.problems.append(
                f"echoed {sorted(echoed)} for {sorted({s.id_sms for s in states})}"
            )
        self.acked.update(s for s in states if s.id_sms in echoed)


def documents_for(everything: list[Pushed], rng: random.Random) -> list[list[Pushed]]:
    """Every state in this client's own order, a fifth of them twice, cut into documents."""
    order = everything + rng.sample(everything, len(everything) // 5)
    rng.shuffle(order)
    documents: list[list[Pushed]] = []
    while order:
        size = rng.randint(1, MAX_STATES_PER_DOCUMENT)
        documents.append(order[:size])
        order = order[size:]
    return documents


def push_concurrently(urls: list[str], everything: list[Pushed], clients: int) -> set[Pushed]:
    """``clients`` threads, spread over ``urls``, each push all of ``everything`` at once.

    Every answer must be 200 and echo exactly the ids of its document; the
    states acknowledged are returned.
    """
    flavours = (Flavour.XML, Flavour.JSON)
    runners = [
        Client(urls[n % len(urls)], flavours[n % 2], documents_for(everything, random.Random(n)))
        for n in range(clients)
    ]
    start = threading.Barrier(clients)
    threads = [threading.Thread(target=r.run, args=(start,)) for r in runners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(JOIN_SECONDS)
        assert not thread.is_alive(), "a client did not finish"
    problems = [p for r in runners for p in r.problems]
    assert not problems, problems[:5]
    return set().union(*(r.acked for r in runners))


def expected_current(states: list[Pushed]) -> Current:
    """``(status, sms, viber, time_raw, time_utc)`` as :func:`rules.fold` decides it."""
    current = rules.fold(as_state(s) for s in states)
    assert current is not None
    overall = current.overall
    return (
        overall.value,
        None if current.sms is None else current.sms.value,
        None if current.viber is None else current.viber.value,
        overall.time_raw,
        overall.time_utc,
    )


def assert_stored_exactly(db_url: str, acked: set[Pushed]) -> None:
    """Each acknowledged state is one row of ``events``; each message is the fold of its own."""
    with _db.reading(db_url) as rows:
        counted = rows(
            "SELECT id_sms, status, nullif(sms, ''), nullif(viber, ''), time_raw, count(*)"
            " FROM events GROUP BY 1, 2, 3, 4, 5"
        )
    per_state: dict[EventKey, int] = {(r[0], r[1], r[2], r[3], r[4]): r[5] for r in counted}
    assert per_state == {(s.id_sms, *s.stored): 1 for s in acked}
    by_id: dict[int, list[Pushed]] = {}
    for s in acked:
        by_id.setdefault(s.id_sms, []).append(s)
    stored = {
        i: (m.status, m.sms, m.viber, m.time_raw, m.time_utc)
        for i, m in _db.messages(db_url).items()
    }
    assert stored == {i: expected_current(states) for i, states in by_id.items()}


@contextlib.contextmanager
def processes(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """``make(db_url, *flags)``: a server not started yet; every one is stopped at the end."""
    made: list[ServerProcess] = []

    def make(db_url: str, *flags: str) -> ServerProcess:
        server = ServerProcess(db_url, flags, log_path=tmp_path / f"server-{len(made)}.log")
        made.append(server)
        return server

    try:
        yield make
    finally:
        for server in made:
            if server.proc is not None and server.proc.poll() is None:
                server.stop()


def start_together(servers: list[ServerProcess]) -> None:
    """Launch every server at the same moment and wait until each answers ``/healthz``."""
    start = threading.Barrier(len(servers))
    failures: list[str] = []

    def launch(server: ServerProcess) -> None:
        try:
            start.wait()
            server.start()
        except Exception as exc:  # noqa: BLE001 - reported by the test, not lost in the thread
            failures.append(repr(exc))

    threads = [threading.Thread(target=launch, args=(s,)) for s in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(STARTUP_SECONDS + 10)
        assert not thread.is_alive(), "a server did not start"
    assert not failures, failures


def worker_processes(server: ServerProcess) -> int:
    """How many uvicorn worker processes the server's main process has (Linux ``/proc``)."""
    assert server.proc is not None
    pid = server.proc.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    workers = 0
    for child in children:
        with contextlib.suppress(FileNotFoundError):  # gone since the listing
            workers += "spawn_main" in Path(f"/proc/{child}/cmdline").read_text()
    return workers


@pytest.mark.slow
def test_receivers_on_one_postgresql_database_store_each_state_once_and_fold(
    tmp_path: Path, postgres_databases: PostgresDatabases
) -> None:
    """Three ``serve`` processes and one ``serve --workers 2`` share one PostgreSQL database.

    Twelve clients push the same states (overlapping ids, every status,
    channels and times, in twelve orders, some twice) to all of them at
    once: every answer is 200; afterwards each acknowledged state is one row
    of ``events`` and each message equals ``rules.fold`` of its states.
    Every process then exits 0 on SIGTERM.
    """
    db_url: str = postgres_databases.new()
    rng = random.Random("scale-out")
    everything = [s for id_sms in range(8001, 8041) for s in states_of(id_sms, rng)]
    with processes(tmp_path) as make:
        servers = [
            make(db_url, "--pool-size", "4"),
            make(db_url, "--pool-size", "2"),
            make(db_url),
            make(db_url, "--workers", "2", "--pool-size", "3"),
        ]
        start_together(servers)
        acked = push_concurrently([s.url for s in servers], everything, clients=12)
        assert [s.stop() for s in servers] == [0, 0, 0, 0]
    assert acked == set(everything)
    assert_stored_exactly(db_url, acked)


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["sqlite"])
def test_workers_on_sqlite_answer_and_stop_on_sigterm(
    start_server: Callable[..., ServerProcess], db_url: str
) -> None:
    """``serve --workers 2`` on SQLite: two worker processes, 200 for all, exit 0 on SIGTERM.

    Six clients push overlapping ids through the shared port; after SIGTERM
    the process exits 0 and the file holds each acknowledged state once and
    the folded current state of every acknowledged id.
    """
    server = start_server("--workers", "2")
    for _ in range(100):  # the first worker may answer before the second is spawned
        if worker_processes(server) >= 2:
            break
        time.sleep(0.1)
    assert worker_processes(server) == 2
    rng = random.Random("workers-sqlite")
    everything = [s for id_sms in range(8101, 8121) for s in states_of(id_sms, rng)]
    acked = push_concurrently([server.url], everything, clients=6)
    assert server.stop() == 0
    assert acked == set(everything)
    assert_stored_exactly(db_url, acked)


@pytest.fixture
def empty_postgres_database() -> Iterator[str]:
    """A database made here with ``CREATE DATABASE`` (no schema), dropped WITH (FORCE) after."""
    name = f"webcom_test_empty_{uuid.uuid4().hex[:12]}"
    try:
        admin = psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is not reachable at {ADMIN_URL}: {exc}")
        pytest.skip(f"PostgreSQL is not reachable at {ADMIN_URL}: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}" TEMPLATE template0')
        try:
            yield _db_url(name)
        finally:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _db_url(name: str) -> str:
    return ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"


@pytest.mark.slow
def test_servers_starting_together_on_an_empty_database_migrate_once(
    tmp_path: Path, empty_postgres_database: str
) -> None:
    """Four ``serve`` processes launched at once on an empty PostgreSQL database.

    All come up healthy, and ``_yoyo_migration`` (and yoyo's log) records
    each migration exactly once: the advisory lock lets one process migrate
    and the others find the work done. Each then stores a push.
    """
    migrations = {p.stem: 1 for p in migrations_dir("postgresql").glob("*.sql")}
    assert migrations
    with processes(tmp_path) as make:
        servers = [make(empty_postgres_database) for _ in range(4)]
        start_together(servers)
        for n, server in enumerate(servers, start=1):
            body = f'<response><state id_sms="{n}" time="">send</state></response>'
            reply = httpx.post(f"{server.url}/webhook", content=body, timeout=REQUEST_TIMEOUT)
            assert reply.status_code == 200, reply.text
        assert [s.stop() for s in servers] == [0, 0, 0, 0]
    with psycopg.connect(empty_postgres_database) as conn:
        recorded = conn.execute(
            "SELECT migration_id, count(*) FROM _yoyo_migration GROUP BY 1"
        ).fetchall()
        applied = conn.execute(
            "SELECT migration_id, count(*) FROM _yoyo_log WHERE operation = 'apply' GROUP BY 1"
        ).fetchall()
    assert dict(recorded) == migrations
    assert dict(applied) == migrations
    assert _db.stored_ids(empty_postgres_database) == {1, 2, 3, 4}
