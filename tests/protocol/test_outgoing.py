"""The provider's side of the wire: pushes built, answers read, findings named."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from webcom_status.model import Flavour
from webcom_status.protocol import Outgoing, answer, build_push, parse_push, read_answer

MOSCOW = ZoneInfo("Europe/Moscow")
EXAMPLE = [
    Outgoing(3234, "deliver", "2011-01-01 12:57:46", sms="deliver"),
    Outgoing(3235, "read", "2011-01-01 12:57:46", sms="expired", viber="read"),
    Outgoing(3236, "deliver", "2011-01-01 12:57:46", viber="deliver"),
    Outgoing(3237, "send", "", sms="send"),
]


def test_xml_push_has_the_documented_shape() -> None:
    """Declaration, ``<response>`` root, and attributes in the page's order."""
    body = build_push(EXAMPLE[1:2], Flavour.XML)
    assert body == (
        b'<?xml version="1.0" encoding="utf-8" ?>\n<response>\n'
        b'  <state id_sms="3235" time="2011-01-01 12:57:46" sms="expired" viber="read">'
        b"read</state>\n</response>\n"
    )


def test_json_push_has_the_documented_shape() -> None:
    """``[{"id_sms", "time", "state"}]``, channels only where present."""
    assert build_push(EXAMPLE[:1], Flavour.JSON) == (
        b'[{"id_sms":3234,"time":"2011-01-01 12:57:46","state":"deliver","sms":"deliver"}]'
    )


def test_reseller_root_is_written_when_asked() -> None:
    """A reseller copy of the platform pushes ``<request>``."""
    assert b"<request>" in build_push(EXAMPLE, Flavour.XML, root="request")


statuses = st.one_of(
    st.sampled_from(["send", "deliver", "read", "not_deliver", "expired", "partly_deliver"]),
    st.text(
        st.characters(min_codepoint=0x20, max_codepoint=0xD7FF, exclude_characters="\x7f"),
        min_size=1,
    ).filter(lambda s: s.strip() == s and s != ""),
)
times = st.one_of(
    st.just(""),
    st.datetimes(datetime(1970, 1, 1), datetime(2100, 1, 1)).map(
        lambda d: d.strftime("%Y-%m-%d %H:%M:%S")
    ),
)
outgoing = st.builds(
    Outgoing,
    id_sms=st.integers(1, 2**63 - 1),
    status=statuses,
    time=times,
    sms=st.none() | statuses,
    viber=st.none() | statuses,
)


@pytest.mark.parametrize("flavour", list(Flavour))
@given(states=st.lists(outgoing, max_size=20, unique_by=lambda s: s.id_sms))
def test_a_built_push_reads_back_as_the_same_states(
    flavour: Flavour, states: list[Outgoing]
) -> None:
    """What the provider side writes, the receiver side reads: the same states, and
    every id acknowledged in order."""
    push = parse_push(build_push(states, flavour), MOSCOW)
    assert push.rejects == ()
    assert [(s.id_sms, s.status, s.sms, s.viber, s.time_raw) for s in push.states] == [
        (s.id_sms, s.status, s.sms, s.viber, s.time) for s in states
    ]
    assert push.acknowledge == tuple(s.id_sms for s in states)


@pytest.mark.parametrize("flavour", list(Flavour))
def test_a_conforming_answer_has_no_findings(flavour: Flavour) -> None:
    """The receiver's own answer reads back as its ids, in order, with nothing to report."""
    read = read_answer(answer(flavour, [3235, 3234]), flavour, pushed=[3234, 3235, 3236])
    assert read.ids == (3235, 3234)
    assert read.findings == ()


@pytest.mark.parametrize(
    ("body", "flavour", "ids", "kinds"),
    [
        (b"<response><id_sms>1</id_sms></response>", Flavour.XML, (1,), ["no_declaration"]),
        (
            b'<?xml version="1.0"?><request><id_sms>1</id_sms></request>',
            Flavour.XML,
            (1,),
            ["wrong_root"],
        ),
        (
            b'<?xml version="1.0"?><response><error>busy</error></response>',
            Flavour.XML,
            (),
            ["error"],
        ),
        (
            b'<?xml version="1.0"?><response><id_sms>x</id_sms><id_sms>2</id_sms></response>',
            Flavour.XML,
            (2,),
            ["bad_id"],
        ),
        (
            b'<?xml version="1.0"?><response><id_sms>2</id_sms><id_sms>2</id_sms></response>',
            Flavour.XML,
            (2,),
            ["repeated_id"],
        ),
        (
            b'<?xml version="1.0"?><response><id_sms>9</id_sms></response>',
            Flavour.XML,
            (),
            ["unknown_id"],
        ),
        (b"OK", Flavour.XML, (), ["no_declaration", "unparseable"]),
        (
            b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x "1">]><response/>',
            Flavour.XML,
            (),
            ["unparseable"],
        ),
        (b"", Flavour.XML, (), ["no_declaration", "unparseable"]),
        (b"{}", Flavour.JSON, (), ["wrong_shape"]),
        (b'[{"id_sms": 1}, 2]', Flavour.JSON, (1,), ["wrong_shape"]),
        (b"not json", Flavour.JSON, (), ["unparseable"]),
    ],
)
def test_each_way_an_answer_breaks_the_protocol_is_a_finding(
    body: bytes, flavour: Flavour, ids: tuple[int, ...], kinds: list[str]
) -> None:
    """A broken answer never raises: the ids it did acknowledge, and what was wrong."""
    read = read_answer(body, flavour, pushed=[1, 2, 3])
    assert read.ids == ids
    assert [f.kind for f in read.findings] == kinds


@given(body=st.binary(max_size=300), flavour=st.sampled_from(list(Flavour)))
def test_reading_any_bytes_as_an_answer_never_raises(body: bytes, flavour: Flavour) -> None:
    """Hostile or broken receivers: every answer yields ids (only pushed ones) and findings."""
    read = read_answer(body, flavour, pushed=[1, 2])
    assert set(read.ids) <= {1, 2}
