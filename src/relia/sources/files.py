"""Time series from CSV and Parquet files.

:func:`read_series` turns one file into a :class:`SeriesFrame` (:func:`read_columns` a file of
several value columns into one each; a path of ``-`` reads standard input, CSV or Parquet): int64
milliseconds UTC and float64 values, one row per data row of the file, in file order: time must not
go back (equal times are kept as they come). The time and value columns are found by common names
(case-insensitive) unless given; times may be ISO-8601 text (a missing zone means UTC), epoch
seconds, milliseconds, microseconds or nanoseconds (told apart by magnitude), or Parquet
datetime/date columns. An empty value is NaN and kept.

:class:`FileSource` serves a file as a :class:`~relia.sources.base.MetricSource`: the first poll
returns the whole file as one series, later polls nothing.
"""

from __future__ import annotations

import csv
import io
import logging
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from relia.errors import DataError
from relia.signals import MetricBatch, SeriesIndex
from relia.timeparse import MAX_MS, MIN_MS, format_ms

__all__ = ["FileSource", "SeriesFrame", "read_columns", "read_series"]

log = logging.getLogger(__name__)

TIME_NAMES = ("timestamp", "time", "ts", "date", "datetime", "time_stamp", "@timestamp")
VALUE_NAMES = ("value", "values", "y", "metric", "val", "count")
CSV_SUFFIXES = (".csv", ".tsv", ".txt")
#: An INPUT of ``-`` is CSV read from standard input.
STDIN = "-"
PARQUET_SUFFIXES = (".parquet", ".pq")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_MS = timedelta(milliseconds=1)

# Formats tried in turn on ISO-8601 text; `%.f` makes fractional seconds optional and `%#z`
# accepts `Z`, `+02:00` and `+0200`.
_DATETIME_FORMATS = (
    "%Y-%m-%dT%H:%M:%S%.f%#z",
    "%Y-%m-%d %H:%M:%S%.f%#z",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M%#z",
    "%Y-%m-%d %H:%M%#z",
    "%Y-%m-%dT%H:%M",
    "%Y-%m-%d %H:%M",
)


@dataclass(frozen=True, eq=False)
class SeriesFrame:
    """One series read from a file: ``ts`` int64 ms UTC and ``values`` float64, in file order.

    Compared by identity (``eq=False``): arrays have no single truth value.
    """

    ts: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    time_col: str
    value_col: str
    path: Path
    #: What was accepted but is worth saying (a clock that stepped back), each naming its place.
    notes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.ts)


def read_series(
    path: str | Path, time_col: str | None = None, value_col: str | None = None
) -> SeriesFrame:
    """Read a time series from a CSV (``.csv``/``.tsv``/``.txt``) or Parquet (``.parquet``/``.pq``).

    Raises :class:`DataError` naming the file (and row, line, column) on any bad input.
    """
    p = Path(path)
    where = _shown(p)
    df, line_of_row = _load(p)
    tcol, vcol = _pick_columns(df.columns, time_col, value_col, where)
    ts, notes = _times(df, tcol, where, line_of_row)
    values = _parse_values(df.get_column(vcol), vcol, where, line_of_row)
    return SeriesFrame(ts=ts, values=values, time_col=tcol, value_col=vcol, path=p, notes=notes)


