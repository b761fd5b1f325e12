"""OpenSLO specs → relia SLOs: ``openslo/v1`` in full, ``openslo/v1alpha`` as Sloth reads it.

**v1.** Kinds SLO, SLI, DataSource, AlertPolicy, AlertCondition, AlertNotificationTarget and
Service. Objects refer to each other by ``metadata.name`` (``indicatorRef``, ``alertPolicyRef``,
``conditionRef``, ``targetRef``, ``metricSourceRef``) across every document and file given in one
load; every reference must resolve. How v1 maps onto relia's model:

- Each objective of an SLO becomes one relia SLO. With several objectives the name is suffixed
  with the objective's ``displayName`` (as a slug) or, failing that, its index.
- ``target: 0.999`` becomes the objective 99.9 (``target * 100``, as Sloth computes it);
  ``targetPercent`` is taken as it is.
- ``budgetingMethod`` Occurrences / Timeslices / RatioTimeslices → occurrences / timeslices /
  ratio_timeslices, with ``timeSliceWindow`` and ``timeSliceTarget`` from the objective.
- Durations are OpenSLO shorthands: a whole number and one unit of ``m`` (minute), ``h``, ``d``,
  ``w``, ``M``, ``Q``, ``Y``. ``1m`` is one minute, as the OpenSLO spec says (an upstream example
  writes ``1m`` for a month; relia reads what the spec says). A rolling ``M``/``Q``/``Y`` is 30 /
  90 / 365 days, as the OpenSLO Go SDK converts them; a calendar-aligned window must be in fixed
  units (m, h, d, w), since relia's periods are a whole number of seconds and calendar months
  are not.
- Calendar windows: ``startTime`` (``2022-01-01 12:00:00``, no offset) in ``timeZone`` (an IANA
  name, checked with :mod:`zoneinfo`).
- The PromQL comes from ``metricSource.spec.query``; ``metricSource.type`` and a referenced
  DataSource's ``type`` must be Prometheus (or absent, or the spec examples' placeholder
  ``Any``): other sources are refused. A query that
  has no ``{{.window}}`` is wrapped so that it counts events over the window, as relia's SLIs
  need: for ``counter: true`` ``sum(increase(Q[{{.window}}]))``, otherwise
  ``sum(sum_over_time((Q)[{{.window}}:]))``; a ``raw`` ratio is averaged (``avg_over_time``), and
  ``rawType: success`` becomes ``1 - (Q)``.
- ``thresholdMetric`` with Timeslices/RatioTimeslices is a threshold SLI (a slice is good when
  ``query op value``). With Occurrences every data point is an event: good events are the
  points that meet ``op value`` (``count_over_time(((Q) < 500)[{{.window}}:])``), all events
  all points.
- Alert policies (inline or ``alertPolicyRef``) whose condition is ``kind: burnrate`` become
  relia alert windows: ``threshold`` is the burn rate, ``lookbackWindow`` the long window,
  ``alertAfter`` the short window (the burn must still be that high over the last alertAfter,
  which is what the SRE Workbook's short window checks; when absent the short window is 1/12 of
  the long one, the Workbook's ratio). ``severity`` page/critical → page, ticket/warning →
  ticket. An op other than gt/gte, or a condition that would spend more than the whole budget,
  is reported as unsupported.
- Slice fields a budgeting method does not use (``timeSliceWindow``/``timeSliceTarget`` under
  Occurrences, ``timeSliceTarget`` under RatioTimeslices), ``alertWhenNoData: true`` and
  ``alertWhenBreaching: false`` are reported: relia would not honour them.
- Not mapped: metadata labels and annotations, notification targets (relia's sinks notify),
  ``alertWhenResolved``, a DataSource's ``connectionDetails``, composite SLOs
  (``compositeWeight``, reported as unsupported).

**v1alpha** (the dialect in Sloth's ``openslo-getting-started.yml``): Sloth's subset, read the
way Sloth reads it: each objective's ``ratioMetrics`` good/total queries (source prometheus or
sloth, queryType promql) make an SLO named ``<metadata.name>-<index>`` without alerts. Unlike
Sloth, the period is taken from ``timeWindows`` rather than always 30 days.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, Field

from relia._yamlkeys import Loc
from relia.slo.loader import (
    Built,
    CamelInputModel,
    Document,
    Name,
    Problems,
    Query,
    Text,
    build_slo,
    calendar_start,
    camel_name,
    check_query,
    validate,
)
from relia.slo.spec import format_duration

__all__ = ["from_documents", "from_v1alpha", "parse_openslo_duration"]

_UNITS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_LONG_UNITS = {"M": 30 * 86400, "Q": 90 * 86400, "Y": 365 * 86400}
_SHORTHAND = re.compile(r"(\d+)([mhdwMQY])")


def parse_openslo_duration(text: object, *, calendar: bool = False) -> int:
    """An OpenSLO duration shorthand (``28d``, ``2w``, ``1M``) in seconds. ``M``/``Q``/``Y`` are
    30/90/365 days, and refused for ``calendar`` windows. ValueError when it cannot be read."""
    if not isinstance(text, str) or not (m := _SHORTHAND.fullmatch(text.strip())):
        raise ValueError(
            f"invalid duration {text!r}: expected a whole number and one unit of m, h, d, w, "
            "M, Q, Y (e.g. 28d, 2w, 1M)"
        )
    count, unit = int(m.group(1)), m.group(2)
    if count <= 0:
        raise ValueError(f"duration {text!r} must be positive")
    if unit in _LONG_UNITS:
        if calendar:
            raise ValueError(
                f"a calendar-aligned {text!r} is not supported: relia's periods are a fixed "
                "number of seconds and calendar months, quarters and years are not; use days or "
                "weeks (e.g. 4w), or a rolling window"
            )
        return count * _LONG_UNITS[unit]
    return count * _UNITS[unit]


# --- v1 objects ---------------------------------------------------------------------------------

_KINDS = (
    "SLO",
    "SLI",
    "DataSource",
    "AlertPolicy",
    "AlertCondition",
    "AlertNotificationTarget",
    "Service",
)
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")


class _Metadata(CamelInputModel):
    name: Name
    display_name: Text | None = None
    labels: dict[str, Any] | None = None
    annotations: dict[str, Any] | None = None


class _Object(CamelInputModel):
    api_version: Literal["openslo/v1"]
    kind: Literal[
        "SLO",
        "SLI",
        "DataSource",
        "AlertPolicy",
        "AlertCondition",
        "AlertNotificationTarget",
        "Service",
    ]
    metadata: _Metadata
    spec: dict[str, Any]


class _Inline(CamelInputModel):
    """An object written inside another: ``kind`` (not for an inline indicator), metadata, spec."""

    kind: str | None = None
    metadata: _Metadata
    spec: dict[str, Any]


class _MetricSource(CamelInputModel):
    metric_source_ref: Text | None = None
    type: Text | None = None
    spec: dict[str, Any] = Field(min_length=1)


class _MetricSpec(CamelInputModel):
    metric_source: _MetricSource


class _Ratio(CamelInputModel):
    counter: bool = False
    good: _MetricSpec | None = None
    bad: _MetricSpec | None = None
    total: _MetricSpec | None = None
    raw_type: Literal["success", "failure"] | None = None
    raw: _MetricSpec | None = None


class _SLISpec(CamelInputModel):
    description: Text = ""
    threshold_metric: _MetricSpec | None = None
    ratio_metric: _Ratio | None = None


class _Calendar(CamelInputModel):
    start_time: Any
    time_zone: Text


class _TimeWindow(CamelInputModel):
    duration: Any
    is_rolling: bool | None = None
    calendar: _Calendar | None = None


_Op = Literal["lt", "lte", "gt", "gte"]


class _Objective(CamelInputModel):
    display_name: Text | None = None
    op: _Op | None = None
    value: float | None = None
    target: float | None = Field(None, gt=0, lt=1)
    target_percent: float | None = Field(None, gt=0, lt=100)
    time_slice_target: float | None = Field(None, gt=0, le=1)
    time_slice_window: Any = None
    indicator: dict[str, Any] | None = None
    indicator_ref: Text | None = None
    composite_weight: float | None = None


class _SLOSpec(CamelInputModel):
    description: Text = ""
    service: Name
    indicator: dict[str, Any] | None = None
    indicator_ref: Text | None = None
    budgeting_method: Literal["Occurrences", "Timeslices", "RatioTimeslices"]
    time_window: list[_TimeWindow] = Field(min_length=1, max_length=1)
    objectives: list[_Objective] = Field(min_length=1)
    alert_policies: list[dict[str, Any]] | None = None


class _DataSourceSpec(CamelInputModel):
    description: Text = ""
    type: Name
    connection_details: Any


class _AlertPolicySpec(CamelInputModel):
    description: Text = ""
    alert_when_no_data: bool | None = None
    alert_when_breaching: bool | None = None
    alert_when_resolved: bool | None = None
    conditions: list[dict[str, Any]] = Field(min_length=1, max_length=1)
    notification_targets: list[dict[str, Any]] | None = None


class _Condition(CamelInputModel):
    kind: Literal["burnrate"]
    op: _Op
    threshold: float
    lookback_window: Any
    alert_after: Any = None


class _AlertConditionSpec(CamelInputModel):
    description: Text = ""
    severity: Name
    condition: _Condition


class _TargetSpec(CamelInputModel):
    description: Text = ""
    target: Name


class _ServiceSpec(CamelInputModel):
    description: Text = ""


_SPECS: dict[str, type[BaseModel]] = {
    "SLO": _SLOSpec,
    "SLI": _SLISpec,
    "DataSource": _DataSourceSpec,
    "AlertPolicy": _AlertPolicySpec,
    "AlertCondition": _AlertConditionSpec,
    "AlertNotificationTarget": _TargetSpec,
    "Service": _ServiceSpec,
}


@dataclass
class _Obj:
    """A parsed OpenSLO object and where it was written (``loc`` inside ``doc``)."""

    kind: str
    name: str
    display_name: str | None
    doc: Document
    loc: Loc
    spec: Any


class _Registry:
    """Named top-level objects of every document given, for references."""

    def __init__(self, problems: Problems) -> None:
        self.problems = problems
        self.objects: dict[tuple[str, str], _Obj] = {}
        # (kind, name) of objects written but not valid: their problems are already recorded,
        # so a reference to one is not reported again as unknown.
        self.invalid: set[tuple[str, str]] = set()

    def add(self, obj: _Obj) -> None:
        key = (obj.kind, obj.name)
        if key in self.objects:
            first = self.objects[key]
            self.problems.add(
                obj.doc,
                (*obj.loc, "metadata", "name"),
                f"a second {obj.kind} named {obj.name!r} (the first is in {first.doc.file}, "
                f"document {first.doc.index + 1})",
            )
            return
        self.objects[key] = obj

    def get(self, kind: str, name: str, doc: Document, loc: Loc) -> _Obj | None:
        obj = self.objects.get((kind, name))
        if obj is None and (kind, name) not in self.invalid:
            self.problems.add(
                doc,
                loc,
                f"unknown {kind} {name!r}: no kind: {kind} with that metadata.name in the files "
                "given",
            )
        return obj


def _check_name(doc: Document, loc: Loc, name: str, problems: Problems) -> bool:
    if not _DNS_LABEL.fullmatch(name):
        problems.add(
            doc,
            (*loc, "metadata", "name"),
            f"{name!r} is not a valid OpenSLO name (lowercase letters, digits and -, at most 63)",
        )
        return False
    return True


def _kind_and_name(data: object) -> tuple[str, str] | None:
    """The ``kind`` and ``metadata.name`` written in an object, where both are text."""
    if not isinstance(data, dict):
        return None
    kind, metadata = data.get("kind"), data.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return (kind, name) if isinstance(kind, str) and isinstance(name, str) else None


def _parse_object(doc: Document, problems: Problems) -> _Obj | None:
    top = validate(doc, _Object, doc.data, (), problems)
    if top is None:
        return None
    if not _check_name(doc, (), top.metadata.name, problems):
        return None
    spec = validate(doc, _SPECS[top.kind], top.spec, ("spec",), problems)
    if spec is None:
        return None
    return _Obj(top.kind, top.metadata.name, top.metadata.display_name, doc, (), spec)


def _parse_inline(
    doc: Document, loc: Loc, data: object, kind: str, problems: Problems, *, with_kind: bool
) -> _Obj | None:
    """An object written inline at ``loc``; ``with_kind``: its ``kind:`` must be written."""
    inline = validate(doc, _Inline, data, loc, problems)
    if inline is None:
        return None
    if with_kind and inline.kind != kind:
        problems.add(doc, (*loc, "kind"), f"expected kind: {kind}, got {inline.kind!r}")
        return None
    if not with_kind and inline.kind is not None:
        problems.add(doc, (*loc, "kind"), "unknown field 'kind' (an inline indicator has none)")
        return None
    if not _check_name(doc, loc, inline.metadata.name, problems):
        return None
    spec = validate(doc, _SPECS[kind], inline.spec, (*loc, "spec"), problems)
    if spec is None:
        return None
    return _Obj(kind, inline.metadata.name, inline.metadata.display_name, doc, loc, spec)


def _ref_or_inline(
    doc: Document,
    loc: Loc,
    data: dict[str, Any],
    kind: str,
    ref_key: str,
    registry: _Registry,
) -> _Obj | None:
    """``{<ref_key>: name}`` resolved in the registry, or an inline object of ``kind``."""
    if ref_key in data:
        extra = [k for k in data if k != ref_key]
        if extra:
            registry.problems.add(
                doc, (*loc, str(extra[0])), f"unknown field {extra[0]!r} next to {ref_key}"
            )
            return None
        name = data[ref_key]
        if not isinstance(name, str):
            registry.problems.add(doc, (*loc, ref_key), f"expected the name of a {kind}")
            return None
        return registry.get(kind, name, doc, (*loc, ref_key))
    return _parse_inline(doc, loc, data, kind, registry.problems, with_kind=True)


# --- queries --------------------------------------------------------------------------------

_WINDOW = "{{.window}}"
_SELECTOR = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^{}]*\})?")


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else repr(value)


def _events_query(query: str, counter: bool) -> str:
    """A query that counts events over ``{{.window}}`` (see the module docstring)."""
    if _WINDOW in query:
        return query
    q = query.strip()
    if counter:
        ranged = f"{q}[{_WINDOW}]" if _SELECTOR.fullmatch(q) else f"({q})[{_WINDOW}:]"
        return f"sum(increase({ranged}))"
    return f"sum(sum_over_time(({q})[{_WINDOW}:]))"


_PROMQL_OPS = {"lt": "<", "lte": "<=", "gt": ">", "gte": ">="}


#: ``metricSource.type`` / DataSource ``type`` values relia reads (case aside): its queries are
#: PromQL. Another source's query (Datadog's ``sum:x{a:b}.as_count()``) would be sent to
#: Prometheus as if it were PromQL, so it is refused rather than computing something else.
#: ``Any`` is the placeholder of the OpenSLO spec's own examples ("any service with the needed
#: metrics"): it names no other system, so it is read as PromQL too.
_PROMQL_SOURCES = frozenset({"prometheus", "any"})


def _check_source_type(doc: Document, loc: Loc, type_: str, problems: Problems) -> bool:
    if type_.strip().lower() in _PROMQL_SOURCES:
        return True
    problems.add(
        doc,
        loc,
        f"type {type_!r} is not supported: relia reads PromQL from Prometheus (type: Prometheus)",
    )
    return False


def _source_query(doc: Document, loc: Loc, metric: _MetricSpec, registry: _Registry) -> str | None:
    source = metric.metric_source
    ok = True
    # A source that is not Prometheus is a problem of its own: the SLO is still read, so its
    # other problems are reported in the same run.
    if source.type is not None:
        _check_source_type(doc, (*loc, "type"), source.type, registry.problems)
    if source.metric_source_ref is not None:
        ds = registry.get("DataSource", source.metric_source_ref, doc, (*loc, "metricSourceRef"))
        if ds is None:
            ok = False
        else:
            dspec: _DataSourceSpec = ds.spec
            _check_source_type(ds.doc, (*ds.loc, "spec", "type"), dspec.type, registry.problems)
    query = source.spec.get("query", source.spec.get("promql"))
    if not isinstance(query, str) or not query.strip():
        registry.problems.add(
            doc,
            (*loc, "spec", "query"),
            "relia reads the PromQL query from metricSource.spec.query; it is missing or not text",
        )
        return None
    try:
        checked = check_query(query)
    except ValueError as exc:
        registry.problems.add(doc, (*loc, "spec", "query"), str(exc))
        return None
    return checked if ok else None


def _sli_from(
    indicator: _Obj,
    objective: _Objective,
    objective_loc: Loc,
    budgeting: str,
    doc: Document,
    registry: _Registry,
) -> dict[str, Any] | None:
    """relia's SLI fields for one objective measured by ``indicator``."""
    problems = registry.problems
    spec: _SLISpec = indicator.spec
    iloc: Loc = (*indicator.loc, "spec")
    idoc = indicator.doc
    if (spec.threshold_metric is None) == (spec.ratio_metric is None):
        problems.add(idoc, iloc, "give exactly one of thresholdMetric and ratioMetric")
        return None
    if spec.threshold_metric is not None:
        mloc: Loc = (*iloc, "thresholdMetric", "metricSource")
        query = _source_query(idoc, mloc, spec.threshold_metric, registry)
        if objective.op is None or objective.value is None:
            problems.add(
                doc,
                objective_loc,
                "a thresholdMetric SLI needs op and value in the objective (e.g. op: lte, "
                "value: 0.3)",
            )
            return None
        if query is None:
            return None
        if budgeting == "occurrences":
            # Each data point is an event; the good ones meet the threshold.
            cond = f"({query.strip()}) {_PROMQL_OPS[objective.op]} {_number(objective.value)}"
            return {
                "kind": "events",
                "good_query": f"sum(count_over_time(({cond})[{_WINDOW}:]))",
                "total_query": f"sum(count_over_time(({query.strip()})[{_WINDOW}:]))",
            }
        return {"kind": "threshold", "query": query, "op": objective.op, "value": objective.value}
    ratio = spec.ratio_metric
    assert ratio is not None
    rloc: Loc = (*iloc, "ratioMetric")
    if (ratio.total is None) == (ratio.raw is None):
        problems.add(idoc, rloc, "give exactly one of total (with good or bad) and raw")
        return None
    if ratio.raw is not None:
        if ratio.good is not None or ratio.bad is not None:
            problems.add(idoc, rloc, "a raw ratio takes no good or bad metric")
            return None
        if ratio.raw_type is None:
            problems.add(idoc, (*rloc, "rawType"), "required field is missing (success or failure)")
            return None
        query = _source_query(idoc, (*rloc, "raw", "metricSource"), ratio.raw, registry)
        if query is None:
            return None
        if ratio.raw_type == "success":
            query = f"1 - ({query.strip()})"
        if _WINDOW not in query:
            query = f"avg_over_time(({query.strip()})[{_WINDOW}:])"
        return {"kind": "raw", "error_ratio_query": query}
    if (ratio.good is None) == (ratio.bad is None):
        problems.add(idoc, rloc, "give exactly one of good and bad (with total)")
        return None
    assert ratio.total is not None
    numerator_key = "good" if ratio.good is not None else "bad"
    numerator = ratio.good or ratio.bad
    assert numerator is not None
    num = _source_query(idoc, (*rloc, numerator_key, "metricSource"), numerator, registry)
    total = _source_query(idoc, (*rloc, "total", "metricSource"), ratio.total, registry)
    if num is None or total is None:
        return None
    out = {"kind": "events", "total_query": _events_query(total, ratio.counter)}
    out["good_query" if numerator_key == "good" else "error_query"] = _events_query(
        num, ratio.counter
    )
    return out


