"""Group commit on an async driver: writes that wait together commit together.

Up to ``workers`` groups are in flight at once (one per pooled connection).
A write that arrives while all are busy waits with the others; the next free
worker takes every waiting write (up to ``max_weight``) into one statement.
If a shared group fails, its writes are retried one by one, so that one bad
write cannot fail the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from webcom_status.errors import StorageClosed, StorageError

P = TypeVar("P")
log = logging.getLogger(__name__)


class AsyncGroupCommitter(Generic[P]):
    """Runs ``commit(payloads)`` for groups of concurrently submitted payloads."""

    def __init__(
        self,
        commit: Callable[[list[P]], Awaitable[None]],
        weight: Callable[[P], int],
        workers: int,
        max_weight: int,
    ) -> None:
        self._commit = commit
        self._weight = weight
        self._max_weight = max_weight
        self._pending: list[tuple[P, asyncio.Future[None]]] = []
        self._ready = asyncio.Condition()
        self._closed = False
        self._tasks = [asyncio.create_task(self._work()) for _ in range(workers)]

    async def submit(self, payload: P) -> None:
        """Return once ``payload`` is committed; raise ``StorageError`` if it is not."""
        if self._closed:
            raise StorageClosed("storage is closed")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        async with self._ready:
            self._pending.append((payload, future))
            self._ready.notify()
        await future

    async def close(self) -> None:
        """Commit what is waiting, then stop the workers."""
        self._closed = True
        async with self._ready:
            self._ready.notify_all()
        await asyncio.gather(*self._tasks)

    def _take(self) -> list[tuple[P, asyncio.Future[None]]]:
        taken, total = 0, 0
        for payload, _ in self._pending:
            total += self._weight(payload)
            taken += 1
            if total >= self._max_weight:
                break
        group = self._pending[:taken]
        del self._pending[:taken]
        return group

    async def _work(self) -> None:
        while True:
            async with self._ready:
                await self._ready.wait_for(lambda: bool(self._pending) or self._closed)
                if not self._pending:
                    return
                group = self._take()
            await self._run(group)

    async def _run(self, group: list[tuple[P, asyncio.Future[None]]]) -> None:
        try:
            await self._commit([payload for payload, _ in group])
        except Exception as exc:  # noqa: BLE001 - every failure is answered, none escapes
            if len(group) == 1:
                _settle(group[0][1], exc)
                return
            for payload, future in group:
                try:
                    await self._commit([payload])
                except Exception as single:  # noqa: BLE001 - as above, per write
                    _settle(future, single)
                else:
                    _settle(future, None)
            return
        for _, future in group:
            _settle(future, None)


def _settle(future: asyncio.Future[None], exc: Exception | None) -> None:
    if future.done():
        return  # the request gave up; the write stands and is idempotent
    if exc is None:
        future.set_result(None)
        return
    if not isinstance(exc, StorageError):
        log.error("database write failed: %s", exc)
        exc = StorageError.write_failed(exc)
    future.set_exception(exc)
