"""CPU accounting for the benchmark: was the machine ours while wrk ran?

All numbers are in cores (CPU seconds per wall-clock second), read from
/proc: the whole machine's busy time, the server's process, and wrk (a
waited-for child of the runner, so it shows in RUSAGE_CHILDREN).
"""

import os
import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Usage:
    """Cores used during one measurement, filled in when it ends."""

    server: float = 0.0
    wrk: float = 0.0
    other: float = 0.0


def busy_seconds() -> float:
    """CPU time the whole machine spent busy (not idle, not waiting on I/O)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / TICK


def process_seconds(pid: int) -> float:
    """User + system CPU time of one process, all its threads."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def children_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@contextmanager
def measure(pid: int) -> Iterator[Usage]:
    """Split the machine's CPU use during the block into server, wrk and other."""
    usage = Usage()
    start = (time.monotonic(), busy_seconds(), process_seconds(pid), children_seconds())
    yield usage
    end = (time.monotonic(), busy_seconds(), process_seconds(pid), children_seconds())
    wall, busy, server, wrk = (b - a for a, b in zip(start, end, strict=True))
    usage.server, usage.wrk = server / wall, wrk / wall
    usage.other = max(0.0, busy / wall - usage.server - usage.wrk)


def wait_quiet(limit_s: float, threshold: float = 0.15) -> None:
    """Wait (at most limit_s) until the machine is nearly idle: other work skews results."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        before = busy_seconds()
        time.sleep(0.5)
        if (busy_seconds() - before) / 0.5 < threshold:
            return
    print(f"  machine still busy after {limit_s:g} s: measuring anyway", file=sys.stderr)
