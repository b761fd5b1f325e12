"""relia's Prometheus rules, proven with promtool against Sloth's own generated rules.

For every Sloth example spec: relia's rules pass ``promtool check rules``, and under
``promtool test rules`` they fire the same alerts (labels and rendered annotations) at the same
times as Sloth's ``*.gen.yml`` on the same synthetic series, in four scenarios: no burn, a slow burn
(2x the budget for a day: a ticket), a fast burn (20x for an hour: a page) and short spikes that
recover (60x for 20 minutes pages briefly; 60x for 5 minutes does not).

Method: promtool runs Sloth's rules with an empty expectation at every evaluation step (5m); its
failure report is the alerts Sloth fires at each step. Those become the expectations of a second
test file that relia's rules must pass. Both runs fix promtool's group order (SLI recordings, then
metadata, then alerts); left alone it is Go's random map order and alerts move by a step from run
to run. relia computes its long windows (1d, 3d, 30d) from 5m recordings
rather than Sloth's raw ``rate()[3d]``; both are ratios of the same events, but the 5m ramp at the
window edges can move a crossing of a threshold by a few minutes. So the steps right before and
right after each of Sloth's transitions are not compared: a transition may move by at most one
evaluation step, and every other step must match exactly. The scenarios keep burn rates well clear
of the thresholds (0.5x, 2x, 20x, 60x against 1, 3, 6 and 14.4). On the HTTP examples relia's
alerts in fact match Sloth's at every step; on the wifi examples, in the fast burn, the tickets
of two SLOs start one step later.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from relia.slo.rules import render_rules
from relia.slo.spec import SLO, AlertingSpec, EventsSLI, TimeWindow

from .promtool_util import (
    SLOTH,
    Alert,
    have_promtool,
    parse_got_alerts,
    promtool,
    sloth_slos,
    sloth_specs,
)

pytestmark = [
    pytest.mark.skipif(not have_promtool(), reason="promtool not installed (Debian prometheus)"),
    pytest.mark.skipif(not SLOTH.is_dir(), reason=f"Sloth examples not found at {SLOTH}"),
]

EVAL_S = 300  # promtool's evaluation interval, and the grid the alerts are compared on
EXTRA_LABELS = {"cmd": "examplesgen.sh"}  # the extra label Sloth's examples were generated with

# Scenarios: (minutes, level) segments. Levels are realised per example family below.
SCENARIOS: dict[str, list[tuple[int, str]]] = {
    "no_burn": [(1440, "ok")],
    "slow_burn": [(720, "ok"), (1440, "slow"), (360, "ok")],
    "fast_burn": [(720, "ok"), (60, "fast"), (480, "ok")],
    "short_spike": [(720, "ok"), (20, "spike"), (240, "ok"), (5, "spike"), (240, "ok")],
}

# --- input series ------------------------------------------------------------------------------


def _counter(steps: list[tuple[int, int]]) -> str:
    """promtool's expanding notation for a counter growing by ``inc`` per sample for ``n``
    samples, segment after segment, from 0 (one leading sample at 0)."""
    parts, value = [], 0
    for i, (n, inc) in enumerate(steps):
        if i == 0:
            parts.append(f"0+{inc}x{n}")
            value = n * inc
        else:
            parts.append(f"{value + inc}+{inc}x{n - 1}")
            value += n * inc
    return " ".join(parts)


def _gauge(steps: list[tuple[int, float]]) -> str:
    parts = []
    for i, (n, v) in enumerate(steps):
        parts.append(f"{v}x{n if i == 0 else n - 1}")
    return " ".join(parts)


HTTP_TOTAL_PER_MIN = 2000
# Errors per minute: multiples of a 99.9 % SLO's budget (2 per minute at 2000 requests).
HTTP_ERRORS = {"ok": 1, "slow": 4, "fast": 40, "spike": 120}


def http_inputs(segments: list[tuple[int, str]]) -> tuple[str, list[dict[str, str]]]:
    """Two counters per job (code 200 and 500) scraped every minute, for the jobs the HTTP
    examples query (myservice, myapp)."""
    series = []
    for job in ("myservice", "myapp"):
        errors = [(n, HTTP_ERRORS[level]) for n, level in segments]
        good = [(n, HTTP_TOTAL_PER_MIN - e) for n, e in errors]
        for code, steps in (("200", good), ("500", errors)):
            labels = f'{{job="{job}",code="{code}"}}'
            series.append(
                {
                    "series": f"http_request_duration_seconds_count{labels}",
                    "values": _counter(steps),
                }
            )
    return "1m", series


WIFI_CLIENTS = 10
# Per level: how many clients are unhappy and their satisfaction ratio (the rest are at 0.99).
# "slow": one client at 0.7 is 10 % below 0.75 (2x the 95 % SLO) and none below 0.5.
WIFI_BAD = {"ok": (0, 0.99), "slow": (1, 0.7), "fast": (10, 0.2), "spike": (10, 0.2)}


def wifi_inputs(segments: list[tuple[int, str]]) -> tuple[str, list[dict[str, str]]]:
    """Client satisfaction gauges scraped every 5 minutes: Sloth's raw ``sum_over_time(x[3d])``
    over ten clients stays under promtool's 10,000-sample query limit only at that resolution."""
    series = []
    for c in range(WIFI_CLIENTS):
        steps = []
        for minutes, level in segments:
            bad, value = WIFI_BAD[level]
            steps.append((minutes // 5, value if c < bad else 0.99))
        series.append(
            {
                "series": f'unifipoller_client_satisfaction_ratio{{client="c{c}"}}',
                "values": _gauge(steps),
            }
        )
    return "5m", series


@dataclass(frozen=True)
class Family:
    specs: tuple[str, ...]
    inputs: Callable[[list[tuple[int, str]]], tuple[str, list[dict[str, str]]]]


# Examples that query the same metrics share a promtool run (their SLO ids differ).
FAMILIES = {
    "getting-started+openslo": Family(
        ("getting-started.yml", "openslo-getting-started.yml"), http_inputs
    ),
    "multifile+no-alerts": Family(("multifile.yml", "no-alerts.yml"), http_inputs),
    "home-wifi+raw-home-wifi": Family(("home-wifi.yml", "raw-home-wifi.yml"), wifi_inputs),
}


def test_every_sloth_example_is_covered() -> None:
    covered = sorted(name for fam in FAMILIES.values() for name in fam.specs)
    assert covered == sorted(p.name for p in sloth_specs())


# --- promtool runs -----------------------------------------------------------------------------

Timeline = dict[tuple[str, int], frozenset[Alert]]


def _alert_names(rule_files: list[Path]) -> list[str]:
    names = set()
    for f in rule_files:
        for doc in yaml.safe_load_all(f.read_text()):
            for group in (doc or {}).get("groups", []):
                names.update(r["alert"] for r in group["rules"] if "alert" in r)
    return sorted(names)


def _group_order(rule_files: list[Path]) -> list[str]:
    """Every group, SLI recordings first, then metadata, then alerts. Without an order promtool
    evaluates groups in Go's random map order, so an alert would see this step's recordings in
    one run and the previous step's in the next."""
    names = []
    for f in rule_files:
        for doc in yaml.safe_load_all(f.read_text()):
            names.extend(g["name"] for g in (doc or {}).get("groups", []))
    rank = {"sli": 0, "meta": 1, "alerts": 2}
    return sorted(names, key=lambda n: next(r for k, r in rank.items() if f"-{k}-" in n))


def _span_s(segments: list[tuple[int, str]]) -> int:
    return sum(n for n, _ in segments) * 60


def _test_file(
    path: Path,
    rule_files: list[Path],
    segments: list[tuple[int, str]],
    family: Family,
    checks: list[dict[str, Any]],
) -> Path:
    interval, series = family.inputs(segments)
    doc = {
        "rule_files": [str(f) for f in rule_files],
        "evaluation_interval": f"{EVAL_S // 60}m",
        "group_eval_order": _group_order(rule_files),
        "tests": [{"interval": interval, "input_series": series, "alert_rule_test": checks}],
    }
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def probe(
    workdir: Path, rule_files: list[Path], segments: list[tuple[int, str]], family: Family
) -> Timeline:
    """The alerts ``rule_files`` fire at every evaluation step: promtool run with empty
    expectations, its failure report parsed. Steps with no alert are absent."""
    names = _alert_names(rule_files)
    checks = [
        {"eval_time": f"{t // 60}m", "alertname": name}
        for t in range(0, _span_s(segments) + 1, EVAL_S)
        for name in names
    ]
    if not checks:
        return {}
    test = _test_file(workdir / "probe.yml", rule_files, segments, family, checks)
    proc = promtool("test", "rules", test)
    out = proc.stdout + proc.stderr
    assert "err:" not in out, out[-3000:]  # a rule failed to evaluate (e.g. too many samples)
    got = parse_got_alerts(out)
    # Every failure is an alert report that was parsed: nothing else went wrong, nothing was lost.
    assert (proc.returncode != 0) == bool(got) and len(got) == out.count("alertname: "), out[-3000:]
    return {(name, ms // 1000): alerts for (name, ms), alerts in got.items()}


def expectations(
    timeline: Timeline, names: list[str], span_s: int
) -> tuple[list[dict[str, Any]], int]:
    """Alert tests asserting ``timeline`` at every step, except the step on each side of a
    transition (see the module docstring). Returns the tests and how many steps were skipped."""
    checks, skipped = [], 0
    times = list(range(0, span_s + 1, EVAL_S))
    for name in names:
        states = [timeline.get((name, t), frozenset()) for t in times]
        near = set()
        for i in range(1, len(times)):
            if states[i] != states[i - 1]:
                near.update((i - 1, i))
        skipped += len(near)
        for i, t in enumerate(times):
            if i in near:
                continue
            exp = [
                {
                    "exp_labels": {k: v for k, v in a.labels if k != "alertname"},
                    "exp_annotations": dict(a.annotations),
                }
                for a in sorted(states[i])
            ]
            checks.append({"eval_time": f"{t // 60}m", "alertname": name, "exp_alerts": exp})
    return checks, skipped


@dataclass
class Outcome:
    sloth: Timeline
    relia_rc: int
    relia_out: str
    compared: int
    skipped: int


def compare(
    workdir: Path, family: Family, scenario: str, relia_rules: Path, sloth_rules: list[Path]
) -> Outcome:
    """Probe Sloth's rules in ``scenario``, then run relia's rules against those expectations."""
    segments = SCENARIOS[scenario]
    workdir.mkdir(parents=True, exist_ok=True)
    sloth = probe(workdir, sloth_rules, segments, family)
    names = _alert_names(sloth_rules)
    assert names == _alert_names([relia_rules]), "relia and Sloth define different alerts"
    checks, skipped = expectations(sloth, names, _span_s(segments))
    if not checks:
        return Outcome(sloth, 0, "", 0, 0)
    test = _test_file(workdir / "expect.yml", [relia_rules], segments, family, checks)
    proc = promtool("test", "rules", test)
    return Outcome(sloth, proc.returncode, proc.stdout + proc.stderr, len(checks), skipped)


def _relia_rules(tmp: Path, specs: tuple[str, ...]) -> Path:
    slos = sloth_slos([SLOTH / s for s in specs])
    path = tmp / "relia-rules.yml"
    path.write_text(render_rules(slos, extra_labels=EXTRA_LABELS))
    return path


def _sloth_rules(tmp: Path, specs: tuple[str, ...]) -> list[Path]:
    """Sloth's generated rules for ``specs``, one file per YAML document: promtool reads only the
    first document of a file, and multifile.gen.yml holds two."""
    out = []
    for s in specs:
        gen = SLOTH / s.replace(".yml", ".gen.yml")
        docs = [d for d in yaml.safe_load_all(gen.read_text()) if d]
        for i, doc in enumerate(docs):
            path = tmp / f"{gen.stem}.{i}.yml"
            path.write_text(yaml.safe_dump(doc, sort_keys=False))
            out.append(path)
    return out


# --- the tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [p.name for p in sloth_specs()])
def test_relia_rules_pass_promtool_check(spec: str, tmp_path: Path) -> None:
    slos = sloth_slos([SLOTH / spec])
    rules = tmp_path / "rules.yml"
    rules.write_text(render_rules(slos, extra_labels=EXTRA_LABELS))
    proc = promtool("check", "rules", "--lint=all", "--lint-fatal", rules)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout and "FAILED" not in proc.stdout + proc.stderr


def _firing(timeline: Timeline, sloth_id: str, severity: str) -> list[int]:
    return sorted(
        t
        for (_, t), alerts in timeline.items()
        for a in alerts
        if ("sloth_id", sloth_id) in a.labels and ("sloth_severity", severity) in a.labels
    )


@pytest.mark.slow
@pytest.mark.parametrize("family_name", list(FAMILIES))
def test_relia_fires_the_same_alerts_as_sloth(family_name: str, tmp_path: Path) -> None:
    family = FAMILIES[family_name]
    relia_rules = _relia_rules(tmp_path, family.specs)
    sloth_rules = _sloth_rules(tmp_path, family.specs)
    with ThreadPoolExecutor(max_workers=2) as pool:
        outcomes = dict(
            zip(
                SCENARIOS,
                pool.map(
                    lambda s: compare(tmp_path / s, family, s, relia_rules, sloth_rules),
                    SCENARIOS,
                ),
                strict=True,
            )
        )
    for scenario, outcome in outcomes.items():
        assert outcome.relia_rc == 0, f"{scenario}: relia differs from Sloth\n{outcome.relia_out}"
        # Steps next to a transition are few: at least 90 % of the steps are compared exactly.
        assert outcome.skipped * 10 <= outcome.compared, (scenario, outcome.skipped)

    # The scenarios mean something: check what Sloth (and so relia) did in them.
    if family_name.startswith("getting-started"):
        sid = "myservice-requests-availability"
        o = outcomes
        assert not o["no_burn"].sloth
        assert _firing(o["slow_burn"].sloth, sid, "ticket")
        assert not _firing(o["slow_burn"].sloth, sid, "page")
        assert _firing(o["fast_burn"].sloth, sid, "page")
        spike = _firing(o["short_spike"].sloth, sid, "page")
        assert spike, "the 20-minute spike pages"
        # ... briefly: it resolves, and the 5-minute blip 4 hours later does not page.
        assert max(spike) - min(spike) < 3600
        assert max(spike) < (720 + 20 + 120) * 60
    if family_name.startswith("home-wifi"):
        o = outcomes
        assert _firing(o["fast_burn"].sloth, "home-wifi-good-wifi-client-satisfaction", "page")
        assert _firing(o["slow_burn"].sloth, "home-wifi-good-wifi-client-satisfaction", "ticket")
        assert _firing(o["fast_burn"].sloth, "home-wifi-wifi-client-satisfaction", "page")


@pytest.mark.slow
def test_the_comparison_catches_a_difference(tmp_path: Path) -> None:
    """Break relia's page threshold (14.4x becomes 1.44x): the same comparison must fail."""
    family = FAMILIES["getting-started+openslo"]
    relia_rules = _relia_rules(tmp_path, family.specs)
    text = relia_rules.read_text()
    assert "(14.4 * " in text
    relia_rules.write_text(text.replace("(14.4 * ", "(1.44 * "))
    sloth_rules = _sloth_rules(tmp_path, family.specs)
    outcome = compare(tmp_path / "fast", family, "fast_burn", relia_rules, sloth_rules)
    assert outcome.relia_rc != 0
    assert "MyServiceHighErrorRate" in outcome.relia_out


def test_long_windows_weigh_by_traffic(tmp_path: Path) -> None:
    """A busy half-day without errors and a quiet half-day with 10 % errors: the 1-day error ratio
    is 1 % of requests (the mean of the 5m ratios would be 5 %)."""
    slo = SLO(
        service="shop",
        name="availability",
        objective=99.0,
        sli=EventsSLI(
            error_query='sum(rate(requests_total{code="500"}[{{.window}}]))',
            total_query="sum(rate(requests_total[{{.window}}]))",
        ),
        window=TimeWindow(period_s=30 * 86400),
    )
    rules = tmp_path / "rules.yml"
    rules.write_text(render_rules([slo]))
    busy, quiet = 1000, 100  # requests per minute
    ok = _counter([(720, busy), (720, quiet - 10)])
    bad = _counter([(720, 0), (720, 10)])
    # 0.01 = 7200 bad of 720,000 + 72,000 = 792,000 requests: 0.00909...; checked to 1e-3 relative.
    want = 7200 / 792000
    expr = (
        f"(slo:sli_error:ratio_rate1d > bool {want * 0.999}) * "
        f"(slo:sli_error:ratio_rate1d < bool {want * 1.001})"
    )
    labels = {
        "sloth_id": "shop-availability",
        "sloth_service": "shop",
        "sloth_slo": "availability",
        "sloth_window": "1d",
    }
    test = {
        "rule_files": [str(rules)],
        "evaluation_interval": "5m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": 'requests_total{code="200"}', "values": ok},
                    {"series": 'requests_total{code="500"}', "values": bad},
                ],
                "promql_expr_test": [
                    {
                        "expr": expr,
                        "eval_time": "1d",
                        "exp_samples": [
                            {
                                "labels": "{"
                                + ",".join(f'{k}="{v}"' for k, v in labels.items())
                                + "}",
                                "value": 1,
                            }
                        ],
                    },
                ],
            }
        ],
    }
    path = tmp_path / "test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    proc = promtool("test", "rules", path)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# --- rule behaviour in a few hand-made cases ------------------------------------------------------


