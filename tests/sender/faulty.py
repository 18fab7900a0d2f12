"""A receiver of the webhook that misbehaves on purpose, and records every push it gets.

A real HTTP server on 127.0.0.1 (uvicorn, a raw ASGI app), run in a
background thread by :class:`FaultyReceiver` or as its own process by
:class:`ReceiverProcess` (``python -m tests.sender.faulty --mode slow --delay
0.3 --port N``). Any path but ``/_…`` is the webhook; each push is read with
the package's own parser and answered as the :class:`Behaviour` says:

- ``honest``: echo every id; ``slow``: the same after ``delay`` seconds;
- ``partial``: echo the even ids only;
- ``fail_first``: HTTP 500 for the first ``failures`` requests, or for
  ``fail_seconds`` since the behaviour was set, then honest;
- ``hang``: never answer (until the client goes away);
- ``garbage``: 200 with bytes that are no XML nor JSON;
- ``unknown``: echo every id, and ids that were not in the document;
- ``flood``: 200 and a body that never ends.

While *held*, no request is answered at all (the kill test freezes the
receiver with it). Times are ``time.time()``: comparable across processes and
with the outbox's own times. The process is controlled over HTTP:
``GET /_records``, ``POST /_behaviour`` (a JSON :class:`Behaviour`),
``POST /_hold`` (``{"hold": true}``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson
import uvicorn

from webcom_status.errors import PushRejected
from webcom_status.protocol import answer, content_type, parse_push

MODES = (
    "honest", "slow", "partial", "fail_first", "hang", "garbage", "unknown", "flood", "redirect"
)  # fmt: skip
ZONE = ZoneInfo("Europe/Moscow")
GARBAGE = b"\x00\xff<<<this is neither XML nor JSON>>>\x01"
FAR_ID = 999_999_999_999  # an id no test ever enqueues
FLOOD_CHUNK = b" " * 65536
LONGEST = 3600.0  # a hanging request ends when its client goes away, or after this
STARTUP_SECONDS = 20.0

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Behaviour:
    """How the receiver answers; the fields beyond ``mode`` apply to some modes only."""

    mode: str = "honest"
    delay: float = 0.0  # slow
    failures: int = 0  # fail_first: this many requests get a 500 ...
    fail_seconds: float = 0.0  # ... or every request for this long

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"unknown mode {self.mode!r}; one of {', '.join(MODES)}")


@dataclass(frozen=True, slots=True)
class Seen:
    """One state as the receiver read it."""

    id_sms: int
    status: str
    time: str
    sms: str | None
    viber: str | None


@dataclass(slots=True)
class Request:
    """One push: when it came and went, what it carried, what it got back.

    ``answered_at`` is ``None`` for a request never answered; ``gone_at`` is
    when its client went away without an answer (it timed out or died).
    """

    n: int
    path: str
    received_at: float
    headers: dict[str, str]
    client_port: int
    client_pid: int | None = None
    flavour: str | None = None
    states: tuple[Seen, ...] = ()
    error: str | None = None
    answered_at: float | None = None
    gone_at: float | None = None
    http_status: int | None = None
    echoed: tuple[int, ...] = ()

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(s.id_sms for s in self.states)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Request:
        states = tuple(Seen(**s) for s in data.pop("states"))
        return cls(**data | {"states": states, "echoed": tuple(data["echoed"])})


def pushes_per_id(records: Iterable[Request]) -> Counter[int]:
    """How many requests carried each id_sms."""
    return Counter(i for r in records for i in r.ids)


def answered(records: Iterable[Request]) -> list[Request]:
    """The requests that got an answer, in order of arrival."""
    return [r for r in records if r.answered_at is not None]


def unanswered(records: Iterable[Request]) -> list[Request]:
    """The requests still waiting for an answer, or whose client left without one."""
    return [r for r in records if r.answered_at is None]


class Receiver:
    """The ASGI app: the webhook on every path, the control calls on ``/_…``."""

    def __init__(self, behaviour: Behaviour, *, identify_clients: bool = False) -> None:
        self.identify_clients = identify_clients
        self._lock = threading.Lock()
        self._records: list[Request] = []
        self._behaviour = behaviour
        self._since = time.time()
        self._served = 0  # requests under the current behaviour
        self._held = False
        self._pids: dict[int, int | None] = {}

    def records(self) -> list[Request]:
        """A copy of every request so far, in order of arrival."""
        with self._lock:
            return [replace(r) for r in self._records]

    def set_behaviour(self, behaviour: Behaviour) -> None:
        with self._lock:
            self._behaviour, self._since, self._served = behaviour, time.time(), 0

    def hold(self, held: bool) -> None:
        """While held, no request gets its answer."""
        with self._lock:
            self._held = held

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if scope["path"].startswith("/_"):
            await self._control(scope, receive, send)
        else:
            await self._webhook(scope, receive, send)

    async def _control(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive)
        records: list[Request] = []
        if scope["path"] == "/_behaviour":
            self.set_behaviour(Behaviour(**orjson.loads(body)))
        elif scope["path"] == "/_hold":
            self.hold(bool(orjson.loads(body)["hold"]))
        else:
            records = self.records()
        content = orjson.dumps([asdict(r) for r in records])
        await _respond(send, 200, b"application/json", content)

    async def _webhook(self, scope: Scope, receive: Receive, send: Send) -> None:
        record = Request(
            n=0,
            path=scope["path"],
            received_at=time.time(),
            headers={k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]},
            client_port=scope["client"][1],
        )
        if self.identify_clients:
            record.client_pid = await self._client_pid(scope["server"][1], record.client_port)
        body = await _read_body(receive)
        with self._lock:
            behaviour, since, index = self._behaviour, self._since, self._served
            self._served += 1
            record.n = len(self._records)
            self._records.append(record)
        gone = asyncio.Event()
        watcher = asyncio.create_task(_watch_disconnect(receive, gone))
        try:
            await self._answer(record, body, (behaviour, since, index), gone, send)
        finally:
            watcher.cancel()
            if gone.is_set() and record.answered_at is None:
                with self._lock:
                    record.gone_at = time.time()

    async def _client_pid(self, server_port: int, port: int) -> int | None:
        """The pid at the other end, looked up once per connection (by its port: a port
        in use is not reused by another connection while the test runs)."""
        if port not in self._pids:
            self._pids[port] = await asyncio.to_thread(client_pid, server_port, port)
        return self._pids[port]

    async def _answer(
        self,
        record: Request,
        body: bytes,
        how: tuple[Behaviour, float, int],
        gone: asyncio.Event,
        send: Send,
    ) -> None:
        behaviour, since, index = how
        try:
            push = parse_push(body, ZONE)
        except PushRejected as exc:
            with self._lock:
                record.error = exc.message
            await self._reply(record, send, 400, exc.message.encode())
            return
        with self._lock:
            record.flavour = push.flavour.value
            record.states = tuple(
                Seen(s.id_sms, s.status, s.time_raw, s.sms, s.viber) for s in push.states
            )
        mode = behaviour.mode
        waits = {"slow": behaviour.delay, "hang": LONGEST}
        if not await _wait(gone, waits.get(mode, 0.0)) or not await self._unheld(gone):
            return
        ids = push.acknowledge
        if mode == "fail_first" and (
            index < behaviour.failures or time.time() - since < behaviour.fail_seconds
        ):
            await self._reply(record, send, 500, b"Internal Server Error")
        elif mode == "garbage":
            await self._reply(record, send, 200, GARBAGE, kind=b"text/xml")
        elif mode == "flood":
            await self._flood(record, send, gone)
        elif mode == "redirect":  # a 3xx whose body lists every id: acknowledges nothing
            kind = content_type(push.flavour)
            await self._reply(record, send, 302, answer(push.flavour, ids), kind=kind)
        else:
            if mode == "partial":
                ids = tuple(i for i in ids if i % 2 == 0)
            elif mode == "unknown" and ids:
                ids = (*ids, max(ids) + 1, max(ids) + 2, FAR_ID)
            kind = content_type(push.flavour)
            await self._reply(record, send, 200, answer(push.flavour, ids), kind=kind, echoed=ids)

    async def _unheld(self, gone: asyncio.Event) -> bool:
        """Wait while the receiver is held; ``False`` if the client left meanwhile."""
        while True:
            with self._lock:
                if not self._held:
                    return True
            if not await _wait(gone, 0.01):
                return False

    async def _reply(
        self,
        record: Request,
        send: Send,
        status: int,
        content: bytes,
        *,
        kind: bytes = b"text/plain",
        echoed: tuple[int, ...] = (),
    ) -> None:
        with self._lock:
            record.answered_at, record.http_status, record.echoed = time.time(), status, echoed
        await _respond(send, status, kind, content)

    async def _flood(self, record: Request, send: Send, gone: asyncio.Event) -> None:
        with self._lock:
            record.answered_at, record.http_status = time.time(), 200
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(16384):  # 1 GiB at most
            if gone.is_set():
                return
            await send({"type": "http.response.body", "body": FLOOD_CHUNK, "more_body": True})
        await send({"type": "http.response.body", "body": b""})


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _watch_disconnect(receive: Receive, gone: asyncio.Event) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass
    gone.set()


async def _wait(gone: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds``; ``False`` if the client went away first."""
    if gone.is_set():
        return False
    if seconds <= 0:
        return True
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(gone.wait(), seconds)
        return False
    return True


