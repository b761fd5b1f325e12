"""Compact bytes for detector checkpoints: a JSON header and the raw state arrays.

Pickle is neither safe to load from a shared store nor compact; ``np.savez`` adds a zip archive
per series. This format is a few dozen bytes of header plus the arrays themselves.
"""

from __future__ import annotations

import json
import struct
from typing import Any

import numpy as np

from relia.errors import DetectorError

__all__ = ["pack", "unpack"]

_MAGIC = b"RLC1"


def pack(checkpoint: dict[str, Any]) -> bytes:
    """Serialize a :meth:`Detector.state_dict` result."""
    state: dict[str, np.ndarray[Any, Any]] = checkpoint["state"]
    arrays = []
    layout = []
    for key, arr in state.items():
        a = np.ascontiguousarray(arr)
        layout.append([key, a.dtype.str, list(a.shape)])
        arrays.append(a.tobytes())
    header = {k: v for k, v in checkpoint.items() if k != "state"}
    header["layout"] = layout
    head = json.dumps(header, separators=(",", ":")).encode()
    return _MAGIC + struct.pack("<I", len(head)) + head + b"".join(arrays)


def unpack(blob: bytes) -> dict[str, Any]:
    """Inverse of :func:`pack`; :class:`DetectorError` on anything malformed."""
    try:
        if blob[:4] != _MAGIC:
            raise ValueError("bad magic")
        (n,) = struct.unpack("<I", blob[4:8])
        header = json.loads(blob[8 : 8 + n])
        offset = 8 + n
        state = {}
        for key, dtype, shape in header.pop("layout"):
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
    except (ValueError, KeyError, TypeError, struct.error, json.JSONDecodeError) as exc:
        raise DetectorError(f"corrupt detector checkpoint: {exc}") from None
    header["state"] = state
    result: dict[str, Any] = header
    return result
