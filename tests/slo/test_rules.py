"""Prometheus rules for SLOs: structure, expressions, labels, disabled alerts, min_events, and the
``relia slo rules`` command. (promtool proves them in test_rules_promtool.py.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from relia import __version__
from relia.cli import app
from relia.errors import ConfigError
from relia.slo.rules import render_rules, rule_groups, substitute_window
from relia.slo.spec import (
    SLO,
    AlertingSpec,
    AlertSeveritySpec,
    AlertWindow,
    BudgetingMethod,
    EventsSLI,
    RawSLI,
    SpecSource,
    ThresholdSLI,
    TimeWindow,
)

SEL = (
    'sloth_id="myservice-requests-availability", sloth_service="myservice", '
    'sloth_slo="requests-availability"'
)
ERR = 'sum(rate(http_requests_total{job="myservice",code=~"(5..|429)"}[{{.window}}]))'
TOT = 'sum(rate(http_requests_total{job="myservice"}[{{.window}}]))'


def make_slo(**kw: Any) -> SLO:
    base: dict[str, Any] = dict(
        service="myservice",
        name="requests-availability",
        objective=99.9,
        sli=EventsSLI(error_query=ERR, total_query=TOT),
        labels={"owner": "myteam", "tier": "2"},
        alerting=AlertingSpec(
            name="MyServiceHighErrorRate",
            labels={"category": "availability"},
            annotations={"summary": "High error rate"},
            page=AlertSeveritySpec(labels={"severity": "pageteam"}),
            ticket=AlertSeveritySpec(labels={"severity": "slack"}),
        ),
    )
    base.update(kw)
    return SLO(**base)


def groups_by_name(slos: list[SLO], **kw: Any) -> dict[str, list[dict[str, Any]]]:
    return {g["name"]: g["rules"] for g in rule_groups(slos, **kw)["groups"]}


def by_name(rules: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r.get("record") or f"{r['alert']}/{r['labels']['sloth_severity']}": r for r in rules}


def test_structure_and_expressions_snapshot() -> None:
    groups = groups_by_name([make_slo()])
    sid = "myservice-requests-availability"
    assert list(groups) == [
        f"relia-slo-sli-recordings-{sid}",
        f"relia-slo-meta-recordings-{sid}",
        f"relia-slo-alerts-{sid}",
    ]
    sli = by_name(groups[f"relia-slo-sli-recordings-{sid}"])
    assert list(sli) == [
        "slo:sli_error_events:rate5m",
        "slo:sli_total_events:rate5m",
        "slo:sli_error:ratio_rate5m",
        "slo:sli_error:ratio_rate30m",
        "slo:sli_error:ratio_rate1h",
        "slo:sli_error:ratio_rate2h",
        "slo:sli_error:ratio_rate6h",
        "slo:sli_error:ratio_rate1d",
        "slo:sli_error:ratio_rate3d",
        "slo:sli_error:ratio_rate30d",
    ]
    assert sli["slo:sli_error_events:rate5m"]["expr"] == ERR.replace("{{.window}}", "5m")
    assert sli["slo:sli_total_events:rate5m"]["expr"] == TOT.replace("{{.window}}", "5m")
    assert sli["slo:sli_error:ratio_rate5m"]["expr"] == (
        f"slo:sli_error_events:rate5m{{{SEL}}}\n/\nslo:sli_total_events:rate5m{{{SEL}}}\n"
    )
    assert sli["slo:sli_error:ratio_rate30m"]["expr"] == (
        '(sum(rate(http_requests_total{job="myservice",code=~"(5..|429)"}[30m])))\n/\n'
        '(sum(rate(http_requests_total{job="myservice"}[30m])))\n'
    )
    # Long windows: sums of the 5m recordings, never rate() over days.
    assert sli["slo:sli_error:ratio_rate3d"]["expr"] == (
        f"sum_over_time(slo:sli_error_events:rate5m{{{SEL}}}[3d])\n/\n"
        f"sum_over_time(slo:sli_total_events:rate5m{{{SEL}}}[3d])\n"
    )
    for window in ("1d", "3d", "30d"):
        expr = sli[f"slo:sli_error:ratio_rate{window}"]["expr"]
        assert "http_requests_total" not in expr and "rate(" not in expr
    assert sli["slo:sli_error:ratio_rate1h"]["labels"] == {
        "owner": "myteam",
        "sloth_id": sid,
        "sloth_service": "myservice",
        "sloth_slo": "requests-availability",
        "sloth_window": "1h",
        "tier": "2",
    }

    meta = by_name(groups[f"relia-slo-meta-recordings-{sid}"])
    assert {k: v["expr"] for k, v in meta.items()} == {
        "slo:objective:ratio": "vector(0.9990000000000001)",
        "slo:error_budget:ratio": "vector(1-0.9990000000000001)",
        "slo:time_period:days": "vector(30)",
        "slo:current_burn_rate:ratio": (
            f"slo:sli_error:ratio_rate5m{{{SEL}}}\n"
            "/ on(sloth_id, sloth_slo, sloth_service) group_left\n"
            f"slo:error_budget:ratio{{{SEL}}}\n"
        ),
        "slo:period_burn_rate:ratio": (
            f"slo:sli_error:ratio_rate30d{{{SEL}}}\n"
            "/ on(sloth_id, sloth_slo, sloth_service) group_left\n"
            f"slo:error_budget:ratio{{{SEL}}}\n"
        ),
        "slo:period_error_budget_remaining:ratio": f"1 - slo:period_burn_rate:ratio{{{SEL}}}",
        "sloth_slo_info": "vector(1)",
    }
    assert "sloth_window" not in meta["slo:objective:ratio"]["labels"]
    info = meta["sloth_slo_info"]["labels"]
    assert info["sloth_objective"] == "99.9"
    assert info["sloth_mode"] == "relia"
    assert info["sloth_version"] == __version__

    alerts = by_name(groups[f"relia-slo-alerts-{sid}"])
    budget = "0.0009999999999999432"
    assert alerts["MyServiceHighErrorRate/page"]["expr"] == (
        "(\n"
        f"    max(slo:sli_error:ratio_rate5m{{{SEL}}} > (14.4 * {budget})) without (sloth_window)\n"
        "    and\n"
        f"    max(slo:sli_error:ratio_rate1h{{{SEL}}} > (14.4 * {budget})) without (sloth_window)\n"
        ")\n"
        "or\n"
        "(\n"
        f"    max(slo:sli_error:ratio_rate30m{{{SEL}}} > (6 * {budget})) without (sloth_window)\n"
        "    and\n"
        f"    max(slo:sli_error:ratio_rate6h{{{SEL}}} > (6 * {budget})) without (sloth_window)\n"
        ")\n"
    )
    ticket = alerts["MyServiceHighErrorRate/ticket"]
    assert "(3 * " in ticket["expr"] and "ratio_rate1d" in ticket["expr"]
    assert "(1 * " in ticket["expr"] and "ratio_rate3d" in ticket["expr"]


def test_alert_labels_and_annotations() -> None:
    alerts = by_name(
        groups_by_name([make_slo()])["relia-slo-alerts-myservice-requests-availability"]
    )
    page, ticket = alerts["MyServiceHighErrorRate/page"], alerts["MyServiceHighErrorRate/ticket"]
    assert page["labels"] == {
        "category": "availability",
        "severity": "pageteam",
        "sloth_id": "myservice-requests-availability",
        "sloth_service": "myservice",
        "sloth_severity": "page",
        "sloth_slo": "requests-availability",
    }
    assert ticket["labels"]["severity"] == "slack"
    assert ticket["labels"]["sloth_severity"] == "ticket"
    # The SLO's summary replaces Sloth's default; the title is Sloth's default.
    assert page["annotations"] == {
        "summary": "High error rate",
        "title": "(page) {{$labels.sloth_service}} {{$labels.sloth_slo}} SLO error budget burn "
        "rate is too fast.",
    }
    plain = make_slo(alerting=AlertingSpec(name="X"))
    page = by_name(groups_by_name([plain])["relia-slo-alerts-myservice-requests-availability"])[
        "X/page"
    ]
    assert page["annotations"]["summary"] == (
        "{{$labels.sloth_service}} {{$labels.sloth_slo}} SLO error budget burn rate is over "
        "expected."
    )
    override = make_slo(
        alerting=AlertingSpec(
            name="X",
            annotations={"runbook": "a"},
            page=AlertSeveritySpec(annotations={"runbook": "b"}, labels={"team": "t"}),
        )
    )
    page = by_name(groups_by_name([override])["relia-slo-alerts-myservice-requests-availability"])[
        "X/page"
    ]
    assert page["annotations"]["runbook"] == "b"
    assert page["labels"]["team"] == "t"


def test_disabled_alerts() -> None:
    only_ticket = make_slo(alerting=AlertingSpec(name="X", page=AlertSeveritySpec(disabled=True)))
    groups = groups_by_name([only_ticket])
    alerts = groups["relia-slo-alerts-myservice-requests-availability"]
    assert [a["labels"]["sloth_severity"] for a in alerts] == ["ticket"]

    none = make_slo(
        alerting=AlertingSpec(
            name="X",
            page=AlertSeveritySpec(disabled=True),
            ticket=AlertSeveritySpec(disabled=True),
        )
    )
    for slo in (none, make_slo(alerting=None)):
        groups = groups_by_name([slo])
        assert len(groups) == 2  # no alert group, as Sloth's no-alerts example
        # ... but the SLI windows are still recorded, for dashboards and reports.
        assert "slo:sli_error:ratio_rate3d" in by_name(next(iter(groups.values())))


def test_labels_merge_extra_then_slo_then_identity() -> None:
    slo = make_slo(labels={"owner": "myteam", "cmd": "from-slo"})
    rules = groups_by_name([slo], extra_labels={"cmd": "from-slo", "env": "prod"})
    rec = by_name(rules["relia-slo-sli-recordings-myservice-requests-availability"])
    labels = rec["slo:sli_error:ratio_rate5m"]["labels"]
    assert labels["cmd"] == "from-slo" and labels["env"] == "prod" and labels["owner"] == "myteam"
    assert labels["sloth_id"] == "myservice-requests-availability"


def test_an_extra_label_the_slo_sets_otherwise_is_refused() -> None:
    # The SLO's value silently won over the command line's `-l owner=zz`.
    slo = make_slo(labels={"owner": "myteam"}, source=SpecSource(file="s.yml"))
    with pytest.raises(ConfigError, match="extra label owner=zz clashes with SLO .*owner=myteam"):
        rule_groups([slo], extra_labels={"owner": "zz"})


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"labels": {"sloth_id": "x"}}, "label 'sloth_id' is set by relia"),
        ({"labels": {"bad-name": "x"}}, "'bad-name' is not a valid Prometheus label name"),
        ({"labels": {"__x": "x"}}, "'__x' is not a valid"),
    ],
)
def test_bad_labels_are_refused(kw: dict[str, Any], message: str) -> None:
    slo = make_slo(source=SpecSource(file="s.yml"), **kw)
    with pytest.raises(ConfigError, match=rf"^s\.yml: document 1: labels: {message}"):
        rule_groups([slo])
    with pytest.raises(ConfigError, match="extra labels: label 'sloth_slo' is set by relia"):
        rule_groups([make_slo()], extra_labels={"sloth_slo": "x"})


def test_duplicate_ids_are_refused() -> None:
    a = make_slo(source=SpecSource(file="a.yml"))
    b = make_slo(source=SpecSource(file="b.yml"))
    with pytest.raises(ConfigError, match=r"^b\.yml.*defined twice \(also in a\.yml"):
        rule_groups([a, b])


def test_min_events_guards_every_alert_condition() -> None:
    groups = groups_by_name([make_slo(min_events=100)])
    sli = by_name(groups["relia-slo-sli-recordings-myservice-requests-availability"])
    counts = {k: v["expr"] for k, v in sli.items() if k.startswith("slo:sli_total_events:count")}
    # rate() queries are per second: events = average rate × window seconds.
    avg = "avg_over_time(slo:sli_total_events:rate5m{%s}[%s]) * %d"
    assert counts == {
        "slo:sli_total_events:count1h": avg % (SEL, "1h", 3600),
        "slo:sli_total_events:count6h": avg % (SEL, "6h", 21600),
        "slo:sli_total_events:count1d": avg % (SEL, "1d", 86400),
        "slo:sli_total_events:count3d": avg % (SEL, "3d", 259200),
    }
    alerts = by_name(groups["relia-slo-alerts-myservice-requests-availability"])
    page = alerts["MyServiceHighErrorRate/page"]["expr"]
    assert page.count(">= 100) without (sloth_window)") == 2
    assert f"max(slo:sli_total_events:count1h{{{SEL}}} >= 100) without (sloth_window)" in page
    assert f"max(slo:sli_total_events:count6h{{{SEL}}} >= 100) without (sloth_window)" in page

    # Queries that count events in their window (not rates) scale by windows, not seconds.
    counted = make_slo(
        min_events=5,
        sli=EventsSLI(
            error_query="sum(increase(e[{{.window}}]))", total_query="sum(increase(t[{{.window}}]))"
        ),
    )
    sli = by_name(
        groups_by_name([counted])["relia-slo-sli-recordings-myservice-requests-availability"]
    )
    assert sli["slo:sli_total_events:count1h"]["expr"].endswith("[1h]) * 12")
    # The rule the reports follow (relia.slo.spec.counts_per_window): count_over_time counts;
    # a query that names neither a rate nor a counting function is a per-second rate.
    for total, factor in (
        ("sum(count_over_time((lat)[{{.window}}:]))", "12"),
        ("sum(sum_over_time((reqs)[{{.window}}:]))", "12"),
        ("sum(job:requests:rate{{.window}})", "3600"),
    ):
        slo = make_slo(min_events=5, sli=EventsSLI(good_query=total, total_query=total))
        sli = by_name(
            groups_by_name([slo])["relia-slo-sli-recordings-myservice-requests-availability"]
        )
        assert sli["slo:sli_total_events:count1h"]["expr"].endswith(f"[1h]) * {factor}"), total

    # Without min_events, or for a raw SLI, there is no guard.
    for slo in (make_slo(), make_slo(min_events=100, sli=RawSLI(error_ratio_query="q"))):
        text = render_rules([slo])
        assert "count1h" not in text and ">= 100" not in text


def test_good_query_slis() -> None:
    slo = make_slo(sli=EventsSLI(good_query="sum(rate(ok[{{.window}}]))", total_query=TOT))
    sli = by_name(groups_by_name([slo])["relia-slo-sli-recordings-myservice-requests-availability"])
    tot5, tot30 = TOT.replace("{{.window}}", "5m"), TOT.replace("{{.window}}", "30m")
    # No good series is no good events: the good side falls back to 0 wherever total exists.
    assert sli["slo:sli_error_events:rate5m"]["expr"] == (
        f"({tot5})\n-\n(\n  (sum(rate(ok[5m])))\n  or\n  ({tot5}) * 0\n)"
    )
    assert sli["slo:sli_error:ratio_rate30m"]["expr"] == (
        f"1 - (\n  (\n  (sum(rate(ok[30m])))\n  or\n  ({tot30}) * 0\n)\n  /\n  ({tot30})\n)\n"
    )


def test_raw_slis_average_the_short_ratio_over_long_windows() -> None:
    slo = make_slo(sli=RawSLI(error_ratio_query="1 - avg_over_time(up[{{.window}}])"))
    sli = by_name(groups_by_name([slo])["relia-slo-sli-recordings-myservice-requests-availability"])
    assert "slo:sli_error_events:rate5m" not in sli
    assert sli["slo:sli_error:ratio_rate5m"]["expr"] == "(1 - avg_over_time(up[5m]))\n"
    assert sli["slo:sli_error:ratio_rate6h"]["expr"] == "(1 - avg_over_time(up[6h]))\n"
    assert sli["slo:sli_error:ratio_rate1d"]["expr"] == (
        f"avg_over_time(slo:sli_error:ratio_rate5m{{{SEL}}}[1d])\n"
    )


def test_threshold_slis_count_bad_slices() -> None:
    slo = make_slo(
        sli=ThresholdSLI(query="histogram_quantile(0.99, x)", op="lte", value=0.3),
        budgeting=BudgetingMethod.TIMESLICES,
        timeslice_window_s=60,
    )
    sli = by_name(groups_by_name([slo])["relia-slo-sli-recordings-myservice-requests-availability"])
    assert sli["slo:sli_error:ratio_rate1h"]["expr"] == (
        "avg_over_time(((histogram_quantile(0.99, x)) > bool 0.3)[1h:1m])\n"
    )
    assert sli["slo:sli_error:ratio_rate3d"]["expr"].startswith(
        "avg_over_time(slo:sli_error:ratio_rate5m{"
    )


def test_custom_windows_and_periods() -> None:
    windows = (
        AlertWindow(
            severity="page",
            name="quick",
            budget_percent=1,
            long_s=1800,
            short_s=120,
            burn_rate=14.4,
        ),
        AlertWindow(
            severity="ticket",
            name="slow",
            budget_percent=5,
            long_s=129600,
            short_s=10800,
            burn_rate=1,
        ),
    )
    slo = make_slo(alert_windows=windows, window=TimeWindow(period_s=28 * 86400))
    groups = groups_by_name([slo])
    sli = by_name(groups["relia-slo-sli-recordings-myservice-requests-availability"])
    assert [k for k in sli if k.startswith("slo:sli_error:")] == [
        "slo:sli_error:ratio_rate2m",
        "slo:sli_error:ratio_rate30m",
        "slo:sli_error:ratio_rate3h",
        "slo:sli_error:ratio_rate1d12h",
        "slo:sli_error:ratio_rate28d",
    ]
    assert "slo:sli_error_events:rate2m" in sli
    assert (
        "sum_over_time(slo:sli_error_events:rate2m{" in sli["slo:sli_error:ratio_rate1d12h"]["expr"]
    )
    meta = by_name(groups["relia-slo-meta-recordings-myservice-requests-availability"])
    assert meta["slo:time_period:days"]["expr"] == "vector(28)"
    assert "ratio_rate2m{" in meta["slo:current_burn_rate:ratio"]["expr"]
    alerts = groups["relia-slo-alerts-myservice-requests-availability"]
    assert len(alerts) == 2 and "(14.4 * " in alerts[0]["expr"] and "(1 * " in alerts[1]["expr"]
    # 28 days with the default windows: Sloth's 28-day burn rates.
    text = render_rules([make_slo(window=TimeWindow(period_s=28 * 86400))])
    assert "(13.44 * " in text and "(0.9333333333333333 * " in text


def test_window_placeholder_spellings() -> None:
    assert substitute_window("rate(x[{{.window}}]) / rate(y[{{ .window }}])", 86400) == (
        "rate(x[1d]) / rate(y[1d])"
    )


def test_render_rules_is_the_dict_as_yaml() -> None:
    slos = [make_slo(), make_slo(service="other")]
    text = render_rules(slos, extra_labels={"cmd": "x"})
    assert text.startswith(f"# Generated by relia {__version__}")
    assert yaml.safe_load(text) == rule_groups(slos, extra_labels={"cmd": "x"})
    assert "expr: |\n" in text  # multi-line expressions as literal blocks


# --- relia slo rules ---------------------------------------------------------------------------

SPEC = """\
version: prometheus/v1
service: myservice
labels: {owner: myteam}
slos:
  - name: requests-availability
    objective: 99.9
    sli:
      events:
        error_query: sum(rate(http_requests_total{code=~"5.."}[{{.window}}]))
        total_query: sum(rate(http_requests_total[{{.window}}]))
    alerting:
      name: MyServiceHighErrorRate
