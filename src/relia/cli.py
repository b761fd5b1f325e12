"""The ``relia`` command line.

Every user error (bad file, bad column, unreachable server, invalid config) is printed as one line
on stderr and exits with code 2; nothing else is printed for it.
"""

from __future__ import annotations

import io
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
import typer
from rich.table import Table

from relia._cliutil import err_console, user_errors
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


@app.command()
@_user_errors
def detect(
    input: Annotated[
        Path | None, typer.Argument(help="CSV or Parquet file with a time and a value column.")
    ] = None,
    detector: Annotated[
        str, typer.Option("--detector", "-d", help="registered detector")
    ] = "default",
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="write the scored CSV here (else stdout)")
    ] = None,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="draw the series and anomalies (.png or .html)")
    ] = None,
    time_col: Annotated[
        str | None, typer.Option("--time-col", help="name of the time column")
    ] = None,
    value_col: Annotated[
        str | None, typer.Option("--value-col", help="name of the value column")
    ] = None,
    threshold: Annotated[
        float, typer.Option("--threshold", help="score at or above which a point is anomalous")
    ] = 0.5,
    prometheus: Annotated[
        str | None, typer.Option("--prometheus", help="read from this Prometheus server's HTTP API")
    ] = None,
    query: Annotated[str | None, typer.Option("--query", help="PromQL (with --prometheus)")] = None,
    start: Annotated[str, typer.Option("--start", help="ISO-8601, epoch s, or now-1h")] = "now-1h",
    end: Annotated[str, typer.Option("--end", help="ISO-8601, epoch s, or now")] = "now",
    step: Annotated[str, typer.Option("--step", help="resolution, e.g. 15s or 1m")] = "15s",
    counter: Annotated[
        bool,
        typer.Option(
            "--counter",
            help="the value is a counter (it only grows, and restarts from 0): score its rate "
            "per second, reset-aware like PromQL rate(); the output's value column is that rate "
            "(NaN and score 0 on the first row)",
        ),
    ] = False,
) -> None:
    """Score a series for anomalies: CSV of timestamp,value,anomaly_score,is_anomaly.

    Reads INPUT (CSV or Parquet), or a PromQL query from Prometheus (one output per returned
    series; with --out, series after the first go to OUT_2.csv, OUT_3.csv, ...).
    """
    from relia.detect import Thresholder, create

    if not 0 < threshold <= 1:
        raise DataError(f"must be in (0, 1], got {threshold}", where="--threshold")
    create(detector)  # fail on an unknown name before any I/O
    if plot is not None and plot.suffix.lower() not in (".png", ".html", ".htm"):
        raise DataError(f"plot must end in .png or .html, got {plot.name!r}", where="--plot")
    if (input is None) == (prometheus is None):
        raise DataError("give either an INPUT file or --prometheus URL with --query")
    series: list[_Scored]
    if input is not None:
        from relia.sources.files import read_series

        frame = read_series(input, time_col=time_col, value_col=value_col)
        series = [_Scored(str(input), frame.ts, frame.values)]
    else:
        series = _from_prometheus(str(prometheus), query, start, end, step)

    thresholder = Thresholder(threshold)
    multi = len(series) > 1
    if counter:
        series = [_as_rate(s) for s in series]
    for i, s in enumerate(series):
        det = create(detector)
        detail = det.score_detail(s.values, s.ts)
        if counter:
            # Rows without a rate (the first, missing values) have nothing to judge.
            detail = replace(detail, score=np.where(np.isnan(s.values), 0.0, detail.score))
        flags = thresholder.flags(detail.score)
        windows = thresholder.windows(s.ts, detail.score)
        if out is not None:
            target = _numbered(out, i)
            try:
                with target.open("w", encoding="utf-8", newline="") as fh:
                    _write_csv(fh, s.ts, s.values, detail.score, flags)
            except OSError as exc:
                raise DataError(f"cannot write: {exc.strerror}", where=str(target)) from None
            err_console.print(f"wrote {target} ({len(s.ts)} rows)", markup=False)
        else:
            if multi:
                sys.stdout.write(f"# series: {s.title}\n")
            buf = io.StringIO()
            _write_csv(buf, s.ts, s.values, detail.score, flags)
            sys.stdout.write(buf.getvalue())
            if multi and i < len(series) - 1:
                sys.stdout.write("\n")
            sys.stdout.flush()
        _summary(s.title, detector, s.values, detail, windows)
        if plot is not None:
            from relia.plot import plot_series

            target_plot = _numbered(plot, i)
            plot_series(
                target_plot, s.ts, s.values, detail, flags,
                title=f"{s.title} — {detector}", windows=windows,
            )  # fmt: skip
            err_console.print(f"wrote {target_plot}", markup=False)


