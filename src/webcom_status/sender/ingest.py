"""States to enqueue, read from JSON, JSON Lines or CSV.

Every format carries the fields of the JSON push: ``id_sms``, ``state``
(``status`` is accepted too), ``time`` (``""`` when absent), and the
optional channels ``sms`` and ``viber``.

- **JSON**: a list of objects, or ``{"states": [...]}``.
- **JSON Lines**: one such object per line; blank lines are skipped.
- **CSV**: a header row naming the columns (``id_sms,state,time,sms,viber``,
  in any order; ``time``, ``sms`` and ``viber`` may be left out), then one
  state per row; an empty ``sms`` or ``viber`` cell means the channel is
  absent, an empty ``time`` cell no time.

Every problem raises :class:`~webcom_status.errors.InvalidOutgoing` naming
where it is (``line 3: …`` or ``index 2: …``). JSON Lines and CSV are read
as a stream, so a file of any size is checked in constant memory; JSON is
read whole.
"""

from __future__ import annotations

import csv
import enum
from collections.abc import Iterable, Iterator
from pathlib import PurePath
from typing import IO, Any

import orjson

from webcom_status.errors import InvalidOutgoing
from webcom_status.protocol import Outgoing
from webcom_status.protocol._fields import InvalidState, parse_id
from webcom_status.sender.outbox import check

FIELDS = ("id_sms", "state", "time", "sms", "viber")
_ALIASES = {"status": "state"}
_BOM = b"\xef\xbb\xbf"
_SNIFF = 1 << 16  # bytes read at most to tell JSON from JSON Lines


class Format(enum.StrEnum):
    """The formats states are read from."""

    JSON = "json"
    JSONL = "jsonl"
    CSV = "csv"


EXTENSIONS = {
    ".json": Format.JSON,
    ".jsonl": Format.JSONL,
    ".ndjson": Format.JSONL,
    ".csv": Format.CSV,
}


def format_of(path: str) -> Format | None:
    """The format a file name's extension names, ``None`` for any other."""
    return EXTENSIONS.get(PurePath(path).suffix.lower())


def state_from(item: object, where: str) -> Outgoing:
    """One state from a JSON object (or a CSV row as one), checked; ``where`` prefixes errors."""
    if not isinstance(item, dict):
        raise InvalidOutgoing(f"{where}: expected an object with id_sms and state, got {item!r}")
    fields: dict[str, Any] = {}
    for key, value in item.items():
        name = _ALIASES.get(key, key)
        if name not in FIELDS:
            raise InvalidOutgoing(
                f"{where}: unknown field {key!r}; the fields are {', '.join(FIELDS)}"
            )
        if name in fields:
            raise InvalidOutgoing(f"{where}: give state or status, not both")
        fields[name] = value
    for required in ("id_sms", "state"):
        if fields.get(required) is None:
            raise InvalidOutgoing(f"{where}: {required} is missing")
    try:
        id_sms = parse_id(fields["id_sms"])
    except InvalidState as exc:
        raise InvalidOutgoing(f"{where}: {exc}") from None
    time = fields.get("time")
    status = fields["state"]
    state = Outgoing(
        id_sms, status, "" if time is None else time, fields.get("sms"), fields.get("viber")
    )
    try:
        return check(state)
    except InvalidOutgoing as exc:
        raise InvalidOutgoing(f"{where}: {exc}") from None


def from_json(value: object) -> list[Outgoing]:
    """The states of a parsed JSON value: a list of objects, or ``{"states": [...]}``."""
    items = value
    if isinstance(value, dict):
        if "id_sms" in value:
            raise InvalidOutgoing(
                'expected a list of states or {"states": [...]}, got one state '
                "(one object per line is JSON Lines)"
            )
        if set(value) != {"states"}:
            raise InvalidOutgoing('expected a list of states or {"states": [...]}')
        items = value["states"]
    if not isinstance(items, list):
        raise InvalidOutgoing('expected a list of states or {"states": [...]}')
    return [state_from(item, f"index {index}") for index, item in enumerate(items)]


