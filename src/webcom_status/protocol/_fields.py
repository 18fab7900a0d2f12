"""Validation of the fields of one state, shared by both flavours."""

from __future__ import annotations

import re
from datetime import UTC, datetime, tzinfo
from functools import lru_cache

from webcom_status.model import State

MAX_ID_SMS = 2**63 - 1
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_tuple = tuple.__new__


class InvalidState(ValueError):
    """One state cannot be accepted; the message is the reason stored with it."""


def parse_id(raw: object) -> int:
    """``id_sms`` as a positive integer that fits a signed 64-bit column."""
    if type(raw) is str and 0 < len(raw) < 19 and raw.isdigit() and raw.isascii():
        value = int(raw)  # the common case: plain digits, below 10**18
        if value > 0:
            return value
    elif type(raw) is int and 0 < raw <= MAX_ID_SMS:
        return raw  # the sender's library callers pass integers
    return _parse_id_slowly(raw)


def _parse_id_slowly(raw: object) -> int:
    if raw is None:
        raise InvalidState("id_sms is missing")
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise InvalidState(f"id_sms is not an integer: {raw!r}")
    text = raw.strip() if isinstance(raw, str) else str(raw)
    digits = text.removeprefix("-")
    if not (digits.isascii() and digits.isdigit()):
        raise InvalidState(f"id_sms is not an integer: {raw!r}")
    if len(digits.lstrip("0")) > len(str(MAX_ID_SMS)):
        # int() refuses strings over 4300 digits with a plain ValueError.
        raise InvalidState(f"id_sms is out of range: {len(digits)} digits")
    value = int(text)
    if value <= 0:
        raise InvalidState(f"id_sms must be positive, got {value}")
    if value > MAX_ID_SMS:
        raise InvalidState(f"id_sms is too large: {value}")
    return value


@lru_cache(maxsize=4096)
def parse_time(raw: str, zone: tzinfo) -> datetime | None:
    """The status time in UTC; ``None`` when the provider sent none.

    The provider sends ``YYYY-MM-DD HH:MM:SS`` without an offset, in the zone
    of the account; an ISO 8601 ``T`` separator or an explicit offset is
    accepted too, and an explicit offset wins over ``zone``.
    """
    text = raw.strip()
    if not text:
        return None
    if len(text) < 19 or text[10] not in " T":
        raise InvalidState(f"time is not 'YYYY-MM-DD HH:MM:SS': {raw!r}")
    try:
        local = datetime.fromisoformat(text)
    except ValueError:
        raise InvalidState(f"time is not 'YYYY-MM-DD HH:MM:SS': {raw!r}") from None
    if local.tzinfo is None:
        local = local.replace(tzinfo=zone)
    try:
        return local.astimezone(UTC)
    except OverflowError:
        raise InvalidState(f"time is out of range: {raw!r}") from None


def parse_status(raw: object, name: str) -> str:
    """A status value, whitespace-trimmed and otherwise kept verbatim."""
    if raw is None:
        raise InvalidState(f"{name} is empty")
    if not isinstance(raw, str):
        raise InvalidState(f"{name} is not a string: {raw!r}")
    return _status_text(str(raw), name)


@lru_cache(maxsize=1024)
def _status_text(raw: str, name: str) -> str:
    # Pushes repeat a handful of values: remember the ones already checked.
    text = raw.strip()
    if not text:
        raise InvalidState(f"{name} is empty")
    if _CONTROL.search(text):
        raise InvalidState(f"{name} holds control characters: {raw!r}")
    return text


def parse_channel(raw: object, name: str) -> str | None:
    """A channel attribute (``sms``, ``viber``); absent or empty means no status."""
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    return parse_status(raw, name)


def build_state(
    id_raw: object, *, status: object, sms: object, viber: object, time: object, zone: tzinfo
) -> State:
    """One validated state, or :class:`InvalidState` saying what is wrong."""
    if time is None:
        time = ""
    if type(status) is str and type(time) is str and _text_or_none(sms) and _text_or_none(viber):
        # The usual push: text fields, checked once per distinct combination.
        # Built with tuple.__new__, as a named tuple's _make does: its own
        # __new__ is Python code.
        return _tuple(State, (parse_id(id_raw), *_checked(status, sms, viber, time, zone)))
    return build_state_slowly(id_raw, status=status, sms=sms, viber=viber, time=time, zone=zone)


def build_state_slowly(
    id_raw: object, *, status: object, sms: object, viber: object, time: object, zone: tzinfo
) -> State:
    """:func:`build_state` without its cache: any field of any type, checked each time."""
    if time is None:
        time = ""
    if not isinstance(time, str):
        raise InvalidState(f"time is not a string: {time!r}")
    return State(
        id_sms=parse_id(id_raw),
        status=parse_status(status, "status"),
        sms=parse_channel(sms, "sms"),
        viber=parse_channel(viber, "viber"),
        time_raw=time,
        time_utc=parse_time(time, zone),
    )


def _text_or_none(value: object) -> bool:
    return value is None or type(value) is str


@lru_cache(maxsize=4096)
def _checked(
    status: str, sms: str | None, viber: str | None, time: str, zone: tzinfo
) -> tuple[str, str | None, str | None, str, datetime | None]:
    """Every field of a state but its id, validated; in the order ``State`` has them."""
    return (
        parse_status(status, "status"),
        parse_channel(sms, "sms"),
        parse_channel(viber, "viber"),
        time,
        parse_time(time, zone),
    )
