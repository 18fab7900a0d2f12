"""The read side over HTTP: ``/api/messages/{id}``, ``/api/rejects``, ``/api/stats``, health."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.receiver.support import JSON_TYPE, Receiver, acked, seed, state, xml_doc

MESSAGE_KEYS = {"id_sms", "status", "sms", "viber", "time", "updated_at", "history"}
EVENT_KEYS = {"status", "sms", "viber", "time", "time_raw", "received_at"}


@pytest.fixture(scope="module")
def receiver(start_receiver: Callable[..., Receiver]) -> Receiver:
    """A receiver holding the baseline, message 50 with two events, and three rejects."""
    started = seed(start_receiver("api"))
    first = xml_doc(state(50, "deliver", time="2024-03-01 10:00:00", sms="deliver"))
    second = xml_doc(state(50, "read", time="2024-03-01 10:05:00", sms="deliver", viber="read"))
    for body in (first, second):
        assert acked(started.push(body)) == [50]
    for bad in (b"one", b"two", b"three"):
        assert started.push(bad).status_code == 400
    return started


def test_message_has_the_documented_shape(receiver: Receiver) -> None:
    """``{"id_sms","status","sms","viber","time","updated_at","history":[...]}``, in UTC."""
    reply = receiver.get("/api/messages/50")

    assert reply.status_code == 200
    assert reply.headers["content-type"] == JSON_TYPE
    message = reply.json()
    assert message.keys() >= MESSAGE_KEYS
    assert (message["id_sms"], message["status"], message["sms"], message["viber"]) == (
        50,
        "read",
        "deliver",
        "read",
    )
    assert message["time"] == "2024-03-01T07:05:00+00:00"
    assert message["updated_at"].endswith("+00:00")
    assert [set(event) for event in message["history"]] == [EVENT_KEYS, EVENT_KEYS]
    assert [(e["status"], e["time_raw"]) for e in message["history"]] == [
        ("deliver", "2024-03-01 10:00:00"),
        ("read", "2024-03-01 10:05:00"),
    ]
    assert message["history"][0]["viber"] is None


@pytest.mark.parametrize("id_sms", ["999", "0", "9223372036854775807", "9223372036854775808"])
def test_unknown_id_is_404_with_a_json_error(receiver: Receiver, id_sms: str) -> None:
    """Never received (or beyond any id that can be stored): 404 and a readable error."""
    reply = receiver.get(f"/api/messages/{id_sms}")

    assert reply.status_code == 404
    assert reply.headers["content-type"] == JSON_TYPE
    assert reply.json() == {"error": f"no status was received for id_sms {id_sms}"}


def test_rejects_are_listed_oldest_first_and_paged(receiver: Receiver) -> None:
    """``after`` and ``limit`` page through the rejects in id order."""
    everything = receiver.get("/api/rejects").json()
    assert [r["raw"] for r in everything] == ["one", "two", "three"]
    first = everything[0]["id"]

    page = receiver.get("/api/rejects", params={"after": first, "limit": 1}).json()

    assert [r["raw"] for r in page] == ["two"]
    assert set(page[0]) == {
        "id",
        "received_at",
        "scope",
        "reason",
        "id_sms_raw",
        "http_status",
        "remote",
        "raw",
        "raw_size",
    }


@pytest.mark.parametrize(
    "query",
    [{"after": "-1"}, {"limit": "ten"}, {"after": "1.5"}, {"limit": "\u00b2"}, {"after": "\u0663"}],
)
def test_rejects_bad_paging_is_400_with_a_json_error(
    receiver: Receiver, query: dict[str, str]
) -> None:
    """Only ASCII digits page: anything else is a 400 that names the parameter."""
    reply = receiver.get("/api/rejects", params=query)

    assert reply.status_code == 400
    name = next(iter(query))
    assert reply.json() == {"error": f"{name} must be a non-negative integer"}


def test_stats_count_messages_events_and_rejects(receiver: Receiver) -> None:
    """The baseline's two messages plus message 50 with its two events; three rejects."""
    assert receiver.stats() == {
        "messages": 3,
        "events": 4,
        "unknown_status_events": 0,
        "rejects": 3,
    }


def test_healthz_is_200_when_the_database_answers(receiver: Receiver) -> None:
    """A working receiver reports ``{"status": "ok"}``."""
    reply = receiver.get("/healthz")

    assert reply.status_code == 200
    assert reply.json() == {"status": "ok"}


def test_metrics_are_prometheus_text(receiver: Receiver) -> None:
    """``/metrics`` counts what the webhook did: three stored pushes, three refused."""
    reply = receiver.get("/metrics")

    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    assert receiver.metric('webcom_status_pushes_total{outcome="stored"}') == 3
    assert receiver.metric('webcom_status_pushes_total{outcome="refused"}') == 3
    assert receiver.metric('webcom_status_states_total{outcome="stored"}') == 4
