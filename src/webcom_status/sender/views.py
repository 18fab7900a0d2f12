"""The sender's JSON shapes, shared by the HTTP API and the CLI, and their inverse.

Times are ISO 8601 strings in UTC (the model holds seconds since the epoch).
An endpoint's password is never shown: ``password_set`` says whether it has one.
A delivery's ``status``, ``time``, ``sms`` and ``viber`` are the state to push;
its ``state`` is where the delivery stands (``pending``, ``delivered``, ``dead``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from webcom_status.config import parse_basic_auth
from webcom_status.errors import ConfigError
from webcom_status.model import Flavour
from webcom_status.sender.model import Attempt, Delivery, Endpoint, EndpointSettings, Tally

_SPACE_OR_CONTROL = re.compile(r"[\x00-\x20\x7f]")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SETTINGS = (
    "url",
    "flavour",
    "batch_size",
    "concurrency",
    "rate_limit",
    "connect_timeout",
    "read_timeout",
    "basic_auth",
)
MAX_BATCH = 10_000
MAX_CONCURRENCY = 1000
MAX_RATE = 1_000_000.0
MAX_TIMEOUT = 3600.0


def iso(seconds: float | None) -> str | None:
    """Seconds since the epoch as ISO 8601 in UTC; ``None`` stays ``None``."""
    return None if seconds is None else datetime.fromtimestamp(seconds, UTC).isoformat()


def endpoint_json(endpoint: Endpoint) -> dict[str, Any]:
    """One endpoint, its settings and health; never its password."""
    settings = endpoint.settings
    return {
        "name": endpoint.name,
        "url": settings.url,
        "username": settings.username,
        "password_set": settings.password is not None,
        "flavour": settings.flavour.value,
        "batch_size": settings.batch_size,
        "concurrency": settings.concurrency,
        "rate_limit": settings.rate_limit,
        "connect_timeout": settings.connect_timeout,
        "read_timeout": settings.read_timeout,
        "created_at": iso(endpoint.created_at),
        "failing_since": iso(endpoint.failing_since),
        "paused": endpoint.paused_at is not None,
        "paused_at": iso(endpoint.paused_at),
        "pause_reason": endpoint.pause_reason,
    }


def attempt_json(attempt: Attempt) -> dict[str, Any]:
    """One failed attempt: its number in its round, when, and why."""
    return {"attempt": attempt.attempt, "at": iso(attempt.at), "error": attempt.error}


def delivery_json(delivery: Delivery, attempts: Iterable[Attempt] | None = None) -> dict[str, Any]:
    """One outbox row; with ``attempts``, its failed attempts as ``failed_attempts``."""
    state = delivery.state
    shown: dict[str, Any] = {
        "id": delivery.id,
        "endpoint": delivery.endpoint,
        "id_sms": state.id_sms,
        "status": state.status,
        "time": state.time,
        "sms": state.sms,
        "viber": state.viber,
        "state": delivery.status.value,
        "attempts": delivery.attempts,
        "last_error": delivery.last_error,
        "enqueued_at": iso(delivery.enqueued_at),
        "next_at": iso(delivery.next_at),
        "settled_at": iso(delivery.settled_at),
        "claimed": delivery.claimed,
    }
    if attempts is not None:
        shown["failed_attempts"] = [attempt_json(a) for a in attempts]
    return shown


def tally_json(tally: Tally) -> dict[str, Any]:
    """How many rows one endpoint has in each delivery state."""
    return {
        "endpoint": tally.endpoint,
        "pending": tally.pending,
        "delivered": tally.delivered,
        "dead": tally.dead,
    }


def check_name(name: object) -> str:
    """An endpoint name: 1 to 64 of ``A-Z a-z 0-9 . _ -``, starting with a letter or digit."""
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise ConfigError(
            f"not an endpoint name: {name!r}; use 1 to 64 of A-Z a-z 0-9 . _ - "
            "starting with a letter or digit"
        )
    return name


def endpoint_settings(
    changes: Mapping[str, object], base: EndpointSettings | None = None
) -> EndpointSettings:
    """``base`` with ``changes`` applied, every value checked; a new endpoint's without ``base``.

    The keys are those of :func:`endpoint_json` that can be set: ``url``,
    ``flavour``, ``batch_size``, ``concurrency``, ``rate_limit`` (``None``: no
    limit), ``connect_timeout``, ``read_timeout`` (seconds) and ``basic_auth``
    (``"user:password"``, or ``None`` for none). Credentials in the URL
    (``https://user:password@host/…``) are moved to ``basic_auth``. Anything
    invalid raises :class:`ConfigError` naming the field.
    """
    unknown = sorted(set(changes) - set(SETTINGS))
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]!r}; the settings are {', '.join(SETTINGS)}")
    if base is None and changes.get("url") is None:
        raise ConfigError("url is required")
    values = _credentials(changes)
    for name, convert in _CONVERTERS.items():
        if name in changes:
            values[name] = convert(name, changes[name])
    if base is None:
        return EndpointSettings(**values)
    return dataclasses.replace(base, **values)


def _credentials(changes: Mapping[str, object]) -> dict[str, Any]:
    """``url``, ``username`` and ``password`` of ``changes``: from the URL or ``basic_auth``."""
    values: dict[str, Any] = {}
    if "url" in changes:
        values["url"], credentials = _url(changes["url"])
        if credentials is not None:
            if "basic_auth" in changes:
                raise ConfigError("give the credentials once: in the URL or as basic_auth")
            values["username"], values["password"] = credentials
    if "basic_auth" in changes:
        auth = changes["basic_auth"]
        if auth is not None and not isinstance(auth, str):
            raise ConfigError(f"basic_auth must be 'user:password' or null, got {auth!r}")
        values["username"], values["password"] = (
            (None, None) if auth is None else parse_basic_auth(auth)
        )
    return values


def _url(value: object) -> tuple[str, tuple[str, str] | None]:
    if not isinstance(value, str) or not value or _SPACE_OR_CONTROL.search(value):
        raise ConfigError(f"not a URL: {value!r}; use http://host/path or https://host/path")
    try:
        parts = urlsplit(value)
        port = parts.port  # raises on a port that is not a number
    except ValueError:
        raise ConfigError(f"not a URL: {value!r}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"not an http(s) URL: {value!r}; use http://host/path or https://host/path"
        )
    if parts.fragment:
        raise ConfigError(f"a URL to push to has no #fragment: {value!r}")
    if parts.username is None and parts.password is None:
        return value, None
    if not parts.username or not parts.password:
        raise ConfigError("credentials in a URL must be user:password@")
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    netloc = host if port is None else f"{host}:{port}"
    bare = urlunsplit(parts._replace(netloc=netloc))
    return bare, (unquote(parts.username), unquote(parts.password))


def _flavour(_name: str, value: object) -> Flavour:
    if isinstance(value, str) and value.strip().lower() in ("xml", "json"):
        return Flavour(value.strip().lower())
    raise ConfigError(f"flavour must be xml or json, got {value!r}")


def _count(name: str, value: object) -> int:
    upper = _UPPER[name]
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= upper:
        raise ConfigError(f"{name} must be an integer from 1 to {upper:g}, got {value!r}")
    return value


def _positive(name: str, value: object) -> float:
    upper = _UPPER[name]
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 < value <= upper
    ):
        raise ConfigError(f"{name} must be a number above 0 and at most {upper:g}, got {value!r}")
    return float(value)


def _rate(name: str, value: object) -> float | None:
    return None if value is None else _positive(name, value)


_UPPER: dict[str, float] = {
    "batch_size": MAX_BATCH,
    "concurrency": MAX_CONCURRENCY,
    "rate_limit": MAX_RATE,
    "connect_timeout": MAX_TIMEOUT,
    "read_timeout": MAX_TIMEOUT,
}
_CONVERTERS: dict[str, Callable[[str, object], object]] = {
    "flavour": _flavour,
    "batch_size": _count,
    "concurrency": _count,
    "rate_limit": _rate,
    "connect_timeout": _positive,
    "read_timeout": _positive,
}
