"""The servers under test: how to start each one, wait for it, and stop it.

Each runs as its own process group on a free 127.0.0.1 port, with a fresh
SQLite file in its own temporary directory, and is always stopped: SIGTERM,
then SIGKILL after a timeout.
"""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

from postgres import new_database

HOST = "127.0.0.1"
BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Server:
    """How to start one server under test."""

    name: str
    argv: Callable[[int, Path], list[str]]
    env: dict[str, str] = field(default_factory=dict)
    # False: the database is another process (PostgreSQL), so the fsync shim
    # preloaded into the server would measure nothing; those rows are skipped.
    disk: bool = True


def uvicorn_argv(app: str) -> Callable[[int, Path], list[str]]:
    """A raw ASGI app of this directory on the receiver's uvicorn settings."""

    def argv(port: int, _db: Path) -> list[str]:
        return [
            sys.executable, "-m", "uvicorn", "--app-dir", str(BENCH), app,
            "--host", HOST, "--port", str(port), "--loop", "uvloop", "--http", "httptools",
            "--no-access-log", "--log-level", "warning",
        ]  # fmt: skip

    return argv


def baseline_argv(port: int, db: Path) -> list[str]:
    return [sys.executable, str(BENCH / "baseline_flask.py"), "--db", str(db),
            "--host", HOST, "--port", str(port)]  # fmt: skip


def receiver_argv(port: int, db: Path) -> list[str]:
    return [sys.executable, "-m", "webcom_status", "serve", "--db", f"sqlite:///{db}",
            "--host", HOST, "--port", str(port)]  # fmt: skip


def receiver_pg_argv(workers: int) -> Callable[[int, Path], list[str]]:
    def argv(port: int, db: Path) -> list[str]:
        return [sys.executable, "-m", "webcom_status", "serve", "--db", new_database(db),
                "--host", HOST, "--port", str(port), "--workers", str(workers)]  # fmt: skip

    return argv


def receiver_env() -> dict[str, str]:
    """Run the working tree's package, installed or not."""
    path = os.environ.get("PYTHONPATH", "")
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(ROOT / "src"), path) if p)}


SERVERS = {
    "hello": Server("hello", uvicorn_argv("hello:app")),
    "baseline": Server("baseline", baseline_argv),
    # The receiver minus storage: parse and answer only (no disk, so no shim rows).
    "parse-only": Server("parse-only", uvicorn_argv("parse_only:app"), receiver_env(), disk=False),
    "receiver": Server("receiver", receiver_argv, receiver_env()),
    "receiver-pg": Server("receiver-pg", receiver_pg_argv(1), receiver_env(), disk=False),
    "receiver-pg-w2": Server("receiver-pg-w2", receiver_pg_argv(2), receiver_env(), disk=False),
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
