"""Benchmark the receiver against a hello-world ceiling and a hand-written Flask baseline.

    python bench/run.py [--duration 10] [--connections 32] [--quick]

Each server runs as a subprocess on a free 127.0.0.1 port with a fresh SQLite
file; wrk (bench/push.lua) posts documents of 1 and 100 states with unique
ids. Then the same servers run again with fsync/fdatasync slowed down by an
LD_PRELOAD shim (bench/fsync_shim.c), as on a real disk. One Markdown table
is printed, then the targets with PASS/FAIL. The exit code is 1 when a
correctness check fails (a non-200 answer, an unacknowledged state, fewer
rows stored than ids acknowledged), not when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
DB_TABLE = "events"


@dataclass(frozen=True)
class Server:
    """How to start one server under test."""

    name: str
    argv: Callable[[int, Path], list[str]]
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Result:
    """One wrk run: what it measured and what it saw."""

    server: str
    fsync: str
    states: int
    wrk: dict[str, Any]

    @property
    def rps(self) -> float:
        return float(self.wrk["rps"])

    @property
    def states_per_s(self) -> float:
        return self.rps * self.states


@dataclass(frozen=True)
class Settings:
    """Command-line settings after --quick is applied."""

    duration: int
    connections: int
    threads: int
    states: list[int]
    servers: list[str]
    fsync_delay_us: int
    output: Path | None
    profile: Path | None


def hello_argv(port: int, _db: Path) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "--app-dir", str(BENCH), "hello:app",
        "--host", HOST, "--port", str(port), "--loop", "uvloop", "--http", "httptools",
        "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip


def baseline_argv(port: int, db: Path) -> list[str]:
    return [sys.executable, str(BENCH / "baseline_flask.py"), "--db", str(db),
            "--host", HOST, "--port", str(port)]  # fmt: skip


def receiver_argv(port: int, db: Path) -> list[str]:
    return [sys.executable, "-m", "webcom_status", "serve", "--db", f"sqlite:///{db}",
            "--host", HOST, "--port", str(port)]  # fmt: skip


def receiver_env() -> dict[str, str]:
    """Run the working tree's package, installed or not."""
    path = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(ROOT / "src"), path) if p)}


