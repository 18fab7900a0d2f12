"""The sender's commands: endpoints, enqueue, dispatch, deliveries, redeliver."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Coroutine
from typing import Any, TypeVar

import click

from webcom_status._cli_common import db_option, option, retry_options, retry_policy
from webcom_status.errors import ConfigError, WebcomStatusError
from webcom_status.sender.dispatcher import Dispatcher, DispatchSettings
from webcom_status.sender.retry import parse_delay
from webcom_status.storage import open_outbox

T = TypeVar("T")


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

    try:
        run_loop(run())
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    except WebcomStatusError as exc:
        raise click.ClickException(str(exc)) from None


SENDER_COMMANDS: list[click.Command] = [dispatch]
