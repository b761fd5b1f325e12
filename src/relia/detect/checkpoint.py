"""Compact bytes for detector checkpoints: a small header and the raw state arrays.

Pickle is neither safe to load from a shared store nor compact; ``np.savez`` adds a zip archive
per series. This format is the arrays themselves plus a header of a few hundred bytes:

``RLC3`` · ``n_seen`` (int64) · ``last_ts`` (int64, ``NO_TS`` for none) · the length (uint32) of
the raw-DEFLATE-compressed JSON of everything else but the arrays (detector, config, layout of
the arrays) · the CRC32 (uint32) of every other byte of the checkpoint · that JSON · the arrays.
The CRC makes a flipped bit a refused checkpoint instead of a model restored from garbage (the
detectors' kernels index with state values and check no bounds: each detector also checks its
state's invariants on load, ``Detector._check_state``).

The JSON is the same for every series of one detector and config, so a table of many series
compresses it once (``relia.detect.batched``), and compressed it is about 280 bytes instead of
500: what keeps ``default`` under 2 KB a series (1,957 bytes with the CRC).

``unpack`` also reads ``RLC2`` (the same without the CRC) and ``RLC1`` (uncompressed JSON with
``n_seen`` and ``last_ts`` inside), which relia wrote before. ``RLC<n>`` with ``n`` above
:data:`FORMAT_VERSION` was written by a newer relia: refused as such, never taken for garbage
(``relia up`` then refuses to start rather than overwrite it).

A new format is a new ``FORMAT_VERSION`` *and* a new store schema version (a migration, a no-op
where nothing else changes): an older relia then refuses the whole data directory as "written by
a newer relia" instead of reading every checkpoint as corrupt. ``tests/detect/test_checkpoint.py``
pins the pair.
"""

from __future__ import annotations

import json
import re
import struct
import zlib
from typing import Any

import numpy as np

from relia.errors import DetectorError

__all__ = ["FORMAT_VERSION", "NO_TS", "format_version", "pack", "unpack"]

#: The format this relia writes (``RLC3``); the newest it reads.
FORMAT_VERSION = 3
_MAGIC = b"RLC%d" % FORMAT_VERSION
_MAGIC_V2 = b"RLC2"
_MAGIC_V1 = b"RLC1"
#: ``n_seen``, ``last_ts`` and the compressed header's length.
_FIXED = struct.Struct("<qqI")
#: The CRC32 after them (``RLC3``).
_CRC = struct.Struct("<I")
#: Bytes before the compressed header: magic, ``_FIXED``, CRC.
_PREFIX = 4 + _FIXED.size + _CRC.size
#: ``last_ts`` of a detector that has seen no point (a checkpoint's ``None``).
NO_TS = -(2**63)
#: Keys of a checkpoint kept outside the compressed header (they differ series by series).
_PER_SERIES = ("n_seen", "last_ts", "state")


def compress_header(header: dict[str, Any]) -> bytes:
    """The compressed JSON header of :func:`pack` (detector, config, layout)."""
    raw = json.dumps(header, separators=(",", ":")).encode()
    deflate = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw DEFLATE: no zlib header or checksum
    return deflate.compress(raw) + deflate.flush()


def layout_of(state: dict[str, np.ndarray[Any, Any]]) -> list[list[Any]]:
    """``[key, dtype, shape]`` of each state array, in the order :func:`pack` writes them."""
    return [[key, np.asarray(a).dtype.str, list(np.shape(a))] for key, a in state.items()]


def fixed_part(n_seen: int, last_ts: int | None, header_len: int) -> bytes:
    """Magic, ``n_seen``, ``last_ts`` and the header's length: what differs per series (the CRC
    follows, see :func:`with_crc`)."""
    last = NO_TS if last_ts is None else int(last_ts)
    return _MAGIC + _FIXED.pack(int(n_seen), last, header_len)


def with_crc(fixed: bytes, head: bytes, arrays: bytes) -> bytes:
    """The checkpoint of :func:`fixed_part`, the compressed header and the arrays: the CRC32 of
    all of them (the magic included) goes between the fixed part and the header."""
    crc = zlib.crc32(arrays, zlib.crc32(head, zlib.crc32(fixed)))
    return fixed + _CRC.pack(crc) + head + arrays


