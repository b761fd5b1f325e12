"""OpenSLO v1 specs: the shared examples, references across documents and files, alert policies,
durations, and every kind of problem with its place."""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from relia.errors import ConfigError
from relia.slo.loader import load_slo_text, load_slos, load_specs
from relia.slo.openslo import parse_openslo_duration
from relia.slo.spec import BudgetingMethod, EventsSLI, RawSLI, ThresholdSLI

SLO_DATA = Path(
    os.environ.get("RELIA_SLO_DATA", Path(__file__).resolve().parents[3] / "shared/data/slo")
)
OPENSLO = SLO_DATA / "openslo"
needs_data = pytest.mark.skipif(
    not OPENSLO.is_dir(), reason=f"OpenSLO examples not found at {OPENSLO} (set RELIA_SLO_DATA)"
)
DAY = 86400
NEW_YORK = ZoneInfo("America/New_York")


@needs_data
def test_the_examples_placeholder_source_type_any_is_read_as_promql() -> None:
    # The OpenSLO examples say `type: Any` ("any service with the needed metrics"): no other
    # system is named, so the query is read as PromQL (a Datadog source is refused, below).
    (item,) = load_specs([OPENSLO / "budgeting-method_occurences-slo.yaml"])
    assert isinstance(item.slo.sli, EventsSLI) and "(Any)" in item.slo.sli.total_query


@needs_data
def test_occurrences_example_counts_data_points_that_meet_the_threshold(tmp_path: Path) -> None:
    (item,) = load_specs([OPENSLO / "budgeting-method_occurences-slo.yaml"])
    slo = item.slo
    assert item.format == "openslo/v1"
    assert slo.id == "web-shop-search-slo"
    assert slo.budgeting is BudgetingMethod.OCCURRENCES
    assert (slo.window.period_s, slo.window.rolling) == (14 * DAY, True)
    assert slo.objective == 99.0
    assert slo.alerting is None and slo.alert_windows is None  # alertPolicies: (empty)
    assert isinstance(slo.sli, EventsSLI)
    assert slo.sli.good_query == "sum(count_over_time(((Any) < 500)[{{.window}}:]))"
    assert slo.sli.total_query == "sum(count_over_time((Any)[{{.window}}:]))"


@needs_data
def test_ratio_timeslices_example(tmp_path: Path) -> None:
    (slo,) = load_slos([OPENSLO / "budgeting-method_ratio-timeslices.yaml"])
    assert slo.id == "web-shop-main-page"
    assert slo.budgeting is BudgetingMethod.RATIO_TIMESLICES
    assert (slo.window.period_s, slo.window.rolling) == (14 * DAY, True)
    assert slo.timeslice_window_s == 60
    assert slo.objective == 99.0
    assert isinstance(slo.sli, EventsSLI) and slo.sli.good_query is not None


@needs_data
def test_timeslices_example_has_two_objectives_on_a_calendar_window(tmp_path: Path) -> None:
    slos = load_slos([OPENSLO / "budgeting-method_timeslices-slo.yaml"])
    assert [s.id for s in slos] == [
        "web-availability-service-availability-internal-objective",
        "web-availability-service-availability-sla",
    ]
    assert [s.objective for s in slos] == [99.5, 99.0]
    assert [s.source.path for s in slos] == ["spec.objectives[0]", "spec.objectives[1]"]
    for slo in slos:
        assert slo.budgeting is BudgetingMethod.TIMESLICES
        assert (slo.timeslice_window_s, slo.timeslice_target) == (60, 0.99)
        # "duration: 1m" is one minute in OpenSLO (M is month), whatever the comment says.
        assert slo.window.period_s == 60 and not slo.window.rolling
        assert slo.window.calendar_start == datetime(2022, 1, 1, 12, tzinfo=NEW_YORK)
        assert slo.window.timezone == "America/New_York"
        assert slo.description == "SLO to see if we are above our SLA and to react before."


