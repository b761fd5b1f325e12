"""Smoke test of bench/ingest.py: a short, slow-paced run against a real ``relia up``.

It checks that the script starts relia, drives remote-write from its sender processes, and writes
the JSON it promises with sane values; it asserts nothing about speed (that is what it measures).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import ingest  # noqa: E402


@pytest.mark.slow
def test_ingest_bench_writes_sane_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ingest.json"
    # 2 streams x 50 series at 500 samples/s for 4 s: ~2,000 samples, no anomalies (they start
    # after the bench's 20 s warm-up), so the run stays a few seconds plus relia's start-up.
    args = ["--duration", "4", "--series", "100", "--streams", "2", "--rate", "500"]
    rc = ingest.main([*args, "--out", str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert last == {k: v for k, v in doc.items() if k != "rss_samples"}

    assert doc["benchmark"] == "ingest"
    assert doc["duration_s"] == 4.0
    assert (doc["series"], doc["streams"], doc["samples_per_request"]) == (100, 2, 50)
    assert doc["http_errors"] == 0
    # Paced at 500/s for 4 s, so at most ~2,000 (+ the first request, sent at once); how many
    # arrive depends on how fast the senders start on a loaded machine: at least one request.
    assert doc["samples_acked"] % 50 == 0
    assert 50 <= doc["samples_acked"] <= 2_500
    assert doc["samples_per_s"] == pytest.approx(doc["samples_acked"] / 4.0, abs=0.1)
    assert doc["anomalies_sent"] == doc["anomalies_found"] + doc["anomalies_missed"]
    hist = doc["relia_ingest_to_stored_seconds"]
    assert hist["count"] >= 1  # relia stored what it acknowledged and timed it
    decided = doc["relia_ingest_to_findings_seconds"]
    assert decided["count"] == hist["count"]  # every stored request was timed to its findings
    assert 0.0 <= decided["share_over_1s"] <= hist["share_over_1s"] <= 1.0
    warm = doc["relia_ingest_to_findings_seconds_after_warmup"]  # a 4 s run has no warm-up end
    assert warm is None or 0 <= warm["count"] <= decided["count"]
    assert doc["rss_mib_max"] is not None and 50 < doc["rss_mib_max"] < 4096
    assert doc["rss_samples"] and all(v > 0 for _, v in doc["rss_samples"])
    assert doc["engine_ticks"] is not None and doc["engine_ticks"] >= 1
    assert doc["machine"]["cores"] >= 1


def test_an_unwritable_out_is_refused_before_relia_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert ingest.main(["--duration", "4", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a folder" in err
