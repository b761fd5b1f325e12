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


def test_max_line_bytes_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="max_line_bytes"):
        LineDecoder(max_line_bytes=0)
    assert LineDecoder(max_line_bytes=1).max_line_bytes == 1


def test_line_limit_counts_bytes_not_characters() -> None:
    # 10 characters, 11 bytes: over a 10-byte limit even when fed as one block.
    over = "é" + "a" * 9
    at = "é" + "a" * 8
    for data in [f"{over}\n{at}\n".encode(), f"{at}\n{over}\n".encode()]:
        dec = LineDecoder(max_line_bytes=10)
        assert dec.feed(data) == [at]
        assert dec.counts.too_long == 1 and dec.counts.lines == 1


def test_a_single_nul_byte_makes_a_line_binary() -> None:
    lines, dec = _decode(b"ok\nlong enough text with one \x00 in it\n")
    assert lines == ["ok"] and dec.counts.binary == 1


def test_binary_share_is_a_strict_upper_bound() -> None:
    # 3 control bytes in 10: exactly 30 %, still text; 4 in 10 is binary.
    at = b"\x01\x02\x03abcdefg"
    over = b"\x01\x02\x03\x1aabcdef"
    lines, dec = _decode(at + b"\n" + over + b"\n")
    assert lines == [at.decode()] and dec.counts.binary == 1


def test_tabs_and_sub_bytes_are_told_apart() -> None:
    # Tabs are text however many, beside a control byte too; SUB (0x1a) is a control byte.
    lines, dec = _decode(b"a\t\tb\n\x01\t\tab\n\x1a\x1ab\n")
    assert lines == ["a\t\tb", "\x01\t\tab"] and dec.counts.binary == 1


def test_read_lines_keeps_an_unterminated_last_line(tmp_path: Path) -> None:
    f = tmp_path / "x.log"
    f.write_bytes(b"first\r\nlast without newline")
    lines, counts = read_lines(f)
    assert lines == ["first", "last without newline"]
    assert counts.lines == 2 and counts.bytes == f.stat().st_size


def test_reset_forgets_an_over_long_line() -> None:
    dec = LineDecoder(max_line_bytes=4)
    assert dec.feed(b"0123456789") == []
    assert dec.pending == 10
    dec.reset()
    assert dec.pending == 0
    assert dec.feed(b"ok\n") == ["ok"]
    assert dec.counts.too_long == 0 and dec.consumed == 3


def test_counts_add_and_round_trip() -> None:
    a = ReadCounts(lines=2, invalid_utf8=1, binary=3, too_long=4, blank=5, bytes=60)
    a.add(ReadCounts(lines=1, binary=1, bytes=7))
    assert a == ReadCounts(lines=3, invalid_utf8=1, binary=4, too_long=4, blank=5, bytes=67)
    assert a.skipped == 13
    assert ReadCounts.from_dict({**a.to_dict(), "future_field": 9}) == a
    assert ReadCounts.from_dict({"lines": "2"}) == ReadCounts(lines=2)


@settings(max_examples=150, deadline=None)
@given(data=st.one_of(st.binary(max_size=300), _text_bytes), chunk=st.integers(1, 32))
def test_any_file_gives_lines_and_counts_of_every_ended_line(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, chunk: int
) -> None:
    f = tmp_path_factory.mktemp("any") / "any.log"
    f.write_bytes(data)
    lines, counts = read_lines(f, max_line_bytes=40, chunk_bytes=chunk)
    assert counts.lines == len(lines)
    assert counts.lines + counts.skipped == _ended(data)
    assert counts.bytes == len(data)
    assert all("\n" not in line and line.strip() for line in lines)
    # With nothing skipped or repaired, every line comes back as written, less its CR.
    if counts.skipped == counts.invalid_utf8 == 0:
        ended = data.split(b"\n")[: _ended(data)]
        assert lines == [x.removesuffix(b"\r").decode() for x in ended]


def test_a_byte_order_mark_at_the_start_is_dropped(tmp_path: Path) -> None:
    plain, bom = tmp_path / "plain.log", tmp_path / "bom.log"
    plain.write_bytes(b"hello 1\nhello 2\n")
    bom.write_bytes(b"\xef\xbb\xbfhello 1\nhello 2\n")
    assert read_lines(bom)[0] == read_lines(plain)[0] == ["hello 1", "hello 2"]
    assert read_lines(bom)[1].bytes == bom.stat().st_size
    # Split across chunks, and only at the very start of a stream.
    assert read_lines(bom, chunk_bytes=1)[0] == ["hello 1", "hello 2"]
    dec = LineDecoder(at_start=False)
    assert dec.feed(b"\xef\xbb\xbfx\n") == ["\ufeffx"]
    alone = LineDecoder()
    assert alone.feed(b"\xef\xbb\xbf") == [] and alone.pending == 3
    assert alone.finish() == [] and alone.counts.blank == 1 and alone.consumed == 3
