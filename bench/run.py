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
import sqlite3
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cpu
from postgres import count_events, drop_all, url_file
from report import NO_SHIM, Result, render
from servers import BENCH, HOST, ROOT, SERVERS, STOP_TIMEOUT_S, Live, Server, serving

DB_TABLE = "events"


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
    quiet_wait: float
    retries: int


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
    if url_file(db).exists():
        return count_events(db)
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
    kept: list[Result] = []
    tried: list[Result] = []
    with serving(server, workdir, env) as live:
        warm = run_wrk(live.port, 1, 1, settings, run=0)
        for run, states in enumerate(settings.states, start=1):
            attempts = measure_row(live, server.name, fsync, states, settings=settings, run=run)
            tried += attempts
            kept.append(min(attempts, key=lambda r: r.cpu.other))
    acked = int(warm["acked"]) + sum(int(r.wrk["acked"]) for r in tried)
    return kept, check_results(server.name, tried) + check_rows(server.name, live.db, acked)


def measure_row(
    live: Live, name: str, fsync: str, states: int, *, settings: Settings, run: int
) -> list[Result]:
    """Measure one row; run it again (up to --retries times) while others disturb it."""
    attempts: list[Result] = []
    label = f"{name}-{fsync.replace(' ', '')}-{states}"
    for attempt in range(settings.retries + 1):
        cpu.wait_quiet(settings.quiet_wait)
        with (
            profiling(live.pid, settings, label, name == "receiver"),
            cpu.measure(live.pid) as usage,
        ):
            wrk = run_wrk(live.port, states, settings.duration, settings, run * 100 + attempt)
        attempts.append(Result(name, fsync, states, wrk, usage))
        progress(attempts[-1])
        if not attempts[-1].disturbed:
            break
    return attempts


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
        f"{result.rps:>10,.0f} req/s  p99 {result.wrk['p99_ms']:.2f} ms  "
        f"CPU server {result.cpu.server:.2f} wrk {result.cpu.wrk:.2f} other {result.cpu.other:.2f}",
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
    """An echoed id promises a stored state: rows must cover every acknowledgement.

    Not of the two ceilings: the hello-world echoes nothing, and the parse-only
    server stores nothing by design (its answers are not acknowledgements).
    """
    if name in ("hello", "parse-only"):
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
        if fsync != NO_SHIM and not SERVERS[name].disk:
            continue
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


def parse_args(argv: list[str] | None) -> Settings:
    parser = argparse.ArgumentParser(description="Benchmark the Webcom status receiver.")
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk run")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections")
    parser.add_argument("--threads", type=int, default=1, help="wrk threads (1 leaves a core)")
    parser.add_argument("--states", default="1,100", help="states per document, comma-separated")
    parser.add_argument("--servers", default="hello,baseline,receiver", help="comma-separated")
    parser.add_argument("--fsync-delay-us", type=int, default=2000, help="0 skips the shim rows")
    parser.add_argument("--output", type=Path, help="also write the Markdown report here")
    parser.add_argument("--quick", action="store_true", help="2 s runs, 8 connections")
    parser.add_argument("--profile", type=Path, help="py-spy the receiver's runs into this dir")
    parser.add_argument(
        "--quiet-wait", type=float, default=60, help="seconds to wait for an idle machine"
    )
    parser.add_argument("--retries", type=int, default=2, help="reruns of a disturbed row")
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
        quiet_wait=10 if args.quick else args.quiet_wait,
        retries=0 if args.quick else args.retries,
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


def describe(settings: Settings) -> str:
    return (
        f"wrk: {settings.threads} thread(s), {settings.connections} connections, "
        f"{settings.duration} s per row; nproc {os.cpu_count()}; "
        f"Python {sys.version.split()[0]}; receiver at {revision()}"
    )


def revision() -> str:
    """The commit measured, and whether src/ had uncommitted changes."""
    commit = git("rev-parse", "--short", "HEAD") or "unknown commit"
    return commit + (" + uncommitted src/ changes" if git("status", "--porcelain", "src") else "")


def git(*args: str) -> str:
    """A read-only git query; GIT_OPTIONAL_LOCKS=0 keeps `status` off the index lock."""
    done = subprocess.run(
        ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False,
        env={**os.environ, "GIT_OPTIONAL_LOCKS": "0"},
    )  # fmt: skip
    return done.stdout.strip()


def require_tools(settings: Settings) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: `apt-get update && apt-get install -y wrk` installs it")
    if settings.profile is not None and shutil.which("py-spy") is None:
        raise SystemExit("py-spy not found: `pip install py-spy` installs it")


@contextmanager
def dropping_databases() -> Iterator[None]:
    """Drop the PostgreSQL databases made for the runs, whatever happens."""
    try:
        yield
    finally:
        drop_all()


def main(argv: list[str] | None = None) -> int:
    settings = parse_args(argv)
    require_tools(settings)
    shim_label = f"{settings.fsync_delay_us / 1000:g} ms"
    with tempfile.TemporaryDirectory(prefix="webcom-bench-") as tmp, dropping_databases():
        workdir = Path(tmp)
        results, problems = run_round(settings, workdir, {}, NO_SHIM)
        shim = build_shim(workdir) if settings.fsync_delay_us > 0 else None
        if shim is not None:
            env = {"LD_PRELOAD": str(shim), "FSYNC_DELAY_US": str(settings.fsync_delay_us)}
            more, found = run_round(settings, workdir, env, shim_label)
            results, problems = results + more, problems + found
    report = render(describe(settings), results, problems, shim_label)
    print(report)
    if settings.output is not None:
        settings.output.write_text(report)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
