"""The report: one Markdown table of measurements, then the targets with PASS/FAIL."""

from dataclasses import dataclass
from typing import Any

import cpu

DISTURBED_CORES = 0.1


@dataclass(frozen=True)
class Result:
    """One wrk run: what it measured and what it saw."""

    server: str
    fsync: str
    states: int
    wrk: dict[str, Any]
    cpu: cpu.Usage

    @property
    def rps(self) -> float:
        return float(self.wrk["rps"])

    @property
    def states_per_s(self) -> float:
        return self.rps * self.states

    @property
    def disturbed(self) -> bool:
        """Something else used a tenth of a core or more while wrk ran."""
        return self.cpu.other >= DISTURBED_CORES


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
    server: str = "receiver"


TARGETS = [
    Target("receiver / hello-world req/s", NO_SHIM, 1, "hello", 0.5),
    Target("receiver states/s", NO_SHIM, 100, None, 150_000),
    Target("receiver / baseline req/s", NO_SHIM, 1, "baseline", 20),
    Target("receiver / baseline states/s", NO_SHIM, 100, "baseline", 20),
    Target("receiver / hello-world req/s", "shim", 1, "hello", 0.25),
    Target("receiver-pg states/s", NO_SHIM, 100, None, 100_000, "receiver-pg"),
    Target("receiver-pg-w2 states/s", NO_SHIM, 100, None, 100_000, "receiver-pg-w2"),
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
        "| x hello-world | x baseline | x receiver (SQLite) | CPU server | CPU wrk | CPU other |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        vs_hello = ratio(found, r, "hello") if r.server != "hello" else None
        vs_base = ratio(found, r, "baseline") if r.server in ("receiver", "parse-only") else None
        vs_sqlite = ratio(found, r, "receiver") if r.server.startswith("receiver-") else None
        lines.append(
            f"| {r.server} | {r.fsync} | {r.states} | {r.rps:,.0f} | {r.states_per_s:,.0f} "
            f"| {r.wrk['p50_ms']:.2f} | {r.wrk['p99_ms']:.2f} "
            f"| {fmt_ratio(vs_hello)} | {fmt_ratio(vs_base)} | {fmt_ratio(vs_sqlite)} "
            f"| {r.cpu.server:.2f} | {r.cpu.wrk:.2f} "
            f"| {r.cpu.other:.2f}{' (!)' if r.disturbed else ''} |"
        )
    return lines


def verdicts(results: list[Result], shim: str) -> list[str]:
    """Each target with its measured value and PASS, FAIL or n/a."""
    found = {(r.server, r.fsync, r.states): r for r in results}
    lines = ["| target | fsync delay | states/doc | measured | goal | result |",
             "|---|---|---:|---:|---:|---|"]  # fmt: skip
    for t in TARGETS:
        fsync = shim if t.fsync == "shim" else t.fsync
        row = found.get((t.server, fsync, t.states))
        value = None if row is None else row.states_per_s
        if row is not None and t.versus is not None:
            value = ratio(found, row, t.versus)
        shown = "n/a" if value is None else f"{value:.2f}x" if t.versus else f"{value:,.0f}"
        goal = f"≥ {t.goal:g}x" if t.versus else f"≥ {t.goal:,.0f}"
        result = "n/a" if value is None else "PASS" if value >= t.goal else "FAIL"
        lines.append(f"| {t.label} | {fsync} | {t.states} | {shown} | {goal} | {result} |")
    return lines


def render(head: str, results: list[Result], problems: list[str], shim: str) -> str:
    """The whole report: a head line, the table, the targets, the checks."""
    checks = [f"- {p}" for p in problems] or ["- all answers 200, every id echoed and stored"]
    if any(r.disturbed for r in results):
        checks.append(f"- (!) other processes used ≥ {DISTURBED_CORES} core: rerun those rows")
    parts = [head, "", *table(results), "", *verdicts(results, shim), "", "Checks:", *checks]
    return "\n".join(parts) + "\n"
