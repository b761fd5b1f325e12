"""relia's own SLO format, the loader's problem reports (file, line, document, field), and
property tests: whatever the input, the loader returns SLOs or raises ConfigError."""

from __future__ import annotations

import copy
import os
import re
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relia.errors import ConfigError
from relia.slo.loader import (
    burn_rate_for,
    load_slo_text,
    load_slos,
    load_specs,
    load_specs_text,
)
from relia.slo.spec import BudgetingMethod, EventsSLI, RawSLI, ThresholdSLI
from tests.slo.test_openslo import SHARED as OPENSLO_SHARED
from tests.slo.test_openslo import SLO as OPENSLO_SLO

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "slo"
SLO_DATA = Path(os.environ.get("RELIA_SLO_DATA", ROOT.parent / "shared/data/slo"))
DAY = 86400

SPEC = """\
apiVersion: relia/v1
service: checkout
labels:
  team: payments
slos:
  - name: availability
    objective: 99.9
    sli:
      events:
        error_query: sum(rate(errors_total[{{.window}}]))
        total_query: sum(rate(requests_total[{{.window}}]))
    alerting:
      name: CheckoutErrors
"""


def problems(text: str, file: str = "slo.yaml") -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_slo_text(text, file)
    return str(info.value).splitlines()


# --- the examples -------------------------------------------------------------------------------


def test_every_example_loads() -> None:
    files = sorted(EXAMPLES.glob("*.yaml"))
    assert len(files) >= 4
    loaded = load_specs(files)
    assert {item.format for item in loaded} == {"relia"}
    assert len(loaded) == 7


def test_checkout_example() -> None:
    avail, latency = load_slos([EXAMPLES / "checkout.yaml"])
    assert avail.id == "checkout-requests-availability"
    assert avail.objective == 99.9
    assert avail.labels == {"team": "payments", "tier": "1"}
    assert avail.window.period_s == 30 * DAY and avail.window.rolling
    assert avail.min_events == 100
    assert avail.alerting is not None and avail.alerting.page.labels == {"severity": "critical"}
    assert isinstance(latency.sli, EventsSLI) and latency.sli.good_query is not None
    assert latency.alerting is not None and latency.alerting.ticket.disabled
    assert avail.source.path == "slos[0]" and latency.source.path == "slos[1]"


def test_platform_example_calendar_timeslices_and_windows() -> None:
    minutes, latency, jobs, slow = load_slos([EXAMPLES / "platform.yaml"])
    assert minutes.budgeting is BudgetingMethod.TIMESLICES
    assert (minutes.timeslice_window_s, minutes.timeslice_target) == (60, 0.99)
    assert minutes.window.period_s == 7 * DAY and not minutes.window.rolling
    assert minutes.window.calendar_start == datetime(2024, 1, 1, tzinfo=ZoneInfo("Europe/Berlin"))
    assert isinstance(latency.sli, ThresholdSLI) and latency.sli.op == "lte"
    assert latency.timeslice_window_s == 300 and latency.timeslice_target is None
    assert isinstance(jobs.sli, RawSLI)
    assert jobs.source.document == 1 and jobs.window.period_s == 90 * DAY
    assert jobs.alert_windows is not None
    quick, slow_page, _, _ = jobs.alert_windows
    # 2 % of a 90-day budget in 3 hours: 0.02 * 2160 h / 3 h = 14.4.
    assert quick.burn_rate == 14.4 and (quick.long_s, quick.short_s) == (3 * 3600, 900)
    # A burn rate of 4 for a day spends 4/90 of the budget.
    assert slow_page.burn_rate == 4 and slow_page.budget_percent == pytest.approx(400 / 90)
    # From the AlertWindows file next to the spec, as Sloth computes the rates.
    assert slow.alert_windows is not None
    assert [w.burn_rate for w in slow.alert_windows] == [13.44, 3.5, 1.4000000000000001, 0.98]


