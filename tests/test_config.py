"""Settings parsing: each bad value is a ``ConfigError`` that says what to write instead."""

from __future__ import annotations

import ipaddress
import json
from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest

from webcom_status.config import (
    DEFAULT_MAX_BODY,
    DEFAULT_TIMEZONE,
    ReceiverSettings,
    parse_basic_auth,
    parse_duration,
    parse_network,
    parse_size,
    parse_zone,
)
from webcom_status.errors import ConfigError

KIB, MIB, GIB = 1024, 1024**2, 1024**3


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("1", 1),
        ("16777216", 16 * MIB),
        ("512b", 512),
        ("512B", 512),
        ("512k", 512 * KIB),
        ("512K", 512 * KIB),
        ("512kb", 512 * KIB),
        ("512KiB", 512 * KIB),
        ("16Ki", 16 * KIB),
        ("16m", 16 * MIB),
        ("16MB", 16 * MIB),
        ("16MiB", 16 * MIB),
        ("16mib", 16 * MIB),
        ("2g", 2 * GIB),
        ("2GiB", 2 * GIB),
        (" 16 MiB ", 16 * MIB),
        ("016k", 16 * KIB),
    ],
)
def test_parse_size_accepts_bytes_and_binary_suffixes(text: str, size: int) -> None:
    """Plain bytes or k/m/g with optional ``i`` and ``b``, all powers of 1024."""
    assert parse_size(text) == size


@pytest.mark.parametrize(
    "text",
    ["", " ", "MiB", "-1", "1.5M", "16 MiBs", "16t", "16TB", "16 kib b", "1e6", "0x10", "16 M B"],
)
def test_parse_size_refuses_anything_else(text: str) -> None:
    """Fractions, signs, unknown units and stray text are refused with a hint."""
    with pytest.raises(ConfigError, match=r"not a size: .*16MiB"):
        parse_size(text)


@pytest.mark.parametrize("text", ["0", "0k", "0MiB", "000"])
def test_parse_size_refuses_zero(text: str) -> None:
    """A size of zero would refuse every body."""
    with pytest.raises(ConfigError, match="positive"):
        parse_size(text)


@pytest.mark.parametrize("name", ["Europe/Moscow", "UTC", "Asia/Vladivostok", "Etc/GMT-3"])
def test_parse_zone_accepts_iana_names(name: str) -> None:
    """Any IANA zone name gives that zone."""
    assert parse_zone(name) == ZoneInfo(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Moscow",
        "MSK+3",
        "Europe/Atlantis",
        "europe/moscow ",
        " Europe/Moscow",
        "Europe",
        "Europe/",
        "Europe/Moscow/",
        "../../etc/passwd",
        "/etc/localtime",
        "Europe/Moscow\x00",
    ],
)
def test_parse_zone_refuses_unknown_names(name: str) -> None:
    """Unknown names, folders and paths are a ``ConfigError``, never an OS error."""
    with pytest.raises(ConfigError, match=r"unknown time zone .*Europe/Moscow"):
        parse_zone(name)


@pytest.mark.parametrize(
    ("text", "pair"),
    [
        ("user:password", ("user", "password")),
        ("webcom:pa:ss:word", ("webcom", "pa:ss:word")),
        ("u:p", ("u", "p")),
        ("пользователь:пароль", ("пользователь", "пароль")),
        ("user: spaced ", ("user", " spaced ")),
    ],
)
def test_parse_basic_auth_splits_at_the_first_colon(text: str, pair: tuple[str, str]) -> None:
    """The user name ends at the first colon; the password may hold colons."""
    assert parse_basic_auth(text) == pair


@pytest.mark.parametrize("text", ["", ":", "user", "user:", ":password", "::"])
def test_parse_basic_auth_needs_both_parts(text: str) -> None:
    """A missing user or password is refused."""
    with pytest.raises(ConfigError, match="user:password"):
        parse_basic_auth(text)


@pytest.mark.parametrize(
    ("text", "network"),
    [
        ("203.0.113.7", "203.0.113.7/32"),
        ("203.0.113.0/24", "203.0.113.0/24"),
        ("203.0.113.9/24", "203.0.113.0/24"),
        (" 10.0.0.0/8 ", "10.0.0.0/8"),
        ("::1", "::1/128"),
        ("2001:db8::/32", "2001:db8::/32"),
        ("2001:db8::1/32", "2001:db8::/32"),
        ("0.0.0.0/0", "0.0.0.0/0"),
    ],
)
def test_parse_network_accepts_addresses_and_blocks(text: str, network: str) -> None:
    """An address is a one-address block; host bits of a block are masked off."""
    assert parse_network(text) == ipaddress.ip_network(network)


@pytest.mark.parametrize(
    "text", ["", "localhost", "203.0.113", "203.0.113.256", "10.0.0.0/33", "::1/129", "1.2.3.4/x"]
)
def test_parse_network_refuses_anything_else(text: str) -> None:
    """Host names and malformed addresses are refused."""
    with pytest.raises(ConfigError, match="not an IP address or CIDR block"):
        parse_network(text)


def test_receiver_settings_defaults() -> None:
    """Without settings: Moscow time, a 16 MiB body limit, no access control."""
    settings = ReceiverSettings()
    assert settings.timezone == ZoneInfo(DEFAULT_TIMEZONE) == ZoneInfo("Europe/Moscow")
    assert settings.max_body == DEFAULT_MAX_BODY == 16 * MIB
    assert (settings.token, settings.basic_auth, settings.allow_ips) == (None, None, ())


