"""The state store protocol: what the engine, API and CLI need from persistent state.

Two implementations share it: DuckDB in a local file (default, ``./relia-data/``) and, later,
PostgreSQL for several replicas. Schema changes are versioned migrations.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from relia.incidents.model import Finding, Incident, IncidentStatus
from relia.notify.outbox import OutboxItem
from relia.signals import MetricBatch

__all__ = [
    "FindingKey",
    "IncidentKey",
    "LogCounts",
    "SampleScores",
    "ScoredSamples",
    "SeriesInfo",
    "Store",
    "store_location",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Where a finding stands in :meth:`Store.findings`' order: (end, start, id).
FindingKey = tuple[int, int, str]
#: Where an incident stands in :meth:`Store.incidents`' order: (updated_at, id).
IncidentKey = tuple[int, str]


@dataclass(frozen=True)
class SeriesInfo:
    """A series known to the store. ``seen_at`` (ms UTC, wall clock of the writer) is when a
    replica last received it (:meth:`Store.upsert_series`, :meth:`Store.mark_series_seen`); None
    where the store's schema predates it (migration 0010)."""

    series_id: int
    name: str
    labels: dict[str, str] = field(default_factory=dict)
    first_ts: int | None = None
    last_ts: int | None = None
    n_samples: int = 0
    seen_at: int | None = None


class SampleScores(Protocol):
    """What a detector said about samples, as parallel arrays: ``score``, and ``expected``,
    ``lower`` and ``upper`` (NaN while warming up). The engine's ``ScoredPoints`` is one."""

    @property
    def series_id(self) -> IntArray: ...

    @property
    def ts(self) -> IntArray: ...

    @property
    def score(self) -> FloatArray: ...

    @property
    def expected(self) -> FloatArray: ...

    @property
    def lower(self) -> FloatArray: ...

    @property
    def upper(self) -> FloatArray: ...


@dataclass(frozen=True)
class ScoredSamples:
    """Stored samples of one series in time order, with what the detector said about each.

    ``score``, ``expected``, ``lower`` and ``upper`` are NaN where there is none (the detector was
    warming up, the sample was stored without scores, or the store's schema predates them).
    """

    ts: IntArray
    value: FloatArray
    score: FloatArray
    expected: FloatArray
    lower: FloatArray
    upper: FloatArray

    def __len__(self) -> int:
        return len(self.ts)


@dataclass(frozen=True)
class LogCounts:
    """Lines per log template per window, as parallel columns: the log file's configured name,
    the window's start (ms UTC), the template id and the number of lines."""

    file: list[str]
    window_start: IntArray
    template_id: IntArray
    count: IntArray

    def __len__(self) -> int:
        return len(self.file)

    @classmethod
    def empty(cls) -> LogCounts:
        """No counts."""
        e = np.empty(0, np.int64)
        return cls([], e, e.copy(), e.copy())