@pytest.mark.parametrize(
    ("percent", "period_days", "long_s", "rate"),
    [
        (2, 30, 3600, 14.4),
        (5, 30, 6 * 3600, 6.0),
        (10, 30, DAY, 3.0),
        (10, 30, 3 * DAY, 1.0),
        (5, 28, 6 * 3600, 5.6000000000000005),  # Sloth's float, to the last digit
        (10, 28, DAY, 2.8000000000000003),
        (20, 7, DAY, 1.4000000000000001),
    ],
)
def test_burn_rate_from_budget_percent(
    percent: float, period_days: int, long_s: int, rate: float
) -> None:
    assert burn_rate_for(percent, period_days * DAY, long_s) == rate


# --- relia's format: values ---------------------------------------------------------------------


def test_a_minimal_spec() -> None:
    (slo,) = load_slo_text(SPEC)
    assert slo.id == "checkout-availability"
    assert slo.labels == {"team": "payments"}
    assert slo.budgeting is BudgetingMethod.OCCURRENCES
    assert slo.alert_windows is None and slo.min_events is None
    assert (slo.source.file, slo.source.document, slo.source.path) == ("<memory>", 0, "slos[0]")


def test_budgeting_shorthand_and_operators() -> None:
    text = SPEC.replace(
        "      events:\n        error_query: sum(rate(errors_total[{{.window}}]))\n"
        "        total_query: sum(rate(requests_total[{{.window}}]))\n",
        "      threshold: {query: 'p99_latency_seconds', op: '<=', value: 0.3}\n",
    ).replace("    objective: 99.9\n", "    objective: 99.9\n    budgeting: ratio_timeslices\n")
    assert problems(text) == [
        "slo.yaml:8: document 1: slos[0].budgeting: budgeting ratio_timeslices needs "
        "timeslice_window (e.g. 1m)"
    ]
    (slo,) = load_slo_text(
        text.replace(
            "budgeting: ratio_timeslices",
            "budgeting: {method: ratio_timeslices, timeslice_window: 1m}",
        )
    )
    assert slo.sli == ThresholdSLI(query="p99_latency_seconds", op="lte", value=0.3)


# --- problems: one per line, with file, line, document and field --------------------------------


def test_bad_objective() -> None:
    assert problems(SPEC.replace("objective: 99.9", "objective: 120")) == [
        "slo.yaml:7: document 1: slos[0].objective: must be less than 100, got the number 120"
    ]


def test_missing_total_query() -> None:
    text = SPEC.replace("        total_query: sum(rate(requests_total[{{.window}}]))\n", "")
    assert problems(text) == [
        "slo.yaml:9: document 1: slos[0].sli.events.total_query: required field is missing"
    ]


def test_unknown_field_names_the_field_and_suggests() -> None:
    assert problems(SPEC.replace("    alerting:", "    alertng:")) == [
        "slo.yaml:12: document 1: slos[0].alertng: unknown field 'alertng'; did you mean "
        "'alerting'?"
    ]
    assert problems(SPEC.replace("  team: payments", "  team: payments\nowner: me")) == [
        "slo.yaml:5: document 1: owner: unknown field 'owner' (known here: apiVersion, service, "
        "labels, slos)"
    ]


def test_bad_duration() -> None:
    text = SPEC.replace("    objective: 99.9\n", "    objective: 99.9\n    period: 5x\n")
    assert problems(text) == [
        "slo.yaml:8: document 1: slos[0].period: invalid duration '5x' (expected e.g. 5m, 1h, "
        "30d, 2w)"
    ]


def test_wrong_types() -> None:
    text = SPEC.replace("objective: 99.9", "objective: [99]").replace(
        "  team: payments", "  - payments"
    )
    assert problems(text) == [
        "slo.yaml:3: document 1: labels: expected a mapping, got a list",
        "slo.yaml:7: document 1: slos[0].objective: expected a number, got a list",
    ]
    assert problems(SPEC.replace("objective: 99.9", "objective: '99.9'")) == [
        "slo.yaml:7: document 1: slos[0].objective: expected a number, got the text '99.9'"
    ]


