"""Streaming speed and state size of relia detectors, beside river's HalfSpaceTrees.

Usage::

    python bench/streaming.py                               # default detector, 10,000 series
    python bench/streaming.py --detector cusum --series 10000 --points 1000000
    python bench/streaming.py --no-river
    python bench/streaming.py --table-chunk 1000000     # update_many over the whole stream at once

The stream: ``--points`` points spread round-robin over ``--series`` series (point j goes to
series j mod S), so each series sees points/series points in order. Each series replays one NAB
data file (series s takes file s mod F from an offset that depends on s, cycling through it) with
timestamps at the file's median spacing, so values are real metrics, not noise. Building the
stream is not timed.

Steady state, not warm-up: before the timed stream every series is fed its first points untimed,
as many as the detectors' warm-up (``min_samples`` in the detector config; the largest over the
detectors run and ``default``, so separate runs share one stream), since a detector younger than
that skips most of its scoring work. The timed ``--points`` continue each series from there
(``points_per_series_untimed`` and ``points_per_series_timed`` in the JSON;
``youngest_series_at_timing`` checks it).

relia: one detector per series, held in a list; the timed loop is
``for s, t, v in stream: detectors[s].update(t, v)``, wall-clock, everything in the loop included,
after a warm-up of the kernel on a separate detector. Bytes per series are measured from the
checkpoints: ``len(relia.detect.checkpoint.pack(det.state_dict()))`` of every series after the
run (mean and max); live Python memory per detector (tracemalloc, while creating them) is reported
beside it.

relia ``update_many`` (an extra row and JSON field ``update_many`` for detectors with a
``relia.detect.batched.DetectorTable``, as the engine's shards use): the same stream, the same
series, fed to one table in calls of ``--table-chunk`` points (default: ``--series``, one point
per series per call, like one engine tick); timed per call including the series id -> row lookup,
after the loop is compiled on a separate table. The checkpoints of every series are then compared
with the per-detector run's (``same_checkpoints_as_update``: the two paths computed the same
state, byte for byte).

river: ``preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=...)``, one model per series,
``score_one`` then ``learn_one`` per point (the same score-then-learn order as relia). A default
HalfSpaceTrees holds 10 trees of 511 nodes (about 1.1 MB of Python objects), so 10,000 of them do
not fit a small machine: river runs on the first ``--river-series`` series of the same stream,
with the same untimed warm-up and the same timed points per series (``same_stream``), and then,
since HalfSpaceTrees returns 0 without walking its trees until its first window (250 points) is
full, once more on those models after that window (``steady_state``). The JSON says exactly
what was measured; the ratio is relia points/s over river points/s.

One core, as ``bench/throughput.py`` (thread counts 1, pinned to the first CPU). Prints a table,
merges into ``--out`` (``bench/results/streaming.json``) without mixing runs: the river block and
the ratios to it are this run's or gone, and other detectors' rows stay only when measured on the
same stream. The last stdout line is the JSON.
"""

from __future__ import annotations

import os

# Thread pools of one, before NumPy/Numba are imported (as bench/throughput.py; only as a script).
if __name__ == "__main__":
    for _var in (
        "NUMBA_NUM_THREADS",
        "OMP_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "POLARS_MAX_THREADS",
    ):
        os.environ[_var] = "1"

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import tracemalloc  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import nab  # noqa: E402
import outfile  # noqa: E402
import relia.detect  # noqa: E402
import throughput  # noqa: E402
from relia.detect.checkpoint import pack  # noqa: E402
from relia.errors import ReliaError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "bench/results/streaming.json"
#: Issue 3, item 5: one core sustains this many update() calls per second over 10,000 series ...
TARGET_POINTS_PER_S = 200_000
#: ... with at most this many checkpoint bytes per series.
TARGET_BYTES_PER_SERIES = 2048
#: Points a default HalfSpaceTrees learns before its scores are anything but 0.
HST_WINDOW = 250


