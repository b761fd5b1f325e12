"""Scale-out of relia on Ray: batch detection over many series, and streaming with many series.

Usage::

    python bench/scale.py                 # 20,000 series x 10,000 points; 1,000,000 streamed
    python bench/scale.py --quick         # a small smoke run (seconds plus Ray's start)
    python bench/scale.py --series 40000 --points 10000 --stream-series 2000000

**Batch.** A synthetic fleet (``--series`` x ``--points``, one point a minute, fixed seed) is
generated once into ``--data`` (default ``/tmp/relia-scale-data``, outside the repository;
reused while its manifest matches) as Parquet shards of ``--shard-series`` series each, wide
layout (a ``timestamp`` column and one column per series). Each series is an operational shape:
latency (log-normal noise), request rate (Poisson counts), utilization (bounded %), or queue
depth (AR(1) noise), each with a daily cycle, plus a few spikes, a level shift in some, and a
gap (NaN run) in a few. The timed region is one call of
:func:`relia.engine.batch.detect_many` over every shard: read each file, score each series with
a fresh ``--detector`` (``score_detail``), threshold it, and collect the compact per-series
results in the driver. It runs with the local executor (in this process), then on Ray with 1
worker and with 2 workers (one shard per Ray call; task scheduling and result transfer
included). Ray's start and the actors' start and kernel warm-up are timed apart (``start_s``);
so is the local warm-up. Before the first timed run every shard is read once, so all three runs
find the files in the page cache. The three runs must find the same anomalies; the JSON says
whether they did.

**Streaming.** ``--stream-series`` series (hashed int64 ids) held across ``--stream-actors`` Ray
actors by :class:`relia.engine.ray_executor.RayExecutor`; round-robin batches of
``--batch-points`` points, one point per series per round, one minute apart, for
``min_samples`` rounds untimed (the detector's warm-up), then ``TIMED_ROUNDS`` rounds timed,
every series past its warm-up. Timed: the ``process`` calls of those rounds (making each round's
values is not). Reported: points/s, checkpoint bytes per series,
and actor RSS growth per series (after a small warm-up batch, to the end).

One core per worker: NUMBA_NUM_THREADS, OMP_NUM_THREADS, the BLAS thread counts and
POLARS_MAX_THREADS are 1 in this process (set before NumPy is imported, when run as a script)
and in every Ray worker. Prints a table; writes ``--out`` (``bench/results/scale.json``); the
last stdout line is the JSON on one line.
"""

from __future__ import annotations

import os

_THREAD_VARS = (
    "NUMBA_NUM_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "POLARS_MAX_THREADS",
)
if __name__ == "__main__":
    # Before NumPy/Numba/Polars are imported: they size their thread pools at import. A local
    # Ray started by this process inherits them too.
    for _var in _THREAD_VARS:
        os.environ[_var] = "1"

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import nab  # noqa: E402
import outfile  # noqa: E402
import throughput  # noqa: E402
from relia.engine.batch import (  # noqa: E402
    RayBatchRunner,
    SeriesInput,
    SeriesResult,
    WideParquet,
    detect_many,
)
from relia.errors import ConfigError, DataError, ReliaError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "bench/results/scale.json"
DEFAULT_DATA = Path("/tmp/relia-scale-data")
#: Version of the generator: bump it when the data it makes changes, so caches are redone.
GENERATOR = 1
T0_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
STEP_MS = 60_000
DAY = 1440  # points per day at one a minute
#: Issue 7, item 2: 2 Ray workers at least this many times faster than 1 on a 2-core machine.
TARGET_SPEEDUP = 1.8
#: Rounds timed after the warm-up in the streaming part (every series one point a round).
TIMED_ROUNDS = 16
QUICK = {"series": 200, "points": 2_000, "stream_series": 20_000, "shard_series": 50}


# -- data ----------------------------------------------------------------------------------------


