"""The ``webcom-status`` command, run as a real process.

Each test runs ``python -m webcom_status`` (or the installed script) in a
temporary working directory, so that a default ``webcom-status.db`` would
show up there and nowhere else.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from tests import _db
from tests._postgres import PostgresDatabases
from tests.conftest import ServerProcess
from webcom_status.storage._queries import migrations_dir

DEFAULT_DB = "webcom-status.db"
PUSH = b"""<?xml version="1.0" encoding="utf-8" ?>
<response>
  <state id_sms="3235" time="" sms="send">send</state>
  <state id_sms="3235" time="2011-01-01 12:57:46" sms="expired" viber="read">read</state>
  <state id_sms="3236" time="2011-01-01 12:57:46" viber="deliver">deliver</state>
  <state id_sms="oops" time="2011-01-01 12:57:46">deliver</state>
</response>"""
NOT_XML = b"<response><state id_sms='1'>deliver</response>"


def run_cli(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m webcom_status ARGS`` in ``cwd``; ``env`` is added to a clean environment."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("WEBCOM_STATUS")}
    environment |= env or {}
    return subprocess.run(
        [sys.executable, "-m", "webcom_status", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def assert_readable_error(result: subprocess.CompletedProcess[str], status: int, text: str) -> None:
    """The command failed with ``status`` and one ``Error:`` line saying ``text``."""
    assert result.returncode == status, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert f"Error: {text}" in result.stderr.replace("\n", " "), result.stderr


@pytest.fixture
def pushed(server: ServerProcess) -> dict[str, object]:
    """The documented example plus a bad state and a malformed document pushed to a
    server that has then stopped; the API's view of each, taken before the stop."""
    with httpx.Client(base_url=server.url) as client:
        assert client.post("/webhook", content=PUSH).status_code == 200
        assert client.post("/webhook", content=NOT_XML).status_code == 400
        views: dict[str, object] = {
            path: client.get(path).json()
            for path in ("/api/messages/3235", "/api/messages/3236", "/api/rejects", "/api/stats")
        }
    assert server.stop() == 0
    return views


def test_installed_script_prints_help(tmp_path: Path) -> None:
    """``webcom-status --help`` (the console script) lists every command and exits 0."""
    script = Path(sys.executable).with_name("webcom-status")
    result = subprocess.run(
        [script, "--help"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    for command in ("serve", "show", "rejects", "stats", "migrate"):
        assert f"  {command} " in result.stdout


def test_version_is_the_installed_one(tmp_path: Path) -> None:
    """``python -m webcom_status --version`` prints the distribution's version."""
    result = run_cli("--version", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(f"version {version('webcom-status')}")


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--timezone", "Mars/Olympus_Mons", "unknown time zone 'Mars/Olympus_Mons'"),
        ("--timezone", "Europe", "unknown time zone 'Europe'"),
        ("--max-body", "0", "a size must be positive"),
        ("--max-body", "16 parsecs", "not a size: '16 parsecs'"),
        ("--token", "short", "the token must be at least 16 characters"),
        ("--token", "slashes/are/not/allowed", "the token must be at least 16 characters"),
        ("--allow-ip", "300.1.1.1", "not an IP address or CIDR block: '300.1.1.1'"),
        ("--allow-ip", "10.0.0.0/33", "not an IP address or CIDR block: '10.0.0.0/33'"),
        ("--basic-auth", "nopassword", "basic auth must be given as user:password"),
        ("--basic-auth", ":secret", "basic auth must be given as user:password"),
        ("--db", "mysql://localhost/status", "unsupported database URL 'mysql://localhost/status'"),
        ("--db", "sqlite:///:memory:", "an in-memory SQLite database keeps nothing"),
        ("--port", "70000", "Invalid value for '--port'"),
        ("--synchronous", "OFF", "Invalid value for '--synchronous'"),
        ("--request-timeout", "-1", "Invalid value for '--request-timeout'"),
    ],
)
def test_serve_refuses_a_bad_flag_with_status_2(
    tmp_path: Path, flag: str, value: str, message: str
) -> None:
    """A bad ``serve`` setting: exit status 2, a one-line reason, no traceback, no file."""
    result = run_cli("serve", "--port", "0", flag, value, cwd=tmp_path)
    assert_readable_error(result, 2, message)
    assert "Usage:" in result.stderr
    assert not (tmp_path / DEFAULT_DB).exists()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("sqlite:///no/such/dir/x.db", "cannot open SQLite database"),
        ("postgresql://postgres@127.0.0.1:1/nothing", "cannot open PostgreSQL database"),
    ],
    ids=["sqlite-no-folder", "postgresql-no-server"],
)
def test_serve_reports_a_database_it_cannot_open(tmp_path: Path, url: str, message: str) -> None:
    """``serve --db`` on a folder that does not exist, or a port where no PostgreSQL
    listens: status 1 and the reason, not a traceback."""
    result = run_cli("serve", "--port", "0", "--db", url, cwd=tmp_path)
    assert_readable_error(result, 1, message)


def test_show_prints_what_the_api_returns(
    pushed: dict[str, object], db_url: str, tmp_path: Path
) -> None:
    """``show ID --db URL`` prints the same JSON as ``GET /api/messages/ID``, history included."""
    for id_sms in ("3235", "3236"):
        result = run_cli("show", id_sms, "--db", db_url, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout) == pushed[f"/api/messages/{id_sms}"]
    message = json.loads(run_cli("show", "3235", "--db", db_url, cwd=tmp_path).stdout)
    assert (message["status"], message["sms"], message["viber"]) == ("read", "expired", "read")
    assert [event["status"] for event in message["history"]] == ["send", "read"]


