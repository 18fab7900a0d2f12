"""Whole-document refusals over HTTP: the answer, the kept raw body, and nothing stored.

A body that is not a push at all (not XML or JSON, malformed, wrong root,
carrying a DTD, empty, over ``--max-body``) is refused with a 4xx and the
platform's error document; no id is echoed, nothing is stored, the raw bytes
go to ``rejects``. The ``Content-Type`` header plays no part.
"""

from __future__ import annotations

import gzip
import itertools
import socket
import zlib
from collections.abc import Callable, Iterator

import httpx
import orjson
import pytest

from tests.receiver.support import (
    JSON_TYPE,
    XML_TYPE,
    Receiver,
    acked,
    assert_baseline_unharmed,
    assert_refused,
    before,
    seed,
    state,
    xml_doc,
)

LIMIT = 1024
_ids = itertools.count(800)
DTD_REFUSED = "DTDs and entity declarations are not accepted"


def billion_laughs(encoding: str) -> bytes:
    """The classic entity bomb: ten levels of ten references each."""
    levels = "".join(f'<!ENTITY lol{n} "{f"&lol{n - 1};" * 10}">' for n in range(1, 10))
    text = (
        f'<?xml version="1.0" encoding="{encoding}"?>\n'
        f'<!DOCTYPE response [<!ENTITY lol0 "lol">{levels}]>\n'
        '<response><state id_sms="3" time="">&lol9;</state></response>'
    )
    return text.encode(encoding)


def external_entity(url: str, encoding: str) -> bytes:
    """A document whose state text is an external entity at ``url``."""
    text = (
        f'<?xml version="1.0" encoding="{encoding}"?>\n'
        f'<!DOCTYPE response [<!ENTITY xxe SYSTEM "{url}">]>\n'
        '<response><state id_sms="3" time="">&xxe;</state></response>'
    )
    return text.encode(encoding)


def external_dtd(url: str, encoding: str) -> bytes:
    """A document that names an external DTD at ``url``."""
    text = (
        f'<?xml version="1.0" encoding="{encoding}"?>\n'
        f'<!DOCTYPE response SYSTEM "{url}">\n'
        '<response><state id_sms="3" time="">deliver</state></response>'
    )
    return text.encode(encoding)


def parameter_entity(url: str, encoding: str) -> bytes:
    """A DTD that pulls in more DTD from ``url`` through a parameter entity."""
    text = (
        f'<?xml version="1.0" encoding="{encoding}"?>\n'
        f'<!DOCTYPE response [<!ENTITY % remote SYSTEM "{url}"> %remote;]>\n'
        '<response><state id_sms="3" time="">deliver</state></response>'
    )
    return text.encode(encoding)


# (body, status, reason, answer content type)
REFUSED = [
    pytest.param(b"hello, world", "not well-formed XML", XML_TYPE, id="plain-text"),
    pytest.param(
        b"xml=%3Cresponse%3E%3C%2Fresponse%3E", "not well-formed XML", XML_TYPE, id="form-field"
    ),
    pytest.param(
        b'<response><state id_sms="3" time="">deliver</state>',
        "not well-formed XML",
        XML_TYPE,
        id="truncated-xml",
    ),
    pytest.param(
        b'<response><state id_sms="3" time="">\xff\xfe</state></response>',
        "not well-formed XML",
        XML_TYPE,
        id="invalid-utf8",
    ),
    pytest.param(
        b'<states><state id_sms="3" time="">deliver</state></states>',
        "root element is <states>, expected <response> or <request>",
        XML_TYPE,
        id="wrong-root",
    ),
    pytest.param(b"", "body is empty", XML_TYPE, id="empty"),
    pytest.param(b" \r\n\t ", "body is empty", XML_TYPE, id="blank"),
    pytest.param(
        b'{"id_sms": 3, "state": "deliver"}',
        "JSON push must be an array of states",
        JSON_TYPE,
        id="json-object",
    ),
    pytest.param(
        b'[{"id_sms": 3, "state": "deliver"}', "body is not valid JSON", JSON_TYPE, id="bad-json"
    ),
    pytest.param(
        b'<?xml version="1.0"?><!DOCTYPE response [<!ENTITY s "deliver">]>'
        b'<response><state id_sms="3" time="">&s;</state></response>',
        DTD_REFUSED,
        XML_TYPE,
        id="internal-entity",
    ),
    pytest.param(billion_laughs("utf-8"), DTD_REFUSED, XML_TYPE, id="billion-laughs"),
    pytest.param(
        external_entity("file:///etc/passwd", "utf-8"), DTD_REFUSED, XML_TYPE, id="file-entity"
    ),
    pytest.param(
        external_entity("file:///etc/passwd", "utf-16"),
        DTD_REFUSED,
        XML_TYPE,
        id="file-entity-utf16",
    ),
]


