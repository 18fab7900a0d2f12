"""The sender's HTTP API, on a real server per engine: every route, its codes and bodies.

``/api/endpoints`` (list, add, show, change, remove, pause, resume),
``POST /api/outbox/{endpoint}`` (202 only once the states are committed:
checked through a fresh ``open_outbox`` on the server's database),
``/api/deliveries``, ``/api/redeliver``, ``/api/tally``, and ``--api-token``.
The servers are shared by the module (one per engine); each test uses
endpoints of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from tests._postgres import PostgresDatabases
from tests.conftest import ENGINES
from tests.receiver.support import Receiver, acked, running, state, xml_doc
from tests.test_cli import assert_readable_error, run_cli
from webcom_status.config import ReceiverSettings
from webcom_status.protocol import Outgoing
from webcom_status.sender.model import Delivery, Failure, Settlement
from webcom_status.storage import open_outbox

T1 = "2024-03-01 12:00:00"
URL = "http://127.0.0.1:9/webhook"
TOKEN = "api-Token_0123456789~!"
MAX_BODY = 64 * 1024
ENDPOINT_KEYS = {
    "name",
    "url",
    "username",
    "password_set",
    "flavour",
    "batch_size",
    "concurrency",
    "rate_limit",
    "connect_timeout",
    "read_timeout",
    "created_at",
    "failing_since",
    "paused",
    "paused_at",
    "pause_reason",
}


@pytest.fixture(scope="module", params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """Each engine in turn, for the whole module (its servers start once per engine)."""
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def start(
    engine: str, postgres_databases: PostgresDatabases, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Receiver]]:
    """``start(name, *flags)``: a server on a fresh database of the module's engine."""
    with contextlib.ExitStack() as stack:

        def started(name: str, *flags: str) -> Receiver:
            folder = tmp_path_factory.mktemp(name)
            if engine == "sqlite":
                db_url = f"sqlite:///{folder / 'status.db'}"
            else:
                db_url = postgres_databases.new()
            return stack.enter_context(running(folder, *flags, db_url=db_url))

        yield started


@pytest.fixture(scope="module")
def api(start: Callable[..., Receiver]) -> Receiver:
    """A server without an API token, taking bodies up to 64 KiB."""
    return start("api", "--max-body", str(MAX_BODY))


@pytest.fixture(scope="module")
def guarded(start: Callable[..., Receiver]) -> Receiver:
    """A server whose /api/ routes need ``Authorization: Bearer TOKEN``."""
    return start("guarded", "--api-token", TOKEN)


@pytest.fixture(scope="module")
def refusing(api: Receiver) -> str:
    """An endpoint to which only invalid states are posted."""
    add(api, "refusing")
    return "refusing"


def add(api: Receiver, name: str, **settings: Any) -> dict[str, Any]:
    reply = api.client.post("/api/endpoints", json={"name": name, "url": URL} | settings)
    assert reply.status_code == 201, reply.text
    added: dict[str, Any] = reply.json()
    return added


def enqueue(api: Receiver, endpoint: str, body: Any) -> httpx.Response:
    return api.client.post(f"/api/outbox/{endpoint}", content=orjson.dumps(body))


def wire(*ids: int, status: str = "deliver") -> list[dict[str, Any]]:
    """States in the JSON push's shape."""
    return [{"id_sms": i, "time": T1, "state": status, "sms": status} for i in ids]


async def _stored(db_url: str, endpoint: str) -> list[Delivery]:
    outbox = await open_outbox(db_url)
    try:
        return await outbox.deliveries(endpoint, limit=10_000)
    finally:
        await outbox.close()


def stored(api: Receiver, endpoint: str) -> list[Delivery]:
    """The endpoint's rows, read through an outbox of the test's own on the server's database."""
    return asyncio.run(_stored(api.db_url, endpoint))


