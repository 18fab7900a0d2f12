"""Reading states to enqueue: JSON, JSON Lines, CSV; tables of good and bad inputs.

Every bad input raises ``InvalidOutgoing`` with a message naming where the
problem is (``index N`` in JSON, ``line N`` in JSON Lines and CSV).
"""

from __future__ import annotations

import io

import orjson
import pytest

from webcom_status.errors import InvalidOutgoing
from webcom_status.protocol import Outgoing
from webcom_status.sender.ingest import (
    Format,
    format_of,
    from_json,
    from_json_bytes,
    iter_csv,
    iter_jsonl,
    read_states,
    sniff,
    sniff_stream,
)

T = "2011-01-01 12:57:46"


def jsonl(text: str) -> list[Outgoing]:
    return list(iter_jsonl(io.BytesIO(text.encode())))


def csv_states(text: str | bytes) -> list[Outgoing]:
    data = text.encode() if isinstance(text, str) else text
    return list(iter_csv(io.BytesIO(data)))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([], []),
        ({"states": []}, []),
        (
            [{"id_sms": 3234, "time": T, "state": "deliver", "sms": "deliver"}],
            [Outgoing(3234, "deliver", T, "deliver")],
        ),
        (
            {"states": [{"id_sms": 3235, "time": T, "status": "read", "viber": "read"}]},
            [Outgoing(3235, "read", T, None, "read")],
        ),
        ([{"id_sms": 3237, "state": "send"}], [Outgoing(3237, "send", "")]),
        ([{"id_sms": "3238", "state": " send ", "time": None}], [Outgoing(3238, "send", "")]),
        (
            [{"id_sms": 1, "state": "deliver", "time": T, "sms": "", "viber": None}],
            [Outgoing(1, "deliver", T)],
        ),
        (
            [{"id_sms": 2, "state": "brand_new_value", "time": T}],
            [Outgoing(2, "brand_new_value", T)],
        ),
        (
            [{"id_sms": 2**63 - 1, "state": "deliver", "time": "2011-01-01T12:57:46+03:00"}],
            [Outgoing(2**63 - 1, "deliver", "2011-01-01T12:57:46+03:00")],
        ),
        (
            [{"id_sms": 1, "state": "send"}, {"id_sms": 1, "state": "deliver", "time": T}],
            [Outgoing(1, "send"), Outgoing(1, "deliver", T)],
        ),
    ],
    ids=[
        "empty-list",
        "empty-states",
        "wire-shape",
        "wrapped-status-alias",
        "time-defaults-to-empty",
        "id-as-digits-time-null",
        "empty-channel-is-absent",
        "unknown-status-kept",
        "largest-id-and-offset",
        "repeats-kept-in-order",
    ],
)
def test_json_good(value: object, expected: list[Outgoing]) -> None:
    """A list of objects or ``{"states": [...]}``; from a value and from bytes alike."""
    assert from_json(value) == expected
    assert from_json_bytes(orjson.dumps(value)) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (42, 'expected a list of states or {"states": [...]}'),
        ({"items": []}, 'expected a list of states or {"states": [...]}'),
        (
            {"id_sms": 1, "state": "send"},
            'expected a list of states or {"states": [...]}, got one state (one object per line',
        ),
        ({"states": [], "extra": 1}, 'expected a list of states or {"states": [...]}'),
        ({"states": {"id_sms": 1}}, 'expected a list of states or {"states": [...]}'),
        ([5], "index 0: expected an object with id_sms and state, got 5"),
        ([{"state": "deliver"}], "index 0: id_sms is missing"),
        ([{"id_sms": None, "state": "deliver"}], "index 0: id_sms is missing"),
        ([{"id_sms": 1}], "index 0: state is missing"),
        (
            [{"id_sms": 1, "state": "send"}, {"id_sms": "x", "state": "send"}],
            "index 1: id_sms is not an integer: 'x'",
        ),
        ([{"id_sms": 0, "state": "send"}], "index 0: id_sms must be positive, got 0"),
        ([{"id_sms": True, "state": "send"}], "index 0: id_sms is not an integer: True"),
        ([{"id_sms": 1.5, "state": "send"}], "index 0: id_sms is not an integer: 1.5"),
        ([{"id_sms": 2**63, "state": "send"}], "index 0: id_sms is too large"),
        ([{"id_sms": 1, "state": ""}], "index 0: id_sms 1: state is empty"),
        ([{"id_sms": 1, "state": 5}], "index 0: id_sms 1: state is not a string: 5"),
        ([{"id_sms": 1, "state": "de\nliver"}], "index 0: id_sms 1: state holds control"),
        ([{"id_sms": 1, "state": "send", "time": 5}], "index 0: id_sms 1: time is not a string"),
        (
            [{"id_sms": 1, "state": "deliver", "time": "yesterday"}],
            "index 0: id_sms 1: time is not 'YYYY-MM-DD HH:MM:SS': 'yesterday'",
        ),
        ([{"id_sms": 1, "state": "send", "sms": 3}], "index 0: id_sms 1: sms is not a string"),
        (
            [{"id_sms": 1, "state": "send", "status": "send"}],
            "index 0: give state or status, not both",
        ),
        (
            [{"id_sms": 1, "state": "send", "viber_status": "read"}],
            "index 0: unknown field 'viber_status'; the fields are id_sms, state, time, sms, viber",
        ),
    ],
)
def test_json_bad(value: object, message: str) -> None:
    """Each problem is an ``InvalidOutgoing`` that says where and what."""
    with pytest.raises(InvalidOutgoing) as raised:
        from_json(value)
    assert str(raised.value).startswith(message)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "not JSON"),
        (b"[{]", "not JSON"),
        (b'[{"id_sms": 1, "state": "send"}] trailing', "not JSON"),
        (b"\xff[]", "not JSON"),
    ],
)
def test_json_bytes_that_are_not_json(data: bytes, message: str) -> None:
    with pytest.raises(InvalidOutgoing, match=message):
        from_json_bytes(data)