@needs_data
def test_low_traffic_example(tmp_path: Path) -> None:
    name = "treat-low-traffic-as-equally-important_timeslices-slo.yaml"
    (slo,) = load_slos([OPENSLO / name])
    assert slo.id == "web-availability-service-availability"
    assert slo.budgeting is BudgetingMethod.TIMESLICES
    assert slo.objective == 99.95
    assert (slo.timeslice_window_s, slo.timeslice_target) == (60, 0.95)
    assert (slo.window.period_s, slo.window.rolling) == (7 * DAY, False)
    assert slo.window.calendar_start == datetime(2022, 1, 1, 12, tzinfo=NEW_YORK)
    assert slo.description == "SLO for this important service"  # from displayName


@needs_data
def test_examples_with_the_same_slo_name_clash_when_loaded_together(tmp_path: Path) -> None:
    files = [
        OPENSLO / "budgeting-method_timeslices-slo.yaml",
        OPENSLO / "treat-low-traffic-as-equally-important_timeslices-slo.yaml",
    ]
    with pytest.raises(ConfigError, match="a second SLO named 'service-availability'"):
        load_slos(files)


SLO = """\
apiVersion: openslo/v1
kind: SLO
metadata:
  name: checkout-availability
spec:
  service: checkout
  indicatorRef: checkout-errors
  budgetingMethod: Occurrences
  timeWindow:
    - duration: 28d
      isRolling: true
  objectives:
    - target: 0.999
  alertPolicies:
    - alertPolicyRef: fast-burn
    - kind: AlertPolicy
      metadata:
        name: slow-burn
      spec:
        conditions:
          - kind: AlertCondition
            metadata:
              name: slow
            spec:
              severity: ticket
              condition:
                kind: burnrate
                op: gte
                threshold: 1
                lookbackWindow: 3d
                alertAfter: 6h
"""

SHARED = """\
apiVersion: openslo/v1
kind: SLI
metadata:
  name: checkout-errors
spec:
  ratioMetric:
    counter: true
    bad:
      metricSource:
        metricSourceRef: prom
        spec:
          query: http_requests_total{job="checkout",code=~"5.."}
    total:
      metricSource:
        metricSourceRef: prom
        spec:
          query: http_requests_total{job="checkout"}
---
apiVersion: openslo/v1
kind: DataSource
metadata:
  name: prom
spec:
  type: Prometheus
  connectionDetails:
    url: http://prometheus:9090
---
apiVersion: openslo/v1
kind: AlertPolicy
metadata:
  name: fast-burn
spec:
  conditions:
    - conditionRef: fast
  notificationTargets:
    - targetRef: on-call
---
apiVersion: openslo/v1
kind: AlertCondition
metadata:
  name: fast
spec:
  severity: critical
  condition:
    kind: burnrate
    op: gte
    threshold: 13.44
    lookbackWindow: 1h
---
apiVersion: openslo/v1
kind: AlertNotificationTarget
metadata:
  name: on-call
spec:
  target: pagerduty
---
apiVersion: openslo/v1
kind: Service
metadata:
  name: checkout
spec:
  description: The checkout
"""


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_references_resolve_across_files(tmp_path: Path) -> None:
    slo_file = write(tmp_path, "slo.yaml", SLO)
    shared = write(tmp_path, "shared.yaml", SHARED)
    (slo,) = load_slos([slo_file, shared])
    assert slo.id == "checkout-checkout-availability"
    assert slo.objective == 99.9
    assert slo.window.period_s == 28 * DAY
    assert isinstance(slo.sli, EventsSLI)
    # counter: true and no {{.window}}: the counters are turned into increases over the window.
    assert slo.sli.error_query == (
        'sum(increase(http_requests_total{job="checkout",code=~"5.."}[{{.window}}]))'
    )
    assert slo.sli.total_query == 'sum(increase(http_requests_total{job="checkout"}[{{.window}}]))'
    assert slo.alerting is not None
    assert slo.alerting.name == "CheckoutAvailability"
    assert not slo.alerting.page.disabled and not slo.alerting.ticket.disabled
    assert slo.alert_windows is not None
    page, ticket = slo.alert_windows
    # 13.44x for an hour spends 2 % of a 28-day budget; no alertAfter: short = long / 12.
    assert (page.severity, page.name, page.burn_rate) == ("page", "fast", 13.44)
    assert (page.long_s, page.short_s) == (3600, 300)
    assert page.budget_percent == pytest.approx(2.0)
    assert (ticket.severity, ticket.long_s, ticket.short_s) == ("ticket", 3 * DAY, 6 * 3600)
    assert ticket.budget_percent == pytest.approx(100 * 3 / 28)
    # The same objects in one file, in any order, give the same SLO.
    (same,) = load_slo_text(SHARED + "---\n" + SLO)
    assert same.model_dump(exclude={"source"}) == slo.model_dump(exclude={"source"})


