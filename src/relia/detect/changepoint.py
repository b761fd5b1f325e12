"""Change detection: an EWMA model with a two-sided CUSUM on its standardized residuals."""

from __future__ import annotations

import math

import numba
import numpy as np
from pydantic import Field

from relia.detect._kernels import WARM_REACH, X_MAX, learn_quantum, scale_floor, z_score
from relia.detect.base import (
    MAX_COUNT,
    Detector,
    DetectorConfig,
    FloatArray,
    IntArray,
    State,
    finite,
)

__all__ = ["EwmaCusum", "EwmaCusumConfig"]


class EwmaCusumConfig(DetectorConfig):
    alpha: float = Field(0.02, gt=0, lt=1, description="EWMA weight of a new point")
    k: float = Field(0.5, ge=0, description="CUSUM slack, in standard deviations")
    h: float = Field(8.0, gt=0, description="CUSUM decision level, in standard deviations")
    clip: float = Field(4.0, gt=0, description="residuals are clipped here before learning")
    min_samples: int = Field(16, ge=2, le=MAX_COUNT)
    band_z: float = Field(3.0, gt=0)
    rel_floor: float = Field(1e-3, ge=0)


@numba.njit(cache=True)
def _cusum_kernel(  # type: ignore[no-untyped-def]
    values, st, q, alpha, k, h, clip, min_samples, band_z, rel_floor,
    score, expected, lower, upper, comp,
):  # fmt: skip
    # st = [mean, var, n, s_pos, s_neg]
    mean, var, n, s_pos, s_neg = st[0], st[1], st[2], st[3], st[4]
    sd = 1.0  # set with the band once the model is ready
    for i in range(values.shape[0]):
        x = values[i]
        if n >= min_samples:
            sd = scale_floor(math.sqrt(var), mean, rel_floor, max(q[1], 1e-9))
            expected[i] = mean
            lower[i] = mean - band_z * sd
            upper[i] = mean + band_z * sd
        if not np.isfinite(x):  # missing (NaN or ±inf)
            continue
        if abs(x) > X_MAX:
            # A broken reading: scored once the model is ready, never learned (in warm-up, where
            # nothing winsorizes, it would make the variance infinite and the mean NaN).
            if n >= min_samples:
                score[i] = z_score((x - mean) / sd)
                comp[i] = 0
            continue
        if n < 1:
            learn_quantum(q, x)
            mean = x
            var = 0.0
            n += 1
            continue
        sd = scale_floor(math.sqrt(var), mean, rel_floor, max(q[1], 1e-9))
        z = (x - mean) / sd
        learn_quantum(q, x)
        if n >= min_samples:
            # The sums take the clipped residual: one spike alone cannot reach h and be taken
            # for a new level.
            zc = min(max(z, -clip), clip)
            s_pos = max(0.0, s_pos + zc - k)
            s_neg = max(0.0, s_neg - zc - k)
            spike = z_score(z)
            s = max(s_pos, s_neg)
            shift = s / (s + h)
            if spike >= shift:
                score[i] = spike
                comp[i] = 0 if spike > 0.0 else -1
            else:
                score[i] = shift
                comp[i] = 1
            if s > h:
                # A level shift: adopt the new level and restart the sums, as CUSUM does
                # after an alarm, so one shift raises one alarm, not an endless run.
                mean = x
                s_pos = 0.0
                s_neg = 0.0
                n += 1
                continue
        # Winsorized update: an outlier moves the model by at most `clip` deviations.
        r = x - mean
        if n >= min_samples:
            r = min(max(z, -clip), clip) * sd
        else:
            # The scale with this point's step in it: a second point is never clipped (its step
            # is the only one), a later one at WARM_REACH of the smallest step or spread so far.
            reach = WARM_REACH * scale_floor(math.sqrt(var), mean, rel_floor, max(q[1], 1e-9))
            r = min(max(r, -reach), reach)
        a = max(alpha, 1.0 / (n + 1.0))
        mean += a * r
        var = (1.0 - a) * (var + a * r * r)
        n += 1
    st[0], st[1], st[2], st[3], st[4] = mean, var, n, s_pos, s_neg


class EwmaCusum(Detector):
    """Exponentially weighted mean and variance; scores point spikes by their z-score and
    sustained shifts by a two-sided CUSUM of the standardized residuals."""

    name = "cusum"
    config_class = EwmaCusumConfig
    components = ("spike", "level_shift")
    config: EwmaCusumConfig

    def _initial_state(self) -> State:
        return {"st": np.zeros(5), "q": np.array([np.nan, 0.0])}

    def _check_state(self, state: State) -> str | None:
        st = state["st"]
        # [mean, var, n, s_pos, s_neg]: the variance, count and sums are never negative.
        if not finite(st[:1]) or not finite(st[1:], lo=0.0):
            return "a non-finite or negative value in st"
        if not finite(state["q"], allow_nan=True):
            return "a non-finite value in q"
        return None

    def _run(self, ts: IntArray, values: FloatArray, state: State, out: State) -> None:
        c = self.config
        _cusum_kernel(
            values, state["st"], state["q"], c.alpha, c.k, c.h, c.clip, c.min_samples, c.band_z,
            c.rel_floor, out["score"], out["expected"], out["lower"], out["upper"],
            out["component"],
        )  # fmt: skip