def read_columns(
    path: str | Path, time_col: str | None = None, value_cols: Sequence[str] | None = None
) -> list[SeriesFrame]:
    """Read several series that share one time column (a "wide" file, as Grafana exports a panel:
    ``time,cpu,mem,...``), one :class:`SeriesFrame` per value column, in ``value_cols`` order.

    ``value_cols=None`` takes every column but the time column whose cells are all numbers (or
    empty); any other column (a host name, a label, one with no values) is left out, and a note
    in every frame's ``notes`` says which and why. Errors as :func:`read_series`.
    """
    p = Path(path)
    where = _shown(p)
    df, line_of_row = _load(p)
    columns = df.columns
    left_out: list[str] = []
    existing = ", ".join(repr(c) for c in columns)
    if value_cols is not None:
        if not value_cols:
            raise DataError("no value column named", where=where)
        chosen: list[str] = []
        for wanted in value_cols:
            found = _find(columns, wanted)
            if found is None:
                raise DataError(f"no value column {wanted!r}; columns are {existing}", where=where)
            if found in chosen:
                raise DataError(f"value column {found!r} is named twice", where=where)
            chosen.append(found)
        tcol, _ = _pick_columns(columns, time_col, chosen[0], where)
        for c in chosen[1:]:
            _pick_columns(columns, tcol, c, where)  # the same checks for every value column
    else:
        if (
            time_col is None
            and len(columns) == 2
            and not any(_find(columns, n) for n in TIME_NAMES)
        ):
            tcol = columns[0]  # as read_series reads a two-column file: time first
        else:
            tcol = _time_column(columns, time_col, where)
        chosen = []
        for c in columns:
            if c == tcol:
                continue
            why = _not_values(df.get_column(c), line_of_row)
            if why is None:
                chosen.append(c)
            else:
                left_out.append(f"{where}: column {c!r} left out: {why}")
        if not chosen:
            raise DataError(
                f"no column of numbers besides the time column {tcol!r}; columns are {existing}",
                where=where,
            )
        for c in chosen:
            _pick_columns(columns, tcol, c, where)
    ts, notes = _times(df, tcol, where, line_of_row)
    return [
        SeriesFrame(
            ts=ts,
            values=_parse_values(df.get_column(c), c, where, line_of_row),
            time_col=tcol,
            value_col=c,
            path=p,
            notes=(*notes, *left_out),
        )
        for c in chosen
    ]


def _shown(p: Path) -> str:
    """How errors name an input: its path, or ``<stdin>``."""
    return "<stdin>" if str(p) == STDIN else str(p)


def _load(p: Path) -> tuple[pl.DataFrame, _CsvLines | None]:
    """The file's rows, and (for a CSV) where each row's line is; refused when it has none."""
    where = _shown(p)
    line_of_row: _CsvLines | None
    if str(p) == STDIN:
        # A pipe is read whole: a series is scored as a whole anyway. CSV, or Parquet by its
        # magic bytes.
        raw = sys.stdin.buffer.read()
        if raw.startswith(b"PAR1"):
            df, line_of_row = _read_parquet(io.BytesIO(raw), where), None
        else:
            df, line_of_row = _parse_csv(raw, where, ".csv")
        if df.height == 0:
            raise DataError("no data rows", where=where)
        return df, line_of_row
    if not p.exists():
        raise DataError("no such file", where=where)
    if not p.is_file():
        raise DataError("not a file", where=where)
    suffix = p.suffix.lower()
    if suffix in CSV_SUFFIXES:
        df, line_of_row = _read_csv(p)
    elif suffix in PARQUET_SUFFIXES:
        df, line_of_row = _read_parquet(p, where), None
    else:
        raise DataError(
            f"unknown format {p.suffix or '(no suffix)'!r}; expected one of "
            f"{', '.join(CSV_SUFFIXES + PARQUET_SUFFIXES)}",
            where=where,
        )
    if df.height == 0:
        raise DataError("no data rows", where=where)
    return df, line_of_row


def _time_column(columns: list[str], time_col: str | None, where: str) -> str:
    """The time column: the one named, else the first with a common time name."""
    existing = ", ".join(repr(c) for c in columns)
    if time_col is not None:
        tcol = _find(columns, time_col)
        if tcol is None:
            raise DataError(f"no time column {time_col!r}; columns are {existing}", where=where)
        return tcol
    tcol = next((c for n in TIME_NAMES if (c := _find(columns, n)) is not None), None)
    if tcol is None:
        raise _no_time_column(columns, where)
    return tcol


