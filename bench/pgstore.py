"""How long PostgresStore.append_samples takes, on a real PostgreSQL server on loopback.

Two batch shapes, each timed on an empty store (the first write of every series) and in the
steady state that matters (every series already holds ``--keep`` samples, so every append also
trims: the store deletes as many old samples as it adds):

- 10,000 series x 1 point (one scrape of a large fleet),
- 1,000 series x 100 points (a backfill or a remote-write burst).

The steady state is reached by filling the tables server-side (``generate_series``), which gives
the same rows and counts that appends would (checked before timing). The server is the test
fixture's (``tests/pgserver.py``: Debian's binaries, fsync and synchronous_commit off, so the
figures are CPU and protocol cost, not disk flushes).

Usage: python bench/pgstore.py [--keep 500] [--repeat 5]; writes bench/results/pgstore.json.
"""

from __future__ import annotations

import argparse
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.pgserver import PostgresServer, _bindir  # noqa: E402

import outfile  # noqa: E402  (bench/, on the path when run as a script)
from relia.errors import ReliaError  # noqa: E402
from relia.signals import MetricBatch  # noqa: E402
from relia.store.postgres import PostgresStore  # noqa: E402

SHAPES = [(10_000, 1), (1_000, 100)]


def make_batch(n_series: int, points: int, t0: int) -> MetricBatch:
    sid = np.repeat(np.arange(n_series, dtype=np.int64), points)
    ts = np.tile(np.arange(t0, t0 + points, dtype=np.int64), n_series)
    return MetricBatch(sid, ts, np.random.default_rng(t0).normal(size=len(sid)))


def fill(dsn: str, n_series: int, keep: int) -> None:
    """Every series 0..n_series-1 holds ts 0..keep-1 (as keep appends would leave it)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("TRUNCATE samples, sample_counts")
        conn.execute(
            "INSERT INTO samples (series_id, ts, value) SELECT s, t, random() "
            "FROM generate_series(0, %s) AS s, generate_series(0, %s) AS t",
            [n_series - 1, keep - 1],
        )
        conn.execute(
            "INSERT INTO sample_counts SELECT s, %s FROM generate_series(0, %s) AS s",
            [keep, n_series - 1],
        )
        conn.execute("VACUUM ANALYZE samples")
        conn.execute("VACUUM ANALYZE sample_counts")


def run(store: PostgresStore, dsn: str, keep: int, repeat: int) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for n_series, points in SHAPES:
        rows = n_series * points
        # Empty: the first write of each series (fresh tables every time).
        empty: list[float] = []
        for _ in range(repeat):
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute("TRUNCATE samples, sample_counts")
            b = make_batch(n_series, points, 0)
            t = time.perf_counter()
            store.append_samples(b)
            empty.append(time.perf_counter() - t)
        # Steady: every series full; each append adds `points` new samples and trims as many.
        fill(dsn, n_series, keep)
        steady: list[float] = []
        t0 = keep
        for _ in range(repeat):
            b = make_batch(n_series, points, t0)
            t = time.perf_counter()
            store.append_samples(b)
            steady.append(time.perf_counter() - t)
            t0 += points
        # The bound held and the last batch is there: the timed work was the real work.
        with psycopg.connect(dsn) as conn:
            got = conn.execute(
                "SELECT count(*), count(DISTINCT series_id), max(ts) FROM samples"
            ).fetchone()
        assert got == (n_series * keep, n_series, t0 - 1), got
        for state, times in (("empty", empty), ("steady", steady)):
            med = statistics.median(times)
            out.append(
                {
                    "series": n_series,
                    "points_per_series": points,
                    "rows": rows,
                    "state": state,
                    "keep": keep,
                    "stored_rows_before": 0 if state == "empty" else n_series * keep,
                    "median_s": round(med, 4),
                    "min_s": round(min(times), 4),
                    "rows_per_s": round(rows / med),
                    "runs": len(times),
                }
            )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keep", type=int, default=500, help="samples_per_series")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "pgstore.json")
    args = ap.parse_args()
    try:
        outfile.check_writable(args.out)
    except ReliaError as exc:
        sys.exit(outfile.fail(exc))
    bindir = _bindir()
    if bindir is None:
        sys.exit("PostgreSQL server binaries not found (apt-get install postgresql)")
    root = Path(tempfile.mkdtemp(prefix="relia-pgbench-"))
    server = PostgresServer(bindir, root)
    server.start()
    try:
        dsn = server.create_database()
        with PostgresStore(dsn, samples_per_series=args.keep) as store:
            results = run(store, dsn, args.keep, args.repeat)
        with psycopg.connect(server.dsn()) as conn:
            version = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
    report = {
        "benchmark": "PostgresStore.append_samples",
        "server": f"PostgreSQL {version} on loopback (fsync off)",
        "machine": f"{platform.machine()}, {platform.python_version()}",
        "results": results,
    }
    try:
        outfile.write_json(args.out, report)
    except ReliaError as exc:
        sys.exit(outfile.fail(exc))
    print(f"{'batch':>18} {'state':>7} {'stored':>10} {'median s':>9} {'rows/s':>10}")
    for r in results:
        shape = f"{r['series']:,} x {r['points_per_series']}"
        print(
            f"{shape:>18} {r['state']:>7} {r['stored_rows_before']:>10,} "
            f"{r['median_s']:>9.3f} {r['rows_per_s']:>10,}"
        )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
