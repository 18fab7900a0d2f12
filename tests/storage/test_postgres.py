"""What only PostgreSQL has: its schema files, concurrent migrations, lost connections.

Everything both engines promise is tested on both elsewhere (the receiver's
HTTP tests, the end-to-end tests, and the storage-vs-rules property in
``test_storage_rules.py``). Here: ``schema.sql`` equals the migrations; several
processes migrating one empty database at once apply each migration once;
and a server whose connections are cut keeps its promise (a 200 only for
what is stored, a 503 otherwise) and recovers without a restart.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest

from tests import _db
from tests._postgres import PostgresDatabases, admin
from tests.conftest import ServerProcess
from tests.receiver.support import acked, error_of, state, xml_doc
from tests.test_rules import MSK
from webcom_status import rules
from webcom_status.model import State
from webcom_status.protocol import parse_time
from webcom_status.storage import open_storage
from webcom_status.storage._migrate import migrate
from webcom_status.storage._queries import migrations_dir, schema_file
from webcom_status.storage.postgres import yoyo_url

MIGRATORS = 4
PUSHERS = 4
STATES_PER_PUSH = 5
OUTAGE_SECONDS = 2.0
RECOVERY_SECONDS = 15.0
UNAVAILABLE = "the database is unavailable; nothing was stored, push again later"

# What the catalog says about the project's objects in schema "public"; each
# query's first column is the table (or object) name, to leave yoyo's out.
CATALOG = {
    "columns": """
        SELECT table_name, column_name, ordinal_position, data_type, udt_name,
               is_nullable, column_default, collation_name, character_maximum_length,
               numeric_precision, is_identity, is_generated
        FROM information_schema.columns WHERE table_schema = 'public'""",
    "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'",
    "constraints": """
        SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE connamespace = 'public'::regnamespace""",
    "triggers": """
        SELECT event_object_table, trigger_name, event_manipulation, action_timing,
               action_orientation, action_statement
        FROM information_schema.triggers WHERE trigger_schema = 'public'""",
    "functions": """
        SELECT proname, pg_get_functiondef(oid) FROM pg_proc
        WHERE pronamespace = 'public'::regnamespace AND prokind IN ('f', 'p')""",
    "sequences": """
        SELECT sequence_name, data_type, start_value, minimum_value, maximum_value, increment
        FROM information_schema.sequences WHERE sequence_schema = 'public'""",
    "views": """
        SELECT table_name, view_definition FROM information_schema.views
        WHERE table_schema = 'public'""",
}


@pytest.fixture
def engine() -> str:
    """Every test here is about PostgreSQL: ``db_url`` and ``start_server`` use it."""
    return "postgresql"


def is_yoyo(name: str) -> bool:
    return name.startswith(("_yoyo", "yoyo_"))


def catalog(url: str) -> dict[str, list[tuple[Any, ...]]]:
    """The project's tables, indexes, constraints, triggers, functions, and the seed rows."""
    with _db.reading(url) as rows:
        found = {
            kind: sorted(row for row in rows(query) if not is_yoyo(str(row[0])))
            for kind, query in CATALOG.items()
        }
        found["status_ranks"] = sorted(rows("SELECT value, rank FROM status_ranks"))
    return found


@pytest.fixture
def from_schema(postgres_databases: PostgresDatabases) -> str:
    """An empty database that then ran ``schema.sql`` as one script."""
    url = postgres_databases.empty()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(schema_file("postgresql").read_bytes())
    return url


@pytest.fixture
def from_migrations(postgres_databases: PostgresDatabases) -> str:
    """An empty database that then had every migration applied by yoyo."""
    url = postgres_databases.empty()
    migrate(yoyo_url(url), "postgresql")
    return url


def test_schema_file_equals_applied_migrations(from_schema: str, from_migrations: str) -> None:
    """Columns (types, defaults, collations), indexes, constraints, triggers, functions,
    sequences, views and the ``status_ranks`` rows: the same from ``schema.sql`` as from
    the migrations (yoyo's own tables left out)."""
    expected = catalog(from_schema)
    assert {row[0] for row in expected["columns"]} == _db.APP_TABLES
    assert catalog(from_migrations) == expected


def test_status_ranks_table_equals_rules_ranks(db_url: str) -> None:
    """The SQL's ranks are exactly ``rules.RANKS`` (other values: see test_storage_rules)."""
    with _db.reading(db_url) as rows:
        assert dict(rows("SELECT value, rank FROM status_ranks")) == rules.RANKS


