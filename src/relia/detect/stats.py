"""Robust statistics: a rolling median / MAD z-score."""

from __future__ import annotations

import numba
import numpy as np
from pydantic import Field

from relia.detect._kernels import X_MAX, learn_quantum, scale_floor, z_score
from relia.detect.base import (
    MAX_COUNT,
    Detector,
    DetectorConfig,
    FloatArray,
    IntArray,
    State,
    finite,
)

__all__ = ["RollingMAD", "RollingMADConfig"]


class RollingMADConfig(DetectorConfig):
    window: int = Field(128, ge=4, le=4096, description="points in the rolling window")
    min_samples: int = Field(
        16, ge=2, le=MAX_COUNT, description="points seen before any score is given"
    )
    band_z: float = Field(3.0, gt=0, description="half-width of the expected band, in MADs")
    rel_floor: float = Field(1e-3, ge=0, description="scale floor relative to the level")


@numba.njit(cache=True)
def _mad_kernel(  # type: ignore[no-untyped-def]
    values, buf, meta, q, window, min_samples, band_z, rel_floor,
    score, expected, lower, upper, comp,
):  # fmt: skip
    # meta[0] = write position, meta[1] = count in buffer
    pos = meta[0]
    count = meta[1]
    for i in range(values.shape[0]):
        x = values[i]
        if count >= min_samples:
            med = np.median(buf[:count])
            mad = np.median(np.abs(buf[:count] - med)) * 1.4826
            scale = scale_floor(mad, med, rel_floor, max(q[1], 1e-9))
            expected[i] = med
            lower[i] = med - band_z * scale
            upper[i] = med + band_z * scale
            if np.isfinite(x):  # NaN and ±inf are missing points
                score[i] = z_score((x - med) / scale)
                if score[i] > 0.0:
                    comp[i] = 0
        # A broken reading is scored, never learned: two near DBL_MAX in the window made the
        # median's midpoint (a + b) / 2 infinite and every score NaN.
        if np.isfinite(x) and abs(x) <= X_MAX:
            learn_quantum(q, x)
            buf[pos] = x
            pos = (pos + 1) % window
            if count < window:
                count += 1
    meta[0] = pos
    meta[1] = count


class RollingMAD(Detector):
    """How many robust standard deviations (1.4826 × MAD) a point lies from the rolling median.

    Robust to the outliers it scores (a spike moves neither median nor MAD), blind to slow
    drift and to seasonality.
    """

    name = "mad"
    config_class = RollingMADConfig
    components = ("median_deviation",)
    config: RollingMADConfig

    def _initial_state(self) -> State:
        return {
            "buf": np.zeros(self.config.window),
            "meta": np.zeros(2, np.int64),
            "q": np.array([np.nan, 0.0]),
        }

    def _check_state(self, state: State) -> str | None:
        w = self.config.window
        pos, count = (int(v) for v in state["meta"])
        if not 0 <= pos < w:
            return f"ring position {pos} outside the window of {w}"
        if not 0 <= count <= w:
            return f"ring count {count} outside 0..{w}"
        if not finite(state["buf"]) or not finite(state["q"], allow_nan=True):
            return "a non-finite value in the ring"
        return None

    def _run(self, ts: IntArray, values: FloatArray, state: State, out: State) -> None:
        c = self.config
        _mad_kernel(
            values, state["buf"], state["meta"], state["q"], c.window, c.min_samples, c.band_z,
            c.rel_floor, out["score"], out["expected"], out["lower"], out["upper"],
            out["component"],
        )  # fmt: skip
