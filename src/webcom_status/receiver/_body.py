"""Reading a request body without ever holding more than the limit."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.types import Receive


class ClientGone(Exception):
    """The client disconnected before the body was complete."""


@dataclass(frozen=True, slots=True)
class Body:
    """The bytes read, and whether the body went on past the limit."""

    data: bytes
    too_large: bool


async def read_body(receive: Receive, limit: int) -> Body:
    """Read the body; stop at ``limit`` bytes, keeping exactly the first ``limit``."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk: bytes = message.get("body", b"")
        if size + len(chunk) > limit:
            chunks.append(chunk[: limit - size])
            return Body(b"".join(chunks), too_large=True)
        if not message.get("more_body", False):
            if not chunks:
                return Body(chunk, too_large=False)
            chunks.append(chunk)
            return Body(b"".join(chunks), too_large=False)
        chunks.append(chunk)
        size += len(chunk)
