"""Prometheus recording and alerting rules for SLOs, compatible with Sloth's.

Per SLO, three rule groups, with Sloth's metric and label names so its dashboards and any alert
routing on ``sloth_severity`` keep working:

- SLI recordings: ``slo:sli_error:ratio_rate<window>`` for every window the alerts need and for
  the SLO period, labelled ``sloth_id``, ``sloth_service``, ``sloth_slo``, ``sloth_window`` plus
  the SLO's labels (and ``extra_labels``).
- Metadata: ``slo:objective:ratio``, ``slo:error_budget:ratio``, ``slo:time_period:days``,
  ``slo:current_burn_rate:ratio``, ``slo:period_burn_rate:ratio``,
  ``slo:period_error_budget_remaining:ratio`` and ``sloth_slo_info``.
- Alerts: one page and one ticket alert, each firing when any of its multi-window burn-rate
  conditions holds (:mod:`relia.slo.burnrate`), labelled ``sloth_severity``.

How windows are computed, and why
---------------------------------
Windows up to :data:`LONG_WINDOW_S` (6h: every page window of the Workbook) run the SLI's own
queries with the window substituted for ``{{.window}}``, exactly as Sloth does, so pages fire on
the same numbers. Longer windows (1d, 3d and the 30-day period) are not: ``rate(x[30d])`` reads
every raw sample of every series the query matches over 30 days at every evaluation. Instead they
are built from two *base* recordings taken over the shortest window (5m), once per evaluation:

- ``slo:sli_error_events:rate5m``: the error query (or total minus good) over 5m,
- ``slo:sli_total_events:rate5m``: the total query over 5m,

and the long-window ratio is ``sum_over_time(errors[W]) / sum_over_time(total[W])``. That is the
ratio of all bad events to all events in ``W``, weighted by traffic, which the mean of the short
ratios (what Sloth does for its period window) is not: an hour of 50 % errors at 1 % of the usual
traffic would count as much as a busy hour. It is correct whatever the evaluation interval: each
evaluation's 5m value covers the 5 minutes before it, consecutive evaluations overlap when the
interval is shorter than 5m, and every event is then counted ``5m / interval`` times in both sums,
so the factor cancels in the ratio. The same holds for queries that count events in the window
(``increase``, ``sum_over_time``) rather than rate them. Only the 5 minutes at each end of ``W``
are weighted less (a 5m ramp): the window's centre moves by 2.5 minutes, 0.2 % of a day. Under
promtool, on Sloth's examples, relia's alerts fire at the same evaluations as Sloth's, or at most
one evaluation apart (tests/slo/test_rules_promtool.py).

A long window then reads ``W / evaluation interval`` samples of one pre-aggregated series per SLO,
however many raw series the SLI matches and however often they are scraped; this is the same cost
as Sloth's own period window.

A ``good_query`` is read as 0 wherever the total has a series and the good query has none
(``(good) or (total) * 0``): PromQL's ``sum`` over no series is no series, so in a complete
outage ``total - good`` would otherwise be empty and no alert could fire.

Raw SLIs (only an error-ratio query) have no event counts to sum; their long windows fall back to
``avg_over_time`` of the 5m ratio, the mean of short ratios, exactly right only when traffic is
steady. Threshold SLIs (a good/bad decision per time slice) record the bad-slice fraction
``avg_over_time((query <bad-op> bool value)[W:slice])`` up to 6h and its ``avg_over_time`` beyond,
which is exact because every slice weighs the same.

Burn-rate alerts count events (or slices) whatever the SLO's budgeting method, as Sloth and the
Workbook do, and the period window is rolling even for calendar-aligned SLOs: calendar budgets are
the business of reports (:mod:`relia.slo.budget`).

Low traffic
-----------
With ``min_events`` on an events SLI, each alert condition also requires the events in its long
window (``slo:sli_total_events:count<window>``, recorded from the base series) to reach that
number. When the total query counts events per window (:func:`relia.slo.spec.counts_per_window`,
the rule the reports use too: its ``{{.window}}`` range is given to ``increase``,
``count_over_time``, ``sum_over_time``, ...) the count is ``avg_over_time × window / base
window``; otherwise its value is a per-second rate and the count is ``avg_over_time × window
seconds``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import yaml

from relia.errors import ConfigError
from relia.slo.burnrate import windows_for
from relia.slo.spec import (
    SLO,
    AlertSeveritySpec,
    AlertWindow,
    EventsSLI,
    RawSLI,
    ThresholdSLI,
    counts_per_window,
    format_duration,
)

__all__ = [
    "LONG_WINDOW_S",
    "render_rules",
    "rule_groups",
    "substitute_window",
]

LONG_WINDOW_S = 6 * 3600
"""Windows longer than this are computed from the base recordings, not from raw queries."""

ID_LABEL, SERVICE_LABEL, SLO_LABEL = "sloth_id", "sloth_service", "sloth_slo"
WINDOW_LABEL, SEVERITY_LABEL = "sloth_window", "sloth_severity"
_RESERVED = frozenset({ID_LABEL, SERVICE_LABEL, SLO_LABEL, WINDOW_LABEL})

_SLI_ERROR = "slo:sli_error:ratio_rate{}"
_BASE_ERRORS = "slo:sli_error_events:rate{}"
_BASE_TOTAL = "slo:sli_total_events:rate{}"
_EVENT_COUNT = "slo:sli_total_events:count{}"

_WINDOW_RE = re.compile(r"\{\{\s*\.window\s*\}\}")
_LABEL_NAME_RE = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_BAD_OP = {"lt": ">=", "lte": ">", "gt": "<=", "gte": "<"}

_DEFAULT_SUMMARY = (
    "{{$labels.sloth_service}} {{$labels.sloth_slo}} SLO error budget burn rate is over expected."
)
_DEFAULT_TITLE = (
    "({severity}) {{{{$labels.sloth_service}}}} {{{{$labels.sloth_slo}}}} SLO error budget burn "
    "rate is too fast."
)


def substitute_window(query: str, seconds: int) -> str:
    """Put the window into a query where Sloth's ``{{.window}}`` placeholder is (``5m``, ``1d``)."""
    return _WINDOW_RE.sub(format_duration(seconds), query)


