"""The emulator: realistic message lifecycles, pushed through the real dispatcher.

The pure parts come first: :func:`lifecycles` makes the messages (each a
sequence of states, with its expected final state under ``rules.py``), and
:class:`Report` does the arithmetic of the outcome. Then the I/O:
:class:`Emulation` enqueues the states into an outbox by a schedule, runs a
:class:`~webcom_status.sender.dispatcher.Dispatcher` in the same process to
push them to the receiver, and follows every state to its end.

Following a state to its end takes care: the outbox keeps one pending row per
``id_sms``, and a newer state enqueued while the row waits replaces the
row's state (even while the row is in flight). So a state is settled when

- the state pushed for its ``id_sms`` is acknowledged and is the same or a
  later one (a state replaced before it was pushed is *superseded*: the
  receiver got a later state that outranks it);
- or the row holding it becomes a dead letter (every attempt failed). A push
  that used the last attempt kills no row that a later state replaced while
  it was in flight: that row lives on with a new round.

The dispatcher reports a push only after its outcome is committed, and
SQLite's one writer commits and answers in order, so the ledger sees
enqueues and outcomes in the order the outbox applied them. On PostgreSQL
(``--db``) the two may cross: a state enqueued just after its row died could
be counted dead with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import itertools
import math
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

from tqdm import tqdm

from webcom_status.errors import ConfigError
from webcom_status.model import Flavour, State
from webcom_status.protocol import Finding, Outgoing, parse_time
from webcom_status.rules import (
    DELIVER,
    EXPIRED,
    NOT_DELIVER,
    PARTLY_DELIVER,
    READ,
    SEND,
    Current,
    fold,
)
from webcom_status.sender.dispatcher import Dispatcher, DispatchSettings, PushReport
from webcom_status.sender.model import Endpoint, EndpointSettings
from webcom_status.sender.outbox import Outbox, sort_key
from webcom_status.sender.retry import RetryPolicy
from webcom_status.storage import open_outbox, open_storage, outbox_for

# --------------------------------------------------------------------------
# Lifecycles (pure)
# --------------------------------------------------------------------------


class Kind(enum.StrEnum):
    """The kinds of message the emulator makes, each with its own lifecycle."""

    SMS_DELIVERED = "sms_delivered"  # send → deliver
    SMS_NOT_DELIVERED = "sms_not_delivered"  # send → not_deliver
    SMS_EXPIRED = "sms_expired"  # send → expired, hours later
    SMS_PARTLY_DELIVERED = "sms_partly_delivered"  # multi-part: send → partly_deliver → deliver
    VIBER_READ = "viber_read"  # send → deliver → read, viber=
    VIBER_DELIVERED = "viber_delivered"  # send → deliver, never read
    VIBER_SMS_FALLBACK = "viber_sms_fallback"  # viber not delivered, SMS delivered instead


MIX: dict[Kind, int] = {  # relative weights
    Kind.SMS_DELIVERED: 40,
    Kind.SMS_NOT_DELIVERED: 8,
    Kind.SMS_EXPIRED: 5,
    Kind.SMS_PARTLY_DELIVERED: 7,
    Kind.VIBER_READ: 25,
    Kind.VIBER_DELIVERED: 7,
    Kind.VIBER_SMS_FALLBACK: 8,
}
REPEAT_CHANCE = 0.03  # of each state: pushed again once it is settled
OUT_OF_ORDER_CHANCE = 0.05  # of each message of two states or more
# Message numbers: seed * ID_SPAN + 1 onwards, so runs with other seeds use other ids.
ID_SPAN = 10_000_000
MAX_SEED = 900_000_000_000  # keeps every id_sms below 2^63
MAX_MESSAGES = ID_SPAN
FIRST_SEND = datetime(2024, 6, 3, 9, 0, 0)  # the provider's wall clock (Moscow time)
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


class Extra(enum.StrEnum):
    """A state enqueued again on purpose, as the provider's retries do."""

    REPEAT = "repeat"  # the same state, after it was settled
    OUT_OF_ORDER = "out_of_order"  # an earlier state, after a later one was settled