# --- time windows -----------------------------------------------------------------------------


def _window(doc: Document, loc: Loc, tw: _TimeWindow, problems: Problems) -> dict[str, Any] | None:
    calendar = tw.calendar is not None
    rolling = tw.is_rolling if tw.is_rolling is not None else not calendar
    if rolling and calendar:
        problems.add(doc, (*loc, "calendar"), "a rolling window (isRolling: true) has no calendar")
        return None
    if not rolling and not calendar:
        problems.add(doc, (*loc, "isRolling"), "isRolling: false needs a calendar")
        return None
    try:
        period = parse_openslo_duration(tw.duration, calendar=calendar)
    except ValueError as exc:
        problems.add(doc, (*loc, "duration"), str(exc))
        return None
    out: dict[str, Any] = {"period_s": period, "rolling": rolling}
    if tw.calendar is not None:
        try:
            start = calendar_start(tw.calendar.start_time, tw.calendar.time_zone)
        except ValueError as exc:
            bad = "timeZone" if "time zone" in str(exc) else "startTime"
            problems.add(doc, (*loc, "calendar", bad), str(exc))
            return None
        out.update(calendar_start=start, timezone=tw.calendar.time_zone)
    return out


# --- alert policies -------------------------------------------------------------------------

_PAGE = {"page", "critical"}
_TICKET = {"ticket", "warning"}