def test_duplicate_ids_across_files(tmp_path: Path) -> None:
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(SPEC)
    b.write_text("# the same service again\n" + SPEC)
    with pytest.raises(ConfigError) as info:
        load_slos([a, b])
    assert str(info.value) == (
        f"{b}:7: document 1: slos[0]: duplicate SLO id 'checkout-availability' (service-name); "
        f"first defined at {a}:6, document 1"
    )


def test_empty_file_not_yaml_and_not_a_mapping(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing here\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text(SPEC + "---\nservice: [a, b\n")
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("just text\n")
    missing = tmp_path / "missing.yaml"
    with pytest.raises(ConfigError) as info:
        load_slos([empty, broken, scalar, missing, tmp_path])
    assert str(info.value).splitlines() == [
        f"{empty}: empty: no SLO spec in this file",
        f"{broken}:16: document 2: not valid YAML: expected ',' or ']', but got '<stream end>'",
        f"{scalar}:1: document 1: expected a mapping (an SLO spec) at the top of the document, "
        "got the text 'just text'",
        f"{missing}: no such file",
        f"{tmp_path}: is a directory; give the spec files in it",
    ]


def test_a_control_character_is_reported_at_its_line() -> None:
    # YAML's reader refuses the whole text before reading any document: the problem has the
    # line (counted as YAML counts lines, a lone CR included) but no document number.
    second = SPEC.replace("team: payments", "team: pay\x07ments")
    assert problems(SPEC + "---\r" + second) == [
        "slo.yaml:18: not valid YAML: unacceptable character #x0007: special characters are not "
        "allowed"
    ]


def test_yaml_nested_too_deeply_is_reported_at_its_line() -> None:
    deep = "x: " + "[" * 3000 + "]" * 3000 + "\n"
    assert problems(SPEC + "---\n" + deep) == [
        "slo.yaml:15: document 2: not valid YAML: nested too deeply"
    ]


def test_a_key_written_twice_in_one_mapping_is_refused() -> None:
    # PyYAML would keep the last value silently; the user may have edited the first one.
    text = SPEC.replace("    objective: 99.9\n", "    objective: 99.9\n    objective: 99\n")
    assert problems(text) == [
        "slo.yaml:8: document 1: slos[0].objective: written twice in one mapping (first at line "
        "7); YAML keys must be unique"
    ]
    # Once, where it is written, however many aliases use it.
    shared = SPEC.replace("labels:\n  team: payments", "labels: &shared\n  team: a\n  team: b")
    assert problems(
        shared.replace("    objective: 99.9\n", "    objective: 99.9\n    labels: *shared\n")
    ) == [
        "slo.yaml:5: document 1: labels.team: written twice in one mapping (first at line 4); "
        "YAML keys must be unique"
    ]


def test_a_key_next_to_a_yaml_merge_overrides_the_merged_one() -> None:
    text = SPEC.replace("  team: payments", "  <<: {team: other, tier: '1'}\n  team: payments")
    (slo,) = load_slo_text(text)
    assert slo.labels == {"team": "payments", "tier": "1"}


def test_an_escape_beyond_the_last_unicode_character_is_a_yaml_problem() -> None:
    text = SPEC.replace("  team: payments", '  team: "pay\\U00110000ments"')
    assert problems(text) == [
        "slo.yaml:4: document 1: not valid YAML: \\U00110000 is not a Unicode character (the "
        "last is \\U0010FFFF)"
    ]


@pytest.mark.parametrize("escape", ["\\uD83D\\uDE00", "\\uDE00", "\\U0000D83D"])
def test_a_surrogate_escape_is_a_yaml_problem(escape: str) -> None:
    # A surrogate is not a character: as text it cannot be written out as UTF-8 (a JSON answer
    # of the API or a rules file would fail long after loading).
    text = SPEC.replace("  team: payments", f'  team: "pay{escape}ments"')
    (problem,) = problems(text)
    assert problem.startswith("slo.yaml:4: document 1: not valid YAML: ")
    assert "is a surrogate, not a character (write one past \\uFFFF as \\U and 8 digits)" in problem


@pytest.mark.parametrize("number", ["9" * 5000, "0x" + "f" * 5000])
def test_an_integer_too_long_to_read_is_a_yaml_problem(number: str) -> None:
    # Python refuses to convert integers of more than 4300 digits to or from text.
    assert problems(SPEC.replace("objective: 99.9", f"objective: {number}")) == [
        f"slo.yaml:7: document 1: not valid YAML: an integer of {len(number)} characters is too "
        "long to read"
    ]


def test_unknown_formats() -> None:
    assert problems("apiVersion: relia/v2\nservice: x\n") == [
        "slo.yaml:1: document 1: apiVersion: unsupported apiVersion 'relia/v2'; expected "
        "relia/v1, openslo/v1 or openslo/v1alpha"
    ]
    assert problems("service: x\nslos: []\n") == [
        "slo.yaml:1: document 1: not an SLO spec: expected apiVersion: relia/v1, apiVersion: "
        "openslo/v1 or Sloth's version: prometheus/v1"
    ]
    assert problems("groups:\n  - name: x\n    rules: []\n", "x.gen.yml") == [
        "x.gen.yml:1: document 1: this is a Prometheus rule file (groups:), not an SLO spec"
    ]


def test_every_problem_of_every_file_is_collected(tmp_path: Path) -> None:
    one = tmp_path / "one.yaml"
    one.write_text(
        SPEC.replace("objective: 99.9", "objective: 0")
        + "  - name: latency\n    objective: 99\n    sli: {raw: {error_ratio_query: x}}\n"
        + "---\n"
        + SPEC.replace("checkout", "search").replace("objective: 99.9", "objective: ninety")
    )
    two = tmp_path / "two.yaml"
    two.write_text('version: "prometheus/v1"\nservice: s\nslos:\n  - name: a\n    objective: 9\n')
    with pytest.raises(ConfigError) as info:
        load_slos([two, one])
    assert str(info.value).splitlines() == [
        f"{two}:4: document 1: slos[0].sli: required field is missing",
        f"{one}:7: document 1: slos[0].objective: must be greater than 0, got the number 0",
        f"{one}:16: document 1: slos[1].sli.raw.error_ratio_query: the query must use "
        "{{.window}} where its range goes, e.g. sum(rate(http_requests_total[{{.window}}]))",
        f"{one}:24: document 2: slos[0].objective: expected a number, got the text 'ninety'",
    ]


def test_cross_field_problems() -> None:
    threshold = SPEC.replace(
        "      events:\n        error_query: sum(rate(errors_total[{{.window}}]))\n"
        "        total_query: sum(rate(requests_total[{{.window}}]))\n",
        "      threshold: {query: q, op: lt, value: 1}\n",
    )
    assert problems(threshold.replace("    alerting:", "    min_events: 5\n    alerting:")) == [
        "slo.yaml:9: document 1: slos[0].sli.threshold: a threshold SLI counts good time "
        "slices: use budgeting timeslices or ratio_timeslices",
        "slo.yaml:10: document 1: slos[0].min_events: min_events needs an events SLI: it counts "
        "the events of total_query",
    ]
    sliced = SPEC.replace(
        "    objective: 99.9\n",
        "    objective: 99.9\n    period: 1h\n    budgeting: {method: timeslices, "
        "timeslice_window: 5m}\n",
    )
    assert problems(sliced) == [
        "slo.yaml:9: document 1: slos[0].budgeting: budgeting timeslices needs timeslice_target: "
        "the percent of a slice's events that must be good for the slice to count as good"
    ]
    # Slices must tile the period.
    assert problems(sliced.replace("5m}", "7m, timeslice_target: 95}")) == [
        "slo.yaml:9: document 1: slos[0].budgeting.timeslice_window: the slices must tile the "
        "period: 7m does not divide 1h"
    ]


def test_calendar_and_alert_window_problems(tmp_path: Path) -> None:
    text = SPEC.replace(
        "    objective: 99.9\n",
        "    objective: 99.9\n    period: 1w\n    calendar: {start: 2024-13-01, timezone: UTC}\n",
    )
    assert problems(text) == [
        "slo.yaml:9: document 1: slos[0].calendar.start: cannot read '2024-13-01' as a date and "
        "time (expected e.g. 2024-01-01 00:00:00)"
    ]
    assert problems(text.replace("2024-13-01, timezone: UTC", "2024-01-01, timezone: Nowhere"))[
        0
    ].startswith("slo.yaml:9: document 1: slos[0].calendar.timezone: unknown time zone 'Nowhere'")
    windows = SPEC + (
        "    alert_windows:\n"
        "      - {severity: page, name: quick, budget_percent: 2, long_window: 1h, "
        "short_window: 1h}\n"
        "      - {severity: pager, name: slow, burn_rate: 6, long_window: 6h, short_window: 30m}\n"
    )
    assert problems(windows) == [
        "slo.yaml:15: document 1: slos[0].alert_windows[0]: the short window must be shorter "
        "than the long window",
        "slo.yaml:16: document 1: slos[0].alert_windows[1].severity: must be 'page' or 'ticket', "
        "got the text 'pager'",
    ]
    sloth_file = tmp_path / "w7d.yaml"
    sloth_file.write_text(
        "apiVersion: sloth.slok.dev/v1\nkind: AlertWindows\nspec:\n  sloPeriod: 7d\n"
        "  page:\n    quick: {errorBudgetPercent: 8, shortWindow: 5m, longWindow: 1h}\n"
        "    slow: {errorBudgetPercent: 12.5, shortWindow: 30m, longWindow: 6h}\n"
        "  ticket:\n    quick: {errorBudgetPercent: 20, shortWindow: 2h, longWindow: 1d}\n"
        "    slow: {errorBudgetPercent: 42, shortWindow: 6h, longWindow: 3x}\n"
    )
    spec = tmp_path / "slo.yaml"
    spec.write_text(SPEC + "    alert_windows: w7d.yaml\n")
    with pytest.raises(ConfigError) as info:
        load_slos([spec])
    assert str(info.value).splitlines() == [
        f"{spec}:14: document 1: slos[0].alert_windows: cannot use the alert windows in "
        f"'{sloth_file}' (see its problems)",
        f"{sloth_file}:10: document 1: spec.ticket.slow.longWindow: invalid duration '3x' "
        "(expected e.g. 5m, 1h, 30d, 2w)",
    ]
    sloth_file.write_text(sloth_file.read_text().replace("3x", "3d"))
    with pytest.raises(ConfigError, match="are for a 7d period, this SLO's period is 30d"):
        load_slos([spec])
    spec.write_text(SPEC.replace("objective: 99.9", "objective: 99.9\n    period: 7d"))
    spec.write_text(spec.read_text() + "    alert_windows: w7d.yaml\n")
    (slo,) = load_slos([spec])
    assert slo.alert_windows is not None and len(slo.alert_windows) == 4


def alias_bomb() -> str:
    """Seven lines that expand to 10**7 nodes."""
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
    for i in range(1, 7):
        bomb += f"{chr(97 + i)}: &{chr(97 + i)} [" + ", ".join([f"*{chr(96 + i)}"] * 10) + "]\n"
    return bomb


def test_alias_bombs_and_recursive_aliases_are_refused() -> None:
    assert problems(alias_bomb()) == [
        "slo.yaml:1: document 1: more than 200,000 YAML nodes once aliases expand"
    ]
    assert problems("apiVersion: relia/v1\nservice: &s [*s]\n") == [
        "slo.yaml:1: document 1: a YAML alias refers to a node that contains it (recursive data)"
    ]


def test_documents_after_a_refused_alias_bomb_keep_their_numbers() -> None:
    assert problems(alias_bomb() + "---\napiVersion: relia/v2\n") == [
        "slo.yaml:1: document 1: more than 200,000 YAML nodes once aliases expand",
        "slo.yaml:9: document 2: apiVersion: unsupported apiVersion 'relia/v2'; expected "
        "relia/v1, openslo/v1 or openslo/v1alpha",
    ]


def test_api_version_and_sloth_version_together_are_refused() -> None:
    text = SPEC.replace("apiVersion: relia/v1\n", "apiVersion: relia/v1\nversion: prometheus/v1\n")
    assert problems(text) == [
        "slo.yaml:2: document 1: version: give apiVersion or Sloth's version, not both"
    ]


def test_empty_documents_around_a_spec_are_skipped() -> None:
    (slo,) = load_slo_text("---\n" + SPEC + "---\n")
    assert slo.id == "checkout-availability" and slo.source.document == 0


def test_slos_come_back_in_the_order_of_the_files_given(tmp_path: Path) -> None:
    openslo = tmp_path / "openslo.yaml"
    openslo.write_text(OPENSLO_SHARED + "---\n" + OPENSLO_SLO)
    relia = tmp_path / "relia.yaml"
    relia.write_text(SPEC)
    loaded = load_specs([openslo, relia])
    assert [item.format for item in loaded] == ["openslo/v1", "relia"]


def test_a_problem_found_twice_is_reported_once() -> None:
    # The policy is checked on its own and again for the SLO that uses it.
    text = OPENSLO_SHARED.replace("conditionRef: fast\n", "conditionRef: fats\n")
    assert problems(text + "---\n" + OPENSLO_SLO) == [
        "slo.yaml:34: document 3: spec.conditions[0].conditionRef: unknown AlertCondition "
        "'fats': no kind: AlertCondition with that metadata.name in the files given"
    ]


def test_problems_are_listed_in_document_order() -> None:
    deep = "x: " + "[" * 3000 + "]" * 3000 + "\n"
    lines = problems(SPEC.replace("objective: 99.9", "objective: 0") + "---\n" + deep)
    assert len(lines) == 2
    assert lines[0].startswith("slo.yaml:7: document 1: slos[0].objective: ")
    assert lines[1].endswith("document 2: not valid YAML: nested too deeply")


def test_calendar_start_with_a_utc_offset_is_refused() -> None:
    text = SPEC.replace(
        "    objective: 99.9\n",
        "    objective: 99.9\n    period: 1w\n"
        "    calendar: {start: '2024-01-01T00:00:00+01:00', timezone: Europe/Berlin}\n",
    )
    assert problems(text) == [
        "slo.yaml:9: document 1: slos[0].calendar.start: '2024-01-01T00:00:00+01:00' has a UTC "
        "offset; write the local time and give the zone in timezone"
    ]


def test_the_metric_name_label_cannot_be_set() -> None:
    # __name__ is made of letters and _: the message must say why it is refused.
    assert problems(SPEC.replace("  team: payments", "  __name__: payments")) == [
        "slo.yaml:4: document 1: labels.__name__: '__name__' is the metric name in Prometheus, "
        "not a label that can be set"
    ]


def test_no_files_is_an_error() -> None:
    with pytest.raises(ConfigError, match="no spec files given"):
        load_slos([])


def test_an_alert_windows_file_given_as_a_spec_is_checked(tmp_path: Path) -> None:
    windows = tmp_path / "windows.yaml"
    windows.write_text(
        (EXAMPLES / "alert-windows-7d.yaml").read_text().replace("longWindow: 3d", "longWindow: 3x")
    )
    spec = tmp_path / "slo.yaml"
    spec.write_text(SPEC)
    with pytest.raises(ConfigError) as info:
        load_slos([spec, windows])
    assert str(info.value).splitlines() == [
        f"{windows}:13: document 1: spec.ticket.slow.longWindow: invalid duration '3x' "
        "(expected e.g. 5m, 1h, 30d, 2w)"
    ]


def test_alert_window_problems_of_relias_format() -> None:
    windows = SPEC + (
        "    alert_windows:\n"
        "      - {severity: page, name: quick, budget_percent: 2, long_window: 1h, "
        "short_window: 5m}\n"
        "      - {severity: page, name: quick, burn_rate: 6, long_window: 6h, short_window: 30m}\n"
        "      - {severity: ticket, name: slow, burn_rate: 40, long_window: 1d, "
        "short_window: 1h}\n"
    )
    assert problems(windows) == [
        "slo.yaml:16: document 1: slos[0].alert_windows[1].name: a page window named 'quick' twice",
        "slo.yaml:17: document 1: slos[0].alert_windows[2].burn_rate: burning at 40x for 1d "
        "spends 133% of the budget; the long window is too long for this rate",
    ]


def test_a_long_window_as_long_as_the_period_is_allowed() -> None:
    text = SPEC.replace("    objective: 99.9\n", "    objective: 99.9\n    period: 1d\n") + (
        "    alert_windows:\n"
        "      - {severity: ticket, name: slow, budget_percent: 100, long_window: 1d, "
        "short_window: 2h}\n"
    )
    (slo,) = load_slo_text(text)
    assert slo.alert_windows is not None
    (window,) = slo.alert_windows
    assert (window.long_s, window.short_s, window.burn_rate) == (DAY, 7200, 1.0)


def test_a_timeslice_target_with_ratio_timeslices_is_refused() -> None:
    # ratio_timeslices averages the slices' good ratios: a target would be dropped silently.
    text = SPEC.replace(
        "    objective: 99.9\n",
        "    objective: 99.9\n"
        "    budgeting: {method: ratio_timeslices, timeslice_window: 1m, timeslice_target: 99}\n",
    )
    assert problems(text) == [
        "slo.yaml:8: document 1: slos[0].budgeting.timeslice_target: only used by budgeting "
        "timeslices"
    ]


def test_timeslice_fields_with_occurrences_are_refused() -> None:
    text = SPEC.replace(
        "    objective: 99.9\n",
        "    objective: 99.9\n"
        "    budgeting: {method: occurrences, timeslice_window: 1m, timeslice_target: 99}\n",
    )
    assert problems(text) == [
        "slo.yaml:8: document 1: slos[0].budgeting.timeslice_window: only used by the timeslice "
        "methods",
        "slo.yaml:8: document 1: slos[0].budgeting.timeslice_target: only used by the timeslice "
        "methods",
    ]


# --- properties: SLOs or a ConfigError, never anything else ----------------------------------


def _valid_bundles() -> list[list[Any]]:
    """Valid inputs, one list of YAML documents per file (OpenSLO ones refer to each other)."""
    texts = [SPEC, OPENSLO_SHARED + "---\n" + OPENSLO_SLO]
    texts += [p.read_text() for p in sorted(EXAMPLES.glob("*.yaml"))]
    for sub in ("sloth", "openslo"):
        folder = SLO_DATA / sub
        if folder.is_dir():
            texts += [
                p.read_text()
                for p in sorted(folder.glob("*.y*ml"))
                if not p.name.endswith(".gen.yml")
            ]
    return [[d for d in yaml.safe_load_all(t) if d] for t in texts]


VALID = _valid_bundles()
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(
        ["30d", "5x", "1M", "lte", "{{.window}}", "{{.oops}}", "page", "Europe/Nowhere"]
    ),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


@st.composite
def mutated_specs(draw: st.DrawFn, bundles: list[list[Any]] = VALID) -> str:
    docs = copy.deepcopy(draw(st.sampled_from(bundles)))
    for _ in range(draw(st.integers(1, 3))):
        d = draw(st.integers(0, len(docs) - 1))
        paths = _paths(docs[d])
        path = draw(st.sampled_from(paths[1:] or paths))
        if not path:
            docs[d] = draw(VALUES)
            continue
        parent = docs[d]
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["delete", "replace", "add"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "replace":
            parent[path[-1]] = draw(VALUES)
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=8))] = draw(VALUES)
        else:
            parent.append(draw(VALUES))
    return yaml.safe_dump_all(docs, sort_keys=False)


