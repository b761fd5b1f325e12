"""Our own implementation of the Numenta Anomaly Benchmark (NAB) scoring, vectorized with NumPy.

The rules follow NAB's published scorer (``nab/sweeper.py`` and ``nab/optimizer.py`` of
numenta/NAB; written from their description, not copied):

* **Windows.** Each file has labelled anomaly windows ``[start, end]`` (inclusive timestamps).
* **Probationary period.** The first ``min(floor(0.15 * n), 0.15 * 5000)`` points of a file are
  ignored: they count neither as detections nor as misses, and a window with no point after the
  probation is not scored at all.
* **Scaled sigmoid.** ``S(x) = 2 / (1 + exp(5 x)) - 1`` (``-1`` for ``x > 3``).
* **True positive.** Only the earliest detection in a window counts; at row ``i`` of a window whose
  last row is ``r`` and which is ``w`` rows wide, it is worth
  ``tpWeight * S(-(r - i + 1) / w) / S(-1)`` (``tpWeight`` at the window's first row). Later
  detections in the same window are worth nothing.
* **False negative.** A window without any detection costs ``fnWeight``.
* **False positive.** A detection outside every window costs ``fpWeight`` when no window precedes
  it, else ``fpWeight * S((i - r) / (w - 1))`` where ``r`` and ``w`` belong to the closest
  preceding window: detections just after a window cost little, far ones cost ``fpWeight``.
* **Threshold.** A point is a detection when its anomaly score is ``>= threshold``. One threshold
  per detector and profile is chosen by sweeping every distinct score over all files jointly and
  taking the best corpus score (ties go to the higher threshold, as in NAB).
* **Normalisation.** ``100 * (raw - null) / (perfect - null)``, where the null detector detects
  nothing (``-fnWeight`` per scored window) and the perfect one detects every window at its first
  row (``tpWeight`` per window).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from relia.errors import DataError

__all__ = [
    "PROFILE_NAMES",
    "CorpusScore",
    "CostMatrix",
    "FileScore",
    "FileSweep",
    "ThresholdCurve",
    "load_profiles",
    "load_windows",
    "null_score",
    "parse_timestamps",
    "perfect_score",
    "prepare_file",
    "probation_length",
    "read_result_file",
    "read_score_tables",
    "read_results_dir",
    "scaled_sigmoid",
    "score_at_threshold",
    "score_corpus",
    "sweep_thresholds",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

#: The three NAB application profiles, in the order NAB reports them.
PROFILE_NAMES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")
#: Share of each file that is probationary, and the file length at which it stops growing.
PROBATION_PERCENT = 0.15
PROBATION_CAP_ROWS = 5000
#: The threshold NAB starts its sweep from: above every score, so nothing is detected.
START_THRESHOLD = 1.1


@dataclass(frozen=True)
class CostMatrix:
    """Weights of one NAB application profile."""

    tp_weight: float
    fp_weight: float
    fn_weight: float
    tn_weight: float = 1.0


def load_profiles(path: Path) -> dict[str, CostMatrix]:
    """Read NAB's ``config/profiles.json`` into cost matrices by profile name."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError("profiles file not found", where=str(path)) from None
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read profiles JSON: {exc}", where=str(path)) from None
    if not isinstance(raw, dict):
        raise DataError("expected a JSON object of profiles", where=str(path))
    out: dict[str, CostMatrix] = {}
    for name, body in raw.items():
        where = f"{path}: {name}.CostMatrix"
        cm = body.get("CostMatrix") if isinstance(body, dict) else None
        if not isinstance(cm, dict):
            raise DataError("missing CostMatrix object", where=where)
        weights: dict[str, float] = {}
        for key in ("tpWeight", "fpWeight", "fnWeight", "tnWeight"):
            value = cm.get(key, 1.0 if key == "tnWeight" else None)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise DataError(f"{key} must be a number, got {value!r}", where=where)
            if not math.isfinite(value) or value < 0:
                raise DataError(f"{key} must be finite and >= 0, got {value!r}", where=where)
            weights[key] = float(value)
        out[name] = CostMatrix(
            tp_weight=weights["tpWeight"],
            fp_weight=weights["fpWeight"],
            fn_weight=weights["fnWeight"],
            tn_weight=weights["tnWeight"],
        )
    return out


_TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(:\d{2}(\.\d{1,9})?)?$")


def parse_timestamps(values: Sequence[str] | npt.NDArray[Any], *, where: str) -> IntArray:
    """Parse naive ``YYYY-MM-DD HH:MM:SS[.ffffff]`` strings (taken as UTC) to int64 ms.

    Raises :class:`DataError` naming ``where`` and the first bad row (0-based data row).
    """
    arr = np.asarray(values, dtype=object)
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    try:
        parsed = np.asarray(arr.astype(str), dtype="datetime64[ms]")
    except ValueError:
        parsed = None
    if parsed is not None and not np.isnat(parsed).any():
        # numpy also takes forms NAB never writes ("2014", "2014-01"); insist on date and time.
        bad = [i for i, s in enumerate(arr.tolist()) if not _TS_RE.match(str(s))]
        if not bad:
            return parsed.astype(np.int64)
    for i, s in enumerate(arr.tolist()):
        ok = isinstance(s, str) and _TS_RE.match(s) is not None
        if ok:
            try:
                if np.isnat(np.datetime64(s, "ms")):
                    ok = False
            except ValueError:
                ok = False
        if not ok:
            raise DataError(f"row {i}: timestamp {s!r} is not 'YYYY-MM-DD HH:MM:SS'", where=where)
    raise DataError("unparseable timestamps", where=where)  # pragma: no cover


def load_windows(path: Path) -> dict[str, list[tuple[int, int]]]:
    """Read NAB's ``combined_windows.json``: ``{"<category>/<file>.csv": [(start_ms, end_ms)]}``."""
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError("labels file not found", where=str(path)) from None
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read windows JSON: {exc}", where=str(path)) from None
    if not isinstance(raw, dict):
        raise DataError("expected a JSON object of file -> windows", where=str(path))
    out: dict[str, list[tuple[int, int]]] = {}
    for name, wins in raw.items():
        where = f"{path}: {name}"
        if not isinstance(wins, list) or not all(
            isinstance(w, list) and len(w) == 2 and all(isinstance(t, str) for t in w) for w in wins
        ):
            raise DataError("windows must be a list of [start, end] timestamp strings", where=where)
        flat = parse_timestamps([t for w in wins for t in w], where=where)
        pairs = [(int(flat[2 * k]), int(flat[2 * k + 1])) for k in range(len(wins))]
        for k, (a, b) in enumerate(pairs):
            if b < a:
                raise DataError(f"window {k} ends before it starts", where=where)
            if k and a <= pairs[k - 1][1]:
                raise DataError(f"window {k} overlaps or precedes window {k - 1}", where=where)
        out[name] = pairs
    return out


def probation_length(n_rows: int, percent: float = PROBATION_PERCENT) -> int:
    """Rows at the start of a file that are not scored: ``min(floor(p n), p 5000)``."""
    return int(min(math.floor(percent * n_rows), percent * PROBATION_CAP_ROWS))


def scaled_sigmoid(x: npt.ArrayLike) -> FloatArray:
    """NAB's scaled sigmoid ``2 / (1 + exp(5 x)) - 1``, and ``-1`` beyond ``x > 3``."""
    xs = np.asarray(x, dtype=np.float64)
    with np.errstate(over="ignore"):
        val = 2.0 * (1.0 / (1.0 + np.exp(5.0 * xs))) - 1.0
    return np.where(xs > 3.0, -1.0, val)


_MAX_TP = float(scaled_sigmoid(-1.0))


@dataclass(frozen=True)
class FileSweep:
    """One file prepared for scoring under one profile.

    ``value`` is what a detection at each row is worth (positive inside windows, negative
    outside); ``window`` the index of the file's window holding the row (-1 outside);
    ``scorable`` is False during the probationary period. ``n_windows`` counts all labelled
    windows, ``n_scored_windows`` those with at least one scorable row.
    """

    name: str
    scores: FloatArray
    value: FloatArray
    window: IntArray
    scorable: BoolArray
    n_windows: int
    n_scored_windows: int
    cost: CostMatrix