def _alert_windows(slo: _Obj, period_s: int, registry: _Registry) -> list[dict[str, Any]] | None:
    """The burn-rate windows of the SLO's alert policies; None when a policy cannot be mapped
    (problems recorded)."""
    spec: _SLOSpec = slo.spec
    problems = registry.problems
    windows: list[dict[str, Any]] = []
    ok = True
    seen: set[tuple[str, str]] = set()
    for i, entry in enumerate(spec.alert_policies or ()):
        ploc: Loc = (*slo.loc, "spec", "alertPolicies", i)
        policy = _ref_or_inline(slo.doc, ploc, entry, "AlertPolicy", "alertPolicyRef", registry)
        if policy is None:
            ok = False
            continue
        pspec: _AlertPolicySpec = policy.spec
        if not _policy_flags(policy, problems):
            ok = False
        for j, target in enumerate(pspec.notification_targets or ()):
            tloc: Loc = (*policy.loc, "spec", "notificationTargets", j)
            if (
                _ref_or_inline(
                    policy.doc, tloc, target, "AlertNotificationTarget", "targetRef", registry
                )
                is None
            ):
                ok = False
        cloc: Loc = (*policy.loc, "spec", "conditions", 0)
        cond = _ref_or_inline(
            policy.doc, cloc, pspec.conditions[0], "AlertCondition", "conditionRef", registry
        )
        if cond is None:
            ok = False
            continue
        window = _condition_window(cond, period_s, problems)
        if window is None:
            ok = False
            continue
        key = (window["severity"], window["name"])
        if key in seen:
            problems.add(slo.doc, ploc, f"the alert condition {cond.name!r} is used twice")
            ok = False
            continue
        seen.add(key)
        windows.append(window)
    return windows if ok else None


