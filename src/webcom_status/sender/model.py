"""Frozen values of the sender: endpoints, outbox rows, attempts."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import NamedTuple

from webcom_status.model import Flavour
from webcom_status.protocol import Outgoing


class DeliveryState(enum.StrEnum):
    """Where a state to push stands."""

    PENDING = "pending"
    DELIVERED = "delivered"
    DEAD = "dead"


@dataclass(frozen=True, slots=True)
class EndpointSettings:
    """A client's URL and how to push to it; everything but ``url`` has a default."""

    url: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    flavour: Flavour = Flavour.XML
    batch_size: int = 100
    concurrency: int = 1
    rate_limit: float | None = None  # documents per second, per worker; None: no limit
    connect_timeout: float = 5.0
    read_timeout: float = 15.0


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An endpoint as stored, with its health; times are seconds since the epoch."""

    id: int
    name: str
    settings: EndpointSettings
    created_at: float
    failing_since: float | None = None
    paused_at: float | None = None
    pause_reason: str | None = None


class Claimed(NamedTuple):
    """One outbox row taken by a worker for one document, under a lease."""

    id: int
    version: int
    attempts: int
    state: Outgoing


@dataclass(frozen=True, slots=True)
class Failure:
    """A claimed row whose push failed: its new attempt count and what comes next.

    ``delay`` is the time to wait before the next attempt; ``None`` makes the
    row a dead letter. ``version`` is the one claimed: if a newer state
    replaced the row meanwhile, the failure does not count against it.
    """

    id: int
    attempts: int
    error: str
    delay: float | None
    version: int = 1


@dataclass(frozen=True, slots=True)
class Settlement:
    """What one document's push came to, for the outbox to record in one transaction.

    ``delivered`` are ``(id, version)`` of the acknowledged rows: a row whose
    version changed while it was in flight (a newer state replaced it) stays
    pending. ``endpoint_ok`` is whether the endpoint answered at all (a
    readable 2xx answer); ``pause_after`` pauses an endpoint that has failed
    for that many seconds without a break.
    """

    endpoint_id: int
    owner: str
    delivered: tuple[tuple[int, int], ...]
    failures: tuple[Failure, ...]
    endpoint_ok: bool
    error: str | None = None
    pause_after: float | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One outbox row as listed by ``deliveries``."""

    id: int
    endpoint: str
    state: Outgoing
    status: DeliveryState
    attempts: int
    next_at: float | None
    enqueued_at: float
    settled_at: float | None
    last_error: str | None
    claimed: bool


@dataclass(frozen=True, slots=True)
class Attempt:
    """One failed attempt of a delivery."""

    attempt: int
    at: float
    error: str


@dataclass(frozen=True, slots=True)
class Tally:
    """How many rows an endpoint has in each delivery state."""

    endpoint: str
    pending: int
    delivered: int
    dead: int
