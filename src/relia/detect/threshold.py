"""From scores to yes/no: a threshold, and the anomalous windows it marks.

Detectors only score. Whether a score wakes someone is decided here, the same way in batch and
streaming. Detectors keep anomalies from being learned as the new normal by themselves (median
statistics, winsorized updates), so a thresholder never feeds back into the model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from relia.errors import DetectorError

__all__ = ["AnomalyWindow", "Thresholder"]


@dataclass(frozen=True)
class AnomalyWindow:
    """A run of anomalous points: first and last index and timestamp, and the peak score."""

    start_index: int
    end_index: int
    start_ts: int
    end_ts: int
    peak_score: float
    peak_index: int


class Thresholder:
    """Points at or above ``threshold`` are anomalous; runs closer than ``merge_gap`` points merge
    into one window."""

    def __init__(self, threshold: float = 0.5, merge_gap: int = 0) -> None:
        if not 0.0 < threshold <= 1.0:
            raise DetectorError(f"threshold must be in (0, 1], got {threshold}")
        if merge_gap < 0:
            raise DetectorError("merge_gap must be >= 0")
        self.threshold = threshold
        self.merge_gap = merge_gap

    def flags(self, scores: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        s = np.asarray(scores, dtype=np.float64)
        return np.asarray(s >= self.threshold)

    def is_anomaly(self, score: float) -> bool:
        return score >= self.threshold

    def windows(self, ts: npt.ArrayLike, scores: npt.ArrayLike) -> list[AnomalyWindow]:
        """Anomalous windows, found without a per-point Python loop."""
        t = np.asarray(ts, dtype=np.int64)
        s = np.asarray(scores, dtype=np.float64)
        if t.shape != s.shape:
            raise DetectorError(f"{t.size} timestamps for {s.size} scores")
        idx = np.flatnonzero(self.flags(s))
        if len(idx) == 0:
            return []
        breaks = np.flatnonzero(np.diff(idx) > self.merge_gap + 1)
        starts = np.concatenate(([idx[0]], idx[breaks + 1]))
        ends = np.concatenate((idx[breaks], [idx[-1]]))
        out = []
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
            # A missing (NaN) score merged into a window is not its peak: argmax would pick it.
            peak = a + int(np.nanargmax(s[a : b + 1]))
            out.append(AnomalyWindow(a, b, int(t[a]), int(t[b]), float(s[peak]), peak))
        return out
