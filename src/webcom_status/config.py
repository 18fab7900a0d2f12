"""Settings of the service, from flags or the environment (``WEBCOM_STATUS_*``)."""

from __future__ import annotations

import ipaddress
import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
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


_DURATION = re.compile(r"^\s*([0-9]+)\s*([smhdw])\s*$", re.IGNORECASE)
MAX_DURATION = timedelta(days=36500)
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> timedelta:
    """A duration such as ``90d``, ``12h``, ``30m``, ``45s`` or ``2w``."""
    match = _DURATION.match(text)
    if not match or int(match.group(1)) <= 0:
        raise ConfigError(f"not a duration: {text!r}; use a number and s, m, h, d or w, e.g. 90d")
    seconds = int(match.group(1)) * _SECONDS[match.group(2).lower()]
    if seconds > MAX_DURATION.total_seconds():
        raise ConfigError(f"duration {text!r} is longer than {MAX_DURATION.days} days")
    return timedelta(seconds=seconds)


def parse_since(text: str, now: datetime) -> datetime:
    """An instant: ISO 8601 (UTC when it has no offset), or a duration back from ``now``.

    ``2h`` is two hours before ``now``; ``2024-05-01T12:00:00+03:00`` and
    ``2024-05-01`` (midnight UTC) are themselves.
    """
    if _DURATION.match(text):
        return now - parse_duration(text)
    try:
        instant = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"not a time: {text!r}; use ISO 8601 (2024-05-01T12:00:00Z) or a duration such as 2h"
        ) from None
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=UTC)


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
    pool_size: int = 4
    prune_older_than: timedelta | None = None
    prune_interval: timedelta = timedelta(hours=1)
    api_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.token is not None and not re.fullmatch(r"[A-Za-z0-9._~-]{16,}", self.token):
            raise ConfigError(
                "the token must be at least 16 characters of A-Z a-z 0-9 . _ ~ - "
                "(it is a URL path segment); generate one with: "
                "python -c 'import secrets; print(secrets.token_urlsafe(24))'"
            )
        if self.api_token is not None and not re.fullmatch(r"[\x21-\x7e]{16,}", self.api_token):
            raise ConfigError(
                "the API token must be at least 16 printable ASCII characters without spaces; "
                "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(24))'"
            )
        if self.max_body <= 0:
            raise ConfigError("max body must be positive")
        if self.pool_size <= 0:
            raise ConfigError("the pool size must be positive")

    def to_json(self) -> str:
        """The settings as JSON, to hand them to worker processes."""
        return json.dumps(
            {
                "db": self.db,
                "timezone": self.timezone.key,
                "max_body": self.max_body,
                "token": self.token,
                "basic_auth": list(self.basic_auth) if self.basic_auth else None,
                "allow_ips": [str(n) for n in self.allow_ips],
                "busy_timeout_ms": self.busy_timeout_ms,
                "synchronous": self.synchronous,
                "pool_size": self.pool_size,
                "prune_older_than": _seconds(self.prune_older_than),
                "prune_interval": _seconds(self.prune_interval),
                "api_token": self.api_token,
            }
        )

    @classmethod
    def from_json(cls, text: str) -> ReceiverSettings:
        """The inverse of :meth:`to_json`."""
        data = json.loads(text)
        prune = data["prune_older_than"]
        return cls(
            db=data["db"],
            timezone=parse_zone(data["timezone"]),
            max_body=data["max_body"],
            token=data["token"],
            basic_auth=tuple(data["basic_auth"]) if data["basic_auth"] else None,
            allow_ips=tuple(parse_network(n) for n in data["allow_ips"]),
            busy_timeout_ms=data["busy_timeout_ms"],
            synchronous=data["synchronous"],
            pool_size=data["pool_size"],
            prune_older_than=None if prune is None else timedelta(seconds=prune),
            prune_interval=timedelta(seconds=data["prune_interval"]),
            api_token=data.get("api_token"),
        )


def _seconds(value: timedelta | None) -> float | None:
    return None if value is None else value.total_seconds()