def _as_rate(s: _Scored) -> _Scored:
    """The series' rate per second, one row per row (see ``relia.detect.preprocess``)."""
    from relia.detect.preprocess import counter_to_rate

    _, rate = counter_to_rate(s.ts, s.values)
    return _Scored(f"{s.title} (rate per second)", s.ts, rate)


def _from_prometheus(url: str, query: str | None, start: str, end: str, step: str) -> list[_Scored]:
    from relia.config import parse_duration
    from relia.signals import describe, series_key
    from relia.sources.prometheus import PrometheusClient
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
    result = PrometheusClient(url).query_range(query, start_ms, end_ms, step_s)
    if not result:
        raise DataError(f"query returned no series: {query}", where=url)
    out = []
    for rs in result:
        labels = dict(rs.labels)
        name = labels.pop("__name__", query)
        out.append(_Scored(describe(series_key(name, labels)), rs.ts, rs.values))
    return out


def _summary(
    title: str, detector: str, values: np.ndarray, detail: Any, windows: list[Any]
) -> None:
    from relia.timeparse import format_ms

    n_flagged = sum(w.end_index - w.start_index + 1 for w in windows)
    err_console.print(
        f"{title}: {len(values)} points, {len(windows)} anomalous windows "
        f"({n_flagged} points) by {detector}",
        markup=False,
    )
    if not windows:
        return
    table = Table(show_edge=False, header_style="bold")
    for col in ("start (UTC)", "end (UTC)", "points", "peak score", "value", "expected", "band"):
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


@config_app.command("check")
@_user_errors
def config_check(
    file: Annotated[Path, typer.Argument(help="path to relia.yaml")],
) -> None:
    """Validate a relia.yaml; every problem is listed as file:line: field: message."""
    from relia.config import load_config

    cfg = load_config(file)
    typer.echo(
        f"{file}: ok ({len(cfg.scrape)} scrape targets, {len(cfg.prometheus)} Prometheus "
        f"sources, host metrics {'on' if cfg.host.enabled else 'off'}, "
        f"detector {cfg.detector.name})"
    )


@app.command()
@_user_errors
def up(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="relia.yaml (default: built-in defaults)")
    ] = None,
    port: Annotated[int | None, typer.Option("--port", help="API port (overrides config)")] = None,
    data_dir: Annotated[
        Path | None, typer.Option("--data-dir", help="state directory (overrides config)")
    ] = None,
) -> None:
    """Run the engine, API and dashboard: watch this machine (and configured targets)."""
    from relia.config import load_config
    from relia.engine.up import run_up

    if config is None and Path("relia.yaml").exists():
        config = Path("relia.yaml")
    cfg = load_config(config)
    try:
        if port is not None:
            cfg.api.port = port
        if data_dir is not None:
            cfg.data_dir = data_dir
    except ValueError as exc:
        raise ConfigError(str(exc).splitlines()[0]) from None

    def ready(url: str) -> None:
        err_console.print(f"relia is up: dashboard and API at {url} (Ctrl-C stops)", markup=False)

    code = run_up(cfg, ready=ready)
    raise typer.Exit(code)


def main() -> None:
    """Console-script entry point."""
    app()
