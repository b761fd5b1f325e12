"""Streaming for many series at once: the state of N series of one detector as row arrays.

A :class:`~relia.detect.base.Detector` holds one series. Streaming a fleet through one object per
series costs a Python call per point (``Detector.update``: a few microseconds). A
:class:`DetectorTable` stores the same state for many series as arrays with one row per series
(``st`` becomes ``st[row]``), keeps a dict ``series_id -> row`` (the arrays grow by doubling), and
scores a whole batch of interleaved points with :meth:`DetectorTable.update_many`: one Numba loop
over the points that calls the detector's own per-series kernel on the row of each point. The
math is therefore the very code batch scoring and ``Detector.update`` run, so the three cannot
drift apart; ``tests/detect/test_batched.py`` checks they agree point for point.

Points are taken in the order given, so the points of one series must come in time order (as for
``Detector.update``); points of different series may interleave freely.

Checkpoints are per series and byte-identical to ``pack(detector.state_dict())`` of a detector
that saw the same points, so a checkpoint written by either restores into the other.

:func:`table_for` gives the table of a detector, or ``None`` for a family without one (callers
then keep one detector object per series). Only ``adaptive`` (and so ``default``) has one now:
a family needs a per-series kernel with its state as fixed-shape arrays and a small loop that
calls it (see :class:`AdaptiveTable`).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

import numba
import numpy as np
import numpy.typing as npt

from relia.detect.adaptive import Adaptive, _adaptive_kernel
from relia.detect.base import Detail, Detector, FloatArray, IntArray, State
from relia.detect.checkpoint import (
    NO_TS,
    compress_header,
    fixed_part,
    layout_of,
    pack,
    unpack,
    with_crc,
)
from relia.errors import DataError, DetectorError

# NO_TS (a row that has seen no point) is the checkpoint format's marker, re-exported here.
__all__ = ["AdaptiveTable", "DetectorTable", "NO_TS", "table_for"]


class DetectorTable(ABC):
    """Streaming state of many series of one detector, one row per series.

    ``detector`` is a prototype: its class and config define every row (it is not modified). Rows
    are created on first sight of a series id and start as ``detector._initial_state()``.
    Subclasses implement :meth:`_update_rows`, the loop that runs the family's kernel.
    """

    def __init__(self, detector: Detector, capacity: int = 64) -> None:
        self.detector_class: type[Detector] = type(detector)
        self.config = detector.config
        self.components: tuple[str, ...] = tuple(detector.components)
        self._template: State = detector._initial_state()
        self._rows: dict[int, int] = {}
        self._ids: list[int] = []
        self._index: tuple[IntArray, IntArray] | None = None  # sorted ids and their rows
        cap = max(1, int(capacity))
        # forget() shrinks the arrays no lower than this.
        self._min_capacity = max(64, cap)
        self._state: State = {k: _filled(v, cap) for k, v in self._template.items()}
        self._n_seen = np.zeros(cap, np.int64)
        self._last_ts = np.full(cap, NO_TS, np.int64)
        # One flag per row: learned a point since the last changed_ids(clear=True).
        self._changed = np.zeros(cap, np.bool_)

    # -- size and rows ---------------------------------------------------------------------

    @property
    def name(self) -> str:
        """Registry name of the detector family (as in its checkpoints)."""
        return self.detector_class.name

    @property
    def capacity(self) -> int:
        """Rows allocated (at least ``len(self)``; doubles when full)."""
        return len(self._n_seen)

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, series_id: object) -> bool:
        return series_id in self._rows

    @property
    def series_ids(self) -> list[int]:
        """The series with a row, in the order their rows were created."""
        return list(self._ids)

    def rows(self, series_ids: npt.ArrayLike, *, create: bool = True) -> IntArray:
        """The row of each series id (new rows for unknown ids, or -1 with ``create=False``)."""
        sids = _as_1d(series_ids, np.int64, "series_ids")
        rows = self._lookup(sids)
        if create:
            missing = rows < 0
            if missing.any():
                # New series get rows in id order, each once however often it repeats.
                new_ids = np.unique(sids[missing])
                first = self._add(new_ids.tolist())
                rows[missing] = first + np.searchsorted(new_ids, sids[missing])
        return rows

    def _add(self, ids: list[int]) -> int:
        # Rows for new ids, in the order given; returns the first one.
        first = len(self._ids)
        self._reserve(first + len(ids))
        for j, sid in enumerate(ids):
            self._rows[sid] = first + j
            self._ids.append(sid)
        self._index = None  # rebuilt at the next lookup, not once per new id
        return first

    def _lookup(self, sids: IntArray) -> IntArray:
        # A sorted copy of the ids searched with NumPy: a batch's lookups are vectorized, where
        # a dict costs a Python call per point. Rebuilt only after new series arrive.
        if self._index is None:
            ids = np.array(self._ids, np.int64)
            order = np.argsort(ids)
            self._index = (ids[order], order.astype(np.int64))
        keys, rows = self._index
        if len(keys) == 0 or len(sids) == 0:
            return np.full(len(sids), -1, np.int64)
        pos = np.minimum(np.searchsorted(keys, sids), len(keys) - 1)
        return np.where(keys[pos] == sids, rows[pos], -1).astype(np.int64, copy=False)

    def last_ts(self, rows: IntArray) -> IntArray:
        """Newest timestamp each row has seen (``NO_TS`` for none)."""
        return np.asarray(self._last_ts[rows], dtype=np.int64)

    def n_seen(self, series_id: int) -> int:
        """Points (NaN included) the series has been shown; 0 for an unknown series."""
        row = self._rows.get(int(series_id))
        return 0 if row is None else int(self._n_seen[row])

    # -- scoring ---------------------------------------------------------------------------

    def update_many(
        self, series_ids: npt.ArrayLike, ts: npt.ArrayLike, values: npt.ArrayLike
    ) -> Detail:
        """Score points of many series and learn them, in the order given.

        Returns one row per input point (score, expected, lower, upper, component), exactly what
        ``Detector.update`` on each series' own detector would give.
        """
        sids = _as_1d(series_ids, np.int64, "series_ids")
        times = _as_1d(ts, np.int64, "ts")
        vals = _as_1d(values, np.float64, "values")
        if not len(sids) == len(times) == len(vals):
            raise DataError(
                f"update_many: {len(sids)} series ids, {len(times)} timestamps, {len(vals)} values"
            )
        return self.update_rows(self.rows(sids), times, vals)

    def update_rows(self, rows: IntArray, ts: IntArray, values: FloatArray) -> Detail:
        """:meth:`update_many` for rows already looked up with :meth:`rows`."""
        rows = np.ascontiguousarray(rows, dtype=np.int64)
        ts = np.ascontiguousarray(ts, dtype=np.int64)
        values = np.ascontiguousarray(values, dtype=np.float64)
        n = len(rows)
        if len(ts) != n or len(values) != n:
            raise DataError(f"update_rows: {n} rows, {len(ts)} timestamps, {len(values)} values")
        if n and (int(rows.min()) < 0 or int(rows.max()) >= len(self._ids)):
            raise DataError("update_rows: a row is not in the table")
        nan = np.full(n, np.nan)
        out = Detail(
            score=np.zeros(n),
            expected=nan,
            lower=nan.copy(),
            upper=nan.copy(),
            component=np.full(n, -1, np.int8),
        )
        if n:
            self._update_rows(rows, ts, values, out)
            _bookkeep(rows, ts, self._n_seen, self._last_ts, self._changed)
        return out

    @abstractmethod
    def _update_rows(self, rows: IntArray, ts: IntArray, values: FloatArray, out: Detail) -> None:
        """Run the family's kernel over the points, point i on row ``rows[i]``, into ``out``."""

    # -- checkpoints -----------------------------------------------------------------------

    def state_dict(self, series_id: int) -> dict[str, Any]:
        """The checkpoint of one series, as ``Detector.state_dict()`` would give it."""
        row = self._row(series_id)
        last = int(self._last_ts[row])
        return {
            "detector": self.name,
            "config": self.config.model_dump(),
            "n_seen": int(self._n_seen[row]),
            "last_ts": None if last == NO_TS else last,
            # The template's key order: pack() writes the arrays in this order, so the bytes
            # equal those of a detector's checkpoint.
            "state": {k: self._state[k][row].copy() for k in self._template},
        }

    def checkpoint(self, series_id: int) -> bytes:
        """``pack(self.state_dict(series_id))``: the bytes a detector's checkpoint has."""
        return pack(self.state_dict(series_id))

    def checkpoints(self, series_ids: list[int]) -> dict[int, bytes]:
        """:meth:`checkpoint` of many series at once, byte for byte the same.

        Packing one series at a time costs ~70 µs (a pydantic dump, a JSON encoding and a
        compression of the config per series), which made a full checkpoint of a million series
        take over a minute. Here the compressed header is built once and only ``n_seen`` and
        ``last_ts`` are written per series, and the state rows of all series are gathered into
        one byte matrix with NumPy.
        """
        if not series_ids:
            return {}
        rows = np.fromiter((self._row(sid) for sid in series_ids), np.int64, len(series_ids))
        probe = pack(self.state_dict(series_ids[0]))
        head = compress_header(
            {
                "detector": self.name,
                "config": self.config.model_dump(),
                "layout": layout_of(self._template),
            }
        )
        parts = [
            np.ascontiguousarray(self._state[k][rows]).reshape(len(rows), -1).view(np.uint8)
            for k in self._template
        ]
        body = np.ascontiguousarray(np.hstack(parts)) if len(parts) > 1 else parts[0]
        n_seen = self._n_seen[rows].tolist()
        last_ts = self._last_ts[rows].tolist()
        out: dict[int, bytes] = {}
        for i, sid in enumerate(series_ids):
            # A row's NO_TS is the format's own marker for "no point yet": written as it is.
            fixed = fixed_part(n_seen[i], last_ts[i], len(head))
            out[int(sid)] = with_crc(fixed, head, body[i].tobytes())
        if out[int(series_ids[0])] != probe:  # the format is pack()'s: never let them drift
            raise DetectorError("batched checkpoint differs from pack(); fix checkpoints()")
        return out

    def load_state_dict(self, series_id: int, checkpoint: dict[str, Any]) -> None:
        """Set one series' state from a ``Detector.state_dict()``-style checkpoint (creating its
        row); :class:`DetectorError` if it is for another detector, config or layout."""
        # A detector of the prototype's class and config checks the checkpoint exactly as
        # Detector.load_state_dict does (name, config, keys, shapes) and casts the dtypes.
        det = self.detector_class(config=self.config)
        det.load_state_dict(checkpoint)
        sid = int(series_id)
        row = self._rows.get(sid)
        if row is None:
            row = self._add([sid])
        for k, arr in det._state.items():
            self._state[k][row] = arr
        self._n_seen[row] = det.n_seen
        last = checkpoint.get("last_ts")
        self._last_ts[row] = NO_TS if last is None else int(last)
        self._changed[row] = False

    def restore(self, series_id: int, blob: bytes) -> None:
        """Load a packed checkpoint (``relia.detect.checkpoint.pack``) into one series."""
        self.load_state_dict(series_id, unpack(blob))

    def forget(self, series_ids: npt.ArrayLike) -> int:
        """Drop the rows of these series (ids without a row are ignored); returns how many.

        A forgotten series is unknown afterwards, exactly as if it had never been seen: it has
        no checkpoint, no changed flag, and a point for it starts a fresh row. The other rows
        move down to keep the table compact (their states, counters and changed flags are
        unchanged, so they score and checkpoint as before), and the arrays shrink once less
        than a quarter of them is used. Forgetting 100,000 of 1,000,000 ``default`` rows takes
        about 0.4 s (the rows move at memory speed; rebuilding the id dict is the rest).
        """
        rows = self._lookup(_as_1d(series_ids, np.int64, "series_ids"))
        rows = rows[rows >= 0]  # an id given twice marks its row twice: harmless
        if len(rows) == 0:
            return 0
        n = len(self._ids)
        keep = np.ones(n, np.bool_)
        keep[rows] = False
        kept = np.flatnonzero(keep)
        m = len(kept)
        cap = self.capacity
        # Release memory once less than a quarter is in use: keep the rows in use, with room to
        # double, never below the floor.
        shrink = m < cap // 4 and cap > self._min_capacity
        new_cap = max(self._min_capacity, 2 * m) if shrink else cap
        # In place: every survivor moves down to its rank among them (rows only ever move
        # down, so one pass in row order reads each row before it is overwritten; no temporary
        # copy of the state, whose first touch would cost more than the move). The rows freed
        # at the end become never-seen rows again (_add relies on that).
        start = int(rows.min())
        moved = kept[start:]
        end = min(n, new_cap)  # the freed rows that are kept
        for k, arr in self._state.items():
            if arr.size:
                _move_rows(_as_words(arr), moved, start)
            arr[m:end] = self._template[k]
        for arr, fill in ((self._n_seen, 0), (self._last_ts, NO_TS), (self._changed, False)):
            arr[start:m] = arr[moved]
            arr[m:end] = fill
        if shrink:
            self._state = {k: arr[:new_cap].copy() for k, arr in self._state.items()}
            self._n_seen = self._n_seen[:new_cap].copy()
            self._last_ts = self._last_ts[:new_cap].copy()
            self._changed = self._changed[:new_cap].copy()
        ids = np.array(self._ids, np.int64)[kept].tolist()
        self._ids = ids
        self._rows = dict(zip(ids, range(m), strict=True))
        # The sorted index stays sorted with the forgotten ids taken out (no new sort); rows
        # renumber to their place among the survivors.
        if self._index is not None:
            keys, old_rows = self._index
            alive = keep[old_rows]
            new_row = np.cumsum(keep, dtype=np.int64) - 1
            self._index = (keys[alive], new_row[old_rows[alive]])
        return n - m

    def changed_ids(self, clear: bool = True) -> list[int]:
        """Series that learned a point since the last call with ``clear`` set."""
        n = len(self._ids)
        rows = np.flatnonzero(self._changed[:n])
        if clear:
            self._changed[:n] = False
        ids = self._ids
        return [ids[r] for r in rows.tolist()]

    # -- internals -------------------------------------------------------------------------

    def _row(self, series_id: int) -> int:
        row = self._rows.get(int(series_id))
        if row is None:
            raise DetectorError(f"no state for series {series_id} in this {self.name} table")
        return row

    def _reserve(self, need: int) -> None:
        cap = self.capacity
        if need <= cap:
            return
        # Doubling keeps appends amortized O(1) per series.
        new_cap = max(need, 2 * cap)
        for k, arr in self._state.items():
            grown = _filled(self._template[k], new_cap)
            grown[:cap] = arr
            self._state[k] = grown
        self._n_seen = _grow(self._n_seen, new_cap, 0)
        self._last_ts = _grow(self._last_ts, new_cap, NO_TS)
        self._changed = _grow(self._changed, new_cap, False)


