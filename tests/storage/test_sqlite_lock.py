"""The SQLite writer and a write lock held by another process's connection."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from webcom_status.errors import StorageError
from webcom_status.model import State
from webcom_status.storage.sqlite import SqliteStorage

HELD = 0.3  # seconds the other connection holds the lock


def state(id_sms: int) -> State:
    return State(
        id_sms,
        "deliver",
        time_raw="2026-11-27 10:00:00",
        time_utc=datetime(2026, 11, 27, 7, tzinfo=UTC),
    )


@contextlib.asynccontextmanager
async def lock_held(path: Path, seconds: float) -> AsyncIterator[None]:
    """Another connection takes the write lock on ``path`` for ``seconds``, as another
    process would; the block runs once it holds the lock, and ends after its release."""
    taken = threading.Event()

    def run() -> None:
        with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as conn:
            conn.execute("BEGIN IMMEDIATE")
            taken.set()
            threading.Event().wait(seconds)
            conn.execute("ROLLBACK")

    thread = threading.Thread(target=run)
    thread.start()
    try:
        await asyncio.to_thread(taken.wait)
        yield
    finally:
        await asyncio.to_thread(thread.join)


async def test_a_write_waits_for_a_lock_held_less_than_the_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "lock.db"
    storage = await SqliteStorage.open(path, busy_timeout_ms=5000)
    try:
        async with lock_held(path, HELD):
            await storage.store([state(1)], [])
        message = await storage.message(1)
        assert message is not None
        assert message.status == "deliver"
    finally:
        await storage.close()


async def test_a_lock_held_past_the_busy_timeout_fails_the_write_and_stores_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "lock.db"
    storage = await SqliteStorage.open(path, busy_timeout_ms=50)
    try:
        async with lock_held(path, HELD):
            with pytest.raises(StorageError, match="locked"):
                await storage.store([state(1)], [])
        assert await storage.message(1) is None
        # The lock is free again: the next write goes through.
        await storage.store([state(2)], [])
        assert await storage.message(2) is not None
    finally:
        await storage.close()
