"""The emulator: its lifecycles (pure), then whole runs of ``emulate`` as a real process.

The runs push to the project's own receiver (``webcom-status serve`` on
SQLite), which must come out conforming with every message in its expected
final state, and to small receivers that break the protocol on purpose, each
a real HTTP server on 127.0.0.1 in a thread of the test process.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from datetime import UTC
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from tqdm import tqdm

from tests.conftest import ServerProcess
from tests.sender.faulty import Behaviour, FaultyReceiver
from webcom_status.protocol import Finding, Outgoing, answer, content_type, parse_push, parse_time
from webcom_status.rules import DELIVER, EXPIRED, NOT_DELIVER, PARTLY_DELIVER, READ, SEND
from webcom_status.sender.dispatcher import Dispatcher, DispatchSettings, PushReport
from webcom_status.sender.emulator import (
    MIX,
    Extra,
    Kind,
    Lifecycle,
    Report,
    Violations,
    _Ledger,
    default_first_id,
    expected_final,
    format_report,
    lifecycles,
    percentile,
    violation_kinds,
)
from webcom_status.sender.model import EndpointSettings, Tally
from webcom_status.sender.outbox import sort_key
from webcom_status.sender.retry import RetryPolicy
from webcom_status.storage import open_outbox

SEED = 11
REPORT_KEYS = {"states", "acknowledged", "dead", "attempts", "requests", "violations"}
PUSHED: dict[str, threading.Event] = {}  # per faulty receiver's mode: it got a push
NEVER_PUSHED = 7  # below every id_sms of a run: the seed puts them at 10,000,001 and up

# The statuses of each kind, in order, without the deliberate extras.
LIFECYCLES = {
    Kind.SMS_DELIVERED: [SEND, DELIVER],
    Kind.SMS_NOT_DELIVERED: [SEND, NOT_DELIVER],
    Kind.SMS_EXPIRED: [SEND, EXPIRED],
    Kind.SMS_PARTLY_DELIVERED: [SEND, PARTLY_DELIVER, DELIVER],
    Kind.VIBER_READ: [SEND, DELIVER, READ],
    Kind.VIBER_DELIVERED: [SEND, DELIVER],
    Kind.VIBER_SMS_FALLBACK: [SEND, DELIVER],
}
# The final (overall, sms, viber) of each kind.
FINALS = {
    Kind.SMS_DELIVERED: (DELIVER, DELIVER, None),
    Kind.SMS_NOT_DELIVERED: (NOT_DELIVER, NOT_DELIVER, None),
    Kind.SMS_EXPIRED: (EXPIRED, EXPIRED, None),
    Kind.SMS_PARTLY_DELIVERED: (DELIVER, DELIVER, None),
    Kind.VIBER_READ: (READ, None, READ),
    Kind.VIBER_DELIVERED: (DELIVER, None, DELIVER),
    Kind.VIBER_SMS_FALLBACK: (DELIVER, DELIVER, NOT_DELIVER),
}


def final_of(life: Lifecycle) -> tuple[str, str | None, str | None]:
    expected = life.expected
    sms = None if expected.sms is None else expected.sms.value
    viber = None if expected.viber is None else expected.viber.value
    return expected.overall.value, sms, viber


# --------------------------------------------------------------------------
# Lifecycles
# --------------------------------------------------------------------------


def test_every_message_follows_a_valid_lifecycle() -> None:
    """Each message's own states are its kind's, in order: ``send`` without a time, then
    times ``YYYY-MM-DD HH:MM:SS`` that increase; the channel attributes match the kind."""
    lives = lifecycles(2000, SEED, plain=False)
    first = default_first_id(SEED)
    assert [life.id_sms for life in lives] == list(range(first, first + 2000))
    for life in lives:
        steps = [s for s in life.steps if s.extra is None]
        assert [s.state.status for s in steps] == LIFECYCLES[life.kind]
        assert {s.state.id_sms for s in life.steps} == {life.id_sms}
        assert steps[0].state.time == ""
        times = [parse_time(s.state.time, UTC) for s in steps[1:]]
        known = [t for t in times if t is not None]
        assert known == times
        assert known == sorted(known)
        assert len(set(times)) == len(times)
        assert [s.offset for s in steps] == sorted(s.offset for s in steps)
        for step in steps:
            state = step.state
            if life.kind is Kind.VIBER_SMS_FALLBACK and state.status != SEND:
                assert (state.sms, state.viber) == (DELIVER, NOT_DELIVER)
            elif life.kind.value.startswith("viber"):
                assert (state.sms, state.viber) == (None, state.status)
            else:
                assert (state.sms, state.viber) == (state.status, None)


def test_each_kind_ends_in_its_final_state() -> None:
    """The expected final state (``rules.fold`` of every state, extras included) is the
    kind's: read for Viber read, deliver with ``viber="not_deliver"`` for the fallback..."""
    for life in lifecycles(2000, SEED, plain=False):
        assert final_of(life) == FINALS[life.kind], life
        states = [s.state for s in life.steps]
        assert expected_final(reversed(states)) == life.expected


