"""Parsing a pushed XML document, safely.

lxml is set up to never resolve entities, never load a DTD and never touch
the network; on top of that any document carrying a DTD (and so any entity
declaration) is refused as a whole, before parsing when the declaration is
visible in the bytes and after parsing in every other encoding.
"""

from __future__ import annotations

import threading
from datetime import tzinfo

from lxml import etree

from webcom_status.errors import PushRejected
from webcom_status.model import Reject, State
from webcom_status.protocol._fields import InvalidState, build_state

ROOTS = frozenset({"response", "request"})
_DTD_MARKERS = (b"<!DOCTYPE", b"<!ENTITY", b"<!doctype")
_local = threading.local()


def _parser() -> etree.XMLParser:
    # lxml parsers keep state between documents: one per thread.
    parser: etree.XMLParser | None = getattr(_local, "parser", None)
    if parser is None:
        parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
            remove_comments=True,
            remove_pis=True,
        )
        _local.parser = parser
    return parser


def parse_document(body: bytes) -> etree._Element:
    """The root of a well-formed XML document without any DTD, else ``PushRejected``."""
    # Every marker starts with "<!": one scan clears the usual document.
    if b"<!" in body and any(marker in body for marker in _DTD_MARKERS):
        raise PushRejected("DTDs and entity declarations are not accepted")
    try:
        root = etree.fromstring(body, _parser())
    except (etree.XMLSyntaxError, ValueError) as exc:
        raise PushRejected(f"body is not well-formed XML: {exc}") from None
    docinfo = root.getroottree().docinfo
    if docinfo.doctype or docinfo.internalDTD is not None:
        raise PushRejected("DTDs and entity declarations are not accepted")
    return root


def _root(body: bytes) -> etree._Element:
    root = parse_document(body)
    if root.tag in ROOTS:
        return root  # no namespace: the usual document
    name = etree.QName(root).localname
    if name not in ROOTS:
        raise PushRejected(f"root element is <{name}>, expected <response> or <request>")
    return root


def _fragment(element: etree._Element) -> bytes:
    return etree.tostring(element, encoding="utf-8", with_tail=False)


def _state(element: etree._Element, zone: tzinfo) -> State:
    if len(element):
        raise InvalidState("state has child elements")
    get = element.get
    return build_state(
        get("id_sms"),
        status=element.text,
        sms=get("sms"),
        viber=get("viber"),
        time=get("time"),
        zone=zone,
    )


def parse_xml(body: bytes, zone: tzinfo) -> tuple[list[State], list[Reject]]:
    """The states and the rejected fragments of an XML push."""
    states: list[State] = []
    rejects: list[Reject] = []
    for element in _root(body):
        tag = element.tag
        if not isinstance(tag, str):
            continue  # entity references left unresolved carry no state
        if tag != "state" and etree.QName(tag).localname != "state":
            reason = f"unexpected element <{etree.QName(element).localname}>"
            rejects.append(Reject("state", reason, _fragment(element)))
            continue
        try:
            states.append(_state(element, zone))
        except InvalidState as exc:
            id_raw = element.get("id_sms")
            rejects.append(Reject("state", str(exc), _fragment(element), id_raw))
    return states, rejects
