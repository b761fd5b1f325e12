"""Bytes to log lines, safely: every line is either handed out or counted, never dropped silently.

:class:`LineDecoder` splits a byte stream on ``\\n`` (a trailing ``\\r`` is removed too) and
decodes each line as UTF-8:

- **Invalid UTF-8** is decoded with U+FFFD replacement characters; the line is kept and counted
  in :attr:`ReadCounts.invalid_utf8` (Latin-1 accents in an otherwise text log are still text).
- **Binary garbage** (a NUL byte, or more than :data:`BINARY_SHARE` of the line's bytes being
  control bytes or bytes that are not valid UTF-8) is skipped and counted in
  :attr:`ReadCounts.binary`.
- **Lines longer than** ``max_line_bytes`` (default 1 MiB) are skipped whole and counted in
  :attr:`ReadCounts.too_long`. Skipped rather than truncated: a cut line mines as a template of
  its own that never occurs again, and its tail would be lost anyway. While such a line is still
  arriving only a flag is kept, never its bytes, so memory stays bounded whatever the input.
- **Blank lines** (empty or only whitespace) are skipped and counted in :attr:`ReadCounts.blank`.
- **A UTF-8 byte order mark** at the start of a stream (Notepad and PowerShell write one) is
  dropped, so the first line reads as the others do.

So ``lines + binary + too_long + blank`` is the number of lines that ended, and
:attr:`ReadCounts.invalid_utf8` counts lines that are among ``lines``.

:func:`read_lines` reads a whole file; an unreadable file is a :class:`~relia.errors.DataError`
that names it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Self

from relia.errors import DataError

__all__ = [
    "BINARY_SHARE",
    "MAX_LINE_BYTES",
    "LineDecoder",
    "ReadCounts",
    "read_lines",
]

#: The default longest line kept, in bytes (before its newline; a CR of a CRLF counts).
MAX_LINE_BYTES = 1 << 20
#: A line whose share of control or undecodable bytes is above this is binary.
BINARY_SHARE = 0.3

# C0 control bytes that do not occur in text logs (tab, LF, VT, FF, CR and ESC, used for colour,
# are text). NUL is among them and alone marks a line as binary.
_CONTROL = re.compile(rb"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")
_CONTROL_BYTES = bytes([*range(0x00, 0x09), *range(0x0E, 0x1B), *range(0x1C, 0x20), 0x7F])
_CONTROL_TEXT = re.compile(r"[\x00-\x08\x0e-\x1a\x1c-\x1f\x7f]")
_BOM = b"\xef\xbb\xbf"


@dataclass
class ReadCounts:
    """What a decoder saw. ``lines`` were handed out; the other line counts were skipped, except
    ``invalid_utf8``, which counts handed-out lines that needed replacement characters."""

    lines: int = 0
    invalid_utf8: int = 0
    binary: int = 0
    too_long: int = 0
    blank: int = 0
    #: Bytes of the lines that ended (handed out or skipped), newlines included.
    bytes: int = 0

    @property
    def skipped(self) -> int:
        """Lines that ended but were not handed out."""
        return self.binary + self.too_long + self.blank

    def add(self, other: ReadCounts) -> None:
        """Add ``other``'s counts (its fields, which these have too) to these."""
        for f in fields(other):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))

    def to_dict(self) -> dict[str, int]:
        """The counts as a plain dict (JSON-ready)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """Counts from :meth:`to_dict`; unknown keys are ignored, missing ones are 0."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: int(v) for k, v in data.items() if k in names})


