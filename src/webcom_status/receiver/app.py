"""The receiver as one ASGI app: the webhook on a fast path, the rest on Starlette."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import os
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.types import Receive, Scope, Send

from webcom_status.config import ReceiverSettings
from webcom_status.errors import ConfigError, StorageError
from webcom_status.receiver import access, sender_api
from webcom_status.receiver.api import json_response, routes, storage_failed
from webcom_status.receiver.metrics import ReceiverMetrics
from webcom_status.receiver.retention import prune_periodically
from webcom_status.receiver.webhook import Webhook
from webcom_status.storage import Storage, open_storage, outbox_for

SETTINGS_ENV = "WEBCOM_STATUS_SETTINGS_JSON"


def is_api_path(path: str) -> bool:
    """Whether the path is under ``/api``: the routes ``--api-token`` guards."""
    return path == "/api" or path.startswith("/api/")


def bearer_ok(scope: Scope, token: str) -> bool:
    """Whether the request carries ``Authorization: Bearer <token>`` (constant time)."""
    header = next((v for k, v in scope["headers"] if k == b"authorization"), b"")
    scheme, _, given = header.partition(b" ")
    return scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), token.encode())


class ReceiverApp:
    """ASGI app: ``POST /webhook``, ``/api/...``, ``/healthz``, ``/metrics``.

    The storage is opened on startup (lifespan) and closed on shutdown, after
    the server has finished the requests in flight. Pass ``storage`` to use
    one the caller owns; it is then left open. The sender's outbox lives in
    the same database and shares the storage's connections.

    With ``api_token`` set, every ``/api/`` route (the webhook, ``/healthz``
    and ``/metrics`` aside) needs ``Authorization: Bearer <token>``; without
    it ``/api/`` is open to whoever reaches the port.
    """

    def __init__(self, settings: ReceiverSettings, storage: Storage | None = None) -> None:
        self.settings = settings
        self.metrics = ReceiverMetrics()
        self._given = storage
        self.webhook: Webhook | None = None
        self.api = Starlette(
            routes=[*routes, *sender_api.routes],
            lifespan=self._lifespan,
            exception_handlers={StorageError: storage_failed, **sender_api.exception_handlers},
        )
        self.api.state.metrics = self.metrics
        self.api.state.settings = settings
        self.api.state.outbox = None
        if storage is not None:
            self._attach(storage)

    def _attach(self, storage: Storage) -> None:
        self.api.state.storage = storage
        # The outbox shares the storage: it is never closed on its own, as that
        # would close the storage under the webhook.
        with contextlib.suppress(ConfigError):  # a storage of another kind: no sender API
            self.api.state.outbox = outbox_for(storage)
        self.webhook = Webhook(self.settings, storage, self.metrics)

    @contextlib.asynccontextmanager
    async def _lifespan(self, _: Starlette) -> AsyncIterator[None]:
        async with contextlib.AsyncExitStack() as stack:
            storage = self._given
            if storage is None:
                storage = await open_storage(
                    self.settings.db,
                    busy_timeout_ms=self.settings.busy_timeout_ms,
                    synchronous=self.settings.synchronous,
                    pool_size=self.settings.pool_size,
                )
                stack.push_async_callback(storage.close)
                self._attach(storage)
            if self.settings.prune_older_than is not None:
                task = asyncio.create_task(prune_periodically(storage, self.settings))
                stack.push_async_callback(_stop, task)
            yield

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and access.is_webhook_path(scope["path"]):
            if self.webhook is None:
                raise RuntimeError("the receiver's storage is not open: run it with lifespan on")
            await self.webhook(scope, receive, send)
            return
        token = self.settings.api_token
        if (
            token is not None
            and scope["type"] == "http"
            and is_api_path(scope["path"])
            and not bearer_ok(scope, token)
        ):
            refusal = json_response({"error": "Authorization: Bearer <api token> is required"}, 401)
            refusal.headers["www-authenticate"] = 'Bearer realm="webcom-status"'
            await refusal(scope, receive, send)
            return
        await self.api(scope, receive, send)


async def _stop(task: asyncio.Task[None]) -> None:
    """Cancel a background task and wait until it has stopped (before the storage closes)."""
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


def create_app_from_environment() -> ReceiverApp:
    """The app with the settings ``webcom-status serve --workers N`` hands its workers."""
    return create_app(ReceiverSettings.from_json(os.environ[SETTINGS_ENV]))


def create_app(
    settings: ReceiverSettings | None = None, storage: Storage | None = None
) -> ReceiverApp:
    """The receiver's ASGI app, for ``webcom-status serve`` or any ASGI server."""
    return ReceiverApp(settings or ReceiverSettings(), storage)
