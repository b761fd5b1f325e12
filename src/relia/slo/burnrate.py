"""Multi-window, multi-burn-rate alert windows (SRE Workbook, ch. 5) and their math.

An alert stands for a share of the error budget spent within a window: the Workbook pages when 2 %
of a 30-day budget goes in one hour. Spending ``share`` of the budget within ``long`` means burning
at ``share × period / long`` times the rate that would spend exactly the budget over the period
(the *burn rate*; 1 spends it all by the end of the period). Each alert also needs a short window
(1/12 of the long one) to be over the same burn rate, so that it resets soon after a burn stops.

This module holds the windows (defaults for any period, Sloth ``AlertWindows`` files) and vectorized
burn-rate math on arrays of event counts. It reads no clock and, apart from
:func:`load_alert_windows`, no files.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from relia._fieldnames import unknown_field
from relia.errors import ConfigError
from relia.slo.spec import SLO, AlertWindow, format_duration, parse_duration_seconds

__all__ = [
    "ALERT_WINDOWS_API_VERSION",
    "WORKBOOK_WINDOWS",
    "burn_rate",
    "check_alert_windows",
    "default_alert_windows",
    "load_alert_windows",
    "multiwindow_firing",
    "parse_alert_windows",
    "trailing_sum",
    "windows_for",
]

ALERT_WINDOWS_API_VERSION = "sloth.slok.dev/v1"

_DAY = 86400
_HOUR = 3600
_MINUTE = 60

# (severity, name, budget share in % of a 28- to 30-day period, long window, short window): the SRE
# Workbook's table, which Sloth ships as google-30d.yaml and, unchanged, as google-28d.yaml.
WORKBOOK_WINDOWS: tuple[tuple[Literal["page", "ticket"], str, float, int, int], ...] = (
    ("page", "quick", 2.0, 1 * _HOUR, 5 * _MINUTE),
    ("page", "slow", 5.0, 6 * _HOUR, 30 * _MINUTE),
    ("ticket", "quick", 10.0, 1 * _DAY, 2 * _HOUR),
    ("ticket", "slow", 10.0, 3 * _DAY, 6 * _HOUR),
)

# The Workbook's shares hold for periods between these two (Sloth's 28d and 30d tables); outside
# that range the burn rates of the nearer end are kept instead (see default_alert_windows).
_SHARE_PERIOD_MIN = 28 * _DAY
_SHARE_PERIOD_MAX = 30 * _DAY


def _go_hours(seconds: int) -> float:
    # Go's time.Duration.Hours(): whole hours plus the rest as a fraction.
    hours, rest = divmod(seconds, 3600)
    return float(hours) + float(rest * 10**9) / (60 * 60 * 1e9)


def _burn_rate_factor(budget_percent: float, period_s: int, long_s: int) -> float:
    # The same operations in the same order as Sloth's getBurnRateFactor (hours of budget to
    # spend, then per hour of window), so the floats written into rules are Sloth's to the bit:
    # 14.4, 13.44, 0.9333333333333333, and 1.4000000000000001 for its 7d ticket.
    return budget_percent * _go_hours(period_s) / 100 / _go_hours(long_s)


def default_alert_windows(period_s: int) -> tuple[AlertWindow, ...]:
    """The SRE Workbook's four burn-rate alerts for an SLO period of ``period_s`` seconds.

    Windows are always the Workbook's: page 1h/5m and 6h/30m, ticket 1d/2h and 3d/6h. What changes
    with the period is the share of the budget each alert stands for, by this rule:

    - 28 to 30 days: the Workbook's shares, 2 %, 5 %, 10 %, 10 %. Burn rates scale with the
      period: 30d gives 14.4, 6, 3, 1 (the Workbook's table); 28d gives 13.44, 5.6, 2.8, 0.93, which
      is exactly Sloth's ``google-28d.yaml`` (Sloth keeps the windows *and* the percents there).
    - Longer periods (90d): the 30-day *burn rates* are kept (14.4, 6, 3, 1) and the shares shrink
      (0.67 %, 1.67 %, 3.33 %, 3.33 % for 90d). Keeping the shares would page only at 43× and send
      the slowest ticket only at 3×, so a steady 2× burn that spends the budget twice over would
      never alert.
    - Shorter periods (7d, 14d): the 28-day burn rates are kept (13.44, 5.6, 2.8, 0.93) and the
      shares grow (7d: 8 %, 20 %, 40 %, 40 %). Keeping the shares would put both tickets below a
      burn rate of 1 (7d: 0.7 and 0.23), alerting on burns that never spend the budget. Sloth's
      hand-written ``7d.yaml`` keeps the windows too and changes the percents to 8, 12.5, 20, 42:
      the same page-quick (13.44) and nearly the same slow ticket (0.98), looser in between
      (3.5 and 1.4 where this rule gives 5.6 and 2.8).

    In one formula: ``share = workbook_share × clamp(period, 28d, 30d) / period`` and
    ``burn_rate = workbook_share × clamp(period, 28d, 30d) / 100 / long``; continuous in the period.
    Raises :class:`ConfigError` when the period is shorter than the 3-day window of the slow
    ticket, where these windows make no sense; such an SLO needs its own ``alert_windows``.
    """
    if period_s <= 0:
        raise ConfigError(f"SLO period must be positive, got {period_s} s")
    longest = max(w[3] for w in WORKBOOK_WINDOWS)
    if period_s < longest:
        # OpenSLO's own timeslices example writes `duration: 1m` meaning a month.
        n = int(period_s // 60)
        length = "one minute" if n == 1 else f"{n} minutes"
        minutes = period_s < 3600 and period_s % 60 == 0
        hint = (
            f" ({format_duration(period_s)} is {length}; a month is 30d, or 1M in OpenSLO)"
            if minutes
            else ""
        )
        raise ConfigError(
            f"SLO period {format_duration(period_s)} is shorter than the "
            f"{format_duration(longest)} window of the default slow ticket alert; "
            f"give the SLO its own alert windows{hint}"
        )
    reference = min(max(period_s, _SHARE_PERIOD_MIN), _SHARE_PERIOD_MAX)
    windows = []
    for severity, name, share, long_s, short_s in WORKBOOK_WINDOWS:
        windows.append(
            AlertWindow(
                severity=severity,
                name=name,
                budget_percent=share * reference / period_s,
                long_s=long_s,
                short_s=short_s,
                burn_rate=_burn_rate_factor(share, reference, long_s),
            )
        )
    return tuple(windows)


def windows_for(slo: SLO) -> tuple[AlertWindow, ...]:
    """The SLO's own ``alert_windows``, or the defaults for its period
    (:func:`default_alert_windows`); errors name the SLO's source."""
    if slo.alert_windows is not None:
        return slo.alert_windows
    try:
        return default_alert_windows(slo.window.period_s)
    except ConfigError as exc:
        raise ConfigError(exc.message, where=str(slo.source)) from None


def check_alert_windows(slos: Iterable[SLO]) -> None:
    """Raise one :class:`ConfigError` naming every SLO that has no alert windows of its own and
    whose period is too short for the defaults (:func:`windows_for`). Specs load without this
    check (a report needs no alerts); whatever evaluates or alerts on them runs it first."""
    problems = []
    for slo in slos:
        try:
            windows_for(slo)
        except ConfigError as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError("\n".join(problems))


# --- Sloth AlertWindows files ----------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class _WindowDoc(_Strict):
    error_budget_percent: float = Field(alias="errorBudgetPercent", gt=0, le=100)
    short_window: str = Field(alias="shortWindow")
    long_window: str = Field(alias="longWindow")


class _SeverityDoc(_Strict):
    quick: _WindowDoc
    slow: _WindowDoc


class _SpecDoc(_Strict):
    slo_period: str = Field(alias="sloPeriod")
    page: _SeverityDoc
    ticket: _SeverityDoc


class _AlertWindowsDoc(_Strict):
    api_version: Literal["sloth.slok.dev/v1"] = Field(alias="apiVersion")
    kind: Literal["AlertWindows"]
    spec: _SpecDoc


_SEVERITIES: tuple[Literal["page", "ticket"], ...] = ("page", "ticket")


def _line_of(node: yaml.Node | None, loc: Sequence[int | str]) -> int | None:
    """The 1-based line of the deepest YAML node ``loc`` reaches (None without a node)."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if not isinstance(node, yaml.MappingNode):
            break
        for key_node, value_node in node.value:
            if key_node.value == str(part):
                node, line = value_node, key_node.start_mark.line + 1
                break
        else:
            break
    return line


def _field_error(where: str, root: yaml.Node | None, loc: Sequence[int | str], msg: str) -> str:
    line = _line_of(root, loc)
    place = f"{where}:{line}" if line else where
    field = ".".join(str(p) for p in loc) or "(top level)"
    return f"{place}: {field}: {msg}"


def parse_alert_windows(
    data: Any,
    where: str = "<memory>",
    *,
    period_s: int | None = None,
    root: yaml.Node | None = None,
) -> tuple[AlertWindow, ...]:
    """Read one Sloth ``sloth.slok.dev/v1`` ``AlertWindows`` document (already parsed YAML).

    Returns page quick, page slow, ticket quick and ticket slow, with burn rates computed for the
    document's ``sloPeriod`` as Sloth does. When ``period_s`` is given, the document's period must
    equal it (windows written for 28 days do not carry over to 30). Raises :class:`ConfigError`
    listing every problem as ``where[:line]: field.path: message``; ``root`` (the composed YAML
    node) adds line numbers.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected an AlertWindows mapping, got {type(data).__name__}")
    try:
        doc = _AlertWindowsDoc.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = tuple(err.get("loc", ()))
            msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
            if err.get("type") == "extra_forbidden":
                msg = unknown_field(_AlertWindowsDoc, loc)
            lines.append(_field_error(where, root, loc, msg))
        raise ConfigError("\n".join(lines)) from None

    problems: list[str] = []

    def duration(text: str, loc: tuple[str, ...]) -> int:
        try:
            return parse_duration_seconds(text)
        except ValueError as exc:
            problems.append(_field_error(where, root, loc, str(exc)))
            return 0

    period = duration(doc.spec.slo_period, ("spec", "sloPeriod"))
    if period and period_s is not None and period != period_s:
        problems.append(
            _field_error(
                where,
                root,
                ("spec", "sloPeriod"),
                f"windows are for a {format_duration(period)} period, the SLO's is "
                f"{format_duration(period_s)}",
            )
        )
    windows: list[AlertWindow] = []
    for severity in _SEVERITIES:
        sev_doc: _SeverityDoc = getattr(doc.spec, severity)
        for name in ("quick", "slow"):
            w: _WindowDoc = getattr(sev_doc, name)
            base = ("spec", severity, name)
            short_s = duration(w.short_window, (*base, "shortWindow"))
            long_s = duration(w.long_window, (*base, "longWindow"))
            if not (period and short_s and long_s):
                continue
            if short_s >= long_s:
                problems.append(
                    _field_error(
                        where,
                        root,
                        (*base, "shortWindow"),
                        f"short window {w.short_window} must be shorter than the long window "
                        f"{w.long_window}",
                    )
                )
                continue
            if long_s > period:
                problems.append(
                    _field_error(
                        where,
                        root,
                        (*base, "longWindow"),
                        f"long window {w.long_window} is longer than the SLO period "
                        f"{doc.spec.slo_period}",
                    )
                )
                continue
            windows.append(
                AlertWindow(
                    severity=severity,
                    name=name,
                    budget_percent=w.error_budget_percent,
                    long_s=long_s,
                    short_s=short_s,
                    burn_rate=_burn_rate_factor(w.error_budget_percent, period, long_s),
                )
            )
    if problems:
        raise ConfigError("\n".join(problems))
    return tuple(windows)


def load_alert_windows(path: str | Path, *, period_s: int | None = None) -> tuple[AlertWindow, ...]:
    """Load a Sloth ``AlertWindows`` YAML file (one document); see :func:`parse_alert_windows`.

    Raises :class:`ConfigError` naming the file (and line and field) when it cannot be read, is not
    YAML, holds other than one document, or is not a valid ``AlertWindows`` spec.
    """
    p = Path(path)
    where = str(p)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("no such file", where=where) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", where=where) from None
    try:
        roots = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}{line}: not valid YAML: {problem}") from None
    roots = [r for r in roots if r is not None]
    if len(docs) != 1:
        raise ConfigError(f"expected one AlertWindows document, found {len(docs)}", where=where)
    return parse_alert_windows(docs[0], where, period_s=period_s, root=roots[0])


