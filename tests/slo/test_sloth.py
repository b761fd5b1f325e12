"""Sloth ``prometheus/v1`` specs: every shared example loads with the values its YAML holds."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from relia.errors import ConfigError
from relia.slo.loader import load_slo_text, load_slos, load_specs
from relia.slo.spec import EventsSLI, RawSLI

SLO_DATA = Path(
    os.environ.get("RELIA_SLO_DATA", Path(__file__).resolve().parents[3] / "shared/data/slo")
)
SLOTH = SLO_DATA / "sloth"
needs_data = pytest.mark.skipif(
    not SLOTH.is_dir(), reason=f"Sloth examples not found at {SLOTH} (set RELIA_SLO_DATA)"
)


def sloth_specs() -> list[Path]:
    if not SLOTH.is_dir():
        return []
    return sorted(p for p in SLOTH.glob("*.yml") if not p.name.endswith(".gen.yml"))


@needs_data
def test_the_shared_examples_are_there() -> None:
    names = {p.name for p in sloth_specs()}
    assert {"getting-started.yml", "multifile.yml", "no-alerts.yml", "raw-home-wifi.yml"} <= names


@needs_data
@pytest.mark.parametrize("path", sloth_specs(), ids=lambda p: p.name)
def test_every_sloth_example_loads_with_the_values_of_its_yaml(path: Path) -> None:
    loaded = load_specs([path])
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    if docs[0].get("apiVersion") == "openslo/v1alpha":
        assert [item.format for item in loaded] == ["openslo/v1alpha"]
        return
    expected = [(i, doc, s) for i, doc in enumerate(docs) for s in doc["slos"]]
    assert len(loaded) == len(expected)
    for item, (index, doc, spec) in zip(loaded, expected, strict=True):
        slo = item.slo
        assert item.format == "sloth"
        assert slo.service == doc["service"]
        assert slo.name == spec["name"]
        assert slo.id == f"{doc['service']}-{spec['name']}"
        assert slo.objective == spec["objective"]
        assert slo.description == spec.get("description", "")
        assert slo.labels == {**doc.get("labels", {}), **spec.get("labels", {})}
        assert slo.window.period_s == 30 * 86400 and slo.window.rolling
        assert slo.alert_windows is None  # Sloth's default (Workbook) windows
        assert slo.source.file == str(path) and slo.source.document == index
        sli = spec["sli"]
        if "events" in sli:
            assert isinstance(slo.sli, EventsSLI)
            assert slo.sli.error_query == sli["events"]["error_query"]
            assert slo.sli.total_query == sli["events"]["total_query"]
            assert slo.sli.good_query is None
        else:
            assert isinstance(slo.sli, RawSLI)
            assert slo.sli.error_ratio_query == sli["raw"]["error_ratio_query"]
        alerting: dict[str, Any] = spec["alerting"]
        assert slo.alerting is not None
        if "name" in alerting:
            assert slo.alerting.name == alerting["name"]
        assert slo.alerting.labels == alerting.get("labels", {})
        assert slo.alerting.annotations == alerting.get("annotations", {})
        for ours, theirs in (
            (slo.alerting.page, "page_alert"),
            (slo.alerting.ticket, "ticket_alert"),
        ):
            given = alerting.get(theirs, {})
            assert ours.disabled == given.get("disable", False)
            assert ours.labels == given.get("labels", {})
            assert ours.annotations == given.get("annotations", {})


@needs_data
def test_getting_started_by_hand() -> None:
    (slo,) = load_slos([SLOTH / "getting-started.yml"])
    assert slo.id == "myservice-requests-availability"
    assert slo.objective == 99.9
    assert slo.error_budget == pytest.approx(0.001)
    assert slo.labels == {"owner": "myteam", "repo": "myorg/myservice", "tier": "2"}
    assert slo.alerting is not None
    assert slo.alerting.name == "MyServiceHighErrorRate"
    assert slo.alerting.page.labels == {"severity": "pageteam", "routing_key": "myteam"}
    assert slo.alerting.ticket.labels == {"severity": "slack", "slack_channel": "#alerts-myteam"}
    assert slo.source.path == "slos[0]"


@needs_data
def test_no_alerts_example_disables_both_alerts() -> None:
    (slo,) = load_slos([SLOTH / "no-alerts.yml"])
    assert slo.alerting is not None
    assert slo.alerting.page.disabled and slo.alerting.ticket.disabled
    # Block scalars keep their text, newlines included, as Sloth keeps them.
    assert isinstance(slo.sli, EventsSLI) and slo.sli.total_query.startswith("sum(\n")


@needs_data
def test_multifile_example_has_one_slo_per_document() -> None:
    slos = load_slos([SLOTH / "multifile.yml"])
    assert [(s.id, s.source.document, s.objective) for s in slos] == [
        ("myservice-requests-availability", 0, 99.9),
        ("myservice2-requests-availability", 1, 99.99),
    ]


@needs_data
def test_openslo_v1alpha_example_reads_as_sloth_reads_it() -> None:
    (item,) = load_specs([SLOTH / "openslo-getting-started.yml"])
    slo = item.slo
    # Sloth's own rules for this file carry sloth_id my-service-sloth-slo-my-service-0.
    assert slo.id == "my-service-sloth-slo-my-service-0"
    assert slo.objective == 99.9
    assert slo.window.period_s == 30 * 86400
    assert isinstance(slo.sli, EventsSLI)
    assert slo.sli.good_query is not None and 'code!~"(5..|429)"' in slo.sli.good_query
    assert slo.alerting is not None
    assert slo.alerting.page.disabled and slo.alerting.ticket.disabled


# Sloth's own expectations (internal/alert/alert_test.go): the floats must be equal, not close.
SLOTH_BURN_RATES = {
    "7d.yaml": (7, [13.44, 3.5, 1.4000000000000001, 0.98]),
    "google-28d.yaml": (28, [13.44, 5.6000000000000005, 2.8000000000000003, 0.9333333333333333]),
    "google-30d.yaml": (30, [14.4, 6.0, 3.0, 1.0]),
    "custom-30d.yaml": (30, [14.4, 4.8, 3.0, 1.0]),
}


@needs_data
@pytest.mark.parametrize("name", sorted(SLOTH_BURN_RATES))
def test_sloth_windows_give_the_period_and_sloths_burn_rates(name: str) -> None:
    days, rates = SLOTH_BURN_RATES[name]
    slos = load_slos([SLOTH / "multifile.yml"], sloth_windows=SLOTH / "windows" / name)
    for slo in slos:
        assert slo.window.period_s == days * 86400
        assert slo.alert_windows is not None
        assert [w.burn_rate for w in slo.alert_windows] == rates
        assert [(w.severity, w.name) for w in slo.alert_windows] == [
            ("page", "quick"),
            ("page", "slow"),
            ("ticket", "quick"),
            ("ticket", "slow"),
        ]


SPEC = """\
version: "prometheus/v1"
service: "svc"
labels:
  tier: 2