class Step(NamedTuple):
    """One state of a lifecycle.

    ``offset`` is the provider time between the message's ``send`` and this
    state, in seconds (what the ``provider`` schedule waits, scaled). A
    ``gated`` step is enqueued only once every earlier state of its message
    is settled (acknowledged or dead), so that it is pushed on its own.

    Named tuples, like the outbox's rows: a run makes millions of them.
    """

    state: Outgoing
    offset: float
    extra: Extra | None = None
    gated: bool = False


class Lifecycle(NamedTuple):
    """One message: its states in the order they are enqueued."""

    id_sms: int
    kind: Kind
    steps: tuple[Step, ...]

    @property
    def expected(self) -> Current:
        """Where a conforming receiver ends, after every state of the message."""
        return expected_final(s.state for s in self.steps)

    @property
    def repeated(self) -> int:
        return sum(1 for s in self.steps if s.extra is Extra.REPEAT)

    @property
    def out_of_order(self) -> int:
        return sum(1 for s in self.steps if s.extra is Extra.OUT_OF_ORDER)


def _at(start: datetime, offset: int) -> str:
    return (start + timedelta(seconds=offset)).strftime(TIME_FORMAT)


def _states(kind: Kind, id_sms: int, start: datetime, rng: random.Random) -> list[Step]:
    """The states of one message of ``kind``, its send at ``start``; times increase."""
    steps: list[Step] = []

    def add(offset: int, status: str, *, sms: str | None = None, viber: str | None = None) -> None:
        time_ = "" if status == SEND else _at(start, offset)
        steps.append(Step(Outgoing(id_sms, status, time_, sms, viber), float(offset)))

    if kind in {Kind.VIBER_READ, Kind.VIBER_DELIVERED, Kind.VIBER_SMS_FALLBACK}:
        add(0, SEND, viber=SEND)
    else:
        add(0, SEND, sms=SEND)
    if kind is Kind.SMS_DELIVERED:
        add(rng.randint(2, 40), DELIVER, sms=DELIVER)
    elif kind is Kind.SMS_NOT_DELIVERED:
        add(rng.randint(20, 600), NOT_DELIVER, sms=NOT_DELIVER)
    elif kind is Kind.SMS_EXPIRED:
        add(rng.randint(3600, 3 * 3600), EXPIRED, sms=EXPIRED)
    elif kind is Kind.SMS_PARTLY_DELIVERED:
        partly = rng.randint(30, 300)
        add(partly, PARTLY_DELIVER, sms=PARTLY_DELIVER)
        add(partly + rng.randint(60, 1200), DELIVER, sms=DELIVER)
    elif kind is Kind.VIBER_SMS_FALLBACK:
        # Viber's validity runs out, the SMS sent instead is delivered: both channels.
        add(rng.randint(300, 1800) + rng.randint(2, 40), DELIVER, viber=NOT_DELIVER, sms=DELIVER)
    else:
        delivered = rng.randint(1, 10)
        add(delivered, DELIVER, viber=DELIVER)
        if kind is Kind.VIBER_READ:
            add(delivered + rng.randint(10, 1800), READ, viber=READ)
    return steps


def _with_extras(steps: list[Step], rng: random.Random) -> list[Step]:
    """``steps`` with some states repeated and one earlier state after a later one."""
    out_of_order_after = earlier = -1
    if len(steps) >= 2 and rng.random() < OUT_OF_ORDER_CHANCE:
        out_of_order_after = rng.randrange(1, len(steps))
        earlier = rng.randrange(out_of_order_after)
    result: list[Step] = []
    for index, step in enumerate(steps):
        # A step after an extra waits for it to settle: otherwise it could replace
        # the extra in the outbox before the extra was ever pushed.
        gated = bool(result) and result[-1].extra is not None
        result.append(Step(step.state, step.offset, gated=gated))
        if rng.random() < REPEAT_CHANCE:
            result.append(Step(step.state, step.offset, Extra.REPEAT, gated=True))
        if index == out_of_order_after:
            old = steps[earlier].state
            result.append(Step(old, step.offset, Extra.OUT_OF_ORDER, gated=True))
    return result


