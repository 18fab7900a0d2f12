"""Frozen values shared by every layer: what a push carries and what is stored."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple


class Flavour(enum.StrEnum):
    """The two document formats of the webhook; the answer uses the push's."""

    XML = "xml"
    JSON = "json"


class State(NamedTuple):
    """One status of one message, as pushed by the provider.

    A named tuple rather than a frozen dataclass: it is just as immutable, and
    the parser builds one per pushed state, where a dataclass's frozen
    ``__init__`` costs twice as much.

    ``time_raw`` is the attribute exactly as sent (``""`` for ``send``);
    ``time_utc`` is that wall-clock time read in the receiver's zone and
    converted to UTC, or ``None`` when the provider sent no time.
    ``sms`` and ``viber`` are ``None`` when the attribute is absent.
    """

    id_sms: int
    status: str
    sms: str | None = None
    viber: str | None = None
    time_raw: str = ""
    time_utc: datetime | None = None


@dataclass(frozen=True, slots=True)
class Reject:
    """Something the provider sent that could not be accepted, kept for inspection.

    ``scope`` is ``"state"`` for one bad state of an otherwise good document
    and ``"document"`` for a document refused as a whole.
    """

    scope: str
    reason: str
    raw: bytes
    id_sms_raw: str | None = None
    http_status: int | None = None
    remote: str | None = None


class Push(NamedTuple):
    """A parsed document: the good states, the rejected ones, and the answer to give.

    A named tuple, as :class:`State` is: one is built for every request.
    """

    flavour: Flavour
    states: tuple[State, ...]
    rejects: tuple[Reject, ...]
    acknowledge: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Event:
    """One distinct status event as stored, with when it was received."""

    status: str
    sms: str | None
    viber: str | None
    time_raw: str
    time_utc: datetime | None
    received_at: datetime


@dataclass(frozen=True, slots=True)
class Message:
    """The current state of one ``id_sms`` and every distinct event behind it."""

    id_sms: int
    status: str
    sms: str | None
    viber: str | None
    time_raw: str
    time_utc: datetime | None
    first_seen: datetime
    updated_at: datetime
    history: tuple[Event, ...]


@dataclass(frozen=True, slots=True)
class StoredReject:
    """A row of the rejects table."""

    id: int
    received_at: datetime
    scope: str
    reason: str
    raw: bytes
    id_sms_raw: str | None
    http_status: int | None
    remote: str | None


@dataclass(frozen=True, slots=True)
class Stats:
    """Counts over the whole database."""

    messages: int
    events: int
    unknown_status_events: int
    rejects: int