def test_the_mix_covers_every_kind() -> None:
    """Every kind appears in a large run, roughly in its share; even a run of as many
    messages as there are kinds has each kind once."""
    lives = lifecycles(5000, SEED, plain=False)
    counts = {kind: sum(1 for life in lives if life.kind is kind) for kind in Kind}
    total = sum(MIX.values())
    for kind, weight in MIX.items():
        assert 0.5 * weight / total < counts[kind] / 5000 < 1.5 * weight / total, counts
    assert {life.kind for life in lifecycles(len(Kind), SEED, plain=False)} == set(Kind)


def test_the_same_seed_makes_the_same_run() -> None:
    """Lifecycles depend on their arguments only; another seed makes other ids and states."""
    assert lifecycles(500, 3, plain=False) == lifecycles(500, 3, plain=False)
    other = lifecycles(500, 4, plain=False)
    assert {life.id_sms for life in other}.isdisjoint(
        life.id_sms for life in lifecycles(500, 3, plain=False)
    )
    assert [life.id_sms for life in lifecycles(3, 3, plain=True, first_id=42)] == [42, 43, 44]


def test_extras_repeat_a_settled_state_or_go_back_in_time() -> None:
    """Unless plain, a few percent of the states come again: a repeat is the state just
    enqueued; an out-of-order state is an earlier one after a later one. Each extra, and
    the state after it, waits for the message's states to settle."""
    lives = lifecycles(3000, SEED, plain=False)
    repeats = out_of_order = 0
    for life in lives:
        for index, step in enumerate(life.steps):
            if step.extra is None:
                continue
            assert step.gated
            if index + 1 < len(life.steps):
                assert life.steps[index + 1].gated
            before = [s.state for s in life.steps[:index]]
            if step.extra is Extra.REPEAT:
                repeats += 1
                assert step.state == before[-1]
            else:
                out_of_order += 1
                assert step.state in before
                assert sort_key(step.state) < max(sort_key(s) for s in before)
        assert life.repeated + life.out_of_order == sum(1 for s in life.steps if s.extra)
    states = sum(len(life.steps) for life in lives)
    assert 0.01 < repeats / states < 0.06
    assert 0.02 < out_of_order / len(lives) < 0.08


def test_plain_has_no_extras_and_the_same_messages() -> None:
    """``plain`` removes the repeated and out-of-order states and changes nothing else."""
    plain = lifecycles(1000, SEED, plain=True)
    mixed = lifecycles(1000, SEED, plain=False)
    assert all(step.extra is None and not step.gated for life in plain for step in life.steps)
    for a, b in zip(plain, mixed, strict=True):
        assert (a.id_sms, a.kind, a.expected) == (b.id_sms, b.kind, b.expected)
        assert [s.state for s in a.steps] == [s.state for s in b.steps if s.extra is None]


