"""Raw ASGI hello-world: the throughput ceiling the receiver is measured against.

It reads the request body fully (as the receiver must) and answers a tiny XML
document, so the only work left is uvicorn's HTTP handling. Serve it with:

    uvicorn bench.hello:app --loop uvloop --http httptools --no-access-log --log-level warning
"""

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

BODY = b'<?xml version="1.0" encoding="utf-8" ?>\n<response></response>'
HEADERS = [
    (b"content-type", b"application/xml; charset=utf-8"),
    (b"content-length", str(len(BODY)).encode()),
]


async def _drain(receive: Receive) -> None:
    """Consume the request body so the ceiling includes reading it."""
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)


async def app(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
    """Answer every HTTP request with 200 and a fixed XML body."""
    if scope["type"] == "lifespan":
        await _lifespan(receive, send)
        return
    await _drain(receive)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


async def _lifespan(receive: Receive, send: Send) -> None:
    """Acknowledge startup and shutdown so uvicorn does not log a warning."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
