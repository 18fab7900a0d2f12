"""Per-state validation over HTTP: a bad state is rejected alone, the good ones are stored.

A document that parses is answered 200 even when some of its states are bad:
only the good ids are echoed, each bad state is kept in ``rejects`` with its
raw fragment and the reason, and an unknown status value is stored verbatim.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from tests.receiver.support import (
    JSON_TYPE,
    TIME,
    XML_TYPE,
    Receiver,
    acked,
    assert_baseline_unharmed,
    before,
    seed,
    state,
    xml_doc,
)

_bases = itertools.count(1000, 100)

# (the bad fragment, with {id} for an id that is itself valid; the reason; id_sms_raw)
BAD_STATES = [
    pytest.param(f'<state time="{TIME}">deliver</state>', "id_sms is missing", None, id="no-id"),
    pytest.param(
        f'<state id_sms="" time="{TIME}">deliver</state>', "not an integer", "", id="empty-id"
    ),
    pytest.param(
        f'<state id_sms="abc" time="{TIME}">deliver</state>', "not an integer", "abc", id="text-id"
    ),
    pytest.param(
        f'<state id_sms="1.5" time="{TIME}">deliver</state>', "not an integer", "1.5", id="float-id"
    ),
    pytest.param(
        f'<state id_sms="0" time="{TIME}">deliver</state>', "must be positive", "0", id="zero-id"
    ),
    pytest.param(
        f'<state id_sms="-5" time="{TIME}">deliver</state>', "must be positive", "-5", id="neg-id"
    ),
    pytest.param(
        f'<state id_sms="9223372036854775808" time="{TIME}">deliver</state>',
        "too large",
        "9223372036854775808",
        id="huge-id",
    ),
    pytest.param(
        '<state id_sms="{id}" time="yesterday">deliver</state>',
        "time is not",
        "{id}",
        id="text-time",
    ),
    pytest.param(
        '<state id_sms="{id}" time="2011-02-30 12:00:00">deliver</state>',
        "time is not",
        "{id}",
        id="impossible-date",
    ),
    pytest.param(
        '<state id_sms="{id}" time="01.01.2011 12:57:46">deliver</state>',
        "time is not",
        "{id}",
        id="dotted-date",
    ),
    pytest.param(
        f'<state id_sms="{{id}}" time="{TIME}"/>', "status is empty", "{id}", id="no-status"
    ),
    pytest.param(
        f'<state id_sms="{{id}}" time="{TIME}"><b>deliver</b></state>',
        "child elements",
        "{id}",
        id="child-element",
    ),
    pytest.param(
        f'<status id_sms="{{id}}" time="{TIME}">deliver</status>',
        "unexpected element <status>",
        None,
        id="other-element",
    ),
]


@pytest.fixture(scope="module")
def receiver(start_receiver: Callable[..., Receiver]) -> Receiver:
    """One receiver for the module; every test uses ids of its own."""
    return seed(start_receiver("states"))


@pytest.fixture
def base() -> int:
    """The first of 100 ids no other test of the module uses."""
    return next(_bases)


@pytest.mark.parametrize(("fragment", "reason", "id_raw"), BAD_STATES)
def test_one_bad_state_is_rejected_and_its_neighbours_acknowledged(
    receiver: Receiver, base: int, fragment: str, reason: str, id_raw: str | None
) -> None:
    """A bad state between two good ones: 200, only the good ids, the bad one kept raw."""
    bad = fragment.format(id=base + 2)
    then = before(receiver)
    stored_before = receiver.metric('webcom_status_states_total{outcome="stored"}')
    rejected_before = receiver.metric('webcom_status_states_total{outcome="rejected"}')

    reply = receiver.push(xml_doc(state(base), bad, state(base + 1, "read", viber="read")))

    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == XML_TYPE
    assert acked(reply) == [base, base + 1]
    assert receiver.message(base + 2) is None
    first, second = receiver.message(base), receiver.message(base + 1)
    assert first is not None
    assert second is not None
    assert (first["status"], first["time_raw"]) == ("deliver", TIME)
    assert (second["status"], second["viber"]) == ("read", "read")
    [reject] = receiver.rejects(then.last_reject)
    assert reject["scope"] == "state"
    assert reason in reject["reason"]
    assert reject["id_sms_raw"] == (None if id_raw is None else id_raw.format(id=base + 2))
    assert reject["http_status"] is None
    assert reject["remote"].startswith("127.0.0.1:")
    assert receiver.raw_reject(reject["id"]) == bad.encode()
    stats = receiver.stats()
    assert stats["messages"] == then.stats["messages"] + 2
    assert stats["events"] == then.stats["events"] + 2
    assert stats["rejects"] == then.stats["rejects"] + 1
    assert receiver.metric('webcom_status_states_total{outcome="stored"}') == stored_before + 2
    assert receiver.metric('webcom_status_states_total{outcome="rejected"}') == (
        rejected_before + 1
    )
    assert_baseline_unharmed(receiver, then)


def test_mixed_document_echoes_the_good_ids_in_document_order(
    receiver: Receiver, base: int
) -> None:
    """Good and bad states interleaved: the good ids echoed in order, each bad one kept."""
    bad = [
        f'<state time="{TIME}">deliver</state>',
        f'<state id_sms="x{base}" time="{TIME}">deliver</state>',
        f'<state id_sms="0" time="{TIME}">deliver</state>',
        f'<state id_sms="-{base}" time="{TIME}">deliver</state>',
        f'<state id_sms="{base + 4}" time="2011-01-01 25:00:00">read</state>',
    ]
    document = xml_doc(
        state(base + 3, "deliver", sms="deliver"),
        bad[0],
        state(base + 1, "expired", sms="expired", viber="expired"),
        bad[1],
        bad[2],
        state(base + 2, "send", time="", sms="send"),
        bad[3],
        bad[4],
        state(base, "read", sms="deliver", viber="read"),
    )
    then = before(receiver)

    reply = receiver.push(document)

    assert reply.status_code == 200, reply.text
    assert acked(reply) == [base + 3, base + 1, base + 2, base]
    sent = receiver.message(base + 2)
    assert sent is not None
    assert (sent["status"], sent["sms"], sent["time"], sent["time_raw"]) == (
        "send",
        "send",
        None,
        "",
    )
    read = receiver.message(base)
    assert read is not None
    assert (read["status"], read["sms"], read["viber"]) == ("read", "deliver", "read")
    assert receiver.message(base + 4) is None
    rejects = receiver.rejects(then.last_reject)
    assert [receiver.raw_reject(r["id"]) for r in rejects] == [b.encode() for b in bad]
    assert [r["id_sms_raw"] for r in rejects] == [
        None,
        f"x{base}",
        "0",
        f"-{base}",
        str(base + 4),
    ]
    assert_baseline_unharmed(receiver, then)


def test_id_with_one_bad_state_is_withheld_though_another_state_of_it_is_good(
    receiver: Receiver, base: int
) -> None:
    """An id is echoed only if none of its states was rejected: the provider pushes it again."""
    then = before(receiver)
    bad = f'<state id_sms="{base}" time="not a time">read</state>'

    reply = receiver.push(xml_doc(state(base), bad, state(base + 1)))

    assert reply.status_code == 200, reply.text
    assert acked(reply) == [base + 1]
    [reject] = receiver.rejects(then.last_reject)
    assert (reject["id_sms_raw"], receiver.raw_reject(reject["id"])) == (str(base), bad.encode())
    assert_baseline_unharmed(receiver, then)


def test_json_items_are_validated_one_by_one(receiver: Receiver, base: int) -> None:
    """The JSON flavour: bad items rejected with their JSON text, good ids echoed in JSON."""
    items: list[Any] = [
        {"id_sms": base, "time": TIME, "state": "deliver", "sms": "deliver"},
        {"time": TIME, "state": "deliver"},
        {"id_sms": "abc", "time": TIME, "state": "deliver"},
        {"id_sms": 0, "time": TIME, "state": "deliver"},
        {"id_sms": -3, "time": TIME, "state": "deliver"},
        {"id_sms": base + 1, "time": "yesterday", "state": "read"},
        {"id_sms": base + 2, "time": "", "state": "send"},
        5,
    ]
    bad = [items[i] for i in (1, 2, 3, 4, 5, 7)]
    then = before(receiver)

    reply = receiver.push(orjson.dumps(items))

    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == JSON_TYPE
    assert reply.json() == [{"id_sms": base}, {"id_sms": base + 2}]
    assert receiver.message(base + 1) is None
    rejects = receiver.rejects(then.last_reject)
    assert [receiver.raw_reject(r["id"]) for r in rejects] == [orjson.dumps(b) for b in bad]
    assert [r["id_sms_raw"] for r in rejects] == [None, "abc", "0", "-3", str(base + 1), None]
    assert [r["reason"] for r in rejects] == [
        "id_sms is missing",
        "id_sms is not an integer: 'abc'",
        "id_sms must be positive, got 0",
        "id_sms must be positive, got -3",
        "time is not 'YYYY-MM-DD HH:MM:SS': 'yesterday'",
        "item is not a JSON object",
    ]
    assert_baseline_unharmed(receiver, then)


def test_nul_in_a_rejected_json_id_does_not_fail_the_document(
    receiver: Receiver, base: int, engine: str
) -> None:
    """A JSON string id holding NUL is rejected alone; its neighbour is stored and echoed.

    The raw item is kept exactly. PostgreSQL ``text`` cannot hold NUL, so
    there the reject's ``id_sms_raw`` shows it as U+FFFD; SQLite keeps it.
    """
    bad = {"id_sms": f"{base}\u00001", "time": TIME, "state": "deliver"}
    then = before(receiver)

    reply = receiver.push(orjson.dumps([bad, {"id_sms": base, "time": TIME, "state": "read"}]))

    assert reply.status_code == 200, reply.text
    assert reply.json() == [{"id_sms": base}]
    [reject] = receiver.rejects(then.last_reject)
    assert receiver.raw_reject(reject["id"]) == orjson.dumps(bad)
    kept = f"{base}\u00001" if engine == "sqlite" else f"{base}\ufffd1"
    assert reject["id_sms_raw"] == kept
    assert_baseline_unharmed(receiver, then)


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        pytest.param("queued", "queued", id="new-word"),
        pytest.param("DELIVER", "DELIVER", id="other-case"),
        pytest.param("  delivered_to_handset \n", "delivered_to_handset", id="padded"),
    ],
)
def test_unknown_status_is_stored_verbatim_acknowledged_and_counted(
    receiver: Receiver, base: int, sent: str, kept: str
) -> None:
    """A value the protocol does not list is kept as sent (only trimmed), echoed, counted."""
    then = before(receiver)
    unknown_before = receiver.metric("webcom_status_unknown_status_states_total")

    reply = receiver.push(xml_doc(state(base, sent, viber="seen_by_bot"), state(base + 1)))

    assert reply.status_code == 200, reply.text
    assert acked(reply) == [base, base + 1]
    message = receiver.message(base)
    assert message is not None
    assert (message["status"], message["viber"]) == (kept, "seen_by_bot")
    assert [event["status"] for event in message["history"]] == [kept]
    stats = receiver.stats()
    assert stats["unknown_status_events"] == then.stats["unknown_status_events"] + 1
    assert stats["rejects"] == then.stats["rejects"]
    assert receiver.metric("webcom_status_unknown_status_states_total") == unknown_before + 1
    assert_baseline_unharmed(receiver, then)
