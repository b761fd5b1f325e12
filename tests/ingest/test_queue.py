from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from relia.ingest.queue import IngestQueue, QueueClosed, QueueFull
from relia.ingest.remote_write import RemoteWriteDecoder
from relia.signals import MetricBatch, SeriesIndex
from tests.ingest.prompb import encode

T0 = 1_700_000_000_000


def _body(i: int, n: int = 3) -> bytes:
    return encode([({"__name__": "m", "i": str(i)}, [(T0 + k, float(i)) for k in range(n)])])


def _offer(q: IngestQueue, dec: RemoteWriteDecoder, i: int, n: int = 3) -> int:
    body = _body(i, n)
    return q.offer(dec.decode(body).batch, body)


def test_bounded_by_samples_and_drains_whole_requests(tmp_path: Path) -> None:
    dec = RemoteWriteDecoder(SeriesIndex())
    q = IngestQueue(7, tmp_path)
    q.recover(lambda p: dec.decode(p).batch)
    _offer(q, dec, 1)
    _offer(q, dec, 2)
    with pytest.raises(QueueFull) as full:
        _offer(q, dec, 3)
    assert full.value.retry_after_s >= 1
    assert q.samples == 6
    batch, token = q.drain(4)  # whole requests: the first one only
    assert len(batch) == 3 and token is not None and token.seq == 1
    batch, token = q.drain()
    assert len(batch) == 3 and token is not None and token.seq == 2
    empty, none = q.drain()
    assert len(empty) == 0 and none is None


def test_an_empty_queue_takes_any_request(tmp_path: Path) -> None:
    dec = RemoteWriteDecoder(SeriesIndex())
    q = IngestQueue(2, tmp_path)
    _offer(q, dec, 1, n=5)  # larger than the bound, but the queue was empty
    assert q.samples == 5


def test_uncommitted_records_are_replayed_committed_ones_not(tmp_path: Path) -> None:
    dec = RemoteWriteDecoder(SeriesIndex())
    q = IngestQueue(1000, tmp_path)
    for i in range(5):
        _offer(q, dec, i)
    _batch, token = q.drain(6)  # requests 1 and 2
    assert token is not None
    q.commit(token)
    q.close()
    with pytest.raises(QueueClosed):
        _offer(q, dec, 9)

    q2 = IngestQueue(1000, tmp_path)
    assert q2.recover(lambda p: dec.decode(p).batch) == 3
    batch, token = q2.drain()
    assert sorted(set(batch.value.tolist())) == [2.0, 3.0, 4.0]
    assert token is not None
    q2.commit(token)
    _offer(q2, dec, 7)
    q2.close()
    q3 = IngestQueue(1000, tmp_path)
    assert q3.recover(lambda p: dec.decode(p).batch) == 1  # only request 7
    assert q3.drain()[0].value.tolist() == [7.0] * 3


def test_segments_rotate_and_committed_ones_are_deleted(tmp_path: Path) -> None:
    dec = RemoteWriteDecoder(SeriesIndex())
    q = IngestQueue(10_000, tmp_path, segment_bytes=200)
    for i in range(20):
        _offer(q, dec, i)
    assert len(list(tmp_path.glob("*.wal"))) > 3
    _b, token = q.drain()
    assert token is not None
    q.commit(token)
    assert len(list(tmp_path.glob("*.wal"))) == 1  # the open segment


def test_torn_tail_is_cut_off(tmp_path: Path) -> None:
    dec = RemoteWriteDecoder(SeriesIndex())
    q = IngestQueue(1000, tmp_path, fsync_interval_s=0)
    _offer(q, dec, 1)
    _offer(q, dec, 2)
    q.close()
    (seg,) = tmp_path.glob("*.wal")
    data = seg.read_bytes()
    seg.write_bytes(data[:-5])  # the second record's last bytes never reached the disk
    q2 = IngestQueue(1000, tmp_path)
    assert q2.recover(lambda p: dec.decode(p).batch) == 1
    assert q2.corrupt_records == 1
    _offer(q2, dec, 3)
    q2.close()
    q3 = IngestQueue(1000, tmp_path)
    assert q3.recover(lambda p: dec.decode(p).batch) == 2


_CHILD = textwrap.dedent(
    """
    import sys
    from relia.ingest.queue import IngestQueue
    from relia.ingest.remote_write import RemoteWriteDecoder
    from relia.signals import SeriesIndex
    from tests.ingest.prompb import encode
    dec = RemoteWriteDecoder(SeriesIndex())
    q = IngestQueue(10**9, sys.argv[1])
    i = 0
    while True:
        body = encode([({"__name__": "m", "i": str(i)}, [(1, float(i))])])
        q.offer(dec.decode(body).batch, body)
        print(i, flush=True)  # the acknowledgement
        if i % 50 == 0:
            batch, token = q.drain()
            q.commit(token)
        i += 1
    """
)


def test_acknowledged_requests_survive_sigkill(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _CHILD, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    assert proc.stdout is not None
    acked = -1
    for line in proc.stdout:
        acked = int(line)
        if acked >= 300:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    # The child runs ahead of this reader: whatever it printed before the kill was acknowledged.
    for line in proc.stdout.read().split():
        acked = int(line)
    dec = RemoteWriteDecoder(SeriesIndex())
    q = IngestQueue(10**9, tmp_path)
    q.recover(lambda p: dec.decode(p).batch)
    batch, _ = q.drain()
    got = set(batch.value.astype(np.int64).tolist())
    # The child commits right after acknowledging a multiple of 50, so when the last acknowledgement
    # is one, the kill may have come before or after that commit.
    commits = [(acked // 50) * 50] + ([acked - 50] if acked % 50 == 0 else [])
    # Everything acknowledged after the last commit is back (and maybe one more, written but not
    # yet printed when the kill came); nothing committed long before is replayed.
    first = min(got, default=acked)
    back = [set(range(c + 1, acked + 1)) <= got and first > c - 50 for c in commits]
    assert any(back), (acked, sorted(got))
    assert max(got, default=acked) <= acked + 1


def test_retry_after_follows_the_drain_rate(tmp_path: Path) -> None:
    q = IngestQueue(10, tmp_path)
    b = MetricBatch.for_series(1, [1, 2, 3, 4, 5], [0.0] * 5)
    for _ in range(3):
        q.offer(b, b"x")
        q.offer(b, b"x")
        q.drain()
    q.offer(b, b"x")
    q.offer(b, b"x")
    with pytest.raises(QueueFull) as full:
        q.offer(b, b"x")
    assert 1 <= full.value.retry_after_s <= 60
