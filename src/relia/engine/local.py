"""The in-process executor: detector state of every series in shards inside this process.

:class:`DetectorShard` is the unit a remote executor would put in an actor: its methods take and
return arrays, ints and bytes only. :class:`LocalExecutor` routes a batch to its shards by
``series_id % n_shards`` and concatenates what they return.

A shard of ``default`` (``adaptive``) keeps its series as rows of a
:class:`~relia.detect.batched.DetectorTable` and scores a batch in one compiled loop over its
points (the detector's own kernel, so the same numbers); other detectors keep one object per
series and score each series' points with one vectorized ``score_detail`` call.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from typing import Any

import numpy as np

from relia.detect import create
from relia.detect.base import CheckpointConfigError, Detector
from relia.detect.batched import DetectorTable, table_for
from relia.detect.checkpoint import pack, unpack
from relia.engine.executor import FloatArray, IntArray, ScoredPoints, shard_of
from relia.errors import DetectorError, ReliaError
from relia.signals import MetricBatch

__all__ = ["DetectorShard", "LocalExecutor"]

log = logging.getLogger(__name__)

#: Checkpoints refused by a restore: reason -> (how many series, the first one's id).
Refused = dict[str, tuple[int, int]]


def merge_refused(into: Refused, more: Refused) -> None:
    """Add the refusals ``more`` to ``into`` (counts summed, the first example kept)."""
    for reason, (count, example) in more.items():
        had, first = into.get(reason, (0, example))
        into[reason] = (had + count, first)


def log_refused(refused: Refused) -> None:
    """One warning per reason a restore refused checkpoints for (a config change refuses every
    series' checkpoint: one line, not a million)."""
    for reason, (count, example) in refused.items():
        series = "series starts" if count == 1 else "series start"
        log.warning(
            "%d %s afresh, their checkpoint refused: %s (e.g. series %d)",
            count,
            series,
            reason,
            example,
        )


def _last_of_repeats(b: MetricBatch) -> MetricBatch:
    """``b`` (sorted by series and time, stably) without a point whose (series, ts) the next
    point repeats: the last value of a repeated sample is the one kept, as the store keeps it.
    A model must not learn one sample twice, whether the repeat comes in this batch or the next
    (a remote-write request sent again, two sources of one series id)."""
    if len(b) < 2:
        return b
    keep = np.ones(len(b), bool)
    keep[:-1] = (b.series_id[1:] != b.series_id[:-1]) | (b.ts[1:] != b.ts[:-1])
    if keep.all():
        return b
    return MetricBatch(b.series_id[keep], b.ts[keep], b.value[keep])


class DetectorShard:
    """The detector state of the series one shard owns, created on first sight of a series.

    Detectors with a :class:`~relia.detect.batched.DetectorTable` (``adaptive``, so ``default``)
    keep every series as a row of one table and score a whole batch in one compiled loop; others
    keep one detector object per series. Both give the same scores, checkpoints and drops.
    """

    def __init__(self, detector_name: str, params: dict[str, Any] | None = None) -> None:
        self.detector_name = detector_name
        self.params = dict(params or {})
        # Build one detector up front: a bad name or parameter fails here, at start-up, not on
        # the first sample; it also tells us the component names.
        self._proto = create(detector_name, **self.params)
        self.components: tuple[str, ...] = tuple(self._proto.components)
        self._table: DetectorTable | None = table_for(self._proto)
        self._detectors: dict[int, Detector] = {}
        self._last_ts: dict[int, int] = {}
        self._changed: set[int] = set()
        #: The series whose checkpoint the last :meth:`restore_report` refused.
        self.refused_ids: list[int] = []

    @property
    def batched(self) -> bool:
        """Whether this shard streams through a detector table (else one object per series)."""
        return self._table is not None

    def _detector(self, series_id: int) -> Detector:
        det = self._detectors.get(series_id)
        if det is None:
            det = create(self.detector_name, **self.params)
            self._detectors[series_id] = det
        return det

    def process(self, series_id: IntArray, ts: IntArray, value: FloatArray) -> ScoredPoints:
        """Score the points of this shard's series; returns them grouped by series, time-sorted.

        Points not newer than a series' last scored point are dropped (a source repeating a
        sample must not teach the model the same point twice), and so is a point whose series
        and time come again later in the batch (the last value is kept); both count in
        ``dropped``.
        """
        if self._table is not None:
            return self._process_table(self._table, MetricBatch(series_id, ts, value))
        batch = _last_of_repeats(MetricBatch(series_id, ts, value).sorted())
        parts: list[ScoredPoints] = []
        dropped = len(series_id) - len(batch)
        for sid, s_ts, s_val in batch.split():
            last = self._last_ts.get(sid)
            if last is not None:
                keep = s_ts > last
                n_keep = int(np.count_nonzero(keep))
                if n_keep < len(s_ts):
                    dropped += len(s_ts) - n_keep
                    # Sorted by time, so the kept points are a suffix.
                    s_ts, s_val = s_ts[len(s_ts) - n_keep :], s_val[len(s_val) - n_keep :]
                if n_keep == 0:
                    continue
            det = self._detector(sid)
            d = det.score_detail(s_val, s_ts)
            self._last_ts[sid] = int(s_ts[-1])
            self._changed.add(sid)
            parts.append(
                ScoredPoints(
                    np.full(len(s_ts), sid, np.int64),
                    s_ts,
                    s_val,
                    d.score,
                    d.expected,
                    d.lower,
                    d.upper,
                    d.component,
                )
            )
        out = ScoredPoints.concat(parts) if parts else ScoredPoints.empty()
        return ScoredPoints(
            out.series_id,
            out.ts,
            out.value,
            out.score,
            out.expected,
            out.lower,
            out.upper,
            out.component,
            dropped,
        )

    def _process_table(self, table: DetectorTable, batch: MetricBatch) -> ScoredPoints:
        # The per-series path, vectorized: sort by (series, time) as split() does, drop what is
        # not newer than each series' newest point before this batch, score the rest in one call.
        if len(batch) == 0:
            return ScoredPoints.empty()
        b = _last_of_repeats(batch.sorted())
        repeats = len(batch) - len(b)
        rows = table.rows(b.series_id)
        keep = b.ts > table.last_ts(rows)
        dropped = repeats + len(b) - int(np.count_nonzero(keep))
        if dropped > repeats:
            b = MetricBatch(b.series_id[keep], b.ts[keep], b.value[keep])
            rows = rows[keep]
        d = table.update_rows(rows, b.ts, b.value)
        return ScoredPoints(
            b.series_id, b.ts, b.value, d.score, d.expected, d.lower, d.upper, d.component, dropped
        )

    def checkpoints(self, changed_only: bool = False) -> dict[int, bytes]:
        """Packed checkpoints by series id (``changed_only``: those that learned a point since
        the last call with it set); the same bytes with or without a table."""
        if self._table is not None:
            t = self._table
            ids = t.changed_ids()  # clears the flags, also for a full checkpoint (as below)
            if not changed_only:
                ids = t.series_ids
            return t.checkpoints(ids)
        ids = list(self._changed) if changed_only else list(self._detectors)
        out = {sid: pack(self._detectors[sid].state_dict()) for sid in ids}
        self._changed.clear()
        return out

    def restore(self, checkpoints: dict[int, bytes]) -> int:
        """Load checkpoints; one that does not fit the configured detector is skipped, so
        changing the detector in the config starts those series afresh instead of failing (one
        warning per reason, :func:`log_refused`)."""
        restored, refused = self.restore_report(checkpoints)
        log_refused(refused)
        return restored

    def restore_report(self, checkpoints: dict[int, bytes]) -> tuple[int, Refused]:
        """:meth:`restore` without the logging: how many were restored, and the refused ones
        by reason (how many, and the first series id), for the caller to log once."""
        restored = 0
        refused: Refused = {}
        self.refused_ids = []

        def refuse(sid: int, exc: ReliaError) -> None:
            reason = str(exc)
            if isinstance(exc, CheckpointConfigError) and exc.keys:
                # Not the user's change when relia.yaml sets none of them: an upgrade of relia
                # changed their defaults.
                if not set(exc.keys) & set(self.params):
                    reason += "; relia.yaml sets none of these: their default changed"
            count, example = refused.get(reason, (0, int(sid)))
            refused[reason] = (count + 1, example)
            self.refused_ids.append(int(sid))

        for sid, blob in checkpoints.items():
            if self._table is not None:
                try:
                    self._table.restore(int(sid), blob)
                except ReliaError as exc:
                    refuse(sid, exc)
                    continue
                restored += 1
                continue
            det = create(self.detector_name, **self.params)
            try:
                state = unpack(blob)
                det.load_state_dict(state)
            except ReliaError as exc:
                refuse(sid, exc)
                continue
            self._detectors[int(sid)] = det
            last = state.get("last_ts")
            if last is not None:
                self._last_ts[int(sid)] = int(last)
            else:
                self._last_ts.pop(int(sid), None)
            restored += 1
        return restored, refused

    def forget(self, series_ids: Collection[int]) -> int:
        """Drop the state of these series (ids it does not hold are ignored); returns how many
        it held. A forgotten series that sends again starts afresh, as a never-seen one."""
        if self._table is not None:
            if not series_ids:
                return 0
            return self._table.forget(np.fromiter(series_ids, np.int64, len(series_ids)))
        forgotten = 0
        for sid in series_ids:
            s = int(sid)
            if self._detectors.pop(s, None) is not None:
                forgotten += 1
            self._last_ts.pop(s, None)
            self._changed.discard(s)
        return forgotten

    def n_series(self) -> int:
        return len(self._table) if self._table is not None else len(self._detectors)


class LocalExecutor:
    """Runs the streaming detectors in this process, in ``n_shards`` shards.

    ``detector_name`` and ``params`` go to :func:`relia.detect.create` once per series.
    """

    def __init__(
        self, detector_name: str, params: dict[str, Any] | None = None, n_shards: int = 1
    ) -> None:
        if n_shards < 1:
            raise DetectorError(f"n_shards must be >= 1, got {n_shards}")
        self.detector_name = detector_name
        self.n_shards = n_shards
        self._shards = [DetectorShard(detector_name, params) for _ in range(n_shards)]
        self._refused: set[int] = set()

    @property
    def components(self) -> tuple[str, ...]:
        return self._shards[0].components

    def process(self, batch: MetricBatch) -> ScoredPoints:
        """Score a batch: each shard scores its points in one call (a detector table) or one call
        per series (detector objects)."""
        if len(batch) == 0:
            return ScoredPoints.empty()
        if self.n_shards == 1:
            return self._shards[0].process(batch.series_id, batch.ts, batch.value)
        shard = shard_of(batch.series_id, self.n_shards)
        parts = []
        for k in np.unique(shard).tolist():
            m = shard == k
            parts.append(self._shards[k].process(batch.series_id[m], batch.ts[m], batch.value[m]))
        return ScoredPoints.concat(parts)

    def checkpoints(self, changed_only: bool = False) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        for s in self._shards:
            out.update(s.checkpoints(changed_only))
        return out

    def restore(self, checkpoints: dict[int, bytes]) -> int:
        self._refused = set()
        if not checkpoints:
            return 0
        ids = np.fromiter(checkpoints, dtype=np.int64, count=len(checkpoints))
        shard = shard_of(ids, self.n_shards)
        restored = 0
        refused: Refused = {}
        for k in range(self.n_shards):
            mine = ids[shard == k].tolist()
            if mine:
                n, why = self._shards[k].restore_report({sid: checkpoints[sid] for sid in mine})
                restored += n
                merge_refused(refused, why)
                self._refused.update(self._shards[k].refused_ids)
        log_refused(refused)
        return restored

    def refused_ids(self) -> set[int]:
        """The series whose checkpoint the last :meth:`restore` refused (they start afresh:
        :meth:`Engine.start <relia.engine.loop.Engine.start>` relearns them from the store)."""
        return set(self._refused)

    def forget(self, series_ids: Collection[int]) -> int:
        """Each shard drops the state of its series among these; returns how many were held."""
        if not series_ids:
            return 0
        ids = np.fromiter(series_ids, dtype=np.int64, count=len(series_ids))
        if self.n_shards == 1:
            return self._shards[0].forget(ids.tolist())
        shard = shard_of(ids, self.n_shards)
        forgotten = 0
        for k in range(self.n_shards):
            mine = ids[shard == k].tolist()
            if mine:
                forgotten += self._shards[k].forget(mine)
        return forgotten

    def n_series(self) -> int:
        return sum(s.n_series() for s in self._shards)

    def close(self) -> None:
        """Nothing to release in-process."""
