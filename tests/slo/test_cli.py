"""``relia slo rules`` options and messages, beyond what tests/slo/test_rules.py covers."""

from __future__ import annotations

import os
from pathlib import Path
from typing import BinaryIO

import pytest
import yaml
from typer.testing import CliRunner

from relia.cli import app
from tests.closed_pipe import run_into_closed_pipe

ROOT = Path(__file__).resolve().parents[2]
SLO_DATA = Path(os.environ.get("RELIA_SLO_DATA", ROOT.parent / "shared/data/slo"))

SPEC = """\
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
  - name: latency
    objective: 99
    sli:
      events:
        error_query: sum(rate(slow_total[{{.window}}]))
        total_query: sum(rate(requests_total[{{.window}}]))
"""


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    p = tmp_path / "web.yaml"
    p.write_text(SPEC)
    return p


def _rules(text: str) -> list[dict[str, object]]:
    return [r for g in yaml.safe_load(text)["groups"] for r in g["rules"]]


def test_rules_label_value_keeps_its_own_equals_signs(spec: Path) -> None:
    result = CliRunner().invoke(app, ["slo", "rules", str(spec), "-l", "query=a=b"])
    assert result.exit_code == 0, result.output
    first = _rules(result.stdout)[0]
    assert first["labels"]["query"] == "a=b"  # type: ignore[index]


def test_rules_label_without_a_key_is_refused(spec: Path) -> None:
    result = CliRunner().invoke(app, ["slo", "rules", str(spec), "--label", "=x"])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == "relia: error: --label: expected KEY=VALUE, got '=x'\n"


