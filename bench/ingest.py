"""Remote-write into ``relia up`` under load: throughput, backpressure, latency to findings, RSS.

Usage::

    python bench/ingest.py                    # 600 s, 10,000 series, 500,000 samples/s offered
    python bench/ingest.py --duration 60 --rate 0      # as fast as relia acknowledges

Starts ``python -m relia up`` (a temporary config: host source off, the default detector, the API
on a free loopback port, auth off) and drives ``POST /api/v1/write`` from ``--streams`` sender
processes. Each stream owns ``series / streams`` series (realistic labels: job, instance, method,
code, handler; 20 metric names) and sends them one sample each per request, as Prometheus does
(2,000 samples per request with the defaults), on a paced schedule (``--rate`` samples/s over
all streams; 0 = closed loop). Payloads are pre-built protobuf templates whose timestamp and
value bytes are patched per request, then snappy-compressed (not timed as relia's work, but the
senders share this machine's cores). A 429 is retried after its ``Retry-After``, as Prometheus
does.

Anomalies: every ``--anomaly-every`` seconds one series (a different one each time, after a 20 s
warm-up) jumps from ~100 to 10,000 for the rest of the run, and the sending time of the request
that carried its first high sample is kept. The main process polls ``GET /api/v1/findings`` every
0.1 s; the latency of an anomaly is (first poll that sees a finding on that series) − (that send
time): an upper bound on receipt-to-finding-stored, with 0.1 s resolution. relia's own
histograms time every request, not only those that carried an anomaly:
``relia_ingest_to_findings_seconds`` (receipt → its samples scored and their findings stored) and
``relia_ingest_to_stored_seconds`` (→ the samples stored, which follows); they are read from
``/metrics`` at the end, with the share of requests over 1 s.

RSS of the relia process is sampled every 5 s. Writes ``bench/results/ingest.json`` and prints a
table; the JSON on one line is the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import re
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import cramjam
import httpx
import numpy as np
import psutil
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
import outfile  # noqa: E402
from nab import machine_info  # noqa: E402
from relia.errors import ReliaError  # noqa: E402
from relia.signals import SeriesIndex  # noqa: E402
from relia_process import start_relia_up  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "ingest.json"
#: Samples a series may hold in the store at most: relia's default samples_per_series (2,000)
#: plus the eighth it may grow past that between trims.
STORE_WINDOW = 2_250
MIB = 1024 * 1024
HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


# -- a minimal protobuf writer (the bench must not trust relia's decoder to check itself) --------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _len_field(field: int, payload: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def series_labels(i: int) -> dict[str, str]:
    """Labels of series ``i``: 20 metric names over 500 instances of 4 jobs."""
    return {
        "__name__": f"app_metric_{i % 20}",
        "job": f"job-{i % 4}",
        "instance": f"10.0.{(i // 20) // 250}.{(i // 20) % 250}:9100",
        "method": ("GET", "POST")[i % 2],
        "code": "200",
        "handler": f"/api/v1/items/{i % 7}",
    }


class Template:
    """A WriteRequest of given series, one sample each, with the offsets of every sample's value
    (8 bytes) and timestamp (6-byte varint: ms since the epoch until year 4199)."""

    def __init__(self, series: list[int]) -> None:
        parts: list[bytes] = []
        value_at: list[int] = []
        ts_at: list[int] = []
        pos = 0
        for i in series:
            labels = b"".join(
                _len_field(1, _len_field(1, k.encode()) + _len_field(2, v.encode()))
                for k, v in sorted(series_labels(i).items())
            )
            sample = b"\x09" + b"\0" * 8 + b"\x10" + b"\x80" * 5 + b"\x01"  # value, ts (6 bytes)
            ts_msg = labels + _len_field(2, sample)
            head = _varint(1 << 3 | 2) + _varint(len(ts_msg))
            base = pos + len(head) + len(labels) + 2  # the Sample's tag and length
            value_at.append(base + 1)
            ts_at.append(base + 10)
            parts.append(head + ts_msg)
            pos += len(head) + len(ts_msg)
        self.raw = np.frombuffer(b"".join(parts), np.uint8).copy()
        self.value_idx = (np.asarray(value_at)[:, None] + np.arange(8)).ravel()
        self.ts_idx = np.asarray(ts_at)[:, None] + np.arange(6)

    def body(self, ts_ms: int, values: np.ndarray) -> bytes:
        raw = self.raw
        raw[self.value_idx] = np.ascontiguousarray(values, np.float64).view(np.uint8)
        ts_bytes = np.frombuffer(_varint(ts_ms), np.uint8)
        if len(ts_bytes) != 6:
            raise ValueError("timestamp out of the 6-byte varint range")
        raw[self.ts_idx] = ts_bytes
        return bytes(cramjam.snappy.compress_raw(raw.tobytes()))


def sender(
    url: str,
    stream: int,
    series: list[int],
    rate: float,
    duration: float,
    anomaly: dict[int, float],
    out: Any,
    seed: int,
) -> None:
    """One stream: a request of all its series per round, paced to ``rate`` samples/s."""
    tpl = Template(series)
    rng = np.random.default_rng(seed)
    jumped = {j: at for j, at in anomaly.items() if j in set(series)}
    pos = {s: k for k, s in enumerate(series)}
    high: set[int] = set()
    acked = too_many = errors = 0
    sent_at: dict[int, tuple[float, int]] = {}
    last_ts = 0
    t_start = time.time()
    period = len(series) / rate if rate > 0 else 0.0
    next_at = time.monotonic()
    with httpx.Client(timeout=30.0) as http:
        while time.time() - t_start < duration:
            now_s = time.time()
            values = rng.normal(100.0, 1.0, len(series))
            for j, at in jumped.items():
                if now_s - t_start >= at:
                    values[pos[j]] = 10_000.0
            ts_ms = max(int(now_s * 1000), last_ts + 1)
            last_ts = ts_ms
            body = tpl.body(ts_ms, values)
            while True:
                t_send = time.time()
                try:
                    r = http.post(url, content=body, headers=HEADERS)
                except httpx.HTTPError:
                    errors += 1
                    time.sleep(0.1)
                    continue
                if r.status_code == 204:
                    acked += len(series)
                    for j in jumped:
                        if j not in high and now_s - t_start >= jumped[j]:
                            high.add(j)
                            sent_at[j] = (t_send, ts_ms)
                    break
                if r.status_code in (429, 503):
                    too_many += 1
                    time.sleep(float(r.headers.get("Retry-After", "1")))
                    continue
                errors += 1
                break
            if period:
                next_at += period
                delay = next_at - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                elif delay < -1.0:
                    next_at = time.monotonic()  # fell behind: do not burst to catch up
    out.put(
        {
            "stream": stream,
            "acked": acked,
            "429": too_many,
            "errors": errors,
            "sent": sent_at,
            "cpu_s": time.process_time(),
        }
    )


# -- relia up ------------------------------------------------------------------------------------


def _start_relia(tmp: Path) -> tuple[subprocess.Popen[str], str, list[str]]:
    cfg = tmp / "relia.yaml"
    cfg.write_text(
        f"data_dir: {tmp / 'data'}\nhost: {{enabled: false}}\napi: {{host: 127.0.0.1, port: 0}}\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELIA_")}
    command = [sys.executable, "-m", "relia", "up", "--config", str(cfg)]
    return start_relia_up(command, cwd=tmp, env=env)


def _buckets(metrics_text: str, name: str) -> tuple[list[tuple[float, float]], float]:
    """The cumulative buckets ``(le, count)`` and the count of a histogram in exposition text."""
    buckets: list[tuple[float, float]] = []
    count = 0.0
    for line in metrics_text.splitlines():
        if line.startswith(f"{name}_bucket"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(le), float(line.rsplit(" ", 1)[1])))
        elif line.startswith(f"{name}_count"):
            count = float(line.rsplit(" ", 1)[1])
    return buckets, count


def _histogram(metrics_text: str, name: str, since: str | None = None) -> dict[str, Any]:
    """p50/p99 (upper bucket bounds), count and share over 1 s of a Prometheus histogram in
    exposition text; ``since``: an earlier scrape of it, whose observations are left out."""
    buckets, count = _buckets(metrics_text, name)
    if since is not None:
        before, n_before = _buckets(since, name)
        old = dict(before)
        buckets = [(le, c - old.get(le, 0.0)) for le, c in buckets]
        count -= n_before
    out: dict[str, Any] = {"count": int(count)}
    for q in (0.5, 0.99):
        bound = next((le for le, c in buckets if count and c >= q * count), None)
        out[f"p{int(q * 100)}_le_s"] = bound
    within = next((c for le, c in buckets if le == 1.0), None)
    out["share_over_1s"] = round(1 - within / count, 5) if within is not None and count else None
    return out


def _by_minute(
    sent_at: dict[int, float], seen: dict[int, float], t_start: float
) -> dict[int, list[int]]:
    """The anomalies that were found, by the minute of the run their high sample was sent in."""
    out: dict[int, list[int]] = {}
    for j, t in sorted(sent_at.items(), key=lambda kv: kv[1]):
        if j in seen:
            out.setdefault(int((t - t_start) // 60), []).append(j)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    n_streams = args.streams
    per = args.series // n_streams
    warmup = 20.0
    anomalies: dict[int, float] = {}
    k = 0
    t = warmup
    while t < args.duration - 5:
        anomalies[(k * 7919) % args.series] = t
        k += 1
        t += args.anomaly_every
    with tempfile.TemporaryDirectory(prefix="relia-ingest-bench-") as tmp_s:
        tmp = Path(tmp_s)
        proc, url, tail = _start_relia(tmp)
        ps = psutil.Process(proc.pid)
        cpu0 = ps.cpu_times()
        out: mp.Queue[dict[str, Any]] = mp.Queue()
        t0 = time.time()
        procs = [
            mp.Process(
                target=sender,
                args=(
                    url + "/api/v1/write",
                    s,
                    list(range(s * per, (s + 1) * per)),
                    args.rate / n_streams if args.rate else 0.0,
                    args.duration,
                    anomalies,
                    out,
                    s,
                ),
            )
            for s in range(n_streams)
        ]
        for p in procs:
            p.start()
        rss: list[tuple[float, int]] = []
        seen: dict[int, float] = {}
        sightings: dict[tuple[int, str, int], float] = {}
        sid_of = {j: str(_series_id(series_labels(j))) for j in anomalies}
        next_rss = time.monotonic()
        warm_metrics: str | None = None  # /metrics when the warm-up ended
        try:
            with httpx.Client(timeout=10.0) as http:
                while any(p.is_alive() for p in procs):
                    if proc.poll() is not None:
                        raise SystemExit("relia up exited:\n" + "".join(tail))
                    if warm_metrics is None and time.time() - t0 >= warmup:
                        warm_metrics = http.get(url + "/metrics").text
                    if time.monotonic() >= next_rss:
                        rss.append((time.time() - t0, ps.memory_info().rss))
                        next_rss += 5.0
                    # Ask only about the anomalies that are due and not seen yet, each by its
                    # series id (relia's ids are stable hashes of name and labels), so polling
                    # does not load the server it measures. A finding counts for an anomaly
                    # only if it reaches its first high sample (a noise finding on that series
                    # just before is no detection); which sample that was, the senders say at
                    # the end, so every sighting is kept. After 60 s an anomaly counts as missed.
                    now = time.time()
                    due = [
                        j
                        for j, at in anomalies.items()
                        if j not in seen and 0 <= now - t0 - at < 60
                    ]
                    for j in due:
                        since = int((t0 + anomalies[j] - 2.0) * 1000)
                        try:
                            r = http.get(
                                url + "/api/v1/findings",
                                params={"series_id": sid_of[j], "since": str(since)},
                            )
                        except httpx.HTTPError:
                            continue
                        now = time.time()
                        for f in r.json().get("findings", []):
                            sightings.setdefault((j, f["id"], f["end"]), now)
                            if f["end"] >= int((t0 + anomalies[j]) * 1000):
                                seen.setdefault(j, now)
                    time.sleep(0.1)
            results = [out.get(timeout=30) for _ in procs]
            cpu1 = ps.cpu_times()  # the load is over (relia may still be draining its queue)
            metrics_text = _drained_metrics(url)
            health = httpx.get(url + "/healthz", timeout=10).json()
        finally:
            for p in procs:
                if p.is_alive():
                    p.terminate()
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    wall = args.duration
    acked = sum(r["acked"] for r in results)
    relia_cpu = (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system)
    sent_at: dict[int, float] = {}
    high_ts: dict[int, int] = {}
    for result in results:
        for j, (t_send, ts_ms) in result["sent"].items():
            sent_at[int(j)], high_ts[int(j)] = t_send, ts_ms
    found: dict[int, float] = {}
    for (j, _fid, end), when in sightings.items():
        if j in high_ts and end >= high_ts[j]:
            found[j] = min(found.get(j, when), when)
    seen = found
    lat = sorted(seen[j] - sent_at[j] for j in sent_at if j in seen)
    missed = sorted(j for j in sent_at if j not in seen)
    first = [v for t, v in rss if t <= 60.0]
    last = [v for t, v in rss if t >= rss[-1][0] - 60.0] if rss else []
    # The store holds a bounded window per series (samples_per_series = 2,000 by default, up to
    # an eighth more between trims), so RSS rises by design until that window is full; the
    # flatness that matters is from then on. Full when every series got that many samples at
    # the rate acknowledged; the minute after that is compared with the last minute.
    full_s = STORE_WINDOW * args.series / (acked / wall) if acked else None
    after_full = [v for t, v in rss if full_s is not None and full_s <= t <= full_s + 60.0]
    growth = (
        float(np.mean(last)) / float(np.mean(after_full)) - 1.0
        if after_full and last and full_s is not None and full_s + 60.0 <= rss[-1][0] - 60.0
        else None
    )
    return {
        "benchmark": "ingest",
        "duration_s": wall,
        "series": args.series,
        "streams": n_streams,
        "samples_per_request": per,
        "rate_offered": args.rate or "closed loop",
        "samples_acked": acked,
        "samples_per_s": round(acked / wall, 1),
        "http_429_or_503": sum(r["429"] for r in results),
        "http_errors": sum(r["errors"] for r in results),
        "anomalies_sent": len(sent_at),
        "anomalies_found": len(lat),
        "anomalies_missed": len(missed),
        "latency_method": "findings API polled every 0.1 s; send time of the request carrying "
        "the anomaly's first high sample -> first poll showing a finding on that series",
        "latency_p50_s": round(float(np.percentile(lat, 50)), 3) if lat else None,
        "latency_p99_s": round(float(np.percentile(lat, 99)), 3) if lat else None,
        "latency_max_s": round(lat[-1], 3) if lat else None,
        # Whether latency drifts over the run (state that grows with time shows here first).
        "latency_max_by_minute_s": {
            str(m): round(max(seen[j] - sent_at[j] for j in js), 3)
            for m, js in _by_minute(sent_at, seen, t0).items()
        },
        # Every request, timed inside relia: receipt → its findings stored (what the latency
        # above measures for the anomalies, less the network and the API poll), and → its
        # samples stored (after the findings). The whole run, and after the warm-up (start-up
        # compiles the detector's kernels while the first requests queue; the anomalies start
        # after it too).
        **{
            key: value
            for name in ("relia_ingest_to_findings_seconds", "relia_ingest_to_stored_seconds")
            for key, value in (
                (name, _histogram(metrics_text, name)),
                (
                    f"{name}_after_warmup",
                    _histogram(metrics_text, name, warm_metrics) if warm_metrics else None,
                ),
            )
        },
        "engine_tick_seconds": _histogram(metrics_text, "relia_engine_tick_duration_seconds"),
        "rss_mib_first_minute": round(float(np.mean(first)) / MIB, 1) if first else None,
        "rss_mib_last_minute": round(float(np.mean(last)) / MIB, 1) if last else None,
        "rss_mib_max": round(max(v for _, v in rss) / MIB, 1) if rss else None,
        "store_full_s": round(full_s, 1) if full_s is not None else None,
        "rss_mib_minute_after_store_full": (
            round(float(np.mean(after_full)) / MIB, 1) if after_full else None
        ),
        "rss_growth_after_store_full": round(growth, 4) if growth is not None else None,
        "rss_note": "the store keeps a bounded window per series, so RSS rises until it is full "
        "(store_full_s: 2,250 samples per series at the acknowledged rate); growth is the last "
        "minute's mean RSS over the mean of the minute after that",
        "rss_samples": [[round(t, 1), round(v / MIB, 1)] for t, v in rss],
        "relia_cpu_s": round(relia_cpu, 1),
        "relia_cpu_us_per_sample": round(1e6 * relia_cpu / acked, 3) if acked else None,
        "senders_cpu_s": round(sum(r["cpu_s"] for r in results), 1),
        "cpu_note": "CPU seconds (user + system) of relia up and of the sender processes while "
        "the load ran; the machine has 2 cores for both",
        "engine_ticks": (health.get("engine") or {}).get("ticks"),
        "machine": machine_info(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _series_id(labels: dict[str, str]) -> int:
    """relia's id of a series: a stable hash of its name and labels."""
    rest = {k: v for k, v in labels.items() if k != "__name__"}
    return SeriesIndex().get_or_add(labels["__name__"], rest)


