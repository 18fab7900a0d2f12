"""The SQLite engine: one file, WAL, durable commits, one writer thread."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

from webcom_status.errors import StorageClosed, StorageError
from webcom_status.model import Event, Message, Reject, State, Stats, StoredReject
from webcom_status.storage._group_commit import GroupCommitter
from webcom_status.storage._migrate import migrate
from webcom_status.storage._prune import Pruned, prune_keyed, prune_until_done
from webcom_status.storage._queries import load_queries
from webcom_status.storage._rows import events_json, join_arrays

Q = load_queries("sqlite")
T = TypeVar("T")
_Push = tuple[str, Sequence[Reject]]
SYNCHRONOUS = ("FULL", "NORMAL", "EXTRA")


def _connect(path: Path, busy_timeout_ms: int, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, timeout=busy_timeout_ms / 1000
    )
    conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def _utc(text: str | None) -> datetime | None:
    return None if text is None else datetime.fromisoformat(text).replace(tzinfo=UTC)


def _write_pushes(conn: sqlite3.Connection, pushes: list[_Push], stamp: str) -> None:
    """The events of every push of a group in one statement; rejects with them.

    Without rejects the one statement is the whole transaction (autocommit):
    the writer thread then makes a single call into SQLite per group, and so
    takes the GIL back once, while the event loop parses the next pushes.
    """
    events = join_arrays([events for events, _ in pushes])
    rejects = [
        (stamp, r.scope, r.reason, r.id_sms_raw, r.http_status, r.remote, r.raw)
        for _, push_rejects in pushes
        for r in push_rejects
    ]
    if not rejects:
        conn.execute(Q["insert_events"], (events, stamp))
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        if events != "[]":
            conn.execute(Q["insert_events"], (events, stamp))
        conn.executemany(Q["insert_reject"], rejects)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


class SqliteStorage:
    """:class:`~webcom_status.storage.base.Storage` on one SQLite file."""

    def __init__(self, path: Path, busy_timeout_ms: int, synchronous: str) -> None:
        self.path = path
        self._busy_timeout_ms = busy_timeout_ms
        self._synchronous = synchronous
        self._writer: GroupCommitter | None = None
        self._readers = ThreadPoolExecutor(max_workers=2, thread_name_prefix="webcom-read")
        self._local = threading.local()
        self._reader_conns: list[sqlite3.Connection] = []
        self._closed = False

    @classmethod
    async def open(
        cls, path: Path, *, busy_timeout_ms: int = 5000, synchronous: str = "FULL"
    ) -> SqliteStorage:
        """Create or upgrade the schema, then start the writer."""
        if synchronous.upper() not in SYNCHRONOUS:
            raise StorageError(f"synchronous must be one of {', '.join(SYNCHRONOUS)}")
        storage = cls(path, busy_timeout_ms, synchronous.upper())
        try:
            await asyncio.to_thread(migrate, f"sqlite:///{path}", "sqlite")
            conn = await asyncio.to_thread(_connect, path, busy_timeout_ms, storage._synchronous)
        except (sqlite3.Error, OSError) as exc:
            raise StorageError(f"cannot open SQLite database {path}: {exc}") from exc
        storage._writer = GroupCommitter(conn, _write_pushes, lock_timeout=busy_timeout_ms / 1000)
        return storage

    async def store(self, states: Sequence[State], rejects: Sequence[Reject]) -> None:
        if not states and not rejects:
            return
        assert self._writer is not None
        await self._writer.write((events_json(states), rejects))

    async def message(self, id_sms: int) -> Message | None:
        return await self.read(lambda conn: _message(conn, id_sms))

    async def rejects(self, after_id: int = 0, limit: int = 100) -> list[StoredReject]:
        rows = await self.read(
            lambda conn: conn.execute(Q["list_rejects"], (after_id, limit)).fetchall()
        )
        return [
            StoredReject(r[0], _utc_required(r[1]), r[2], r[3], r[4], r[5], r[6], r[7])
            for r in rows
        ]

    async def stats(self) -> Stats:
        row = await self.read(lambda conn: conn.execute(Q["stats"]).fetchone())
        return Stats(*row)

    async def ping(self) -> None:
        assert self._writer is not None
        await self._writer.run(lambda conn, stamp: conn.execute(Q["ping"], (stamp,)))

    async def prune(self, before: datetime, batch_size: int = 1000) -> Pruned:
        cutoff = before.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        writer = self._writer
        assert writer is not None

        async def boundary(table: str, after: int, size: int) -> int | None:
            query = Q[f"{table}_boundary"]
            row = await self.read(lambda conn: conn.execute(query, (after, size)).fetchone())
            return None if row is None else int(row[0])

        async def delete(table: str, after: int, upper: int) -> int:
            query = Q[f"prune_{table}"]
            return await writer.run(
                lambda conn, _: conn.execute(query, (after, upper, cutoff)).rowcount
            )

        async def rejects() -> int:
            query = Q["prune_rejects"]
            return await writer.run(
                lambda conn, _: conn.execute(query, (cutoff, batch_size)).rowcount
            )

        return Pruned(
            events=await prune_keyed("events", batch_size, boundary, delete),
            messages=await prune_keyed("messages", batch_size, boundary, delete),
            rejects=await prune_until_done(rejects, batch_size),
        )

    async def close(self) -> None:
        self._closed = True
        if self._writer is not None:
            await self._writer.close()
        self._readers.shutdown(wait=True)
        for conn in self._reader_conns:
            conn.close()

    async def write(self, job: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``job`` on the writer thread in a transaction of its own group; once committed."""
        assert self._writer is not None
        return await self._writer.run(lambda conn, _: job(conn))

    async def read(self, query: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``query`` on a read-only connection of a reader thread."""

        def run() -> T:
            conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
            if conn is None:
                conn = _connect(self.path, self._busy_timeout_ms, self._synchronous)
                conn.execute("PRAGMA query_only = 1")
                self._local.conn = conn
                self._reader_conns.append(conn)
            return query(conn)

        if self._closed:
            raise StorageClosed("storage is closed")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._readers, run)
        except sqlite3.Error as exc:
            raise StorageError(f"database read failed: {exc}") from exc


def _utc_required(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def _message(conn: sqlite3.Connection, id_sms: int) -> Message | None:
    row = conn.execute(Q["get_message"], (id_sms,)).fetchone()
    if row is None:
        return None
    history = tuple(
        Event(h[0], h[1], h[2], h[3], _utc(h[4]), _utc_required(h[5]))
        for h in conn.execute(Q["get_history"], (id_sms,))
    )
    return Message(
        id_sms=row[0],
        status=row[1],
        sms=row[2],
        viber=row[3],
        time_raw=row[4],
        time_utc=_utc(row[5]),
        first_seen=_utc_required(row[6]),
        updated_at=_utc_required(row[7]),
        history=history,
    )
