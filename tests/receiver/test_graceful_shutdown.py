"""SIGTERM while pushes are in flight: every id the receiver echoed is on disk.

A large push is held half-sent across the SIGTERM and a burst of concurrent
pushes runs on other connections. The server finishes what it started, exits
0, and the database (read after the exit, whichever the engine) holds every
id that any ``200`` answer echoed.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests._db import stored_ids
from tests.conftest import ServerProcess
from tests.receiver.support import acked, state, xml_doc

WAIT = 30.0
POLLS = 3000
WORKERS = 8
STATES_PER_PUSH = 10
PUSHES_BEFORE_SIGTERM = 40
MAX_PUSHES = 2000
LARGE_IDS = list(range(1, 20_001))
TCP_TABLES = (Path("/proc/net/tcp"), Path("/proc/net/tcp6"))


def tcp_queues(port: int) -> list[tuple[int, int]]:
    """(send queue, receive queue) of each established TCP socket with an end on ``port``."""
    queues = []
    for table in TCP_TABLES:
        for line in table.read_text().splitlines()[1:]:
            fields = line.split()
            ends = {int(fields[1].rsplit(":", 1)[1], 16), int(fields[2].rsplit(":", 1)[1], 16)}
            if fields[3] == "01" and port in ends:
                send, receive = fields[4].split(":")
                queues.append((int(send, 16), int(receive, 16)))
    return queues


def wait_until_server_has_read_everything(port: int) -> None:
    """Poll the kernel until no byte sent to ``port`` waits unread in a socket buffer."""
    for _ in range(POLLS):
        queues = tcp_queues(port)
        if queues and all(queue == (0, 0) for queue in queues):
            return
        time.sleep(0.01)
    raise AssertionError(f"bytes still unread on port {port}: {tcp_queues(port)}")


class HeldBody:
    """A request body sent in two halves: the second only once released."""

    def __init__(self, body: bytes) -> None:
        half = len(body) // 2
        self._halves = (body[:half], body[half:])
        self.first_half_sent = threading.Event()
        self.release = threading.Event()

    def chunks(self) -> Iterator[bytes]:
        yield self._halves[0]
        # The client asks for the next chunk only after writing this one.
        self.first_half_sent.set()
        assert self.release.wait(WAIT)
        yield self._halves[1]


@dataclass
class Outcome:
    """What the clients saw: ids echoed, and every HTTP status answered."""

    acked: set[int] = field(default_factory=set)
    statuses: list[int] = field(default_factory=list)
    mismatches: list[tuple[list[int], list[int]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    enough: threading.Event = field(default_factory=threading.Event)

    def record(self, sent: list[int], reply: httpx.Response) -> None:
        with self.lock:
            self.statuses.append(reply.status_code)
            if reply.status_code == 200:
                echoed = acked(reply)
                self.acked.update(echoed)
                if echoed != sent:
                    self.mismatches.append((sent, echoed))
            if self.statuses.count(200) >= PUSHES_BEFORE_SIGTERM:
                self.enough.set()


def burst_worker(url: str, number: int, outcome: Outcome) -> None:
    """Push small documents back to back until the server stops taking connections."""
    with httpx.Client(base_url=url, timeout=WAIT) as client:
        for push in range(MAX_PUSHES):
            first = 1_000_000 * (number + 1) + push * STATES_PER_PUSH
            ids = list(range(first, first + STATES_PER_PUSH))
            try:
                reply = client.post("/webhook", content=xml_doc(*(state(i) for i in ids)))
            except httpx.TransportError:
                return
            outcome.record(ids, reply)
            if reply.status_code != 200:
                return


def large_push(url: str, held: HeldBody, outcome: Outcome) -> None:
    reply = httpx.post(f"{url}/webhook", content=held.chunks(), timeout=WAIT)
    outcome.record(LARGE_IDS, reply)


@pytest.mark.skipif(not TCP_TABLES[0].exists(), reason="reads socket queues from /proc/net/tcp")
def test_sigterm_during_a_burst_loses_no_acknowledged_id(
    start_server: Callable[..., ServerProcess], db_url: str
) -> None:
    """Every id echoed by a 200 is stored; the held large push is finished; exit status 0."""
    server = start_server()
    assert server.proc is not None
    outcome = Outcome()
    held = HeldBody(xml_doc(*(state(i, sms="deliver") for i in LARGE_IDS)))
    threads = [threading.Thread(target=large_push, args=(server.url, held, outcome))]
    threads[0].start()
    assert held.first_half_sent.wait(WAIT)
    wait_until_server_has_read_everything(server.port)
    for number in range(WORKERS):
        threads.append(threading.Thread(target=burst_worker, args=(server.url, number, outcome)))
        threads[-1].start()

    try:
        assert outcome.enough.wait(WAIT)
        server.proc.send_signal(signal.SIGTERM)
    finally:
        held.release.set()
        for thread in threads:
            thread.join(WAIT)

    assert server.proc.wait(WAIT) == 0, server.log()
    assert set(outcome.statuses) == {200}, outcome.statuses
    assert not outcome.mismatches
    assert set(LARGE_IDS) <= outcome.acked, "the push held across SIGTERM was not finished"
    stored = stored_ids(db_url)
    lost = outcome.acked - stored
    assert not lost, f"{len(lost)} acknowledged ids are not in the database"
    assert "Traceback" not in server.log(), server.log()
