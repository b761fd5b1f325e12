"""Showing evaluated SLOs: a rich table, JSON, and a budget burn-down chart (PNG or HTML).

Everything here takes :class:`relia.slo.evaluate.SloStatus` values and does no evaluation of its
own; the chart follows the house style of :mod:`relia.plot`.
"""

from __future__ import annotations

import html
import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from relia.errors import DataError
from relia.plot import html_page
from relia.slo.evaluate import EXHAUSTION_HORIZON_S, AlertStatus, SloStatus
from relia.slo.spec import format_duration
from relia.timeparse import format_ms

__all__ = [
    "alerts_table",
    "format_count",
    "format_span",
    "plot_burn_down",
    "report_json",
    "summary_table",
]


def format_count(x: float) -> str:
    """Events or slices: whole numbers with separators, fractions to 3 significant digits."""
    if not math.isfinite(x):
        return "–"
    if abs(x) >= 100 or float(x).is_integer():
        return f"{x:,.0f}"
    return f"{x:.3g}"


def format_span(seconds: float) -> str:
    """A time span for people: ``3d 4h``, ``5h 12m``, ``45m``, ``30s``; ``never`` for inf."""
    if math.isnan(seconds):
        return "–"
    if math.isinf(seconds):
        return "never"
    s = int(round(seconds))
    days, rest = divmod(s, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d {hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h {minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m"
    return f"{secs}s"


def _pct(x: float, digits: int = 4) -> str:
    return f"{x * 100:.{digits}g}%" if math.isfinite(x) else "–"


def _burn(x: float) -> str:
    return f"{x:.2f}x" if math.isfinite(x) else "–"


def _window_text(st: SloStatus) -> str:
    w = st.slo.window
    period = format_duration(w.period_s)
    if w.rolling:
        return f"{period} rolling"
    return f"{period} from {format_ms(st.window_start_ms)}"


def _exhaustion_text(st: SloStatus) -> str:
    if math.isnan(st.exhaustion_s):
        return "–"
    if st.exhaustion_s == 0:
        return "exhausted"
    if st.exhaustion_s > EXHAUSTION_HORIZON_S:
        return "never"  # at a trickle of errors: centuries away, or past any writable date
    at = st.exhaustion_at_ms
    span = format_span(st.exhaustion_s)
    return f"in {span} ({format_ms(at)})" if at is not None else span


def _alert_name(a: AlertStatus) -> str:
    return f"{a.window.severity}/{a.window.name}"


def summary_table(statuses: Sequence[SloStatus]) -> Table:
    """One row per SLO: objective, SLI, budget (spent of total, remaining), current burn rate,
    when the budget runs out, which alerts fire."""
    at = {st.at_ms for st in statuses}
    when = f" at {format_ms(next(iter(at)))}" if len(at) == 1 else ""
    table = Table(title=f"SLOs{when}", header_style="bold", title_justify="left")
    for col in ("SLO", "objective", "SLI", "window", "budget spent / total", "remaining"):
        table.add_column(col, justify="left" if col in ("SLO", "window") else "right")
    table.add_column("burn (1h)", justify="right")
    table.add_column("budget runs out")
    table.add_column("firing")
    for st in statuses:
        firing = ", ".join(
            _alert_name(a) + (" (disabled)" if a.disabled else "") for a in st.firing
        )
        low = [a for a in st.alerts if a.low_traffic]
        if low:
            parts = [firing] if firing else []
            firing = ", ".join([*parts, f"{len(low)} held (low traffic)"])
        remaining = st.remaining_ratio
        table.add_row(
            st.slo.id,
            f"{st.slo.objective:g}%",
            _pct(st.sli, 6),
            _window_text(st),
            f"{format_count(st.budget_spent)} / {format_count(st.budget_total)} {st.unit}",
            f"{remaining * 100:.1f}%" if math.isfinite(remaining) else "no data",
            _burn(st.current_burn),
            _exhaustion_text(st),
            firing or "–",
        )
    return table


def alerts_table(statuses: Sequence[SloStatus]) -> Table:
    """One row per SLO and burn-rate alert: burn rate over the long and short window against
    the alert's threshold, the long window's events, and its state."""
    table = Table(title="Burn-rate alerts", header_style="bold", title_justify="left")
    for col in ("SLO", "alert", "long", "burn", "short", "burn", "threshold", "events", "state"):
        table.add_column(col, justify="right" if col in ("burn", "threshold", "events") else "left")
    for st in statuses:
        for a in st.alerts:
            w = a.window
            if a.firing:
                state = "FIRING"
            elif a.low_traffic:
                state = f"held: < {st.slo.min_events} events"
            else:
                state = "ok"
            if a.disabled:  # shown whatever its state: it would raise nothing when it fires
                state += " (disabled)"
            table.add_row(
                st.slo.id,
                _alert_name(a),
                format_duration(w.long_s),
                _burn(a.long_burn),
                format_duration(w.short_s),
                _burn(a.short_burn),
                f"{w.burn_rate:.4g}x",
                format_count(a.long_events),
                state,
            )
    return table


def report_json(statuses: Sequence[SloStatus]) -> dict[str, Any]:
    """The report as a JSON-ready dict: ``{"slos": [...]}``, one entry per SLO."""
    return {"slos": [st.to_dict() for st in statuses]}


# -- the burn-down chart -------------------------------------------------------------------------


def _figure(statuses: Sequence[SloStatus], title: str) -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(1, 1, figsize=(13, 5.5))
    # The legend is given its entries: from labels alone, matplotlib leaves out every line
    # whose label starts with "_" (an SLO of service "_internal").
    handles = [ax.axhline(0, color="#d62728", lw=0.9, ls="--")]
    labels = ["budget exhausted"]
    for st in statuses:
        if not len(st.burn_down):
            continue
        times = st.burn_down_ts.astype("datetime64[ms]")
        (line,) = ax.plot(times, st.burn_down * 100, lw=1.2)
        handles.append(line)
        # An SLO's name is text: a $ escaped, or matplotlib reads what lies between two as TeX.
        labels.append(f"{st.slo.id} ({st.slo.objective:g}%)".replace("$", r"\$"))
    if statuses:
        # The whole window, so a line that starts late shows where the data starts.
        lo = min(st.window_start_ms for st in statuses)
        hi = max(st.at_ms for st in statuses)
        ax.set_xlim(np.datetime64(lo, "ms"), np.datetime64(hi, "ms"))  # type: ignore[arg-type]
    if not any(len(st.burn_down) for st in statuses):
        ax.set_ylim(-5, 105)
        ax.text(0.5, 0.5, "no data in the window", transform=ax.transAxes, ha="center",
                va="center", color="#666666")  # fmt: skip
    ax.set_ylabel("error budget remaining (%)")
    ax.set_xlabel("time (UTC)", fontsize=8)
    ax.set_title(title, loc="left", fontsize=11)
    ax.grid(alpha=0.25)
    ax.legend(handles, labels, loc="lower left", fontsize=8, frameon=False)
    ax.xaxis.set_major_formatter(
        mdates.ConciseDateFormatter(ax.xaxis.get_major_locator())  # type: ignore[no-untyped-call]
    )
    fig.tight_layout()
    return fig


def plot_burn_down(path: str | Path, statuses: Sequence[SloStatus]) -> Path:
    """Draw each SLO's error budget remaining over its window to ``path`` (.png, or .html: a
    self-contained page with the chart as inline SVG and the SLO table)."""
    out = Path(path)
    suffix = out.suffix.lower()
    if suffix not in (".png", ".html", ".htm"):
        raise DataError(f"plot must end in .png or .html, got {out.name!r}", where="--plot")
    import matplotlib.pyplot as plt

    at = {st.at_ms for st in statuses}
    title = "Error budget burn-down" + (f" to {format_ms(next(iter(at)))}" if len(at) == 1 else "")
    fig = _figure(statuses, title)
    try:
        if suffix == ".png":
            fig.savefig(out, dpi=110)
        else:
            buf = io.StringIO()
            fig.savefig(buf, format="svg")
            out.write_text(_html_page(title, buf.getvalue(), statuses), encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot write plot: {exc.strerror}", where=str(out)) from None
    finally:
        plt.close(fig)
    return out


def _html_page(title: str, svg: str, statuses: Sequence[SloStatus]) -> str:
    def cell(text: str) -> str:
        return f"<td>{html.escape(text)}</td>"

    rows = "".join(
        "<tr>"
        + cell(st.slo.id)
        + cell(f"{st.slo.objective:g}%")
        + cell(_pct(st.sli, 6))
        + cell(f"{format_count(st.budget_spent)} / {format_count(st.budget_total)} {st.unit}")
        + cell(f"{st.remaining_ratio * 100:.1f}%" if math.isfinite(st.remaining_ratio) else "–")
        + cell(_burn(st.current_burn))
        + cell(_exhaustion_text(st))
        + cell(", ".join(_alert_name(a) for a in st.firing) or "–")
        + "</tr>"
        for st in statuses
    )
    header = (
        "SLO", "objective", "SLI", "budget spent / total", "remaining", "burn (1h)",
        "budget runs out", "firing",
    )  # fmt: skip
    return html_page(title, svg, f"SLOs ({len(statuses)})", header, rows)
