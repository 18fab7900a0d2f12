"""Settings of the service, from flags or the environment (``WEBCOM_STATUS_*``)."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from webcom_status.errors import ConfigError

DEFAULT_DB = "sqlite:///webcom-status.db"
DEFAULT_TIMEZONE = "Europe/Moscow"
DEFAULT_MAX_BODY = 16 * 1024 * 1024
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_SIZE = re.compile(r"^\s*([0-9]+)\s*([kmg]i?b?|b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3}


def parse_size(text: str) -> int:
    """Bytes from ``16777216``, ``16MiB``, ``512k`` and the like (powers of 1024)."""
    match = _SIZE.match(text)
    if not match:
        raise ConfigError(f"not a size: {text!r}; use bytes or a suffix such as 16MiB")
    unit = (match.group(2) or "")[:1].lower()
    size = int(match.group(1)) * _UNITS[unit]
    if size <= 0:
        raise ConfigError("a size must be positive")
    return size


def parse_zone(name: str) -> ZoneInfo:
    """An IANA time zone such as ``Europe/Moscow``."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder, e.g. 'Europe'
        raise ConfigError(
            f"unknown time zone {name!r}; use an IANA name such as Europe/Moscow"
        ) from None


def parse_basic_auth(text: str) -> tuple[str, str]:
    """``user:password`` for HTTP Basic."""
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise ConfigError("basic auth must be given as user:password")
    return user, password


def parse_network(text: str) -> IPNetwork:
    """An address or CIDR block, e.g. ``203.0.113.0/24``."""
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ConfigError(f"not an IP address or CIDR block: {text!r}") from None


@dataclass(frozen=True)
class ReceiverSettings:
    """Everything the receiver needs to know, validated."""

    db: str = DEFAULT_DB
    timezone: ZoneInfo = field(default_factory=lambda: ZoneInfo(DEFAULT_TIMEZONE))
    max_body: int = DEFAULT_MAX_BODY
    token: str | None = None
    basic_auth: tuple[str, str] | None = None
    allow_ips: tuple[IPNetwork, ...] = ()
    busy_timeout_ms: int = 5000
    synchronous: str = "FULL"

    def __post_init__(self) -> None:
        if self.token is not None and not re.fullmatch(r"[A-Za-z0-9._~-]{16,}", self.token):
            raise ConfigError(
                "the token must be at least 16 characters of A-Z a-z 0-9 . _ ~ - "
                "(it is a URL path segment); generate one with: "
                "python -c 'import secrets; print(secrets.token_urlsafe(24))'"
            )
        if self.max_body <= 0:
            raise ConfigError("max body must be positive")