def pack(checkpoint: dict[str, Any]) -> bytes:
    """Serialize a :meth:`Detector.state_dict` result."""
    state: dict[str, np.ndarray[Any, Any]] = checkpoint["state"]
    header = {k: v for k, v in checkpoint.items() if k not in _PER_SERIES}
    header["layout"] = layout_of(state)
    head = compress_header(header)
    arrays = b"".join(np.ascontiguousarray(a).tobytes() for a in state.values())
    fixed = fixed_part(checkpoint.get("n_seen", 0), checkpoint.get("last_ts"), len(head))
    return with_crc(fixed, head, arrays)


def format_version(blob: bytes) -> int | None:
    """The ``n`` of a blob's ``RLC<n>`` magic, or ``None`` if it has none."""
    if blob[:3] == b"RLC" and blob[3:4].isdigit():
        return int(blob[3:4])
    return None


def unpack(blob: bytes) -> dict[str, Any]:
    """Inverse of :func:`pack`; :class:`DetectorError` on anything malformed, or on a format
    newer than :data:`FORMAT_VERSION` (its message says "newer relia")."""
    version = format_version(blob)
    if version is not None and version > FORMAT_VERSION:
        raise DetectorError(
            f"detector checkpoint written by a newer relia (format RLC{version} > "
            f"RLC{FORMAT_VERSION})"
        )
    try:
        if blob[:4] == _MAGIC and not _crc_matches(blob):
            # Checked before anything is parsed: a changed byte must not reach the parsers
            # (a garbled dtype string made NumPy raise SyntaxError). A cut or padded checkpoint
            # still says so, where its layout can be read.
            raise ValueError(_why_changed(blob))
        return _parse(blob)
    except _MALFORMED as exc:
        raise DetectorError(f"corrupt detector checkpoint: {exc}") from None


#: What parsing a malformed checkpoint raises.
_MALFORMED = (
    ValueError,
    KeyError,
    TypeError,
    AttributeError,
    RecursionError,
    struct.error,
    zlib.error,
)
#: The dtypes state arrays are stored as (byte order, kind, size): numbers and booleans.
_DTYPE = re.compile(r"[<>|=]?[fiub][1248]")


def _crc_matches(blob: bytes) -> bool:
    if len(blob) < _PREFIX:
        return False
    crc: int = _CRC.unpack(blob[4 + _FIXED.size : _PREFIX])[0]
    return zlib.crc32(blob[_PREFIX:], zlib.crc32(blob[: 4 + _FIXED.size])) == crc


def _why_changed(blob: bytes) -> str:
    """Why an RLC3 checkpoint fails its CRC: cut or padded when its layout says so, else
    changed."""
    try:
        _parse(blob)
    except ValueError as exc:
        if str(exc) in ("truncated", "trailing bytes"):
            return str(exc)
    except Exception:  # noqa: BLE001 - any other failure of garbled bytes: the CRC says it all
        pass
    return "checksum mismatch: the bytes were changed"


def _parse(blob: bytes) -> dict[str, Any]:
    """The checkpoint in ``blob``, its CRC (if any) not checked."""
    if blob[:4] in (_MAGIC, _MAGIC_V2):
        n_seen, last_ts, n = _FIXED.unpack(blob[4 : 4 + _FIXED.size])
        start = _PREFIX if blob[:4] == _MAGIC else 4 + _FIXED.size
        inflate = zlib.decompressobj(-15)
        header = json.loads(inflate.decompress(blob[start : start + n]) + inflate.flush())
        if not isinstance(header, dict):
            raise ValueError("header is not an object")
        header["n_seen"] = n_seen
        header["last_ts"] = None if last_ts == NO_TS else last_ts
        offset = start + n
    elif blob[:4] == _MAGIC_V1:
        (n,) = struct.unpack("<I", blob[4:8])
        header = json.loads(blob[8 : 8 + n])
        offset = 8 + n
    else:
        raise ValueError("bad magic")
    state = {}
    for key, dtype, shape in header.pop("layout"):
        if not (isinstance(dtype, str) and _DTYPE.fullmatch(dtype)):
            raise ValueError(f"state array {key!r} has dtype {dtype!r}")
        dt = np.dtype(dtype)
        count = int(np.prod(shape)) if shape else 1
        size = dt.itemsize * count
        chunk = blob[offset : offset + size]
        if len(chunk) != size:
            raise ValueError("truncated")
        state[key] = np.frombuffer(chunk, dtype=dt).reshape(shape).copy()
        offset += size
    if offset != len(blob):
        raise ValueError("trailing bytes")
    header["state"] = state
    result: dict[str, Any] = header
    return result
