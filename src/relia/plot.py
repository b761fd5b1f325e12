"""Pictures of a series with its anomalies: PNG, or a self-contained HTML page (inline SVG)."""

from __future__ import annotations

import html
import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import numpy.typing as npt

from relia.detect.base import Detail, component_name
from relia.detect.threshold import AnomalyWindow
from relia.errors import DataError
from relia.timeparse import format_ms

__all__ = ["html_page", "plot_series"]


def _figure(
    ts: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
    detail: Detail,
    flags: npt.NDArray[np.bool_],
    title: str,
) -> object:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    times = ts.astype("datetime64[ms]")
    fig, (ax, ax_score) = plt.subplots(
        2, 1, figsize=(13, 5.5), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    ax.fill_between(
        times, detail.lower, detail.upper, color="#9ecae1", alpha=0.45, lw=0, label="expected band"
    )
    ax.plot(times, detail.expected, color="#3182bd", lw=0.8, alpha=0.8, label="expected")
    ax.plot(times, values, color="#222222", lw=0.9, label="value")
    if flags.any():
        ax.scatter(times[flags], values[flags], color="#d62728", s=14, zorder=3, label="anomaly")
    finite = values[np.isfinite(values)]
    if len(finite):
        # Keep the axis on the data: a band that balloons after a jump must not squash the line.
        lo, hi = float(finite.min()), float(finite.max())
        # A share of each end, not of hi - lo: near DBL_MAX that difference, or hi + pad,
        # overflows to inf, which matplotlib refuses as a limit. The limits stay within an
        # eighth of DBL_MAX: the axis's span and its tick locator's steps overflowed too.
        pad = 0.08 * hi - 0.08 * lo if hi > lo else max(1.0, abs(hi) * 0.1)
        edge = float(np.finfo(np.float64).max) / 8
        bottom, top = max(lo - pad, -edge), min(hi + pad, edge)
        if bottom < top:
            ax.set_ylim(bottom, top)
    # The title is a file name or a query, never TeX: with math parsing on, text between two
    # "$" (a Grafana-style `$job`) was drawn as math, dropping the dollars, or crashed the plot.
    ax.set_title(title, loc="left", fontsize=11, parse_math=False)
    ax.legend(loc="upper left", fontsize=8, ncol=4, frameon=False)
    ax.grid(alpha=0.25)
    ax_score.plot(times, detail.score, color="#756bb1", lw=0.8)
    ax_score.set_ylim(0, 1.02)
    ax_score.set_ylabel("score", fontsize=8)
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
