"""False alarms of a detector on series with nothing in them, by the series' age.

Usage::

    python bench/young.py                         # default, mad, seasonal, cusum; 20 seeds each
    python bench/young.py --detector default --seeds 5 --threshold 0.6

A detector judges a point against what it has seen of its series; a series a few hundred points
old has shown little of its noise, so every detector alarms more often while a series is young.
This measures how much more, where nothing is wrong: each of ``--seeds`` seeded series of
``--points`` 5-minute points is scored by a fresh detector, and every point scoring at least
``--threshold`` (the ``Thresholder`` default, 0.5, unless given) is a false alarm. They are counted
by the point's age (its index in the series) in the bands of ``AGES`` and reported per 10,000
points of that age, with the component that fired, and how many of them score 0.9 or more (what
relia calls critical: ``relia.incidents.model.severity_for_score``). Several detectors
(``--detector``, repeatable) are measured on the same series in one run.

The series (all normal by construction):

* ``gaussian``: independent Gaussian noise around a constant;
* ``student_t3``: independent Student-t noise with 3 degrees of freedom (a heavy tail);
* ``daily``: Gaussian noise on a daily cycle of 5 noise SDs' amplitude;
* ``around_zero``: independent Gaussian noise around 0, where nothing but the data's own
  resolution sets the scale of a residual (a clock offset, a temperature delta, a derivative).

The bands reach millions of points: ``--points 3000000 --seeds 4 --out
bench/results/young_long.json`` checks that a series does not alarm more as it grows old.

Prints a table and writes ``--out`` (``bench/results/young.json``); the last stdout line is the
JSON on one line.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

import nab  # noqa: E402
import outfile  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "bench/results/young.json"
#: Age bands (points since the series' first): the first is the detector's own warm-up onwards.
AGES = (0, 300, 1_000, 3_000, 10_000, 20_000, 100_000, 1_000_000, 2_000_000, 3_000_000)
STEP_MS = 300_000
T0_MS = 1_700_000_000_000
PER_DAY = 86_400_000 // STEP_MS
#: Score from which a finding is critical (relia.incidents.model.severity_for_score).
CRITICAL = 0.9


def _gaussian(rng: np.random.Generator, n: int) -> np.ndarray[Any, Any]:
    return 100.0 + rng.normal(0.0, 1.0, n)


def _student_t3(rng: np.random.Generator, n: int) -> np.ndarray[Any, Any]:
    return 100.0 + rng.standard_t(3.0, n)


def _daily(rng: np.random.Generator, n: int) -> np.ndarray[Any, Any]:
    phase = 2.0 * np.pi * np.arange(n) / PER_DAY
    return 100.0 + 5.0 * np.sin(phase) + rng.normal(0.0, 1.0, n)


def _around_zero(rng: np.random.Generator, n: int) -> np.ndarray[Any, Any]:
    return rng.normal(0.0, 1.0, n)


CASES: dict[str, Callable[[np.random.Generator, int], np.ndarray[Any, Any]]] = {
    "gaussian": _gaussian,
    "student_t3": _student_t3,
    "daily": _daily,
    "around_zero": _around_zero,
}


def measure(detector: str, seeds: int, points: int, threshold: float) -> dict[str, Any]:
    """One detector's false alarms per case and age band (see the module docstring)."""
    from relia.detect import create

    ts = T0_MS + STEP_MS * np.arange(points, dtype=np.int64)
    edges = [a for a in AGES if a < points] + [points]
    components = create(detector).components
    cases: dict[str, Any] = {}
    for name, make in CASES.items():
        alarms = np.zeros(len(edges) - 1, dtype=np.int64)
        critical = 0
        by_component: dict[str, int] = {}
        for seed in range(seeds):
            values = make(np.random.default_rng(seed), points)
            detail = create(detector).score_detail(values, ts)
            hit = np.flatnonzero(detail.score >= threshold)
            alarms += np.histogram(hit, edges)[0]
            critical += int(np.count_nonzero(detail.score[hit] >= CRITICAL))
            for c in detail.component[hit].tolist():
                label = components[c] if c >= 0 else "-"
                by_component[label] = by_component.get(label, 0) + 1
        bands = []
        for (lo, hi), count in zip(zip(edges[:-1], edges[1:], strict=True), alarms, strict=True):
            bands.append(
                {
                    "from": lo,
                    "to": hi,
                    "alarms_per_series": round(float(count) / seeds, 3),
                    "per_10k_points": round(float(count) / seeds / (hi - lo) * 10_000, 2),
                }
            )
        cases[name] = {
            "alarms_per_series": round(float(alarms.sum()) / seeds, 3),
            "critical_per_series": round(critical / seeds, 3),
            "by_component": dict(sorted(by_component.items())),
            "ages": bands,
        }
    return cases


def print_table(doc: dict[str, Any], detector: str, console: Console) -> None:
    table = Table(
        title=f"{detector}: false alarms per 10,000 points by age "
        f"(threshold {doc['threshold']}, {doc['seeds']} series per case)"
    )
    table.add_column("case")
    cases = doc["detectors"][detector]
    first = next(iter(cases.values()))
    for band in first["ages"]:
        table.add_column(f"{band['from']:,}–{band['to']:,}", justify="right")
    table.add_column("per series", justify="right")
    table.add_column("critical", justify="right")
    table.add_column("by")
    for name, case in cases.items():
        by = ", ".join(f"{k} {v}" for k, v in case["by_component"].items()) or "-"
        table.add_row(
            name,
            *(f"{b['per_10k_points']:.1f}" for b in case["ages"]),
            f"{case['alarms_per_series']:.2f}",
            f"{case['critical_per_series']:.2f}",
            by,
        )
    console.print(table)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--detector",
        action="append",
        help="registered detector (repeatable; default: default, mad, seasonal, cusum)",
    )
    parser.add_argument("--seeds", type=int, default=20, help="series per case")
    parser.add_argument("--points", type=int, default=20_000, help="points per series")
    parser.add_argument("--threshold", type=float, default=None, help="default: Thresholder's")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file to write")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.points < 2:
        parser.error("--seeds must be at least 1 and --points at least 2")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from relia.detect import Thresholder
    from relia.errors import ReliaError

    threshold = Thresholder().threshold if args.threshold is None else args.threshold
    try:
        outfile.check_writable(args.out)
        # Every name checked before the first measurement, not after the valid ones ran.
        names = nab.resolve_names(args.detector or ["default", "mad", "seasonal", "cusum"])
    except ReliaError as exc:
        return outfile.fail(exc)
    doc = {
        "seeds": args.seeds,
        "points": args.points,
        "step_s": STEP_MS // 1000,
        "threshold": threshold,
        "detectors": {n: measure(n, args.seeds, args.points, threshold) for n in names},
        "command": "python bench/young.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }
    console = Console(width=160)
    for name in names:
        print_table(doc, name, console)
    try:
        outfile.write_json(args.out, doc)
    except ReliaError as exc:
        return outfile.fail(exc)
    print(json.dumps(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
