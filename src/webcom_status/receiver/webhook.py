"""``POST /webhook``: validate, parse, store, answer.

An ``id_sms`` appears in the answer only after its state is committed; when
the database fails nothing is acknowledged and the provider pushes again.
"""

from __future__ import annotations

import dataclasses
import logging

from starlette.types import Receive, Scope, Send

from webcom_status import protocol, rules
from webcom_status.config import ReceiverSettings
from webcom_status.errors import BodyTooLarge, PushRejected, StorageError
from webcom_status.model import Flavour, Push, Reject
from webcom_status.receiver import access
from webcom_status.receiver._body import ClientGone, read_body
from webcom_status.receiver.metrics import ReceiverMetrics
from webcom_status.storage import Storage

log = logging.getLogger(__name__)
_TEXT = b"text/plain; charset=utf-8"


async def respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: bytes,
    headers: tuple[tuple[bytes, bytes], ...] = (),
) -> None:
    """Send a whole response."""
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _remote(scope: Scope) -> str | None:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else None


def _encoded(scope: Scope) -> PushRejected | None:
    """A refusal for a compressed (or otherwise encoded) body, which is not decoded.

    The protocol sends plain documents; parsing gzip bytes as XML would only
    say "not well-formed". RFC 9110 answers an unaccepted coding with 415.
    """
    for name, value in scope["headers"]:
        if name == b"content-encoding" and value.strip().lower() not in (b"", b"identity"):
            coding = value.decode("latin-1").strip()
            return PushRejected(
                f"Content-Encoding {coding!r} is not accepted: push the document uncompressed",
                http_status=415,
            )
    return None


class Webhook:
    """The ASGI endpoint the provider pushes to."""

    def __init__(
        self, settings: ReceiverSettings, storage: Storage, metrics: ReceiverMetrics
    ) -> None:
        self.settings = settings
        self.storage = storage
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        denied = access.check(scope, self.settings)
        if denied is not None:
            await respond(send, denied.status, denied.message.encode(), _TEXT, denied.headers)
            return
        if scope["method"] != "POST":
            headers = ((b"allow", b"POST"),)
            await respond(send, 405, b"the webhook takes POST", _TEXT, headers)
            return
        try:
            body = await read_body(receive, self.settings.max_body)
        except ClientGone:
            return
        if body.too_large:
            await self._refuse(scope, send, body.data, BodyTooLarge(self.settings.max_body))
            return
        encoded = _encoded(scope)
        if encoded is not None:
            await self._refuse(scope, send, body.data, encoded)
            return
        try:
            push = protocol.parse_push(body.data, self.settings.timezone)
        except PushRejected as exc:
            await self._refuse(scope, send, body.data, exc)
            return
        await self._store(scope, send, push)

    async def _store(self, scope: Scope, send: Send, push: Push) -> None:
        rejects = push.rejects
        if rejects:
            remote = _remote(scope)
            rejects = tuple(dataclasses.replace(r, remote=remote) for r in rejects)
        try:
            await self.storage.store(push.states, rejects)
        except StorageError as exc:
            log.error("push not acknowledged, the database failed: %s", exc)
            self.metrics.pushes_failed.inc()
            message = "the database is unavailable; nothing was stored, push again later"
            await respond(
                send,
                503,
                protocol.error(push.flavour, message),
                protocol.content_type(push.flavour),
            )
            return
        self._count(push)
        await respond(
            send,
            200,
            protocol.answer(push.flavour, push.acknowledge),
            protocol.content_type(push.flavour),
        )

    def _count(self, push: Push) -> None:
        self.metrics.pushes_stored.inc()
        self.metrics.stored.inc(len(push.states))
        if push.rejects:
            self.metrics.rejected.inc(len(push.rejects))
            log.warning(
                "%d state(s) of a push rejected: %s", len(push.rejects), push.rejects[0].reason
            )
        unknown = sum(1 for s in push.states if not rules.is_known(s.status))
        if unknown:
            self.metrics.unknown_status.inc(unknown)

    async def _refuse(self, scope: Scope, send: Send, raw: bytes, exc: PushRejected) -> None:
        flavour = protocol.detect(raw) if raw else Flavour.XML
        log.warning("push refused (%d): %s", exc.http_status, exc.message)
        self.metrics.pushes_refused.inc()
        reject = Reject("document", exc.message, raw, None, exc.http_status, _remote(scope))
        try:
            await self.storage.store((), (reject,))
        except StorageError as error:
            log.error("could not keep the refused document: %s", error)
        # After a 413 the rest of the body may still be on its way, and the
        # connection is closed rather than read on: say so (RFC 9110, 15.5.14).
        close = ((b"connection", b"close"),) if isinstance(exc, BodyTooLarge) else ()
        await respond(
            send,
            exc.http_status,
            protocol.error(flavour, exc.message),
            protocol.content_type(flavour),
            close,
        )
