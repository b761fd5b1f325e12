"""From scored points to findings: runs of anomalous points per series, carried across ticks.

A run of points at or above the threshold (runs separated by at most ``merge_gap`` normal points
merge) is one :class:`~relia.incidents.model.Finding`. A run still open at the end of a tick stays
open: points of the next tick extend it, and the finding is re-emitted with the same id (its id
depends on the start, not the end) so the store replaces it instead of adding a duplicate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from relia.detect.threshold import Thresholder
from relia.engine.executor import ScoredPoints
from relia.incidents.model import Finding, FindingKind, severity_for_score

__all__ = ["FindingTracker", "format_value", "summarize"]


def format_value(x: float) -> str:
    """A short human rendering of a number: ``97.2``, ``0.0123``, ``1.234e+09``."""
    if math.isnan(x):
        return "NaN"
    a = abs(x)
    if a == 0:
        return "0"
    if a < 1:
        return f"{x:.3g}"
    if a < 100_000:
        return f"{x:.1f}"
    return f"{x:.4g}"


#: What a component says in a summary, where "above/below expected" does not say it already.
_COMPONENT_TEXT = {
    "new_range": "past the range seen so far",
    "run": "after a run of unusual values",
}


def summarize(key: str, evidence: dict[str, Any]) -> str:
    """One line: ``name{labels} 97.2 above expected 12.0 (band 5.1–18.9)``, and why where the
    direction does not say it (``, past the range seen so far``)."""
    raw = evidence.get("value")
    value = math.nan if raw is None else float(raw)  # evidence is JSON: a NaN value is null
    expected = evidence.get("expected")
    lower, upper = evidence.get("lower"), evidence.get("upper")
    if expected is None:
        return f"{key} {format_value(value)} anomalous (score {evidence.get('score', 0):.2f})"
    if math.isnan(value):
        return f"{key} missing value, expected {format_value(float(expected))}"
    direction = "above" if value >= float(expected) else "below"
    text = f"{key} {format_value(value)} {direction} expected {format_value(float(expected))}"
    if lower is not None and upper is not None:
        text += f" (band {format_value(float(lower))}–{format_value(float(upper))})"
    why = _COMPONENT_TEXT.get(str(evidence.get("component")))
    return f"{text}, {why}" if why else text


def _num(x: float) -> float | None:
    # Evidence is JSON: NaN is not a JSON number.
    return None if math.isnan(x) else float(x)


@dataclass
class _Open:
    """A run that may still grow: its finding and how many normal points followed it."""

    finding: Finding
    gap: int


class FindingTracker:
    """Turns each tick's :class:`ScoredPoints` into new or extended findings.

    ``key_of(series_id)`` gives the series' PromQL-style text; ``components`` names the detector
    parts indexed by ``ScoredPoints.component``.
    """

    def __init__(
        self,
        detector: str,
        key_of: Callable[[int], str],
        components: tuple[str, ...],
        *,
        threshold: float = 0.5,
        merge_gap: int = 2,
    ) -> None:
        self.detector = detector
        self.key_of = key_of
        self.components = components
        self.threshold = threshold
        self.merge_gap = merge_gap
        self._thresholder = Thresholder(threshold, merge_gap)
        self._open: dict[int, _Open] = {}

    @property
    def open_series(self) -> list[int]:
        return list(self._open)

    def forget(self, series_ids: Collection[int]) -> None:
        """Drop the open runs of these series (the engine forgot them)."""
        for sid in series_ids:
            self._open.pop(sid, None)

    def seed(
        self,
        findings: list[Finding],
        last_ts: dict[int, int],
        gaps: dict[int, int] | None = None,
    ) -> int:
        """Re-open findings that were still running when the engine stopped, so a restart
        extends them rather than starting new ones: those whose end is the series' last stored
        sample, and with ``gaps`` (series id -> normal samples stored after its finding's end,
        at most ``merge_gap``) also those followed by that many normal points."""
        n = 0
        for f in findings:
            sid = f.series_id
            if sid is None or f.detector != self.detector or sid in self._open:
                continue
            if last_ts.get(sid) == f.end:
                gap = 0
            elif gaps is not None and gaps.get(sid, self.merge_gap + 1) <= self.merge_gap:
                gap = gaps[sid]
            else:
                continue
            self._open[sid] = _Open(f, gap)
            n += 1
        return n

    def update(self, points: ScoredPoints) -> list[Finding]:
        """Findings that started or grew in these points (each at most once)."""
        if len(points) == 0:
            return []
        flags = self._thresholder.flags(points.score)
        sids, counts = np.unique(points.series_id, return_counts=True)
        hot = set(np.unique(points.series_id[flags]).tolist())
        out: list[Finding] = []
        # Series with an open run and no anomaly this tick: only the gap grows (no per-point work).
        for sid, n in zip(sids.tolist(), counts.tolist(), strict=True):
            if sid in hot:
                continue
            run = self._open.get(sid)
            if run is not None:
                run.gap += n
                if run.gap > self.merge_gap:
                    del self._open[sid]
        if not hot:
            return out
        # Only the series with anomalous points are walked; points arrive grouped by series.
        order = np.argsort(points.series_id, kind="stable")
        sorted_sid = points.series_id[order]
        for sid in sorted(hot):
            lo = int(np.searchsorted(sorted_sid, sid, "left"))
            hi = int(np.searchsorted(sorted_sid, sid, "right"))
            out.extend(self._series(sid, points.take(order[lo:hi])))
        return out

    def _series(self, sid: int, p: ScoredPoints) -> list[Finding]:
        windows = self._thresholder.windows(p.ts, p.score)
        emitted: list[Finding] = []
        run = self._open.pop(sid, None)
        for i, w in enumerate(windows):
            peak = w.peak_index
            span = w.end_index - w.start_index + 1
            if i == 0 and run is not None and run.gap + w.start_index <= self.merge_gap:
                f = run.finding
                # The points since the run's last anomaly belong to it too.
                extra = run.gap + w.start_index + span
                if w.peak_score > f.score:
                    f = self._make(sid, f.start, w.end_ts, extra, p, peak, prior=f)
                else:
                    n = int(f.evidence.get("n_points", 0)) + extra
                    f = f.model_copy(
                        update={"end": w.end_ts, "evidence": {**f.evidence, "n_points": n}}
                    )
            else:
                f = self._make(sid, w.start_ts, w.end_ts, span, p, peak)
            run = _Open(f, 0)
            emitted.append(f)
            # Earlier windows of this tick are closed: only the last can continue.
        if run is not None and windows:
            run = replace(run, gap=len(p) - 1 - windows[-1].end_index)
        if run is not None and run.gap <= self.merge_gap:
            self._open[sid] = run
        return emitted

    def _make(
        self,
        sid: int,
        start: int,
        end: int,
        n_points: int,
        p: ScoredPoints,
        peak: int,
        prior: Finding | None = None,
    ) -> Finding:
        key = self.key_of(sid)
        score = float(min(1.0, max(0.0, p.score[peak])))
        comp = int(p.component[peak])
        if prior is not None:
            n_points += int(prior.evidence.get("n_points", 0))
        evidence: dict[str, Any] = {
            "value": _num(float(p.value[peak])),
            "expected": _num(float(p.expected[peak])),
            "lower": _num(float(p.lower[peak])),
            "upper": _num(float(p.upper[peak])),
            "component": self.components[comp] if 0 <= comp < len(self.components) else None,
            "peak_ts": int(p.ts[peak]),
            "score": score,
            "threshold": self.threshold,
            "n_points": n_points,
        }
        return Finding(
            id=Finding.make_id(FindingKind.METRIC, key, start, self.detector),
            kind=FindingKind.METRIC,
            key=key,
            series_id=sid,
            start=start,
            end=end,
            score=score,
            severity=severity_for_score(score),
            detector=self.detector,
            summary=summarize(key, evidence),
            evidence=evidence,
        )
