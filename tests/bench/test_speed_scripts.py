"""Smoke tests of the speed benchmarks (bench/throughput.py, bench/streaming.py) on tiny inputs.

They check that the scripts run end to end and write the JSON they promise; they assert nothing
about speed (that is what the scripts measure).
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import streaming  # noqa: E402
import throughput  # noqa: E402

HAS_RIVER = importlib.util.find_spec("river") is not None


def _write_csv(path: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["timestamp,value"]
    for i in range(n):
        minute = i % 60
        hour = (i // 60) % 24
        day = 1 + i // 1440
        lines.append(f"2015-01-{day:02d} {hour:02d}:{minute:02d}:00,{rng.normal(10, 1):.3f}")
    path.write_text("\n".join(lines) + "\n")


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A tiny NAB-shaped folder: data/<category>/<file>.csv."""
    root = tmp_path / "nab"
    _write_csv(root / "data/catA/one.csv", 300, 1)
    _write_csv(root / "data/catB/two.csv", 200, 2)
    return root


def _last_json(out: str) -> dict[str, object]:
    doc = json.loads(out.strip().splitlines()[-1])
    assert isinstance(doc, dict)
    return doc


def test_throughput_writes_rows_and_merges(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "throughput.json"
    out.write_text(json.dumps({"detectors": {"older": {"points_per_s_best": 1.0}}}))
    rc = throughput.main(
        ["--data", str(corpus), "--detector", "default", "--detector", "cusum", "--repeat", "2"]
        + ["--out", str(out)]
    )
    assert rc == 0
    doc = _last_json(capsys.readouterr().out)
    assert doc == json.loads(out.read_text())
    rows = doc["detectors"]
    assert isinstance(rows, dict)
    assert set(rows) == {"older", "default", "cusum"}  # other detectors' rows are kept
    row = rows["default"]
    assert row["files"] == 2 and row["points"] == 500 and row["repeat"] == 2
    assert len(row["seconds"]) == 2
    assert row["points_per_s_best"] >= row["points_per_s_median"] > 0
    assert row["target_points_per_s"] == 1_000_000 and isinstance(row["meets_target"], bool)
    assert "meets_target" not in rows["cusum"]
    assert row["cold_compile_s"] > 0  # a fresh process with an empty Numba cache compiled it
    assert "NUMBA_NUM_THREADS" in doc["single_core"]  # type: ignore[operator]


def test_throughput_user_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "t.json"
    assert throughput.main(["--data", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "missing" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert throughput.main(["--data", str(tmp_path / "empty"), "--out", str(out)]) == 2
    assert "no CSV files" in capsys.readouterr().err
    assert throughput.main(["--detector", "no-such-detector", "--out", str(out)]) == 2
    assert "no-such-detector" in capsys.readouterr().err
    assert not out.exists()


def test_stream_is_round_robin_and_replays_the_files(corpus: Path) -> None:
    files = throughput.load_series(corpus)
    stream = streaming.build_stream(files, 3, 30)
    assert stream.sid == [j % 3 for j in range(30)]
    # Series 0 replays file 0 from its start, in order, with increasing timestamps.
    first = [v for s, v in zip(stream.sid, stream.value, strict=True) if s == 0]
    assert first == files[0][2][:10].tolist()
    ts0 = [t for s, t in zip(stream.sid, stream.ts, strict=True) if s == 0]
    assert all(b - a == 60_000 for a, b in zip(ts0, ts0[1:], strict=False))
    # A continued stream picks up where the first one stopped.
    later = streaming.build_stream(files, 3, 30, skip=10)
    assert [v for s, v in zip(later.sid, later.value, strict=True) if s == 0] == (
        files[0][2][10:20].tolist()
    )


@pytest.mark.parametrize("river", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_streaming_writes_json(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], river: bool
) -> None:
    if river and not HAS_RIVER:
        pytest.skip("river is not installed (pip install river)")
    out = tmp_path / "streaming.json"
    args = ["--data", str(corpus), "--series", "4", "--points", "400", "--out", str(out)]
    args += ["--river", "--river-series", "2"] if river else ["--no-river"]
    assert streaming.main(args) == 0
    doc = _last_json(capsys.readouterr().out)
    assert doc == json.loads(out.read_text())
    row = doc["detectors"]["default"]  # type: ignore[index]
    assert row["series"] == 4 and row["points"] == 400 and row["points_per_s"] > 0
    assert 0 < row["checkpoint_bytes_per_series_mean"] <= row["checkpoint_bytes_per_series_max"]
    assert isinstance(row["meets_target"], bool)
    if river:
        riv = doc["river"]
        assert riv["series"] == 2 and riv["points"] == 200  # type: ignore[index]
        assert riv["steady_state"]["points_per_s"] > 0  # type: ignore[index]
        assert set(row["ratio_vs_river"]) == {"steady_state", "same_stream"}
    else:
        assert "ratio_vs_river" not in row


def test_streaming_rejects_bad_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        streaming.main(["--series", "10", "--points", "5"])
    assert exc.value.code == 2
    assert "--points" in capsys.readouterr().err


def test_streaming_times_every_series_past_its_warm_up(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "streaming.json"
    args = ["--data", str(corpus), "--series", "4", "--points", "400", "--no-river"]
    assert streaming.main([*args, "--out", str(out)]) == 0
    doc = _last_json(capsys.readouterr().out)
    row = doc["detectors"]["default"]  # type: ignore[index]
    min_samples = throughput.describe_detector("default")["config"]["min_samples"]
    # Every series is min_samples old before the timed loop starts (warm-up fed untimed).
    assert row["youngest_series_at_timing"] >= min_samples
    assert row["points_per_series_untimed"] == doc["points_per_series_untimed"] == min_samples
    assert row["points_per_series_timed"] == 100
    assert row["update_many"]["same_checkpoints_as_update"] is True


def test_streaming_warm_up_is_the_largest_min_samples() -> None:
    assert streaming.warmup_points("cusum") == 16
    assert streaming.warmup_points("default") == 64
    assert streaming.warmup_points("ensemble") == 16  # its members' (mad, cusum)
    assert streaming.warmup_points("seasonal") == 0


def test_streaming_run_without_river_drops_the_old_river_block(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "streaming.json"
    base = ["--data", str(corpus), "--series", "4", "--points", "400", "--out", str(out)]
    assert streaming.main([*base, "--no-river", "--detector", "cusum"]) == 0
    doc = json.loads(out.read_text())
    # As if an earlier run had measured river beside these rows.
    doc["river"] = {"steady_state": {"points_per_s": 1.0}, "same_stream": {"points_per_s": 1.0}}
    doc["detectors"]["cusum"]["ratio_vs_river"] = {"steady_state": 9.9, "same_stream": 9.9}
    doc["detectors"]["cusum"]["update_many"] = {"ratio_vs_river": {"steady_state": 9.9}}
    doc["detectors"]["older"] = {"series": 1000, "points": 1000, "ratio_vs_river": {}}
    out.write_text(json.dumps(doc))
    capsys.readouterr()
    assert streaming.main([*base, "--no-river", "--detector", "default"]) == 0
    merged = json.loads(out.read_text())
    assert "river" not in merged
    assert set(merged["detectors"]) == {"cusum", "default"}  # "older": another stream, dropped
    assert all("ratio_vs_river" not in row for row in merged["detectors"].values())
    assert merged["detectors"]["cusum"]["update_many"] == {}


def test_streaming_bad_out_exits_2_before_any_work(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--data", str(corpus), "--series", "4", "--points", "400", "--no-river"]
    assert streaming.main([*args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(tmp_path) in err and "over 4 series" not in err
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text("{not json")
    assert streaming.main([*args, "--out", str(corrupt)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot merge" in err and "over 4 series" not in err
    assert corrupt.read_text() == "{not json"


def test_throughput_refuses_an_out_it_cannot_merge_into(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--data", str(corpus), "--detector", "cusum", "--repeat", "1", "--no-cold-compile"]
    assert throughput.main([*args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a folder" in err and "timing" not in err
    corrupt = tmp_path / "throughput.json"
    corrupt.write_text("{not json")
    assert throughput.main([*args, "--out", str(corrupt)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot merge" in err and "timing" not in err
    assert corrupt.read_text() == "{not json"
    # A file in the way of the folder to create.
    assert throughput.main([*args, "--out", str(corrupt / "sub" / "t.json")]) == 2
    assert "is not a folder" in capsys.readouterr().err