@dataclass(frozen=True)
class Stream:
    """A round-robin stream as plain Python lists (what a per-point loop iterates fastest)."""

    series: int
    sid: list[int]
    ts: list[int]
    value: list[float]

    def __len__(self) -> int:
        return len(self.sid)


def build_stream(
    files: Sequence[throughput.Series], n_series: int, n_points: int, *, skip: int = 0
) -> Stream:
    """``n_points`` points round-robin over ``n_series`` series replaying the NAB files.

    ``skip`` starts every series that many of its own points later (to continue a stream).
    """
    lengths = np.array([len(v) for _, _, v in files], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    values = np.concatenate([v for _, _, v in files])
    t0 = np.array([int(t[0]) for _, t, _ in files], dtype=np.int64)
    step = np.array(
        [int(np.median(np.diff(t))) if len(t) > 1 else 60_000 for _, t, _ in files],
        dtype=np.int64,
    )
    step = np.maximum(step, 1)
    j = np.arange(n_points, dtype=np.int64)
    sid = j % n_series
    k = j // n_series + skip
    f = sid % len(files)
    # Series sharing a file start at different places in it, so they are not copies.
    offset = (sid // len(files)) * 997
    idx = starts[f] + (offset + k) % lengths[f]
    ts = t0[f] + k * step[f]
    return Stream(n_series, sid.tolist(), ts.tolist(), values[idx].tolist())


def warmup_points(name: str) -> int:
    """Points a detector learns before it scores in earnest: its config's ``min_samples`` (the
    largest among an ensemble's members; 0 when it has none)."""

    def largest(node: Any) -> int:
        if isinstance(node, dict) and isinstance(node.get("name"), str) and "params" in node:
            # An ensemble member: its own default unless its params set one.
            params = node["params"] if isinstance(node["params"], dict) else {}
            own = params.get("min_samples")
            return own if isinstance(own, int) else warmup_points(node["name"])
        if isinstance(node, dict):
            own = node.get("min_samples")
            inner = max((largest(v) for v in node.values()), default=0)
            return max(own if isinstance(own, int) else 0, inner)
        if isinstance(node, list):
            return max((largest(v) for v in node), default=0)
        return 0

    return largest(throughput.describe_detector(name)["config"])


def run_relia(
    name: str, warm: Stream, stream: Stream, table_chunk: int | None = None
) -> dict[str, Any]:
    """Time ``update`` over ``stream`` with one detector per series, each first fed its points in
    ``warm`` untimed (so the timed stretch is steady state, not warm-up); measure state size."""
    throughput.warm_up(name)
    kernel = relia.detect.create(name)
    for i in range(64):
        kernel.update(i * 60_000, float(i % 5))

    gc.collect()
    tracemalloc.start()
    before, _ = tracemalloc.get_traced_memory()
    detectors = [relia.detect.create(name) for _ in range(stream.series)]
    after, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    for s, t, v in zip(warm.sid, warm.ts, warm.value, strict=True):
        detectors[s].update(t, v)
    youngest = min(d.n_seen for d in detectors)

    sid, ts, value = stream.sid, stream.ts, stream.value
    gc.collect()
    t0 = time.perf_counter()
    for s, t, v in zip(sid, ts, value, strict=True):
        detectors[s].update(t, v)
    seconds = time.perf_counter() - t0

    t1 = time.perf_counter()
    blobs = [pack(d.state_dict()) for d in detectors]
    pack_s = time.perf_counter() - t1
    sizes = np.array([len(b) for b in blobs])
    state_bytes = np.array([sum(a.nbytes for a in d._state.values()) for d in detectors])
    pps = len(stream) / seconds
    mean_bytes = float(sizes.mean())
    many = run_table(name, warm, stream, table_chunk or stream.series, blobs)
    row = {
        **throughput.describe_detector(name),
        "series": stream.series,
        "points": len(stream),
        "points_per_series": len(stream) / stream.series,
        "points_per_series_untimed": len(warm) // stream.series,
        "points_per_series_timed": len(stream) / stream.series,
        "warmup_min_samples": warmup_points(name),
        "youngest_series_at_timing": youngest,
        "seconds": round(seconds, 4),
        "points_per_s": round(pps, 1),
        "us_per_point": round(1e6 * seconds / len(stream), 3),
        "checkpoint_bytes_per_series_mean": round(mean_bytes, 1),
        "checkpoint_bytes_per_series_max": int(sizes.max()),
        "state_array_bytes_per_series_mean": round(float(state_bytes.mean()), 1),
        "live_bytes_per_series_tracemalloc": round((after - before) / stream.series, 1),
        "checkpoint_all_s": round(pack_s, 4),
        "target_points_per_s": TARGET_POINTS_PER_S,
        "target_bytes_per_series": TARGET_BYTES_PER_SERIES,
        "meets_target": bool(pps >= TARGET_POINTS_PER_S and sizes.max() <= TARGET_BYTES_PER_SERIES),
    }
    if many is not None:
        many["ratio_vs_update"] = round(many["points_per_s"] / pps, 2)
        row["update_many"] = many
    return row


def run_table(
    name: str, warm: Stream, stream: Stream, chunk: int, blobs: list[bytes]
) -> dict[str, Any] | None:
    """Time ``DetectorTable.update_many`` over ``stream`` in calls of ``chunk`` points, after
    ``warm`` fed the same way untimed; ``None`` for a detector without a table. ``blobs`` are
    the per-detector run's checkpoints."""
    from relia.detect.batched import table_for

    proto = relia.detect.create(name)
    if table_for(proto) is None:
        return None
    kernel = table_for(proto)
    assert kernel is not None
    kernel.update_many(np.zeros(64, np.int64), np.arange(64) * 60_000, np.arange(64) % 5.0)

    table = table_for(proto)
    assert table is not None

    def arrays(part: Stream) -> tuple[Any, Any, Any]:
        return (
            np.array(part.sid, np.int64),
            np.array(part.ts, np.int64),
            np.array(part.value, np.float64),
        )

    sid, ts, value = arrays(warm)
    for a in range(0, len(sid), chunk):
        table.update_many(sid[a : a + chunk], ts[a : a + chunk], value[a : a + chunk])
    sid, ts, value = arrays(stream)
    gc.collect()
    t0 = time.perf_counter()
    for a in range(0, len(sid), chunk):
        table.update_many(sid[a : a + chunk], ts[a : a + chunk], value[a : a + chunk])
    seconds = time.perf_counter() - t0
    same = all(table.checkpoint(s) == b for s, b in enumerate(blobs))
    pps = len(sid) / seconds
    return {
        "what": (
            f"DetectorTable.update_many over the same stream in calls of {chunk:,} points, "
            "series id -> row lookup included, after the same untimed warm-up"
        ),
        "chunk": chunk,
        "calls": -(-len(sid) // chunk),
        "seconds": round(seconds, 4),
        "points_per_s": round(pps, 1),
        "us_per_point": round(1e6 * seconds / len(sid), 3),
        "state_array_bytes_per_series": sum(a.nbytes for a in proto._initial_state().values()),
        "same_checkpoints_as_update": same,
        "meets_target": bool(pps >= TARGET_POINTS_PER_S),
    }


def _river_model(seed: int) -> Any:
    from river import anomaly, preprocessing

    return preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed=seed)


def _river_loop(models: list[Any], stream: Stream) -> float:
    t0 = time.perf_counter()
    for s, v in zip(stream.sid, stream.value, strict=True):
        m = models[s]
        x = {"value": v}
        m.score_one(x)
        m.learn_one(x)
    return time.perf_counter() - t0


def run_river(
    files: Sequence[throughput.Series],
    n_series: int,
    points_per_series: int,
    seed: int,
    warmup: int,
    run_at: str,
) -> dict[str, Any]:
    """river's MinMaxScaler | HalfSpaceTrees on the first ``n_series`` series of the stream:
    the same ``warmup`` points per series untimed as relia, then the same timed stretch."""
    import river

    n_points = n_series * points_per_series
    _river_model(seed)  # import river's submodules before measuring memory
    # Memory and build time of a model: HalfSpaceTrees builds its trees on the first learn_one.
    sample = min(n_series, 20)
    gc.collect()
    tracemalloc.start()
    probe = [_river_model(seed + s) for s in range(sample)]
    for i, m in enumerate(probe):
        m.learn_one({"value": float(i)})
    live, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del probe
    gc.collect()
    t0 = time.perf_counter()
    probe = [_river_model(seed + s) for s in range(sample)]
    for i, m in enumerate(probe):
        m.learn_one({"value": float(i)})
    build_s = time.perf_counter() - t0
    del probe
    gc.collect()
    models = [_river_model(seed + s) for s in range(n_series)]

    if warmup:
        _river_loop(models, build_stream(files, n_series, n_series * warmup))
    same = build_stream(files, n_series, n_points, skip=warmup)
    gc.collect()
    same_s = _river_loop(models, same)

    # Past HalfSpaceTrees' first window every score walks the trees: feed the models up to it
    # (untimed), then time the next points_per_series points of each series.
    done = warmup + points_per_series
    if done < HST_WINDOW:
        fill = build_stream(files, n_series, n_series * (HST_WINDOW - done), skip=done)
        _river_loop(models, fill)
        done = HST_WINDOW
    steady = build_stream(files, n_series, n_points, skip=done)
    gc.collect()
    steady_s = _river_loop(models, steady)
    return {
        "version": getattr(river, "__version__", "unknown"),
        "model": f"preprocessing.MinMaxScaler() | anomaly.HalfSpaceTrees(seed={seed}+series)",
        "per_point": "score_one then learn_one",
        "run_at": run_at,
        "series": n_series,
        "points_per_series": points_per_series,
        "points_per_series_untimed": warmup,
        "points_per_series_timed": points_per_series,
        "points": n_points,
        "live_bytes_per_model_tracemalloc": round(live / sample, 1),
        "build_s_per_model": round(build_s / sample, 6),
        "note": (
            "same_stream is timed on exactly relia's timed points, after the same untimed "
            "warm-up (trees built then); steady_state is the per-point cost once the first "
            "window is full and every score walks the trees, the fairer comparison, and the "
            "one the headline ratio uses"
        ),
        "same_stream": {
            "what": (
                f"series 0..{n_series - 1} of the relia stream, points {warmup}.."
                f"{warmup + points_per_series - 1} of each after points 0..{warmup - 1} "
                "untimed, round-robin (the same values and order as relia on those series)"
            ),
            "seconds": round(same_s, 4),
            "points_per_s": round(n_points / same_s, 1),
        },
        "steady_state": {
            "what": (
                f"the same models continued: each series' points {done}.."
                f"{done + points_per_series - 1} (first {HST_WINDOW}-point window full, so every"
                " score walks the trees)"
            ),
            "seconds": round(steady_s, 4),
            "points_per_s": round(n_points / steady_s, 1),
        },
    }


def print_table(console: Console, rows: dict[str, dict[str, Any]], riv: dict[str, Any]) -> None:
    table = Table(title="Streaming update() over many series (one core, round-robin)")
    for col in ("model", "series", "points", "points/s", "µs/point", "bytes/series", "target"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for name, r in rows.items():
        table.add_row(
            f"relia {name}",
            f"{r['series']:,}",
            f"{r['points']:,}",
            f"{r['points_per_s']:,.0f}",
            f"{r['us_per_point']:.2f}",
            f"{r['checkpoint_bytes_per_series_mean']:,.0f} (max "
            f"{r['checkpoint_bytes_per_series_max']:,})",
            "ok" if r["meets_target"] else "MISS",
        )
        m = r.get("update_many")
        if m:
            table.add_row(
                f"relia {name} update_many",
                f"{r['series']:,}",
                f"{r['points']:,}",
                f"{m['points_per_s']:,.0f}",
                f"{m['us_per_point']:.2f}",
                "same checkpoints" if m["same_checkpoints_as_update"] else "CHECKPOINTS DIFFER",
                "ok" if m["meets_target"] else "MISS",
            )
    if riv:
        for phase in ("steady_state", "same_stream"):
            p = riv[phase]
            table.add_row(
                f"river HST ({phase.replace('_', ' ')})",
                f"{riv['series']:,}",
                f"{riv['points']:,}",
                f"{p['points_per_s']:,.0f}",
                f"{1e6 / p['points_per_s']:.2f}",
                f"~{riv['live_bytes_per_model_tracemalloc']:,.0f} live",
                "-",
            )
    console.print(table)
    for name, r in rows.items():
        for phase, ratio in r.get("ratio_vs_river", {}).items():
            console.print(
                f"relia {name} / river ({phase.replace('_', ' ')}): {ratio:,.1f}x points/s",
                highlight=False,
            )
        m = r.get("update_many")
        if m:
            console.print(
                f"relia {name} update_many / update(): {m['ratio_vs_update']:,.1f}x points/s "
                f"(calls of {m['chunk']:,} points)",
                highlight=False,
            )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument(
        "--detector",
        action="append",
        default=[],
        metavar="NAME",
        help="registered detector (repeatable; 'all' for every one); default: default",
    )
    ap.add_argument("--series", type=int, default=10_000, help="series in the stream")
    ap.add_argument("--points", type=int, default=1_000_000, help="points in the stream")
    ap.add_argument("--data", type=Path, default=throughput.DEFAULT_DATA, help="NAB folder")
    ap.add_argument(
        "--river",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also measure river's MinMaxScaler | HalfSpaceTrees",
    )
    ap.add_argument(
        "--river-series",
        type=int,
        default=1000,
        help="series river runs on (about 1.1 MB per model); capped at --series",
    )
    ap.add_argument("--seed", type=int, default=42, help="HalfSpaceTrees seed of series 0")
    ap.add_argument(
        "--table-chunk",
        type=int,
        default=None,
        metavar="N",
        help="points per update_many call of the table row (default: --series, one tick)",
    )
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file to write (merged)")
    args = ap.parse_args(argv)
    if args.table_chunk is not None and args.table_chunk < 1:
        ap.error("--table-chunk must be at least 1")
    for opt in ("series", "points", "river_series"):
        if getattr(args, opt) < 1:
            ap.error(f"--{opt.replace('_', '-')} must be at least 1")
    if args.points < args.series:
        ap.error("--points must be at least --series (every series gets a point)")
    return args


#: What a row must share with this run to stay in the merged JSON: rows measured on another
#: stream are not comparable, and are dropped rather than shown beside this run's.
SETUP_KEYS = ("series", "points", "points_per_series_untimed")


def merge_out(out: Path, doc: dict[str, Any]) -> dict[str, Any]:
    """Merge ``doc`` into the JSON at ``out`` without mixing runs.

    Rows of detectors not run this time are kept only when measured on the same stream (same
    series, points and untimed warm-up), and lose their ratios to river; the river block is
    this run's or none (a ratio "measured in the same run" must be).
    """
    old = outfile.read_merge_base(out)
    old.pop("river", None)
    setup = {k: doc[k] for k in SETUP_KEYS}
    kept: dict[str, Any] = {}
    for name, row in (old.get("detectors") or {}).items():
        if name in doc["detectors"] or not isinstance(row, dict):
            continue
        # Rows from before the untimed warm-up existed had none.
        row_setup = {k: row.get(k, 0 if k == "points_per_series_untimed" else None) for k in setup}
        if row_setup != setup:
            print(f"dropped {name}'s old row from {out}: another stream", file=sys.stderr)
            continue
        row = {k: v for k, v in row.items() if k != "ratio_vs_river"}
        if isinstance(row.get("update_many"), dict):
            row["update_many"] = {
                k: v for k, v in row["update_many"].items() if k != "ratio_vs_river"
            }
        kept[name] = row
    rows = {**kept, **doc["detectors"]}
    merged = {**old, **doc, "detectors": dict(sorted(rows.items()))}
    outfile.write_json(out, merged)
    return merged


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit code (2 on a user error)."""
    args = parse_args(argv)
    out_console = Console() if sys.stdout.isatty() else Console(width=132)
    err_console = Console(stderr=True)
    try:
        outfile.read_merge_base(args.out)
        if args.river:
            import river  # noqa: F401  (missing: say so before the long relia run, not after)
        names = throughput.resolve_names(args.detector)
        files = throughput.load_series(args.data)
        # Every series is fed past the warm-up of every detector run (and river) untimed; never
        # less than default's, so rows from separate runs share one stream and can be merged.
        warmup = max(warmup_points(name) for name in [*names, "default"])
        run_at = datetime.now(UTC).isoformat(timespec="seconds")
        cores, before = throughput.pin_one_core()
        try:
            warm = build_stream(files, args.series, args.series * warmup)
            stream = build_stream(files, args.series, args.points, skip=warmup)
            rows: dict[str, dict[str, Any]] = {}
            for name in names:
                err_console.print(
                    f"streaming {name} over {args.series:,} series ({warmup} points each "
                    "untimed first) ...",
                    highlight=False,
                )
                rows[name] = run_relia(name, warm, stream, args.table_chunk)
                rows[name]["run_at"] = run_at
            riv: dict[str, Any] = {}
            if args.river:
                n = min(args.river_series, args.series)
                err_console.print(f"river on {n:,} series ...", highlight=False)
                riv = run_river(files, n, args.points // args.series, args.seed, warmup, run_at)
                for row in rows.values():
                    row["ratio_vs_river"] = {
                        phase: round(row["points_per_s"] / riv[phase]["points_per_s"], 2)
                        for phase in ("steady_state", "same_stream")
                    }
                    if "update_many" in row:
                        many = row["update_many"]
                        many["ratio_vs_river"] = {
                            phase: round(many["points_per_s"] / riv[phase]["points_per_s"], 2)
                            for phase in ("steady_state", "same_stream")
                        }
        finally:
            throughput.unpin(before)
        doc: dict[str, Any] = {
            "benchmark": "streaming",
            "data": str(args.data.resolve()),
            "machine": nab.machine_info(),
            "single_core": cores,
            "run_at": run_at,
            "git_commit": nab.git_commit(),
            "series": args.series,
            "points": args.points,
            "points_per_series_untimed": warmup,
            "points_per_series_timed": args.points / args.series,
            "stream": (
                f"{args.points:,} points round-robin over {args.series:,} series, timed, after "
                f"{warmup} points per series untimed (the detectors' warm-up, min_samples); "
                f"series s replays NAB file s mod {len(files)} from offset 997*(s div "
                f"{len(files)}), cycled, at the file's median spacing"
            ),
            "timing": (
                "wall-clock of the loop `for s, t, v in stream: detectors[s].update(t, v)` over "
                "the timed points only, kernel warmed up first and every series already "
                "min_samples old; bytes/series = len(checkpoint.pack(det.state_dict())) after "
                "the run; update_many: the same stream through one DetectorTable in calls of "
                "`chunk` points (see the row's update_many.what)"
            ),
            "detectors": rows,
        }
        if riv:
            doc["river"] = riv
        merged = merge_out(args.out, doc)
    except ReliaError as exc:
        # Plain print: rich would wrap the one-line message at the terminal width.
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ImportError as exc:
        print(
            f"error: {exc.name} is not installed (pip install river, or pass --no-river)",
            file=sys.stderr,
        )
        return 2
    print_table(out_console, rows, riv)
    out_console.print(f"wrote {args.out}", highlight=False)
    sys.stdout.flush()
    print(json.dumps(merged, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
