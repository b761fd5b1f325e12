"""Versioned schema migrations of the stores: DuckDB's in this package, PostgreSQL's (the same
steps in its dialect) in ``postgresql/``.

A migration is a file ``NNNN_name.sql`` in this package (``0001_initial.sql``, ``0002_...``):
versions start at 1 and have no gaps. The store applies the missing ones in order, each in its own
transaction, and records each in its ``schema_migrations`` table. A released migration is never
edited; a schema change is a new file.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from relia.errors import StoreError

__all__ = ["Migration", "latest_version", "load_migrations"]

_NAME = re.compile(r"^(\d{4})_([A-Za-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One schema step: its version, its name (the file name's tail) and its SQL text."""

    version: int
    name: str
    sql: str


def load_migrations(directory: str | Path | Traversable | None = None) -> list[Migration]:
    """The migrations in ``directory`` (default: this package's DuckDB ones), ordered by version.

    The PostgreSQL migrations live in the ``postgresql/`` sub-directory (a package resource, so
    a :class:`~importlib.resources.abc.Traversable` is accepted); sub-directories are skipped.

    :class:`StoreError` if a ``.sql`` file is misnamed, a version repeats or one is missing.
    """
    root: Traversable | Path
    if directory is None:
        root = resources.files(__name__)
    elif isinstance(directory, str | Path):
        root = Path(directory)
    else:
        root = directory
    where = str(root)
    if not root.is_dir():
        raise StoreError("migrations directory does not exist", where=where)
    found: dict[int, Migration] = {}
    for entry in root.iterdir():
        if not entry.name.endswith(".sql") or not entry.is_file():
            continue
        m = _NAME.match(entry.name)
        if m is None:
            raise StoreError(
                f"migration file {entry.name!r} is not named NNNN_name.sql", where=where
            )
        version = int(m.group(1))
        if version in found:
            raise StoreError(f"two migrations have version {version}", where=where)
        found[version] = Migration(version, m.group(2), entry.read_text(encoding="utf-8"))
    versions = sorted(found)
    if versions != list(range(1, len(versions) + 1)):
        raise StoreError(
            f"migration versions must be 1..N without gaps, found {versions}", where=where
        )
    return [found[v] for v in versions]


def latest_version(migrations: list[Migration]) -> int:
    """The schema version reached after applying ``migrations`` (0 if there are none)."""
    return migrations[-1].version if migrations else 0
