"""``serve --request-timeout`` and ``--limit-concurrency``: what slow or many clients can hold.

Slow clients are played over raw sockets, since an HTTP client library
sends whole requests: a connection that sends nothing, headers that never
end, a body that stops. Each is answered 408 and closed, stores nothing,
and the receiver serves everyone else meanwhile. A request that is slow but
arrives in time is stored as usual, and on a kept-alive connection the
deadline counts from each request, not from the connection. Beyond
``--limit-concurrency`` open connections a push is refused with 503.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from tests.receiver.support import Receiver, acked, state, xml_doc
from webcom_status.receiver.deadline import RATE_ALLOWANCE

DEADLINE = 2.0  # seconds: --request-timeout of the module's receiver
WAIT = 30.0  # seconds a test waits for an answer at most: liveness, not speed


@pytest.fixture(scope="module")
def receiver(start_receiver: Callable[..., Receiver]) -> Receiver:
    return start_receiver("deadline", "--request-timeout", str(DEADLINE))


@contextmanager
def connection(receiver: Receiver) -> Iterator[socket.socket]:
    with socket.create_connection(("127.0.0.1", receiver.process.port), timeout=WAIT) as sock:
        yield sock


def head(body: bytes) -> bytes:
    return (
        b"POST /webhook HTTP/1.1\r\nHost: test\r\nContent-Type: text/xml\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def read_answer(sock: socket.socket) -> bytes:
    """One whole answer on a kept-alive connection (its body ends the XML document)."""
    data = b""
    while not data.endswith(b"</response>"):
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    return data


def assert_timed_out(answer: bytes) -> None:
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert answer.endswith(b"the request did not arrive whole in time"), answer


@pytest.mark.parametrize(
    "sent",
    [
        pytest.param(b"", id="nothing"),
        pytest.param(b"POST /webhook HTTP/1.1\r\nHost: test\r\n", id="headers-never-end"),
    ],
)
def test_a_request_that_never_arrives_is_answered_408_and_closed(
    receiver: Receiver, sent: bytes
) -> None:
    with connection(receiver) as sock:
        sock.sendall(sent)
        assert_timed_out(read_until_closed(sock))


def test_a_body_that_stops_is_answered_408_stores_nothing_and_blocks_no_one(
    receiver: Receiver,
) -> None:
    body = xml_doc(state(8101), state(8102))
    stalled = head(body) + body[: len(body) // 2]
    with connection(receiver) as sock:
        sock.sendall(stalled)
        # Meanwhile another push goes through at once.
        reply = receiver.push(xml_doc(state(8103)))
        assert reply.status_code == 200
        assert acked(reply) == [8103]
        assert_timed_out(read_until_closed(sock))
    assert receiver.message(8101) is None
    assert receiver.message(8102) is None
    assert receiver.message(8103) is not None


def test_a_slow_request_that_arrives_in_time_is_stored(receiver: Receiver) -> None:
    body = xml_doc(state(8201))
    request = head(body) + body
    with connection(receiver) as sock:
        for start in range(0, len(request), len(request) // 5 + 1):
            sock.sendall(request[start : start + len(request) // 5 + 1])
            time.sleep(DEADLINE / 10)
        answer = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert b"<id_sms>8201</id_sms>" in answer
    assert receiver.message(8201) is not None


def test_a_large_body_arriving_steadily_gets_time_for_its_size(receiver: Receiver) -> None:
    """Beyond the base deadline, each RATE_ALLOWANCE bytes received earns a second."""
    ids = range(20_000, 28_000)
    body = xml_doc(*(state(i) for i in ids))
    request = head(body) + body
    seconds = DEADLINE * 1.5  # longer than the base deadline...
    assert len(request) / seconds > 2 * RATE_ALLOWANCE  # ...at twice the rate that earns time
    pieces = 30
    size = len(request) // pieces + 1
    with connection(receiver) as sock:
        for start in range(0, len(request), size):
            sock.sendall(request[start : start + size])
            time.sleep(seconds / pieces)
        answer = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:200]
    assert answer.count(b"<id_sms>") == len(ids)


def test_on_a_kept_alive_connection_each_request_has_its_own_deadline(
    receiver: Receiver,
) -> None:
    first, second = xml_doc(state(8301)), xml_doc(state(8302))
    with connection(receiver) as sock:
        sock.sendall(head(first) + first)
        assert b"<id_sms>8301</id_sms>" in read_answer(sock)
        # Idle for most of a deadline (uvicorn's keep-alive allows 5 s), then a
        # second request whose last bytes arrive after the connection's first
        # deadline has passed, but well within its own.
        time.sleep(DEADLINE * 0.75)
        request = head(second) + second
        sock.sendall(request[:-5])
        time.sleep(DEADLINE * 0.5)
        sock.sendall(request[-5:])
        answer = read_answer(sock)
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert b"<id_sms>8302</id_sms>" in answer


def test_after_an_answered_request_a_stalled_one_still_gets_408(receiver: Receiver) -> None:
    """On a kept-alive connection, a second request whose headers never end."""
    first = xml_doc(state(8501))
    with connection(receiver) as sock:
        sock.sendall(head(first) + first)
        assert b"<id_sms>8501</id_sms>" in read_answer(sock)
        sock.sendall(b"POST /webhook HTTP/1.1\r\nHost: test\r\n")
        assert_timed_out(read_until_closed(sock))


def test_beyond_limit_concurrency_a_push_gets_503_and_goes_through_once_below(
    start_receiver: Callable[..., Receiver],
) -> None:
    """``--limit-concurrency 3``: with three connections open, a fourth's push is refused."""
    limited = start_receiver("limited", "--limit-concurrency", "3")
    with connection(limited) as one, connection(limited) as two, connection(limited) as three:
        for sock in (one, two, three):
            sock.sendall(b"POST /webhook HTTP/1.1\r\n")  # requests in progress, never finished
        refused = limited.push(xml_doc(state(8401)))
        assert refused.status_code == 503
        assert refused.text == "Service Unavailable"
    # The three are closed: the same push is accepted, as the provider's next attempt would be.
    for _ in range(100):
        reply = limited.push(xml_doc(state(8401)))
        if reply.status_code != 503:
            break
        time.sleep(0.05)  # the server sees the three closes asynchronously
    assert reply.status_code == 200
    assert acked(reply) == [8401]
