"""Text neither store keeps: a NUL character.

PostgreSQL refuses NUL in ``text`` and ``jsonb``; DuckDB would take it. Both stores refuse it the
same way (a :class:`~relia.errors.DataError`, never retried as if the store were away), and the
engine checks with the same functions to drop just the offending series or finding.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from relia.incidents.model import Finding

__all__ = ["nul_in_finding", "nul_in_series"]

NUL = "\x00"


def _nul_in(value: Any) -> bool:
    """Whether a JSON-like value (str, mapping, list, scalar) holds a NUL in any string."""
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, Mapping):
        return any(_nul_in(k) or _nul_in(v) for k, v in value.items())
    if isinstance(value, list | tuple):
        return any(_nul_in(v) for v in value)
    return False


def nul_in_series(name: str, labels: Mapping[str, str]) -> str | None:
    """Where a series' name or labels hold a NUL (a phrase for a message), or None."""
    if NUL in name:
        return "its metric name"
    for k, v in labels.items():
        if NUL in k:
            return f"the label name {k!r}"
        if NUL in v:
            return f"the value of label {k!r}"
    return None


def nul_in_finding(f: Finding) -> str | None:
    """Which text field of a finding holds a NUL (a phrase for a message), or None."""
    for field in ("id", "key", "detector", "summary"):
        if NUL in getattr(f, field):
            return f"its {field}"
    if _nul_in(f.evidence):
        return "its evidence"
    return None