class AdaptiveTable(DetectorTable):
    """:class:`DetectorTable` of the ``adaptive`` detector (and so of ``default``)."""

    def __init__(self, detector: Detector, capacity: int = 64) -> None:
        if not isinstance(detector, Adaptive):
            raise DetectorError(f"AdaptiveTable needs an adaptive detector, not {detector.name!r}")
        super().__init__(detector, capacity)
        # The detector's own packed parameters: the same array Adaptive.update passes.
        self._prm: FloatArray = detector._params().copy()

    def _update_rows(self, rows: IntArray, ts: IntArray, values: FloatArray, out: Detail) -> None:
        s = self._state
        _adaptive_rows(
            rows, ts, values, s["st"], s["hist"], s["runs"], s["season"], s["slots"],
            s["week"], self._prm, out.score, out.expected, out.lower, out.upper, out.component,
        )  # fmt: skip


# Not cache=True on purpose: Numba's cache of this loop would hold its own copy of the compiled
# adaptive kernel and would not notice a change to adaptive.py (it checks only this file), so
# the table could silently drift from the detector. Compiling the loop costs about 0.4 s once
# per process; the kernel it calls comes from adaptive.py's own (correctly invalidated) cache.
# nogil: relia up decodes remote-write requests in other threads while a tick scores.
@numba.njit(nogil=True)
def _adaptive_rows(  # type: ignore[no-untyped-def]
    rows, ts, values, st, hist, runs, season, slots, week, prm, score, expected, lower, upper,
    comp,
):  # fmt: skip
    # One-point buffers of the same types Adaptive.update passes, so the kernel runs the same
    # compiled specialization; the row views st[k], hist[k], ... are C-contiguous like a
    # detector's own state arrays.
    t1 = np.empty(1, np.int64)
    v1 = np.empty(1)
    s1 = np.empty(1)
    e1 = np.empty(1)
    lo1 = np.empty(1)
    up1 = np.empty(1)
    c1 = np.empty(1, np.int8)
    for i in range(rows.shape[0]):
        k = rows[i]
        t1[0] = ts[i]
        v1[0] = values[i]
        s1[0] = 0.0
        e1[0] = np.nan
        lo1[0] = np.nan
        up1[0] = np.nan
        c1[0] = -1
        _adaptive_kernel(
            t1, v1, st[k], hist[k], runs[k], season[k], slots[k], week[k], prm, s1, e1, lo1,
            up1, c1,
        )  # fmt: skip
        score[i] = s1[0]
        expected[i] = e1[0]
        lower[i] = lo1[0]
        upper[i] = up1[0]
        comp[i] = c1[0]


