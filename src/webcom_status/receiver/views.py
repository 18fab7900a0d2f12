"""The JSON shapes of stored things, shared by the HTTP API and the CLI."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from webcom_status.model import Event, Message, Stats, StoredReject


def _time(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def event_json(event: Event) -> dict[str, Any]:
    """One history entry."""
    return {
        "status": event.status,
        "sms": event.sms,
        "viber": event.viber,
        "time": _time(event.time_utc),
        "time_raw": event.time_raw,
        "received_at": _time(event.received_at),
    }


def message_json(message: Message) -> dict[str, Any]:
    """``{"id_sms", "status", "sms", "viber", "time", "updated_at", "history"}`` and more."""
    return {
        "id_sms": message.id_sms,
        "status": message.status,
        "sms": message.sms,
        "viber": message.viber,
        "time": _time(message.time_utc),
        "time_raw": message.time_raw,
        "first_seen": _time(message.first_seen),
        "updated_at": _time(message.updated_at),
        "history": [event_json(e) for e in message.history],
    }


def reject_json(reject: StoredReject) -> dict[str, Any]:
    """One reject; ``raw`` is the kept bytes read as UTF-8 (invalid bytes replaced)."""
    return {
        "id": reject.id,
        "received_at": _time(reject.received_at),
        "scope": reject.scope,
        "reason": reject.reason,
        "id_sms_raw": reject.id_sms_raw,
        "http_status": reject.http_status,
        "remote": reject.remote,
        "raw": reject.raw.decode("utf-8", "replace"),
        "raw_size": len(reject.raw),
    }


def stats_json(stats: Stats) -> dict[str, Any]:
    """The counts of :class:`~webcom_status.model.Stats`."""
    return {
        "messages": stats.messages,
        "events": stats.events,
        "unknown_status_events": stats.unknown_status_events,
        "rejects": stats.rejects,
    }