def _no_time_column(columns: list[str], where: str) -> DataError:
    existing = ", ".join(repr(c) for c in columns)
    return DataError(
        f"no time column (looked for {', '.join(TIME_NAMES)}); columns are {existing}; "
        "name one with --time-col (time_col= in Python)",
        where=where,
    )


def _not_values(s: pl.Series, line_of_row: _CsvLines | None) -> str | None:
    """Why a column is not a series' values (None when it is): it holds no values at all, or a
    cell that is not a number (a host name, a commit id that is sometimes all digits, a decimal
    comma), or a type that is not a number."""
    if s.dtype.is_numeric() or s.dtype == pl.Boolean:
        return "it holds no values" if s.null_count() == len(s) else None
    if s.dtype != pl.String:
        return f"its type is {s.dtype}, not a number"
    text = s.str.strip_chars()
    empty = (text.is_null() | (text == "")).to_numpy()
    if empty.all():
        return "it holds no values"
    bad = text.cast(pl.Float64, strict=False).is_null().to_numpy() & ~empty
    if not bad.any():
        return None
    i = _first_bad(bad)
    return f"{s[i]!r} at{_place('', i, line_of_row)[1:]} is not a number"


def _times(
    df: pl.DataFrame, tcol: str, where: str, line_of_row: _CsvLines | None
) -> tuple[npt.NDArray[np.int64], tuple[str, ...]]:
    """The time column as int64 ms UTC, checked, and what is worth noting about its order (and
    about a last row cut short)."""
    ts = _parse_times(df.get_column(tcol), tcol, where, line_of_row)
    # Later years (e.g. epoch 1e24) crashed formatting the output; say which row instead.
    out_of_range = (ts < MIN_MS) | (ts > MAX_MS)
    if out_of_range.any():
        i = _first_bad(out_of_range)
        column = df.get_column(tcol)
        # A datetime this far out cannot become a Python object to show: show its epoch ms.
        shown = f"{ts[i]} ms" if column.dtype.is_temporal() else repr(column[i])
        raise DataError(
            f"time {shown} in column {tcol!r} is out of range (years 1 to 9999)",
            where=_place(where, i, line_of_row),
        )
    notes = _check_time_order(ts, where, line_of_row)
    short = line_of_row.short_rows(df.width) if line_of_row is not None else None
    if short is not None:
        notes = (*notes, _short_rows_note(where, df.width, *short))
    return ts, notes


def _short_rows_note(
    where: str, header: int, line: int, fields: int, count: int, last: bool
) -> str:
    """What a reader is told of rows with fewer fields than the header."""
    if count == 1 and last:
        return (
            f"{where}: line {line}: {fields} of {header} fields (cut off?); the missing ones "
            "read as empty"
        )
    more = f" ({count:,} short rows in all)" if count > 1 else ""
    return (
        f"{where}: line {line}: {fields} of {header} fields{more}; the missing ones read as empty"
    )