def from_json_bytes(data: bytes | str) -> list[Outgoing]:
    """The states of a JSON document (see :func:`from_json`)."""
    if isinstance(data, bytes):
        data = data.removeprefix(_BOM)
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidOutgoing(f"not JSON: {exc}") from None
    return from_json(value)


def iter_jsonl(lines: Iterable[bytes | str]) -> Iterator[Outgoing]:
    """The states of JSON Lines, one object per line; blank lines are skipped."""
    for number, line in enumerate(lines, 1):
        text = line.removeprefix(_BOM) if isinstance(line, bytes) else line.removeprefix("\ufeff")
        if not text.strip():
            continue
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise InvalidOutgoing(f"line {number}: not JSON: {exc}") from None
        yield state_from(value, f"line {number}")


def _text_lines(lines: Iterable[bytes | str]) -> Iterator[str]:
    for number, line in enumerate(lines, 1):
        if isinstance(line, str):
            yield line.removeprefix("\ufeff") if number == 1 else line
            continue
        try:
            yield line.removeprefix(_BOM).decode() if number == 1 else line.decode()
        except UnicodeDecodeError:
            raise InvalidOutgoing(f"line {number}: not UTF-8") from None


def _header(row: list[str], line: int) -> list[str]:
    names = [_ALIASES.get(cell.strip().lower(), cell.strip().lower()) for cell in row]
    for name in names:
        if name not in FIELDS:
            raise InvalidOutgoing(
                f"line {line}: unknown column {name!r}; "
                f"the header row names the columns: {','.join(FIELDS)}"
            )
    if len(set(names)) != len(names):
        raise InvalidOutgoing(f"line {line}: a column is named twice: {','.join(row)}")
    if not {"id_sms", "state"} <= set(names):
        raise InvalidOutgoing(
            f"line {line}: the header row must name at least id_sms and state, "
            f"e.g. {','.join(FIELDS)}"
        )
    return names


def iter_csv(lines: Iterable[bytes | str]) -> Iterator[Outgoing]:
    """The states of CSV with a header row; blank rows are skipped."""
    reader = csv.reader(_text_lines(lines), strict=True)
    header: list[str] | None = None
    while True:
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise InvalidOutgoing(f"line {reader.line_num}: not CSV: {exc}") from None
        if not any(cell.strip() for cell in row):
            continue
        if header is None:
            header = _header(row, reader.line_num)
            continue
        if len(row) != len(header):
            raise InvalidOutgoing(
                f"line {reader.line_num}: {len(row)} cells, but the header names {len(header)}"
            )
        cells = zip(header, row, strict=True)
        item = {name: cell if cell.strip() else None for name, cell in cells}
        yield state_from(item, f"line {reader.line_num}")


def sniff(head: bytes) -> Format:
    """The format of a document from its first bytes.

    ``[`` first is JSON; ``{`` first is JSON Lines when the first line is a
    whole object that is not ``{"states": ...}``, else JSON; anything else is CSV.
    """
    text = head.removeprefix(_BOM).lstrip()
    if text.startswith(b"["):
        return Format.JSON
    if not text.startswith(b"{"):
        return Format.CSV
    first = text.split(b"\n", 1)[0]
    try:
        value = orjson.loads(first)
    except orjson.JSONDecodeError:
        return Format.JSON
    return Format.JSON if isinstance(value, dict) and "states" in value else Format.JSONL


def sniff_stream(stream: IO[bytes]) -> Format:
    """:func:`sniff` on the start of a seekable binary stream, which is left at its start."""
    start = stream.tell()
    head = stream.read(_SNIFF)
    stream.seek(start)
    return sniff(head)


def read_states(stream: IO[bytes], fmt: Format) -> Iterator[Outgoing]:
    """The states of a binary stream in ``fmt``, one at a time (JSON is read whole)."""
    if fmt is Format.JSON:
        yield from from_json_bytes(stream.read())
    elif fmt is Format.JSONL:
        yield from iter_jsonl(stream)
    else:
        yield from iter_csv(stream)
