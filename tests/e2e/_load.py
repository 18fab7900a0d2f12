"""What the end-to-end tests push, and how they keep count of what was acknowledged.

A :class:`Pushed` is one state as it goes on the wire; the documents are
built by hand here (not by the package) so that the receiver's parser is
tested against an independent writer. :class:`LoadClient` pushes until it is
told to stop or the server goes away, and remembers every state it sent and
every ``id_sms`` that a 200 answer echoed.
"""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import httpx
import orjson

from webcom_status.model import Flavour, State
from webcom_status.protocol import parse_time

ZONE = ZoneInfo("Europe/Moscow")
UNKNOWN = "moderation"  # a value the provider might add: kept verbatim, ranked 1
TIMED = ("deliver", "read", "not_deliver", "expired", "partly_deliver", UNKNOWN)
CHANNEL_VALUES = ("send", "deliver", "read", "not_deliver", "expired", UNKNOWN)
_ACK_XML = re.compile(rb"<id_sms>(\d+)</id_sms>")
REQUEST_TIMEOUT = httpx.Timeout(60.0)


@dataclass(frozen=True, slots=True)
class Pushed:
    """One state as sent: ``None`` channels are left out of the document."""

    id_sms: int
    status: str
    sms: str | None
    viber: str | None
    time_raw: str

    def state(self) -> State:
        """The state the receiver must make of it (times read in Europe/Moscow)."""
        return State(
            self.id_sms,
            self.status,
            self.sms,
            self.viber,
            self.time_raw,
            parse_time(self.time_raw, ZONE),
        )

    @property
    def stored(self) -> tuple[str, str | None, str | None, str]:
        """``(status, sms, viber, time_raw)``: how a message or an event shows it."""
        return (self.status, self.sms, self.viber, self.time_raw)


def xml_document(states: Iterable[Pushed], root: str = "response") -> bytes:
    """The XML flavour; ``root`` is ``response`` (Webcom) or ``request`` (a reseller)."""
    lines = ['<?xml version="1.0" encoding="utf-8" ?>', f"<{root}>"]
    for s in states:
        channels = "".join(
            f' {name}="{value}"' for name, value in (("sms", s.sms), ("viber", s.viber)) if value
        )
        lines.append(
            f'  <state id_sms="{s.id_sms}" time="{s.time_raw}"{channels}>{s.status}</state>'
        )
    lines.append(f"</{root}>")
    return "\n".join(lines).encode()


def json_document(states: Iterable[Pushed]) -> bytes:
    """The JSON flavour, with the channels as ``sms``/``viber`` keys when present."""
    items: list[dict[str, object]] = []
    for s in states:
        item: dict[str, object] = {"id_sms": s.id_sms, "time": s.time_raw, "state": s.status}
        if s.sms:
            item["sms"] = s.sms
        if s.viber:
            item["viber"] = s.viber
        items.append(item)
    return orjson.dumps(items)


def document(states: Sequence[Pushed], flavour: Flavour, rng: random.Random) -> bytes:
    """A document of ``flavour``; XML takes either root at random."""
    if flavour is Flavour.JSON:
        return json_document(states)
    return xml_document(states, rng.choice(("response", "request")))


def acknowledged(reply: httpx.Response, flavour: Flavour) -> list[int]:
    """The ids a 200 answer echoes, in its order."""
    if flavour is Flavour.JSON:
        return [int(item["id_sms"]) for item in orjson.loads(reply.content)]
    return [int(i) for i in _ACK_XML.findall(reply.content)]


def random_time(rng: random.Random) -> str:
    """A provider time in March 2024, to the second."""
    day, hour = rng.randint(1, 28), rng.randint(0, 23)
    minute, second = rng.randint(0, 59), rng.randint(0, 59)
    return f"2024-03-{day:02d} {hour:02d}:{minute:02d}:{second:02d}"


def random_channels(rng: random.Random) -> tuple[str | None, str | None]:
    """``sms`` only, ``viber`` only, both, or neither (the reseller copy)."""
    shape = rng.randrange(4)
    sms = rng.choice(CHANNEL_VALUES) if shape in (0, 2) else None
    viber = rng.choice(CHANNEL_VALUES) if shape in (1, 2) else None
    return sms, viber


