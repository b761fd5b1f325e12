"""The detector framework: a config/model pair with batch and streaming paths that agree.

To write a detector, subclass :class:`DetectorConfig` for its hyperparameters and
:class:`Detector` for the model, link them with ``config_class``, and implement two methods:

* ``_initial_state()`` returns the state as a dict of small NumPy arrays (bounded in size: it is
  checkpointed per series);
* ``_run(ts, values, state, out)`` walks the points in order, writes one score (and the expected
  value and band) per point into ``out``, and updates ``state`` in place. It must be causal: the
  output at point *i* may depend only on points ``0..i``.

Because batch scoring and streaming ``update`` both go through the same ``_run`` (streaming calls
it with one point), they agree exactly; the conformance suite checks it. Put the loop of ``_run``
in a Numba kernel: it is the hot path.

Scores are in [0, 1], higher is more anomalous. Deciding yes/no is the thresholder's job
(:mod:`relia.detect.threshold`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Self

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, ValidationError

from relia.errors import DataError, DetectorError

__all__ = [
    "CheckpointConfigError",
    "Detail",
    "Detector",
    "DetectorConfig",
    "State",
    "component_name",
    "config_difference",
]


class CheckpointConfigError(DetectorError):
    """A checkpoint made with another config; ``keys``: the parameters whose values differ
    (its message names them, with both values)."""

    def __init__(self, message: str, keys: tuple[str, ...]) -> None:
        super().__init__(message)
        self.keys = keys


def config_difference(stored: object, current: dict[str, Any]) -> tuple[tuple[str, ...], str]:
    """The parameters in which a checkpoint's ``stored`` config differs from ``current``, and
    a short text naming them: ``long 0.001 in the checkpoint, 0.003 now``."""
    if not isinstance(stored, dict):
        return (), "the checkpoint holds no config"
    keys = tuple(
        sorted(k for k in stored.keys() | current.keys() if stored.get(k) != current.get(k))
    )
    shown = [f"{k} {stored.get(k)!r} in the checkpoint, {current.get(k)!r} now" for k in keys[:5]]
    more = f"; {len(keys) - 5} more" if len(keys) > 5 else ""
    return keys, "; ".join(shown) + more


FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
State = dict[str, np.ndarray[Any, Any]]

#: Spacing used for points given without timestamps (one second), in ms.
DEFAULT_STEP_MS = 1000
#: Upper bound of a detector's count parameters (``min_samples``, ``persist``, ...): the kernels
#: take them as int64 or float64, so one past int64 was a Numba typing error at the first
#: score; 2**31 - 1 points is 68 years of 1-second samples, "never" in practice.
MAX_COUNT = 2**31 - 1


def component_name(components: Sequence[str], index: int) -> str:
    """The name of the part of a detector that fired (``Detail.component``), "–" for none."""
    return components[index] if 0 <= index < len(components) else "–"


class DetectorConfig(BaseModel):
    """Hyperparameters of a detector, stored under their ``__init__`` names.

    Round-trips through ``model_dump()`` / ``model_validate()`` (so through JSON and YAML).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Seed of any randomness inside the detector; the same seed gives the same output.
    seed: int = 0


@dataclass(frozen=True)
class Detail:
    """Per-point output of a detector.

    ``score`` in [0, 1]; ``expected`` is what the model predicted for the point, ``lower`` and
    ``upper`` the band of normal values around it (NaN while the model is warming up);
    ``component`` says which part of the detector fired (an index into the detector's
    ``components``, -1 when nothing did).
    """

    score: FloatArray
    expected: FloatArray
    lower: FloatArray
    upper: FloatArray
    component: npt.NDArray[np.int8]

    def __len__(self) -> int:
        return len(self.score)


def _new_out(n: int) -> dict[str, np.ndarray[Any, Any]]:
    nan = np.full(n, np.nan)
    return {
        "score": np.zeros(n),
        "expected": nan,
        "lower": nan.copy(),
        "upper": nan.copy(),
        "component": np.full(n, -1, np.int8),
    }