@pytest.mark.parametrize(
    "token",
    [
        "a" * 16,
        "0123456789abcdef",
        "Zx9._~-Zx9._~-Zx",
        "kF3q9vXyLw2bN8mPz4RtH7sJ",
        "-" * 40,
        "A" * 200,
    ],
)
def test_token_of_16_url_safe_characters_is_accepted(token: str) -> None:
    """At least 16 characters of the URL path-safe set."""
    assert ReceiverSettings(token=token).token == token


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a" * 15,
        "short",
        "a" * 15 + "/",
        "a" * 16 + "/",
        "a" * 16 + " ",
        "a" * 16 + "\n",
        "a" * 16 + "%2F",
        "a" * 16 + "?x=1",
        "a" * 16 + "#",
        "a" * 16 + "+",
        "токен" * 4,
    ],
)
def test_token_outside_the_url_safe_set_is_refused(token: str) -> None:
    """Short tokens and tokens with characters that change a URL path are refused."""
    with pytest.raises(ConfigError, match=r"at least 16 characters.*secrets\.token_urlsafe"):
        ReceiverSettings(token=token)


@pytest.mark.parametrize("max_body", [0, -1])
def test_max_body_must_be_positive(max_body: int) -> None:
    """A limit of zero or less would refuse every push."""
    with pytest.raises(ConfigError, match="positive"):
        ReceiverSettings(max_body=max_body)


@pytest.mark.parametrize(
    ("text", "duration"),
    [
        ("1s", timedelta(seconds=1)),
        ("45s", timedelta(seconds=45)),
        ("30m", timedelta(minutes=30)),
        ("12h", timedelta(hours=12)),
        ("90d", timedelta(days=90)),
        ("2w", timedelta(weeks=2)),
        ("90D", timedelta(days=90)),
        ("1H", timedelta(hours=1)),
        ("1W", timedelta(weeks=1)),
        (" 5 m ", timedelta(minutes=5)),
        ("007s", timedelta(seconds=7)),
        ("3600s", timedelta(hours=1)),
        ("36500d", timedelta(days=36500)),
    ],
)
def test_parse_duration_accepts_a_whole_number_and_one_unit(text: str, duration: timedelta) -> None:
    """A positive whole number and one of s, m, h, d, w (any case, spaces around)."""
    assert parse_duration(text) == duration


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "90",
        "d",
        "s1",
        "1.5h",
        "1,5h",
        "-1d",
        "+1d",
        "1y",
        "1ms",
        "1M s",
        "90 days",
        "1h30m",
        "1d 1h",
        "P1D",
        "1e3s",
        "٣d",
    ],
)
def test_parse_duration_refuses_anything_else(text: str) -> None:
    """Fractions, signs, other units, compound and ISO forms are refused with an example."""
    with pytest.raises(ConfigError, match=r"not a duration: .*90d"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["0s", "0d", "000w"])
def test_parse_duration_refuses_zero(text: str) -> None:
    """An age or interval of zero would prune everything, or prune in a busy loop."""
    with pytest.raises(ConfigError, match="not a duration"):
        parse_duration(text)


@pytest.mark.parametrize("text", ["9999999999d", "99999999999999999999s", "2000000000w"])
def test_parse_duration_refuses_values_beyond_any_date(text: str) -> None:
    """A duration too long for a ``timedelta`` is a ``ConfigError``, not an ``OverflowError``."""
    with pytest.raises(ConfigError, match="duration"):
        parse_duration(text)


FULL_SETTINGS = ReceiverSettings(
    db="postgresql://webcom:s3cret@db.example:5432/statuses",
    timezone=ZoneInfo("Asia/Vladivostok"),
    max_body=512 * KIB,
    token="kF3q9vXyLw2bN8mPz4RtH7sJ",
    basic_auth=("webcom", "pa:ss word"),
    allow_ips=(
        ipaddress.ip_network("203.0.113.0/24"),
        ipaddress.ip_network("198.51.100.7/32"),
        ipaddress.ip_network("2001:db8::/32"),
    ),
    busy_timeout_ms=250,
    synchronous="NORMAL",
    pool_size=3,
    prune_older_than=timedelta(days=90),
    prune_interval=timedelta(minutes=5),
)


@pytest.mark.parametrize(
    "settings",
    [
        ReceiverSettings(),
        FULL_SETTINGS,
        ReceiverSettings(basic_auth=("пользователь", "пароль"), prune_interval=timedelta(hours=2)),
        ReceiverSettings(
            prune_older_than=timedelta(seconds=1), prune_interval=timedelta(seconds=1)
        ),
    ],
    ids=["defaults", "everything-set", "unicode-credentials", "one-second-retention"],
)
def test_settings_survive_the_trip_to_worker_processes(settings: ReceiverSettings) -> None:
    """``from_json(to_json())`` gives equal settings: what ``serve --workers`` hands each worker."""
    assert ReceiverSettings.from_json(settings.to_json()) == settings


def test_settings_json_is_plain_json_with_durations_in_seconds() -> None:
    """The environment carries plain JSON: the zone by name, networks as CIDR, ages in seconds."""
    data = json.loads(FULL_SETTINGS.to_json())
    assert data["timezone"] == "Asia/Vladivostok"
    assert data["basic_auth"] == ["webcom", "pa:ss word"]
    assert data["allow_ips"] == ["203.0.113.0/24", "198.51.100.7/32", "2001:db8::/32"]
    assert (data["prune_older_than"], data["prune_interval"]) == (90 * 86400, 300)
    assert json.loads(ReceiverSettings().to_json())["prune_older_than"] is None


def test_settings_from_json_validate_like_the_constructor() -> None:
    """A worker refuses settings the command line would have refused (a short token)."""
    data = json.loads(ReceiverSettings().to_json()) | {"token": "short"}
    with pytest.raises(ConfigError, match="at least 16 characters"):
        ReceiverSettings.from_json(json.dumps(data))