def random_state(rng: random.Random, id_sms: int) -> Pushed:
    """One state of any status: ``send`` with an empty time, the others timed."""
    sms, viber = random_channels(rng)
    if rng.random() < 0.15:
        return Pushed(id_sms, "send", sms, viber, "")
    return Pushed(id_sms, rng.choice(TIMED), sms, viber, random_time(rng))


@dataclass
class LoadClient:
    """Pushes documents of fresh ids until ``stop`` is set or the server is gone.

    Everything a thread learns is kept here and read by the test after
    ``join``: ``pushed`` (every state sent, acknowledged or not), ``acked``
    (ids echoed by a 200 answer), ``failures`` (anything but 200 or a
    vanished server), ``error`` (an exception the thread did not expect).
    """

    url: str
    ids: Iterator[int]
    flavour: Flavour
    seed: int
    on_request: Callable[[], None] = lambda: None
    max_requests: int = 5_000
    max_states: int = 50
    pushed: dict[int, Pushed] = field(default_factory=dict)
    acked: set[int] = field(default_factory=set)
    requests: int = 0
    failures: list[str] = field(default_factory=list)
    error: BaseException | None = None

    def run(self, stop: threading.Event) -> None:
        """The thread's body: never raises, so that the test sees every outcome."""
        try:
            self._run(stop)
        except BaseException as exc:  # noqa: BLE001 - re-raised by Load.finish
            self.error = exc

    def _run(self, stop: threading.Event) -> None:
        rng = random.Random(self.seed)
        with httpx.Client(timeout=REQUEST_TIMEOUT) as client:
            for _ in range(self.max_requests):
                if stop.is_set():
                    return
                batch = [
                    random_state(rng, next(self.ids))
                    for _ in range(rng.randint(1, self.max_states))
                ]
                self.pushed.update((s.id_sms, s) for s in batch)
                try:
                    reply = client.post(
                        f"{self.url}/webhook", content=document(batch, self.flavour, rng)
                    )
                except httpx.TransportError:
                    return  # killed or shutting down: this batch is not acknowledged
                self.requests += 1
                self.on_request()
                self._account(reply, {s.id_sms for s in batch})

    def _account(self, reply: httpx.Response, sent: set[int]) -> None:
        if reply.status_code != 200:
            self.failures.append(f"{reply.status_code}: {reply.text[:200]}")
            return
        echoed = acknowledged(reply, self.flavour)
        if not set(echoed) <= sent:
            self.failures.append(f"echoed ids that were not pushed: {set(echoed) - sent}")
        self.acked.update(echoed)


class Load:
    """Several :class:`LoadClient` threads against one server, counted together."""

    def __init__(self, url: str, first_id: int, clients: int = 8, target: int = 300) -> None:
        self.stop = threading.Event()
        self.reached = threading.Event()
        self._lock = threading.Lock()
        self._count = 0
        self._target = target
        flavours = (Flavour.XML, Flavour.JSON)
        self.clients = [
            LoadClient(
                url,
                iter(range(first_id + n * 1_000_000, first_id + (n + 1) * 1_000_000)),
                flavours[n % 2],
                seed=first_id + n,
                on_request=self._counted,
            )
            for n in range(clients)
        ]
        self._threads = [
            threading.Thread(target=c.run, args=(self.stop,), name=f"load-{n}")
            for n, c in enumerate(self.clients)
        ]

    def _counted(self) -> None:
        with self._lock:
            self._count += 1
            if self._count >= self._target:
                self.reached.set()

    def start(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def wait_for_target(self, timeout: float = 60.0) -> None:
        """Block until ``target`` requests were answered (all clients together)."""
        assert self.reached.wait(timeout), f"only {self._count} requests were answered"

    def finish(self, timeout: float = 60.0) -> None:
        """Stop the clients, join them, and re-raise what went wrong in a thread."""
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout)
            assert not thread.is_alive(), f"{thread.name} did not stop"
        for client in self.clients:
            if client.error is not None:
                raise client.error
        failures = [f for c in self.clients for f in c.failures]
        assert not failures, failures[:5]

    @property
    def requests(self) -> int:
        return sum(c.requests for c in self.clients)

    @property
    def pushed(self) -> dict[int, Pushed]:
        return {i: s for c in self.clients for i, s in c.pushed.items()}

    @property
    def acked(self) -> set[int]:
        return set().union(*(c.acked for c in self.clients))
