"""Speed of SLO evaluation: many SLOs over a long window from stored per-step aggregates.

Usage::

    python bench/slo.py                                 # 10,000 SLOs, 30 days at 1 minute
    python bench/slo.py --slos 1000 --days 7 --repeat 5
    python bench/slo.py --threads 1 --numpy-slos 0      # one thread, skip the NumPy comparison

The data stands for what the store holds per SLO: one bad and one total event count per minute
(float32, NaN where no data; 10,000 x 43,200 x 2 arrays are 3.5 GB, float64 would be 7 GB),
generated with a seeded generator and not timed. It varies like a fleet: traffic from 0.05 to
5,000 requests a minute (log-uniform) with a daily cycle and noise; objectives 99 to 99.95 %;
most SLOs well inside their budget, some burning slowly for days, a few in a fast burn for the
last hours; gaps of no data; a share budgeted by timeslices (1- or 5-minute slices) or ratio
timeslices; a share with calendar windows (the window then starts at the period boundary and is
shorter than 30 days); a share with a low-traffic guard (``min_events``). Every SLO has the SRE
Workbook's four burn-rate alerts for 30 days (:func:`relia.slo.burnrate.default_alert_windows`).

Timed: one call of :func:`relia.slo.budget.evaluate` over all SLOs, i.e. SLI and error budget
(total, spent, remaining) over each SLO window, burn rates over the eight alert windows and the
current hour, which alerts fire (with the low-traffic guard) and the time to exhaustion; the
parameter arrays are built before. Repeated ``--repeat`` times, best and median reported, after
one call on a few rows that loads (or compiles) the Numba kernel. The kernel runs rows in
parallel on ``--threads`` threads (default: all cores); a second row times it on one thread.
``--numpy-slos`` rows are also evaluated with the plain NumPy path (cumulative sums) to show
what the compiled kernel buys; its seconds are scaled to the full count in the table.

Prints a table, merges its rows into ``--out`` (``bench/results/slo.json``); the last stdout
line is the JSON on one line.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numba
import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

import nab  # noqa: E402
import outfile  # noqa: E402
from relia.errors import ReliaError  # noqa: E402
from relia.slo import budget as B  # noqa: E402
from relia.slo.burnrate import default_alert_windows  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "bench/results/slo.json"
#: Issue 4, item 7: 10,000 SLOs over 30 days at one minute evaluate in under this.
TARGET_S = 2.0
STEP_S = 60
OBJECTIVES = np.array([99.0, 99.5, 99.9, 99.95])


def generate(
    error_budget: np.ndarray, n_steps: int, seed: int, chunk: int = 500
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded per-minute (bad, total) float32 counts, ``(n, n_steps)`` each, for SLOs with
    these error budgets (see module doc)."""
    n = len(error_budget)
    rng = np.random.default_rng(seed)
    bad = np.empty((n, n_steps), np.float32)
    total = np.empty((n, n_steps), np.float32)
    minute = np.arange(n_steps, dtype=np.float32)
    daily = (1.0 + 0.6 * np.sin(2 * np.pi * minute / 1440.0)).astype(np.float32)
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        m = hi - lo
        level = np.exp(rng.uniform(np.log(0.05), np.log(5000.0), m)).astype(np.float32)
        lam = level[:, None] * daily[None, :]
        noise = rng.standard_normal((m, n_steps), dtype=np.float32)
        # Poisson-like counts, cheaply: a normal approximation rounded and floored at zero.
        tot = np.maximum(np.rint(lam + np.sqrt(lam) * noise), 0.0)
        # Error ratio per SLO: 5-90 % of its budget, so most SLOs keep theirs.
        base = (error_budget[lo:hi] * rng.uniform(0.05, 0.9, m)).astype(np.float32)
        ratio = np.broadcast_to(base[:, None], (m, n_steps)).copy()
        kind = rng.random(m)
        slow = kind < 0.1  # burning slowly: 2-4x over the last 4 days
        ratio[slow, -4 * 1440 :] *= rng.uniform(2, 4, slow.sum()).astype(np.float32)[:, None]
        fast = (kind >= 0.1) & (kind < 0.13)  # an incident: 5 % errors over the last 3 hours
        ratio[fast, -180:] = 0.05
        # Stochastic rounding keeps the expected number of bad events right at low traffic.
        u = rng.random((m, n_steps), dtype=np.float32)
        b = np.minimum(np.floor(tot * ratio + u), tot)
        gaps = rng.random((m, n_steps), dtype=np.float32) < 0.002  # no data here and there
        tot[gaps] = np.nan
        b[gaps] = np.nan
        total[lo:hi] = tot
        bad[lo:hi] = b
    return bad, total


