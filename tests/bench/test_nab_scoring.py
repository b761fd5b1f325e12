"""Tests of the NAB scorer (bench/nab_scoring.py) and the NAB harness (bench/nab.py)."""

from __future__ import annotations

import csv
import json
import math
import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relia.errors import DataError

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import nab  # noqa: E402
import nab_scoring as ns  # noqa: E402

NAB_DATA = Path(__file__).resolve().parents[3] / "shared/data/nab"
REFERENCE = NAB_DATA / "reference/numenta"
needs_nab = pytest.mark.skipif(
    not (REFERENCE.is_dir() and (NAB_DATA / "labels/combined_windows.json").is_file()),
    reason=f"NAB reference data not found at {NAB_DATA} (numenta/NAB data/, labels/, config/, "
    "results/numenta/ copied to shared/data/nab)",
)

STANDARD = ns.CostMatrix(tp_weight=1.0, fp_weight=0.11, fn_weight=1.0)
S_MINUS_1 = 2.0 / (1.0 + math.exp(-5.0)) - 1.0  # scaled sigmoid at the window's left edge


def s(x: float) -> float:
    """The scaled sigmoid written out by hand."""
    return -1.0 if x > 3.0 else 2.0 / (1.0 + math.exp(5.0 * x)) - 1.0


def ts_of(n: int) -> np.ndarray:
    return 1_400_000_000_000 + 300_000 * np.arange(n, dtype=np.int64)


def one_file(n: int, rows: list[tuple[int, int]], hits: dict[int, float], cost=STANDARD):
    """A file of n rows with windows over row ranges, scores 0 except at ``hits``."""
    t = ts_of(n)
    scores = np.zeros(n)
    for i, v in hits.items():
        scores[i] = v
    windows = [(int(t[a]), int(t[b])) for a, b in rows]
    return ns.prepare_file("cat/f.csv", t, scores, windows, cost)


# -- the scaled sigmoid, probation ----------------------------------------------------------


def test_scaled_sigmoid_published_points() -> None:
    vals = ns.scaled_sigmoid([-1.0, -0.5, 0.0, 1.0, 3.0, 3.0001, 10.0])
    assert vals[0] == pytest.approx(0.98661, abs=1e-5)
    assert vals[1] == pytest.approx(0.84828, abs=1e-5)
    assert vals[2] == 0.0
    assert vals[3] == pytest.approx(-0.98661, abs=1e-5)
    assert vals[4] == pytest.approx(s(3.0)) and vals[4] > -1.0  # only beyond 3 is it cut to -1
    assert vals[5] == -1.0 and vals[6] == -1.0


@pytest.mark.parametrize(
    ("n", "expected"), [(0, 0), (10, 1), (100, 15), (4032, 604), (5000, 750), (22695, 750)]
)
def test_probation_is_15_percent_capped_at_750(n: int, expected: int) -> None:
    assert ns.probation_length(n) == expected


# -- one file, one window (rows 50..59 of 100; probation is rows 0..14) -----------------------


def test_detection_at_window_start_is_worth_tp_weight() -> None:
    f = one_file(100, [(50, 59)], {50: 1.0})
    assert ns.score_at_threshold(f, 1.0).score == pytest.approx(1.0)


def test_detection_at_window_end_is_worth_little() -> None:
    f = one_file(100, [(50, 59)], {59: 1.0})
    expected = s(-1 / 10) / S_MINUS_1
    assert ns.score_at_threshold(f, 1.0).score == pytest.approx(expected)
    assert 0.2 < expected < 0.3


def test_detection_mid_window() -> None:
    f = one_file(100, [(50, 59)], {54: 1.0})
    assert ns.score_at_threshold(f, 1.0).score == pytest.approx(s(-6 / 10) / S_MINUS_1)


