"""The receiver's protocol work alone: the ceiling its storage design can approach.

The hello-world of ``hello.py`` plus exactly what the receiver does with a
push that is not storage: the safe XML parse and validation
(``protocol.parse_push``) and the answer (``protocol.answer``). Nothing is
stored, so no storage design can make the receiver faster than this server
on the same machine. Serve it with:

    uvicorn bench.parse_only:app --loop uvloop --http httptools --no-access-log --log-level warning
"""

from collections.abc import MutableMapping
from typing import Any
from zoneinfo import ZoneInfo

from echo import _body
from hello import Receive, Send, _lifespan
from webcom_status import protocol
from webcom_status.errors import PushRejected
from webcom_status.model import Flavour

ZONE = ZoneInfo("Europe/Moscow")


async def app(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
    """Parse every pushed document and answer with its ids, as the receiver does."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    raw = await _body(receive)
    status, flavour = 200, Flavour.XML
    if scope["method"] != "POST":  # the harness's readiness probe, GET /healthz
        body = b"ok"
    else:
        try:
            push = protocol.parse_push(raw, ZONE)
        except PushRejected as exc:
            status, body = exc.http_status, protocol.error(flavour, exc.message)
        else:
            flavour, body = push.flavour, protocol.answer(push.flavour, push.acknowledge)
    headers = [
        (b"content-type", protocol.content_type(flavour)),
        (b"content-length", str(len(body)).encode()),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
