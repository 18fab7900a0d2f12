"""The sender's management commands, run as real processes on real databases.

``endpoints`` (add, list, show, update, pause, resume, remove), ``enqueue``
from files and standard input, ``deliveries`` as a table and as JSON, and
``redeliver`` with each of its filters. What depends on the outbox's engine
(enqueuing, listing, dead letters, redelivery) runs on every engine; the
rest (settings, refusals, file formats, checked before any write) on SQLite.
Dead letters are made through the outbox itself (claim, then settle as
failed), as a dispatcher would.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.test_cli import assert_readable_error
from webcom_status.protocol import Outgoing
from webcom_status.sender.model import Delivery, EndpointSettings, Failure, Settlement
from webcom_status.storage import open_outbox

T1 = "2024-03-01 12:00:00"
URL = "http://127.0.0.1:9/webhook"
DELIVERY_KEYS = {
    "id",
    "endpoint",
    "id_sms",
    "status",
    "time",
    "sms",
    "viber",
    "state",
    "attempts",
    "last_error",
    "enqueued_at",
    "next_at",
    "settled_at",
    "claimed",
}


def cli(
    *args: str, db: str, cwd: Path, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m webcom_status ARGS --db DB`` in ``cwd``, with no WEBCOM_STATUS_* set."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("WEBCOM_STATUS")}
    return subprocess.run(
        [sys.executable, "-m", "webcom_status", *args, "--db", db],
        cwd=cwd,
        env=environment,
        input=stdin if stdin is not None else "",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def ok(*args: str, db: str, cwd: Path, stdin: str | None = None) -> str:
    """The standard output of a command that must succeed."""
    result = cli(*args, db=db, cwd=cwd, stdin=stdin)
    assert result.returncode == 0, result.stderr
    return result.stdout


def as_json(*args: str, db: str, cwd: Path) -> Any:
    return json.loads(ok(*args, db=db, cwd=cwd))


def write_jsonl(path: Path, first: int, count: int) -> Path:
    lines = [
        json.dumps({"id_sms": i, "state": "deliver", "time": T1, "sms": "deliver"})
        for i in range(first, first + count)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


async def _fail(db_url: str, endpoint: str, count: int, errors: list[str]) -> list[int]:
    """Make the ``count`` oldest due rows of ``endpoint`` fail once per error, then die.

    A failed row is due again at once, after the rows due already: with more
    than one error, the endpoint should have no other row due.
    """
    outbox = await open_outbox(db_url)
    try:
        target = (await outbox.endpoint(endpoint)).id
        ids: list[int] = []
        for number, error in enumerate(errors, 1):
            claimed = await outbox.claim(target, "test", count, 60.0)
            last = number == len(errors)
            failures = tuple(
                Failure(c.id, c.attempts + 1, error, None if last else 0.0) for c in claimed
            )
            await outbox.settle(Settlement(target, "test", (), failures, False, error))
            ids = [c.id for c in claimed]
        return ids
    finally:
        await outbox.close()


def make_dead(db_url: str, endpoint: str, count: int, errors: list[str]) -> list[int]:
    """The ids of the rows made dead letters, each after ``len(errors)`` failed attempts."""
    return asyncio.run(_fail(db_url, endpoint, count, errors))


async def _prepare(db_url: str, endpoints: dict[str, Iterable[int]]) -> None:
    outbox = await open_outbox(db_url)
    try:
        for name, ids in endpoints.items():
            await outbox.add_endpoint(name, EndpointSettings(URL))
            await outbox.enqueue(name, [Outgoing(i, "deliver", T1) for i in ids])
    finally:
        await outbox.close()


def prepare(db_url: str, endpoints: dict[str, Iterable[int]]) -> None:
    """Endpoints with pending states, made in the test's process (for the commands to read)."""
    asyncio.run(_prepare(db_url, endpoints))


async def _rows(db_url: str) -> list[Delivery]:
    outbox = await open_outbox(db_url)
    try:
        return await outbox.deliveries(limit=10_000)
    finally:
        await outbox.close()


def between(db_url: str, before: list[int], after: list[int]) -> str:
    """An ISO 8601 time after the rows ``before`` died and before the rows ``after`` did,
    by the database's own times (PostgreSQL's clock may not be the test's)."""
    settled = {d.id: d.settled_at for d in asyncio.run(_rows(db_url))}
    last = max(settled[i] or 0.0 for i in before)
    first = min(settled[i] or 0.0 for i in after)
    assert last < first
    return datetime.fromtimestamp((last + first) / 2, UTC).isoformat()