def test_json_bytes_may_start_with_a_byte_order_mark() -> None:
    assert from_json_bytes(b'\xef\xbb\xbf[{"id_sms": 1, "state": "send"}]') == [Outgoing(1, "send")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("\n\n", []),
        ('{"id_sms": 1, "state": "send"}', [Outgoing(1, "send")]),
        (
            '{"id_sms": 1, "state": "send"}\r\n\r\n  \n{"id_sms": 2, "status": "read", '
            f'"time": "{T}", "viber": "read"}}\r\n',
            [Outgoing(1, "send"), Outgoing(2, "read", T, None, "read")],
        ),
        ('\ufeff{"id_sms": 3, "state": "deliver", "time": ""}\n', [Outgoing(3, "deliver")]),
    ],
    ids=["empty", "blank-lines", "one-line-no-newline", "crlf-and-blank-lines", "bom"],
)
def test_jsonl_good(text: str, expected: list[Outgoing]) -> None:
    """One object per line; blank lines skipped; CRLF and a BOM are fine."""
    assert jsonl(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"id_sms": 1, "state": "send"}\n{"id_sms": 2,\n', "line 2: not JSON"),
        ('\n\n{"id_sms": "x", "state": "send"}\n', "line 3: id_sms is not an integer: 'x'"),
        ("[1, 2]\n", "line 1: expected an object with id_sms and state, got [1, 2]"),
        ('{"id_sms": 1, "state": "send"} {"id_sms": 2, "state": "send"}\n', "line 1: not JSON"),
        ('{"id_sms": 7}\n', "line 1: state is missing"),
        ('{"id_sms": 7, "state": "deliver", "time": "2011-13-01 00:00:00"}', "line 1: id_sms 7"),
    ],
)
def test_jsonl_bad(text: str, message: str) -> None:
    with pytest.raises(InvalidOutgoing) as raised:
        jsonl(text)
    assert str(raised.value).startswith(message)


def test_jsonl_names_the_line_of_bytes_that_are_not_utf8() -> None:
    data = b'{"id_sms": 1, "state": "send"}\n{"id_sms": 2, "state": "\xff"}\n'
    with pytest.raises(InvalidOutgoing, match=r"^line 2: not JSON"):
        list(iter_jsonl(io.BytesIO(data)))