async def _fail(db_url: str, endpoint: str, errors: list[str]) -> list[int]:
    outbox = await open_outbox(db_url)
    try:
        target = (await outbox.endpoint(endpoint)).id
        ids: list[int] = []
        for number, error in enumerate(errors, 1):
            claimed = await outbox.claim(target, "test", 10_000, 60.0)
            last = number == len(errors)
            failures = tuple(
                Failure(c.id, c.attempts + 1, error, None if last else 0.0) for c in claimed
            )
            await outbox.settle(Settlement(target, "test", (), failures, False, error))
            ids = [c.id for c in claimed]
        return ids
    finally:
        await outbox.close()


def make_dead(api: Receiver, endpoint: str, errors: list[str]) -> list[int]:
    """Every due row of ``endpoint`` fails once per error, then is dead; their ids."""
    return asyncio.run(_fail(api.db_url, endpoint, errors))


def assert_error(reply: httpx.Response, status: int, text: str) -> None:
    """A JSON ``{"error": ...}`` answer with ``status`` whose message holds ``text``."""
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/json"
    assert set(reply.json()) == {"error"}
    assert text in reply.json()["error"], reply.json()


def test_endpoints_are_added_listed_changed_paused_and_removed(api: Receiver) -> None:
    """Each route of /api/endpoints, with its status code; a password is never shown."""
    client = api.client
    reply = client.post(
        "/api/endpoints",
        json={
            "name": "crud",
            "url": "https://client.example/hook",
            "flavour": "json",
            "batch_size": 20,
            "concurrency": 2,
            "rate_limit": 5,
            "connect_timeout": 1.5,
            "read_timeout": 3,
            "basic_auth": "webcom:pa:ss",
        },
    )
    assert reply.status_code == 201, reply.text
    added = reply.json()
    assert set(added) == ENDPOINT_KEYS
    assert (added["username"], added["password_set"], added["flavour"]) == ("webcom", True, "json")
    assert (added["batch_size"], added["concurrency"], added["rate_limit"]) == (20, 2, 5.0)
    assert (added["connect_timeout"], added["read_timeout"]) == (1.5, 3.0)
    assert datetime.fromisoformat(added["created_at"]).utcoffset() is not None
    assert "pa:ss" not in reply.text

    assert "crud" in [e["name"] for e in client.get("/api/endpoints").json()]
    assert client.get("/api/endpoints/crud").json() == added
    assert_error(client.post("/api/endpoints", json={"name": "crud", "url": URL}), 409, "exists")

    changed = client.put("/api/endpoints/crud", json={"batch_size": 7, "basic_auth": None})
    assert changed.status_code == 200, changed.text
    assert changed.json() == added | {"batch_size": 7, "username": None, "password_set": False}
    assert client.put("/api/endpoints/crud", json={}).json() == changed.json()
    assert_error(client.put("/api/endpoints/absent", json={"batch_size": 2}), 404, "absent")

    paused = client.post("/api/endpoints/crud/pause", json={"reason": "client maintenance"})
    assert paused.status_code == 200, paused.text
    assert (paused.json()["paused"], paused.json()["pause_reason"]) == (True, "client maintenance")
    default = client.post("/api/endpoints/crud/pause").json()
    assert default["pause_reason"] == "paused by an operator"
    resumed = client.post("/api/endpoints/crud/resume")
    assert resumed.status_code == 200, resumed.text
    assert (resumed.json()["paused"], resumed.json()["paused_at"]) == (False, None)
    assert_error(client.post("/api/endpoints/absent/pause"), 404, "no endpoint named 'absent'")
    assert_error(client.post("/api/endpoints/absent/resume"), 404, "no endpoint named 'absent'")

    assert enqueue(api, "crud", wire(1, 2)).status_code == 202
    removed = client.delete("/api/endpoints/crud")
    assert removed.status_code == 200, removed.text
    assert removed.json() == {"removed": "crud", "deliveries": 2}
    assert_error(client.get("/api/endpoints/crud"), 404, "no endpoint named 'crud'")
    assert_error(client.delete("/api/endpoints/crud"), 404, "no endpoint named 'crud'")
    assert client.patch("/api/endpoints/crud").status_code == 405


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"{", "not JSON"),
        (b"[]", "expected a JSON object"),
        (b'{"url": "http://127.0.0.1:9/"}', "not an endpoint name: None"),
        (b'{"name": "a/b", "url": "http://127.0.0.1:9/"}', "not an endpoint name: 'a/b'"),
        (b'{"name": "refused"}', "url is required"),
        (b'{"name": "refused", "url": "mailto:x@example.com"}', "not an http(s) URL"),
        (b'{"name": "refused", "url": 5}', "not a URL: 5"),
        (b'{"name": "refused", "url": "http://h/", "colour": "red"}', "unknown setting 'colour'"),
        (b'{"name": "refused", "url": "http://h/", "batch_size": "5"}', "batch_size must be"),
        (b'{"name": "refused", "url": "http://h/", "batch_size": true}', "batch_size must be"),
        (b'{"name": "refused", "url": "http://h/", "flavour": "yaml"}', "flavour must be xml"),
        (b'{"name": "refused", "url": "http://h/", "rate_limit": 0}', "rate_limit must be"),
        (b'{"name": "refused", "url": "http://h/", "basic_auth": 5}', "basic_auth must be"),
        (b'{"name": "refused", "url": "http://h/", "basic_auth": "x"}', "basic auth must be"),
    ],
)
def test_invalid_endpoints_are_400_and_nothing_is_added(
    api: Receiver, body: bytes, message: str
) -> None:
    reply = api.client.post("/api/endpoints", content=body)
    assert_error(reply, 400, message)
    assert "refused" not in [e["name"] for e in api.get("/api/endpoints").json()]


