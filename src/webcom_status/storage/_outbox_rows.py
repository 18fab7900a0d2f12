"""The outbox's rows and parameters, the same on every engine."""

from __future__ import annotations

from typing import Any

from webcom_status.model import Flavour
from webcom_status.protocol import Outgoing
from webcom_status.sender.model import Claimed, Delivery, DeliveryState, Endpoint, EndpointSettings

_tuple = tuple.__new__


def endpoint_params(name: str, settings: EndpointSettings) -> dict[str, object]:
    """The named parameters of ``insert_endpoint`` and ``update_endpoint``."""
    return {
        "name": name,
        "url": settings.url,
        "username": settings.username,
        "password": settings.password,
        "flavour": settings.flavour.value,
        "batch_size": settings.batch_size,
        "concurrency": settings.concurrency,
        "rate_limit": settings.rate_limit,
        "connect_timeout": settings.connect_timeout,
        "read_timeout": settings.read_timeout,
    }


def endpoint_from_row(row: Any) -> Endpoint:
    """An :class:`Endpoint` from the columns of ``list_endpoints``."""
    settings = EndpointSettings(
        url=row[2],
        username=row[3],
        password=row[4],
        flavour=Flavour(row[5]),
        batch_size=row[6],
        concurrency=row[7],
        rate_limit=row[8],
        connect_timeout=row[9],
        read_timeout=row[10],
    )
    return Endpoint(row[0], row[1], settings, row[11], row[12], row[13], row[14])


def delivery_from_row(row: Any) -> Delivery:
    """A :class:`Delivery` from the columns of ``list_deliveries``."""
    status = DeliveryState(row[7])
    return Delivery(
        id=row[0],
        endpoint=row[1],
        state=Outgoing(row[2], row[3], row[4], row[5], row[6]),
        status=status,
        attempts=row[8],
        next_at=row[9] if status is DeliveryState.PENDING else None,
        enqueued_at=row[10],
        settled_at=row[11],
        last_error=row[12],
        claimed=bool(row[13]),
    )


def claimed_from_row(row: Any) -> Claimed:
    """A :class:`Claimed` from the columns ``claim`` returns.

    Built with ``tuple.__new__``, as ``_make`` does: a named tuple's own
    ``__new__`` is Python code, and a claim makes two tuples per state.
    """
    return _tuple(Claimed, (row[0], row[1], row[2], _tuple(Outgoing, row[3:8])))