class LineDecoder:
    """Incremental bytes → lines with bounded memory.

    :meth:`feed` returns the lines completed by a chunk; the unfinished tail waits for its
    newline (:attr:`pending` bytes of it). :meth:`finish` ends the stream: a final line without a
    newline is a line too. :attr:`consumed` is how many bytes the lines that ended so far take up
    (the offset to resume at after a restart).

    ``at_start``: the stream starts at its first byte, where a byte order mark is dropped (its
    bytes still count in :attr:`consumed`); false for a stream picked up further on.
    ``skip_first``: the stream starts inside a line (picked up mid-line): the rest of that line
    is skipped and counted as ``too_long``, the one reason a line is cut.
    """

    def __init__(
        self,
        *,
        max_line_bytes: int = MAX_LINE_BYTES,
        at_start: bool = True,
        skip_first: bool = False,
    ) -> None:
        if max_line_bytes < 1:
            raise ValueError("max_line_bytes must be >= 1")
        self.max_line_bytes = max_line_bytes
        self.counts = ReadCounts()
        self.consumed = 0
        self._buf = bytearray()
        # Bytes of an over-long line already thrown away (0: not inside one). A stream picked
        # up mid-line starts "inside" one: 1 stands for the unknown bytes before it.
        self._discarded = 1 if skip_first else 0
        self._skip_base = self._discarded  # not bytes of this stream: never consumed
        # The first bytes while they may still be a byte order mark (None: past that point).
        self._bom: bytes | None = b"" if at_start and not skip_first else None
        self._mark = 0  # bytes of a dropped byte order mark not consumed yet

    @property
    def pending(self) -> int:
        """Bytes of the unfinished last line (buffered or already discarded as too long)."""
        held = len(self._bom or b"") + self._mark
        return len(self._buf) + self._discarded - self._skip_base + held

    def reset(self) -> None:
        """Forget the unfinished line (the stream restarts elsewhere); counts are kept."""
        self._buf.clear()
        self._discarded = self._skip_base = self._mark = 0
        self._bom = None

    def feed(self, data: bytes) -> list[str]:
        """The lines that ``data`` completes, in order."""
        if self._bom is not None:
            data = self._bom + data
            if len(data) < len(_BOM) and _BOM.startswith(data):
                self._bom = data  # maybe a mark split across chunks: wait for more
                return []
            self._bom = None
            if data.startswith(_BOM):
                data = data[len(_BOM) :]
                self._mark = len(_BOM)  # bytes of the first line, consumed when it ends
        if not data:
            return []
        last_nl = data.rfind(b"\n")
        if last_nl < 0:
            self._hold(data)
            return []
        out: list[str] = []
        head, tail = data[: last_nl + 1], data[last_nl + 1 :]
        first_nl = head.find(b"\n")
        if self._buf or self._discarded:
            # Finish the line started in an earlier chunk.
            self._hold(head[:first_nl])
            self._end_line(out, newline=True)
            head = head[first_nl + 1 :]
        if head:
            self._complete(head, out)
        self._hold(tail)
        return out

    def finish(self) -> list[str]:
        """End of stream: the unfinished last line, if any, as a line."""
        out: list[str] = []
        if self._bom:  # the stream ended inside what could have been a byte order mark
            self._buf += self._bom
            self._bom = None
        if self._buf or self._discarded:
            self._end_line(out, newline=False)
        elif self._mark:  # a byte order mark alone: an empty line
            self._consume(0)
            self.counts.blank += 1
        return out

    # -- internals --------------------------------------------------------------------------

    def _consume(self, n: int) -> None:
        n += self._mark
        self._mark = 0
        self.consumed += n
        self.counts.bytes += n

    def _hold(self, data: bytes) -> None:
        """Keep ``data`` as part of the unfinished line, or only its length once too long."""
        if not data:
            return
        if self._discarded:
            self._discarded += len(data)
        elif len(self._buf) + len(data) > self.max_line_bytes:
            self._discarded = len(self._buf) + len(data)
            self._buf.clear()
        else:
            self._buf += data

    def _end_line(self, out: list[str], *, newline: bool) -> None:
        """The unfinished line has ended (at a newline, or at the end of the stream)."""
        if self._discarded:
            self._consume(self._discarded - self._skip_base + newline)
            self.counts.too_long += 1
            self._discarded = self._skip_base = 0
            return
        raw = bytes(self._buf)
        self._buf.clear()
        self._consume(len(raw) + newline)
        self._one(raw, out)

    def _complete(self, block: bytes, out: list[str]) -> None:
        """Lines of ``block``, which ends with a newline and starts a line."""
        self._consume(len(block))
        self._lines(block, out)

    def _lines(self, block: bytes, out: list[str]) -> None:
        body = block[:-1]
        # Fast path: the whole block is valid UTF-8 text without control bytes and no line is
        # too long: one decode and one split for all its lines.
        if len(body.translate(None, _CONTROL_BYTES)) == len(body):
            try:
                text = body.decode("utf-8")
            except UnicodeDecodeError:
                pass
            else:
                lines = text.split("\n")
                # A UTF-8 character takes 1 to 4 bytes: only long lines need their bytes counted.
                longest = max(map(len, lines))
                if longest * 4 <= self.max_line_bytes or (
                    longest <= self.max_line_bytes
                    and max(map(len, body.split(b"\n"))) <= self.max_line_bytes
                ):
                    if "\r" in text:
                        lines = [x[:-1] if x.endswith("\r") else x for x in lines]
                    kept = [x for x in lines if x and not x.isspace()]
                    out.extend(kept)
                    self.counts.lines += len(kept)
                    self.counts.blank += len(lines) - len(kept)
                    return
        # Some line needs care: halve the block at a newline until the bad lines stand alone,
        # so that the rare bad line costs a few decodes and the rest still goes the fast way.
        mid = block.find(b"\n", len(block) // 2 - 1)
        if mid < 0 or mid == len(block) - 1:
            mid = block.rfind(b"\n", 0, len(block) - 1)
        if mid < 0:
            self._one(body, out)
            return
        self._lines(block[: mid + 1], out)
        self._lines(block[mid + 1 :], out)

    def _one(self, raw: bytes, out: list[str]) -> None:
        # The limit counts every byte before the newline (a CR too), as while buffering.
        if len(raw) > self.max_line_bytes:
            self.counts.too_long += 1
            return
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if b"\x00" in raw:
            self.counts.binary += 1
            return
        try:
            text = raw.decode("utf-8")
            bad = 0
        except UnicodeDecodeError:
            text = raw.decode("utf-8", errors="replace")
            # Each undecodable byte sequence is one U+FFFD (a real U+FFFD in the input counts too).
            bad = text.count("\ufffd")
        control = len(_CONTROL_TEXT.findall(text)) if _CONTROL.search(raw) else 0
        if bad + control > BINARY_SHARE * max(1, len(raw)):
            self.counts.binary += 1
            return
        if not text.strip():
            self.counts.blank += 1
            return
        if bad:
            self.counts.invalid_utf8 += 1
        self.counts.lines += 1
        out.append(text)


def read_lines(
    path: str | Path, *, max_line_bytes: int = MAX_LINE_BYTES, chunk_bytes: int = 1 << 22
) -> tuple[list[str], ReadCounts]:
    """Every line of a file, with the counts of what was skipped or repaired.

    An empty file gives no lines. A file that cannot be read raises :class:`DataError` naming it.
    """
    p = Path(path)
    dec = LineDecoder(max_line_bytes=max_line_bytes)
    lines: list[str] = []
    try:
        with p.open("rb") as f:
            while chunk := f.read(chunk_bytes):
                lines.extend(dec.feed(chunk))
    except IsADirectoryError:
        raise DataError("is a directory, not a log file", where=str(p)) from None
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror or e}", where=str(p)) from None
    lines.extend(dec.finish())
    return lines, dec.counts