def test_rules_written_to_a_file_counts_every_rule_of_every_slo(spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "rules.yml"
    result = CliRunner().invoke(app, ["slo", "rules", str(spec), "--out", str(out)])
    assert result.exit_code == 0, result.output
    n = len(_rules(out.read_text()))
    assert n > 6  # more rules than groups
    assert result.stderr == f"wrote {n} rules for 2 SLOs to {out}\n" and result.stdout == ""


def test_rules_that_fail_half_written_leave_the_old_file_whole(
    spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Prometheus reads the rules file: a full disk used to leave it cut off.
    out = tmp_path / "rules.yml"
    out.write_text("groups: []\n")
    real_fdopen = os.fdopen

    class FullDisk:
        """The temporary file's handle: half of what is written lands, then the disk is full."""

        def __init__(self, fh: BinaryIO) -> None:
            self.fh = fh

        def __enter__(self) -> FullDisk:
            return self

        def __exit__(self, *exc: object) -> None:
            self.fh.close()

        def write(self, data: bytes) -> int:
            self.fh.write(data[: len(data) // 2])
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fdopen", lambda fd, *a, **k: FullDisk(real_fdopen(fd, *a, **k)))
    result = CliRunner().invoke(app, ["slo", "rules", str(spec), "--out", str(out)])
    assert result.exit_code == 2
    assert result.stderr == f"relia: error: {out}: cannot write: No space left on device\n"
    assert out.read_text() == "groups: []\n"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no leftover


def test_rules_that_cannot_be_written_say_why_in_words(spec: Path, tmp_path: Path) -> None:
    out = tmp_path / "missing" / "rules.yml"
    result = CliRunner().invoke(app, ["slo", "rules", str(spec), "--out", str(out)])
    assert result.exit_code == 2
    assert result.stderr == f"relia: error: {out}: cannot write: No such file or directory\n"


@pytest.mark.skipif(not (SLO_DATA / "sloth").is_dir(), reason=f"no SLO examples at {SLO_DATA}")
def test_rules_sloth_windows_set_the_alert_windows() -> None:
    sloth = SLO_DATA / "sloth"
    base = ["slo", "rules", str(sloth / "multifile.yml")]
    default = CliRunner().invoke(app, base)
    week = CliRunner().invoke(app, [*base, "--sloth-windows", str(sloth / "windows" / "7d.yaml")])
    assert default.exit_code == 0 and week.exit_code == 0, week.output
    assert "30d" in default.stdout and "30d" not in week.stdout


def test_rules_out_that_is_a_spec_file_is_refused_and_the_spec_kept(
    spec: Path, tmp_path: Path
) -> None:
    before = spec.read_bytes()
    out = tmp_path / "." / spec.name
    result = CliRunner().invoke(app, ["slo", "rules", str(spec), "--out", str(out)])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == f"relia: error: --out: {out} is also an input; write elsewhere\n"
    assert spec.read_bytes() == before


def test_rules_out_that_is_the_sloth_windows_file_is_refused(spec: Path, tmp_path: Path) -> None:
    windows = tmp_path / "7d.yaml"
    windows.write_text(
        "apiVersion: sloth.slok.dev/v1\nkind: AlertWindows\nspec:\n  sloPeriod: 7d\n"
    )
    before = windows.read_bytes()
    args = ["slo", "rules", str(spec), "--sloth-windows", str(windows), "--out", str(windows)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "is also an input" in result.stderr
    assert windows.read_bytes() == before


@pytest.mark.parametrize("url", ["http://[::1", "http://127.0.0.1:99999", "http://"])
def test_report_prometheus_url_that_cannot_be_parsed_is_one_line(spec: Path, url: str) -> None:
    result = CliRunner().invoke(app, ["slo", "report", str(spec), "--prometheus", url])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.exception
    assert result.stderr.startswith("relia: error: --prometheus: not a valid URL")
    assert result.stderr.count("\n") == 1


def test_report_plot_in_a_missing_folder_fails_before_prometheus_is_asked(
    spec: Path, tmp_path: Path
) -> None:
    plot = tmp_path / "no-such-dir" / "burn.png"
    # Nothing listens on port 9: a check after the queries would say so instead.
    args = ["slo", "report", str(spec), "--prometheus", "http://127.0.0.1:9", "--plot", str(plot)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == f"relia: error: {plot}: cannot write plot: No such file or directory\n"


def test_validate_of_alert_windows_alone_says_what_it_checked(tmp_path: Path) -> None:
    # Sloth's windows/7d.yaml printed "0 SLOs OK", which reads as if nothing was found.
    windows = tmp_path / "7d.yaml"
    windows.write_text(
        "apiVersion: sloth.slok.dev/v1\nkind: AlertWindows\nspec:\n  sloPeriod: 7d\n"
        "  page:\n    quick: {errorBudgetPercent: 8, shortWindow: 5m, longWindow: 1h}\n"
        "    slow: {errorBudgetPercent: 12.5, shortWindow: 30m, longWindow: 6h}\n"
        "  ticket:\n    quick: {errorBudgetPercent: 20, shortWindow: 2h, longWindow: 1d}\n"
        "    slow: {errorBudgetPercent: 42, shortWindow: 6h, longWindow: 3d}\n"
    )
    result = CliRunner().invoke(app, ["slo", "validate", str(windows)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "no SLOs, only Sloth AlertWindows: OK"


@pytest.mark.parametrize("command", ["validate", "rules"])
def test_a_closed_stdout_pipe_ends_the_run_quietly_with_0(spec: Path, command: str) -> None:
    # `relia slo validate web.yaml | true` exited 1.
    r = run_into_closed_pipe("slo", command, str(spec))
    assert (r.returncode, r.stderr) == (0, b"")


@pytest.mark.parametrize(
    ("label", "message"),
    [
        ("sloth_id", "labels.sloth_id: label 'sloth_id' is set by relia"),
        ("sloth_window", "labels.sloth_window: label 'sloth_window' is set by relia"),
        ("__x", "labels.__x: '__x': label names starting with __ are reserved by Prometheus"),
    ],
)
@pytest.mark.parametrize("command", ["validate", "rules"])
def test_a_label_relia_sets_is_refused_by_every_command_at_its_line(
    tmp_path: Path, label: str, message: str, command: str
) -> None:
    # validate said "2 SLOs OK" where rules refused it, naming slos[0]'s line.
    spec = tmp_path / "web.yaml"
    spec.write_text(SPEC.replace("slos:\n", f"labels:\n  team: a\n  {label}: x\nslos:\n", 1))
    result = CliRunner().invoke(app, ["slo", command, str(spec)])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == f"relia: error: {spec}:5: document 1: {message}\n"


def test_rules_label_the_spec_sets_otherwise_is_refused_naming_both(spec: Path) -> None:
    spec.write_text(SPEC.replace("slos:\n", "labels: {owner: web-team}\nslos:\n", 1))
    result = CliRunner().invoke(app, ["slo", "rules", str(spec), "-l", "owner=zz"])
    assert result.exit_code == 2 and result.stdout == ""
    assert "extra label owner=zz clashes with SLO web-availability's label owner=web-team" in (
        result.stderr
    )
    same = CliRunner().invoke(app, ["slo", "rules", str(spec), "-l", "owner=web-team"])
    assert same.exit_code == 0, same.output


def test_rules_label_given_twice_is_refused(spec: Path) -> None:
    result = CliRunner().invoke(app, ["slo", "rules", str(spec), "-l", "a=1", "-l", "a=2"])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == "relia: error: --label: label 'a' is given twice (a=1, a=2)\n"


def test_rules_out_name_that_ends_in_a_slash_is_refused(spec: Path, tmp_path: Path) -> None:
    out = f"{tmp_path / 'out.yml'}/"
    result = CliRunner().invoke(app, ["slo", "rules", str(spec), "-o", out])
    assert result.exit_code == 2
    assert (
        result.stderr == f"relia: error: --out: names a directory ({out}); --out writes one file\n"
    )
    assert not (tmp_path / "out.yml").exists()


def test_rules_out_link_replaces_the_file_it_names(spec: Path, tmp_path: Path) -> None:
    real = tmp_path / "target.yml"
    real.write_text("groups: []\n")
    link = tmp_path / "outlink.yml"
    link.symlink_to(real)
    result = CliRunner().invoke(app, ["slo", "rules", str(spec), "-o", str(link)])
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and len(_rules(real.read_text())) > 6
