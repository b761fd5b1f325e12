"""The Detector framework's own promises, on a small pure-Python detector (no kernel to compile)."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import Field

from relia.detect.base import (
    CheckpointConfigError,
    Detail,
    Detector,
    DetectorConfig,
    IntArray,
    State,
    config_difference,
    z_to_score,
)
from relia.detect.checkpoint import pack
from relia.errors import DataError, DetectorError


class MeanConfig(DetectorConfig):
    scale: float = Field(default=1.0, gt=0)


class Mean(Detector):
    """Scores a point by its distance from the running mean; remembers the last timestamp it was
    given. Writes nothing for a missing value, and no band (``lower``/``upper`` stay as given)."""

    name = "mean"
    config_class = MeanConfig

    def _initial_state(self) -> State:
        return {"acc": np.zeros(2), "t": np.zeros(1, np.int64)}

    def _run(self, ts: IntArray, values: np.ndarray, state: State, out: State) -> None:
        acc, t = state["acc"], state["t"]
        for i in range(len(values)):
            t[0] = ts[i]
            if np.isnan(values[i]):
                continue
            if acc[1]:
                mean = acc[0] / acc[1]
                out["expected"][i] = mean
                out["score"][i] = 1.0 - np.exp(-abs(values[i] - mean) / 10.0)
                out["component"][i] = 0
            acc[0] += values[i]
            acc[1] += 1


def test_parameters_are_checked_and_named() -> None:
    assert Mean(scale=2.0).config == MeanConfig(scale=2.0)
    assert Mean(MeanConfig(scale=2.0)).config.model_dump() == {"seed": 0, "scale": 2.0}
    with pytest.raises(DetectorError, match=r"^invalid parameter 'scale' for detector 'mean': "):
        Mean(scale=-1.0)
    with pytest.raises(DetectorError, match="^detector 'mean' takes a MeanConfig, not Detector"):
        Mean(DetectorConfig())  # type: ignore[arg-type]
    with pytest.raises(DetectorError, match="not both"):
        Mean(MeanConfig(), scale=2.0)  # type: ignore[call-arg]


def test_repr_names_the_class_and_its_parameters() -> None:
    assert repr(Mean(scale=2.0)) == "Mean(seed=0, scale=2.0)"


def test_points_without_timestamps_are_one_second_apart_and_continue_the_stream() -> None:
    det = Mean()
    det.score([1.0, 2.0, 3.0])
    assert det.state_dict()["last_ts"] == 3000  # 1000, 2000, 3000 ms
    det.score([4.0, 5.0])
    assert det.state_dict()["last_ts"] == 5000
    det.score([1.0], [60_000])
    det.update(61_000, 1.0)
    det.score([1.0, 1.0])
    assert det.state_dict()["last_ts"] == 63_000
    assert det.state_dict()["state"]["t"].tolist() == [63_000]  # the times the model was given


def test_n_seen_counts_every_point_and_an_empty_batch_changes_nothing() -> None:
    det = Mean()
    det.score([1.0, np.nan, 3.0], [10, 20, 30])
    det.update(40, np.nan)
    assert det.n_seen == 4
    before = pack(det.state_dict())
    empty = det.score_detail([], [])
    assert len(empty) == 0 and empty.score.shape == (0,)
    assert pack(det.state_dict()) == before


def test_newest_timestamp_is_kept_when_the_clock_steps_back_in_batch_and_streaming() -> None:
    # The same points through score_detail and through update: the same checkpoint.
    for ts in ([5000, 3000], [0, -1000], [-2000, -3000]):
        batch, streamed = Mean(), Mean()
        for t in ts:
            batch.score_detail([1.0], [t])
            streamed.update(t, 1.0)
        assert batch.state_dict()["last_ts"] == streamed.state_dict()["last_ts"] == max(ts)
        assert pack(batch.state_dict()) == pack(streamed.state_dict())
    det = Mean()
    det.score([1.0, 2.0], [7000, 4000])
    assert det.state_dict()["last_ts"] == 7000


def test_fit_returns_the_detector_and_reset_forgets_everything() -> None:
    det = Mean()
    assert det.fit([1.0, 2.0, 3.0]) is det
    fresh = pack(Mean().state_dict())
    assert pack(det.state_dict()) != fresh
    det.reset()
    assert det.n_seen == 0 and pack(det.state_dict()) == fresh
    det.score([5.0])
    assert det.state_dict()["last_ts"] == 1000  # default times start over


def test_unwritten_outputs_have_their_defaults_in_batch_and_streaming() -> None:
    # Mean writes nothing for a missing value and no band at all.
    det = Mean()
    d = det.score_detail([1.0, 5.0, np.nan], [1, 2, 3])
    assert d.score[0] == 0.0 and d.score[1] > 0.3 and d.score[2] == 0.0
    assert np.isnan(d.expected[[0, 2]]).all() and d.expected[1] == 1.0
    assert np.isnan(d.lower).all() and np.isnan(d.upper).all()
    assert d.component.tolist() == [-1, 0, -1]
    # update() reuses its one-point buffers: the last point's output must not leak into the next.
    assert det.update(4, 30.0) > 0.5
    assert det.update(5, np.nan) == 0.0
    nan = det.score_detail([np.nan], [6])
    assert nan.component.tolist() == [-1] and np.isnan(nan.expected).all()


def test_bad_input_is_a_data_error_naming_the_problem() -> None:
    det = Mean()
    with pytest.raises(DataError, match=r"one-dimensional series, got shape \(2, 2\)"):
        det.score([[1.0, 2.0], [3.0, 4.0]])
    with pytest.raises(DataError, match="^1 timestamps for 2 values$"):
        det.score([1.0, 2.0], [1000])
    with pytest.raises(DataError, match="^3 timestamps for 2 values$"):
        det.score([1.0, 2.0], [1000, 2000, 3000])
    # A scalar is not a one-point series (np.ascontiguousarray would make it one): score() takes
    # series, update() takes points.
    with pytest.raises(DataError, match=r"one-dimensional series, got shape \(\)"):
        det.score(5.0)
    with pytest.raises(DataError, match=r"one-dimensional timestamps, got shape \(\)"):
        det.score([5.0], 1000)
    assert det.n_seen == 0


def test_checkpoints_are_copies_both_ways() -> None:
    det = Mean()
    det.score([1.0, 2.0], [1000, 2000])
    taken = det.state_dict()
    blob = pack(taken)
    det.score([50.0, 60.0], [3000, 4000])  # learning more does not change a checkpoint taken
    assert pack(taken) == blob
    restored = Mean()
    restored.load_state_dict(taken)
    restored.score([70.0], [5000])  # nor does learning after a restore
    assert pack(taken) == blob


def test_checkpoint_restores_counters_and_casts_state_to_the_models_dtypes() -> None:
    det = Mean()
    det.score([1.0, 3.0], [1000, 2000])
    ckpt = det.state_dict()
    # As read back from JSON: plain lists (of ints here).
    ckpt["state"] = {"acc": [4, 2], "t": [2000]}
    restored = Mean()
    restored.load_state_dict(ckpt)
    assert restored.n_seen == 2 and restored.state_dict()["last_ts"] == 2000
    assert restored.state_dict()["state"]["acc"].dtype == np.float64
    assert pack(restored.state_dict()) == pack(det.state_dict())
    ckpt.pop("n_seen")
    ckpt["last_ts"] = None
    restored.load_state_dict(ckpt)
    assert restored.n_seen == 0 and restored.state_dict()["last_ts"] is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"detector": "other"}, "checkpoint is for detector 'other', not 'mean'"),
        (
            {"config": {"seed": 0, "scale": 3.0}},
            r"checkpoint of 'mean' was made with another config \(scale 3\.0 in the "
            r"checkpoint, 1\.0 now\)$",
        ),
        (
            {"config": {"seed": 0}},
            r"another config \(scale None in the checkpoint, 1\.0 now\)$",
        ),
        ({"state": {"acc": np.zeros(2)}}, r"checkpoint of 'mean' has state keys \['acc'\]"),
        (
            {"state": {"acc": np.zeros(2), "t": np.zeros(1, np.int64), "x": np.zeros(1)}},
            r"has state keys \['acc', 't', 'x'\]",
        ),
        (
            {"state": {"acc": np.zeros(3), "t": np.zeros(1, np.int64)}},
            r"checkpoint of 'mean': acc has shape \(3,\)",
        ),
    ],
)
def test_a_foreign_checkpoint_is_refused_and_changes_nothing(
    change: dict[str, object], message: str
) -> None:
    det = Mean()
    det.score([1.0, 2.0], [1000, 2000])
    before = pack(det.state_dict())
    ckpt = {**Mean().state_dict(), **change}
    with pytest.raises(DetectorError, match=message):
        det.load_state_dict(ckpt)
    assert pack(det.state_dict()) == before and det.n_seen == 2


def test_detail_length_is_the_number_of_points() -> None:
    d = Mean().score_detail([1.0, 2.0, 3.0])
    assert isinstance(d, Detail) and len(d) == 3


def test_z_to_score_maps_a_tail_probability_of_1e5_to_one_half() -> None:
    assert z_to_score(0.0) == 0.0
    assert z_to_score(4.4172) == pytest.approx(0.5, abs=1e-4)
    assert z_to_score(-4.4172) == z_to_score(4.4172)
    assert 0.5 < z_to_score(6.0) < z_to_score(10.0) < 1.0


@pytest.mark.parametrize("unit", ["ns", "us", "ms", "s", "m"])
def test_datetime64_timestamps_of_any_unit_are_read_as_their_time(unit: str) -> None:
    # They were cast to their raw integers and read as ms: datetime64[ns] times a million times
    # too late, so the seasonal profile put every point in the wrong slot.
    from relia.detect import create

    ms = np.datetime64("2024-01-01T00:00", "ms") + np.arange(4320) * np.timedelta64(60, "s")
    values = 50 + 10 * np.sin(np.arange(4320) * 2 * np.pi / 1440)
    values[4000] += 30
    want = create("seasonal").score_detail(values, ms.astype(np.int64))
    got = create("seasonal").score_detail(values, ms.astype(f"datetime64[{unit}]"))
    np.testing.assert_array_equal(got.score, want.score)
    np.testing.assert_array_equal(got.expected, want.expected)


def test_timestamps_that_are_not_times_are_a_data_error() -> None:
    from relia.detect import create

    times = np.array(["2024-01-01", "NaT"], dtype="datetime64[ms]")
    with pytest.raises(DataError, match="timestamp 1 is NaT"):
        create("mad").score([1.0, 2.0], times)
    with pytest.raises(DataError, match="durations"):
        create("mad").score([1.0, 2.0], np.array([1, 2], dtype="timedelta64[s]"))


def test_a_config_refusal_names_the_parameters_that_differ() -> None:
    # It said only "made with another config": not which, nor that an upgrade changed a default.
    ckpt = {**Mean().state_dict(), "config": {"seed": 1, "scale": 3.0}}
    with pytest.raises(CheckpointConfigError) as info:
        Mean().load_state_dict(ckpt)
    assert info.value.keys == ("scale", "seed")
    assert str(info.value).endswith(
        "(scale 3.0 in the checkpoint, 1.0 now; seed 1 in the checkpoint, 0 now)"
    )
    many = {f"k{i}": i for i in range(7)}
    keys, text = config_difference(many, {})
    assert len(keys) == 7 and text.endswith("; 2 more") and text.count("in the checkpoint") == 5
    assert config_difference(None, {}) == ((), "the checkpoint holds no config")
