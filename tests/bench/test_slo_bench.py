"""Smoke test of bench/slo.py on a tiny fleet: it runs end to end, writes the JSON it promises,
and its generated data and evaluation make sense. Nothing about speed is asserted."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import slo as slo_bench  # noqa: E402


def test_slo_bench_writes_rows_and_merges(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "slo.json"
    out.write_text(json.dumps({"runs": {"older": {"slos": 1}}}))
    args = ["--slos", "40", "--days", "3", "--repeat", "2", "--numpy-slos", "10"]
    assert slo_bench.main([*args, "--out", str(out)]) == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert doc == json.loads(out.read_text())
    assert doc["slos"] == 40 and doc["steps"] == 3 * 1440 and doc["target_s"] == 2.0
    assert doc["meets_target"] is None  # only judged at the full 10,000 x 30 days
    runs = doc["runs"]
    assert "older" in runs  # rows of other runs are kept
    numba_rows = [r for name, r in runs.items() if name.startswith("numba")]
    assert numba_rows and all(r["slos"] == 40 and len(r["seconds"]) == 2 for r in numba_rows)
    assert all(r["seconds_median"] > 0 for r in numba_rows)
    assert runs["numpy (cumulative sums)"]["slos"] == 10
    found = doc["found"]
    assert sum(found["by_method"].values()) == 40 and 0 < found["median_sli"] <= 1


def test_generated_data_and_both_engines_agree() -> None:
    params = slo_bench.make_params(30, 2 * 1440, seed=3)
    bad, total = slo_bench.generate(params.error_budget, 2 * 1440, seed=3)
    assert bad.dtype == np.float32 and bad.shape == (30, 2880)
    ok = ~np.isnan(total)
    assert np.all(bad[ok] <= total[ok]) and np.all(bad[ok] >= 0)
    assert np.isnan(bad[~ok]).all() and 0 < (~ok).mean() < 0.01
    a = slo_bench.B.evaluate(bad, total, params, step_s=60)
    b = slo_bench.B.evaluate(bad, total, params, step_s=60, engine="numpy")
    np.testing.assert_allclose(a.sli, b.sli, rtol=1e-9)
    np.testing.assert_allclose(a.long_burn, b.long_burn, rtol=1e-9)
    assert (a.firing == b.firing).all()


def test_slo_bench_rejects_bad_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["--slos", "0"], ["--repeat", "0"], ["--days", "0"], ["--numpy-slos", "-1"]):
        with pytest.raises(SystemExit) as exc:
            slo_bench.parse_args(args)
        assert exc.value.code == 2
        assert args[0] in capsys.readouterr().err


def test_slo_bench_refuses_an_out_it_cannot_merge_into_before_generating(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["--slos", "40", "--days", "3", "--repeat", "1", "--numpy-slos", "0"]
    assert slo_bench.main([*args, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a folder" in err and "generating" not in err
    corrupt = tmp_path / "slo.json"
    corrupt.write_text("<<<<<<< HEAD\n{}\n")
    assert slo_bench.main([*args, "--out", str(corrupt)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot merge" in err and "generating" not in err
    assert corrupt.read_text() == "<<<<<<< HEAD\n{}\n"
