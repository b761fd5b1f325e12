"""Pictures of a series with its anomalies: PNG, or a self-contained HTML page (inline SVG)."""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from relia.detect.base import Detail, component_name
from relia.detect.threshold import AnomalyWindow
from relia.errors import DataError
from relia.timeparse import format_ms

__all__ = ["html_page", "plot_series"]


#: A pause longer than this many median steps lifts the pen, as on the dashboard.
GAP_STEPS = 5
#: A long series is drawn as its envelope over this many time columns, each no wider than a
#: pixel of the PNG (the data span about 1,220 of its 1,430): a spike survives, and the
#: self-contained HTML page stays small (2M points drew a 105 MB band).
_COLUMNS = 1300
#: Rows of the value axis no taller than a pixel of the PNG (about 360): anomaly markers are
#: merged only within one column and row, where they would cover one another anyway.
_ROWS = 400

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]


def _run_starts(ts: I64) -> Mask:
    """Where a new stretch of line starts: after a pause of more than GAP_STEPS median steps
    (the median as the dashboard takes it), or where time goes back (a clock stepping back)."""
    starts = np.zeros(len(ts), dtype=np.bool_)
    if len(ts) < 2:
        return starts
    steps = np.diff(ts)
    k = len(steps) // 2
    median = int(np.partition(steps, k)[k])
    starts[1:] = steps < 0
    if median > 0:
        starts[1:] |= steps > GAP_STEPS * median
    return starts


def _columns(ts: I64, run_starts: Mask) -> tuple[I64, Mask] | None:
    """The first index of each envelope column and whether it starts a stretch of line; None
    when the series is short enough to draw every point. A column never spans a break: within
    a stretch time only grows, so each (stretch, column) is one run of indices."""
    if len(ts) <= 4 * _COLUMNS:
        return None
    t0 = int(ts.min())
    span = max(int(ts.max()) - t0, 1)
    column = np.minimum(((ts - t0) * (_COLUMNS / span)).astype(np.int64), _COLUMNS - 1)
    key = np.cumsum(run_starts) * _COLUMNS + column
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    return starts, run_starts[starts]


def _envelope(ts: I64, y: F64, starts: I64, first: Mask) -> tuple[I64, F64, Mask]:
    """A line reduced to the lowest and highest value of each column, in time order (one
    vertex where they are one point, NaN where the column has no value); with the vertices
    that start a stretch."""
    n = len(y)
    index = np.arange(n)
    finite = np.isfinite(y)
    sizes = np.diff(np.r_[starts, n])
    lo = np.minimum.reduceat(np.where(finite, y, np.inf), starts)
    hi = np.maximum.reduceat(np.where(finite, y, -np.inf), starts)
    at_lo = np.minimum.reduceat(np.where(finite & (y == np.repeat(lo, sizes)), index, n), starts)
    at_hi = np.minimum.reduceat(np.where(finite & (y == np.repeat(hi, sizes)), index, n), starts)
    has = at_lo < n
    a = np.where(has, np.minimum(at_lo, at_hi), starts)
    b = np.where(has, np.maximum(at_lo, at_hi), starts)
    pick = np.stack([a, b], axis=1).ravel()
    keep = np.stack([np.ones(len(starts), np.bool_), has & (b != a)], axis=1).ravel()
    values = np.where(np.repeat(has, 2), y[pick], np.nan)
    starting = np.stack([first, np.zeros(len(starts), np.bool_)], axis=1).ravel()
    return ts[pick][keep], values[keep], starting[keep]


def _band_envelope(
    ts: I64, lower: F64, upper: F64, starts: I64, first: Mask
) -> tuple[I64, F64, F64, Mask]:
    """The band reduced to the lowest lower and highest upper bound of each column, held from
    its first time to its last (NaN where a column lacks either)."""
    n = len(ts)
    lo = np.minimum.reduceat(np.where(np.isfinite(lower), lower, np.inf), starts)
    hi = np.maximum.reduceat(np.where(np.isfinite(upper), upper, -np.inf), starts)
    has = np.isfinite(lo) & np.isfinite(hi)
    ends = np.r_[starts[1:], n] - 1
    pick = np.stack([starts, ends], axis=1).ravel()
    keep = np.stack([np.ones(len(starts), np.bool_), ends != starts], axis=1).ravel()
    lo2 = np.repeat(np.where(has, lo, np.nan), 2)[keep]
    hi2 = np.repeat(np.where(has, hi, np.nan), 2)[keep]
    starting = np.stack([first, np.zeros(len(starts), np.bool_)], axis=1).ravel()[keep]
    return ts[pick][keep], lo2, hi2, starting