def _check_time_order(
    ts: npt.NDArray[np.int64], where: str, line_of_row: _CsvLines | None
) -> tuple[str, ...]:
    """Refuse a file whose time runs backwards; note a clock that steps back now and then.

    Scored in file order, a newest-first export would run every forecast backwards, and a file
    merged from several sources jumps to and fro. But a clock set back once (NAB's
    ``machine_temperature_system_failure.csv`` steps back an hour once in 22,695 rows) is data
    as it was recorded: it is scored in file order, as a streaming detector would have seen it,
    with a note. Up to one row in a hundred (at least one) may step back.
    """
    steps = np.diff(ts)
    back = np.flatnonzero(steps < 0)
    if not len(back):
        return ()
    i = int(back[0]) + 1
    went = f"{format_ms(int(ts[i]))} after {format_ms(int(ts[i - 1]))}"
    if len(back) > max(1, len(steps) // 100):
        raise DataError(
            f"time goes back at {len(back)} of {len(steps)} rows, first: {went}; "
            "sort the file by time (oldest first)",
            where=_place(where, i, line_of_row),
        )
    times = "once" if len(back) == 1 else f"{len(back)} times"
    return (
        f"{_place(where, i, line_of_row)}: time goes back: {went}; {times} in the file; "
        "scored in file order",
    )


class _CsvLines:
    """The line (1-based) on which each data row of a CSV starts, found when an error needs one.

    Rows count as in the frame :func:`_read_csv` returns: blank lines before the header are
    skipped, later blank rows are dropped, and a quoted field may span several lines.
    """

    def __init__(self, raw: bytes, sep: str) -> None:
        self._raw = raw
        self._sep = sep

    def line_of(self, row: int) -> int | None:
        """The line row ``row`` (0-based) starts on; None if the file cannot be re-scanned."""
        lines = (line + "\n" for line in self._raw.decode("utf-8", "replace").split("\n"))
        reader = csv.reader(lines, delimiter=self._sep)
        start, data_row, header_seen = 1, -1, False
        try:
            for record in reader:
                if not header_seen:
                    header_seen = bool(record)  # empty lines before the header are skipped
                elif any(field.strip() for field in record):  # blank rows were dropped
                    data_row += 1
                    if data_row == row:
                        return start
                start = reader.line_num + 1
        except csv.Error:  # e.g. a field longer than the csv module's limit
            return None
        return None

    def first_long_row(self) -> tuple[int, int, int] | None:
        """(line, fields, header fields) of the first row with more fields than the header."""
        lines = (line + "\n" for line in self._raw.decode("utf-8", "replace").split("\n"))
        reader = csv.reader(lines, delimiter=self._sep)
        header: int | None = None
        start = 1
        try:
            for record in reader:
                if header is None:
                    header = len(record) or None  # empty lines before the header are skipped
                elif len(record) > header:
                    return start, len(record), header
                start = reader.line_num + 1
        except csv.Error:
            return None
        return None

    def short_rows(self, header: int) -> tuple[int, int, int, bool] | None:
        """(line, fields, how many, is it the last row) of the first data row with fewer fields
        than the header's ``header``, or None. Their missing fields read as empty, as Polars
        reads them; a file cut off mid-row has one, at its end.

        One vectorized pass over the bytes: a separator belongs to the row of the row ends
        before it. A quoted field may hold separators and newlines, so a separator or newline
        counts only where an even number of quotes comes before it (an escaped ``""`` adds
        two); the row's line is counted over every newline.
        """
        raw = self._raw
        data = np.frombuffer(raw, np.uint8)
        all_newlines = np.flatnonzero(data == ord("\n"))
        seps = np.flatnonzero(data == ord(self._sep))
        newlines = all_newlines
        quotes = np.flatnonzero(data == ord('"'))
        if len(quotes):
            newlines = newlines[np.searchsorted(quotes, newlines) % 2 == 0]
            seps = seps[np.searchsorted(quotes, seps) % 2 == 0]
        starts = np.concatenate(([0], newlines + 1))
        ends = np.concatenate((newlines, [len(data)]))
        lengths = ends - starts
        ends_in_cr = np.zeros(len(ends), bool)
        ends_in_cr[lengths > 0] = data[ends[lengths > 0] - 1] == ord("\r")
        blank = lengths - ends_in_cr == 0
        # No row has more fields than the header (Polars refuses those), so a file whose
        # separators add up to the header's per row has no short row: skip the per-row count.
        if len(seps) == (header - 1) * int(np.count_nonzero(~blank)):
            return None
        fields = 1 + np.bincount(np.searchsorted(newlines, seps), minlength=len(starts))
        not_blank = np.flatnonzero(~blank)
        if len(not_blank) < 2:  # a header alone
            return None
        body = not_blank[1:]
        short = body[fields[body] < header]
        if not len(short):
            return None
        first = int(short[0])
        line = int(np.searchsorted(all_newlines, starts[first])) + 1
        return line, int(fields[first]), len(short), first == int(not_blank[-1])


def _place(where: str, row: int, line_of_row: _CsvLines | None) -> str:
    """``file: row N (line L)`` for a 0-based data row index."""
    line = None if line_of_row is None else line_of_row.line_of(row)
    if line is None:
        return f"{where}: row {row + 1}"
    return f"{where}: row {row + 1} (line {line})"


def _sniff_separator(head: bytes, suffix: str) -> str:
    if suffix == ".tsv":
        return "\t"
    first = head.lstrip(b"\r\n").split(b"\n", 1)[0]  # the header: empty lines before it are skipped
    counts = {sep: first.count(sep.encode()) for sep in (",", "\t", ";", "|")}
    best = max(counts, key=lambda s: counts[s])
    return best if counts[best] > 0 else ","


def _read_csv(p: Path) -> tuple[pl.DataFrame, _CsvLines]:
    where = str(p)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror or exc}", where=where) from None
    return _parse_csv(raw, where, p.suffix.lower())


