"""Reading statuses back: the query API, health and metrics."""

from __future__ import annotations

from typing import Any

import orjson
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from webcom_status.errors import StorageError
from webcom_status.receiver.views import message_json, reject_json, stats_json
from webcom_status.storage import Storage

MAX_PAGE = 1000
MAX_ID = 2**63 - 1  # the largest id a signed 64-bit column holds; no message is above it


def json_response(content: Any, status_code: int = 200) -> Response:
    """A JSON response serialised by orjson."""
    return Response(orjson.dumps(content), status_code, media_type="application/json")


def _storage(request: Request) -> Storage:
    storage: Storage = request.app.state.storage
    return storage


def _int_param(request: Request, name: str, default: int, upper: int) -> int:
    raw = request.query_params.get(name, str(default))
    if not (raw.isascii() and raw.isdigit()):
        raise ValueError(f"{name} must be a non-negative integer")
    return min(int(raw), upper)


async def get_message(request: Request) -> Response:
    """``GET /api/messages/{id_sms}``: the current state and its history."""
    id_sms: int = request.path_params["id_sms"]
    message = await _storage(request).message(id_sms) if id_sms <= MAX_ID else None
    if message is None:
        return json_response({"error": f"no status was received for id_sms {id_sms}"}, 404)
    return json_response(message_json(message))


async def list_rejects(request: Request) -> Response:
    """``GET /api/rejects?after=ID&limit=N``: what was refused, oldest first."""
    try:
        after = _int_param(request, "after", 0, MAX_ID)
        limit = _int_param(request, "limit", 100, MAX_PAGE)
    except ValueError as exc:
        return json_response({"error": str(exc)}, 400)
    rejects = await _storage(request).rejects(after, limit)
    return json_response([reject_json(r) for r in rejects])


async def get_stats(request: Request) -> Response:
    """``GET /api/stats``: counts of messages, events, unknown statuses, rejects."""
    return json_response(stats_json(await _storage(request).stats()))


async def healthz(request: Request) -> Response:
    """``GET /healthz``: 200 when the database answers and takes writes, else 503."""
    try:
        await _storage(request).ping()
    except StorageError as exc:
        return json_response({"status": "unavailable", "error": str(exc)}, 503)
    return json_response({"status": "ok"})


async def metrics(request: Request) -> Response:
    """``GET /metrics``: Prometheus text format."""
    body = generate_latest(request.app.state.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)


async def storage_failed(request: Request, exc: Exception) -> Response:
    """Any read that the database could not answer."""
    return json_response({"error": f"the database is unavailable: {exc}"}, 503)


routes = [
    Route("/api/messages/{id_sms:int}", get_message),
    Route("/api/rejects", list_rejects),
    Route("/api/stats", get_stats),
    Route("/healthz", healthz),
    Route("/metrics", metrics),
]
