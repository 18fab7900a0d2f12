"""The outbox interface: what the sender keeps, one implementation per engine.

Every method raises :class:`~webcom_status.errors.StorageError` when the
database fails. ``enqueue`` returns only after the states are durably
committed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC
from typing import Protocol

from webcom_status.errors import InvalidOutgoing
from webcom_status.protocol import Outgoing, parse_time
from webcom_status.protocol._fields import InvalidState, parse_channel, parse_id, parse_status
from webcom_status.rules import Mark
from webcom_status.sender.model import (
    Attempt,
    Claimed,
    Delivery,
    DeliveryState,
    Endpoint,
    EndpointSettings,
    Settlement,
    Tally,
)

# A row to enqueue: id_sms, status, time, sms, viber, sort key.
Row = tuple[int, str, str, str | None, str | None, str]


class Outbox(Protocol):
    """Endpoints, the states to push to them, and what became of each push."""

    async def add_endpoint(self, name: str, settings: EndpointSettings) -> Endpoint:
        """Add an endpoint; ``ConfigError`` if the name is taken."""

    async def update_endpoint(self, name: str, settings: EndpointSettings) -> Endpoint:
        """Replace an endpoint's settings; ``UnknownEndpoint`` if there is none."""

    async def set_paused(self, name: str, reason: str | None) -> Endpoint:
        """Pause an endpoint (``reason`` given) or resume it (``None``)."""

    async def remove_endpoint(self, name: str) -> int:
        """Remove an endpoint and its outbox rows; how many rows went with it."""

    async def endpoints(self) -> list[Endpoint]:
        """Every endpoint, by name."""

    async def endpoint(self, name: str) -> Endpoint:
        """One endpoint; ``UnknownEndpoint`` if there is none."""

    async def enqueue(self, endpoint: str, states: Sequence[Outgoing]) -> int:
        """Commit ``states`` for ``endpoint``; the number of rows added or replaced.

        A state for an id_sms that is still pending replaces the pending one
        when it is later under the rules of ``rules.py``; its attempts stay.
        """

    async def due(self) -> dict[int, float]:
        """For each endpoint that is not paused and has pending rows: the earliest ``next_at``."""

    async def claim(self, endpoint_id: int, owner: str, limit: int, lease: float) -> list[Claimed]:
        """Take up to ``limit`` due rows of one endpoint for ``lease`` seconds, oldest first.

        A row taken by another worker is skipped until its lease ends.
        """

    async def settle(self, settlement: Settlement) -> bool:
        """Record one document's outcome; ``True`` if the endpoint got paused by it.

        Only rows still leased by ``settlement.owner`` are changed.
        """

    async def deliveries(
        self,
        endpoint: str | None = None,
        state: DeliveryState | None = None,
        after_id: int = 0,
        limit: int = 100,
    ) -> list[Delivery]:
        """Outbox rows with an id above ``after_id``, oldest first."""

    async def attempts(self, delivery_id: int) -> list[Attempt]:
        """The failed attempts of one row, in order."""

    async def redeliver(
        self,
        *,
        delivery_id: int | None = None,
        endpoint: str | None = None,
        since: float | None = None,
    ) -> int:
        """Put dead letters back in the queue with fresh attempts; how many.

        All dead letters when no filter is given; those of one row, of one
        endpoint, or dead since ``since`` (seconds since the epoch) otherwise.
        A dead letter whose id_sms has a pending row already is merged into it.
        """

    async def tally(self) -> list[Tally]:
        """Rows per endpoint and delivery state."""

    async def close(self) -> None:
        """Finish the writes already submitted, then release the database."""


def sort_key(state: Outgoing) -> str:
    """The order of ``rules.py`` as text, the time read as UTC; then the channels'.

    Every state of one outbox comes from one provider account, so its times
    share one zone and compare the same in any. Two states of one overall
    status and time are told apart by their ``sms``, then their ``viber``
    status under the same order, so that a state that changes a channel only
    is not taken for a repeat.
    """
    utc = parse_time(state.time, UTC)
    keys = [Mark(state.status, state.time, utc).text_key]
    for channel in (state.sms, state.viber):
        keys.append("" if channel is None else Mark(channel, state.time, utc).text_key)
    return "\x02".join(keys)


def check(state: Outgoing) -> Outgoing:
    """``state`` as the provider would push it, or ``InvalidOutgoing`` saying why not."""
    if not isinstance(state.time, str):
        raise InvalidOutgoing(f"id_sms {state.id_sms!r}: time is not a string: {state.time!r}")
    try:
        id_sms = parse_id(state.id_sms)
        status = parse_status(state.status, "state")
        parse_time(state.time, UTC)
        sms = parse_channel(state.sms, "sms")
        viber = parse_channel(state.viber, "viber")
    except InvalidState as exc:
        raise InvalidOutgoing(f"id_sms {state.id_sms!r}: {exc}") from None
    return Outgoing(id_sms, status, state.time.strip(), sms, viber)


def rows(states: Iterable[Outgoing]) -> list[Row]:
    """The rows to enqueue: every state checked, one per id_sms (the latest under the rules)."""
    best: dict[int, Row] = {}
    for given in states:
        state = check(given)
        row = (state.id_sms, state.status, state.time, state.sms, state.viber, sort_key(state))
        held = best.get(state.id_sms)
        if held is None or row[5] > held[5]:
            best[state.id_sms] = row
    return list(best.values())