def _broken(x: I64, starting: Mask, *ys: F64) -> tuple[npt.NDArray[np.datetime64], list[F64]]:
    """The points with a NaN put before each that starts a stretch, so no line joins them."""
    at = np.flatnonzero(starting)
    times = np.insert(x, at, x[at]).astype("datetime64[ms]")
    return times, [np.insert(y, at, np.nan) for y in ys]


def _line(ax: Any, x: npt.NDArray[np.datetime64], y: F64, **style: Any) -> None:
    """``y`` as a line, and a dot at each point with no drawn neighbour: matplotlib breaks a
    line at NaN, so a value between two missing ones was not drawn at all."""
    ax.plot(x, y, **style)
    drawn = np.isfinite(y)
    alone = drawn.copy()
    alone[1:] &= ~drawn[:-1]
    alone[:-1] &= ~drawn[1:]
    if alone.any():
        dot = {k: v for k, v in style.items() if k in ("color", "alpha", "zorder")}
        ax.plot(x[alone], y[alone], ls="", marker="o", ms=2.6, mew=0, **dot)


def _marks(
    ts: I64, values: F64, flags: Mask, limits: tuple[float, float] | None
) -> tuple[I64, F64]:
    """The anomalous points to mark. Past ``_COLUMNS`` of them, one marker for those that share
    a cell of the column and row grid (smaller than a pixel): 123,000 markers made 119 MB."""
    at = np.flatnonzero(flags & np.isfinite(values))
    if len(at) <= _COLUMNS or limits is None:
        return ts[at], values[at]
    t0 = int(ts.min())
    span = max(int(ts.max()) - t0, 1)
    column = ((ts[at] - t0) * (_COLUMNS / span)).astype(np.int64)
    bottom, top = limits
    with np.errstate(over="ignore", invalid="ignore"):
        # Halves: near DBL_MAX the difference itself overflows.
        share = (values[at] / 2 - bottom / 2) / (top / 2 - bottom / 2)
    row = np.clip(np.nan_to_num(share * _ROWS), 0, _ROWS).astype(np.int64)
    _, first = np.unique(column * (_ROWS + 1) + row, return_index=True)
    keep = at[np.sort(first)]
    return ts[keep], values[keep]


def _value_limits(values: F64) -> tuple[float, float] | None:
    """The value axis: the data's range and a margin (None without a finite value)."""
    finite = values[np.isfinite(values)]
    if not len(finite):
        return None
    # Keep the axis on the data: a band that balloons after a jump must not squash the line.
    lo, hi = float(finite.min()), float(finite.max())
    # A share of each end, not of hi - lo: near DBL_MAX that difference, or hi + pad,
    # overflows to inf, which matplotlib refuses as a limit. The limits stay within an
    # eighth of DBL_MAX: the axis's span and its tick locator's steps overflowed too.
    pad = 0.08 * hi - 0.08 * lo if hi > lo else max(1.0, abs(hi) * 0.1)
    edge = float(np.finfo(np.float64).max) / 8
    bottom, top = max(lo - pad, -edge), min(hi + pad, edge)
    return (bottom, top) if bottom < top else None