def test_show_unknown_id_fails_with_a_message(
    pushed: dict[str, object], db_url: str, tmp_path: Path
) -> None:
    """``show`` of an id never pushed: status 1 and "no status was received", no JSON."""
    result = run_cli("show", "999999", "--db", db_url, cwd=tmp_path)
    assert_readable_error(result, 1, "no status was received for id_sms 999999")
    assert result.stdout == ""


def test_show_refuses_an_id_that_cannot_exist(tmp_path: Path, db_url: str) -> None:
    """``show 0``: ids are positive, so this is a usage error (status 2)."""
    assert_readable_error(run_cli("show", "0", "--db", db_url, cwd=tmp_path), 2, "Invalid value")


def test_rejects_prints_what_the_api_returns(
    pushed: dict[str, object], db_url: str, tmp_path: Path
) -> None:
    """``rejects`` lists the bad state and the refused document as ``GET /api/rejects`` does."""
    result = run_cli("rejects", "--db", db_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rejects = json.loads(result.stdout)
    assert rejects == pushed["/api/rejects"]
    assert [r["scope"] for r in rejects] == ["state", "document"]
    assert rejects[0]["id_sms_raw"] == "oops"
    assert rejects[1]["http_status"] == 400


def test_rejects_pages_with_after_and_limit(
    pushed: dict[str, object], db_url: str, tmp_path: Path
) -> None:
    """``--after`` skips ids up to the given one, ``--limit`` caps the count."""
    first = json.loads(run_cli("rejects", "--limit", "1", "--db", db_url, cwd=tmp_path).stdout)
    after = run_cli("rejects", "--after", str(first[0]["id"]), "--db", db_url, cwd=tmp_path)
    rest = json.loads(after.stdout)
    assert [r["scope"] for r in first + rest] == ["state", "document"]


def test_stats_prints_what_the_api_returns(
    pushed: dict[str, object], db_url: str, tmp_path: Path
) -> None:
    """``stats`` prints the counts of ``GET /api/stats`` for the same file."""
    result = run_cli("stats", "--db", db_url, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats == pushed["/api/stats"]
    assert stats == {"messages": 2, "events": 3, "unknown_status_events": 0, "rejects": 2}


def test_migrate_creates_the_schema_once(tmp_path: Path, engine: str, empty_db_url: str) -> None:
    """``migrate`` on an empty database creates the tables; run again it changes nothing.

    Every migration of the engine is recorded as applied, once.
    """
    if engine == "postgresql":
        assert not _db.tables(empty_db_url), "the database must start without a table"
    for _ in range(2):
        result = run_cli("migrate", "--db", empty_db_url, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"database is up to date: {empty_db_url}"
    assert _db.tables(empty_db_url) >= _db.APP_TABLES
    expected = sorted(p.stem for p in migrations_dir(engine).glob("*.sql"))
    assert _db.applied_migrations(empty_db_url) == expected


def test_database_url_is_read_from_the_environment(tmp_path: Path, db_path: Path) -> None:
    """``WEBCOM_STATUS_DB`` picks the database of every command; ``--db`` wins over it.

    With SQLite files, whichever appears shows which URL a command used.
    """
    env = {"WEBCOM_STATUS_DB": f"sqlite:///{db_path}"}
    assert run_cli("migrate", cwd=tmp_path, env=env).returncode == 0
    assert db_path.exists()
    assert not (tmp_path / DEFAULT_DB).exists()
    stats = run_cli("stats", cwd=tmp_path, env=env)
    assert json.loads(stats.stdout)["messages"] == 0
    other = tmp_path / "other.db"
    assert run_cli("migrate", "--db", f"sqlite:///{other}", cwd=tmp_path, env=env).returncode == 0
    assert other.exists()


def test_commands_refuse_an_unsupported_database_url(tmp_path: Path) -> None:
    """A database URL no engine takes is a usage error (status 2) naming the URL."""
    result = run_cli("stats", "--db", "mysql://localhost/status", cwd=tmp_path)
    assert_readable_error(result, 2, "unsupported database URL")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("WEBCOM_STATUS_TOKEN", "short", "the token must be at least 16 characters"),
        ("WEBCOM_STATUS_TIMEZONE", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
        ("WEBCOM_STATUS_MAX_BODY", "lots", "not a size: 'lots'"),
        ("WEBCOM_STATUS_ALLOW_IP", "10.0.0.0/8 nonsense", "not an IP address or CIDR block"),
        ("WEBCOM_STATUS_PRUNE_OLDER_THAN", "soon", "not a duration: 'soon'"),
    ],
)
def test_serve_reads_each_flag_from_its_environment_variable(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    """``WEBCOM_STATUS_<FLAG>`` sets ``--<flag>`` of ``serve``: a bad value there is
    refused exactly as the flag would be (status 2, the flag's own message)."""
    result = run_cli("serve", "--port", "0", cwd=tmp_path, env={variable: value})
    assert result.returncode == 2, result.stderr
    assert message in result.stderr


def test_postgres_settings_come_from_the_standard_pg_variables(
    tmp_path: Path, postgres_databases: PostgresDatabases
) -> None:
    """``--db postgresql://`` alone takes host, user and database from ``PGHOST``,
    ``PGUSER`` and ``PGDATABASE``; ``postgres://`` is the same scheme."""
    url = urlsplit(postgres_databases.new())
    environment = {
        "PGHOST": url.hostname or "",
        "PGPORT": str(url.port or 5432),
        "PGUSER": url.username or "",
        "PGDATABASE": url.path.lstrip("/"),
    }
    migrated = run_cli("migrate", "--db", "postgresql://", cwd=tmp_path, env=environment)
    assert migrated.returncode == 0, migrated.stderr
    stats = run_cli("stats", "--db", "postgres://", cwd=tmp_path, env=environment)
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["messages"] == 0
    assert _db.applied_migrations(url.geturl())