@pytest.fixture(scope="module")
def receiver(start_receiver: Callable[..., Receiver]) -> Receiver:
    """A receiver with default settings, shared by the module."""
    return seed(start_receiver("refusals"))


@pytest.fixture(scope="module")
def limited(start_receiver: Callable[..., Receiver]) -> Receiver:
    """A receiver that takes bodies of at most 1 KiB."""
    return seed(start_receiver("limited", "--max-body", "1KiB"))


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A listening socket on 127.0.0.1 that no one should ever connect to."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        yield sock


def assert_never_contacted(sock: socket.socket) -> None:
    """Nobody connected: the kernel completes a handshake before accept(), so none is queued."""
    with pytest.raises(BlockingIOError):
        sock.accept()


@pytest.mark.parametrize(("body", "reason", "content_type"), REFUSED)
def test_document_is_refused_whole_and_kept_raw(
    receiver: Receiver, body: bytes, reason: str, content_type: str
) -> None:
    """400 with a readable error in the push's flavour; nothing stored; the raw body kept."""
    then = before(receiver)

    reply = receiver.push(body)

    assert_refused(
        receiver, then, reply, status=400, reason=reason, raw=body, content_type=content_type
    )
    assert b"root:" not in reply.content


def test_entity_bomb_hidden_by_utf16_is_refused(receiver: Receiver) -> None:
    """In UTF-16 the DTD is not visible before parsing: the parser's guards refuse it.

    libxml2 stops at its entity amplification limit (a syntax error), or the
    parsed DTD is found afterwards; either way a 400, nothing stored.
    """
    body = billion_laughs("utf-16")
    then = before(receiver)

    reply = receiver.push(body)

    reject = assert_refused(receiver, then, reply, status=400, reason="", raw=body)
    assert reject["reason"].startswith((DTD_REFUSED, "body is not well-formed XML"))


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-16-be"])
@pytest.mark.parametrize("build", [external_entity, external_dtd, parameter_entity])
def test_external_resources_over_http_are_never_fetched(
    receiver: Receiver, listener: socket.socket, build: object, encoding: str
) -> None:
    """An entity, a DTD or a parameter entity at an http URL: refused, never connected to.

    UTF-16 hides the ``<!DOCTYPE`` bytes from the pre-parse check, so the
    parser's own settings are what keeps it off the network there.
    """
    assert callable(build)
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/evil.dtd"
    body: bytes = build(url, encoding)
    then = before(receiver)

    reply = receiver.push(body)

    assert_refused(receiver, then, reply, status=400, reason=DTD_REFUSED, raw=body)
    assert_never_contacted(listener)


def test_xinclude_is_not_processed(receiver: Receiver, listener: socket.socket) -> None:
    """An XInclude element is just an unexpected element: rejected alone, never fetched."""
    url = f"http://127.0.0.1:{listener.getsockname()[1]}/states.xml"
    include = f'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="{url}"/>'
    then = before(receiver)

    reply = receiver.push(xml_doc(include))

    assert reply.status_code == 200, reply.text
    assert acked(reply) == []
    [reject] = receiver.rejects(then.last_reject)
    assert (reject["scope"], reject["reason"]) == ("state", "unexpected element <include>")
    assert_never_contacted(listener)
    assert_baseline_unharmed(receiver, then)


