"""One writer thread for SQLite that commits concurrent writes together.

Writes queue up while a commit (and its fsync) is under way; the next
transaction takes all of them, so N concurrent requests cost one fsync, not
N. The event loop only enqueues and awaits a future: it never blocks on the
database. If a shared transaction fails, each write is retried on its own so
that one bad write cannot take the others down with it.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from webcom_status.errors import StorageClosed, StorageError

T = TypeVar("T")
Job = Callable[[sqlite3.Connection, str], Any]
_Item = tuple[Job, "asyncio.Future[Any]"]
_STOP = object()
log = logging.getLogger(__name__)


def now_text() -> str:
    """The current UTC time as the storage's sortable text."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _transaction(conn: sqlite3.Connection, jobs: list[Job]) -> list[Any]:
    stamp = now_text()
    conn.execute("BEGIN IMMEDIATE")
    try:
        results = [job(conn, stamp) for job in jobs]
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return results


def _settle(items: list[_Item], outcomes: list[Any]) -> None:
    for (_, future), outcome in zip(items, outcomes, strict=True):
        if future.done():
            continue  # the request gave up; its write stands and is idempotent
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


class GroupCommitter:
    """Runs write jobs on one connection, many jobs per transaction."""

    def __init__(self, conn: sqlite3.Connection, max_group: int = 512) -> None:
        self._conn = conn
        self._max_group = max_group
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="webcom-writer", daemon=True)
        self._thread.start()

    async def run(self, job: Callable[[sqlite3.Connection, str], T]) -> T:
        """Run ``job(conn, commit_time)`` in a transaction; return once committed."""
        if self._closed or not self._thread.is_alive():
            raise StorageClosed("storage is closed")
        future: asyncio.Future[T] = self._loop.create_future()
        self._queue.put((job, future))
        return await future

    async def close(self) -> None:
        """Commit what is queued, stop the thread, close the connection."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        await asyncio.to_thread(self._thread.join)
        self._conn.close()

    def _run(self) -> None:
        stopping = False
        while not stopping:
            first = self._queue.get()
            if first is _STOP:
                break
            items: list[_Item] = [first]  # type: ignore[list-item]
            while len(items) < self._max_group:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True
                    break
                items.append(item)  # type: ignore[arg-type]
            outcomes = self._commit([job for job, _ in items])
            self._loop.call_soon_threadsafe(_settle, items, outcomes)

    def _commit(self, jobs: list[Job]) -> list[Any]:
        try:
            return _transaction(self._conn, jobs)
        except Exception as exc:  # noqa: BLE001 - every failure is answered, none escapes
            if len(jobs) == 1:
                return [_storage_error(exc)]
        outcomes: list[Any] = []
        for job in jobs:
            try:
                outcomes.extend(_transaction(self._conn, [job]))
            except Exception as exc:  # noqa: BLE001 - as above, per job
                outcomes.append(_storage_error(exc))
        return outcomes


def _storage_error(exc: Exception) -> StorageError:
    log.error("database write failed: %s", exc, exc_info=not isinstance(exc, sqlite3.Error))
    error = StorageError(f"database write failed: {exc}")
    error.__cause__ = exc
    return error
