"""The receiver's answers and error documents, byte for byte."""

from __future__ import annotations

import orjson
import pytest
from lxml import etree

from webcom_status.model import Flavour
from webcom_status.protocol import answer, content_type, error

DECLARATION = b'<?xml version="1.0" encoding="utf-8" ?>\n'


@pytest.mark.parametrize(
    ("ids", "body"),
    [
        ([], b"<response></response>"),
        ([3234], b"<response><id_sms>3234</id_sms></response>"),
        ([3234, 3235], b"<response><id_sms>3234</id_sms><id_sms>3235</id_sms></response>"),
        ([2**63 - 1], b"<response><id_sms>9223372036854775807</id_sms></response>"),
    ],
)
def test_xml_answer_bytes(ids: list[int], body: bytes) -> None:
    """The XML answer is the declaration then ``<response>`` with one ``<id_sms>`` per id."""
    assert answer(Flavour.XML, ids) == DECLARATION + body


@pytest.mark.parametrize(
    ("ids", "body"),
    [
        ([], b"[]"),
        ([1], b'[{"id_sms":1}]'),
        ([3234, 3235], b'[{"id_sms":3234},{"id_sms":3235}]'),
    ],
)
def test_json_answer_bytes(ids: list[int], body: bytes) -> None:
    """The JSON answer is an array of ``{"id_sms": n}`` objects."""
    assert answer(Flavour.JSON, ids) == body


@pytest.mark.parametrize("flavour", list(Flavour))
def test_answer_takes_any_iterable_once(flavour: Flavour) -> None:
    """A generator of ids is consumed once and gives the same answer as a list."""
    assert answer(flavour, (i for i in (1, 2))) == answer(flavour, [1, 2])


def test_xml_answer_reads_back_as_the_ids() -> None:
    """A generic XML reader finds the echoed ids in order."""
    root = etree.fromstring(answer(Flavour.XML, [7, 3, 9]))
    assert [int(e.text or "") for e in root.iter("id_sms")] == [7, 3, 9]


@pytest.mark.parametrize(
    ("message", "text"),
    [
        ("body is empty", b"body is empty"),
        ("root is <x> & not <response>", b"root is &lt;x&gt; &amp; not &lt;response&gt;"),
        ("a > b", b"a &gt; b"),
        ("quotes \" and ' stay", b"quotes \" and ' stay"),
        ("время", "время".encode()),
    ],
)
def test_xml_error_document_escapes_markup(message: str, text: bytes) -> None:
    """``<response><error>`` with ``<``, ``&`` and ``>`` escaped, in UTF-8."""
    document = error(Flavour.XML, message)
    assert document == DECLARATION + b"<response><error>" + text + b"</error></response>"
    assert etree.fromstring(document).findtext("error") == message


@pytest.mark.parametrize("message", ["body is empty", 'a "<&>" b', "время"])
def test_json_error_document(message: str) -> None:
    """The JSON error is ``{"error": message}``."""
    document = error(Flavour.JSON, message)
    assert orjson.loads(document) == {"error": message}


def test_json_error_bytes() -> None:
    """Exact bytes of a JSON error: markup is not escaped, quotes are."""
    assert error(Flavour.JSON, 'x "<&>"') == b'{"error":"x \\"<&>\\""}'


@pytest.mark.parametrize(
    ("flavour", "value"),
    [(Flavour.XML, b"text/xml; charset=utf-8"), (Flavour.JSON, b"application/json")],
)
def test_content_type_follows_the_flavour(flavour: Flavour, value: bytes) -> None:
    """The answer is labelled as the push was written."""
    assert content_type(flavour) == value
