"""The sender's HTTP API: endpoints, the outbox's ingest, deliveries, redelivery.

Every answer is JSON; every error is ``{"error": "..."}`` with a 4xx or 5xx
status: 400 for an invalid request (nothing changed), 404 for an unknown
endpoint or delivery, 409 for an endpoint name already taken, 413 for a body
over ``--max-body``, 503 when the database fails (nothing changed).
``POST /api/outbox/{endpoint}`` answers 202 only once its states are
committed. These routes write: protect them with ``serve --api-token``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from webcom_status import config
from webcom_status.errors import (
    ConfigError,
    InvalidOutgoing,
    UnknownEndpoint,
    WebcomStatusError,
)
from webcom_status.receiver._body import ClientGone, read_body
from webcom_status.receiver.api import MAX_ID, MAX_PAGE, json_response
from webcom_status.sender import ingest
from webcom_status.sender.model import DeliveryState
from webcom_status.sender.outbox import Outbox
from webcom_status.sender.views import (
    check_name,
    delivery_json,
    endpoint_json,
    endpoint_settings,
    tally_json,
)

PAUSED_BY_HAND = "paused by an operator"
_REDELIVER = ("id", "endpoint", "since", "all")


class ApiError(WebcomStatusError):
    """A request the API refuses, with its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _outbox(request: Request) -> Outbox:
    outbox: Outbox | None = request.app.state.outbox
    if outbox is None:
        raise ApiError(404, "this storage has no outbox")
    return outbox


async def _body(request: Request) -> bytes:
    """The request's body, at most ``--max-body`` bytes (413 beyond)."""
    limit: int = request.app.state.settings.max_body
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"request body is larger than the limit of {limit} bytes")
    try:
        body = await read_body(request.receive, limit)
    except ClientGone:
        raise ApiError(400, "the client went away before the body was complete") from None
    if body.too_large:
        raise ApiError(413, f"request body is larger than the limit of {limit} bytes")
    return body.data


