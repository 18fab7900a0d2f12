"""SIGKILL under load: what a 200 answer echoed survives any crash.

The protocol's promise (PROTOCOL.md, "The receiver's answer"): an ``id_sms``
is echoed only once its state is durably stored. A receiver killed without
any chance to clean up must therefore come back with every echoed id, each
with exactly the state that was pushed for it, and with nothing it was
never sent. Ids pushed but not echoed may be present or absent. This holds
on both engines; the check of the SQLite file as the crash left it is SQLite's.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests import _db
from tests.conftest import ServerProcess
from tests.e2e._load import Load, Pushed
from webcom_status.storage import sqlite_path

CLIENTS = 8
REQUESTS_PER_ROUND = 400
ROUNDS = 2


def crash_copy(db_path: Path, into: Path) -> Path:
    """Copy the database and its WAL as the crash left them; the original stays untouched."""
    into.mkdir()
    for suffix in ("", "-wal"):
        source = db_path.with_name(db_path.name + suffix)
        if source.exists():
            shutil.copy(source, into / source.name)
    return into / db_path.name


def check_stored(db_url: str, pushed: dict[int, Pushed], acked: set[int]) -> int:
    """Assert the durability promise; return how many acknowledged ids were found."""
    messages = _db.messages(db_url)
    lost = sorted(acked - messages.keys())
    assert not lost, f"{len(lost)} acknowledged ids lost, e.g. {lost[:10]}"
    never_pushed = sorted(messages.keys() - pushed.keys())
    assert not never_pushed, f"ids stored that were never pushed: {never_pushed[:10]}"
    wrong = {
        i: row
        for i, row in messages.items()
        if (row.stored, row.time_utc) != (pushed[i].stored, pushed[i].state().time_utc)
    }
    assert not wrong, f"stored states differ from the pushed ones: {list(wrong.items())[:5]}"
    events = _db.events(db_url)
    assert len(events) == len(messages), "one state per id was pushed: one event per message"
    assert all(e.stored == pushed[e.id_sms].stored for e in events)
    return len(acked & messages.keys())


def check_api(server: ServerProcess, pushed: dict[int, Pushed], ids: list[int]) -> None:
    """The query API of the restarted server agrees with what was pushed."""
    with httpx.Client(base_url=server.url) as client:
        for id_sms in ids:
            reply = client.get(f"/api/messages/{id_sms}")
            assert reply.status_code == 200, (id_sms, reply.text)
            body = reply.json()
            row = (body["status"], body["sms"], body["viber"], body["time_raw"])
            assert row == pushed[id_sms].stored


@pytest.mark.slow
def test_acknowledged_ids_survive_sigkill_under_load(
    start_server: Callable[..., ServerProcess], engine: str, db_url: str, tmp_path: Path
) -> None:
    """Kill -9 mid-load, twice: every echoed id is stored as pushed, nothing else is.

    After each kill a new server starts on the same database. On SQLite the
    file as the crash left it (WAL included) first passes ``PRAGMA integrity_check``.
    """
    pushed: dict[int, Pushed] = {}
    acked: set[int] = set()
    server = start_server()
    for round_ in range(ROUNDS):
        first_id = 1 + round_ * 100_000_000
        load = Load(server.url, first_id, clients=CLIENTS, target=REQUESTS_PER_ROUND).start()
        load.wait_for_target()
        server.kill()
        load.finish()
        assert not pushed.keys() & load.pushed.keys(), "ids must be unique across rounds"
        pushed |= load.pushed
        acked |= load.acked
        if engine == "sqlite":
            crashed = crash_copy(sqlite_path(db_url), tmp_path / f"crash-{round_}")
            assert _db.integrity(crashed) == "ok"
        server = start_server()
        found = check_stored(db_url, pushed, acked)
        stored = len(_db.stored_ids(db_url))
        print(
            f"round {round_ + 1}: {load.requests} requests answered, "
            f"{len(load.pushed)} ids pushed, {len(load.acked)} acknowledged; after restart "
            f"{found}/{len(acked)} acknowledged ids found (all rounds), {stored} stored, "
            f"{stored - found} of them stored but never acknowledged (in flight at a kill)"
        )
        assert load.acked, "the load acknowledged nothing before the kill"
        assert found == len(acked)
        check_api(server, pushed, sorted(acked)[-25:] + sorted(acked)[:25])