def problems(*texts: str, tmp_path: Path) -> list[str]:
    paths = [write(tmp_path, f"f{i}.yaml", t) for i, t in enumerate(texts)]
    with pytest.raises(ConfigError) as info:
        load_slos(paths)
    return [line.replace(str(tmp_path) + "/", "") for line in str(info.value).splitlines()]


def test_unresolved_references_name_file_line_and_field(tmp_path: Path) -> None:
    shared = SHARED.replace("metricSourceRef: prom\n", "metricSourceRef: promm\n")
    assert problems(SLO.replace("fast-burn\n", "fast-brun\n"), shared, tmp_path=tmp_path) == [
        "f0.yaml:15: document 1: spec.alertPolicies[0].alertPolicyRef: unknown AlertPolicy "
        "'fast-brun': no kind: AlertPolicy with that metadata.name in the files given",
        "f1.yaml:10: document 1: spec.ratioMetric.bad.metricSource.metricSourceRef: unknown "
        "DataSource 'promm': no kind: DataSource with that metadata.name in the files given",
        "f1.yaml:15: document 1: spec.ratioMetric.total.metricSource.metricSourceRef: unknown "
        "DataSource 'promm': no kind: DataSource with that metadata.name in the files given",
    ]
    assert problems(SLO, tmp_path=tmp_path)[0] == (
        "f0.yaml:7: document 1: spec.indicatorRef: unknown SLI 'checkout-errors': no kind: SLI "
        "with that metadata.name in the files given"
    )


def test_a_reference_to_an_object_with_problems_reports_only_those_problems(
    tmp_path: Path,
) -> None:
    # The SLI and the policy exist: "unknown SLI" / "unknown AlertPolicy" would send the user
    # looking for a missing object.
    shared = SHARED.replace("    counter: true\n", "    countr: true\n")
    shared = shared.replace("    - conditionRef: fast\n", "    - 5\n")
    assert problems(SLO, shared, tmp_path=tmp_path) == [
        "f1.yaml:7: document 1: spec.ratioMetric.countr: unknown field 'countr'; did you mean "
        "'counter'?",
        "f1.yaml:34: document 3: spec.conditions[0]: expected a mapping, got the number 5",
    ]


def test_unsupported_alert_conditions_are_reported(tmp_path: Path) -> None:
    shared = SHARED.replace("op: gte\n    threshold: 13.44", "op: lt\n    threshold: 13.44")
    shared = shared.replace("severity: critical", "severity: sms")
    slo = SLO.replace("threshold: 1\n", "threshold: 20\n")
    assert problems(slo, shared, tmp_path=tmp_path) == [
        "f0.yaml:29: document 1: spec.alertPolicies[1].spec.conditions[0].spec.condition."
        "threshold: a burn rate of 20 over 3d would spend 214% of the budget of a 28d period; "
        "not supported",
        "f1.yaml:43: document 4: spec.severity: severity 'sms' is not supported: relia has page "
        "alerts (page, critical) and ticket alerts (ticket, warning)",
        "f1.yaml:46: document 4: spec.condition.op: op 'lt' is not supported: a burn-rate alert "
        "fires when the burn rate exceeds the threshold (gt or gte)",
    ]


