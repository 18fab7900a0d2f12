"""The rows both engines store, as one JSON document per request.

Serialising in C (orjson) in the request's own thread keeps the per-state
work in Python small; the database unpacks the document in SQL (``json_each``
on SQLite, ``json_to_recordset`` on PostgreSQL), and a group of requests is
one statement: their arrays joined.
"""

from __future__ import annotations

from collections.abc import Sequence

import orjson

from webcom_status import rules
from webcom_status.model import State


def events_json(states: Sequence[State]) -> str:
    """``[[id_sms, status, sms, viber, time_raw, time_utc], …]``; absent channels are ``""``.

    ``time_utc`` is the UTC time as ``YYYY-MM-DD HH:MM:SS``, or null.
    """
    return orjson.dumps(
        [
            (
                s.id_sms,
                s.status,
                s.sms or "",
                s.viber or "",
                s.time_raw,
                rules.time_key(s.time_utc) or None,
            )
            for s in states
        ]
    ).decode()


def events_records(states: Sequence[State]) -> str:
    """The same rows as objects, ``{"i", "s", "m", "v", "r", "t"}``: PostgreSQL's
    ``json_to_recordset`` unpacks them in one pass, faster than indexing arrays."""
    return orjson.dumps(
        [
            {
                "i": s.id_sms,
                "s": s.status,
                "m": s.sms or "",
                "v": s.viber or "",
                "r": s.time_raw,
                "t": rules.time_key(s.time_utc) or None,
            }
            for s in states
        ]
    ).decode()


def join_arrays(arrays: Sequence[str]) -> str:
    """One JSON array holding the elements of every (non-empty) array given."""
    return "[" + ",".join(a[1:-1] for a in arrays if len(a) > 2) + "]"
