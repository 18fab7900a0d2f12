"""The dispatcher: claims each endpoint's due states, pushes them, records what came back.

One :class:`_EndpointRunner` per endpoint, each with its own concurrency
slots, rate limit and timeouts, so that a slow or dead endpoint only ever
holds its own slots: the others keep claiming and pushing. Work is claimed
under a lease that outlasts the whole request, so a worker that dies
mid-push leaves its states to be claimed again by another when it ends:
delivery is at least once, and a state acknowledged is never pushed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from webcom_status._version import __version__
from webcom_status.errors import StorageError
from webcom_status.model import Flavour
from webcom_status.protocol import Finding, build_push, read_answer
from webcom_status.sender.model import Claimed, Endpoint, Failure, Settlement
from webcom_status.sender.outbox import Outbox
from webcom_status.sender.retry import RetryPolicy

log = logging.getLogger(__name__)

CONTENT_TYPES = {Flavour.XML: "text/xml; charset=utf-8", Flavour.JSON: "application/json"}
MAX_ANSWER = 1 << 20  # bytes of an answer read at most: ids of a 100-state batch take ~3 KiB
# An answer the dispatcher could not read at all: the endpoint did not answer.
UNREADABLE = frozenset({"unparseable", "wrong_shape"})


def worker_name() -> str:
    """A name for this worker that no other process shares: host, pid, random."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class DispatchSettings:
    """How a dispatcher pushes; per-endpoint settings live with the endpoints.

    ``linger`` is how long an idle endpoint's first due state waits for more
    to fill its document; ``poll`` is the longest time between two looks at
    the outbox for work enqueued by other processes; an endpoint that has
    failed every push for ``pause_after`` seconds is paused (``None``: never).
    A claim's lease outlasts the longest push by ``lease_margin`` seconds,
    for its outcome to be recorded; a dead worker's claims wait that long.
    """

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    linger: float = 0.05
    poll: float = 0.2
    pause_after: float | None = 3600.0
    max_answer: int = MAX_ANSWER
    lease_margin: float = 30.0
    name: str = field(default_factory=worker_name)


@dataclass(frozen=True, slots=True)
class PushReport:
    """One document pushed: what went out, what came back, how long it took.

    ``batch`` is the claimed rows (the states pushed); ``dead_ids`` the ids
    whose rows became dead letters with this push.
    """

    endpoint: str
    batch: tuple[Claimed, ...]
    ids: tuple[int, ...]
    acknowledged: tuple[int, ...]
    retried: int
    dead: int
    latency: float
    http_status: int | None
    error: str | None
    findings: tuple[Finding, ...]
    dead_ids: frozenset[int] = frozenset()


Observer = Callable[[PushReport], None]


@dataclass(slots=True)
class _Outcome:
    acknowledged: tuple[int, ...] = ()
    http_status: int | None = None
    error: str | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def answered(self) -> bool:
        """Whether the endpoint gave a readable 2xx answer."""
        return self.error is None


class _EndpointRunner:
    """Claims and pushes the due states of one endpoint, within its own limits."""

    def __init__(self, dispatcher: Dispatcher, endpoint: Endpoint) -> None:
        self.dispatcher = dispatcher
        self.endpoint = endpoint
        self.in_flight = 0
        self.kicked = asyncio.Event()
        self.more = False  # the last claim was full: there may be more due now
        self.next_send = 0.0
        self.tasks: set[asyncio.Task[None]] = set()
        self.loop_task = asyncio.create_task(self._loop(), name=f"endpoint-{endpoint.name}")

    @property
    def paused(self) -> bool:
        return self.endpoint.id in self.dispatcher.paused

    def kick(self) -> None:
        self.kicked.set()

    async def _loop(self) -> None:
        dispatcher = self.dispatcher
        while not dispatcher.stopping:
            await self.kicked.wait()
            self.kicked.clear()
            if dispatcher.stopping:
                break
            if self.in_flight == 0 and not self.more and dispatcher.settings.linger:
                await asyncio.sleep(dispatcher.settings.linger)
            await self._claim_while_free()

    async def _claim_while_free(self) -> None:
        dispatcher = self.dispatcher
        settings = self.endpoint.settings
        while self.in_flight < settings.concurrency and not self.paused and not dispatcher.stopping:
            # One claim fills every free slot: a claim waits for the writer
            # (a commit), and claiming one document at a time would leave the
            # slots empty meanwhile. Under a rate limit a document may only
            # wait its turn for so long within its lease: one at a time then.
            free = settings.concurrency - self.in_flight
            documents = 1 if settings.rate_limit is not None else free
            limit = documents * settings.batch_size
            owner = dispatcher.next_owner()
            try:
                claimed = await dispatcher.outbox.claim(
                    self.endpoint.id, owner, limit, dispatcher.lease(self.endpoint)
                )
            except StorageError as exc:
                log.error("claiming work for %s failed: %s", self.endpoint.name, exc)
                self.more = False
                return
            self.more = len(claimed) == limit
            for start in range(0, len(claimed), settings.batch_size):
                self.in_flight += 1
                batch = claimed[start : start + settings.batch_size]
                task = asyncio.create_task(self._push(owner, batch))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)
            if not self.more:
                return

    async def _respect_rate_limit(self) -> None:
        rate = self.endpoint.settings.rate_limit
        if rate is None:
            return
        now = time.monotonic()
        wait = self.next_send - now
        self.next_send = max(now, self.next_send) + 1 / rate
        if wait > 0:
            await asyncio.sleep(wait)

    async def _push(self, owner: str, batch: list[Claimed]) -> None:
        try:
            # Spaced here, just before the request, not before the claim:
            # a claim's time in the database varies more than the rate's gap.
            await self._respect_rate_limit()
            await self.dispatcher.push(self.endpoint, owner, batch)
        except Exception:
            log.exception("pushing to %s failed unexpectedly", self.endpoint.name)
        finally:
            self.in_flight -= 1
            if self.more:
                self.kick()

    async def drain(self) -> None:
        self.kick()
        await self.loop_task
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)


