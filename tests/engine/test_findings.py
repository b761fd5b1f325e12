from __future__ import annotations

import math

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from relia.engine.executor import ScoredPoints
from relia.engine.findings import FindingTracker, format_value, summarize
from relia.incidents.model import Finding, FindingKind, Severity

KEYS = {1: 'host_cpu_percent{host="x"}', 2: 'mem{host="x"}'}


def _pts(sid: int, t0: int, scores: list[float], value: float = 97.2) -> ScoredPoints:
    n = len(scores)
    ts = (t0 + np.arange(n)) * 1000
    s = np.asarray(scores, dtype=np.float64)
    return ScoredPoints(
        np.full(n, sid, np.int64),
        ts.astype(np.int64),
        np.full(n, value),
        s,
        np.full(n, 12.0),
        np.full(n, 5.1),
        np.full(n, 18.9),
        np.where(s >= 0.5, 1, -1).astype(np.int8),
    )


def _tracker(merge_gap: int = 2) -> FindingTracker:
    return FindingTracker(
        "default", KEYS.__getitem__, ("a", "b"), threshold=0.5, merge_gap=merge_gap
    )


def test_one_run_is_one_finding_with_evidence() -> None:
    tr = _tracker()
    out = tr.update(_pts(1, 0, [0.1, 0.6, 0.95, 0.7, 0.1, 0.1, 0.1]))
    assert len(out) == 1
    f = out[0]
    assert f.kind is FindingKind.METRIC and f.series_id == 1
    assert (f.start, f.end) == (1000, 3000)
    assert f.score == 0.95 and f.severity is Severity.CRITICAL
    assert f.id == Finding.make_id(FindingKind.METRIC, KEYS[1], 1000, "default")
    assert f.summary == 'host_cpu_percent{host="x"} 97.2 above expected 12.0 (band 5.1–18.9)'
    assert f.evidence["component"] == "b" and f.evidence["peak_ts"] == 2000
    assert f.evidence["n_points"] == 3
    assert tr.open_series == []  # three normal points after it: closed


def test_gaps_up_to_merge_gap_merge() -> None:
    out = _tracker(merge_gap=2).update(_pts(1, 0, [0.6, 0.1, 0.1, 0.6, 0.1, 0.1, 0.1, 0.6]))
    assert [(f.start, f.end) for f in out] == [(0, 3000), (7000, 7000)]


def test_open_run_continues_into_next_tick_with_same_id() -> None:
    tr = _tracker()
    a = tr.update(_pts(1, 0, [0.1, 0.6, 0.7]))
    assert tr.open_series == [1]
    b = tr.update(_pts(1, 3, [0.1, 0.99, 0.2]))
    assert len(a) == len(b) == 1
    assert a[0].id == b[0].id
    assert (b[0].start, b[0].end) == (1000, 4000)
    assert b[0].score == 0.99 and b[0].severity is Severity.CRITICAL
    assert b[0].evidence["n_points"] == 4
    # a lower peak extends the end but keeps the peak evidence
    c = tr.update(_pts(1, 6, [0.55]))
    assert c[0].id == a[0].id and c[0].end == 6000 and c[0].score == 0.99
    assert c[0].evidence["n_points"] == 6


def test_open_run_closes_after_enough_normal_points_across_ticks() -> None:
    tr = _tracker(merge_gap=2)
    first = tr.update(_pts(1, 0, [0.8]))
    tr.update(_pts(1, 1, [0.1, 0.1]))
    assert tr.open_series == [1]
    tr.update(_pts(1, 3, [0.1]))
    assert tr.open_series == []
    again = tr.update(_pts(1, 4, [0.8]))
    assert again[0].id != first[0].id


def test_series_are_independent() -> None:
    tr = _tracker()
    out = tr.update(ScoredPoints.concat([_pts(2, 0, [0.1, 0.6]), _pts(1, 0, [0.9, 0.1])]))
    assert sorted(f.series_id for f in out if f.series_id is not None) == [1, 2]
    assert tr.open_series and set(tr.open_series) == {1, 2}


def test_seed_reopens_a_running_finding() -> None:
    tr = _tracker()
    f = tr.update(_pts(1, 0, [0.7, 0.7]))[0]
    fresh = _tracker()
    assert fresh.seed([f], {1: f.end}) == 1
    g = fresh.update(_pts(1, 2, [0.7]))[0]
    assert g.id == f.id and g.end == 2000
    other = _tracker()
    assert other.seed([f], {1: f.end + 5000}) == 0


def test_summary_without_expected_and_below() -> None:
    assert summarize("k", {"value": 3.0, "expected": None, "score": 0.8}) == (
        "k 3.0 anomalous (score 0.80)"
    )
    assert summarize("k", {"value": 1.0, "expected": 12.0, "lower": None, "upper": None}) == (
        "k 1.0 below expected 12.0"
    )
    assert "missing" in summarize("k", {"value": math.nan, "expected": 1.0})


@given(st.floats(allow_nan=True, allow_infinity=True))
def test_format_value_is_short_and_total(x: float) -> None:
    s = format_value(x)
    assert isinstance(s, str) and 0 < len(s) <= 12


