"""Prometheus remote-write 1.0 decoding: snappy block + ``WriteRequest`` protobuf → MetricBatch.

Why a hand-written decoder instead of the protobuf library: the library builds one Python object
per timeseries, label and sample, and relia would then walk those objects to fill three arrays.
Measured on this machine (2 cores; 2,000 series of 6 labels, one sample each per request, the
shape Prometheus sends; protobuf 7.36 with its upb backend): ``WriteRequest.ParseFromString``
alone costs 0.23 µs/sample, and walking its objects into a MetricBatch brings it to 5.4
µs/sample; the compiled pass here (:mod:`relia.ingest._kernels`, 0.29 µs/sample, most of it
walking ~145 bytes of labels per sample) plus snappy and the key lookup costs 0.39 µs/sample all
in, and creates no Python object for a series relia has seen before.

Series identity: the kernel hashes each timeseries' raw label bytes into a 64-bit key (seeded per
process, so a client cannot craft collisions offline). :class:`RemoteWriteDecoder` keeps the keys it
has seen sorted beside their series ids and resolves a request's keys with one ``searchsorted``;
only keys never seen before decode their labels in Python and register in the
:class:`~relia.signals.SeriesIndex` (whose ids are stable hashes of name and labels, so a
restarted relia gives the same ids).

Validation (all-or-nothing: a rejected request registers no series and yields no sample, and
its message names the timeseries, by index and labels where they decode, and says that nothing
of the request was stored): bad snappy, malformed protobuf, a timeseries without ``__name__``,
invalid UTF-8, duplicate label names, an empty name or one with a control character (NUL
included), a label value with a NUL (PostgreSQL cannot store it), timestamps of one timeseries
not increasing, a sample more than ``max_future_ms``
ahead of the receiver's clock (it would stop the scoring of its series until real time caught
up: the engine takes only samples newer than a series' last one). Prometheus' stale markers
(NaN with bits ``0x7ff0000000000002``) are dropped and counted; any other NaN is kept as a
missing value.
"""

from __future__ import annotations

import re
import secrets
import threading
from collections.abc import Callable, Collection
from dataclasses import dataclass

import cramjam
import numpy as np
import numpy.typing as npt

from relia.errors import DataError
from relia.ingest._kernels import ERRORS, scan
from relia.signals import MetricBatch, SeriesIndex
from relia.timeparse import MAX_FUTURE_MS, format_ms, wall_clock_ms

__all__ = [
    "DecodedWrite",
    "RemoteWriteDecoder",
    "RequestTooLarge",
    "MAX_FUTURE_MS",
    "NOTHING_STORED",
    "decompressed_size",
    "decode_labels",
    "warm_up",
]

#: The smallest valid WriteRequest: one series ``m`` with one sample (value 0 at ts 1), written
#: out by hand (field 1 timeseries: field 1 label {name, value}, field 2 sample {value, ts}).
_ONE_SAMPLE = (
    b"\x0a\x1c"  # timeseries, 28 bytes
    b"\x0a\x0d\x0a\x08__name__\x12\x01m"  # label __name__="m"
    b"\x12\x0b\x09" + bytes(8) + b"\x10\x01"  # sample: value 0.0, timestamp 1
)


def warm_up() -> None:
    """Compile the decoding kernel now (on a one-sample request, registering no series): the
    first request would otherwise compile it on the event loop, seconds the first time."""
    s = scan(np.frombuffer(_ONE_SAMPLE, dtype=np.uint8), 0)
    if s.error or len(s.ts) != 1:  # the request above is valid: this is a bug, not input
        raise AssertionError(f"warm-up request not decoded: error {s.error}")


class RequestTooLarge(DataError):
    """A request over a size limit (HTTP 413, not 400): refused before any series is
    registered."""


@dataclass(frozen=True)
class DecodedWrite:
    """One decoded request: its samples, and what was dropped or skipped."""

    batch: MetricBatch
    series: int
    stale: int
    histograms: int
    new_series: int
    #: New series refused (the index holds ``max_series``): their samples are not in ``batch``.
    refused_series: int = 0
    refused_samples: int = 0


def decompressed_size(body: bytes) -> int:
    """The uncompressed length a snappy block announces (its leading varint), read before
    decompressing so an oversized request is refused without inflating it."""
    result = 0
    for i in range(min(len(body), 5)):
        b = body[i]
        result |= (b & 0x7F) << (7 * i)
        if b < 0x80:
            return result
    raise DataError("bad snappy block: no valid length header", where="request body")


