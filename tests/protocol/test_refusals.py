"""Whole-document refusals: bodies that are not a push, and every DTD trick.

A refused document raises :class:`PushRejected`; nothing of it is acknowledged.
DTDs are refused outright, so no entity is ever expanded, no file is read and
no URL is fetched, whatever the encoding hides the declaration in.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest

from webcom_status.errors import PushRejected
from webcom_status.protocol import parse_push

MSK = ZoneInfo("Europe/Moscow")
DTD_REFUSED = "DTDs and entity declarations are not accepted"
STATE = '<state id_sms="1">&x;</state>'


def billion_laughs() -> str:
    """The classic exponential entity bomb: 10**9 "lol"s if expanded."""
    entities = ['<!ENTITY lol0 "lol">']
    entities += [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)]
    return f"<!DOCTYPE response [{''.join(entities)}]><response>{STATE.replace('x', 'lol9')}"


def with_dtd(subset: str, state: str = STATE) -> str:
    return f"<!DOCTYPE response [{subset}]><response>{state}</response>"


DTD_DOCUMENTS = {
    "doctype-only": "<!DOCTYPE response><response/>",
    "doctype-with-states": "<!DOCTYPE response><response><state id_sms='1'>send</state></response>",
    "internal-entity": with_dtd('<!ENTITY x "deliver">'),
    "billion-laughs": billion_laughs() + "</response>",
    "external-file": with_dtd('<!ENTITY x SYSTEM "file:///etc/passwd">'),
    "external-http": with_dtd('<!ENTITY x SYSTEM "http://127.0.0.1:9/x">'),
    "external-dtd": '<!DOCTYPE response SYSTEM "file:///etc/passwd"><response/>',
    "parameter-entity": with_dtd('<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;', "<x/>"),
    "entity-without-doctype": '<!ENTITY x "y"><response/>',
}


# Unseen in the bytes, these fail libxml2's own checks first (an ENTITY outside
# a DOCTYPE is a syntax error; the bomb trips its amplification limit): refused all the same.
HIDDEN_AND_MALFORMED = frozenset({"billion-laughs", "entity-without-doctype"})


@pytest.mark.parametrize(
    ("name", "encoding"),
    [(name, enc) for name in DTD_DOCUMENTS for enc in ("utf-8", "utf-16", "utf-16-be")],
)
def test_dtd_is_refused_in_any_encoding(name: str, encoding: str) -> None:
    """A DTD is refused whether its bytes are visible (UTF-8) or hidden (UTF-16)."""
    text = f'<?xml version="1.0" encoding="{encoding}"?>' + DTD_DOCUMENTS[name]
    with pytest.raises(PushRejected) as caught:
        parse_push(text.encode(encoding), MSK)
    assert caught.value.http_status == 400
    if encoding == "utf-8" or name not in HIDDEN_AND_MALFORMED:
        assert caught.value.message == DTD_REFUSED
    else:
        assert caught.value.message.startswith("body is not well-formed XML")


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16"])
def test_external_file_entity_leaks_nothing(encoding: str) -> None:
    """``SYSTEM "file:///etc/passwd"`` is refused and no file content appears anywhere."""
    text = f'<?xml version="1.0" encoding="{encoding}"?>' + DTD_DOCUMENTS["external-file"]
    with pytest.raises(PushRejected) as caught:
        parse_push(text.encode(encoding), MSK)
    assert "root" not in str(caught.value)
    assert caught.value.message == DTD_REFUSED


@pytest.fixture
def listener() -> Iterator[tuple[socket.socket, str]]:
    """A real TCP listener on 127.0.0.1 and an http URL pointing at it."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        server.setblocking(False)
        yield server, f"http://127.0.0.1:{server.getsockname()[1]}/x"


def nobody_connected(server: socket.socket) -> bool:
    try:
        conn, _ = server.accept()
    except BlockingIOError:
        return True
    conn.close()
    return False


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-16-le"])
@pytest.mark.parametrize(
    "template",
    [
        with_dtd('<!ENTITY x SYSTEM "{url}">'),
        '<!DOCTYPE response SYSTEM "{url}"><response/>',
        with_dtd('<!ENTITY % p SYSTEM "{url}"> %p;', "<x/>"),
        '<response xmlns:xi="http://www.w3.org/2001/XInclude"><xi:include href="{url}"/>'
        "</response>",
    ],
    ids=["entity", "external-dtd", "parameter-entity", "xinclude"],
)
def test_nothing_is_fetched_from_the_network(
    listener: tuple[socket.socket, str], template: str, encoding: str
) -> None:
    """No URL in a pushed document is ever fetched: the listener sees no connection."""
    server, url = listener
    declared = "utf-16" if encoding.startswith("utf-16") else encoding
    body = f'<?xml version="1.0" encoding="{declared}"?>' + template.format(url=url)
    encoded = body.encode(encoding)
    if encoding == "utf-16-le":
        encoded = b"\xff\xfe" + encoded
    try:
        push = parse_push(encoded, MSK)
    except PushRejected:
        pass
    else:
        assert push.states == ()
    assert nobody_connected(server)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        pytest.param(b"", "body is empty", id="empty"),
        pytest.param(b" \r\n\t ", "body is empty", id="whitespace"),
        pytest.param(b"hello", "body is not well-formed XML", id="plain-text"),
        pytest.param(b"42", "body is not well-formed XML", id="number"),
        pytest.param(b'"x"', "body is not well-formed XML", id="json-string"),
        pytest.param(b"\xef\xbb\xbf", "body is not well-formed XML", id="bom-only"),
        pytest.param(b"<response><state", "body is not well-formed XML", id="truncated"),
        pytest.param(b"<response></request>", "body is not well-formed XML", id="mismatch"),
        pytest.param(b"<response>&x;</response>", "body is not well-formed XML", id="entity"),
        pytest.param(b"<response/><response/>", "body is not well-formed XML", id="two-roots"),
        pytest.param(
            b'<?xml version="1.0" encoding="no-such"?><response/>',
            "body is not well-formed XML",
            id="unknown-encoding",
        ),
        pytest.param(
            b"<response>\xff\xfe</response>", "body is not well-formed XML", id="bad-utf8"
        ),
        pytest.param(
            b"<root/>", "root element is <root>, expected <response> or <request>", id="wrong-root"
        ),
        pytest.param(
            b'<state id_sms="1">send</state>',
            "root element is <state>, expected <response> or <request>",
            id="bare-state",
        ),
        pytest.param(b"{}", "JSON push must be an array of states", id="json-object"),
        pytest.param(b'{"id_sms": 1}', "JSON push must be an array of states", id="json-item"),
        pytest.param(b"[1,", "body is not valid JSON", id="json-truncated"),
        pytest.param(b"[NaN]", "body is not valid JSON", id="json-nan"),
        pytest.param(b'["\\ud800"]', "body is not valid JSON", id="json-lone-surrogate"),
    ],
)
def test_document_is_refused_as_a_whole(body: bytes, reason: str) -> None:
    """What is not a push at all raises ``PushRejected`` (400) saying why."""
    with pytest.raises(PushRejected) as caught:
        parse_push(body, MSK)
    assert caught.value.message.startswith(reason)
    assert caught.value.http_status == 400
