"""Log parsing speed: relia's batch parser against Drain3 on a 10-million-line generated corpus.

Usage::

    python bench/logspeed.py                              # 10M lines, Drain3 on 500k of them
    python bench/logspeed.py --lines 2000000 --drain-lines 200000 --corpus /tmp/logspeed
    python bench/logspeed.py --drain-lines 0              # relia only

The corpus (:mod:`logcorpus`) is built from the 14 systems' Loghub-2k lines with fresh random
values in every parameter position and refreshed header digits, one file per system (the lines
split evenly), written under a temporary folder (``--corpus DIR`` keeps it there and reuses it
when it was built with the same settings). Each parser runs in its own child process, so its peak
RSS (``ru_maxrss``) is its own, and gets raw lines as a user's files would give them:

- **relia**: ``relia.logs.parse_lines(lines)`` once per file (header detection + template mining +
  template assignment, a fresh parse per file), over the whole corpus.
- **Drain3**: ``drain3.TemplateMiner`` with its default configuration, one fresh miner per file,
  ``add_log_message(line)`` for every line, over the first ``--drain-lines`` lines (split evenly
  over the files: the first lines of each file), because Drain3 slows down as its clusters grow.
- **relia on Drain3's lines**: relia again on exactly the lines Drain3 got, for a same-input ratio.

Timing: wall clock of the parse calls only (``time.perf_counter``), summed over the files; reading
the file into a list of ``str`` is not timed, nor is relia's warm-up (one ``parse_lines`` on the
first ``--warmup-lines`` lines before timing, so JIT compilation and regex compilation are out; its
time is reported). lines/s = lines / those seconds. CPU seconds (user + system) over the same
calls show how many cores a parser used. Nothing is pinned: the machine's cores are shared with
other work, and the load average before and after is recorded.

Writes ``--out`` (``bench/results/logspeed.json``) with the machine, the command and the corpus
description, prints a table; the last stdout line is the JSON on one line. Progress on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Only the standard library at import time: the Drain3 child process must not carry NumPy,
# Polars or relia in its RSS. The parent imports those where it needs them.
sys.path.insert(0, str(Path(__file__).resolve().parent))

if TYPE_CHECKING:
    from rich.console import Console

    import logcorpus

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "bench/results/logspeed.json"
DEFAULT_DATA = REPO.parent / "shared/data/loghub2k"  # as logcorpus.DEFAULT_DATA
DEFAULT_ENTRY = "relia.logs:parse_lines"
#: Issue 5, item 3: relia parses at least this many lines per second in batch mode ...
TARGET_LINES_PER_S = 1_000_000
#: ... and at least this many times as fast as Drain3, side by side in the same run.
TARGET_SPEEDUP = 20.0
#: Bumped when the corpus generator changes, so a kept corpus is rebuilt.
CORPUS_VERSION = 1
_MB = 1024 * 1024


# -- child processes ----------------------------------------------------------------------------


def _peak_rss() -> int:
    """This process's peak resident set size in bytes.

    On Linux this is VmHWM from /proc/self/status, the high-water mark of this process's own
    memory map. Not ru_maxrss: Linux carries the parent's peak into it across fork + exec, so a
    child started by a 200 MB parent would report at least 200 MB.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)  # macOS: bytes, others: KiB


def _rss() -> int:
    """This process's resident set size now, in bytes."""
    import psutil

    return int(psutil.Process().memory_info().rss)


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def read_lines(path: Path, limit: int | None) -> list[str]:
    """The first ``limit`` lines of ``path`` (all when None), without their newlines."""
    with path.open(encoding="utf-8", newline="\n") as f:
        return [line.rstrip("\n") for line in islice(f, limit)]


def load_entry(entry: str) -> Callable[[Sequence[str]], Any]:
    """The function named ``module:attr``."""
    module, _, attr = entry.partition(":")
    fn = getattr(importlib.import_module(module), attr)
    if not callable(fn):
        raise TypeError(f"{entry} is not callable")
    return fn  # type: ignore[no-any-return]


def _relia_parser(entry: str) -> tuple[Callable[[list[str]], int], dict[str, Any]]:
    parse = load_entry(entry)

    def run(lines: list[str]) -> int:
        parsed = parse(lines)
        ids = parsed.template_ids
        if len(ids) != len(lines):  # a parser that drops lines would look fast
            raise RuntimeError(f"{entry} returned {len(ids)} template ids for {len(lines)} lines")
        return len(parsed.templates)

    return run, {"entry": entry}


