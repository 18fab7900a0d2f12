"""What the receiver's HTTP tests share: a server per module, pushes, and the checks.

Every check goes through the real server (``/api/...``, ``/metrics``) or, for
exact bytes, through a read-only look into its database (:mod:`tests._db`),
whichever the engine.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from lxml import etree

from tests import _db
from tests.conftest import ServerProcess

TIME = "2011-01-01 12:57:46"
XML_TYPE = "text/xml; charset=utf-8"
JSON_TYPE = "application/json"
TIMEOUT = 30.0

# Stored first on every module's server; each refusal test checks it is untouched.
BASELINE_IDS = (1, 2)
BASELINE = (
    b'<?xml version="1.0" encoding="utf-8" ?>\n<response>'
    b'<state id_sms="1" time="2011-01-01 12:57:46" sms="deliver">deliver</state>'
    b'<state id_sms="2" time="2011-01-01 12:57:46" sms="expired" viber="read">read</state>'
    b"</response>"
)


def state(
    id_sms: object,
    status: str = "deliver",
    *,
    time: str = TIME,
    sms: str | None = None,
    viber: str | None = None,
) -> str:
    """One ``<state>`` element as the provider writes it."""
    attrs = f'id_sms="{id_sms}" time="{time}"'
    if sms is not None:
        attrs += f' sms="{sms}"'
    if viber is not None:
        attrs += f' viber="{viber}"'
    return f"<state {attrs}>{status}</state>"


def xml_doc(*states: str) -> bytes:
    """A pushed XML document holding ``states``."""
    inner = "\n  ".join(states)
    return f'<?xml version="1.0" encoding="utf-8" ?>\n<response>\n  {inner}\n</response>\n'.encode()


def acked(reply: httpx.Response) -> list[int]:
    """The ids an answer echoes, in order, whichever the flavour."""
    if reply.headers.get("content-type", "").startswith(JSON_TYPE):
        body = reply.json()
        return [item["id_sms"] for item in body] if isinstance(body, list) else []
    if not reply.content.lstrip().startswith(b"<"):
        return []
    root = etree.fromstring(reply.content)
    return [int(element.text or "") for element in root.iter("id_sms")]


def error_of(reply: httpx.Response) -> str:
    """The readable message of an error answer: ``<response><error>`` or ``{"error"}``."""
    if reply.headers["content-type"].startswith(JSON_TYPE):
        message: str = reply.json()["error"]
        return message
    root = etree.fromstring(reply.content)
    assert root.tag == "response", reply.text
    assert [child.tag for child in root] == ["error"], reply.text
    return root[0].text or ""


@dataclass
class Receiver:
    """A running receiver, seen from outside: HTTP, plus its database."""

    process: ServerProcess
    client: httpx.Client
    webhook_path: str = "/webhook"
    auth: tuple[str, str] | None = None

    @property
    def url(self) -> str:
        return self.process.url

    @property
    def db_url(self) -> str:
        return self.process.db_url

    def push(
        self,
        body: bytes | Iterable[bytes],
        *,
        path: str | None = None,
        headers: dict[str, str] | None = None,
        auth: tuple[str, str] | None = None,
    ) -> httpx.Response:
        """POST ``body`` to the webhook (its guarded path and credentials by default)."""
        return self.client.post(
            path or self.webhook_path,
            content=body,
            headers=headers,
            auth=auth or self.auth or httpx.USE_CLIENT_DEFAULT,
        )

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.client.get(path, **kwargs)

    def message(self, id_sms: int) -> dict[str, Any] | None:
        """``GET /api/messages/{id}``, ``None`` on 404."""
        reply = self.get(f"/api/messages/{id_sms}")
        if reply.status_code == 404:
            return None
        assert reply.status_code == 200, reply.text
        result: dict[str, Any] = reply.json()
        return result

    def stats(self) -> dict[str, int]:
        reply = self.get("/api/stats")
        assert reply.status_code == 200, reply.text
        result: dict[str, int] = reply.json()
        return result

    def rejects(self, after: int = 0) -> list[dict[str, Any]]:
        """Every reject above ``after``, through the paged API."""
        found: list[dict[str, Any]] = []
        while True:
            reply = self.get("/api/rejects", params={"after": after, "limit": 1000})
            assert reply.status_code == 200, reply.text
            page: list[dict[str, Any]] = reply.json()
            if not page:
                return found
            found.extend(page)
            after = page[-1]["id"]

    def last_reject_id(self) -> int:
        rejects = self.rejects()
        return rejects[-1]["id"] if rejects else 0

    def raw_reject(self, reject_id: int) -> bytes:
        """The exact bytes kept for a reject, read from the database."""
        return _db.reject_raw(self.db_url, reject_id)

    def metric(self, sample: str) -> float:
        """The value of one sample of ``/metrics`` (``name{labels}``), 0 when absent."""
        for line in self.get("/metrics").text.splitlines():
            key, _, value = line.rpartition(" ")
            if not line.startswith("#") and key == sample:
                return float(value)
        return 0.0


@contextlib.contextmanager
def running(directory: Path, *flags: str, db_url: str) -> Iterator[Receiver]:
    """A receiver with ``flags`` on ``db_url``, its log in ``directory``; stopped afterwards.

    Tests on every engine get theirs from the ``start_receiver`` fixture.
    """
    directory.mkdir(parents=True, exist_ok=True)
    process = ServerProcess(db_url, flags, log_path=directory / "server.log")
    try:
        process.start()
        with httpx.Client(base_url=process.url, timeout=TIMEOUT) as client:
            yield Receiver(process, client)
    finally:
        if process.proc is not None and process.proc.poll() is None:
            process.stop()


def seed(receiver: Receiver) -> Receiver:
    """Store :data:`BASELINE` (through the guarded path) and return the receiver."""
    reply = receiver.push(BASELINE)
    assert reply.status_code == 200, reply.text
    assert acked(reply) == list(BASELINE_IDS)
    return receiver


@dataclass(frozen=True)
class Before:
    """What a bad input must not change: counts, baseline messages, the last reject."""

    stats: dict[str, int]
    baseline: tuple[dict[str, Any] | None, ...]
    last_reject: int


def before(receiver: Receiver) -> Before:
    return Before(
        receiver.stats(),
        tuple(receiver.message(i) for i in BASELINE_IDS),
        receiver.last_reject_id(),
    )


def assert_baseline_unharmed(receiver: Receiver, then: Before) -> None:
    """The data stored before is exactly as it was, history and timestamps included."""
    assert tuple(receiver.message(i) for i in BASELINE_IDS) == then.baseline


def assert_refused(
    receiver: Receiver,
    then: Before,
    reply: httpx.Response,
    *,
    status: int,
    reason: str,
    raw: bytes,
    content_type: str = XML_TYPE,
) -> dict[str, Any]:
    """A whole document refused: status, readable error, nothing stored, raw kept.

    Returns the one new reject, whose bytes are ``raw`` exactly.
    """
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == content_type
    assert reason in error_of(reply)
    assert acked(reply) == []
    after = receiver.stats()
    assert (after["messages"], after["events"]) == (
        then.stats["messages"],
        then.stats["events"],
    )
    new = receiver.rejects(then.last_reject)
    assert len(new) == 1, new
    reject = new[0]
    assert (reject["scope"], reject["http_status"]) == ("document", status)
    assert reason in reject["reason"]
    assert reject["id_sms_raw"] is None
    assert reject["raw_size"] == len(raw)
    assert receiver.raw_reject(reject["id"]) == raw
    assert_baseline_unharmed(receiver, then)
    return reject
