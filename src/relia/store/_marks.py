"""Where to cut a series' oldest samples without reading them: a few ts per series in memory.

The store keeps the newest ``keep`` samples of each series. Finding the cutoff of a series with
SQL (the ``keep``-th newest ts) reads every stored row of that series, and with rows of all series
interleaved in time order that is a scan of the whole table per trim: at 10,000 series × 2,000
samples it was a third of ``relia up``'s CPU under load. But a stream moves forward, so the store
can remember where to cut as the rows arrive: every ``step``-th sample appended to a series (by
its position in the series, counted from the first append this process saw) leaves a *mark*, its
ts, in a small ring per series. Cutting at a mark deletes exactly the rows before it (they are all
older: they were appended earlier, by a forward append), so the count after the trim is known
without reading, and the delete is ``ts < mark``, which DuckDB prunes to the oldest row groups by
their min/max ts.

A mark is only trusted for positions reached by forward appends (every ts newer than what the
series had). An append that replaces or back-fills rows of a series makes its marks unknown from
there (``valid``), as does a restart; the store then cuts that series with the exact SQL, and the
marks become usable again once ``keep`` forward samples have arrived. Cutting at a mark leaves
between ``keep`` and ``keep + step - 1`` rows; ``step`` is ``keep // 32`` (1 below 64: exact).

Why hand-written: it is the store's own bookkeeping (no library keeps per-key position marks),
and it is plain NumPy over the batch, no Python loop per sample.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]


class TrimMarks:
    """Per-series positions and ts marks (see the module docstring)."""

    def __init__(self, keep: int) -> None:
        self.keep = keep
        self.step = max(1, keep // 32)
        # Marks cover positions back to `keep + 2 steps` before the newest: enough for any cut.
        self.ring = keep // self.step + 3
        self._row: dict[int, int] = {}
        # Rows of forgotten series (forget), handed to new ids before the table grows; while
        # there are none, the rows in use are exactly 0 .. len(_row) - 1.
        self._free: list[int] = []
        self._appended = np.zeros(0, np.int64)  # position of the next sample of each series
        self._valid = np.zeros(0, np.int64)  # first position whose mark can be trusted
        self._marks = np.zeros((0, self.ring), np.int64)

    def rows(self, ids: IntArray) -> IntArray:
        """The row of each series id, adding rows (no usable marks yet) for new ones."""
        got = self._row
        if self._free:
            free = self._free
            for k in ids.tolist():
                if k not in got:
                    got[k] = free.pop() if free else len(got) + len(free)
        # One pass: a new id gets the next row (len(got) is read before it is inserted).
        rows = np.fromiter((got.setdefault(k, len(got)) for k in ids.tolist()), np.int64, len(ids))
        self._grow(len(got) + len(self._free))
        return rows

    def forget(self, ids: IntArray) -> None:
        """Drop the series ``ids`` (their stored rows are gone): an id that comes back is a new
        series, with no position and no marks; its row is reused by the next new id."""
        for k in ids.tolist():
            row = self._row.pop(k, None)
            if row is None:
                continue
            self._appended[row] = 0
            self._valid[row] = 0
            self._marks[row] = 0
            self._free.append(row)

    def _grow(self, n: int) -> None:
        cap = len(self._appended)
        if n <= cap:
            return
        new = max(n, 2 * cap, 64)
        self._appended = np.concatenate([self._appended, np.zeros(new - cap, np.int64)])
        self._valid = np.concatenate([self._valid, np.zeros(new - cap, np.int64)])
        self._marks = np.concatenate([self._marks, np.zeros((new - cap, self.ring), np.int64)])

    def appended(
        self,
        rows: IntArray,
        forward: npt.NDArray[np.bool_],
        first: IntArray,
        n_rows: IntArray,
        ts: IntArray,
    ) -> None:
        """Record an append: series ``rows[i]`` got ``n_rows[i]`` samples, ``ts[first[i]:…]`` in
        ts order; ``forward[i]`` says all were newer than what it had stored. A series appended
        otherwise (rows replaced or filled in before its newest) loses its marks."""
        start = self._appended[rows]
        end = start + n_rows
        self._appended[rows] = end
        self._valid[rows[~forward]] = end[~forward]
        n = len(ts)
        if n == 0:
            return
        row_of = np.repeat(rows, n_rows)
        pos = np.repeat(start - first, n_rows) + np.arange(n, dtype=np.int64)
        # Only the marks the ring still holds at the end (no slot written twice in one call).
        keep = (pos % self.step == 0) & np.repeat(forward, n_rows)
        keep &= pos >= np.repeat(end, n_rows) - self.ring * self.step
        self._marks[row_of[keep], (pos[keep] // self.step) % self.ring] = ts[keep]

    def reset(self, rows: IntArray) -> None:
        """Forget the marks of these series (their stored rows changed some other way)."""
        self._valid[rows] = self._appended[rows]

    def cuts(
        self, rows: IntArray, counts: IntArray
    ) -> tuple[npt.NDArray[np.bool_], IntArray, IntArray]:
        """For series ``rows`` holding ``counts`` stored samples, each to be trimmed to ``keep``:
        ``(known, cutoff, count after)``. Where ``known``, deleting the rows with ``ts < cutoff``
        leaves ``count after`` rows (``keep`` to ``keep + step - 1``); elsewhere the marks cannot
        say and the caller cuts exactly (``count after`` is then ``keep``)."""
        appended = self._appended[rows]
        oldest = appended - counts
        cut = (appended - self.keep) // self.step * self.step
        known = (cut >= self._valid[rows]) & (cut > oldest)
        known &= cut >= appended - self.ring * self.step
        cutoff = self._marks[rows, (cut // self.step) % self.ring]
        after = np.where(known, appended - cut, self.keep)
        return known, np.where(known, cutoff, 0), after