def _run_case(
    tmp_path: Path,
    slos: list[SLO],
    interval: str,
    series: list[dict[str, str]],
    *,
    alerts: Sequence[dict[str, Any]] = (),
    exprs: Sequence[dict[str, Any]] = (),
) -> subprocess.CompletedProcess[str]:
    """``promtool test rules`` of relia's rules for ``slos`` on ``series`` (evaluated every
    minute, groups in relia's order)."""
    rules = tmp_path / "rules.yml"
    rules.write_text(render_rules(slos))
    test = {
        "rule_files": [str(rules)],
        "evaluation_interval": "1m",
        "group_eval_order": _group_order([rules]),
        "tests": [
            {
                "interval": interval,
                "input_series": series,
                "alert_rule_test": list(alerts),
                "promql_expr_test": list(exprs),
            }
        ],
    }
    path = tmp_path / "test.yml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    return promtool("test", "rules", path)


def _labels(slo: SLO, name: str, **extra: str) -> str:
    """The labels of a recorded series of ``slo``, as promtool writes them."""
    labels = {
        "__name__": name,
        "sloth_id": slo.id,
        "sloth_service": slo.service,
        "sloth_slo": slo.name,
        **extra,
    }
    return "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"


def _error_ratio(slo: SLO, window: str, eval_time: str, value: float) -> dict[str, Any]:
    """An expression test: ``slo``'s error ratio over ``window`` is ``value``."""
    name = f"slo:sli_error:ratio_rate{window}"
    labels = _labels(slo, name, sloth_window=window)
    return {
        "expr": name,
        "eval_time": eval_time,
        "exp_samples": [{"labels": labels, "value": value}],
    }