def test_ingest_answers_202_once_the_states_are_in_the_database(api: Receiver) -> None:
    """Every state of a 202 is in the database, read afterwards by another connection."""
    add(api, "durable")
    states = [
        {"id_sms": 3234, "time": T1, "state": "deliver", "sms": "deliver"},
        {"id_sms": 3235, "time": T1, "status": "read", "sms": "expired", "viber": "read"},
        {"id_sms": 3237, "time": "", "state": "send", "sms": "send"},
    ]
    reply = enqueue(api, "durable", states)
    assert reply.status_code == 202, reply.text
    assert reply.json() == {"enqueued": 3, "changed": 3}
    assert [(d.state, d.status.value, d.attempts) for d in stored(api, "durable")] == [
        (Outgoing(3234, "deliver", T1, "deliver"), "pending", 0),
        (Outgoing(3235, "read", T1, "expired", "read"), "pending", 0),
        (Outgoing(3237, "send", "", "send"), "pending", 0),
    ]

    wrapped = enqueue(api, "durable", {"states": wire(3234, 3238)})
    assert wrapped.json() == {"enqueued": 2, "changed": 1}  # 3234 is pending already
    assert enqueue(api, "durable", []).json() == {"enqueued": 0, "changed": 0}
    assert [d.state.id_sms for d in stored(api, "durable")] == [3234, 3235, 3237, 3238]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "not JSON"),
        (b"[{", "not JSON"),
        (b'{"id_sms": 1, "state": "send"}\n{"id_sms": 2, "state": "send"}', "not JSON"),
        (b'{"states": 5}', 'expected a list of states or {"states": [...]}'),
        (
            b'[{"id_sms": 1, "state": "send"}, {"id_sms": 2, "state": "send"}, {"id_sms": -3, '
            b'"state": "send"}]',
            "index 2: id_sms must be positive, got -3",
        ),
        (b'[{"id_sms": 1, "state": "deliver", "time": "soon"}]', "index 0: id_sms 1: time is not"),
        (b'[{"id_sms": 1, "state": "send", "channel": "sms"}]', "unknown field 'channel'"),
    ],
)
def test_invalid_ingest_is_400_and_enqueues_nothing(
    api: Receiver, refusing: str, body: bytes, message: str
) -> None:
    """Invalid JSON or any invalid state: 400 with the reason, and no state of it stored."""
    reply = api.client.post(f"/api/outbox/{refusing}", content=body)
    assert_error(reply, 400, message)
    assert stored(api, refusing) == []