@runtime_checkable
class Store(Protocol):
    """Persistent state of relia. All times are int64 ms UTC."""

    @property
    def schema_version(self) -> int:
        """The migration the schema is at."""
        ...

    def upsert_series(
        self, series: list[tuple[int, str, dict[str, str]]], seen_at: int | None = None
    ) -> None:
        """Register series (id, metric name, labels); a known id keeps its name and labels.
        Every series named is seen at ``seen_at`` (ms UTC; default: the wall clock now): a new
        one gets it, a known one's ``seen_at`` is raised to it (never lowered)."""
        ...

    def mark_series_seen(self, seen: Mapping[int, int]) -> None:
        """Raise the ``seen_at`` of each series id to the given ms UTC (never lower it), in one
        transaction; ids the store does not know are ignored. Set-based: fit for a million ids
        in one call."""
        ...

    def forget_series(self, before: int) -> int:
        """Delete, in one transaction, every series whose ``seen_at`` is before ``before`` (ms
        UTC), with its samples and its detector checkpoint (findings, incidents and log tables
        stay). Returns how many series went. An id registered again later starts afresh."""
        ...

    def list_series(self) -> list[SeriesInfo]:
        """Every known series with its sample range and count, ordered by name then labels."""
        ...

    def series_info(self, series_id: int) -> SeriesInfo | None:
        """One series as :meth:`list_series` describes it, or None if the store does not know
        it: read by its id, at the cost of that series' samples alone."""
        ...

    def append_samples(self, batch: MetricBatch, scores: SampleScores | None = None) -> None:
        """Add samples; keeps the newest ``samples_per_series`` per series (the DuckDB store
        lets a series grow up to an eighth past that before trimming it back, so the costly trim
        runs once per many appends; PostgreSQL keeps exactly that many).

        A sample with the same (series, ts) as a stored one replaces it. ``scores`` (matched to
        the samples by series and ts; samples it lacks get none) stores the detector's score,
        expected value and band beside each sample; a replaced sample that ``scores`` lacks keeps
        the ones it had.
        """
        ...

    def samples(
        self,
        series_id: int,
        since: int | None = None,
        until: int | None = None,
        limit: int | None = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """(ts, value) of one series in time order, ``since <= ts <= until``; ``limit`` keeps
        the newest."""
        ...

    def scored_samples(
        self,
        series_id: int,
        since: int | None = None,
        until: int | None = None,
        limit: int | None = None,
    ) -> ScoredSamples:
        """Like :meth:`samples`, with each sample's score, expected value and band."""
        ...

    def learned_samples(self, since: Mapping[int, int]) -> MetricBatch:
        """The samples a detector learned (stored with a score) of each series in ``since``, at
        or after its time there (ms UTC), sorted by series then time: what a restart relearns
        after a crash. One read for them all, however many series."""
        ...

    def save_checkpoints(self, checkpoints: dict[int, bytes]) -> None:
        """Store detector checkpoints by series id (replacing older ones), in one transaction."""
        ...

    def load_checkpoints(self) -> dict[int, bytes]:
        """Every stored detector checkpoint by series id."""
        ...

    def add_findings(self, findings: list[Finding]) -> int:
        """Persist findings; one with a known id replaces it (a window grew). Returns how many
        were new."""
        ...

    def findings(
        self,
        since: int | None = None,
        series_id: int | None = None,
        limit: int = 1000,
        *,
        until: int | None = None,
        before: FindingKey | None = None,
    ) -> list[Finding]:
        """Findings whose end is at or after ``since`` and whose start is at or before
        ``until``, newest (by end, then start, then id ascending) first. ``before`` pages on:
        only those after the finding with that key in this order (the last of the page before),
        so a page is neither cut nor repeated by findings stored meanwhile."""
        ...

    def findings_by_ids(self, ids: Collection[str]) -> list[Finding]:
        """The stored findings among ``ids`` (unknown ids are left out), newest (by end, then
        start) first: an incident's findings whatever their age."""
        ...

    def findings_without_incident(self, since: int, limit: int = 1000) -> list[Finding]:
        """Findings whose end is at or after ``since`` that no stored incident lists in its
        ``finding_ids``, newest (by end, then start) first: what a restart correlates again (the
        same set :meth:`prune_history` deletes once it is old enough)."""
        ...

    def findings_after(self, seq: int, limit: int = 1000) -> list[tuple[int, Finding]]:
        """(store order number, finding) of the findings stored, new or replaced, after number
        ``seq`` (by any writer: every replica's), in store order, at most ``limit``. A write
        takes larger numbers than every write committed before it, so a reader that pages on
        from the last number it read sees each write once, whatever the findings' times."""
        ...

    def findings_seq(self) -> int:
        """The store order number of the last finding stored (0: none yet)."""
        ...

    def commit_log_progress(self, states: dict[str, bytes], counts: LogCounts) -> None:
        """In one transaction: add ``counts`` to the stored ones (same file, window and template:
        the counts add up) and replace the state blob of each file in ``states``. Keeps the
        newest ``samples_per_series`` windows per file."""
        ...

    def load_log_states(self) -> dict[str, bytes]:
        """Every stored log file state blob by file name."""
        ...

    def log_counts(self, file: str | None = None, since: int | None = None) -> LogCounts:
        """Stored counts (of one file; of windows starting at or after ``since``), ordered by
        file, window and template."""
        ...

    def close(self) -> None: ...

    # -- incidents --

    def save_incidents(self, incidents: list[Incident]) -> None:
        """Store incidents, replacing those with a known id, in one transaction."""
        ...

    def incidents(
        self,
        since: int | None = None,
        status: IncidentStatus | None = None,
        limit: int = 1000,
        *,
        before: IncidentKey | None = None,
    ) -> list[Incident]:
        """Incidents updated at or after ``since`` (with ``status``), newest ``updated_at``
        first, then by id. ``before`` pages on: only those after the incident with that key in
        this order (the last of the page before)."""
        ...

    def incident(self, incident_id: str) -> Incident | None:
        """One incident by id, or None."""
        ...

    def incident_listing(self, finding_id: str) -> Incident | None:
        """The incident whose ``finding_ids`` lists ``finding_id``, or None (a finding is listed
        by one incident at most; should several list it, the most recently updated, then by
        id). What the correlator recalls for a finding of an incident it forgot."""
        ...

    # -- notification outbox --

    def enqueue_notifications(self, items: list[OutboxItem]) -> int:
        """Insert outbox items in one transaction, ignoring any whose id (the dedup key) is
        already stored; returns how many were new."""
        ...

    def due_notifications(self, sink: str, now: int, limit: int) -> list[OutboxItem]:
        """Pending items of ``sink`` with ``next_attempt_at <= now``, oldest (created, version)
        first, at most ``limit``. An item waits while an older version of the same incident to
        the same sink is still pending, so delivering what this returns keeps each incident's
        order."""
        ...

    def mark_delivered(self, ids: list[str], now: int) -> None:
        """Mark pending items delivered at ``now`` (counting the attempt), in one transaction."""
        ...

    def mark_attempt_failed(
        self,
        item_id: str,
        attempts: int,
        next_attempt_at: int,
        error: str,
        *,
        give_up: bool = False,
    ) -> None:
        """Record a failed attempt: the new attempt count, when to retry and the error; with
        ``give_up`` the item becomes failed and is never retried."""
        ...

    def outbox_counts(self) -> dict[str, dict[str, int]]:
        """Per sink, how many items are pending, delivered and failed (all three keys)."""
        ...

    def notified_incidents(
        self, sinks: Collection[str], incident_ids: Collection[str]
    ) -> set[tuple[str, str]]:
        """The (sink, incident id) pairs, among ``sinks`` and ``incident_ids``, with at least one
        outbox item (any status): the sinks that heard about an incident
        (:mod:`relia.notify.routing`)."""
        ...

    # -- history retention --

    def prune_history(self, before: int) -> dict[str, int]:
        """Delete finished history older than ``before`` (ms UTC), in one transaction: resolved
        incidents whose ``resolved_at`` is before it (never open ones); outbox items delivered or
        given up before it (never pending ones, nor the item of a remaining incident's current
        version, which a restart enqueues again, nor each sink's newest item of a remaining
        incident, which shows the sink heard about it); then findings whose end is before it that no
        remaining incident lists. Returns how many rows went, by kind: ``outbox``,
        ``incidents`` and ``findings`` (all three keys)."""
        ...


def store_location(store: object) -> str | None:
    """What an error names a store by: the DuckDB file, or the PostgreSQL URL without its
    password (``None`` for a store that has neither, a test double)."""
    for attr in ("path", "dsn"):
        value = getattr(store, attr, None)
        if isinstance(value, str) and value:
            return value
    return None