def _window_rows(
    ts: IntArray, windows: Sequence[tuple[int, int]], name: str
) -> tuple[IntArray, IntArray, IntArray, FloatArray]:
    """Rows of each window the way NAB walks a file.

    NAB enters a window at the first row (after the previous window) whose timestamp equals the
    window's start and leaves it at the first row from there equal to its end; positions inside
    are measured from the first row in the file with the end timestamp, over a width counted
    between the first rows with the start and end timestamps. NAB files hold repeated (and, once,
    decreasing) timestamps, so this is not the same as comparing times.
    Returns (entry, exit, right, width) per window.
    """
    k = len(windows)
    entry = np.empty(k, dtype=np.int64)
    exit_ = np.empty(k, dtype=np.int64)
    right = np.empty(k, dtype=np.int64)
    width = np.empty(k, dtype=np.float64)
    cursor = 0
    for j, (start, end) in enumerate(windows):
        hits = np.flatnonzero(ts[cursor:] == start)
        if not len(hits):
            raise DataError(f"anomaly window {j} starts at no row's exact timestamp", where=name)
        entry[j] = cursor + int(hits[0])
        ends = np.flatnonzero(ts[entry[j] :] == end)
        if not len(ends):
            raise DataError(f"anomaly window {j} ends at no row's exact timestamp", where=name)
        exit_[j] = entry[j] + int(ends[0])
        right[j] = int(np.flatnonzero(ts == end)[0])
        width[j] = float(right[j] - int(np.flatnonzero(ts == start)[0]) + 1)
        cursor = int(exit_[j]) + 1
    return entry, exit_, right, width


