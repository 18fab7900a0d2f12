"""Retention: delete what is older than a cut-off, in bounded batches.

Each batch is its own short transaction, so pushes keep being stored while
a large prune runs. Events and messages are walked by ``id_sms`` (keyset
pagination on the primary key, no index on time needed); rejects by their id.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

MAX_ID = 2**63 - 1

# (table, after id_sms, batch size) -> the id_sms closing the batch, or None
Boundary = Callable[[str, int, int], Awaitable[int | None]]
# (table, after id_sms, up to id_sms) -> rows deleted
DeleteRange = Callable[[str, int, int], Awaitable[int]]


@dataclass(frozen=True, slots=True)
class Pruned:
    """How many rows a prune deleted."""

    events: int
    messages: int
    rejects: int


async def prune_keyed(table: str, batch_size: int, boundary: Boundary, delete: DeleteRange) -> int:
    """Delete old rows of ``table`` batch by batch along ``id_sms``."""
    deleted, after = 0, 0
    while True:
        upper = await boundary(table, after, batch_size)
        deleted += await delete(table, after, MAX_ID if upper is None else upper)
        if upper is None:
            return deleted
        after = upper


async def prune_until_done(delete_batch: Callable[[], Awaitable[int]], batch_size: int) -> int:
    """Repeat ``delete_batch`` until a batch deletes fewer rows than it may."""
    deleted = 0
    while True:
        count = await delete_batch()
        deleted += count
        if count < batch_size:
            return deleted