def _firing_alerts(slo: SLO, eval_time: str, severities: Sequence[str]) -> dict[str, Any]:
    """An alert test: ``slo``'s alert fires with these severities (default annotations)."""
    assert slo.alerting is not None
    who = f"{slo.service} {slo.name} SLO error budget burn rate"
    return {
        "eval_time": eval_time,
        "alertname": slo.alerting.name,
        "exp_alerts": [
            {
                "exp_labels": {
                    "sloth_id": slo.id,
                    "sloth_service": slo.service,
                    "sloth_slo": slo.name,
                    "sloth_severity": sev,
                },
                "exp_annotations": {
                    "summary": f"{who} is over expected.",
                    "title": f"({sev}) {who} is too fast.",
                },
            }
            for sev in severities
        ],
    }


def test_a_good_query_sli_pages_when_every_event_is_bad(tmp_path: Path) -> None:
    """Only error series exist (no ``code="200"`` series at all): the good query is empty, the
    error ratio must be 1 and the page must fire, not stay silent."""
    slo = SLO(
        service="api",
        name="avail",
        objective=99.9,
        sli=EventsSLI(
            good_query='sum(rate(req_total{code="200"}[{{.window}}]))',
            total_query="sum(rate(req_total[{{.window}}]))",
        ),
        window=TimeWindow(period_s=30 * 86400),
        alerting=AlertingSpec(name="ApiAvail"),
    )
    series = [{"series": 'req_total{code="500"}', "values": "0+60x180"}]
    exprs = [_error_ratio(slo, w, "2h", 1) for w in ("5m", "1h", "6h")]
    alerts = [_firing_alerts(slo, "2h", ["page", "ticket"])]
    proc = _run_case(tmp_path, [slo], "1m", series, alerts=alerts, exprs=exprs)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_good_query_keeps_its_grouping_labels_when_one_group_has_no_good_series(
    tmp_path: Path,
) -> None:
    """``sum by (job)``: job a is all errors (no good series), job b is all good. Each job gets
    its own ratio, 1 and 0: the zero stands in for a's good side without touching b's."""
    slo = SLO(
        service="api",
        name="avail",
        objective=99.9,
        sli=EventsSLI(
            good_query='sum by (job) (rate(req_total{code="200"}[{{.window}}]))',
            total_query="sum by (job) (rate(req_total[{{.window}}]))",
        ),
        window=TimeWindow(period_s=30 * 86400),
    )
    series = [
        {"series": 'req_total{job="a",code="500"}', "values": "0+60x180"},
        {"series": 'req_total{job="b",code="200"}', "values": "0+60x180"},
    ]
    name = "slo:sli_error:ratio_rate1h"
    exprs = [
        {
            "expr": name,
            "eval_time": "2h",
            "exp_samples": [
                {"labels": _labels(slo, name, job="a", sloth_window="1h"), "value": 1},
                {"labels": _labels(slo, name, job="b", sloth_window="1h"), "value": 0},
            ],
        }
    ]
    proc = _run_case(tmp_path, [slo], "1m", series, exprs=exprs)
    assert proc.returncode == 0, proc.stdout + proc.stderr