def make_params(n: int, n_steps: int, seed: int) -> B.SloParams:
    """Parameters of ``n`` SLOs of 30 days: budgets, methods, windows, guards (module doc)."""
    rng = np.random.default_rng(seed + 1)
    windows = default_alert_windows(30 * 86400)
    objective = rng.choice(OBJECTIVES, n)
    method = rng.choice([0, 1, 2], n, p=[0.7, 0.2, 0.1]).astype(np.int64)
    slice_steps = np.where(method == 0, 1, rng.choice([1, 5], n)).astype(np.int64)
    window_steps = np.full(n, n_steps, np.int64)
    calendar = rng.random(n) < 0.2  # calendar windows: part of the period has gone by
    window_steps[calendar] = rng.integers(60, n_steps, calendar.sum())
    min_events = np.where(rng.random(n) < 0.1, 100.0, 0.0)
    shape = (n, len(windows))
    return B.SloParams(
        error_budget=(100.0 - objective) / 100.0,
        period_s=np.full(n, 30 * 86400.0),
        window_steps=window_steps,
        method=method,
        slice_steps=slice_steps,
        slice_target=rng.choice([0.95, 0.99], n),
        min_events=min_events,
        long_steps=np.broadcast_to([w.long_s // STEP_S for w in windows], shape).copy(),
        short_steps=np.broadcast_to([w.short_s // STEP_S for w in windows], shape).copy(),
        burn_threshold=np.broadcast_to([w.burn_rate for w in windows], shape).astype(float),
    )


def _subset(params: B.SloParams, rows: slice) -> B.SloParams:
    return B.SloParams(**{k: getattr(params, k)[rows] for k in params.__dataclass_fields__})


def time_evaluate(
    bad: np.ndarray, total: np.ndarray, params: B.SloParams, repeat: int, engine: str
) -> tuple[list[float], B.BudgetResult]:
    """Seconds of each of ``repeat`` full evaluations, and the last result."""
    B.evaluate(bad[:4], total[:4], _subset(params, slice(0, 4)), step_s=STEP_S, engine=engine)  # type: ignore[arg-type]
    seconds: list[float] = []
    result = None
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        result = B.evaluate(bad, total, params, step_s=STEP_S, engine=engine)  # type: ignore[arg-type]
        seconds.append(time.perf_counter() - t0)
    assert result is not None
    return seconds, result


def _row(
    seconds: list[float], n: int, n_steps: int, threads: int | None, scale: float = 1.0
) -> dict[str, Any]:
    best, median = min(seconds), statistics.median(seconds)
    return {
        "slos": n,
        "steps": n_steps,
        "threads": threads,
        "repeat": len(seconds),
        "seconds": [round(s, 4) for s in seconds],
        "seconds_best": round(best, 4),
        "seconds_median": round(median, 4),
        "slos_per_s_median": round(n / median, 1),
        "steps_per_s_median": round(n * n_steps / median, 1),
        "seconds_scaled_to_all": round(median * scale, 3),
        "run_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _label(threads: int) -> str:
    return f"numba, {threads} thread{'s' if threads > 1 else ''}"


def summarize(result: B.BudgetResult, params: B.SloParams) -> dict[str, Any]:
    """What the evaluation found, to show it did real work (and for a sanity check)."""
    firing = result.firing
    page = firing[:, :2].any(axis=1)
    ticket = firing[:, 2:].any(axis=1)
    return {
        "slos_paging": int(page.sum()),
        "slos_ticketing": int(ticket.sum()),
        "slos_budget_exhausted": int(np.sum(result.remaining_ratio <= 0)),
        "slos_no_data": int(np.sum(np.isnan(result.sli))),
        "median_sli": round(float(np.nanmedian(result.sli)), 6),
        "by_method": {
            name: int(np.sum(params.method == code))
            for name, code in (("occurrences", 0), ("timeslices", 1), ("ratio_timeslices", 2))
        },
    }


def merge_out(out: Path, doc: dict[str, Any]) -> dict[str, Any]:
    """Merge ``doc`` into the JSON at ``out``, keeping rows (``runs``) not measured this time,
    as ``nab.merge_out`` keeps other detectors' rows."""
    old = outfile.read_merge_base(out)
    runs = dict(old.get("runs", {})) if isinstance(old.get("runs"), dict) else {}
    runs.update(doc["runs"])
    merged = {**old, **doc, "runs": runs}
    outfile.write_json(out, merged)
    return merged


def print_table(console: Console, doc: dict[str, Any]) -> None:
    n, days = doc["slos"], doc["days"]
    table = Table(title=f"SLO evaluation: {n:,} SLOs x {days:g} days at 1 minute")
    for col in ("run", "threads", "SLOs timed", "best s", "median s", f"s for {n:,}", "target"):
        table.add_column(col, justify="left" if col == "run" else "right")
    for name, r in doc["runs"].items():
        if r["slos"] != n and not name.startswith("numpy"):
            continue
        target = "-"
        if name.startswith("numba") and r["slos"] == n and doc["meets_target"] is not None:
            target = "ok" if r["seconds_median"] < doc["target_s"] else "MISS"
            target += f" (<{doc['target_s']:g} s)"
        table.add_row(
            name,
            str(r["threads"] or "-"),
            f"{r['slos']:,}",
            f"{r['seconds_best']:.3f}",
            f"{r['seconds_median']:.3f}",
            f"{r['seconds_scaled_to_all']:.3f}",
            target,
        )
    console.print(table)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--slos", type=int, default=10_000, help="number of SLOs")
    ap.add_argument("--days", type=float, default=30.0, help="window length in days")
    ap.add_argument("--repeat", type=int, default=3, help="timed evaluations per run")
    ap.add_argument("--threads", type=int, default=None, help="Numba threads (default: all cores)")
    ap.add_argument(
        "--numpy-slos",
        type=int,
        default=500,
        help="SLOs also timed on the plain NumPy path (0: skip)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file to write (merged)")
    args = ap.parse_args(argv)
    if args.slos < 1:
        ap.error("--slos must be at least 1")
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    if not 60 <= args.days * 86400 <= 400 * 86400:
        ap.error("--days must be between one minute and 400 days")
    if args.threads is not None and not 1 <= args.threads <= numba.config.NUMBA_NUM_THREADS:
        ap.error(f"--threads must be between 1 and {numba.config.NUMBA_NUM_THREADS}")
    if args.numpy_slos < 0:
        ap.error("--numpy-slos must be at least 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit code."""
    args = parse_args(argv)
    out_console = Console() if sys.stdout.isatty() else Console(width=132)
    err_console = Console(stderr=True)
    try:
        outfile.read_merge_base(args.out)  # before generating gigabytes, not after
    except ReliaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    n, n_steps = args.slos, int(round(args.days * 1440))
    threads = args.threads or numba.config.NUMBA_NUM_THREADS
    err_console.print(f"generating {n:,} x {n_steps:,} per-minute counts ...", highlight=False)
    t0 = time.perf_counter()
    params = make_params(n, n_steps, args.seed)
    bad, total = generate(params.error_budget, n_steps, args.seed)
    gen_s = time.perf_counter() - t0
    runs: dict[str, dict[str, Any]] = {}
    before = numba.get_num_threads()
    summary: dict[str, Any] = {}
    try:
        for count in dict.fromkeys([threads, 1]):
            label = _label(count)
            numba.set_num_threads(count)
            err_console.print(f"timing {label} ...", highlight=False)
            seconds, result = time_evaluate(bad, total, params, args.repeat, "numba")
            runs[label] = _row(seconds, n, n_steps, count)
            if count == threads:
                summary = summarize(result, params)
    finally:
        numba.set_num_threads(before)
    if args.numpy_slos:
        m = min(args.numpy_slos, n)
        err_console.print(f"timing numpy on {m:,} SLOs ...", highlight=False)
        rows = slice(0, m)
        seconds, _ = time_evaluate(
            bad[rows], total[rows], _subset(params, rows), max(1, min(args.repeat, 2)), "numpy"
        )
        runs["numpy (cumulative sums)"] = _row(seconds, m, n_steps, None, scale=n / m)
    main_row = runs[_label(threads)]
    doc = {
        "benchmark": "slo",
        "machine": nab.machine_info(),
        "slos": n,
        "days": args.days,
        "steps": n_steps,
        "step_s": STEP_S,
        "seed": args.seed,
        "data": (
            "synthetic per-minute bad/total counts, float32 (NaN = no data), generated with "
            f"numpy's default_rng({args.seed}); see bench/slo.py; generation took "
            f"{gen_s:.1f} s (not timed)"
        ),
        "bytes_of_counts": int(bad.nbytes + total.nbytes),
        "timing": (
            "wall-clock of relia.slo.budget.evaluate over all SLOs: SLI and budget over each "
            "window, burn rates over 8 alert windows + the current hour, firing alerts (with "
            "min_events), time to exhaustion; Numba kernel loaded before; best and median of "
            "the repeats; numpy row: the same on the first --numpy-slos SLOs, scaled linearly"
        ),
        "target_s": TARGET_S,
        "meets_target": (
            main_row["seconds_median"] < TARGET_S if n >= 10_000 and args.days >= 30 else None
        ),
        "found": summary,
        "runs": runs,
    }
    try:
        merged = merge_out(args.out, doc)
    except ReliaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_table(out_console, merged)
    out_console.print(f"wrote {args.out}", highlight=False)
    sys.stdout.flush()
    print(json.dumps(merged, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
