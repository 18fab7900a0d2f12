"""Properties of the parser over arbitrary input.

Whatever the bytes, ``parse_push`` returns a :class:`Push` or raises
:class:`PushRejected`, never anything else; and the answer built from a push
echoes only ids of good states, once each, and reads back as those ids.
"""

from __future__ import annotations

import contextlib
from xml.sax.saxutils import escape, quoteattr
from zoneinfo import ZoneInfo

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from tests.protocol.test_xml import EXAMPLE
from webcom_status import rules
from webcom_status.errors import PushRejected
from webcom_status.model import Flavour, Push
from webcom_status.protocol import answer, detect, error, parse_push
from webcom_status.protocol._fields import (
    InvalidState,
    build_state,
    build_state_slowly,
    parse_id,
)

MSK = ZoneInfo("Europe/Moscow")
# Characters XML 1.0 allows; tab and newline stay in, so control-character rejects happen.
XML_TEXT = st.text(
    st.characters(codec="utf-8", exclude_characters="".join(map(chr, range(9))) + "\x0b\x0c"),
    max_size=12,
).filter(lambda text: not any(0x0E <= ord(c) < 0x20 or c in "\ufffe\uffff" for c in text))

ids = st.one_of(
    st.integers(-2, 40),
    st.integers(2**63 - 2, 2**63 + 2),
    st.sampled_from(["", " 7 ", "07", "1.0", "1e3", "+3", "x", "9" * 30]),
)
raw_times = st.one_of(
    st.sampled_from(
        ["", "2011-01-01 12:57:46", "2011-01-01T12:57:46Z", "2011-01-01", "0001-01-01 00:00:00"]
    ),
    XML_TEXT,
)
status_text = st.one_of(st.sampled_from(sorted(rules.KNOWN)), XML_TEXT)


@st.composite
def xml_state(draw: st.DrawFn) -> str:
    """One ``<state>`` element, sometimes missing attributes, sometimes odd ones."""
    attributes = {
        name: draw(strategy.map(str))
        for name, strategy in (
            ("id_sms", ids),
            ("time", raw_times),
            ("sms", status_text),
            ("viber", status_text),
        )
        if draw(st.booleans()) or name == "id_sms"
    }
    if draw(st.integers(0, 9)) == 0:
        attributes.pop("id_sms")
    text = "".join(f" {name}={quoteattr(value)}" for name, value in attributes.items())
    tag = draw(st.sampled_from(["state"] * 9 + ["other"]))
    return f"<{tag}{text}>{escape(draw(status_text))}</{tag}>"


@st.composite
def xml_documents(draw: st.DrawFn) -> bytes:
    """A well-formed push in one of the encodings the provider may use."""
    root = draw(st.sampled_from(["response", "request"]))
    encoding = draw(st.sampled_from(["utf-8", "utf-16", "windows-1251"]))
    states = "".join(draw(st.lists(xml_state(), max_size=8)))
    text = f'<?xml version="1.0" encoding="{encoding}"?><{root}>{states}</{root}>'
    return text.encode(encoding, "xmlcharrefreplace")


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=5,
)
json_items = st.one_of(
    st.fixed_dictionaries(
        {"id_sms": st.one_of(ids, ids.map(str), json_values)},
        optional={
            "state": status_text | json_values,
            "time": raw_times | json_values,
            "sms": status_text | json_values,
            "viber": status_text | json_values,
        },
    ),
    json_values,
)
json_documents = st.lists(json_items, max_size=8).map(orjson.dumps)

SEEDS = [
    EXAMPLE,
    EXAMPLE.decode().replace("utf-8", "utf-16").encode("utf-16"),
    EXAMPLE.decode().replace("utf-8", "windows-1251").encode("cp1251"),
    b'[{"id_sms": 3234, "time": "2011-01-01 12:57:46", "state": "deliver", "sms": "deliver"}]',
    b'<!DOCTYPE r [<!ENTITY x "y">]><response><state id_sms="1">&x;</state></response>',
]
SPLICES = [b"<", b">", b"&", b'"', b"\x00", b"\xff", b"[", b"{", b"-", b"9" * 25, b"<!DOCTYPE r ["]