def expected_final(states: Iterable[Outgoing]) -> Current:
    """The state a conforming receiver ends with after all of ``states`` (``rules.fold``).

    The times are read as UTC: every state of a run shares one zone, and the
    order of ``rules.py`` is the same in any zone without a DST change.
    """
    current = fold(
        State(s.id_sms, s.status, s.sms, s.viber, s.time, parse_time(s.time, UTC)) for s in states
    )
    if current is None:
        raise ValueError("a lifecycle needs at least one state")
    return current


def default_first_id(seed: int) -> int:
    """The id_sms of the first message of a run with ``seed``."""
    return seed * ID_SPAN + 1


def iter_lifecycles(
    messages: int, seed: int, plain: bool, *, first_id: int | None = None
) -> Iterator[Lifecycle]:
    """``messages`` message lifecycles, the same for the same arguments, made one by one.

    The kinds follow :data:`MIX`, except that the first messages take every
    kind once, in a shuffled order, so that even a short run has each. Unless
    ``plain``, about :data:`REPEAT_CHANCE` of the states are enqueued a second
    time once settled, and :data:`OUT_OF_ORDER_CHANCE` of the messages have
    an earlier state enqueued again after a later one was settled. Those are
    drawn from a random stream of their own, so ``plain`` changes nothing
    else. The arguments are checked at once (``ConfigError``), not when the
    first lifecycle is taken.
    """
    if not 0 <= messages <= MAX_MESSAGES:
        raise ConfigError(f"messages must be between 0 and {MAX_MESSAGES}")
    base = default_first_id(seed) if first_id is None else first_id
    if base < 1 or base + messages - 1 > 2**63 - 1:
        raise ConfigError("the message numbers must lie between 1 and 2^63-1")
    return _lifecycles(messages, seed, plain, base)


def _lifecycles(messages: int, seed: int, plain: bool, base: int) -> Iterator[Lifecycle]:
    rng = random.Random(seed)  # noqa: S311 - a run made again, not a secret
    extras = random.Random(f"extras:{seed}")  # noqa: S311 - the same
    kinds, weights = list(MIX), list(itertools.accumulate(MIX.values()))
    cover = list(Kind)
    rng.shuffle(cover)
    clock = 0.0
    for index in range(messages):
        kind = cover[index] if index < len(cover) else rng.choices(kinds, cum_weights=weights)[0]
        clock += rng.expovariate(2.0)  # a message every half second on average
        id_sms = base + index
        steps = _states(kind, id_sms, FIRST_SEND + timedelta(seconds=int(clock)), rng)
        if not plain:
            steps = _with_extras(steps, extras)
        yield Lifecycle(id_sms, kind, tuple(steps))


def lifecycles(
    messages: int, seed: int, plain: bool, *, first_id: int | None = None
) -> list[Lifecycle]:
    """The lifecycles of :func:`iter_lifecycles`, as a list."""
    return list(iter_lifecycles(messages, seed, plain, first_id=first_id))


# --------------------------------------------------------------------------
# Schedules, options and the report (pure)
# --------------------------------------------------------------------------


class Schedule(enum.StrEnum):
    """When the states are enqueued.

    - ``fast``: a stream: up to :data:`FAST_WINDOW` messages at a time, each
      message's states back to back (the next one as soon as the previous
      one is enqueued), at most ``--rate`` states per second;
    - ``provider``: every message in progress at once, its first state as
      soon as ``--rate`` allows, each later state after the gap between their
      status times (seconds before ``deliver``, minutes before ``read``,
      hours before ``expired``) multiplied by ``--time-scale``;
    - ``burst``: everything at once, ``--rate`` ignored: the first state of
      every message, then the next state of every message, in as few
      enqueues as the outbox takes;
    - ``lockstep``: like ``fast``, but each state waits until the previous
      state of its message is acknowledged or dead, so every state is pushed
      on its own and none is superseded in the outbox.
    """

    FAST = "fast"
    PROVIDER = "provider"
    BURST = "burst"
    LOCKSTEP = "lockstep"