def test_only_the_earliest_detection_in_a_window_counts() -> None:
    f = one_file(100, [(50, 59)], {52: 1.0, 55: 1.0, 58: 1.0})
    r = ns.score_at_threshold(f, 1.0)
    assert r.score == pytest.approx(s(-8 / 10) / S_MINUS_1)
    assert (r.tp, r.fp, r.fn) == (3, 0, 7)


def test_missed_window_costs_fn_weight() -> None:
    f = one_file(100, [(50, 59)], {})
    assert ns.score_at_threshold(f, 0.5).score == pytest.approx(-1.0)
    cost = ns.CostMatrix(tp_weight=1.0, fp_weight=0.11, fn_weight=2.0)
    assert ns.score_at_threshold(one_file(100, [(50, 59)], {}, cost), 0.5).score == -2.0


def test_fp_before_any_window_costs_fp_weight() -> None:
    f = one_file(100, [(50, 59)], {30: 1.0})
    r = ns.score_at_threshold(f, 1.0)
    assert r.score == pytest.approx(-0.11 - 1.0)
    assert (r.fp, r.tp) == (1, 0)


def test_fp_just_after_a_window_is_cheap_far_after_costs_full() -> None:
    near = ns.score_at_threshold(one_file(100, [(50, 59)], {50: 1.0, 60: 1.0}), 1.0).score
    assert near == pytest.approx(1.0 + 0.11 * s(1 / 9))
    assert -0.04 < near - 1.0 < -0.02  # S(1/9) is about -0.27: a cheap FP
    mid = ns.score_at_threshold(one_file(100, [(50, 59)], {50: 1.0, 68: 1.0}), 1.0).score
    assert mid == pytest.approx(1.0 + 0.11 * s(9 / 9))
    far = ns.score_at_threshold(one_file(100, [(50, 59)], {50: 1.0, 95: 1.0}), 1.0).score
    assert far == pytest.approx(1.0 - 0.11)  # 36 / 9 = 4 > 3


def test_fp_weight_uses_the_closest_preceding_window() -> None:
    # Windows at rows 20..29 (width 10) and 60..63 (width 4); FP at row 65 is 2/3 past the second.
    f = one_file(200, [(40, 49), (60, 63)], {40: 1.0, 60: 1.0, 65: 1.0})
    assert ns.score_at_threshold(f, 1.0).score == pytest.approx(2.0 + 0.11 * s(2 / 3))


def test_probationary_detections_are_ignored() -> None:
    f = one_file(100, [(50, 59)], {3: 1.0, 14: 1.0})
    r = ns.score_at_threshold(f, 1.0)
    assert r.score == pytest.approx(-1.0)  # the FN only, no FP cost
    assert r.fp == 0 and r.total == 85
    # Row 15 is the first scored row.
    assert ns.score_at_threshold(one_file(100, [(50, 59)], {15: 1.0}), 1.0).score == pytest.approx(
        -1.11
    )


def test_window_inside_probation_is_not_scored_but_counts_as_perfect() -> None:
    f = one_file(100, [(2, 8), (50, 59)], {})
    assert f.n_windows == 2 and f.n_scored_windows == 1
    assert ns.null_score([f]) == -1.0
    assert ns.perfect_score([f]) == 2.0
    assert ns.score_at_threshold(f, 0.5).score == -1.0


def test_threshold_is_inclusive() -> None:
    f = one_file(100, [(50, 59)], {50: 0.7})
    assert ns.score_at_threshold(f, 0.7).tp == 1
    assert ns.score_at_threshold(f, 0.70001).tp == 0


def test_repeated_end_timestamp_leaves_the_window_at_its_first_row() -> None:
    # NAB matches window bounds to rows by exact timestamp: rows 5 and 6 share a timestamp.
    t = ts_of(40)
    t[26] = t[25]
    t[27:] = t[27:] - 300_000
    scores = np.zeros(40)
    scores[26] = 1.0
    f = ns.prepare_file("c/f.csv", t, scores, [(int(t[20]), int(t[25]))], STANDARD)
    assert f.window[25] == 0 and f.window[26] == -1
    r = ns.score_at_threshold(f, 1.0)
    assert r.fp == 1 and r.score == pytest.approx(-1.0 + 0.11 * s(1 / 5))


