"""Every error that webcom-status raises on purpose.

::

    WebcomStatusError
     ├── PushRejected          a pushed document was refused as a whole (4xx)
     │    └── BodyTooLarge     the body is over the configured limit (413)
     ├── StorageError          the database failed; nothing was acknowledged (503)
     │    └── StorageClosed    the storage was used after close()
     ├── ConfigError           a setting is invalid (the CLI exits with status 2)
     ├── InvalidOutgoing       a state given to the sender cannot be pushed (400)
     └── UnknownEndpoint       no endpoint has that name (404)

Each message says what happened and, where the reader can act, what to do.
"""

from __future__ import annotations


class WebcomStatusError(Exception):
    """Base class of the project's errors."""


class PushRejected(WebcomStatusError):
    """The whole pushed document is refused; no state of it is acknowledged."""

    def __init__(self, message: str, *, http_status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status


class BodyTooLarge(PushRejected):
    """The request body is larger than the configured ``--max-body``."""

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"request body is larger than the limit of {limit} bytes; "
            "split the push or raise --max-body",
            http_status=413,
        )
        self.limit = limit


class StorageError(WebcomStatusError):
    """The database could not store or read; nothing was acknowledged."""

    @classmethod
    def write_failed(cls, cause: BaseException) -> StorageError:
        """The error a write answers with when the driver raised ``cause``."""
        error = cls(f"database write failed: {cause}")
        error.__cause__ = cause
        return error


class StorageClosed(StorageError):
    """The storage was used after it was closed."""


class ConfigError(WebcomStatusError):
    """A setting is invalid."""


class InvalidOutgoing(WebcomStatusError):
    """A state given to the sender cannot be pushed; nothing of the call was enqueued."""


class UnknownEndpoint(WebcomStatusError):
    """No endpoint has the given name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"no endpoint named {name!r}; add it with 'webcom-status endpoints add'")
        self.name = name
