"""Numbered migrations, applied with yoyo, which records them in ``_yoyo_migration``."""

from __future__ import annotations

from yoyo import get_backend, read_migrations

from webcom_status.storage._queries import migrations_dir


def migrate(yoyo_url: str, engine: str) -> list[str]:
    """Apply every migration not yet applied; the ids applied, in order.

    yoyo takes its own lock, so several processes starting at once apply
    each migration exactly once.
    """
    backend = get_backend(yoyo_url)
    try:
        migrations = read_migrations(str(migrations_dir(engine)))
        with backend.lock():
            pending = backend.to_apply(migrations)
            backend.apply_migrations(pending)
        return [m.id for m in pending]
    finally:
        backend.connection.close()