def test_window_bounds_must_be_row_timestamps() -> None:
    t = ts_of(40)
    with pytest.raises(DataError, match=r"c/f.csv: anomaly window 0 starts at no row"):
        ns.prepare_file("c/f.csv", t, np.zeros(40), [(int(t[20]) + 1, int(t[25]))], STANDARD)


def test_non_finite_scores_are_refused_with_the_row() -> None:
    sc = np.zeros(30)
    sc[7] = np.nan
    with pytest.raises(DataError, match=r"c/f.csv: row 7: anomaly_score"):
        ns.prepare_file("c/f.csv", ts_of(30), sc, [], STANDARD)


# -- the sweep and normalisation --------------------------------------------------------------


def test_sweep_rows_and_best_threshold() -> None:
    # Window start scored 0.6, an FP before it 0.9, noise 0.2 elsewhere.
    n = 100
    t = ts_of(n)
    sc = np.full(n, 0.2)
    sc[30] = 0.9
    sc[50] = 0.6
    f = ns.prepare_file("c/f.csv", t, sc, [(int(t[50]), int(t[59]))], STANDARD)
    curve = ns.sweep_thresholds([f])
    np.testing.assert_array_equal(curve.threshold, [1.1, 0.9, 0.6, 0.2])
    assert curve.score[0] == -1.0
    assert curve.score[1] == pytest.approx(-1.11)
    assert curve.score[2] == pytest.approx(1.0 - 0.11)
    assert curve.best == 2
    assert (curve.tp[2], curve.fp[2], curve.fn[2], curve.tn[2]) == (1, 1, 9, 74)


def test_ties_go_to_the_higher_threshold() -> None:
    # Lowering the threshold from 0.8 to 0.5 only adds a later detection in the same window:
    # the score does not change, and NAB keeps the higher threshold.
    sc = {50: 0.8, 55: 0.5}
    f = one_file(100, [(50, 59)], sc)
    curve = ns.sweep_thresholds([f])
    assert curve.score[1] == curve.score[2]
    assert curve.threshold[curve.best] == 0.8


def test_null_and_perfect_detectors_normalise_to_0_and_100() -> None:
    n = 200
    t = ts_of(n)
    windows = {"a/x.csv": [(int(t[50]), int(t[59])), (int(t[120]), int(t[139]))]}
    profiles = {"standard": STANDARD, "low_fn": ns.CostMatrix(1.0, 0.11, 2.0)}
    null = ns.score_corpus({"a/x.csv": (t, np.zeros(n))}, windows, profiles)
    perfect_scores = np.zeros(n)
    perfect_scores[[50, 120]] = 1.0
    perfect = ns.score_corpus({"a/x.csv": (t, perfect_scores)}, windows, profiles)
    for p in profiles:
        assert null[p].normalized == 0.0
        assert perfect[p].normalized == pytest.approx(100.0)
    assert null["low_fn"].null == -4.0 and null["low_fn"].perfect == 2.0


def test_given_thresholds_are_used_and_optimum_still_reported() -> None:
    t = ts_of(100)
    sc = np.zeros(100)
    sc[50] = 0.6
    res = {"a/x.csv": (t, sc)}
    win = {"a/x.csv": [(int(t[50]), int(t[59]))]}
    out = ns.score_corpus(res, win, {"standard": STANDARD}, thresholds={"standard": 0.9})
    c = out["standard"]
    assert c.threshold_given and c.threshold == 0.9 and c.normalized == 0.0
    assert c.optimized_threshold == 0.6 and c.optimized_normalized == pytest.approx(100.0)