FAST_WINDOW = 256  # messages in progress at a time (fast, lockstep)
WIDE_WINDOW = 50_000  # the same for provider and burst: "all", within memory
ENQUEUE_GROUP = 2000  # states per enqueue at most
MAX_VIOLATIONS = 1000  # entries of the report's list
DEFAULT_TIMEOUT = 300.0


@dataclass(frozen=True, slots=True)
class EmulationOptions:
    """Everything a run needs; ``db`` is ``None`` for a temporary SQLite outbox."""

    url: str
    messages: int = 1000
    rate: float = 0.0  # states per second; 0: no limit
    flavour: Flavour = Flavour.XML
    schedule: Schedule = Schedule.FAST
    time_scale: float = 0.001
    plain: bool = False
    seed: int = 1
    first_id: int | None = None
    batch_size: int = 100
    concurrency: int = 4
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    timeout: float = DEFAULT_TIMEOUT
    db: str | None = None
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    progress: bool = True
    linger: float = 0.01
    poll: float = 0.05


class Violations:
    """Findings about the receiver, identical ones (kind, id_sms, detail) counted together."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, int | None, str], int] = {}

    def add(self, kind: str, detail: str, id_sms: int | None = None, count: int = 1) -> None:
        key = (kind, id_sms, detail)
        self._counts[key] = self._counts.get(key, 0) + count

    def add_finding(self, finding: Finding) -> None:
        self.add(finding.kind, finding.detail, finding.id_sms)

    def __len__(self) -> int:
        return len(self._counts)

    def entries(self) -> list[dict[str, Any]]:
        """Every entry, in the order first seen."""
        result: list[dict[str, Any]] = []
        for (kind, id_sms, detail), count in self._counts.items():
            entry: dict[str, Any] = {"kind": kind, "detail": detail}
            if id_sms is not None:
                entry["id_sms"] = id_sms
            entry["count"] = count
            result.append(entry)
        return result


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """The nearest-rank percentile of ``values`` (``None`` when there are none)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class Report:
    """What a run came to. Counts of states unless named otherwise.

    ``states`` were enqueued; ``acknowledged`` of them the receiver
    acknowledged (``superseded`` among them: replaced in the outbox by a
    later state of their message, which was acknowledged); ``dead`` were
    given up after every attempt; ``unsettled`` are neither (the run timed
    out, which is a violation of kind ``unfinished``, or was ``interrupted``,
    which is not). ``attempts`` counts states pushed, ``requests`` documents
    POSTed, ``retried`` failed attempts followed by another.
    """

    url: str
    flavour: str
    schedule: str
    messages: int
    mix: dict[str, int]
    planned: int
    states: int
    acknowledged: int
    superseded: int
    dead: int
    unsettled: int
    retried: int
    attempts: int
    requests: int
    repeated: int
    out_of_order: int
    elapsed: float
    latencies: tuple[float, ...] = field(repr=False)
    violations: tuple[dict[str, Any], ...]
    violations_truncated: bool
    violation_kinds: dict[str, dict[str, int]] = field(default_factory=dict)
    interrupted: bool = False

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def states_per_second(self) -> float:
        """States acknowledged per second."""
        return self.acknowledged / self.elapsed if self.elapsed > 0 else 0.0

    def latency_ms(self, fraction: float) -> float | None:
        value = percentile(self.latencies, fraction)
        return None if value is None else value * 1000

    @property
    def conforming(self) -> bool:
        """Whether the receiver kept to the protocol (no violation at all)."""
        return not self.violations

    def as_json(self) -> dict[str, Any]:
        """The report as one JSON object."""
        p50, p99 = self.latency_ms(0.50), self.latency_ms(0.99)
        return {
            "url": self.url,
            "flavour": self.flavour,
            "schedule": self.schedule,
            "messages": self.messages,
            "mix": self.mix,
            "planned": self.planned,
            "states": self.states,
            "acknowledged": self.acknowledged,
            "superseded": self.superseded,
            "dead": self.dead,
            "unsettled": self.unsettled,
            "retried": self.retried,
            "attempts": self.attempts,
            "requests": self.requests,
            "repeated": self.repeated,
            "out_of_order": self.out_of_order,
            "elapsed": round(self.elapsed, 3),
            "requests_per_second": round(self.requests_per_second, 1),
            "states_per_second": round(self.states_per_second, 1),
            "latency_p50_ms": None if p50 is None else round(p50, 2),
            "latency_p99_ms": None if p99 is None else round(p99, 2),
            "violations": list(self.violations),
            "violations_truncated": self.violations_truncated,
            "violation_kinds": self.violation_kinds,
            "interrupted": self.interrupted,
        }


