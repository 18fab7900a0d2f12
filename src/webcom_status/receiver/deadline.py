"""A deadline for receiving each whole request: headers and body.

uvicorn times out only the idle gap after a response (``timeout_keep_alive``).
A connection that sends nothing, or sends a request a few bytes at a time,
is held open for ever, and each such request can hold up to ``--max-body``
bytes in memory: a slow-client (slowloris) attack on a URL that must be
public for the provider to reach it. This protocol is uvicorn's own
httptools one, with one timer per connection: a request not received whole
within ``request_timeout`` seconds of its first byte (or of the connection,
for the first one), plus one second for every ``RATE_ALLOWANCE`` bytes of
it received, is answered ``408`` and the connection closed. The allowance
lets a large body on a modest link arrive (16 MiB at 100 KiB/s needs 164 s
and is granted 286 s); a client trickling below that rate gains less time
than it spends. Handling the request after it has arrived, and the
response, are not limited.

The receiver acknowledges nothing of a request that timed out: the
provider pushes it again.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger(__name__)
DEFAULT_REQUEST_TIMEOUT = 30.0  # seconds
RATE_ALLOWANCE = 64 * 1024  # bytes received that add one second to a request's deadline

_MESSAGE = b"the request did not arrive whole in time"
_TIMED_OUT = (
    b"HTTP/1.1 408 Request Timeout\r\n"
    b"content-type: text/plain; charset=utf-8\r\n"
    b"connection: close\r\n"
    b"content-length: " + str(len(_MESSAGE)).encode() + b"\r\n\r\n" + _MESSAGE
)


class RequestDeadline(HttpToolsProtocol):
    """uvicorn's httptools protocol, with a deadline for each request to arrive."""

    def __init__(self, *args: Any, request_timeout: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._request_timeout = request_timeout
        # When the request being received began (loop time); None between requests.
        self._receiving_since: float | None = None
        # uvicorn's request/response cycle when that request began: still the
        # same object at the deadline means its headers never completed.
        self._cycle_at_begin: object | None = None
        # Bytes received since the last request was complete (the next one's, so far).
        self._received = 0
        self._deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._receiving_since = self.loop.time()
        self._deadline = self.loop.call_later(self._request_timeout, self._check)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._received += len(data)
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._cycle_at_begin = self.cycle
        if self._receiving_since is None:
            self._receiving_since = self.loop.time()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._receiving_since = None
        self._received = 0

    def _check(self) -> None:
        """The timer: close a connection whose request is late, else look again later."""
        if self.transport.is_closing():
            return
        since = self._receiving_since
        waited = 0.0 if since is None else self.loop.time() - since
        allowed = self._request_timeout + self._received / RATE_ALLOWANCE
        if waited < allowed:
            # In time so far, or between requests (where uvicorn's keep-alive
            # timeout applies): look again when this request's time is up.
            self._deadline = self.loop.call_later(allowed - waited, self._check)
            return
        peer = f"{self.client[0]}:{self.client[1]}" if self.client else "an unknown address"
        log.warning(
            "closed a connection from %s: no whole request within %.1f s (%d bytes came)",
            peer,
            allowed,
            self._received,
        )
        if self.cycle is self._cycle_at_begin or not self.cycle.response_started:
            # No answer to this request has begun (one may have, early, as a 413).
            self.transport.write(_TIMED_OUT)
        self.transport.close()


def request_deadline(request_timeout: float) -> partial[RequestDeadline]:
    """The protocol factory to pass as uvicorn's ``http`` setting."""
    return partial(RequestDeadline, request_timeout=request_timeout)
