"""Named SQL queries, read once from the ``.sql`` files of each engine.

A file holds several queries, each under a header line ``-- name --``.
"""

from __future__ import annotations

import re
from importlib.resources import files
from pathlib import Path

_HEADER = re.compile(r"^-- ([a-z_]+) --$", re.MULTILINE)
SQL_DIR = Path(str(files("webcom_status.storage") / "sql"))


def parse_queries(text: str) -> dict[str, str]:
    """The queries of one file, by name, comments included."""
    parts = _HEADER.split(text)
    return {name: body.strip() for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def load_queries(engine: str, name: str = "queries") -> dict[str, str]:
    """The queries of ``sql/<engine>/<name>.sql``."""
    return parse_queries((SQL_DIR / engine / f"{name}.sql").read_text(encoding="utf-8"))


def migrations_dir(engine: str) -> Path:
    """The folder of the engine's numbered migrations."""
    return SQL_DIR / engine / "migrations"


def schema_file(engine: str) -> Path:
    """The engine's full expected schema."""
    return SQL_DIR / engine / "schema.sql"