"""


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    p = tmp_path / "slo.yml"
    p.write_text(SPEC)
    return p


def test_cli_writes_rules_to_stdout(spec: Path) -> None:
    result = CliRunner().invoke(app, ["slo", "rules", str(spec), "--label", "cmd=gen"])
    assert result.exit_code == 0, result.output
    doc = yaml.safe_load(result.stdout)
    first = doc["groups"][0]["rules"][0]
    assert first["labels"]["cmd"] == "gen" and first["labels"]["owner"] == "myteam"


def test_cli_writes_rules_to_a_file(spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "rules.yml"
    result = CliRunner().invoke(app, ["slo", "rules", str(spec), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote 19 rules for 1 SLO to" in result.stderr
    assert (
        yaml.safe_load(out.read_text())["groups"][2]["rules"][0]["alert"]
        == "MyServiceHighErrorRate"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--label", "novalue"], "--label: expected KEY=VALUE, got 'novalue'"),
        (["--label", "sloth_id=x"], "extra labels: label 'sloth_id' is set by relia"),
        (["--out", "/nonexistent-dir/rules.yml"], "/nonexistent-dir/rules.yml: cannot write"),
    ],
)
def test_cli_errors_are_one_line_and_exit_2(spec: Path, args: list[str], message: str) -> None:
    result = CliRunner().invoke(app, ["slo", "rules", str(spec), *args])
    assert result.exit_code == 2
    assert result.stderr.startswith(f"relia: error: {message}")
    assert result.stderr.count("\n") == 1


def test_cli_reports_spec_errors(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["slo", "rules", str(tmp_path / "missing.yml")])
    assert result.exit_code == 2
    assert "relia: error:" in result.stderr and "missing.yml" in result.stderr


# -- threshold edges (mutation audit) ---------------------------------------------------------


@pytest.mark.parametrize(
    ("op", "bad"),
    # A slice is bad when its value fails ``value op threshold``: the negation of op.
    [("lt", ">="), ("lte", ">"), ("gt", "<="), ("gte", "<")],
)
def test_threshold_slis_count_the_slices_that_fail_the_comparison(op: str, bad: str) -> None:
    slo = make_slo(
        sli=ThresholdSLI(query="q", op=op, value=0.3),
        budgeting=BudgetingMethod.TIMESLICES,
        timeslice_window_s=60,
    )
    sli = by_name(groups_by_name([slo])["relia-slo-sli-recordings-myservice-requests-availability"])
    assert sli["slo:sli_error:ratio_rate1h"]["expr"] == (
        f"avg_over_time(((q) {bad} bool 0.3)[1h:1m])\n"
    )


def test_threshold_windows_shorter_than_a_slice_sample_once_per_window() -> None:
    # 10-minute slices, but the page's 5m short window cannot hold a 10m step (a [5m:10m]
    # subquery can come up empty): windows shorter than a slice step by their own length.
    slo = make_slo(
        sli=ThresholdSLI(query="q", op="lte", value=0.3),
        budgeting=BudgetingMethod.TIMESLICES,
        timeslice_window_s=600,
    )
    sli = by_name(groups_by_name([slo])["relia-slo-sli-recordings-myservice-requests-availability"])
    assert sli["slo:sli_error:ratio_rate5m"]["expr"] == "avg_over_time(((q) > bool 0.3)[5m:5m])\n"
    assert sli["slo:sli_error:ratio_rate1h"]["expr"] == "avg_over_time(((q) > bool 0.3)[1h:10m])\n"


# -- alerts and metadata edges (mutation audit) -----------------------------------------------


def test_event_counts_are_recorded_only_for_the_alerts_that_can_fire() -> None:
    # min_events with the page disabled: the ticket's long windows (1d, 3d) need event counts,
    # the page's (1h, 6h) would be recorded for nothing.
    slo = make_slo(
        min_events=100,
        alerting=AlertingSpec(name="X", page=AlertSeveritySpec(disabled=True)),
    )
    sli = by_name(groups_by_name([slo])["relia-slo-sli-recordings-myservice-requests-availability"])
    counts = [k for k in sli if k.startswith("slo:sli_total_events:count")]
    assert counts == ["slo:sli_total_events:count1d", "slo:sli_total_events:count3d"]


def test_a_severity_without_windows_has_no_alert() -> None:
    # Only a page window: there is a page alert, and no ticket alert with an empty expression.
    page_only = (
        AlertWindow(severity="page", name="quick", budget_percent=2, long_s=3600, short_s=300,
                    burn_rate=14.4),
    )  # fmt: skip
    alerts = groups_by_name([make_slo(alert_windows=page_only)])[
        "relia-slo-alerts-myservice-requests-availability"
    ]
    assert [a["labels"]["sloth_severity"] for a in alerts] == ["page"]


def test_time_period_days_keeps_a_part_day() -> None:
    # 84 hours are 3.5 days, not 3.
    meta = by_name(
        groups_by_name([make_slo(window=TimeWindow(period_s=84 * 3600))])[
            "relia-slo-meta-recordings-myservice-requests-availability"
        ]
    )
    assert meta["slo:time_period:days"]["expr"] == "vector(3.5)"