def test_unlabelled_result_file_is_refused() -> None:
    t = ts_of(10)
    with pytest.raises(DataError, match="no labelled windows for b/y.csv"):
        ns.score_corpus({"b/y.csv": (t, np.zeros(10))}, {}, {"standard": STANDARD})


# -- the vectorized sweep against a plain reading of the rules -------------------------------


def naive_file_score(
    n: int, rows: list[tuple[int, int]], sc: np.ndarray, thr: float, cost
) -> float:
    prob = ns.probation_length(n)
    total = 0.0
    inside = set()
    for a, b in rows:
        inside.update(range(a, b + 1))
        scored = [i for i in range(a, b + 1) if i >= prob]
        if not scored:
            continue
        hit = [i for i in scored if sc[i] >= thr]
        if hit:
            total += max(
                -cost.fn_weight, cost.tp_weight * s(-(b - hit[0] + 1) / (b - a + 1)) / S_MINUS_1
            )
        else:
            total -= cost.fn_weight
    for i in range(prob, n):
        if i in inside or sc[i] < thr:
            continue
        before = [(a, b) for a, b in rows if b < i]
        if not before:
            total -= cost.fp_weight
        else:
            a, b = before[-1]
            d = (i - b) / (b - a) if b > a else math.inf
            total += cost.fp_weight * s(d)
    return total


@st.composite
def corpora(draw):
    files = []
    for _ in range(draw(st.integers(1, 3))):
        n = draw(st.integers(1, 60))
        cuts = sorted(draw(st.sets(st.integers(0, max(n - 1, 0)), max_size=6)))
        rows = [(cuts[k], cuts[k + 1]) for k in range(0, len(cuts) - 1, 2)]
        levels = draw(
            st.lists(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 1.0]), min_size=n, max_size=n)
        )
        files.append((n, rows, np.array(levels, dtype=np.float64)))
    cost = ns.CostMatrix(
        tp_weight=draw(st.sampled_from([1.0, 0.5])),
        fp_weight=draw(st.sampled_from([0.11, 0.22, 1.0])),
        fn_weight=draw(st.sampled_from([1.0, 2.0])),
    )
    return files, cost


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(corpora())
def test_sweep_equals_naive_scoring_at_every_threshold(case) -> None:
    files, cost = case
    sweeps = []
    for k, (n, rows, sc) in enumerate(files):
        t = ts_of(n)
        sweeps.append(
            ns.prepare_file(f"c/{k}.csv", t, sc, [(int(t[a]), int(t[b])) for a, b in rows], cost)
        )
    curve = ns.sweep_thresholds(sweeps)
    assert np.all(np.diff(curve.threshold) < 0)
    for thr, score in zip(curve.threshold, curve.score, strict=True):
        naive = sum(naive_file_score(n, rows, sc, thr, cost) for n, rows, sc in files)
        assert score == pytest.approx(naive, abs=1e-9)
        vec = sum(ns.score_at_threshold(f, thr).score for f in sweeps)
        assert vec == pytest.approx(naive, abs=1e-9)
    # The best row beats every threshold, including ones between score levels.
    best = curve.score[curve.best]
    for thr in (0.05, 0.3, 0.6, 0.9):
        assert best >= sum(naive_file_score(n, r, sc, thr, cost) for n, r, sc in files) - 1e-9


# -- parsing ----------------------------------------------------------------------------------


