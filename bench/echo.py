"""The fast receivers the dispatcher is measured against, each its own process.

``echo``: a raw ASGI app that acknowledges every id_sms of a push (XML or
JSON), found with a regular expression rather than parsed, so that the
dispatcher, not the receiver, is what the benchmark measures::

    uvicorn --app-dir bench echo:app --loop uvloop --http httptools --no-access-log

``--blackhole PORT``: a TCP server that accepts connections, reads, and never
answers: an endpoint that is down without refusing connections.
"""

import argparse
import asyncio
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

XML_ID = re.compile(rb'id_sms="(\d+)"')
JSON_ID = re.compile(rb'"id_sms":(\d+)')
DECLARATION = b'<?xml version="1.0" encoding="utf-8"?>\n'


async def _body(receive: Receive) -> bytes:
    chunks = []
    more = True
    while more:
        message = await receive()
        chunks.append(message.get("body", b""))
        more = message.get("more_body", False)
    return b"".join(chunks)


def answer(body: bytes) -> tuple[bytes, bytes]:
    """The acknowledgement of every id in ``body``, in the push's flavour."""
    if body.lstrip().startswith(b"["):
        ids = JSON_ID.findall(body)
        return b"[" + b",".join(b'{"id_sms":' + i + b"}" for i in ids) + b"]", b"application/json"
    items = b"".join(b"<id_sms>" + i + b"</id_sms>" for i in XML_ID.findall(body))
    return DECLARATION + b"<response>" + items + b"</response>", b"text/xml; charset=utf-8"


async def app(scope: MutableMapping[str, Any], receive: Receive, send: Send) -> None:
    """Acknowledge every pushed id."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["method"] == "GET":
        body, kind = b"ok", b"text/plain"
    else:
        body, kind = answer(await _body(receive))
    headers = [(b"content-type", kind), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def blackhole(port: int) -> None:
    """Accept, read, never answer."""

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--blackhole", type=int, metavar="PORT", required=True)
    asyncio.run(blackhole(parser.parse_args().blackhole))
