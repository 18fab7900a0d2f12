"""When the database fails, nothing is acknowledged; when it comes back, the receiver does too.

A push the database could not take is answered 503 with the platform's error
document and no ``id_sms``, so the provider pushes it again. Nothing of it is
stored or counted. The server keeps answering, and stores the next push once
the database works again.

Both tests here break SQLite itself (a full disk under its file, its write
lock held by another connection), so they run on SQLite only; the PostgreSQL
outage (its connections cut while pushing) is in ``tests/storage/test_postgres.py``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest

from tests._db import integrity, stored_ids
from tests.receiver.support import (
    BASELINE_IDS,
    JSON_TYPE,
    XML_TYPE,
    acked,
    assert_baseline_unharmed,
    before,
    error_of,
    running,
    seed,
    state,
    xml_doc,
)

UNAVAILABLE = "the database is unavailable; nothing was stored, push again later"
STORED = 'webcom_status_states_total{outcome="stored"}'
REJECTED = 'webcom_status_states_total{outcome="rejected"}'
FAILED_PUSHES = 'webcom_status_pushes_total{outcome="storage_error"}'


def assert_unavailable(reply: httpx.Response, content_type: str = XML_TYPE) -> None:
    """503, the error document in the push's flavour, and no id acknowledged."""
    assert reply.status_code == 503, reply.text
    assert reply.headers["content-type"] == content_type
    assert error_of(reply) == UNAVAILABLE
    assert acked(reply) == []
    assert b"id_sms" not in reply.content


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MiB tmpfs of this test's own, unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("filling a disk safely needs a tmpfs of its own, and mounting one needs root")
    mount_point = tmp_path / "tiny"
    mount_point.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount_point)]
    mounted = subprocess.run(command, capture_output=True, text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield mount_point
    finally:
        if subprocess.run(["umount", str(mount_point)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mount_point)], check=True)


def fill(path: Path) -> None:
    """Write to ``path`` until the file system has not one byte left."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
        with pytest.raises(OSError, match="No space left on device") as full:
            os.write(fd, b"\0")
        assert full.value.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_disk_full_is_503_without_acknowledgement_and_recovers(
    tiny_disk: Path, tmp_path: Path
) -> None:
    """A full disk: 503, no id echoed, nothing stored or counted; reads keep working.

    ``/healthz`` answers 503 too: its check writes, so a database that cannot
    take writes is reported unhealthy, and 200 again once it can.

    Once space is freed the same push is stored and acknowledged, exactly once.
    SQLite only: the database file is on a tmpfs of the test's own.
    """
    ids = list(range(5000, 7000))
    push = xml_doc(*(state(i, "deliver", sms="deliver", viber="deliver") for i in ids))
    db_path = tiny_disk / "status.db"
    db_url = f"sqlite:///{db_path}"
    with running(tmp_path / "server", db_url=db_url) as receiver:
        seed(receiver)
        then = before(receiver)
        fill(tiny_disk / "filler")

        for _ in range(2):
            assert_unavailable(receiver.push(push))
        assert "database or disk is full" in receiver.process.log()
        health = receiver.get("/healthz")
        assert health.status_code == 503, health.text
        assert receiver.process.proc is not None
        assert receiver.process.proc.poll() is None
        assert receiver.stats() == then.stats
        assert_baseline_unharmed(receiver, then)

        (tiny_disk / "filler").unlink()
        assert receiver.get("/healthz").status_code == 200
        reply = receiver.push(push)

        assert reply.status_code == 200, reply.text
        assert acked(reply) == ids
        assert receiver.metric(STORED) == len(BASELINE_IDS) + len(ids)
        assert receiver.metric(FAILED_PUSHES) == 2
        assert receiver.stats()["events"] == len(BASELINE_IDS) + len(ids)
    assert stored_ids(db_url) == {*BASELINE_IDS, *ids}
    assert integrity(db_path) == "ok"


def test_locked_database_is_503_without_acknowledgement_and_recovers(
    tmp_path: Path, db_path: Path, sqlite_url: str
) -> None:
    """Another connection holds the write lock past ``--busy-timeout``: 503, /healthz 503.

    Reads still answer. After the lock is released /healthz is 200 again and a
    push is stored; what was refused (and not pushed again) is not stored,
    not kept as a reject, and not counted. SQLite only: the lock is SQLite's
    ``BEGIN EXCLUSIVE`` on the file.
    """
    with running(tmp_path, "--busy-timeout", "200", db_url=sqlite_url) as receiver:
        seed(receiver)
        then = before(receiver)
        mixed = xml_doc(state(23), '<state id_sms="zz">deliver</state>')
        with contextlib.closing(sqlite3.connect(db_path, isolation_level=None)) as lock:
            lock.execute("BEGIN EXCLUSIVE")

            assert_unavailable(receiver.push(xml_doc(state(20), state(21))))
            json_push = orjson.dumps([{"id_sms": 22, "state": "x"}])
            assert_unavailable(receiver.push(json_push), JSON_TYPE)
            assert_unavailable(receiver.push(mixed))
            health = receiver.get("/healthz")
            assert health.status_code == 503
            assert health.json()["status"] == "unavailable"
            assert "locked" in health.json()["error"]
            assert_baseline_unharmed(receiver, then)
            assert receiver.stats() == then.stats

            lock.execute("ROLLBACK")

        assert receiver.get("/healthz").status_code == 200
        reply = receiver.push(xml_doc(state(20), state(21)))
        assert reply.status_code == 200, reply.text
        assert acked(reply) == [20, 21]
        assert receiver.metric(STORED) == len(BASELINE_IDS) + 2
        assert receiver.metric(REJECTED) == 0
        assert receiver.metric(FAILED_PUSHES) == 3
        assert receiver.stats() == {
            "messages": len(BASELINE_IDS) + 2,
            "events": len(BASELINE_IDS) + 2,
            "unknown_status_events": 0,
            "rejects": 0,
        }
    assert stored_ids(sqlite_url) == {*BASELINE_IDS, 20, 21}