def _drained_metrics(url: str, timeout_s: float = 120.0) -> str:
    """relia's ``/metrics`` once the samples acknowledged during the run were stored (its queue is
    empty, it timed a stored request, and the tick that decided the last drained samples has
    stored them too: a tick observes receipt→findings before receipt→stored), so both histograms
    cover the same requests; after ``timeout_s`` as they are."""
    deadline = time.monotonic() + timeout_s
    while True:
        text = httpx.get(url + "/metrics", timeout=10).text
        queued = re.search(r"^relia_ingest_queue_samples (\S+)$", text, re.M)
        stored = re.search(r"^relia_ingest_to_stored_seconds_count (\S+)$", text, re.M)
        decided = re.search(r"^relia_ingest_to_findings_seconds_count (\S+)$", text, re.M)
        drained = queued is not None and float(queued.group(1)) == 0.0
        settled = (
            stored is not None
            and decided is not None
            and float(stored.group(1)) > 0
            and float(stored.group(1)) == float(decided.group(1))
        )
        if (drained and settled) or time.monotonic() > deadline:
            return text
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=600.0, help="seconds of load")
    ap.add_argument("--series", type=int, default=10_000)
    ap.add_argument("--streams", type=int, default=5, help="sender processes")
    ap.add_argument("--rate", type=float, default=500_000, help="samples/s offered; 0: max")
    ap.add_argument("--anomaly-every", type=float, default=2.0, help="seconds between anomalies")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    try:
        outfile.check_writable(args.out)
    except ReliaError as exc:
        return outfile.fail(exc)
    res = run(args)
    try:
        outfile.write_json(args.out, res)
    except ReliaError as exc:
        return outfile.fail(exc)
    table = Table(title="relia up: remote-write ingest")
    table.add_column("measure")
    table.add_column("value", justify="right")
    for key in (
        "samples_per_s",
        "http_429_or_503",
        "anomalies_found",
        "anomalies_missed",
        "latency_p50_s",
        "latency_p99_s",
        "rss_mib_first_minute",
        "rss_mib_last_minute",
        "rss_mib_max",
        "store_full_s",
        "rss_mib_minute_after_store_full",
        "rss_growth_after_store_full",
        "relia_cpu_us_per_sample",
        "senders_cpu_s",
    ):
        table.add_row(key, str(res[key]))
    for what, key in (
        ("findings", "relia_ingest_to_findings_seconds"),
        ("findings, after warm-up", "relia_ingest_to_findings_seconds_after_warmup"),
        ("samples stored", "relia_ingest_to_stored_seconds"),
    ):
        h = res[key]
        if h is None:
            continue
        table.add_row(
            f"in-engine receipt→{what} p50/p99 (≤ bucket), share > 1 s",
            f"{h['p50_le_s']} / {h['p99_le_s']}, {h['share_over_1s']}",
        )
    Console().print(table)
    print(json.dumps({k: v for k, v in res.items() if k != "rss_samples"}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