def states(db_url: str) -> dict[int, tuple[str, int]]:
    """Each outbox row's delivery state and attempts, by id, read in the test's process."""
    return {d.id: (d.status.value, d.attempts) for d in asyncio.run(_rows(db_url))}


def test_endpoints_lifecycle(tmp_path: Path, sqlite_url: str) -> None:
    """add, list, show, update, pause, resume, remove; the password is never printed."""
    added = as_json(
        "endpoints",
        "add",
        "shop",
        "https://webcom:s3cr%40t@client.example:8443/hook",
        "--flavour",
        "json",
        "--batch-size",
        "50",
        "--concurrency",
        "4",
        "--rate-limit",
        "2.5",
        "--connect-timeout",
        "1",
        "--read-timeout",
        "2",
        db=sqlite_url,
        cwd=tmp_path,
    )
    assert added["url"] == "https://client.example:8443/hook"
    assert (added["username"], added["password_set"]) == ("webcom", True)
    assert "password" not in added
    assert (added["flavour"], added["batch_size"], added["concurrency"]) == ("json", 50, 4)
    assert (added["rate_limit"], added["connect_timeout"], added["read_timeout"]) == (2.5, 1, 2)
    assert added["created_at"].endswith("+00:00")
    assert (added["paused"], added["failing_since"]) == (False, None)
    assert added["deliveries"] == {"pending": 0, "delivered": 0, "dead": 0}
    ok("endpoints", "add", "other", URL, db=sqlite_url, cwd=tmp_path)

    table = ok("endpoints", "list", db=sqlite_url, cwd=tmp_path)
    lines = table.splitlines()
    assert lines[0].split() == [
        "NAME",
        "URL",
        "FLAVOUR",
        "BATCH",
        "CONCURRENCY",
        "HEALTH",
        "PENDING",
        "DELIVERED",
        "DEAD",
    ]
    assert lines[1].split() == ["other", URL, "xml", "100", "1", "ok", "0", "0", "0"]
    assert lines[2].split()[:3] == ["shop", "https://client.example:8443/hook", "json"]
    listed = as_json("endpoints", "list", "--json", db=sqlite_url, cwd=tmp_path)
    assert [e["name"] for e in listed] == ["other", "shop"]
    shown = as_json("endpoints", "show", "shop", db=sqlite_url, cwd=tmp_path)
    assert shown == added
    for output in (table, json.dumps(listed), json.dumps(shown)):
        assert "s3cr" not in output

    updated = as_json(
        "endpoints",
        "update",
        "shop",
        "--batch-size",
        "7",
        "--no-basic-auth",
        "--no-rate-limit",
        db=sqlite_url,
        cwd=tmp_path,
    )
    assert (updated["batch_size"], updated["username"], updated["password_set"]) == (7, None, False)
    assert updated["rate_limit"] is None
    assert (updated["flavour"], updated["concurrency"], updated["read_timeout"]) == ("json", 4, 2)
    moved = as_json(
        "endpoints",
        "update",
        "shop",
        "--url",
        "http://client.example/v2",
        db=sqlite_url,
        cwd=tmp_path,
    )
    assert (moved["url"], moved["batch_size"]) == ("http://client.example/v2", 7)

    paused = as_json(
        "endpoints", "pause", "shop", "--reason", "maintenance", db=sqlite_url, cwd=tmp_path
    )
    assert (paused["paused"], paused["pause_reason"]) == (True, "maintenance")
    assert paused["paused_at"].endswith("+00:00")
    assert "paused" in ok("endpoints", "list", db=sqlite_url, cwd=tmp_path).splitlines()[2]
    resumed = as_json("endpoints", "resume", "shop", db=sqlite_url, cwd=tmp_path)
    assert (resumed["paused"], resumed["paused_at"], resumed["pause_reason"]) == (False, None, None)

    ok(
        "enqueue",
        "--endpoint",
        "shop",
        "--file",
        str(write_jsonl(tmp_path / "s.jsonl", 1, 3)),
        db=sqlite_url,
        cwd=tmp_path,
    )
    refused = cli("endpoints", "remove", "shop", db=sqlite_url, cwd=tmp_path)
    assert refused.returncode == 1
    assert "Aborted" in refused.stderr
    assert (
        as_json("endpoints", "show", "shop", db=sqlite_url, cwd=tmp_path)["deliveries"]["pending"]
        == 3
    )
    removed = ok("endpoints", "remove", "shop", "--yes", db=sqlite_url, cwd=tmp_path)
    assert removed.strip() == "removed endpoint 'shop' and its 3 deliveries"
    gone = cli("endpoints", "show", "shop", db=sqlite_url, cwd=tmp_path)
    assert_readable_error(gone, 1, "no endpoint named 'shop'")
    assert [
        e["name"] for e in as_json("endpoints", "list", "--json", db=sqlite_url, cwd=tmp_path)
    ] == ["other"]


