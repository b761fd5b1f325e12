"""Every registered detector passes the generated conformance suite."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import Field

from relia.detect import available, create
from relia.detect import conformance as cf
from relia.detect.base import Detector, DetectorConfig, IntArray, State

NAB = Path(
    os.environ.get("RELIA_NAB_DATA", Path(__file__).resolve().parents[3] / "shared/data/nab")
)


@pytest.mark.parametrize("check", cf.CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("name", available())
def test_conformance(name: str, check: cf.Factory) -> None:
    check(lambda: create(name))  # type: ignore[operator]


@pytest.mark.slow
@pytest.mark.parametrize("name", available())
def test_beats_random_on_nab(name: str) -> None:
    if not (NAB / "labels" / "combined_windows.json").exists():
        pytest.skip(f"NAB data not found at {NAB} (set RELIA_NAB_DATA)")
    aucs = cf.nab_roc_auc(lambda: create(name), NAB)
    assert len(aucs) >= 50
    mean_auc = float(np.nanmean(list(aucs.values())))
    assert mean_auc > 0.5, f"{name}: mean ROC-AUC {mean_auc:.3f} over {len(aucs)} NAB files"


def test_roc_auc_matches_definition() -> None:
    assert cf.roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert cf.roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) == 0.0
    assert cf.roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert np.isnan(cf.roc_auc([0, 0], [0.1, 0.2]))


def test_a_detector_whose_streaming_differs_fails_the_suite() -> None:
    """The suite can fail: a detector whose update() disagrees with its batch path is caught."""
    det_cls = type(create("mad"))

    class Drifting(det_cls):  # type: ignore[misc, valid-type]
        def update(self, ts: int, value: float) -> float:
            return min(1.0, super().update(ts, value) + 1e-6)

    with pytest.raises(AssertionError, match="streaming differs"):
        cf.check_streaming_equals_batch(lambda: Drifting())


class Toy(Detector):
    """A pure-Python detector that keeps every promise; its subclasses each break one."""

    name = "toy"
    nan_score = 0.0  # what a missing value scores while the model has learned nothing / later
    nan_score_cold = 0.0
    gain = 1.0

    def _initial_state(self) -> State:
        return {"acc": np.zeros(2), "calls": np.zeros(1)}

    def _run(self, ts: IntArray, values: np.ndarray, state: State, out: State) -> None:
        acc = state["acc"]
        state["calls"][0] += 1
        for i in range(len(values)):
            if self._missing(values[i]):
                out["score"][i] = self.nan_score_cold if acc[1] == 0 else self.nan_score
                continue
            if acc[1]:
                mean = acc[0] / acc[1]
                out["expected"][i] = self._expected(mean, i, state)
                out["score"][i] = self.gain * (1.0 - np.exp(-abs(values[i] - mean) / 10.0))
                out["component"][i] = 1 if self._flag_first and i == 0 else 0
            if abs(values[i]) <= self.learns_up_to:  # a broken reading would overflow the sum
                acc[0] += values[i]
                acc[1] += 1

    _flag_first = False
    learns_up_to = 1e150

    @staticmethod
    def _missing(x: float) -> bool:
        return not np.isfinite(x)  # NaN or ±inf

    def _expected(self, mean: float, i: int, state: State) -> float:
        return mean


def test_the_toy_detector_passes_every_check() -> None:
    for check in cf.CHECKS:
        check(Toy)


class InfLearned(Toy):
    @staticmethod
    def _missing(x: float) -> bool:
        return bool(np.isnan(x))  # learns ±inf as a value: every later mean is infinite


def test_a_detector_that_learns_an_infinite_value_fails_the_suite() -> None:
    with np.errstate(all="ignore"), pytest.raises(AssertionError, match="inf"):
        cf.check_infinite_input(InfLearned)


class HugeLearned(Toy):
    learns_up_to = np.inf  # 1e300 + (-1.8e308) overflows: every later mean is infinite


def test_a_detector_that_learns_a_huge_reading_fails_the_suite() -> None:
    with np.errstate(all="ignore"), pytest.raises(AssertionError, match="huge"):
        cf.check_huge_input(HugeLearned)


class NanScored(Toy):
    nan_score = nan_score_cold = 0.3


class NanScoredWhenCold(Toy):
    nan_score_cold = 0.3


class NanScoreIsNan(Toy):
    nan_score = nan_score_cold = float("nan")


class Overscoring(Toy):
    gain = 1.5


class AlwaysAlarmed(Toy):
    def _run(self, ts: IntArray, values: np.ndarray, state: State, out: State) -> None:
        super()._run(ts, values, state, out)
        out["score"][~np.isnan(values)] = 0.6


class Blind(Toy):
    gain = 0.0


class LooksAhead(Toy):
    def _run(self, ts: IntArray, values: np.ndarray, state: State, out: State) -> None:
        if len(values) and values[1] > 1e9:  # reads a point it has not reached yet
            return
        super()._run(ts, values, state, out)


class WrongShape(Toy):
    def score(self, values: Any, ts: Any = None) -> np.ndarray:
        return super().score(values, ts)[:, None]


class Unseeded(Toy):
    def _run(self, ts: IntArray, values: np.ndarray, state: State, out: State) -> None:
        super()._run(ts, values, state, out)
        out["score"] *= np.random.default_rng().uniform(0.99, 1.0)


class NanConfig(DetectorConfig):
    level: float = Field(default=float("nan"))


class NanConfigured(Toy):
    config_class = NanConfig


class HiddenState(Toy):
    """Learns into an attribute instead of its state arrays: a checkpoint loses it."""

    def _initial_state(self) -> State:
        self._acc = np.zeros(2)
        return {"acc": np.zeros(2), "calls": np.zeros(1)}

    def _run(self, ts: IntArray, values: np.ndarray, state: State, out: State) -> None:
        super()._run(ts, values, {"acc": self._acc, "calls": state["calls"]}, out)


class ForgetsCount(Toy):
    def load_state_dict(self, checkpoint: dict[str, Any]) -> None:
        super().load_state_dict(checkpoint)
        self._n_seen = 0


class PicklesFresh(Toy):
    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), ())


class Forgetful(Toy):
    """Starts every call from scratch: state does not carry across batches."""

    def _run(self, ts: IntArray, values: np.ndarray, state: State, out: State) -> None:
        super()._run(ts, values, {"acc": np.zeros(2), "calls": state["calls"]}, out)


class WarmsUpPerCall(Toy):
    def _expected(self, mean: float, i: int, state: State) -> float:
        return float("nan") if i == 0 else mean


class DriftsPerCall(Toy):
    def _expected(self, mean: float, i: int, state: State) -> float:
        return mean + 1e-6 * state["calls"][0]


class FlagsFirstOfCall(Toy):
    _flag_first = True


@pytest.mark.parametrize(
    ("check", "cls", "message"),
    [
        (cf.check_nan_input, NanScored, "a missing value got a non-zero score"),
        (cf.check_nan_input, NanScoredWhenCold, "an all-NaN series got non-zero scores"),
        (cf.check_nan_input, NanScoreIsNan, "with NaN: non-finite scores"),
        (cf.check_nan_input, Overscoring, r"with NaN: scores outside \[0, 1\]"),
        (cf.check_streaming_equals_batch, Overscoring, r"batch: scores outside \[0, 1\]"),
        (cf.check_constant_input, AlwaysAlarmed, "a constant series scored 0.600"),
        (cf.check_constant_input, Blind, "a large step after a constant stretch was not flagged"),
        (cf.check_short_input, WrongShape, r"^0 points gave \(0, 1\) scores"),
        (cf.check_seeded_determinism, Unseeded, "same seed: score differs by"),
        (cf.check_config_roundtrip, NanConfigured, "config does not round-trip through JSON"),
        (cf.check_checkpoint_roundtrip, HiddenState, "after checkpoint round-trip: score differs"),
        (cf.check_checkpoint_roundtrip, ForgetsCount, None),
        (cf.check_pickle, PicklesFresh, "after pickling: score differs"),
        (cf.check_batch_split, Forgetful, "split batches: score differs"),
        (
            cf.check_batch_split,
            WarmsUpPerCall,
            r"split batches: expected NaN pattern differs at \[",
        ),
        (cf.check_batch_split, DriftsPerCall, "split batches: expected differs by 2e-06"),
        (cf.check_batch_split, FlagsFirstOfCall, "split batches: firing components differ"),
    ],
    ids=lambda x: x.__name__ if hasattr(x, "__name__") else None,
)
def test_each_check_catches_the_flaw_it_is_for(
    check: Any, cls: type[Detector], message: str | None
) -> None:
    with pytest.raises(AssertionError, match=message):
        check(cls)


def test_a_detector_that_fails_on_short_input_fails_the_suite() -> None:
    with pytest.raises(IndexError):
        cf.check_short_input(LooksAhead)
    cf.check_constant_input(LooksAhead)  # long input is fine: only the short case catches it


def test_checks_lists_every_check() -> None:
    every = {f for name, f in vars(cf).items() if name.startswith("check_")}
    assert set(cf.CHECKS) == every and len(cf.CHECKS) == len(every)


def test_synthetic_series_has_gaps_and_irregular_sampling() -> None:
    ts, values = cf.synthetic_series(1000, seed=3)
    assert ts.dtype == np.int64 and len(ts) == len(values) == 1000
    assert np.isnan(values).sum() == 20
    steps = np.diff(ts)
    assert steps.min() >= 240_000 and steps.max() < 360_000 and len(np.unique(steps)) > 100
    again_ts, again = cf.synthetic_series(1000, seed=3)
    assert np.array_equal(again_ts, ts) and np.array_equal(again, values, equal_nan=True)


def test_roc_auc_of_one_class_only_is_nan() -> None:
    assert np.isnan(cf.roc_auc([1, 1, 1], [0.1, 0.2, 0.3]))
    assert cf.roc_auc([0, 1, 0, 1, 1], [0.1, 0.9, 0.5, 0.3, 0.8]) == pytest.approx(5 / 6)


class ValueIsScore(Toy):
    def _run(self, ts: IntArray, values: np.ndarray, state: State, out: State) -> None:
        out["score"][:] = values


def test_nab_roc_auc_labels_points_inside_each_window_ends_included(tmp_path: Path) -> None:
    (tmp_path / "labels").mkdir()
    (tmp_path / "data" / "a").mkdir(parents=True)
    rows = ["timestamp,value"]
    # Points every minute; the detector's score is the value: 1 inside both windows (ends
    # included), 0 elsewhere, so the AUC is 1 exactly when the windows are read as they should.
    inside = {2, 3, 4, 7, 8}
    rows += [f"2020-01-01 00:{m:02d}:00,{int(m in inside)}" for m in range(10)]
    (tmp_path / "data" / "a" / "one.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "data" / "a" / "quiet.csv").write_text("\n".join(rows) + "\n")
    windows = {
        "a/one.csv": [
            ["2020-01-01 00:02:00.000000", "2020-01-01 00:04:00.000000"],
            ["2020-01-01 00:07:00.000000", "2020-01-01 00:08:00.000000"],
        ],
        "a/quiet.csv": [],
    }
    (tmp_path / "labels" / "combined_windows.json").write_text(json.dumps(windows))
    assert cf.nab_roc_auc(ValueIsScore, tmp_path) == {"a/one.csv": 1.0}
