"""The relia CLI, driven in-process with Typer's runner."""

from __future__ import annotations

import io
import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from relia.cli import app
from relia.config import ReliaConfig
from relia.detect.base import Detector
from relia.errors import DataError
from tests.closed_pipe import run_into_closed_pipe
from tests.slow_http import slow_server

runner = CliRunner()


def _series_csv(path: Path, n: int = 400, spike_at: int = 300) -> Path:
    rng = np.random.default_rng(1)
    values = 10 + rng.normal(0, 0.5, n)
    values[spike_at] = 40
    ts = 1_700_000_000 + 60 * np.arange(n)
    pl.DataFrame({"Timestamp": ts, "Value": values}).write_csv(path)
    return path


def test_detect_scores_a_file_whose_clock_stepped_back_once_and_says_where(
    tmp_path: Path,
) -> None:
    # As NAB's machine_temperature_system_failure.csv does (an hour back, once): scored in file
    # order with a warning naming the row, alone and in a folder.
    src = _series_csv(tmp_path / "in.csv")
    lines = src.read_text().splitlines(keepends=True)
    first = int(lines[201].split(",")[0])
    lines[201] = f"{first - 3600},{lines[201].split(',')[1]}"
    src.write_text("".join(lines))
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["detect", str(src), "--out", str(out)])
    assert result.exit_code == 0, result.output
    warning = f"relia: warning: {src}: row 201 (line 202): time goes back: "
    assert warning in result.stderr and "scored in file order" in result.stderr
    assert pl.read_csv(out).height == 400
    folder = tmp_path / "many"
    folder.mkdir()
    src.rename(folder / "in.csv")
    result = runner.invoke(app, ["detect", str(folder)])
    assert result.exit_code == 0, result.output
    assert f"relia: warning: {folder / 'in.csv'}: row 201 (line 202)" in result.stderr


def test_detect_summary_counts_have_separators_and_singulars(tmp_path: Path) -> None:
    src = _series_csv(tmp_path / "in.csv", n=12_000, spike_at=11_000)
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["detect", str(src), "--out", str(out), "-d", "mad"])
    assert result.exit_code == 0, result.output
    assert f"wrote {out} (12,000 rows)" in result.stderr
    assert f"{src}: 12,000 points, " in result.stderr
    one = tmp_path / "one.csv"
    one.write_text("timestamp,value\n1700000000,1\n")
    result = runner.invoke(app, ["detect", str(one), "--out", str(tmp_path / "o1.csv")])
    assert "(1 row)" in result.stderr and f"{one}: 1 point, 0 anomalous windows" in result.stderr


def test_detect_writes_one_row_per_input_row(tmp_path: Path) -> None:
    src = _series_csv(tmp_path / "in.csv")
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["detect", str(src), "--out", str(out), "--detector", "mad"])
    assert result.exit_code == 0, result.output
    frame = pl.read_csv(out)
    assert frame.columns == ["timestamp", "value", "anomaly_score", "is_anomaly"]
    assert frame.height == 400
    scores = frame["anomaly_score"].to_numpy()
    assert ((scores >= 0) & (scores <= 1)).all()
    assert set(frame["is_anomaly"].unique().to_list()) <= {0, 1}
    assert frame["is_anomaly"][300] == 1
    assert frame["timestamp"][0] == "2023-11-14T22:13:20Z"
    np.testing.assert_allclose(frame["value"][300], 40.0)