# --- vectorized burn-rate math ---------------------------------------------------------------


def trailing_sum(values: npt.ArrayLike, n: int) -> npt.NDArray[np.float64]:
    """Sum of the last ``n`` values at every position (fewer at the start, as a window over
    partial history); ``values`` is a 1-D array of per-step amounts."""
    if n <= 0:
        raise ValueError(f"window length must be positive, got {n}")
    x = np.asarray(values, dtype=np.float64)
    csum = np.concatenate(([0.0], np.cumsum(x)))
    idx = np.arange(1, x.size + 1)
    return csum[idx] - csum[np.maximum(idx - n, 0)]


def burn_rate(
    bad: npt.ArrayLike, total: npt.ArrayLike, error_budget: float
) -> npt.NDArray[np.float64]:
    """Burn rate ``(bad / total) / error_budget``, elementwise; NaN where ``total`` is 0."""
    b = np.asarray(bad, dtype=np.float64)
    t = np.asarray(total, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(t > 0, b / np.where(t > 0, t, 1.0), np.nan)
    return ratio / error_budget


def multiwindow_firing(
    bad: npt.ArrayLike,
    total: npt.ArrayLike,
    *,
    step_s: int,
    error_budget: float,
    windows: Sequence[AlertWindow],
    min_events: int | None = None,
) -> dict[str, npt.NDArray[np.bool_]]:
    """Which multi-window alerts fire at each step, from bad and total event counts per step.

    ``bad[i]`` and ``total[i]`` are the events in step ``i`` (``step_s`` seconds). An alert window
    fires at step ``i`` when the burn rate over both its long and short trailing windows exceeds its
    ``burn_rate`` (and, with ``min_events``, the long window holds at least that many events).
    Returns ``{"page": bool array, "ticket": bool array}``: each severity fires when any of its
    windows does. Windows must be whole multiples of ``step_s``.
    """
    b = np.asarray(bad, dtype=np.float64)
    t = np.asarray(total, dtype=np.float64)
    if b.shape != t.shape or b.ndim != 1:
        raise ValueError("bad and total must be 1-D arrays of the same length")
    out = {"page": np.zeros(b.size, dtype=bool), "ticket": np.zeros(b.size, dtype=bool)}
    for w in windows:
        if w.long_s % step_s or w.short_s % step_s:
            raise ValueError(
                f"windows {format_duration(w.long_s)}/{format_duration(w.short_s)} are not "
                f"multiples of the {step_s} s step"
            )
        fire = np.ones(b.size, dtype=bool)
        # Compared as ratio > burn_rate * budget, the way the Prometheus rules write it, so both
        # round the same way at the threshold.
        threshold = w.burn_rate * error_budget
        for span in (w.long_s, w.short_s):
            n = span // step_s
            ratio = burn_rate(trailing_sum(b, n), trailing_sum(t, n), 1.0)
            fire &= np.nan_to_num(ratio, nan=0.0) > threshold
        if min_events is not None:
            fire &= trailing_sum(t, w.long_s // step_s) >= min_events
        out[w.severity] |= fire
    return out