def _drain3_parser() -> tuple[Callable[[list[str]], int], dict[str, Any]]:
    from drain3 import TemplateMiner  # type: ignore[import-untyped]
    from drain3.template_miner_config import TemplateMinerConfig  # type: ignore[import-untyped]

    def run(lines: list[str]) -> int:
        # TemplateMinerConfig() is Drain3's default configuration (TemplateMiner() would also read
        # a drain3.ini from the working directory if one happened to be there).
        miner = TemplateMiner(config=TemplateMinerConfig())
        add = miner.add_log_message
        for line in lines:
            add(line)
        return len(miner.drain.clusters)

    cfg = TemplateMinerConfig()
    info = {
        "version": importlib.metadata.version("drain3"),
        "config": {
            "sim_th": cfg.drain_sim_th,
            "depth": cfg.drain_depth,
            "max_children": cfg.drain_max_children,
            "max_clusters": cfg.drain_max_clusters,
            "masking": len(cfg.masking_instructions),
            "parametrize_numeric_tokens": cfg.parametrize_numeric_tokens,
        },
    }
    return run, info


def child_main(parser: str, files: list[Path], limit: int | None, entry: str, warmup: int) -> int:
    """Run one parser over ``files`` (the first ``limit`` lines of each); one JSON line per file
    on stdout as it finishes, then a summary line. Exit 3 when the parser cannot be loaded."""
    rss_start = _rss()
    try:
        if parser == "drain3":
            run, info = _drain3_parser()
        else:
            run, info = _relia_parser(entry)
    except (ImportError, AttributeError, TypeError) as exc:
        print(f"cannot load the {parser} parser: {exc}", file=sys.stderr)
        return 3
    warmup_s = 0.0
    if parser != "drain3" and warmup > 0:
        sample = read_lines(files[0], warmup)
        t0 = time.perf_counter()
        run(sample)
        warmup_s = time.perf_counter() - t0
        del sample
    rss_ready = _rss()
    print(json.dumps({"ready": True, "warmup_s": warmup_s, **info}), flush=True)
    rss_loaded = 0
    for path in files:
        lines = read_lines(path, limit)
        rss_loaded = max(rss_loaded, _rss())
        # Wall-clock (epoch) start, so the parent can tell how long an unfinished parse ran.
        print(json.dumps({"start": path.stem, "epoch": time.time()}), flush=True)
        cpu0 = _cpu()
        t0 = time.perf_counter()
        templates = run(lines)
        seconds = time.perf_counter() - t0
        cpu = _cpu() - cpu0
        row = {"file": path.stem, "lines": len(lines), "seconds": seconds, "cpu_s": cpu}
        row["templates"] = templates
        print(json.dumps(row), flush=True)
        del lines
    summary = {
        "done": True,
        "rss_start_mb": rss_start / _MB,
        "rss_ready_mb": rss_ready / _MB,
        "rss_lines_loaded_mb": rss_loaded / _MB,
        "peak_rss_mb": _peak_rss() / _MB,
    }
    print(json.dumps(summary), flush=True)
    return 0