@given(st.lists(st.floats(0, 1), min_size=1, max_size=60), st.integers(1, 6), st.integers(0, 3))
def test_chunking_does_not_change_findings(scores: list[float], n_chunks: int, gap: int) -> None:
    whole = _tracker(gap)
    final_whole: dict[str, Finding] = {f.id: f for f in whole.update(_pts(1, 0, scores))}
    chunked = _tracker(gap)
    final: dict[str, Finding] = {}
    bounds = np.array_split(np.arange(len(scores)), n_chunks)
    for idx in bounds:
        if len(idx):
            for f in chunked.update(_pts(1, int(idx[0]), [scores[i] for i in idx])):
                final[f.id] = f

    def seen(f: Finding) -> tuple[object, ...]:
        return (f.start, f.end, f.score, f.evidence["n_points"], f.evidence["peak_ts"])

    assert {k: seen(f) for k, f in final.items()} == {k: seen(f) for k, f in final_whole.items()}


def test_a_later_point_as_high_as_the_peak_does_not_move_the_peak() -> None:
    # Scores saturate at 1.0: the evidence shows when the run first reached its peak, whether
    # the later points arrived in the same tick or in the next one.
    tr = _tracker()
    (a,) = tr.update(_pts(1, 0, [0.1, 1.0, 0.7], value=97.2))
    (b,) = tr.update(_pts(1, 3, [1.0, 0.6], value=99.9))
    assert b.id == a.id and b.end == 4000
    assert b.evidence["peak_ts"] == 1000 and b.evidence["value"] == 97.2
    assert "97.2 above" in b.summary


def test_format_value_switches_to_exponent_notation_at_one_hundred_thousand() -> None:
    assert format_value(99_999.0) == "99999.0"
    assert format_value(100_000.0) == "1e+05"
    assert format_value(-100_000.0) == "-1e+05"
    assert format_value(1.0) == "1.0" and format_value(0.5) == "0.5"


def test_summary_of_a_value_equal_to_the_expected_one_and_of_a_half_band() -> None:
    assert summarize("k", {"value": 12.0, "expected": 12.0}) == "k 12.0 above expected 12.0"
    # A band with one side missing (NaN is stored as null) is left out, not half printed.
    half = {"value": 30.0, "expected": 12.0, "lower": 5.1, "upper": None}
    assert summarize("k", half) == "k 30.0 above expected 12.0"
    assert summarize("k", {**half, "lower": None, "upper": 18.9}) == "k 30.0 above expected 12.0"


def test_summary_says_when_the_value_left_the_range_or_ended_a_run() -> None:
    # A reader of a notification should not need the component's name to know why it fired.
    ev = {"value": 30.0, "expected": 12.0, "lower": 5.1, "upper": 18.9}
    assert summarize("k", {**ev, "component": "new_range"}) == (
        "k 30.0 above expected 12.0 (band 5.1–18.9), past the range seen so far"
    )
    assert summarize("k", {**ev, "component": "run"}) == (
        "k 30.0 above expected 12.0 (band 5.1–18.9), after a run of unusual values"
    )
    # Components that the direction already explains add nothing.
    for component in ("above", "below", "median_deviation", None):
        assert summarize("k", {**ev, "component": component}).endswith("(band 5.1–18.9)")


def test_a_seeded_finding_takes_up_to_merge_gap_normal_points_before_it_grows_again() -> None:
    f = _tracker().update(_pts(1, 0, [0.7, 0.7]))[0]
    fresh = _tracker(merge_gap=2)
    fresh.seed([f], {1: f.end})
    (g,) = fresh.update(_pts(1, 2, [0.1, 0.1, 0.8]))
    assert g.id == f.id and (g.start, g.end) == (0, 4000)
    assert g.evidence["n_points"] == 5


def test_seed_leaves_the_findings_of_another_detector_closed() -> None:
    f = _tracker().update(_pts(1, 0, [0.7, 0.7]))[0]
    other = FindingTracker("mad", KEYS.__getitem__, ("a", "b"), threshold=0.5, merge_gap=2)
    assert other.seed([f], {1: f.end}) == 0
    (g,) = other.update(_pts(1, 2, [0.7]))
    assert g.start == 2000 and g.detector == "mad"


def test_a_missing_value_that_scores_high_is_a_finding_with_null_evidence() -> None:
    # A NaN sample (the target stopped answering) is scored like any other; evidence is JSON,
    # where NaN is null, and the summary says what is missing.
    p = _pts(1, 0, [0.9], value=math.nan)
    p.component[:] = -1  # no component to blame
    (f,) = _tracker().update(p)
    assert f.evidence["value"] is None and f.evidence["component"] is None
    assert f.summary == 'host_cpu_percent{host="x"} missing value, expected 12.0'
    q = _pts(2, 0, [0.9], value=math.nan)
    q.expected[:] = math.nan
    (g,) = _tracker().update(q)
    assert g.evidence["expected"] is None
    assert g.summary == 'mem{host="x"} NaN anomalous (score 0.90)'


def test_a_score_above_one_is_reported_as_one() -> None:
    (f,) = _tracker().update(_pts(1, 0, [1.7]))
    assert f.score == 1.0 and f.evidence["score"] == 1.0 and f.severity is Severity.CRITICAL