def _good_or_zero(good: str, total: str) -> str:
    """The good events, or 0 for every total series that has no good series beside it.

    An aggregation over no series is no series, not 0: in a complete outage the good query is
    empty, and ``total - good`` would be empty too, so no alert could fire. ``or`` matches on
    all labels (the metric name aside), so with grouping labels each group of the total that
    lacks a good series gets its own 0, and ``total * 0`` keeps the total's labels."""
    return f"(\n  ({good})\n  or\n  ({total}) * 0\n)"


def _num(x: float) -> str:
    """A float as PromQL and Sloth write it: ``6`` not ``6.0``, shortest round-trip digits."""
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return np.format_float_positional(x, trim="-")


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _check_labels(
    labels: Mapping[str, str], what: str, where: str | None, *, reserved: bool
) -> None:
    for name in labels:
        if not _LABEL_NAME_RE.match(name) or name.startswith("__"):
            raise ConfigError(f"{what}: {name!r} is not a valid Prometheus label name", where=where)
        if reserved and name in _RESERVED:
            raise ConfigError(f"{what}: label {name!r} is set by relia", where=where)


class _SLORules:
    """Builds the three rule groups of one SLO."""

    def __init__(self, slo: SLO, extra_labels: Mapping[str, str], version: str) -> None:
        self.slo = slo
        self.where = str(slo.source)
        _check_labels(slo.labels, "labels", self.where, reserved=True)
        self.identity = {ID_LABEL: slo.id, SERVICE_LABEL: slo.service, SLO_LABEL: slo.name}
        for key, value in extra_labels.items():
            if key in slo.labels and slo.labels[key] != value:
                # Neither silently wins: the command line and the spec disagree.
                raise ConfigError(
                    f"extra label {key}={value} clashes with SLO {slo.id}'s label "
                    f"{key}={slo.labels[key]}",
                    where=self.where,
                )
        self.labels = {**extra_labels, **slo.labels, **self.identity}
        self.selector = "{" + ", ".join(f"{k}={_quote(v)}" for k, v in self.identity.items()) + "}"
        self.windows: tuple[AlertWindow, ...] = windows_for(slo)
        self.base_s = min(w.short_s for w in self.windows)
        self.period_s = slo.window.period_s
        self.version = version

    # -- SLI recordings -----------------------------------------------------------------------

    def _labels_for(self, window_s: int) -> dict[str, str]:
        return dict(sorted({**self.labels, WINDOW_LABEL: format_duration(window_s)}.items()))

    def _record(self, name: str, expr: str, window_s: int | None) -> dict[str, Any]:
        labels = self._labels_for(window_s) if window_s else dict(sorted(self.labels.items()))
        return {"record": name, "expr": expr, "labels": labels}

    def _ref(self, template: str, window_s: int) -> str:
        return template.format(format_duration(window_s)) + self.selector

    def _error_events_query(self, sli: EventsSLI, window_s: int) -> str:
        if sli.error_query is not None:
            return substitute_window(sli.error_query, window_s).strip()
        total = substitute_window(sli.total_query, window_s).strip()
        good = substitute_window(sli.good_query or "", window_s).strip()
        return f"({total})\n-\n{_good_or_zero(good, total)}"

    def _raw_window_expr(self, window_s: int) -> str:
        sli = self.slo.sli
        if isinstance(sli, EventsSLI):
            total = substitute_window(sli.total_query, window_s).strip()
            if sli.error_query is not None:
                errors = substitute_window(sli.error_query, window_s).strip()
                return f"({errors})\n/\n({total})\n"
            good = substitute_window(sli.good_query or "", window_s).strip()
            return f"1 - (\n  {_good_or_zero(good, total)}\n  /\n  ({total})\n)\n"
        if isinstance(sli, RawSLI):
            return f"({substitute_window(sli.error_ratio_query, window_s).strip()})\n"
        return self._threshold_expr(sli, window_s)

    def _threshold_expr(self, sli: ThresholdSLI, window_s: int) -> str:
        slice_s = min(self.slo.timeslice_window_s or window_s, window_s)
        query = substitute_window(sli.query, slice_s).strip()
        bad = f"({query}) {_BAD_OP[sli.op]} bool {_num(sli.value)}"
        return f"avg_over_time(({bad})[{format_duration(window_s)}:{format_duration(slice_s)}])\n"

    def sli_rules(self) -> list[dict[str, Any]]:
        """Base event recordings (events SLIs), the error ratio over every window the alerts
        and the period need, and the event counts ``min_events`` compares against."""
        sli, base = self.slo.sli, self.base_s
        spans = {self.period_s}
        for w in self.windows:
            spans.update((w.short_s, w.long_s))
        events = isinstance(sli, EventsSLI)
        rules: list[dict[str, Any]] = []
        if isinstance(sli, EventsSLI):
            errors = self._error_events_query(sli, base)
            total = substitute_window(sli.total_query, base).strip()
            rules.append(self._record(_BASE_ERRORS.format(format_duration(base)), errors, base))
            rules.append(self._record(_BASE_TOTAL.format(format_duration(base)), total, base))
        for span in sorted(spans):
            rng = format_duration(span)
            if span == base and events:
                # The same numbers as the raw ratio, without running the queries twice.
                expr = f"{self._ref(_BASE_ERRORS, base)}\n/\n{self._ref(_BASE_TOTAL, base)}\n"
            elif span <= LONG_WINDOW_S:
                expr = self._raw_window_expr(span)
            elif events:
                expr = (
                    f"sum_over_time({self._ref(_BASE_ERRORS, base)}[{rng}])\n/\n"
                    f"sum_over_time({self._ref(_BASE_TOTAL, base)}[{rng}])\n"
                )
            else:
                expr = f"avg_over_time({self._ref(_SLI_ERROR, base)}[{rng}])\n"
            rules.append(self._record(_SLI_ERROR.format(rng), expr, span))
        if self.guards_low_traffic:
            for long_s in sorted({w.long_s for w in self.alerting_windows()}):
                name = _EVENT_COUNT.format(format_duration(long_s))
                rules.append(self._record(name, self._count_expr(long_s), long_s))
        return rules

    @property
    def guards_low_traffic(self) -> bool:
        return self.slo.min_events is not None and isinstance(self.slo.sli, EventsSLI)

    def _count_expr(self, long_s: int) -> str:
        sli = self.slo.sli
        assert isinstance(sli, EventsSLI)
        avg = f"avg_over_time({self._ref(_BASE_TOTAL, self.base_s)}[{format_duration(long_s)}])"
        if counts_per_window(sli.total_query):
            return f"{avg} * {_num(long_s / self.base_s)}"
        return f"{avg} * {long_s}"

    # -- metadata -----------------------------------------------------------------------------

    def meta_rules(self) -> list[dict[str, Any]]:
        target = _num(self.slo.target)
        budget_ref = f"slo:error_budget:ratio{self.selector}"
        join = f"/ on({ID_LABEL}, {SLO_LABEL}, {SERVICE_LABEL}) group_left"
        info_labels = {
            **self.labels,
            "sloth_mode": "relia",
            "sloth_objective": _num(self.slo.objective),
            "sloth_version": self.version,
        }
        return [
            self._record("slo:objective:ratio", f"vector({target})", None),
            self._record("slo:error_budget:ratio", f"vector(1-{target})", None),
            self._record("slo:time_period:days", f"vector({_num(self.period_s / 86400)})", None),
            self._record(
                "slo:current_burn_rate:ratio",
                f"{self._ref(_SLI_ERROR, self.base_s)}\n{join}\n{budget_ref}\n",
                None,
            ),
            self._record(
                "slo:period_burn_rate:ratio",
                f"{self._ref(_SLI_ERROR, self.period_s)}\n{join}\n{budget_ref}\n",
                None,
            ),
            self._record(
                "slo:period_error_budget_remaining:ratio",
                f"1 - slo:period_burn_rate:ratio{self.selector}",
                None,
            ),
            {
                "record": "sloth_slo_info",
                "expr": "vector(1)",
                "labels": dict(sorted(info_labels.items())),
            },
        ]

    # -- alerts -------------------------------------------------------------------------------

    def _severity_spec(self, severity: str) -> AlertSeveritySpec | None:
        alerting = self.slo.alerting
        if alerting is None:
            return None
        spec: AlertSeveritySpec = getattr(alerting, severity)
        return None if spec.disabled else spec

    def alerting_windows(self) -> list[AlertWindow]:
        return [w for w in self.windows if self._severity_spec(w.severity) is not None]

    def _condition(self, w: AlertWindow) -> str:
        threshold = f"({_num(w.burn_rate)} * {_num(self.slo.error_budget)})"
        parts = [
            f"max({self._ref(_SLI_ERROR, span)} > {threshold}) without ({WINDOW_LABEL})"
            for span in (w.short_s, w.long_s)
        ]
        if self.guards_low_traffic:
            parts.append(
                f"max({self._ref(_EVENT_COUNT, w.long_s)} >= {self.slo.min_events}) "
                f"without ({WINDOW_LABEL})"
            )
        inner = "\n    and\n    ".join(parts)
        return f"(\n    {inner}\n)"

    def alert_rules(self) -> list[dict[str, Any]]:
        alerting = self.slo.alerting
        if alerting is None:
            return []
        _check_labels(alerting.labels, "alerting labels", self.where, reserved=False)
        rules: list[dict[str, Any]] = []
        for severity in ("page", "ticket"):
            spec = self._severity_spec(severity)
            windows = [w for w in self.windows if w.severity == severity]
            if spec is None or not windows:
                continue
            _check_labels(spec.labels, f"{severity} alert labels", self.where, reserved=False)
            # The identity labels are on the alert already (through the expression); naming them
            # again keeps two SLOs with the same alert name and labels from being duplicate rules
            # to promtool's linter, without changing the alert.
            labels = {**alerting.labels, **spec.labels, **self.identity, SEVERITY_LABEL: severity}
            annotations = {
                "summary": _DEFAULT_SUMMARY,
                "title": _DEFAULT_TITLE.format(severity=severity),
                **alerting.annotations,
                **spec.annotations,
            }
            rules.append(
                {
                    "alert": alerting.name,
                    "expr": "\nor\n".join(self._condition(w) for w in windows) + "\n",
                    "labels": dict(sorted(labels.items())),
                    "annotations": dict(sorted(annotations.items())),
                }
            )
        return rules

    def groups(self) -> list[dict[str, Any]]:
        out = [
            {"name": f"relia-slo-sli-recordings-{self.slo.id}", "rules": self.sli_rules()},
            {"name": f"relia-slo-meta-recordings-{self.slo.id}", "rules": self.meta_rules()},
        ]
        alerts = self.alert_rules()
        if alerts:
            out.append({"name": f"relia-slo-alerts-{self.slo.id}", "rules": alerts})
        return out


