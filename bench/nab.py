"""Numenta Anomaly Benchmark (NAB) harness: run relia detectors over the NAB corpus and score them.

Usage::

    python bench/nab.py --detector default            # one detector (repeatable)
    python bench/nab.py --detector all --jobs 4       # every registered detector
    python bench/nab.py --score-results DIR           # score a results folder in NAB's layout
                                                      # (JSON written only with --out FILE)

Each detector runs causally over each data file with one fresh detector per file and one
configuration for all files; its scores go to ``<results-dir>/<detector>/<category>/
<detector>_<file>.csv`` (columns timestamp, value, anomaly_score, label) and are scored with our
own NAB scorer (:mod:`nab_scoring`). A rich table goes to stdout, the JSON to ``--out``
(``bench/results/nab.json`` by default; with ``--score-results`` only where ``--out`` names a
file, so checking the scorer on another's results leaves the committed figures alone); the last
line on stdout is that JSON on one line. Progress goes to stderr.

Data (``--data``, default ``../shared/data/nab`` next to the repository) is a copy of numenta/NAB's
``data/``, ``labels/`` and ``config/`` folders (and optionally ``reference/final_results.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

import nab_scoring as ns  # noqa: E402
import outfile  # noqa: E402
import relia.detect  # noqa: E402
from relia.errors import DataError, ReliaError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared/data/nab"
DEFAULT_RESULTS = REPO / "bench/results/nab_results"
DEFAULT_OUT = REPO / "bench/results/nab.json"
WARMUP_POINTS = 64
TIMING_NOTE = (
    "points_per_s = points / seconds spent inside Detector.score (one fresh detector per file); "
    f"each detector is warmed up once per process on {WARMUP_POINTS} points before timing, so "
    "JIT compilation is not counted"
)
DOWNLOAD_HINT = (
    "download data/, labels/ and config/ of https://github.com/numenta/NAB "
    "(e.g. git clone --depth 1 https://github.com/numenta/NAB) and pass that folder as --data"
)


@dataclass(frozen=True)
class Corpus:
    """The NAB corpus on disk: data files by key ``<category>/<file>.csv``, windows, profiles."""

    root: Path
    files: dict[str, Path]
    windows: dict[str, list[tuple[int, int]]]
    profiles: dict[str, ns.CostMatrix]


def load_corpus(root: Path, *, need_data: bool = True) -> Corpus:
    """Find and read the NAB corpus under ``root``; say what to download when it is missing."""
    labels = root / "labels/combined_windows.json"
    profiles = root / "config/profiles.json"
    needed = [labels, profiles] + ([root / "data"] if need_data else [])
    missing = [p for p in needed if not p.exists()]
    if missing:
        raise DataError(
            f"NAB corpus incomplete ({missing[0]} is missing): {DOWNLOAD_HINT}", where=str(root)
        )
    windows = ns.load_windows(labels)
    files: dict[str, Path] = {}
    if need_data:
        for key in sorted(windows):
            path = root / "data" / key
            if not path.is_file():
                raise DataError(
                    f"data file {key} of the labels is missing: {DOWNLOAD_HINT}",
                    where=str(root / "data"),
                )
            files[key] = path
    return Corpus(root, files, windows, ns.load_profiles(profiles))


def read_data_file(path: Path) -> tuple[pl.DataFrame, np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """One NAB data file: its frame (timestamp text, value), int64 ms times, float64 values."""
    try:
        df = pl.read_csv(path, schema_overrides={"timestamp": pl.String})
    except (pl.exceptions.PolarsError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot read CSV: {first}", where=str(path)) from None
    for col in ("timestamp", "value"):
        if col not in df.columns:
            raise DataError(f"missing column {col!r} (has {df.columns})", where=str(path))
    ts = ns.parse_timestamps(df["timestamp"].to_numpy(), where=f"{path}: column timestamp")
    values = df["value"].cast(pl.Float64, strict=False)
    bad = values.is_null().arg_true()
    if len(bad) and df["value"][int(bad[0])] is not None:
        i = int(bad[0])
        raise DataError(f"row {i}: value {df['value'][i]!r} is not a number", where=str(path))
    # Empty cells stay missing values (NaN), which detectors handle.
    return df.select("timestamp", "value"), ts, values.fill_null(np.nan).to_numpy()


def window_labels(
    ts: np.ndarray[Any, Any], windows: Sequence[tuple[int, int]]
) -> np.ndarray[Any, Any]:
    """NAB's label column: 1 where the timestamp lies inside a window (inclusive), else 0."""
    label = np.zeros(len(ts), dtype=np.int8)
    for start, end in windows:
        label[(ts >= start) & (ts <= end)] = 1
    return label


_WARM: set[str] = set()


