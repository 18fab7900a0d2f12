"""Parsing XML pushes: the documented shape, its variants, and per-state rejects."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from webcom_status.model import Flavour, Reject, State
from webcom_status.protocol import parse_push

MSK = ZoneInfo("Europe/Moscow")
DECLARATION = b'<?xml version="1.0" encoding="utf-8" ?>\n'
EXAMPLE = (
    DECLARATION
    + b"""<response>
  <state id_sms="3234" time="2011-01-01 12:57:46" sms="deliver">deliver</state>
  <state id_sms="3235" time="2011-01-01 12:57:46" sms="expired" viber="read">read</state>
  <state id_sms="3236" time="2011-01-01 12:57:46" viber="deliver">deliver</state>
  <state id_sms="3237" time="" sms="send">send</state>
</response>"""
)
NOON_UTC = datetime(2011, 1, 1, 9, 57, 46, tzinfo=UTC)


def wrap(*states: bytes, root: bytes = b"response") -> bytes:
    """A document of ``states`` under ``root``."""
    return b"<%s>%s</%s>" % (root, b"".join(states), root)


def test_documented_example_parses_to_four_states_all_acknowledged() -> None:
    """PROTOCOL.md's example: four states, Moscow times in UTC, every id echoed in order."""
    push = parse_push(EXAMPLE, MSK)
    assert push.flavour is Flavour.XML
    assert push.states == (
        State(3234, "deliver", "deliver", None, "2011-01-01 12:57:46", NOON_UTC),
        State(3235, "read", "expired", "read", "2011-01-01 12:57:46", NOON_UTC),
        State(3236, "deliver", None, "deliver", "2011-01-01 12:57:46", NOON_UTC),
        State(3237, "send", "send", None, "", None),
    )
    assert push.rejects == ()
    assert push.acknowledge == (3234, 3235, 3236, 3237)


@pytest.mark.parametrize("root", [b"response", b"request"])
def test_both_roots_are_accepted(root: bytes) -> None:
    """Webcom's ``<response>`` and the reseller copy's ``<request>`` are the same document."""
    push = parse_push(wrap(b'<state id_sms="7" time="">send</state>', root=root), MSK)
    assert push.states == (State(7, "send"),)
    assert push.acknowledge == (7,)


def test_namespaced_root_is_read_by_local_name() -> None:
    """A namespace on the root and states does not hide them."""
    body = b'<w:response xmlns:w="urn:x"><w:state id_sms="7">send</w:state></w:response>'
    assert parse_push(body, MSK).states == (State(7, "send"),)


@pytest.mark.parametrize(
    ("attributes", "sms", "viber"),
    [
        pytest.param(b' sms="deliver"', "deliver", None, id="sms-only"),
        pytest.param(b' viber="read"', None, "read", id="viber-only"),
        pytest.param(b' sms="expired" viber="read"', "expired", "read", id="both"),
        pytest.param(b"", None, None, id="neither"),
        pytest.param(b' sms="" viber=" "', None, None, id="empty-means-absent"),
        pytest.param(b' sms=" deliver "', "deliver", None, id="trimmed"),
    ],
)
def test_channel_attributes(attributes: bytes, sms: str | None, viber: str | None) -> None:
    """``sms`` and ``viber`` are each optional; an empty one is no status."""
    body = wrap(b'<state id_sms="1" time="2011-01-01 12:57:46"%s>read</state>' % attributes)
    (state,) = parse_push(body, MSK).states
    assert (state.sms, state.viber) == (sms, viber)


def test_send_with_empty_time_has_no_utc_time() -> None:
    """``time=""`` (the ``send`` case) keeps ``""`` raw and ``None`` as time."""
    (state,) = parse_push(wrap(b'<state id_sms="1" time="" sms="send">send</state>'), MSK).states
    assert (state.time_raw, state.time_utc) == ("", None)


def test_missing_time_attribute_is_like_empty_time() -> None:
    """No ``time`` attribute at all reads as no time."""
    (state,) = parse_push(wrap(b'<state id_sms="1">send</state>'), MSK).states
    assert (state.time_raw, state.time_utc) == ("", None)


def test_time_raw_is_kept_verbatim() -> None:
    """The raw time string travels unchanged beside its UTC reading."""
    body = wrap(b'<state id_sms="1" time=" 2011-01-01 12:57:46">deliver</state>')
    (state,) = parse_push(body, MSK).states
    assert (state.time_raw, state.time_utc) == (" 2011-01-01 12:57:46", NOON_UTC)


@pytest.mark.parametrize(
    "status",
    ["in_progress", "DELIVER", "Deliver", "undeliverable (code 7)", "доставлено", "✓✓"],
)
def test_unknown_status_is_kept_verbatim(status: str) -> None:
    """A value the protocol does not list is stored as sent, never dropped or mapped."""
    body = wrap(b'<state id_sms="1" sms="%s">%s</state>' % (status.encode(), status.encode()))
    push = parse_push(body, MSK)
    assert push.states == (State(1, status, sms=status),)
    assert push.acknowledge == (1,)


