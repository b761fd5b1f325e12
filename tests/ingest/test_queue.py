from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from relia.errors import ConfigError
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


class _FakeTime:
    """Stands in for the ``time`` module inside relia.ingest.queue: a monotonic clock the test
    moves by hand."""

    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now


@pytest.fixture
def fake_time(monkeypatch: pytest.MonkeyPatch) -> _FakeTime:
    import relia.ingest.queue as queue_mod

    clock = _FakeTime()
    monkeypatch.setattr(queue_mod, "time", clock)
    return clock


@pytest.fixture
def synced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every fsync, as the path of what was fsynced, in order."""
    calls: list[str] = []
    real = os.fsync

    def fsync(fd: int) -> None:
        calls.append(os.readlink(f"/proc/self/fd/{fd}"))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return calls


def _segment_syncs(synced: list[str]) -> int:
    """How many fsyncs were of WAL segments (not of the directory or the commit marker)."""
    return sum(1 for path in synced if path.endswith(".wal"))


def _batch(n: int) -> MetricBatch:
    return MetricBatch.for_series(1, list(range(1, n + 1)), [0.0] * n)


def _replayed(wal_dir: Path) -> tuple[int, list[bytes]]:
    """What a fresh queue on ``wal_dir`` replays: its count and the payloads, in order."""
    seen: list[bytes] = []
    q = IngestQueue(1000, wal_dir)
    n = q.recover(lambda p: seen.append(p) or _batch(1))
    q.close()
    return n, seen


def test_a_request_that_fills_the_queue_exactly_is_accepted(tmp_path: Path) -> None:
    q = IngestQueue(6, tmp_path)
    q.offer(_batch(3), b"a")
    q.offer(_batch(3), b"b")  # 6 of 6
    assert q.samples == 6
    with pytest.raises(QueueFull):
        q.offer(_batch(1), b"c")


def test_fsync_interval_zero_fsyncs_every_write(
    tmp_path: Path, fake_time: _FakeTime, synced: list[str]
) -> None:
    q = IngestQueue(1000, tmp_path, fsync_interval_s=0)
    for i in range(3):  # the clock does not move: each write is still fsynced
        q.offer(_batch(1), b"%d" % i)
    assert _segment_syncs(synced) == 3


def test_fsync_interval_fsyncs_once_that_much_time_has_passed(
    tmp_path: Path, fake_time: _FakeTime, synced: list[str]
) -> None:
    q = IngestQueue(1000, tmp_path, fsync_interval_s=5)
    expected = []
    for t, due in ((101, False), (105, True), (109, False), (110, True), (114.5, False)):
        fake_time.now = t
        q.offer(_batch(1), b"x")
        expected.append(due)
        assert _segment_syncs(synced) == sum(expected), t
    q.close()  # and on close
    assert _segment_syncs(synced) == 3


def test_a_new_segment_and_the_commit_marker_are_made_durable_in_the_directory(
    tmp_path: Path, synced: list[str]
) -> None:
    # fsync makes a file's data durable, not its name: a segment whose directory entry was never
    # fsynced can be missing after power loss, with every write acknowledged in it.
    q = IngestQueue(1000, tmp_path, fsync_interval_s=0, segment_bytes=1)
    q.offer(_batch(1), b"a")
    wal_dir = str(tmp_path)
    first = str(tmp_path / f"{1:020d}.wal")
    assert synced == [wal_dir, first]  # the new name before the acknowledged write
    q.offer(_batch(1), b"b")  # segment_bytes=1: a second segment
    assert synced[2:] == [wal_dir, str(tmp_path / f"{2:020d}.wal")]
    _b, token = q.drain()
    assert token is not None
    q.commit(token)
    marker = str(tmp_path / "committed.tmp")
    assert synced[4:] == [marker, wal_dir]  # the marker's data, then its new name
    q.close()


def test_without_fsync_the_directory_is_not_fsynced_either(
    tmp_path: Path, synced: list[str]
) -> None:
    q = IngestQueue(1000, tmp_path, segment_bytes=1)
    for payload in (b"a", b"b"):
        q.offer(_batch(1), payload)
    _b, token = q.drain()
    assert token is not None
    q.commit(token)
    assert str(tmp_path) not in synced
    q.close()


def test_sequence_numbers_continue_after_every_segment_was_deleted(tmp_path: Path) -> None:
    dec = RemoteWriteDecoder(SeriesIndex())
    q = IngestQueue(1000, tmp_path)
    for i in range(3):
        _offer(q, dec, i)
    _b, token = q.drain()
    assert token is not None
    q.commit(token)
    q.close()
    q2 = IngestQueue(1000, tmp_path)
    assert q2.recover(lambda p: dec.decode(p).batch) == 0  # all committed: the WAL is emptied
    q2.close()
    assert list(tmp_path.glob("*.wal")) == []
    q3 = IngestQueue(1000, tmp_path)
    q3.recover(lambda p: dec.decode(p).batch)
    assert _offer(q3, dec, 7) == 4  # not 1: seqs up to 3 count as committed
    q3.close()
    q4 = IngestQueue(1000, tmp_path)
    assert q4.recover(lambda p: dec.decode(p).batch) == 1
    assert q4.drain()[0].value.tolist() == [7.0] * 3


def test_a_short_write_is_refused_and_cut_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A full disk can cut a write to a regular file short. That request must not be
    # acknowledged, and its torn bytes must not stay in the segment: recovery stops at a torn
    # record, so every write acknowledged after it would be lost.
    import relia.ingest.queue as queue_module

    real_write = os.write

    def short_once(fd: int, data: bytes) -> int:
        monkeypatch.setattr(queue_module.os, "write", real_write)
        return real_write(fd, data[: len(data) // 2])

    q = IngestQueue(1000, tmp_path)
    q.offer(_batch(1), b"first")
    monkeypatch.setattr(queue_module.os, "write", short_once)
    with pytest.raises(OSError, match="cut short"):
        q.offer(_batch(1), b"torn by a full disk")
    q.offer(_batch(1), b"third")  # acknowledged after the failure
    q.close()
    assert _replayed(tmp_path) == (2, [b"first", b"third"])


def test_a_record_whose_bytes_changed_is_not_replayed(tmp_path: Path) -> None:
    q = IngestQueue(1000, tmp_path)
    q.offer(_batch(1), b"first")
    q.offer(_batch(1), b"second")
    q.close()
    (seg,) = tmp_path.glob("*.wal")
    data = bytearray(seg.read_bytes())
    data[-1] ^= 0xFF  # a bit flip in the last payload: length and seq still fit
    seg.write_bytes(bytes(data))
    seen: list[bytes] = []

    def decode(p: bytes) -> MetricBatch:
        seen.append(p)
        return _batch(1)

    q2 = IngestQueue(1000, tmp_path)
    assert q2.recover(decode) == 1
    assert seen == [b"first"]
    assert q2.corrupt_records == 1


def test_a_torn_tail_is_reported_once(tmp_path: Path) -> None:
    q = IngestQueue(1000, tmp_path)
    q.offer(_batch(1), b"first")
    q.offer(_batch(1), b"second")
    q.close()
    (seg,) = tmp_path.glob("*.wal")
    seg.write_bytes(seg.read_bytes()[:-3])
    q2 = IngestQueue(1000, tmp_path)
    assert q2.recover(lambda p: _batch(1)) == 1 and q2.corrupt_records == 1
    q2.close()
    q3 = IngestQueue(1000, tmp_path)  # the torn bytes were cut off: nothing to report again
    assert q3.recover(lambda p: _batch(1)) == 1 and q3.corrupt_records == 0


def test_a_segment_is_deleted_exactly_when_all_its_records_are_committed(
    tmp_path: Path,
) -> None:
    q = IngestQueue(1000, tmp_path, segment_bytes=1)  # one record per segment
    for i in range(3):
        q.offer(_batch(1), b"%d" % i)
    assert len(list(tmp_path.glob("*.wal"))) == 3
    _b, token = q.drain(1)
    assert token is not None and token.seq == 1
    q.commit(token)
    # Segment 1 is done; 2 and 3 hold uncommitted records and must stay.
    assert sorted(p.name for p in tmp_path.glob("*.wal")) == [f"{s:020d}.wal" for s in (2, 3)]
    q.close()
    assert _replayed(tmp_path) == (2, [b"1", b"2"])


def test_committing_an_older_token_after_a_newer_one_does_not_undo_it(tmp_path: Path) -> None:
    q = IngestQueue(1000, tmp_path)
    for i in range(3):
        q.offer(_batch(1), b"%d" % i)
    _b, t1 = q.drain(1)
    _b, t2 = q.drain()
    assert t1 is not None and t2 is not None
    q.commit(t2)
    q.commit(t1)  # late: everything up to t2 is stored already
    q.close()
    q2 = IngestQueue(1000, tmp_path)
    assert q2.recover(lambda p: _batch(1)) == 0


def test_drain_takes_a_whole_request_even_over_its_limit(tmp_path: Path) -> None:
    q = IngestQueue(1000, tmp_path)
    q.offer(_batch(3), b"a")
    batch, token = q.drain(1)
    assert len(batch) == 3 and token is not None and token.seq == 1
    assert q.samples == 0


def test_replayed_requests_count_against_the_bound(tmp_path: Path) -> None:
    q = IngestQueue(1000, tmp_path)
    for i in range(3):
        q.offer(_batch(2), b"%d" % i)
    q.close()
    q2 = IngestQueue(4, tmp_path)  # smaller now: the 6 acknowledged samples are replayed anyway
    assert q2.recover(lambda p: _batch(2)) == 3
    assert q2.samples == 6 and q2.requests == 3
    with pytest.raises(QueueFull):
        q2.offer(_batch(1), b"x")


def test_retry_after_is_the_excess_over_the_drain_rate(
    tmp_path: Path, fake_time: _FakeTime
) -> None:
    q = IngestQueue(10, tmp_path)
    for t in (0, 2, 4):  # 4 samples drained every 2 s: 12 samples over 6 s by t=6, 2/s
        fake_time.now = t
        q.offer(_batch(4), b"x")
        q.drain()
    fake_time.now = 6
    q.offer(_batch(3), b"x")
    with pytest.raises(QueueFull) as full:
        q.offer(_batch(10), b"x")  # 3 samples over the bound: 1.5 s, rounded up
    assert full.value.retry_after_s == 2


def test_retry_after_is_at_most_a_minute(tmp_path: Path, fake_time: _FakeTime) -> None:
    q = IngestQueue(10, tmp_path)
    for t in (0, 1000):  # 2 samples in 1000 s
        fake_time.now = t
        q.offer(_batch(1), b"x")
        q.drain()
    q.offer(_batch(10), b"x")
    with pytest.raises(QueueFull) as full:
        q.offer(_batch(5), b"x")
    assert full.value.retry_after_s == 60


def test_a_segment_reopened_after_a_torn_first_record_is_not_deleted_early(
    tmp_path: Path,
) -> None:
    # Power loss tore the only record of the newest segment (never acknowledged). After the
    # restart the next write gets that segment's sequence number, so it goes to the same file.
    q = IngestQueue(1000, tmp_path, segment_bytes=1)  # one record per segment
    for i in range(5):
        q.offer(_batch(1), b"%d" % i)
    q.close()
    newest = tmp_path / f"{5:020d}.wal"
    newest.write_bytes(newest.read_bytes()[:-2])
    q2 = IngestQueue(1000, tmp_path, segment_bytes=1)
    assert q2.recover(lambda p: _batch(1)) == 4
    assert q2.offer(_batch(1), b"acked") == 5
    _b, token = q2.drain(4)  # the four replayed requests are stored, "acked" is not yet
    assert token is not None and token.seq == 4
    q2.commit(token)
    q2.close()
    assert _replayed(tmp_path) == (1, [b"acked"])


def test_the_wal_is_private_whatever_the_umask(tmp_path: Path) -> None:
    # It holds every sample senders wrote: the same data as the store, and as private.
    data_dir = tmp_path / "data"  # missing: the WAL creates it (a PostgreSQL store makes none)
    old = os.umask(0)
    try:
        dec = RemoteWriteDecoder(SeriesIndex())
        q = IngestQueue(1000, data_dir / "wal")
        q.recover(lambda p: dec.decode(p).batch)
        _offer(q, dec, 1)
        _, token = q.drain()
        assert token is not None
        q.commit(token)
        _offer(q, dec, 2)
        files = sorted((data_dir / "wal").iterdir())
        assert {f.name for f in files} >= {"lock", "committed"} and any(
            f.suffix == ".wal" for f in files
        )
        assert {f.name: f.stat().st_mode & 0o777 for f in files} == {f.name: 0o600 for f in files}
        for directory in (data_dir, data_dir / "wal"):
            assert directory.stat().st_mode & 0o777 == 0o700, directory
        q.close()
    finally:
        os.umask(old)


def test_a_second_queue_on_one_wal_directory_is_refused(tmp_path: Path) -> None:
    # Two replicas sharing a data_dir numbered records from 1 each into one segment and shared
    # one commit marker: one's commit hid the other's acknowledged samples from its replay.
    dec = RemoteWriteDecoder(SeriesIndex())
    first = IngestQueue(1000, tmp_path)
    first.recover(lambda p: dec.decode(p).batch)
    second = IngestQueue(1000, tmp_path)
    with pytest.raises(ConfigError) as refused:
        second.recover(lambda p: dec.decode(p).batch)
    assert str(refused.value) == (
        f"{tmp_path}: the WAL is in use by another relia (process {os.getpid()}): give each "
        "replica its own data_dir (or ingest.wal_dir)"
    )
    with pytest.raises(ConfigError):
        _offer(second, dec, 1)
    first.close()  # closing gives the directory up
    _offer(second, dec, 1)
    second.close()


_HOLDER = textwrap.dedent(
    """
    import sys
    from relia.ingest.queue import IngestQueue
    q = IngestQueue(10, sys.argv[1])
    q.recover(lambda p: None)
    print("held", flush=True)
    sys.stdin.read()
    """
)


def test_a_wal_directory_held_by_another_process_names_its_pid(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLDER, str(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(root / "src")},
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "held\n"
        with pytest.raises(ConfigError, match=rf"another relia \(process {proc.pid}\)"):
            IngestQueue(10, tmp_path).recover(lambda p: MetricBatch.empty())
    finally:
        proc.kill()
        proc.wait(10)
    # The lock went with the process (a SIGKILL too): a restart takes the directory.
    IngestQueue(10, tmp_path).recover(lambda p: MetricBatch.empty())


def _seg(wal_dir: Path, seq: int) -> Path:
    return wal_dir / f"{seq:020d}.wal"


def test_a_damaged_record_mid_segment_keeps_the_records_after_it_and_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    q = IngestQueue(1000, tmp_path)
    for i in range(5):
        q.offer(_batch(1), b"payload%d" % i)
    q.close()
    seg = _seg(tmp_path, 1)
    data = bytearray(seg.read_bytes())
    data[16 + 3] ^= 0x01  # one bit of the first record's payload: its CRC fails
    seg.write_bytes(bytes(data))
    q2 = IngestQueue(1000, tmp_path)
    seen: list[bytes] = []
    assert q2.recover(lambda p: seen.append(p) or _batch(1)) == 4
    assert seen == [b"payload%d" % i for i in range(1, 5)]
    assert q2.corrupt_records == 1
    assert seg.read_bytes() == bytes(data)  # nothing cut off
    assert any("corrupt" in r.getMessage() and r.levelname == "ERROR" for r in caplog.records)
    _b, token = q2.drain()
    assert token is not None
    q2.commit(token)
    q2.close()
    # Committed: the segment is not deleted but kept aside, with the damaged record in it.
    assert not seg.exists()
    assert (tmp_path / f"{seg.name}.corrupt").read_bytes() == bytes(data)
    assert _replayed(tmp_path) == (0, [])


def test_a_damaged_length_is_passed_by_the_next_records_sequence_number(tmp_path: Path) -> None:
    q = IngestQueue(1000, tmp_path)
    for i in range(3):
        q.offer(_batch(1), b"payload%d" % i)
    q.close()
    seg = _seg(tmp_path, 1)
    data = bytearray(seg.read_bytes())
    data[16 + 8] = 0xFF  # the second record's length: it seems to run past the end of the file
    seg.write_bytes(bytes(data))
    assert _replayed(tmp_path) == (2, [b"payload0", b"payload2"])
    assert len(seg.read_bytes()) == len(data)


def test_a_record_that_cannot_be_decoded_keeps_its_segment(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    q = IngestQueue(1000, tmp_path)
    for payload in (b"good", b"bad", b"good too"):
        q.offer(_batch(1), payload)
    q.close()

    def decode(p: bytes) -> MetricBatch:
        if p == b"bad":
            raise ValueError("over a limit")
        return _batch(1)

    q2 = IngestQueue(1000, tmp_path)
    assert q2.recover(decode) == 2
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("record 2" in e and ".corrupt" in e for e in errors)
    q2.offer(_batch(1), b"new")
    _b, token = q2.drain()
    assert token is not None
    q2.commit(token)  # past the record that failed: its bytes are kept, not deleted
    q2.close()
    aside = tmp_path / f"{1:020d}.wal.corrupt"
    assert b"bad" in aside.read_bytes()
    n, _seen = _replayed(tmp_path)  # the .corrupt file is never read or deleted
    assert n == 0 and aside.exists()


def test_files_not_named_as_segments_are_left_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    q = IngestQueue(1000, tmp_path)
    q.offer(_batch(1), b"a")
    q.close()
    stray = tmp_path / "backup.wal"
    stray.write_bytes(_seg(tmp_path, 1).read_bytes())  # a whole valid record
    (tmp_path / "old.wal").write_bytes(b"x")  # not a whole record
    (tmp_path / "lock").write_bytes(b"")
    assert _replayed(tmp_path) == (1, [b"a"])
    assert stray.exists() and (tmp_path / "old.wal").read_bytes() == b"x"
    assert (tmp_path / "lock").exists()
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "backup.wal" in warnings[0] and "old.wal" in warnings[0]


def test_committed_segments_are_freed_when_the_marker_cannot_be_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import builtins

    q = IngestQueue(1000, tmp_path, segment_bytes=1)  # one record per segment
    for i in range(4):
        q.offer(_batch(1), b"payload%d" % i)
    assert len(list(tmp_path.glob("*.wal"))) == 4
    real_open = builtins.open

    def full(file: object, *args: object, **kw: object) -> object:
        if str(file).endswith("committed.tmp"):
            raise OSError(28, "No space left on device")
        return real_open(file, *args, **kw)  # type: ignore[call-overload]

    monkeypatch.setattr(builtins, "open", full)
    _b, token = q.drain()
    assert token is not None
    q.commit(token)  # the disk is full: no marker, but every segment it covers goes
    assert list(tmp_path.glob("*.wal")) == []
    assert q.error is not None and "No space left" in q.error
    monkeypatch.setattr(builtins, "open", real_open)  # space is back
    q.offer(_batch(1), b"after")
    _b, token = q.drain()
    assert token is not None
    q.commit(token)
    assert q.error is None
    assert (tmp_path / "committed").read_text() == "5"
    q.close()
    assert _replayed(tmp_path) == (0, [])


def test_a_full_disk_frees_the_committed_open_segment_for_the_next_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Everything in the WAL is committed, but the open segment holds the disk's last space: the
    # write that finds the disk full frees it (no commit is coming to do so) and tries again.
    import relia.ingest.queue as queue_module

    q = IngestQueue(1000, tmp_path)
    q.offer(_batch(1), b"stored")
    _b, token = q.drain()
    assert token is not None
    q.commit(token)
    assert _seg(tmp_path, 1).exists()  # small and healthy: kept open
    real_write = os.write

    def full_until_freed(fd: int, data: bytes) -> int:
        if _seg(tmp_path, 1).exists():
            raise OSError(28, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(queue_module.os, "write", full_until_freed)
    assert q.offer(_batch(1), b"next") == 2
    assert not _seg(tmp_path, 1).exists() and _seg(tmp_path, 2).exists()
    q.close()
    assert _replayed(tmp_path) == (1, [b"next"])


def test_a_failed_write_is_the_queues_error_until_one_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import relia.ingest.queue as queue_module

    q = IngestQueue(1000, tmp_path)
    q.offer(_batch(1), b"first")  # uncommitted: nothing to free
    real_write = os.write
    monkeypatch.setattr(queue_module.os, "write", lambda fd, data: real_write(fd, data[:3]))
    with pytest.raises(OSError, match="cut short"):
        q.offer(_batch(1), b"second")
    assert q.error is not None and "cut short" in q.error
    monkeypatch.setattr(queue_module.os, "write", real_write)
    q.offer(_batch(1), b"third")
    assert q.error is None
    q.close()


def test_pending_writes_are_fsynced_once_due_without_another_offer(
    tmp_path: Path, fake_time: _FakeTime, synced: list[str]
) -> None:
    q = IngestQueue(1000, tmp_path, fsync_interval_s=5)
    fake_time.now = 106
    q.offer(_batch(1), b"a")  # due: fsynced
    q.offer(_batch(1), b"b")  # 0 s later: waits
    assert _segment_syncs(synced) == 1
    fake_time.now = 110
    q.sync_due()  # not due yet
    assert _segment_syncs(synced) == 1
    fake_time.now = 111
    q.sync_due()  # what the timer calls: due, and nothing else came
    assert _segment_syncs(synced) == 2
    q.sync_due()  # nothing new to sync
    fake_time.now = 120
    q.drain()
    assert _segment_syncs(synced) == 2
    q.offer(_batch(1), b"c")  # due: fsynced at once
    q.offer(_batch(1), b"d")
    fake_time.now = 126
    _b, token = q.drain()  # a drain (or commit) fsyncs what is due
    assert _segment_syncs(synced) == 4
    q.close()


def test_the_timer_fsyncs_the_last_writes_before_a_pause(tmp_path: Path, synced: list[str]) -> None:
    q = IngestQueue(1000, tmp_path, fsync_interval_s=0.2)
    time.sleep(0.25)
    q.offer(_batch(1), b"a")  # due: fsynced
    q.offer(_batch(1), b"b")  # not due: the timer's
    assert _segment_syncs(synced) == 1
    deadline = time.monotonic() + 5
    while _segment_syncs(synced) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _segment_syncs(synced) == 2
    q.close()


def test_a_segment_that_cannot_be_created_does_not_break_later_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import relia.ingest.queue as queue_module

    real_open = os.open

    def full_once(path: object, *args: int) -> int:
        monkeypatch.setattr(queue_module.os, "open", real_open)
        raise OSError(28, "No space left on device")

    q = IngestQueue(1000, tmp_path, segment_bytes=1)  # a new segment for every record
    q.offer(_batch(1), b"first")
    monkeypatch.setattr(queue_module.os, "open", full_once)
    with pytest.raises(OSError, match="No space"):
        q.offer(_batch(1), b"refused")
    assert q.offer(_batch(1), b"after") == 2
    q.close()
    assert _replayed(tmp_path) == (2, [b"first", b"after"])