def _figure(
    ts: I64,
    values: F64,
    detail: Detail,
    flags: Mask,
    title: str,
) -> object:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    fig, (ax, ax_score) = plt.subplots(
        2, 1, figsize=(13, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    # Lines break where samples pause or time goes back; a long series is drawn as its
    # envelope per column (the anomaly markers stay per point).
    run_starts = _run_starts(ts)
    columns = _columns(ts, run_starts)

    def line(y: F64) -> tuple[npt.NDArray[np.datetime64], F64]:
        if columns is None:
            x, (drawn,) = _broken(ts, run_starts, y)
        else:
            xs, ys, starting = _envelope(ts, y, *columns)
            x, (drawn,) = _broken(xs, starting, ys)
        return x, drawn

    if columns is None:
        band_x, (lower, upper) = _broken(ts, run_starts, detail.lower, detail.upper)
    else:
        xs, lo, hi, starting = _band_envelope(ts, detail.lower, detail.upper, *columns)
        band_x, (lower, upper) = _broken(xs, starting, lo, hi)
    ax.fill_between(band_x, lower, upper, color="#9ecae1", alpha=0.45, lw=0, label="expected band")
    _line(ax, *line(detail.expected), color="#3182bd", lw=0.8, alpha=0.8, label="expected")
    _line(ax, *line(values), color="#222222", lw=0.9, label="value")
    limits = _value_limits(values)
    if flags.any():
        mark_ts, mark_values = _marks(ts, values, flags, limits)
        ax.scatter(
            mark_ts.astype("datetime64[ms]"), mark_values, color="#d62728", s=14, zorder=3,
            label="anomaly",
        )  # fmt: skip
    if limits is not None:
        ax.set_ylim(*limits)
    if len(ts) and ts.min() == ts.max():
        # One time only: a minute either side, not matplotlib's years.
        at = np.datetime64(int(ts[0]), "ms")
        ax.set_xlim(at - np.timedelta64(1, "m"), at + np.timedelta64(1, "m"))
    # The title is a file name or a query, never TeX: with math parsing on, text between two
    # "$" (a Grafana-style `$job`) was drawn as math, dropping the dollars, or crashed the plot.
    ax.set_title(title, loc="left", fontsize=11, parse_math=False)
    ax.legend(loc="upper left", fontsize=8, ncol=4, frameon=False)
    ax.grid(alpha=0.25)
    _line(ax_score, *line(detail.score), color="#756bb1", lw=0.8)
    ax_score.set_ylim(0, 1.02)
    ax_score.set_ylabel("score", fontsize=8)
    ax_score.set_xlabel("time (UTC)", fontsize=8)
    ax_score.grid(alpha=0.25)
    ax_score.xaxis.set_major_formatter(
        mdates.ConciseDateFormatter(ax_score.xaxis.get_major_locator())  # type: ignore[no-untyped-call]
    )
    fig.tight_layout()
    return fig


def plot_series(
    path: str | Path,
    ts: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
    detail: Detail,
    flags: npt.NDArray[np.bool_],
    *,
    title: str,
    windows: list[AnomalyWindow] | None = None,
    components: Sequence[str] = (),
) -> Path:
    """Draw the series, its expected band and its anomalies to ``path`` (.png or .html); the
    HTML page's table names the part of the detector that fired at each window's peak
    (``components``: the detector's component names)."""
    out = Path(path)
    suffix = out.suffix.lower()
    if suffix not in (".png", ".html", ".htm"):
        raise DataError(f"plot must end in .png or .html, got {out.name!r}", where="--plot")
    import matplotlib.pyplot as plt

    # Values near DBL_MAX overflow inside matplotlib's transforms: a warning about its own
    # arithmetic, not about the input, so it is not shown.
    with np.errstate(over="ignore", invalid="ignore"):
        fig = _figure(ts, values, detail, flags, title)
        try:
            if suffix == ".png":
                fig.savefig(out, dpi=110)  # type: ignore[attr-defined]
            else:
                buf = io.StringIO()
                fig.savefig(buf, format="svg")  # type: ignore[attr-defined]
                page = _html_page(title, buf.getvalue(), windows or [], detail, components)
                out.write_text(page, encoding="utf-8")
        except OSError as exc:
            raise DataError(f"cannot write plot: {exc.strerror}", where=str(out)) from None
        except (ValueError, OverflowError) as exc:
            raise DataError(f"cannot draw the plot: {exc}", where=str(out)) from None
        finally:
            plt.close(fig)  # type: ignore[arg-type]
    return out


def html_page(title: str, svg: str, table_title: str, header: Sequence[str], rows: str) -> str:
    """A self-contained HTML page: a title, an inline SVG chart and one table under it.
    ``header`` are the column names (escaped here); ``rows`` is the table's ``<tr>`` markup."""
    svg_body = svg[svg.find("<svg") :]
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>
body{{font-family:system-ui,sans-serif;margin:24px;color:#222}}
svg{{max-width:100%;height:auto}}
table{{border-collapse:collapse;font-size:14px}}
td,th{{border-bottom:1px solid #ddd;padding:4px 12px;text-align:left}}
</style></head><body>
<h2>{html.escape(title)}</h2>
{svg_body}
<h3>{html.escape(table_title)}</h3>
<table><tr>{head}</tr>
{rows}</table>
</body></html>
"""


def _html_page(
    title: str,
    svg: str,
    windows: list[AnomalyWindow],
    detail: Detail,
    components: Sequence[str],
) -> str:
    rows = "".join(
        f"<tr><td>{format_ms(w.start_ts)}</td><td>{format_ms(w.end_ts)}</td>"
        f"<td>{w.end_index - w.start_index + 1}</td><td>{w.peak_score:.3f}</td>"
        f"<td>{html.escape(component_name(components, int(detail.component[w.peak_index])))}"
        "</td></tr>"
        for w in windows
    )
    header = ("start (UTC)", "end (UTC)", "points", "peak score", "by")
    return html_page(title, svg, f"Anomalous windows ({len(windows)})", header, rows)