STATE_1251 = '<response><state id_sms="5" sms="доставлено">доставлено</state></response>'


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(EXAMPLE, id="utf8-declared"),
        pytest.param(b"\xef\xbb\xbf" + EXAMPLE, id="utf8-bom-declared"),
        pytest.param(EXAMPLE.removeprefix(DECLARATION), id="utf8-undeclared"),
        pytest.param(b"\xef\xbb\xbf" + EXAMPLE.removeprefix(DECLARATION), id="utf8-bom-only"),
        pytest.param(
            EXAMPLE.decode().replace("utf-8", "utf-16").encode("utf-16"), id="utf16-bom-declared"
        ),
        pytest.param(
            EXAMPLE.decode().replace("utf-8", "UTF-16BE").encode("utf-16-be"), id="utf16be"
        ),
        pytest.param(
            EXAMPLE.decode().replace("utf-8", "windows-1251").encode("cp1251"), id="cp1251"
        ),
        pytest.param(b"\n\n  " + EXAMPLE.removeprefix(DECLARATION), id="leading-whitespace"),
    ],
)
def test_encodings_give_the_same_states(body: bytes) -> None:
    """The document's bytes may be in any encoding it declares or marks with a BOM."""
    assert parse_push(body, MSK).states == parse_push(EXAMPLE, MSK).states


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            ('<?xml version="1.0" encoding="windows-1251"?>' + STATE_1251).encode("cp1251"),
            id="windows-1251",
        ),
        pytest.param(STATE_1251.encode(), id="utf8-undeclared"),
        pytest.param(b"\xef\xbb\xbf" + STATE_1251.encode(), id="utf8-bom"),
        pytest.param(
            ('<?xml version="1.0" encoding="UTF-16"?>' + STATE_1251).encode("utf-16"),
            id="utf16",
        ),
    ],
)
def test_cyrillic_unknown_status_survives_declared_encoding(body: bytes) -> None:
    """A Cyrillic value in windows-1251, UTF-8 or UTF-16 is decoded and kept as is."""
    push = parse_push(body, MSK)
    assert push.states == (State(5, "доставлено", sms="доставлено"),)
    assert push.acknowledge == (5,)


GOOD_1 = b'<state id_sms="1" time="2011-01-01 12:57:46">deliver</state>'
GOOD_2 = b'<state id_sms="2" time="">send</state>'


@pytest.mark.parametrize(
    ("fragment", "reason", "id_raw"),
    [
        pytest.param(b'<state time="">deliver</state>', "id_sms is missing", None, id="missing"),
        pytest.param(
            b'<state id_sms="">deliver</state>', "id_sms is not an integer: ''", "", id="empty"
        ),
        pytest.param(
            b'<state id_sms="abc">deliver</state>',
            "id_sms is not an integer: 'abc'",
            "abc",
            id="letters",
        ),
        pytest.param(
            b'<state id_sms="0">deliver</state>', "id_sms must be positive, got 0", "0", id="zero"
        ),
        pytest.param(
            b'<state id_sms="-5">deliver</state>',
            "id_sms must be positive, got -5",
            "-5",
            id="negative",
        ),
        pytest.param(
            b'<state id_sms="9223372036854775808">deliver</state>',
            "id_sms is too large: 9223372036854775808",
            "9223372036854775808",
            id="2**63",
        ),
        pytest.param(
            b'<state id_sms="%s">deliver</state>' % (b"9" * 5000),
            "id_sms is out of range: 5000 digits",
            "9" * 5000,
            id="5000-digits",
        ),
        pytest.param(
            b'<state id_sms="3.0">deliver</state>',
            "id_sms is not an integer: '3.0'",
            "3.0",
            id="float-like",
        ),
        pytest.param(
            b'<state id_sms="1e3">deliver</state>',
            "id_sms is not an integer: '1e3'",
            "1e3",
            id="exponent",
        ),
        pytest.param(
            b'<state id_sms="+5">deliver</state>',
            "id_sms is not an integer: '+5'",
            "+5",
            id="plus-sign",
        ),
        pytest.param(
            '<state id_sms="\u0665">deliver</state>'.encode(),
            "id_sms is not an integer: '\u0665'",
            "\u0665",
            id="non-ascii-digit",
        ),
        pytest.param(
            b'<state id_sms="9" time="yesterday">deliver</state>',
            "time is not 'YYYY-MM-DD HH:MM:SS': 'yesterday'",
            "9",
            id="time-garbage",
        ),
        pytest.param(
            b'<state id_sms="9" time="2011-01-01">deliver</state>',
            "time is not 'YYYY-MM-DD HH:MM:SS': '2011-01-01'",
            "9",
            id="time-date-only",
        ),
        pytest.param(
            b'<state id_sms="9" time="2011-02-30 10:00:00">deliver</state>',
            "time is not 'YYYY-MM-DD HH:MM:SS': '2011-02-30 10:00:00'",
            "9",
            id="time-no-such-day",
        ),
        pytest.param(
            b'<state id_sms="9" time="0001-01-01 00:00:00">deliver</state>',
            "time is out of range: '0001-01-01 00:00:00'",
            "9",
            id="time-before-utc-min",
        ),
        pytest.param(b'<state id_sms="9"/>', "status is empty", "9", id="status-absent"),
        pytest.param(b'<state id_sms="9">  </state>', "status is empty", "9", id="status-blank"),
        pytest.param(
            b'<state id_sms="9">del\tiver</state>',
            "status holds control characters: 'del\\tiver'",
            "9",
            id="status-tab",
        ),
        pytest.param(
            b'<state id_sms="9">del\niver</state>',
            "status holds control characters: 'del\\niver'",
            "9",
            id="status-newline",
        ),
        pytest.param(
            b'<state id_sms="9" sms="a&#10;b">deliver</state>',
            "sms holds control characters: 'a\\nb'",
            "9",
            id="sms-control",
        ),
        pytest.param(
            b'<state id_sms="9" viber="a&#9;b">deliver</state>',
            "viber holds control characters: 'a\\tb'",
            "9",
            id="viber-control",
        ),
        pytest.param(
            b'<state id_sms="9"><b>deliver</b></state>', "state has child elements", "9", id="child"
        ),
        pytest.param(
            b'<status id_sms="9">deliver</status>', "unexpected element <status>", None, id="tag"
        ),
    ],
)
def test_bad_state_is_rejected_alone(fragment: bytes, reason: str, id_raw: str | None) -> None:
    """One bad state becomes a reject with its reason and raw bytes; the others are kept."""
    push = parse_push(wrap(GOOD_1, fragment, GOOD_2), MSK)
    assert [s.id_sms for s in push.states] == [1, 2]
    assert push.rejects == (Reject("state", reason, fragment, id_raw),)
    assert push.acknowledge == (1, 2)


