"""The storage interface: a few methods, one implementation per engine."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Protocol

from webcom_status.model import Message, Reject, State, Stats, StoredReject
from webcom_status.storage._prune import Pruned


class Storage(Protocol):
    """Where the receiver keeps what it is pushed.

    Every method raises :class:`~webcom_status.errors.StorageError` when the
    database fails. ``store`` returns only after the states and rejects are
    durably committed; a caller may acknowledge them then, and not before.
    """

    async def store(self, states: Sequence[State], rejects: Sequence[Reject]) -> None:
        """Commit ``states`` (merged into the current state) and ``rejects``."""

    async def message(self, id_sms: int) -> Message | None:
        """The current state and history of one message, ``None`` if unknown."""

    async def rejects(self, after_id: int = 0, limit: int = 100) -> list[StoredReject]:
        """Rejects with an id above ``after_id``, oldest first."""

    async def stats(self) -> Stats:
        """Counts over the whole database."""

    async def prune(self, before: datetime, batch_size: int = 1000) -> Pruned:
        """Delete events, messages (by last update) and rejects older than ``before``.

        Works in batches of ``batch_size`` rows, each its own transaction.
        """

    async def ping(self) -> None:
        """Raise ``StorageError`` unless the database answers and can be written."""

    async def close(self) -> None:
        """Finish the writes already submitted, then release the database."""