def test_ingest_to_an_unknown_endpoint_is_404(api: Receiver) -> None:
    assert_error(enqueue(api, "nowhere", wire(1)), 404, "no endpoint named 'nowhere'")


def test_ingest_over_the_max_body_is_413_and_enqueues_nothing(api: Receiver) -> None:
    """Over ``--max-body``, declared (Content-Length) or streamed (chunked): 413."""
    add(api, "large")
    body = orjson.dumps(wire(*range(1, 2000)))
    assert len(body) > MAX_BODY
    assert_error(api.client.post("/api/outbox/large", content=body), 413, str(MAX_BODY))
    chunks = iter([body[:40_000], body[40_000:]])
    assert_error(api.client.post("/api/outbox/large", content=chunks), 413, str(MAX_BODY))
    assert stored(api, "large") == []
    fits = orjson.dumps(wire(*range(1, 300)))
    assert enqueue(api, "large", orjson.loads(fits)).status_code == 202
    assert len(stored(api, "large")) == 299


def test_deliveries_are_listed_with_filters(api: Receiver) -> None:
    """``endpoint``, ``state``, ``after`` and ``limit`` filter the list, in id order."""
    add(api, "list-a")
    add(api, "list-b")
    enqueue(api, "list-a", wire(1, 2, 3))
    enqueue(api, "list-b", wire(4, 5))
    make_dead(api, "list-b", ["HTTP 500"])

    only_a = api.get("/api/deliveries", params={"endpoint": "list-a"}).json()
    assert [(d["endpoint"], d["id_sms"], d["state"]) for d in only_a] == [
        ("list-a", 1, "pending"),
        ("list-a", 2, "pending"),
        ("list-a", 3, "pending"),
    ]
    assert all("failed_attempts" not in d for d in only_a)
    dead = api.get("/api/deliveries", params={"endpoint": "list-b", "state": "dead"}).json()
    assert [(d["id_sms"], d["attempts"], d["last_error"]) for d in dead] == [
        (4, 1, "HTTP 500"),
        (5, 1, "HTTP 500"),
    ]
    assert [[a["error"] for a in d["failed_attempts"]] for d in dead] == [["HTTP 500"]] * 2
    page = api.get(
        "/api/deliveries", params={"endpoint": "list-a", "after": only_a[0]["id"], "limit": 1}
    )
    assert [d["id_sms"] for d in page.json()] == [2]
    pending_b = api.get("/api/deliveries", params={"endpoint": "list-b", "state": "pending"})
    assert pending_b.json() == []

    assert_error(api.get("/api/deliveries", params={"state": "lost"}), 400, "state must be")
    assert_error(api.get("/api/deliveries", params={"limit": "-1"}), 400, "limit must be")
    assert_error(api.get("/api/deliveries", params={"after": "x"}), 400, "after must be")
    assert_error(api.get("/api/deliveries", params={"endpoint": "nope"}), 404, "'nope'")


def test_one_delivery_with_its_attempts(api: Receiver) -> None:
    """``GET /api/deliveries/{id}``: the row and its failed attempts, in order; 404 if none."""
    add(api, "one")
    enqueue(api, "one", wire(77))
    [dead_id] = make_dead(api, "one", ["HTTP 502", "connection failed: refused"])

    reply = api.get(f"/api/deliveries/{dead_id}")
    assert reply.status_code == 200, reply.text
    letter = reply.json()
    assert (letter["id"], letter["endpoint"], letter["id_sms"]) == (dead_id, "one", 77)
    assert (letter["state"], letter["attempts"]) == ("dead", 2)
    assert letter["last_error"] == "connection failed: refused"
    assert [(a["attempt"], a["error"]) for a in letter["failed_attempts"]] == [
        (1, "HTTP 502"),
        (2, "connection failed: refused"),
    ]
    assert datetime.fromisoformat(letter["settled_at"]).utcoffset() is not None
    for missing in ("0", "999999999", "99999999999999999999999"):
        assert_error(api.get(f"/api/deliveries/{missing}"), 404, f"no delivery {missing}")


