"""The receiver's tests run on every engine, each module once per engine.

``engine`` is module-scoped here, so that a module's shared receivers (made
with ``start_receiver``) are started once per engine and every test of the
module runs against each of them; the function-scoped fixtures built on
``engine`` (``db_url``, ``server``) follow it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import pytest

from tests._postgres import PostgresDatabases
from tests.conftest import ENGINES
from tests.receiver.support import Receiver, running


@pytest.fixture(scope="module", params=ENGINES)
def engine(request: pytest.FixtureRequest) -> str:
    """Each engine in turn, for a whole module."""
    name: str = request.param
    return name


@pytest.fixture(scope="module")
def start_receiver(
    engine: str,
    postgres_databases: PostgresDatabases,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., Receiver]]:
    """``start_receiver(name, *flags)``: a receiver on a fresh database of the module's engine.

    Its log (and a SQLite database) go to a new folder named after ``name``;
    a PostgreSQL database is a clone of the session's migrated template.
    Every receiver started is stopped when the module is done.
    """
    with contextlib.ExitStack() as stack:

        def start(name: str, *flags: str) -> Receiver:
            folder = tmp_path_factory.mktemp(name)
            if engine == "sqlite":
                db_url = f"sqlite:///{folder / 'status.db'}"
            else:
                db_url = postgres_databases.new()
            return stack.enter_context(running(folder, *flags, db_url=db_url))

        yield start
