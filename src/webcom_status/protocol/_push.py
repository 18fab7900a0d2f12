"""One entry point for a pushed body: detect the flavour, parse, decide the answer."""

from __future__ import annotations

import contextlib
from datetime import tzinfo

from webcom_status.errors import PushRejected
from webcom_status.model import Flavour, Push, Reject, State
from webcom_status.protocol._fields import InvalidState, parse_id
from webcom_status.protocol._json import parse_json
from webcom_status.protocol._xml import parse_xml

_BOM = b"\xef\xbb\xbf"
_WHITESPACE = b" \t\r\n"
_tuple = tuple.__new__


def detect(body: bytes) -> Flavour:
    """JSON when the body starts with ``[`` or ``{``; everything else is read as XML."""
    head = body[:64].removeprefix(_BOM).lstrip(_WHITESPACE)
    return Flavour.JSON if head[:1] in (b"[", b"{") else Flavour.XML


def acknowledged(states: list[State], rejects: list[Reject]) -> tuple[int, ...]:
    """The ids to echo: each id with a stored state, once, in document order.

    An id that also has a rejected state in the same document is not echoed,
    so the provider pushes it again rather than count the bad state received.
    """
    if not rejects:
        return tuple(dict.fromkeys([s.id_sms for s in states]))
    withheld = set()
    for reject in rejects:
        with contextlib.suppress(InvalidState):
            withheld.add(parse_id(reject.id_sms_raw))
    seen = dict.fromkeys(s.id_sms for s in states if s.id_sms not in withheld)
    return tuple(seen)


def parse_push(body: bytes, zone: tzinfo) -> Push:
    """Parse a pushed document; :class:`PushRejected` refuses it as a whole."""
    if not body or body.isspace():
        raise PushRejected("body is empty")
    flavour = detect(body)
    if flavour is Flavour.JSON:
        states, rejects = parse_json(body.removeprefix(_BOM), zone)
    else:
        states, rejects = parse_xml(body, zone)
    return _tuple(Push, (flavour, tuple(states), tuple(rejects), acknowledged(states, rejects)))
