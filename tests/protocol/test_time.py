"""Reading the provider's status time: local wall clock in the account zone, to UTC."""

from __future__ import annotations

from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo

import pytest

from webcom_status.protocol import parse_time
from webcom_status.protocol._fields import InvalidState

MSK = ZoneInfo("Europe/Moscow")


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("raw", "zone", "expected"),
    [
        pytest.param("2011-01-01 12:57:46", MSK, utc("2011-01-01 09:57:46"), id="msk+3-2011"),
        pytest.param("2012-07-01 12:00:00", MSK, utc("2012-07-01 08:00:00"), id="msk+4-2012"),
        pytest.param("2020-07-01 12:00:00", MSK, utc("2020-07-01 09:00:00"), id="msk+3-2020"),
        pytest.param("2011-01-01 00:30:00", MSK, utc("2010-12-31 21:30:00"), id="previous-day"),
        pytest.param("2011-01-01T12:57:46", MSK, utc("2011-01-01 09:57:46"), id="T-separator"),
        pytest.param("  2011-01-01 12:57:46\n", MSK, utc("2011-01-01 09:57:46"), id="padded"),
        pytest.param("2011-01-01 12:57:46", UTC, utc("2011-01-01 12:57:46"), id="utc-zone"),
        pytest.param(
            "2011-01-01 12:57:46",
            ZoneInfo("Asia/Vladivostok"),
            utc("2011-01-01 02:57:46"),
            id="vladivostok",
        ),
        pytest.param("2011-01-01 12:57:46+00:00", MSK, utc("2011-01-01 12:57:46"), id="+00:00"),
        pytest.param("2011-01-01 12:57:46Z", MSK, utc("2011-01-01 12:57:46"), id="Z"),
        pytest.param("2011-01-01T12:57:46+05:00", MSK, utc("2011-01-01 07:57:46"), id="+05:00"),
        pytest.param("2011-01-01 12:57:46-02:30", MSK, utc("2011-01-01 15:27:46"), id="-02:30"),
        pytest.param(
            "2011-01-01 12:57:46.250",
            MSK,
            utc("2011-01-01 09:57:46.250"),
            id="fraction",
        ),
    ],
)
def test_time_is_read_in_zone_and_converted_to_utc(
    raw: str, zone: tzinfo, expected: datetime
) -> None:
    """No offset: the account zone applies; an explicit offset wins over it."""
    parsed = parse_time(raw, zone)
    assert parsed == expected
    assert parsed is not None
    assert parsed.utcoffset() is not None
    assert parsed.tzinfo is UTC


@pytest.mark.parametrize("raw", ["", " ", "\t\r\n"])
def test_empty_time_is_none(raw: str) -> None:
    """The ``send`` status carries ``time=""``: no time, not an error."""
    assert parse_time(raw, MSK) is None


@pytest.mark.parametrize(
    "raw",
    [
        "yesterday",
        "2011-01-01",
        "2011-01-01 12:57",
        "12:57:46",
        "01.01.2011 12:57:46",
        "2011-01-01_12:57:46",
        "2011/01/01 12:57:46",
        "2011-13-01 12:57:46",
        "2011-02-29 12:57:46",
        "2011-01-01 24:00:00",
        "2011-01-01 12:60:00",
        "2011-01-01 12:57:46 MSK",
        "2011-01-01 12:57:46+25:00",
        "0000-01-01 00:00:00",
        "0001-01-01 00:00:00",
        "9999-12-31 23:59:59-05:00",
        "1293886666",
    ],
)
def test_unreadable_time_is_an_invalid_state(raw: str) -> None:
    """Garbage, a date without a time or a time out of range rejects the state."""
    with pytest.raises(InvalidState, match="time is"):
        parse_time(raw, MSK)