def _loads_or_config_error(text: str) -> None:
    try:
        slos = load_slo_text(text)
    except ConfigError as exc:
        assert str(exc).strip()
        for line in str(exc).splitlines():
            # One problem per line, each with its place (a relative alert_windows path names
            # the file it points to, whatever its name: Hypothesis found one named ":").
            assert re.match(r"(<memory>|[\w./-]+|\S+)(:\d+)?: \S", line), line
    else:
        assert all(s.id for s in slos)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_specs())
def test_mutated_specs_load_or_raise_config_error(text: str) -> None:
    _loads_or_config_error(text)


YAMLISH = st.lists(
    st.one_of(
        st.sampled_from(
            [
                "apiVersion: relia/v1\n",
                "apiVersion: openslo/v1\n",
                'version: "prometheus/v1"\n',
                "kind: SLO\n",
                "slos:\n",
                "  - name: a\n",
                "    objective: 99\n",
                "---\n",
                "- x\n",
                "a: &a [*a]\n",
                "key: [unclosed\n",
                "\t\n",
                "!!python/object:os.system x\n",
                "spec: {objectives: [{target: 2}]}\n",
                "metadata: {name: Bad_Name}\n",
            ]
        ),
        st.text(max_size=20),
    ),
    max_size=8,
).map("".join)


