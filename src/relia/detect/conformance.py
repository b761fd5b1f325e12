"""The conformance suite every registered detector must pass.

Each check takes a factory (``() -> Detector``) and raises ``AssertionError`` with a clear message
when the detector breaks a promise of the framework. ``tests/detect/test_conformance.py`` runs every
check against every registered detector, so a new detector needs no hand-written boilerplate
tests. Usable from other projects too::

    from relia.detect import conformance
    for check in conformance.CHECKS:
        check(lambda: MyDetector())
"""

from __future__ import annotations

import json
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
from scipy.stats import rankdata

from relia.detect.base import Detail, Detector
from relia.detect.checkpoint import pack, unpack

__all__ = [
    "CHECKS",
    "Factory",
    "check_batch_split",
    "check_checkpoint_roundtrip",
    "check_config_roundtrip",
    "check_constant_input",
    "check_huge_input",
    "check_huge_input_in_warm_up",
    "check_infinite_input",
    "check_nan_input",
    "check_pickle",
    "check_seeded_determinism",
    "check_short_input",
    "check_stuck_at_max",
    "check_subnormal_input",
    "check_streaming_equals_batch",
    "nab_roc_auc",
    "roc_auc",
    "synthetic_series",
]

Factory = Callable[[], Detector]
TOLERANCE = 1e-9