def test_endpoints_list_says_when_there_is_none(tmp_path: Path, sqlite_url: str) -> None:
    assert ok("endpoints", "list", db=sqlite_url, cwd=tmp_path).startswith("no endpoints;")
    assert as_json("endpoints", "list", "--json", db=sqlite_url, cwd=tmp_path) == []


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("add", "bad name", URL), "not an endpoint name: 'bad name'"),
        (("add", "-x", URL), "No such option '-x'"),
        (("add", "a", "ftp://host/x"), "not an http(s) URL: 'ftp://host/x'"),
        (("add", "a", "http://"), "not an http(s) URL"),
        (("add", "a", "http://host:99999/"), "not a URL"),
        (("add", "a", URL, "--batch-size", "0"), "batch_size must be an integer from 1 to 10000"),
        (("add", "a", URL, "--concurrency", "0"), "concurrency must be an integer from 1 to 1000"),
        (("add", "a", URL, "--rate-limit", "-1"), "rate_limit must be a number above 0"),
        (("add", "a", URL, "--read-timeout", "nan"), "read_timeout must be a number above 0"),
        (("add", "a", URL, "--flavour", "yaml"), "Invalid value for '--flavour'"),
        (
            ("add", "a", URL, "--basic-auth", "nopassword"),
            "basic auth must be given as user:password",
        ),
        (
            ("add", "a", "http://u:p@host/", "--basic-auth", "v:q"),
            "give the credentials once: in the URL or as basic_auth",
        ),
        (("update", "a"), "nothing to change: give at least one setting"),
        (
            ("update", "a", "--no-basic-auth", "--basic-auth", "u:p"),
            "--no-basic-auth and --basic-auth contradict each other",
        ),
    ],
)
def test_endpoints_refuse_bad_settings_with_status_2(
    tmp_path: Path, sqlite_url: str, args: tuple[str, ...], message: str
) -> None:
    """A bad name or setting is a usage error: status 2, the reason, nothing stored."""
    result = cli("endpoints", *args, db=sqlite_url, cwd=tmp_path)
    assert_readable_error(result, 2, message)


def test_endpoint_names_are_unique_and_must_exist(tmp_path: Path, sqlite_url: str) -> None:
    """A second ``add`` of a name is a usage error; commands on an unknown name exit 1."""
    ok("endpoints", "add", "a", URL, db=sqlite_url, cwd=tmp_path)
    again = cli("endpoints", "add", "a", URL, db=sqlite_url, cwd=tmp_path)
    assert_readable_error(again, 2, "an endpoint named 'a' exists already")
    for args in (
        ("endpoints", "show", "nope"),
        ("endpoints", "update", "nope", "--batch-size", "5"),
        ("endpoints", "pause", "nope"),
        ("endpoints", "resume", "nope"),
        ("endpoints", "remove", "nope", "--yes"),
        ("deliveries", "--endpoint", "nope"),
        ("redeliver", "--endpoint", "nope"),
    ):
        assert_readable_error(
            cli(*args, db=sqlite_url, cwd=tmp_path), 1, "no endpoint named 'nope'"
        )


