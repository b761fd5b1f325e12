"""Tests of the NAB window-by-window report (bench/nab_windows.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import nab_windows  # noqa: E402
from tests.bench.test_nab_scoring import NAB_DATA, make_corpus  # noqa: E402


def _run(tmp_path: Path, *extra: str) -> tuple[int, dict]:
    data = tmp_path / "nab"
    if not data.exists():
        make_corpus(data)
    out = tmp_path / "windows.json"
    code = nab_windows.main(["--data", str(data), "--out", str(out), *extra])
    return code, json.loads(out.read_text()) if code == 0 else {}


def test_every_window_is_accounted_for_and_the_sum_is_the_raw_score(tmp_path: Path) -> None:
    code, doc = _run(tmp_path)
    assert code == 0
    assert doc["windows_scored"] == 2 and len(doc["windows"]) == 2
    # A 40 SD spike sits in each window: both are detected, with the component that fired.
    for w in doc["windows"]:
        assert w["detected"] and -1.0 <= w["position"] <= 0.0
        assert w["component"] in ("above", "below", "new_range", "run")
        assert w["score"] >= doc["threshold"]
    assert doc["tp_reward"] + doc["fn_cost"] + doc["fp_cost"] == pytest.approx(doc["raw"], abs=1e-3)


def test_the_neighbourhood_row_at_the_chosen_threshold_is_the_report_itself(
    tmp_path: Path,
) -> None:
    code, doc = _run(tmp_path)
    assert code == 0
    rows = doc["neighbourhood"]
    assert [r["threshold"] for r in rows] == sorted(r["threshold"] for r in rows)
    here = next(r for r in rows if r["threshold"] == round(doc["threshold"], 4))
    assert here["score"] == doc["score"]
    assert here["windows_detected"] == doc["windows_detected"]
    assert here["fp_rows"] == sum(f["fp_rows"] for f in doc["fp_files"])
    # NAB's procedure picked the best threshold, so no neighbour scores higher; a higher
    # threshold flags a subset of the rows, so it never detects more or flags more.
    assert all(r["score"] <= doc["score"] for r in rows)
    for lower, higher in zip(rows, rows[1:], strict=False):
        assert higher["windows_detected"] <= lower["windows_detected"]
        assert higher["fp_rows"] <= lower["fp_rows"]
        assert higher["fp_runs"] <= higher["fp_rows"]


def test_a_parameter_that_hides_the_spikes_turns_detections_into_misses(tmp_path: Path) -> None:
    # With 400 warm-up points the detector never scores: both windows are missed, with best 0.
    code, doc = _run(tmp_path, "--set", "min_samples=400")
    assert code == 0
    assert doc["params"] == {"min_samples": 400}
    assert doc["windows_detected"] == 0
    assert all(not w["detected"] and w["best"] == 0.0 for w in doc["windows"])


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--set", "nonsense"], "key=value"),
        (["--set", "no_such_param=1"], "no_such_param"),
        (["--profile", "no_such_profile"], "no_such_profile"),
        (["--detector", "no_such_detector"], "no_such_detector"),
    ],
)
def test_bad_input_is_a_user_error(tmp_path: Path, capsys, extra: list[str], needle: str) -> None:
    code, _ = _run(tmp_path, *extra)
    assert code == 2
    assert needle in capsys.readouterr().err


@pytest.mark.skipif(
    not (NAB_DATA / "labels/combined_windows.json").is_file(), reason="NAB data not found"
)
def test_accounting_matches_the_scorer_on_the_real_corpus(tmp_path: Path) -> None:
    out = tmp_path / "w.json"
    assert nab_windows.main(["--data", str(NAB_DATA), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["windows_scored"] == 116
    assert doc["tp_reward"] + doc["fn_cost"] + doc["fp_cost"] == pytest.approx(doc["raw"], abs=1e-2)


def test_docs_quote_the_neighbourhood_of_the_committed_results() -> None:
    """docs/detectors.md's figures for lower thresholds are nab_windows.json's."""
    root = BENCH.parent
    doc = json.loads((root / "bench/results/nab_windows.json").read_text())
    text = " ".join((root / "docs/detectors.md").read_text().split())
    by = {round(r["threshold"] - doc["threshold"], 2): r for r in doc["neighbourhood"]}
    chosen, lower, lowest = by[0.0], by[-0.04], by[-0.08]
    assert (
        f"at {lower['threshold']:.4f} it detects {lower['windows_detected']} windows, for "
        f"{lower['fp_rows']} false-positive rows in {lower['fp_runs']} separate runs instead of "
        f"{chosen['fp_rows']} rows in {chosen['fp_runs']} runs, and the score falls to "
        f"{lower['score']:.2f}; at {lowest['threshold']:.4f}, {lowest['windows_detected']} windows "
        f"for {lowest['fp_rows']:,} rows ({lowest['score']:.2f})"
    ) in text


def test_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "a folder with a rather long name that rich would wrap" / "nope"
    assert nab_windows.main(["--data", str(missing), "--out", str(tmp_path / "w.json")]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert nab_windows.main(["--out", str(tmp_path)]) == 2  # a folder: refused before any work
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a folder" in err