async def _respond(send: Send, status: int, kind: bytes, content: bytes) -> None:
    headers = [(b"content-type", kind), (b"content-length", str(len(content)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})


def client_pid(server_port: int, port: int) -> int | None:
    """The process holding the client end of a connection to ``server_port`` (Linux ``/proc``)."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, remote = fields[1].rsplit(":", 1)[1], fields[2].rsplit(":", 1)[1]
                if int(local, 16) == port and int(remote, 16) == server_port:
                    inode = fields[9]
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for process in Path("/proc").iterdir():
        if not process.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            for fd in (process / "fd").iterdir():
                with contextlib.suppress(OSError):
                    if os.readlink(fd) == target:
                        return int(process.name)
    return None


def _server(app: Receiver, port: int = 0) -> uvicorn.Server:
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        lifespan="off",
        ws="none",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=1,
    )
    return uvicorn.Server(config)


class FaultyReceiver:
    """The receiver in a background thread of the test process, on a port of its own."""

    def __init__(self, behaviour: Behaviour | None = None) -> None:
        self.app = Receiver(behaviour or Behaviour())
        self._socket = socket.socket()
        self._socket.bind(("127.0.0.1", 0))
        self.port: int = self._socket.getsockname()[1]
        self._server = _server(self.app)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultyReceiver:
        self._thread.start()
        deadline = time.monotonic() + STARTUP_SECONDS
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the faulty receiver did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._socket.close()

    def records(self) -> list[Request]:
        return self.app.records()

    def set_behaviour(self, behaviour: Behaviour) -> None:
        self.app.set_behaviour(behaviour)

    def hold(self, held: bool) -> None:
        self.app.hold(held)


@dataclass
class ReceiverProcess:
    """The receiver as a process of its own (``python -m tests.sender.faulty``)."""

    port: int
    behaviour: Behaviour
    log_path: Path
    identify_clients: bool = False
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ReceiverProcess:
        b = self.behaviour
        command = [sys.executable, "-m", "tests.sender.faulty", "--port", str(self.port)]
        command += ["--mode", b.mode, "--delay", str(b.delay), "--failures", str(b.failures)]
        command += ["--fail-seconds", str(b.fail_seconds)]
        command += ["--identify-clients"] if self.identify_clients else []
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"receiver exited: {self.log_path.read_text()}")
            with contextlib.suppress(httpx.TransportError):
                self.records()
                return self
            time.sleep(0.05)
        raise RuntimeError(f"receiver did not start: {self.log_path.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def records(self) -> list[Request]:
        return self._call("GET", "/_records", None)

    def set_behaviour(self, behaviour: Behaviour) -> None:
        self._call("POST", "/_behaviour", asdict(behaviour))

    def hold(self, held: bool) -> None:
        self._call("POST", "/_hold", {"hold": held})

    def _call(self, method: str, path: str, body: object) -> list[Request]:
        content = None if body is None else orjson.dumps(body)
        reply = httpx.request(method, self.url + path, content=content, timeout=10.0)
        reply.raise_for_status()
        return [Request.from_json(r) for r in reply.json()]


def main() -> None:
    parser = argparse.ArgumentParser(description="A faulty receiver of the Webcom webhook.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=MODES, default="honest")
    parser.add_argument("--delay", type=float, default=0.0, help="slow: seconds before answering")
    parser.add_argument("--failures", type=int, default=0, help="fail_first: requests to fail")
    parser.add_argument("--fail-seconds", type=float, default=0.0, help="fail_first: or seconds")
    parser.add_argument("--identify-clients", action="store_true", help="record client pids")
    args = parser.parse_args()
    behaviour = Behaviour(args.mode, args.delay, args.failures, args.fail_seconds)
    _server(Receiver(behaviour, identify_clients=args.identify_clients), args.port).run()


if __name__ == "__main__":
    main()