def run_child(
    parser: str,
    files: list[Path],
    limit: int | None,
    entry: str,
    warmup: int,
    timeout: float,
    expected: int,
) -> dict[str, Any]:
    """Run :func:`child_main` in a fresh interpreter and gather what it printed; ``expected`` is
    the number of lines it is to parse."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", parser, "--entry", entry]
    cmd += ["--warmup-lines", str(warmup), "--files", *map(str, files)]
    if limit is not None:
        cmd += ["--limit", str(limit)]
    ended: float | None = None  # epoch time of the timeout
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        stdout, stderr, rc = proc.stdout, proc.stderr, proc.returncode
    except subprocess.TimeoutExpired as exc:
        ended = time.time()
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        stderr = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        rc = -9
    if rc == 3:
        from relia.errors import ConfigError

        raise ConfigError(stderr.strip().splitlines()[-1], where="--relia-entry")
    msgs = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    if rc != 0 and ended is None:
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"the {parser} child process failed (exit {rc}):\n{tail}")
    return summarize(msgs, expected, ended=ended, timeout=timeout)


def summarize(
    msgs: list[dict[str, Any]],
    expected: int,
    *,
    ended: float | None = None,
    timeout: float | None = None,
) -> dict[str, Any]:
    """One parser's JSON row from its child's messages; ``ended`` is when it was stopped, if
    it ran past ``timeout`` before parsing its ``expected`` lines."""
    head = next((m for m in msgs if m.get("ready")), {})
    files = [m for m in msgs if "file" in m]
    tail = next((m for m in msgs if m.get("done")), {})
    lines = sum(m["lines"] for m in files)
    seconds = sum(m["seconds"] for m in files)
    cpu = sum(m["cpu_s"] for m in files)
    row: dict[str, Any] = {k: v for k, v in head.items() if k != "ready"}
    row.update(
        {
            "lines": lines,
            "seconds": round(seconds, 4),
            "lines_per_s": round(lines / seconds, 1) if seconds > 0 else None,
            "cpu_s": round(cpu, 3),
            "cores_used": round(cpu / seconds, 2) if seconds > 0 else None,
            "templates": sum(m["templates"] for m in files),
            "files": {
                m["file"]: {
                    "lines": m["lines"],
                    "seconds": round(m["seconds"], 4),
                    "lines_per_s": round(m["lines"] / m["seconds"], 1) if m["seconds"] else None,
                    "templates": m["templates"],
                }
                for m in files
            },
        }
    )
    row.update({k: round(v, 1) for k, v in tail.items() if k != "done"})
    row["complete"] = ended is None
    if ended is not None:
        # The completed files alone would flatter a parser that is slow on the file it did not
        # finish: report no rate, only a bound that counts the unfinished parse's time so far.
        done = {m["file"] for m in files}
        unfinished = [m for m in msgs if "start" in m and m["start"] not in done]
        spent = seconds + sum(ended - m["epoch"] for m in unfinished)
        row["lines_per_s"] = None
        row["timed_out_after_s"] = timeout
        row["unfinished_file"] = unfinished[0]["start"] if unfinished else None
        row["lines_per_s_completed_files"] = round(lines / seconds, 1) if seconds > 0 else None
        row["seconds_incl_unfinished"] = round(spent, 1)
        # Whatever the rest would have cost, the whole run cannot be faster than this.
        row["lines_per_s_at_most"] = round(expected / spent, 1) if spent > 0 else None
    return row


# -- the benchmark ------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """``nab.machine_info()`` (CPU, cores, Python, platform) plus memory and library versions."""
    import psutil

    import nab  # imported here: the Drain3 child must not load what nab imports

    versions: dict[str, str | None] = {}
    for dist in ("numpy", "polars", "drain3", "numba"):
        try:
            versions[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        **nab.machine_info(),
        "memory_gb": round(psutil.virtual_memory().total / 1024**3, 1),
        "versions": versions,
    }


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else []


def build_corpus(args: argparse.Namespace, err: Console) -> tuple[logcorpus.CorpusInfo, Path]:
    """Build the corpus (or reuse the one kept under ``--corpus`` with the same settings)."""
    import logcorpus

    key = {
        "version": CORPUS_VERSION,
        "lines": args.lines,
        "seed": args.seed,
        "data": str(args.data.resolve()),
    }
    folder = args.corpus
    if folder is not None and (folder / "corpus.json").is_file():
        kept = json.loads((folder / "corpus.json").read_text())
        if kept.get("key") == key and all(Path(f["path"]).is_file() for f in kept["files"]):
            err.print(f"reusing the corpus in {folder}", highlight=False)
            files = [
                logcorpus.CorpusFile(f["name"], Path(f["path"]), f["lines"], f["bytes"])
                for f in kept["files"]
            ]
            info = logcorpus.CorpusInfo(
                files=files,
                layout=kept["layout"],
                distinct_lines=kept["distinct_lines"],
                seed=kept["seed"],
                seconds=kept["build_s"],
                lines_per_system=kept["lines_per_system"],
                source_lines=kept["source_lines"],
                source_parameters=kept["source_parameters"],
                unaligned_source_lines=kept["unaligned_source_lines"],
            )
            return info, folder
    # Read the sources first: a bad --data then fails before a temporary folder exists.
    table = logcorpus.load_sources(args.data)
    temporary = folder is None
    folder = folder or Path(tempfile.mkdtemp(prefix="relia-logspeed-"))
    try:
        err.print(f"building {args.lines:,} lines in {folder} ...", highlight=False)
        info = logcorpus.write_corpus(folder, table, args.lines, args.seed)
        (folder / "corpus.json").write_text(json.dumps({"key": key, **info.as_dict()}))
    except BaseException:
        # A half-built temporary corpus (a full disk, Ctrl-C) is not left in /tmp.
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    return info, folder


def ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 2) if a and b else None


def run_benchmark(args: argparse.Namespace, err: Console) -> dict[str, Any]:
    """Build the corpus, run the parsers, and assemble the JSON document."""
    load_before = _load()
    info, folder = build_corpus(args, err)
    err.print(
        f"corpus: {info.lines:,} lines, {info.distinct_lines:,} distinct, "
        f"built in {info.seconds:.1f} s",
        highlight=False,
    )
    paths = [f.path for f in info.files]
    try:
        err.print(f"relia on {info.lines:,} lines ...", highlight=False)
        rows = {
            "relia": run_child(
                "relia", paths, None, args.relia_entry, args.warmup_lines, args.timeout, info.lines
            )
        }
        drain_lines = min(args.drain_lines, info.lines)
        if drain_lines > 0:
            per_file = max(1, drain_lines // len(paths))
            err.print(f"Drain3 on {per_file * len(paths):,} lines ...", highlight=False)
            prefix = sum(min(per_file, f.lines) for f in info.files)
            rows["drain3"] = run_child(
                "drain3", paths, per_file, args.relia_entry, 0, args.timeout, prefix
            )
            err.print("relia on Drain3's lines ...", highlight=False)
            rows["relia_same_lines"] = run_child(
                "relia", paths, per_file, args.relia_entry, args.warmup_lines, args.timeout, prefix
            )
    finally:
        if args.corpus is None:
            shutil.rmtree(folder, ignore_errors=True)
    relia_rate = rows["relia"]["lines_per_s"]
    doc: dict[str, Any] = {
        "benchmark": "logspeed",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": shlex.join(["python", "bench/logspeed.py", *args.argv]),
        "machine": machine_info(),
        "load_average_before": load_before,
        "load_average_after": _load(),
        "corpus": {**info.as_dict(), "kept": args.corpus is not None},
        "timing": (
            "lines_per_s = lines / wall-clock seconds of the parse calls, summed over the corpus "
            "files (one parse per file: relia.logs.parse_lines(lines) with header detection and "
            "template assignment; Drain3: a fresh default TemplateMiner per file, "
            "add_log_message per line). Reading the files into lists of str is not timed; relia's "
            f"warm-up parse of {args.warmup_lines} lines before timing is not timed (warmup_s). "
            "Each parser runs in its own child process: peak_rss_mb is that process's peak RSS "
            "(VmHWM; the lines it holds included; rss_lines_loaded_mb = largest RSS right after "
            "reading a file, before parsing it). cores_used = CPU seconds / wall seconds of the "
            "parse calls. Drain3 runs on the first lines of each file (drain3.lines in all); "
            "relia_same_lines is relia on exactly those lines. A parser still running after "
            "--timeout seconds is stopped: complete is false, lines_per_s null, and "
            "lines_per_s_at_most = its lines / (seconds of the finished files + the time the "
            "unfinished one ran)."
        ),
        "parsers": rows,
        "targets": {"lines_per_s": TARGET_LINES_PER_S, "speedup": TARGET_SPEEDUP},
        "meets_lines_per_s": bool(relia_rate and relia_rate >= TARGET_LINES_PER_S),
    }
    if "drain3" in rows:
        drain, same = rows["drain3"], rows["relia_same_lines"]
        doc["speedup"] = ratio(relia_rate, drain["lines_per_s"])
        doc["speedup_same_lines"] = ratio(same["lines_per_s"], drain["lines_per_s"])
        doc["peak_rss_ratio_same_lines"] = ratio(same.get("peak_rss_mb"), drain.get("peak_rss_mb"))
        both = [doc["speedup"], doc["speedup_same_lines"]]
        doc["meets_speedup"] = all(x is not None and x >= TARGET_SPEEDUP for x in both)
    return doc


def _fmt_rate(x: float | None) -> str:
    return "-" if x is None else f"{x:,.0f}"


def _row_rate(row: dict[str, Any]) -> str:
    if row["complete"]:
        return _fmt_rate(row["lines_per_s"])
    return f"<= {_fmt_rate(row.get('lines_per_s_at_most'))}"


def print_table(console: Console, doc: dict[str, Any]) -> None:
    """The parsers side by side, then the per-file rates."""
    rows = doc["parsers"]
    names = {
        "relia": "relia (whole corpus)",
        "drain3": "Drain3 (prefix)",
        "relia_same_lines": "relia (Drain3's lines)",
    }
    from rich.table import Table

    table = Table(title=f"log parsing speed, {doc['corpus']['lines']:,}-line corpus")
    for col in ("parser", "lines", "seconds", "lines/s", "templates", "cores", "peak RSS MB"):
        table.add_column(col, justify="left" if col == "parser" else "right")
    for key, row in rows.items():
        name = names[key] + ("" if row["complete"] else " [timed out]")
        table.add_row(
            name,
            f"{row['lines']:,}",
            f"{row['seconds']:.2f}",
            _row_rate(row),
            f"{row['templates']:,}",
            str(row["cores_used"]),
            str(row.get("peak_rss_mb", "-")),
        )
    console.print(table)
    per = Table(title="lines/s per file")
    per.add_column("file")
    for key in rows:
        per.add_column(names[key], justify="right")
    for f in doc["corpus"]["files"]:
        per.add_row(
            f["name"],
            *(_fmt_rate(rows[k]["files"].get(f["name"], {}).get("lines_per_s")) for k in rows),
        )
    console.print(per)
    lines = [
        f"relia {_row_rate(rows['relia'])} lines/s "
        f"(target {TARGET_LINES_PER_S:,}: {'met' if doc['meets_lines_per_s'] else 'not met'})"
    ]
    if "speedup" in doc:
        lines.append(
            f"speedup over Drain3: {doc['speedup']}x whole corpus vs prefix, "
            f"{doc['speedup_same_lines']}x on the same lines (target {TARGET_SPEEDUP:g}x: "
            f"{'met' if doc['meets_speedup'] else 'not met'}); peak RSS relia/Drain3 on the "
            f"same lines {doc['peak_rss_ratio_same_lines']}"
        )
    console.print("\n".join(lines), highlight=False)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(
        description="relia's batch log parser against Drain3 on a generated corpus"
    )
    ap.add_argument("--lines", type=int, default=10_000_000, help="corpus lines (all files)")
    ap.add_argument(
        "--drain-lines", type=int, default=500_000, help="Drain3's lines, split over the files"
    )
    ap.add_argument("--seed", type=int, default=0, help="corpus seed")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Loghub-2k folder")
    ap.add_argument("--corpus", type=Path, default=None, help="keep (and reuse) the corpus here")
    ap.add_argument("--relia-entry", default=DEFAULT_ENTRY, help="batch parser, module:function")
    ap.add_argument("--warmup-lines", type=int, default=2000, help="relia's untimed warm-up")
    ap.add_argument("--timeout", type=float, default=3600.0, help="seconds per parser run")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON file to write")
    # The child process's own options.
    ap.add_argument("--child", choices=("relia", "drain3"), help=argparse.SUPPRESS)
    ap.add_argument("--files", type=Path, nargs="*", help=argparse.SUPPRESS)
    ap.add_argument("--limit", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--entry", default=DEFAULT_ENTRY, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    if args.child is None:
        if args.lines < 1:
            ap.error("--lines must be at least 1")
        if args.drain_lines < 0:
            ap.error("--drain-lines must not be negative")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; returns the exit code (2 on a user error)."""
    args = parse_args(argv)
    if args.child is not None:
        return child_main(args.child, args.files, args.limit, args.entry, args.warmup_lines)
    from rich.console import Console

    import outfile
    from relia.errors import ReliaError

    out_console = Console() if sys.stdout.isatty() else Console(width=132)
    err_console = Console(stderr=True)
    try:
        outfile.check_writable(args.out)
        doc = run_benchmark(args, err_console)
        outfile.write_json(args.out, doc)
    except ReliaError as exc:
        # Plain print: rich would wrap the one-line message at the terminal width.
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_table(out_console, doc)
    out_console.print(f"wrote {args.out}", highlight=False)
    sys.stdout.flush()
    print(json.dumps(doc, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