def _unclosed_quote_line(raw: bytes) -> int | None:
    """The line on which a quoted field that never closes starts, or None if quotes pair up.

    Every quote toggles between inside and outside a quoted field (an escaped ``""`` toggles
    twice), so an odd count ends inside one, opened by the last quote at an even position.
    """
    quotes = np.flatnonzero(np.frombuffer(raw, np.uint8) == ord('"'))
    if len(quotes) % 2 == 0:
        return None
    opening = int(quotes[-1])
    return raw.count(b"\n", 0, opening) + 1


def _parse_csv(raw: bytes, where: str, suffix: str) -> tuple[pl.DataFrame, _CsvLines]:
    """CSV text (any of , ; tab |, sniffed) as a frame of text columns, blank lines dropped."""
    if not raw.strip():
        raise DataError("empty file", where=where)
    if raw.startswith(b"\xef\xbb\xbf"):  # a UTF-8 byte-order mark would end up in the header
        raw = raw[3:]
    if b"\n" not in raw and b"\r" in raw:
        # Lines ended by a carriage return alone (old Mac OS, some spreadsheet exports): Polars
        # reads them as one line ("no data rows").
        raw = raw.replace(b"\r", b"\n")
    sep = _sniff_separator(raw[:65536], suffix)
    try:
        # Everything as text: we parse times and values ourselves so that errors can name the row.
        df = pl.read_csv(io.BytesIO(raw), separator=sep, infer_schema=False, encoding="utf8-lossy")
    except pl.exceptions.NoDataError:
        raise DataError("empty file", where=where) from None
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException) as exc:
        # Polars names no line for a row with too many fields ("found more fields than defined
        # in 'Schema'"): find it ourselves so that the message says where.
        long_row = _CsvLines(raw, sep).first_long_row()
        if long_row is not None:
            line, fields, header = long_row
            raise DataError(
                f"line {line}: {fields} fields, but the header has {header}", where=where
            ) from None
        open_quote = _unclosed_quote_line(raw)
        if open_quote is not None:
            raise DataError(
                f"line {open_quote}: a quoted field starts here and is never closed", where=where
            ) from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot parse CSV: {first}", where=where) from None
    if df.width == 0:
        raise DataError("no columns", where=where)
    df = _header_unescaped(df, raw, sep)
    # Blank lines come back as all-null rows: they are not data, so drop them. Error messages
    # find a row's line from the text (quoted fields may span lines).
    blank = pl.all_horizontal(pl.all().is_null() | (pl.all().str.strip_chars() == ""))
    keep = ~df.select(blank.alias("blank")).get_column("blank")
    if not bool(keep.all()):
        df = df.filter(keep)
    return df, _CsvLines(raw, sep)