def test_redeliver_by_id_endpoint_since_and_all(api: Receiver) -> None:
    """Each filter puts its dead letters back, and answers how many."""
    for name in ("re-a", "re-b"):
        add(api, name)
    enqueue(api, "re-a", wire(1, 2))
    enqueue(api, "re-b", wire(3, 4))
    dead_a = make_dead(api, "re-a", ["HTTP 500"])
    make_dead(api, "re-b", ["HTTP 500"])
    # Between the two by the database's own clock, which may not be the test's.
    last_a = max(d.settled_at or 0.0 for d in stored(api, "re-a"))
    first_b = min(d.settled_at or 0.0 for d in stored(api, "re-b"))
    assert last_a < first_b
    cut = datetime.fromtimestamp((last_a + first_b) / 2, UTC)

    def redeliver(body: object) -> httpx.Response:
        return api.client.post("/api/redeliver", content=orjson.dumps(body))

    assert redeliver({"id": dead_a[0]}).json() == {"redelivered": 1}
    assert api.get(f"/api/deliveries/{dead_a[0]}").json()["state"] == "pending"
    assert redeliver({"since": cut.isoformat()}).json() == {"redelivered": 2}
    assert {d.status.value for d in stored(api, "re-b")} == {"pending"}
    assert redeliver({"endpoint": "re-a"}).json() == {"redelivered": 1}
    make_dead(api, "re-b", ["HTTP 500"])
    assert redeliver({"since": "1h"}).json()["redelivered"] >= 2  # with other tests' letters
    assert {d.status.value for d in stored(api, "re-b")} == {"pending"}
    make_dead(api, "re-a", ["HTTP 500"])
    make_dead(api, "re-b", ["HTTP 500"])
    reply = redeliver({"all": True})
    assert reply.status_code == 200, reply.text
    assert reply.json()["redelivered"] >= 4  # other tests' dead letters go back too
    assert {d.status.value for d in stored(api, "re-a") + stored(api, "re-b")} == {"pending"}
    assert [d.attempts for d in stored(api, "re-b")] == [0, 0]

    for bad, message in (
        ({}, "give exactly one of"),
        ({"id": 1, "all": True}, "give exactly one of"),
        ({"everything": True}, "give exactly one of"),
        ({"all": False}, "all must be true"),
        ({"id": "1"}, "id must be a positive integer"),
        ({"id": 0}, "id must be a positive integer"),
        ({"endpoint": 5}, "endpoint must be a name"),
        ({"since": 1700000000}, "since must be ISO 8601 or a duration"),
        ({"since": "yesterday"}, "not a time: 'yesterday'"),
        ([], "expected a JSON object"),
    ):
        assert_error(redeliver(bad), 400, message)
    assert_error(redeliver({"endpoint": "nope"}), 404, "no endpoint named 'nope'")


def test_tally_counts_each_endpoints_deliveries(api: Receiver) -> None:
    add(api, "tally")
    enqueue(api, "tally", wire(1, 2, 3))
    reply = api.get("/api/tally")
    assert reply.status_code == 200, reply.text
    tally = {t["endpoint"]: t for t in reply.json()}
    assert tally["tally"] == {"endpoint": "tally", "pending": 3, "delivered": 0, "dead": 0}


ROUTES = [
    ("GET", "/api/endpoints"),
    ("POST", "/api/endpoints"),
    ("GET", "/api/endpoints/x"),
    ("PUT", "/api/endpoints/x"),
    ("DELETE", "/api/endpoints/x"),
    ("POST", "/api/endpoints/x/pause"),
    ("POST", "/api/endpoints/x/resume"),
    ("POST", "/api/outbox/x"),
    ("GET", "/api/deliveries"),
    ("GET", "/api/deliveries/1"),
    ("POST", "/api/redeliver"),
    ("GET", "/api/tally"),
    ("GET", "/api/stats"),
    ("GET", "/api/rejects"),
    ("GET", "/api/messages/1"),
    ("GET", "/api/nothing-here"),
]


