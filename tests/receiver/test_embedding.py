"""The receiver embedded in another program, as the README shows it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn

from tests.conftest import free_port
from webcom_status import ReceiverSettings, create_app, parse_push
from webcom_status.config import parse_zone
from webcom_status.receiver.deadline import request_deadline

DOC = (
    b'<?xml version="1.0" encoding="utf-8" ?>\n<response>'
    b'<state id_sms="41" time="2011-01-01 12:57:46" sms="deliver">deliver</state>'
    b'<state id_sms="42" time="" sms="send">send</state>'
    b"</response>"
)


@contextmanager
def embedded(db_url: str, **options: Any) -> Iterator[str]:
    """``create_app`` served by a uvicorn the test owns, in a thread: its base URL."""
    port = free_port()
    config = uvicorn.Config(
        create_app(ReceiverSettings(db=db_url)),
        port=port,
        log_level="warning",
        lifespan="on",
        **options,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(400):
        if server.started:
            break
        time.sleep(0.025)
    try:
        assert server.started, "the embedded server did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_create_app_opens_its_database_and_serves_the_webhook(db_url: str) -> None:
    """``create_app(ReceiverSettings(db=...))`` under any ASGI server: lifespan opens the
    database, the webhook stores and acknowledges, the query API reads it back."""
    with embedded(db_url) as url:
        reply = httpx.post(f"{url}/webhook", content=DOC, timeout=30)
        assert reply.status_code == 200
        assert b"<id_sms>41</id_sms><id_sms>42</id_sms>" in reply.content
        assert httpx.get(f"{url}/api/messages/41", timeout=30).json()["status"] == "deliver"
        assert httpx.get(f"{url}/healthz", timeout=30).status_code == 200


def test_an_embedding_uvicorn_takes_the_request_deadline_as_the_readme_shows(
    db_url: str,
) -> None:
    """``http=request_deadline(seconds)``: a client that sends nothing gets 408, closed."""
    with embedded(db_url, http=request_deadline(0.5)) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            answer = b""
            while chunk := sock.recv(4096):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert httpx.post(f"{url}/webhook", content=DOC, timeout=30).status_code == 200


def test_parse_push_is_importable_from_the_package() -> None:
    """The pure protocol function the README names parses the documented example."""
    push = parse_push(DOC, parse_zone("Europe/Moscow"))
    assert push.acknowledge == (41, 42)