def test_jsonl_is_read_lazily() -> None:
    """States before a bad line come out first: the reader streams, line by line."""
    states = iter_jsonl(io.BytesIO(b'{"id_sms": 1, "state": "send"}\nnot json\n'))
    assert next(states) == Outgoing(1, "send")
    with pytest.raises(InvalidOutgoing, match=r"^line 2: "):
        next(states)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        ("id_sms,state,time,sms,viber\n", []),
        (
            f"id_sms,state,time,sms,viber\n3234,deliver,{T},deliver,\n3237,send,,send,\n",
            [Outgoing(3234, "deliver", T, "deliver"), Outgoing(3237, "send", "", "send")],
        ),
        (
            f"viber,id_sms,status,time\nread,3235,read,{T}\n",
            [Outgoing(3235, "read", T, None, "read")],
        ),
        ("id_sms,state\n1,send\n", [Outgoing(1, "send")]),
        (
            f"ID_SMS , State ,Time\r\n1,deliver,{T}\r\n\r\n2,send,\r\n",
            [
                Outgoing(1, "deliver", T),
                Outgoing(2, "send"),
            ],
        ),
        ('id_sms,state,time\n1,"deliver, late",\n', [Outgoing(1, "deliver, late")]),
        ("\ufeffid_sms,state\n1,send\n", [Outgoing(1, "send")]),
        ("id_sms,state,sms,viber\n1,send,  ,\n", [Outgoing(1, "send")]),
        ("\n\nid_sms,state\n\n1,send\n,\n", [Outgoing(1, "send")]),
    ],
    ids=[
        "empty",
        "header-only",
        "all-columns",
        "any-order-status-alias",
        "fewest-columns",
        "header-case-spaces-crlf",
        "quoted-comma",
        "bom",
        "blank-channel-cells",
        "blank-rows",
    ],
)
def test_csv_good(text: str, expected: list[Outgoing]) -> None:
    """A header row, then one state per row; empty channel cells are absent channels."""
    assert csv_states(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id,state\n1,send\n", "line 1: unknown column 'id'; the header row names the columns"),
        ("state,time\nsend,\n", "line 1: the header row must name at least id_sms and state"),
        ("id_sms,state,state\n1,send,send\n", "line 1: a column is named twice"),
        ("id_sms,status,state\n1,send,send\n", "line 1: a column is named twice"),
        ("id_sms,state\n1,send\n2,send,extra\n", "line 3: 3 cells, but the header names 2"),
        ("id_sms,state\n1\n", "line 2: 1 cells, but the header names 2"),
        ("id_sms,state\n1,send\n2,send\nx,send\n", "line 4: id_sms is not an integer: 'x'"),
        ("id_sms,state\n,send\n", "line 2: id_sms is missing"),
        ("id_sms,state\n5,\n", "line 2: state is missing"),
        (
            "id_sms,state,time\n5,deliver,01.01.2011\n",
            "line 2: id_sms 5: time is not 'YYYY-MM-DD HH:MM:SS'",
        ),
        ('id_sms,state\n1,"send\n', "line 2: not CSV: unexpected end of data"),
        ('id_sms,state\n1,"se"nd\n', "line 2: not CSV"),
    ],
)
def test_csv_bad(text: str, message: str) -> None:
    with pytest.raises(InvalidOutgoing) as raised:
        csv_states(text)
    assert str(raised.value).startswith(message)


def test_csv_names_the_line_of_bytes_that_are_not_utf8() -> None:
    with pytest.raises(InvalidOutgoing, match=r"^line 3: not UTF-8$"):
        csv_states(b"id_sms,state\n1,send\n2,d\xe9livr\xe9\n")


def test_csv_quoted_cell_over_two_lines_counts_both() -> None:
    """A line number is the line where the row ends."""
    with pytest.raises(InvalidOutgoing, match=r"^line 3: id_sms 1: state holds control"):
        csv_states('id_sms,state\n1,"de\nliver"\n')


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("states.json", Format.JSON),
        ("STATES.JSON", Format.JSON),
        ("a/b/states.jsonl", Format.JSONL),
        ("states.ndjson", Format.JSONL),
        ("states.csv", Format.CSV),
        ("states.txt", None),
        ("states", None),
        ("-", None),
    ],
)
def test_format_of_a_file_name(path: str, expected: Format | None) -> None:
    assert format_of(path) == expected


@pytest.mark.parametrize(
    ("head", "expected"),
    [
        (b'[{"id_sms": 1, "state": "send"}]', Format.JSON),
        (b'\n  [\n  {"id_sms": 1, "state": "send"}\n]', Format.JSON),
        (b'{"states": [{"id_sms": 1, "state": "send"}]}', Format.JSON),
        (b'{\n  "states": []\n}\n', Format.JSON),
        (b'{"id_sms": 1, "state": "send"}\n{"id_sms": 2, "state": "send"}\n', Format.JSONL),
        (b'\xef\xbb\xbf {"id_sms": 1, "state": "send"}', Format.JSONL),
        (b"id_sms,state\n1,send\n", Format.CSV),
        (b"", Format.CSV),
    ],
    ids=[
        "list",
        "list-after-space",
        "wrapped-one-line",
        "wrapped-pretty",
        "lines",
        "bom-then-line",
        "csv",
        "empty",
    ],
)
def test_sniff(head: bytes, expected: Format) -> None:
    """``[`` is JSON; ``{`` is JSON Lines unless it is ``{"states": ...}``; else CSV."""
    assert sniff(head) == expected


def test_sniff_stream_leaves_the_stream_where_it_was() -> None:
    stream = io.BytesIO(b'{"id_sms": 1, "state": "send"}\n')
    assert sniff_stream(stream) == Format.JSONL
    assert stream.tell() == 0


@pytest.mark.parametrize(
    ("fmt", "data"),
    [
        (Format.JSON, b'{"states": [{"id_sms": 1, "state": "send"}, {"id_sms": 2, "state": "x"}]}'),
        (Format.JSONL, b'{"id_sms": 1, "state": "send"}\n{"id_sms": 2, "state": "x"}\n'),
        (Format.CSV, b"id_sms,state\n1,send\n2,x\n"),
    ],
)
def test_read_states_in_each_format(fmt: Format, data: bytes) -> None:
    """The same two states, whichever the format."""
    states = list(read_states(io.BytesIO(data), fmt))
    assert states == [Outgoing(1, "send"), Outgoing(2, "x")]