@numba.njit(cache=True, nogil=True)
def _bookkeep(rows, ts, n_seen, last_ts, changed):  # type: ignore[no-untyped-def]
    # Detector.update's counters, per row: points seen (NaN included) and the newest timestamp.
    for i in range(rows.shape[0]):
        k = rows[i]
        n_seen[k] += 1
        if ts[i] > last_ts[k]:
            last_ts[k] = ts[i]
        changed[k] = True


@numba.njit(cache=True, nogil=True)
def _move_rows(arr, moved, start):  # type: ignore[no-untyped-def]
    # Row moved[j] (>= start + j) to row start + j, in order, of a (rows, words) view. An
    # element loop: a row slice assignment checks for overlap and copies (4x slower).
    w = arr.shape[1]
    for j in range(moved.shape[0]):
        src = moved[j]
        dst = start + j
        if src != dst:
            for i in range(w):
                arr[dst, i] = arr[src, i]


def _as_words(arr: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    # A (rows, words) view of a C-contiguous state array, in the widest unsigned word that
    # divides a row's bytes (the move runs at memory speed with 8-byte words).
    if not arr.flags.c_contiguous:
        raise DetectorError("detector table state arrays must be C-contiguous")
    row_bytes = arr.itemsize * (arr.size // len(arr))
    word = next(
        w for w in (np.uint64, np.uint32, np.uint16, np.uint8) if row_bytes % w().itemsize == 0
    )
    return arr.reshape(len(arr), -1).view(word)


#: Detector classes with a table. Exact classes: a subclass may change the kernel it runs.
_TABLES: dict[type[Detector], type[DetectorTable]] = {Adaptive: AdaptiveTable}


def table_for(detector: Detector, capacity: int = 64) -> DetectorTable | None:
    """A table for many series of ``detector``'s class and config, or ``None`` if its family
    has none (stream it with one detector object per series then)."""
    cls = _TABLES.get(type(detector))
    return None if cls is None else cls(detector, capacity)


def _filled(template: np.ndarray[Any, Any], n: int) -> np.ndarray[Any, Any]:
    # A copy, never the read-only broadcast view (ascontiguousarray would keep the view of an
    # empty state array, such as ``week`` with ``week_bins=0``).
    return np.broadcast_to(template, (n, *template.shape)).copy()


def _grow(arr: np.ndarray[Any, Any], n: int, fill: Any) -> np.ndarray[Any, Any]:
    out = np.full(n, fill, arr.dtype)
    out[: len(arr)] = arr
    return out


def _as_1d(x: npt.ArrayLike, dtype: Any, what: str) -> np.ndarray[Any, Any]:
    arr = np.ascontiguousarray(x, dtype=dtype)
    if arr.ndim != 1:
        raise DataError(f"{what} must be one-dimensional, got shape {arr.shape}")
    return arr
