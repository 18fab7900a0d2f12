"""The outbox interface: what the sender keeps, one implementation per engine.

Every method raises :class:`~webcom_status.errors.StorageError` when the
database fails. ``enqueue`` returns only after the states are durably
committed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC
from functools import lru_cache
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
    return _key(state.status, state.time, state.sms, state.viber)


def _key(status: str, time: str, sms: str | None, viber: str | None) -> str:
    utc = parse_time(time, UTC)
    keys = [Mark(status, time, utc).text_key]
    for channel in (sms, viber):
        keys.append("" if channel is None else Mark(channel, time, utc).text_key)
    return "\x02".join(keys)


# A state's fields but its id_sms, checked, and its sort key.
_Checked = tuple[str, str, str | None, str | None, str]


@lru_cache(maxsize=4096)
def _checked(status: object, time: str, sms: object, viber: object) -> _Checked:
    # Outboxes see a handful of statuses and a time per second: most states
    # repeat the fields of one already checked, and share its sort key.
    checked_status = parse_status(status, "state")
    parse_time(time, UTC)
    checked_sms = parse_channel(sms, "sms")
    checked_viber = parse_channel(viber, "viber")
    text = time.strip()
    return (
        checked_status,
        text,
        checked_sms,
        checked_viber,
        _key(checked_status, text, checked_sms, checked_viber),
    )


def _row(state: Outgoing) -> Row:
    """``state`` checked, as a row to enqueue; or ``InvalidOutgoing`` saying why not."""
    time = state.time
    if not isinstance(time, str):
        raise InvalidOutgoing(f"id_sms {state.id_sms!r}: time is not a string: {time!r}")
    fields = (state.status, time, state.sms, state.viber)
    try:
        id_sms = parse_id(state.id_sms)
        if all(f is None or type(f) is str for f in fields):
            checked = _checked(*fields)
        else:  # not hashable, perhaps: let the checks say what is wrong
            checked = _checked.__wrapped__(*fields)
    except InvalidState as exc:
        raise InvalidOutgoing(f"id_sms {state.id_sms!r}: {exc}") from None
    return (id_sms, *checked)


def check(state: Outgoing) -> Outgoing:
    """``state`` as the provider would push it, or ``InvalidOutgoing`` saying why not."""
    return Outgoing(*_row(state)[:5])


def rows(states: Iterable[Outgoing]) -> list[Row]:
    """The rows to enqueue: every state checked, one per id_sms (the latest under the rules)."""
    best: dict[int, Row] = {}
    for state in states:
        row = _row(state)
        held = best.get(row[0])
        if held is None or row[5] > held[5]:
            best[row[0]] = row
    return list(best.values())
