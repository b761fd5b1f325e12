"""Batch speed of relia detectors: points per second of ``Detector.score`` over the NAB corpus.

Usage::

    python bench/throughput.py                          # the default detector, 3 repeats
    python bench/throughput.py --detector default --detector cusum --repeat 5
    python bench/throughput.py --detector all --data PATH

For each detector, every CSV file of the corpus is scored by a fresh detector
(``relia.detect.create(name).score(values, ts)``), one file after the other, on one core. The
timed region is the loop over the files: creating the detector and scoring (which includes every
model update); reading the CSVs happens before it. The detector is warmed up first on a small
array so Numba compilation (or loading its on-disk cache) is not timed; that warm-up time is
reported apart, and so is the compilation proper: the first score in a fresh process with an
empty Numba cache (``--no-cold-compile`` skips it). points/s = total points / total seconds of
one pass; the pass is repeated ``--repeat`` times and the best and median are reported.

One core: NUMBA_NUM_THREADS, OMP_NUM_THREADS and the BLAS thread counts are set to 1 before NumPy
or Numba is imported, and the process is pinned to the first CPU it may run on
(``os.sched_setaffinity``) where the platform has it; the JSON says which.

Data (``--data``, default ``../shared/data/nab`` next to the repository, as ``bench/nab.py``):
a NAB folder with ``data/<category>/<file>.csv``, or any folder of such CSV files (columns
``timestamp``, ``value``). Prints a table, merges its rows into ``--out``
(``bench/results/throughput.json``, rows of other detectors kept); the last stdout line is the
JSON on one line.
"""

from __future__ import annotations

import os

# Before NumPy/Numba are imported: they size their thread pools at import. Only when run as a
# script: a process importing this module (the tests) keeps its own settings.
_THREAD_VARS = (
    "NUMBA_NUM_THREADS",
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "POLARS_MAX_THREADS",
)
if __name__ == "__main__":
    for _var in _THREAD_VARS:
        os.environ[_var] = "1"

import argparse  # noqa: E402
import gc  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
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
import relia.detect  # noqa: E402
from relia.errors import DataError, ReliaError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = nab.DEFAULT_DATA
DEFAULT_OUT = REPO / "bench/results/throughput.json"
WARMUP_POINTS = 256
#: Issue 3, item 4: the default detector scores at least this many points per second on one core.
TARGET_POINTS_PER_S = 1_000_000

Series = tuple[str, np.ndarray[Any, Any], np.ndarray[Any, Any]]


def pin_one_core() -> tuple[dict[str, Any], set[int] | None]:
    """Pin this process to the first CPU it may use; (what was done, for the JSON; the CPUs it
    could use before, to give to :func:`unpin`)."""
    info: dict[str, Any] = {var: os.environ.get(var) for var in _THREAD_VARS}
    if hasattr(os, "sched_setaffinity") and hasattr(os, "sched_getaffinity"):
        before = set(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {min(before)})
        info["affinity"] = sorted(os.sched_getaffinity(0))
        info["pinned"] = True
        return info, before
    info["affinity"] = None
    info["pinned"] = False
    return info, None


def unpin(before: set[int] | None) -> None:
    """Give back the CPUs :func:`pin_one_core` took away (for callers that go on running)."""
    if before is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, before)


def find_csv_files(root: Path) -> list[tuple[str, Path]]:
    """The data files under a NAB folder (its ``data/``) or a plain folder, sorted by key."""
    base = root / "data" if (root / "data").is_dir() else root
    if not base.is_dir():
        raise DataError(
            f"no such folder; expected a NAB folder with data/ ({nab.DOWNLOAD_HINT})",
            where=str(root),
        )
    files = sorted(p for p in base.rglob("*.csv") if p.is_file())
    if not files:
        raise DataError(f"no CSV files found ({nab.DOWNLOAD_HINT})", where=str(base))
    return [(p.relative_to(base).as_posix(), p) for p in files]


def load_series(root: Path) -> list[Series]:
    """Every data file as (key, int64 ms timestamps, float64 values)."""
    series: list[Series] = []
    for key, path in find_csv_files(root):
        _, ts, values = nab.read_data_file(path)
        series.append((key, np.ascontiguousarray(ts), np.ascontiguousarray(values)))
    return series


def describe_detector(name: str) -> dict[str, Any]:
    """What a registered name stands for now (``default`` moves as the project improves)."""
    det = relia.detect.create(name)
    cls = type(det)
    return {"class": f"{cls.__module__}:{cls.__qualname__}", "config": det.config.model_dump()}


def warm_up(name: str, points: int = WARMUP_POINTS) -> float:
    """Score a small synthetic series once so JIT compilation is out of the timed region;
    returns the seconds it took (compilation or loading Numba's on-disk cache included)."""
    t = np.arange(points, dtype=np.int64) * 60_000
    x = np.sin(np.arange(points) / 5.0) + 0.01 * np.arange(points)
    t0 = time.perf_counter()
    relia.detect.create(name).score(x, t)
    return time.perf_counter() - t0


_COLD_SCRIPT = """
import sys, time
import numpy as np
import relia.detect
n = int(sys.argv[2])
t = np.arange(n, dtype=np.int64) * 60_000
x = np.sin(np.arange(n) / 5.0) + 0.01 * np.arange(n)
det = relia.detect.create(sys.argv[1])
t0 = time.perf_counter()
det.score(x, t)
print(time.perf_counter() - t0)
"""