def big_push(first_id: int, size: int) -> bytes:
    """A well-formed XML push of at least ``size`` bytes."""
    states = [state(first_id + n, sms="deliver") for n in range(size // 60 + 1)]
    return xml_doc(*states)


def in_chunks(body: bytes, size: int = 512) -> Iterator[bytes]:
    """The body as a generator: httpx sends it chunked, without Content-Length."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_body_over_the_limit_is_refused_413_and_kept_truncated(
    limited: Receiver, framing: str
) -> None:
    """5 KiB against a 1 KiB limit: 413, nothing stored, exactly the first 1 KiB kept."""
    body = big_push(500, 5 * 1024)
    then = before(limited)

    reply = limited.push(in_chunks(body) if framing == "chunked" else body)

    sent_length = "content-length" in reply.request.headers
    assert sent_length == (framing == "content-length")
    reason = f"request body is larger than the limit of {LIMIT} bytes"
    assert_refused(limited, then, reply, status=413, reason=reason, raw=body[:LIMIT])
    assert limited.message(500) is None


def test_a_413_says_connection_close_and_closes_it_at_once(limited: Receiver) -> None:
    """A client still sending a body far over the limit gets its 413 with ``Connection:
    close``, and the connection is closed: not read on, not held until the body ends."""
    start = b"<response>" + b" " * (2 * LIMIT)
    head = b"POST /webhook HTTP/1.1\r\nHost: test\r\nContent-Length: 10000000\r\n\r\n"
    with socket.create_connection(("127.0.0.1", limited.process.port), timeout=20) as sock:
        sock.sendall(head + start)
        answer = b""
        while chunk := sock.recv(65536):  # b"" once the server has closed
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 413 "), answer
    assert b"connection: close" in answer.lower()
    assert b"larger than the limit" in answer


def test_json_body_over_the_limit_is_answered_in_json(limited: Receiver) -> None:
    """The flavour of a 413 answer follows what the kept head of the body looks like."""
    body = orjson.dumps([{"id_sms": 600 + n, "state": "deliver"} for n in range(200)])
    assert len(body) > 5 * LIMIT
    then = before(limited)

    reply = limited.push(body)

    assert_refused(
        limited,
        then,
        reply,
        status=413,
        reason="larger than the limit",
        raw=body[:LIMIT],
        content_type=JSON_TYPE,
    )


def padded(document: bytes, size: int) -> bytes:
    """``document`` with whitespace inserted before the root's end tag, to ``size`` bytes."""
    end = document.rindex(b"</response>")
    return document[:end] + b" " * (size - len(document)) + document[end:]


def test_body_of_exactly_the_limit_is_accepted(limited: Receiver) -> None:
    """The limit is inclusive: a body of exactly 1024 bytes is parsed and stored."""
    body = padded(xml_doc(state(700)), LIMIT)
    assert len(body) == LIMIT

    reply = limited.push(in_chunks(body, 100))

    assert reply.status_code == 200, reply.text
    assert acked(reply) == [700]


def test_body_one_byte_over_the_limit_is_refused(limited: Receiver) -> None:
    """1025 bytes: 413, and the kept raw body is its first 1024 bytes."""
    body = padded(xml_doc(state(701)), LIMIT + 1)
    then = before(limited)

    reply = limited.push(body)

    assert_refused(limited, then, reply, status=413, reason="larger", raw=body[:LIMIT])
    assert limited.message(701) is None


@pytest.mark.parametrize(
    ("flavour", "content_type"),
    [
        ("xml", "application/json"),
        ("xml", None),
        ("xml", "application/x-www-form-urlencoded"),
        ("json", "text/xml; charset=utf-8"),
        ("json", None),
        ("json", "text/plain"),
    ],
)
def test_content_type_header_is_ignored(
    receiver: Receiver, flavour: str, content_type: str | None
) -> None:
    """The body decides the flavour of the parse and of the answer, not the header."""
    id_sms = next(_ids)
    if flavour == "xml":
        body = xml_doc(state(id_sms))
    else:
        body = orjson.dumps([{"id_sms": id_sms, "time": "", "state": "send"}])
    headers = {} if content_type is None else {"content-type": content_type}

    reply = receiver.push(body, headers=headers)

    assert reply.status_code == 200, reply.text
    assert reply.request.headers.get("content-type") == content_type
    expected = XML_TYPE if flavour == "xml" else JSON_TYPE
    assert reply.headers["content-type"] == expected
    assert acked(reply) == [id_sms]
    assert receiver.message(id_sms) is not None


@pytest.mark.parametrize("coding", ["gzip", "deflate", "br"])
def test_a_compressed_body_is_refused_415_and_kept_as_sent(receiver: Receiver, coding: str) -> None:
    """``Content-Encoding`` other than identity: 415 saying so, the bytes kept as they came."""
    id_sms = next(_ids)
    document = xml_doc(state(id_sms))
    body = gzip.compress(document) if coding == "gzip" else zlib.compress(document)
    then = before(receiver)

    reply = receiver.push(body, headers={"content-encoding": coding})

    reason = f"Content-Encoding '{coding}' is not accepted: push the document uncompressed"
    assert_refused(receiver, then, reply, status=415, reason=reason, raw=body)
    assert receiver.message(id_sms) is None


def test_identity_content_encoding_is_a_plain_body(receiver: Receiver) -> None:
    id_sms = next(_ids)
    reply = receiver.push(xml_doc(state(id_sms)), headers={"content-encoding": "identity"})
    assert reply.status_code == 200, reply.text
    assert acked(reply) == [id_sms]


def test_refused_push_does_not_break_the_next_one(receiver: Receiver) -> None:
    """After a refusal on the same connection, a good push is stored as usual."""
    with httpx.Client(base_url=receiver.url) as client:
        assert client.post("/webhook", content=b"<nope").status_code == 400
        reply = client.post("/webhook", content=xml_doc(state(900)))
    assert reply.status_code == 200, reply.text
    assert acked(reply) == [900]