def test_migrations_are_numbered_sql_files() -> None:
    """Each migration is ``NNNN_name.sql`` and the numbers run 1, 2, 3… without gaps."""
    names = sorted(p.name for p in migrations_dir("postgresql").iterdir() if p.suffix == ".sql")
    assert names
    assert all(re.fullmatch(r"\d{4}_[a-z0-9_]+\.sql", name) for name in names)
    assert [int(name[:4]) for name in names] == list(range(1, len(names) + 1))


def test_concurrent_migrate_applies_each_migration_once(
    postgres_databases: PostgresDatabases, from_schema: str, tmp_path: Path
) -> None:
    """4 ``migrate`` processes started at once on one empty database: all exit 0, each
    migration is applied and recorded exactly once, and the schema is the full one."""
    url = postgres_databases.empty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBCOM_STATUS")}
    command = [sys.executable, "-m", "webcom_status", "migrate", "--db", url]
    processes = [
        subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        for _ in range(MIGRATORS)
    ]
    outputs = [process.communicate(timeout=60) for process in processes]

    for process, (out, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err.decode()
        assert out.decode().strip() == f"database is up to date: {url}"
    expected = sorted(p.stem for p in migrations_dir("postgresql").glob("*.sql"))
    assert _db.applied_migrations(url) == expected
    with _db.reading(url) as rows:
        applied = rows(
            "SELECT migration_id, count(*) FROM _yoyo_log WHERE operation = 'apply' GROUP BY 1"
        )
    assert sorted(applied) == [(migration, 1) for migration in expected]
    assert catalog(url) == catalog(from_schema)


async def test_order_does_not_depend_on_the_database_collation(
    postgres_databases: PostgresDatabases,
) -> None:
    """In a database whose collation is ICU ``en-US`` (where ``b`` sorts before ``C``),
    values still compare in byte order, as in SQLite and ``rules.py``: in the history's
    tie-break by status, and in which state wins."""
    url = postgres_databases.empty("LOCALE_PROVIDER icu ICU_LOCALE 'en-US'")
    with _db.reading(url) as rows:
        assert rows("SELECT 'b' < 'C'") == [(True,)]
    moment = "2024-03-01 12:00:00"
    states = [State(1, value, None, value, moment, parse_time(moment, MSK)) for value in "bCa"]
    storage = await open_storage(url)
    try:
        await storage.store(states, ())
        message = await storage.message(1)
    finally:
        await storage.close()
    assert message is not None
    assert [e.status for e in message.history] == ["C", "a", "b"]
    current = rules.fold(states)
    assert current is not None
    assert current.viber is not None
    assert (
        (message.status, message.viber)
        == (current.overall.value, current.viber.value)
        == (
            "b",
            "b",
        )
    )


def terminate_backends(conn: psycopg.Connection[tuple[Any, ...]], url: str) -> int:
    """Cut every connection to the database of ``url`` (but ``conn``'s own); how many."""
    name = urlsplit(url).path[1:]
    row = conn.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
        " WHERE datname = %s AND pid <> pg_backend_pid()",
        (name,),
    ).fetchone()
    assert row is not None
    count: int = row[0]
    return count


@dataclass
class Outcome:
    """Every answer the pushers and the readers got, kept for the checks after the outage."""

    stored: set[int] = field(default_factory=set)
    unavailable: int = 0
    problems: list[str] = field(default_factory=list)
    read_statuses: list[int] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, sent: list[int], reply: httpx.Response) -> None:
        with self.lock:
            if reply.status_code == 200 and acked(reply) == sent:
                self.stored.update(sent)
            elif reply.status_code == 503 and acked(reply) == []:
                self.unavailable += 1
                if error_of(reply) != UNAVAILABLE:
                    self.problems.append(f"503 saying {reply.text[:200]}")
            else:
                self.problems.append(f"{reply.status_code} for {sent}: {reply.text[:200]}")