def test_enqueue_jsonl_and_csv_then_deliveries_shows_them_pending(
    tmp_path: Path, db_url: str
) -> None:
    """Both files are enqueued; ``deliveries --json`` lists every state pending, in order."""
    ok("endpoints", "add", "a", URL, db=db_url, cwd=tmp_path)
    ok("endpoints", "add", "b", URL, db=db_url, cwd=tmp_path)
    jsonl = tmp_path / "states.jsonl"
    jsonl.write_text(
        f'{{"id_sms": 3234, "time": "{T1}", "state": "deliver", "sms": "deliver"}}\n'
        "\n"
        f'{{"id_sms": 3235, "time": "{T1}", "status": "read", "sms": "expired", "viber": "read"}}\n'
    )
    csv = tmp_path / "states.csv"
    csv.write_text(f"id_sms,state,time,sms,viber\n3236,deliver,{T1},,deliver\n3237,send,,send,\n")

    assert ok("enqueue", "--endpoint", "a", "--file", str(jsonl), db=db_url, cwd=tmp_path) == (
        "enqueued 2 states for 'a' (2 rows added or updated)\n"
    )
    assert ok("enqueue", "--endpoint", "b", "--file", str(csv), db=db_url, cwd=tmp_path) == (
        "enqueued 2 states for 'b' (2 rows added or updated)\n"
    )

    listed = as_json("deliveries", "--json", db=db_url, cwd=tmp_path)
    assert [set(d) for d in listed] == [DELIVERY_KEYS] * 4
    assert [
        (d["endpoint"], d["id_sms"], d["status"], d["time"], d["sms"], d["viber"]) for d in listed
    ] == [
        ("a", 3234, "deliver", T1, "deliver", None),
        ("a", 3235, "read", T1, "expired", "read"),
        ("b", 3236, "deliver", T1, None, "deliver"),
        ("b", 3237, "send", "", "send", None),
    ]
    assert {(d["state"], d["attempts"], d["last_error"], d["settled_at"]) for d in listed} == {
        ("pending", 0, None, None)
    }
    assert all(d["enqueued_at"].endswith("+00:00") for d in listed)
    assert [d["id"] for d in listed] == sorted(d["id"] for d in listed)

    only_b = as_json("deliveries", "--json", "--endpoint", "b", db=db_url, cwd=tmp_path)
    assert [d["id_sms"] for d in only_b] == [3236, 3237]
    assert as_json("deliveries", "--json", "--state", "dead", db=db_url, cwd=tmp_path) == []
    page = as_json(
        "deliveries",
        "--json",
        "--after",
        str(listed[0]["id"]),
        "--limit",
        "2",
        db=db_url,
        cwd=tmp_path,
    )
    assert [d["id_sms"] for d in page] == [3235, 3236]

    table = cli("deliveries", "--limit", "3", db=db_url, cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:6] == ["ID", "ENDPOINT", "ID_SMS", "STATUS", "STATE", "ATTEMPTS"]
    assert [line.split()[1:6] for line in lines[1:]] == [
        ["a", "3234", "deliver", "pending", "0"],
        ["a", "3235", "read", "pending", "0"],
        ["b", "3236", "deliver", "pending", "0"],
    ]
    assert table.stderr.strip() == f"more may follow: --after {listed[2]['id']}"
    empty = ok("deliveries", "--state", "delivered", db=db_url, cwd=tmp_path)
    assert empty == "no deliveries\n"


def test_enqueue_reads_standard_input(tmp_path: Path, sqlite_url: str) -> None:
    """``--file -``: the format from ``--format``, or told by the first character."""
    ok("endpoints", "add", "a", URL, db=sqlite_url, cwd=tmp_path)
    inputs = [
        ((), '{"id_sms": 1, "state": "send"}\n{"id_sms": 2, "state": "send"}\n'),
        ((), '[{"id_sms": 3, "state": "send"}]'),
        ((), '{"states": [{"id_sms": 4, "state": "send"}]}'),
        ((), "id_sms,state\n5,send\n"),
        (("--format", "csv"), "id_sms,state\n6,send\n"),
        (("--format", "JSONL"), '{"id_sms": 7, "state": "send"}\n'),
    ]
    for flags, text in inputs:
        ok(
            "enqueue",
            "--endpoint",
            "a",
            "--file",
            "-",
            *flags,
            db=sqlite_url,
            cwd=tmp_path,
            stdin=text,
        )
    listed = as_json("deliveries", "--json", db=sqlite_url, cwd=tmp_path)
    assert [d["id_sms"] for d in listed] == [1, 2, 3, 4, 5, 6, 7]


def test_enqueue_format_flag_wins_over_the_extension(tmp_path: Path, sqlite_url: str) -> None:
    """A ``.txt`` file is told by its content; ``--format`` reads a file as that format."""
    ok("endpoints", "add", "a", URL, db=sqlite_url, cwd=tmp_path)
    text = tmp_path / "states.txt"
    text.write_text("id_sms,state\n1,send\n")
    ok("enqueue", "--endpoint", "a", "--file", str(text), db=sqlite_url, cwd=tmp_path)
    misnamed = tmp_path / "states.json"
    misnamed.write_text('{"id_sms": 2, "state": "send"}\n')
    wrong = cli("enqueue", "--endpoint", "a", "--file", str(misnamed), db=sqlite_url, cwd=tmp_path)
    assert_readable_error(wrong, 1, "nothing was enqueued: expected a list of states")
    assert "(one object per line is JSON Lines)" in wrong.stderr
    ok(
        "enqueue",
        "--endpoint",
        "a",
        "--file",
        str(misnamed),
        "--format",
        "jsonl",
        db=sqlite_url,
        cwd=tmp_path,
    )
    assert [d["id_sms"] for d in as_json("deliveries", "--json", db=sqlite_url, cwd=tmp_path)] == [
        1,
        2,
    ]


