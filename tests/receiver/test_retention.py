"""Retention seen from outside: ``serve --prune-older-than`` and ``webcom-status prune``.

A receiver started with ``--prune-older-than AGE`` deletes, every
``--prune-interval``, the statuses (events, then messages with no event
left) and rejects received more than AGE ago, and keeps the younger ones.
The ``prune`` command does it once and prints what it deleted as JSON. A bad
duration is a usage error (exit 2) that says what to write instead. The
tests that use a database run on each engine (the module's, see
``conftest.py``); the others once, on a SQLite file of their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sqlite3
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import psycopg
import pytest

from tests import _db
from tests.conftest import ServerProcess
from tests.test_cli import run_cli
from webcom_status.model import Reject, State
from webcom_status.protocol import parse_time
from webcom_status.storage import open_storage, sqlite_path

TIME = "2024-03-01 12:00:00"
POLLS = 150  # at 0.1 s each: up to 15 s for a 1 s age and a 1 s interval
EXPECTED_DURATION = "not a duration"


def doc(*states: tuple[str, str]) -> bytes:
    """An XML push of ``(id_sms, status)`` states, all at :data:`TIME`."""
    body = "".join(f'<state id_sms="{i}" time="{TIME}" sms="{s}">{s}</state>' for i, s in states)
    return f'<?xml version="1.0" encoding="utf-8" ?>\n<response>{body}</response>'.encode()


def push(server: ServerProcess, body: bytes) -> list[int]:
    """POST a document; the answer must be 200; the ids it echoes."""
    reply = httpx.post(f"{server.url}/webhook", content=body, timeout=30)
    assert reply.status_code == 200, reply.text
    return [int(i) for i in re.findall(r"<id_sms>(\d+)</id_sms>", reply.text)]


def message_status(server: ServerProcess, id_sms: int) -> int:
    """The HTTP status of ``GET /api/messages/{id_sms}``: 200 if stored, 404 if not."""
    return httpx.get(f"{server.url}/api/messages/{id_sms}", timeout=30).status_code


def reject_ids(server: ServerProcess) -> set[str]:
    """The raw ``id_sms`` of every reject the server still keeps."""
    reply = httpx.get(f"{server.url}/api/rejects", params={"limit": 1000}, timeout=30)
    assert reply.status_code == 200, reply.text
    return {r["id_sms_raw"] for r in reply.json()}


def wait_until(condition: Callable[[], bool], what: str, polls: int = POLLS) -> None:
    """Poll ``condition`` up to ``polls`` times, 0.1 s apart."""
    for _ in range(polls):
        if condition():
            return
        time.sleep(0.1)
    pytest.fail(f"never happened: {what}")


_MESSAGE_COLUMNS = {
    "sqlite": "SELECT name FROM pragma_table_info('messages')",
    "postgresql": "SELECT column_name FROM information_schema.columns"
    " WHERE table_schema = 'public' AND table_name = 'messages'",
}


def receipt_columns(db_url: str) -> list[str]:
    """The columns of ``messages`` that say when something was received (not the status time).

    Read from the schema, so that a column retention keys on is aged too
    whatever its name: ``first_seen`` and every ``*_at``.
    """
    with _db.reading(db_url) as rows:
        names = [r[0] for r in rows(_MESSAGE_COLUMNS[_db.engine_of(db_url)])]
    return sorted(n for n in names if n == "first_seen" or n.endswith("_at"))


def make_old(db_url: str, id_sms: int, reject_id_sms_raw: str) -> None:
    """Move one message (its events and row) and one reject two hours into the past."""
    then = datetime.now(UTC) - timedelta(hours=2)
    sqlite = _db.engine_of(db_url) == "sqlite"
    # SQLite keeps UTC text in the storage's own format; PostgreSQL timestamptz.
    stamp: object = then.strftime("%Y-%m-%d %H:%M:%S.%f") if sqlite else then
    columns = receipt_columns(db_url)
    assert columns, "messages has no receipt time"
    statements: list[tuple[str, tuple[object, ...]]] = [
        ("UPDATE events SET received_at = ? WHERE id_sms = ?", (stamp, id_sms)),
        (
            f"UPDATE messages SET {', '.join(f'{c} = ?' for c in columns)} WHERE id_sms = ?",
            (stamp,) * len(columns) + (id_sms,),
        ),
        ("UPDATE rejects SET received_at = ? WHERE id_sms_raw = ?", (stamp, reject_id_sms_raw)),
    ]
    if sqlite:
        with contextlib.closing(sqlite3.connect(sqlite_path(db_url), timeout=10)) as conn, conn:
            for sql, params in statements:
                assert conn.execute(sql, params).rowcount >= 1, sql
        return
    with psycopg.connect(db_url) as pg:
        for sql, params in statements:
            assert pg.execute(sql.replace("?", "%s"), params).rowcount >= 1, sql


def test_statuses_older_than_the_age_are_deleted_by_the_running_server(
    start_server: Callable[..., ServerProcess],
) -> None:
    """``--prune-older-than 1s --prune-interval 1s``: pushed statuses and rejects go away.

    Each message answers 404 and the rejects list empties within a bounded
    number of polls; a status pushed after that goes away too (the prune
    repeats, it does not run only at start).
    """
    server = start_server("--prune-older-than", "1s", "--prune-interval", "1s")
    assert push(server, doc(("11", "deliver"), ("12", "read"), ("x1", "read"))) == [11, 12]

    wait_until(lambda: message_status(server, 11) == message_status(server, 12) == 404, "11, 12")
    wait_until(lambda: reject_ids(server) == set(), "rejects pruned")

    assert push(server, doc(("13", "expired"))) == [13]
    wait_until(lambda: message_status(server, 13) == 404, "13 pruned")
    stats = httpx.get(f"{server.url}/api/stats", timeout=30).json()
    assert (stats["messages"], stats["events"], stats["rejects"]) == (0, 0, 0)


def test_the_running_server_keeps_statuses_younger_than_the_age(
    start_server: Callable[..., ServerProcess], db_url: str
) -> None:
    """``--prune-older-than 1h --prune-interval 1s``: only what is over an hour old goes.

    Two messages and two rejects are pushed; one of each is then moved two
    hours into the past in the database. Once the server has pruned those,
    the young message (with its history) and the young reject are still there.
    """
    server = start_server("--prune-older-than", "1h", "--prune-interval", "1s")
    assert push(server, doc(("21", "deliver"), ("x21", "read"))) == [21]
    assert push(server, doc(("22", "deliver"), ("22", "read"), ("x22", "read"))) == [22]
    make_old(db_url, 21, "x21")

    wait_until(lambda: message_status(server, 21) == 404, "the aged message pruned")
    wait_until(lambda: reject_ids(server) == {"x22"}, "the aged reject pruned")

    young = httpx.get(f"{server.url}/api/messages/22", timeout=30).json()
    assert young["status"] == "read"
    assert sorted(e["status"] for e in young["history"]) == ["deliver", "read"]


async def _store(db_url: str) -> None:
    """Three events of two messages and one reject, straight through the storage."""
    storage = await open_storage(db_url)
    try:
        zone_time = parse_time(TIME, ZoneInfo("Europe/Moscow"))
        await storage.store(
            [
                State(31, "deliver", "deliver", None, TIME, zone_time),
                State(31, "read", "read", None, TIME, zone_time),
                State(32, "send"),
            ],
            [Reject("state", "id_sms is not an integer: 'x31'", b"<state/>", "x31")],
        )
    finally:
        await storage.close()


def test_prune_command_prints_what_it_deleted_as_json(db_url: str, tmp_path: Path) -> None:
    """``webcom-status prune --older-than``: JSON with the cut-off and the counts deleted.

    With an age older than the data nothing is deleted; once the data is
    over a second old, ``--older-than 1s`` deletes all of it, in batches
    smaller than the data, and prints how many rows of each kind.
    """
    asyncio.run(_store(db_url))

    kept = run_cli("prune", "--db", db_url, "--older-than", "1h", cwd=tmp_path)
    assert kept.returncode == 0, kept.stderr
    printed = json.loads(kept.stdout)
    assert (printed["events"], printed["messages"], printed["rejects"]) == (0, 0, 0)
    cut_off = datetime.fromisoformat(printed["before"])
    assert cut_off.utcoffset() == timedelta(0)
    assert cut_off < datetime.now(UTC) - timedelta(minutes=59)
    rows = _db.counts(db_url)
    assert (rows["events"], rows["messages"], rows["rejects"]) == (3, 2, 1)

    time.sleep(1.1)  # everything stored is now more than a second old
    pruned = run_cli(
        "prune", "--db", db_url, "--older-than", "1s", "--batch-size", "1", cwd=tmp_path
    )
    assert pruned.returncode == 0, pruned.stderr
    assert {k: v for k, v in json.loads(pruned.stdout).items() if k != "before"} == {
        "events": 3,
        "messages": 2,
        "rejects": 1,
    }
    assert _db.stored_ids(db_url) == set()
    assert _db.rejects(db_url) == []


@pytest.mark.parametrize(
    ("command", "flag", "duration"),
    [
        ("prune", "--older-than", "0s"),
        ("prune", "--older-than", "1.5h"),
        ("prune", "--older-than", "1y"),
        ("prune", "--older-than", ""),
        ("serve", "--prune-older-than", "90 days"),
        ("serve", "--prune-interval", "0s"),
    ],
)
def test_a_bad_duration_is_a_usage_error_that_says_what_to_write(
    tmp_path: Path, command: str, flag: str, duration: str
) -> None:
    """Exit 2, a message naming the value and an example (``90d``); no database opened."""
    db = tmp_path / "status.db"
    done = run_cli(command, "--db", f"sqlite:///{db}", flag, duration, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert EXPECTED_DURATION in done.stderr
    assert repr(duration) in done.stderr
    assert "90d" in done.stderr
    assert "Traceback" not in done.stderr
    assert not db.exists()


@pytest.mark.parametrize("duration", ["1000000d", "9999999999d"])
def test_prune_refuses_an_age_beyond_the_calendar(tmp_path: Path, duration: str) -> None:
    """An age that reaches before year 1 is a usage error (exit 2), not a traceback."""
    db = tmp_path / "status.db"
    done = run_cli("prune", "--db", f"sqlite:///{db}", "--older-than", duration, cwd=tmp_path)
    assert "Traceback" not in done.stderr, done.stderr[-300:]
    assert done.returncode == 2, done.stderr


@contextlib.contextmanager
def sqlite_server(tmp_path: Path, *flags: str) -> Iterator[ServerProcess]:
    """A server on a SQLite file of its own, once whatever the module's engine; stopped after."""
    server = ServerProcess(
        f"sqlite:///{tmp_path / 'status.db'}", flags, log_path=tmp_path / "server.log"
    )
    try:
        yield server
    finally:
        if server.proc is not None and server.proc.poll() is None:
            server.stop()


def test_serve_refuses_a_prune_age_beyond_the_calendar(tmp_path: Path) -> None:
    """``serve --prune-older-than 1000000d`` exits 2 rather than serve with a dead pruner.

    Otherwise the first prune raises in the background task, which ends it
    for good without a word in the log: retention silently never runs.
    """
    with (
        sqlite_server(tmp_path, "--prune-older-than", "1000000d") as server,
        pytest.raises(RuntimeError, match="server exited with 2"),
    ):
        server.start()


def test_each_prune_is_logged_at_info_level(tmp_path: Path) -> None:
    """With ``--log-level info`` every prune says what it deleted and up to when.

    The retention task logs ``pruned N events, N messages, N rejects older
    than ...`` at INFO: an operator must be able to see that retention runs.
    """
    flags = ("--prune-older-than", "1h", "--prune-interval", "1s", "--log-level", "info")
    with sqlite_server(tmp_path, *flags) as server:
        server.start()
        wait_until(
            lambda: "pruned 0 events, 0 messages, 0 rejects older than" in server.log(),
            "a prune logged",
            polls=50,  # the first prune runs at start, then one a second: five chances
        )