@given(st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(2100, 1, 1)))
def test_parse_timestamps_round_trip(dt: datetime) -> None:
    dt = dt.replace(microsecond=(dt.microsecond // 1000) * 1000)
    epoch = datetime(1970, 1, 1)
    expected = (dt - epoch) // timedelta(milliseconds=1)
    whole = dt.replace(microsecond=0)
    text = dt.strftime("%Y-%m-%d %H:%M:%S")
    frac = dt.strftime("%Y-%m-%d %H:%M:%S.%f")
    assert ns.parse_timestamps([text], where="x")[0] == (whole - epoch) // timedelta(milliseconds=1)
    assert ns.parse_timestamps([frac], where="x")[0] == expected


@given(st.text(max_size=20).filter(lambda x: not ns._TS_RE.match(x)))
def test_parse_timestamps_rejects_garbage_naming_the_row(bad) -> None:
    with pytest.raises(DataError, match=r"^f.csv: row 1: timestamp"):
        ns.parse_timestamps(["2014-01-01 00:00:00", bad], where="f.csv")


def test_load_windows_and_profiles_errors(tmp_path: Path) -> None:
    p = tmp_path / "w.json"
    p.write_text(json.dumps({"a/x.csv": [["2014-01-02 00:00:00", "2014-01-01 00:00:00"]]}))
    with pytest.raises(DataError, match=r"a/x.csv: window 0 ends before it starts"):
        ns.load_windows(p)
    p.write_text("{")
    with pytest.raises(DataError, match=r"w.json: cannot read windows JSON"):
        ns.load_windows(p)
    q = tmp_path / "profiles.json"
    q.write_text(
        json.dumps({"standard": {"CostMatrix": {"tpWeight": 1, "fpWeight": "x", "fnWeight": 1}}})
    )
    with pytest.raises(DataError, match=r"standard.CostMatrix: fpWeight must be a number"):
        ns.load_profiles(q)


def write_results(root: Path, prefix: str, key: str, rows: list[tuple[str, str]]) -> Path:
    category, name = key.split("/")
    path = root / category / f"{prefix}_{name}"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "timestamp,value,anomaly_score,label\n" + "".join(f"{t},1.0,{a},0\n" for t, a in rows)
    )
    return path


def test_read_results_dir_infers_prefix_and_reports_bad_rows(tmp_path: Path) -> None:
    root = tmp_path / "whatever"
    known = {"realX/my_data_1.csv", "realX/my_data_2.csv"}
    write_results(root, "det_v2", "realX/my_data_1.csv", [("2014-01-01 00:00:00", "0.5")])
    write_results(root, "det_v2", "realX/my_data_2.csv", [("2014-01-01 00:00:00", "0.25")])
    (root / "det_v2_standard_scores.csv").write_text("Threshold\n0.5\n")
    name, res = ns.read_results_dir(root, known)
    assert name == "det_v2" and sorted(res) == sorted(known)
    assert res["realX/my_data_2.csv"][1].tolist() == [0.25]
    bad = write_results(
        root,
        "det_v2",
        "realX/my_data_2.csv",
        [("2014-01-01 00:00:00", "0.1"), ("2014-01-01 00:05:00", "oops")],
    )
    with pytest.raises(DataError, match=rf"{bad}: row 1: anomaly_score 'oops'"):
        ns.read_results_dir(root, known)
    assert ns.read_score_tables(root, "det_v2", ["standard", "x"]) == {"standard": 0.5}


# -- the official reference -------------------------------------------------------------------


@needs_nab
def test_reproduces_the_official_numenta_scores() -> None:
    windows = ns.load_windows(NAB_DATA / "labels/combined_windows.json")
    profiles = ns.load_profiles(NAB_DATA / "config/profiles.json")
    name, results = ns.read_results_dir(REFERENCE, set(windows))
    assert name == "numenta" and len(results) == 58
    thresholds = ns.read_score_tables(REFERENCE, name, profiles)
    out = ns.score_corpus(results, windows, profiles, thresholds=thresholds)
    published = {"standard": 70.10, "reward_low_FP_rate": 63.12, "reward_low_FN_rate": 74.32}
    final = json.loads((NAB_DATA / "reference/final_results.json").read_text())["numenta"]
    for profile, value in published.items():
        assert out[profile].normalized == pytest.approx(value, abs=0.05)
        assert out[profile].normalized == pytest.approx(final[profile], abs=1e-6)
        # Per file, score and counts equal NAB's own score table.
        table = REFERENCE / f"numenta_{profile}_scores.csv"
        ref = {r["File"]: r for r in csv.DictReader(table.open()) if r["Detector"] != "Totals"}
        for f in out[profile].files:
            r = ref[f.name]
            assert f.score == pytest.approx(float(r["Score"]), abs=1e-9), f.name
            assert (f.tp, f.tn, f.fp, f.fn) == tuple(int(r[k]) for k in ("TP", "TN", "FP", "FN"))
        # The joint sweep can only do as well or better than the published threshold; on the
        # standard and low-FN profiles NAB's threshold is already optimal.
        assert out[profile].optimized_raw >= out[profile].raw - 1e-9
    assert out["standard"].optimized_normalized == pytest.approx(70.10, abs=0.05)
    assert out["reward_low_FN_rate"].optimized_normalized == pytest.approx(74.32, abs=0.05)


# -- the harness ------------------------------------------------------------------------------


@needs_nab
def test_cli_scores_the_reference_folder(tmp_path: Path, capsys) -> None:
    out = tmp_path / "nab.json"
    out.write_text(json.dumps({"detectors": {"other": {"standard": 1.0}}}))
    code = nab.main(["--score-results", str(REFERENCE), "--out", str(out)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0
    doc = json.loads(lines[-1])
    assert doc == json.loads(out.read_text())
    row = doc["detectors"]["numenta"]
    assert row["standard"] == pytest.approx(70.10, abs=0.05)
    assert row["reward_low_FP_rate"] == pytest.approx(63.12, abs=0.05)
    assert row["reward_low_FN_rate"] == pytest.approx(74.32, abs=0.05)
    assert doc["detectors"]["other"] == {"standard": 1.0}  # merged, not dropped
    assert doc["reference"]["ARTime"]["standard"] == pytest.approx(74.85, abs=0.01)


def make_corpus(root: Path, n: int = 400) -> list[str]:
    """A two-file NAB-shaped corpus with one spike inside each window."""
    keys = ["catA/one.csv", "catB/two.csv"]
    windows = {}
    t = ts_of(n).astype("datetime64[ms]")
    stamps = [str(x).replace("T", " ")[:19] for x in t]
    rng = np.random.default_rng(0)
    for k, key in enumerate(keys):
        v = rng.normal(10.0, 1.0, n)
        v[250 + 10 * k] += 40.0
        path = root / "data" / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            "timestamp,value\n" + "".join(f"{a},{b}\n" for a, b in zip(stamps, v, strict=True))
        )
        windows[key] = [[stamps[240 + 10 * k] + ".000000", stamps[280 + 10 * k] + ".000000"]]
    (root / "labels").mkdir()
    (root / "labels/combined_windows.json").write_text(json.dumps(windows))
    (root / "config").mkdir()
    (root / "config/profiles.json").write_text(
        json.dumps(
            {
                p: {
                    "CostMatrix": {"tpWeight": 1.0, "fpWeight": fp, "fnWeight": fn, "tnWeight": 1.0}
                }
                for p, fp, fn in [
                    ("standard", 0.11, 1.0),
                    ("reward_low_FP_rate", 0.22, 1.0),
                    ("reward_low_FN_rate", 0.11, 2.0),
                ]
            }
        )
    )
    return keys


def test_cli_runs_a_detector_writes_nab_layout_and_rescores(tmp_path: Path, capsys) -> None:
    data = tmp_path / "nab"
    keys = make_corpus(data)
    results = tmp_path / "results"
    out = tmp_path / "nab.json"
    code = nab.main(
        ["--detector", "mad", "--data", str(data), "--results-dir", str(results), "--out", str(out)]
    )
    assert code == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    row = doc["detectors"]["mad"]
    assert row["points"] == 800 and row["points_per_s"] > 0 and row["files"] == 2
    assert set(ns.PROFILE_NAMES) <= set(row)
    assert "warmed up" in doc["timing"]
    for key in keys:
        cat, name = key.split("/")
        written = results / "mad" / cat / f"mad_{name}"
        header, *body = written.read_text().splitlines()
        assert header == "timestamp,value,anomaly_score,label"
        labels = [int(line.split(",")[3]) for line in body]
        assert sum(labels) == 41 and labels.index(1) in (240, 250)
    # Scoring the written folder again gives the same scores.
    code = nab.main(
        ["--score-results", str(results / "mad"), "--data", str(data), "--out", str(out)]
    )
    assert code == 0
    again = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["detectors"]["mad"]
    for p in ns.PROFILE_NAMES:
        assert again[p] == row[p]
    assert again["threshold_source"] == "optimized"


def test_cli_score_results_writes_no_json_unless_out_names_one(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    # README's check of the scorer (--score-results on Numenta's files) rewrote the committed
    # bench/results/nab.json, adding a "numenta" row among relia's detectors.
    data = tmp_path / "nab"
    make_corpus(data)
    results = tmp_path / "results"
    base = ["--data", str(data), "--results-dir", str(results)]
    assert nab.main(["--detector", "mad", *base, "--out", str(tmp_path / "run.json")]) == 0
    capsys.readouterr()
    tracked = tmp_path / "tracked.json"
    tracked.write_text('{"detectors": {}}\n')
    monkeypatch.setattr(nab, "DEFAULT_OUT", tracked)
    code = nab.main(["--score-results", str(results / "mad"), "--data", str(data)])
    assert code == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert tracked.read_text() == '{"detectors": {}}\n'
    assert any("not written" in line and "--out" in line for line in out)
    assert "mad" in json.loads(out[-1])["detectors"]  # the JSON is still the last line


def test_cli_missing_data_says_what_to_download(tmp_path: Path, capsys) -> None:
    code = nab.main(
        ["--detector", "mad", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o.json")]
    )
    err = capsys.readouterr().err
    assert code == 2
    assert "numenta/NAB" in err and "labels" in err and "--data" in err
    assert not (tmp_path / "o.json").exists()


def test_cli_unknown_detector_is_a_user_error(tmp_path: Path, capsys) -> None:
    code = nab.main(
        ["--detector", "no-such-thing", "--data", str(tmp_path), "--out", str(tmp_path / "o.json")]
    )
    assert code == 2
    assert "no-such-thing" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_parallel_jobs_match_serial(tmp_path: Path, capsys) -> None:
    data = tmp_path / "nab"
    make_corpus(data)
    rows = []
    for jobs in ("1", "2"):
        out = tmp_path / f"nab{jobs}.json"
        assert (
            nab.main(
                [
                    "--detector",
                    "mad",
                    "--data",
                    str(data),
                    "--jobs",
                    jobs,
                    "--results-dir",
                    str(tmp_path / f"r{jobs}"),
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        rows.append(
            json.loads(capsys.readouterr().out.strip().splitlines()[-1])["detectors"]["mad"]
        )
    for p in ns.PROFILE_NAMES:
        assert rows[0][p] == rows[1][p]


def test_cli_errors_are_one_line_before_any_run(tmp_path: Path, capsys) -> None:
    missing = tmp_path / "a folder with a rather long name that rich would wrap" / "nope"
    out = tmp_path / "nab.json"
    assert nab.main(["--detector", "mad", "--data", str(missing), "--out", str(out)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    data = tmp_path / "nab"
    make_corpus(data)
    results = tmp_path / "results"
    base = ["--detector", "mad", "--data", str(data), "--results-dir", str(results)]
    assert nab.main([*base, "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a folder" in err
    out.write_text("{not json")
    assert nab.main([*base, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot merge" in err
    assert out.read_text() == "{not json" and not results.exists()  # no detector ran
