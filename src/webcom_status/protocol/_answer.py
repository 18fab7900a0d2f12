"""The receiver's answers, and reading them back (the sender's side)."""

from __future__ import annotations

from collections.abc import Iterable
from xml.sax.saxutils import escape

import orjson

from webcom_status.model import Flavour

XML_DECLARATION = b'<?xml version="1.0" encoding="utf-8" ?>\n'
XML_CONTENT_TYPE = b"text/xml; charset=utf-8"
JSON_CONTENT_TYPE = b"application/json"


def content_type(flavour: Flavour) -> bytes:
    """The ``Content-Type`` of an answer in ``flavour``."""
    return XML_CONTENT_TYPE if flavour is Flavour.XML else JSON_CONTENT_TYPE


def answer(flavour: Flavour, ids: Iterable[int]) -> bytes:
    """The acknowledgement listing ``ids``: each one counts as received."""
    if flavour is Flavour.JSON:
        return orjson.dumps([{"id_sms": i} for i in ids])
    body = b"".join(b"<id_sms>%d</id_sms>" % i for i in ids)
    return XML_DECLARATION + b"<response>" + body + b"</response>"


def error(flavour: Flavour, message: str) -> bytes:
    """The platform's error document, ``<response><error>text</error></response>``."""
    if flavour is Flavour.JSON:
        return orjson.dumps({"error": message})
    text = escape(message).encode("utf-8")
    return XML_DECLARATION + b"<response><error>" + text + b"</error></response>"
