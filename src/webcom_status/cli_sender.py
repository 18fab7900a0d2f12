"""The sender's commands: endpoints, enqueue, dispatch, deliveries, redeliver."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import IO, Any, TypeVar

import click

from webcom_status import config
from webcom_status._cli_common import db_option, option, print_json, retry_options, retry_policy
from webcom_status._runtime import tune_for_throughput
from webcom_status.errors import ConfigError, InvalidOutgoing, StorageError, WebcomStatusError
from webcom_status.protocol import Outgoing
from webcom_status.sender import ingest
from webcom_status.sender.dispatcher import Dispatcher, DispatchSettings
from webcom_status.sender.model import Attempt, Delivery, DeliveryState, Endpoint, Tally
from webcom_status.sender.outbox import Outbox
from webcom_status.sender.retry import parse_delay
from webcom_status.sender.views import (
    SETTINGS,
    check_name,
    delivery_json,
    endpoint_json,
    endpoint_settings,
)
from webcom_status.storage import open_outbox

T = TypeVar("T")
CHUNK = 5000
PAUSED_BY_HAND = "paused by an operator"


def run_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on uvloop where it is installed (it is with uvicorn[standard])."""
    try:
        import uvloop  # noqa: PLC0415 - optional: not on every platform
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def _delay(_ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_delay(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param=param) from None


@click.command()
@db_option
@retry_options
@option("--linger", default="0.05", callback=_delay, help="Wait for a batch to fill, seconds.")
@option("--poll", default="0.2", callback=_delay, help="Longest wait between looks for work.")
@option(
    "--pause-after",
    default="1h",
    callback=_delay,
    help="Pause an endpoint that failed every push this long (0: never).",
)
@option(
    "--lease-margin",
    default="30",
    callback=_delay,
    help="How long a claim outlasts its push's timeouts; a killed worker's work waits this.",
)
@option("--pool-size", default=4, type=click.IntRange(1, 100), help="PostgreSQL connections.")
@option("--log-level", default="info", help="Logging level.")
def dispatch(db: str, attempts: int, retry_schedule: str, **options: Any) -> None:
    """Push the outbox's states to their endpoints until SIGTERM or Ctrl-C."""
    logging.basicConfig(
        level=options["log_level"].upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    settings = DispatchSettings(
        retry=retry_policy(attempts, retry_schedule),
        linger=options["linger"],
        poll=max(options["poll"], 0.001),
        pause_after=options["pause_after"] or None,
        lease_margin=options["lease_margin"],
    )

    async def run() -> None:
        outbox = await open_outbox(db, pool_size=options["pool_size"])
        dispatcher = Dispatcher(outbox, settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, dispatcher.stop)
        logging.getLogger(__name__).info("dispatching as %s", settings.name)
        try:
            await dispatcher.run()
        finally:
            await outbox.close()

    tune_for_throughput()
    try:
        run_loop(run())
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    except WebcomStatusError as exc:
        raise click.ClickException(str(exc)) from None


def _with_outbox(db: str, action: Callable[[Outbox], Awaitable[T]]) -> T:
    """Run ``action`` on the outbox at ``db``; the project's errors become click's."""

    async def run() -> T:
        outbox = await open_outbox(db)
        try:
            return await action(outbox)
        finally:
            await outbox.close()

    try:
        return run_loop(run())
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    except WebcomStatusError as exc:
        raise click.ClickException(str(exc)) from None


def _checked(build: Callable[[], T]) -> T:
    """``build()``, a ``ConfigError`` of it a usage error."""
    try:
        return build()
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """Aligned columns, one line per row; ``None`` shows as an empty cell."""
    cells = [list(headers)] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def _when(seconds: float | None) -> str:
    """Seconds since the epoch as ``YYYY-MM-DD HH:MM:SS`` in UTC, for tables."""
    if seconds is None:
        return ""
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _short(text: str | None, width: int = 60) -> str:
    """``text`` on one line, cut to ``width`` characters."""
    if text is None:
        return ""
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "\u2026"


_SETTING_OPTIONS = (
    click.option(
        "--flavour",
        type=click.Choice(["xml", "json"], case_sensitive=False),
        help="Document format to push (new endpoints: xml).",
    ),
    click.option(
        "--batch-size", type=int, help="Most states per document, 1-10000 (new endpoints: 100)."
    ),
    click.option("--concurrency", type=int, help="Documents in flight at once (new endpoints: 1)."),
    click.option(
        "--rate-limit", type=float, help="Most documents per second (new endpoints: no limit)."
    ),
    click.option("--connect-timeout", type=float, help="Seconds to connect (new endpoints: 5)."),
    click.option(
        "--read-timeout", type=float, help="Seconds to wait for the answer (new endpoints: 15)."
    ),
    click.option("--basic-auth", metavar="USER:PASSWORD", help="HTTP Basic credentials to send."),
)


def _setting_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """The settings of an endpoint, shared by ``endpoints add`` and ``endpoints update``."""
    for decorator in reversed(_SETTING_OPTIONS):
        command = decorator(command)
    return command


def _changes(options: dict[str, Any]) -> dict[str, object]:
    """The settings given on the command line, by the names of ``endpoint_settings``."""
    return {name: options[name] for name in SETTINGS if options.get(name) is not None}


async def _shown(outbox: Outbox, endpoint: Endpoint) -> dict[str, Any]:
    """An endpoint as ``endpoints show`` prints it: its JSON and its deliveries' counts."""
    counts = next((t for t in await outbox.tally() if t.endpoint == endpoint.name), None)
    shown = endpoint_json(endpoint)
    shown["deliveries"] = {
        "pending": counts.pending if counts else 0,
        "delivered": counts.delivered if counts else 0,
        "dead": counts.dead if counts else 0,
    }
    return shown


@click.group()
def endpoints() -> None:
    """Add, list, change, pause and remove the endpoints statuses are pushed to."""


@endpoints.command("add")
@click.argument("name")
@click.argument("url")
@_setting_options
@db_option
def endpoints_add(name: str, url: str, db: str, **options: Any) -> None:
    """Add endpoint NAME, pushing to URL; print it as JSON.

    NAME is 1 to 64 of A-Z a-z 0-9 . _ - (it appears in the API's paths).
    URL is http or https; credentials in it (https://user:password@host/)
    are moved to --basic-auth, so that listings never show the password.
    """
    checked = _checked(lambda: check_name(name))
    settings = _checked(lambda: endpoint_settings(_changes(options | {"url": url})))

    async def add(outbox: Outbox) -> dict[str, Any]:
        return await _shown(outbox, await outbox.add_endpoint(checked, settings))

    print_json(_with_outbox(db, add))


@endpoints.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@db_option
def endpoints_list(as_json: bool, db: str) -> None:
    """List the endpoints, with how many deliveries each has in each state."""

    async def read(outbox: Outbox) -> tuple[list[Endpoint], list[Tally]]:
        return await outbox.endpoints(), await outbox.tally()

    found, tallies = _with_outbox(db, read)
    if as_json:
        print_json([endpoint_json(e) for e in found])
        return
    if not found:
        click.echo("no endpoints; add one with: webcom-status endpoints add NAME URL")
        return
    counts = {t.endpoint: (t.pending, t.delivered, t.dead) for t in tallies}
    rows = [
        (
            e.name,
            e.settings.url,
            e.settings.flavour.value,
            e.settings.batch_size,
            e.settings.concurrency,
            "paused" if e.paused_at is not None else "failing" if e.failing_since else "ok",
            *counts.get(e.name, (0, 0, 0)),
        )
        for e in found
    ]
    headers = ("NAME", "URL", "FLAVOUR", "BATCH", "CONCURRENCY", "HEALTH")
    click.echo(_table((*headers, "PENDING", "DELIVERED", "DEAD"), rows))


@endpoints.command("show")
@click.argument("name")
@db_option
def endpoints_show(name: str, db: str) -> None:
    """Print one endpoint (never its password) and its deliveries' counts as JSON."""

    async def read(outbox: Outbox) -> dict[str, Any]:
        return await _shown(outbox, await outbox.endpoint(name))

    print_json(_with_outbox(db, read))


@endpoints.command("update")
@click.argument("name")
@click.option("--url", help="URL to push to.")
@_setting_options
@click.option("--no-basic-auth", is_flag=True, help="Send no credentials any more.")
@click.option("--no-rate-limit", is_flag=True, help="Push without a rate limit.")
@db_option
def endpoints_update(name: str, db: str, **options: Any) -> None:
    """Change the settings given (the others stay); print the endpoint as JSON."""
    changes = _changes(options)
    for flag, setting in (("no_basic_auth", "basic_auth"), ("no_rate_limit", "rate_limit")):
        if options[flag]:
            if setting in changes:
                dashed = setting.replace("_", "-")
                raise click.UsageError(f"--no-{dashed} and --{dashed} contradict each other")
            changes[setting] = None
    if not changes:
        raise click.UsageError("nothing to change: give at least one setting")

    async def update(outbox: Outbox) -> dict[str, Any]:
        current = await outbox.endpoint(name)
        settings = endpoint_settings(changes, current.settings)
        return await _shown(outbox, await outbox.update_endpoint(name, settings))

    print_json(_with_outbox(db, update))


@endpoints.command("remove")
@click.argument("name")
@click.confirmation_option(
    "--yes", prompt="Remove the endpoint and all its deliveries, pending ones included?"
)
@db_option
def endpoints_remove(name: str, db: str) -> None:
    """Remove an endpoint and all its deliveries (pending, delivered and dead)."""
    removed = _with_outbox(db, lambda outbox: outbox.remove_endpoint(name))
    click.echo(f"removed endpoint {name!r} and its {removed} deliveries")


@endpoints.command("pause")
@click.argument("name")
@click.option("--reason", default=PAUSED_BY_HAND, show_default=True, help="Why, for the listing.")
@db_option
def endpoints_pause(name: str, reason: str, db: str) -> None:
    """Stop pushing to an endpoint; its states wait in the outbox until it is resumed."""

    async def pause(outbox: Outbox) -> dict[str, Any]:
        paused = await outbox.set_paused(name, reason.strip() or PAUSED_BY_HAND)
        return await _shown(outbox, paused)

    print_json(_with_outbox(db, pause))


@endpoints.command("resume")
@click.argument("name")
@db_option
def endpoints_resume(name: str, db: str) -> None:
    """Push to a paused endpoint again; its failures so far are forgotten."""

    async def resume(outbox: Outbox) -> dict[str, Any]:
        return await _shown(outbox, await outbox.set_paused(name, None))

    print_json(_with_outbox(db, resume))


@contextlib.contextmanager
def _source(path: str) -> Iterator[IO[bytes]]:
    """The file to read, seekable: standard input is copied to a temporary file first."""
    if path == "-":
        with tempfile.TemporaryFile() as spooled:
            shutil.copyfileobj(sys.stdin.buffer, spooled)
            spooled.seek(0)
            yield spooled
        return
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed by the with below
    except OSError as exc:
        raise click.ClickException(f"cannot read {path}: {exc.strerror}") from None
    with stream:
        yield stream


def _format(fmt: str | None, path: str, stream: IO[bytes]) -> ingest.Format:
    """``--format``, else the file's extension, else the first character of the file."""
    if fmt is not None:
        return ingest.Format(fmt.lower())
    return (None if path == "-" else ingest.format_of(path)) or ingest.sniff_stream(stream)


def _chunks(states: Iterable[Outgoing], size: int) -> Iterator[list[Outgoing]]:
    iterator = iter(states)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


async def _enqueue(
    outbox: Outbox, endpoint: str, stream: IO[bytes], form: ingest.Format, chunk_size: int
) -> tuple[int, int]:
    """Check every state of ``stream``, then commit them in chunks; (states, rows changed)."""
    states: Iterable[Outgoing]
    try:
        if form is ingest.Format.JSON:
            states = ingest.from_json_bytes(stream.read())
            total = len(states)
        else:
            total = sum(1 for _ in ingest.read_states(stream, form))
            stream.seek(0)
            states = ingest.read_states(stream, form)
    except InvalidOutgoing as exc:
        raise InvalidOutgoing(f"nothing was enqueued: {exc}") from None
    done = changed = 0
    try:
        for chunk in _chunks(states, chunk_size):
            changed += await outbox.enqueue(endpoint, chunk)
            done += len(chunk)
    except WebcomStatusError as exc:
        raise StorageError(f"{done} of {total} states were enqueued, then: {exc}") from None
    return total, changed


@click.command()
@click.option("--endpoint", required=True, help="Endpoint to push the states to.")
@click.option(
    "--file",
    "path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, allow_dash=True),
    help="JSON, JSON Lines or CSV file of states; - reads standard input.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice([f.value for f in ingest.Format], case_sensitive=False),
    help="Format of the file; by default from its extension (.json; .jsonl or .ndjson; "
    ".csv), else from its first character ([ or { is JSON or JSON Lines, else CSV).",
)
@click.option(
    "--chunk-size",
    default=CHUNK,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="States per commit.",
)
@db_option
def enqueue(endpoint: str, path: str, fmt: str | None, chunk_size: int, db: str) -> None:
    """Enqueue the states of a file for an endpoint to push.

    \b
    JSON: a list of objects, or {"states": [...]}
    JSON Lines: one object per line
    CSV: a header row naming the columns, e.g. id_sms,state,time,sms,viber
    Each state has id_sms and state (or status); time, sms and viber are optional.

    The whole file is checked first: if any state is invalid, nothing is
    enqueued and the error names its line. Then the states are committed in
    chunks of --chunk-size, each stored durably before the next is read. If
    the database fails midway, the command exits 1 saying how many states
    were committed. Enqueuing the file again does not duplicate the states
    still pending; those delivered already are pushed again (receivers take
    a repeated state as a repeat).
    """
    with _source(path) as stream:
        form = _format(fmt, path, stream)

        async def run(outbox: Outbox) -> tuple[int, int]:
            await outbox.endpoint(endpoint)  # an unknown endpoint before reading the file
            return await _enqueue(outbox, endpoint, stream, form, chunk_size)

        total, changed = _with_outbox(db, run)
    click.echo(f"enqueued {total} states for {endpoint!r} ({changed} rows added or updated)")


def _delivery_row(delivery: Delivery) -> tuple[object, ...]:
    return (
        delivery.id,
        delivery.endpoint,
        delivery.state.id_sms,
        delivery.state.status,
        delivery.status.value,
        delivery.attempts,
        _when(delivery.enqueued_at),
        _short(delivery.last_error),
    )


async def _listed(
    outbox: Outbox, endpoint: str | None, state: DeliveryState | None, after: int, limit: int
) -> list[tuple[Delivery, list[Attempt] | None]]:
    """The deliveries asked for, each dead one with its failed attempts."""
    if endpoint is not None:
        await outbox.endpoint(endpoint)  # an unknown name is an error, not an empty list
    found = await outbox.deliveries(endpoint, state, after, limit)
    return [
        (d, await outbox.attempts(d.id) if d.status is DeliveryState.DEAD else None) for d in found
    ]


@click.command()
@click.option("--endpoint", help="Only this endpoint's.")
@click.option(
    "--state",
    type=click.Choice([s.value for s in DeliveryState]),
    help="Only the pending, delivered or dead ones.",
)
@click.option("--after", default=0, type=click.IntRange(0), help="Only ids above this one.")
@click.option(
    "--limit", default=100, show_default=True, type=click.IntRange(1, 100_000), help="How many."
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print a JSON array; dead ones with their attempts."
)
@db_option
def deliveries(
    *, endpoint: str | None, state: str | None, after: int, limit: int, as_json: bool, db: str
) -> None:
    """List the outbox's states by id: state, attempts and last error."""
    wanted = None if state is None else DeliveryState(state)
    found = _with_outbox(db, lambda outbox: _listed(outbox, endpoint, wanted, after, limit))
    if as_json:
        print_json([delivery_json(d, attempts) for d, attempts in found])
        return
    if not found:
        click.echo("no deliveries")
        return
    headers = ("ID", "ENDPOINT", "ID_SMS", "STATUS", "STATE", "ATTEMPTS", "ENQUEUED (UTC)")
    click.echo(_table((*headers, "LAST ERROR"), (_delivery_row(d) for d, _ in found)))
    if len(found) == limit:
        click.echo(f"more may follow: --after {found[-1][0].id}", err=True)


@click.command()
@click.option("--id", "delivery_id", type=click.IntRange(1), help="This dead letter.")
@click.option("--endpoint", help="Every dead letter of this endpoint.")
@click.option(
    "--since",
    metavar="TIME",
    help="Every dead letter that died since TIME: ISO 8601 (UTC without an offset) "
    "or a duration back from now, e.g. 2h.",
)
@click.option("--all", "everything", is_flag=True, help="Every dead letter.")
@db_option
def redeliver(
    *, delivery_id: int | None, endpoint: str | None, since: str | None, everything: bool, db: str
) -> None:
    """Put dead letters back in the queue, each with a fresh round of attempts.

    Give exactly one of --id, --endpoint, --since, --all. A dead letter whose
    id_sms is pending again, or has a later dead state, stays dead: the later
    state is the one to push.
    """
    given = [delivery_id is not None, endpoint is not None, since is not None, everything]
    if sum(given) != 1:
        raise click.UsageError("give exactly one of --id, --endpoint, --since, --all")
    cut = None
    if since is not None:
        cut = _checked(lambda: config.parse_since(since, datetime.now(UTC))).timestamp()
    count = _with_outbox(
        db,
        lambda outbox: outbox.redeliver(delivery_id=delivery_id, endpoint=endpoint, since=cut),
    )
    click.echo(f"{count} dead letters went back to the queue")


SENDER_COMMANDS: list[click.Command] = [dispatch, endpoints, enqueue, deliveries, redeliver]
