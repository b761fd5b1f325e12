"""Where a detector wins and loses on NAB, window by window.

Usage::

    python bench/nab_windows.py                          # default detector, standard profile
    python bench/nab_windows.py --profile reward_low_FN_rate --detector adaptive
    python bench/nab_windows.py --set long=0.003         # try a parameter (not the README's figure)

``bench/nab.py`` gives the three scores; this script says what is behind one of them, at the
threshold NAB's procedure picks for that profile: every labelled window that counts (outside the
probation period), whether it is detected, where in the window and by which component of the
detector, or, when missed, the best score inside it and how far under the threshold that is; and
the false positives, by file and by component; and, at thresholds near the chosen one, the score,
the windows detected and the false-positive rows and runs (whether a lower threshold would buy the
misses cheaply). The JSON goes to ``--out``
(``bench/results/nab_windows.json``); tables go to stdout.

A missed window's ``best`` is the highest score in its scored rows. The ``gap`` is how far that is
under the threshold: a small gap is a near miss, a large one means the detector does not see the
event at all. ``position`` of a detection is where in the window it came, from -1 (the window's
first row) to 0 (its last); NAB rewards early detections, and a detection at the labelled
anomaly, the window's middle, is worth about 0.85 of one at its start.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

import nab  # noqa: E402
import nab_scoring as ns  # noqa: E402
import outfile  # noqa: E402
import relia.detect  # noqa: E402
from relia.errors import DataError, ReliaError  # noqa: E402

DEFAULT_OUT = nab.REPO / "bench/results/nab_windows.json"
#: Offsets from the chosen threshold at which the neighbourhood table is drawn.
NEIGHBOURHOOD = (-0.08, -0.06, -0.04, -0.02, 0.0, 0.02, 0.05, 0.1)


def parse_set(items: Sequence[str]) -> dict[str, Any]:
    """``key=value`` pairs to detector parameters (numbers where they parse as numbers)."""
    params: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise DataError(f"--set {item!r}: expected key=value")
        value: Any = text
        for cast in (int, float):
            try:
                value = cast(text)
                break
            except ValueError:
                continue
        params[key] = value
    return params


def _component_name(components: Sequence[str], code: int) -> str:
    return components[code] if 0 <= code < len(components) else "-"


def neighbourhood(sweeps: Sequence[ns.FileSweep], threshold: float) -> list[dict[str, Any]]:
    """What the score, the windows and the false positives would be at thresholds near the
    chosen one: whether a lower threshold would buy missed windows cheaply. A false-positive
    *run* is a stretch of consecutive flagged rows outside the windows (NAB charges each row)."""
    null, perfect = ns.null_score(sweeps), ns.perfect_score(sweeps)
    rows = []
    for offset in NEIGHBOURHOOD:
        t = threshold + offset
        raw = sum(ns.score_at_threshold(f, t).score for f in sweeps)
        detected_windows = fp_rows = fp_runs = 0
        for f in sweeps:
            flagged = f.scorable & (f.scores >= t)
            hit = np.unique(f.window[flagged & (f.window >= 0)])
            detected_windows += len(hit)
            fp = flagged & (f.window < 0)
            fp_rows += int(fp.sum())
            fp_runs += int(np.count_nonzero(fp[1:] & ~fp[:-1]) + (1 if len(fp) and fp[0] else 0))
        rows.append(
            {
                "threshold": round(t, 4),
                "score": round(100.0 * (raw - null) / (perfect - null), 2),
                "windows_detected": detected_windows,
                "fp_rows": fp_rows,
                "fp_runs": fp_runs,
            }
        )
    return rows


def explain(name: str, corpus: nab.Corpus, profile: str, params: dict[str, Any]) -> dict[str, Any]:
    """Score the corpus with one detector configuration and account for every window and FP."""
    if profile not in corpus.profiles:
        raise DataError(f"unknown profile {profile!r} (have {sorted(corpus.profiles)})")
    cost = corpus.profiles[profile]
    details = {}
    for key, path in corpus.files.items():
        _, ts, values = nab.read_data_file(path)
        details[key] = (ts, relia.detect.create(name, **params).score_detail(values, ts))
    components = relia.detect.create(name, **params).components
    results = {k: (ts, np.asarray(d.score, np.float64)) for k, (ts, d) in details.items()}
    scores = ns.score_corpus(results, corpus.windows, corpus.profiles)[profile]
    threshold = scores.optimized_threshold
    windows: list[dict[str, Any]] = []
    files: list[dict[str, Any]] = []
    fp_by_component: Counter[str] = Counter()
    sweeps = []
    for key, (ts, d) in sorted(details.items()):
        sweep = ns.prepare_file(key, ts, results[key][1], corpus.windows[key], cost)
        sweeps.append(sweep)
        detected = sweep.scorable & (sweep.scores >= threshold)
        comp = np.asarray(d.component)
        for k, (start, _end) in enumerate(corpus.windows[key]):
            whole = np.flatnonzero(sweep.window == k)
            rows = whole[sweep.scorable[whole]]
            if not len(rows):
                continue  # inside the probation period: NAB does not score it
            hits = rows[detected[rows]]
            row: dict[str, Any] = {
                "file": key,
                "window_start": str(np.datetime64(int(start), "ms")),
                "rows": len(rows),
            }
            if len(hits):
                first = int(hits[0])
                row.update(
                    detected=True,
                    # As NAB places it: over the whole window, probation rows included.
                    position=round(-(int(whole[-1]) - first + 1) / len(whole), 3),
                    reward=round(float(sweep.value[first]), 4),
                    score=float(sweep.scores[first]),
                    component=_component_name(components, int(comp[first])),
                )
            else:
                best = int(rows[np.argmax(sweep.scores[rows])])
                row.update(
                    detected=False,
                    reward=-cost.fn_weight,
                    best=float(sweep.scores[best]),
                    gap=threshold - float(sweep.scores[best]),
                    component=_component_name(components, int(comp[best])),
                )
            windows.append(row)
        fp_rows = np.flatnonzero(detected & (sweep.window < 0))
        fp_by_component.update(_component_name(components, int(c)) for c in comp[fp_rows])
        if len(fp_rows):
            files.append(
                {
                    "file": key,
                    "fp_rows": len(fp_rows),
                    "fp_cost": round(float(sweep.value[fp_rows].sum()), 4),
                }
            )
    hit = [w for w in windows if w["detected"]]
    return {
        "benchmark": "nab_windows",
        "detector": name,
        "params": params,
        "profile": profile,
        "threshold": threshold,
        "score": round(scores.optimized_normalized, 2),
        "raw": scores.optimized_raw,
        "windows_scored": len(windows),
        "windows_detected": len(hit),
        "tp_reward": round(sum(w["reward"] for w in hit), 3),
        "fn_cost": round(sum(w["reward"] for w in windows if not w["detected"]), 3),
        "fp_cost": round(sum(f["fp_cost"] for f in files), 3),
        "first_detection_by_component": dict(Counter(w["component"] for w in hit)),
        "fp_rows_by_component": dict(fp_by_component),
        "neighbourhood": neighbourhood(sweeps, threshold),
        "windows": windows,
        "fp_files": files,
    }


def print_report(console: Console, doc: dict[str, Any], most: int) -> None:
    """Summary, the missed windows (nearest misses first) and the files that cost most in FPs."""
    console.print(
        f"{doc['detector']} on NAB, profile {doc['profile']}: score {doc['score']:.2f} at "
        f"threshold {doc['threshold']:.4f}; {doc['windows_detected']} of "
        f"{doc['windows_scored']} windows detected; TP reward {doc['tp_reward']:.2f}, "
        f"FN cost {doc['fn_cost']:.2f}, FP cost {doc['fp_cost']:.2f}",
        highlight=False,
    )
    console.print(
        f"first detections by component: {doc['first_detection_by_component']}; "
        f"false-positive rows by component: {doc['fp_rows_by_component']}",
        highlight=False,
    )
    table = Table(title="at thresholds near the chosen one")
    for col in ("threshold", "score", "windows detected", "FP rows", "FP runs"):
        table.add_column(col, justify="right")
    for r in doc["neighbourhood"]:
        table.add_row(
            f"{r['threshold']:.4f}", f"{r['score']:.2f}", str(r["windows_detected"]),
            str(r["fp_rows"]), str(r["fp_runs"]),
        )  # fmt: skip
    console.print(table)
    missed = sorted((w for w in doc["windows"] if not w["detected"]), key=lambda w: w["gap"])
    table = Table(title=f"missed windows ({len(missed)}), nearest miss first")
    for col in ("file", "window start", "best", "gap", "by"):
        table.add_column(col, justify="right" if col in ("best", "gap") else "left")
    for w in missed[:most]:
        table.add_row(
            w["file"], w["window_start"], f"{w['best']:.3f}", f"{w['gap']:.3f}", w["component"]
        )
    console.print(table)
    costly = sorted(doc["fp_files"], key=lambda f: f["fp_cost"])
    table = Table(title=f"false positives: the {min(most, len(costly))} costliest files")
    for col in ("file", "rows", "cost"):
        table.add_column(col, justify="left" if col == "file" else "right")
    for f in costly[:most]:
        table.add_row(f["file"], str(f["fp_rows"]), f"{f['fp_cost']:.2f}")
    console.print(table)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the report; returns the process exit code (2 on a user error)."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--detector", default="default", help="registered detector")
    ap.add_argument(
        "--data", type=Path, default=nab.DEFAULT_DATA, help="NAB folder (data/, labels/, config/)"
    )
    ap.add_argument("--profile", default="standard", help="NAB profile to account for")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="detector parameter for an experiment (repeatable; one value for all files)",
    )
    ap.add_argument("--most", type=int, default=30, help="rows per table")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file to write")
    args = ap.parse_args(argv)
    out_console = Console() if sys.stdout.isatty() else Console(width=112)
    try:
        outfile.check_writable(args.out)
        params = parse_set(args.set)
        relia.detect.describe(args.detector)
        corpus = nab.load_corpus(args.data)
        doc = explain(args.detector, corpus, args.profile, params)
        doc["data"] = str(args.data.resolve())
        doc["machine"] = nab.machine_info()
        doc["run_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        outfile.write_json(args.out, doc)
    except (ReliaError, TypeError, ValueError) as exc:
        # Plain print: rich would wrap the one-line message at 80 columns.
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_report(out_console, doc, args.most)
    out_console.print(f"wrote {args.out}", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
