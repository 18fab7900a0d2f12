"""One writer thread for SQLite that commits concurrent writes together.

Writes queue up while a commit (and its fsync) is under way; the next
transaction takes all of them, so N concurrent requests cost one fsync, not
N. The event loop only enqueues and awaits a future: it never blocks on the
database. If a shared transaction fails, each write is retried on its own so
that one bad write cannot take the others down with it.

Two kinds of writes share the queue: *batch* payloads, which the engine
writes for the whole group at once (``write_batch``: one statement for the
rows of every request, so the GIL is taken back once per group rather than
once per row), and arbitrary jobs ``job(conn, commit_time)``.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from webcom_status.errors import StorageClosed, StorageError

T = TypeVar("T")
Job = Callable[[sqlite3.Connection, str], Any]
# Writes the payloads as one transaction of its own (a single statement in
# autocommit mode where it can, BEGIN … COMMIT otherwise); on failure, nothing.
BatchWriter = Callable[[sqlite3.Connection, list[Any], str], None]
_Item = tuple[object, "asyncio.Future[Any]"]
_STOP = object()
log = logging.getLogger(__name__)
SQLITE_BUSY = 5
# How long the writer sleeps between two tries at a write lock another
# process holds: short, so that the lock is taken soon after it comes free,
# not after SQLite's own busy handler's 1, 2, 5, 10... ms sleeps.
LOCK_RETRY = 0.0001  # seconds


def now_text() -> str:
    """The current UTC time as the storage's sortable text."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


class _Batch:
    """A payload for the engine's batch writer, as opposed to a job to call."""

    __slots__ = ("payload",)

    def __init__(self, payload: object) -> None:
        self.payload = payload


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

    def __init__(
        self,
        conn: sqlite3.Connection,
        write_batch: BatchWriter,
        max_group: int = 512,
        lock_timeout: float = 5.0,
    ) -> None:
        # The connection waits for no lock itself: _when_free retries, sooner.
        conn.execute("PRAGMA busy_timeout = 0")
        self._conn = conn
        self._lock_timeout = lock_timeout
        self._write_batch = write_batch
        self._max_group = max_group
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._loop = asyncio.get_running_loop()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="webcom-writer", daemon=True)
        self._thread.start()

    async def run(self, job: Callable[[sqlite3.Connection, str], T]) -> T:
        """Run ``job(conn, commit_time)`` in a transaction; return once committed."""
        result: T = await self._submit(job)
        return result

    async def write(self, payload: object) -> None:
        """Have ``write_batch`` write ``payload`` with the group's; return once committed."""
        await self._submit(_Batch(payload))

    async def _submit(self, item: object) -> Any:
        if self._closed or not self._thread.is_alive():
            raise StorageClosed("storage is closed")
        future: asyncio.Future[Any] = self._loop.create_future()
        self._queue.put((item, future))
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

    def _commit(self, items: list[object]) -> list[Any]:
        """The outcome of each item: batches in one transaction, jobs in another."""
        outcomes: list[Any] = [None] * len(items)
        batches = [i for i, item in enumerate(items) if isinstance(item, _Batch)]
        jobs = [i for i, item in enumerate(items) if not isinstance(item, _Batch)]

        def write(indices: list[int]) -> list[Any]:
            payloads = [items[i].payload for i in indices]  # type: ignore[attr-defined]
            self._write_batch(self._conn, payloads, now_text())
            return [None] * len(indices)

        def run(indices: list[int]) -> list[Any]:
            return _transaction(self._conn, [items[i] for i in indices])  # type: ignore[misc]

        _attempt(batches, self._when_free(write), outcomes)
        _attempt(jobs, self._when_free(run), outcomes)
        return outcomes

    def _when_free(
        self, commit: Callable[[list[int]], list[Any]]
    ) -> Callable[[list[int]], list[Any]]:
        """``commit``, tried again while another connection holds the write lock.

        A write that meets the lock has done nothing (its statement or
        transaction is rolled back whole), so trying it again is safe.
        """

        def retried(indices: list[int]) -> list[Any]:
            deadline = time.monotonic() + self._lock_timeout
            while True:
                try:
                    return commit(indices)
                except sqlite3.OperationalError as exc:
                    if exc.sqlite_errorcode & 0xFF != SQLITE_BUSY or time.monotonic() > deadline:
                        raise
                time.sleep(LOCK_RETRY)

        return retried


def _attempt(
    indices: list[int], commit: Callable[[list[int]], list[Any]], outcomes: list[Any]
) -> None:
    """Commit ``indices`` together; if that fails, each alone, so one cannot fail the rest."""
    if not indices:
        return
    try:
        results = commit(indices)
    except Exception as exc:  # noqa: BLE001 - every failure is answered, none escapes
        if len(indices) == 1:
            outcomes[indices[0]] = _storage_error(exc)
            return
    else:
        for i, result in zip(indices, results, strict=True):
            outcomes[i] = result
        return
    for i in indices:
        try:
            outcomes[i] = commit([i])[0]
        except Exception as exc:  # noqa: BLE001 - as above, per item
            outcomes[i] = _storage_error(exc)


def _storage_error(exc: Exception) -> StorageError:
    log.error("database write failed: %s", exc, exc_info=not isinstance(exc, sqlite3.Error))
    return StorageError.write_failed(exc)
