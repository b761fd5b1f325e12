"""The benchmarks' ``--out`` JSON files: checked before a run, read for merging, written after.

Every benchmark checks its ``--out`` before it measures anything, so a path it cannot write (a
folder, a file in the way of its folder, a results file it cannot merge into) fails at once with
one message and exit 2, instead of losing a long measurement to a traceback at the end.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from relia.errors import DataError

ADVICE = "move it away or pass another --out"


def check_writable(out: Path) -> None:
    """Raise :class:`DataError` naming ``out`` when a file cannot be written there."""
    if out.is_dir():
        raise DataError("is a folder; --out needs a file path", where=str(out))
    if out.exists() and not os.access(out, os.W_OK):
        raise DataError("cannot be written (no permission)", where=str(out))
    # The folders missing on the way are created at the end: the nearest existing one decides.
    existing = out.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise DataError(f"cannot be created: {existing} is not a folder", where=str(out))
    if not os.access(existing, os.W_OK | os.X_OK):
        raise DataError(f"cannot be created: {existing} is not writable", where=str(out))


def read_merge_base(out: Path) -> dict[str, Any]:
    """What ``out`` holds now, for a run to merge into (``{}`` when it does not exist).

    A file that is not a JSON object (say, left with merge-conflict markers) raises
    :class:`DataError` rather than being replaced: its earlier results would be lost silently.
    """
    check_writable(out)
    if not out.exists():
        return {}
    try:
        loaded = json.loads(out.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot merge into it ({exc}); {ADVICE}", where=str(out)) from None
    if not isinstance(loaded, dict):
        raise DataError(f"cannot merge into it (not a JSON object); {ADVICE}", where=str(out))
    return loaded


def write_json(out: Path, doc: dict[str, Any]) -> None:
    """Write ``doc`` to ``out``; on failure print it to stdout (the run is not lost) and raise
    :class:`DataError` naming ``out``."""
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        print(json.dumps(doc, separators=(",", ":")))
        sys.stdout.flush()
        raise DataError(
            f"cannot be written ({exc.strerror or exc}); the JSON is on stdout", where=str(out)
        ) from None


def fail(exc: Exception) -> int:
    """Print ``exc`` as the one-line error (plain print: rich would wrap it) and return 2."""
    print(f"error: {exc}", file=sys.stderr)
    return 2