def test_enqueue_commits_in_chunks(tmp_path: Path, db_url: str) -> None:
    """A file larger than ``--chunk-size`` is enqueued whole, chunk after chunk."""
    ok("endpoints", "add", "a", URL, db=db_url, cwd=tmp_path)
    path = write_jsonl(tmp_path / "many.jsonl", 1, 25)
    out = ok(
        "enqueue",
        "--endpoint",
        "a",
        "--file",
        str(path),
        "--chunk-size",
        "4",
        db=db_url,
        cwd=tmp_path,
    )
    assert out == "enqueued 25 states for 'a' (25 rows added or updated)\n"
    listed = as_json("deliveries", "--json", "--limit", "1000", db=db_url, cwd=tmp_path)
    assert [d["id_sms"] for d in listed] == list(range(1, 26))
    again = ok(
        "enqueue",
        "--endpoint",
        "a",
        "--file",
        str(path),
        "--chunk-size",
        "4",
        db=db_url,
        cwd=tmp_path,
    )
    assert again == "enqueued 25 states for 'a' (0 rows added or updated)\n"
    assert len(states(db_url)) == 25


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        (
            "bad.jsonl",
            '{"id_sms": 1, "state": "send"}\n{"id_sms": 2, "state": "send"}\n'
            '{"id_sms": 3, "state": "send"}\n{"id_sms": "x", "state": "send"}\n',
            "nothing was enqueued: line 4: id_sms is not an integer: 'x'",
        ),
        (
            "bad.csv",
            "id_sms,state,time\n1,send,\n2,send,\n3,send,\n4,deliver,not a time\n",
            "nothing was enqueued: line 5: id_sms 4: time is not 'YYYY-MM-DD HH:MM:SS'",
        ),
        (
            "bad.json",
            '[{"id_sms": 1, "state": "send"}, {"id_sms": 2}]',
            "nothing was enqueued: index 1: state is missing",
        ),
    ],
)
def test_an_invalid_file_enqueues_nothing(
    tmp_path: Path, sqlite_url: str, name: str, content: str, message: str
) -> None:
    """The whole file is checked before the first commit: one bad state, nothing enqueued."""
    ok("endpoints", "add", "a", URL, db=sqlite_url, cwd=tmp_path)
    path = tmp_path / name
    path.write_text(content)
    result = cli(
        "enqueue",
        "--endpoint",
        "a",
        "--file",
        str(path),
        "--chunk-size",
        "2",
        db=sqlite_url,
        cwd=tmp_path,
    )
    assert_readable_error(result, 1, message)
    assert result.stdout == ""
    assert as_json("deliveries", "--json", db=sqlite_url, cwd=tmp_path) == []


def test_enqueue_refusals(tmp_path: Path, sqlite_url: str) -> None:
    """An unknown endpoint (status 1) and a missing file (status 2) enqueue nothing."""
    path = write_jsonl(tmp_path / "s.jsonl", 1, 2)
    unknown = cli("enqueue", "--endpoint", "nope", "--file", str(path), db=sqlite_url, cwd=tmp_path)
    assert_readable_error(unknown, 1, "no endpoint named 'nope'")
    missing = cli(
        "enqueue", "--endpoint", "a", "--file", "absent.jsonl", db=sqlite_url, cwd=tmp_path
    )
    assert_readable_error(missing, 2, "Invalid value for '--file'")
    no_file = cli("enqueue", "--endpoint", "a", db=sqlite_url, cwd=tmp_path)
    assert_readable_error(no_file, 2, "Missing option '--file'")