def _warm_up(name: str) -> None:
    if name in _WARM:
        return
    t = np.arange(WARMUP_POINTS, dtype=np.int64) * 60_000
    relia.detect.create(name).score(np.sin(np.arange(WARMUP_POINTS) / 5.0), t)
    _WARM.add(name)


def detect_file(
    name: str, key: str, path: Path, windows: list[tuple[int, int]], out_dir: Path
) -> tuple[str, np.ndarray[Any, Any], np.ndarray[Any, Any], float]:
    """Run a fresh detector over one data file, write its NAB result file; (key, ts, scores, s)."""
    _warm_up(name)
    frame, ts, values = read_data_file(path)
    det = relia.detect.create(name)
    t0 = time.perf_counter()
    scores = det.score(values, ts)
    seconds = time.perf_counter() - t0
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape != ts.shape or not np.all(np.isfinite(scores)):
        raise DataError(f"detector {name!r} returned non-finite or misshaped scores", where=key)
    category, file_name = key.split("/", 1)
    out = out_dir / name / category / f"{name}_{file_name}"
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.with_columns(
        pl.Series("anomaly_score", scores), pl.Series("label", window_labels(ts, windows))
    ).write_csv(out)
    return key, ts, scores, seconds


def run_detector(
    name: str, corpus: Corpus, results_dir: Path, jobs: int, progress: Progress
) -> tuple[dict[str, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]], int, float]:
    """Run one detector over the corpus; returns results by key, points and seconds in score."""
    task = progress.add_task(name, total=len(corpus.files))
    args = [
        (name, key, path, corpus.windows[key], results_dir) for key, path in corpus.files.items()
    ]
    results: dict[str, tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]] = {}
    seconds = 0.0
    if jobs <= 1:
        outputs = (detect_file(*a) for a in args)
        for key, ts, scores, sec in outputs:
            results[key] = (ts, scores)
            seconds += sec
            progress.advance(task)
    else:
        # spawn, not fork: the parent may hold Numba/BLAS threads.
        with ProcessPoolExecutor(max_workers=jobs, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(detect_file, *a) for a in args]
            for fut in futures:
                key, ts, scores, sec = fut.result()
                results[key] = (ts, scores)
                seconds += sec
                progress.advance(task)
    points = sum(len(ts) for ts, _ in results.values())
    return results, points, seconds


def machine_info() -> dict[str, Any]:
    """CPU model, core count and Python version of this machine."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def git_commit() -> str | None:
    """The checked-out commit (``+dirty`` with uncommitted changes), so results name the code
    they measured; ``None`` outside a git checkout."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty else head


def detector_row(scores: dict[str, ns.CorpusScore]) -> dict[str, Any]:
    """The JSON row of one detector (without timing)."""
    row: dict[str, Any] = {p: round(c.normalized, 4) for p, c in scores.items()}
    row["raw"] = {p: c.raw for p, c in scores.items()}
    row["thresholds"] = {p: c.threshold for p, c in scores.items()}
    row["threshold_source"] = (
        "given (score tables)" if any(c.threshold_given for c in scores.values()) else "optimized"
    )
    row["optimized"] = {
        p: {
            "score": round(c.optimized_normalized, 4),
            "threshold": c.optimized_threshold,
            "raw": c.optimized_raw,
        }
        for p, c in scores.items()
    }
    row["counts"] = {p: c.totals for p, c in scores.items()}
    return row


def load_reference(root: Path) -> dict[str, Any]:
    """Published scoreboard rows from ``reference/final_results.json`` (empty when absent)."""
    path = root / "reference/final_results.json"
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read JSON: {exc}", where=str(path)) from None
    return data if isinstance(data, dict) else {}


def resolve_names(requested: Sequence[str]) -> list[str]:
    """Expand ``all`` and check every name before any work (unknown names raise)."""
    names: list[str] = []
    for name in requested:
        for n in relia.detect.available() if name == "all" else [name]:
            relia.detect.describe(n)
            if n not in names:
                names.append(n)
    return names


def merge_out(out: Path, doc: dict[str, Any]) -> dict[str, Any]:
    """Merge ``doc`` into the JSON already at ``out``, keeping other detectors' rows (an
    unreadable ``out`` raises :class:`DataError` rather than losing them)."""
    old = outfile.read_merge_base(out)
    detectors = dict(old.get("detectors", {})) if isinstance(old.get("detectors"), dict) else {}
    detectors.update(doc["detectors"])
    merged = {**old, **doc, "detectors": dict(sorted(detectors.items()))}
    outfile.write_json(out, merged)
    return merged