SERVERS = {
    "hello": Server("hello", hello_argv),
    "baseline": Server("baseline", baseline_argv),
    "receiver": Server("receiver", receiver_argv, receiver_env()),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_ready(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    """Poll GET /healthz until it answers 200; fail early if the server dies."""
    url = f"http://{HOST}:{port}/healthz"
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{tail(log)}")
        with suppress(OSError), urllib.request.urlopen(url, timeout=1) as answer:
            if answer.status == 200:
                return
        time.sleep(0.1)
    raise RuntimeError(f"server not ready after {READY_TIMEOUT_S} s:\n{tail(log)}")


def tail(log: Path, lines: int = 30) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group, then SIGKILL it after a timeout."""
    if proc.poll() is not None:
        return
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        with suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=STOP_TIMEOUT_S)


@dataclass(frozen=True)
class Live:
    """A server that answers: its process id, port and database file."""

    pid: int
    port: int
    db: Path


@contextmanager
def serving(server: Server, workdir: Path, env: dict[str, str]) -> Iterator[Live]:
    """Run one server on a free port with a fresh database; always stop it."""
    home = Path(tempfile.mkdtemp(prefix=f"{server.name}-", dir=workdir))
    port, db, log = free_port(), home / f"{server.name}.sqlite3", home / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            server.argv(port, db), cwd=home, stdout=out, stderr=subprocess.STDOUT,
            env={**os.environ, **server.env, **env}, start_new_session=True,
        )  # fmt: skip
        try:
            wait_ready(proc, port, log)
            yield Live(proc.pid, port, db)
        finally:
            stop(proc)


def run_wrk(port: int, states: int, seconds: int, settings: Settings, run: int) -> dict[str, Any]:
    """Run wrk once and return the JSON line that push.lua's done() prints."""
    argv = [
        "wrk", f"-t{settings.threads}", f"-c{settings.connections}", f"-d{seconds}s",
        "--timeout", "30s", "-s", str(BENCH / "push.lua"),
        f"http://{HOST}:{port}/webhook", "--", str(states), str(run),
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60, check=True)
    for line in done.stdout.splitlines():
        if line.startswith("WRK_JSON "):
            return dict(json.loads(line.removeprefix("WRK_JSON ")))
    raise RuntimeError(f"wrk printed no WRK_JSON line:\n{done.stdout}\n{done.stderr}")


def count_rows(db: Path) -> int | None:
    """Rows in the events table, or None when there is no such table."""
    if not db.exists():
        return None
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        found = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (DB_TABLE,)
        ).fetchone()
        if found is None:
            return None
        return int(conn.execute(f"SELECT count(*) FROM {DB_TABLE}").fetchone()[0])


def bench_server(
    server: Server, fsync: str, env: dict[str, str], settings: Settings, workdir: Path
) -> tuple[list[Result], list[str]]:
    """Warm one server up, measure each document size, then check what it stored."""
    results: list[Result] = []
    with serving(server, workdir, env) as live:
        warm = run_wrk(live.port, 1, 1, settings, run=0)
        for run, states in enumerate(settings.states, start=1):
            label = f"{server.name}-{fsync.replace(' ', '')}-{states}"
            with profiling(live.pid, settings, label, server.name == "receiver"):
                wrk = run_wrk(live.port, states, settings.duration, settings, run)
            results.append(Result(server.name, fsync, states, wrk))
            progress(results[-1])
    acked = int(warm["acked"]) + sum(int(r.wrk["acked"]) for r in results)
    return results, check_results(server.name, results) + check_rows(server.name, live.db, acked)


@contextmanager
def profiling(pid: int, settings: Settings, label: str, wanted: bool) -> Iterator[None]:
    """Sample the server with py-spy while wrk runs, when --profile asks for it."""
    if settings.profile is None or not wanted:
        yield
        return
    settings.profile.mkdir(parents=True, exist_ok=True)
    argv = [
        "py-spy", "record", "--pid", str(pid), "--duration", str(settings.duration),
        "--format", "raw", "--threads", "--nonblocking",
        "-o", str(settings.profile / f"{label}.txt"),
    ]  # fmt: skip
    spy = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        try:
            spy.wait(timeout=settings.duration + 30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(timeout=STOP_TIMEOUT_S)


def progress(result: Result) -> None:
    print(
        f"  {result.server:8} fsync={result.fsync:5} states={result.states:<4} "
        f"{result.rps:>10,.0f} req/s  p99 {result.wrk['p99_ms']:.2f} ms",
        file=sys.stderr, flush=True,
    )  # fmt: skip


def check_results(name: str, results: list[Result]) -> list[str]:
    """Every answer 200, no socket errors, and (receivers) every state echoed."""
    problems = []
    for r in results:
        w, where = r.wrk, f"{name} fsync={r.fsync} states={r.states}"
        if w["answered_200"] == 0:
            problems.append(f"{where}: no 200 answer at all")
        if w["non200"] or w["socket_errors"]:
            problems.append(f"{where}: {w['non200']} non-200, {w['socket_errors']} socket errors")
        if name != "hello" and w["acked"] != w["answered_200"] * r.states:
            expected = w["answered_200"] * r.states
            problems.append(f"{where}: {w['acked']} ids echoed, expected {expected}")
    return problems


def check_rows(name: str, db: Path, acked: int) -> list[str]:
    """An echoed id promises a stored state: rows must cover every acknowledgement."""
    if name == "hello":
        return []
    rows = count_rows(db)
    if rows is None:
        return [f"{name}: no '{DB_TABLE}' table in {db.name}"]
    if rows < acked:
        return [f"{name}: {rows} rows in '{DB_TABLE}' but {acked} ids acknowledged"]
    return []


def run_round(
    settings: Settings, workdir: Path, env: dict[str, str], fsync: str
) -> tuple[list[Result], list[str]]:
    """Benchmark every selected server under one fsync setting."""
    results: list[Result] = []
    problems: list[str] = []
    for name in settings.servers:
        print(f"{name} (fsync delay: {fsync})", file=sys.stderr, flush=True)
        try:
            more, found = bench_server(SERVERS[name], fsync, env, settings, workdir)
        except (RuntimeError, subprocess.SubprocessError) as error:
            problems.append(f"{name} fsync={fsync}: {error}")
            continue
        results += more
        problems += found
    return results, problems


def build_shim(workdir: Path) -> Path | None:
    """Compile the fsync shim with gcc; None (and a hint) when gcc is missing."""
    if shutil.which("gcc") is None:
        print("gcc not found (apt-get install -y gcc): skipping the fsync rows", file=sys.stderr)
        return None
    shim = workdir / "fsync_shim.so"
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-O2", "-o", str(shim), str(BENCH / "fsync_shim.c"), "-ldl"],
        check=True, timeout=60,
    )  # fmt: skip
    return shim


Key = tuple[str, str, int]
NO_SHIM = "none"


@dataclass(frozen=True)
class Target:
    """A goal for the receiver, measured as a ratio or a rate."""

    label: str
    fsync: str  # NO_SHIM or "shim": the shim's label is only known at run time
    states: int
    versus: str | None  # None: compare states/s itself with `goal`
    goal: float


TARGETS = [
    Target("receiver / hello-world req/s", NO_SHIM, 1, "hello", 0.5),
    Target("receiver states/s", NO_SHIM, 100, None, 150_000),
    Target("receiver / baseline req/s", NO_SHIM, 1, "baseline", 20),
    Target("receiver / baseline states/s", NO_SHIM, 100, "baseline", 20),
    Target("receiver / hello-world req/s", "shim", 1, "hello", 0.25),
]


def ratio(found: dict[Key, Result], row: Result, versus: str) -> float | None:
    other = found.get((versus, row.fsync, row.states))
    return row.rps / other.rps if other and other.rps else None


def fmt_ratio(value: float | None) -> str:
    return "" if value is None else f"{value:.3g}x"


def table(results: list[Result]) -> list[str]:
    """The measurements, one row per server, fsync setting and document size."""
    found = {(r.server, r.fsync, r.states): r for r in results}
    lines = [
        "| server | fsync delay | states/doc | req/s | states/s | p50 ms | p99 ms "
        "| x hello-world | x baseline |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        vs_hello = ratio(found, r, "hello") if r.server != "hello" else None
        vs_base = ratio(found, r, "baseline") if r.server == "receiver" else None
        lines.append(
            f"| {r.server} | {r.fsync} | {r.states} | {r.rps:,.0f} | {r.states_per_s:,.0f} "
            f"| {r.wrk['p50_ms']:.2f} | {r.wrk['p99_ms']:.2f} "
            f"| {fmt_ratio(vs_hello)} | {fmt_ratio(vs_base)} |"
        )
    return lines


def verdicts(results: list[Result], shim: str) -> list[str]:
    """Each target with its measured value and PASS, FAIL or n/a."""
    found = {(r.server, r.fsync, r.states): r for r in results}
    lines = ["| target | fsync delay | states/doc | measured | goal | result |",
             "|---|---|---:|---:|---:|---|"]  # fmt: skip
    for t in TARGETS:
        fsync = shim if t.fsync == "shim" else t.fsync
        row = found.get(("receiver", fsync, t.states))
        value = None if row is None else row.states_per_s
        if row is not None and t.versus is not None:
            value = ratio(found, row, t.versus)
        shown = "n/a" if value is None else f"{value:,.2f}" if t.versus else f"{value:,.0f}"
        goal = f"≥ {t.goal:g}x" if t.versus else f"≥ {t.goal:,.0f}"
        result = "n/a" if value is None else "PASS" if value >= t.goal else "FAIL"
        lines.append(f"| {t.label} | {fsync} | {t.states} | {shown} | {goal} | {result} |")
    return lines


def render(results: list[Result], problems: list[str], settings: Settings, shim: str) -> str:
    head = (
        f"wrk: {settings.threads} thread(s), {settings.connections} connections, "
        f"{settings.duration} s per row; nproc {os.cpu_count()}; "
        f"Python {sys.version.split()[0]}"
    )
    checks = [f"- {p}" for p in problems] or ["- all answers 200, every id echoed and stored"]
    parts = [head, "", *table(results), "", *verdicts(results, shim), "", "Checks:", *checks]
    return "\n".join(parts) + "\n"


def parse_args(argv: list[str] | None) -> Settings:
    parser = argparse.ArgumentParser(description="Benchmark the Webcom status receiver.")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (1 leaves a core)")
    parser.add_argument("--states", default="1,100", help="states per document, comma-separated")
    parser.add_argument("--servers", default="hello,baseline,receiver")
    parser.add_argument("--fsync-delay-us", type=int, default=2000, help="0 skips the shim rows")
    parser.add_argument("--output", type=Path, help="also write the Markdown report here")
    parser.add_argument("--quick", action="store_true", help="2 s runs, 8 connections")
    parser.add_argument("--profile", type=Path, help="py-spy the receiver's runs into this dir")
    args = parser.parse_args(argv)
    return Settings(
        duration=2 if args.quick else args.duration,
        connections=8 if args.quick else args.connections,
        threads=args.threads,
        states=[int(s) for s in args.states.split(",")],
        servers=available([s.strip() for s in args.servers.split(",")]),
        fsync_delay_us=args.fsync_delay_us,
        output=args.output,
        profile=args.profile,
    )


def available(names: list[str]) -> list[str]:
    """Drop the receiver, with a note, until its command exists."""
    unknown = set(names) - SERVERS.keys()
    if unknown:
        raise SystemExit(f"unknown server(s): {', '.join(sorted(unknown))}")
    if "receiver" in names and not (ROOT / "src" / "webcom_status" / "cli.py").exists():
        print("note: src/webcom_status/cli.py is missing: skipping the receiver", file=sys.stderr)
        return [n for n in names if n != "receiver"]
    return names


def require_tools(settings: Settings) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: `apt-get update && apt-get install -y wrk` installs it")
    if settings.profile is not None and shutil.which("py-spy") is None:
        raise SystemExit("py-spy not found: `pip install py-spy` installs it")


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    require_tools(settings)
    shim_label = f"{settings.fsync_delay_us / 1000:g} ms"
    with tempfile.TemporaryDirectory(prefix="webcom-bench-") as tmp:
        workdir = Path(tmp)
        results, problems = run_round(settings, workdir, {}, NO_SHIM)
        shim = build_shim(workdir) if settings.fsync_delay_us > 0 else None
        if shim is not None:
            env = {"LD_PRELOAD": str(shim), "FSYNC_DELAY_US": str(settings.fsync_delay_us)}
            more, found = run_round(settings, workdir, env, shim_label)
            results, problems = results + more, problems + found
    report = render(results, problems, settings, shim_label)
    print(report)
    if settings.output is not None:
        settings.output.write_text(report)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
