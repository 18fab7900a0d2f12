"""SIGTERM under load: a graceful stop finishes what it started and leaves a clean database.

On SIGTERM the server stops accepting connections, finishes the requests in
flight (storing and acknowledging them), closes the database and exits 0. On
SQLite, "clean" also means a file that passes ``integrity_check`` with its WAL
checkpointed.
"""

from __future__ import annotations

import signal
import socket
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

import pytest

from tests import _db
from tests.conftest import ServerProcess
from tests.e2e._load import Load, Pushed, xml_document
from webcom_status.storage import sqlite_path

HELD_ID = 424242424242
EXIT_TIMEOUT = 30.0
POLLS = 3_000


class HeldRequest:
    """A push whose body is only half sent: in flight for as long as the test likes."""

    def __init__(self, server: ServerProcess, state: Pushed) -> None:
        body = xml_document([state])
        self._rest = body[len(body) // 2 :]
        self._sock = socket.create_connection(("127.0.0.1", server.port))
        head = (
            f"POST /webhook HTTP/1.1\r\nHost: 127.0.0.1:{server.port}\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        self._sock.sendall(head + body[: len(body) // 2])

    def finish(self) -> bytes:
        """Send the rest of the body; the whole response (the server closes after it)."""
        self._sock.sendall(self._rest)
        chunks = []
        with self._sock:
            for _ in range(POLLS):
                chunk = self._sock.recv(65536)
                if not chunk:
                    break
                chunks.append(chunk)
        return b"".join(chunks)


def wait_until_not_listening(port: int) -> None:
    """Poll until connections to ``port`` are refused: the server began shutting down."""
    for _ in range(POLLS):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        except ConnectionRefusedError:
            return
        time.sleep(0.01)
    raise AssertionError(f"port {port} still accepts connections")


def server_answers(server: ServerProcess) -> None:
    """One full request on another connection: the held request's head has been read."""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        reply = b""
        for _ in range(POLLS):
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 200"), reply


def assert_sqlite_file_clean(db_path: Path) -> None:
    """The file passes ``integrity_check``, is still in WAL mode, and its WAL was checkpointed."""
    wal = db_path.with_name(db_path.name + "-wal")
    assert not wal.exists() or wal.stat().st_size == 0, "the WAL was not checkpointed"
    assert _db.integrity(db_path) == "ok"
    with closing(sqlite3.connect(db_path)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)


@pytest.mark.slow
def test_sigterm_finishes_requests_in_flight_and_exits_clean(
    start_server: Callable[..., ServerProcess], engine: str, db_url: str
) -> None:
    """SIGTERM mid-load: exit status 0, in-flight push answered 200, database clean.

    A push held half-sent across the SIGTERM is still stored and echoed;
    every id echoed to the load clients is stored; no client saw anything
    but 200 or a closed connection; the log holds no traceback. On SQLite the
    file passes ``integrity_check`` and the WAL is checkpointed (removed or empty).
    """
    server = start_server()
    load = Load(server.url, first_id=1, clients=8, target=150).start()
    load.wait_for_target()
    held_state = Pushed(HELD_ID, "deliver", "deliver", None, "2024-03-01 10:00:00")
    held = HeldRequest(server, held_state)
    server_answers(server)

    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    wait_until_not_listening(server.port)
    reply = held.finish()
    load.finish()
    assert server.proc.wait(EXIT_TIMEOUT) == 0, server.log()
    if engine == "sqlite":
        assert_sqlite_file_clean(sqlite_path(db_url))

    assert reply.startswith(b"HTTP/1.1 200"), reply
    assert reply.endswith(f"<id_sms>{HELD_ID}</id_sms></response>".encode()), reply
    messages = _db.messages(db_url)
    assert messages[HELD_ID].stored == held_state.stored
    lost = load.acked - messages.keys()
    assert not lost, f"{len(lost)} acknowledged ids lost"
    assert "Traceback" not in server.log(), server.log()
    print(
        f"{load.requests} requests answered before/while stopping, "
        f"{len(load.acked)} ids acknowledged, all stored"
    )
