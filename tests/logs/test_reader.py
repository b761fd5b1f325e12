from __future__ import annotations

import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relia.errors import DataError
from relia.logs.reader import LineDecoder, ReadCounts, read_lines


def _decode(
    data: bytes, *, chunk: int = 7, max_line: int = 1 << 20
) -> tuple[list[str], LineDecoder]:
    dec = LineDecoder(max_line_bytes=max_line)
    out: list[str] = []
    for i in range(0, len(data), chunk):
        out.extend(dec.feed(data[i : i + chunk]))
    out.extend(dec.finish())
    return out, dec


def _ended(data: bytes) -> int:
    """Lines that end in ``data``: one per newline, plus an unterminated last one."""
    return data.count(b"\n") + (0 if data.endswith(b"\n") or not data else 1)


def test_plain_lines_crlf_and_partial_last_line() -> None:
    lines, dec = _decode(b"one\r\ntwo\nthree")
    assert lines == ["one", "two", "three"]
    assert dec.counts == ReadCounts(lines=3, bytes=len(b"one\r\ntwo\nthree"))
    # Without finish() the unterminated line waits.
    d = LineDecoder()
    assert d.feed(b"a\nb") == ["a"]
    assert d.pending == 1 and d.consumed == 2
    assert d.feed(b"c\n") == ["bc"]
    assert d.consumed == 5 and d.pending == 0


def test_invalid_utf8_is_kept_with_replacement_and_counted() -> None:
    lines, dec = _decode("caf\xe9 ok\n".encode("latin-1") + "naïve\n".encode())
    assert lines == ["caf\ufffd ok", "naïve"]
    assert dec.counts.invalid_utf8 == 1 and dec.counts.lines == 2


def test_binary_lines_are_skipped_and_counted() -> None:
    data = b"good line\n\x00\x01\x02\x03 nul\n" + bytes(range(128, 256)) + b"\nafter\n"
    lines, dec = _decode(data)
    assert lines == ["good line", "after"]
    assert dec.counts.binary == 2
    # ANSI colour (ESC) and tabs are text.
    lines, dec = _decode(b"\x1b[31mERROR\x1b[0m\tdisk full\n")
    assert lines == ["\x1b[31mERROR\x1b[0m\tdisk full"] and dec.counts.binary == 0


def test_long_lines_are_skipped_without_buffering_them() -> None:
    dec = LineDecoder(max_line_bytes=100)
    out = dec.feed(b"short\n" + b"x" * 60)
    for _ in range(1000):  # 60 kB of one line: never held
        out += dec.feed(b"y" * 60)
        assert len(dec._buf) <= 100
    out += dec.feed(b"\nnext\n" + b"z" * 101 + b"\n")
    assert out == ["short", "next"]
    assert dec.counts.too_long == 2
    assert dec.consumed == 6 + 60 * 1001 + 1 + 5 + 102


def test_blank_lines_are_counted() -> None:
    lines, dec = _decode(b"a\n\n  \r\nb\n")
    assert lines == ["a", "b"] and dec.counts.blank == 2


def test_read_lines_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    assert read_lines(empty) == ([], ReadCounts())
    f = tmp_path / "x.log"
    f.write_bytes(b"a\nb\n")
    assert read_lines(f)[0] == ["a", "b"]
    with pytest.raises(DataError, match="missing.log: cannot read"):
        read_lines(tmp_path / "missing.log")
    with pytest.raises(DataError, match="is a directory"):
        read_lines(tmp_path)
    if os.geteuid() != 0:  # root reads anything
        f.chmod(0)
        with pytest.raises(DataError, match="x.log: cannot read: Permission denied"):
            read_lines(f)


_text_bytes = st.lists(
    st.sampled_from(
        [b"a", b"b c", b"\n", b"\r\n", b" ", b"\x00", b"\xe9", b"\xff\xfe", b"\xc3\xa9"]
    ),
    max_size=60,
).map(b"".join)


@settings(max_examples=300, deadline=None)
@given(
    data=st.one_of(st.binary(max_size=400), _text_bytes),
    chunk=st.integers(1, 64),
    max_line=st.integers(1, 50),
)
def test_random_bytes_every_line_yielded_or_counted(data: bytes, chunk: int, max_line: int) -> None:
    lines, dec = _decode(data, chunk=chunk, max_line=max_line)
    c = dec.counts
    assert c.lines == len(lines)
    assert c.lines + c.skipped == _ended(data)
    assert dec.consumed == c.bytes == len(data)
    assert all("\n" not in line and line.strip() for line in lines)
    # Chunking does not change the answer.
    whole, dec1 = _decode(data, chunk=max(1, len(data)), max_line=max_line)
    assert whole == lines and dec1.counts == c