def print_table(
    console: Console, rows: dict[str, dict[str, Any]], reference: dict[str, Any]
) -> None:
    """The result table: detector, the three normalized scores, points/s; then published rows."""
    table = Table(title="NAB scores (normalized; 100 = perfect, 0 = null detector)")
    table.add_column("detector")
    for p in ns.PROFILE_NAMES:
        table.add_column(p, justify="right")
    table.add_column("points/s", justify="right")
    for name, row in rows.items():
        pps = row.get("points_per_s")
        table.add_row(
            name,
            *(f"{row[p]:.2f}" if p in row else "-" for p in ns.PROFILE_NAMES),
            f"{pps:,.0f}" if pps else "-",
        )
    for name in ("ARTime", "numenta", "contextOSE", "earthgeckoSkyline", "knncad"):
        ref = reference.get(name)
        if isinstance(ref, dict):
            table.add_row(
                f"[dim]{name} (published)[/dim]",
                *(f"[dim]{ref[p]:.2f}[/dim]" if p in ref else "-" for p in ns.PROFILE_NAMES),
                "-",
            )
    console.print(table)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument(
        "--detector",
        action="append",
        default=[],
        metavar="NAME",
        help="registered detector to run (repeatable); 'all' runs every one",
    )
    ap.add_argument(
        "--data", type=Path, default=DEFAULT_DATA, help="NAB folder (data/, labels/, config/)"
    )
    ap.add_argument(
        "--results-dir",
        type=Path,
        default=DEFAULT_RESULTS,
        help="where result files go, in NAB's layout",
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="JSON file to write (merged); default bench/results/nab.json, but none with "
        "--score-results",
    )
    ap.add_argument(
        "--score-results",
        type=Path,
        metavar="DIR",
        help="score a results folder in NAB's layout (<category>/<prefix>_<file>.csv)",
    )
    ap.add_argument("--jobs", type=int, default=1, help="processes to run files in parallel")
    args = ap.parse_args(argv)
    if args.jobs < 1:
        ap.error("--jobs must be at least 1")
    if not args.detector and args.score_results is None:
        args.detector = ["default"]
    if args.out is None and args.score_results is None:
        # Scored results of another detector (Numenta's, to check the scorer) are not relia's
        # figures: they go into the committed results only where --out says so.
        args.out = DEFAULT_OUT
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the process exit code (2 on a user error)."""
    args = parse_args(argv)
    # Wide enough for the table when stdout is a file or a pipe (rich assumes 80 columns there).
    out_console = Console() if sys.stdout.isatty() else Console(width=112)
    err_console = Console(stderr=True)
    try:
        if args.out is not None:
            outfile.read_merge_base(args.out)
        names = resolve_names(args.detector)
        corpus = load_corpus(args.data, need_data=bool(names))
        rows: dict[str, dict[str, Any]] = {}
        if names:
            with Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=err_console,
            ) as progress:
                for name in names:
                    results, points, seconds = run_detector(
                        name, corpus, args.results_dir, args.jobs, progress
                    )
                    scores = ns.score_corpus(results, corpus.windows, corpus.profiles)
                    row = detector_row(scores)
                    row.update(
                        points=points,
                        seconds=round(seconds, 6),
                        points_per_s=round(points / seconds, 1) if seconds > 0 else None,
                        files=len(results),
                        jobs=args.jobs,
                        results_dir=str(args.results_dir / name),
                        run_at=datetime.now(UTC).isoformat(timespec="seconds"),
                    )
                    rows[name] = row
        if args.score_results is not None:
            prefix, results = ns.read_results_dir(args.score_results, set(corpus.windows))
            thresholds = ns.read_score_tables(args.score_results, prefix, corpus.profiles)
            scores = ns.score_corpus(
                results, corpus.windows, corpus.profiles, thresholds=thresholds
            )
            row = detector_row(scores)
            row.update(
                points=sum(len(t) for t, _ in results.values()),
                seconds=None,
                points_per_s=None,
                files=len(results),
                results_dir=str(args.score_results),
                run_at=datetime.now(UTC).isoformat(timespec="seconds"),
            )
            rows[prefix] = row
        reference = load_reference(args.data)
        doc = {
            "benchmark": "nab",
            "data": str(args.data.resolve()),
            "machine": machine_info(),
            "probation_percent": ns.PROBATION_PERCENT,
            "timing": TIMING_NOTE,
            "scoring": (
                "own implementation of NAB's sweep scorer; thresholds optimized per profile over "
                "all files jointly, except where a results folder has NAB score tables, whose "
                "thresholds are used (as NAB's --score step does; the optimum is under 'optimized')"
            ),
            "detectors": rows,
            "reference": reference,
        }
        merged = merge_out(args.out, doc) if args.out is not None else doc
    except ReliaError as exc:
        # Plain print: rich would wrap the one-line message at 80 columns.
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_table(out_console, rows, reference)
    if args.out is not None:
        out_console.print(f"wrote {args.out}", highlight=False)
    else:
        out_console.print("not written: --score-results writes its JSON only to --out FILE")
    sys.stdout.flush()
    print(json.dumps(merged, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