def test_largest_id_is_accepted() -> None:
    """``2**63 - 1`` fits a signed 64-bit column and is accepted."""
    body = wrap(b'<state id_sms=" 9223372036854775807 ">send</state>')
    assert parse_push(body, MSK).acknowledge == (2**63 - 1,)


def test_leading_zeros_name_the_same_id() -> None:
    """``007`` is the message 7, in the states and in the answer."""
    push = parse_push(wrap(b'<state id_sms="007">send</state>'), MSK)
    assert push.acknowledge == (7,)


@pytest.mark.parametrize(
    "bad",
    [
        b'<state id_sms="5" time="garbage">read</state>',
        b'<state id_sms="05">x&#9;y</state>',
        b'<state id_sms=" 5 "/>',
    ],
)
def test_id_with_a_good_and_a_rejected_state_is_not_acknowledged(bad: bytes) -> None:
    """The provider must push the id again rather than count its bad state received."""
    push = parse_push(wrap(b'<state id_sms="5">deliver</state>', bad, GOOD_2), MSK)
    assert [s.id_sms for s in push.states] == [5, 2]
    assert len(push.rejects) == 1
    assert push.acknowledge == (2,)


def test_duplicate_ids_are_acknowledged_once_in_document_order() -> None:
    """Each id is echoed once, where it first appears."""
    states = [b'<state id_sms="%d">send</state>' % i for i in (3, 1, 3, 2, 1)]
    push = parse_push(wrap(*states), MSK)
    assert [s.id_sms for s in push.states] == [3, 1, 3, 2, 1]
    assert push.acknowledge == (3, 1, 2)


def test_document_with_only_rejects_acknowledges_nothing() -> None:
    """A well-formed document whose states are all bad answers with no id."""
    push = parse_push(wrap(b'<state id_sms="x">send</state>', b"<state/>"), MSK)
    assert push.states == ()
    assert len(push.rejects) == 2
    assert push.acknowledge == ()


def test_empty_root_is_an_empty_push() -> None:
    """``<response/>`` is well-formed and simply carries no state."""
    assert parse_push(b"<response/>", MSK).acknowledge == ()


def test_comments_processing_instructions_and_text_are_ignored() -> None:
    """Only elements carry states: comments, PIs and stray text are skipped."""
    body = wrap(b"<!-- hi -->", b"<?pi x?>", b"text", b'<state id_sms="1">send</state>')
    push = parse_push(body, MSK)
    assert (push.states, push.rejects) == ((State(1, "send"),), ())


def test_zone_setting_converts_times() -> None:
    """The same wall-clock time reads differently in another account zone."""
    body = wrap(b'<state id_sms="1" time="2011-01-01 12:57:46">deliver</state>')
    (state,) = parse_push(body, ZoneInfo("UTC")).states
    assert state.time_utc == datetime(2011, 1, 1, 12, 57, 46, tzinfo=UTC)