def keep_pushing(url: str, number: int, outcome: Outcome, stop: threading.Event) -> None:
    """Push documents of fresh ids back to back until ``stop``."""
    with httpx.Client(base_url=url, timeout=60) as client:
        for push in range(1_000_000):
            if stop.is_set():
                return
            first = 1_000_000 * (number + 1) + push * STATES_PER_PUSH
            ids = list(range(first, first + STATES_PER_PUSH))
            try:
                reply = client.post("/webhook", content=xml_doc(*(state(i) for i in ids)))
            except httpx.TransportError as exc:
                with outcome.lock:
                    outcome.problems.append(f"no answer: {exc!r}")
                return
            outcome.record(ids, reply)


def keep_reading(url: str, outcome: Outcome, stop: threading.Event) -> None:
    """Ask ``/healthz`` and ``/api/stats`` until ``stop``: each is answered 200 or 503."""
    with httpx.Client(base_url=url, timeout=60) as client:
        while not stop.is_set():
            for path in ("/healthz", "/api/stats"):
                try:
                    status = client.get(path).status_code
                except httpx.TransportError as exc:
                    with outcome.lock:
                        outcome.problems.append(f"no answer to {path}: {exc!r}")
                    return
                with outcome.lock:
                    outcome.read_statuses.append(status)


def cut_connections_repeatedly(url: str, seconds: float) -> int:
    """Terminate the database's backends every few milliseconds for ``seconds``."""
    rng = random.Random(7)
    terminated = 0
    deadline = time.monotonic() + seconds
    with admin() as conn:
        while time.monotonic() < deadline:
            terminated += terminate_backends(conn, url)
            time.sleep(rng.uniform(0.001, 0.02))
    return terminated


def wait_until_healthy(server: ServerProcess) -> list[int]:
    """Poll ``/healthz`` until it answers 200; every status seen on the way."""
    seen: list[int] = []
    deadline = time.monotonic() + RECOVERY_SECONDS
    while time.monotonic() < deadline:
        seen.append(httpx.get(f"{server.url}/healthz", timeout=30).status_code)
        if seen[-1] == 200:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"/healthz did not come back to 200: {seen}")


@pytest.mark.slow
def test_cut_connections_never_break_the_promise_and_the_server_recovers(
    start_server: Callable[..., ServerProcess], db_url: str
) -> None:
    """Backends terminated over and over while 4 clients push and one reads.

    Every push is answered 200 echoing all its ids, each then stored, or 503
    with the error document and no id; reads are 200 or 503, never a 500.
    Afterwards (the idle connections cut once more), without a restart,
    ``/healthz`` comes back to 200, pushes are stored again, and the log holds
    no traceback.
    """
    server = start_server()
    outcome, stop = Outcome(), threading.Event()
    threads = [
        threading.Thread(target=keep_pushing, args=(server.url, n, outcome, stop))
        for n in range(PUSHERS)
    ]
    threads.append(threading.Thread(target=keep_reading, args=(server.url, outcome, stop)))
    for thread in threads:
        thread.start()
    try:
        terminated = cut_connections_repeatedly(db_url, OUTAGE_SECONDS)
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert not any(thread.is_alive() for thread in threads)

    assert not outcome.problems, outcome.problems[:5]
    assert set(outcome.read_statuses) <= {200, 503}, sorted(set(outcome.read_statuses))
    assert terminated > 0
    assert outcome.unavailable or "database write retried" in server.log(), "no cut was felt"
    with admin() as conn:
        terminate_backends(conn, db_url)  # the pool's idle connections are all dead now
    health = wait_until_healthy(server)
    assert set(health) <= {200, 503}, health
    after = [9_000_000 + n for n in range(STATES_PER_PUSH)]
    for id_sms in after:
        reply = httpx.post(f"{server.url}/webhook", content=xml_doc(state(id_sms)), timeout=30)
        assert (reply.status_code, acked(reply)) == (200, [id_sms]), reply.text
    assert server.proc is not None
    assert server.proc.poll() is None, "the server must recover without a restart"
    stored = _db.stored_ids(db_url)
    lost = outcome.stored - stored
    assert not lost, f"{len(lost)} acknowledged ids are not stored, e.g. {sorted(lost)[:10]}"
    assert set(after) <= stored
    assert "Traceback" not in server.log(), server.log()[-3000:]
    print(
        f"{terminated} backends terminated; {len(outcome.stored)} ids acknowledged and stored, "
        f"{outcome.unavailable} pushes answered 503; reads during the cuts: "
        f"{outcome.read_statuses.count(200)} 200, {outcome.read_statuses.count(503)} 503; "
        f"/healthz on the way back: {health}"
    )
