"""``relia slo validate``: one line per SLO and a count, or every problem and exit code 2."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from relia.cli import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "slo"
SLO_DATA = Path(os.environ.get("RELIA_SLO_DATA", ROOT.parent / "shared/data/slo"))
needs_data = pytest.mark.skipif(
    not (SLO_DATA / "sloth").is_dir(), reason=f"SLO examples not found at {SLO_DATA}"
)

GOOD = """\
apiVersion: relia/v1
service: web
slos:
  - name: availability
    objective: 99.9
    sli:
      events:
        error_query: sum(rate(errors_total[{{.window}}]))
        total_query: sum(rate(requests_total[{{.window}}]))
    alerting: {name: WebErrors}
  - name: good-minutes
    objective: 99.5
    period: 1w
    calendar: {start: 2024-01-01, timezone: Europe/Berlin}
    budgeting: {method: timeslices, timeslice_window: 1m, timeslice_target: 99}
    sli:
      raw:
        error_ratio_query: avg_over_time(error_ratio[{{.window}}])
"""


def test_ok_prints_one_line_per_slo_and_the_count(tmp_path: Path) -> None:
    spec = tmp_path / "web.yaml"
    spec.write_text(GOOD)
    result = runner.invoke(app, ["slo", "validate", str(spec)])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "web-availability",
        "relia",
        "99.9%",
        "30d",
        "rolling",
        "occurrences",
    ]
    assert lines[1].split() == [
        "web-good-minutes",
        "relia",
        "99.5%",
        "7d",
        "calendar",
        "from",
        "2024-01-01",
        "00:00",
        "Europe/Berlin",
        "timeslices",
        "(1m",
        "slices)",
    ]
    assert lines[2] == "2 SLOs OK"
    assert result.stderr == ""


def test_every_problem_in_every_file_exits_2(tmp_path: Path) -> None:
    one = tmp_path / "one.yaml"
    one.write_text(GOOD.replace("objective: 99.9", "objective: 120"))
    two = tmp_path / "two.yaml"
    two.write_text(GOOD.replace("period: 1w", "period: 5x").replace("service: web", "service: x"))
    result = runner.invoke(app, ["slo", "validate", str(one), str(two)])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"relia: error: {one}:5: document 1: slos[0].objective: must be less than 100, got the "
        "number 120",
        f"relia: error: {two}:13: document 1: slos[1].period: invalid duration '5x' (expected "
        "e.g. 5m, 1h, 30d, 2w)",
    ]


def test_a_period_too_short_for_the_default_alert_windows_is_a_problem(tmp_path: Path) -> None:
    # `relia slo rules` and `report` refuse a 2d SLO without its own alert windows (the 3d
    # ticket window does not fit); validate must not call the same spec OK.
    spec = tmp_path / "short.yaml"
    spec.write_text(GOOD.replace("objective: 99.9\n", "objective: 99.9\n    period: 2d\n", 1))
    result = runner.invoke(app, ["slo", "validate", str(spec)])
    assert result.exit_code == 2, result.output
    assert "SLO period 2d is shorter than the 3d window" in result.output
    assert "OK" not in result.stdout


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    result = runner.invoke(app, ["slo", "validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert result.stderr == f"relia: error: {tmp_path / 'nope.yaml'}: no such file\n"


def test_the_examples_validate() -> None:
    result = runner.invoke(app, ["slo", "validate", *map(str, sorted(EXAMPLES.glob("*.yaml")))])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1] == "7 SLOs OK"


@needs_data
def test_sloth_windows_option_sets_the_period() -> None:
    sloth = SLO_DATA / "sloth"
    result = runner.invoke(
        app,
        [
            "slo",
            "validate",
            str(sloth / "multifile.yml"),
            "--sloth-windows",
            str(sloth / "windows" / "7d.yaml"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert [line.split()[:4] for line in result.stdout.splitlines()[:2]] == [
        ["myservice-requests-availability", "sloth", "99.9%", "7d"],
        ["myservice2-requests-availability", "sloth", "99.99%", "7d"],
    ]


@needs_data
def test_shared_openslo_examples_validate(tmp_path: Path) -> None:
    files = sorted((SLO_DATA / "openslo").glob("budgeting-method_*.yaml"))
    # budgeting-method_timeslices-slo.yaml's `duration: 1m` is one minute (docs/slo.md): its two
    # SLOs are too short for the default alert windows, which `rules` and `report` refuse too.
    short = [f for f in files if f.name == "budgeting-method_timeslices-slo.yaml"]
    result = runner.invoke(app, ["slo", "validate", *map(str, short)])
    assert result.exit_code == 2, result.output
    assert result.output.count("SLO period 1m is shorter than the 3d window") == 2
    # The file's comment says "1 month": the error says how a month is written.
    assert result.output.count("1m is one minute; a month is 30d, or 1M in OpenSLO") == 2
    result = runner.invoke(app, ["slo", "validate", *(str(f) for f in files if f not in short)])
    assert result.exit_code == 0, result.output
    assert "ratio_timeslices (1m slices)" in result.stdout
    assert result.stdout.splitlines()[-1] == "2 SLOs OK"


def test_help() -> None:
    result = runner.invoke(app, ["slo", "validate", "--help"])
    assert result.exit_code == 0
    assert "--sloth-windows" in result.stdout


def test_columns_line_up_and_objectives_keep_their_digits(tmp_path: Path) -> None:
    spec = tmp_path / "web.yaml"
    spec.write_text(GOOD.replace("objective: 99.9\n", "objective: 99.99999\n"))
    result = runner.invoke(app, ["slo", "validate", str(spec)])
    assert result.exit_code == 0, result.output
    first, second, _ = result.stdout.splitlines()
    assert first.split()[2] == "99.99999%"
    # Each column starts where it starts on the other line: format, objective, period, method.
    for a, b in (("relia", "relia"), ("99.99999%", "99.5%"), ("30d", "7d"), ("occ", "times")):
        assert first.index(" " + a) == second.index(" " + b)


@needs_data
def test_rules_and_report_name_every_slo_too_short_for_the_default_windows(tmp_path: Path) -> None:
    short = SLO_DATA / "openslo" / "budgeting-method_timeslices-slo.yaml"
    for cmd in (
        ["slo", "rules", str(short)],
        ["slo", "report", str(short), "--prometheus", "http://127.0.0.1:9"],
    ):
        result = runner.invoke(app, cmd)
        assert result.exit_code == 2, result.output
        # Both SLOs of the file, each by where it is, before any query is made.
        assert result.output.count("SLO period 1m is shorter than the 3d window") == 2, cmd
