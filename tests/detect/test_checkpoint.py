from __future__ import annotations

import json
import struct
import zlib
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relia.detect import create
from relia.detect.checkpoint import (
    FORMAT_VERSION,
    compress_header,
    fixed_part,
    format_version,
    layout_of,
    pack,
    unpack,
    with_crc,
)
from relia.errors import DetectorError


def test_pack_is_compact_and_round_trips() -> None:
    det = create("cusum")
    det.score(np.arange(100.0))
    blob = pack(det.state_dict())
    assert len(blob) < 400
    back = unpack(blob)
    assert back["n_seen"] == 100 and back["detector"] == "cusum"
    np.testing.assert_array_equal(back["state"]["st"], det.state_dict()["state"]["st"])


def test_default_checkpoint_fits_in_two_kilobytes() -> None:
    det = create("default")
    ts = np.arange(5000, dtype=np.int64) * 300_000
    det.score(np.random.default_rng(0).normal(100.0, 1.0, 5000), ts)
    blob = pack(det.state_dict())
    arrays = sum(a.nbytes for a in det.state_dict()["state"].values())
    assert len(blob) <= 2048
    assert len(blob) - arrays < 350  # the compressed header, n_seen and last_ts
    back = unpack(blob)
    assert back["n_seen"] == 5000 and back["last_ts"] == int(ts[-1])
    restored = create("default")
    restored.load_state_dict(back)
    assert pack(restored.state_dict()) == blob


def test_a_fresh_detector_round_trips_its_missing_last_timestamp() -> None:
    back = unpack(pack(create("default").state_dict()))
    assert back["n_seen"] == 0 and back["last_ts"] is None


def _rlc1(checkpoint: dict[str, object]) -> bytes:
    """What relia wrote before the compressed header: ``RLC1``, the JSON header's length, the
    JSON header (``n_seen`` and ``last_ts`` inside it) and the arrays."""
    state = checkpoint["state"]
    assert isinstance(state, dict)
    header = {k: v for k, v in checkpoint.items() if k != "state"}
    header["layout"] = [[k, a.dtype.str, list(a.shape)] for k, a in state.items()]
    head = json.dumps(header, separators=(",", ":")).encode()
    arrays = b"".join(a.tobytes() for a in state.values())
    return b"RLC1" + struct.pack("<I", len(head)) + head + arrays


def test_checkpoint_in_the_old_format_is_still_read() -> None:
    det = create("default")
    det.score(np.random.default_rng(1).normal(size=700), np.arange(700, dtype=np.int64) * 60_000)
    old = _rlc1(det.state_dict())
    back = unpack(old)
    assert back["n_seen"] == 700 and back["last_ts"] == 699 * 60_000
    restored = create("default")
    restored.load_state_dict(back)
    assert pack(restored.state_dict()) == pack(det.state_dict())


@pytest.mark.parametrize("n", [4, 9])
def test_a_checkpoint_of_a_newer_format_says_newer_relia_not_corrupt(n: int) -> None:
    # It was "corrupt detector checkpoint: bad magic", and relia up overwrote it.
    rest = pack(create("default").state_dict())[4:]
    with pytest.raises(DetectorError, match=rf"written by a newer relia \(format RLC{n} > RLC3\)"):
        unpack(b"RLC%d" % n + rest)
    assert format_version(b"RLC%d" % n + rest) == n
    assert format_version(b"XYZ1") is None and format_version(b"RLC") is None


def test_the_stored_formats_are_pinned_to_the_store_schema_version() -> None:
    # A stored format changed without a schema bump (RLC3 came at schema 12, as RLC2 had): the
    # relia before it opened the newer data directory and overwrote every checkpoint as corrupt.
    # Change a format: bump its version AND add a store migration (a no-op if nothing else
    # changes, in both migrations/ and migrations/postgresql/), then update this pair.
    from relia.logs import engine as log_engine
    from relia.logs import miner
    from relia.store.migrations import latest_version, load_migrations

    formats = (FORMAT_VERSION, log_engine._STATE_VERSION, miner._STATE_VERSION)
    assert (formats, latest_version(load_migrations())) == ((3, 1, 1), 13)


@given(st.binary(max_size=200))
def test_garbage_is_a_detector_error(blob: bytes) -> None:
    try:
        unpack(blob)
    except DetectorError:
        pass