class Detector(ABC):
    """An online anomaly detector for one series.

    ``fit`` primes the model with history; ``score`` scores new points, continuing the stream
    (each point is scored with what came before it, then learned); ``update`` does the same for
    one point. All three share one code path.

    Points are taken in the order given. Real clocks sometimes step back, so timestamps need not
    be monotonic; detectors use them only to place a point (its time of day, its gap), and callers
    that must drop late points (the engine) do so before scoring.
    """

    #: Registry name of the detector family.
    name: ClassVar[str] = "detector"
    #: The config class of this detector.
    config_class: ClassVar[type[DetectorConfig]] = DetectorConfig
    #: Names of the parts that can fire, indexed by ``Detail.component``.
    components: ClassVar[tuple[str, ...]] = ("score",)

    def __init__(self, config: DetectorConfig | None = None, **params: Any) -> None:
        if config is not None and params:
            raise DetectorError("give either a config object or keyword parameters, not both")
        if config is None:
            try:
                config = self.config_class(**params)
            except ValidationError as exc:
                first = exc.errors()[0]
                field = ".".join(str(p) for p in first["loc"])
                raise DetectorError(
                    f"invalid parameter {field!r} for detector {self.name!r}: {first['msg']}"
                ) from None
        elif not isinstance(config, self.config_class):
            raise DetectorError(
                f"detector {self.name!r} takes a {self.config_class.__name__}, "
                f"not {type(config).__name__}"
            )
        self.config: DetectorConfig = config
        self.reset()

    # -- to implement ----------------------------------------------------------------------

    @abstractmethod
    def _initial_state(self) -> State:
        """The state of a model that has seen nothing."""

    @abstractmethod
    def _run(self, ts: IntArray, values: FloatArray, state: State, out: State) -> None:
        """Score ``values`` in order into ``out`` and update ``state`` in place (causally)."""

    def _check_state(self, state: State) -> str | None:
        """What is wrong with a loaded state (a problem in a few words), ``None`` if nothing.

        Called by :meth:`load_state_dict` after the keys, shapes and dtypes are checked. The
        kernels run without bounds checks, and some of them index with state values: every
        detector whose state holds such values (a ring position, a count, a number that becomes
        a histogram bin) checks here that they are in range, so a corrupt checkpoint is refused
        instead of reading or writing out of bounds.
        """
        return None

    # -- public API ------------------------------------------------------------------------

    def reset(self) -> None:
        """Forget everything learned."""
        self._state: State = self._initial_state()
        self._n_seen = 0
        self._last_ts: int | None = None

    @property
    def n_seen(self) -> int:
        """How many points (NaN included) the model has been shown."""
        return self._n_seen

    def fit(self, values: npt.ArrayLike, ts: npt.ArrayLike | None = None) -> Self:
        """Learn from history (scores are computed and discarded)."""
        self.score_detail(values, ts)
        return self

    def score(self, values: npt.ArrayLike, ts: npt.ArrayLike | None = None) -> FloatArray:
        """Score points in [0, 1], continuing the stream; the model learns them as it goes."""
        return self.score_detail(values, ts).score

    def score_detail(self, values: npt.ArrayLike, ts: npt.ArrayLike | None = None) -> Detail:
        """Like :meth:`score`, with expected value, band and firing component per point."""
        vals, times = self._prepare(values, ts)
        out = _new_out(len(vals))
        if len(vals):
            self._run(times, vals, self._state, out)
            self._n_seen += len(vals)
            newest = int(times.max())
            # ``is None``, not ``or``: a last_ts of 0 is a timestamp (update() keeps it too).
            self._last_ts = newest if self._last_ts is None else max(self._last_ts, newest)
        return Detail(**out)

    def update(self, ts: int, value: float) -> float:
        """Score one point (ts in ms UTC) and learn it; returns its score."""
        # One-point buffers are made once and refilled: allocating seven arrays per call was
        # half the cost of a streaming update (bench/streaming.py).
        one = self.__dict__.get("_one")
        if one is None:
            one = self._one = (np.zeros(1, np.int64), np.zeros(1), _new_out(1))
        times, vals, out = one
        times[0] = ts
        vals[0] = value
        out["score"][0] = 0.0
        out["expected"][0] = out["lower"][0] = out["upper"][0] = np.nan
        out["component"][0] = -1
        self._run(times, vals, self._state, out)
        self._n_seen += 1
        self._last_ts = int(ts) if self._last_ts is None else max(self._last_ts, int(ts))
        return float(out["score"][0])

    def state_dict(self) -> dict[str, Any]:
        """A checkpoint of the model: config, counters and state arrays (copies)."""
        return {
            "detector": self.name,
            "config": self.config.model_dump(),
            "n_seen": self._n_seen,
            "last_ts": self._last_ts,
            "state": {k: v.copy() for k, v in self._state.items()},
        }

    def load_state_dict(self, checkpoint: dict[str, Any]) -> None:
        """Restore a checkpoint made by :meth:`state_dict` of the same detector and config."""
        if checkpoint.get("detector") != self.name:
            raise DetectorError(
                f"checkpoint is for detector {checkpoint.get('detector')!r}, not {self.name!r}"
            )
        current = self.config.model_dump()
        if checkpoint.get("config") != current:
            keys, diff = config_difference(checkpoint.get("config"), current)
            raise CheckpointConfigError(
                f"checkpoint of {self.name!r} was made with another config ({diff})", keys
            )
        fresh = self._initial_state()
        state = checkpoint.get("state", {})
        if set(state) != set(fresh):
            raise DetectorError(f"checkpoint of {self.name!r} has state keys {sorted(state)}")
        loaded: State = {}
        for key, template in fresh.items():
            arr = np.asarray(state[key])
            if arr.shape != template.shape:
                raise DetectorError(f"checkpoint of {self.name!r}: {key} has shape {arr.shape}")
            # Numbers only (older checkpoints may hold another width): bytes or objects would
            # fail the cast below with a bare ValueError, or pass it as garbage.
            if arr.dtype.kind not in "fiub":
                raise DetectorError(f"checkpoint of {self.name!r}: {key} has dtype {arr.dtype}")
            loaded[key] = arr.astype(template.dtype, copy=True)
        problem = self._check_state(loaded)
        if problem is not None:
            raise DetectorError(f"checkpoint of {self.name!r} is corrupt: {problem}")
        self._state = loaded
        self._n_seen = int(checkpoint.get("n_seen", 0))
        last = checkpoint.get("last_ts")
        self._last_ts = None if last is None else int(last)

    def __repr__(self) -> str:
        params = ", ".join(f"{k}={v!r}" for k, v in self.config.model_dump().items())
        return f"{type(self).__name__}({params})"

    # -- helpers ---------------------------------------------------------------------------

    def _prepare(
        self, values: npt.ArrayLike, ts: npt.ArrayLike | None
    ) -> tuple[FloatArray, IntArray]:
        # np.ascontiguousarray makes a scalar a one-point array: check the shape as given.
        if np.ndim(values) != 1:
            raise DataError(f"expected a one-dimensional series, got shape {np.shape(values)}")
        vals = np.ascontiguousarray(values, dtype=np.float64)
        if ts is None:
            start = DEFAULT_STEP_MS if self._last_ts is None else self._last_ts + DEFAULT_STEP_MS
            times = start + DEFAULT_STEP_MS * np.arange(len(vals), dtype=np.int64)
        else:
            if np.ndim(ts) != 1:
                raise DataError(f"expected one-dimensional timestamps, got shape {np.shape(ts)}")
            times = _as_ms(ts)
            if times.shape != vals.shape:
                raise DataError(f"{len(times)} timestamps for {len(vals)} values")
        return vals, times


