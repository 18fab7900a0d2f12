"""Deleting old statuses in the background, when the service is asked to."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

from webcom_status.config import ReceiverSettings
from webcom_status.errors import StorageError
from webcom_status.storage import Storage

log = logging.getLogger(__name__)


async def prune_once(storage: Storage, settings: ReceiverSettings) -> None:
    """One prune of everything older than ``--prune-older-than``; failures are logged."""
    assert settings.prune_older_than is not None
    before = datetime.now(UTC) - settings.prune_older_than
    try:
        pruned = await storage.prune(before)
    except StorageError as exc:
        log.warning("pruning failed, will try again: %s", exc)
        return
    log.info(
        "pruned %d events, %d messages, %d rejects older than %s",
        pruned.events,
        pruned.messages,
        pruned.rejects,
        before.isoformat(),
    )


async def prune_periodically(storage: Storage, settings: ReceiverSettings) -> None:
    """Prune at start, then every ``--prune-interval``, until cancelled."""
    while True:
        await prune_once(storage, settings)
        await asyncio.sleep(settings.prune_interval.total_seconds())
