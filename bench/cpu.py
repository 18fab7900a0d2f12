"""CPU accounting for the benchmark: was the machine ours while wrk ran?

All numbers are in cores (CPU seconds per wall-clock second), read from
/proc. "Other" is the CPU time of every user-space process that is neither
the runner nor one of its children (the server, wrk, py-spy): kernel threads
are left out, since the server's own fsyncs keep them busy. A process reaped
during the measurement still counts, through its parent's cutime/cstime.
"""

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
PF_KTHREAD = 0x00200000


@dataclass
class Usage:
    """Cores used during one measurement, filled in when it ends."""

    server: float = 0.0
    wrk: float = 0.0
    other: float = 0.0


def _stat(pid: str) -> list[str]:
    """Fields 3.. of /proc/PID/stat (after the command name, which may hold spaces)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _seconds(fields: list[str], children: bool = False) -> float:
    """utime + stime (+ cutime + cstime), fields 14-17 of /proc/PID/stat."""
    ticks = int(fields[11]) + int(fields[12])
    if children:
        ticks += int(fields[13]) + int(fields[14])
    return ticks / TICK


def process_seconds(pid: int) -> float:
    """User + system CPU time of one process, all its threads."""
    return _seconds(_stat(str(pid)))


def others_seconds() -> dict[str, float]:
    """CPU time of each process that is not ours and not a kernel thread."""
    me = str(os.getpid())
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or entry.name == me:
            continue
        with suppress(OSError, IndexError, ValueError):
            fields = _stat(entry.name)
            if fields[1] != me and not int(fields[6]) & PF_KTHREAD:
                found[entry.name] = _seconds(fields, children=True)
    return found


def others_cores(before: dict[str, float], after: dict[str, float], wall: float) -> float:
    """Cores used by others between two snapshots; the dead are in their parent's cutime."""
    spent = sum(after.values()) - sum(v for pid, v in before.items() if pid in after)
    return max(0.0, spent / wall)


def children_seconds() -> float:
    """CPU time of the runner's reaped children: wrk, once it has finished."""
    times = os.times()
    return times.children_user + times.children_system


@contextmanager
def measure(pid: int) -> Iterator[Usage]:
    """Split the CPU used during the block into server, wrk and other processes."""
    usage = Usage()
    start = (time.monotonic(), process_seconds(pid), children_seconds(), others_seconds())
    yield usage
    end = (time.monotonic(), process_seconds(pid), children_seconds(), others_seconds())
    wall = end[0] - start[0]
    usage.server = (end[1] - start[1]) / wall
    usage.wrk = (end[2] - start[2]) / wall
    usage.other = others_cores(start[3], end[3], wall)


def wait_quiet(limit_s: float, threshold: float = 0.1) -> None:
    """Wait (at most limit_s) until other processes are nearly idle: they skew results."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        before = others_seconds()
        time.sleep(0.5)
        if others_cores(before, others_seconds(), 0.5) < threshold:
            return
    print(f"  machine still busy after {limit_s:g} s: measuring anyway", file=sys.stderr)
