"""The engine: every interval, poll the sources, store the samples, score them, keep findings.

Everything the loop touches is injected (store, sources, executor, clock, metrics registry), so a
test drives :meth:`Engine.tick` by hand without sleeping. :meth:`Engine.run` is the timed loop
``relia up`` uses.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from relia._failurelog import FailureLog
from relia.config import human_duration
from relia.engine.executor import Executor, ScoredPoints
from relia.engine.findings import FindingTracker
from relia.engine.gc_pacing import GcPacing
from relia.errors import DataError
from relia.signals import MetricBatch, SeriesIndex, describe, series_runs
from relia.sources.base import MetricSource, PartialPollError
from relia.store._nul import nul_in_series
from relia.store.base import SeriesInfo, Store
from relia.timeparse import format_ms, wall_clock_ms

if TYPE_CHECKING:
    from relia.engine.incidents import IncidentPipeline, IncidentThread
    from relia.incidents.model import Finding
    from relia.logs.engine import LogPipeline
    from relia.slo.evaluate import SloEvaluator, SloFindings, SloStatus

__all__ = [
    "Engine",
    "EngineMetrics",
    "SloTickResult",
    "TickResult",
    "recovery_from_store",
    "wall_clock_ms",
]

#: A shard's stored checkpoints and the samples its series learned after them.
RecoveryData = tuple[dict[int, bytes], MetricBatch]

log = logging.getLogger(__name__)


def _poll_one(src: MetricSource, now: int) -> tuple[MetricBatch | None, Exception | None]:
    try:
        return src.poll(now), None
    except Exception as exc:  # noqa: BLE001 - one broken source must not stop the rest
        return None, exc


def _raw_counters(sources: Sequence[MetricSource]) -> npt.NDArray[np.int64]:
    """Ids of the raw counters whose rate a source also emits: stored, never scored."""
    raw: list[int] = []
    for src in sources:
        counters = getattr(src, "counters", None)
        if isinstance(counters, dict) and counters:
            raw.extend(counters)
    return np.fromiter(raw, np.int64, len(raw))


#: Series whose samples to relearn are read in one query (see recovery_from_store).
_RELEARN_CHUNK = 50_000
_INT64_MIN = -(2**63)


def recovery_from_store(
    store: Store,
    sources: Sequence[MetricSource] = (),
    *,
    forget_after_s: float | None = None,
    clock: Callable[[], int] | None = None,
    held: Callable[[], Collection[int] | None] | None = None,
    listed: Sequence[SeriesInfo] | None = None,
) -> Callable[[Callable[[npt.NDArray[np.int64]], npt.NDArray[np.bool_]]], RecoveryData]:
    """What a remote executor needs to rebuild a lost shard exactly (its ``recover``).

    Given a shard-membership predicate over series ids, returns the shard's stored checkpoints
    and, as one batch, the samples its series learned after them: newer than each checkpoint's
    last point (all stored samples of a series without one) and stored *with a score*. The
    engine stores the samples of a batch right after scoring them, with the scores, so scored
    samples are exactly those the detector learned (every detector scores each point it learns,
    NaN values too, with a finite score); a sample that was dropped (not newer than the series'
    last point) or stored without scores (scoring failed) has none and is not replayed. Raw
    counters (``sources``' ``counters``) are never scored, so never replayed.

    The engine scores a batch before storing it: the batch being scored when an actor died is
    not in the store; the executor runs it again after the replay. Limits: replay reaches back
    at most ``samples_per_series`` samples (what the store keeps; checkpoints are written far
    more often than that); a sample re-sent later with a *different* value for the same
    timestamp replaces the stored value, so the replay learns the new value where the detector
    had learned the old one. Reads the samples of up to 50,000 series in one query
    (:meth:`Store.learned_samples`). :meth:`Engine.start` relearns the same way after a crash
    (no final checkpoint).

    With ``forget_after_s``, a series whose store ``seen_at`` is older than it plus an hour (the
    longest time between the engine's looks) is left out: the engine has forgotten it, and its
    rows wait in the store for the pruner; a replaced actor must not bring it back.

    ``listed``: the store's series as :meth:`Store.list_series` just gave them, for a caller
    that read them already (:meth:`Engine.start`); a recovery called again reads them anew.

    ``held`` (the engine's :meth:`Engine.held_series`) says exactly which series the engine
    still holds: the others are left out too. The store's ``seen_at`` alone lags the engine by
    up to that hour, in which a replaced actor brought a just-forgotten series back with its
    old model; ``held`` returning ``None`` (no engine yet) leaves only the ``seen_at`` cut.
    """

    def recover(
        owns: Callable[[npt.NDArray[np.int64]], npt.NDArray[np.bool_]],
    ) -> RecoveryData:
        stored = store.load_checkpoints()
        known = store.list_series() if listed is None else listed
        series = [s for s in known if s.last_ts is not None]
        if forget_after_s is not None:
            now = (clock or wall_clock_ms)()
            cut = now - int(forget_after_s * 1000) - 3_600_000
            forgotten = {s.series_id for s in series if s.seen_at is not None and s.seen_at < cut}
            series = [s for s in series if s.series_id not in forgotten]
            stored = {sid: blob for sid, blob in stored.items() if sid not in forgotten}
        still = held() if held is not None else None
        if still is not None:
            series = [s for s in series if s.series_id in still]
            stored = {sid: blob for sid, blob in stored.items() if sid in still}
        ck_ids = np.fromiter(stored, np.int64, len(stored))
        checkpoints = {sid: stored[sid] for sid in ck_ids[owns(ck_ids)].tolist()}
        ids = np.fromiter((s.series_id for s in series), np.int64, len(series))
        mine = owns(ids) & ~np.isin(ids, _raw_counters(sources))
        since: dict[int, int] = {}
        for i in np.flatnonzero(mine).tolist():
            info = series[i]
            start = _INT64_MIN
            blob = checkpoints.get(info.series_id)
            if blob is not None:
                last = _checkpoint_last_ts(blob)
                start = _INT64_MIN if last is None else last + 1
            if info.last_ts is not None and info.last_ts < start:
                continue  # nothing stored after the checkpoint (a clean stop)
            since[info.series_id] = start
        # One read per chunk of series, not one per series: after a crash nearly every series
        # has samples after its checkpoint (1.25 ms a series in DuckDB: 20 minutes for a
        # million), and a chunk bounds the read's size.
        ids_left = list(since)
        parts = [
            store.learned_samples({sid: since[sid] for sid in ids_left[k : k + _RELEARN_CHUNK]})
            for k in range(0, len(ids_left), _RELEARN_CHUNK)
        ]
        return checkpoints, MetricBatch.concat(parts)

    return recover


def _checkpoint_last_ts(blob: bytes) -> int | None:
    from relia.detect.checkpoint import unpack
    from relia.errors import ReliaError

    try:
        last = unpack(blob).get("last_ts")
    except ReliaError:
        # The executor refuses it too and says so, one warning per reason for the whole
        # restore (not one per series): that series relearns everything stored.
        return None
    return None if last is None else int(last)


def _refuse_newer_checkpoints(store: Store, checkpoints: dict[int, bytes]) -> None:
    """:class:`StoreError` naming the store if a newer relia wrote any of ``checkpoints``: this
    one would take them for corrupt, start those series afresh and overwrite them."""
    from relia.detect.checkpoint import FORMAT_VERSION, format_version
    from relia.errors import StoreError
    from relia.store.base import store_location

    newer: dict[int, int] = {}  # format -> an example series
    for sid, blob in checkpoints.items():
        version = format_version(blob)
        if version is not None and version > FORMAT_VERSION:
            newer.setdefault(version, sid)
    if newer:
        version = max(newer)
        raise StoreError(
            f"detector checkpoints were written by a newer relia (format RLC{version} > "
            f"RLC{FORMAT_VERSION}, e.g. series {newer[version]}); upgrade relia or use another "
            "data directory",
            where=store_location(store),
        )


class SeriesIndexMetrics:
    """The series index on ``/metrics``, read when scraped: ``relia_series_registered`` (every
    series registered, from every source), ``relia_series_limit`` (``max_series``) and
    ``relia_series_refused_total{source}`` (new series refused over the limit, their samples
    dropped; a series named again is counted again). ``sources`` start at 0."""

    def __init__(self, index: SeriesIndex, sources: Iterable[str] = ()) -> None:
        self.index = index
        self.sources = list(sources)

    def collect(self) -> Iterator[Metric]:
        refused = CounterMetricFamily(
            "relia_series_refused",
            "New series refused because the series index held max_series (samples dropped)",
            labels=["source"],
        )
        counts = dict.fromkeys(self.sources, 0) | self.index.refused()
        for source, n in sorted(counts.items()):
            refused.add_metric([source], n)
        yield refused
        yield GaugeMetricFamily(
            "relia_series_registered",
            "Series in the series index, from every source (max_series caps new ones)",
            value=len(self.index),
        )
        if self.index.max_series is not None:
            yield GaugeMetricFamily(
                "relia_series_limit",
                "max_series: the most series relia registers",
                value=self.index.max_series,
            )


class EngineMetrics:
    """relia's own metrics, registered in ``registry`` (exposed on ``/metrics``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.ticks = Counter("relia_engine_ticks", "Engine ticks run", registry=registry)
        self.tick_errors = Counter(
            "relia_engine_tick_errors", "Ticks that failed as a whole", registry=registry
        )
        self.tick_seconds = Histogram(
            "relia_engine_tick_duration_seconds",
            "Time one engine tick took",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
            registry=registry,
        )
        self.ticks_skipped = Counter(
            "relia_engine_ticks_skipped",
            "Interval slots skipped because a tick took longer than the interval",
            registry=registry,
        )
        self.clock_steps_back = Counter(
            "relia_clock_steps_back",
            "Times the wall clock went back between engine ticks (samples relia stamps itself "
            "are dropped until it catches up)",
            registry=registry,
        )
        self.samples = Counter(
            "relia_samples_ingested", "Samples polled and stored", registry=registry
        )
        self.dropped = Counter(
            "relia_samples_dropped",
            "Samples not scored because they were not newer than the series' last one",
            registry=registry,
        )
        self.unstorable = Counter(
            "relia_samples_unstorable",
            "Samples dropped because no store can keep their series (a NUL in its name or labels)",
            registry=registry,
        )
        self.findings_unstorable = Counter(
            "relia_findings_unstorable",
            "Findings dropped because the store refused them as bad data (a NUL, say)",
            registry=registry,
        )
        self.findings = Counter("relia_findings", "New findings", registry=registry)
        self.findings_updated = Counter(
            "relia_findings_updated", "Findings that grew (same id, later end)", registry=registry
        )
        self.source_errors = Counter(
            "relia_source_errors", "Failed polls per source", ["source"], registry=registry
        )
        self.checkpoints = Counter(
            "relia_checkpoints_saved", "Detector checkpoints written", registry=registry
        )
        self.series = Gauge(
            "relia_series", "Series the engine holds detector state for", registry=registry
        )
        self.series_forgotten = Counter(
            "relia_series_forgotten",
            "Series forgotten because nothing was received for them for forget_after",
            registry=registry,
        )
        self.log_lines = Counter("relia_log_lines", "Log lines read and counted", registry=registry)
        self.log_lines_skipped = Counter(
            "relia_log_lines_skipped",
            "Log lines skipped (binary, longer than logs.max_line_bytes, blank)",
            registry=registry,
        )
        self.log_errors = Counter(
            "relia_log_file_errors", "Failed reads per log file", ["file"], registry=registry
        )
        self.slo_evaluations = Counter(
            "relia_slo_evaluations", "SLO evaluation rounds run", registry=registry
        )
        self.slo_errors = Counter(
            "relia_slo_evaluation_errors",
            "Failed SLO evaluations per SLO",
            ["slo"],
            registry=registry,
        )
        self.slo_seconds = Histogram(
            "relia_slo_evaluation_duration_seconds",
            "Time one round of SLO evaluation took",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
            registry=registry,
        )
        self.slo_budget_remaining = Gauge(
            "relia_slo_error_budget_remaining_ratio",
            "Share of the error budget left in the SLO window (negative: overspent)",
            ["slo"],
            registry=registry,
        )
        self.slo_firing = Gauge(
            "relia_slo_burn_rate_alerts_firing",
            "Burn-rate alerts firing per SLO and severity",
            ["slo", "severity"],
            registry=registry,
        )


@dataclass(frozen=True)
class TickResult:
    """What one tick did."""

    now_ms: int
    samples: int
    scored: int
    dropped: int
    new_findings: int
    updated_findings: int
    source_errors: dict[str, str] = field(default_factory=dict)
    checkpointed: int = 0
    duration_s: float = 0.0
    log_lines: int = 0


@dataclass(frozen=True)
class SloTickResult:
    """What one round of SLO evaluation did."""

    now_ms: int
    evaluated: int
    new_findings: int
    updated_findings: int
    firing: int
    errors: dict[str, str] = field(default_factory=dict)
    duration_s: float = 0.0


@dataclass
class _Unstored:
    """What a tick polled but could not store, because the store failed: the next tick finishes
    it before it polls anything new, so a store outage (a PostgreSQL restart, a full disk) holds
    pull sources back instead of dropping what they returned, and the detectors never learn a
    sample twice. ``points`` and ``findings`` are set once scored (the detectors have learned
    the samples then); ``to_correlate``: findings stored but not yet handed to the incidents."""

    batch: MetricBatch
    points: ScoredPoints | None = None
    findings: list[Finding] = field(default_factory=list)
    to_correlate: list[Finding] = field(default_factory=list)
    decided: bool = False  # push sources were told their findings are stored
    new: int = 0  # findings stored that were new, and that replaced a stored one
    updated: int = 0


class Engine:
    """Polls ``sources`` into ``store``, scores through ``executor``, persists findings.

    ``index`` is the :class:`SeriesIndex` the sources register series in. Checkpoints are written
    every ``checkpoint_every`` full ticks or ``checkpoint_interval_s`` seconds of the clock, or
    once a series may have learned a quarter of the samples the store keeps per series since the
    last one (so a replay after a crash finds them all in the store), whichever comes first, and
    by :meth:`close`. Push ticks (a remote-write batch arrived) count only by their samples: under
    load they come several times a second, and a checkpoint every few of them would cost a long
    tick every second or so for nothing a replay needs.

    ``slo_evaluator`` (optional) evaluates SLOs every ``slo_interval_s``: :meth:`run` does that in
    a thread of its own, off the detector path, and :meth:`slo_tick` is one round by hand.

    ``logs`` (optional) tails log files each tick: its closed windows' template counts are scored
    with the sources' samples, then its new lines are read and committed
    (:mod:`relia.logs.engine`).

    ``incidents`` (optional) correlates every finding the engine stores into incidents and
    enqueues their notifications (:mod:`relia.engine.incidents`): in the tick that stored them
    when ticked by hand, and in a thread of its own, once per ``incident_period_s``, while
    :meth:`run` runs (so correlation stays off the path from receipt to stored finding).

    ``forget_after_s`` (optional): a series nothing was received for that long is forgotten
    (:meth:`forget_idle`): its detector state, open finding and index entry go, and the sources
    forget its id; if it sends again it starts afresh, as a new series. Receipt times are written
    to the store (``seen_at``) once per check, and the store deletes a series' rows only once its
    ``seen_at`` is older than ``forget_after`` plus a grace (the history pruner), by which time
    every replica holding it has forgotten it.
    """

    def __init__(
        self,
        store: Store,
        sources: Sequence[MetricSource],
        executor: Executor,
        *,
        index: SeriesIndex,
        threshold: float = 0.5,
        merge_gap: int = 2,
        clock: Callable[[], int] = wall_clock_ms,
        registry: CollectorRegistry | None = None,
        checkpoint_every: int = 20,
        checkpoint_interval_s: float = 60.0,
        interval_s: float | None = None,
        slo_evaluator: SloEvaluator | None = None,
        slo_interval_s: float = 60.0,
        logs: LogPipeline | None = None,
        incidents: IncidentPipeline | None = None,
        incident_period_s: float = 1.0,
        gc_pacing: GcPacing | None = None,
        forget_after_s: float | None = None,
    ) -> None:
        self.store = store
        self.forget_after_ms = None if forget_after_s is None else int(forget_after_s * 1000)
        #: How often idle series are looked for (and receipt times written to the store): an
        #: eighth of ``forget_after``, between a minute and an hour.
        self.forget_every_ms = (
            3_600_000
            if self.forget_after_ms is None
            else min(3_600_000, max(60_000, self.forget_after_ms // 8))
        )
        #: Paces Python's full garbage collections in :meth:`run` (``relia up`` sets one).
        self.gc_pacing = gc_pacing
        self.logs = logs
        self.incidents = incidents
        self.incident_period_s = incident_period_s
        self._incident_thread: IncidentThread | None = None
        self._incident_thread_lock = threading.Lock()  # tick and the SLO thread both hand over
        self._pool: ThreadPoolExecutor | None = None  # polls several sources side by side
        self.sources = list(sources)
        self.executor = executor
        self.index = index
        self.clock = clock
        self.registry = registry if registry is not None else CollectorRegistry()
        self.metrics = EngineMetrics(self.registry)
        names = [s.name for s in self.sources] + (["logs"] if logs is not None else [])
        self.registry.register(SeriesIndexMetrics(index, names))
        self.checkpoint_every = max(1, checkpoint_every)
        self.checkpoint_interval_ms = int(checkpoint_interval_s * 1000)
        keep = getattr(store, "samples_per_series", None)
        #: A bound on the samples any one series learned since the last checkpoint (the sum of
        #: each tick's largest per-series count) that triggers the next one.
        self.checkpoint_learned = max(1, (keep if isinstance(keep, int) else 2000) // 4)
        self._learned_since_ckpt = 0
        self.interval_s = interval_s
        self.tracker = FindingTracker(
            executor.detector_name,
            self._key_of,
            executor.components,
            threshold=threshold,
            merge_gap=merge_gap,
        )
        #: Every series held (detector state, index entry) -> when a sample was last received.
        self._held: dict[int, int] = {}
        #: Series whose store row this engine knows is there (registered by it, or loaded and
        #: recent enough that the store cannot delete it while held): the others are registered
        #: again (``upsert_series``) before their next samples are stored.
        self._known: set[int] = set()
        #: The ``seen_at`` the store holds for each series held, as far as this engine wrote or
        #: read it: a look writes only the receipt times far enough ahead of it.
        self._stored_seen: dict[int, int] = {}
        self._last_forget_ms: int | None = None
        #: Whether a look wrote the receipt times due since the start (or a pause): until then
        #: the store's seen_at of a series alive may be older than forget_after (relia was not
        #: running), and the pruner must not delete its rows by it.
        self._receipts_written = False
        #: The clock at the start of the last tick (failed ones too): a long gap is a pause.
        self._tick_began_ms: int | None = None
        #: The latest clock a tick started at: a tick before it means the clock went back.
        self._clock_high_ms: int | None = None
        self._clock_behind = False
        self._looks = 0  # looks for idle series so far: whose receipt times are written in turn
        self._forget_failures = FailureLog(log, "forgetting idle series")
        self._unstored: _Unstored | None = None
        # While the executor scores (``_unstored`` is set then too, yet the store is not what
        # is waited for): /healthz names the executor, not the store, if the tick hangs there.
        self._in_executor = False
        #: Series no store can keep (a NUL in name or labels): their samples are dropped, and
        #: each is logged once (forgotten with the series).
        self._unstorable: set[int] = set()
        self._unsaved_checkpoints: dict[int, bytes] = {}
        self._lock = threading.Lock()
        self._started = False
        self._ticks = 0
        self._ticks_since_ckpt = 0
        self._last_ckpt_ms: int | None = None
        self._last_tick_ms: int | None = None
        self._last_tick_s: float | None = None
        self._last_error: str | None = None
        self._skipped_logged_at: float | None = None  # time.monotonic() of the last warning
        self._skipped_unlogged = 0  # slots skipped since it
        #: A store away for minutes fails every tick: one traceback, then a line a minute.
        self._tick_failures = FailureLog(log, "engine tick")
        self._source_errors: dict[str, int] = {s.name: 0 for s in self.sources}
        self._source_last_error: dict[str, str | None] = {s.name: None for s in self.sources}
        self._restored = 0
        self._running = False
        self.slo_evaluator = slo_evaluator
        self.slo_interval_s = slo_interval_s
        self._slo_lock = threading.Lock()
        self._slo_findings: SloFindings | None = None  # made on the first slo_tick
        #: SLO findings of a round the store failed, stored by the next round.
        self._slo_unstored: list[Finding] = []
        self._slo_last: SloTickResult | None = None
        self._slo_last_error: str | None = None
        # Set by push sources (remote-write) when data waits: run() ticks for them at once.
        self._wake = threading.Event()
        self._slo_statuses: dict[str, SloStatus] = {}  # the last status of each SLO, by id

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> int:
        """Load what the store knows (series, detector checkpoints, open findings); returns the
        number of series whose detector state was restored. Called by :meth:`tick` if needed."""
        if self._started:
            return self._restored
        series = self.store.list_series()
        now = self.clock()
        # A series the store says was last seen longer ago than forget_after may be deleted from
        # it by the pruner (here or on another replica) before it is received again: it is
        # registered again on its return, so its samples never lack their series row.
        cut = None if self.forget_after_ms is None else now - self.forget_after_ms
        for info in series:
            self.index.add(info.series_id, info.name, info.labels)
            seen = now if info.seen_at is None else min(now, info.seen_at)
            self._held[info.series_id] = seen
            self._stored_seen[info.series_id] = seen
            if cut is None or seen >= cut:
                self._known.add(info.series_id)
        # What each series learned after its checkpoint (a crash left no final one) is relearned
        # from the store, as a replaced Ray actor does: scores resume as if never stopped. A
        # series whose checkpoint holds its last stored sample (a clean stop) reads nothing.
        checkpoints, learned = recovery_from_store(self.store, self.sources, listed=series)(
            lambda ids: np.ones(len(ids), np.bool_)
        )
        _refuse_newer_checkpoints(self.store, checkpoints)  # before anything is written
        self._restored = self.executor.restore(checkpoints)
        learned = self._relearn_refused(learned)
        if len(learned):
            self.executor.process(learned.sorted())  # its findings are stored already
            log.info(
                "relearned %d samples stored after the last checkpoint (%d series)",
                len(learned),
                len(series_runs(learned.series_id)[0]),
            )
        last_ts = {s.series_id: s.last_ts for s in series if s.last_ts is not None}
        if last_ts:
            self._seed_open_findings(last_ts)
        self.metrics.series.set(len(self._held))
        if self.logs is not None:
            self.logs.start()
        if self.incidents is not None:
            self.incidents.start(self.clock())
        # The first look for idle series comes one period after the start: series that are
        # alive have been received by then, whatever the store last saw of them.
        self._last_ckpt_ms = self._last_forget_ms = self.clock()
        self._started = True
        if self._restored:
            log.info("restored detector state of %d series", self._restored)
        return self._restored

    def _relearn_refused(self, learned: MetricBatch) -> MetricBatch:
        """``learned`` with every stored sample of the series whose checkpoint the executor
        refused (another detector or config, a default an upgrade changed, a corrupt one): they
        start afresh, and what came after the checkpoint alone would leave them nearly
        empty. Executors that cannot say which were refused (Ray) keep ``learned``."""
        refused_ids = getattr(self.executor, "refused_ids", None)
        refused = refused_ids() if callable(refused_ids) else set()
        if not refused:
            return learned
        ids = np.fromiter(refused, np.int64, len(refused))
        keep = ~np.isin(learned.series_id, ids)
        ids_left = ids.tolist()
        parts = [MetricBatch(learned.series_id[keep], learned.ts[keep], learned.value[keep])]
        parts += [
            self.store.learned_samples(dict.fromkeys(ids_left[k : k + _RELEARN_CHUNK], _INT64_MIN))
            for k in range(0, len(ids_left), _RELEARN_CHUNK)
        ]
        relearned = MetricBatch.concat(parts)
        n = len(relearned) - int(keep.sum())
        if n:
            log.info(
                "relearning %d stored samples of %d series whose checkpoint was refused",
                n,
                len(np.unique(relearned.series_id[int(keep.sum()) :])),
            )
        return relearned

    def _seed_open_findings(self, last_ts: dict[int, int]) -> None:
        """Reopen the findings still open when the engine stopped: each series' newest metric
        finding of this detector followed by at most ``merge_gap`` stored samples.

        Every page of findings is read (an anomaly storm may leave more open findings than any
        one page holds). A finding ends at most ``merge_gap`` samples before its series' last,
        so the findings read reach that many slots of a minute (or of ``interval_s`` if longer)
        further back than the stalest series' last sample: a series sampled less often than
        that may start a new finding where it would have extended one."""
        tracker = self.tracker
        slot_ms = int(max(60.0, self.interval_s or 0.0) * 1000)
        since = min(last_ts.values()) - (tracker.merge_gap + 1) * slot_ms
        page_size = 10_000
        newest: dict[int, Finding] = {}
        before: tuple[int, int, str] | None = None
        while True:
            page = self.store.findings(since=since, limit=page_size, before=before)
            for f in page:  # newest first: the first of a series is its newest
                if f.series_id is not None and f.detector == tracker.detector:
                    newest.setdefault(f.series_id, f)
            if len(page) < page_size:
                break
            before = (page[-1].end, page[-1].start, page[-1].id)
        gaps: dict[int, int] = {}
        for sid, f in newest.items():
            last = last_ts.get(sid)
            if last is None or f.end > last:
                continue
            if f.end < last:
                # Normal points stored after it: still open if at most merge_gap.
                ts, _ = self.store.samples(sid, since=f.end + 1, limit=tracker.merge_gap + 1)
                if len(ts) > tracker.merge_gap:
                    continue
                gaps[sid] = len(ts)
            else:
                gaps[sid] = 0
        tracker.seed([f for sid, f in newest.items() if sid in gaps], last_ts, gaps)

    def checkpoint(self, changed_only: bool = True) -> int:
        """Write detector checkpoints to the store; returns how many series were written.
        Checkpoints the store refused are kept and written with the next ones (the executor
        hands a changed state out once)."""
        blobs = self.executor.checkpoints(changed_only=changed_only)
        if self._unsaved_checkpoints:
            blobs = {**self._unsaved_checkpoints, **blobs}
        if blobs:
            self._unsaved_checkpoints = blobs
            self.store.save_checkpoints(blobs)
            self._unsaved_checkpoints = {}
            self.metrics.checkpoints.inc(len(blobs))
        self._ticks_since_ckpt = 0
        self._learned_since_ckpt = 0
        self._last_ckpt_ms = self.clock()
        return len(blobs)

    def close(self) -> None:
        """Store what a failed tick left (if the store takes it now), final checkpoint (one the
        store refuses is logged as lost), then close the executor, the log files, the SLO
        evaluator and the sources that have a ``close()``, each whatever the others did. The
        store belongs to the caller and stays open."""
        if self._started:
            with self._lock:
                if self._unstored is not None:
                    n_left = len(self._unstored.batch)
                    stored: list[Finding] = []
                    try:
                        self._score_and_store(self._unstored, stored)
                        self._commit_push_sources()
                    except Exception as exc:  # noqa: BLE001 - shutting down: say what is lost
                        log.warning("%d samples of the last tick were not stored: %s", n_left, exc)
                        if self._unstored is not None:  # its findings may be stored all the same
                            stored = self._unstored.to_correlate
                    # Its stored findings reach the incidents now, not at the next start.
                    if self.incidents is not None and stored:
                        try:
                            self._correlate(stored, self.clock())
                        except Exception as exc:  # noqa: BLE001 - the next start seeds them
                            log.warning("findings of the last tick not correlated: %s", exc)
                try:
                    n = self.checkpoint()
                except Exception as exc:  # noqa: BLE001 - shutting down: say what is lost
                    # The rest still closes: the WAL's last fsync, Ray actors, log files.
                    log.warning(
                        "final checkpoint not saved (the series resume from their previous "
                        "checkpoint and relearn what the store holds after it): %s",
                        exc,
                    )
                else:
                    log.info("final checkpoint: %d series", n)
        parts: list[tuple[str, Callable[[], object] | None]] = [
            ("the executor", self.executor.close),
            ("the poll pool", self._pool.shutdown if self._pool is not None else None),
            ("the log files", self.logs.close if self.logs is not None else None),
            (
                "the SLO evaluator",
                self.slo_evaluator.close if self.slo_evaluator is not None else None,
            ),
            *((f"source {src.name}", getattr(src, "close", None)) for src in self.sources),
        ]
        self._pool = None
        for what, closer in parts:
            if callable(closer):
                try:
                    closer()
                except Exception:  # noqa: BLE001 - shutting down; the others still close
                    log.warning("%s did not close cleanly", what, exc_info=True)

    # -- one tick --------------------------------------------------------------------------

    def _key_of(self, series_id: int) -> str:
        return describe(self.index.key(series_id))

    def _poll(self, now: int, push_only: bool = False) -> tuple[list[MetricBatch], dict[str, str]]:
        chosen = [s for s in self.sources if not push_only or getattr(s, "push", False)]
        if len(chosen) > 1:
            # Sources wait on the network (scrapes, Prometheus queries): polled side by side, a
            # slow or dead target costs the tick its own timeout, not the sum of all of them.
            if self._pool is None:
                self._pool = ThreadPoolExecutor(
                    max_workers=min(8, len(self.sources)), thread_name_prefix="relia-poll"
                )
            results = list(self._pool.map(lambda s: _poll_one(s, now), chosen))
        else:
            results = [_poll_one(s, now) for s in chosen]
        batches: list[MetricBatch] = []
        errors: dict[str, str] = {}
        for src, (b, exc) in zip(chosen, results, strict=True):
            if exc is not None:
                msg = str(exc) or type(exc).__name__
                errors[src.name] = msg
                self._source_errors[src.name] = self._source_errors.get(src.name, 0) + 1
                self._source_last_error[src.name] = msg
                self.metrics.source_errors.labels(source=src.name).inc()
                log.warning("source %s failed: %s", src.name, msg)
                if isinstance(exc, PartialPollError) and len(exc.batch):
                    batches.append(exc.batch)  # what its other parts returned
                continue
            self._source_last_error[src.name] = None
            if b is not None and len(b):
                batches.append(b)
        return batches, errors

    def _watched(self, batch: MetricBatch) -> MetricBatch:
        """The part of ``batch`` the detectors score: everything but raw counters whose source
        also emits their rate (``ScrapeSource.counters``). An ever-growing counter says nothing
        its rate does not, and a counter reset would look like a crash; the raw samples are
        still stored."""
        raw = _raw_counters(self.sources)
        if not len(raw):
            return batch
        keep = ~np.isin(batch.series_id, raw)
        if keep.all():
            return batch
        return MetricBatch(batch.series_id[keep], batch.ts[keep], batch.value[keep])

    def _register(self, batch: MetricBatch) -> MetricBatch:
        """Note the receipt of the batch's series and register in the store those it may not
        hold; returns the batch without samples of series the index cannot name (none, unless
        a source kept the id of a series forgotten two checks ago: those are dropped, logged)
        and without those of series no store can keep (a NUL in the name or labels: dropped,
        logged once, counted in ``relia_samples_unstorable_total``)."""
        ids = series_runs(batch.series_id)[0].tolist()  # the tick's batch is sorted
        now = self.clock()
        received = dict.fromkeys(ids, now)
        new = [sid for sid in ids if sid not in self._known]
        unknown: list[int] = []
        if new:
            rows = []
            for sid in new:
                if sid in self._unstorable:
                    continue
                try:
                    name, labels = self.index.key(sid)
                except DataError:
                    unknown.append(sid)
                    continue
                nul = nul_in_series(name, dict(labels))
                if nul is not None:
                    # Refused by the store for good: retried, it would hold every other
                    # series' samples back with it (the tick waits until the store takes it).
                    self._unstorable.add(sid)
                    log.warning(
                        "dropping the samples of series %r: %s holds a NUL character, which "
                        "the store cannot keep",
                        describe((name, labels)),
                        nul,
                    )
                    continue
                if sid not in self.index:
                    # Forgotten in the last check, but a source had resolved it already.
                    self.index.add(sid, name, dict(labels))
                rows.append((sid, name, dict(labels)))
            if rows:
                self.store.upsert_series(rows, seen_at=now)
                self._known.update(r[0] for r in rows)
                self._stored_seen.update((r[0], now) for r in rows)
        if unknown:
            log.warning(
                "dropped the samples of %d series no longer in the series index (forgotten)",
                len(unknown),
            )
            for sid in unknown:
                del received[sid]
        # Series no store can keep stay held (received), so they are forgotten when idle.
        refused = [sid for sid in ids if sid in self._unstorable] if self._unstorable else []
        if unknown or refused:
            keep = ~np.isin(batch.series_id, np.array(unknown + refused, np.int64))
            if refused:
                n = int(np.isin(batch.series_id, np.array(refused, np.int64)).sum())
                self.metrics.unstorable.inc(n)
            batch = MetricBatch(batch.series_id[keep], batch.ts[keep], batch.value[keep])
        self._held.update(received)
        self.metrics.series.set(len(self._held))
        return batch

    def receipts_written(self) -> bool:
        """Whether the store's ``seen_at`` is current for every series held: a look for idle
        series wrote them since the engine started or resumed after a pause. Until then the
        history pruner forgets no series (``HistoryPruner(may_forget=...)``): a series alive
        may still carry the ``seen_at`` of before relia stopped."""
        return self._receipts_written

    def held_series(self) -> frozenset[int]:
        """The series the engine holds (received, or loaded from the store, and not forgotten):
        what a replaced Ray actor may restore (``recovery_from_store(held=...)``)."""
        return frozenset(self._held)

    def forget_idle(self, now: int | None = None) -> int:
        """Forget the series nothing was received for in ``forget_after`` (after writing to the
        store the receipt times it is due, see :meth:`_write_seen`); returns how many went. Run
        by :meth:`tick` every ``forget_every_ms``; a no-op without ``forget_after``."""
        if self.forget_after_ms is None:
            return 0
        now = self.clock() if now is None else now
        self._write_seen(self.forget_after_ms)
        self._receipts_written = True
        self._last_forget_ms = now
        cut = now - self.forget_after_ms
        idle = [sid for sid, seen in self._held.items() if seen <= cut]
        # Also when nothing is idle: the tombstones of the last look go (a look apart, every
        # sample resolved before it has been through a tick).
        self.index.forget(idle)
        if not idle:
            return 0
        self.executor.forget(idle)
        self.tracker.forget(idle)
        for src in [*self.sources, self.logs]:
            forget = getattr(src, "forget", None)
            if callable(forget):
                forget(idle)
        for sid in idle:
            self._unstorable.discard(sid)
            del self._held[sid]
            self._stored_seen.pop(sid, None)
            self._known.discard(sid)
            self._unsaved_checkpoints.pop(sid, None)
        self.metrics.series.set(len(self._held))
        self.metrics.series_forgotten.inc(len(idle))
        log.info(
            "forgot %d series that sent nothing for %s (%d held)",
            len(idle),
            human_duration(self.forget_after_ms / 1000),
            len(self._held),
        )
        return len(idle)

    def _write_seen(self, forget_after_ms: int) -> None:
        """Raise the store's ``seen_at`` of one share of the series held, in turn.

        The store's pruner deletes a series whose ``seen_at`` is ``forget_after`` plus a grace
        old, and a replica that starts takes one older than ``forget_after`` for possibly gone, so
        the stored time may lag the receipts by up to half of it. Writing every series at every
        look would rewrite every row each time (6-8 s at a million series on PostgreSQL, holding
        its writer); instead each look writes the series whose id falls in its turn, so each one
        is written about every half of ``forget_after`` and every look writes about the same
        number. One that lags by half of it (looks delayed) is written at once."""
        turns = max(1, forget_after_ms // 2 // self.forget_every_ms - 1)
        turn = self._looks % turns
        self._looks += 1
        half = forget_after_ms // 2
        stored = self._stored_seen
        # About 0.4 s at a million series, once a look (an hour at most).
        due = {
            sid: seen
            for sid, seen in self._held.items()
            if sid % turns == turn or seen - stored.get(sid, 0) >= half
        }
        due = {sid: seen for sid, seen in due.items() if seen > stored.get(sid, 0)}
        if due:
            self.store.mark_series_seen(due)
            stored.update(due)

    def _forget_if_due(self, now: int) -> None:
        assert self._last_forget_ms is not None
        if self.forget_after_ms is None or now - self._last_forget_ms < self.forget_every_ms:
            return
        try:
            self.forget_idle(now)
        except Exception as exc:  # noqa: BLE001 - the samples are stored; the next tick retries
            self._forget_failures.failed(exc)
        else:
            self._forget_failures.succeeded()

    def _note_clock_back(self, now: int) -> None:
        """Say once when the wall clock went back (NTP, an RTC correction): the samples the
        host and scrape sources stamp with relia's clock are then not newer than their series'
        last point, so the detectors drop them (``relia_samples_dropped_total``) until the
        clock is past where it was; ``/healthz`` names it meanwhile."""
        high = self._clock_high_ms
        if high is None or now >= high:
            self._clock_high_ms = now
            if self._clock_behind:
                log.info("the clock caught up: samples stamped by relia are scored again")
            self._clock_behind = False
            return
        if not self._clock_behind:
            self._clock_behind = True
            self.metrics.clock_steps_back.inc()
            log.warning(
                "the clock went back %gs: samples relia stamps with its clock (host, scrapes "
                "without timestamps) are dropped until it is past %s again",
                (high - now) / 1000,
                format_ms(high),
            )

    def _note_gap(self, now: int) -> None:
        """Resume after a pause as after a start: the time relia did not run (a suspended
        laptop or VM, a forward clock jump) is no silence of the series, so the next look for
        idle series comes one period later, when the series alive have been received. A pause
        is a gap between ticks of more than half of ``forget_after`` (and of three intervals):
        a shorter one is a stalled tick, after which the look comes at once."""
        began, self._tick_began_ms = self._tick_began_ms, now
        if began is None or self.forget_after_ms is None:
            return
        pause_ms = max(self.forget_after_ms // 2, int(3 * (self.interval_s or 0.0) * 1000))
        if now - began <= pause_ms:
            return
        self._last_forget_ms = now
        self._receipts_written = False
        log.info(
            "no tick for %s (relia paused, or the clock jumped): idle series are looked for "
            "again in %s",
            human_duration((now - began) / 1000),
            human_duration(self.forget_every_ms / 1000),
        )

    def wake(self) -> None:
        """Data waits in a push source: :meth:`run` ticks for the push sources now."""
        self._wake.set()

    def tick(self, *, push_only: bool = False) -> TickResult:
        """Poll every source once, store, score, persist findings, checkpoint when due.
        ``push_only``: poll only push sources (``push = True``), and no log files."""
        t0 = time.perf_counter()
        with self._lock:
            self.start()
            now = self.clock()
            self._note_clock_back(now)
            self._note_gap(now)
            new = updated = scored = dropped = 0
            stored_findings: list[Finding] = []
            n_samples = 0
            if self._unstored is not None:
                # The last tick's samples first; if the store still fails, nothing new is polled.
                unstored = self._unstored.batch
                new, updated, scored, dropped = self._score_and_store(
                    self._unstored, stored_findings
                )
                self._commit_push_sources()
                n_samples += len(unstored)
                self._learned_since_ckpt += int(series_runs(unstored.series_id)[2].max())
            batches, errors = self._poll(now, push_only)
            if self.logs is not None and not push_only:
                # Windows that ended: scored like any samples, before the window is marked done.
                batches.append(self.logs.closed_windows(now))
            # Sorted once by (series, ts): the executor, the store and the finding tracker
            # each see that the order is there and skip their own sort.
            batch = MetricBatch.concat(batches).sorted()
            if len(batch):
                try:
                    done = self._score_and_store(_Unstored(batch), stored_findings)
                except Exception:
                    # The last tick's findings are stored: they reach the incidents although
                    # this tick's own samples wait (those findings are not carried any more).
                    if stored_findings and self.incidents is not None:
                        self._correlate(stored_findings, now)
                    raise
                new, updated = new + done[0], updated + done[1]
                scored, dropped = scored + done[2], dropped + done[3]
            self._commit_push_sources()
            n_samples += len(batch)
            log_lines = 0
            if self.logs is not None and not push_only:
                lr = self.logs.ingest(now)
                log_lines = lr.lines
                new += lr.new_findings
                updated += lr.updated_findings
                stored_findings.extend(lr.findings)
                self.metrics.log_lines.inc(lr.lines)
                self.metrics.log_lines_skipped.inc(lr.skipped)
                for name in lr.errors:
                    self.metrics.log_errors.labels(file=name).inc()
            if self.incidents is not None:
                self._correlate(stored_findings, now)
            self._ticks += 1
            if not push_only:
                self._ticks_since_ckpt += 1
            if len(batch):
                self._learned_since_ckpt += int(series_runs(batch.series_id)[2].max())
            ckpt = 0
            assert self._last_ckpt_ms is not None
            if (
                self._ticks_since_ckpt >= self.checkpoint_every
                or now - self._last_ckpt_ms >= self.checkpoint_interval_ms
                or self._learned_since_ckpt >= self.checkpoint_learned
            ):
                ckpt = self.checkpoint()
            self._forget_if_due(now)
            duration = time.perf_counter() - t0
            self._last_tick_ms = now
            self._last_tick_s = duration
            m = self.metrics
            m.ticks.inc()
            m.tick_seconds.observe(duration)
            m.samples.inc(n_samples)
            m.dropped.inc(dropped)
            m.findings.inc(new)
            m.findings_updated.inc(updated)
        return TickResult(
            now, n_samples, scored, dropped, new, updated, errors, ckpt, duration, log_lines
        )

    # -- SLOs ------------------------------------------------------------------------------

    def slo_tick(self) -> SloTickResult:
        """Evaluate the SLOs once; firing burn-rate alerts become findings in the store (the same
        finding, extended, while an alert keeps firing). Needs ``slo_evaluator``."""
        if self.slo_evaluator is None:
            raise RuntimeError("this engine has no SLO evaluator")
        t0 = time.perf_counter()
        with self._slo_lock:
            now = self.clock()
            if self._slo_findings is None:
                from relia.slo.evaluate import SloFindings

                # Two rounds may pass without an evaluation before an episode counts as over.
                tracker = SloFindings(gap_ms=int(2 * self.slo_interval_s * 1000))
                # Episodes that were firing when relia stopped go on if they still fire.
                tracker.seed(self.store.findings(since=now - 86_400_000, limit=10_000))
                self._slo_findings = tracker
            statuses, errors = self.slo_evaluator.evaluate(now)
            # An SLO that failed this round keeps its last good status (its error is reported).
            # A new dict, swapped in whole: readers need no lock (this one is held for the
            # whole round, queries included).
            self._slo_statuses = {**self._slo_statuses, **{st.slo.id: st for st in statuses}}
            findings = self._slo_findings.update(statuses)
            if self._slo_unstored:
                # A round whose findings the store did not take: stored now, the newer version
                # of a finding winning (the tracker has moved on, it would not give them again).
                newest = {f.id: f for f in self._slo_unstored}
                newest.update((f.id, f) for f in findings)
                findings = list(newest.values())
            self._slo_unstored = findings
            new = self.store.add_findings(findings) if findings else 0
            self._slo_unstored = []
            if findings and self.incidents is not None:
                self._correlate(findings, now)
            m = self.metrics
            firing = 0
            for st in statuses:
                m.slo_budget_remaining.labels(slo=st.slo.id).set(st.remaining_ratio)
                for severity in ("page", "ticket"):
                    n = sum(1 for a in st.firing if a.window.severity == severity)
                    m.slo_firing.labels(slo=st.slo.id, severity=severity).set(n)
                    firing += n
            for slo_id in errors:
                m.slo_errors.labels(slo=slo_id).inc()
            duration = time.perf_counter() - t0
            m.slo_evaluations.inc()
            m.slo_seconds.observe(duration)
            m.findings.inc(new)
            m.findings_updated.inc(len(findings) - new)
            result = SloTickResult(
                now, len(statuses), new, len(findings) - new, firing, errors, duration
            )
            self._slo_last = result
        return result

    def _slo_loop(self, stop: threading.Event) -> None:
        failures = FailureLog(log, "SLO evaluation")
        next_at = time.monotonic()
        while not stop.is_set():
            try:
                self.slo_tick()
                failures.succeeded()
                self._slo_last_error = None
            except Exception as exc:  # noqa: BLE001 - keep evaluating; the error is reported
                self._slo_last_error = failures.failed(exc)
            next_at += self.slo_interval_s
            now = time.monotonic()
            if next_at < now:
                next_at = now + self.slo_interval_s - ((now - next_at) % self.slo_interval_s)
            stop.wait(max(0.0, next_at - now))

    def _score_and_store(
        self, work: _Unstored, stored_findings: list[Finding]
    ) -> tuple[int, int, int, int]:
        """Register, score and store ``work.batch``; returns (new findings, updated findings,
        scored, dropped). If the store fails, ``work`` keeps what was done and waits in
        ``_unstored`` for the next tick; a failed scoring stores the samples without their
        band and is not retried."""
        self._unstored = work
        batch = work.batch
        if work.points is None:
            batch = work.batch = self._register(batch)
            self._in_executor = True
            try:
                points = self.executor.process(self._watched(batch))
            except Exception:
                self._in_executor = False
                # Scoring failed: the samples are still kept (without their band).
                self.store.append_samples(batch)
                self._unstored = None
                raise
            self._in_executor = False
            work.points = points
            work.findings = self.tracker.update(points)
        points = work.points
        # Findings are stored before the samples: what someone waits for should not queue
        # behind the bulk write. A crash between the two loses nothing: push sources commit
        # their write-ahead log only once the samples are stored, so a restart replays them,
        # and a finding stored again replaces its row.
        if work.findings:
            new, kept = self._add_findings(work.findings)
            work.new, work.updated = new, len(kept) - new
            work.to_correlate.extend(kept)
            work.findings = []
        if not work.decided:
            for src in self.sources:
                # Push sources time receipt → decided (findings stored) per request.
                decided = getattr(src, "decided", None)
                if callable(decided):
                    decided()
            work.decided = True
        # Samples and their score and expected band go in together.
        self.store.append_samples(batch, points)
        self._unstored = None
        stored_findings.extend(work.to_correlate)
        return work.new, work.updated, len(points), points.dropped

    def _add_findings(self, findings: list[Finding]) -> tuple[int, list[Finding]]:
        """Store findings; returns (how many were new, those stored). A finding the store
        refuses as bad data (:class:`DataError`: it would be refused again at every retry) is
        dropped, logged and counted, and the others are stored; a store that is away raises."""
        try:
            return self.store.add_findings(findings), findings
        except DataError:
            pass
        new = 0
        kept: list[Finding] = []
        for f in findings:  # one at a time, to keep all but the refused ones
            try:
                new += self.store.add_findings([f])
            except DataError as exc:
                self.metrics.findings_unstorable.inc()
                log.warning("dropped finding %s on %s: the store refused it: %s", f.id, f.key, exc)
            else:
                kept.append(f)
        return new, kept

    def _commit_push_sources(self) -> None:
        """Push sources commit their write-ahead log once their samples are stored."""
        for src in self.sources:
            stored = getattr(src, "stored", None)
            if callable(stored):
                stored()

    def _correlate(self, findings: list[Finding], now: int) -> None:
        """Stored findings to incidents: handed to the incident thread while :meth:`run` runs,
        else correlated at once (every tick, even without findings: incidents also resolve as
        time passes)."""
        assert self.incidents is not None
        with self._incident_thread_lock:
            thread = self._incident_thread
            if thread is None and self._running and self._started:
                # The thread starts once the correlator was restored (start() seeds it).
                from relia.engine.incidents import IncidentThread

                thread = IncidentThread(
                    self.incidents,
                    self.clock,
                    period_s=self.incident_period_s,
                    on_error=lambda exc: self.metrics.tick_errors.inc(),
                )
                thread.start()
                self._incident_thread = thread
        if thread is not None and thread.running:
            thread.submit(findings)
        else:
            self.incidents.update(findings, now)

    # -- the timed loop --------------------------------------------------------------------

    def run(self, stop: threading.Event, interval_s: float | None = None) -> None:
        """Tick every ``interval_s`` seconds (on a fixed grid; an overrun skips to the next slot)
        until ``stop`` is set. A failing tick is logged and counted; the loop goes on."""
        interval = interval_s if interval_s is not None else (self.interval_s or 15.0)
        self.interval_s = interval
        self._running = True
        slo_thread: threading.Thread | None = None
        if self.slo_evaluator is not None:
            # SLO evaluation queries Prometheus over whole SLO windows: its own thread keeps
            # that off the detector loop.
            slo_thread = threading.Thread(
                target=self._slo_loop, args=(stop,), name="relia-slo", daemon=True
            )
            slo_thread.start()
        try:
            next_at = time.monotonic()
            while not stop.is_set():
                try:
                    self.tick()
                    self._tick_succeeded()
                except Exception as exc:  # noqa: BLE001 - keep serving; the error is reported
                    self._tick_failed(exc)
                next_at += interval
                now = time.monotonic()
                if next_at < now:
                    self._skipped_slots(int((now - next_at) // interval) + 1, interval)
                    next_at = now + interval - ((now - next_at) % interval)
                # Until the next full tick, push sources with data get ticks of their own (the
                # wait is sliced so that ``stop`` is seen within 0.25 s).
                while not stop.is_set() and (left := next_at - time.monotonic()) > 0:
                    if self._wake.wait(min(left, 0.25)):
                        self._wake.clear()
                        try:
                            self.tick(push_only=True)
                            self._tick_succeeded()
                        except Exception as exc:  # noqa: BLE001 - as above
                            self._tick_failed(exc)
                        if self.gc_pacing is not None:
                            self.gc_pacing.step()
                if self.gc_pacing is not None:
                    self.gc_pacing.step()
        finally:
            if self.gc_pacing is not None:
                self.gc_pacing.stop()
            self._running = False
            if slo_thread is not None:
                slo_thread.join(timeout=10.0)
            with self._incident_thread_lock:
                thread, self._incident_thread = self._incident_thread, None
            if thread is not None:
                thread.stop()  # a last round for what the last ticks stored

    def _skipped_slots(self, n: int, interval: float) -> None:
        """A tick overran the interval and the loop skips ``n`` slots: counted, and said at
        once, then at most once every ten minutes with the count since (a slow source or store
        overruns every tick)."""
        self.metrics.ticks_skipped.inc(n)
        self._skipped_unlogged += n
        now = time.monotonic()
        if self._skipped_logged_at is not None and now - self._skipped_logged_at < 600.0:
            return
        log.warning(
            "an engine tick took %.2fs, longer than the interval (%s): %d interval slots "
            "skipped%s (relia_engine_ticks_skipped_total)",
            self._last_tick_s or 0.0,
            human_duration(interval),
            self._skipped_unlogged,
            "" if self._skipped_logged_at is None else " since the last warning",
        )
        self._skipped_logged_at = now
        self._skipped_unlogged = 0

    def _tick_failed(self, exc: Exception) -> None:
        self.metrics.tick_errors.inc()
        self._last_error = self._tick_failures.failed(exc)

    def _tick_succeeded(self) -> None:
        self._tick_failures.succeeded()
        self._last_error = None

    def status(self) -> dict[str, Any]:
        """Engine state for ``/healthz``."""
        # A source may add its own state (the remote-write queue: its WAL's health).
        sources: dict[str, dict[str, Any]] = {
            src.name: dict(status()) if callable(status := getattr(src, "status", None)) else {}
            for src in self.sources
        }
        return {
            "running": self._running,
            "ticks": self._ticks,
            "last_tick_ms": self._last_tick_ms,
            "last_tick_seconds": self._last_tick_s,
            "interval_seconds": self.interval_s,
            "series": len(self._held),
            "detector": self.executor.detector_name,
            "restored_series": self._restored,
            "last_error": self._last_error,
            # Polled but not yet stored (the store failing): polling waits until it takes them.
            "unstored_samples": len(self._unstored.batch) if self._unstored is not None else 0,
            "sources": {
                name: {
                    "errors": n,
                    **sources.get(name, {}),
                    # Its last failed poll, else a failing WAL (remote-write).
                    "last_error": self._source_last_error.get(name)
                    or sources.get(name, {}).get("wal_error"),
                }
                for name, n in self._source_errors.items()
            },
            # What keeps relia from working as it should though it runs: /healthz says
            # "degraded" while this is not empty.
            "problems": self._problems(sources),
            **({"slos": self._slo_status()} if self.slo_evaluator is not None else {}),
            **({"logs": self.logs.status()} if self.logs is not None else {}),
        }

    def _problems(self, sources: dict[str, dict[str, Any]]) -> list[str]:
        """What ``/healthz`` reports as ``degraded``: a failing WAL, ticks that fail, samples
        the store has not taken, or a loop that has not started a tick for three intervals
        (at least a minute: a tick stuck, or the loop gone)."""
        problems = [
            f"{name}: the write-ahead log fails: {extra['wal_error']}"
            for name, extra in sources.items()
            if extra.get("wal_error")
        ]
        if self._last_error is not None:
            problems.append(f"engine ticks fail: {self._last_error}")
        if self._clock_behind and self._clock_high_ms is not None:
            problems.append(
                "the clock went back: samples relia stamps are dropped until it is past "
                f"{format_ms(self._clock_high_ms)}"
            )
        if self._unstored is not None and not self._in_executor:
            problems.append(
                f"{len(self._unstored.batch)} samples wait for the store: nothing new is polled "
                "until it takes them"
            )
        began = self._tick_began_ms
        if self._running and began is not None and self.interval_s:
            late_ms = max(60_000, int(3 * self.interval_s * 1000))
            if (age := self.clock() - began) > late_ms:
                where = " waiting on the executor" if self._in_executor else ""
                problems.append(
                    f"no engine tick for {human_duration(age // 1000)} "
                    f"(interval {human_duration(self.interval_s)}): a tick is stuck{where}"
                )
        return problems

    def slo_statuses(self) -> list[SloStatus]:
        """The latest status of each SLO evaluated so far (for ``GET /api/v1/slos``)."""
        return list(self._slo_statuses.values())

    def _slo_status(self) -> dict[str, Any]:
        last = self._slo_last
        return {
            "count": len(getattr(self.slo_evaluator, "slos", ())),
            "interval_seconds": self.slo_interval_s,
            "last_evaluation_ms": last.now_ms if last else None,
            "last_evaluation_seconds": last.duration_s if last else None,
            "firing": last.firing if last else 0,
            "errors": dict(last.errors) if last else {},
            "last_error": self._slo_last_error,
        }