@settings(max_examples=300, deadline=None)
@given(YAMLISH)
def test_random_yamlish_text_loads_or_raises_config_error(text: str) -> None:
    _loads_or_config_error(text)


# Sloth and OpenSLO inputs refer to no other file, so every problem must be placed in the one given.
FOREIGN = [
    docs
    for docs in VALID
    if not any(isinstance(d, dict) and d.get("apiVersion") == "relia/v1" for d in docs)
]
NAMED = "specs/team-a.yaml"
PLACED = re.compile(rf"{re.escape(NAMED)}:\d+: \S")
JUNK = st.one_of(
    st.text(max_size=6),
    st.sampled_from(["\x00", "\x07", "\t", "\r", "\n---\n", "[", "{", "&a ", "*b ", ": :", "'"]),
)


@st.composite
def damaged_texts(draw: st.DrawFn) -> str:
    """A mutated Sloth or OpenSLO file with a few characters inserted somewhere."""
    text = draw(mutated_specs(FOREIGN))
    for _ in range(draw(st.integers(0, 2))):
        at = draw(st.integers(0, len(text)))
        text = text[:at] + draw(JUNK) + text[at:]
    return text


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(damaged_texts())
def test_every_problem_of_a_sloth_or_openslo_file_names_that_file_and_a_line(text: str) -> None:
    try:
        load_specs_text(text, NAMED)
    except ConfigError as exc:
        for line in str(exc).splitlines():
            assert PLACED.match(line) or line == f"{NAMED}: empty: no SLO spec in this file", line


def test_an_alert_windows_file_that_is_not_yaml_is_one_problem(tmp_path: Path) -> None:
    spec = tmp_path / "slo.yaml"
    spec.write_text(SPEC)
    windows = tmp_path / "windows.yaml"
    windows.write_text("[" * 5000 + "\n")  # nested too deeply for the YAML parser
    with pytest.raises(ConfigError) as err:
        load_specs([spec], sloth_windows=windows)
    lines = str(err.value).splitlines()
    assert [line for line in lines if "windows.yaml" in line] == [
        f"{windows}:1: document 1: not valid YAML: nested too deeply"
    ], lines


def test_a_problem_found_after_loading_names_the_slo_by_line() -> None:
    # The period is only found too short for the default alert windows once the SLO is built
    # (a report needs no alerts); the error still says where the SLO is written.
    from relia.slo.burnrate import check_alert_windows

    slos = load_slo_text(
        SPEC.replace("    objective: 99.9\n", "    objective: 99.9\n    period: 2d\n")
    )
    with pytest.raises(ConfigError) as info:
        check_alert_windows(slos)
    assert str(info.value).startswith(
        "<memory>:6: document 1: slos[0]: SLO period 2d is shorter than the 3d window"
    )