slos:
  - name: "avail"
    objective: 99.5
    sli:
      events:
        error_query: sum(rate(errors_total[{{ .window }}]))
        total_query: sum(rate(requests_total[{{.window}}]))
    alerting:
      name: SvcErrors
"""


def test_unquoted_numbers_are_text_and_window_spellings_are_normalised() -> None:
    (slo,) = load_slo_text(SPEC)
    assert slo.labels == {"tier": "2"}
    assert isinstance(slo.sli, EventsSLI)
    assert slo.sli.error_query == "sum(rate(errors_total[{{.window}}]))"
    assert slo.source.file == "<memory>"


def problems(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_slo_text(text, "sloth.yml")
    return str(info.value).splitlines()


def test_plugin_sli_is_not_supported() -> None:
    text = SPEC.replace(
        "      events:\n        error_query: sum(rate(errors_total[{{ .window }}]))\n"
        "        total_query: sum(rate(requests_total[{{.window}}]))\n",
        "      plugin:\n        id: sloth-common/kubernetes/apiserver/availability\n",
    )
    assert problems(text) == [
        "sloth.yml:9: document 1: slos[0].sli.plugin: SLI plugins are not supported (plugin "
        "'sloth-common/kubernetes/apiserver/availability' runs inside Sloth); write the "
        "plugin's queries as sli.events or sli.raw"
    ]


def test_objective_of_100_leaves_no_budget() -> None:
    assert problems(SPEC.replace("objective: 99.5", "objective: 100")) == [
        "sloth.yml:7: document 1: slos[0].objective: must be less than 100, got the number 100"
    ]


def test_an_objective_above_100_is_told_the_same_bound_as_100() -> None:
    # Not "less than or equal to 100": the user would then write 100 and be refused again.
    assert problems(SPEC.replace("objective: 99.5", "objective: 120")) == [
        "sloth.yml:7: document 1: slos[0].objective: must be less than 100, got the number 120"
    ]


def test_alert_name_is_required_unless_both_alerts_are_disabled() -> None:
    text = SPEC.replace("      name: SvcErrors\n", "      ticket_alert: {disable: true}\n")
    assert problems(text) == [
        "sloth.yml:12: document 1: slos[0].alerting.name: required field is missing (Sloth "
        "needs the alert name unless page_alert and ticket_alert are both disabled)"
    ]
    both = SPEC.replace(
        "      name: SvcErrors\n",
        "      ticket_alert: {disable: true}\n      page_alert: {disable: true}\n",
    )
    (slo,) = load_slo_text(both)
    assert slo.alerting is not None and slo.alerting.page.disabled


def test_every_problem_of_a_sloth_spec_is_reported() -> None:
    text = SPEC.replace("objective: 99.5", "objective: high").replace("name: SvcErrors", "nam: X")
    text = text.replace("      events:\n", "      events:\n        eror_query: x\n")
    assert problems(text) == [
        "sloth.yml:7: document 1: slos[0].objective: expected a number, got the text 'high'",
        "sloth.yml:10: document 1: slos[0].sli.events.eror_query: unknown field 'eror_query'; "
        "did you mean 'error_query'?",
        "sloth.yml:14: document 1: slos[0].alerting.nam: unknown field 'nam'; did you mean 'name'?",
    ]


def test_wrong_version_and_no_slos() -> None:
    assert problems(SPEC.replace("prometheus/v1", "prometheus/v2")) == [
        "sloth.yml:1: document 1: version: unsupported Sloth spec version 'prometheus/v2'; "
        "expected prometheus/v1"
    ]
    assert problems('version: "prometheus/v1"\nservice: a\nslos: []\n') == [
        "sloth.yml:3: document 1: slos: needs at least 1 item"
    ]


def test_slo_labels_override_service_labels_of_the_same_name() -> None:
    text = SPEC.replace("    objective: 99.5\n", '    objective: 99.5\n    labels: {tier: "1"}\n')
    (slo,) = load_slo_text(text)
    assert slo.labels == {"tier": "1"}  # Sloth's mergeLabels(spec.labels, slo.labels)


def test_disabling_only_the_page_alert_keeps_the_ticket_alert() -> None:
    text = SPEC + "      page_alert: {disable: true}\n"
    (slo,) = load_slo_text(text)
    assert slo.alerting is not None
    assert (slo.alerting.page.disabled, slo.alerting.ticket.disabled) == (True, False)


def test_an_sli_with_none_of_events_raw_and_plugin_is_one_problem() -> None:
    text = SPEC.replace(
        "      events:\n        error_query: sum(rate(errors_total[{{ .window }}]))\n"
        "        total_query: sum(rate(requests_total[{{.window}}]))\n",
        "      {}\n",
    )
    assert problems(text) == [
        "sloth.yml:8: document 1: slos[0].sli: give exactly one of events, raw and plugin"
    ]


def test_without_alerts_the_alert_name_is_made_from_the_slo_id() -> None:
    text = SPEC.replace(
        "      name: SvcErrors\n",
        "      page_alert: {disable: true}\n      ticket_alert: {disable: true}\n",
    )
    (slo,) = load_slo_text(text)
    assert slo.alerting is not None and slo.alerting.name == "SvcAvail"


def test_slos_under_a_bad_header_are_checked_but_not_built() -> None:
    # Both headers are broken, so neither service is known: the SLOs must not be built under a
    # placeholder service (that would report a duplicate id the user never wrote).
    bad = SPEC.replace("  tier: 2\n", "  bad-label: x\n")
    other = bad.replace('service: "svc"', 'service: "other"')
    assert problems(bad + "---\n" + other) == [
        "sloth.yml:4: document 1: labels.bad-label: 'bad-label' is not a Prometheus label name "
        "(letters, digits and _, not starting with a digit)",
        "sloth.yml:18: document 2: labels.bad-label: 'bad-label' is not a Prometheus label name "
        "(letters, digits and _, not starting with a digit)",
    ]


def test_a_query_template_other_than_the_window_is_refused() -> None:
    text = SPEC.replace("errors_total[{{ .window }}]", "errors_total{job='{{.job}}'}[{{.window}}]")
    assert problems(text) == [
        "sloth.yml:10: document 1: slos[0].sli.events.error_query: unknown template '{{.job}}'; "
        "only {{.window}} is replaced"
    ]
