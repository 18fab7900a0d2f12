"""The ``webcom-status`` command."""

from __future__ import annotations

import asyncio
import copy
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from types import FrameType
from typing import Any, TypeVar

import click
import uvicorn

from webcom_status import config
from webcom_status._cli_common import db_option, option, print_json
from webcom_status.cli_emulate import emulate
from webcom_status.cli_sender import SENDER_COMMANDS
from webcom_status.errors import ConfigError, WebcomStatusError
from webcom_status.receiver import create_app
from webcom_status.receiver.app import SETTINGS_ENV
from webcom_status.receiver.deadline import DEFAULT_REQUEST_TIMEOUT, request_deadline
from webcom_status.receiver.views import message_json, reject_json, stats_json
from webcom_status.storage import Storage, open_storage

T = TypeVar("T")


class _Server(uvicorn.Server):
    """uvicorn's server, except that SIGTERM, the normal way to stop it, exits 0.

    uvicorn raises a captured signal again once it has shut down gracefully,
    which would make every orderly stop look like a crash (status 143).
    """

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        if sig == signal.SIGTERM:
            self._captured_signals.remove(sig)


def _with_storage(db: str, action: Callable[[Storage], Awaitable[T]]) -> T:
    async def run() -> T:
        storage = await open_storage(db)
        try:
            return await action(storage)
        finally:
            await storage.close()

    try:
        return asyncio.run(run())
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    except WebcomStatusError as exc:
        raise click.ClickException(str(exc)) from None


@click.group(context_settings={"show_default": True})
@click.version_option(package_name="webcom-status")
def main() -> None:
    """Receive (and inspect) Webcom SMS/Viber delivery statuses, and push them."""


for _command in [*SENDER_COMMANDS, emulate]:
    main.add_command(_command)


@main.command()
@db_option
@option("--host", default="127.0.0.1", help="Address to listen on.")
@option("--port", default=8080, type=click.IntRange(0, 65535), help="Port to listen on.")
@option("--timezone", default=config.DEFAULT_TIMEZONE, help="Zone of the pushed times.")
@option("--max-body", default="16MiB", help="Largest body accepted (413 beyond).")
@option("--token", default=None, help="Accept pushes only at /webhook/TOKEN.")
@option("--basic-auth", default=None, metavar="USER:PASSWORD", help="Require HTTP Basic.")
@option("--allow-ip", multiple=True, metavar="CIDR", help="Accept pushes only from these.")
@option(
    "--api-token",
    default=None,
    metavar="SECRET",
    help="Require 'Authorization: Bearer SECRET' on every /api/ route. "
    "Without it /api/ is open to whoever reaches the port (the default bind is 127.0.0.1).",
)
@option(
    "--forwarded-allow-ips",
    default="127.0.0.1",
    help="Proxies trusted for X-Forwarded-For (comma-separated, or *).",
)
@option("--busy-timeout", default=5000, type=click.IntRange(0), help="SQLite lock wait, ms.")
@option(
    "--request-timeout",
    default=DEFAULT_REQUEST_TIMEOUT,
    type=click.FloatRange(0),
    help="Seconds for a request to arrive whole, headers and body (408 beyond); 0: no limit.",
)
@option(
    "--limit-concurrency",
    default=None,
    type=click.IntRange(1),
    help="Most connections (or requests in progress) per process; beyond, 503. Default: no limit.",
)
@option(
    "--synchronous",
    default="FULL",
    type=click.Choice(["FULL", "EXTRA", "NORMAL"], case_sensitive=False),
    help="SQLite durability; FULL syncs every commit.",
)
@option("--workers", default=1, type=click.IntRange(1, 64), help="Processes sharing the port.")
@option(
    "--pool-size", default=4, type=click.IntRange(1), help="PostgreSQL connections per process."
)
@option(
    "--prune-older-than", default=None, metavar="DURATION", help="Delete older statuses, e.g. 90d."
)
@option("--prune-interval", default="1h", metavar="DURATION", help="How often to prune.")
@option("--log-level", default="info", help="Logging level.")
@option("--access-log/--no-access-log", default=False, help="Log every request.")
def serve(**options: Any) -> None:
    """Run the receiver (HTTP) until SIGTERM or Ctrl-C."""
    try:
        settings = config.ReceiverSettings(
            db=options["db"],
            timezone=config.parse_zone(options["timezone"]),
            max_body=config.parse_size(options["max_body"]),
            token=options["token"],
            basic_auth=config.parse_basic_auth(options["basic_auth"])
            if options["basic_auth"]
            else None,
            allow_ips=tuple(config.parse_network(n) for n in options["allow_ip"]),
            busy_timeout_ms=options["busy_timeout"],
            synchronous=options["synchronous"].upper(),
            pool_size=options["pool_size"],
            prune_older_than=config.parse_duration(options["prune_older_than"])
            if options["prune_older_than"]
            else None,
            prune_interval=config.parse_duration(options["prune_interval"]),
            api_token=options["api_token"],
        )
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    # Open (and migrate) once before listening: a bad --db is then a usage
    # error with a message, not a traceback from the app's startup.
    _with_storage(settings.db, lambda storage: asyncio.sleep(0))
    uvicorn_options: dict[str, Any] = {
        "host": options["host"],
        "port": options["port"],
        "lifespan": "on",
        "log_level": options["log_level"].lower(),
        "log_config": _log_config(options["log_level"]),
        "access_log": options["access_log"],
        "forwarded_allow_ips": options["forwarded_allow_ips"],
        "timeout_graceful_shutdown": 30,
        "server_header": False,
    }
    if options["limit_concurrency"] is not None:
        uvicorn_options["limit_concurrency"] = options["limit_concurrency"]
    if options["request_timeout"] > 0:
        uvicorn_options["http"] = request_deadline(options["request_timeout"])
    if options["workers"] > 1:
        _serve_workers(settings, options["workers"], uvicorn_options)
        return
    server = _Server(uvicorn.Config(create_app(settings), **uvicorn_options))
    server.run()
    if not server.started:
        sys.exit(1)


