"""Fixtures shared by the whole suite: database URLs and real server processes."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests._postgres import PostgresDatabases

STARTUP_SECONDS = 20.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


ENGINES = ("sqlite", "postgresql")


@pytest.fixture(scope="session")
def postgres_databases() -> Iterator[PostgresDatabases]:
    """Fresh PostgreSQL databases, cloned from one migrated template per session."""
    databases = PostgresDatabases()
    yield databases
    databases.drop_all()


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """A fresh SQLite file path (not created yet)."""
    return tmp_path / "status.db"


@pytest.fixture
def sqlite_url(db_path: Path) -> str:
    """The URL of a fresh SQLite database, for tests of SQLite itself."""
    return f"sqlite:///{db_path}"


@pytest.fixture(params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """Each engine in turn: a test using it runs once per engine."""
    name: str = request.param
    return name


@pytest.fixture
def db_url(engine: str, db_path: Path, postgres_databases: PostgresDatabases) -> str:
    """The URL of a fresh database, on each engine in turn."""
    if engine == "sqlite":
        return f"sqlite:///{db_path}"
    return postgres_databases.new()


@pytest.fixture
def empty_db_url(engine: str, db_path: Path, postgres_databases: PostgresDatabases) -> str:
    """The URL of a database with no schema yet, on each engine in turn.

    A SQLite file that does not exist yet; a PostgreSQL database made with
    ``CREATE DATABASE``, not cloned from the migrated template.
    """
    if engine == "sqlite":
        return f"sqlite:///{db_path}"
    return postgres_databases.empty()


@dataclass
class ServerProcess:
    """A real ``webcom-status serve`` process on 127.0.0.1."""

    db_url: str
    args: tuple[str, ...]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    log_path: Path | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServerProcess:
        """Start the process and wait until ``/healthz`` answers 200."""
        command = [
            sys.executable,
            "-m",
            "webcom_status",
            "serve",
            "--db",
            self.db_url,
            "--port",
            str(self.port),
            "--log-level",
            "warning",
            *self.args,
        ]
        assert self.log_path is not None
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}: {self.log()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not start: {self.log()}")

    def log(self) -> str:
        assert self.log_path is not None
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        """Send ``sig`` and wait for the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs."""
        self.stop(signal.SIGKILL)


@pytest.fixture
def start_server(tmp_path: Path, db_url: str) -> Iterator[Callable[..., ServerProcess]]:
    """Start ``webcom-status serve`` processes; all are stopped at the end of the test.

    ``start_server("--token", "...")`` passes flags; ``db_url=`` picks another database.
    """
    servers: list[ServerProcess] = []

    def start(*args: str, db_url: str = db_url) -> ServerProcess:
        server = ServerProcess(db_url, args, log_path=tmp_path / f"server-{len(servers)}.log")
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        if server.proc is not None and server.proc.poll() is None:
            server.stop()


@pytest.fixture
def server(start_server: Callable[..., ServerProcess]) -> ServerProcess:
    """One receiver with default settings on a fresh database."""
    return start_server()


def pytest_configure(config: pytest.Config) -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