def _as_ms(ts: npt.ArrayLike) -> IntArray:
    """Timestamps as int64 ms UTC: datetime64 of any unit is converted (cast as it is, its raw
    integers were read as ms whatever the unit: ns timestamps a million times too late)."""
    arr = np.asarray(ts)
    if arr.dtype.kind == "M":
        if np.isnat(arr).any():
            at = int(np.flatnonzero(np.isnat(arr))[0])
            raise DataError(f"timestamp {at} is NaT (not a time)")
        return np.ascontiguousarray(arr.astype("datetime64[ms]").astype(np.int64))
    if arr.dtype.kind == "m":
        raise DataError(f"timestamps are durations ({arr.dtype}), not times")
    return np.ascontiguousarray(arr, dtype=np.int64)


def finite(arr: np.ndarray[Any, Any], *, lo: float = -np.inf, allow_nan: bool = False) -> bool:
    """Whether every value of ``arr`` is finite (NaN too with ``allow_nan``) and ``>= lo``: the
    building block of :meth:`Detector._check_state`."""
    a = np.asarray(arr, np.float64)
    ok = np.isfinite(a) & (a >= lo)
    if allow_nan:
        ok |= np.isnan(a)
    return bool(ok.all())


def z_to_score(z: float) -> float:
    """Map a z-score to [0, 1): with s = -log10 of its two-sided Gaussian tail probability,
    the score is s / (s + 5), so p = 1e-5 (|z| = 4.42) scores 0.5 and larger deviations keep
    ranking above smaller ones instead of saturating at 1."""
    from relia.detect._kernels import z_score

    return float(z_score(z))