def prepare_file(
    name: str,
    ts_ms: npt.ArrayLike,
    scores: npt.ArrayLike,
    windows: Sequence[tuple[int, int]],
    cost: CostMatrix,
    probation_percent: float = PROBATION_PERCENT,
) -> FileSweep:
    """Work out what a detection at each row of a file would be worth under ``cost``.

    ``windows`` are inclusive ``(start_ms, end_ms)`` pairs, sorted and disjoint, whose bounds are
    timestamps of rows of the file (NAB matches them exactly; see :func:`_window_rows`).
    """
    ts = np.asarray(ts_ms, dtype=np.int64)
    s = np.asarray(scores, dtype=np.float64)
    n = len(ts)
    if s.shape != (n,):
        raise DataError(f"{len(s)} anomaly scores for {n} timestamps", where=name)
    bad = np.flatnonzero(~np.isfinite(s))
    if len(bad):
        raise DataError(f"row {int(bad[0])}: anomaly_score is not a finite number", where=name)
    entry, exit_, right, width = _window_rows(ts, windows, name)
    idx = np.arange(n, dtype=np.int64)

    # Window of each row: the last window entered at or before it, if not yet left.
    k = np.searchsorted(entry, idx, side="right").astype(np.int64) - 1
    if len(windows):
        inside = (k >= 0) & (idx <= exit_[np.maximum(k, 0)])
    else:
        inside = np.zeros(n, dtype=bool)
    window = np.where(inside, k, -1).astype(np.int64)

    value = np.empty(n, dtype=np.float64)
    if inside.any():
        kk = window[inside]
        pos = -(right[kk] - idx[inside] + 1) / width[kk]
        value[inside] = scaled_sigmoid(pos) * cost.tp_weight / _MAX_TP
    out = ~inside
    if out.any() and len(windows) == 0:
        value[out] = -cost.fp_weight
    elif out.any():
        # Closest window left before the row (rows between windows look backwards).
        prev = np.searchsorted(exit_, idx[out], side="left").astype(np.int64) - 1
        pp = np.maximum(prev, 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            # A one-row window gives x/0 in NAB (a crash there); count such FPs as far away.
            dist = np.abs(exit_[pp] - idx[out]) / (width[pp] - 1.0)
        dist = np.where(np.isfinite(dist), dist, np.inf)
        unweighted = np.where(prev >= 0, scaled_sigmoid(dist), -1.0)
        value[out] = unweighted * cost.fp_weight

    scorable = idx >= probation_length(n, probation_percent)
    scored_windows = np.unique(window[scorable & (window >= 0)])
    return FileSweep(
        name=name,
        scores=s,
        value=value,
        window=window,
        scorable=scorable,
        n_windows=len(windows),
        n_scored_windows=len(scored_windows),
        cost=cost,
    )


@dataclass(frozen=True)
class ThresholdCurve:
    """Corpus score for every distinct threshold, highest threshold first.

    Row ``j`` is the score when every scorable row with anomaly score ``>= threshold[j]`` is a
    detection; row 0 detects nothing. Counts are of rows (NAB's TP/FP/FN/TN columns).
    """

    threshold: FloatArray
    score: FloatArray
    tp: IntArray
    fp: IntArray
    fn: IntArray
    tn: IntArray

    @property
    def best(self) -> int:
        """Index of the best score; ties go to the higher threshold (NAB's stable sort)."""
        return int(np.argmax(self.score))


def _segmented_running_min(group: IntArray, key: IntArray) -> IntArray:
    """Running minimum of ``key`` restarting at each new ``group`` (``group`` sorted, keys >= 0)."""
    if len(key) == 0:
        return key.copy()
    big = int(key.max()) + 1
    # Later groups are shifted below every earlier key, so the running min restarts there.
    shifted = key - group * big
    return np.minimum.accumulate(shifted) + group * big


def sweep_thresholds(files: Sequence[FileSweep]) -> ThresholdCurve:
    """Score every distinct threshold over all ``files`` jointly (one sort, cumulative sums)."""
    if not files:
        raise DataError("no files to score")
    fn_weight = files[0].cost.fn_weight
    s_parts, v_parts, w_parts, pos_parts = [], [], [], []
    offset_w = 0
    offset_pos = 0
    for f in files:
        m = f.scorable
        s_parts.append(f.scores[m])
        v_parts.append(f.value[m])
        w = f.window[m]
        w_parts.append(np.where(w >= 0, w + offset_w, -1))
        pos_parts.append(np.flatnonzero(m).astype(np.int64) + offset_pos)
        offset_w += max(f.n_windows, 1)
        offset_pos += len(f.scores)
    s = np.concatenate(s_parts)
    v = np.concatenate(v_parts)
    w = np.concatenate(w_parts).astype(np.int64)
    pos = np.concatenate(pos_parts)
    n = len(s)
    n_scored_windows = sum(f.n_scored_windows for f in files)
    base = -fn_weight * n_scored_windows

    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    w_sorted = w[order]
    v_sorted = v[order]
    in_win = w_sorted >= 0

    delta = np.where(in_win, 0.0, v_sorted)
    # Inside windows a detection changes the score only when it is the earliest detection of
    # its window so far; the window is then worth max(-fnWeight, value of earliest row).
    rank = np.flatnonzero(in_win).astype(np.int64)
    if len(rank):
        grp = w_sorted[rank]
        by_group = np.lexsort((rank, grp))
        g = grp[by_group]
        r = rank[by_group]
        p = pos[order][r]
        earliest_pos = _segmented_running_min(g, p)
        # Value of the earliest detected row: look it up through its position.
        value_at_pos = np.empty(int(pos.max()) + 1 if len(pos) else 0, dtype=np.float64)
        value_at_pos[pos] = v
        after = np.maximum(-fn_weight, value_at_pos[earliest_pos])
        before = np.empty_like(after)
        before[0] = -fn_weight
        before[1:] = after[:-1]
        first_of_group = np.ones(len(g), dtype=bool)
        first_of_group[1:] = g[1:] != g[:-1]
        before[first_of_group] = -fn_weight
        delta[r] = after - before
    total = base + np.cumsum(delta)

    ends = np.flatnonzero(np.append(s_sorted[1:] != s_sorted[:-1], True)) if n else np.zeros(0, int)
    tp_cum = np.cumsum(in_win)
    fp_cum = np.cumsum(~in_win)
    n_in = int(in_win.sum())
    n_out = n - n_in
    start = max(START_THRESHOLD, float(np.nextafter(s_sorted[0], np.inf))) if n else START_THRESHOLD
    tp = np.concatenate([[0], tp_cum[ends]]).astype(np.int64)
    fp = np.concatenate([[0], fp_cum[ends]]).astype(np.int64)
    return ThresholdCurve(
        threshold=np.concatenate([[start], s_sorted[ends]]).astype(np.float64),
        score=np.concatenate([[base], total[ends]]).astype(np.float64),
        tp=tp,
        fp=fp,
        fn=n_in - tp,
        tn=n_out - fp,
    )


@dataclass(frozen=True)
class FileScore:
    """Raw NAB score of one file at one threshold, with its row counts."""

    name: str
    score: float
    tp: int
    tn: int
    fp: int
    fn: int
    total: int


def score_at_threshold(f: FileSweep, threshold: float) -> FileScore:
    """Raw NAB score of one file when rows with anomaly score ``>= threshold`` are detections."""
    detected = f.scorable & (f.scores >= threshold)
    in_win = f.window >= 0
    fp_mask = detected & ~in_win
    tp_mask = detected & in_win
    score = float(f.value[fp_mask].sum())
    # Rows are in time order, so the first hit per window is its earliest detection.
    hit_windows, first = np.unique(f.window[tp_mask], return_index=True)
    tp_values = f.value[np.flatnonzero(tp_mask)[first]]
    score += float(np.maximum(-f.cost.fn_weight, tp_values).sum())
    score -= f.cost.fn_weight * (f.n_scored_windows - len(hit_windows))
    n_in = int((f.scorable & in_win).sum())
    n_out = int((f.scorable & ~in_win).sum())
    tp = int(tp_mask.sum())
    fp = int(fp_mask.sum())
    return FileScore(f.name, score, tp, n_out - fp, fp, n_in - tp, n_in + n_out)


def null_score(files: Iterable[FileSweep]) -> float:
    """Score of the detector that never fires: ``-fnWeight`` per scored window."""
    return -sum(f.cost.fn_weight * f.n_scored_windows for f in files)


def perfect_score(files: Iterable[FileSweep]) -> float:
    """Score of the detector that fires on the first row of every window: ``tpWeight`` each."""
    return sum(f.cost.tp_weight * f.n_windows for f in files)


@dataclass(frozen=True)
class CorpusScore:
    """NAB result of one detector under one profile.

    ``threshold``/``raw``/``normalized`` are at the threshold used for scoring: the one given to
    :func:`score_corpus` when there is one (NAB's ``--score`` step with stored thresholds), else
    the optimised one. ``optimized_*`` are always from the full threshold sweep.
    """

    profile: str
    threshold: float
    raw: float
    null: float
    perfect: float
    normalized: float
    optimized_threshold: float
    optimized_raw: float
    optimized_normalized: float
    threshold_given: bool = False
    files: list[FileScore] = field(default_factory=list)

    @property
    def totals(self) -> dict[str, int]:
        """Summed row counts (NAB's Totals row)."""
        return {
            k: sum(getattr(f, k) for f in self.files) for k in ("tp", "tn", "fp", "fn", "total")
        }


def score_corpus(
    results: Mapping[str, tuple[IntArray, FloatArray]],
    windows: Mapping[str, Sequence[tuple[int, int]]],
    profiles: Mapping[str, CostMatrix],
    probation_percent: float = PROBATION_PERCENT,
    thresholds: Mapping[str, float] | None = None,
) -> dict[str, CorpusScore]:
    """Score a detector's results on a corpus under every profile.

    ``results`` maps a data file's key (``"<category>/<file>.csv"``) to its timestamps (int64 ms)
    and anomaly scores; ``windows`` maps the same keys to labelled windows. The threshold is
    optimised per profile over all files jointly, then each file is scored at it; a profile named
    in ``thresholds`` is scored at that threshold instead (the optimum is still reported).
    """
    if not results:
        raise DataError("no result files to score")
    missing = sorted(set(results) - set(windows))
    if missing:
        raise DataError(f"no labelled windows for {missing[0]} ({len(missing)} files unlabelled)")
    given = dict(thresholds or {})
    out: dict[str, CorpusScore] = {}
    for profile, cost in profiles.items():
        sweeps = [
            prepare_file(name, ts, sc, windows[name], cost, probation_percent)
            for name, (ts, sc) in sorted(results.items())
        ]
        null = null_score(sweeps)
        perfect = perfect_score(sweeps)
        if perfect == null:
            raise DataError("the corpus has no anomaly windows: NAB scores cannot be normalised")
        curve = sweep_thresholds(sweeps)
        j = curve.best
        best_threshold = float(curve.threshold[j])
        threshold = float(given.get(profile, best_threshold))
        per_file = [score_at_threshold(f, threshold) for f in sweeps]
        raw = float(sum(f.score for f in per_file))
        best_raw = float(curve.score[j])
        out[profile] = CorpusScore(
            profile=profile,
            threshold=threshold,
            raw=raw,
            null=null,
            perfect=perfect,
            normalized=100.0 * (raw - null) / (perfect - null),
            optimized_threshold=best_threshold,
            optimized_raw=best_raw,
            optimized_normalized=100.0 * (best_raw - null) / (perfect - null),
            threshold_given=profile in given,
            files=per_file,
        )
    return out


def read_score_tables(root: Path, detector: str, profiles: Iterable[str]) -> dict[str, float]:
    """Thresholds from NAB score tables ``<root>/<detector>_<profile>_scores.csv``, where present.

    NAB's published results were scored at thresholds stored in its ``config/thresholds.json``
    (found by an older optimiser); each score table repeats its threshold on every row.
    """
    out: dict[str, float] = {}
    for profile in profiles:
        path = root / f"{detector}_{profile}_scores.csv"
        if not path.is_file():
            continue
        try:
            df = pl.read_csv(path, columns=["Threshold"], infer_schema_length=0)
        except (pl.exceptions.PolarsError, OSError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"cannot read column Threshold: {first}", where=str(path)) from None
        values = df["Threshold"].drop_nulls().cast(pl.Float64, strict=False)
        if values.is_empty() or values.is_null().any() or values.n_unique() != 1:
            raise DataError(
                "expected one numeric threshold repeated in column Threshold", where=str(path)
            )
        out[profile] = float(values[0])
    return out


def read_result_file(path: Path) -> tuple[IntArray, FloatArray]:
    """Read one result CSV in NAB's layout (``timestamp``, ``anomaly_score``, ...)."""
    try:
        df = pl.read_csv(path, columns=["timestamp", "anomaly_score"], infer_schema_length=0)
    except FileNotFoundError:
        raise DataError("result file not found", where=str(path)) from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(
            f"cannot read columns timestamp, anomaly_score: {first}", where=str(path)
        ) from None
    ts = parse_timestamps(df["timestamp"].to_numpy(), where=f"{path}: column timestamp")
    raw = df["anomaly_score"].cast(pl.Float64, strict=False)
    bad = (raw.is_null() | raw.is_nan()).arg_true()
    if len(bad):
        i = int(bad[0])
        raise DataError(
            f"row {i}: anomaly_score {df['anomaly_score'][i]!r} is not a number",
            where=str(path),
        )
    return ts, raw.to_numpy().astype(np.float64)


def _infer_prefix(root: Path, files: Sequence[Path], known: set[str]) -> str:
    """The ``<detector>_`` prefix of result file names, chosen so the rest names a data file."""
    candidates = {root.name + "_"}
    for f in files[:5]:
        stem = f.name
        candidates.update(stem[: i + 1] for i, ch in enumerate(stem) if ch == "_")
    best, best_hits = "", 0
    for prefix in sorted(candidates, key=len):
        hits = sum(
            f.name.startswith(prefix) and f"{f.parent.name}/{f.name[len(prefix) :]}" in known
            for f in files
        )
        if hits > best_hits:
            best, best_hits = prefix, hits
    if not best_hits:
        raise DataError(
            "no file is named <category>/<prefix>_<data file>.csv for a labelled NAB data file",
            where=str(root),
        )
    return best


def read_results_dir(
    root: Path, known: set[str]
) -> tuple[str, dict[str, tuple[IntArray, FloatArray]]]:
    """Read a results folder in NAB's layout (``<category>/<prefix>_<file>.csv``).

    Returns the detector name (the prefix without its ``_``) and the results keyed by data file
    (``"<category>/<file>.csv"``). Files directly under ``root`` (score tables) are ignored.
    """
    if not root.is_dir():
        raise DataError("results folder not found", where=str(root))
    files = sorted(p for p in root.glob("*/*.csv") if p.is_file())
    if not files:
        raise DataError("no <category>/*.csv result files in the folder", where=str(root))
    prefix = _infer_prefix(root, files, known)
    results: dict[str, tuple[IntArray, FloatArray]] = {}
    for f in files:
        if not f.name.startswith(prefix):
            raise DataError(f"file name does not start with the prefix {prefix!r}", where=str(f))
        key = f"{f.parent.name}/{f.name[len(prefix) :]}"
        if key not in known:
            raise DataError(f"{key} is not a labelled NAB data file", where=str(f))
        results[key] = read_result_file(f)
    return prefix[:-1], results
