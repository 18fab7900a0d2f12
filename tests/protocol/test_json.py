"""Parsing JSON pushes: detection by content, and per-item rejects."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import orjson
import pytest

from webcom_status.model import Flavour, Reject, State
from webcom_status.protocol import detect, parse_push

MSK = ZoneInfo("Europe/Moscow")
NOON_UTC = datetime(2011, 1, 1, 9, 57, 46, tzinfo=UTC)
GOOD_1 = {"id_sms": 1, "time": "2011-01-01 12:57:46", "state": "deliver"}
GOOD_2 = {"id_sms": 2, "time": "", "state": "send"}


@pytest.mark.parametrize(
    ("body", "flavour"),
    [
        (b"[]", Flavour.JSON),
        (b"{}", Flavour.JSON),
        (b' \r\n\t[{"id_sms": 1}]', Flavour.JSON),
        (b"\xef\xbb\xbf[]", Flavour.JSON),
        (b"\xef\xbb\xbf \n{}", Flavour.JSON),
        (b"<response/>", Flavour.XML),
        (b"\xef\xbb\xbf<response/>", Flavour.XML),
        (b"\n  <?xml version='1.0'?><response/>", Flavour.XML),
        (b"", Flavour.XML),
        (b"hello", Flavour.XML),
        (b"42", Flavour.XML),
    ],
)
def test_detect_reads_the_first_significant_byte(body: bytes, flavour: Flavour) -> None:
    """``[`` or ``{`` after a BOM and whitespace means JSON; anything else is read as XML."""
    assert detect(body) is flavour


def test_documented_json_example() -> None:
    """PROTOCOL.md's JSON push: one state, Moscow time in UTC, acknowledged in JSON."""
    body = b'[{"id_sms": 3234, "time": "2011-01-01 12:57:46", "state": "deliver"}]'
    push = parse_push(body, MSK)
    assert push.flavour is Flavour.JSON
    assert push.states == (State(3234, "deliver", None, None, "2011-01-01 12:57:46", NOON_UTC),)
    assert push.acknowledge == (3234,)


@pytest.mark.parametrize("prefix", [b"", b"\xef\xbb\xbf", b"\r\n  "])
def test_json_is_detected_by_content_alone(prefix: bytes) -> None:
    """No header is consulted: a JSON body is JSON after a BOM or whitespace too."""
    push = parse_push(prefix + orjson.dumps([GOOD_1]), MSK)
    assert push.flavour is Flavour.JSON
    assert push.acknowledge == (1,)


def test_channels_and_null_time() -> None:
    """``sms``/``viber`` are read as in XML; a ``null`` time is no time."""
    body = orjson.dumps([{"id_sms": 4, "time": None, "state": "read", "sms": "x", "viber": "read"}])
    assert parse_push(body, MSK).states == (State(4, "read", "x", "read", "", None),)


@pytest.mark.parametrize("raw_id", ['"3234"', '" 3234 "', '"03234"', "3234"])
def test_numeric_string_id_is_accepted(raw_id: str) -> None:
    """An id sent as a JSON string of digits is the same id as the number."""
    body = b'[{"id_sms": %s, "state": "send"}]' % raw_id.encode()
    push = parse_push(body, MSK)
    assert push.states == (State(3234, "send"),)
    assert push.acknowledge == (3234,)


@pytest.mark.parametrize(
    ("item", "reason", "id_raw"),
    [
        pytest.param(5, "item is not a JSON object", None, id="number"),
        pytest.param("x", "item is not a JSON object", None, id="string"),
        pytest.param([GOOD_1], "item is not a JSON object", None, id="array"),
        pytest.param(None, "item is not a JSON object", None, id="null"),
        pytest.param({"state": "send"}, "id_sms is missing", None, id="no-id"),
        pytest.param({"id_sms": None, "state": "send"}, "id_sms is missing", "null", id="null-id"),
        pytest.param(
            {"id_sms": True, "state": "send"}, "id_sms is not an integer: True", "true", id="bool"
        ),
        pytest.param(
            {"id_sms": 1.5, "state": "send"}, "id_sms is not an integer: 1.5", "1.5", id="float"
        ),
        pytest.param(
            {"id_sms": 3.0, "state": "send"},
            "id_sms is not an integer: 3.0",
            "3.0",
            id="integral-float",
        ),
        pytest.param(
            {"id_sms": [1], "state": "send"}, "id_sms is not an integer: [1]", "[1]", id="list"
        ),
        pytest.param(
            {"id_sms": "abc", "state": "send"},
            "id_sms is not an integer: 'abc'",
            "abc",
            id="letters",
        ),
        pytest.param(
            {"id_sms": 0, "state": "send"}, "id_sms must be positive, got 0", "0", id="zero"
        ),
        pytest.param(
            {"id_sms": -3, "state": "send"}, "id_sms must be positive, got -3", "-3", id="negative"
        ),
        pytest.param(
            {"id_sms": 2**63, "state": "send"},
            f"id_sms is too large: {2**63}",
            str(2**63),
            id="2**63",
        ),
        pytest.param({"id_sms": 9}, "status is empty", "9", id="no-state"),
        pytest.param({"id_sms": 9, "state": " "}, "status is empty", "9", id="blank-state"),
        pytest.param(
            {"id_sms": 9, "state": 5}, "status is not a string: 5", "9", id="numeric-state"
        ),
        pytest.param(
            {"id_sms": 9, "state": "a\x01b"},
            "status holds control characters: 'a\\x01b'",
            "9",
            id="control-state",
        ),
        pytest.param(
            {"id_sms": 9, "state": "send", "sms": 5}, "sms is not a string: 5", "9", id="sms"
        ),
        pytest.param(
            {"id_sms": 9, "state": "send", "time": 5}, "time is not a string: 5", "9", id="time"
        ),
        pytest.param(
            {"id_sms": 9, "state": "send", "time": "2011-01-01"},
            "time is not 'YYYY-MM-DD HH:MM:SS': '2011-01-01'",
            "9",
            id="date-only",
        ),
    ],
)
def test_bad_item_is_rejected_alone(item: object, reason: str, id_raw: str | None) -> None:
    """One bad item becomes a reject with its reason and its JSON; the others are kept."""
    push = parse_push(orjson.dumps([GOOD_1, item, GOOD_2]), MSK)
    assert [s.id_sms for s in push.states] == [1, 2]
    assert push.rejects == (Reject("state", reason, orjson.dumps(item), id_raw),)
    assert push.acknowledge == (1, 2)


def test_huge_integer_id_is_rejected_as_not_an_integer() -> None:
    """An id beyond 64 bits reaches the parser as a float and is rejected alone."""
    push = parse_push(b'[{"id_sms": 1%s, "state": "send"}]' % (b"0" * 30), MSK)
    assert push.states == ()
    (reject,) = push.rejects
    assert reject.reason == "id_sms is not an integer: 1e+30"


@pytest.mark.parametrize("bad_id", ['"5"', "5", '" 05 "'])
def test_id_with_a_good_and_a_rejected_item_is_not_acknowledged(bad_id: str) -> None:
    """As in XML, an id is withheld when any of its items in the document is rejected."""
    body = b'[{"id_sms": 5, "state": "deliver"}, {"id_sms": %s, "state": ""}, %s]' % (
        bad_id.encode(),
        orjson.dumps(GOOD_2),
    )
    push = parse_push(body, MSK)
    assert [s.id_sms for s in push.states] == [5, 2]
    assert push.acknowledge == (2,)


def test_duplicate_ids_are_acknowledged_once_in_document_order() -> None:
    """Each id is echoed once, where it first appears."""
    body = orjson.dumps([{"id_sms": i, "state": "send"} for i in (3, 1, 3, 2, 1)])
    assert parse_push(body, MSK).acknowledge == (3, 1, 2)


def test_empty_array_is_an_empty_push() -> None:
    """``[]`` is a valid push with nothing to acknowledge."""
    push = parse_push(b"[]", MSK)
    assert (push.flavour, push.states, push.acknowledge) == (Flavour.JSON, (), ())


def test_a_rejected_item_keeps_an_integer_beyond_64_bits_exactly() -> None:
    """An id too large to store is rejected, and the kept fragment and raw id show the
    provider's digits, not a float approximation of them."""
    body = b'[{"id_sms": 12345678901234567890123, "time": "", "state": "send"}]'
    push = parse_push(body, ZoneInfo("Europe/Moscow"))
    assert push.states == ()
    (reject,) = push.rejects
    assert reject.id_sms_raw == "12345678901234567890123"
    assert b'"id_sms":12345678901234567890123' in reject.raw