def test_api_token_is_required_on_every_api_route(guarded: Receiver) -> None:
    """With ``--api-token``: no, a wrong, or a non-Bearer credential is 401 on all of /api/,
    and nothing is changed; /healthz, /metrics and the webhook need none."""
    bad_headers: list[dict[str, str]] = [
        {},
        {"Authorization": f"Bearer {TOKEN}x"},
        {"Authorization": f"Bearer {TOKEN[:-1]}"},
        {"Authorization": f"Basic {TOKEN}"},
        {"Authorization": TOKEN},
    ]
    for method, path in ROUTES:
        for headers in bad_headers:
            body = b'{"name": "sneaky", "url": "http://127.0.0.1:9/"}'
            reply = guarded.client.request(method, path, headers=headers, content=body)
            assert_error(reply, 401, "Authorization: Bearer")
            assert reply.headers["www-authenticate"] == 'Bearer realm="webcom-status"'
    assert guarded.get("/healthz").status_code == 200
    assert guarded.get("/metrics").status_code == 200
    assert acked(guarded.push(xml_doc(state(5)))) == [5]

    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert guarded.get("/api/endpoints", headers=auth).json() == []
    added = guarded.client.post(
        "/api/endpoints", headers=auth, json={"name": "allowed", "url": URL}
    )
    assert added.status_code == 201, added.text
    body = orjson.dumps(wire(1, 2))
    reply = guarded.client.post("/api/outbox/allowed", headers=auth, content=body)
    assert reply.status_code == 202, reply.text
    lowercase = {"Authorization": f"bearer {TOKEN}"}
    assert guarded.get("/api/messages/5", headers=lowercase).json()["status"] == "deliver"
    assert [e["name"] for e in guarded.get("/api/endpoints", headers=auth).json()] == ["allowed"]
    assert len(stored(guarded, "allowed")) == 2


def test_without_a_token_the_api_is_open(api: Receiver) -> None:
    """No ``--api-token``: /api/ answers without credentials (bind it to a private address)."""
    assert api.get("/api/tally").status_code == 200
    assert api.get("/api/endpoints").status_code == 200


def test_a_database_failure_is_503_and_enqueues_nothing(tmp_path: Path) -> None:
    """The write lock held elsewhere past ``--busy-timeout``: 503 with a reason, nothing
    stored; once released, the same request is 202. SQLite only: the lock is SQLite's."""
    db_path = tmp_path / "status.db"
    with running(tmp_path, "--busy-timeout", "200", db_url=f"sqlite:///{db_path}") as server:
        add(server, "locked")
        with contextlib.closing(sqlite3.connect(db_path, isolation_level=None)) as lock:
            lock.execute("BEGIN EXCLUSIVE")
            assert_error(enqueue(server, "locked", wire(1, 2)), 503, "the database is unavailable")
            lock.execute("ROLLBACK")
        assert stored(server, "locked") == []
        assert enqueue(server, "locked", wire(1, 2)).status_code == 202
        assert len(stored(server, "locked")) == 2


def test_api_token_setting(tmp_path: Path) -> None:
    """A short token is refused like any bad flag (status 2), from the flag or the
    environment; the token travels to worker processes with the other settings."""
    for env, args in (
        ({}, ("--api-token", "short")),
        ({"WEBCOM_STATUS_API_TOKEN": "has spaces in it, sixteen+"}, ()),
    ):
        result = run_cli("serve", "--port", "0", *args, cwd=tmp_path, env=env)
        assert_readable_error(result, 2, "the API token must be at least 16 printable")
    settings = ReceiverSettings(api_token=TOKEN)
    assert ReceiverSettings.from_json(settings.to_json()) == settings
    assert TOKEN not in repr(settings)