class Dispatcher:
    """Pushes what the outbox holds until :meth:`stop` is called."""

    def __init__(
        self,
        outbox: Outbox,
        settings: DispatchSettings | None = None,
        *,
        observer: Observer | None = None,
    ) -> None:
        self.outbox = outbox
        self.settings = settings or DispatchSettings()
        self.observer = observer
        self.stopping = False
        self._client: aiohttp.ClientSession | None = None
        self._runners: dict[int, _EndpointRunner] = {}
        self._wakeup = asyncio.Event()
        self._batches = itertools.count(1)
        self.paused: set[int] = set()  # endpoints paused, as of the last refresh or push

    def next_owner(self) -> str:
        """A lease owner no other claim shares: the worker's name and a counter."""
        return f"{self.settings.name}#{next(self._batches)}"

    @staticmethod
    def deadline(endpoint: Endpoint) -> float:
        """The longest one push to ``endpoint`` may take, connection included."""
        return endpoint.settings.connect_timeout + endpoint.settings.read_timeout

    def lease(self, endpoint: Endpoint) -> float:
        """How long claimed states stay with this worker: past any push's deadline."""
        return self.deadline(endpoint) + self.settings.lease_margin

    def wake(self) -> None:
        """Look at the outbox now rather than at the next poll (after an enqueue)."""
        self._wakeup.set()

    def stop(self) -> None:
        """Claim nothing more; :meth:`run` returns once the pushes in flight are recorded."""
        self.stopping = True
        self._wakeup.set()

    async def run(self) -> None:
        """Dispatch until :meth:`stop`; then finish the pushes in flight and return."""
        # No limit on connections overall: each endpoint's concurrency is its
        # limit, so that a dead endpoint's hanging pushes never hold a slot
        # another endpoint needs.
        connector = aiohttp.TCPConnector(limit=0, limit_per_host=0, keepalive_timeout=30)
        async with aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": f"webcom-status/{__version__}"},
            auto_decompress=True,
            trust_env=False,
        ) as client:
            self._client = client
            try:
                await self._watch()
            finally:
                self.stopping = True
                await asyncio.gather(*(r.drain() for r in self._runners.values()))

    async def _watch(self) -> None:
        endpoints: dict[int, Endpoint] = {}
        refreshed = 0.0
        while not self.stopping:
            try:
                due = await self.outbox.due()
                now = time.time()
                if now - refreshed > 1.0 or not due.keys() <= endpoints.keys():
                    endpoints = {e.id: e for e in await self.outbox.endpoints()}
                    refreshed = now
                    self._refresh(endpoints)
            except StorageError as exc:
                log.error("reading the outbox failed: %s", exc)
                due, now = {}, time.time()
            wait = self.settings.poll
            for endpoint_id, next_at in due.items():
                if endpoint_id not in endpoints:
                    continue
                if next_at <= now:
                    self._runner(endpoints[endpoint_id]).kick()
                else:
                    wait = min(wait, next_at - now)
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), max(wait, 0.001))

    def _refresh(self, endpoints: dict[int, Endpoint]) -> None:
        self.paused = {i for i, e in endpoints.items() if e.paused_at is not None}
        for endpoint_id, runner in self._runners.items():
            if endpoint_id in endpoints:
                runner.endpoint = endpoints[endpoint_id]

    def _runner(self, endpoint: Endpoint) -> _EndpointRunner:
        runner = self._runners.get(endpoint.id)
        if runner is None:
            runner = self._runners[endpoint.id] = _EndpointRunner(self, endpoint)
        return runner

    async def push(self, endpoint: Endpoint, owner: str, batch: list[Claimed]) -> None:
        """Push one claimed document to ``endpoint`` and record the outcome."""
        ids = tuple(c.state.id_sms for c in batch)
        started = time.perf_counter()
        outcome = await self._send(endpoint, batch)
        latency = time.perf_counter() - started
        acknowledged = set(outcome.acknowledged)
        error = outcome.error or "not acknowledged: the answer did not list this id_sms"
        retry = self.settings.retry
        failures = tuple(
            Failure(c.id, c.attempts + 1, error, retry.delay_after(c.attempts + 1), c.version)
            for c in batch
            if c.state.id_sms not in acknowledged
        )
        settlement = Settlement(
            endpoint_id=endpoint.id,
            owner=owner,
            delivered=tuple((c.id, c.version) for c in batch if c.state.id_sms in acknowledged),
            failures=failures,
            endpoint_ok=outcome.answered,
            error=outcome.error,
            pause_after=self.settings.pause_after,
        )
        try:
            paused = await self.outbox.settle(settlement)
        except StorageError as exc:
            # The lease ends, and the states are pushed again: at least once.
            log.error("recording a push to %s failed: %s", endpoint.name, exc)
            return
        if outcome.findings:
            log.warning(
                "%s broke the protocol answering %d states: %s",
                endpoint.name,
                len(batch),
                "; ".join(f.detail for f in outcome.findings[:5]),
            )
        if paused:
            self.paused.add(endpoint.id)  # claim nothing more for it until the next refresh
            log.warning(
                "endpoint %s paused: every push failed for %s s",
                endpoint.name,
                self.settings.pause_after,
            )
        if self.observer is not None:
            self.observer(
                PushReport(
                    endpoint=endpoint.name,
                    batch=tuple(batch),
                    ids=ids,
                    acknowledged=outcome.acknowledged,  # only ids pushed: read_answer saw to it
                    retried=sum(1 for f in failures if f.delay is not None),
                    dead=sum(1 for f in failures if f.delay is None),
                    latency=latency,
                    http_status=outcome.http_status,
                    error=outcome.error,
                    findings=tuple(outcome.findings),
                    dead_ids=frozenset(
                        c.state.id_sms
                        for c in batch
                        if c.state.id_sms not in acknowledged and c.attempts + 1 >= retry.attempts
                    ),
                )
            )

    async def _send(self, endpoint: Endpoint, batch: list[Claimed]) -> _Outcome:
        assert self._client is not None
        settings = endpoint.settings
        body = build_push((c.state for c in batch), settings.flavour)
        headers = {"Content-Type": CONTENT_TYPES[settings.flavour]}
        if settings.username is not None:
            headers["Authorization"] = aiohttp.encode_basic_auth(
                settings.username, settings.password or ""
            )
        timeout = aiohttp.ClientTimeout(
            total=self.deadline(endpoint),
            sock_connect=settings.connect_timeout,
            sock_read=settings.read_timeout,
        )
        outcome = _Outcome()
        try:
            async with self._client.post(
                settings.url,
                data=body,
                headers=headers,
                timeout=timeout,
                allow_redirects=False,
            ) as response:
                outcome.http_status = response.status
                answer = await _read_limited(response, self.settings.max_answer)
        except TimeoutError:  # aiohttp's timeouts are TimeoutErrors too
            return _failed(outcome, "timeout", f"no answer within {self.deadline(endpoint):g} s")
        except (aiohttp.ClientError, OSError) as exc:
            return _failed(outcome, "connection", f"connection failed: {exc!r}")
        if answer is None:
            return _failed(outcome, "too_large", f"answer larger than {self.settings.max_answer} B")
        if not 200 <= response.status < 300:
            return _failed(outcome, "http_status", f"HTTP {response.status}")
        read = read_answer(answer, settings.flavour, pushed=(c.state.id_sms for c in batch))
        outcome.acknowledged = read.ids
        outcome.findings.extend(read.findings)
        unreadable = [f for f in read.findings if f.kind in UNREADABLE]
        if unreadable:
            outcome.error = f"unreadable answer: {unreadable[0].detail}"
        return outcome


def _failed(outcome: _Outcome, kind: str, error: str) -> _Outcome:
    outcome.error = error
    outcome.findings.append(Finding(kind, error))
    return outcome


async def _read_limited(response: aiohttp.ClientResponse, limit: int) -> bytes | None:
    """The body, or ``None`` if it is longer than ``limit`` (reading stops there)."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.content.iter_chunked(65536):
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)
