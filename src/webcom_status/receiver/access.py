"""Access control for the webhook, which the protocol leaves to the receiver.

Three independent guards, each optional: a secret path segment
(``/webhook/SECRET``), HTTP Basic credentials, and an IP allowlist. Secrets
are compared in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
from dataclasses import dataclass

from starlette.types import Scope

from webcom_status.config import IPNetwork, ReceiverSettings

WEBHOOK_PATH = "/webhook"


@dataclass(frozen=True, slots=True)
class Denied:
    """Why a request is refused, and how."""

    status: int
    message: str
    headers: tuple[tuple[bytes, bytes], ...] = ()


NOT_FOUND = Denied(404, "not found")


def is_webhook_path(path: str) -> bool:
    """Whether the path is under ``/webhook``: the receiver's to answer."""
    return path == WEBHOOK_PATH or path.startswith(WEBHOOK_PATH + "/")


def _path_ok(path: str, token: str | None) -> bool:
    path = path.removesuffix("/")
    expected = WEBHOOK_PATH if token is None else f"{WEBHOOK_PATH}/{token}"
    return hmac.compare_digest(path.encode("utf-8", "replace"), expected.encode())


def _client_allowed(scope: Scope, networks: tuple[IPNetwork, ...]) -> bool:
    client = scope.get("client")
    if not client:
        return False
    try:
        address = ipaddress.ip_address(client[0])
    except ValueError:
        return False
    return any(address in network for network in networks)


def _basic_ok(scope: Scope, user: str, password: str) -> bool:
    header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
    scheme, _, encoded = header.partition(b" ")
    if scheme.lower() != b"basic":
        return False
    try:
        given = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return False
    expected = f"{user}:{password}".encode()
    return hmac.compare_digest(given, expected)


def check(scope: Scope, settings: ReceiverSettings) -> Denied | None:
    """``None`` when the request may reach the webhook, else how to refuse it."""
    if settings.allow_ips and not _client_allowed(scope, settings.allow_ips):
        return Denied(403, "this address may not push statuses")
    if not _path_ok(scope["path"], settings.token):
        return NOT_FOUND
    if settings.basic_auth is not None and not _basic_ok(scope, *settings.basic_auth):
        return Denied(
            401,
            "HTTP Basic credentials are required",
            ((b"www-authenticate", b'Basic realm="webcom-status"'),),
        )
    return None
