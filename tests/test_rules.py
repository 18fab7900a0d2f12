"""The status rules: ranks, finality, which state wins, and that order never matters.

The strategies at the top describe states as the parser produces them; the
storage tests reuse them to hold SQL to the same rules.
"""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from webcom_status import rules
from webcom_status.model import State
from webcom_status.protocol import parse_time
from webcom_status.rules import Current, Mark, fold, is_final, later, merge, rank

MSK = ZoneInfo("Europe/Moscow")
CONTROL = "".join(map(chr, [*range(0x20), 0x7F]))

#: Status values: the six documented ones, often, and any text the parser keeps.
statuses = st.one_of(
    st.sampled_from(sorted(rules.KNOWN)),
    st.text(st.characters(codec="utf-8", exclude_characters=CONTROL), min_size=1, max_size=10)
    .map(str.strip)
    .filter(bool),
)
#: Raw times: none, a few shared instants written differently (ties), or any second.
raw_times = st.one_of(
    st.just(""),
    st.sampled_from(
        [
            "2011-01-01 12:57:46",
            "2011-01-01T12:57:46",
            "2011-01-01 09:57:46+00:00",
            "2011-01-01 12:57:47",
            "2012-07-01 12:00:00",
        ]
    ),
    st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2030, 12, 31)).map(
        lambda moment: moment.strftime("%Y-%m-%d %H:%M:%S")
    ),
)


ONE_ID = st.just(1)


def states(id_sms: st.SearchStrategy[int] = ONE_ID) -> st.SearchStrategy[State]:
    """States as the parser makes them: the UTC time is read from the raw one in Moscow."""
    return st.builds(
        lambda i, status, sms, viber, raw: State(i, status, sms, viber, raw, parse_time(raw, MSK)),
        id_sms,
        statuses,
        st.none() | statuses,
        st.none() | statuses,
        raw_times,
    )


def at(raw: str) -> datetime | None:
    return parse_time(raw, MSK)


def state(status: str, raw: str = "", sms: str | None = None, viber: str | None = None) -> State:
    return State(1, status, sms, viber, raw, at(raw))


def mark(value: str, raw: str = "") -> Mark:
    return Mark(value, raw, at(raw))


T1, T2, T3 = "2011-01-01 12:00:00", "2011-01-01 13:00:00", "2011-01-02 08:00:00"


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("send", 0),
        ("in_progress", 1),
        ("DELIVER", 1),
        ("доставлено", 1),
        ("partly_deliver", 2),
        ("deliver", 3),
        ("read", 4),
        ("not_deliver", 4),
        ("expired", 4),
    ],
)
def test_rank_table(status: str, expected: int) -> None:
    """send < any unknown value < partly_deliver < deliver < the three finals."""
    assert rank(status) == expected


@pytest.mark.parametrize(
    ("status", "final"),
    [
        ("read", True),
        ("not_deliver", True),
        ("expired", True),
        ("deliver", False),
        ("partly_deliver", False),
        ("send", False),
        ("something_new", False),
        ("READ", False),
    ],
)
def test_is_final_table(status: str, final: bool) -> None:
    """Only read, not_deliver and expired are final; matching is exact."""
    assert is_final(status) is final


def test_ranks_table_lists_exactly_the_known_values() -> None:
    """``RANKS`` covers the six documented values and the finals share the top rank."""
    assert set(rules.RANKS) == {
        "send",
        "deliver",
        "read",
        "not_deliver",
        "expired",
        "partly_deliver",
    }
    assert {s for s in rules.RANKS if rules.RANKS[s] == rules.FINAL_RANK} == rules.FINAL
    assert all(rules.is_known(s) for s in rules.RANKS)
    assert not rules.is_known("unknown")


def test_mark_keys_have_the_documented_shape() -> None:
    """key = (rank, UTC time text, value, raw time); text_key joins them with U+0001."""
    m = mark("deliver", "2011-01-01 12:57:46")
    assert m.key == (3, "2011-01-01 09:57:46", "deliver", "2011-01-01 12:57:46")
    assert m.text_key == "3\x012011-01-01 09:57:46\x01deliver\x012011-01-01 12:57:46"
    assert mark("send").text_key == "0\x01\x01send\x01"


@pytest.mark.parametrize(
    ("first", "second", "winner"),
    [
        pytest.param(mark("send"), mark("deliver", T1), mark("deliver", T1), id="rank-up"),
        pytest.param(mark("deliver", T2), mark("send", T3), mark("deliver", T2), id="no-rank-down"),
        pytest.param(mark("deliver", T1), mark("read", T2), mark("read", T2), id="deliver-read"),
        pytest.param(mark("read", T1), mark("deliver", T3), mark("read", T1), id="late-deliver"),
        pytest.param(
            mark("not_deliver", T1), mark("deliver", T3), mark("not_deliver", T1), id="final-stays"
        ),
        pytest.param(mark("expired", T1), mark("send"), mark("expired", T1), id="final-vs-send"),
        pytest.param(mark("expired", T1), mark("read", T2), mark("read", T2), id="later-final"),
        pytest.param(mark("read", T2), mark("expired", T1), mark("read", T2), id="earlier-final"),
        pytest.param(mark("deliver", T1), mark("deliver", T2), mark("deliver", T2), id="later"),
        pytest.param(mark("deliver", T2), mark("deliver", T1), mark("deliver", T2), id="earlier"),
        pytest.param(mark("deliver"), mark("deliver", T1), mark("deliver", T1), id="no-time"),
        pytest.param(mark("send"), mark("new_value"), mark("new_value"), id="unknown>send"),
        pytest.param(
            mark("new_value", T3), mark("partly_deliver", T1), mark("partly_deliver", T1), id="pd"
        ),
        pytest.param(mark("read", T1), mark("expired", T1), mark("read", T1), id="tie-by-value"),
        pytest.param(
            mark("deliver", "2011-01-01 12:57:46"),
            mark("deliver", "2011-01-01T12:57:46"),
            mark("deliver", "2011-01-01T12:57:46"),
            id="tie-by-raw",
        ),
        pytest.param(None, mark("send"), mark("send"), id="none-first"),
        pytest.param(mark("send"), None, mark("send"), id="none-second"),
    ],
)
def test_later_table(first: Mark | None, second: Mark | None, winner: Mark) -> None:
    """The winner of two marks, whichever comes first."""
    assert later(first, second) == winner
    assert later(second, first) == winner


