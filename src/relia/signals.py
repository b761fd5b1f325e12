"""Columnar telemetry: metric batches, the series index, log batches and events.

Samples never live one object each: a :class:`MetricBatch` is three parallel arrays. Time is int64
milliseconds since the Unix epoch (UTC) everywhere inside relia; NaN marks a missing value and is
kept, never silently dropped.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from relia.errors import DataError

log = logging.getLogger(__name__)

__all__ = [
    "Event",
    "LogBatch",
    "MetricBatch",
    "SeriesIndex",
    "SeriesKey",
    "is_sorted_by_series",
    "series_key",
    "series_runs",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def is_sorted_by_series(series_id: IntArray, ts: IntArray) -> bool:
    """Whether rows are in (series_id, ts) order already: an O(n) check that lets the engine
    sort a tick's samples once and every later step skip its own sort."""
    if len(series_id) < 2:
        return True
    a, b = series_id[:-1], series_id[1:]
    return bool(np.all((a < b) | ((a == b) & (ts[:-1] <= ts[1:]))))


def series_runs(sorted_ids: IntArray) -> tuple[IntArray, IntArray, IntArray]:
    """For ids sorted (or at least grouped), ``(ids, first row, rows)`` of each run: what
    ``np.unique(..., return_index=True, return_counts=True)`` gives, without sorting again."""
    n = len(sorted_ids)
    if n == 0:
        empty = np.empty(0, np.int64)
        return empty, empty, empty
    starts = np.flatnonzero(np.concatenate(([True], sorted_ids[1:] != sorted_ids[:-1])))
    counts = np.diff(np.append(starts, n))
    return sorted_ids[starts], starts, counts


#: A series' identity: its metric name and its labels, sorted by label name.
SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


def series_key(name: str, labels: Mapping[str, str] | None = None) -> SeriesKey:
    """Build the canonical key of a series (labels sorted, ``__name__`` removed, and labels with
    an empty value left out: in Prometheus' data model they are the same as no label)."""
    items = tuple(
        sorted(
            (str(k), str(v)) for k, v in (labels or {}).items() if k != "__name__" and str(v) != ""
        )
    )
    return (name, items)


