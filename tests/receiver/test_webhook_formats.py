"""Encodings, roots and the JSON flavour over HTTP.

The body is read as the document declares it (windows-1251 on old Russian
platforms, a UTF-8 BOM, UTF-16), under either root the platform uses, and
the answer comes in the flavour of the push: XML for XML, JSON for JSON.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

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
)

BOM = b"\xef\xbb\xbf"
XML_ANSWER_HEAD = b'<?xml version="1.0" encoding="utf-8" ?>\n<response>'
_ids = itertools.count(2000, 10)


@pytest.fixture(scope="module")
def receiver(start_receiver: Callable[..., Receiver]) -> Receiver:
    """A receiver with default settings, shared by the module."""
    return seed(start_receiver("formats"))


@pytest.mark.parametrize("encoding", ["windows-1251", "koi8-r", "utf-16"])
def test_declared_encoding_is_honoured(receiver: Receiver, encoding: str) -> None:
    """Cyrillic statuses in a non-UTF-8 document come back as the same text, verbatim."""
    id_sms = next(_ids)
    then = before(receiver)
    text = (
        f'<?xml version="1.0" encoding="{encoding}"?>\n<response>'
        + state(id_sms, "доставлено", sms="доставлено", viber="прочитано")
        + state(id_sms + 1, "deliver", sms="deliver")
        + "</response>"
    )

    reply = receiver.push(text.encode(encoding))

    assert reply.status_code == 200, reply.text
    assert acked(reply) == [id_sms, id_sms + 1]
    message = receiver.message(id_sms)
    assert message is not None
    assert (message["status"], message["sms"], message["viber"]) == (
        "доставлено",
        "доставлено",
        "прочитано",
    )
    assert receiver.stats()["unknown_status_events"] == (then.stats["unknown_status_events"] + 1)
    assert_baseline_unharmed(receiver, then)


@pytest.mark.parametrize("root", ["response", "request"])
@pytest.mark.parametrize("bom", [b"", BOM], ids=["no-bom", "bom"])
def test_xml_roots_and_utf8_bom_are_accepted(receiver: Receiver, root: str, bom: bytes) -> None:
    """``<response>`` (Webcom) and ``<request>`` (reseller copy), with or without a BOM."""
    id_sms = next(_ids)
    body = (
        bom
        + f'<?xml version="1.0" encoding="utf-8" ?>\n<{root}>'.encode()
        + state(id_sms, "read", viber="read").encode()
        + f"</{root}>".encode()
    )

    reply = receiver.push(body)

    assert reply.status_code == 200, reply.text
    assert reply.content == XML_ANSWER_HEAD + b"<id_sms>%d</id_sms></response>" % id_sms
    message = receiver.message(id_sms)
    assert message is not None
    assert (message["status"], message["viber"]) == ("read", "read")


@pytest.mark.parametrize("prefix", [b"", BOM, b" \r\n\t"], ids=["plain", "bom", "whitespace"])
def test_json_push_is_answered_in_json(receiver: Receiver, prefix: bytes) -> None:
    """A JSON push gets ``[{"id_sms": …}]`` as ``application/json``, in document order."""
    first = next(_ids)
    items = [
        {"id_sms": first + 2, "time": TIME, "state": "deliver", "sms": "deliver"},
        {"id_sms": first, "time": "", "state": "send"},
        {"id_sms": first + 1, "time": TIME, "state": "read", "viber": "read", "sms": "expired"},
    ]

    reply = receiver.push(prefix + orjson.dumps(items))

    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == JSON_TYPE
    assert reply.content == orjson.dumps(
        [{"id_sms": first + 2}, {"id_sms": first}, {"id_sms": first + 1}]
    )
    both = receiver.message(first + 1)
    assert both is not None
    assert (both["status"], both["sms"], both["viber"]) == ("read", "expired", "read")
    assert both["time"] == "2011-01-01T09:57:46+00:00"
    sent = receiver.message(first)
    assert sent is not None
    assert (sent["status"], sent["time"], sent["time_raw"]) == ("send", None, "")


def test_empty_json_array_is_answered_with_an_empty_array(receiver: Receiver) -> None:
    """Nothing pushed, nothing acknowledged, nothing stored: ``[]``."""
    then = before(receiver)

    reply = receiver.push(b"[]")

    assert (reply.status_code, reply.headers["content-type"]) == (200, JSON_TYPE)
    assert reply.json() == []
    assert receiver.stats() == then.stats


def test_xml_without_states_is_answered_with_an_empty_response(receiver: Receiver) -> None:
    """An empty ``<response/>``: 200 and an acknowledgement with no id."""
    then = before(receiver)

    reply = receiver.push(b"<response/>")

    assert (reply.status_code, reply.headers["content-type"]) == (200, XML_TYPE)
    assert reply.content == XML_ANSWER_HEAD + b"</response>"
    assert receiver.stats() == then.stats