INLINE = """\
apiVersion: openslo/v1
kind: SLO
metadata:
  name: api
spec:
  service: api
  indicator:
    metadata:
      name: api-sli
    spec:
      ratioMetric:
        rawType: success
        raw:
          metricSource:
            type: Prometheus
            spec:
              query: api:success_ratio
  budgetingMethod: Occurrences
  timeWindow:
    - duration: 1M
      isRolling: true
  objectives:
    - displayName: Strict
      targetPercent: 99.9
    - displayName: Loose
      target: 0.99
"""


def test_inline_raw_indicator_and_several_objectives() -> None:
    strict, loose = load_slo_text(INLINE)
    assert (strict.id, loose.id) == ("api-api-strict", "api-api-loose")
    assert (strict.objective, loose.objective) == (99.9, 99.0)
    assert strict.window.period_s == 30 * DAY  # a rolling 1M is 30 days, as the Go SDK says
    assert isinstance(strict.sli, RawSLI)
    assert strict.sli.error_ratio_query == "avg_over_time((1 - (api:success_ratio))[{{.window}}:])"


def test_objective_names_fall_back_to_the_index() -> None:
    text = INLINE.replace("displayName: Loose", "displayName: Strict")
    assert [s.name for s in load_slo_text(text)] == ["api-0", "api-1"]


def test_threshold_metric_with_timeslices_is_a_threshold_sli() -> None:
    text = INLINE.replace(
        "      ratioMetric:\n        rawType: success\n        raw:\n",
        "      thresholdMetric:\n",
    ).replace("budgetingMethod: Occurrences", "budgetingMethod: Timeslices")
    text = text.replace(
        "    - displayName: Strict\n      targetPercent: 99.9\n"
        "    - displayName: Loose\n      target: 0.99\n",
        "    - target: 0.99\n      op: lte\n      value: 0.3\n"
        "      timeSliceTarget: 1\n      timeSliceWindow: 5m\n",
    )
    (slo,) = load_slo_text(text)
    assert slo.sli == ThresholdSLI(query="api:success_ratio", op="lte", value=0.3)
    assert (slo.timeslice_window_s, slo.timeslice_target) == (300, 1.0)


def text_problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_slo_text(text, "o.yaml")
    return str(info.value).splitlines()


def test_objective_and_window_problems_are_placed() -> None:
    text = INLINE.replace(
        "duration: 1M\n      isRolling: true",
        "duration: 1M\n      calendar:\n"
        "        startTime: 2024-01-01 00:00:00\n        timeZone: Mars/Olympus",
    )
    assert text_problems(text) == [
        "o.yaml:20: document 1: spec.timeWindow[0].duration: a calendar-aligned '1M' is not "
        "supported: relia's periods are a fixed number of seconds and calendar months, quarters "
        "and years are not; use days or weeks (e.g. 4w), or a rolling window",
    ]
    text = text.replace("duration: 1M", "duration: 4w")
    assert text_problems(text) == [
        "o.yaml:23: document 1: spec.timeWindow[0].calendar.timeZone: unknown time zone "
        "'Mars/Olympus' (expected an IANA name like Europe/Berlin or UTC)",
    ]
    bad = INLINE.replace("targetPercent: 99.9", "targetPercent: 99.9\n      target: 0.99")
    bad = bad.replace("duration: 1M", "duration: 5x")
    assert text_problems(bad) == [
        "o.yaml:20: document 1: spec.timeWindow[0].duration: invalid duration '5x': expected a "
        "whole number and one unit of m, h, d, w, M, Q, Y (e.g. 28d, 2w, 1M)",
        "o.yaml:23: document 1: spec.objectives[0]: give exactly one of target and targetPercent",
    ]


def test_schema_problems_with_suggestions() -> None:
    text = INLINE.replace("budgetingMethod: Occurrences", "budgetingMetod: Occurrences")
    text = text.replace("target: 0.99", "target: 1.5")
    assert text_problems(text) == [
        "o.yaml:5: document 1: spec.budgetingMethod: required field is missing",
        "o.yaml:18: document 1: spec.budgetingMetod: unknown field 'budgetingMetod'; did you "
        "mean 'budgetingMethod'?",
        "o.yaml:26: document 1: spec.objectives[1].target: must be less than 1, got the number 1.5",
    ]
    assert text_problems(INLINE.replace("kind: SLO", "kind: Slo")) == [
        "o.yaml:2: document 1: kind: must be 'SLO', 'SLI', 'DataSource', 'AlertPolicy', "
        "'AlertCondition', 'AlertNotificationTarget' or 'Service', got the text 'Slo'"
    ]