def rule_groups(
    slos: Sequence[SLO], *, extra_labels: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The Prometheus rule file for ``slos`` as a dict: ``{"groups": [...]}``, three groups per
    SLO (SLI recordings, metadata, alerts; the last left out when the SLO has no alert enabled).

    ``extra_labels`` go on every recorded series (and so on every alert). Raises
    :class:`ConfigError` naming the spec when two SLOs share an id, a label name is invalid or
    reserved, or the SLO's period is too short for the default alert windows.
    """
    from relia import __version__

    extra = dict(extra_labels or {})
    _check_labels(extra, "extra labels", None, reserved=True)
    seen: dict[str, SLO] = {}
    groups: list[dict[str, Any]] = []
    for slo in slos:
        if slo.id in seen:
            raise ConfigError(
                f"SLO id {slo.id!r} is defined twice (also in {seen[slo.id].source}); "
                "rule group names and sloth_id labels must be unique",
                where=str(slo.source),
            )
        seen[slo.id] = slo
        groups.extend(_SLORules(slo, extra, __version__).groups())
    return {"groups": groups}


class _RulesDumper(yaml.SafeDumper):
    """Block style for multi-line expressions, keys in the order given."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_RulesDumper.add_representer(str, _str_representer)


def render_rules(slos: Sequence[SLO], *, extra_labels: Mapping[str, str] | None = None) -> str:
    """The Prometheus rule file for ``slos`` as YAML text (see :func:`rule_groups`), ready for
    ``promtool check rules`` and Prometheus's ``rule_files``."""
    from relia import __version__

    body = yaml.dump(
        rule_groups(slos, extra_labels=extra_labels),
        Dumper=_RulesDumper,
        sort_keys=False,
        width=1_000_000,
        allow_unicode=True,
    )
    return f"# Generated by relia {__version__} (relia slo rules). Do not edit.\n{body}"
