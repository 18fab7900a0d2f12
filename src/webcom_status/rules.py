"""The status rules: which state of a message wins.

The current state of a message is the maximum of every state ever received
for it under one total order, so it never depends on the order in which
pushes arrive:

1. rank: ``send`` < any unknown value < ``partly_deliver`` < ``deliver`` <
   the finals ``read``, ``not_deliver``, ``expired``;
2. then the later status time (no time counts as the earliest);
3. then the status value, then the raw time string, compared as code points,
   so that equal-looking states still have one winner.

A final therefore never gives way to a non-final. The ``sms`` and ``viber``
channels follow the same rules, each on its own. The storage engines apply
the same order in SQL; the tests hold them to these functions.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from webcom_status.model import State

SEND = "send"
DELIVER = "deliver"
READ = "read"
NOT_DELIVER = "not_deliver"
EXPIRED = "expired"
PARTLY_DELIVER = "partly_deliver"

UNKNOWN_RANK = 1
RANKS: dict[str, int] = {
    SEND: 0,
    PARTLY_DELIVER: 2,
    DELIVER: 3,
    READ: 4,
    NOT_DELIVER: 4,
    EXPIRED: 4,
}
KNOWN = frozenset(RANKS)
FINAL = frozenset({READ, NOT_DELIVER, EXPIRED})
FINAL_RANK = RANKS[READ]


def rank(status: str) -> int:
    """The rank of a status value; every value the provider may add ranks 1."""
    return RANKS.get(status, UNKNOWN_RANK)


def is_final(status: str) -> bool:
    """Whether no later status can replace this one."""
    return status in FINAL


def is_known(status: str) -> bool:
    """Whether the value is one of the six the protocol documents."""
    return status in RANKS


@lru_cache(maxsize=4096)
def time_key(time_utc: datetime | None) -> str:
    """The UTC time as the sortable text both engines compare (``""`` when absent)."""
    if time_utc is None:
        return ""
    return time_utc.isoformat(sep=" ", timespec="seconds")[:19]


@dataclass(frozen=True, slots=True)
class Mark:
    """A status value with the time it was reached: one side of a comparison."""

    value: str
    time_raw: str
    time_utc: datetime | None

    @property
    def key(self) -> tuple[int, str, str, str]:
        """The total order of the module docstring."""
        return (rank(self.value), time_key(self.time_utc), self.value, self.time_raw)

    @property
    def text_key(self) -> str:
        """:attr:`key` as one string with the same order, as the engines store it.

        The fields are joined by U+0001, which sorts below every character a
        status value may hold (the parser refuses control characters).
        """
        rank_, time, value, raw = self.key
        return f"{rank_}\x01{time}\x01{value}\x01{raw}"


@dataclass(frozen=True, slots=True)
class Current:
    """The winning state of a message, overall and per channel."""

    overall: Mark
    sms: Mark | None
    viber: Mark | None


def later(a: Mark | None, b: Mark | None) -> Mark | None:
    """The winner of two marks; a missing mark always loses."""
    if a is None:
        return b
    if b is None:
        return a
    return b if b.key > a.key else a


def _channel(value: str | None, state: State) -> Mark | None:
    return None if value is None else Mark(value, state.time_raw, state.time_utc)


def merge(current: Current | None, state: State) -> Current:
    """The current state after one more state is received."""
    overall = Mark(state.status, state.time_raw, state.time_utc)
    sms = _channel(state.sms, state)
    viber = _channel(state.viber, state)
    if current is None:
        return Current(overall, sms, viber)
    winner = later(current.overall, overall)
    assert winner is not None
    return Current(winner, later(current.sms, sms), later(current.viber, viber))


def fold(states: Iterable[State]) -> Current | None:
    """The current state after all of ``states``, in any order."""
    current: Current | None = None
    for state in states:
        current = merge(current, state)
    return current