@st.composite
def mutated_documents(draw: st.DrawFn) -> bytes:
    """A valid (or nearly valid) document with a few bytes flipped, cut or spliced in."""
    body = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(body)))
        action = draw(st.sampled_from(["flip", "cut", "splice"]))
        if action == "flip" and at < len(body):
            body[at] = draw(st.integers(0, 255))
        elif action == "cut":
            del body[at : at + draw(st.integers(1, 20))]
        else:
            body[at:at] = draw(st.sampled_from(SPLICES) | st.binary(min_size=1, max_size=4))
    return bytes(body)


prefixed_bytes = st.builds(
    lambda prefix, rest: prefix + rest,
    st.sampled_from([b"", b"\xef\xbb\xbf", b"<response>", b"[", b"\xff\xfe<\x00", b"<?xml "]),
    st.binary(max_size=200),
)
any_body = st.one_of(
    st.binary(max_size=300), prefixed_bytes, mutated_documents(), xml_documents(), json_documents
)


def check_push(push: Push, body: bytes) -> None:
    """The invariants every parsed push holds."""
    assert push.flavour is detect(body)
    good = [s.id_sms for s in push.states]
    assert len(set(push.acknowledge)) == len(push.acknowledge)
    assert set(push.acknowledge) <= set(good)
    withheld: set[int] = set()
    for reject in push.rejects:
        with contextlib.suppress(InvalidState):
            withheld.add(parse_id(reject.id_sms_raw))
    assert list(push.acknowledge) == list(dict.fromkeys(i for i in good if i not in withheld))
    for state in push.states:
        assert 0 < state.id_sms < 2**63
        assert state.status == state.status.strip() != ""
        assert (state.time_utc is None) == (state.time_raw.strip() == "")


def check_refusal(refusal: PushRejected) -> None:
    """A refusal can be told to the provider in either flavour."""
    document = etree.fromstring(error(Flavour.XML, refusal.message))
    assert document.findtext("error") == refusal.message
    assert orjson.loads(error(Flavour.JSON, refusal.message)) == {"error": refusal.message}


@settings(deadline=None, max_examples=300)
@given(any_body)
def test_parse_push_returns_a_push_or_refuses(body: bytes) -> None:
    """No input makes the parser raise anything but ``PushRejected``."""
    try:
        push = parse_push(body, MSK)
    except PushRejected as refusal:
        check_refusal(refusal)
    else:
        check_push(push, body)


@settings(deadline=None)
@given(st.one_of(xml_documents(), json_documents))
def test_answer_echoes_acknowledged_ids_once(body: bytes) -> None:
    """Parse then answer: the answer reads back as the acknowledged ids, in order."""
    push = parse_push(body, MSK)
    check_push(push, body)
    document = answer(push.flavour, push.acknowledge)
    if push.flavour is Flavour.XML:
        echoed = [int(e.text or "") for e in etree.fromstring(document).iter("id_sms")]
    else:
        echoed = [item["id_sms"] for item in orjson.loads(document)]
    assert echoed == list(push.acknowledge)


def _built(build: object, fields: dict[str, object]) -> object:
    """The state ``build`` makes of ``fields``, or the reason it refuses them."""
    try:
        return build(zone=MSK, **fields)  # type: ignore[operator]
    except InvalidState as exc:
        return str(exc)


@given(
    id_raw=ids.map(str),
    status=st.one_of(st.none(), status_text, st.integers()),
    sms=st.one_of(st.none(), status_text, st.sampled_from(["", "  ", "\t"])),
    viber=st.one_of(st.none(), status_text, st.integers()),
    time=st.one_of(st.none(), raw_times, st.integers()),
)
@settings(max_examples=400)
def test_the_cached_path_builds_what_the_uncached_one_does(
    id_raw: str, status: object, sms: object, viber: object, time: object
) -> None:
    fields = {"id_raw": id_raw, "status": status, "sms": sms, "viber": viber, "time": time}
    cached = _built(build_state, fields)
    assert cached == _built(build_state_slowly, fields)
    assert cached == _built(build_state, fields)  # and again, from the cache