def test_violations_are_counted_together_and_summed_up() -> None:
    """Identical findings make one entry with a count; the report sums them up per kind,
    lists them, and gives percentiles of the request latencies."""
    violations = Violations()
    for _ in range(3):
        violations.add_finding(Finding("no_declaration", "the answer has no XML declaration"))
    violations.add("not_acknowledged", "never acknowledged in 5 attempts", 10, count=2)
    violations.add("not_acknowledged", "never acknowledged in 5 attempts", 11)
    entries = violations.entries()
    assert entries == [
        {"kind": "no_declaration", "detail": "the answer has no XML declaration", "count": 3},
        {"kind": "not_acknowledged", "detail": "never acknowledged in 5 attempts",
         "id_sms": 10, "count": 2},
        {"kind": "not_acknowledged", "detail": "never acknowledged in 5 attempts",
         "id_sms": 11, "count": 1},
    ]  # fmt: skip
    report = Report(
        url="http://127.0.0.1:9/webhook", flavour="xml", schedule="fast", messages=2,
        mix={"sms_delivered": 2}, planned=4, states=4, acknowledged=1, superseded=0, dead=3,
        unsettled=0, retried=12, attempts=16, requests=8, repeated=0, out_of_order=0,
        elapsed=2.0, latencies=tuple(i / 1000 for i in range(1, 101)),
        violations=tuple(entries), violations_truncated=False,
        violation_kinds=violation_kinds(entries),
    )  # fmt: skip
    assert not report.conforming
    data = report.as_json()
    assert (data["latency_p50_ms"], data["latency_p99_ms"]) == (50.0, 99.0)
    assert data["requests_per_second"] == 4.0
    assert data["violation_kinds"] == {
        "no_declaration": {"count": 3, "ids": 0},
        "not_acknowledged": {"count": 3, "ids": 2},
    }
    lines = format_report(report).splitlines()
    assert "violations    no_declaration x3, not_acknowledged x3 (2 ids)" in lines
    assert "  not_acknowledged id_sms 10 x2: never acknowledged in 5 attempts" in lines
    assert percentile([], 0.5) is None


# --------------------------------------------------------------------------
# Whole runs, as a process
# --------------------------------------------------------------------------


def clean_environment() -> dict[str, str]:
    """This process's environment without any ``WEBCOM_STATUS_*`` setting."""
    return {k: v for k, v in os.environ.items() if not k.startswith("WEBCOM_STATUS")}