SHOWN_VIOLATIONS = 20  # lines of violations in the human report


def violation_kinds(entries: Iterable[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per kind of violation: how often it was seen, and for how many ids."""
    kinds: dict[str, dict[str, int]] = {}
    for entry in entries:
        summary = kinds.setdefault(entry["kind"], {"count": 0, "ids": 0})
        summary["count"] += entry["count"]
        summary["ids"] += "id_sms" in entry
    return kinds


def _violation_summary(kinds: dict[str, dict[str, int]]) -> str:
    """``none``, or each kind with how often it was seen (and for how many ids)."""
    if not kinds:
        return "none"
    return ", ".join(
        f"{kind} x{seen['count']}" + (f" ({seen['ids']} ids)" if seen["ids"] > 1 else "")
        for kind, seen in kinds.items()
    )


def format_report(report: Report) -> str:
    """The report as aligned lines for a person."""

    def ms(value: float | None) -> str:
        return "-" if value is None else f"{value:.1f} ms"

    mix = ", ".join(f"{kind} {n}" for kind, n in report.mix.items() if n)
    extras = f"repeated {report.repeated}, out of order {report.out_of_order}"
    lines = [
        ("receiver", f"{report.url} ({report.flavour}, schedule {report.schedule})"),
        ("messages", f"{report.messages} ({mix})" if mix else str(report.messages)),
        ("states", f"{report.states} of {report.planned} ({extras})"),
        ("acknowledged", f"{report.acknowledged} (superseded in the outbox {report.superseded})"),
        ("retried", str(report.retried)),
        ("dead", str(report.dead)),
        (
            "unsettled",
            f"{report.unsettled} (interrupted)" if report.interrupted else str(report.unsettled),
        ),
        ("attempts", f"{report.attempts} states pushed"),
        ("requests", str(report.requests)),
        ("elapsed", f"{report.elapsed:.2f} s"),
        ("requests/s", f"{report.requests_per_second:.1f}"),
        ("states/s", f"{report.states_per_second:.1f} acknowledged"),
        ("latency p50", ms(report.latency_ms(0.50))),
        ("latency p99", ms(report.latency_ms(0.99))),
        ("violations", _violation_summary(report.violation_kinds)),
    ]
    width = max(len(name) for name, _ in lines)
    text = [f"{name:<{width}}  {value}" for name, value in lines]
    for entry in report.violations[:SHOWN_VIOLATIONS]:
        about = f" id_sms {entry['id_sms']}" if "id_sms" in entry else ""
        text.append(f"  {entry['kind']}{about} x{entry['count']}: {entry['detail']}")
    hidden = len(report.violations) - SHOWN_VIOLATIONS
    if hidden > 0 or report.violations_truncated:
        more = "more" if not report.violations_truncated else "more, and the list was truncated"
        text.append(f"  … {max(hidden, 0)} {more} (--json lists up to {MAX_VIOLATIONS})")
    return "\n".join(text)


# --------------------------------------------------------------------------
# The run (I/O)
# --------------------------------------------------------------------------


class _Ledger:
    """Every state from its enqueue to its end, and the counts of the report."""

    def __init__(self, progress: tqdm[Any]) -> None:
        self.progress = progress
        self.open: dict[int, list[str]] = {}  # sort keys of the unsettled states, per id_sms
        self._idle: dict[int, list[asyncio.Future[None]]] = {}
        self.changed = asyncio.Event()
        self.states = self.acknowledged = self.superseded = self.dead = 0
        self.repeated = self.out_of_order = 0

    @property
    def unsettled(self) -> int:
        return sum(len(keys) for keys in self.open.values())

    def enqueued(self, states: Sequence[Outgoing]) -> None:
        """``states`` are committed to the outbox."""
        for state in states:
            self.open.setdefault(state.id_sms, []).append(sort_key(state))
        self.states += len(states)

    def pushed(self, report: PushReport) -> list[tuple[int, int]]:
        """A document's outcome is committed; the ``(id_sms, states)`` that died with it."""
        acked = set(report.acknowledged)
        died: list[tuple[int, int]] = []
        settled = 0
        for claimed in report.batch:
            id_sms = claimed.state.id_sms
            keys = self.open.get(id_sms)
            if id_sms in acked:
                pushed_key = sort_key(claimed.state)
                done = [k for k in keys or () if k <= pushed_key]
                self.acknowledged += len(done)
                self.superseded += sum(1 for k in done if k < pushed_key)
                left = [k for k in keys or () if k > pushed_key]
            elif id_sms in report.dead_ids:
                if any(k > sort_key(claimed.state) for k in keys or ()):
                    # A later state replaced the row while this push failed:
                    # the row lives on, with a new round of attempts.
                    continue
                # The row is a dead letter, with every state merged into it.
                done, left = list(keys or ()), []
                self.dead += len(done)
                died.append((id_sms, len(done)))
            else:
                continue
            settled += len(done)
            if left:
                self.open[id_sms] = left
            else:
                self.open.pop(id_sms, None)
                for waiter in self._idle.pop(id_sms, ()):
                    if not waiter.done():
                        waiter.set_result(None)
        if settled:
            self.progress.update(settled)
        self.changed.set()
        return died

    async def idle(self, id_sms: int) -> None:
        """Return once every state of ``id_sms`` enqueued so far is settled."""
        if id_sms not in self.open:
            return
        waiter = asyncio.get_running_loop().create_future()
        self._idle.setdefault(id_sms, []).append(waiter)
        await waiter


class _Pace:
    """At most ``rate`` calls of :meth:`wait` return per second (0: no limit)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1 / rate if rate > 0 else 0.0
        self.next = 0.0

    async def wait(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        at = max(now, self.next)
        self.next = at + self.interval
        if at > now:
            await asyncio.sleep(at - now)


class _Enqueuer:
    """Enqueues what the producers hand it, many states per transaction."""

    def __init__(self, emulation: Emulation) -> None:
        self.emulation = emulation
        self._items: list[tuple[Outgoing, asyncio.Future[None]]] = []
        self._kick = asyncio.Event()

    async def put(self, state: Outgoing) -> None:
        """Return once ``state`` is committed to the outbox."""
        future = asyncio.get_running_loop().create_future()
        self._items.append((state, future))
        self._kick.set()
        await future

    async def run(self) -> None:
        emulation = self.emulation
        while True:
            await self._kick.wait()
            self._kick.clear()
            while self._items:
                items = self._items[:ENQUEUE_GROUP]
                del self._items[:ENQUEUE_GROUP]
                states = [state for state, _ in items]
                try:
                    await emulation.outbox.enqueue(emulation.endpoint.name, states)
                except Exception as exc:  # noqa: BLE001 - for the producers to raise
                    for _, future in items:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                emulation.ledger.enqueued(states)
                emulation.dispatcher.wake()
                for _, future in items:
                    if not future.done():
                        future.set_result(None)


class Emulation:
    """One run: :meth:`run` once; :meth:`interrupt` ends it early (Ctrl-C)."""

    def __init__(self, options: EmulationOptions) -> None:
        self.options = options
        # A first pass for the totals; the producer makes the lifecycles again one
        # by one, so that a long run does not hold them all.
        self.planned = 0
        self.mix = {kind.value: 0 for kind in Kind}
        for life in self._lifecycles():
            self.planned += len(life.steps)
            self.mix[life.kind.value] += 1
        self.violations = Violations()
        self.retried = self.attempts = self.requests = 0
        self.latencies: list[float] = []
        self._interrupted = asyncio.Event()

    def _lifecycles(self) -> Iterator[Lifecycle]:
        options = self.options
        return iter_lifecycles(
            options.messages, options.seed, options.plain, first_id=options.first_id
        )

    # set up in run()
    outbox: Outbox
    endpoint: Endpoint
    dispatcher: Dispatcher
    ledger: _Ledger

    def interrupt(self) -> None:
        """Stop enqueueing and pushing; the report counts what is left as unsettled."""
        self._interrupted.set()

    def observe(self, report: PushReport) -> None:
        """One document pushed (its outcome committed)."""
        self.requests += 1
        self.attempts += len(report.ids)
        self.retried += report.retried
        self.latencies.append(report.latency)
        for finding in report.findings:
            self.violations.add_finding(finding)
        attempts = self.options.retry.attempts
        for id_sms, states in self.ledger.pushed(report):
            detail = f"never acknowledged in {attempts} attempt{'s' if attempts > 1 else ''}"
            self.violations.add("not_acknowledged", detail, id_sms, count=max(states, 1))

    async def run(self) -> Report:
        options = self.options
        workdir = None
        if options.db is None:
            workdir = Path(tempfile.mkdtemp(prefix="webcom-emulate-"))
            storage = await open_storage(f"sqlite:///{workdir / 'outbox.db'}", synchronous="NORMAL")
            self.outbox = outbox_for(storage)
        else:
            self.outbox = await open_outbox(options.db)
        try:
            return await self._run()
        finally:
            await self.outbox.close()
            if workdir is not None:
                shutil.rmtree(workdir, ignore_errors=True)

    async def _run(self) -> Report:
        options = self.options
        await self._refuse_foreign_work()
        self.endpoint = await self.outbox.add_endpoint(
            f"emulate-{os.getpid()}-{secrets.token_hex(4)}",
            EndpointSettings(
                url=options.url,
                username=options.username,
                password=options.password,
                flavour=options.flavour,
                batch_size=options.batch_size,
                concurrency=options.concurrency,
                connect_timeout=options.connect_timeout,
                read_timeout=options.read_timeout,
            ),
        )
        settings = DispatchSettings(
            retry=options.retry, linger=options.linger, poll=options.poll, pause_after=None
        )
        self.dispatcher = Dispatcher(self.outbox, settings, observer=self.observe)
        progress = tqdm(
            total=self.planned,
            unit="state",
            desc="settled",
            file=sys.stderr,
            disable=None if options.progress else True,
            leave=False,
            dynamic_ncols=True,
        )
        self.ledger = _Ledger(progress)
        started = time.monotonic()
        dispatching = asyncio.create_task(self.dispatcher.run(), name="emulate-dispatch")
        enqueuer = _Enqueuer(self)
        enqueuing = asyncio.create_task(enqueuer.run(), name="emulate-enqueue")
        producing = asyncio.create_task(self._produce(enqueuer), name="emulate-produce")
        try:
            finished = await self._wait(producing, dispatching, started + options.timeout)
            elapsed = time.monotonic() - started
        finally:
            progress.close()
            for task in (producing, enqueuing):
                task.cancel()
            self.dispatcher.stop()
            results = await asyncio.gather(
                producing, enqueuing, dispatching, return_exceptions=True
            )
        for result in results:
            if isinstance(result, Exception):
                raise _first(result)
        return self._report(elapsed, finished)

    async def _refuse_foreign_work(self) -> None:
        """The dispatcher pushes every endpoint's states: refuse an outbox with others' work."""
        paused = {e.name for e in await self.outbox.endpoints() if e.paused_at is not None}
        busy = [
            t.endpoint for t in await self.outbox.tally() if t.pending and t.endpoint not in paused
        ]
        if busy:
            raise ConfigError(
                f"the outbox at {self.options.db} has states waiting for {', '.join(busy)}; "
                "the emulator would push them too: give it another database"
            )

    async def _wait(
        self, producing: asyncio.Task[None], dispatching: asyncio.Task[None], deadline: float
    ) -> bool:
        """``True`` once every state is enqueued and settled; ``False`` at the deadline."""
        ledger = self.ledger
        checked = 0.0
        while not self._interrupted.is_set():
            for task in (producing, dispatching):
                if task.done() and task.exception() is not None:
                    return False
            now = time.monotonic()
            if now >= deadline:
                return False
            # The outbox has the last word; the ledger says when to ask it.
            if producing.done() and (not ledger.open or now - checked > 1.0):
                checked = now
                if await self._pending() == 0:
                    return True
            ledger.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ledger.changed.wait(), min(0.2, deadline - now))
        return False

    async def _pending(self) -> int:
        name = self.endpoint.name
        return sum(t.pending for t in await self.outbox.tally() if t.endpoint == name)

    async def _produce(self, enqueuer: _Enqueuer) -> None:
        schedule = self.options.schedule
        window = asyncio.Semaphore(
            FAST_WINDOW if schedule in {Schedule.FAST, Schedule.LOCKSTEP} else WIDE_WINDOW
        )
        pace = _Pace(0.0 if schedule is Schedule.BURST else self.options.rate)
        async with asyncio.TaskGroup() as group:
            for life in self._lifecycles():
                await window.acquire()
                group.create_task(self._message(life, enqueuer, pace, window))

    async def _message(
        self, life: Lifecycle, enqueuer: _Enqueuer, pace: _Pace, window: asyncio.Semaphore
    ) -> None:
        options = self.options
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            for index, step in enumerate(life.steps):
                if options.schedule is Schedule.PROVIDER:
                    wait = began + step.offset * options.time_scale - loop.time()
                    if wait > 0:
                        await asyncio.sleep(wait)
                if step.gated or (options.schedule is Schedule.LOCKSTEP and index):
                    await self.ledger.idle(life.id_sms)
                await pace.wait()
                await enqueuer.put(step.state)
                if step.extra is Extra.REPEAT:
                    self.ledger.repeated += 1
                elif step.extra is Extra.OUT_OF_ORDER:
                    self.ledger.out_of_order += 1
        finally:
            window.release()

    def _report(self, elapsed: float, finished: bool) -> Report:
        ledger = self.ledger
        unsettled = self.planned - ledger.acknowledged - ledger.dead
        interrupted = self._interrupted.is_set()
        if not finished and unsettled and not interrupted:
            self.violations.add(
                "unfinished",
                f"{unsettled} states neither acknowledged nor dead after "
                f"{self.options.timeout:g} s ({ledger.unsettled} of them in the outbox)",
                count=unsettled,
            )
        entries = self.violations.entries()
        return Report(
            url=self.options.url,
            flavour=self.options.flavour.value,
            schedule=self.options.schedule.value,
            messages=self.options.messages,
            mix=dict(self.mix),
            planned=self.planned,
            states=ledger.states,
            acknowledged=ledger.acknowledged,
            superseded=ledger.superseded,
            dead=ledger.dead,
            unsettled=unsettled,
            retried=self.retried,
            attempts=self.attempts,
            requests=self.requests,
            repeated=ledger.repeated,
            out_of_order=ledger.out_of_order,
            elapsed=elapsed,
            latencies=tuple(self.latencies),
            violations=tuple(entries[:MAX_VIOLATIONS]),
            violations_truncated=len(entries) > MAX_VIOLATIONS,
            violation_kinds=violation_kinds(entries),
            interrupted=interrupted,
        )


def _first(error: BaseException) -> BaseException:
    """The first error of an exception group (a failed producer), or ``error`` itself."""
    while isinstance(error, BaseExceptionGroup) and error.exceptions:
        error = error.exceptions[0]
    return error


async def run_emulation(options: EmulationOptions) -> Report:
    """Run the emulation of ``options`` to its end and report."""
    return await Emulation(options).run()