@given(st.sampled_from([b"RLC1", b"RLC2"]), st.binary(max_size=300))
def test_garbage_after_a_valid_magic_is_a_detector_error(magic: bytes, rest: bytes) -> None:
    try:
        unpack(magic + rest)
    except DetectorError:
        pass


def test_a_header_that_is_not_an_object_is_refused() -> None:
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = deflate.compress(b"[1, 2]") + deflate.flush()
    blob = b"RLC2" + struct.pack("<qqI", 0, 0, len(head)) + head
    with pytest.raises(DetectorError, match="corrupt"):
        unpack(blob)


def test_truncated_checkpoint_is_refused() -> None:
    blob = pack(create("mad").state_dict())
    with pytest.raises(DetectorError, match="corrupt"):
        unpack(blob[:-3])


def test_checkpoint_of_another_detector_or_config_is_refused() -> None:
    state = create("mad").state_dict()
    with pytest.raises(DetectorError, match="not 'cusum'"):
        create("cusum").load_state_dict(state)
    with pytest.raises(DetectorError, match="another config"):
        create("mad", window=32).load_state_dict(state)


def test_a_header_that_is_not_an_object_says_so() -> None:
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = deflate.compress(b'"text"') + deflate.flush()
    with pytest.raises(DetectorError, match="header is not an object"):
        unpack(b"RLC2" + struct.pack("<qqI", 0, 0, len(head)) + head)


def test_every_truncation_of_a_checkpoint_is_refused() -> None:
    det = create("cusum")
    det.score(np.arange(50.0))
    blob = pack(det.state_dict())
    for cut in range(len(blob)):
        with pytest.raises(DetectorError, match="corrupt"):
            unpack(blob[:cut])
    with pytest.raises(DetectorError, match="truncated"):
        unpack(blob[:-1])


def test_bytes_after_the_last_array_are_refused() -> None:
    blob = pack(create("mad").state_dict())
    with pytest.raises(DetectorError, match="trailing bytes"):
        unpack(blob + b"\x00")
    v1 = _rlc1(create("mad").state_dict())
    with pytest.raises(DetectorError, match="trailing bytes"):
        unpack(v1 + b"\x00" * 8)


def test_a_deeply_nested_header_is_a_detector_error_not_a_crash() -> None:
    nested = b"[" * 100_000
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = deflate.compress(nested) + deflate.flush()
    for blob in (
        b"RLC2" + struct.pack("<qqI", 0, 0, len(head)) + head,
        b"RLC1" + struct.pack("<I", len(nested)) + nested,
    ):
        with pytest.raises(DetectorError, match="corrupt"):
            unpack(blob)


def test_damaged_compressed_header_or_missing_layout_is_a_detector_error() -> None:
    bad_deflate = b"\xff\xff\xff\xff"
    with pytest.raises(DetectorError, match="corrupt"):
        unpack(b"RLC2" + struct.pack("<qqI", 0, 0, len(bad_deflate)) + bad_deflate)
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = deflate.compress(b'{"detector":"mad"}') + deflate.flush()
    with pytest.raises(DetectorError, match="layout"):
        unpack(b"RLC2" + struct.pack("<qqI", 0, 0, len(head)) + head)
    for v1_header in (b"[1]", b"1", b'"text"', b"null"):
        with pytest.raises(DetectorError, match="corrupt"):
            unpack(b"RLC1" + struct.pack("<I", len(v1_header)) + v1_header)


def test_checkpoint_written_by_hand_to_the_documented_layout_is_read() -> None:
    # RLC3 . n_seen (int64) . last_ts (int64) . header length (uint32) . CRC32 (uint32) of every
    # other byte . raw DEFLATE JSON . arrays; RLC2 is the same without the CRC (still read).
    header = {"detector": "x", "config": {}, "layout": [["a", "<f8", [2]], ["b", "<i8", []]]}
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)
    raw = json.dumps(header, separators=(",", ":")).encode()
    head = deflate.compress(raw) + deflate.flush()
    arrays = np.array([1.5, -2.0]).tobytes() + np.int64(7).tobytes()
    fixed = b"RLC3" + struct.pack("<qqI", 42, -1, len(head))
    crc = zlib.crc32(fixed + head + arrays)
    blob = fixed + struct.pack("<I", crc) + head + arrays
    v2 = b"RLC2" + struct.pack("<qqI", 42, -1, len(head)) + head + arrays
    for b in (blob, v2):
        back = unpack(b)
        assert back["n_seen"] == 42 and back["last_ts"] == -1  # before 1970 is not "none"
        np.testing.assert_array_equal(back["state"]["a"], [1.5, -2.0])
        assert back["state"]["b"].shape == () and back["state"]["b"] == 7
        assert pack(back) == blob


