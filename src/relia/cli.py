"""The ``relia`` command line.

Every user error (bad file, bad column, unreachable server, invalid config) is printed as one line
on stderr and exits with code 2; nothing else is printed for it.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import typer
from rich.table import Table

from relia._cliutil import (
    Staged,
    check_output_place,
    check_url,
    count_of,
    err_console,
    output_path,
    same_file,
    to_stdout,
    unwrap_help,
    user_errors,
    writing,
)
from relia._urls import shown_url
from relia.api.tokens_cli import token_app
from relia.errors import ConfigError, DataError
from relia.incidents.cli import incidents_app
from relia.logs.cli import logs_app
from relia.slo.cli import slo_app

__all__ = ["app", "main"]

app = typer.Typer(
    name="relia",
    help="relia: a reliability engine for distributed and machine-learning systems.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Work with relia.yaml.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.add_typer(slo_app, name="slo")
app.add_typer(logs_app, name="logs")
app.add_typer(incidents_app, name="incidents")
app.add_typer(token_app, name="token")

_user_errors = user_errors


def _print_version(value: bool) -> None:
    if value:
        from relia import __version__

        to_stdout(f"relia {__version__}\n")  # a closed pipe: exit 0 quietly
        raise typer.Exit()


@app.callback()
def _relia(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="print relia's version and exit",
        ),
    ] = False,
) -> None:
    """relia: a reliability engine for distributed and machine-learning systems."""


@dataclass(frozen=True)
class _Scoring:
    """How ``relia detect`` scores: detector, threshold, counter handling and where."""

    detector: str
    threshold: float
    counter: bool
    executor: str
    workers: int | None
    address: str | None


@dataclass(frozen=True)
class _Columns:
    """Which columns of INPUT ``relia detect`` reads: one value column, or several."""

    time_col: str | None
    value_col: str | None  # the one value column (None: found by its name)
    several: bool = False  # several value columns, one series each
    value_cols: list[str] | None = None  # with ``several``: these (None: every column of numbers)


@dataclass
class _Scored:
    title: str
    ts: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]


def _write_csv(
    target: Any,
    ts: np.ndarray,
    values: np.ndarray,
    scores: np.ndarray,
    flags: np.ndarray,
) -> None:
    import polars as pl

    from relia.timeparse import format_ms_column

    frame = pl.DataFrame(
        {
            "timestamp": format_ms_column(ts),
            "value": values,
            "anomaly_score": np.round(scores, 6),
            "is_anomaly": flags.astype(np.int8),
        }
    )
    frame.write_csv(target, float_precision=None, null_value="")


def _numbered(path: Path, i: int) -> Path:
    """The first series goes to ``path`` itself, later ones to ``stem_2.suffix``, ..."""
    return path if i == 0 else path.with_name(f"{path.stem}_{i + 1}{path.suffix}")


#: The range ``relia detect --prometheus`` queries when --start, --end or --step is not given.
_DEFAULT_START, _DEFAULT_END, _DEFAULT_STEP = "now-1h", "now", "15s"


@app.command()
@_user_errors
def detect(
    input_arg: Annotated[
        str | None,
        typer.Argument(
            metavar="INPUT",
            help="CSV or Parquet file with a time and a value column, a folder of them, or - "
            "for CSV on standard input",
            show_default=False,
        ),
    ] = None,
    detector: Annotated[
        str, typer.Option("--detector", "-d", help="registered detector")
    ] = "default",
    out_arg: Annotated[
        str | None,
        typer.Option(
            "--out",
            "-o",
            help="write the scored CSV here (else stdout); a directory (existing, or written "
            "with a trailing /) gets INPUT's stem .csv",
        ),
    ] = None,
    plot_arg: Annotated[
        str | None,
        typer.Option(
            "--plot",
            metavar="PATH",
            help="draw the series and anomalies (.png or .html); one series per file "
            "(PLOT_2.png, ... for more series), not with a folder INPUT",
        ),
    ] = None,
    time_col: Annotated[
        str | None, typer.Option("--time-col", help="name of the time column")
    ] = None,
    value_cols: Annotated[
        list[str] | None,
        typer.Option(
            "--value-col",
            help="name of the value column; repeat it to score several columns of one file "
            "(one output each)",
        ),
    ] = None,
    all_columns: Annotated[
        bool,
        typer.Option(
            "--all-columns",
            help="score every column of numbers in INPUT but the time column (a wide file, as "
            "Grafana exports a panel: time,cpu,mem,...), one output each",
        ),
    ] = False,
    threshold: Annotated[
        float, typer.Option("--threshold", help="score at or above which a point is anomalous")
    ] = 0.5,
    prometheus: Annotated[
        str | None, typer.Option("--prometheus", help="read from this Prometheus server's HTTP API")
    ] = None,
    query: Annotated[str | None, typer.Option("--query", help="PromQL (with --prometheus)")] = None,
    # None when not given, so that one given without --prometheus is refused, not dropped;
    # the defaults named in the help are applied on the Prometheus path.
    start: Annotated[
        str | None,
        typer.Option(
            "--start",
            help=f"ISO-8601, epoch s, or relative like now-2h (with --prometheus; "
            f"default {_DEFAULT_START})",
        ),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option(
            "--end", help=f"ISO-8601, epoch s, or now (with --prometheus; default {_DEFAULT_END})"
        ),
    ] = None,
    step: Annotated[
        str | None,
        typer.Option(
            "--step",
            help=f"resolution, e.g. 15s or 1m (with --prometheus; default {_DEFAULT_STEP})",
        ),
    ] = None,
    timeout: Annotated[
        str | None,
        typer.Option(
            "--timeout",
            help="how long Prometheus may take to answer each request, e.g. 2m for a heavy "
            "query (with --prometheus; default 10s)",
        ),
    ] = None,
    counter: Annotated[
        bool,
        typer.Option(
            "--counter",
            help="the value is a counter (it only grows, and restarts from 0): score its rate "
            "per second, reset-aware like PromQL rate(); the output's value column is that rate "
            "(NaN and score 0 on the first row)",
        ),
    ] = False,
    executor: Annotated[
        str,
        typer.Option(
            "--executor", help="where series are scored: local (this process) or ray (workers)"
        ),
    ] = "local",
    workers: Annotated[
        int | None,
        typer.Option("--workers", help="Ray workers, one core each (default: the cluster's CPUs)"),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help="Ray cluster to join, e.g. auto or head:6379 (default: start a local one)",
        ),
    ] = None,
) -> None:
    """Score a series for anomalies: CSV of timestamp,value,anomaly_score,is_anomaly.

    Reads INPUT (CSV or Parquet), or a PromQL query from Prometheus (one output per returned
    series; with --out, series after the first go to OUT_2.csv, OUT_3.csv, ..., and
    OUT_index.csv says which file holds which series). The same for several columns of one
    file (--value-col repeated, or --all-columns).

    INPUT may be a folder: every *.csv and *.parquet in it is one series; --out is then a
    directory that gets one scored CSV per input (same stem), or without --out a summary CSV
    (one row per series) goes to stdout; a summary table goes to stderr. With --executor ray the
    series are spread over Ray workers, each reading and scoring its own files.
    """
    from relia.detect import create

    # Taken as text: a Path makes "" the current folder, which was then scored as INPUT.
    if input_arg is not None and not input_arg.strip():
        raise DataError("must name a file, got an empty string", where="INPUT")
    input = Path(input_arg) if input_arg is not None else None
    if not 0 < threshold <= 1:
        raise DataError(f"must be in (0, 1], got {threshold}", where="--threshold")
    create(detector)  # fail on an unknown name before any I/O
    plot = output_path(plot_arg, "--plot")  # a name ending in / is a folder, refused
    if plot is not None and plot.suffix.lower() not in (".png", ".html", ".htm"):
        raise DataError(f"plot must end in .png or .html, got {plot.name!r}", where="--plot")
    if (input is None) == (prometheus is None):
        raise DataError("give either an INPUT file or --prometheus URL with --query")
    if prometheus is not None:
        check_url(prometheus, "--prometheus")
    else:
        for flag, value in (
            ("--query", query),
            ("--start", start),
            ("--end", end),
            ("--step", step),
        ):
            if value is not None:
                raise DataError("applies to the Prometheus query; needs --prometheus", where=flag)
    timeout_s = _parse_timeout(timeout, prometheus is not None)
    if executor not in ("local", "ray"):
        raise DataError(f"expected local or ray, got {executor!r}", where="--executor")
    if executor == "local" and (workers is not None or ray_address is not None):
        flag = "--workers" if workers is not None else "--ray-address"
        raise DataError("needs --executor ray", where=flag)
    if workers is not None and workers < 1:
        raise DataError(f"must be at least 1, got {workers}", where="--workers")
    if prometheus is not None:
        for flag, given in (
            ("--time-col", time_col is not None),
            ("--value-col", bool(value_cols)),
            ("--all-columns", all_columns),
        ):
            if given:
                raise DataError("names a column of INPUT; not with --prometheus", where=flag)
    if all_columns and value_cols:
        raise DataError("takes every column; not with --value-col", where="--all-columns")
    several = all_columns or (value_cols is not None and len(value_cols) > 1)
    columns = _Columns(
        time_col,
        value_cols[0] if value_cols and not several else None,
        several,
        value_cols if several else None,
    )
    scoring = _Scoring(detector, threshold, counter, executor, workers, ray_address)
    if out_arg is not None and not out_arg.strip():
        raise DataError("must name a file or a directory, got an empty string", where="--out")
    out = Path(out_arg) if out_arg is not None and out_arg != "-" else None  # -: stdout
    if input is not None and not _is_stdin(input) and input.is_dir():
        if several:
            flag = "--all-columns" if all_columns else "--value-col"
            raise DataError("scores one column per file of a folder INPUT", where=flag)
        _detect_folder(input, out, plot, scoring, columns)
        return
    created: list[Path] = []
    if (
        out is not None
        and out_arg is not None
        and (_is_dir(out) or out_arg.endswith(("/", os.sep)))
    ):
        # A directory: the scored file is named after the input, as in folder mode.
        if _exists(out) and not out.is_dir():
            raise DataError("is a file, not a directory", where=str(out))
        if not _exists(out):
            created = _make_dirs(out)
        stem = "stdin" if _is_stdin(input) else input.stem if input is not None else "series"
        out = out / f"{stem}.csv"
    try:
        _detect_series(
            input,
            out,
            plot,
            scoring,
            columns,
            prometheus,
            query,
            _DEFAULT_START if start is None else start,
            _DEFAULT_END if end is None else end,
            _DEFAULT_STEP if step is None else step,
            timeout_s,
        )
    except BaseException:
        _remove_dirs(created)
        raise


def _one_line(text: str) -> str:
    """A name as it can stand in a one-line message or a ``# series:`` line (a quoted CSV
    header may hold a line break)."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