def test_composite_and_missing_threshold_fields_are_reported() -> None:
    text = INLINE.replace(
        "      targetPercent: 99.9\n", "      targetPercent: 99.9\n      compositeWeight: 1\n"
    )
    assert text_problems(text) == [
        "o.yaml:25: document 1: spec.objectives[0].compositeWeight: composite SLOs are not "
        "supported; relia reads each objective as its own SLO"
    ]
    threshold = INLINE.replace(
        "      ratioMetric:\n        rawType: success\n        raw:\n", "      thresholdMetric:\n"
    )
    lines = text_problems(threshold)
    assert lines[0] == (
        "o.yaml:21: document 1: spec.objectives[0]: a thresholdMetric SLI needs op and value in "
        "the objective (e.g. op: lte, value: 0.3)"
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("1m", 60),
        ("5m", 300),
        ("1h", 3600),
        ("28d", 28 * DAY),
        ("2w", 14 * DAY),
        ("1M", 30 * DAY),
        ("1Q", 90 * DAY),
        ("1Y", 365 * DAY),
    ],
)
def test_openslo_durations(text: str, seconds: int) -> None:
    assert parse_openslo_duration(text) == seconds


@pytest.mark.parametrize("text", ["5x", "1h30m", "0d", "-1d", "d", "", "1.5h", "30"])
def test_bad_openslo_durations(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_openslo_duration(text)


def test_calendar_months_are_refused_rather_than_approximated() -> None:
    assert parse_openslo_duration("4w", calendar=True) == 28 * DAY
    with pytest.raises(ValueError, match="calendar-aligned '1M' is not supported"):
        parse_openslo_duration("1M", calendar=True)


BUNDLE = SHARED + "---\n" + SLO
ALPHA = """\
apiVersion: openslo/v1alpha
kind: SLO
metadata:
  name: api
spec:
  service: api
  budgetingMethod: Occurrences
  objectives:
    - ratioMetrics:
        good: {source: prometheus, queryType: promql, query: 'sum(rate(ok[{{.window}}]))'}
        total: {source: prometheus, queryType: promql, query: 'sum(rate(all[{{.window}}]))'}
      target: 0.99
  timeWindows:
    - count: 2
      unit: Week
"""


def test_a_non_rolling_window_without_a_calendar_is_refused() -> None:
    assert text_problems(INLINE.replace("isRolling: true", "isRolling: false")) == [
        "o.yaml:21: document 1: spec.timeWindow[0].isRolling: isRolling: false needs a calendar"
    ]


def test_alert_after_must_be_shorter_than_the_lookback_window() -> None:
    assert text_problems(BUNDLE.replace("alertAfter: 6h", "alertAfter: 3d")) == [
        "o.yaml:94: document 7: spec.alertPolicies[1].spec.conditions[0].spec.condition."
        "alertAfter: relia reads alertAfter as the short window: it must be shorter than "
        "lookbackWindow"
    ]


def test_a_condition_over_the_whole_period_may_spend_the_whole_budget() -> None:
    text = BUNDLE.replace("lookbackWindow: 3d", "lookbackWindow: 28d")
    (slo,) = load_slo_text(text.replace("alertAfter: 6h", "alertAfter: 1d"))
    assert slo.alert_windows is not None
    ticket = slo.alert_windows[1]
    assert (ticket.long_s, ticket.short_s, ticket.burn_rate) == (28 * DAY, DAY, 1)
    assert ticket.budget_percent == 100


def test_a_zero_burn_rate_threshold_is_refused() -> None:
    assert text_problems(BUNDLE.replace("threshold: 1\n", "threshold: 0\n")) == [
        "o.yaml:92: document 7: spec.alertPolicies[1].spec.conditions[0].spec.condition."
        "threshold: the burn-rate threshold must be positive"
    ]


def test_a_second_object_of_the_same_kind_and_name_names_the_first_document() -> None:
    assert text_problems(INLINE + "---\n" + INLINE) == [
        "o.yaml:31: document 2: metadata.name: a second SLO named 'api' (the first is in o.yaml, "
        "document 1)"
    ]


def test_a_reference_takes_no_other_field() -> None:
    text = BUNDLE.replace(
        "- alertPolicyRef: fast-burn", "- alertPolicyRef: fast-burn\n      foo: 1"
    )
    assert text_problems(text) == [
        "o.yaml:79: document 7: spec.alertPolicies[0].foo: unknown field 'foo' next to "
        "alertPolicyRef"
    ]


def test_an_inline_object_of_the_wrong_kind_is_refused() -> None:
    text = BUNDLE.replace("    - kind: AlertPolicy\n", "    - kind: AlertCondition\n")
    assert text_problems(text) == [
        "o.yaml:79: document 7: spec.alertPolicies[1].kind: expected kind: AlertPolicy, got "
        "'AlertCondition'"
    ]


def test_an_inline_indicator_takes_no_kind() -> None:
    text = INLINE.replace(
        "  indicator:\n    metadata:", "  indicator:\n    kind: SLI\n    metadata:"
    )
    assert text_problems(text) == [
        "o.yaml:8: document 1: spec.indicator.kind: unknown field 'kind' (an inline indicator "
        "has none)"
    ]


def test_indicator_and_indicator_ref_together_are_refused() -> None:
    text = INLINE.replace("  indicator:\n", "  indicatorRef: api-sli\n  indicator:\n")
    assert text_problems(text) == [
        "o.yaml:7: document 1: spec.indicatorRef: give indicator or indicatorRef, not both"
    ]


def test_queries_that_already_use_the_window_are_kept_as_written() -> None:
    # An increase(), as the wrapped bad query (counter: true) is: both count events per window.
    total = 'sum(increase(http_requests_total{job="checkout"}[{{.window}}]))'
    text = BUNDLE.replace('query: http_requests_total{job="checkout"}\n', f"query: '{total}'\n")
    (slo,) = load_slo_text(text)
    assert isinstance(slo.sli, EventsSLI) and slo.sli.total_query == total
    # A rate() beside it would subtract events per second from events per window: refused.
    rate = total.replace("increase(", "rate(")
    with pytest.raises(ConfigError, match="total_query answers a per-second rate"):
        load_slo_text(
            BUNDLE.replace('query: http_requests_total{job="checkout"}\n', f"query: '{rate}'\n")
        )
    raw = "1 - avg_over_time(api:error_ratio[{{.window}}])"
    (strict, _) = load_slo_text(INLINE.replace("query: api:success_ratio", f"query: '{raw}'"))
    assert isinstance(strict.sli, RawSLI) and strict.sli.error_ratio_query == f"1 - ({raw})"


THRESHOLD_OCCURRENCES = INLINE.replace(
    "      ratioMetric:\n        rawType: success\n        raw:\n", "      thresholdMetric:\n"
).replace(
    "    - displayName: Strict\n      targetPercent: 99.9\n"
    "    - displayName: Loose\n      target: 0.99\n",
    "    - {displayName: Fast, target: 0.99, op: lte, value: 0.25}\n"
    "    - {displayName: Busy, target: 0.9, op: gte, value: 100}\n",
)


def test_lte_and_gte_thresholds_become_promql_comparisons_with_occurrences() -> None:
    fast, busy = load_slo_text(THRESHOLD_OCCURRENCES)
    assert isinstance(fast.sli, EventsSLI) and isinstance(busy.sli, EventsSLI)
    assert fast.sli.good_query == (
        "sum(count_over_time(((api:success_ratio) <= 0.25)[{{.window}}:]))"
    )
    assert busy.sli.good_query == "sum(count_over_time(((api:success_ratio) >= 100)[{{.window}}:]))"


def test_a_severity_with_no_condition_is_disabled() -> None:
    page_only = SHARED + "---\n" + SLO.split("    - kind: AlertPolicy")[0]
    (slo,) = load_slo_text(page_only)
    assert slo.alerting is not None
    assert (slo.alerting.page.disabled, slo.alerting.ticket.disabled) == (False, True)
    ticket_only = BUNDLE.replace("    - alertPolicyRef: fast-burn\n", "")
    (slo,) = load_slo_text(ticket_only)
    assert slo.alerting is not None
    assert (slo.alerting.page.disabled, slo.alerting.ticket.disabled) == (True, False)


def test_the_same_alert_condition_twice_is_refused() -> None:
    twice = SHARED + "---\n" + SLO.split("    - kind: AlertPolicy")[0]
    twice += "    - alertPolicyRef: fast-burn\n"
    assert text_problems(twice) == [
        "o.yaml:79: document 7: spec.alertPolicies[1]: the alert condition 'fast' is used twice"
    ]


SLICED = INLINE.replace("budgetingMethod: Occurrences", "budgetingMethod: Timeslices").replace(
    "      target: 0.99\n",
    "      target: 0.99\n      timeSliceWindow: 1h\n      timeSliceTarget: 0.9\n",
)


def test_time_slices_must_tile_the_period() -> None:
    text = SLICED.replace(
        "      targetPercent: 99.9\n",
        "      targetPercent: 99.9\n      timeSliceWindow: 7m\n      timeSliceTarget: 0.9\n",
    )
    assert text_problems(text) == [
        "o.yaml:25: document 1: spec.objectives[0].timeSliceWindow: the slices must tile the "
        "period: 7m does not divide 30d"
    ]


def test_timeslices_budgeting_needs_a_time_slice_target() -> None:
    text = SLICED.replace(
        "      targetPercent: 99.9\n", "      targetPercent: 99.9\n      timeSliceWindow: 1m\n"
    )
    assert text_problems(text) == [
        "o.yaml:23: document 1: spec.objectives[0].timeSliceTarget: required field is missing "
        "(budgetingMethod Timeslices)"
    ]


def test_an_unused_alert_policy_with_a_broken_reference_is_reported() -> None:
    unused = SHARED.replace("conditionRef: fast\n", "conditionRef: fats\n") + "---\n" + INLINE
    assert text_problems(unused) == [
        "o.yaml:34: document 3: spec.conditions[0].conditionRef: unknown AlertCondition 'fats': "
        "no kind: AlertCondition with that metadata.name in the files given"
    ]


def test_names_are_dns_labels_of_at_most_63_characters() -> None:
    (slo,) = load_slo_text(BUNDLE.replace("name: checkout-availability", "name: " + "a" * 63))
    assert slo.name == "a" * 63
    assert text_problems(BUNDLE.replace("name: checkout-availability", "name: " + "a" * 64)) == [
        f"o.yaml:67: document 7: metadata.name: '{'a' * 64}' is not a valid OpenSLO name "
        "(lowercase letters, digits and -, at most 63)"
    ]


@pytest.mark.parametrize(
    ("count", "unit", "seconds"),
    [(90, "Second", 90), (2, "Week", 14 * DAY), (1, "Month", 30 * DAY), (1, "Year", 365 * DAY)],
)
def test_v1alpha_time_window_units(count: int, unit: str, seconds: int) -> None:
    (slo,) = load_slo_text(
        ALPHA.replace("count: 2\n      unit: Week", f"count: {count}\n      unit: {unit}")
    )
    assert (slo.window.period_s, slo.window.rolling) == (seconds, True)


def test_v1alpha_window_with_a_calendar_is_calendar_aligned() -> None:
    text = (
        ALPHA + "      calendar: {startTime: '2024-01-01 00:00:00', timeZone: America/New_York}\n"
    )
    (slo,) = load_slo_text(text)
    assert not slo.window.rolling
    assert slo.window.calendar_start == datetime(2024, 1, 1, tzinfo=NEW_YORK)


def test_v1alpha_service_documents_give_no_slo() -> None:
    service = "apiVersion: openslo/v1alpha\nkind: Service\nmetadata: {name: api}\nspec: {}\n"
    slos = load_slo_text(service + "---\n" + ALPHA)
    assert [s.id for s in slos] == ["api-api-0"]


def _line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_a_metric_source_that_is_not_prometheus_is_refused_at_its_type() -> None:
    # A Datadog query sent to Prometheus as PromQL would fail there, or worse, mean something
    # else: refused at load, naming where the type is written.
    text = INLINE.replace("type: Prometheus", "type: Datadog").replace(
        "query: api:success_ratio", "query: sum:trace.http.request.errors{service:api}.as_count()"
    )
    with pytest.raises(ConfigError) as err:
        load_slo_text(text, "dd.yaml")
    line = _line_of(text, "type: Datadog")
    assert str(err.value).startswith(
        f"dd.yaml:{line}: document 1: spec.indicator.spec.ratioMetric.raw.metricSource.type: "
        "type 'Datadog' is not supported: relia reads PromQL from Prometheus (type: Prometheus)"
    ), str(err.value)
    # Any spelling of Prometheus is fine.
    for spelling in ("prometheus", "PROMETHEUS"):
        load_slo_text(INLINE.replace("type: Prometheus", f"type: {spelling}"))


def test_a_data_source_that_is_not_prometheus_is_refused_at_its_type() -> None:
    text = BUNDLE.replace("  type: Prometheus\n", "  type: Datadog\n")
    with pytest.raises(ConfigError) as err:
        load_slo_text(text, "ds.yaml")
    line = _line_of(text, "type: Datadog")
    assert f"ds.yaml:{line}: document " in str(err.value)
    assert "spec.type: type 'Datadog' is not supported" in str(err.value)


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        ("alertWhenNoData: true", "alertWhenNoData: true is not supported"),
        ("alertWhenBreaching: false", "alertWhenBreaching: false is not supported"),
    ],
)
def test_alert_policy_switches_relia_cannot_honour_are_refused(flag: str, message: str) -> None:
    text = BUNDLE.replace(
        "spec:\n  conditions:\n    - conditionRef: fast\n",
        f"spec:\n  {flag}\n  conditions:\n    - conditionRef: fast\n",
    )
    assert flag in text
    problems = text_problems(text)
    line = _line_of(text, flag)
    assert len(problems) == 1 and problems[0].startswith(f"o.yaml:{line}: "), problems
    assert message in problems[0]