def synthetic_series(n: int = 3000, seed: int = 7) -> tuple[npt.NDArray[np.int64], np.ndarray]:
    """A test series with what detectors meet in practice: a daily cycle, noise, spikes, a level
    shift, a variance change, missing values and irregular sampling."""
    rng = np.random.default_rng(seed)
    step = rng.integers(240_000, 360_000, size=n)  # 4-6 minutes, irregular
    ts = 1_600_000_000_000 + np.cumsum(step).astype(np.int64)
    day = 2 * np.pi * (ts % 86_400_000) / 86_400_000
    values = 50 + 10 * np.sin(day) + rng.normal(0, 1.5, n)
    values[n // 3] += 40
    values[n // 3 + 400] -= 35
    values[n // 2 :] += 25
    values[int(n * 0.75) :] += rng.normal(0, 6, n - int(n * 0.75))
    values[rng.choice(n, n // 50, replace=False)] = np.nan
    return ts, values


def _details_equal(a: Detail, b: Detail, what: str) -> None:
    for field in ("score", "expected", "lower", "upper"):
        x, y = getattr(a, field), getattr(b, field)
        assert x.shape == y.shape, f"{what}: {field} shapes differ {x.shape} != {y.shape}"
        same_nan = np.isnan(x) == np.isnan(y)
        assert same_nan.all(), (
            f"{what}: {field} NaN pattern differs at {np.flatnonzero(~same_nan)[:5]}"
        )
        diff = np.abs(np.nan_to_num(x) - np.nan_to_num(y))
        worst = float(diff.max()) if len(diff) else 0.0
        assert worst <= TOLERANCE, f"{what}: {field} differs by {worst:.3g} (> {TOLERANCE})"
    assert np.array_equal(a.component, b.component), f"{what}: firing components differ"


def _stream(det: Detector, ts: np.ndarray, values: np.ndarray) -> np.ndarray:
    return np.array([det.update(int(t), float(v)) for t, v in zip(ts, values, strict=True)])


def _check_scores(scores: np.ndarray, what: str) -> None:
    assert np.all(np.isfinite(scores)), f"{what}: non-finite scores"
    assert np.all((scores >= 0) & (scores <= 1)), f"{what}: scores outside [0, 1]"


def check_streaming_equals_batch(factory: Factory) -> None:
    """Scoring a series in one batch and point by point through ``update`` agree to 1e-9."""
    ts, values = synthetic_series(1500)
    batch = factory().score(values, ts)
    streamed = _stream(factory(), ts, values)
    _check_scores(batch, "batch")
    worst = float(np.max(np.abs(batch - streamed)))
    assert worst <= TOLERANCE, f"streaming differs from batch by {worst:.3g}"


def check_batch_split(factory: Factory) -> None:
    """Scoring in several batches gives what one batch gives (state carries across calls)."""
    ts, values = synthetic_series(1500)
    whole = factory().score_detail(values, ts)
    det = factory()
    parts = [det.score_detail(values[a:b], ts[a:b]) for a, b in ((0, 1), (1, 700), (700, 1500))]
    joined = Detail(
        *(np.concatenate([getattr(p, f) for p in parts]) for f in Detail.__dataclass_fields__)
    )
    _details_equal(whole, joined, "split batches")


def check_checkpoint_roundtrip(factory: Factory) -> None:
    """A checkpoint taken mid-stream, packed to bytes and loaded into a fresh detector, continues
    exactly as the original."""
    ts, values = synthetic_series(1500)
    original = factory()
    original.score(values[:900], ts[:900])
    blob = pack(original.state_dict())
    restored = factory()
    restored.load_state_dict(unpack(blob))
    assert restored.n_seen == original.n_seen
    _details_equal(
        original.score_detail(values[900:], ts[900:]),
        restored.score_detail(values[900:], ts[900:]),
        "after checkpoint round-trip",
    )


def check_pickle(factory: Factory) -> None:
    """A pickled detector, mid-stream, continues exactly as the original."""
    ts, values = synthetic_series(1200)
    original = factory()
    original.score(values[:600], ts[:600])
    clone = pickle.loads(pickle.dumps(original))
    _details_equal(
        original.score_detail(values[600:], ts[600:]),
        clone.score_detail(values[600:], ts[600:]),
        "after pickling",
    )


def check_seeded_determinism(factory: Factory) -> None:
    """Two detectors built alike (same seed) give identical output."""
    ts, values = synthetic_series(1000)
    _details_equal(
        factory().score_detail(values, ts), factory().score_detail(values, ts), "same seed"
    )


def check_config_roundtrip(factory: Factory) -> None:
    """The config round-trips through a plain dict (so JSON and YAML)."""
    det = factory()
    dumped = json.loads(json.dumps(det.config.model_dump()))
    again = type(det.config).model_validate(dumped)
    assert again == det.config, "config does not round-trip through JSON"


def check_nan_input(factory: Factory) -> None:
    """Missing values (NaN) are scored 0, never crash, and do not poison later scores."""
    ts, values = synthetic_series(800)
    values = values.copy()
    values[100:140] = np.nan
    scores = factory().score(values, ts)
    _check_scores(scores, "with NaN")
    assert np.all(scores[np.isnan(values)] == 0.0), "a missing value got a non-zero score"
    all_nan = factory().score(np.full(50, np.nan), ts[:50])
    assert np.all(all_nan == 0.0), "an all-NaN series got non-zero scores"


def check_infinite_input(factory: Factory) -> None:
    """An infinite value (a division by zero upstream) is a missing point: scored 0 and learned
    from as little as a NaN, so it cannot poison the model for every later point."""
    ts, values = synthetic_series(800)
    infinite = values.copy()
    infinite[[100, 300]] = np.inf
    infinite[200] = -np.inf
    missing = np.where(np.isinf(infinite), np.nan, infinite)
    got = factory().score_detail(infinite, ts)
    _check_scores(got.score, "with inf")
    _details_equal(got, factory().score_detail(missing, ts), "inf against NaN (batch)")
    streamed = _stream(factory(), ts, infinite)
    np.testing.assert_allclose(
        streamed, got.score, rtol=0, atol=TOLERANCE, err_msg="inf: streaming against batch"
    )


def check_huge_input(factory: Factory) -> None:
    """A finite reading of extreme magnitude (a sentinel, garbage parsed as a number) alarms,
    leaves every score finite (squared, summed or stored as float32 it would be infinite) and
    does not make the points after it alarm (at most 5 more alarms than with the readings
    missing)."""
    ts, values = synthetic_series(800)
    huge = values.copy()
    huge[[300, 500]] = (1e300, -np.finfo(np.float64).max)
    got = factory().score(huge, ts)
    _check_scores(got, "with huge readings")
    assert got[[300, 500]].min() >= 0.5, f"huge readings scored {got[[300, 500]]}"
    missing = values.copy()
    missing[[300, 500]] = np.nan
    without = factory().score(missing, ts)
    rest = np.arange(len(ts)) > 300
    rest[500] = False
    alarms, alarms_without = int((got[rest] >= 0.5).sum()), int((without[rest] >= 0.5).sum())
    assert alarms <= alarms_without + 5, (
        f"after huge readings {alarms} points alarm, {alarms_without} with them missing"
    )
    streamed = _stream(factory(), ts, huge)
    np.testing.assert_allclose(
        streamed, got, rtol=0, atol=TOLERANCE, err_msg="huge: streaming against batch"
    )


def check_huge_input_in_warm_up(factory: Factory) -> None:
    """Readings of extreme magnitude at the very start (before any score is given, where nothing
    winsorizes yet) and later leave the model able to alarm: a later spike of 50 SDs alarms, the
    expected value stays finite, and the detector's own checkpoint loads back."""
    n = 600
    ts = 1_600_000_000_000 + 60_000 * np.arange(n, dtype=np.int64)
    values = 50.0 + np.random.default_rng(1).normal(0.0, 1.0, n)
    values[[0, 1, 5, 300]] = (1e300, -np.finfo(np.float64).max, 1e160, 1e300)
    values[500] += 50.0
    det = factory()
    detail = det.score_detail(values, ts)
    _check_scores(detail.score, "with huge readings in warm-up")
    assert detail.score[500] >= 0.5, f"a spike after huge readings scored {detail.score[500]:.3f}"
    assert np.isfinite(detail.expected[400:]).all(), "expected is not finite after huge readings"
    restored = factory()
    restored.load_state_dict(unpack(pack(det.state_dict())))
    assert np.array_equal(
        restored.score(values[-50:], ts[-50:] + 3_600_000),
        det.score(values[-50:], ts[-50:] + 3_600_000),
    ), "restored model differs"


def check_stuck_at_max(factory: Factory) -> None:
    """A stretch of readings stuck at the largest float (a sentinel) scores in [0, 1], never NaN,
    and so do the points after it."""
    n = 180
    ts = 1_600_000_000_000 + 60_000 * np.arange(n, dtype=np.int64)
    values = 50.0 + np.random.default_rng(2).normal(0.0, 1.0, n)
    values[40:140] = np.finfo(np.float64).max
    detail = factory().score_detail(values, ts)
    _check_scores(detail.score, "with a run of DBL_MAX readings")
    expected = detail.expected[~np.isnan(detail.expected)]
    assert np.isfinite(expected).all(), "expected is infinite with a run of DBL_MAX readings"


def check_subnormal_input(factory: Factory) -> None:
    """Values a subnormal apart (0 and 5e-324, the smallest float) score in [0, 1]: a step that
    small must not become a scale of 0 and a division by zero."""
    n = 100
    ts = 1_600_000_000_000 + 60_000 * np.arange(n, dtype=np.int64)
    values = np.tile([0.0, 5e-324], n // 2)
    _check_scores(factory().score(values, ts), "with subnormal steps")
    _check_scores(_stream(factory(), ts, values), "with subnormal steps, streamed")


def check_constant_input(factory: Factory) -> None:
    """A constant series is not anomalous; a step away from it is."""
    n = 600
    ts = 1_600_000_000_000 + 60_000 * np.arange(n, dtype=np.int64)
    flat = np.full(n, 42.0)
    scores = factory().score(flat, ts)
    _check_scores(scores, "constant")
    assert scores.max() < 0.5, f"a constant series scored {scores.max():.3f}"
    stepped = flat.copy()
    stepped[500:] = 80.0
    after = factory().score(stepped, ts)
    assert after[500:].max() >= 0.5, "a large step after a constant stretch was not flagged"


def check_short_input(factory: Factory) -> None:
    """Empty, one-point and two-point series are handled."""
    for n in (0, 1, 2):
        ts = np.arange(n, dtype=np.int64) * 1000
        scores = factory().score(np.ones(n), ts)
        assert scores.shape == (n,), f"{n} points gave {scores.shape} scores"
        _check_scores(scores, f"{n} points")


CHECKS: tuple[Callable[[Factory], None], ...] = (
    check_streaming_equals_batch,
    check_batch_split,
    check_checkpoint_roundtrip,
    check_pickle,
    check_seeded_determinism,
    check_config_roundtrip,
    check_nan_input,
    check_infinite_input,
    check_huge_input,
    check_huge_input_in_warm_up,
    check_stuck_at_max,
    check_subnormal_input,
    check_constant_input,
    check_short_input,
)


def roc_auc(labels: npt.ArrayLike, scores: npt.ArrayLike) -> float:
    """Area under the ROC curve (ties count half), via the Mann-Whitney U statistic."""
    y = np.asarray(labels, dtype=bool)
    s = np.asarray(scores, dtype=np.float64)
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def nab_roc_auc(factory: Factory, nab_dir: Path) -> dict[str, float]:
    """ROC-AUC of a detector's scores against NAB's anomaly windows, per labelled file.

    A point is positive when it lies inside one of the file's windows in
    ``labels/combined_windows.json``. Files without windows are skipped.
    """
    import polars as pl

    windows = json.loads((nab_dir / "labels" / "combined_windows.json").read_text())
    out: dict[str, float] = {}
    for rel, wins in sorted(windows.items()):
        if not wins:
            continue
        frame = pl.read_csv(nab_dir / "data" / rel, try_parse_dates=True)
        ts = frame["timestamp"].cast(pl.Datetime("ms")).cast(pl.Int64).to_numpy()
        values = frame["value"].cast(pl.Float64).to_numpy()
        labels = np.zeros(len(ts), dtype=bool)
        for start, end in wins:
            lo = np.datetime64(start.replace(" ", "T"), "ms").astype(np.int64)
            hi = np.datetime64(end.replace(" ", "T"), "ms").astype(np.int64)
            labels |= (ts >= lo) & (ts <= hi)
        out[rel] = roc_auc(labels, factory().score(values, ts))
    return out