def _policy_flags(policy: _Obj, problems: Problems) -> bool:
    """Refuse the alert-policy switches relia cannot honour, rather than drop them silently:
    ``alertWhenNoData: true`` (no rule or evaluation alerts on missing data) and
    ``alertWhenBreaching: false`` (relia's burn-rate alerts are alerts on breaching).
    ``alertWhenResolved`` is left to the notifier (Alertmanager's ``send_resolved``)."""
    spec: _AlertPolicySpec = policy.spec
    ok = True
    if spec.alert_when_no_data:
        problems.add(
            policy.doc,
            (*policy.loc, "spec", "alertWhenNoData"),
            "alertWhenNoData: true is not supported: relia's burn-rate alerts do not fire on "
            "missing data (alert on absent() in Prometheus instead)",
        )
        ok = False
    if spec.alert_when_breaching is False:
        problems.add(
            policy.doc,
            (*policy.loc, "spec", "alertWhenBreaching"),
            "alertWhenBreaching: false is not supported: relia's alerts fire while the burn-rate "
            "condition is breached",
        )
        ok = False
    return ok


def _condition_window(cond: _Obj, period_s: int, problems: Problems) -> dict[str, Any] | None:
    spec: _AlertConditionSpec = cond.spec
    loc: Loc = (*cond.loc, "spec", "condition")
    c = spec.condition
    ok = True
    severity = spec.severity.lower()
    if severity in _PAGE:
        sev = "page"
    elif severity in _TICKET:
        sev = "ticket"
    else:
        problems.add(
            cond.doc,
            (*cond.loc, "spec", "severity"),
            f"severity {spec.severity!r} is not supported: relia has page alerts (page, "
            "critical) and ticket alerts (ticket, warning)",
        )
        ok = False
    if c.op not in ("gt", "gte"):
        problems.add(
            cond.doc,
            (*loc, "op"),
            f"op {c.op!r} is not supported: a burn-rate alert fires when the burn rate exceeds "
            "the threshold (gt or gte)",
        )
        ok = False
    if c.threshold <= 0:
        problems.add(cond.doc, (*loc, "threshold"), "the burn-rate threshold must be positive")
        ok = False
    try:
        long_s = parse_openslo_duration(c.lookback_window)
    except ValueError as exc:
        problems.add(cond.doc, (*loc, "lookbackWindow"), str(exc))
        return None
    if c.alert_after is None:
        short_s = max(long_s // 12, 1)
    else:
        try:
            short_s = parse_openslo_duration(c.alert_after)
        except ValueError as exc:
            problems.add(cond.doc, (*loc, "alertAfter"), str(exc))
            return None
        if short_s >= long_s:
            problems.add(
                cond.doc,
                (*loc, "alertAfter"),
                "relia reads alertAfter as the short window: it must be shorter than "
                "lookbackWindow",
            )
            ok = False
    if long_s > period_s:
        problems.add(
            cond.doc,
            (*loc, "lookbackWindow"),
            f"longer than the SLO period {format_duration(period_s)}",
        )
        ok = False
    if not ok:
        return None
    percent = c.threshold * long_s / period_s * 100
    if percent > 100:
        problems.add(
            cond.doc,
            (*loc, "threshold"),
            f"a burn rate of {c.threshold:g} over {format_duration(long_s)} would spend "
            f"{percent:.0f}% of the budget of a {format_duration(period_s)} period; not "
            "supported",
        )
        return None
    return {
        "severity": sev,
        "name": cond.name,
        "budget_percent": percent,
        "long_s": long_s,
        "short_s": short_s,
        "burn_rate": c.threshold,
    }


# --- SLOs -------------------------------------------------------------------------------------


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def _objective_names(spec: _SLOSpec) -> list[str]:
    """Suffixes for several objectives: slugs of their displayName, or the index when a
    displayName is missing or two would be the same."""
    slugs = [_slug(o.display_name or "") for o in spec.objectives]
    if all(slugs) and len(set(slugs)) == len(slugs):
        return slugs
    return [str(i) for i in range(len(spec.objectives))]


_BUDGETING = {
    "Occurrences": "occurrences",
    "Timeslices": "timeslices",
    "RatioTimeslices": "ratio_timeslices",
}


def _rename(oloc: Loc, wloc: Loc) -> dict[str, Loc]:
    return {
        "objective": (*oloc, "target"),
        "window": wloc,
        "timeslice_window_s": (*oloc, "timeSliceWindow"),
        "timeslice_target": (*oloc, "timeSliceTarget"),
        "budgeting": ("spec", "budgetingMethod"),
        "sli": oloc,
        "name": ("metadata", "name"),
        "service": ("spec", "service"),
    }


def _slos_of(slo: _Obj, registry: _Registry) -> list[Built]:
    problems = registry.problems
    doc = slo.doc
    spec: _SLOSpec = slo.spec
    budgeting = _BUDGETING[spec.budgeting_method]
    wloc: Loc = ("spec", "timeWindow", 0)
    window = _window(doc, wloc, spec.time_window[0], problems)
    if spec.indicator is not None and spec.indicator_ref is not None:
        problems.add(doc, ("spec", "indicatorRef"), "give indicator or indicatorRef, not both")
        return []
    shared: _Obj | None = None
    shared_ok = True
    if spec.indicator is not None:
        shared = _parse_inline(
            doc, ("spec", "indicator"), spec.indicator, "SLI", problems, with_kind=False
        )
        shared_ok = shared is not None
    elif spec.indicator_ref is not None:
        shared = registry.get("SLI", spec.indicator_ref, doc, ("spec", "indicatorRef"))
        shared_ok = shared is not None
    alerts = _alert_windows(slo, window["period_s"], registry) if window else None
    names = _objective_names(spec)
    built: list[Built] = []
    for i, objective in enumerate(spec.objectives):
        oloc: Loc = ("spec", "objectives", i)
        indicator = shared
        if objective.composite_weight is not None:
            problems.add(
                doc,
                (*oloc, "compositeWeight"),
                "composite SLOs are not supported; relia reads each objective as its own SLO",
            )
            continue
        if objective.indicator is not None or objective.indicator_ref is not None:
            if spec.indicator is not None or spec.indicator_ref is not None:
                problems.add(
                    doc, oloc, "an indicator on the SLO and on the objective: give one of them"
                )
                continue
            if objective.indicator is not None:
                indicator = _parse_inline(
                    doc, (*oloc, "indicator"), objective.indicator, "SLI", problems, with_kind=False
                )
            elif objective.indicator_ref is not None:
                indicator = registry.get(
                    "SLI", objective.indicator_ref, doc, (*oloc, "indicatorRef")
                )
        elif indicator is None:
            if shared_ok:
                problems.add(doc, ("spec",), "required field is missing: indicator or indicatorRef")
                shared_ok = False
            continue
        if (objective.target is None) == (objective.target_percent is None):
            problems.add(doc, oloc, "give exactly one of target and targetPercent")
            continue
        percent = (
            objective.target * 100 if objective.target is not None else objective.target_percent
        )
        fields: dict[str, Any] = {
            "service": spec.service,
            "name": slo.name if len(spec.objectives) == 1 else f"{slo.name}-{names[i]}",
            "description": spec.description or slo.display_name or "",
            "objective": percent,
            "budgeting": budgeting,
        }
        ok = indicator is not None and window is not None and alerts is not None
        # As relia's own format does: a slice field the method does not use would be dropped
        # silently, so the spec would promise something relia does not compute.
        unused = {
            "occurrences": (
                ("timeSliceWindow", objective.time_slice_window),
                ("timeSliceTarget", objective.time_slice_target),
            ),
            "ratio_timeslices": (("timeSliceTarget", objective.time_slice_target),),
        }.get(budgeting, ())
        for field_name, value in unused:
            if value is not None:
                used_by = (
                    "the timeslice methods" if field_name == "timeSliceWindow" else "Timeslices"
                )
                problems.add(
                    doc,
                    (*oloc, field_name),
                    f"not used by budgetingMethod {spec.budgeting_method}, only by {used_by}",
                )
                ok = False
        if budgeting != "occurrences":
            if objective.time_slice_window is None:
                problems.add(
                    doc,
                    (*oloc, "timeSliceWindow"),
                    f"required field is missing (budgetingMethod {spec.budgeting_method})",
                )
                ok = False
            else:
                try:
                    slice_s = parse_openslo_duration(objective.time_slice_window)
                except ValueError as exc:
                    problems.add(doc, (*oloc, "timeSliceWindow"), str(exc))
                    ok = False
                else:
                    fields["timeslice_window_s"] = slice_s
                    if window is not None and window["period_s"] % slice_s:
                        problems.add(
                            doc,
                            (*oloc, "timeSliceWindow"),
                            f"the slices must tile the period: {format_duration(slice_s)} does "
                            f"not divide {format_duration(window['period_s'])}",
                        )
                        ok = False
            if budgeting == "timeslices" and objective.time_slice_target is None:
                problems.add(
                    doc,
                    (*oloc, "timeSliceTarget"),
                    "required field is missing (budgetingMethod Timeslices)",
                )
                ok = False
            fields["timeslice_target"] = objective.time_slice_target
        if indicator is None:
            continue
        sli = _sli_from(indicator, objective, oloc, budgeting, doc, registry)
        if sli is None or not ok or window is None or alerts is None:
            continue
        fields["sli"] = sli
        fields["window"] = window
        windows = alerts
        if windows:
            severities = {w["severity"] for w in windows}
            fields["alert_windows"] = windows
            fields["alerting"] = {
                "name": camel_name(slo.name),
                "page": {"disabled": "page" not in severities},
                "ticket": {"disabled": "ticket" not in severities},
            }
        made = build_slo(doc, oloc, fields, problems, _rename(oloc, wloc))
        if made is not None:
            built.append(Built(made, "openslo/v1", doc, oloc))
    return built


def from_documents(docs: list[Document], problems: Problems) -> list[Built]:
    """The SLOs of every ``openslo/v1`` document given (references resolve across all)."""
    registry = _Registry(problems)
    for doc in docs:
        obj = _parse_object(doc, problems)
        if obj is not None:
            registry.add(obj)
        elif (written := _kind_and_name(doc.data)) is not None:
            registry.invalid.add(written)
    built: list[Built] = []
    for obj in list(registry.objects.values()):
        if obj.kind == "SLO":
            built += _slos_of(obj, registry)
        elif obj.kind == "AlertPolicy":
            # Checked even when no SLO uses it, so a broken reference is found early. (Those an
            # SLO uses are checked again there; the same problem is reported once.)
            _policy_refs(obj, registry)
    return built


def _policy_refs(policy: _Obj, registry: _Registry) -> None:
    pspec: _AlertPolicySpec = policy.spec
    _policy_flags(policy, registry.problems)
    for j, target in enumerate(pspec.notification_targets or ()):
        tloc: Loc = (*policy.loc, "spec", "notificationTargets", j)
        _ref_or_inline(policy.doc, tloc, target, "AlertNotificationTarget", "targetRef", registry)
    cloc: Loc = (*policy.loc, "spec", "conditions", 0)
    condition = pspec.conditions[0]
    _ref_or_inline(policy.doc, cloc, condition, "AlertCondition", "conditionRef", registry)


# --- v1alpha (Sloth's subset) ---------------------------------------------------------------


class _AlphaMetric(CamelInputModel):
    source: Literal["prometheus", "sloth"]
    query_type: Literal["promql"]
    query: Query


class _AlphaRatio(CamelInputModel):
    good: _AlphaMetric
    total: _AlphaMetric
    counter: bool = False


class _AlphaObjective(CamelInputModel):
    display_name: Text | None = None
    value: float | None = None
    op: Text | None = None
    target: float = Field(gt=0, lt=1)
    time_slice_target: float | None = None
    ratio_metrics: _AlphaRatio


_ALPHA_UNITS = {"Second": 1, "Minute": 60, "Hour": 3600, "Day": 86400, "Week": 7 * 86400}
_ALPHA_UNITS_ROLLING = {"Month": 30 * 86400, "Quarter": 90 * 86400, "Year": 365 * 86400}


class _AlphaTimeWindow(CamelInputModel):
    unit: Literal["Second", "Minute", "Hour", "Day", "Week", "Month", "Quarter", "Year"]
    count: int = Field(gt=0)
    is_rolling: bool | None = None
    calendar: _Calendar | None = None


class _AlphaSpec(CamelInputModel):
    time_windows: list[_AlphaTimeWindow] = Field(min_length=1, max_length=1)
    budgeting_method: Literal["Occurrences"]
    description: Text = ""
    indicator: Any = None
    service: Name
    objectives: list[_AlphaObjective] = Field(min_length=1)


class _AlphaMetadata(CamelInputModel):
    name: Name
    display_name: Text | None = None


class _AlphaDoc(CamelInputModel):
    api_version: Literal["openslo/v1alpha"]
    kind: Literal["SLO"]
    metadata: _AlphaMetadata
    spec: _AlphaSpec


def from_v1alpha(doc: Document, problems: Problems) -> list[Built]:
    """The SLOs of one ``openslo/v1alpha`` SLO document, read as Sloth reads it."""
    if isinstance(doc.data, dict) and doc.data.get("kind") == "Service":
        return []  # a v1alpha Service describes the service only
    top = validate(doc, _AlphaDoc, doc.data, (), problems)
    if top is None:
        return []
    spec = top.spec
    tw = spec.time_windows[0]
    wloc: Loc = ("spec", "timeWindows", 0)
    calendar = tw.calendar is not None
    rolling = tw.is_rolling if tw.is_rolling is not None else not calendar
    if rolling and calendar:
        problems.add(doc, (*wloc, "calendar"), "a rolling window (isRolling: true) has no calendar")
        return []
    if not rolling and not calendar:
        problems.add(doc, (*wloc, "isRolling"), "isRolling: false needs a calendar")
        return []
    if tw.unit in _ALPHA_UNITS_ROLLING:
        if calendar:
            problems.add(
                doc,
                (*wloc, "unit"),
                f"a calendar-aligned {tw.unit} is not supported (relia's periods are a fixed "
                "number of seconds); use Day or Week, or a rolling window",
            )
            return []
        unit_s = _ALPHA_UNITS_ROLLING[tw.unit]
    else:
        unit_s = _ALPHA_UNITS[tw.unit]
    window: dict[str, Any] = {"period_s": tw.count * unit_s, "rolling": rolling}
    if tw.calendar is not None:
        try:
            start = calendar_start(tw.calendar.start_time, tw.calendar.time_zone)
        except ValueError as exc:
            bad = "timeZone" if "time zone" in str(exc) else "startTime"
            problems.add(doc, (*wloc, "calendar", bad), str(exc))
            return []
        window.update(calendar_start=start, timezone=tw.calendar.time_zone)
    built: list[Built] = []
    for i, objective in enumerate(spec.objectives):
        oloc: Loc = ("spec", "objectives", i)
        ratio = objective.ratio_metrics
        fields = {
            "service": spec.service,
            # Sloth's naming: <metadata.name>-<objective index>, always suffixed.
            "name": f"{top.metadata.name}-{i}",
            "description": spec.description,
            "objective": objective.target * 100,
            "sli": {
                "kind": "events",
                "good_query": _events_query(ratio.good.query, ratio.counter),
                "total_query": _events_query(ratio.total.query, ratio.counter),
            },
            "window": window,
            # Sloth generates no alerts for OpenSLO specs.
            "alerting": {
                "name": camel_name(spec.service, top.metadata.name, str(i)),
                "page": {"disabled": True},
                "ticket": {"disabled": True},
            },
        }
        rename: dict[str, Loc] = {
            "objective": (*oloc, "target"),
            "window": wloc,
            "sli": (*oloc, "ratioMetrics"),
            "name": ("metadata", "name"),
            "service": ("spec", "service"),
        }
        made = build_slo(doc, oloc, fields, problems, rename)
        if made is not None:
            built.append(Built(made, "openslo/v1alpha", doc, oloc))
    return built
