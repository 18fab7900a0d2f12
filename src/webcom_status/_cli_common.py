"""What every ``webcom-status`` command shares: options read from the environment too."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
import orjson

from webcom_status import config
from webcom_status.errors import ConfigError
from webcom_status.sender.retry import DEFAULT_ATTEMPTS, RetryPolicy, parse_schedule

ENV_PREFIX = "WEBCOM_STATUS_"
Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]


def option(*decls: str, **kwargs: Any) -> Decorator:
    """A click option that is also read from ``WEBCOM_STATUS_<NAME>``."""
    name = decls[0].lstrip("-").split("/")[0].replace("-", "_").upper()
    return click.option(*decls, envvar=ENV_PREFIX + name, show_envvar=True, **kwargs)


db_option = option("--db", default=config.DEFAULT_DB, help="Database URL.")


def print_json(value: Any) -> None:
    """``value`` as indented JSON on standard output."""
    click.echo(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def retry_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """``--attempts`` and ``--retry-schedule``, shared by ``dispatch`` and ``emulate``."""
    command = option(
        "--retry-schedule",
        default="0,1m,5m,30m,2h",
        metavar="DELAYS",
        help="Wait before each attempt: seconds, or with s/m/h, comma-separated.",
    )(command)
    return option(
        "--attempts",
        default=DEFAULT_ATTEMPTS,
        type=click.IntRange(1, 100),
        help="Pushes per state before it is a dead letter.",
    )(command)


def retry_policy(attempts: int, retry_schedule: str) -> RetryPolicy:
    """The policy of ``--attempts`` and ``--retry-schedule``; a usage error if invalid."""
    try:
        return RetryPolicy(attempts=attempts, schedule=parse_schedule(retry_schedule))
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint="'--retry-schedule'") from None