def test_detect_summary_says_one_window_and_one_point_in_the_singular(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    values = 10 + np.random.default_rng(2).normal(0, 0.5, 400)
    values[300] += 8.0  # one lone spike
    pl.DataFrame({"timestamp": 1_700_000_000 + 60 * np.arange(400), "value": values}).write_csv(src)
    result = runner.invoke(app, ["detect", str(src), "-d", "mad"])
    assert result.exit_code == 0, result.output
    assert pl.read_csv(io.StringIO(result.stdout))["is_anomaly"].sum() == 1
    assert f"{src}: 400 points, 1 anomalous window (1 point) by mad" in result.stderr


def test_detect_summary_names_the_part_of_the_detector_that_fired(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    values = 10 + np.random.default_rng(2).normal(0, 0.5, 400)
    values[300] += 30.0  # far past anything seen: default's new_range
    pl.DataFrame({"timestamp": 1_700_000_000 + 60 * np.arange(400), "value": values}).write_csv(src)
    result = runner.invoke(app, ["detect", str(src)])
    assert result.exit_code == 0, result.output
    header = next(line for line in result.stderr.splitlines() if "peak score" in line)
    assert header.split("┃")[-1].strip() == "by"
    row = next(line for line in result.stderr.splitlines() if "2023-11-15T03:13:20Z" in line)
    assert row.split("│")[-1].strip() == "new_range"


def test_detect_without_out_writes_csv_to_stdout_and_summary_to_stderr(tmp_path: Path) -> None:
    src = _series_csv(tmp_path / "in.csv")
    result = runner.invoke(app, ["detect", str(src), "-d", "mad"])
    assert result.exit_code == 0
    frame = pl.read_csv(io.StringIO(result.stdout))
    assert frame.height == 400
    assert "anomalous window" in result.stderr
    assert "anomalous window" not in result.stdout


@pytest.mark.parametrize("suffix", [".png", ".html"])
def test_detect_plot(tmp_path: Path, suffix: str) -> None:
    src = _series_csv(tmp_path / "in.csv")
    plot = tmp_path / f"plot{suffix}"
    result = runner.invoke(
        app, ["detect", str(src), "--plot", str(plot), "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 0, result.output
    data = plot.read_bytes()
    if suffix == ".png":
        assert data.startswith(b"\x89PNG")
    else:
        text = data.decode()
        assert (
            "<svg" in text and "Anomalous windows" in text and "http" not in text.split("<svg")[0]
        )


def test_detect_reads_parquet_and_explicit_columns(tmp_path: Path) -> None:
    path = tmp_path / "in.parquet"
    rng = np.random.default_rng(2)
    pl.DataFrame(
        {"when": 1_700_000_000_000 + 1000 * np.arange(100), "cpu": rng.normal(size=100)}
    ).write_parquet(path)
    result = runner.invoke(
        app,
        [
            "detect",
            str(path),
            "--time-col",
            "when",
            "--value-col",
            "cpu",
            "-o",
            str(tmp_path / "o.csv"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert pl.read_csv(tmp_path / "o.csv").height == 100


@pytest.mark.parametrize(
    ("content", "args", "message"),
    [
        (None, [], "no such file"),
        ("", [], "empty"),
        ("timestamp,value\n", [], "no data"),
        ("timestamp,value\n2020-01-01,1\nyesterday,2\n", [], "row 2"),
        ("timestamp,value\n2020-01-01,1\n2020-01-02,abc\n", [], "row 2"),
        ("timestamp,value\n2020-01-01,1\n", ["--value-col", "nope"], "nope"),
        ("timestamp,value\n2020-01-01,1\n", ["--detector", "nope"], "no detector named 'nope'"),
        ("timestamp,value\n2020-01-01,1\n", ["--threshold", "2"], "--threshold"),
        ("timestamp,value\n2020-01-01,1\n", ["--threshold", "0"], "--threshold"),
        ("timestamp,value\n2020-01-01,1\n", ["--plot", "x.gif"], ".png or .html"),
    ],
)
def test_detect_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, content: str | None, args: list[str], message: str
) -> None:
    path = tmp_path / "in.csv"
    if content is not None:
        path.write_text(content)
    result = runner.invoke(app, ["detect", str(path), "-o", str(tmp_path / "o.csv"), *args])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("relia: error:")
    assert message.lower() in lines[0].lower()


def test_detect_needs_a_file_or_prometheus() -> None:
    result = runner.invoke(app, ["detect"])
    assert result.exit_code == 2
    assert "either an INPUT file or --prometheus" in result.stderr


def test_detect_unreachable_prometheus_is_exit_2() -> None:
    # Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    result = runner.invoke(
        app, ["detect", "--prometheus", "http://127.0.0.1:9", "--query", "up", "--step", "1m"]
    )
    assert result.exit_code == 2
    assert "127.0.0.1:9" in result.stderr


@pytest.mark.parametrize(
    ("args", "where"),
    [
        (["--start", "yesterday-ish"], "--start"),
        (["--end", "x"], "--end"),
        (["--step", "fast"], "--step"),
        (["--start", "now", "--end", "now-1h"], "--end must be after --start"),
        (["--start", "1700000000", "--end", "1700000000"], "--end must be after --start"),
    ],
)
def test_detect_prometheus_bad_range(args: list[str], where: str) -> None:
    result = runner.invoke(
        app, ["detect", "--prometheus", "http://127.0.0.1:9", "--query", "up", *args]
    )
    assert result.exit_code == 2
    assert where in result.stderr


def test_detect_prometheus_refuses_a_range_of_too_many_points_before_any_request() -> None:
    # --start 20240101 read as 1970 sent over 9,500 query_range requests in 20 s; now a range
    # past a million points per series is refused up front, naming a --step that would do.
    args = ["--start", "2000-01-01", "--end", "2024-01-01", "--step", "15s"]
    result = runner.invoke(
        app, ["detect", "--prometheus", "http://127.0.0.1:9", "--query", "up", *args]
    )
    assert result.exit_code == 2
    assert "50,492,161 points per series, more than 1,000,000" in result.stderr
    assert "give --step 758s or more" in result.stderr
    assert "127.0.0.1:9" not in result.stderr  # no request was tried


def test_detect_prometheus_timeout_is_a_flag_the_timeout_error_names(tmp_path: Path) -> None:
    values = [[1_700_000_000 + i, str(float(i % 7))] for i in range(120)]
    result_ = [{"metric": {"__name__": "m"}, "values": values}]
    body = json.dumps({"status": "success", "data": {"resultType": "matrix", "result": result_}})
    out = tmp_path / "m.csv"
    # A Prometheus that takes 0.6 s to answer a heavy query.
    with slow_server(body.encode(), delay=0.6, ctype="application/json") as url:
        args = ["detect", "--prometheus", url, "--query", "m", "-d", "mad", "--out", str(out)]
        args += ["--start", "1700000000", "--end", "1700000119", "--step", "1s"]
        result = runner.invoke(app, [*args, "--timeout", "300ms"])
        assert result.exit_code == 2
        assert "Prometheus did not answer within 0.3s (--timeout)" in result.stderr
        assert not out.exists()
        result = runner.invoke(app, [*args, "--timeout", "5s"])
    assert result.exit_code == 0, result.stderr
    assert len(pl.read_csv(out)) == 120


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--timeout", "0s"], "--timeout: a duration must be positive"),
        (["--timeout", "-1s"], "--timeout: a duration must not be negative"),
        (["--timeout", "soon"], "--timeout: expected a duration"),
    ],
)
def test_detect_prometheus_bad_timeout_is_exit_2_naming_it(args: list[str], message: str) -> None:
    result = runner.invoke(
        app, ["detect", "--prometheus", "http://127.0.0.1:9", "--query", "up", *args]
    )
    assert result.exit_code == 2
    assert message in result.stderr


def test_detect_timeout_needs_prometheus(tmp_path: Path) -> None:
    result = runner.invoke(app, ["detect", str(_series_csv(tmp_path / "s.csv")), "--timeout", "5s"])
    assert result.exit_code == 2
    assert "--timeout: bounds the requests to Prometheus; needs --prometheus" in result.stderr


@pytest.mark.parametrize(
    "args", [["--query", "up"], ["--start", "now-2h"], ["--end", "now"], ["--step", "30s"]]
)
def test_detect_prometheus_only_flags_with_a_file_input_are_exit_2_naming_the_flag(
    tmp_path: Path, args: list[str]
) -> None:
    # Each was dropped without a word: --start now-2h scored the whole file, exit 0.
    result = runner.invoke(app, ["detect", str(_series_csv(tmp_path / "s.csv")), *args])
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        f"relia: error: {args[0]}: applies to the Prometheus query; needs --prometheus"
    ]
    assert result.stdout == ""


def test_detect_help_still_names_the_prometheus_range_defaults() -> None:
    result = runner.invoke(app, ["detect", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for default in ("default now-1h", "default now)", "default 15s"):
        assert default in result.stdout


def _counter_csv(path: Path, n: int = 2000, reset_at: int = 800, burst_at: int = 1500) -> Path:
    """A request counter sampled every minute: ~100 requests a minute, a restart (back to
    counting from 0) at ``reset_at`` and six times the traffic for three minutes at ``burst_at``."""
    rng = np.random.default_rng(3)
    per_min = rng.poisson(100, n).astype(np.float64)
    per_min[burst_at : burst_at + 3] = 600.0
    counter = 5e6 + np.cumsum(per_min)
    counter[reset_at:] -= counter[reset_at - 1]
    ts = 1_700_000_000 + 60 * np.arange(n)
    pl.DataFrame({"timestamp": ts, "requests_total": counter}).write_csv(path)
    return path


def test_detect_counter_scores_the_rate(tmp_path: Path) -> None:
    src = _counter_csv(tmp_path / "in.csv")
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["detect", str(src), "--counter", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert "rate per second" in result.stderr
    frame = pl.read_csv(out)
    counter = pl.read_csv(src)["requests_total"].to_numpy()
    assert frame.columns == ["timestamp", "value", "anomaly_score", "is_anomaly"]
    assert frame.height == 2000  # one row per input row
    value = frame["value"].to_numpy()
    score = frame["anomaly_score"].to_numpy()
    # The first row has no rate and scores 0; later rows carry the rate per second.
    assert np.isnan(value[0]) and score[0] == 0.0
    np.testing.assert_allclose(value[1:800], np.diff(counter[:800]) / 60.0, rtol=1e-12)
    # The restart counts from zero: its rate is what the new process counted, not negative.
    np.testing.assert_allclose(value[800], counter[800] / 60.0, rtol=1e-12)
    flags = frame["is_anomaly"].to_numpy()
    assert not flags[790:820].any()  # a restart is not an anomaly of the rate
    assert flags[1500:1503].any()  # six times the traffic is


def test_detect_without_counter_scores_the_raw_value(tmp_path: Path) -> None:
    src = _counter_csv(tmp_path / "in.csv")
    out = tmp_path / "out.csv"
    result = runner.invoke(app, ["detect", str(src), "-o", str(out)])
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(
        pl.read_csv(out)["value"].to_numpy(), pl.read_csv(src)["requests_total"].to_numpy()
    )


def test_detectors_lists_every_registered_detector() -> None:
    result = runner.invoke(app, ["detectors"])
    assert result.exit_code == 0
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert {"default", "mad", "seasonal", "cusum"} <= set(names)


def test_config_check_ok_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "relia.yaml"
    good.write_text(
        "interval: 30s\nscrape:\n  - name: app\n    url: http://127.0.0.1:9100/metrics\n"
    )
    result = runner.invoke(app, ["config", "check", str(good)])
    assert result.exit_code == 0, result.output
    assert "ok" in result.stdout

    bad = tmp_path / "bad.yaml"
    bad.write_text("interval: soon\napi:\n  port: 70000\n  colour: red\n")
    result = runner.invoke(app, ["config", "check", str(bad)])
    assert result.exit_code == 2
    err = result.stderr
    assert f"{bad}:1: interval" in err
    assert f"{bad}:3: api.port" in err
    assert f"{bad}:4: api.colour" in err


def test_config_check_summarises_what_the_file_sets(tmp_path: Path) -> None:
    path = tmp_path / "relia.yaml"
    path.write_text(
        "host: {enabled: false}\ndetector: {name: mad}\nscrape:\n"
        "  - {name: a, url: 'http://127.0.0.1:9100/metrics'}\n"
        "  - {name: b, url: 'http://127.0.0.1:9101/metrics'}\n"
        "prometheus:\n  - {name: p, url: 'http://127.0.0.1:9090', queries: [{query: up}]}\n"
    )
    result = runner.invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == (
        f"{path}: ok (2 scrape targets, 1 Prometheus source, host metrics off, detector mad)"
    )
    path.write_text("interval: 30s\n")
    result = runner.invoke(app, ["config", "check", str(path)])
    assert "host metrics on, detector default)" in result.stdout


def test_config_check_loads_the_slo_files_relia_up_would_load(tmp_path: Path) -> None:
    # `relia up` refuses a spec file that is missing, does not parse, or holds an SLO whose
    # period is too short for the default alert windows: `config check` must not call it ok.
    spec = tmp_path / "shop.yaml"
    spec.write_text(
        "apiVersion: relia/v1\nservice: shop\nslos:\n  - name: avail\n    objective: 99.9\n"
        "    period: 1d\n    sli:\n      events:\n"
        "        error_query: sum(rate(errors_total[{{.window}}]))\n"
        "        total_query: sum(rate(requests_total[{{.window}}]))\n"
    )
    path = tmp_path / "relia.yaml"
    path.write_text(
        f"slos:\n  prometheus: http://127.0.0.1:9090\n  files: [{spec}, {tmp_path}/nope.yaml]\n"
    )
    result = runner.invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 2, result.output
    assert f"{tmp_path}/nope.yaml" in result.stderr
    # A file that does not load is reported; the others are still checked in full.
    path.write_text(f"slos:\n  prometheus: http://127.0.0.1:9090\n  files: [{spec}]\n")
    result = runner.invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 2, result.output
    assert "SLO period 1d is shorter than the 3d window" in result.stderr
    assert str(spec) in result.stderr
    spec.write_text(spec.read_text().replace("period: 1d", "period: 7d"))
    result = runner.invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert "1 SLO," in result.stdout


def test_help_on_every_command() -> None:
    for cmd in (["--help"], ["detect", "--help"], ["up", "--help"], ["config", "check", "--help"]):
        result = runner.invoke(app, cmd)
        assert result.exit_code == 0, cmd
        assert "Usage" in result.stdout


def _all_commands() -> list[tuple[str, Any]]:
    """Every command and group of the CLI, by its full name."""
    found: list[tuple[str, Any]] = []

    def walk(name: str, cmd: Any) -> None:
        found.append((name, cmd))
        if hasattr(cmd, "commands"):  # a group (Typer vendors its own Click: no isinstance)
            for sub_name, sub in cmd.commands.items():
                walk(f"{name} {sub_name}", sub)

    walk("relia", typer.main.get_command(app))
    return found


def test_help_paragraphs_are_not_broken_at_the_source_line_ends() -> None:
    # Typer's rich help keeps a docstring's single line breaks, so text wrapped at 100 columns
    # in the source came out as ragged half lines ("names and\nlabels;" in `relia slo --help`).
    for name, cmd in _all_commands():
        for paragraph in (cmd.help or "").split("\n\n"):
            for line in paragraph.splitlines()[1:]:
                assert line.lstrip().startswith(("-", "*", "\b")), (name, paragraph)
    wide = runner.invoke(app, ["slo", "--help"], env={"COLUMNS": "250"})
    assert "(Sloth-compatible names and labels; long windows computed" in wide.stdout, wide.stdout


def _series_folder(folder: Path) -> Path:
    """Three series (two CSV, one Parquet) and a file that is not a series."""
    folder.mkdir()
    for i, name in enumerate(["a.csv", "b.csv"]):
        _series_csv(folder / name, n=400 + 50 * i, spike_at=300 + i)
    pl.read_csv(_series_csv(folder / "c.tmp", n=500, spike_at=200)).write_parquet(
        folder / "c.parquet"
    )
    (folder / "c.tmp").unlink()
    (folder / "notes.txt").write_text("not a series")
    return folder


def test_detect_folder_writes_one_csv_per_input(tmp_path: Path) -> None:
    folder = _series_folder(tmp_path / "in")
    out = tmp_path / "out" / "scored"  # created, parents too
    result = runner.invoke(app, ["detect", str(folder), "-d", "mad", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in out.iterdir()) == ["a.csv", "b.csv", "c.csv"]
    for name in ("a.csv", "b.csv", "c.parquet"):
        # Each file is what `relia detect FILE --out` writes for that file alone.
        single = tmp_path / f"single-{name}.csv"
        one = runner.invoke(app, ["detect", str(folder / name), "-d", "mad", "-o", str(single)])
        assert one.exit_code == 0, one.output
        assert (out / f"{Path(name).stem}.csv").read_text() == single.read_text()
    assert result.stdout == ""
    assert f"wrote 3 files to {out}" in result.stderr
    assert "anomalous points" in result.stderr and str(folder / "c.parquet") in result.stderr
    assert "3 series, 1,350 points" in result.stderr


def test_detect_folder_without_out_prints_a_summary_csv(tmp_path: Path) -> None:
    folder = _series_folder(tmp_path / "in")
    result = runner.invoke(app, ["detect", str(folder), "-d", "mad"])
    assert result.exit_code == 0, result.output
    frame = pl.read_csv(io.StringIO(result.stdout))
    assert frame.columns == ["series", "points", "anomalous_points", "windows", "max_score"]
    assert frame["series"].to_list() == [str(folder / n) for n in ("a.csv", "b.csv", "c.parquet")]
    assert frame["points"].to_list() == [400, 450, 500]
    assert (frame["anomalous_points"] >= 1).all() and (frame["max_score"] >= 0.5).all()


@pytest.mark.parametrize("out_exists", [False, True])
def test_detect_folder_bad_file_is_named_and_nothing_written(
    tmp_path: Path, out_exists: bool
) -> None:
    folder = _series_folder(tmp_path / "in")
    (folder / "b2.csv").write_text("timestamp,value\n2020-01-01,1\n2020-01-02,abc\n")
    out = tmp_path / "out"
    if out_exists:
        out.mkdir()
    result = runner.invoke(app, ["detect", str(folder), "-d", "mad", "--out", str(out)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"relia: error: {folder / 'b2.csv'}: row 2 (line 3): non-numeric value 'abc' in column "
        "'value'"
    ]
    assert (list(out.iterdir()) == []) if out_exists else not out.exists()
    # Folders it made on the way to --out go too; one that was there stays.
    deep = tmp_path / "made" / "for" / "out"
    result = runner.invoke(app, ["detect", str(folder), "-d", "mad", "--out", str(deep)])
    assert result.exit_code == 2 and not (tmp_path / "made").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == (["in", "out"] if out_exists else ["in"])


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("empty", [], "no *.csv or *.parquet files in this folder"),
        ("ok", ["--out", "{tmp}/file.txt"], "--out must be a directory"),
        ("ok", ["--out", "{tmp}/in"], "would overwrite the input files"),
        ("ok", ["--plot", "{tmp}/p.png"], "--plot: draws one series"),
        ("twins", ["--out", "{tmp}/o"], "a.csv and a.parquet would both be written to a.csv"),
        ("ok", ["--executor", "spark"], "--executor: expected local or ray, got 'spark'"),
        ("ok", ["--workers", "2"], "--workers: needs --executor ray"),
        ("ok", ["--ray-address", "auto"], "--ray-address: needs --executor ray"),
        ("ok", ["--executor", "ray", "--workers", "0"], "--workers: must be at least 1"),
    ],
)
def test_detect_folder_user_errors(
    tmp_path: Path, setup: str, args: list[str], message: str
) -> None:
    folder = tmp_path / "in"
    if setup == "empty":
        folder.mkdir()
        (folder / "readme.md").write_text("x")
    else:
        _series_folder(folder)
    if setup == "twins":
        pl.read_csv(folder / "a.csv").write_parquet(folder / "a.parquet")
    (tmp_path / "file.txt").write_text("x")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    result = runner.invoke(app, ["detect", str(folder), "-d", "mad", *args])
    assert result.exit_code == 2, result.output
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("relia: error:") and message in lines[0]
    assert not (tmp_path / "o").exists()


def test_detect_ray_without_ray_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    folder = _series_folder(tmp_path / "in")
    monkeypatch.setitem(sys.modules, "ray", None)
    result = runner.invoke(app, ["detect", str(folder), "--executor", "ray"])
    assert result.exit_code == 2
    assert "pip install 'relia[ray]'" in result.stderr


@pytest.mark.slow
def test_detect_on_ray_writes_what_local_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ray_local: object
) -> None:
    import relia.cli as cli

    folder = _series_folder(tmp_path / "in")
    ray = ["--executor", "ray", "--workers", "2"]
    # A folder: the same files.
    local_out, ray_out = tmp_path / "local", tmp_path / "ray"
    assert runner.invoke(app, ["detect", str(folder), "-o", str(local_out)]).exit_code == 0
    result = runner.invoke(app, ["detect", str(folder), "-o", str(ray_out), *ray])
    assert result.exit_code == 0, result.output
    assert "ray executor" in result.stderr
    for f in local_out.iterdir():
        assert (ray_out / f.name).read_text() == f.read_text()
    # One file, to stdout, as a counter: the same output and summary.
    args = ["detect", str(folder / "a.csv"), "--counter"]
    local, remote = runner.invoke(app, args), runner.invoke(app, [*args, *ray])
    assert remote.exit_code == 0, remote.output
    assert (remote.stdout, remote.stderr) == (local.stdout, local.stderr)
    # Several series from a PromQL query: the same outputs, numbered.
    frames = [pl.read_csv(folder / n) for n in ("a.csv", "b.csv")]
    fetched = [
        cli._Scored(
            f'up{{job="{k}"}}',
            f["Timestamp"].to_numpy().astype(np.int64) * 1000,
            f["Value"].to_numpy().astype(np.float64),
        )
        for k, f in enumerate(frames)
    ]
    monkeypatch.setattr(cli, "_from_prometheus", lambda *a: list(fetched))
    args = ["detect", "--prometheus", "http://127.0.0.1:9", "--query", "up"]
    local = runner.invoke(app, [*args, "-o", str(tmp_path / "p.csv")])
    remote = runner.invoke(app, [*args, "-o", str(tmp_path / "q.csv"), *ray])
    assert remote.exit_code == 0, remote.output
    for a, b in (("p.csv", "q.csv"), ("p_2.csv", "q_2.csv")):
        assert (tmp_path / a).read_text() == (tmp_path / b).read_text()
    assert remote.stderr.replace("q", "p") == local.stderr.replace("q", "p")
    # Several columns of one file: read here, scored there, the same outputs.
    wide = _wide_csv(tmp_path / "wide.csv")
    local = runner.invoke(app, ["detect", str(wide), "--all-columns", "-o", f"{tmp_path / 'l'}/"])
    args = ["detect", str(wide), "--all-columns", "-o", f"{tmp_path / 'r'}/", *ray]
    remote = runner.invoke(app, args)
    assert remote.exit_code == 0, remote.output
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [
        "wide.csv",
        "wide_2.csv",
        "wide_index.csv",
    ]
    for f in (tmp_path / "l").iterdir():
        assert (tmp_path / "r" / f.name).read_text() == f.read_text()
    # Standard input: read here too.
    piped = runner.invoke(app, ["detect", "-", *ray], input=(folder / "a.csv").read_bytes())
    assert piped.exit_code == 0, piped.output
    assert piped.stdout == runner.invoke(app, ["detect", str(folder / "a.csv")]).stdout


def _wide_csv(path: Path, n: int = 400) -> Path:
    """A wide file, as Grafana exports a panel: a time column, two series, a text column."""
    rng = np.random.default_rng(3)
    cpu = 50 + rng.normal(0, 2, n)
    cpu[300] = 90.0
    pl.DataFrame(
        {
            "Time": 1_700_000_000 + 60 * np.arange(n),
            "cpu": cpu,
            "host": ["db-1"] * n,
            "mem": 70 + rng.normal(0, 1, n),
        }
    ).write_csv(path)
    return path


def test_detect_all_columns_scores_each_column_of_numbers(tmp_path: Path) -> None:
    wide = _wide_csv(tmp_path / "wide.csv")
    result = runner.invoke(
        app, ["detect", str(wide), "--all-columns", "-o", str(tmp_path / "s.csv")]
    )
    assert result.exit_code == 0, result.output
    index = pl.read_csv(tmp_path / "s_index.csv")
    assert index.to_dict(as_series=False) == {
        "file": ["s.csv", "s_2.csv"],
        "series": [f"{wide} [cpu]", f"{wide} [mem]"],
    }
    cpu = pl.read_csv(tmp_path / "s.csv")
    assert cpu.height == 400 and cpu["is_anomaly"][300] == 1
    assert cpu["value"].to_list() == pl.read_csv(wide)["cpu"].to_list()
    # Each series' scores are what scoring that column alone gives.
    alone = runner.invoke(app, ["detect", str(wide), "--value-col", "mem"])
    assert pl.read_csv(tmp_path / "s_2.csv").equals(pl.read_csv(io.StringIO(alone.stdout)))


def test_detect_all_columns_names_its_series_even_when_one_is_left(tmp_path: Path) -> None:
    # A script reading the outputs must tell which column was scored, however many were left.
    src = tmp_path / "w.csv"
    src.write_text("time,host,cpu\n1700000000,db-1,1\n1700000060,db-1,2\n")
    result = runner.invoke(app, ["detect", str(src), "--all-columns", "-d", "mad"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == f"# series: {src} [cpu]"
    assert result.stderr.splitlines()[0] == (
        f"relia: warning: {src}: column 'host' left out: 'db-1' at row 1 (line 2) is not a number"
    )
    result = runner.invoke(
        app, ["detect", str(src), "--all-columns", "-o", str(tmp_path / "o.csv")]
    )
    assert pl.read_csv(tmp_path / "o_index.csv")["series"].to_list() == [f"{src} [cpu]"]


def test_detect_repeated_value_col_scores_those_columns_in_that_order(tmp_path: Path) -> None:
    wide = _wide_csv(tmp_path / "wide.csv")
    result = runner.invoke(app, ["detect", str(wide), "--value-col", "mem", "--value-col", "CPU"])
    assert result.exit_code == 0, result.output
    blocks = result.stdout.split("\n\n")
    assert [b.splitlines()[0] for b in blocks] == [
        f"# series: {wide} [mem]",
        f"# series: {wide} [cpu]",
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            ["--value-col", "disk", "--value-col", "mem"],
            "no value column 'disk'; columns are 'Time', 'cpu', 'host', 'mem'",
        ),
        (["--value-col", "mem", "--value-col", "mem"], "value column 'mem' is named twice"),
        (
            ["--value-col", "host", "--value-col", "mem"],
            "non-numeric value 'db-1' in column 'host'",
        ),
    ],
)
def test_detect_several_columns_refuses_a_bad_one_by_name(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    wide = _wide_csv(tmp_path / "wide.csv")
    result = runner.invoke(app, ["detect", str(wide), *extra, "-o", str(tmp_path / "o.csv")])
    assert result.exit_code == 2
    assert message in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["wide.csv"]  # nothing half-written


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["IN", "--all-columns", "--value-col", "cpu"],
            "--all-columns: takes every column; not with --value-col",
        ),
        (["DIR", "--all-columns"], "--all-columns: scores one column per file of a folder INPUT"),
        (
            ["DIR", "--value-col", "a", "--value-col", "b"],
            "--value-col: scores one column per file of a folder INPUT",
        ),
        (
            ["--prometheus", "http://127.0.0.1:9", "--query", "up", "--all-columns"],
            "--all-columns: names a column of INPUT; not with --prometheus",
        ),
        (
            ["--prometheus", "http://127.0.0.1:9", "--query", "up", "--value-col", "v"],
            "--value-col: names a column of INPUT; not with --prometheus",
        ),
        (
            ["--prometheus", "http://127.0.0.1:9", "--query", "up", "--time-col", "t"],
            "--time-col: names a column of INPUT; not with --prometheus",
        ),
    ],
)
def test_detect_column_options_that_do_not_fit_the_input_are_refused(
    tmp_path: Path, args: list[str], message: str
) -> None:
    wide = _wide_csv(tmp_path / "wide.csv")
    args = [str(wide) if a == "IN" else str(tmp_path) if a == "DIR" else a for a in args]
    result = runner.invoke(app, ["detect", *args])
    assert result.exit_code == 2
    assert result.stderr == f"relia: error: {message}\n"


def test_detect_reads_csv_from_standard_input(tmp_path: Path) -> None:
    src = _series_csv(tmp_path / "in.csv")
    from_file = runner.invoke(app, ["detect", str(src), "-d", "mad"])
    piped = runner.invoke(app, ["detect", "-", "-d", "mad"], input=src.read_bytes())
    assert piped.exit_code == 0, piped.output
    assert piped.stdout == from_file.stdout
    assert piped.stderr.splitlines()[0].startswith("<stdin>: 400 points, ")
    # Into a directory it is stdin.csv; `--out -` is standard output.
    out = runner.invoke(app, ["detect", "-", "-o", f"{tmp_path / 'd'}/"], input=src.read_bytes())
    assert out.exit_code == 0 and (tmp_path / "d" / "stdin.csv").is_file(), out.output
    dash = runner.invoke(app, ["detect", "-", "-d", "mad", "-o", "-"], input=src.read_bytes())
    assert dash.stdout == from_file.stdout


def test_detect_standard_input_errors_name_it(tmp_path: Path) -> None:
    result = runner.invoke(app, ["detect", "-"], input=b"time,value\n2024-01-01,1\n2024-01-02,x\n")
    assert result.exit_code == 2
    assert result.stderr == (
        "relia: error: <stdin>: row 2 (line 3): non-numeric value 'x' in column 'value'\n"
    )
    empty = runner.invoke(app, ["detect", "-"], input=b"")
    assert empty.exit_code == 2 and empty.stderr == "relia: error: <stdin>: empty file\n"


@pytest.mark.parametrize("named", ["x_2.csv", "x_index.csv"])
def test_detect_a_numbered_output_or_the_index_never_overwrites_the_input(
    tmp_path: Path, named: str
) -> None:
    src = _wide_csv(tmp_path / named)
    before = src.read_bytes()
    result = runner.invoke(
        app, ["detect", str(src), "--all-columns", "-o", str(tmp_path / "x.csv")]
    )
    assert result.exit_code == 2
    assert (
        result.stderr.splitlines()[-1]
        == f"relia: error: --out: {src} is the input; write elsewhere"
    )
    assert src.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [named]


def test_detect_the_plot_and_a_scored_csv_cannot_be_one_file(tmp_path: Path) -> None:
    # It said "--out: w.png would be written twice (also as w.png)": the clash is the plot's,
    # and the message names both options.
    src = _series_csv(tmp_path / "in.csv")
    same = tmp_path / "w.png"
    result = runner.invoke(app, ["detect", str(src), "-o", str(same), "--plot", str(same)])
    assert result.exit_code == 2
    assert result.stderr == f"relia: error: --plot: {same} is also the --out file\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]
    # Numbered outputs of a wide file: the second scored CSV is the first plot.
    wide = _wide_csv(tmp_path / "wide.csv")
    args = ["detect", str(wide), "--all-columns", "-o", str(tmp_path / "w.html")]
    result = runner.invoke(app, [*args, "--plot", str(tmp_path / "w_2.html")])
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (
        f"relia: error: --plot: {tmp_path / 'w_2.html'} is also the --out file"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "wide.csv"]


def test_detect_plot_that_is_the_input_is_named_as_the_plot(tmp_path: Path) -> None:
    src = _series_csv(tmp_path / "in.csv")
    (tmp_path / "p.png").symlink_to(src)
    args = ["detect", str(src), "-o", str(tmp_path / "o.csv"), "--plot", str(tmp_path / "p.png")]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert (
        result.stderr
        == f"relia: error: --plot: {tmp_path / 'p.png'} is the input; write elsewhere\n"
    )


@pytest.mark.parametrize("existing", [False, True])
def test_detect_plot_name_that_ends_in_a_slash_is_refused(tmp_path: Path, existing: bool) -> None:
    # Typer's Path dropped the slash: "x.png/" wrote a file x.png; logs and slo refuse it.
    src = _series_csv(tmp_path / "in.csv")
    if existing:
        (tmp_path / "adir").mkdir()
    plot = f"{tmp_path / ('adir' if existing else 'x.png')}/"
    result = runner.invoke(app, ["detect", str(src), "-o", str(tmp_path / "o.csv"), "--plot", plot])
    assert result.exit_code == 2
    assert (
        result.stderr
        == f"relia: error: --plot: names a directory ({plot}); --plot writes one file\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == [*(["adir"] if existing else []), "in.csv"]


def test_detect_writes_nothing_when_a_later_output_cannot_be_written(tmp_path: Path) -> None:
    # A folder where the second numbered output would go: refused before the first is written,
    # and an older first output is left as it was.
    src = _wide_csv(tmp_path / "wide.csv")
    (tmp_path / "o_2.csv").mkdir()
    (tmp_path / "o.csv").write_text("old\n")
    result = runner.invoke(
        app, ["detect", str(src), "--all-columns", "-o", str(tmp_path / "o.csv")]
    )
    assert result.exit_code == 2
    assert result.stderr.splitlines()[-1] == (
        f"relia: error: {tmp_path / 'o_2.csv'}: cannot write: Is a directory"
    )
    assert (tmp_path / "o.csv").read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.csv", "o_2.csv", "wide.csv"]


def test_detect_a_failed_write_leaves_the_old_output_and_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import relia.cli as cli

    src = _series_csv(tmp_path / "in.csv")
    out = tmp_path / "o.csv"
    out.write_text("old\n")

    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError("No space left on device (os error 28)")  # as Polars raises it: no errno

    monkeypatch.setattr(cli, "_write_csv", full_disk)
    result = runner.invoke(app, ["detect", str(src), "-o", str(out)])
    assert result.exit_code == 2
    assert result.stderr == (
        f"relia: error: {out}: cannot write: No space left on device (os error 28)\n"
    )
    assert out.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "o.csv"]


def test_detect_a_full_standard_output_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    import relia.cli as cli
    from relia._cliutil import to_stdout

    class Full(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli.sys, "stdout", Full())
    with pytest.raises(DataError) as info:
        to_stdout("timestamp,value\n")
    assert str(info.value) == "standard output: cannot write: No space left on device"


def test_detect_a_line_break_in_a_column_name_stays_inside_its_line(tmp_path: Path) -> None:
    src = tmp_path / "odd.csv"
    src.write_text('"time","multi\nline"\n1700000000,1\n1700000060,2\n')
    result = runner.invoke(app, ["detect", str(src), "--all-columns", "-d", "mad"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[:2] == [
        f"# series: {src} [multi\\nline]",
        "timestamp,value,anomaly_score,is_anomaly",
    ]


def test_detect_reads_parquet_from_standard_input(tmp_path: Path) -> None:
    src = _series_csv(tmp_path / "in.csv")
    pl.read_csv(src).write_parquet(tmp_path / "in.parquet")
    piped = runner.invoke(
        app, ["detect", "-", "-d", "mad"], input=(tmp_path / "in.parquet").read_bytes()
    )
    assert piped.exit_code == 0, piped.output
    assert piped.stdout == runner.invoke(app, ["detect", str(src), "-d", "mad"]).stdout


def test_detect_out_with_a_slash_after_a_file_says_it_is_a_file(tmp_path: Path) -> None:
    src = _series_csv(tmp_path / "in.csv")
    other = tmp_path / "o.csv"
    other.write_text("old\n")
    result = runner.invoke(app, ["detect", str(src), "-o", f"{other}/"])
    assert result.exit_code == 2
    assert result.stderr == f"relia: error: {other}: is a file, not a directory\n"
    assert other.read_text() == "old\n"


@pytest.mark.skipif(not Path("/dev/null").is_char_device(), reason="needs /dev/null")
def test_detect_out_to_a_device_writes_it_and_leaves_it_a_device(tmp_path: Path) -> None:
    # The scored file was staged and renamed over the target: `-o /dev/full` (as root) replaced
    # the device with a plain file and said "wrote". A link to /dev/null stands for a device.
    src = _series_csv(tmp_path / "in.csv")
    link = tmp_path / "o.csv"
    link.symlink_to("/dev/null")
    result = runner.invoke(app, ["detect", str(src), "-o", str(link), "-d", "mad"])
    assert result.exit_code == 0, result.output
    assert link.is_symlink() and Path("/dev/null").is_char_device()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv", "o.csv"]


def test_detect_threshold_1_flags_only_score_1(tmp_path: Path) -> None:
    src = _series_csv(tmp_path / "in.csv")
    result = runner.invoke(app, ["detect", str(src), "-d", "mad", "--threshold", "1"])
    assert result.exit_code == 0, result.output
    frame = pl.read_csv(io.StringIO(result.stdout))
    assert (frame["is_anomaly"] == (frame["anomaly_score"] >= 1)).all()


def test_detect_file_and_prometheus_together_is_exit_2(tmp_path: Path) -> None:
    src = _series_csv(tmp_path / "in.csv")
    result = runner.invoke(
        app, ["detect", str(src), "--prometheus", "http://127.0.0.1:9", "--query", "up"]
    )
    assert result.exit_code == 2
    assert "either an INPUT file or --prometheus" in result.stderr


def _fetched(n: int) -> list[object]:
    import relia.cli as cli

    ts = 1_700_000_000_000 + 60_000 * np.arange(300, dtype=np.int64)
    rng = np.random.default_rng(2)
    return [cli._Scored(f'up{{job="{k}"}}', ts, 10 + rng.normal(0, 0.5, 300)) for k in range(n)]


def test_detect_prometheus_series_are_numbered_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import relia.cli as cli

    monkeypatch.setattr(cli, "_from_prometheus", lambda *a: _fetched(3))
    args = ["detect", "--prometheus", "http://127.0.0.1:9", "--query", "up", "-d", "mad"]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "p.csv")])
    assert result.exit_code == 0, result.output
    names = ["p.csv", "p_2.csv", "p_3.csv"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [*names, "p_index.csv"]
    # Which file holds which series: in the index, and in what the command says it wrote.
    index = pl.read_csv(tmp_path / "p_index.csv")
    series = [f'up{{job="{k}"}}' for k in range(3)]
    assert index.to_dict(as_series=False) == {"file": names, "series": series}
    wrote = [line for line in result.stderr.splitlines() if line.startswith("wrote")]
    assert wrote[:3] == [
        f"wrote {tmp_path / name} (300 rows): {title}"
        for name, title in zip(names, series, strict=True)
    ]
    assert wrote[3] == f"wrote {tmp_path / 'p_index.csv'} (which file holds which series)"


def test_detect_prometheus_series_into_a_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import relia.cli as cli

    monkeypatch.setattr(cli, "_from_prometheus", lambda *a: _fetched(2))
    args = ["detect", "--prometheus", "http://127.0.0.1:9", "--query", "up", "-d", "mad"]
    result = runner.invoke(app, [*args, "-o", f"{tmp_path / 'new'}/"])
    assert result.exit_code == 0, result.output
    made = sorted(p.name for p in (tmp_path / "new").iterdir())
    assert made == ["series.csv", "series_2.csv", "series_index.csv"]


def test_detect_one_series_writes_no_index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import relia.cli as cli

    monkeypatch.setattr(cli, "_from_prometheus", lambda *a: _fetched(1))
    args = ["detect", "--prometheus", "http://127.0.0.1:9", "--query", "up", "-d", "mad"]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "p.csv")])
    assert result.exit_code == 0, result.output
    assert [p.name for p in tmp_path.iterdir()] == ["p.csv"]
    assert f"wrote {tmp_path / 'p.csv'} (300 rows)" in result.stderr.splitlines()


