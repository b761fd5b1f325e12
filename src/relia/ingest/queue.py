"""A bounded ingest queue backed by a write-ahead log.

:meth:`IngestQueue.offer` appends the request's payload to the WAL (one ``write`` of a
length-prefixed, CRC-checked record) and then its decoded batch to memory; it returns only after
the WAL write, so a sample that was acknowledged survives a SIGKILL of relia (the bytes are in the
kernel's page cache). Surviving power loss needs ``fsync``: with ``fsync_interval_s=0`` every
write is fsynced before the acknowledgement (and the directory, each time a segment is created or
the commit marker renamed, so their names survive too); with ``n > 0`` at most ``n`` seconds of
acknowledged writes can be lost on power loss (the writes are fsynced once that much time passed
since the last fsync: by the next offer, drain or commit, or by a timer when none comes; and on
close); with ``None`` (the default) the OS decides when pages reach the disk.

The engine takes samples with :meth:`drain` and calls :meth:`commit` with the token once they are
stored; segments whose records are all committed are deleted (before the commit marker is
written, so a full disk frees them), and so is the open one once everything in it is committed
and it holds a MiB or a write failed. A failed WAL write is in :attr:`IngestQueue.error` until
the same kind of write works again. On start, :meth:`recover` replays the records after the last
commit (the store replaces the same ``(series, ts)``, so a replay is idempotent).

Damage never deletes acknowledged records: a bad record that runs to the end of its segment is a
write torn by power loss (never acknowledged) and is cut off; one followed by valid records, or
one that cannot be decoded, is skipped and logged as an error naming its segment, whose valid
records are replayed; once they are committed the segment is renamed ``<segment>.corrupt``
instead of deleted (relia never reads or deletes that file). Only files named
``<20 digits>.wal`` are segments: any other file in the directory is left alone.

Over ``max_samples`` in memory, :meth:`offer` raises :class:`QueueFull` with a ``retry_after_s``
estimated from the recent drain rate: backpressure instead of growing memory.

WAL layout: ``<wal_dir>/<first seq, 20 digits>.wal`` segments of records ``<length u32> <crc32
u32> <seq u64> <payload>`` (little endian), ``<wal_dir>/committed`` holding the highest
committed sequence number (written to a temporary file, then renamed), and ``<wal_dir>/lock``,
held with an exclusive ``flock`` by the one queue using the directory (holding its pid):
sequence numbers and the commit marker are one process's, so a second would lose samples.
The WAL holds what senders wrote, so it is private whatever the umask: the directories it
creates (``data_dir`` too, when missing) are 0700, its files 0600.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import math
import os
import re
import struct
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from relia.errors import ConfigError, DataError
from relia.signals import MetricBatch

__all__ = ["DrainToken", "IngestQueue", "QueueClosed", "QueueFull"]

log = logging.getLogger(__name__)

_HEADER = struct.Struct("<IIQ")
_MAX_RECORD = 1 << 30
#: The name of a segment; anything else in the directory (an operator's copy, a lock file, a
#: segment kept aside as corrupt) is not relia's to read or delete.
_SEGMENT_NAME = re.compile(r"\d{20}\.wal")
#: The open segment is deleted once everything in it is committed and it holds this much (or a
#: write failed): its space is freed without a new file for every tick.
_ROTATE_COMMITTED_BYTES = 1 << 20
#: How many sequence numbers past a damaged record are looked for to find where reading resumes.
_RESYNC_SEQS = 64


class QueueFull(Exception):
    """The queue holds as many samples as it may; retry after ``retry_after_s`` seconds."""

    def __init__(self, retry_after_s: int) -> None:
        super().__init__(f"ingest queue is full; retry after {retry_after_s}s")
        self.retry_after_s = retry_after_s


class QueueClosed(Exception):
    """The queue is shutting down and accepts nothing more."""


@dataclass(frozen=True)
class DrainToken:
    """What :meth:`IngestQueue.drain` handed out: commit it once the samples are stored."""

    seq: int
    received: tuple[tuple[float, int], ...]  # (wall-clock receipt time in s, samples) per request


@dataclass(frozen=True)
class _Item:
    seq: int
    batch: MetricBatch
    received: float


class IngestQueue:
    """Bounded by ``max_samples`` in memory; every offered request is first written to the WAL
    in ``wal_dir``."""

    def __init__(
        self,
        max_samples: int,
        wal_dir: str | Path,
        *,
        fsync_interval_s: float | None = None,
        segment_bytes: int = 64 << 20,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if max_samples < 1:
            raise DataError("max_samples must be at least 1", where="ingest.max_queue_samples")
        self.max_samples = max_samples
        self.wal_dir = Path(wal_dir)
        self.fsync_interval_s = fsync_interval_s
        self.segment_bytes = segment_bytes
        self.clock = clock
        #: Called (outside the lock) after each accepted offer: the engine's wake-up.
        self.notify: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._items: deque[_Item] = deque()
        self._samples = 0
        self._closed = False
        self._committed = 0
        self._next_seq = 1
        self._segments: list[tuple[int, Path]] = []  # (first seq, path), oldest first
        self._fd: int | None = None
        self._seg_size = 0
        self._last_fsync = time.monotonic()
        self._unsynced = False  # written since the last fsync (with fsync_interval_s > 0)
        self._sync_timer: threading.Timer | None = None
        self._errors: dict[str, str] = {}  # the last failure of each kind of WAL write
        self._damaged: set[Path] = set()  # segments to keep as .corrupt instead of deleting
        self._drained: deque[tuple[float, int]] = deque(maxlen=64)  # (monotonic s, samples)
        self.recovered = 0
        self.corrupt_records = 0
        self._ready = False  # the directory exists and the commit marker was read
        self._lock_fd: int | None = None  # the flock'ed lock file: this queue owns wal_dir

    def _prepare(self) -> None:
        # Lazily, so building a queue touches no disk (relia up's set-up is built in tests).
        if self._ready:
            return
        try:
            _make_private_dirs(self.wal_dir)
        except OSError as exc:
            raise DataError(
                f"cannot create the WAL directory: {exc.strerror}", where=str(self.wal_dir)
            ) from None
        self._take_lock()
        self._committed = self._read_committed()
        self._ready = True

    def claim(self) -> None:
        """Create and lock the WAL directory now (:meth:`recover` does it too): ``relia up``
        claims it before anything touches the store, so a second relia on one directory stops
        having done nothing (:class:`ConfigError`)."""
        with self._lock:
            self._prepare()

    def _take_lock(self) -> None:
        # Two replicas started from one directory (one data_dir on a shared PostgreSQL store)
        # would number records from 1 each into the same segments and share one commit marker:
        # one's commit hides the other's uncommitted samples from its replay.
        path = self.wal_dir / "lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise DataError(f"cannot open the WAL lock: {exc.strerror}", where=str(path)) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            holder = os.read(fd, 32).decode("ascii", "replace").strip()
            os.close(fd)
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise DataError(f"cannot lock the WAL: {exc.strerror}", where=str(path)) from None
            by = f" (process {holder})" if holder.isdigit() else ""
            raise ConfigError(
                f"the WAL is in use by another relia{by}: give each replica its own data_dir "
                "(or ingest.wal_dir)",
                where=str(self.wal_dir),
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._lock_fd = fd

    # -- WAL files -------------------------------------------------------------------------

    @property
    def _commit_path(self) -> Path:
        return self.wal_dir / "committed"

    def _read_committed(self) -> int:
        try:
            return int(self._commit_path.read_text().strip() or 0)
        except FileNotFoundError:
            return 0
        except (OSError, ValueError) as exc:
            raise DataError(
                f"unreadable commit marker: {exc}", where=str(self._commit_path)
            ) from None

    def _write_committed(self, seq: int) -> None:
        tmp = self.wal_dir / "committed.tmp"
        with open(tmp, "w", opener=_private) as f:
            f.write(str(seq))
            if self.fsync_interval_s is not None:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, self._commit_path)
        if self.fsync_interval_s is not None:
            self._fsync_dir()

    def _fsync_dir(self) -> None:
        # A file's fsync makes its data durable, not its name: until the directory is fsynced a
        # new segment (or the renamed commit marker) may be missing after power loss, and with
        # it every write acknowledged in that segment.
        fd = os.open(self.wal_dir, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def _open_segment(self) -> None:
        if self._fd is not None:
            if self._unsynced:
                # Its writes are due an fsync within the interval, as every other write.
                os.fsync(self._fd)
                self._unsynced = False
            fd, self._fd = self._fd, None  # closed: never closed twice if the open below fails
            os.close(fd)
        path = self.wal_dir / f"{self._next_seq:020d}.wal"
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._segments.append((self._next_seq, path))
        self._seg_size = 0
        if self.fsync_interval_s is not None:
            self._fsync_dir()

    def recover(self, decode: Callable[[bytes], MetricBatch]) -> int:
        """Replay the WAL records after the last commit into memory (even over ``max_samples``:
        they were acknowledged); returns how many requests were replayed. Call once, before the
        first :meth:`offer`. A torn record at the end of a segment (a write cut by power loss,
        never acknowledged) is cut off; a damaged record with valid ones after it, or one that
        ``decode`` refuses, is skipped, and its segment is kept as ``<segment>.corrupt`` once
        the rest of it is committed (logged as an error naming it)."""
        with self._lock:
            self._prepare()
        files: list[Path] = []
        strays: list[str] = []
        for path in sorted(self.wal_dir.glob("*.wal")):
            if _SEGMENT_NAME.fullmatch(path.name):
                files.append(path)
            else:
                strays.append(path.name)
        if strays:
            log.warning(
                "WAL %s: %s left alone: not segments relia wrote (those are named <20 digits>.wal)",
                self.wal_dir,
                ", ".join(strays),
            )
        replayed = 0
        last_seq = self._committed
        for path in files:
            records = self._records(path)
            if not records and path not in self._damaged:
                # Nothing in it was acknowledged (its records were all torn off, or it was
                # created just before a kill), and the next write may get its name: a second
                # entry for that file would have it deleted as committed while it is written to.
                path.unlink(missing_ok=True)
                continue
            for seq, payload in records:
                last_seq = max(last_seq, seq)
                if seq <= self._committed:
                    continue
                try:
                    batch = decode(payload)
                except Exception as exc:  # noqa: BLE001 - a record relia itself wrote and acked
                    self.corrupt_records += 1
                    self._damaged.add(path)
                    log.error(
                        "WAL record %d in %s cannot be decoded: %s; the segment is kept as %s",
                        seq,
                        path,
                        exc,
                        _aside(path).name,
                    )
                    continue
                self._items.append(_Item(seq, batch, self.clock()))
                self._samples += len(batch)
                replayed += 1
            # A damaged segment may have no valid record: the next segment must not get its name.
            last_seq = max(last_seq, int(path.stem))
            self._segments.append((int(path.stem), path))
        self._next_seq = last_seq + 1
        self.recovered = replayed
        if replayed:
            log.info("replayed %d requests (%d samples) from the WAL", replayed, self._samples)
        with self._lock:
            self._drop_committed_segments()
        return replayed

    def _records(self, path: Path) -> list[tuple[int, bytes]]:
        """The valid records of a segment. A bad record that runs to the end of the file is a
        torn write and is cut off; one that ends before it is skipped, reading resumes at the
        next valid record (found by its sequence number), and the segment is marked damaged."""
        data = path.read_bytes()
        out: list[tuple[int, bytes]] = []
        pos = 0
        expected = int(path.stem)  # a segment's records are numbered on from its name
        while pos < len(data):
            record = _record_at(data, pos)
            if record is not None:
                seq, payload = record
                out.append((seq, payload))
                expected = max(expected, seq + 1)
                pos += _HEADER.size + len(payload)
                continue
            resume = _resync(data, pos, expected)
            if resume is None and _runs_to_end(data, pos):
                self.corrupt_records += 1
                log.warning(
                    "WAL %s: %d bytes after byte %d are torn or corrupt; cut off",
                    path,
                    len(data) - pos,
                    pos,
                )
                with open(path, "r+b") as f:
                    f.truncate(pos)
                break
            # Damage before the end: acknowledged records may lie beyond it, so nothing is cut.
            self.corrupt_records += 1
            self._damaged.add(path)
            log.error(
                "WAL %s: bytes %d to %d are corrupt; %s; the segment is kept as %s",
                path,
                pos,
                len(data) if resume is None else resume,
                "no valid record follows" if resume is None else "reading resumes after them",
                _aside(path).name,
            )
            if resume is None:
                break
            pos = resume
        return out

    def _drop_committed_segments(self) -> None:
        # Called with the lock held. A segment is done when the next one starts at or below the
        # committed seq + 1; the last one, when every seq written is committed.
        done = self._next_seq <= self._committed + 1
        while len(self._segments) > 1 and self._segments[1][0] <= self._committed + 1:
            _, path = self._segments.pop(0)
            self._remove_segment(path)
        if len(self._segments) == 1 and done:
            if self._fd is not None:
                # The open one: freed once it is large enough to be worth a new file, or at
                # once when a write failed (a full disk needs the space it holds).
                if self._seg_size < _ROTATE_COMMITTED_BYTES and not self._errors:
                    return
                os.close(self._fd)
                self._fd = None
                self._unsynced = False
            _, path = self._segments.pop(0)
            self._remove_segment(path)

    def _remove_segment(self, path: Path) -> None:
        """Delete a committed segment, or keep it as ``.corrupt`` if it held a damaged record."""
        if path in self._damaged:
            self._damaged.discard(path)
            try:
                os.replace(path, _aside(path))
            except OSError as exc:
                log.error("WAL %s: cannot keep the damaged segment aside: %s", path, exc)
                return
            log.error("WAL %s held damaged records: kept as %s", path, _aside(path))
            return
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    # -- WAL health ------------------------------------------------------------------------

    @property
    def error(self) -> str | None:
        """The last WAL write that failed (a segment write, its fsync or the commit marker), as
        one line; None once every kind that failed has worked again."""
        if not self._errors:
            return None
        return "; ".join(self._errors.values())

    def _failed(self, kind: str, exc: OSError) -> None:
        text = f"{kind}: {exc}"
        if self._errors.get(kind) != text:
            log.error("WAL %s: %s", self.wal_dir, text)
        self._errors[kind] = text

    def _fsync_due(self) -> None:
        # Called with the lock held: fsync what was written once the interval has passed.
        if self.fsync_interval_s is None or self._fd is None or not self._unsynced:
            return
        now = time.monotonic()
        if now - self._last_fsync < self.fsync_interval_s:
            self._arm_sync_timer(self.fsync_interval_s - (now - self._last_fsync))
            return
        try:
            os.fsync(self._fd)
        except OSError as exc:
            self._failed("fsync", exc)
            return
        self._errors.pop("fsync", None)
        self._last_fsync = now
        self._unsynced = False

    def _arm_sync_timer(self, delay_s: float) -> None:
        # Without another offer, drain or commit the last writes would wait for the OS: a timer
        # fsyncs them once they are due, so the interval bounds what power loss can take.
        if self._sync_timer is not None or self._closed:
            return
        timer = threading.Timer(max(0.0, delay_s), self.sync_due)
        timer.daemon = True
        self._sync_timer = timer
        timer.start()

    def sync_due(self) -> None:
        """Fsync the writes not yet fsynced once ``fsync_interval_s`` has passed since the last
        fsync (a timer calls this; so do :meth:`drain` and :meth:`commit`)."""
        with self._lock:
            if threading.current_thread() is self._sync_timer:
                self._sync_timer = None
            self._fsync_due()

    # -- producer side ---------------------------------------------------------------------

    def offer(self, batch: MetricBatch, payload: bytes) -> int:
        """Log ``payload`` (what :meth:`recover` will decode back into ``batch``), then queue
        ``batch``; returns its sequence number. Raises :class:`QueueFull` or
        :class:`QueueClosed`."""
        n = len(batch)
        with self._lock:
            if self._closed:
                raise QueueClosed("the ingest queue is shutting down")
            if self._samples > 0 and self._samples + n > self.max_samples:
                raise QueueFull(self._retry_after(self._samples + n - self.max_samples))
            seq = self._next_seq
            try:
                self._write(seq, payload)
            except OSError as exc:
                self._failed("write", exc)
                if self._fd is None or self._next_seq > self._committed + 1:
                    raise
                # Everything written is committed, so no commit is coming to free the open
                # segment: free it now (a full disk may need just its space) and try once more.
                self._drop_committed_segments()
                try:
                    self._write(seq, payload)
                except OSError as again:
                    self._failed("write", again)
                    raise
            self._errors.pop("write", None)
            self._items.append(_Item(seq, batch, self.clock()))
            self._samples += n
        if self.notify is not None:
            self.notify()
        return seq

    def _write(self, seq: int, payload: bytes) -> None:
        # Called with the lock held: the record, in one write, fsynced when due.
        if self._fd is None or self._seg_size >= self.segment_bytes:
            self._prepare()
            self._open_segment()
        assert self._fd is not None
        record = _HEADER.pack(len(payload), zlib.crc32(payload), seq) + payload
        written = os.write(self._fd, record)  # one write: a kill leaves all of it or none
        if written != len(record):
            # Cut short (a full disk): not acknowledged, and cut off, since recovery stops at
            # a torn record and would lose every write acknowledged after it.
            os.ftruncate(self._fd, self._seg_size)
            raise OSError(errno.ENOSPC, f"WAL write cut short: {written} of {len(record)} bytes")
        self._seg_size += len(record)
        self._next_seq = seq + 1
        if self.fsync_interval_s is not None:
            self._unsynced = True
            now = time.monotonic()
            if now - self._last_fsync >= self.fsync_interval_s:
                os.fsync(self._fd)
                self._last_fsync = now
                self._unsynced = False
            else:
                self._arm_sync_timer(self.fsync_interval_s - (now - self._last_fsync))

    def _retry_after(self, excess: int) -> int:
        if len(self._drained) >= 2:
            t0 = self._drained[0][0]
            span = time.monotonic() - t0
            rate = sum(n for _, n in self._drained) / span if span > 0 else 0.0
            if rate > 0:
                return max(1, min(60, math.ceil(excess / rate)))
        return 1

    # -- consumer side ---------------------------------------------------------------------

    def drain(self, max_samples: int | None = None) -> tuple[MetricBatch, DrainToken | None]:
        """Take whole requests, oldest first, up to ``max_samples`` (at least one request);
        returns the samples and a token for :meth:`commit` (None when the queue was empty)."""
        taken: list[_Item] = []
        with self._lock:
            total = 0
            while self._items:
                n = len(self._items[0].batch)
                if taken and max_samples is not None and total + n > max_samples:
                    break
                item = self._items.popleft()
                taken.append(item)
                total += n
            self._samples -= total
            if taken:
                self._drained.append((time.monotonic(), total))
            self._fsync_due()
        if not taken:
            return MetricBatch.empty(), None
        batch = taken[0].batch if len(taken) == 1 else MetricBatch.concat([t.batch for t in taken])
        token = DrainToken(taken[-1].seq, tuple((t.received, len(t.batch)) for t in taken))
        return batch, token

    def commit(self, token: DrainToken) -> None:
        """The samples of ``token`` (and everything drained before it) are stored: records up to
        its sequence number need no replay."""
        with self._lock:
            self._fsync_due()
            if token.seq <= self._committed:
                return
            # Stored, whatever happens to the marker: a marker that lags costs only a replay of
            # stored records (idempotent), and segments it covers need no replay at all. So they
            # go first, whether or not the marker can be written: on a full disk, that write
            # needs the space they hold.
            self._committed = token.seq
            self._drop_committed_segments()
            try:
                self._write_committed(token.seq)
            except OSError as exc:
                self._failed("commit marker", exc)
                self._drop_committed_segments()  # the open segment too, now that writes fail
            else:
                self._errors.pop("commit marker", None)

    # -- state -----------------------------------------------------------------------------

    @property
    def samples(self) -> int:
        """Samples waiting in memory."""
        return self._samples

    @property
    def requests(self) -> int:
        """Requests waiting in memory."""
        return len(self._items)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        """Refuse further offers (:class:`QueueClosed`), fsync and close the WAL. What is still
        in memory stays in the WAL and is replayed on the next start."""
        with self._lock:
            self._closed = True
            if self._sync_timer is not None:
                self._sync_timer.cancel()
                self._sync_timer = None
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.fsync(self._fd)
                os.close(self._fd)
                self._fd = None
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # the flock goes with it: the next relia may start
                self._lock_fd = None


def _record_at(data: bytes, pos: int) -> tuple[int, bytes] | None:
    """The record (seq, payload) at ``pos`` if it is whole and its CRC matches, else None."""
    if pos + _HEADER.size > len(data):
        return None
    length, crc, seq = _HEADER.unpack_from(data, pos)
    start = pos + _HEADER.size
    payload = data[start : start + length]
    if length > _MAX_RECORD or len(payload) != length or zlib.crc32(payload) != crc:
        return None
    return seq, payload


def _runs_to_end(data: bytes, pos: int) -> bool:
    """Whether the bad record at ``pos`` reaches the end of the file, as a torn write does."""
    if pos + _HEADER.size > len(data):
        return True
    length: int = _HEADER.unpack_from(data, pos)[0]
    return pos + _HEADER.size + length >= len(data)


def _resync(data: bytes, pos: int, expected: int) -> int | None:
    """Where the first valid record after the bad one at ``pos`` starts, or None. Records of a
    segment are numbered one after another, so the next readable one holds one of the next
    sequence numbers: its bytes are looked for (a CRC confirms), not every offset tried."""
    for seq in range(expected, expected + _RESYNC_SEQS):
        needle = seq.to_bytes(8, "little")
        at = data.find(needle, pos + 1 + 8)  # a seq field after the bad record's own
        while at >= 0:
            start = at - 8
            if _record_at(data, start) is not None:
                return start
            at = data.find(needle, at + 1)
    return None


def _aside(path: Path) -> Path:
    """Where a segment with damaged records is kept: relia never deletes or reads it."""
    return path.with_name(path.name + ".corrupt")


def _private(path: str, flags: int) -> int:
    """An ``opener`` for :func:`open` that creates the file 0600, as the segments are."""
    return os.open(path, flags, 0o600)


def _make_private_dirs(path: Path) -> None:
    """``mkdir -p path``, each directory it creates 0700 (``Path.mkdir`` gives parents the
    umask's mode)."""
    missing: list[Path] = []
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        missing.append(parent)
        parent = parent.parent
    for directory in [*reversed(missing), path]:
        # exist_ok raises still where a file stands in the way (FileExistsError).
        directory.mkdir(mode=0o700, exist_ok=True)
