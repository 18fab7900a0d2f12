"""Many clients pushing the same ids at once: the outcome does not depend on the order.

Each message's current state must be :func:`webcom_status.rules.fold` of every
state pushed for it, whatever the interleaving of the concurrent pushes, and
its history must hold each distinct state exactly once however many times it
was redelivered.
"""

from __future__ import annotations

import random
import threading

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.e2e._load import REQUEST_TIMEOUT, Pushed, acknowledged, document, random_channels
from webcom_status import rules
from webcom_status.model import Flavour

CLIENTS = 16
IDS = range(7001, 7031)
MAX_STATES_PER_DOCUMENT = 40


def states_of(id_sms: int, rng: random.Random) -> set[Pushed]:
    """Distinct states of one message, chosen to make the order matter if it could.

    ``send`` without a time; non-finals (``deliver``, ``partly_deliver``, an
    unknown value); two finals; a ``deliver`` timed after the finals (a late
    non-final must not win); and one instant written three ways (local time,
    ISO ``T``, explicit UTC offset), so that ties are broken by value and raw
    text. The channels differ from the overall status and from each other.
    """
    day = rng.randint(1, 20)
    local = f"2024-03-{day:02d} 12:00:00"
    same_instant = (local, local.replace(" ", "T"), f"2024-03-{day:02d}T09:00:00+00:00")
    plan: list[tuple[str, str]] = [
        ("send", ""),
        ("deliver", f"2024-03-{day:02d} 11:00:00"),
        ("partly_deliver", f"2024-03-{day:02d} 11:30:00"),
        ("moderation", f"2024-03-{day:02d} 10:00:00"),
        (rng.choice(("read", "not_deliver", "expired")), same_instant[0]),
        (rng.choice(("read", "not_deliver", "expired")), same_instant[1]),
        ("expired", same_instant[2]),
        ("deliver", f"2024-03-{day + 1:02d} 08:00:00"),
        ("deliver", same_instant[rng.randrange(3)]),
    ]
    states: set[Pushed] = set()
    for status, time_raw in plan:
        for _ in range(rng.randint(1, 2)):  # the same status, seen on other channels
            sms, viber = random_channels(rng)
            states.add(Pushed(id_sms, status, sms, viber, time_raw))
    return states


def client_documents(
    everything: list[Pushed], flavour: Flavour, rng: random.Random
) -> list[tuple[bytes, set[int]]]:
    """Every state, in this client's own order, cut into documents of 1-40 states."""
    order = everything[:]
    rng.shuffle(order)
    documents: list[tuple[bytes, set[int]]] = []
    while order:
        size = rng.randint(1, MAX_STATES_PER_DOCUMENT)
        batch, order = order[:size], order[size:]
        documents.append((document(batch, flavour, rng), {s.id_sms for s in batch}))
    return documents


def push_all(
    url: str,
    documents: list[tuple[bytes, set[int]]],
    flavour: Flavour,
    start: threading.Barrier,
    problems: list[str],
) -> None:
    """One client: wait for the others, then push its documents back to back."""
    try:
        with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT) as client:
            start.wait()
            for body, ids in documents:
                reply = client.post("/webhook", content=body)
                if reply.status_code != 200:
                    problems.append(f"{reply.status_code}: {reply.text[:200]}")
                elif sorted(acknowledged(reply, flavour)) != sorted(ids):
                    problems.append(f"echoed {acknowledged(reply, flavour)}, pushed {ids}")
    except Exception as exc:  # noqa: BLE001 - reported by the test, not lost in the thread
        problems.append(repr(exc))


def expected_json(states: set[Pushed]) -> dict[str, object]:
    """The fields of ``GET /api/messages/{id}`` that :func:`rules.fold` decides."""
    current = rules.fold(s.state() for s in states)
    assert current is not None
    time_utc = current.overall.time_utc
    return {
        "status": current.overall.value,
        "time_raw": current.overall.time_raw,
        "time": None if time_utc is None else time_utc.isoformat(),
        "sms": None if current.sms is None else current.sms.value,
        "viber": None if current.viber is None else current.viber.value,
    }


@pytest.mark.slow
@pytest.mark.parametrize("flavour", [Flavour.XML, Flavour.JSON])
def test_concurrent_pushes_of_the_same_ids_converge_to_fold(
    server: ServerProcess, flavour: Flavour
) -> None:
    """16 clients push the same states in 16 orders at once: 200 for all, fold wins.

    Every answer is 200 and echoes exactly the pushed ids; each message then
    equals ``rules.fold`` of all its states (overall, ``sms``, ``viber``,
    time), and its history is the set of distinct states, without duplicates.
    """
    rng = random.Random(f"concurrency-{flavour}")
    by_id = {id_sms: states_of(id_sms, rng) for id_sms in IDS}
    everything = [s for states in by_id.values() for s in states]
    start = threading.Barrier(CLIENTS)
    problems: list[str] = []
    threads = [
        threading.Thread(
            target=push_all,
            args=(
                server.url,
                client_documents(everything, flavour, random.Random(n)),
                flavour,
                start,
                problems,
            ),
        )
        for n in range(CLIENTS)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
        assert not thread.is_alive()
    assert not problems, problems[:5]

    with httpx.Client(base_url=server.url) as client:
        for id_sms, states in by_id.items():
            message = client.get(f"/api/messages/{id_sms}").json()
            decided = {key: message[key] for key in ("status", "time_raw", "time", "sms", "viber")}
            assert decided == expected_json(states), id_sms
            history = [
                (e["status"], e["sms"], e["viber"], e["time_raw"]) for e in message["history"]
            ]
            assert len(history) == len(set(history)), f"{id_sms}: duplicated events"
            assert set(history) == {s.stored for s in states}, id_sms


def test_same_instant_in_three_spellings_is_one_time() -> None:
    """Guard of the test data: the three spellings of one instant are equal in UTC."""
    spellings = ("2024-03-05 12:00:00", "2024-03-05T12:00:00", "2024-03-05T09:00:00+00:00")
    times = {Pushed(1, "read", None, None, raw).state().time_utc for raw in spellings}
    assert len(times) == 1