def test_dead_letters_show_their_attempts(tmp_path: Path, db_url: str) -> None:
    """``deliveries --json`` gives a dead letter's failed attempts with their reasons;
    the table shows its last error."""
    ok("endpoints", "add", "a", URL, db=db_url, cwd=tmp_path)
    first = str(write_jsonl(tmp_path / "first.jsonl", 1, 1))
    ok("enqueue", "--endpoint", "a", "--file", first, db=db_url, cwd=tmp_path)
    dead = make_dead(db_url, "a", 1, ["HTTP 500", "timeout: no answer within 20 s"])
    more = str(write_jsonl(tmp_path / "more.jsonl", 2, 2))
    ok("enqueue", "--endpoint", "a", "--file", more, db=db_url, cwd=tmp_path)

    listed = as_json("deliveries", "--json", db=db_url, cwd=tmp_path)
    assert [d["state"] for d in listed] == ["dead", "pending", "pending"]
    letter = listed[0]
    assert letter["id"] == dead[0]
    assert (letter["attempts"], letter["last_error"]) == (2, "timeout: no answer within 20 s")
    assert letter["settled_at"].endswith("+00:00")
    assert letter["next_at"] is None
    assert [(a["attempt"], a["error"]) for a in letter["failed_attempts"]] == [
        (1, "HTTP 500"),
        (2, "timeout: no answer within 20 s"),
    ]
    assert all(a["at"].endswith("+00:00") for a in letter["failed_attempts"])
    assert "failed_attempts" not in listed[1]

    table = ok("deliveries", "--state", "dead", db=db_url, cwd=tmp_path).splitlines()
    assert len(table) == 2
    assert table[1].split()[4:6] == ["dead", "2"]
    assert table[1].endswith("timeout: no answer within 20 s")


def test_redeliver_filters(tmp_path: Path, db_url: str) -> None:
    """``--id`` one dead letter, ``--endpoint`` an endpoint's, ``--since`` those dead since a
    time, ``--all`` the rest; each back to pending with fresh attempts."""
    prepare(db_url, {"a": range(1, 7), "b": range(1, 3)})
    early = make_dead(db_url, "a", 3, ["HTTP 503"])
    dead_b = make_dead(db_url, "b", 2, ["connection refused"])
    late = make_dead(db_url, "a", 2, ["HTTP 502"])
    cut = between(db_url, early + dead_b, late)

    assert ok("redeliver", "--id", str(early[0]), db=db_url, cwd=tmp_path) == (
        "1 dead letters went back to the queue\n"
    )
    assert states(db_url)[early[0]] == ("pending", 0)
    assert ok("redeliver", "--endpoint", "b", db=db_url, cwd=tmp_path).startswith("2 ")
    assert {states(db_url)[i] for i in dead_b} == {("pending", 0)}
    since = ok("redeliver", "--since", cut, db=db_url, cwd=tmp_path)
    assert since.startswith("2 ")
    now = states(db_url)
    assert {now[i] for i in late} == {("pending", 0)}
    assert {now[i] for i in early[1:]} == {("dead", 1)}
    assert ok("redeliver", "--since", "1h", db=db_url, cwd=tmp_path).startswith("2 ")
    assert set(states(db_url).values()) == {("pending", 0)}
    make_dead(db_url, "a", 6, ["HTTP 500"])
    assert ok("redeliver", "--all", db=db_url, cwd=tmp_path).startswith("6 ")
    assert set(states(db_url).values()) == {("pending", 0)}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give exactly one of --id, --endpoint, --since, --all"),
        (("--all", "--endpoint", "a"), "give exactly one of --id, --endpoint, --since, --all"),
        (("--id", "1", "--since", "2h"), "give exactly one of --id, --endpoint, --since, --all"),
        (("--since", "yesterday"), "not a time: 'yesterday'"),
        (("--id", "0"), "Invalid value for '--id'"),
    ],
)
def test_redeliver_refuses_a_bad_filter(
    tmp_path: Path, sqlite_url: str, args: tuple[str, ...], message: str
) -> None:
    assert_readable_error(cli("redeliver", *args, db=sqlite_url, cwd=tmp_path), 2, message)


def test_sender_commands_are_listed_and_read_the_database_from_the_environment(
    tmp_path: Path, db_path: Path
) -> None:
    """``--help`` lists the sender's commands; ``WEBCOM_STATUS_DB`` picks their database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBCOM_STATUS")}
    env["WEBCOM_STATUS_DB"] = f"sqlite:///{db_path}"
    listing = subprocess.run(
        [sys.executable, "-m", "webcom_status", "--help"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    for command in ("endpoints", "enqueue", "deliveries", "redeliver", "dispatch"):
        assert f"  {command} " in listing.stdout
    added = subprocess.run(
        [sys.executable, "-m", "webcom_status", "endpoints", "add", "a", URL],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert added.returncode == 0, added.stderr
    assert db_path.exists()
    assert not (tmp_path / "webcom-status.db").exists()