def emulate(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m webcom_status.cli_emulate ARGS --quiet`` in a clean environment."""
    environment = clean_environment()
    return subprocess.run(
        [sys.executable, "-m", "webcom_status.cli_emulate", *args, "--quiet", "--timeout", "60"],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def report_of(result: subprocess.CompletedProcess[str], status: int) -> dict[str, Any]:
    """The JSON report of a run that exited with ``status``."""
    assert result.returncode == status, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    assert report.keys() >= REPORT_KEYS
    return report


def kinds(report: dict[str, Any]) -> set[str]:
    return {v["kind"] for v in report["violations"]}


@pytest.fixture
def engine() -> str:
    """The project's own receiver runs on SQLite here."""
    return "sqlite"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("flavour", "schedule"),
    [("xml", "fast"), ("json", "burst"), ("xml", "provider"), ("json", "lockstep")],
)
def test_the_projects_receiver_conforms(
    server: ServerProcess, tmp_path: Path, flavour: str, schedule: str
) -> None:
    """Against ``webcom-status serve``: exit 0, every state acknowledged, none dead, no
    violation; the receiver holds each message in its expected final state, and the
    outbox kept with ``--db`` agrees with the report."""
    outbox_url = f"sqlite:///{tmp_path / 'outbox.db'}"
    messages = 300
    result = emulate(
        "--url", f"{server.url}/webhook", "--messages", str(messages), "--seed", str(SEED),
        "--flavour", flavour, "--schedule", schedule, "--time-scale", "0.0002",
        "--db", outbox_url, "--json", cwd=tmp_path,
    )  # fmt: skip
    report = report_of(result, 0)
    lives = lifecycles(messages, SEED, plain=False)
    planned = sum(len(life.steps) for life in lives)
    assert report["states"] == report["acknowledged"] == planned
    assert report["dead"] == report["unsettled"] == report["retried"] == 0
    assert report["violations"] == []
    assert report["attempts"] == planned - report["superseded"]
    assert report["repeated"] == sum(life.repeated for life in lives) > 0
    assert report["out_of_order"] == sum(life.out_of_order for life in lives) > 0
    assert report["requests"] > 0
    if schedule == "lockstep":
        assert report["superseded"] == 0
    sample = [life for i, life in enumerate(lives) if i % 10 == 0 or life.out_of_order]
    with httpx.Client(base_url=server.url) as client:
        for life in sample:
            message = client.get(f"/api/messages/{life.id_sms}").json()
            assert (message["status"], message["sms"], message["viber"]) == final_of(life)

    async def tally() -> Tally:
        outbox = await open_outbox(outbox_url)
        try:
            (row,) = await outbox.tally()
            return row
        finally:
            await outbox.close()

    # One row per state pushed, except where a newer state replaced a row in flight.
    rows = asyncio.run(tally())
    assert (rows.pending, rows.dead) == (0, 0)
    assert 0 < rows.delivered <= report["attempts"]
    if schedule == "lockstep":
        assert rows.delivered == report["attempts"] == planned