def _log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging set-up, with the project's own loggers at ``level``."""
    log_config = copy.deepcopy(uvicorn.config.LOGGING_CONFIG)
    log_config["loggers"]["webcom_status"] = {
        "handlers": ["default"],
        "level": level.upper(),
        "propagate": False,
    }
    return log_config


def _serve_workers(
    settings: config.ReceiverSettings, workers: int, options: dict[str, Any]
) -> None:
    """N processes on one port, each with its own app and database connections."""
    os.environ[SETTINGS_ENV] = settings.to_json()
    uvicorn.run(
        "webcom_status.receiver.app:create_app_from_environment",
        factory=True,
        workers=workers,
        **options,
    )


@main.command()
@click.argument("id_sms", type=click.IntRange(1))
@db_option
def show(id_sms: int, db: str) -> None:
    """Print the current state and history of one message as JSON."""
    message = _with_storage(db, lambda storage: storage.message(id_sms))
    if message is None:
        raise click.ClickException(f"no status was received for id_sms {id_sms}")
    print_json(message_json(message))


@main.command()
@db_option
@click.option("--after", default=0, type=click.IntRange(0), help="Only rejects above this id.")
@click.option("--limit", default=100, type=click.IntRange(1, 100_000), help="How many.")
def rejects(db: str, after: int, limit: int) -> None:
    """Print what was refused (whole documents and single states) as JSON."""
    rows = _with_storage(db, lambda storage: storage.rejects(after, limit))
    print_json([reject_json(r) for r in rows])


@main.command()
@db_option
def stats(db: str) -> None:
    """Print counts of messages, events, unknown statuses and rejects."""
    print_json(stats_json(_with_storage(db, lambda storage: storage.stats())))


@main.command()
@db_option
def migrate(db: str) -> None:
    """Create or upgrade the database schema, then exit."""
    _with_storage(db, lambda storage: asyncio.sleep(0))
    click.echo(f"database is up to date: {db}")


@main.command()
@db_option
@option("--older-than", required=True, metavar="DURATION", help="Age to delete, e.g. 90d.")
@option("--batch-size", default=1000, type=click.IntRange(1, 100_000), help="Rows per batch.")
def prune(db: str, older_than: str, batch_size: int) -> None:
    """Delete events, messages and rejects older than a duration, in batches."""
    try:
        age = config.parse_duration(older_than)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    before = datetime.now(UTC) - age
    pruned = _with_storage(db, lambda storage: storage.prune(before, batch_size))
    print_json(
        {
            "before": before.isoformat(),
            "events": pruned.events,
            "messages": pruned.messages,
            "rejects": pruned.rejects,
        }
    )
