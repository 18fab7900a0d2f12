"""The ``emulate`` command: play the provider against any receiver and report."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Any
from urllib.parse import urlsplit

import click

from webcom_status import config
from webcom_status._cli_common import option, print_json, retry_options, retry_policy
from webcom_status._runtime import tune_for_throughput
from webcom_status.errors import ConfigError, WebcomStatusError
from webcom_status.model import Flavour
from webcom_status.sender.emulator import (
    DEFAULT_TIMEOUT,
    MAX_MESSAGES,
    MAX_SEED,
    Emulation,
    EmulationOptions,
    Report,
    Schedule,
    format_report,
)

INTERRUPTED = 130  # the shell's status for Ctrl-C
EPILOG = """\b
Schedules (--schedule):
  fast      up to 256 messages at a time, each message's states back to
            back, at most --rate states per second
  provider  every message at once (up to 50,000 in progress); between
            two states of a message, the gap between their status times
            (seconds before deliver, minutes before read, hours before
            expired) times --time-scale
  burst     everything at once, --rate ignored
  lockstep  like fast, but a state waits until the previous one of its
            message is acknowledged or dead: every state is pushed on its own

\b
Without --plain, about 3% of the states are enqueued again once settled
(repeated) and 5% of the messages have an earlier state enqueued again after
a later one was settled (out of order), as the provider's retries do; a
conforming receiver acknowledges them and keeps the later state.

\b
Exit status: 0 when the receiver kept to the protocol, 1 when it broke it
(see "violations"), 2 for a usage error, 130 when interrupted (SIGINT or
SIGTERM: the report then covers what was done).
"""


def _url(_ctx: click.Context, param: click.Parameter, value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise click.BadParameter(f"not an http(s) URL: {value!r}", param=param)
    return value


def _basic_auth(
    _ctx: click.Context, param: click.Parameter, value: str | None
) -> tuple[str, str] | None:
    if value is None:
        return None
    try:
        return config.parse_basic_auth(value)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param=param) from None


@click.command(epilog=EPILOG, context_settings={"show_default": True})
@option("--url", required=True, callback=_url, help="The receiver's webhook URL.")
@option(
    "--messages", default=1000, type=click.IntRange(1, MAX_MESSAGES), help="Messages to emulate."
)
@option("--rate", default=0.0, type=click.FloatRange(0), help="States per second; 0: no limit.")
@option(
    "--flavour",
    default=Flavour.XML.value,
    type=click.Choice([f.value for f in Flavour]),
    help="Document format.",
)
@option(
    "--schedule",
    default=Schedule.FAST.value,
    type=click.Choice([s.value for s in Schedule]),
    help="When states are enqueued (see below).",
)
@option(
    "--time-scale",
    default=0.001,
    type=click.FloatRange(0),
    help="provider: seconds waited per second of provider time.",
)
@click.option("--plain", is_flag=True, help="No repeated or out-of-order pushes.")
@option("--seed", default=1, type=click.IntRange(0, MAX_SEED), help="Makes the same run again.")
@option(
    "--first-id",
    default=None,
    type=click.IntRange(1, 2**63 - 1),
    help="id_sms of the first message  [default: seed * 10000000 + 1]",
)
@option("--batch-size", default=100, type=click.IntRange(1, 10_000), help="States per document.")
@option("--concurrency", default=4, type=click.IntRange(1, 256), help="Documents in flight.")
@option(
    "--basic-auth", default=None, metavar="USER:PASSWORD", callback=_basic_auth, help="HTTP Basic."
)
@option(
    "--connect-timeout",
    default=5.0,
    type=click.FloatRange(0, min_open=True),
    help="Seconds to connect.",
)
@option(
    "--read-timeout",
    default=15.0,
    type=click.FloatRange(0, min_open=True),
    help="Seconds to an answer.",
)
@option(
    "--timeout",
    default=DEFAULT_TIMEOUT,
    type=click.FloatRange(0, min_open=True),
    help="Give up after this many seconds; what is left is reported unfinished.",
)
@click.option(
    "--db",
    default=None,
    help="Outbox database to use and keep; refused if it holds states for other "
    "endpoints, which would be pushed too  [default: a temporary SQLite file]",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@option(
    "--log-level",
    default="error",
    type=click.Choice(["debug", "info", "warning", "error", "critical"], case_sensitive=False),
    help="Logging level; the dispatcher's warnings about the receiver are in the report.",
)
@retry_options
def emulate(
    url: str,
    attempts: int,
    retry_schedule: str,
    as_json: bool,
    basic_auth: tuple[str, str] | None,
    **options: Any,
) -> None:
    """Push realistic message lifecycles to a receiver and report how it kept the protocol.

    Messages go send → deliver → read, not_deliver, expired, partly_deliver →
    deliver, or Viber with an SMS fallback (both attributes). The states go
    through an outbox and the real dispatcher, with its retries. The report
    gives states pushed, acknowledged, retried and dead, requests per second,
    latency, and every way the receiver broke the protocol: ids acknowledged
    that were not pushed, answers without the XML declaration or with another
    root, non-2xx answers, timeouts, states never acknowledged.
    """
    logging.basicConfig(
        level=options["log_level"].upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    username, password = basic_auth if basic_auth else (None, None)
    settings = EmulationOptions(
        url=url,
        messages=options["messages"],
        rate=options["rate"],
        flavour=Flavour(options["flavour"]),
        schedule=Schedule(options["schedule"]),
        time_scale=options["time_scale"],
        plain=options["plain"],
        seed=options["seed"],
        first_id=options["first_id"],
        batch_size=options["batch_size"],
        concurrency=options["concurrency"],
        username=username,
        password=password,
        connect_timeout=options["connect_timeout"],
        read_timeout=options["read_timeout"],
        timeout=options["timeout"],
        db=options["db"],
        retry=retry_policy(attempts, retry_schedule),
        progress=not options["quiet"],
    )
    report = _run(settings)
    if as_json:
        print_json(report.as_json())
    else:
        click.echo(format_report(report))
    if report.interrupted:
        click.get_current_context().exit(INTERRUPTED)
    if not report.conforming:
        click.get_current_context().exit(1)


def _run(settings: EmulationOptions) -> Report:
    async def run() -> Report:
        emulation = Emulation(settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, emulation.interrupt)
        return await emulation.run()

    tune_for_throughput()
    try:
        return asyncio.run(run())
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    except WebcomStatusError as exc:
        raise click.ClickException(str(exc)) from None


if __name__ == "__main__":
    emulate()
