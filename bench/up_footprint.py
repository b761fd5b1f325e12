"""Footprint of ``relia up``: CPU share and memory of the default set-up watching this machine.

Usage::

    python bench/up_footprint.py                 # 60 s of steady state, default config
    python bench/up_footprint.py --seconds 300 --interval 5s

Starts ``relia up`` as a subprocess (``python -m relia up``; ``--mode python`` calls
``relia.engine.up.run_up`` directly instead) with a fresh temporary data directory, the default
configuration (host metrics, the default detector, the default interval) and an ephemeral API port.
Once it reports ready, it is watched with psutil for ``--seconds``: the CPU share is its CPU time
(user + system, children included) over wall time, in % of one core; RSS is sampled every
``--every`` seconds. Writes ``bench/results/up_footprint.json``; prints a table, and the JSON on
one line as the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psutil
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
import outfile  # noqa: E402
from relia.errors import ReliaError  # noqa: E402
from relia_process import start_relia_up  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "up_footprint.json"
MIB = 1024 * 1024

_PY_MODE = (
    "import sys\n"
    "from relia.config import load_config\n"
    "from relia.engine.up import run_up\n"
    "sys.exit(run_up(load_config(), ready=lambda u: print('relia is up: dashboard and API at',"
    " u, file=sys.stderr, flush=True)))\n"
)


def _command(mode: str, data_dir: Path) -> list[str]:
    if mode == "cli":
        return [sys.executable, "-m", "relia", "up", "--data-dir", str(data_dir), "--port", "0"]
    return [sys.executable, "-c", _PY_MODE]


def _tree_cpu(proc: psutil.Process) -> float:
    """CPU seconds (user + system) of a process and its children."""
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


def _tree_rss(proc: psutil.Process) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            continue
    return total


def measure(seconds: float, every: float, mode: str, interval: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="relia-up-bench-") as tmp:
        data_dir = Path(tmp) / "data"
        env = {**os.environ, "RELIA_DATA_DIR": str(data_dir), "RELIA_API__PORT": "0"}
        env.pop("RELIA_CONFIG", None)
        if interval:
            env["RELIA_INTERVAL"] = interval
        t0 = time.monotonic()
        startup_peak = 0
        watched: dict[int, psutil.Process] = {}

        def sample_startup(p: subprocess.Popen[str]) -> None:
            nonlocal startup_peak
            ps = watched.setdefault(p.pid, psutil.Process(p.pid))
            startup_peak = max(startup_peak, _tree_rss(ps))

        # cwd=tmp: a relia.yaml in the current directory must not change the default set-up.
        proc, url, tail = start_relia_up(
            _command(mode, data_dir), cwd=Path(tmp), env=env, while_waiting=sample_startup
        )
        ps = psutil.Process(proc.pid)
        try:
            startup_s = time.monotonic() - t0
            rss: list[int] = []
            cpu0, w0 = _tree_cpu(ps), time.monotonic()
            end = w0 + seconds
            last_cpu, last_w, cpu_max = cpu0, w0, 0.0
            while time.monotonic() < end:
                time.sleep(min(every, max(0.0, end - time.monotonic())))
                if proc.poll() is not None:
                    raise SystemExit("relia up exited during the run:\n" + "".join(tail))
                rss.append(_tree_rss(ps))
                c, w = _tree_cpu(ps), time.monotonic()
                if w > last_w:
                    cpu_max = max(cpu_max, 100.0 * (c - last_cpu) / (w - last_w))
                last_cpu, last_w = c, w
            cpu1, w1 = _tree_cpu(ps), time.monotonic()
            health = httpx.get(url + "/healthz", timeout=10).json()
        finally:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
        engine = health.get("engine") or {}
        return {
            "benchmark": "up_footprint",
            "mode": mode,
            "seconds": round(w1 - w0, 2),
            "interval_s": engine.get("interval_seconds"),
            "ticks": engine.get("ticks"),
            "series": engine.get("series"),
            "last_tick_s": engine.get("last_tick_seconds"),
            "startup_s": round(startup_s, 2),
            "startup_rss_mib_peak": round(startup_peak / MIB, 1),
            "cpu_percent_mean": round(100.0 * (cpu1 - cpu0) / (w1 - w0), 3),
            "cpu_percent_max": round(cpu_max, 2),
            "rss_mib_peak": round(max(rss) / MIB, 1) if rss else None,
            "rss_mib_mean": round(sum(rss) / len(rss) / MIB, 1) if rss else None,
            "exit_code": proc.returncode,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
        }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="steady-state window")
    ap.add_argument("--every", type=float, default=1.0, help="RSS sampling period, seconds")
    ap.add_argument("--mode", choices=["cli", "python"], default="cli")
    ap.add_argument("--interval", default=None, help="override the engine interval, e.g. 5s")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    try:
        outfile.check_writable(args.out)
    except ReliaError as exc:
        return outfile.fail(exc)

    result = measure(args.seconds, args.every, args.mode, args.interval)
    try:
        outfile.write_json(args.out, result)
    except ReliaError as exc:
        return outfile.fail(exc)

    table = Table(title=f"relia up footprint ({result['seconds']} s, {result['mode']})")
    table.add_column("measure")
    table.add_column("value", justify="right")
    rows = [
        ("interval", f"{result['interval_s']} s"),
        ("ticks / series", f"{result['ticks']} / {result['series']}"),
        ("last tick", f"{(result['last_tick_s'] or 0) * 1000:.1f} ms"),
        ("startup", f"{result['startup_s']} s (peak RSS {result['startup_rss_mib_peak']} MiB)"),
        ("CPU mean (% of one core)", f"{result['cpu_percent_mean']}"),
        ("CPU max over 1 s", f"{result['cpu_percent_max']}"),
        ("RSS peak / mean", f"{result['rss_mib_peak']} / {result['rss_mib_mean']} MiB"),
        ("exit code after SIGTERM", f"{result['exit_code']}"),
    ]
    for k, v in rows:
        table.add_row(k, v)
    Console(stderr=False).print(table)
    print(json.dumps(result, separators=(",", ":")), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
