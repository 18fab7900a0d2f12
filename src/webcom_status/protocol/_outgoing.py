"""The provider's side of the wire: build a push, read the receiver's answer.

Pure, like the receiver's side: the sender and the emulator do the I/O.
Reading an answer never raises: whatever a receiver sends back is turned
into the ids it acknowledged plus *findings*, the ways it broke the protocol.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple
from xml.sax.saxutils import escape, quoteattr

import orjson
from lxml import etree

from webcom_status.errors import PushRejected
from webcom_status.model import Flavour
from webcom_status.protocol._answer import XML_DECLARATION
from webcom_status.protocol._fields import InvalidState, parse_id
from webcom_status.protocol._xml import parse_document


class Outgoing(NamedTuple):
    """One state to push, as the provider writes it (``time`` is ``""`` for ``send``).

    A named tuple, like the receiver's ``State``: the sender makes one per
    state claimed, and a frozen dataclass costs twice as much to build.
    """

    id_sms: int
    status: str
    time: str = ""
    sms: str | None = None
    viber: str | None = None


@dataclass(frozen=True, slots=True)
class Finding:
    """A way an answer broke the protocol; ``id_sms`` where one applies."""

    kind: str
    detail: str
    id_sms: int | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """The ids a receiver acknowledged, in its order without repeats, and what was wrong."""

    ids: tuple[int, ...]
    findings: tuple[Finding, ...]


# Characters that an attribute value or text may not hold as they are.
_SPECIAL = re.compile(r"[&<>\"'\t\n\r]")


def _attr(value: str) -> str:
    # Status values and times almost never need escaping: skip saxutils then.
    return f'"{value}"' if _SPECIAL.search(value) is None else quoteattr(value)


def _state_xml(state: Outgoing) -> str:
    return f'\n  <state id_sms="{state.id_sms:d}"{_xml_tail(*state[1:])}'


@lru_cache(maxsize=4096)
def _xml_tail(status: str, time: str, sms: str | None, viber: str | None) -> str:
    # Everything of a <state> but its id_sms: pushes repeat a handful of
    # statuses and a time per second, so most states reuse one made already.
    attributes = f" time={_attr(time)}"
    if sms is not None:
        attributes += f" sms={_attr(sms)}"
    if viber is not None:
        attributes += f" viber={_attr(viber)}"
    text = status if _SPECIAL.search(status) is None else escape(status)
    return f"{attributes}>{text}</state>"


def _state_json(state: Outgoing) -> dict[str, object]:
    item: dict[str, object] = {"id_sms": state.id_sms, "time": state.time, "state": state.status}
    if state.sms is not None:
        item["sms"] = state.sms
    if state.viber is not None:
        item["viber"] = state.viber
    return item


def build_push(states: Iterable[Outgoing], flavour: Flavour, root: str = "response") -> bytes:
    """The document the provider POSTs: the page's XML shape, or the JSON array."""
    if flavour is Flavour.JSON:
        return orjson.dumps([_state_json(s) for s in states])
    body = "".join(map(_state_xml, states))
    return XML_DECLARATION + f"<{root}>{body}\n</{root}>\n".encode()


def _ids(raw_ids: Iterable[object], findings: list[Finding]) -> tuple[int, ...]:
    seen: dict[int, None] = {}
    for raw in raw_ids:
        try:
            value = parse_id(raw)
        except InvalidState as exc:
            findings.append(Finding("bad_id", str(exc)))
            continue
        if value in seen:
            findings.append(Finding("repeated_id", f"id_sms {value} echoed twice", value))
        seen[value] = None
    return tuple(seen)


def _read_xml(body: bytes, findings: list[Finding]) -> tuple[int, ...]:
    if not body.removeprefix(b"\xef\xbb\xbf").lstrip().startswith(b"<?xml"):
        findings.append(Finding("no_declaration", "the answer has no XML declaration"))
    try:
        root = parse_document(body)
    except PushRejected as exc:
        findings.append(Finding("unparseable", exc.message))
        return ()
    name = etree.QName(root).localname
    if name != "response":
        findings.append(Finding("wrong_root", f"root element is <{name}>, expected <response>"))
    for error in root.iter("error"):
        findings.append(Finding("error", (error.text or "").strip()))
    return _ids((e.text for e in root.iter("id_sms")), findings)


def _read_json(body: bytes, findings: list[Finding]) -> tuple[int, ...]:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        findings.append(Finding("unparseable", f"the answer is not valid JSON: {exc}"))
        return ()
    if not isinstance(document, list):
        findings.append(Finding("wrong_shape", "the answer is not a JSON array"))
        return ()
    raw: list[object] = []
    for item in document:
        if isinstance(item, dict) and "id_sms" in item:
            raw.append(item["id_sms"])
        else:
            findings.append(Finding("wrong_shape", f"not an {{'id_sms': …}} object: {item!r}"))
    return _ids(raw, findings)


def read_answer(body: bytes, flavour: Flavour, pushed: Iterable[int] = ()) -> Answer:
    """What a receiver's answer acknowledged; ids it was not pushed are findings, not ids."""
    findings: list[Finding] = []
    ids = _read_json(body, findings) if flavour is Flavour.JSON else _read_xml(body, findings)
    sent = set(pushed)
    if sent:
        for value in ids:
            if value not in sent:
                findings.append(Finding("unknown_id", f"id_sms {value} was not pushed", value))
        ids = tuple(i for i in ids if i in sent)
    return Answer(ids, tuple(findings))
