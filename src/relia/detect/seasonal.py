"""A seasonal profile: per time-of-period EWMA mean and variance."""

from __future__ import annotations

import math

import numba
import numpy as np
from pydantic import Field

from relia.config import Duration
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

__all__ = ["SeasonalProfile", "SeasonalProfileConfig"]


class SeasonalProfileConfig(DetectorConfig):
    period: Duration = Field(86400.0, description="season length (default one day)")
    bins: int = Field(48, ge=1, le=1024, description="slots per season")
    alpha: float = Field(0.1, gt=0, lt=1, description="EWMA weight per slot")
    min_per_bin: int = Field(
        3, ge=1, le=MAX_COUNT, description="points in a slot before it is trusted"
    )
    clip: float = Field(4.0, gt=0)
    band_z: float = Field(3.0, gt=0)
    rel_floor: float = Field(1e-3, ge=0)


@numba.njit(cache=True)
def _seasonal_kernel(  # type: ignore[no-untyped-def]
    ts, values, mean, var, cnt, glob, q, period_ms, bins, alpha, min_per_bin, clip, band_z,
    rel_floor, score, expected, lower, upper, comp,
):  # fmt: skip
    # glob = [mean, var, n]: a global EWMA used until a slot has enough points.
    for i in range(values.shape[0]):
        x = values[i]
        b = int((ts[i] % period_ms) * bins // period_ms)
        if cnt[b] >= min_per_bin:
            m = mean[b]
            v = var[b]
            ready = True
        else:
            m = glob[0]
            v = glob[1]
            ready = glob[2] >= 2 * min_per_bin
        sd = scale_floor(math.sqrt(v), m, rel_floor, max(q[1], 1e-9))
        if ready:
            expected[i] = m
            lower[i] = m - band_z * sd
            upper[i] = m + band_z * sd
        if not np.isfinite(x):  # missing (NaN or ±inf)
            continue
        if ready:
            score[i] = z_score((x - m) / sd)
            if score[i] > 0.0:
                comp[i] = 0
        if abs(x) > X_MAX:
            # A broken reading: never learned (squared in a variance it would be infinite).
            continue
        learn_quantum(q, x)
        # Update the slot and the global model, winsorized so anomalies are not learned whole.
        glob_ready = glob[2] >= 2 * min_per_bin
        if cnt[b] == 0 and glob_ready:
            # A new slot starts from the ready global model and learns its first value
            # winsorized like any other: one broken reading must not become the slot's mean.
            sdg = scale_floor(math.sqrt(glob[1]), glob[0], rel_floor, max(q[1], 1e-9))
            r = min(max(x - glob[0], -clip * sdg), clip * sdg)
            mean[b] = glob[0] + r
            var[b] = glob[1]
        elif cnt[b] == 0 and glob[2] > 0:
            # Before the global model is ready its value is clipped only at WARM_REACH scales.
            sdg = scale_floor(math.sqrt(glob[1]), glob[0], rel_floor, max(q[1], 1e-9))
            mean[b] = glob[0] + min(max(x - glob[0], -WARM_REACH * sdg), WARM_REACH * sdg)
            var[b] = glob[1]
        elif cnt[b] == 0:
            mean[b] = x
            var[b] = glob[1]
        else:
            sdb = scale_floor(math.sqrt(var[b]), mean[b], rel_floor, max(q[1], 1e-9))
            r = x - mean[b]
            reach = clip if cnt[b] >= min_per_bin else WARM_REACH
            r = min(max(r, -reach * sdb), reach * sdb)
            a = max(alpha, 1.0 / (cnt[b] + 1.0))
            mean[b] += a * r
            var[b] = (1.0 - a) * (var[b] + a * r * r)
        cnt[b] += 1
        if glob[2] == 0:
            glob[0] = x
        else:
            sdg = scale_floor(math.sqrt(glob[1]), glob[0], rel_floor, max(q[1], 1e-9))
            r = x - glob[0]
            reach = clip if glob_ready else WARM_REACH
            r = min(max(r, -reach * sdg), reach * sdg)
            a = max(0.01, 1.0 / (glob[2] + 1.0))
            glob[0] += a * r
            glob[1] = (1.0 - a) * (glob[1] + a * r * r)
        glob[2] += 1


class SeasonalProfile(Detector):
    """What is normal at this time of day (or of another period): one EWMA mean and variance per
    slot of the period, found from the timestamp, so irregular sampling and gaps are fine."""

    name = "seasonal"
    config_class = SeasonalProfileConfig
    components = ("seasonal_deviation",)
    config: SeasonalProfileConfig

    def _initial_state(self) -> State:
        b = self.config.bins
        return {
            "mean": np.zeros(b),
            "var": np.zeros(b),
            "cnt": np.zeros(b, np.int64),
            "glob": np.zeros(3),
            "q": np.array([np.nan, 0.0]),
        }

    def _check_state(self, state: State) -> str | None:
        if not finite(state["mean"]) or not finite(state["var"], lo=0.0):
            return "a non-finite or negative value in the slots' mean or variance"
        if not finite(state["cnt"], lo=0.0):
            return "a negative slot count"
        g = state["glob"]
        if not finite(g[:1]) or not finite(g[1:], lo=0.0):
            return "a non-finite or negative value in glob"
        if not finite(state["q"], allow_nan=True):
            return "a non-finite value in q"
        return None

    def _run(self, ts: IntArray, values: FloatArray, state: State, out: State) -> None:
        c = self.config
        period_ms = max(1, int(round(c.period * 1000)))
        _seasonal_kernel(
            ts, values, state["mean"], state["var"], state["cnt"], state["glob"], state["q"],
            period_ms, c.bins, c.alpha, c.min_per_bin, c.clip, c.band_z, c.rel_floor,
            out["score"], out["expected"], out["lower"], out["upper"], out["component"],
        )  # fmt: skip