def _varint(buf: bytes, i: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while i < end and shift < 70:
        b = buf[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7
    raise DataError("malformed protobuf: truncated varint", where="request body")


#: What a whole-request refusal ends with (the decoder is all-or-nothing).
NOTHING_STORED = "nothing in this request was stored"

#: Characters no label or metric name may hold (they would garble the series' text).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _label_list(labels: list[tuple[str, str]]) -> str:
    return (
        "{"
        + ", ".join(f"{n}={v!r}" if n.isidentifier() else f"{n!r}={v!r}" for n, v in labels)
        + "}"
    )


def _check_name(what: str, name: str) -> None:
    if not name:
        raise DataError(f"empty {what}")
    bad = _CONTROL.search(name)
    if bad is not None:
        raise DataError(f"{what} {name!r} holds the control character {bad.group()!r}")


def decode_labels(buf: bytes, start: int, end: int, *, check_names: bool = True) -> dict[str, str]:
    """The labels of one ``TimeSeries`` message in ``buf[start:end]`` (already checked by the
    kernel for structure); raises :class:`DataError` (no ``where``: the caller names the
    timeseries) on invalid UTF-8, a repeated name, and unless ``check_names`` is false, an
    empty name or one with a control character, or a value with a NUL."""
    pairs: list[tuple[str, str]] = []
    i = start
    while i < end:
        tag, i = _varint(buf, i, end)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            _, i = _varint(buf, i, end)
        elif wire == 1:
            i += 8
        elif wire == 5:
            i += 4
        else:  # wire 2 (the kernel refused groups)
            n, i = _varint(buf, i, end)
            if field == 1:
                pairs.append(_label(buf, i, i + n, len(pairs)))
            i += n
    labels = dict(pairs)
    if len(labels) < len(pairs):
        names = [n for n, _ in pairs]
        twice = next(n for n in names if names.count(n) > 1)
        raise DataError(f"label {twice!r} repeated in labels {_label_list(pairs)}")
    if not check_names:
        return labels
    for name in labels:
        _check_name("label name", name)
    _check_name("metric name (__name__)", labels.get("__name__", ""))
    for name, value in labels.items():
        # Only NUL: PostgreSQL cannot store it (text, jsonb). Other control characters (a
        # newline, a tab) are valid in Prometheus label values and both stores keep them.
        if "\x00" in value:
            raise DataError(
                f"the value of label {name!r} holds the control character '\\x00' (NUL), "
                f"which the store cannot keep, in labels {_label_list(pairs)}"
            )
    return labels


def _label(buf: bytes, i: int, end: int, nth: int) -> tuple[str, str]:
    name = value = b""
    while i < end:
        tag, i = _varint(buf, i, end)
        field, wire = tag >> 3, tag & 7
        if wire == 2:
            n, i = _varint(buf, i, end)
            if field == 1:
                name = buf[i : i + n]
            elif field == 2:
                value = buf[i : i + n]
            i += n
        elif wire == 0:
            _, i = _varint(buf, i, end)
        else:
            i += 8 if wire == 1 else 4
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"the name of label {nth} is not valid UTF-8: {name!r}") from None
    try:
        return text, value.decode("utf-8")
    except UnicodeDecodeError:
        raise DataError(f"the value of label {text!r} is not valid UTF-8: {value!r}") from None


def _series_text(raw: bytes, start: int, end: int) -> str:
    """The labels of a timeseries for a message, or "" when they do not decode."""
    if start < 0:
        return ""
    try:
        labels = decode_labels(raw, start, end, check_names=False)
    except Exception:  # noqa: BLE001 - a malformed message: the index alone names it
        return ""
    # A Label cut short decodes as ('', ''): with no named label, the labels shown would be
    # made up rather than sent.
    if not any(labels):
        return ""
    return " " + _label_list(list(labels.items()))


def _refusal(index: int, labels: str, problem: str) -> DataError:
    return DataError(
        f"timeseries {index}{labels}: {problem}; {NOTHING_STORED}", where="request body"
    )


def _time_text(ts_ms: int) -> str:
    try:
        return f"{ts_ms} ({format_ms(ts_ms)})"
    except (OverflowError, ValueError, OSError):  # past year 9999
        return str(ts_ms)


#: The most refused label encodings a decoder remembers (8 bytes each). Past it, the others are
#: decoded and refused again on each request, as they were before any were remembered.
REFUSED_KEYS_MAX = 1_000_000


class RemoteWriteDecoder:
    """Decodes remote-write bodies into batches whose series are registered in ``index``.

    Thread-safe: the API decodes requests on several worker threads at once.
    """

    def __init__(
        self,
        index: SeriesIndex,
        *,
        max_decoded_bytes: int = 64 << 20,
        source: str = "remote_write",
        max_future_ms: int | None = MAX_FUTURE_MS,
        clock: Callable[[], int] = wall_clock_ms,
    ) -> None:
        self.index = index
        # None: any timestamp (the WAL's replay of requests acknowledged before).
        self.max_future_ms = max_future_ms
        self.clock = clock
        self.source = source  # names refusals of new series (SeriesIndex.get_or_add)
        self.max_decoded_bytes = max_decoded_bytes
        self._seed = secrets.randbits(64)
        self._lock = threading.Lock()
        # Known keys, sorted, and the series id of each: replaced as a whole (copy on write), so
        # readers need no lock.
        self._keys: npt.NDArray[np.uint64] = np.empty(0, np.uint64)
        self._sids: npt.NDArray[np.int64] = np.empty(0, np.int64)
        # Keys of series the index refused (over max_series), sorted, copy on write: a writer
        # past the limit names them in every request, and decoding their labels again each
        # time was most of what such a request cost. Cleared when the engine forgets series
        # (the index has room again).
        self._refused: npt.NDArray[np.uint64] = np.empty(0, np.uint64)

    @property
    def known_keys(self) -> int:
        """How many distinct label encodings have been seen."""
        return len(self._keys)

    def forget(self, series_ids: Collection[int]) -> int:
        """Drop the remembered label encodings of these series, so a request naming one again
        registers it in the index anew (the engine forgot it); returns how many went. Any
        forgetting also drops the refused encodings: the index may have room for them now."""
        gone = np.fromiter(series_ids, np.int64)
        if not len(gone):
            return 0
        with self._lock:
            self._refused = np.empty(0, np.uint64)  # the index has room: ask it again
            keep = ~np.isin(self._sids, gone)
            n = len(keep) - int(np.count_nonzero(keep))
            if n:
                self._keys, self._sids = self._keys[keep], self._sids[keep]
        return n

    def decompress(self, body: bytes, *, limited: bool = True) -> bytes:
        """Snappy block format → bytes; :class:`DataError` when corrupt or (unless ``limited``
        is false) over the limit."""
        size = decompressed_size(body)
        if limited and size > self.max_decoded_bytes:
            raise RequestTooLarge(
                f"decompressed body of {size} bytes is over the limit of {self.max_decoded_bytes}",
                where="request body",
            )
        try:
            return bytes(cramjam.snappy.decompress_raw(body))
        except Exception as exc:  # noqa: BLE001 - cramjam raises its own error types
            raise DataError(f"bad snappy block: {exc}", where="request body") from None

    def decode(
        self,
        body: bytes,
        max_samples: int | None = None,
        *,
        check_time: bool = True,
        replay: bool = False,
    ) -> DecodedWrite:
        """A snappy-compressed ``WriteRequest`` → :class:`DecodedWrite`; more than
        ``max_samples`` samples is :class:`RequestTooLarge`. ``check_time=False`` takes samples
        however far ahead. ``replay=True`` (the WAL's replay of requests accepted before) applies
        none of the limits, which may have been lowered since: not the decompressed size, not
        ``max_future``, not ``max_series`` (its new series are registered over it)."""
        raw = self.decompress(body, limited=not replay)
        return self.decode_raw(
            raw, max_samples, check_time=check_time and not replay, replay=replay
        )

    def decode_raw(
        self,
        raw: bytes,
        max_samples: int | None = None,
        *,
        check_time: bool = True,
        replay: bool = False,
    ) -> DecodedWrite:
        """An uncompressed ``WriteRequest`` → :class:`DecodedWrite` (``replay``: as
        :meth:`decode`, without the series limit)."""
        buf = np.frombuffer(raw, dtype=np.uint8)
        s = scan(buf, self._seed)
        if s.error:
            what = ERRORS.get(s.error, f"error {s.error}")
            problem = f"malformed WriteRequest at byte {s.error_pos}: {what}"
            if s.error_series < 0:
                raise DataError(f"{problem}; {NOTHING_STORED}", where="request body")
            labels = _series_text(raw, s.error_start, s.error_end)
            raise _refusal(s.error_series, labels, problem)
        if max_samples is not None and len(s.ts) > max_samples:
            # Before the new series are registered: a request that can never be taken must not
            # grow the index, which keeps every series for good.
            raise RequestTooLarge(
                f"{len(s.ts)} samples in one request; the ingest queue holds {max_samples}"
            )
        if check_time and self.max_future_ms is not None and len(s.ts):
            self._refuse_future(raw, s.ts, s.sample_series, s.ser_start, s.ser_end, s.ser_index)
        keys, sids = self._keys, self._sids
        found, pos = _lookup(keys, s.keys)
        series_ids = np.empty(len(s.keys), np.int64)
        series_ids[found] = sids[pos[found]]
        new = refused = 0
        if not found.all() and not replay:
            # Refused before: refused again without decoding them or asking the index.
            again, _ = _lookup(self._refused, s.keys)
            again &= ~found
            refused = int(np.count_nonzero(again))
            if refused:
                series_ids[again] = -1
                self.index.note_refused(self.source, refused)
                found |= again
        if not found.all():
            series_ids, new, refused_now = self._resolve_new(
                raw, s.keys, s.ser_start, s.ser_end, s.ser_index, found, series_ids, replay
            )
            refused += refused_now
        sample_ids = series_ids[s.sample_series]
        if not refused:
            batch = MetricBatch(sample_ids, s.ts, s.value)
            return DecodedWrite(batch, len(s.keys), s.n_stale, s.n_histograms, new)
        # The samples of refused series (id -1) are dropped; the rest of the request is kept.
        keep = sample_ids >= 0
        batch = MetricBatch(sample_ids[keep], s.ts[keep], s.value[keep])
        dropped = len(sample_ids) - len(batch)
        return DecodedWrite(batch, len(s.keys), s.n_stale, s.n_histograms, new, refused, dropped)

    def _refuse_future(
        self,
        raw: bytes,
        ts: npt.NDArray[np.int64],
        sample_series: npt.NDArray[np.int32],
        start: npt.NDArray[np.int64],
        end: npt.NDArray[np.int64],
        ser_index: npt.NDArray[np.int64],
    ) -> None:
        """Refuse the request when a sample is over ``max_future_ms`` ahead of the clock: the
        engine would take it, then drop every real sample of its series as not newer."""
        assert self.max_future_ms is not None
        now = self.clock()
        ahead = ts > now + self.max_future_ms
        if not ahead.any():
            return
        first = int(np.argmax(ahead))
        row = int(sample_series[first])
        labels = _series_text(raw, int(start[row]), int(end[row]))
        t = int(ts[first])
        raise _refusal(
            int(ser_index[row]),
            labels,
            f"sample at {_time_text(t)} is {(t - now) / 1000:.1f}s ahead of this receiver's "
            f"clock, more than ingest.max_future ({self.max_future_ms / 1000:g}s) allows "
            f"({int(np.count_nonzero(ahead))} such samples in the request)",
        )

    def _resolve_new(
        self,
        raw: bytes,
        keys: npt.NDArray[np.uint64],
        start: npt.NDArray[np.int64],
        end: npt.NDArray[np.int64],
        ser_index: npt.NDArray[np.int64],
        found: npt.NDArray[np.bool_],
        series_ids: npt.NDArray[np.int64],
        replay: bool = False,
    ) -> tuple[npt.NDArray[np.int64], int, int]:
        """Register the series not seen before; returns the ids, how many were registered and
        how many refused (over ``max_series``: id -1, and not remembered, so a later request
        asks the index again; a ``replay`` registers them all)."""
        # Decode every unseen series first: one bad label rejects the request before any series
        # is registered.
        rows = np.flatnonzero(~found).tolist()
        decoded: list[tuple[int, str, dict[str, str]]] = []
        for r in rows:
            try:
                labels = decode_labels(raw, int(start[r]), int(end[r]))
            except DataError as exc:
                raise _refusal(int(ser_index[r]), "", str(exc)) from None
            name = labels.pop("__name__")
            decoded.append((r, name, labels))
        new_keys = np.empty(len(decoded), np.uint64)
        new_sids = np.empty(len(decoded), np.int64)
        j = 0
        for r, name, labels in decoded:
            sid = self.index.get_or_add(name, labels, source=self.source, capped=not replay)
            if sid is None:
                series_ids[r] = -1
                continue
            series_ids[r] = sid
            new_keys[j] = keys[r]
            new_sids[j] = sid
            j += 1
        refused = len(decoded) - j
        new_keys, new_sids = new_keys[:j], new_sids[:j]
        refused_keys = keys[[r for r, _, _ in decoded if series_ids[r] < 0]]
        with self._lock:
            all_keys = np.concatenate([self._keys, new_keys])
            all_sids = np.concatenate([self._sids, new_sids])
            all_keys, first = np.unique(all_keys, return_index=True)
            self._keys, self._sids = all_keys, all_sids[first]
            room = REFUSED_KEYS_MAX - len(self._refused)
            if len(refused_keys) and room > 0:
                self._refused = np.union1d(self._refused, refused_keys[:room])
        return series_ids, j, refused


def _lookup(
    sorted_keys: npt.NDArray[np.uint64], keys: npt.NDArray[np.uint64]
) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.intp]]:
    """Which of ``keys`` are in ``sorted_keys``, and where (a valid index where found)."""
    if not len(sorted_keys):
        return np.zeros(len(keys), bool), np.zeros(len(keys), np.intp)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[pos] == keys, pos