async def _json_object(request: Request, *, empty_ok: bool = False) -> dict[str, Any]:
    """The request's body as a JSON object; ``{}`` for no body when ``empty_ok``."""
    data = await _body(request)
    if empty_ok and not data.strip():
        return {}
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise ApiError(400, f"not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ApiError(400, "expected a JSON object")
    return value


def _int_param(request: Request, name: str, default: int, upper: int) -> int:
    raw = request.query_params.get(name, str(default))
    if not (raw.isascii() and raw.isdigit()):
        raise ApiError(400, f"{name} must be a non-negative integer")
    return min(int(raw), upper)


async def list_endpoints(request: Request) -> Response:
    """``GET /api/endpoints``: every endpoint, by name (never a password)."""
    return json_response([endpoint_json(e) for e in await _outbox(request).endpoints()])


async def add_endpoint(request: Request) -> Response:
    """``POST /api/endpoints``: ``{"name", "url", ...settings}``; 201 and the endpoint."""
    body = await _json_object(request)
    name = check_name(body.pop("name", None))
    settings = endpoint_settings(body)
    try:
        added = await _outbox(request).add_endpoint(name, settings)
    except ConfigError as exc:  # the settings are valid: the name is taken
        raise ApiError(409, str(exc)) from None
    return json_response(endpoint_json(added), 201)


async def get_endpoint(request: Request) -> Response:
    """``GET /api/endpoints/{name}``."""
    return json_response(endpoint_json(await _outbox(request).endpoint(_name(request))))


async def update_endpoint(request: Request) -> Response:
    """``PUT /api/endpoints/{name}``: the settings given change, the others stay."""
    outbox = _outbox(request)
    name = _name(request)
    body = await _json_object(request)
    current = await outbox.endpoint(name)
    settings = endpoint_settings(body, current.settings)
    return json_response(endpoint_json(await outbox.update_endpoint(name, settings)))


async def remove_endpoint(request: Request) -> Response:
    """``DELETE /api/endpoints/{name}``: the endpoint and all its deliveries."""
    name = _name(request)
    removed = await _outbox(request).remove_endpoint(name)
    return json_response({"removed": name, "deliveries": removed})


async def pause_endpoint(request: Request) -> Response:
    """``POST /api/endpoints/{name}/pause``, optionally ``{"reason": "..."}``."""
    body = await _json_object(request, empty_ok=True)
    reason = body.get("reason", PAUSED_BY_HAND)
    if not isinstance(reason, str):
        raise ApiError(400, "reason must be a string")
    paused = await _outbox(request).set_paused(_name(request), reason.strip() or PAUSED_BY_HAND)
    return json_response(endpoint_json(paused))


async def resume_endpoint(request: Request) -> Response:
    """``POST /api/endpoints/{name}/resume``."""
    return json_response(endpoint_json(await _outbox(request).set_paused(_name(request), None)))


async def enqueue(request: Request) -> Response:
    """``POST /api/outbox/{endpoint}``: states to push; 202 once they are committed.

    The body is a JSON list of states or ``{"states": [...]}``. Invalid JSON
    or any invalid state: 400, and nothing of the request is enqueued.
    """
    outbox = _outbox(request)
    endpoint = request.path_params["endpoint"]
    await outbox.endpoint(endpoint)  # 404 before reading the body
    states = ingest.from_json_bytes(await _body(request))
    changed = await outbox.enqueue(endpoint, states) if states else 0
    return json_response({"enqueued": len(states), "changed": changed}, 202)


async def list_deliveries(request: Request) -> Response:
    """``GET /api/deliveries?endpoint=&state=&after=&limit=``: by id; dead ones with attempts."""
    outbox = _outbox(request)
    endpoint = request.query_params.get("endpoint") or None
    raw_state = request.query_params.get("state") or None
    try:
        state = None if raw_state is None else DeliveryState(raw_state)
    except ValueError:
        raise ApiError(400, "state must be pending, delivered or dead") from None
    after = _int_param(request, "after", 0, MAX_ID)
    limit = _int_param(request, "limit", 100, MAX_PAGE)
    if endpoint is not None:
        await outbox.endpoint(endpoint)  # 404 for a name that is not there
    found = await outbox.deliveries(endpoint, state, after, limit)
    return json_response(
        [
            delivery_json(
                d, await outbox.attempts(d.id) if d.status is DeliveryState.DEAD else None
            )
            for d in found
        ]
    )


async def get_delivery(request: Request) -> Response:
    """``GET /api/deliveries/{id}``: one delivery with its failed attempts."""
    outbox = _outbox(request)
    delivery_id: int = request.path_params["id"]
    found = []
    if 0 < delivery_id <= MAX_ID:
        found = await outbox.deliveries(after_id=delivery_id - 1, limit=1)
    if not found or found[0].id != delivery_id:
        raise ApiError(404, f"no delivery {delivery_id}")
    return json_response(delivery_json(found[0], await outbox.attempts(delivery_id)))


async def redeliver(request: Request) -> Response:
    """``POST /api/redeliver``: exactly one of ``{"id"}``, ``{"endpoint"}``, ``{"since"}``,
    ``{"all": true}``; dead letters back in the queue, and how many."""
    body = await _json_object(request)
    if len(body) != 1 or next(iter(body)) not in _REDELIVER:
        raise ApiError(400, 'give exactly one of "id", "endpoint", "since", "all"')
    key, value = next(iter(body.items()))
    options: dict[str, Any] = {}
    if key == "id":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_ID:
            raise ApiError(400, "id must be a positive integer")
        options["delivery_id"] = value
    elif key == "endpoint":
        if not isinstance(value, str):
            raise ApiError(400, "endpoint must be a name")
        options["endpoint"] = value
    elif key == "since":
        if not isinstance(value, str):
            raise ApiError(400, "since must be ISO 8601 or a duration such as 2h")
        options["since"] = config.parse_since(value, datetime.now(UTC)).timestamp()
    elif value is not True:
        raise ApiError(400, 'all must be true: {"all": true}')
    count = await _outbox(request).redeliver(**options)
    return json_response({"redelivered": count})


async def tally(request: Request) -> Response:
    """``GET /api/tally``: per endpoint, how many deliveries are pending, delivered, dead."""
    return json_response([tally_json(t) for t in await _outbox(request).tally()])


def _name(request: Request) -> str:
    name: str = request.path_params["name"]
    return name


async def api_error(_request: Request, exc: Exception) -> Response:
    """A refused request, with its own status."""
    status = exc.status if isinstance(exc, ApiError) else 400
    return json_response({"error": str(exc)}, status)


async def unknown_endpoint(_request: Request, exc: Exception) -> Response:
    """An endpoint name that is not there: 404."""
    return json_response({"error": str(exc)}, 404)


exception_handlers = {
    ApiError: api_error,
    ConfigError: api_error,
    InvalidOutgoing: api_error,
    UnknownEndpoint: unknown_endpoint,
}

routes = [
    Route("/api/endpoints", list_endpoints, methods=["GET"]),
    Route("/api/endpoints", add_endpoint, methods=["POST"]),
    Route("/api/endpoints/{name}", get_endpoint, methods=["GET"]),
    Route("/api/endpoints/{name}", update_endpoint, methods=["PUT"]),
    Route("/api/endpoints/{name}", remove_endpoint, methods=["DELETE"]),
    Route("/api/endpoints/{name}/pause", pause_endpoint, methods=["POST"]),
    Route("/api/endpoints/{name}/resume", resume_endpoint, methods=["POST"]),
    Route("/api/outbox/{endpoint}", enqueue, methods=["POST"]),
    Route("/api/deliveries", list_deliveries, methods=["GET"]),
    Route("/api/deliveries/{id:int}", get_delivery, methods=["GET"]),
    Route("/api/redeliver", redeliver, methods=["POST"]),
    Route("/api/tally", tally, methods=["GET"]),
]