def test_alert_policy_switches_relia_honours_are_accepted() -> None:
    harmless = "alertWhenNoData: false\n  alertWhenBreaching: true\n  alertWhenResolved: true"
    text = BUNDLE.replace("spec:\n  conditions:\n", f"spec:\n  {harmless}\n  conditions:\n")
    assert harmless in text
    (slo,) = load_slo_text(text)
    assert slo.alerting is not None


@pytest.mark.parametrize(
    ("method", "fields", "refused"),
    [
        ("Occurrences", {"timeSliceWindow": "5m"}, "timeSliceWindow"),
        ("Occurrences", {"timeSliceTarget": 0.95}, "timeSliceTarget"),
        ("RatioTimeslices", {"timeSliceWindow": "5m", "timeSliceTarget": 0.95}, "timeSliceTarget"),
    ],
)
def test_slice_fields_the_budgeting_method_does_not_use_are_refused(
    method: str, fields: dict[str, object], refused: str
) -> None:
    written = "".join(f"      {k}: {v}\n" for k, v in fields.items())
    text = BUNDLE.replace("budgetingMethod: Occurrences", f"budgetingMethod: {method}").replace(
        "    - target: 0.999\n", f"    - target: 0.999\n{written}"
    )
    problems = text_problems(text)
    line = _line_of(text, f"{refused}:")
    used_by = "Timeslices" if refused == "timeSliceTarget" else "the timeslice methods"
    assert problems == [
        f"o.yaml:{line}: document 7: spec.objectives[0].{refused}: not used by budgetingMethod "
        f"{method}, only by {used_by}"
    ]
