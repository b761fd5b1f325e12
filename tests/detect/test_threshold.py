from __future__ import annotations

import numpy as np
import pytest

from relia.detect import Thresholder
from relia.errors import DetectorError


def test_windows_group_runs_and_report_peaks() -> None:
    scores = np.array([0, 0.6, 0.9, 0, 0, 0.7, 0, 0.55, 0.2])
    ts = np.arange(len(scores)) * 10
    th = Thresholder(0.5)
    wins = th.windows(ts, scores)
    assert [(w.start_index, w.end_index) for w in wins] == [(1, 2), (5, 5), (7, 7)]
    assert wins[0].peak_score == 0.9 and wins[0].peak_index == 2 and wins[0].start_ts == 10
    merged = Thresholder(0.5, merge_gap=1).windows(ts, scores)
    assert [(w.start_index, w.end_index) for w in merged] == [(1, 2), (5, 7)]
    assert th.windows(ts, np.zeros(9)) == []
    assert th.flags(scores).sum() == 4
    assert th.is_anomaly(0.5) and not th.is_anomaly(0.49)


@pytest.mark.parametrize("bad", [0.0, -1.0, 1.5])
def test_threshold_range(bad: float) -> None:
    with pytest.raises(DetectorError):
        Thresholder(bad)


def test_a_score_exactly_at_the_threshold_is_anomalous() -> None:
    th = Thresholder(0.5)
    np.testing.assert_array_equal(th.flags([0.5, 0.4999, 1.0, 0.0]), [True, False, True, False])
    wins = th.windows([0, 10, 20], [0.0, 0.5, 0.0])
    assert [(w.start_index, w.end_index, w.peak_score) for w in wins] == [(1, 1, 0.5)]


def test_a_threshold_of_one_is_allowed_and_flags_only_certain_points() -> None:
    th = Thresholder(1.0)
    np.testing.assert_array_equal(th.flags([1.0, 0.999]), [True, False])
    assert th.is_anomaly(1.0)


def test_negative_merge_gap_is_refused() -> None:
    with pytest.raises(DetectorError, match="merge_gap"):
        Thresholder(0.5, merge_gap=-1)


def test_windows_report_first_and_last_timestamps() -> None:
    ts = np.array([100, 160, 220, 280, 340])
    wins = Thresholder(0.5).windows(ts, [0.0, 0.8, 0.9, 0.6, 0.1])
    assert [(w.start_ts, w.end_ts, w.peak_index) for w in wins] == [(160, 280, 2)]


def test_a_missing_score_inside_a_merged_window_is_not_its_peak() -> None:
    wins = Thresholder(0.5, merge_gap=1).windows([0, 10, 20], [0.9, np.nan, 0.8])
    assert [(w.start_index, w.end_index, w.peak_index, w.peak_score) for w in wins] == [
        (0, 2, 0, 0.9)
    ]


def test_timestamps_and_scores_of_different_lengths_are_refused() -> None:
    with pytest.raises(DetectorError, match="3 timestamps for 4 scores"):
        Thresholder(0.5).windows([0, 10, 20], [0.0, 0.0, 0.0, 0.9])
