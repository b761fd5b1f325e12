"""Smoke test of bench/scale.py: a tiny run of batch (local and Ray) and streaming on Ray.

It checks that the script runs end to end and writes the JSON it promises with sane values; it
asserts nothing about speed (that is what it measures).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import polars as pl
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import scale  # noqa: E402


def test_data_is_generated_once_and_deterministic(tmp_path: Path) -> None:
    files = scale.ensure_data(tmp_path / "a", series=25, points=3000, shard_series=10, seed=3)
    assert [f.name for f in files] == [f"shard-{i:05d}.parquet" for i in range(3)]
    frames = [pl.read_parquet(f) for f in files]
    assert [f.width - 1 for f in frames] == [10, 10, 5]
    assert frames[2].columns[1:] == [f"s{i:07d}" for i in range(20, 25)]
    ts = frames[0]["timestamp"].to_numpy()
    assert ts[0] == scale.T0_MS and (np.diff(ts) == scale.STEP_MS).all()
    values = np.column_stack([f.drop("timestamp").to_numpy() for f in frames])
    assert values.shape == (3000, 25) and np.isfinite(values).mean() > 0.98
    # Cached: a second call finds the files and does not rewrite them.
    mtimes = [f.stat().st_mtime_ns for f in files]
    assert scale.ensure_data(tmp_path / "a", 25, 3000, 10, 3) == files
    assert [f.stat().st_mtime_ns for f in files] == mtimes
    # The same seed elsewhere gives the same numbers.
    again = scale.ensure_data(tmp_path / "b", 25, 3000, 10, 3)
    assert pl.read_parquet(again[1]).equals(frames[1])


@pytest.mark.slow
def test_quick_run_writes_sane_json(
    tmp_path: Path, ray_local: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "scale.json"
    args = ["--quick", "--series", "40", "--points", "1500", "--shard-series", "10"]
    args += ["--stream-series", "3000", "--data", str(tmp_path / "data"), "--out", str(out)]
    assert scale.main(args) == 0
    doc = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == doc
    assert doc["benchmark"] == "scale" and doc["machine"]["cores"] >= 1
    # Which detector and code it measured (`default` moves as relia improves).
    assert doc["class"] == "relia.detect.adaptive:Adaptive" and "min_samples" in doc["config"]
    assert doc["git_commit"]
    b = doc["batch"]
    assert (b["series"], b["points_per_series"], b["points"], b["shards"]) == (40, 1500, 60000, 4)
    assert b["identical_results"] is True
    assert [(r["executor"], r["workers"]) for r in b["runs"]] == [
        ("local", None),
        ("ray", 1),
        ("ray", 2),
    ]
    for r in b["runs"]:
        assert r["seconds"] > 0
        # seconds is rounded to 0.1 ms in the JSON, points_per_s is not.
        assert 60000 / r["points_per_s"] == pytest.approx(r["seconds"], abs=1e-4)
        # CPU seconds of the scoring processes over their cores' wall time (a Ray worker's own
        # gRPC threads can push it a little past 1).
        assert 0 < r["cpu_share"] < 2 and r["cpu_s"] > 0
    assert set(b["speedup"]) == {"ray2_over_ray1", "ray1_over_local", "ray2_over_local"}
    assert 0 < b["anomalous_points"] < b["points"] and b["windows"] >= b["series_with_anomalies"]
    s = doc["streaming"]
    assert s["series"] == 3000 and s["actors"] == 2 and sum(s["series_per_actor"]) >= 3000
    # Only the rounds after every series' warm-up are timed (timing warm-up measured an easier
    # phase: a young series skips most of the scoring).
    assert s["untimed_rounds"] == s["warmup_points"] == 64
    assert s["rounds"] == s["untimed_rounds"] + s["timed_rounds"] and s["timed_rounds"] >= 8
    assert s["points"] == 3000 * s["timed_rounds"]
    assert s["points_per_s"] > 0
    # The default detector's state is about 1.3 KB per series, packed.
    assert 200 < s["checkpoint_bytes_per_series"] < 10_000


def test_an_unwritable_out_is_refused_before_any_work(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "data"
    assert scale.main(["--quick", "--data", str(data), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a folder" in err
    assert not data.exists()  # nothing generated
