"""Settings parsing: each bad value is a ``ConfigError`` that says what to write instead."""

from __future__ import annotations

import ipaddress
from zoneinfo import ZoneInfo

import pytest

from webcom_status.config import (
    DEFAULT_MAX_BODY,
    DEFAULT_TIMEZONE,
    ReceiverSettings,
    parse_basic_auth,
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