def cold_compile(name: str, points: int = WARMUP_POINTS) -> float | None:
    """Seconds of the first ``score`` in a fresh process with an empty Numba cache: the
    compilation a first run on a new machine pays (None if the subprocess failed)."""
    with tempfile.TemporaryDirectory(prefix="relia-numba-cache-") as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, **{v: "1" for v in _THREAD_VARS}}
        proc = subprocess.run(
            [sys.executable, "-c", _COLD_SCRIPT, name, str(points)],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    try:
        return float(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return None


def one_pass(name: str, series: Sequence[Series]) -> tuple[float, float]:
    """Score every series with a fresh detector; (seconds of the whole pass, seconds in score)."""
    in_score = 0.0
    t0 = time.perf_counter()
    for _, ts, values in series:
        det = relia.detect.create(name)
        t1 = time.perf_counter()
        det.score(values, ts)
        in_score += time.perf_counter() - t1
    return time.perf_counter() - t0, in_score


def measure(
    name: str, series: Sequence[Series], repeat: int, *, cold: bool = True
) -> dict[str, Any]:
    """The JSON row of one detector: compile and warm-up times, points/s best and median."""
    cold_s = cold_compile(name) if cold else None
    warmup_s = warm_up(name)
    points = sum(len(v) for _, _, v in series)
    totals: list[float] = []
    scoring: list[float] = []
    for _ in range(repeat):
        gc.collect()
        total, in_score = one_pass(name, series)
        totals.append(total)
        scoring.append(in_score)
    best = min(totals)
    median = statistics.median(totals)
    row: dict[str, Any] = {
        **describe_detector(name),
        "files": len(series),
        "points": points,
        "repeat": repeat,
        "seconds": [round(s, 6) for s in totals],
        "seconds_best": round(best, 6),
        "seconds_median": round(median, 6),
        "points_per_s_best": round(points / best, 1),
        "points_per_s_median": round(points / median, 1),
        "score_only_points_per_s_best": round(points / min(scoring), 1),
        "warmup_s": round(warmup_s, 4),
        "cold_compile_s": None if cold_s is None else round(cold_s, 4),
        "run_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    if name == "default":
        row["target_points_per_s"] = TARGET_POINTS_PER_S
        row["meets_target"] = row["points_per_s_median"] >= TARGET_POINTS_PER_S
    return row


def print_table(console: Console, rows: dict[str, dict[str, Any]]) -> None:
    table = Table(title="Batch throughput over the NAB corpus (one core, fresh detector per file)")
    for col in ("detector", "files", "points", "best s", "median s"):
        table.add_column(col, justify="left" if col == "detector" else "right")
    for col in ("points/s best", "points/s median", "compile s", "target"):
        table.add_column(col, justify="right")
    for name, r in rows.items():
        target = "-"
        if "meets_target" in r:
            mark = "ok" if r["meets_target"] else "MISS"
            target = f"{mark} (≥{r['target_points_per_s']:,})"
        table.add_row(
            name,
            str(r["files"]),
            f"{r['points']:,}",
            f"{r['seconds_best']:.4f}",
            f"{r['seconds_median']:.4f}",
            f"{r['points_per_s_best']:,.0f}",
            f"{r['points_per_s_median']:,.0f}",
            "-" if r.get("cold_compile_s") is None else f"{r['cold_compile_s']:.2f}",
            target,
        )
    console.print(table)


def merge_out(out: Path, doc: dict[str, Any]) -> dict[str, Any]:
    """Merge ``doc`` into the JSON at ``out``, keeping rows of detectors not run this time."""
    return nab.merge_out(out, doc)


def resolve_names(requested: Sequence[str]) -> list[str]:
    """Expand ``all`` and check every name before any work; none given means ``default``."""
    return nab.resolve_names(requested or ["default"])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument(
        "--detector",
        action="append",
        default=[],
        metavar="NAME",
        help="registered detector (repeatable); 'all' runs every one; default: default",
    )
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="NAB folder or CSV folder")
    ap.add_argument("--repeat", type=int, default=3, help="passes over the corpus per detector")
    ap.add_argument(
        "--cold-compile",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also time the first score in a fresh process with an empty Numba cache",
    )
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file to write (merged)")
    args = ap.parse_args(argv)
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit code (2 on a user error)."""
    args = parse_args(argv)
    out_console = Console() if sys.stdout.isatty() else Console(width=132)
    err_console = Console(stderr=True)
    try:
        outfile.read_merge_base(args.out)
        names = resolve_names(args.detector)
        series = load_series(args.data)
        cores, before = pin_one_core()
        try:
            rows: dict[str, dict[str, Any]] = {}
            for name in names:
                err_console.print(f"timing {name} ...", highlight=False)
                rows[name] = measure(name, series, args.repeat, cold=args.cold_compile)
        finally:
            unpin(before)
        doc = {
            "benchmark": "throughput",
            "data": str(args.data.resolve()),
            "machine": nab.machine_info(),
            "single_core": cores,
            "timing": (
                "points_per_s = total points / wall-clock seconds of one pass over all files "
                "(fresh detector per file: create + score, all model updates included; CSV "
                "reading excluded); best and median over the repeats. Not timed: warmup_s = "
                f"first score of a {WARMUP_POINTS}-point series in this process (Numba cache "
                "load or compile; near 0 when a detector sharing the kernel ran before); "
                "cold_compile_s = the same first score in a fresh process with an empty Numba "
                "cache (NUMBA_CACHE_DIR), i.e. the JIT compilation itself"
            ),
            "detectors": rows,
        }
        merged = merge_out(args.out, doc)
    except ReliaError as exc:
        # Plain print: rich would wrap the one-line message at the terminal width.
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_table(out_console, rows)
    out_console.print(f"wrote {args.out}", highlight=False)
    sys.stdout.flush()
    print(json.dumps(merged, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
