"""The compiled pass over a decompressed remote-write ``WriteRequest`` (protobuf wire format).

One walk over the bytes: every ``TimeSeries`` is checked (wire types, lengths inside their
parents, a non-empty ``__name__``, increasing timestamps), its raw label bytes are hashed into a
64-bit key and its samples are written into flat ``ts``/``value`` arrays. Python then resolves
keys to series ids with one ``searchsorted``; only keys never seen before decode their labels.

The messages (prometheus/prompb, remote-write 1.0)::

    WriteRequest { repeated TimeSeries timeseries = 1; repeated MetricMetadata metadata = 3; }
    TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2;
                   repeated Exemplar exemplars = 3; repeated Histogram histograms = 4; }
    Label        { string name = 1; string value = 2; }
    Sample       { double value = 1; int64 timestamp = 2; }

Unknown fields are skipped by wire type, as protobuf requires; field number 0, which protobuf
reserves, is refused. Exemplars, metadata and native histograms are skipped (histograms are
counted so the receiver can report them).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit
from numpy.typing import NDArray

__all__ = ["ERRORS", "STALE_NAN_BITS", "Scan", "scan"]

#: Prometheus' staleness marker: a NaN with this exact bit pattern.
STALE_NAN_BITS = 0x7FF0000000000002

# Error codes of :func:`scan` and what they mean (the position is the byte offset).
ERRORS = {
    1: "truncated or over-long varint",
    2: "a length runs past the end of its message",
    3: "unsupported wire type (groups or a reserved type)",
    4: "a known field has the wrong wire type",
    5: "a timeseries has no __name__ label (or an empty one)",
    6: "sample timestamps of a timeseries are not in increasing order",
    7: "a fixed-size field is truncated",
    8: "field number 0 (reserved by protobuf)",
}

_M = np.uint64(0x9E3779B97F4A7C15)


@njit(cache=True, nogil=True, inline="always")
def _varint(buf: NDArray[np.uint8], i: int, end: int) -> tuple[np.uint64, int]:
    """Decode a varint at ``i``; returns (value, next position) or (0, -1) when malformed."""
    result = np.uint64(0)
    shift = np.uint64(0)
    for k in range(10):
        if i >= end:
            return np.uint64(0), -1
        b = np.uint64(buf[i])
        i += 1
        if k == 9 and b > np.uint64(1):
            # Bits past the 64th: an overflow, which protobuf refuses. Dropping them instead
            # would read another number than the label decoder in Python does.
            return np.uint64(0), -1
        result |= (b & np.uint64(0x7F)) << shift
        if b < np.uint64(0x80):
            return result, i
        shift += np.uint64(7)
    return np.uint64(0), -1


@njit(cache=True, nogil=True, inline="always")
def _skip(buf: NDArray[np.uint8], i: int, end: int, wire: int) -> int:
    """Skip one field's payload of wire type ``wire`` at ``i``; returns the next position or a
    negative error code."""
    if wire == 0:
        _v, j = _varint(buf, i, end)
        return j if j >= 0 else -1
    if wire == 1:
        return i + 8 if i + 8 <= end else -7
    if wire == 5:
        return i + 4 if i + 4 <= end else -7
    if wire == 2:
        n, j = _varint(buf, i, end)
        if j < 0:
            return -1
        if n > np.uint64(end - j):
            return -2
        return j + int(n)
    return -3


@njit(cache=True, nogil=True, inline="always")
def _mix(h: np.uint64, w: np.uint64) -> np.uint64:
    h = (h ^ w) * _M
    return h ^ (h >> np.uint64(29))


@njit(cache=True, nogil=True)
def _hash_bytes(buf: NDArray[np.uint8], start: int, end: int, h: np.uint64) -> np.uint64:
    # Eight bytes at a time: one multiply per word, not per byte (labels are ~100 bytes).
    i = start
    while i + 8 <= end:
        w = np.uint64(0)
        for k in range(8):
            w |= np.uint64(buf[i + k]) << np.uint64(8 * k)
        h = _mix(h, w)
        i += 8
    if i < end:
        w = np.uint64(0)
        for k in range(end - i):
            w |= np.uint64(buf[i + k]) << np.uint64(8 * k)
        h = _mix(h, w ^ np.uint64(end - i) << np.uint64(56))
    return h


@njit(cache=True, nogil=True)
def _is_name(buf: NDArray[np.uint8], i: int, n: int) -> bool:
    # b"__name__"
    if n != 8:
        return False
    return bool(
        buf[i] == 95
        and buf[i + 1] == 95
        and buf[i + 2] == 110
        and buf[i + 3] == 97
        and buf[i + 4] == 109
        and buf[i + 5] == 101
        and buf[i + 6] == 95
        and buf[i + 7] == 95
    )


@njit(cache=True, nogil=True)
def _label(buf: NDArray[np.uint8], i: int, end: int) -> int:
    """Check one ``Label`` message in ``[i, end)``: 1 if it is a non-empty ``__name__``, 0 if
    another label, a negative error code if malformed."""
    name_at = -1
    name_len = 0
    value_len = 0
    while i < end:
        tag, i = _varint(buf, i, end)
        if i < 0:
            return -1
        field = int(tag >> np.uint64(3))
        wire = int(tag & np.uint64(7))
        if field == 0:
            return -8
        if field == 1 or field == 2:
            if wire != 2:
                return -4
            n, j = _varint(buf, i, end)
            if j < 0:
                return -1
            if n > np.uint64(end - j):
                return -2
            if field == 1:
                name_at = j
                name_len = int(n)
            else:
                value_len = int(n)
            i = j + int(n)
        else:
            i = _skip(buf, i, end, wire)
            if i < 0:
                return i
    if name_at >= 0 and value_len > 0 and _is_name(buf, name_at, name_len):
        return 1
    return 0


@njit(cache=True, nogil=True)
def _scan(
    buf: NDArray[np.uint8],
    seed: np.uint64,
    keys: NDArray[np.uint64],
    ser_start: NDArray[np.int64],
    ser_end: NDArray[np.int64],
    ser_index: NDArray[np.int64],
    sample_series: NDArray[np.int32],
    ts_out: NDArray[np.int64],
    bits_out: NDArray[np.uint64],
    counts: NDArray[np.int64],
) -> tuple[int, int]:
    """Fill the output arrays; ``counts`` gets (series, samples, stale, histograms, and where
    an error is: the timeseries' index in the request or -1, its message's start and end or
    -1). Returns ``(error, position)``, error 0 when the request is well formed."""
    end = buf.shape[0]
    stale_bits = np.uint64(STALE_NAN_BITS)
    counts[4] = counts[5] = counts[6] = -1
    ordinal = -1  # of the TimeSeries being read, counting those without samples too
    n_series = 0
    n_samples = 0
    i = 0
    while i < end:
        tag_at = i
        tag, i = _varint(buf, i, end)
        if i < 0:
            return 1, tag_at
        field = int(tag >> np.uint64(3))
        wire = int(tag & np.uint64(7))
        if field == 0:
            return 8, tag_at
        if field != 1:
            j = _skip(buf, i, end, wire)
            if j < 0:
                return -j, i
            i = j
            continue
        ordinal += 1
        counts[4] = ordinal
        if wire != 2:
            return 4, tag_at
        n, j = _varint(buf, i, end)
        if j < 0:
            return 1, i
        if n > np.uint64(end - j):
            return 2, i
        ts_begin = j
        ts_stop = j + int(n)
        counts[5] = ts_begin
        counts[6] = ts_stop
        i = ts_stop
        # One TimeSeries in [ts_begin, ts_stop).
        h = seed
        has_name = False
        first = n_samples
        last_ts = np.int64(0)
        have_last = False
        k = ts_begin
        while k < ts_stop:
            at = k
            tag, k = _varint(buf, k, ts_stop)
            if k < 0:
                return 1, at
            f = int(tag >> np.uint64(3))
            w = int(tag & np.uint64(7))
            if f == 0:
                return 8, at
            if f != 1 and f != 2:
                if f == 4:
                    counts[3] += 1
                k2 = _skip(buf, k, ts_stop, w)
                if k2 < 0:
                    return -k2, k
                k = k2
                continue
            if w != 2:
                return 4, at
            m, s = _varint(buf, k, ts_stop)
            if s < 0:
                return 1, k
            if m > np.uint64(ts_stop - s):
                return 2, k
            sub_end = s + int(m)
            k = sub_end
            if f == 1:
                r = _label(buf, s, sub_end)
                if r < 0:
                    return -r, s
                if r == 1:
                    has_name = True
                # The whole field (tag, length, bytes) goes into the key, so two labels cannot
                # run into each other.
                h = _hash_bytes(buf, at, sub_end, h)
                continue
            value_bits = np.uint64(0)
            t = np.int64(0)
            q = s
            while q < sub_end:
                qat = q
                stag, q = _varint(buf, q, sub_end)
                if q < 0:
                    return 1, qat
                sf = int(stag >> np.uint64(3))
                sw = int(stag & np.uint64(7))
                if sf == 0:
                    return 8, qat
                if sf == 1:
                    if sw != 1:
                        return 4, qat
                    if q + 8 > sub_end:
                        return 7, q
                    value_bits = np.uint64(0)
                    for b in range(8):
                        value_bits |= np.uint64(buf[q + b]) << np.uint64(8 * b)
                    q += 8
                elif sf == 2:
                    if sw != 0:
                        return 4, qat
                    v, q = _varint(buf, q, sub_end)
                    if q < 0:
                        return 1, qat
                    t = np.int64(v)  # two's complement: a negative int64 wraps back
                else:
                    q = _skip(buf, q, sub_end, sw)
                    if q < 0:
                        return -q, qat
            if have_last and t <= last_ts:
                return 6, s
            have_last = True
            last_ts = t
            if value_bits == stale_bits:
                counts[2] += 1
            else:
                ts_out[n_samples] = t
                bits_out[n_samples] = value_bits
                sample_series[n_samples] = n_series
                n_samples += 1
        if not has_name:
            return 5, ts_begin
        if n_samples > first:
            keys[n_series] = h
            ser_start[n_series] = ts_begin
            ser_end[n_series] = ts_stop
            ser_index[n_series] = ordinal
            n_series += 1
    counts[4] = counts[5] = counts[6] = -1
    counts[0] = n_series
    counts[1] = n_samples
    return 0, 0


class Scan(NamedTuple):
    """What :func:`scan` found (arrays trimmed to their counts)."""

    error: int
    error_pos: int
    #: With an error inside a timeseries: its index in the request, else -1.
    error_series: int
    #: That timeseries' message bytes ``[start, end)`` when its length was readable, else -1.
    error_start: int
    error_end: int
    n_stale: int
    n_histograms: int
    keys: NDArray[np.uint64]
    ser_start: NDArray[np.int64]
    ser_end: NDArray[np.int64]
    #: Each series row's index among the request's timeseries (those without samples count).
    ser_index: NDArray[np.int64]
    sample_series: NDArray[np.int32]
    ts: NDArray[np.int64]
    value: NDArray[np.float64]


def scan(buf: NDArray[np.uint8], seed: int) -> Scan:
    """Walk a decompressed ``WriteRequest``: ``error`` is 0 or a code of :data:`ERRORS`. The
    series rows are the timeseries that kept a sample: their label key and the byte range of
    their ``TimeSeries`` message; ``sample_series`` maps each sample to its series row."""
    n = buf.shape[0]
    # Upper bounds: an empty Sample costs 2 bytes on the wire, a series with a name at least 14.
    max_samples = n // 2 + 1
    max_series = n // 14 + 1
    keys = np.empty(max_series, np.uint64)
    ser_start = np.empty(max_series, np.int64)
    ser_end = np.empty(max_series, np.int64)
    ser_index = np.empty(max_series, np.int64)
    sample_series = np.empty(max_samples, np.int32)
    ts = np.empty(max_samples, np.int64)
    bits = np.empty(max_samples, np.uint64)
    counts = np.zeros(7, np.int64)
    err, pos = _scan(
        buf, np.uint64(seed), keys, ser_start, ser_end, ser_index, sample_series, ts, bits, counts
    )
    ns, nv = (int(counts[0]), int(counts[1])) if err == 0 else (0, 0)
    return Scan(
        int(err),
        int(pos),
        int(counts[4]),
        int(counts[5]),
        int(counts[6]),
        int(counts[2]),
        int(counts[3]),
        keys[:ns],
        ser_start[:ns],
        ser_end[:ns],
        ser_index[:ns],
        sample_series[:nv],
        ts[:nv],
        bits[:nv].view(np.float64),
    )
