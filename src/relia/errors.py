"""The exceptions relia raises to its users.

Every error a user can cause is a :class:`ReliaError`. Its message is one line that names what was
wrong and where (file, line, row, field), so the CLI can print it as it is and exit with code 2, and
the HTTP API can answer it with a 4xx (a :class:`StoreError`, the store being away, with 503).
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "DataError",
    "DetectorError",
    "ReliaError",
    "SourceError",
    "StoreError",
]


class ReliaError(Exception):
    """Base of every error relia reports to a user.

    ``where`` names the place (a path, ``path:line``, ``row 12``, a config field) and is put in
    front of the message, so callers need not format it themselves.
    """

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.message = message
        self.where = where
        super().__init__(f"{where}: {message}" if where else message)


class ConfigError(ReliaError):
    """A configuration file or option is invalid."""


class DataError(ReliaError):
    """Input data (a file, a request body, an array) cannot be used as given."""


class SourceError(ReliaError):
    """A telemetry source (Prometheus, a scrape target, a file) failed or answered wrongly."""


class DetectorError(ReliaError):
    """A detector was asked for by an unknown name or with invalid parameters."""


class StoreError(ReliaError):
    """The state store cannot be opened, migrated or written."""