def _header_unescaped(df: pl.DataFrame, raw: bytes, sep: str) -> pl.DataFrame:
    """The header's names as CSV writes them: Polars (reading every column as text) keeps a
    quoted name's doubled quotes, and Grafana quotes every series name with its labels
    (``"up{job=""node""}"``). Python's csv module reads the first record properly."""
    if b'"' not in raw[:65536]:
        return df  # no quoted name: nothing to unescape
    records = csv.reader(io.StringIO(raw.decode("utf-8", "replace")), delimiter=sep)
    header = next((r for r in records if r), None)
    if header is None or len(header) != df.width or len(set(header)) != len(header):
        return df  # repeated names are reported by the column checks, under Polars' renames
    return df.rename(dict(zip(df.columns, header, strict=True)))


def _read_parquet(p: Path | io.BytesIO, where: str) -> pl.DataFrame:
    try:
        return pl.read_parquet(p)
    except (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot read Parquet: {first}", where=where) from None


def _find(columns: list[str], wanted: str) -> str | None:
    """The column named ``wanted``: exact match first, else case-insensitive."""
    if wanted in columns:
        return wanted
    low = wanted.strip().lower()
    for c in columns:
        if c.strip().lower() == low:
            return c
    return None


def _pick_columns(
    columns: list[str], time_col: str | None, value_col: str | None, where: str
) -> tuple[str, str]:
    existing = ", ".join(repr(c) for c in columns)
    tcol = vcol = None
    if time_col is not None:
        tcol = _time_column(columns, time_col, where)
    if value_col is not None:
        vcol = _find(columns, value_col)
        if vcol is None:
            raise DataError(f"no value column {value_col!r}; columns are {existing}", where=where)
    # A column named for one role is not looked for in the other.
    if time_col is None:
        others = [c for c in columns if c != vcol]
        tcol = next((c for n in TIME_NAMES if (c := _find(others, n)) is not None), None)
    if value_col is None:
        others = [c for c in columns if c != tcol]
        vcol = next((c for n in VALUE_NAMES if (c := _find(others, n)) is not None), None)
    if (tcol is None or vcol is None) and len(columns) == 2:
        # No common names, but a two-column file is unambiguous: time first, value second.
        # Unless what is left has the other role's name (`--value-col timestamp` leaves
        # `value`): that is a mix-up, and reading it would fail later, far from the cause.
        if tcol is None:
            tcol = columns[0] if vcol != columns[0] else columns[1]
            _refuse_the_other_role(tcol, "time", "value", VALUE_NAMES, where)
        if vcol is None:
            vcol = next(c for c in columns if c != tcol)
            _refuse_the_other_role(vcol, "value", "time", TIME_NAMES, where)
    if tcol is None:
        raise _no_time_column(columns, where)
    if vcol is None:
        raise DataError(
            f"no value column (looked for {', '.join(VALUE_NAMES)}); columns are {existing}; "
            "name one with --value-col (value_col= in Python)",
            where=where,
        )
    if tcol == vcol:
        raise DataError(f"time and value column are the same ({tcol!r})", where=where)
    for chosen in (tcol, vcol):
        # Polars renames a repeated header name to NAME_duplicated_N; reading the first of the
        # two silently would score one column without saying which.
        repeat = re.compile(re.escape(chosen) + r"_duplicated_\d+")
        places = [i + 1 for i, c in enumerate(columns) if c == chosen or repeat.fullmatch(c)]
        if len(places) > 1:
            listed = ", ".join(str(n) for n in places[:-1]) + f" and {places[-1]}"
            times = "twice" if len(places) == 2 else f"{len(places)} times"
            raise DataError(
                f"the header names {chosen!r} {times} (columns {listed}); rename all but one",
                where=where,
            )
    return tcol, vcol


def _refuse_the_other_role(
    column: str, role: str, other: str, other_names: tuple[str, ...], where: str
) -> None:
    """Refuse ``column``, left over for ``role``, when it is named like the ``other`` role."""
    if any(_find([column], name) for name in other_names):
        raise DataError(
            f"column {column!r} is named like a {other}, not a {role}; name the {role} column "
            f"with --{role}-col ({role}_col= in Python)",
            where=where,
        )


def _first_bad(mask: npt.NDArray[np.bool_]) -> int:
    return int(np.flatnonzero(mask)[0])


def _epoch_to_ms(
    s: pl.Series, col: str, where: str, line_of_row: _CsvLines | None
) -> npt.NDArray[np.int64]:
    """Epoch numbers to ms; the unit (s, ms, μs, ns) follows from the largest magnitude."""
    if s.dtype.is_integer() or _integral(s):
        # Integers stay exact (float64 would round epoch nanoseconds).
        ints = s.cast(pl.Int64, strict=False).to_numpy().astype(np.int64)
        # Python ints: np.abs of the smallest int64 overflows (it read as 1970-01-01).
        biggest = max(abs(int(ints.max())), abs(int(ints.min()))) if len(ints) else 0
        if biggest > 10**17:
            return ints // 1_000_000
        if biggest > 10**14:
            return ints // 1_000
        if biggest > 10**11:
            return ints
        return ints * 1000
    floats = s.cast(pl.Float64).to_numpy().astype(np.float64)
    bad = ~np.isfinite(floats)
    if bad.any():
        i = _first_bad(bad)
        raise DataError(
            f"unparsable time {float(floats[i])!r} in column {col!r}",
            where=_place(where, i, line_of_row),
        )
    largest = float(np.abs(floats).max())
    scale = 1e-6 if largest > 1e17 else 1e-3 if largest > 1e14 else 1.0 if largest > 1e11 else 1e3
    ms = np.round(floats * scale)
    too_big = np.abs(ms) > 2**62
    if too_big.any():
        i = _first_bad(too_big)
        raise DataError(
            f"time {float(floats[i])!r} in column {col!r} is out of range",
            where=_place(where, i, line_of_row),
        )
    return ms.astype(np.int64)


def _integral(s: pl.Series) -> bool:
    if not s.dtype.is_float():
        return False
    arr = s.to_numpy()
    finite = np.isfinite(arr)
    return bool(finite.all() and (np.abs(arr) < 2**62).all() and (arr == np.round(arr)).all())


def _parse_times(
    s: pl.Series, col: str, where: str, line_of_row: _CsvLines | None
) -> npt.NDArray[np.int64]:
    dtype = s.dtype
    if s.null_count():
        i = _first_bad(s.is_null().to_numpy())
        raise DataError(f"missing time in column {col!r}", where=_place(where, i, line_of_row))
    if isinstance(dtype, pl.Datetime):
        if dtype.time_zone is None:  # naive means UTC
            s = s.dt.replace_time_zone("UTC")
        return s.dt.epoch("ms").to_numpy().astype(np.int64)
    if dtype == pl.Date:
        return s.cast(pl.Datetime("ms")).dt.epoch("ms").to_numpy().astype(np.int64)
    if dtype.is_numeric():
        return _epoch_to_ms(s, col, where, line_of_row)
    if dtype != pl.String:
        raise DataError(f"time column {col!r} has unsupported type {dtype}", where=where)
    text = s.str.strip_chars()
    numbers = text.cast(pl.Float64, strict=False)
    if numbers.null_count() == 0:
        ints = text.cast(pl.Int64, strict=False)
        return _epoch_to_ms(ints if ints.null_count() == 0 else numbers, col, where, line_of_row)
    if numbers.null_count() < len(numbers):
        # Epoch numbers with a few cells that are not (an export's "#ERROR"): the bad cell is
        # the first that is not a number, not the first epoch the ISO parsers cannot read.
        i = _first_bad(numbers.is_null().to_numpy())
        raise DataError(
            f"unparsable time {s[i]!r} in column {col!r} (the column holds epoch numbers)",
            where=_place(where, i, line_of_row),
        )
    parsed = pl.select(
        pl.coalesce(
            [
                text.str.to_datetime(f, time_unit="ms", time_zone="UTC", strict=False)
                for f in _DATETIME_FORMATS
            ]
            + [text.str.to_date("%Y-%m-%d", strict=False).cast(pl.Datetime("ms", "UTC"))]
        ).alias("t")
    ).get_column("t")
    ms = parsed.dt.epoch("ms")
    if ms.null_count():
        ms = _fallback_iso(text, ms, col, where, line_of_row)
    return ms.to_numpy().astype(np.int64)


def _fallback_iso(
    text: pl.Series,
    ms: pl.Series,
    col: str,
    where: str,
    line_of_row: _CsvLines | None,
) -> pl.Series:
    # Rare shapes (e.g. `2024-01-01T00:00:00.123456789+05:30`, week dates) go through Python's ISO
    # parser, once per distinct leftover string rather than per row.
    missing = ms.is_null().to_numpy()
    leftovers = text.filter(pl.Series(missing)).unique(maintain_order=True).to_list()
    found: dict[str, int] = {}
    for raw in leftovers:
        try:
            dt = datetime.fromisoformat(raw)
        except ValueError:
            i = int(np.flatnonzero(missing & (text == raw).to_numpy())[0])
            raise DataError(
                f"unparsable time {raw!r} in column {col!r} (expected ISO-8601 or epoch "
                "seconds/milliseconds)",
                where=_place(where, i, line_of_row),
            ) from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        found[raw] = (dt - _EPOCH) // _ONE_MS  # floor, as the formats above cut off digits
    filled = text.replace_strict(found, default=None, return_dtype=pl.Int64)
    return ms.fill_null(filled)


def _parse_values(
    s: pl.Series, col: str, where: str, line_of_row: _CsvLines | None
) -> npt.NDArray[np.float64]:
    dtype = s.dtype
    if dtype.is_numeric() or dtype == pl.Boolean:
        return s.cast(pl.Float64).fill_null(float("nan")).to_numpy().astype(np.float64)
    if dtype != pl.String:
        raise DataError(f"value column {col!r} has unsupported type {dtype}", where=where)
    text = s.str.strip_chars()
    empty = text.is_null() | (text == "")
    numbers = text.cast(pl.Float64, strict=False)
    bad = (numbers.is_null() & ~empty).to_numpy()
    if bad.any():
        i = _first_bad(bad)
        raise DataError(
            f"non-numeric value {s[i]!r} in column {col!r}", where=_place(where, i, line_of_row)
        )
    return numbers.fill_null(float("nan")).to_numpy().astype(np.float64)


class FileSource:
    """A file served as a source: the first poll returns all of it, later polls nothing.

    The series is named after the file's stem, with no labels; ``name`` names the source.
    """

    def __init__(
        self,
        path: str | Path,
        index: SeriesIndex,
        name: str | None = None,
        time_col: str | None = None,
        value_col: str | None = None,
    ) -> None:
        self.path = Path(path)
        self.index = index
        self.name = name or self.path.stem
        self.metric = self.path.stem
        self.time_col = time_col
        self.value_col = value_col
        self._done = False

    def poll(self, now_ms: int) -> MetricBatch:
        """The whole file once; an empty batch afterwards."""
        if self._done:
            return MetricBatch.empty()
        frame = read_series(self.path, self.time_col, self.value_col)
        for note in frame.notes:
            log.warning("%s", note)
        sid = self.index.get_or_add(self.metric, source=self.name)
        self._done = True
        if sid is None:  # over max_series: the index logged and counted it
            return MetricBatch.empty()
        return MetricBatch.for_series(sid, frame.ts, frame.values)