def _is_dir(path: Path) -> bool:
    """Whether ``path`` is a folder; not when it cannot be looked at (a name too long): the
    output checks, or the mkdir, then say why it cannot be written."""
    try:
        return path.is_dir()
    except OSError:
        return False


def _exists(path: Path) -> bool:
    """Whether ``path`` exists; not when it cannot be looked at (as :func:`_is_dir`)."""
    try:
        return path.exists()
    except OSError:
        return False


def _is_stdin(input: Path | None) -> bool:
    """Whether INPUT is ``-``: CSV read from standard input."""
    from relia.sources.files import STDIN

    return input is not None and str(input) == STDIN


def _make_dirs(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; the ones made, deepest first."""
    created = [d for d in (folder, *folder.parents) if not _exists(d)]
    try:
        folder.mkdir(parents=True)
    except OSError as exc:
        raise DataError(f"cannot create: {exc.strerror}", where=str(folder)) from None
    return created


def _remove_dirs(created: list[Path]) -> None:
    """Take away folders a failed run made (it wrote nothing into them)."""
    with contextlib.suppress(OSError):
        for made in created:
            made.rmdir()


def _detect_series(
    input: Path | None,
    out: Path | None,
    plot: Path | None,
    scoring: _Scoring,
    columns: _Columns,
    prometheus: str | None,
    query: str | None,
    start: str,
    end: str,
    step: str,
    timeout_s: float,
) -> None:
    """``relia detect FILE`` or ``relia detect --prometheus``: score each series, write it."""
    from relia.detect import Thresholder, create
    from relia.detect.base import Detail

    detector, counter = scoring.detector, scoring.counter

    # Checked before any series is read: a failed write must not cut a run short half-way.
    if out is not None:
        if input is not None and not _is_stdin(input) and same_file(out, input):
            raise DataError(f"{out} is the input; write elsewhere", where="--out")
        check_output_place(out, "cannot write")
    if plot is not None:
        check_output_place(plot, "cannot write plot")
    series: list[_Scored]
    # Read here, not by a Ray worker: several columns (one file, one read) or standard input.
    read_here = columns.several or _is_stdin(input)
    name = "<stdin>" if _is_stdin(input) else str(input)
    if input is not None and columns.several:
        from relia.sources.files import read_columns

        frames = read_columns(input, time_col=columns.time_col, value_cols=columns.value_cols)
        _warn(frames[0].notes)
        series = [_Scored(f"{name} [{_one_line(f.value_col)}]", f.ts, f.values) for f in frames]
    elif input is not None:
        if scoring.executor == "ray" and not read_here:
            # The worker reads the file; the driver only gets the scored arrays back.
            series = [_Scored(name, np.empty(0, np.int64), np.empty(0))]
        else:
            from relia.sources.files import read_series

            frame = read_series(input, time_col=columns.time_col, value_col=columns.value_col)
            _warn(frame.notes)
            series = [_Scored(name, frame.ts, frame.values)]
    else:
        series = _from_prometheus(str(prometheus), query, start, end, step, timeout_s)

    thresholder = Thresholder(scoring.threshold)
    components = create(detector).components  # names Detail.component's values
    multi = len(series) > 1 or columns.several  # several columns: named, however many are left
    # Every output is known once the series are: checked against the input and each other
    # before any is written, and all written to temporary files renamed at the end, so a run
    # that fails (a full disk, a folder in the way) leaves what was there before untouched.
    csvs = [_numbered(out, i) for i in range(len(series))] if out is not None else []
    plots = [_numbered(plot, i) for i in range(len(series))] if plot is not None else []
    index = out.with_name(f"{out.stem}_index.csv") if out is not None and multi else None
    _check_outputs(
        input,
        [
            *((c, "--out") for c in csvs),
            *((p, "--plot") for p in plots),
            *([(index, "--out")] if index is not None else []),
        ],
    )
    remote: list[Any] | None = None
    if scoring.executor == "ray":
        remote = _score_on_ray(None if read_here else input, series, scoring, columns)
        _warn([note for r in remote for note in r.notes])
        series = [_Scored(r.name, r.scored.ts, r.scored.values) for r in remote]
    elif counter:
        series = [_as_rate(s) for s in series]
    staged = Staged()
    try:
        for i, s in enumerate(series):
            if remote is not None:
                # Scored by a worker with the same detector, counter handling and threshold.
                sc = remote[i].scored
                detail = Detail(sc.score, sc.expected, sc.lower, sc.upper, sc.component)
            else:
                det = create(detector)
                detail = det.score_detail(s.values, s.ts)
            if counter and remote is None:
                # Rows without a rate (the first, missing values) have nothing to judge.
                detail = replace(detail, score=np.where(np.isnan(s.values), 0.0, detail.score))
            flags = thresholder.flags(detail.score)
            windows = thresholder.windows(s.ts, detail.score)
            if csvs:
                part = staged.part(csvs[i], f"({count_of(len(s.ts), 'row')})")
                with writing(csvs[i]), part.open("w", encoding="utf-8", newline="") as fh:
                    _write_csv(fh, s.ts, s.values, detail.score, flags)
                if multi:
                    staged.said[-1] += f": {s.title}"
            else:
                buf = io.StringIO()
                if multi:
                    buf.write(f"# series: {_one_line(s.title)}\n")
                _write_csv(buf, s.ts, s.values, detail.score, flags)
                if multi and i < len(series) - 1:
                    buf.write("\n")
                to_stdout(buf.getvalue())
            _summary(s.title, detector, s.values, detail, windows, components)
            if plots:
                from relia.plot import plot_series

                part = staged.part(plots[i])
                try:
                    plot_series(
                        part, s.ts, s.values, detail, flags,
                        title=f"{s.title} — {detector}", windows=windows, components=components,
                    )  # fmt: skip
                except DataError as exc:  # it names the temporary file: name the plot
                    raise DataError(exc.message, where=str(plots[i])) from None
        if index is not None:
            import polars as pl

            # Which numbered file holds which series (file names relative to the index).
            titles = pl.DataFrame(
                {"file": [p.name for p in csvs], "series": [x.title for x in series]}
            )
            part = staged.part(index, "(which file holds which series)")
            with writing(index):
                titles.write_csv(part)
        staged.commit()
    finally:
        staged.discard()
    for line in staged.said:
        err_console.print(line, markup=False)


def _check_outputs(input: Path | None, targets: list[tuple[Path, str]]) -> None:
    """Refuse, before any work, an output that is the input, two outputs that are one file (a
    numbered output and the plot, ``OUT_index.csv`` and an input), or a place no file can go.
    ``targets``: each output with the option that names it, which the message names."""
    seen: dict[Path, str] = {}
    for target, option in targets:
        if input is not None and not _is_stdin(input) and same_file(target, input):
            raise DataError(f"{target} is the input; write elsewhere", where=option)
        key = target.resolve()
        if key in seen:
            first = seen[key]
            clash = "would be written twice" if first == option else f"is also the {first} file"
            raise DataError(f"{target} {clash}", where=option)
        seen[key] = option
        check_output_place(target, "cannot write")


def _as_rate(s: _Scored) -> _Scored:
    """The series' rate per second, one row per row (see ``relia.detect.preprocess``)."""
    from relia.detect.preprocess import counter_to_rate

    _, rate = counter_to_rate(s.ts, s.values)
    return _Scored(f"{s.title} (rate per second)", s.ts, rate)


def _score_on_ray(
    input: Path | None, series: list[_Scored], scoring: _Scoring, columns: _Columns
) -> list[Any]:
    """Score a file or already read series on Ray workers; results with per-point arrays."""
    from relia.engine.batch import SeriesArrays, SeriesFile, SeriesInput, detect_many

    inputs: list[SeriesInput] = (
        [SeriesFile(input, columns.time_col, columns.value_col)]
        if input is not None
        else [SeriesArrays(s.title, s.ts, s.values) for s in series]
    )
    return detect_many(
        inputs, scoring.detector, threshold=scoring.threshold, counter=scoring.counter,
        executor="ray", workers=scoring.workers, address=scoring.address, return_scores=True,
    )  # fmt: skip


def _warn(notes: Sequence[str]) -> None:
    """What an input reader accepted but noted, one ``relia: warning:`` line each on stderr."""
    for note in notes:
        err_console.print(f"relia: warning: {note}", markup=False, soft_wrap=True)


def _detect_folder(
    folder: Path, out: Path | None, plot: Path | None, scoring: _Scoring, columns: _Columns
) -> None:
    """``relia detect FOLDER``: every CSV/Parquet file in it is one series."""
    from relia.engine.batch import SeriesFile, SeriesInput, detect_many, folder_files

    if plot is not None:
        raise DataError("draws one series; not with a folder INPUT", where="--plot")
    files = folder_files(folder)
    if not files:
        raise DataError("no *.csv or *.parquet files in this folder", where=str(folder))
    created: list[Path] = []
    if out is not None:
        if _exists(out) and not out.is_dir():
            raise DataError("with a folder INPUT, --out must be a directory", where=str(out))
        if _exists(out) and out.resolve() == folder.resolve():
            raise DataError(
                "would overwrite the input files; choose another directory", where=str(out)
            )
        by_stem: dict[str, Path] = {}
        for f in files:
            other = by_stem.setdefault(f.stem, f)
            if other is not f:
                raise DataError(
                    f"{other.name} and {f.name} would both be written to {f.stem}.csv",
                    where=str(folder),
                )
        if not _exists(out):
            # The folders this run makes, deepest first: taken away again if it fails.
            created = _make_dirs(out)
    inputs: list[SeriesInput] = [SeriesFile(f, columns.time_col, columns.value_col) for f in files]
    t0 = time.perf_counter()
    try:
        with _progress_bar(len(inputs)) as progress:
            results = detect_many(
                inputs, scoring.detector, threshold=scoring.threshold, counter=scoring.counter,
                executor="ray" if scoring.executor == "ray" else "local",
                workers=scoring.workers, address=scoring.address, out_dir=out, progress=progress,
            )  # fmt: skip
    except BaseException:
        _remove_dirs(created)
        raise
    elapsed = time.perf_counter() - t0
    if out is None:
        sys.stdout.write("series,points,anomalous_points,windows,max_score\n")
        for r in results:
            name = r.name.replace('"', '""')
            sys.stdout.write(
                f'"{name}",{r.points},{r.anomalous_points},{len(r.windows)},{r.max_score:.6f}\n'
            )
        sys.stdout.flush()
    else:
        err_console.print(f"wrote {len(results)} files to {out}", markup=False)
    _warn([note for r in results for note in r.notes])
    _folder_summary(results, scoring.detector, scoring.executor, elapsed)


@contextlib.contextmanager
def _progress_bar(total: int) -> Iterator[Callable[[int, int], None] | None]:
    """A progress bar on stderr while many inputs are scored (only on a terminal)."""
    if total < 2 or not err_console.is_terminal:
        yield None
        return
    from rich.progress import Progress

    with Progress(console=err_console, transient=True) as bar:
        task = bar.add_task("scoring", total=total)

        def update(done: int, _total: int) -> None:
            bar.update(task, completed=done)

        yield update


def _folder_summary(results: list[Any], detector: str, executor: str, elapsed: float) -> None:
    """The per-series table on stderr (first 100 rows) and a totals line."""
    table = Table(show_edge=False, header_style="bold")
    for col in ("series", "points", "anomalous points", "windows", "max score"):
        table.add_column(col, justify="left" if col == "series" else "right")
    for r in results[:100]:
        table.add_row(
            r.name, f"{r.points:,}", f"{r.anomalous_points:,}", str(len(r.windows)),
            f"{r.max_score:.3f}",
        )  # fmt: skip
    err_console.print(table)
    if len(results) > 100:
        err_console.print(f"… and {len(results) - 100} more series", markup=False)
    points = sum(r.points for r in results)
    flagged = sum(r.anomalous_points for r in results)
    windows = sum(len(r.windows) for r in results)
    err_console.print(
        f"{len(results)} series, {points:,} points: {flagged:,} anomalous points in {windows:,} "
        f"windows by {detector} ({executor} executor, {elapsed:.1f} s)",
        markup=False,
    )


#: The most points per series ``relia detect --prometheus`` reads (about 91 requests of 11,000).
MAX_PROMETHEUS_POINTS = 1_000_000

#: How long ``relia detect --prometheus`` waits for each answer by default (``--timeout``).
DEFAULT_PROMETHEUS_TIMEOUT_S = 10.0


def _parse_timeout(timeout: str | None, prometheus: bool) -> float:
    """``--timeout`` in seconds; refused without ``--prometheus``, whose requests it bounds."""
    from relia.config import parse_duration

    if timeout is None:
        return DEFAULT_PROMETHEUS_TIMEOUT_S
    if not prometheus:
        raise DataError("bounds the requests to Prometheus; needs --prometheus", where="--timeout")
    try:
        return parse_duration(timeout)
    except ValueError as exc:
        raise DataError(str(exc), where="--timeout") from None


def _from_prometheus(
    url: str,
    query: str | None,
    start: str,
    end: str,
    step: str,
    timeout_s: float = DEFAULT_PROMETHEUS_TIMEOUT_S,
) -> list[_Scored]:
    from relia.config import parse_duration
    from relia.signals import describe, series_key
    from relia.sources.prometheus import PrometheusClient, QueryTimeout
    from relia.timeparse import parse_time

    if not query:
        raise DataError("--prometheus needs --query 'PROMQL'")
    now = int(time.time() * 1000)
    try:
        start_ms = parse_time(start, now_ms=now)
    except ValueError as exc:
        raise DataError(str(exc), where="--start") from None
    try:
        end_ms = parse_time(end, now_ms=now)
    except ValueError as exc:
        raise DataError(str(exc), where="--end") from None
    try:
        step_s = parse_duration(step)
    except ValueError as exc:
        raise DataError(str(exc), where="--step") from None
    if end_ms <= start_ms:
        raise DataError("--end must be after --start")
    points = (end_ms - start_ms) // max(1, round(step_s * 1000)) + 1
    if points > MAX_PROMETHEUS_POINTS:
        # Each request reads 11,000 points: a range of years at 15s was thousands of requests.
        least_step = math.ceil((end_ms - start_ms) / 1000 / (MAX_PROMETHEUS_POINTS - 1))
        raise DataError(
            f"--start to --end at --step {step} is {points:,} points per series, more than "
            f"{MAX_PROMETHEUS_POINTS:,}: shorten the range or give --step {least_step}s or more"
        )
    with PrometheusClient(url, timeout=timeout_s) as client:
        try:
            result = client.query_range(query, start_ms, end_ms, step_s)
        except QueryTimeout as exc:
            # Say which flag gives it longer: a heavy query may need minutes.
            raise DataError(f"{exc} (--timeout)") from None
    if not result:
        raise DataError(f"query returned no series: {query}", where=shown_url(url))
    out = []
    for rs in result:
        labels = dict(rs.labels)
        named = "__name__" in labels
        name = labels.pop("__name__", query)
        # A series without a name is titled by the query, written as it is, not quoted as a
        # metric name that is not a legacy one would be.
        title = describe(series_key(name, labels), quote_name=named)
        out.append(_Scored(title, rs.ts, rs.values))
    return out


def _summary(
    title: str,
    detector: str,
    values: np.ndarray,
    detail: Any,
    windows: list[Any],
    components: Sequence[str],
) -> None:
    from relia.detect.base import component_name
    from relia.timeparse import format_ms

    n_flagged = sum(w.end_index - w.start_index + 1 for w in windows)
    err_console.print(
        f"{title}: {count_of(len(values), 'point')}, {count_of(len(windows), 'anomalous window')} "
        f"({count_of(n_flagged, 'point')}) by {detector}",
        markup=False,
    )
    if not windows:
        return
    table = Table(show_edge=False, header_style="bold")
    cols = ("start (UTC)", "end (UTC)", "points", "peak score", "value", "expected", "band", "by")
    for col in cols:
        table.add_column(col)
    for w in windows[:50]:
        p = w.peak_index
        band = (
            f"{detail.lower[p]:.4g} – {detail.upper[p]:.4g}"
            if np.isfinite(detail.lower[p])
            else "–"
        )
        table.add_row(
            format_ms(w.start_ts), format_ms(w.end_ts), str(w.end_index - w.start_index + 1),
            f"{w.peak_score:.3f}", f"{values[p]:.4g}", f"{detail.expected[p]:.4g}", band,
            component_name(components, int(detail.component[p])),
        )  # fmt: skip
    err_console.print(table)
    if len(windows) > 50:
        err_console.print(f"… and {len(windows) - 50} more windows", markup=False)


@app.command()
@_user_errors
def detectors() -> None:
    """List the registered detectors."""
    from relia.detect import available, describe

    width = max(len(n) for n in available())
    for name in available():
        typer.echo(f"{name.ljust(width)}  {describe(name).summary}")


def _config_line(file: Path | None, loc: tuple[str | int, ...]) -> str:
    """``FILE:LINE`` of ``loc`` in the config (``FILE`` alone when it cannot be found)."""
    import yaml

    from relia.config import _line_of

    if file is None:
        return "<defaults>"
    try:
        root = yaml.compose(file.read_text(encoding="utf-8"), Loader=yaml.SafeLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError):
        root = None  # load_config read it already; a line number is all this is for
    line = _line_of(root, loc) if root is not None else None
    return f"{file}:{line}" if line else str(file)


def _check_sloth_windows(windows: Path | None, file: Path | None) -> None:
    """``slos.sloth_windows`` must be a file: said at the config's line (the spec loader's
    message names the windows file alone, and calls a folder a place for spec files)."""
    if windows is None or windows.is_file():
        return
    if windows.is_dir():
        why = "is a directory, not a Sloth AlertWindows file"
    elif windows.exists():
        why = "is not a regular file"
    else:
        rel = "" if windows.is_absolute() else f" (relative to the working directory {Path.cwd()})"
        why = f"no such file{rel}"
    where = _config_line(file, ("slos", "sloth_windows"))
    raise ConfigError(f"slos.sloth_windows: {windows}: {why}", where=where)


def _check_detector(name: str, params: dict[str, Any], file: Path | None) -> None:
    """Build the configured detector as ``relia up`` does: an unknown name or a parameter it
    refuses is a ConfigError at the config's line (``detector.name``, ``detector.params.X``)."""
    import re

    from relia.detect import create
    from relia.errors import DetectorError

    try:
        create(name, **params)
    except DetectorError as exc:
        bad = re.match(r"invalid parameter '([^']*)'", str(exc))
        # An ensemble names a member's field by its place: members.0.params.window.
        field = tuple(int(p) if p.isdigit() else p for p in bad.group(1).split(".")) if bad else ()
        loc: tuple[str | int, ...] = ("detector", "params", *field) if bad else ("detector", "name")
        where = _config_line(file, loc)
        raise ConfigError(f"{'.'.join(map(str, loc))}: {exc}", where=where) from None


@config_app.command("check")
@_user_errors
def config_check(
    file: Annotated[Path, typer.Argument(help="path to relia.yaml")],
) -> None:
    """Validate a relia.yaml; every problem is listed as file:line: field: message."""
    from relia.config import api_warnings, check_slo_files, load_config, log_file_warnings
    from relia.slo.loader import load_alerting_slos

    cfg = load_config(file)
    check_slo_files(cfg, file)
    for warning in [*log_file_warnings(cfg, file), *api_warnings(cfg, file)]:
        typer.echo(warning, err=True)
    _check_sloth_windows(cfg.slos.sloth_windows, file)
    _check_detector(cfg.detector.name, cfg.detector.params, file)
    # The SLO spec files too, as `relia up` loads them: it would refuse to start on them.
    slos = []
    if cfg.slos.files:
        try:
            slos = load_alerting_slos(cfg.slos.files, sloth_windows=cfg.slos.sloth_windows)
        except ConfigError as exc:
            windows = cfg.slos.sloth_windows
            if windows is None:
                raise
            # A problem of the windows file names it alone: say where the config names it.
            listed = f"{_config_line(file, ('slos', 'sloth_windows'))}: slos.sloth_windows: "
            lines = [
                listed + line if line.startswith(f"{windows}:") else line
                for line in str(exc).splitlines()
            ]
            raise ConfigError("\n".join(lines)) from None
    counted = f"{count_of(len(slos), 'SLO')}, " if slos else ""
    typer.echo(
        f"{file}: ok ({count_of(len(cfg.scrape), 'scrape target')}, "
        f"{count_of(len(cfg.prometheus), 'Prometheus source')}, "
        f"{counted}host metrics {'on' if cfg.host.enabled else 'off'}, "
        f"detector {cfg.detector.name})"
    )


@app.command()
@_user_errors
def up(
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            "-c",
            help="relia.yaml (default: ./relia.yaml if present, else built-in defaults)",
        ),
    ] = None,
    port: Annotated[int | None, typer.Option("--port", help="API port (overrides config)")] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="state directory (overrides config)")
    ] = None,
    executor: Annotated[
        str | None,
        typer.Option(
            "--executor",
            help="where the detectors run: local or ray (overrides engine.executor)",
        ),
    ] = None,
    ray_address: Annotated[
        str | None,
        typer.Option(
            "--ray-address",
            help="Ray cluster to join, e.g. auto or head:6379 (ray:// needs pip install "
            "'ray[client]'; implies --executor ray; overrides engine.ray_address)",
        ),
    ] = None,
) -> None:
    """Run the engine, API and dashboard: watch this machine (and configured targets)."""
    from pydantic import ValidationError

    from relia.config import api_warnings, check_slo_files, load_config, log_file_warnings
    from relia.engine.up import run_up

    if config is None and Path("relia.yaml").exists():
        config = Path("relia.yaml")
    cfg = load_config(config)
    from relia._logsetup import configure_logging

    configure_logging(cfg.log_level)
    check_slo_files(cfg, config)
    # What `relia config check` warns about, said once at start too (with the file's line):
    # the tail's own "waiting for" log line does not say where the path was configured.
    for warning in [*log_file_warnings(cfg, config), *api_warnings(cfg, config)]:
        typer.echo(warning, err=True)
    _check_sloth_windows(cfg.slos.sloth_windows, config)
    # As `relia config check` does, before the store is opened (and, for DuckDB, created).
    _check_detector(cfg.detector.name, cfg.detector.params, config)
    option = ""  # the one being applied, named in its error
    try:
        if port is not None:
            option = "--port"
            cfg.api.port = port
        if data_dir is not None:
            option = "--data-dir"
            cfg.data_dir = data_dir
        if executor is not None:
            option = "--executor"
            if executor not in ("local", "ray"):
                raise ConfigError(f"expected local or ray, got {executor!r}", where=option)
            cfg.engine.executor = "ray" if executor == "ray" else "local"
        if ray_address is not None:
            option = "--ray-address"
            if executor == "local":
                raise ConfigError("needs --executor ray, not local", where="--ray-address")
            cfg.engine.executor = "ray"
            cfg.engine.ray_address = ray_address
    except ValidationError as exc:
        # Not pydantic's first line ("1 validation error for ApiConfig"): what is wrong, and where.
        msg = str(exc.errors()[0]["msg"]).removeprefix("Value error, ")
        raise ConfigError(msg, where=option or None) from None

    def ready(url: str) -> None:
        err_console.print(f"relia is up: dashboard and API at {url} (Ctrl-C stops)", markup=False)

    code = run_up(cfg, ready=ready)
    raise typer.Exit(code)


# After every command above and in the groups is registered.
unwrap_help(app)


def main() -> None:
    """Console-script entry point."""
    import signal

    def _stop(signum: int, frame: object) -> None:
        # SIGTERM's default kills the process where it stands; as an exit, every `with` and
        # `finally` on the way out runs, so a stopped command takes away what it made (temporary
        # folders, half-written outputs) as it does on Ctrl-C. `relia up` installs its own.
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, _stop)
    _closed_pipe_exits_0_in_rich()
    app()


def _closed_pipe_exits_0_in_rich() -> None:
    """Rich ends the process with exit code 1 when stdout is a closed pipe (``relia --help |
    head -1``); Typer prints help and usage through its own rich Console, outside the commands'
    ``user_errors``. In this process (the console script, not a library import) a closed pipe
    is how a reader says it has seen enough: exit 0, as every command does."""
    from rich.console import Console

    def on_broken_pipe(self: Console) -> None:
        self.quiet = True
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
        raise SystemExit(0)

    Console.on_broken_pipe = on_broken_pipe  # type: ignore[method-assign]
