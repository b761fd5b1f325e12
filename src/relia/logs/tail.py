"""Follow a growing log file across rotation and truncation, resuming exactly where it stopped.

:class:`FileTailer` hands out the complete lines appended to a file since the last
:meth:`FileTailer.poll`. Its :attr:`FileTailer.state` (a :class:`TailState`, JSON-ready) is the
position just after the last line handed out; a caller that stores the state together with what it
derived from those lines (in one transaction) and later builds a new tailer from the stored state
resumes exactly there: no line is handed out twice or skipped.

- **Partial last line**: a line without its newline yet stays in the tailer until the newline
  arrives (its bytes are not part of the saved offset, so after a restart it is read again).
- **Rotation** (the path now names another file, by device and inode): the old file is kept open
  and drained to its end, once when the rotation is seen and once more on the next poll, because
  a writer may still append to it before reopening its log; then its last unfinished line, if any,
  is handed out and the new file is followed from its start. If relia was stopped across a
  rotation, the old file is looked up by inode among the files beside the path (``x.log.1``,
  ``x.log-20240101``), and so is a rotated file that was still being drained when relia
  stopped; if it is gone, that is counted in :attr:`TailCounts.lost_rotated` and logged, since
  how many lines it still held cannot be known.
- **Truncation** (the file shrank below the offset, or its first bytes changed, as after
  ``copytruncate`` or a rewrite): reading restarts at 0; counted in :attr:`TailCounts.truncations`.
  What was not read yet is in the copy ``copytruncate`` left beside the path: found by its first
  bytes, it is finished from the old offset first, as a rotated file is; if there is none, that
  is counted in :attr:`TailCounts.lost_truncated` and logged.
- A file rotated away again before any poll saw it (two rotations between polls) is not seen:
  a tailer follows a path, and the path never showed that file.
- A missing file is waited for (:attr:`FileTailer.waiting`); an unreadable one raises
  :class:`~relia.errors.DataError` naming it, unless lines were read before the error in the
  same poll: those are returned and the error kept in :attr:`FileTailer.deferred_error`.

Reading is bounded: at most ``max_bytes_per_poll`` bytes per poll, so a large backlog is worked
off over several polls with bounded memory.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from relia.errors import DataError
from relia.logs.reader import MAX_LINE_BYTES, LineDecoder, ReadCounts

__all__ = ["FileTailer", "TailCounts", "TailPosition", "TailState"]

log = logging.getLogger(__name__)

#: How many leading bytes of a file identify it (to notice a rewrite of the same inode).
FINGERPRINT_BYTES = 64
#: Names of compressed files: a copy left by copytruncate and then compressed cannot be read on.
_COMPRESSED = (".gz", ".bz2", ".xz", ".zst", ".lz4", ".zip", ".Z")


@dataclass(frozen=True)
class TailPosition:
    """Where in one file the next line starts: device, inode, byte offset, and the file's first
    bytes (up to :data:`FINGERPRINT_BYTES`, hex) as they were when read."""

    dev: int
    ino: int
    offset: int
    fingerprint: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"dev": self.dev, "ino": self.ino, "offset": self.offset, "fp": self.fingerprint}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TailPosition:
        return cls(int(d["dev"]), int(d["ino"]), int(d["offset"]), str(d.get("fp", "")))


@dataclass
class TailCounts(ReadCounts):
    """:class:`ReadCounts` of the lines read, plus what happened to the file."""

    rotations: int = 0
    truncations: int = 0
    lost_rotated: int = 0
    lost_truncated: int = 0


@dataclass
class TailState:
    """Everything a tailer needs to resume: the followed file, a rotated-away file still being
    drained, and the counts so far."""

    current: TailPosition | None = None
    draining: TailPosition | None = None
    counts: TailCounts = field(default_factory=TailCounts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "current": self.current.to_dict() if self.current else None,
            "draining": self.draining.to_dict() if self.draining else None,
            "counts": self.counts.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TailState:
        cur, old = d.get("current"), d.get("draining")
        return cls(
            TailPosition.from_dict(cur) if cur else None,
            TailPosition.from_dict(old) if old else None,
            TailCounts.from_dict(d.get("counts", {})),
        )


class _Open:
    """One open file being read: its descriptor, identity, decoder and read position."""

    def __init__(self, fd: int, st: os.stat_result, offset: int, fp: str, max_line: int) -> None:
        self.fd = fd
        self.dev = st.st_dev
        self.ino = st.st_ino
        self.base = offset  # the offset the decoder started at
        self.fp = fp
        self.decoder = LineDecoder(max_line_bytes=max_line, at_start=offset == 0)
        self.polls_since_rotation = 0
        self.name = ""  # the file name, where it is not the followed path (a copy)
        # The file's size when last looked at: bytes known to be there but not read yet.
        self.seen_size = st.st_size

    @property
    def offset(self) -> int:
        """After the last complete line."""
        return self.base + self.decoder.consumed

    @property
    def read_pos(self) -> int:
        return self.base + self.decoder.consumed + self.decoder.pending

    def position(self) -> TailPosition:
        return TailPosition(self.dev, self.ino, self.offset, self.fp)

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


class FileTailer:
    """Reads the lines appended to ``path``; see the module text for rotation and truncation.

    ``state`` is a saved :attr:`state` (None: a file never read). ``start_at`` says where a file
    never read begins: ``"beginning"`` (every line already in it) or ``"end"`` (only new lines).
    """

    def __init__(
        self,
        path: str | Path,
        state: TailState | None = None,
        *,
        max_line_bytes: int = MAX_LINE_BYTES,
        max_bytes_per_poll: int = 16 << 20,
        start_at: Literal["beginning", "end"] = "beginning",
    ) -> None:
        self.path = Path(path)
        self.max_line_bytes = max_line_bytes
        self.max_bytes_per_poll = max(1, max_bytes_per_poll)
        self.start_at = start_at
        st = state if state is not None else TailState()
        self._saved = st  # what to resume from, until the files are opened
        self._counts = TailCounts(**st.counts.to_dict())
        self._cur: _Open | None = None
        self._old: _Open | None = None
        self._opened = False
        self._missing = False
        #: The error that ended the last poll after it had read lines (None: it did not fail).
        self.deferred_error: DataError | None = None

    # -- public -----------------------------------------------------------------------------

    @property
    def state(self) -> TailState:
        """The position just after the last line handed out, and the counts up to there."""
        counts = TailCounts(**self._counts.to_dict())
        for f in (self._old, self._cur):
            if f is not None:
                counts.add(f.decoder.counts)
        if not self._opened:
            return TailState(self._saved.current, self._saved.draining, counts)
        return TailState(
            self._cur.position() if self._cur else None,
            self._old.position() if self._old else None,
            counts,
        )

    def poll(self) -> list[str]:
        """The complete lines appended since the last poll, oldest first.

        An error before any line was read raises :class:`~relia.errors.DataError`. One after
        some lines were read (the old file drained, then the new one unreadable) returns those
        lines, as :attr:`state` is already past them, and keeps the error in
        :attr:`deferred_error` until the next poll.
        """
        out: list[str] = []
        self.deferred_error = None
        try:
            self._poll(out)
        except DataError as e:
            if not out:
                raise
            self.deferred_error = e
        return out

    @property
    def waiting(self) -> bool:
        """True while the path names no file and none is being read: waiting for it to appear."""
        return self._missing and self._cur is None and self._old is None

    def _poll(self, out: list[str]) -> None:
        budget = self.max_bytes_per_poll
        if not self._opened:
            self._resume_or_roll_back(out)
        if self._old is not None:
            budget -= self._read(self._old, out, budget)
            self._old.polls_since_rotation += 1
            # Drained once when the rotation was seen and once on a later poll: done with it.
            if self._old.polls_since_rotation >= 2 and self._at_end(self._old):
                self._finish_old(out)
        st = self._stat_path()
        self._missing = st is None
        if self._cur is not None:
            if st is not None and (st.st_dev, st.st_ino) != (self._cur.dev, self._cur.ino):
                self._rotate(out, budget)
                budget = max(0, budget - self._last_read)
            elif self._truncated(self._cur):
                self._restart_at_zero(self._cur, out)
                if self._old is not None:  # the copy of the unread tail: read it first
                    budget = max(0, budget - self._read(self._old, out, budget))
        if st is not None and not stat.S_ISREG(st.st_mode):
            what = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
            raise DataError(f"is {what}, not a log file", where=str(self.path))
        if self._cur is None and st is not None:
            # A file that appears (or replaces a rotated one) is read from its start.
            self._cur = self._open(self.path, 0)
        if self._cur is not None and budget > 0 and self._old is None:
            # Lines of the new file only once the old one is done (one poll later at the
            # earliest): lines stay in order even when the writer still appends to the old one.
            self._read(self._cur, out, budget)

    def close(self) -> None:
        """Close the open files (the state stays readable)."""
        for f in (self._old, self._cur):
            if f is not None:
                f.close()

    # -- internals --------------------------------------------------------------------------

    _last_read = 0

    def _stat_path(self) -> os.stat_result | None:
        try:
            return os.stat(self.path)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise DataError(f"cannot read: {e.strerror or e}", where=str(self.path)) from None

    def _open(self, path: Path, offset: int, fp: str = "") -> _Open | None:
        """Open ``path`` at ``offset`` (-1: at its end). None if it vanished meanwhile."""
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError:
            return None
        except IsADirectoryError:
            raise DataError("is a directory, not a log file", where=str(path)) from None
        except OSError as e:
            raise DataError(f"cannot read: {e.strerror or e}", where=str(path)) from None
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            os.close(fd)
            raise DataError("is not a regular file", where=str(path))
        mid_line = False
        if offset < 0:
            offset, mid_line = self._last_line_start(fd, st.st_size)
        f = _Open(fd, st, offset, fp, self.max_line_bytes)
        if mid_line:  # inside an over-long line: its rest is skipped, not handed out as a line
            f.decoder = LineDecoder(max_line_bytes=self.max_line_bytes, skip_first=True)
        if not fp:
            f.fp = self._fingerprint(f)
        return f

    def _last_line_start(self, fd: int, size: int) -> tuple[int, bool]:
        """Where "only new lines" begins in a file of ``size`` bytes: its end, or the start of a
        last line still being written (no newline yet), so that line is handed out whole once it
        is complete instead of as a fragment. A partial line longer than ``max_line_bytes`` is
        skipped (it would be skipped as too long anyway): then the offset is the end and the
        flag is true, as reading starts inside that line."""
        if size == 0:
            return 0, False
        window = min(size, self.max_line_bytes + 1)
        try:
            tail = self._pread(fd, window, size - window)
        except DataError:
            os.close(fd)
            raise
        newline = tail.rfind(b"\n")
        if newline == len(tail) - 1:
            return size, False
        if newline >= 0:
            return size - window + newline + 1, False
        return (0, False) if window == size else (size, True)

    def _pread(self, fd: int, n: int, offset: int) -> bytes:
        try:
            return os.pread(fd, n, offset)
        except OSError as e:
            raise DataError(f"cannot read: {e.strerror or e}", where=str(self.path)) from None

    def _fingerprint(self, f: _Open) -> str:
        return self._pread(f.fd, FINGERPRINT_BYTES, 0).hex()

    def _resume_or_roll_back(self, out: list[str]) -> None:
        """:meth:`_resume`, all or nothing: if opening fails (too many open files, a permission
        error), what it opened is closed and the next poll resumes from the saved state again,
        rather than from the start of the file, which would hand out every line twice."""
        counts = TailCounts(**self._counts.to_dict())
        n_out = len(out)
        try:
            self._resume(out)
        except BaseException:
            for f in (self._old, self._cur):
                if f is not None:
                    f.close()
            self._old = self._cur = None
            self._counts = counts
            del out[n_out:]
            raise
        self._opened = True

    def _resume(self, out: list[str]) -> None:
        """Open the files of the saved state."""
        saved = self._saved
        if saved.draining is not None:
            self._old = self._find_rotated(saved.draining)
            if self._old is not None:
                self._old.polls_since_rotation = 1
            else:  # its rotation was counted when it was seen; what it still held is lost
                self._lost(saved.draining, rotation=False)
        st = self._stat_path()
        if saved.current is None:
            fresh = saved.draining is None and saved.counts.bytes == 0
            if fresh and self.start_at == "end" and st is not None and stat.S_ISREG(st.st_mode):
                self._cur = self._open(self.path, -1)
            return
        pos = saved.current
        if st is not None and (st.st_dev, st.st_ino) == (pos.dev, pos.ino):
            cur = self._open(self.path, pos.offset, pos.fingerprint)
            self._cur = cur
            if cur is not None and self._truncated(cur):
                self._restart_at_zero(cur, out)
            return
        # Rotated while relia was stopped: finish the old file first, then the new one from 0.
        old = self._find_rotated(pos)
        if old is not None:
            self._counts.rotations += 1
            if self._old is not None:  # a second rotation while stopped: the first one is done
                self._read(self._old, out, 1 << 62)
                self._finish_old(out)
            old.polls_since_rotation = 1
            self._old = old
        else:
            self._lost(pos)

    def _find_rotated(self, pos: TailPosition) -> _Open | None:
        """The file ``pos`` was in, looked up by inode beside :attr:`path`; None if gone."""
        d = self.path.parent
        try:
            entries = list(os.scandir(d))
        except OSError:
            entries = []
        for e in entries:
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) != (pos.dev, pos.ino) or not stat.S_ISREG(st.st_mode):
                continue
            f = self._open(Path(e.path), pos.offset, pos.fingerprint)
            if f is None:
                continue
            if self._truncated(f):  # the inode was reused by another file
                f.close()
                continue
            return f
        return None

    def _lost(self, pos: TailPosition, *, rotation: bool = True) -> None:
        if rotation:
            self._counts.rotations += 1
        self._counts.lost_rotated += 1
        log.warning(
            "%s was rotated and the old file (inode %d) was gone when relia started again: "
            "lines appended to it after offset %d were not read",
            self.path,
            pos.ino,
            pos.offset,
        )

    def _truncated(self, f: _Open) -> bool:
        """Shrunk below what was read, or its first bytes changed since."""
        try:
            size = os.fstat(f.fd).st_size
        except OSError:
            return False
        if size < f.read_pos:
            return True
        if f.fp:
            now = self._pread(f.fd, len(f.fp) // 2, 0).hex()
            if now != f.fp:
                return True
        if len(f.fp) < 2 * FINGERPRINT_BYTES and size > len(f.fp) // 2:
            f.fp = self._fingerprint(f)  # the file grew: remember more of its start
        f.seen_size = size
        return False

    def _restart_at_zero(self, f: _Open, out: list[str]) -> None:
        """``f`` was truncated: read it again from 0, after the copy of what was not read yet.

        ``copytruncate`` copies the file beside it (``x.log.1``, ``x.log-20240101``) and then
        truncates it, so lines written since the last poll are only in the copy: it is found by
        its first bytes and finished from the old offset, as a rotated file is. Without a copy
        those lines are lost: counted in ``lost_truncated`` and logged.
        """
        self._counts.truncations += 1
        copy = self._find_copy(f)
        if copy is not None:
            log.info(
                "%s was truncated: finishing its copy %s from offset %d, then reading it again "
                "from the start",
                self.path,
                copy.name,
                f.offset,
            )
            if self._old is not None:  # a rotated file still being drained comes first
                self._read(self._old, out, 1 << 62)
                self._finish_old(out)
            self._old = copy
            copy.polls_since_rotation = 1  # no writer appends to a copy: done once at its end
        else:
            unread = max(0, f.seen_size - f.offset)
            self._counts.lost_truncated += 1
            log.warning(
                "%s was truncated and no copy of it was found beside it: lines appended after "
                "offset %d and before the truncation were not read (%d bytes known, more if "
                "written since the last read)",
                self.path,
                f.offset,
                unread,
            )
        self._counts.add(f.decoder.counts)
        f.decoder = LineDecoder(max_line_bytes=self.max_line_bytes)
        f.base = 0
        f.fp = self._fingerprint(f)
        f.seen_size = 0

    def _find_copy(self, f: _Open) -> _Open | None:
        """The copy ``copytruncate`` made of ``f`` before truncating it, opened at ``f``'s
        offset: a regular file beside :attr:`path`, named after it, not compressed, that starts
        with ``f``'s first bytes and is at least as long as what was read; the newest if several
        do. None if there is none."""
        if not f.fp:
            return None  # the file was empty when last looked at: nothing to finish
        head = bytes.fromhex(f.fp)
        best: tuple[float, str] | None = None
        try:
            entries = list(os.scandir(self.path.parent))
        except OSError:
            return None
        for e in entries:
            if not e.name.startswith(self.path.name) or e.name == self.path.name:
                continue
            if e.name.endswith(_COMPRESSED):
                continue
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode) or (st.st_dev, st.st_ino) == (f.dev, f.ino):
                continue
            if st.st_size < f.offset or (best is not None and st.st_mtime <= best[0]):
                continue
            try:
                with open(e.path, "rb") as fh:
                    if fh.read(len(head)) != head:
                        continue
            except OSError:
                continue
            best = (st.st_mtime, e.path)
        if best is None:
            return None
        copy = self._open(Path(best[1]), f.offset, f.fp)
        if copy is not None:
            copy.name = os.path.basename(best[1])
        return copy

    def _rotate(self, out: list[str], budget: int) -> None:
        """:attr:`path` names another file now: drain the old one, then follow the new one."""
        assert self._cur is not None
        self._counts.rotations += 1
        log.info("%s was rotated: finishing the old file, then following the new one", self.path)
        if self._old is not None:  # rotated again before the previous old file was done
            self._read(self._old, out, 1 << 62)
            self._finish_old(out)
        self._old, self._cur = self._cur, None
        self._old.polls_since_rotation = 0
        self._last_read = self._read(self._old, out, budget)
        self._old.polls_since_rotation = 1

    def _at_end(self, f: _Open) -> bool:
        try:
            return f.read_pos >= os.fstat(f.fd).st_size
        except OSError:
            return True

    def _finish_old(self, out: list[str]) -> None:
        """The rotated-away file is done: its unfinished last line is a line, then close it."""
        old = self._old
        assert old is not None
        out.extend(old.decoder.finish())
        self._counts.add(old.decoder.counts)
        old.close()
        self._old = None

    def _read(self, f: _Open, out: list[str], budget: int) -> int:
        """Read up to ``budget`` bytes of ``f`` from its read position; returns bytes read."""
        done = 0
        chunk = 1 << 20
        while done < budget:
            data = self._pread(f.fd, min(chunk, budget - done), f.read_pos)
            if not data:
                f.seen_size = max(f.seen_size, f.read_pos)
                break
            done += len(data)
            out.extend(f.decoder.feed(data))
        return done