@given(
    n_seen=st.integers(0, 2**62),
    last_ts=st.none() | st.integers(-(2**63) + 1, 2**63 - 1),
    shapes=st.lists(st.lists(st.integers(0, 3), max_size=2), max_size=4),
)
def test_pack_then_unpack_gives_back_the_checkpoint(
    n_seen: int, last_ts: int | None, shapes: list[list[int]]
) -> None:
    dtypes = ["<f8", "<i8", "|i1", "<f4"]
    state = {
        f"k{i}": np.arange(int(np.prod(s)), dtype=dtypes[i % 4]).reshape(s)
        for i, s in enumerate(shapes)
    }
    checkpoint = {"detector": "x", "config": {"w": 1}, "n_seen": n_seen, "last_ts": last_ts}
    back = unpack(pack({**checkpoint, "state": state}))
    assert {k: v for k, v in back.items() if k != "state"} == checkpoint
    assert list(back["state"]) == list(state)
    for key, a in state.items():
        assert back["state"][key].dtype == a.dtype and back["state"][key].shape == a.shape
        np.testing.assert_array_equal(back["state"][key], a)


def _rlc1_with_layout(checkpoint: dict[str, Any], layout: list[list[Any]]) -> bytes:
    header = {k: v for k, v in checkpoint.items() if k != "state"} | {"layout": layout}
    head = json.dumps(header).encode()
    arrays = b"".join(np.ascontiguousarray(a).tobytes() for a in checkpoint["state"].values())
    return b"RLC1" + struct.pack("<I", len(head)) + head + arrays


def test_a_layout_with_a_dtype_that_is_not_a_number_is_refused() -> None:
    # "<,." made np.dtype raise SyntaxError (before the CRC was checked); "|S8" passed unpack and
    # then failed load_state_dict with a bare ValueError: both crashed the engine's restore.
    det = create("mad")
    det.score(np.arange(40.0))
    checkpoint = det.state_dict()
    header = {k: v for k, v in checkpoint.items() if k not in ("n_seen", "last_ts", "state")}
    header["layout"] = [["buf", "<,.", [128]], ["meta", "<i8", [2]], ["q", "<f8", [2]]]
    head = compress_header(header)
    arrays = b"".join(np.ascontiguousarray(a).tobytes() for a in checkpoint["state"].values())
    blob = with_crc(fixed_part(40, checkpoint["last_ts"], len(head)), head, arrays)
    with pytest.raises(DetectorError, match="dtype '<,.'"):
        unpack(blob)
    as_bytes = _rlc1_with_layout(
        checkpoint, [["buf", "|S8", [128]], ["meta", "<i8", [2]], ["q", "<f8", [2]]]
    )
    with pytest.raises(DetectorError, match="corrupt"):
        unpack(as_bytes)
    with pytest.raises(DetectorError, match="buf has dtype"):
        create("mad").load_state_dict(
            {**checkpoint, "state": {**checkpoint["state"], "buf": np.zeros(128, "S8")}}
        )


def _mutations() -> st.SearchStrategy[tuple[str, int, list[tuple[int, int]]]]:
    return st.tuples(
        st.sampled_from(["mad", "cusum", "seasonal", "default", "ensemble"]),
        st.sampled_from([1, 2, 3]),
        st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)), min_size=1, max_size=3),
    )


def _blob_of(name: str, version: int) -> bytes:
    det = create(name)
    det.score(np.sin(np.arange(80.0)))
    checkpoint = det.state_dict()
    if version == 3:
        return pack(checkpoint)
    if version == 1:
        return _rlc1_with_layout(checkpoint, layout_of(checkpoint["state"]))
    blob = pack(checkpoint)
    return b"RLC2" + blob[4 : 4 + 20] + blob[28:]  # the same without the CRC


@given(_mutations())
@settings(max_examples=300, deadline=None)
def test_any_changed_bytes_are_a_detector_error_or_a_checkpoint_that_loads(
    case: tuple[str, int, list[tuple[int, int]]],
) -> None:
    name, version, changes = case
    blob = bytearray(_blob_of(name, version))
    for at, byte in changes:
        blob[at % len(blob)] = byte
    try:
        create(name).load_state_dict(unpack(bytes(blob)))
    except DetectorError:
        pass