def test_later_of_nothing_is_nothing() -> None:
    """Two missing marks give a missing mark."""
    assert later(None, None) is None


def test_fold_of_nothing_is_none() -> None:
    """No state, no current state."""
    assert fold([]) is None


def test_merge_into_nothing_takes_the_state() -> None:
    """The first state of a message is its current state, channels included."""
    current = merge(None, state("deliver", T1, sms="deliver", viber="read"))
    assert current == Current(mark("deliver", T1), mark("deliver", T1), mark("read", T1))


@pytest.mark.parametrize(
    ("sequence", "overall", "sms", "viber"),
    [
        pytest.param(
            [state("send", sms="send"), state("deliver", T1, sms="deliver")],
            mark("deliver", T1),
            mark("deliver", T1),
            None,
            id="send-then-deliver",
        ),
        pytest.param(
            [state("deliver", T1, viber="deliver"), state("read", T2, viber="read")],
            mark("read", T2),
            None,
            mark("read", T2),
            id="deliver-then-read",
        ),
        pytest.param(
            [state("read", T2, viber="read"), state("deliver", T3, viber="deliver")],
            mark("read", T2),
            None,
            mark("read", T2),
            id="read-then-late-deliver",
        ),
        pytest.param(
            [state("read", T1, sms="expired", viber="read"), state("deliver", T2, sms="deliver")],
            mark("read", T1),
            mark("expired", T1),
            mark("read", T1),
            id="finals-hold-on-both-channels",
        ),
        pytest.param(
            [state("deliver", T1, sms="deliver"), state("deliver", T2, viber="send")],
            mark("deliver", T2),
            mark("deliver", T1),
            mark("send", T2),
            id="channels-independent",
        ),
        pytest.param(
            [state("deliver", T1, sms="not_deliver"), state("read", T2, viber="read")],
            mark("read", T2),
            mark("not_deliver", T1),
            mark("read", T2),
            id="fallback-channel",
        ),
        pytest.param(
            [state("send"), state("queued", T1), state("send", T2)],
            mark("queued", T1),
            None,
            None,
            id="unknown-above-send",
        ),
        pytest.param(
            [state("queued", T3), state("partly_deliver", T1)],
            mark("partly_deliver", T1),
            None,
            None,
            id="partly-deliver-above-unknown",
        ),
    ],
)
def test_fold_table(
    sequence: list[State], overall: Mark, sms: Mark | None, viber: Mark | None
) -> None:
    """Whole histories: the current state overall and per channel, in every order."""
    for order in itertools.permutations(sequence):
        assert fold(order) == Current(overall, sms, viber)


@settings(deadline=None)
@given(st.lists(states(), min_size=1, max_size=8), st.data())
def test_fold_ignores_order(history: list[State], data: st.DataObject) -> None:
    """Any permutation of a message's states folds to the same current state."""
    shuffled = data.draw(st.permutations(history))
    assert fold(shuffled) == fold(history)


@settings(deadline=None)
@given(st.lists(states(), min_size=1, max_size=8))
def test_fold_is_the_maximum_of_the_marks(history: list[State]) -> None:
    """The current state is the greatest mark under ``Mark.key``, per channel too."""
    current = fold(history)
    assert current is not None
    marks = [Mark(s.status, s.time_raw, s.time_utc) for s in history]
    assert current.overall.key == max(m.key for m in marks)
    for channel, got in (("sms", current.sms), ("viber", current.viber)):
        values = [(getattr(s, channel), s) for s in history if getattr(s, channel) is not None]
        expected = max((Mark(v, s.time_raw, s.time_utc).key for v, s in values), default=None)
        assert (got.key if got else None) == expected


@settings(deadline=None)
@given(st.lists(states(), min_size=1, max_size=8))
def test_a_final_is_never_replaced_by_a_non_final(history: list[State]) -> None:
    """Once any final arrives, the current status stays final whatever comes after."""
    current = fold(history)
    assert current is not None
    if any(is_final(s.status) for s in history):
        assert is_final(current.overall.value)


time_utc = st.none() | st.datetimes(timezones=st.just(UTC))
marks = st.builds(Mark, statuses, st.one_of(raw_times, st.text(max_size=6)), time_utc) | st.builds(
    lambda raw: Mark("deliver", raw, at(raw)), raw_times
)


@given(marks, marks)
def test_text_key_orders_like_key(a: Mark, b: Mark) -> None:
    """The one-string key the engines compare sorts exactly as the tuple key."""
    assert (a.key < b.key) == (a.text_key < b.text_key)
    assert (a.key == b.key) == (a.text_key == b.text_key)