def test_the_human_report_and_usage_errors(server: ServerProcess, tmp_path: Path) -> None:
    """Without ``--json``, aligned lines and "violations  none"; a bad flag exits 2."""
    result = emulate("--url", f"{server.url}/webhook", "--messages", "20", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = dict(line.split(None, 1) for line in result.stdout.splitlines() if line[:1] != " ")
    assert lines["violations"] == "none"
    assert lines["dead"] == "0"
    assert lines["states"].startswith(lines["acknowledged"].split()[0] + " of ")
    for args in (
        ("--url", "ftp://example.com/"),
        ("--url", server.url, "--retry-schedule", "soon"),
        ("--url", server.url, "--basic-auth", "nopassword"),
        ("--url", server.url, "--schedule", "slowly"),
    ):
        bad = emulate(*args, cwd=tmp_path)
        assert bad.returncode == 2, bad.stderr
        assert "Error:" in bad.stderr
        assert "Traceback" not in bad.stderr


def test_basic_auth_reaches_the_receiver(
    start_server: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """``--basic-auth`` gets through a receiver that requires it; without it every push
    is refused, an ``http_status`` violation, and with one attempt every state dies."""
    server = start_server("--basic-auth", "provider:s3cret-pass")
    url = f"{server.url}/webhook"
    common = ("--messages", "30", "--plain", "--json")
    good = report_of(emulate("--url", url, "--basic-auth", "provider:s3cret-pass", *common,
                             cwd=tmp_path), 0)  # fmt: skip
    assert good["acknowledged"] == good["states"] > 0
    refused = report_of(emulate("--url", url, "--attempts", "1", *common, cwd=tmp_path), 1)
    assert refused["dead"] == refused["states"] == good["states"]
    assert kinds(refused) == {"http_status", "not_acknowledged"}
    assert {v["detail"] for v in refused["violations"] if v["kind"] == "http_status"} == {
        "HTTP 401"
    }


# --------------------------------------------------------------------------
# Receivers that break the protocol
# --------------------------------------------------------------------------


class _Faulty(BaseHTTPRequestHandler):
    """Reads each push with the package's parser and answers as ``mode`` says."""

    protocol_version = "HTTP/1.1"
    mode: ClassVar[str] = "honest"
    pushed: ClassVar[threading.Event]  # set at the first push

    def do_POST(self) -> None:
        self.pushed.set()
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        push = parse_push(body, UTC)
        ids = push.acknowledge
        if self.mode == "unknown":
            ids = (*ids, NEVER_PUSHED)
        elif self.mode == "silent":
            ids = ()
        reply = answer(push.flavour, ids)
        if self.mode == "no_declaration":
            reply = reply.split(b"?>", 1)[1].lstrip()
        self.send_response(200)
        self.send_header("Content-Type", content_type(push.flavour).decode())
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""


@pytest.fixture
def faulty() -> Iterator[Callable[[str], str]]:
    """``faulty(mode)``: the URL of a receiver answering in ``mode``: ``honest``,
    ``unknown`` (every id and one never pushed), ``no_declaration`` (every id, no XML
    declaration), ``silent`` (no id ever). ``PUSHED[mode]`` is set at its first push.
    """
    servers: list[tuple[ThreadingHTTPServer, threading.Thread]] = []

    def start(mode: str) -> str:
        PUSHED[mode] = threading.Event()
        handler = type(f"Faulty_{mode}", (_Faulty,), {"mode": mode, "pushed": PUSHED[mode]})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        servers.append((httpd, thread))
        return f"http://127.0.0.1:{httpd.server_address[1]}/webhook"

    yield start
    for httpd, thread in servers:
        httpd.shutdown()
        httpd.server_close()
        thread.join(10)


def test_a_receiver_acknowledging_an_id_it_was_not_sent(
    faulty: Callable[[str], str], tmp_path: Path
) -> None:
    """Exit 1 and ``unknown_id`` with that id_sms; the states pushed are acknowledged."""
    report = report_of(
        emulate("--url", faulty("unknown"), "--messages", "200", "--json", cwd=tmp_path), 1
    )
    unknown = [v for v in report["violations"] if v["kind"] == "unknown_id"]
    assert [v.get("id_sms") for v in unknown] == [NEVER_PUSHED]
    assert unknown[0]["count"] == report["requests"]
    assert kinds(report) == {"unknown_id"}
    assert report["acknowledged"] == report["states"]
    assert report["dead"] == 0


def test_a_receiver_answering_without_the_xml_declaration(
    faulty: Callable[[str], str], tmp_path: Path
) -> None:
    """Exit 1 and ``no_declaration``, once per answer; the ids it echoed still count."""
    report = report_of(
        emulate("--url", faulty("no_declaration"), "--messages", "200", "--json", cwd=tmp_path), 1
    )
    assert kinds(report) == {"no_declaration"}
    (violation,) = report["violations"]
    assert violation["count"] == report["requests"]
    assert "id_sms" not in violation
    assert report["acknowledged"] == report["states"]


def test_a_receiver_that_never_acknowledges(faulty: Callable[[str], str], tmp_path: Path) -> None:
    """With 3 attempts a few milliseconds apart, every state is pushed 3 times and dies;
    each id_sms is reported ``not_acknowledged``; exit 1."""
    result = emulate(
        "--url", faulty("silent"), "--messages", "60", "--schedule", "lockstep", "--json",
        "--attempts", "3", "--retry-schedule", "0,0.05,0.1", cwd=tmp_path,
    )  # fmt: skip
    report = report_of(result, 1)
    assert report["states"] == sum(len(life.steps) for life in lifecycles(60, 1, plain=False))
    assert report["dead"] == report["states"]
    assert report["acknowledged"] == 0
    assert report["attempts"] == 3 * report["states"]
    assert report["retried"] == 2 * report["states"]
    assert report["violation_kinds"] == {"not_acknowledged": {"count": report["states"], "ids": 60}}
    ids = {v["id_sms"] for v in report["violations"]}
    assert ids == {life.id_sms for life in lifecycles(60, 1, plain=False)}
    assert sum(v["count"] for v in report["violations"]) == report["states"]


def test_an_interrupted_run_reports_what_it_did(
    faulty: Callable[[str], str], tmp_path: Path
) -> None:
    """SIGINT during a long run: exit 130 and the report of the work done, the rest
    unsettled, which is no violation of the receiver's."""
    url = faulty("honest")
    command = [sys.executable, "-m", "webcom_status.cli_emulate", "--url", url, "--json"]
    command += ["--messages", "2000", "--rate", "100", "--quiet"]
    proc = subprocess.Popen(
        command, cwd=tmp_path, env=clean_environment(), stdout=subprocess.PIPE, text=True
    )
    try:
        assert PUSHED["honest"].wait(60), "no push came"
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
    report = json.loads(out)
    assert report["interrupted"] is True
    assert report["violations"] == []
    assert 0 < report["acknowledged"] <= report["states"] < report["planned"]
    assert report["unsettled"] == report["planned"] - report["acknowledged"]


def test_an_outbox_with_other_work_is_refused(tmp_path: Path) -> None:
    """``--db`` on an outbox with states waiting for another endpoint: the dispatcher
    would push them too, so the run is refused (exit 2) and nothing is pushed."""
    url = f"sqlite:///{tmp_path / 'outbox.db'}"

    async def enqueue() -> None:
        outbox = await open_outbox(url)
        try:
            await outbox.add_endpoint("billing", EndpointSettings(url="http://127.0.0.1:9/"))
            await outbox.enqueue("billing", [Outgoing(1, "deliver", "2024-06-03 09:00:00")])
        finally:
            await outbox.close()

    asyncio.run(enqueue())
    result = emulate("--url", "http://127.0.0.1:9/webhook", "--db", url, cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "has states waiting for billing" in result.stderr.replace("\n", " ")


async def test_a_row_replaced_while_its_last_push_fails_is_not_counted_dead(
    tmp_path: Path,
) -> None:
    """The ledger follows the real dispatcher: state A's only push is held, then
    fails (500) after a later state B replaced A's row; B's push is acknowledged.
    A is superseded and B acknowledged: nothing died, though A's push used its
    last attempt."""
    receiver = FaultyReceiver(Behaviour("fail_first", failures=1)).start()
    receiver.hold(True)
    outbox = await open_outbox(f"sqlite:///{tmp_path / 'outbox.db'}")
    ledger = _Ledger(tqdm(disable=True))
    settings = DispatchSettings(
        retry=RetryPolicy(attempts=1, schedule=(0,)), linger=0.0, poll=0.02, pause_after=None
    )

    def observe(report: PushReport) -> None:
        ledger.pushed(report)

    dispatcher = Dispatcher(outbox, settings, observer=observe)
    task = asyncio.create_task(dispatcher.run())
    try:
        await outbox.add_endpoint("a", EndpointSettings(url=receiver.url + "/hook"))
        first = Outgoing(7, DELIVER, "2026-11-27 10:00:00")
        later = Outgoing(7, READ, "2026-11-27 10:05:00")
        await outbox.enqueue("a", [first])
        ledger.enqueued([first])
        async with asyncio.timeout(30):
            while not receiver.records():
                await asyncio.sleep(0.01)
        await outbox.enqueue("a", [later])  # replaces the row while its push is held
        ledger.enqueued([later])
        receiver.hold(False)
        async with asyncio.timeout(30):
            while ledger.unsettled:
                await asyncio.sleep(0.01)
    finally:
        dispatcher.stop()
        await task
        await outbox.close()
        receiver.stop()
    pushed = [(r.http_status, [s.status for s in r.states]) for r in receiver.records()]
    assert pushed == [(500, [DELIVER]), (200, [READ])]
    assert (ledger.dead, ledger.acknowledged, ledger.superseded) == (0, 2, 1)