def _shard_values(rng: np.random.Generator, n_series: int, points: int) -> np.ndarray:
    """(points, n_series) float64: one operational shape per column, with events."""
    t = np.arange(points, dtype=np.float64)[:, None]
    kind = rng.integers(0, 4, n_series)
    level = rng.uniform(5, 500, n_series)
    amp = rng.uniform(0.05, 0.5, n_series) * level
    phase = rng.uniform(0, 2 * np.pi, n_series)
    daily = np.sin(2 * np.pi * t / DAY + phase)
    base = level + amp * daily
    noise_sd = rng.uniform(0.02, 0.1, n_series) * level
    out = np.empty((points, n_series))
    # latency: multiplicative log-normal noise on a daily curve
    m = kind == 0
    out[:, m] = base[:, m] * rng.lognormal(0.0, 0.08, (points, int(m.sum())))
    # request rate: Poisson counts around the daily curve
    m = kind == 1
    out[:, m] = rng.poisson(np.maximum(base[:, m], 0.1)).astype(np.float64)
    # utilization: percent, bounded
    m = kind == 2
    pct = 20 + 60 * (base[:, m] - base[:, m].min(0)) / np.ptp(base[:, m], 0).clip(1e-9)
    out[:, m] = np.clip(pct + rng.normal(0, 3, pct.shape), 0, 100)
    # queue depth: AR(1) noise around the curve (a slow wander, as queues do)
    m = kind == 3
    k = int(m.sum())
    if k:
        e = rng.normal(0, 1, (points, k)) * noise_sd[m]
        ar = np.empty_like(e)
        ar[0] = e[0]
        for i in range(1, points):  # one row of k series at a time: vectorized across series
            ar[i] = 0.9 * ar[i - 1] + e[i]
        out[:, m] = np.maximum(base[:, m] + ar, 0)
    scale = np.maximum(np.std(out[: min(points, DAY)], axis=0), 1e-6)
    # a few spikes per series (5-15 sigma, up or down)
    n_spikes = rng.poisson(1.5, n_series)
    cols = np.repeat(np.arange(n_series), n_spikes)
    rows = rng.integers(points // 5, points, len(cols))
    signs = rng.choice([-1.0, 1.0], len(cols), p=[0.25, 0.75])
    out[rows, cols] += signs * rng.uniform(5, 15, len(cols)) * scale[cols]
    # a level shift in 30% of the series (3-8 sigma), from a random point on
    shifted = np.flatnonzero(rng.random(n_series) < 0.3)
    at = rng.integers(points // 4, points, len(shifted))
    jump = rng.choice([-1.0, 1.0], len(shifted)) * rng.uniform(3, 8, len(shifted))
    out[:, shifted] += (t >= at[None, :]) * (jump * scale[shifted])[None, :]
    # a gap (missing samples) in 5%
    gapped = np.flatnonzero(rng.random(n_series) < 0.05)
    for c in gapped.tolist():
        a = int(rng.integers(0, max(1, points - 60)))
        out[a : a + int(rng.integers(5, 60)), c] = np.nan
    return np.round(out, 3)


def ensure_data(root: Path, series: int, points: int, shard_series: int, seed: int) -> list[Path]:
    """The shard files of this size and seed under ``root``, generated when missing."""
    import polars as pl

    folder = root / f"wide-{series}x{points}-per{shard_series}-seed{seed}-v{GENERATOR}"
    manifest = folder / "manifest.json"
    n_shards = -(-series // shard_series)
    files = [folder / f"shard-{i:05d}.parquet" for i in range(n_shards)]
    want = {"series": series, "points": points, "shard_series": shard_series, "seed": seed}
    try:
        if json.loads(manifest.read_text()) == want and all(f.is_file() for f in files):
            return files
    except (OSError, ValueError):
        pass
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create: {exc.strerror}", where=str(folder)) from None
    ts = T0_MS + STEP_MS * np.arange(points, dtype=np.int64)
    for i, f in enumerate(files):
        rng = np.random.default_rng([seed, i])
        n = min(shard_series, series - i * shard_series)
        vals = _shard_values(rng, n, points)
        cols = {f"s{i * shard_series + j:07d}": vals[:, j] for j in range(n)}
        tmp = f.with_suffix(".tmp")
        pl.DataFrame({"timestamp": ts, **cols}).write_parquet(tmp)
        tmp.replace(f)
    manifest.write_text(json.dumps(want))
    return files


# -- batch ---------------------------------------------------------------------------------------


def _fingerprint(results: list[SeriesResult]) -> list[tuple[str, int, int, int]]:
    return [(r.name, r.points, r.anomalous_points, len(r.windows)) for r in results]


def _row(
    label: str, workers: int | None, seconds: float, points: int, **extra: Any
) -> dict[str, Any]:
    return {
        "executor": label,
        "workers": workers,
        "seconds": round(seconds, 4),
        "points_per_s": round(points / seconds, 1),
        **extra,
    }


def _cpu(cpu_s: float, seconds: float, workers: int) -> dict[str, float]:
    """CPU seconds the scoring processes used, and their share of ``workers`` whole cores over
    the run: well under 1 means they waited for cores that other processes held."""
    return {"cpu_s": round(cpu_s, 3), "cpu_share": round(cpu_s / (seconds * workers), 3)}


def run_batch(
    files: list[Path], detector: str, worker_counts: Sequence[int], console: Console
) -> dict[str, Any]:
    """Time local, then Ray with each worker count, over the same shard files."""
    import ray

    from relia.detect import create

    inputs: list[SeriesInput] = [WideParquet(f) for f in files]
    # Page cache: every run reads the files from memory, the first one no different.
    data_bytes = sum(len(f.read_bytes()) for f in files)

    t0 = time.perf_counter()
    create(detector).score_detail(np.sin(np.arange(256) / 5.0))
    warm = time.perf_counter() - t0
    console.print("batch: local executor ...", highlight=False)
    gc.collect()
    c0 = time.process_time()
    t0 = time.perf_counter()
    local = detect_many(inputs, detector, executor="local")
    local_s = time.perf_counter() - t0
    cpu = time.process_time() - c0
    points = sum(r.points for r in local)
    rows = [_row("local", None, local_s, points, start_s=round(warm, 4), **_cpu(cpu, local_s, 1))]
    reference = _fingerprint(local)
    identical = True

    started_ray = False
    t0 = time.perf_counter()
    if not ray.is_initialized():
        ray.init(
            num_cpus=os.cpu_count() or 1,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
        started_ray = True
    ray_start = time.perf_counter() - t0
    try:
        for w in worker_counts:
            console.print(f"batch: ray, {w} worker(s) ...", highlight=False)
            t0 = time.perf_counter()
            with RayBatchRunner(detector, workers=w) as runner:
                start_s = time.perf_counter() - t0
                gc.collect()
                c0s = runner.cpu_seconds()
                t0 = time.perf_counter()
                res = detect_many(inputs, detector, executor="ray", runner=runner, chunk_size=1)
                secs = time.perf_counter() - t0
                cpu = sum(runner.cpu_seconds()) - sum(c0s)
            same = _fingerprint(res) == reference
            identical = identical and same
            rows.append(
                _row(
                    "ray",
                    w,
                    secs,
                    points,
                    start_s=round(start_s, 4),
                    same=same,
                    **_cpu(cpu, secs, w),
                )
            )
    finally:
        if started_ray:
            ray.shutdown()
    by_w = {r["workers"]: r["seconds"] for r in rows if r["executor"] == "ray"}
    speedup = {
        f"ray{w}_over_ray1": round(by_w[1] / s, 3) for w, s in by_w.items() if 1 in by_w and w != 1
    }
    speedup.update({f"ray{w}_over_local": round(local_s / s, 3) for w, s in by_w.items()})
    best = max(by_w) if by_w else None
    out: dict[str, Any] = {
        "series": len(local),
        "points_per_series": points // max(1, len(local)),
        "points": points,
        "shards": len(files),
        "data_bytes": data_bytes,
        "anomalous_points": sum(r.anomalous_points for r in local),
        "windows": sum(len(r.windows) for r in local),
        "series_with_anomalies": sum(1 for r in local if r.windows),
        "identical_results": identical,
        "ray_start_s": round(ray_start, 3),
        "runs": rows,
        "speedup": speedup,
        "target_speedup_2_over_1": TARGET_SPEEDUP,
    }
    if best == 2 and 1 in by_w:
        out["meets_target"] = speedup["ray2_over_ray1"] >= TARGET_SPEEDUP
    return out


# -- streaming -----------------------------------------------------------------------------------


def run_streaming(
    n_series: int,
    actors: int | None,
    batch_points: int,
    detector: str,
    seed: int,
    console: Console,
    timed_rounds: int = TIMED_ROUNDS,
) -> dict[str, Any]:
    """Feed round-robin batches through a RayExecutor: the detector's warm-up untimed, then
    ``timed_rounds`` rounds timed, every series past its warm-up (a young series skips most of
    the scoring work, so timing warm-up would measure an easier phase than relia's steady
    state)."""
    import ray

    from relia.detect import create
    from relia.engine.ray_executor import RayExecutor
    from relia.signals import MetricBatch

    warmup = int(getattr(create(detector).config, "min_samples", 64))
    rounds = warmup + timed_rounds
    rng = np.random.default_rng(seed)
    # Hashed ids, as relia's series ids are; the spare ones feed the warm-up batch.
    pool = np.unique(rng.integers(1, 2**62, n_series + n_series // 100 + 8192, dtype=np.int64))
    pool = rng.permutation(pool)
    ids, spare = pool[:n_series], pool[n_series:]
    level = rng.uniform(5, 500, n_series)
    amp = rng.uniform(0.05, 0.5, n_series) * level
    phase = rng.uniform(0, 2 * np.pi, n_series)
    noise = rng.normal(0, 1, n_series) * 0.05 * level

    started_ray = False
    t0 = time.perf_counter()
    if not ray.is_initialized():
        ray.init(
            num_cpus=os.cpu_count() or 1,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
        started_ray = True
    try:
        ex = RayExecutor(detector, n_actors=actors)
        try:
            start_s = time.perf_counter() - t0
            # Warm-up: compile (or load) the kernel in every actor on a few series of their own.
            warm_ids = spare[: 16 * ex.n_shards]
            ex.process(
                MetricBatch(
                    warm_ids, np.full(len(warm_ids), T0_MS, np.int64), np.ones(len(warm_ids))
                )
            )
            before = ex.actor_stats()
            console.print(
                f"streaming: {n_series:,} series x {rounds} rounds over {ex.n_shards} actors "
                f"({warmup} untimed, {timed_rounds} timed) ...",
                highlight=False,
            )
            in_process = 0.0
            points = 0
            calls = 0
            for r in range(rounds):
                ts_r = T0_MS + (r + 1) * STEP_MS
                vals = level + amp * np.sin(2 * np.pi * r / DAY + phase) + np.roll(noise, r)
                ts = np.full(batch_points, ts_r, np.int64)
                timed = r >= warmup  # every series is past its warm-up from this round on
                for a in range(0, n_series, batch_points):
                    b = min(n_series, a + batch_points)
                    batch = MetricBatch(ids[a:b], ts[: b - a], vals[a:b])
                    t1 = time.perf_counter()
                    scored = ex.process(batch)
                    if timed:
                        in_process += time.perf_counter() - t1
                        points += len(scored)
                        calls += 1
            held = ex.n_series()
            after = ex.actor_stats(checkpoint_bytes=True)
        finally:
            ex.close()
    finally:
        if started_ray:
            ray.shutdown()
    streamed = held - len(warm_ids)
    rss_growth = sum(a["rss_bytes"] for a in after) - sum(b["rss_bytes"] for b in before)
    ckpt = sum(a.get("checkpoint_bytes", 0) for a in after)
    return {
        "series": streamed,
        "series_held": held,
        "actors": len(after),
        "series_per_actor": [a["series"] for a in after],
        "rounds": rounds,
        "warmup_points": warmup,
        "untimed_rounds": warmup,
        "timed_rounds": timed_rounds,
        "points": points,
        "batch_points": batch_points,
        "process_calls": calls,
        "seconds": round(in_process, 4),
        "points_per_s": round(points / in_process, 1),
        "start_s": round(start_s, 3),
        "checkpoint_bytes_per_series": round(ckpt / held, 1),
        "rss_growth_bytes_per_series": round(rss_growth / max(1, streamed), 1),
        "actor_rss_bytes": [a["rss_bytes"] for a in after],
    }


# -- report --------------------------------------------------------------------------------------


def print_tables(console: Console, doc: dict[str, Any]) -> None:
    b = doc["batch"]
    table = Table(
        title=f"Batch detection: {b['series']:,} series x {b['points_per_series']:,} points "
        f"({doc['detector']}, {doc['machine']['cores']} cores)"
    )
    for col in (
        "executor",
        "workers",
        "seconds",
        "points/s",
        "per worker",
        "vs 1 worker",
        "cpu share",
        "start s",
    ):
        table.add_column(col, justify="left" if col == "executor" else "right")
    by_w = {r["workers"]: r for r in b["runs"] if r["executor"] == "ray"}
    for r in b["runs"]:
        w = r["workers"]
        per = r["points_per_s"] / (w or 1)
        vs = "-" if w is None or 1 not in by_w else f"{by_w[1]['seconds'] / r['seconds']:.2f}x"
        table.add_row(
            r["executor"], "-" if w is None else str(w), f"{r['seconds']:.2f}",
            f"{r['points_per_s']:,.0f}", f"{per:,.0f}", vs, f"{r['cpu_share']:.2f}",
            f"{r['start_s']:.2f}",
        )  # fmt: skip
    console.print(table)
    verdict = "same anomalies in every run" if b["identical_results"] else "RESULTS DIFFER"
    console.print(
        f"{b['anomalous_points']:,} anomalous points in {b['windows']:,} windows; {verdict}",
        highlight=False,
    )
    s = doc.get("streaming")
    if s:
        t = Table(title=f"Streaming: {s['series']:,} series held across {s['actors']} Ray actors")
        for col in ("points", "seconds", "points/s", "ckpt B/series", "RSS B/series"):
            t.add_column(col, justify="right")
        t.add_row(
            f"{s['points']:,}", f"{s['seconds']:.2f}", f"{s['points_per_s']:,.0f}",
            f"{s['checkpoint_bytes_per_series']:,.0f}", f"{s['rss_growth_bytes_per_series']:,.0f}",
        )  # fmt: skip
        console.print(t)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--series", type=int, default=20_000, help="batch: series (default 20,000)")
    ap.add_argument("--points", type=int, default=10_000, help="batch: points per series")
    ap.add_argument("--shard-series", type=int, default=250, help="batch: series per Parquet file")
    ap.add_argument("--workers", default="1,2", help="batch: Ray worker counts (default 1,2)")
    ap.add_argument("--stream-series", type=int, default=1_000_000, help="streaming: series")
    ap.add_argument("--stream-actors", type=int, default=None, help="default: cluster CPUs")
    ap.add_argument("--batch-points", type=int, default=100_000, help="streaming: points a call")
    ap.add_argument("--no-streaming", action="store_true", help="skip the streaming part")
    ap.add_argument("--detector", default="default", help="registered detector")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="a small smoke run: " + str(QUICK))
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="cache of generated data")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file to write")
    args = ap.parse_args(argv)
    if args.quick:
        for k, v in QUICK.items():
            if getattr(args, k) == ap.get_default(k):
                setattr(args, k, v)
    try:
        args.worker_counts = [int(w) for w in str(args.workers).split(",") if w.strip()]
    except ValueError:
        ap.error(f"--workers takes counts like 1,2; got {args.workers!r}")
    for name in ("series", "points", "shard_series", "stream_series", "batch_points"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    if not args.worker_counts or min(args.worker_counts) < 1:
        ap.error("--workers takes counts of at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit code (2 on a user error)."""
    args = parse_args(argv)
    # The box may be shared: the load average around the run says how quiet it was.
    load_before = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    out_console = Console() if sys.stdout.isatty() else Console(width=132)
    err_console = Console(stderr=True)
    try:
        outfile.check_writable(args.out)
        detector = throughput.describe_detector(args.detector)
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError("bench/scale.py needs Ray: pip install 'relia[ray]'") from None
        t0 = time.perf_counter()
        files = ensure_data(args.data, args.series, args.points, args.shard_series, args.seed)
        data_s = time.perf_counter() - t0
        batch = run_batch(files, args.detector, args.worker_counts, err_console)
        batch["data"] = str(files[0].parent)
        batch["data_prepare_s"] = round(data_s, 2)
        streaming = None
        if not args.no_streaming:
            streaming = run_streaming(
                args.stream_series, args.stream_actors, args.batch_points, args.detector,
                args.seed, err_console,
            )  # fmt: skip
    except ReliaError as exc:
        print(f"relia: error: {exc}", file=sys.stderr)
        return 2
    doc: dict[str, Any] = {
        "benchmark": "scale",
        "detector": args.detector,
        # What the name stood for, and the code measured: ``default`` moves as relia improves.
        **detector,
        "git_commit": nab.git_commit(),
        "quick": args.quick,
        "machine": nab.machine_info(),
        "threads": {v: os.environ.get(v) for v in _THREAD_VARS},
        "worker_threads": "every thread pool 1 thread in each Ray worker (runtime_env env_vars)",
        "load_before": load_before,
        "timing": (
            "batch: wall-clock of one detect_many call over all shards (read Parquet, score every "
            "series with a fresh detector, threshold, collect compact results in the driver; Ray "
            "task scheduling and result transfer included; data generation, Ray start and actor "
            "start/warm-up excluded and reported as start_s). cpu_share: CPU seconds of the "
            "scoring processes / (seconds x workers), under 1 when other processes held the "
            "cores. streaming: sum of the wall-clock of "
            "RayExecutor.process calls; rss growth from after a warm-up batch to the end"
        ),
        "batch": batch,
        "streaming": streaming,
        "run_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if hasattr(os, "getloadavg"):
        doc["load_after"] = list(os.getloadavg())
    try:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=2) + "\n")
    except OSError as exc:
        print(f"relia: error: {args.out}: cannot write: {exc.strerror}", file=sys.stderr)
        return 2
    print_tables(out_console, doc)
    out_console.print(f"wrote {args.out}", highlight=False)
    sys.stdout.flush()
    print(json.dumps(doc, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
