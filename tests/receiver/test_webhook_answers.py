"""What the answer promises, and what repeated or late pushes do to the stored state.

The answer echoes each stored id once, in document order. The provider
pushes again whatever it thinks was not received, and pushes arrive in any
order: a redelivery changes nothing, and a final status is never replaced by
an earlier one, overall or on either channel.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest

from tests.receiver.support import Receiver, acked, seed, state, xml_doc

T1 = "2024-03-01 10:00:00"
T2 = "2024-03-01 10:05:00"
T3 = "2024-03-01 10:10:00"
_bases = itertools.count(3000, 100)


@pytest.fixture(scope="module")
def receiver(start_receiver: Callable[..., Receiver]) -> Receiver:
    """A receiver with default settings, shared by the module."""
    return seed(start_receiver("answers"))


@pytest.fixture
def base() -> int:
    """The first of 100 ids no other test of the module uses."""
    return next(_bases)


def pushed(receiver: Receiver, *states: str) -> list[int]:
    """Push ``states`` in one document; the ids echoed (the push must succeed)."""
    reply = receiver.push(xml_doc(*states))
    assert reply.status_code == 200, reply.text
    return acked(reply)


def current(receiver: Receiver, id_sms: int) -> dict[str, Any]:
    message = receiver.message(id_sms)
    assert message is not None, f"{id_sms} is not stored"
    return message


def test_ids_are_echoed_once_each_in_document_order(receiver: Receiver, base: int) -> None:
    """Repeated ids in one push are echoed at their first place only."""
    ids = pushed(
        receiver,
        state(base + 5, "deliver", time=T1),
        state(base + 1, "deliver", time=T1),
        state(base + 9, "send", time=""),
        state(base + 1, "read", time=T2),
        state(base + 3, "not_deliver", time=T1),
        state(base + 5, "deliver", time=T1),
    )

    assert ids == [base + 5, base + 1, base + 9, base + 3]
    assert current(receiver, base + 1)["status"] == "read"
    assert len(current(receiver, base + 1)["history"]) == 2
    assert len(current(receiver, base + 5)["history"]) == 1


def test_redelivered_push_is_acknowledged_again_and_changes_nothing(
    receiver: Receiver, base: int
) -> None:
    """The same push twice: the same answer, no new history entry, no new timestamp."""
    states = (
        state(base, "deliver", time=T1, sms="deliver"),
        state(base + 1, "read", time=T2, sms="expired", viber="read"),
        state(base + 2, "send", time="", sms="send"),
    )
    first = pushed(receiver, *states)
    messages = [current(receiver, base + n) for n in range(3)]
    counts = receiver.stats()

    again = pushed(receiver, *states)

    assert first == again == [base, base + 1, base + 2]
    assert [current(receiver, base + n) for n in range(3)] == messages
    assert receiver.stats() == counts


def test_late_deliver_after_read_keeps_read(receiver: Receiver, base: int) -> None:
    """Read, then an earlier deliver, then even a later deliver: read stays current.

    Each distinct state still enters the history; the current state and its
    ``updated_at`` are those of the read.
    """
    assert pushed(receiver, state(base, "read", time=T2, viber="read")) == [base]
    read = current(receiver, base)

    assert pushed(receiver, state(base, "deliver", time=T1, viber="deliver")) == [base]
    assert pushed(receiver, state(base, "deliver", time=T3, viber="deliver")) == [base]

    message = current(receiver, base)
    assert (message["status"], message["viber"], message["time_raw"]) == ("read", "read", T2)
    assert message["updated_at"] == read["updated_at"]
    assert len(message["history"]) == 3


def test_send_arriving_after_deliver_does_not_undo_it(receiver: Receiver, base: int) -> None:
    """``send`` (empty time) pushed again after ``deliver`` leaves ``deliver``."""
    pushed(receiver, state(base, "send", time="", sms="send"))
    pushed(receiver, state(base, "deliver", time=T1, sms="deliver"))
    pushed(receiver, state(base, "send", time="", sms="send"))

    message = current(receiver, base)
    assert (message["status"], message["sms"], message["time_raw"]) == ("deliver", "deliver", T1)
    assert [event["status"] for event in message["history"]] == ["send", "deliver"]


def test_sms_and_viber_channels_merge_independently(receiver: Receiver, base: int) -> None:
    """A final on one channel holds while the other channel moves on."""
    pushed(receiver, state(base, "deliver", time=T1, sms="not_deliver", viber="deliver"))
    pushed(receiver, state(base, "read", time=T2, sms="deliver", viber="read"))

    message = current(receiver, base)
    assert (message["status"], message["sms"], message["viber"]) == ("read", "not_deliver", "read")


def test_a_state_without_a_channel_leaves_that_channel_alone(receiver: Receiver, base: int) -> None:
    """sms-only, then viber-only, then neither (reseller copy): each channel keeps its own."""
    pushed(receiver, state(base, "deliver", time=T1, sms="deliver"))
    pushed(receiver, state(base, "read", time=T2, viber="read"))
    pushed(receiver, state(base, "read", time=T3))

    message = current(receiver, base)
    assert (message["status"], message["sms"], message["viber"]) == ("read", "deliver", "read")
    assert message["time_raw"] == T3


@pytest.mark.parametrize("order", ["forward", "backward"])
def test_final_state_wins_whatever_the_order_of_pushes(
    receiver: Receiver, base: int, order: str
) -> None:
    """send, deliver, expired pushed one by one in either order: expired, sms too."""
    states = [
        state(base, "send", time="", sms="send"),
        state(base, "deliver", time=T1, sms="deliver"),
        state(base, "expired", time=T2, sms="expired"),
    ]
    for one in states if order == "forward" else reversed(states):
        assert pushed(receiver, one) == [base]

    message = current(receiver, base)
    assert (message["status"], message["sms"], message["time_raw"]) == ("expired", "expired", T2)
    assert len(message["history"]) == 3