OPENSLO_LATENCY = """\
apiVersion: openslo/v1
kind: SLO
metadata: {name: search-slo}
spec:
  service: web-shop
  indicator:
    metadata: {name: search-latency}
    spec:
      thresholdMetric:
        metricSource: {type: prometheus, spec: {query: search_latency_ms}}
  timeWindow: [{duration: 28d, isRolling: true}]
  budgetingMethod: Occurrences
  objectives: [{op: lt, value: 500, target: 0.99}]
  alertPolicies:
    - kind: AlertPolicy
      metadata: {name: fast}
      spec:
        conditions:
          - kind: AlertCondition
            metadata: {name: fast-burn}
            spec:
              severity: page
              condition: {kind: burnrate, op: gt, threshold: 14.4, lookbackWindow: 1h,
                          alertAfter: 5m}
"""


def test_an_openslo_threshold_occurrences_slo_pages_when_every_point_breaches(
    tmp_path: Path,
) -> None:
    """A latency gauge at 900 ms against ``op: lt, value: 500``: no point is good, so the good
    count (``count_over_time`` of a filter) has no series; the ratio is 1 and the page fires."""
    from relia.slo.loader import load_slo_text

    [slo] = load_slo_text(OPENSLO_LATENCY)
    series = [{"series": "search_latency_ms", "values": "100x120 900x180"}]
    exprs = [_error_ratio(slo, "5m", "150m", 1), _error_ratio(slo, "1h", "250m", 1)]
    # The policy has a page condition only.
    alerts = [_firing_alerts(slo, "150m", ["page"])]
    proc = _run_case(tmp_path, [slo], "1m", series, alerts=alerts, exprs=exprs)
    assert proc.returncode == 0, proc.stdout + proc.stderr
