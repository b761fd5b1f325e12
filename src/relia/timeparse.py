"""Parsing times and durations at the edges (CLI, API); inside relia time is int64 ms UTC."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from relia.config import parse_delay

if TYPE_CHECKING:
    import polars as pl

__all__ = [
    "MAX_MS",
    "MIN_MS",
    "format_ms",
    "format_ms_column",
    "MAX_FUTURE_MS",
    "parse_time",
    "wall_clock_ms",
]

#: Eight ASCII digits: ISO-8601's basic date, YYYYMMDD.
_BASIC_DATE = re.compile(r"[0-9]{8}")
_RELATIVE = re.compile(r"^\s*(?:now)?\s*([+-])\s*(\S+)\s*$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
#: The times a datetime can hold (years 1 to 9999), in ms UTC: what relia can format or query.
MIN_MS = (datetime(1, 1, 1, tzinfo=UTC) - _EPOCH) // timedelta(milliseconds=1)
MAX_MS = (datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC) - _EPOCH) // timedelta(
    milliseconds=1
)


def parse_time(text: str, *, now_ms: int) -> int:
    """Parse an absolute or relative time into ms UTC.

    Accepts ``now``, ``now-1h`` / ``-1h`` / ``-30m`` / ``now-1h30m``, epoch seconds or
    milliseconds (by magnitude), and ISO-8601 (naive means UTC; eight digits are the basic date
    ``20240101``). Raises ``ValueError`` with a readable message.
    """
    ms = _parse_time(text, now_ms=now_ms)
    # An epoch number can be any size: one past year 9999 could not be formatted nor queried.
    if not MIN_MS <= ms <= MAX_MS:
        raise ValueError(f"not a time: {text!r} is out of range (years 1 to 9999)")
    return ms


def _parse_time(text: str, *, now_ms: int) -> int:
    raw = text.strip()
    if raw.lower() == "now":
        return now_ms
    rel = _RELATIVE.match(raw.lower())
    if rel and not raw.lstrip("+-").replace(".", "", 1).isdigit():
        sign = -1 if rel.group(1) == "-" else 1
        # now-0s is now: an offset may be none.
        return now_ms + sign * int(round(parse_delay(rel.group(2)) * 1000))
    if _BASIC_DATE.fullmatch(raw):
        # ISO-8601's basic date (20240101), as GNU date and datetime.fromisoformat read it: as
        # epoch seconds it would be August 1970, which nobody means.
        try:
            day = datetime.strptime(raw, "%Y%m%d").replace(tzinfo=UTC)
        except ValueError:
            raise ValueError(
                f"not a time: {text!r} (eight digits are read as a date, YYYYMMDD; write "
                "2024-01-01 or epoch seconds with a decimal point, 20240101.0)"
            ) from None
        return (day - _EPOCH) // timedelta(milliseconds=1)
    try:
        number = float(raw)
    except ValueError:
        pass
    else:
        if number != number or number in (float("inf"), float("-inf")):
            raise ValueError(f"not a time: {text!r}")
        return int(round(number)) if abs(number) >= 1e11 else int(round(number * 1000))
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"not a time: {text!r} (use ISO-8601, epoch seconds, 'now' or 'now-1h')"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    # Whole milliseconds, digits past them cut (as the file readers and Prometheus do), in
    # integers: a float timestamp would round, and lose microseconds far from 1970.
    return (parsed - _EPOCH) // timedelta(milliseconds=1)


#: How far ahead of relia's clock a sample may be stamped (``ingest.max_future``'s default): a
#: later one is refused by remote-write and dropped by scrape.
MAX_FUTURE_MS = 10 * 60_000


def wall_clock_ms() -> int:
    """Now, in int64 ms since the Unix epoch (UTC)."""
    return time.time_ns() // 1_000_000


def format_ms(ms: int) -> str:
    """ISO-8601 UTC with a ``Z``; milliseconds shown only when non-zero."""
    dt = datetime.fromtimestamp(ms / 1000, tz=UTC)
    if ms % 1000:
        return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def format_ms_column(ms: npt.ArrayLike) -> pl.Series:
    """:func:`format_ms` for a whole column at once (vectorized in Polars)."""
    import polars as pl

    ts = pl.Series("timestamp", np.asarray(ms, dtype=np.int64))
    dt = ts.cast(pl.Datetime("ms", "UTC"))
    frame = pl.DataFrame({"ts": ts, "dt": dt})
    return frame.select(
        pl.when(pl.col("ts") % 1000 == 0)
        .then(pl.col("dt").dt.strftime("%Y-%m-%dT%H:%M:%SZ"))
        .otherwise(pl.col("dt").dt.strftime("%Y-%m-%dT%H:%M:%S%.3fZ"))
        .alias("timestamp")
    ).to_series()
