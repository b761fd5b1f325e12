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
