"""Parsing a pushed JSON document: ``[{"id_sms": 1, "time": "…", "state": "…"}]``."""

from __future__ import annotations

import json
from datetime import tzinfo

import orjson

from webcom_status.errors import PushRejected
from webcom_status.model import Reject, State
from webcom_status.protocol._fields import InvalidState, build_state


def _state(item: object, zone: tzinfo) -> State:
    if not isinstance(item, dict):
        raise InvalidState("item is not a JSON object")
    get = item.get
    return build_state(
        get("id_sms"),
        status=get("state"),
        sms=get("sms"),
        viber=get("viber"),
        time=get("time"),
        zone=zone,
    )


def _dump(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _id_raw(item: object) -> str | None:
    # The id as the provider wrote it: a string's content, otherwise its JSON text.
    if not isinstance(item, dict) or "id_sms" not in item:
        return None
    raw = item["id_sms"]
    return raw if isinstance(raw, str) else _dump(raw)


def _exact_items(body: bytes, fallback: list[object]) -> list[object]:
    """The items again through the standard library, whose integers are exact.

    orjson reads an integer beyond 64 bits as a float; a kept reject must show
    what the provider sent. Only documents with a rejected item pay for this.
    """
    try:
        items = json.loads(body)
    except (ValueError, RecursionError):
        return fallback
    return items if isinstance(items, list) and len(items) == len(fallback) else fallback


def parse_json(body: bytes, zone: tzinfo) -> tuple[list[State], list[Reject]]:
    """The states and the rejected items of a JSON push."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise PushRejected(f"body is not valid JSON: {exc}") from None
    if not isinstance(document, list):
        raise PushRejected("JSON push must be an array of states")
    states: list[State] = []
    bad: list[tuple[int, str]] = []
    for index, item in enumerate(document):
        try:
            states.append(_state(item, zone))
        except InvalidState as exc:
            bad.append((index, str(exc)))
    if not bad:
        return states, []
    items = _exact_items(body, document)
    rejects = [
        Reject("state", reason, _dump(items[i]).encode(), _id_raw(items[i])) for i, reason in bad
    ]
    return states, rejects