def _stable_id(key: SeriesKey) -> int:
    # A stable 63-bit id from the key, so the same series gets the same id in every process and
    # every restart without a central counter (shards route by it, the store keys by it).
    digest = hashlib.blake2b(json.dumps(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") & 0x7FFF_FFFF_FFFF_FFFF


class SeriesIndex:
    """Maps ``series_id`` to a metric name and a frozen label set, and back.

    Ids are derived from the key (a hash), so two indexes built apart agree on every id.
    Thread-safe: sources on several threads may register series at once.

    A series stays registered until :meth:`forget` drops it (the engine forgets series that sent
    nothing for ``forget_after``), so ``max_series`` caps how many :meth:`get_or_add` registers:
    past it a *new* series is refused (``None``) while every known one keeps its id. :meth:`add`
    (series the store already holds) is never refused, so a restart with a lower cap keeps what
    was accepted and refuses only what is new. Refusals are counted per source (:meth:`refused`)
    and logged: one WARNING at the first, then at most one every ``warn_every_s`` while they go
    on.

    A forgotten series keeps a tombstone until the next :meth:`forget`: :meth:`key` still names
    it, so a sample a source resolved to its id just before it was forgotten can still be stored
    under its name (the engine then registers it again with :meth:`add`).
    """

    def __init__(
        self,
        max_series: int | None = None,
        *,
        warn_every_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_series is not None and max_series < 1:
            raise ValueError(f"max_series must be a positive integer, got {max_series}")
        self._by_id: dict[int, SeriesKey] = {}
        self._by_key: dict[SeriesKey, int] = {}
        # Series dropped by the latest forget(): still named by key() (see the class docstring).
        self._forgotten: dict[int, SeriesKey] = {}
        self._lock = threading.Lock()
        #: The most series :meth:`get_or_add` registers (None: no limit).
        self.max_series = max_series
        self.warn_every_s = warn_every_s
        self._clock = clock
        self._refused: dict[str, int] = {}
        self._refused_unlogged = 0
        self._warned_at: float | None = None

    def get_or_add(
        self,
        name: str,
        labels: Mapping[str, str] | None = None,
        *,
        source: str = "",
        capped: bool = True,
    ) -> int | None:
        """Return the id of the series, registering it if new; ``None`` when it is new and the
        index already holds ``max_series`` series (the caller drops its samples and goes on).
        ``capped=False`` registers it anyway (samples accepted before, replayed).

        ``source`` names the caller in the refusal count and log. A series already known is a
        dict look-up, before any lock; only a new one takes the lock."""
        key = series_key(name, labels)
        found = self._by_key.get(key)
        if found is not None:
            return found
        with self._lock:
            found = self._by_key.get(key)
            if found is not None:  # another thread registered it meanwhile
                return found
            if not capped or self.max_series is None or len(self._by_id) < self.max_series:
                sid = _stable_id(key)
                other = self._by_id.get(sid)
                if other is not None and other != key:  # pragma: no cover - 2**-63 per pair
                    raise DataError(f"series id collision between {other} and {key}")
                self._by_id[sid] = key
                self._by_key[key] = sid
                self._forgotten.pop(sid, None)
                return sid
        self.note_refused(source)
        return None

    def note_refused(self, source: str = "", n: int = 1) -> None:
        """Count ``n`` new series refused for ``source`` (over ``max_series``), as
        :meth:`get_or_add` does: for a caller that remembers what was refused and refuses it again
        without asking (remote-write), so a series named again is still counted again. Logs one
        WARNING at the first refusal, then at most one per ``warn_every_s``."""
        if n <= 0:
            return
        with self._lock:
            self._refused[source] = self._refused.get(source, 0) + n
            self._refused_unlogged += n
            now = self._clock()
            if self._warned_at is not None and now - self._warned_at < self.warn_every_s:
                return
            self._warned_at = now
            count, self._refused_unlogged = self._refused_unlogged, 0
            held = len(self._by_id)
        log.warning(
            "series limit reached: %d series held, max_series is %d; %d new series refused "
            "since the last such warning (this one from source %r), their samples dropped. "
            "Raise max_series in relia.yaml (RELIA_MAX_SERIES) if the growth is expected; "
            "else look for a label that takes a new value every time (a request id, a "
            "timestamp)",
            held,
            self.max_series,
            count,
            source,
        )

    def refused(self) -> dict[str, int]:
        """New series refused so far (over ``max_series``), by the source that named them."""
        with self._lock:
            return dict(self._refused)

    def add(self, series_id: int, name: str, labels: Mapping[str, str] | None = None) -> None:
        """Register a series under a known id (used when loading from a store)."""
        key = series_key(name, labels)
        with self._lock:
            self._by_id[int(series_id)] = key
            self._by_key[key] = int(series_id)
            self._forgotten.pop(int(series_id), None)

    def forget(self, series_ids: Iterable[int]) -> int:
        """Drop these series (ids not registered are ignored); returns how many were dropped.

        They no longer count against ``max_series``, and one named again registers anew under
        the same id (ids are hashes of the key). Each keeps a tombstone until the next call, so
        :meth:`key` still names it meanwhile."""
        with self._lock:
            gone: dict[int, SeriesKey] = {}
            for sid in series_ids:
                key = self._by_id.pop(int(sid), None)
                if key is not None:
                    del self._by_key[key]
                    gone[int(sid)] = key
            self._forgotten = gone
        return len(gone)

    def key(self, series_id: int) -> SeriesKey:
        """The key of a registered series, or of one dropped by the latest :meth:`forget`;
        :class:`DataError` if unknown."""
        sid = int(series_id)
        found = self._by_id.get(sid)
        if found is None:
            found = self._forgotten.get(sid)
            if found is None:
                raise DataError(f"unknown series id {series_id}")
        return found

    def name(self, series_id: int) -> str:
        return self.key(series_id)[0]

    def labels(self, series_id: int) -> dict[str, str]:
        return dict(self.key(series_id)[1])

    def find(self, name: str, labels: Mapping[str, str] | None = None) -> int | None:
        return self._by_key.get(series_key(name, labels))

    def __contains__(self, series_id: object) -> bool:
        return series_id in self._by_id

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[int]:
        return iter(list(self._by_id))

    def items(self) -> list[tuple[int, SeriesKey]]:
        return list(self._by_id.items())


#: Names Prometheus writes as they are; any other name is written quoted (Prometheus 3).
_LEGACY_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LEGACY_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


def describe(key: SeriesKey, *, quote_name: bool = True) -> str:
    """PromQL-style text of a series key: ``name{a="1",b="2"}``.

    As Prometheus 3 writes UTF-8 names: a metric name that is not a legacy one
    (``[a-zA-Z_:][a-zA-Z0-9_:]*``) goes quoted inside the braces, ``{"my metric",a="1"}``, and so
    does a label name that is not ``[a-zA-Z_][a-zA-Z0-9_]*``: ``{"label-name"="x"}``. So two
    different keys never share a text (a metric named ``m{a="1"}`` is not the series ``m`` with
    ``a="1"``), while legacy names read as they always did. ``quote_name=False`` leaves the name
    as it is (relia's own finding keys, such as ``log-session{...}``, kept as documented).
    """
    name, labels = key
    items = [f'{_label_name(k)}="{_escape(v)}"' for k, v in labels]
    if quote_name and not _LEGACY_METRIC_NAME.fullmatch(name):
        return "{" + ",".join([f'"{_escape(name)}"', *items]) + "}"
    if not items:
        return name
    return f"{name}{{{','.join(items)}}}"


def _label_name(name: str) -> str:
    return name if _LEGACY_LABEL_NAME.fullmatch(name) else f'"{_escape(name)}"'


def _escape(value: str) -> str:
    # As Prometheus writes label values: a value holding '",' must not read as two labels.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@dataclass(frozen=True)
class MetricBatch:
    """Samples of one or more series as three parallel arrays.

    ``series_id`` int64, ``ts`` int64 milliseconds UTC, ``value`` float64 (NaN = missing).
    """

    series_id: IntArray
    ts: IntArray
    value: FloatArray

    def __post_init__(self) -> None:
        sid = np.ascontiguousarray(self.series_id, dtype=np.int64)
        ts = np.ascontiguousarray(self.ts, dtype=np.int64)
        value = np.ascontiguousarray(self.value, dtype=np.float64)
        if not (sid.ndim == ts.ndim == value.ndim == 1):
            raise DataError("MetricBatch arrays must be one-dimensional")
        if not (len(sid) == len(ts) == len(value)):
            raise DataError(
                f"MetricBatch arrays differ in length: series_id={len(sid)}, ts={len(ts)}, "
                f"value={len(value)}"
            )
        object.__setattr__(self, "series_id", sid)
        object.__setattr__(self, "ts", ts)
        object.__setattr__(self, "value", value)

    @classmethod
    def empty(cls) -> MetricBatch:
        return cls(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))

    @classmethod
    def for_series(cls, series_id: int, ts: npt.ArrayLike, value: npt.ArrayLike) -> MetricBatch:
        ts_arr = np.asarray(ts, dtype=np.int64)
        return cls(np.full(len(ts_arr), series_id, np.int64), ts_arr, np.asarray(value, np.float64))

    @classmethod
    def concat(cls, batches: list[MetricBatch]) -> MetricBatch:
        if not batches:
            return cls.empty()
        return cls(
            np.concatenate([b.series_id for b in batches]),
            np.concatenate([b.ts for b in batches]),
            np.concatenate([b.value for b in batches]),
        )

    def __len__(self) -> int:
        return len(self.ts)

    def sorted(self) -> MetricBatch:
        """Stable sort by (series_id, ts); the batch itself when it is in that order already."""
        if is_sorted_by_series(self.series_id, self.ts):
            return self
        order = np.lexsort((self.ts, self.series_id))
        return MetricBatch(self.series_id[order], self.ts[order], self.value[order])

    def split(self) -> Iterator[tuple[int, IntArray, FloatArray]]:
        """Yield ``(series_id, ts, value)`` per series, each sorted by time (stable)."""
        if len(self) == 0:
            return
        b = self.sorted()
        cuts = np.flatnonzero(np.diff(b.series_id)) + 1
        starts = np.concatenate(([0], cuts))
        ends = np.concatenate((cuts, [len(b)]))
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            yield int(b.series_id[s]), b.ts[s:e], b.value[s:e]


@dataclass(frozen=True)
class LogBatch:
    """Log lines as parallel columns: ``ts`` (ms UTC), ``source``, ``message``, ``level``."""

    ts: IntArray
    source: list[str]
    message: list[str]
    level: list[str] | None = None
    attrs: list[dict[str, str]] | None = None

    def __post_init__(self) -> None:
        ts = np.ascontiguousarray(self.ts, dtype=np.int64)
        object.__setattr__(self, "ts", ts)
        n = len(ts)
        for name in ("source", "message", "level", "attrs"):
            col = getattr(self, name)
            if col is not None and len(col) != n:
                raise DataError(f"LogBatch column {name!r} has {len(col)} rows, expected {n}")

    def __len__(self) -> int:
        return len(self.ts)


@dataclass(frozen=True)
class Event:
    """A discrete happening (deploy, restart, fault injected, node drained)."""

    ts: int
    kind: str
    labels: dict[str, str] = field(default_factory=dict)
    message: str = ""