@pytest.mark.parametrize("how", ["existing", "trailing slash", "nested trailing slash"])
def test_detect_out_directory_gets_the_inputs_name(tmp_path: Path, how: str) -> None:
    src = _series_csv(tmp_path / "in.csv")
    folder = tmp_path / "scored" if how != "nested trailing slash" else tmp_path / "a" / "b"
    if how == "existing":
        folder.mkdir()
    arg = str(folder) if how == "existing" else f"{folder}/"
    result = runner.invoke(app, ["detect", str(src), "-d", "mad", "-o", arg])
    assert result.exit_code == 0, result.output
    assert [p.name for p in folder.iterdir()] == ["in.csv"]
    scored = pl.read_csv(folder / "in.csv")
    assert scored.columns == ["timestamp", "value", "anomaly_score", "is_anomaly"]
    assert scored.height == 400


def test_detect_out_directory_it_made_is_taken_away_when_the_input_fails(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,value\n")
    result = runner.invoke(app, ["detect", str(bad), "-o", f"{tmp_path / 'x' / 'y'}/"])
    assert result.exit_code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.csv"]


def test_detect_out_directory_holding_the_input_is_refused(tmp_path: Path) -> None:
    src = _series_csv(tmp_path / "in.csv")
    result = runner.invoke(app, ["detect", str(src), "-o", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"relia: error: --out: {tmp_path / 'in.csv'} is the input; write elsewhere"
    ]


def test_detect_out_must_not_be_empty(tmp_path: Path) -> None:
    src = _series_csv(tmp_path / "in.csv")
    result = runner.invoke(app, ["detect", str(src), "-o", ""])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "relia: error: --out: must name a file or a directory, got an empty string"
    ]


def test_detect_prometheus_series_on_stdout_are_separated_by_one_blank_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import relia.cli as cli

    monkeypatch.setattr(cli, "_from_prometheus", lambda *a: _fetched(2))
    args = ["detect", "--prometheus", "http://127.0.0.1:9", "--query", "up", "-d", "mad"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    blocks = result.stdout.split("\n\n")
    assert [b.splitlines()[0] for b in blocks] == ['# series: up{job="0"}', '# series: up{job="1"}']
    assert result.stdout.endswith(",0\n") or result.stdout.endswith(",1\n")


def test_detect_summary_counts_the_points_of_every_window(tmp_path: Path) -> None:
    src = tmp_path / "in.csv"
    values = 10 + np.random.default_rng(1).normal(0, 0.5, 400)
    values[300:306] += np.array([5.0, 10.0, 15.0, 12.0, 8.0, 5.0])
    pl.DataFrame({"timestamp": 1_700_000_000 + 60 * np.arange(400), "value": values}).write_csv(src)
    result = runner.invoke(app, ["detect", str(src), "-d", "mad"])
    assert result.exit_code == 0, result.output
    flags = pl.read_csv(io.StringIO(result.stdout))["is_anomaly"].to_numpy()
    runs = np.flatnonzero(np.diff(np.concatenate(([0], flags, [0]))) != 0).reshape(-1, 2)
    assert (runs[:, 1] - runs[:, 0]).max() > 1  # a window of several points
    assert f"{len(runs)} anomalous windows ({flags.sum()} points)" in result.stderr
    rows = [line.split("│") for line in result.stderr.splitlines() if "Z │" in line]
    assert [int(r[2]) for r in rows] == (runs[:, 1] - runs[:, 0]).tolist()


def test_detect_folder_summary_agrees_with_detect_many(tmp_path: Path) -> None:
    from relia.engine.batch import SeriesFile, detect_many, folder_files

    folder = _series_folder(tmp_path / "in")
    (folder / 'q"uote.csv').write_text((folder / "a.csv").read_text())
    values = 10 + np.random.default_rng(1).normal(0, 0.5, 400)
    values[300:306] += np.array([5.0, 10.0, 15.0, 12.0, 8.0, 5.0])  # a window of several points
    stamps = 1_700_000_000 + 60 * np.arange(400)
    pl.DataFrame({"timestamp": stamps, "value": values}).write_csv(folder / "ramp.csv")
    result = runner.invoke(app, ["detect", str(folder), "-d", "mad"])
    assert result.exit_code == 0, result.output
    expected = detect_many([SeriesFile(f) for f in folder_files(folder)], "mad")
    frame = pl.read_csv(io.StringIO(result.stdout))
    assert frame["series"].to_list() == [r.name for r in expected]
    assert frame["anomalous_points"].to_list() == [r.anomalous_points for r in expected]
    assert frame["windows"].to_list() == [len(r.windows) for r in expected]
    assert sum(len(r.windows) for r in expected) < sum(r.anomalous_points for r in expected)
    flagged = sum(r.anomalous_points for r in expected)
    windows = sum(len(r.windows) for r in expected)
    assert f"{flagged:,} anomalous points in {windows:,} windows by mad" in result.stderr


@pytest.mark.parametrize("suffix", [".png", ".html"])
@pytest.mark.parametrize(
    "values",
    [["1.7976931348623157e308", "1", "2"], ["1e308", "-1e308", "1"]],
    ids=["dblmax", "plus-minus-1e308"],
)
def test_detect_plots_values_near_the_largest_float(
    tmp_path: Path, values: list[str], suffix: str
) -> None:
    # hi - lo (or hi + pad) overflowed to inf: "Axis limits cannot be NaN or Inf", a traceback,
    # and the scored CSV of the same run was not written.
    src = tmp_path / "in.csv"
    rows = [f"2024-01-01T00:0{i}:00Z,{v}" for i, v in enumerate(values)]
    src.write_text("timestamp,value\n" + "\n".join(rows) + "\n")
    plot, out = tmp_path / f"p{suffix}", tmp_path / "out.csv"
    result = runner.invoke(app, ["detect", str(src), "-o", str(out), "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    assert plot.stat().st_size > 0 and out.read_text().count("\n") == 4
    assert "Warning" not in result.stderr


def test_detect_plot_suffix_is_case_insensitive(tmp_path: Path) -> None:
    src = _series_csv(tmp_path / "in.csv")
    plot = tmp_path / "plot.HTML"
    result = runner.invoke(app, ["detect", str(src), "-d", "mad", "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    assert plot.stat().st_size > 0


def test_relia_without_a_command_shows_the_help_with_every_command() -> None:
    top = runner.invoke(app, [])
    assert "Usage: relia [OPTIONS] COMMAND" in top.stdout
    for command in ("detect", "detectors", "up", "config", "slo", "logs", "incidents", "token"):
        assert f" {command} " in top.stdout, command
    config = runner.invoke(app, ["config"])
    assert "Usage: relia config" in config.stdout and " check " in config.stdout


def test_version_prints_the_installed_version() -> None:
    from importlib.metadata import version

    import relia

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout == f"relia {relia.__version__}\n"
    assert relia.__version__ == version("relia")  # the package's own metadata says the same


def test_help_offers_no_shell_completion_options() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "--install-completion" not in result.stdout
    assert "--show-completion" not in result.stdout


def test_detect_uses_the_default_detector_unless_told(tmp_path: Path) -> None:
    src = _series_csv(tmp_path / "in.csv")
    result = runner.invoke(app, ["detect", str(src), "-o", str(tmp_path / "o.csv")])
    assert result.exit_code == 0, result.output
    assert f"{src}: 400 points," in result.stderr
    assert result.stderr.split(f"{src}: 400 points,")[1].splitlines()[0].endswith(" by default")


def test_an_unknown_detector_is_reported_before_the_input_is_read(tmp_path: Path) -> None:
    missing = tmp_path / "missing.csv"
    result = runner.invoke(app, ["detect", str(missing), "-d", "nope"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        line for line in result.stderr.splitlines() if "no detector named 'nope'" in line
    ]
    assert str(missing) not in result.stderr


def test_detect_plot_accepts_htm(tmp_path: Path) -> None:
    src = _series_csv(tmp_path / "in.csv")
    plot = tmp_path / "plot.htm"
    result = runner.invoke(app, ["detect", str(src), "-d", "mad", "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    assert "<svg" in plot.read_text()
    assert f"wrote {plot}" in result.stderr


def _fake_prometheus(
    monkeypatch: pytest.MonkeyPatch, series: list[tuple[dict[str, str], int]]
) -> list[tuple[str, int, int, float]]:
    """Stand in for Prometheus: each query returns ``series`` (labels, points at 15 s)."""
    from relia.sources import prometheus

    calls: list[tuple[str, int, int, float]] = []

    def query_range(
        self: object, query: str, start_ms: int, end_ms: int, step_s: float
    ) -> list[object]:
        calls.append((query, start_ms, end_ms, step_s))
        rng = np.random.default_rng(4)
        return [
            prometheus.RangeSeries(
                labels, start_ms + 15_000 * np.arange(n), 10 + rng.normal(0, 0.5, n)
            )
            for labels, n in series
        ]

    monkeypatch.setattr(prometheus.PrometheusClient, "query_range", query_range)
    return calls


def test_detect_prometheus_queries_the_last_hour_at_15s_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import time

    calls = _fake_prometheus(monkeypatch, [({"__name__": "up", "job": "a"}, 240)])
    args = ["detect", "--prometheus", "http://127.0.0.1:9", "--query", "up", "-d", "mad"]
    before = time.time() * 1000
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    [(query, start_ms, end_ms, step_s)] = calls
    assert query == "up" and step_s == 15.0
    assert end_ms - start_ms == 3_600_000
    assert before - 1000 <= end_ms <= time.time() * 1000 + 1000
    assert 'up{job="a"}: 240 points' in result.stderr


def test_detect_prometheus_series_without_a_name_are_titled_by_the_query(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_prometheus(monkeypatch, [({"job": "a"}, 100)])
    args = ["detect", "--prometheus", "http://127.0.0.1:9", "--query", "sum(x)", "-d", "mad"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert 'sum(x){job="a"}: 100 points' in result.stderr


def test_detect_prometheus_no_series_is_exit_2_naming_the_query_and_server(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _fake_prometheus(monkeypatch, [])
    args = ["detect", "--prometheus", "http://127.0.0.1:9", "--query", "nothing"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "relia: error: http://127.0.0.1:9: query returned no series: nothing"
    ]


def test_detect_prometheus_needs_a_query() -> None:
    result = runner.invoke(app, ["detect", "--prometheus", "http://127.0.0.1:9"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == ["relia: error: --prometheus needs --query 'PROMQL'"]


def test_detect_workers_1_is_allowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    folder = _series_folder(tmp_path / "in")
    monkeypatch.setitem(sys.modules, "ray", None)  # past the option checks, Ray is needed
    result = runner.invoke(app, ["detect", str(folder), "--executor", "ray", "--workers", "1"])
    assert result.exit_code == 2
    assert "--workers" not in result.stderr
    assert "pip install 'relia[ray]'" in result.stderr


class AlarmedUnlessNegative(Detector):
    """Scores 0 below zero and 1 otherwise, NaN included (as a registered third-party detector
    may): the test picks which points are anomalous."""

    name = "x-alarmed"

    def _initial_state(self) -> dict[str, np.ndarray]:
        return {}

    def _run(
        self, ts: object, values: np.ndarray, state: object, out: dict[str, np.ndarray]
    ) -> None:
        out["score"][:] = np.where(values < 0, 0.0, 1.0)


@pytest.fixture
def alarmed(monkeypatch: pytest.MonkeyPatch) -> str:
    """Register :class:`AlarmedUnlessNegative` as ``x-alarmed`` for one test."""
    from relia.detect import registry

    entry = registry.DetectorEntry("x-alarmed", f"{__name__}:AlarmedUnlessNegative", "test")
    monkeypatch.setitem(registry._REGISTRY, "x-alarmed", entry)
    return "x-alarmed"


def test_detect_counter_gives_rows_without_a_rate_score_0_whatever_the_detector(
    tmp_path: Path, alarmed: str
) -> None:
    src = _counter_csv(tmp_path / "in.csv", n=50, reset_at=20, burst_at=30)
    out = tmp_path / "out.csv"
    args = ["detect", str(src), "--counter", "-d", alarmed, "-o", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    frame = pl.read_csv(out)
    assert frame["anomaly_score"].to_list() == [0.0] + [1.0] * 49
    assert frame["is_anomaly"].to_list() == [0] + [1] * 49


def test_detect_out_that_cannot_be_written_is_exit_2_naming_it(tmp_path: Path) -> None:
    src = _series_csv(tmp_path / "in.csv")
    target = tmp_path / "no-such-dir" / "o.csv"
    result = runner.invoke(app, ["detect", str(src), "-d", "mad", "-o", str(target)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"relia: error: {target}: cannot write: No such file or directory"
    ]


def test_detect_out_that_is_the_input_is_refused_and_the_input_kept(tmp_path: Path) -> None:
    src = _series_csv(tmp_path / "in.csv")
    before = src.read_bytes()
    result = runner.invoke(app, ["detect", str(src), "-d", "mad", "-o", str(tmp_path / "./in.csv")])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.splitlines() == [
        f"relia: error: --out: {tmp_path / 'in.csv'} is the input; write elsewhere"
    ]
    assert src.read_bytes() == before


def test_detect_plot_in_a_missing_folder_fails_before_any_series_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import relia.cli as cli

    monkeypatch.setattr(cli, "_from_prometheus", lambda *a: _fetched(3))
    plot = tmp_path / "no-such-dir" / "p.png"
    args = ["detect", "--prometheus", "http://127.0.0.1:9", "--query", "up", "-d", "mad"]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "p.csv"), "--plot", str(plot)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"relia: error: {plot}: cannot write plot: No such file or directory"
    ]
    assert list(tmp_path.iterdir()) == []


def test_detect_out_says_what_it_wrote(tmp_path: Path) -> None:
    src = _series_csv(tmp_path / "in.csv")
    out = tmp_path / "o.csv"
    result = runner.invoke(app, ["detect", str(src), "-d", "mad", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert f"wrote {out} (400 rows)" in result.stderr.splitlines()


def test_detect_prometheus_series_get_numbered_plots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _fake_prometheus(monkeypatch, [({"job": "a"}, 100), ({"job": "b"}, 100)])
    plot = tmp_path / "p.html"
    args = ["detect", "--prometheus", "http://127.0.0.1:9", "--query", "up", "-d", "mad"]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "o.csv"), "--plot", str(plot)])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "o.csv",
        "o_2.csv",
        "o_index.csv",
        "p.html",
        "p_2.html",
    ]
    assert (
        'up{job="a"}' in plot.read_text() and 'up{job="b"}' in (tmp_path / "p_2.html").read_text()
    )
    assert f"wrote {plot}" in result.stderr.splitlines()
    assert f"wrote {tmp_path / 'p_2.html'}" in result.stderr.splitlines()


@pytest.mark.parametrize("n_windows", [50, 51])
def test_detect_summary_table_shows_at_most_50_windows(
    tmp_path: Path, alarmed: str, n_windows: int
) -> None:
    src = tmp_path / "in.csv"
    values = np.tile([-1.0, 1.0], n_windows)  # every other point anomalous: one window each
    stamps = 1_700_000_000 + 60 * np.arange(len(values))
    pl.DataFrame({"timestamp": stamps, "value": values}).write_csv(src)
    result = runner.invoke(app, ["detect", str(src), "-d", alarmed, "-o", str(tmp_path / "o.csv")])
    assert result.exit_code == 0, result.output
    assert f"{n_windows} anomalous windows ({n_windows} points)" in result.stderr
    assert len([line for line in result.stderr.splitlines() if "Z │" in line]) == 50
    more = [line for line in result.stderr.splitlines() if "more windows" in line]
    assert more == ([] if n_windows == 50 else ["… and 1 more windows"])


def test_detect_summary_without_windows_is_one_line(tmp_path: Path, alarmed: str) -> None:
    src = tmp_path / "in.csv"
    stamps = 1_700_000_000 + 60 * np.arange(10)
    pl.DataFrame({"timestamp": stamps, "value": -np.ones(10)}).write_csv(src)
    result = runner.invoke(app, ["detect", str(src), "-d", alarmed])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == [
        f"{src}: 10 points, 0 anomalous windows (0 points) by x-alarmed"
    ]


def test_detect_folder_out_that_cannot_be_made_is_exit_2_naming_it(tmp_path: Path) -> None:
    folder = _series_folder(tmp_path / "in")
    (tmp_path / "file.txt").write_text("x")
    out = tmp_path / "file.txt" / "scored"
    result = runner.invoke(app, ["detect", str(folder), "-d", "mad", "--out", str(out)])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [f"relia: error: {out}: cannot create: Not a directory"]


@pytest.fixture
def engine_runs(monkeypatch: pytest.MonkeyPatch) -> list[ReliaConfig]:
    """`relia up` without the engine: each run records its config, says it is up, exits 3."""
    import relia.engine.up

    runs: list[ReliaConfig] = []

    def run_up(cfg: ReliaConfig, ready: Callable[[str], None]) -> int:
        runs.append(cfg)
        ready("http://127.0.0.1:8787")
        return 3

    monkeypatch.setattr(relia.engine.up, "run_up", run_up)
    return runs


def test_up_options_override_the_config_and_the_engine_exit_code_is_relias(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine_runs: list[ReliaConfig]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "relia.yaml").write_text("api: {port: 9001}\ndetector: {name: mad}\n")
    result = runner.invoke(app, ["up"])
    assert result.exit_code == 3
    assert (
        result.stderr == "relia is up: dashboard and API at http://127.0.0.1:8787 (Ctrl-C stops)\n"
    )
    [cfg] = engine_runs
    assert (cfg.api.port, cfg.detector.name, cfg.engine.executor) == (9001, "mad", "local")

    args = ["up", "--port", "9002", "--data-dir", str(tmp_path / "state"), "--executor", "ray"]
    assert runner.invoke(app, args).exit_code == 3
    cfg = engine_runs[-1]
    assert (cfg.api.port, cfg.data_dir, cfg.engine.executor) == (9002, tmp_path / "state", "ray")

    assert runner.invoke(app, ["up", "--ray-address", "ray://head:10001"]).exit_code == 3
    cfg = engine_runs[-1]
    assert (cfg.engine.executor, cfg.engine.ray_address) == ("ray", "ray://head:10001")


def test_up_bad_port_is_one_line_naming_the_option(engine_runs: list[ReliaConfig]) -> None:
    result = runner.invoke(app, ["up", "--port", "70000"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "relia: error: --port: Input should be less than or equal to 65535"
    ]
    assert engine_runs == []


def test_up_executor_is_checked_before_the_engine_starts(engine_runs: list[ReliaConfig]) -> None:
    result = runner.invoke(app, ["up", "--executor", "spark"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "relia: error: --executor: expected local or ray, got 'spark'"
    ]
    result = runner.invoke(app, ["up", "--executor", "local", "--ray-address", "auto"])
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        "relia: error: --ray-address: needs --executor ray, not local"
    ]
    assert engine_runs == []


def test_up_on_a_store_file_cut_short_is_one_line_naming_it(tmp_path: Path) -> None:
    # A traceback (exit 1) before: the first read of the samples was outside the error wrapping.
    from relia.store import open_store
    from relia.store.duckdb import STORE_FILE
    from tests.store.backends import batch

    n = 100_000
    for sid in (1, 2):  # two sessions: half the file still opens, its samples do not read
        with open_store(tmp_path, samples_per_series=n) as s:
            s.upsert_series([(sid, "cpu", {})])
            s.append_samples(batch([sid] * n, list(range(n)), [float(i) for i in range(n)]))
    path = tmp_path / STORE_FILE
    with path.open("r+b") as f:
        f.truncate(path.stat().st_size // 2)
    result = runner.invoke(app, ["up", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    [line] = result.stderr.splitlines()
    assert line.startswith(f"relia: error: {path}: cannot read the store: ")
    assert "the file looks damaged" in line


def test_up_on_checkpoints_of_a_newer_relia_is_one_line_and_overwrites_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # They were read as corrupt ("bad magic"), their series started afresh, and relia wrote
    # its own checkpoints over them.
    from relia.engine.loop import Engine
    from relia.store import open_store
    from relia.store.duckdb import STORE_FILE

    monkeypatch.setattr(Engine, "run", lambda self, stop, interval: None)  # never runs for long

    newer = {7: b"RLC4" + bytes(60)}
    with open_store(tmp_path) as s:
        s.save_checkpoints(newer)
    result = runner.invoke(app, ["up", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2, result.output
    errors = [line for line in result.stderr.splitlines() if " INFO " not in line]
    assert errors == [  # after the log's "relia stopped"
        f"relia: error: {tmp_path / STORE_FILE}: detector checkpoints were written by a newer "
        "relia (format RLC4 > RLC3, e.g. series 7); upgrade relia or use another data directory"
    ]
    with open_store(tmp_path) as s:
        assert s.load_checkpoints() == newer


def test_detectors_lines_up_the_summaries_in_one_column() -> None:
    from relia.detect import available, describe

    result = runner.invoke(app, ["detectors"])
    assert result.exit_code == 0
    width = max(len(n) for n in available())
    assert result.stdout.splitlines() == [
        f"{name}{' ' * (width - len(name))}  {describe(name).summary}" for name in available()
    ]


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("localhost:9090", "must start with http:// or https:// (http://localhost:9090?)"),
        ("127.0.0.1:9090", "must start with http:// or https:// (http://127.0.0.1:9090?)"),
        ("ftp://127.0.0.1", "must start with http:// or https://, not ftp://"),
    ],
)
def test_detect_prometheus_url_without_http_says_how_to_write_it(url: str, message: str) -> None:
    result = runner.invoke(app, ["detect", "--prometheus", url, "--query", "up"])
    assert result.exit_code == 2
    assert result.stderr == f"relia: error: --prometheus: {message}\n"


@pytest.mark.parametrize("url", ["http://[::1", "http://127.0.0.1:99999", "http://"])
def test_detect_prometheus_url_that_cannot_be_parsed_is_one_line(url: str) -> None:
    result = runner.invoke(app, ["detect", "--prometheus", url, "--query", "up"])
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.exception
    assert result.stderr.startswith("relia: error: --prometheus: not a valid URL")
    assert result.stderr.count("\n") == 1


def test_config_check_names_the_line_of_a_missing_slo_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The README's relia.yaml lists examples/slo/checkout.yaml; checked from another directory
    # the error was only "examples/slo/checkout.yaml: no such file", naming neither the config
    # file, its line, nor where a relative path is read from.
    path = tmp_path / "relia.yaml"
    path.write_text(
        "interval: 15s\nslos:\n  prometheus: http://127.0.0.1:9090\n"
        "  files: [examples/slo/checkout.yaml]\n"
    )
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 2, result.output
    assert f"{path}:4: slos.files.0: no such file: examples/slo/checkout.yaml" in result.stderr
    assert f"relative to the working directory {tmp_path}" in result.stderr


def test_config_check_counts_in_the_singular(tmp_path: Path) -> None:
    path = tmp_path / "relia.yaml"
    path.write_text(
        "scrape: [{name: app, url: 'http://127.0.0.1:9100/metrics'}]\n"
        "prometheus: [{name: p, url: 'http://127.0.0.1:9090', queries: [{query: up}]}]\n"
    )
    result = runner.invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 0, result.output
    assert "(1 scrape target, 1 Prometheus source, host metrics on" in result.stdout


@pytest.mark.parametrize(
    "args",
    [["--version"], ["detectors"], ["config", "check", "CFG"], ["--help"], ["slo", "--help"]],
)
def test_a_closed_stdout_pipe_ends_the_run_quietly_with_0(tmp_path: Path, args: list[str]) -> None:
    # `relia detectors | true`: Click's own handling exited 1; `relia --help | true`: rich's.
    cfg = tmp_path / "relia.yaml"
    cfg.write_text("host: {enabled: false}\n")
    r = run_into_closed_pipe(*[str(cfg) if a == "CFG" else a for a in args])
    assert (r.returncode, r.stderr) == (0, b"")


@pytest.mark.parametrize(
    ("text", "line", "where"),
    [
        ("detector:\n  name: nope\n", 2, "detector.name: no detector named 'nope'"),
        (
            "detector:\n  name: mad\n  params:\n    bogus: 1\n",
            4,
            "detector.params.bogus: invalid parameter 'bogus' for detector 'mad'",
        ),
        (
            "detector:\n  name: mad\n  params:\n    min_samples: 1000000000000000000000000000000\n",
            4,
            "detector.params.min_samples: invalid parameter 'min_samples' for detector 'mad'",
        ),
        (
            "detector:\n  name: default\n  params:\n    persist: 1000000000000000000000000000000\n",
            4,
            "detector.params.persist: invalid parameter 'persist' for detector 'adaptive'",
        ),
    ],
)
def test_config_check_refuses_the_detector_relia_up_would(
    tmp_path: Path, text: str, line: int, where: str
) -> None:
    path = tmp_path / "relia.yaml"
    path.write_text(text)
    result = runner.invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith(f"relia: error: {path}:{line}: {where}")
    assert result.stderr.count("\n") == 1


_ENSEMBLE = "detector:\n  name: ensemble\n  params:\n    members:\n"


@pytest.mark.parametrize(
    ("members", "line", "where"),
    [
        ("    - {name: mad, params: [1, 2]}\n", 5, "members.0.params: invalid parameter"),
        ('    - {name: mad, params: "x"}\n', 5, "members.0.params: invalid parameter"),
        (
            "    - {name: mad}\n    - {name: mad, params: {window: x}}\n",
            6,
            "members.1.params.window: invalid parameter 'members.1.params.window'",
        ),
        ("    - {name: nope}\n", 5, "members.0.name: invalid parameter 'members.0.name'"),
    ],
    ids=["params-a-list", "params-a-string", "bad-member-param", "unknown-member"],
)
def test_config_check_names_an_ensemble_members_field_at_its_line(
    tmp_path: Path, members: str, line: int, where: str
) -> None:
    # params as a list crashed the checker (TypeError); a member's bad field was named as the
    # ensemble's own (detector.params.window, detector.name) at the params: or name: line.
    path = tmp_path / "relia.yaml"
    path.write_text(_ENSEMBLE + members)
    result = runner.invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith(f"relia: error: {path}:{line}: detector.params.{where}")
    assert result.stderr.count("\n") == 1


def test_help_shows_no_value_for_flags_and_upper_case_arguments() -> None:
    top = runner.invoke(app, ["--help"], env={"COLUMNS": "100"})
    assert top.exit_code == 0 and "<bool>" not in top.stdout and "--version" in top.stdout
    listing = runner.invoke(app, ["incidents", "list", "--help"], env={"COLUMNS": "100"})
    assert "<bool>" not in listing.stdout and "at most this many incidents" in listing.stdout
    rules = runner.invoke(app, ["slo", "rules", "--help"], env={"COLUMNS": "100"})
    assert "[OPTIONS] FILES..." in rules.stdout and "{files}" not in rules.stdout


# An SLO spec relia ships: what the config under test names.
_SPEC = Path(__file__).resolve().parents[1] / "examples" / "slo" / "checkout.yaml"


@pytest.mark.parametrize(
    ("windows", "said"),
    [
        ("nope.yml", "nope.yml: no such file (relative to the working directory"),
        ("adir", "adir: is a directory, not a Sloth AlertWindows file"),
        ("bin.yml", "bin.yml: not a text file (not UTF-8)"),
    ],
)
def test_config_check_names_the_config_line_of_a_bad_sloth_windows_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, windows: str, said: str
) -> None:
    # It said only "nope.yml: no such file", with nothing of the config that named it.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "web.yaml").write_bytes(_SPEC.read_bytes())
    (tmp_path / "adir").mkdir()
    (tmp_path / "bin.yml").write_bytes(b"\x00\xff\xfe binary")
    cfg = tmp_path / "relia.yaml"
    cfg.write_text(
        "host: {enabled: false}\nslos:\n  prometheus: http://127.0.0.1:9090\n"
        f"  files: [web.yaml]\n  sloth_windows: {windows}\n"
    )
    result = runner.invoke(app, ["config", "check", str(cfg)])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr.startswith(f"relia: error: {cfg}:5: slos.sloth_windows: {said}")
    assert result.stderr.count("\n") == 1


def test_config_check_and_up_warn_about_log_files_that_are_not_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    there = tmp_path / "there.log"
    there.touch()
    cfg = tmp_path / "relia.yaml"
    cfg.write_text(
        f"data_dir: {tmp_path / 'data'}\nhost: {{enabled: false}}\n"
        "logs:\n  files:\n"
        f"    - path: {there}\n"
        f"    - path: {tmp_path / 'later.log'}\n"
        f"    - path: {tmp_path / 'typo' / 'aap.log'}\n"
    )
    result = runner.invoke(app, ["config", "check", str(cfg)])
    assert result.exit_code == 0, result.output
    assert "ok" in result.stdout
    warnings = [
        f"{cfg}:6: logs.files.1.path: warning: no such file: {tmp_path / 'later.log'} "
        "(relia up waits for it to appear)",
        f"{cfg}:7: logs.files.2.path: warning: no such file, nor its directory: "
        f"{tmp_path / 'typo' / 'aap.log'} (relia up waits for it to appear)",
    ]
    assert result.stderr.splitlines() == warnings
    # `relia up` says the same at start (it said nothing where the path came from).
    import relia.engine.up

    monkeypatch.setattr(relia.engine.up, "run_up", lambda cfg, ready: 0)
    result = runner.invoke(app, ["up", "-c", str(cfg)])
    assert result.exit_code == 0 and result.stderr.splitlines() == warnings


def test_config_check_and_up_warn_that_api_off_turns_remote_write_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `api: {enabled: false}` was "ok", with nothing saying that remote-write went off with it.
    cfg = tmp_path / "relia.yaml"
    cfg.write_text(
        f"data_dir: {tmp_path / 'data'}\nhost: {{enabled: false}}\napi:\n  enabled: false\n"
    )
    warning = (
        f"{cfg}:4: api.enabled: warning: false turns remote-write ingest off too (POST "
        "/api/v1/write is served by the API); set ingest.remote_write: false if that is meant"
    )
    result = runner.invoke(app, ["config", "check", str(cfg)])
    assert result.exit_code == 0, result.output
    assert "ok" in result.stdout and result.stderr.splitlines() == [warning]
    import relia.engine.up

    monkeypatch.setattr(relia.engine.up, "run_up", lambda cfg, ready: 0)
    result = runner.invoke(app, ["up", "-c", str(cfg)])
    assert result.exit_code == 0 and result.stderr.splitlines() == [warning]
    # Said so: no warning.
    cfg.write_text(cfg.read_text() + "ingest: {remote_write: false}\n")
    for args in (["config", "check", str(cfg)], ["up", "-c", str(cfg)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and result.stderr == "", result.output


_SCRAPE = "{name: %s, url: 'http://127.0.0.1:9/metrics'}"


@pytest.mark.parametrize(
    ("text", "line", "where"),
    [
        (
            f"host: {{enabled: false}}\nscrape:\n  - {_SCRAPE % 'a'}\n  - {_SCRAPE % 'a'}\n",
            4,
            "scrape.1.name: source name 'a' is already used by scrape.0.name",
        ),
        (f"scrape:\n  - {_SCRAPE % 'host'}\n", 2, "scrape.0.name: source name 'host' is used"),
        ('store: "postgres://u@h/x?bogus=1"\n', 1, "store: not a valid PostgreSQL URL: invalid"),
        ('store: "postgresql://u:pw@[::1/x"\n', 1, "store: not a valid PostgreSQL URL: end of"),
        ('store: "postgresql://u@h:99999/x"\n', 1, "store: not a valid PostgreSQL URL: port"),
        ("interval: 5s\ndetector: {name: nosuch}\n", 2, "detector.name: no detector named"),
    ],
)
def test_relia_up_refuses_what_config_check_refuses_at_the_same_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, line: int, where: str
) -> None:
    # config check said ok to each of these, and relia up refused them without file:line (and
    # made the DuckDB store in data_dir first, for an unknown detector).
    import relia.engine.up

    def started(*args: object, **kwargs: object) -> int:
        raise AssertionError("relia up went on to start")

    monkeypatch.setattr(relia.engine.up, "run_up", started)
    where = where.replace("is used", "is already used by host")
    path = tmp_path / "relia.yaml"
    path.write_text(f"data_dir: {tmp_path / 'd'}\napi: {{port: 0}}\n{text}")
    line += 2
    for args in (["config", "check", str(path)], ["up", "-c", str(path)]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        assert result.stderr.startswith(f"relia: error: {path}:{line}: {where}"), result.stderr
        assert result.stderr.count("\n") == 1
    assert "pw" not in result.stderr  # a store URL's password is never echoed
    assert not (tmp_path / "d").exists()


def test_relia_up_help_says_it_reads_relia_yaml_in_the_working_directory() -> None:
    result = runner.invoke(app, ["up", "--help"], env={"COLUMNS": "200"})
    assert "default: ./relia.yaml if present, else built-in defaults" in result.stdout


@pytest.mark.parametrize("tagged", ["!!int abc", "!!float abc", "!!timestamp abc", "!!bool abc"])
def test_config_check_on_a_tag_its_value_cannot_take_is_one_line(
    tmp_path: Path, tagged: str
) -> None:
    # A traceback (ValueError, KeyError, AttributeError from PyYAML's constructor) before.
    path = tmp_path / "relia.yaml"
    path.write_text(f"interval: {tagged}\n")
    result = runner.invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 2
    assert (
        result.stderr
        == f"relia: error: {path}:1: not valid YAML: 'abc' is not a valid {tagged.split()[0]}\n"
    )
    path.write_text("interval: 5s\n")
    result = runner.invoke(
        app, ["config", "check", str(path)], env={"RELIA_API__PORT": f"[{tagged}]"}
    )
    assert result.exit_code == 2
    assert result.stderr.startswith("relia: error: RELIA_API__PORT: not valid YAML: 'abc'")
    assert result.stderr.count("\n") == 1


def test_every_long_option_of_every_command_is_named_in_the_docs() -> None:
    # relia up --port/--data-dir, relia slo rules --label, relia slo report --timeout and
    # relia --version were in no doc: a new option must be written down too.
    import typer

    root = Path(__file__).resolve().parents[1]
    docs = "".join(
        p.read_text(encoding="utf-8") for p in [root / "README.md", *root.glob("docs/*.md")]
    )

    def options(command: Any, path: str) -> Iterator[tuple[str, str]]:
        for param in command.params:
            yield from ((path, opt) for opt in param.opts if opt.startswith("--"))
        for name, sub in getattr(command, "commands", {}).items():
            yield from options(sub, f"{path} {name}")

    missing = [
        f"{path} {opt}"
        for path, opt in options(typer.main.get_command(app), "relia")
        if not re.search(re.escape(opt) + r"(?![\w-])", docs)  # --step, not --steps
    ]
    assert missing == []


def test_config_check_refuses_an_alertmanager_url_with_the_alerts_endpoint(
    tmp_path: Path,
) -> None:
    path = tmp_path / "relia.yaml"
    path.write_text(
        "notify:\n  sinks:\n"
        "    - {name: am, type: alertmanager, url: 'http://127.0.0.1:9093/api/v2/alerts'}\n"
    )
    result = runner.invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"relia: error: {path}:3: notify.sinks.0.url: the base URL of Alertmanager, without "
        "/api/v2/alerts "
        "(relia appends /api/v2/alerts): http://127.0.0.1:9093?"
    )


@pytest.mark.parametrize("option", ["--out", "--plot"])
def test_detect_output_with_a_name_too_long_is_one_line_exit_2(tmp_path: Path, option: str) -> None:
    # ENAMETOOLONG came out of Path.is_dir() as a traceback, exit 1.
    src = _series_csv(tmp_path / "in.csv")
    long = tmp_path / ("a" * 300 + (".png" if option == "--plot" else ".csv"))
    other = [] if option == "--out" else ["-o", str(tmp_path / "o.csv")]
    result = runner.invoke(app, ["detect", str(src), "-d", "mad", *other, option, str(long)])
    assert result.exit_code == 2 and result.stdout == ""
    what = "cannot write plot" if option == "--plot" else "cannot write"
    assert result.stderr == f"relia: error: {long}: {what}: File name too long\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]


def test_detect_out_folder_with_a_name_too_long_is_one_line_exit_2(tmp_path: Path) -> None:
    src = _series_csv(tmp_path / "in.csv")
    long = tmp_path / ("a" * 300)
    result = runner.invoke(app, ["detect", str(src), "-d", "mad", "-o", f"{long}/"])
    assert result.exit_code == 2 and result.stdout == ""
    assert result.stderr == f"relia: error: {long}: cannot create: File name too long\n"
    (tmp_path / "in").mkdir()
    src.rename(tmp_path / "in" / "in.csv")
    result = runner.invoke(app, ["detect", str(tmp_path / "in"), "-d", "mad", "-o", str(long)])
    assert result.exit_code == 2
    assert result.stderr == f"relia: error: {long}: cannot create: File name too long\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_detect_an_empty_input_name_is_refused_not_read_as_the_current_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "" became Path("."): the CSV files of the working directory were scored as INPUT.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "dot.csv").write_text("timestamp,value\n1,1\n2,2\n")
    for name in ("", " "):
        result = runner.invoke(app, ["detect", name])
        assert result.exit_code == 2 and result.stdout == ""
        assert result.stderr == "relia: error: INPUT: must name a file, got an empty string\n"
