"""A bounded ingest queue backed by a write-ahead log.

:meth:`IngestQueue.offer` appends the request's payload to the WAL (one ``write`` of a
length-prefixed, CRC-checked record) and then its decoded batch to memory; it returns only after
the WAL write, so a sample that was acknowledged survives a SIGKILL of relia (the bytes are in the
kernel's page cache). Surviving power loss needs ``fsync``: with ``fsync_interval_s=0`` every
write is fsynced before the acknowledgement (and the directory, each time a segment is created or
the commit marker renamed, so their names survive too); with ``n > 0`` at most ``n`` seconds of
acknowledged writes can be lost on power loss (fsync when that much time passed since the last
one, and on close); with ``None`` (the default) the OS decides when pages reach the disk.

The engine takes samples with :meth:`drain` and calls :meth:`commit` with the token once they are
stored; segments whose records are all committed are deleted. On start, :meth:`recover` replays
the records after the last commit (the store replaces the same ``(series, ts)``, so a replay is
idempotent).

Over ``max_samples`` in memory, :meth:`offer` raises :class:`QueueFull` with a ``retry_after_s``
estimated from the recent drain rate: backpressure instead of growing memory.

WAL layout: ``<wal_dir>/<first seq, 20 digits>.wal`` segments of records ``<length u32> <crc32
u32> <seq u64> <payload>`` (little endian), ``<wal_dir>/committed`` holding the highest
committed sequence number (written to a temporary file, then renamed), and ``<wal_dir>/lock``,
held with an exclusive ``flock`` by the one queue using the directory (holding its pid):
sequence numbers and the commit marker are one process's, so a second would lose samples.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import math
import os
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
            self.wal_dir.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DataError(
                f"cannot create the WAL directory: {exc.strerror}", where=str(self.wal_dir)
            ) from None
        self._take_lock()
        self._committed = self._read_committed()
        self._ready = True

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
        with open(tmp, "w") as f:
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
            os.close(self._fd)
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
        never acknowledged) is cut off."""
        with self._lock:
            self._prepare()
        files = sorted(self.wal_dir.glob("*.wal"))
        replayed = 0
        last_seq = self._committed
        for path in files:
            records = self._records(path)
            if not records:
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
                    log.error("WAL record %d in %s cannot be decoded: %s", seq, path, exc)
                    continue
                self._items.append(_Item(seq, batch, self.clock()))
                self._samples += len(batch)
                replayed += 1
            self._segments.append((int(path.stem), path))
        self._next_seq = last_seq + 1
        self.recovered = replayed
        if replayed:
            log.info("replayed %d requests (%d samples) from the WAL", replayed, self._samples)
        self._drop_committed_segments()
        return replayed

    def _records(self, path: Path) -> list[tuple[int, bytes]]:
        data = path.read_bytes()
        out: list[tuple[int, bytes]] = []
        pos = 0
        while pos < len(data):
            if pos + _HEADER.size > len(data):
                break
            length, crc, seq = _HEADER.unpack_from(data, pos)
            start = pos + _HEADER.size
            payload = data[start : start + length]
            if length > _MAX_RECORD or len(payload) != length or zlib.crc32(payload) != crc:
                break
            out.append((seq, payload))
            pos = start + length
        if pos < len(data):
            self.corrupt_records += 1
            log.warning(
                "WAL %s: %d bytes after byte %d are torn or corrupt; cut off",
                path,
                len(data) - pos,
                pos,
            )
            with open(path, "r+b") as f:
                f.truncate(pos)
        return out

    def _drop_committed_segments(self) -> None:
        # A segment is done when the next one starts at or below the committed seq + 1.
        while len(self._segments) > 1 and self._segments[1][0] <= self._committed + 1:
            _, path = self._segments.pop(0)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        if len(self._segments) == 1 and self._fd is None and self._next_seq <= self._committed + 1:
            _, path = self._segments.pop(0)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

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
                raise OSError(
                    errno.ENOSPC, f"WAL write cut short: {written} of {len(record)} bytes"
                )
            self._seg_size += len(record)
            self._next_seq = seq + 1
            if self.fsync_interval_s is not None:
                now = time.monotonic()
                if now - self._last_fsync >= self.fsync_interval_s:
                    os.fsync(self._fd)
                    self._last_fsync = now
            self._items.append(_Item(seq, batch, self.clock()))
            self._samples += n
        if self.notify is not None:
            self.notify()
        return seq

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
        if not taken:
            return MetricBatch.empty(), None
        batch = taken[0].batch if len(taken) == 1 else MetricBatch.concat([t.batch for t in taken])
        token = DrainToken(taken[-1].seq, tuple((t.received, len(t.batch)) for t in taken))
        return batch, token

    def commit(self, token: DrainToken) -> None:
        """The samples of ``token`` (and everything drained before it) are stored: records up to
        its sequence number need no replay."""
        with self._lock:
            if token.seq <= self._committed:
                return
            self._committed = token.seq
            self._write_committed(token.seq)
            self._drop_committed_segments()

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
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.fsync(self._fd)
                os.close(self._fd)
                self._fd = None
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # the flock goes with it: the next relia may start
                self._lock_fd = None
