"""Findings → incidents → outbox: the engine's correlation and notification step.

Every batch of findings the engine stores (metric and log findings from its tick, SLO findings
from its SLO thread) goes through one :class:`IncidentCorrelator` under one lock. The incidents
that changed are saved, and each change a person should hear about (a new ``version``) becomes one
outbox item per sink, which the :class:`~relia.notify.Dispatcher` delivers in its own thread.

Crash safety without one big transaction: findings, incidents and outbox items are written in
that order, and every step can be redone from the one before it. On :meth:`start`:

- stored findings that no stored incident lists (relia died between storing them and saving
  their incident; or an incident dropped them, listing only the newest of each key) are
  correlated again: those that ended within the restore horizon (the last day), and older ones
  a restored incident dropped. Older ones are of incidents not restored, which counted them;
  retention deletes them;
- every recent incident's current version is enqueued again; the outbox ignores a dedup key it
  already has (``sink:incident:version``), so what was enqueued or delivered before is not
  repeated, and what was lost between saving an incident and enqueueing it is not lost.

While relia runs, a save or enqueue that fails (the store away for a moment) is redone by the
next round: the pipeline keeps the incidents it could not write, since the correlator has
already moved on and would not report them changed again.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence

from prometheus_client import Counter

from relia._failurelog import FailureLog
from relia.config import IncidentsConfig
from relia.incidents.correlate import IncidentCorrelator, finding_labels
from relia.incidents.model import OPEN_INCIDENTS_MAX, Finding, Incident, IncidentStatus, Severity
from relia.notify.routing import SeverityRouting
from relia.store.base import Store

__all__ = ["IncidentPipeline", "IncidentThread"]

log = logging.getLogger(__name__)

_DAY_MS = 86_400_000
#: The most findings a start reads to find those stored without an incident (a crash between
#: storing findings and saving their incident leaves a tick's worth, not this many).
_ORPHAN_SCAN_MAX = 100_000


class IncidentPipeline:
    """Correlates findings into incidents, saves them and enqueues their notifications.

    ``series_labels`` gives a series' labels by id (the engine's ``SeriesIndex.labels``);
    ``sinks`` names the configured sinks (none: incidents are kept, nothing is enqueued), or maps
    each to its ``min_severity`` (:mod:`relia.notify.routing`: which versions it hears about);
    ``wake`` is called after new notifications were enqueued (the dispatcher's ``notify``);
    ``filtered`` counts the versions a sink is not sent
    (:func:`relia.notify.routing.filtered_counter`).
    Thread-safe.
    """

    def __init__(
        self,
        store: Store,
        config: IncidentsConfig,
        series_labels: Callable[[int], Mapping[str, str] | None],
        *,
        sinks: Sequence[str] | Mapping[str, Severity] = (),
        wake: Callable[[], None] | None = None,
        filtered: Counter | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.routing = SeverityRouting(sinks, filtered=filtered)
        self.sinks = self.routing.sinks
        self.correlator = IncidentCorrelator(
            config,
            finding_labels(series_labels),
            recall=self._recall,
            recall_listing=self._recall_listing,
        )
        self._wake = wake
        self._lock = threading.Lock()
        self.enqueued = 0
        self.changed = 0
        #: Incidents changed in the correlator but not yet saved and enqueued (the store
        #: failed): the correlator has moved on and will not report them again, so each
        #: commit writes these first.
        self._unwritten: dict[str, Incident] = {}
        #: Findings the store just said no incident lists (a start's orphans): the correlator's
        #: lookup of the incident listing one of them is answered without asking again.
        self._unlisted: frozenset[str] = frozenset()

    def start(self, now: int) -> int:
        """Restore the correlator from the store and redo what a crash may have cut short;
        returns how many incidents were restored."""
        cfg = self.config
        horizon = int(max(cfg.reopen_window, cfg.flap_window, cfg.resolve_after) * 1000)
        restored_since = now - max(horizon, _DAY_MS)
        with self._lock:
            open_incs = self.store.incidents(status=IncidentStatus.OPEN, limit=OPEN_INCIDENTS_MAX)
            recent = self.store.incidents(
                since=restored_since, status=IncidentStatus.RESOLVED, limit=100_000
            )
            incidents = open_incs + [i for i in recent if i.status is IncidentStatus.RESOLVED]
            known = {fid for inc in incidents for fid in inc.finding_ids}
            since = min((i.start for i in incidents), default=restored_since)
            since = min(since, restored_since)
            # The restored incidents' own findings by id, whatever their age: an incident open
            # for weeks keeps every finding, however many others have ended since. And every
            # finding of the flap window, for the episodes of the keys they dropped.
            flap_since = now - int((cfg.flap_window + cfg.resolve_after) * 1000)
            self.correlator.seed(
                incidents,
                self.store.findings_by_ids(known),
                self.store.findings(since=flap_since, limit=_ORPHAN_SCAN_MAX),
            )
            # Orphans as the store says (listed by no stored incident), not as the restored
            # subset says: a finding of an incident resolved days ago is not one. One that
            # ended before ``restored_since`` only goes back to a restored incident that dropped
            # it: any other is a dropped one of an incident not restored, which counted it.
            stored = self.store.findings_without_incident(since, limit=_ORPHAN_SCAN_MAX)
            orphans = [
                f for f in stored if f.end >= restored_since or self.correlator.holds_dropped(f)
            ]
            if orphans:
                log.info("correlating %d findings stored without an incident", len(orphans))
                orphans.sort(key=lambda f: (f.start, f.id))
                self._unlisted = frozenset(f.id for f in orphans)
                try:
                    changed = self.correlator.update(orphans, now)
                finally:
                    self._unlisted = frozenset()
                self._commit(changed, now)
            # Re-enqueue the current version of every incident we know: a no-op for those
            # already in the outbox.
            self._enqueue(incidents, now)
        return len(incidents)

    def _recall(self, incident_id: str) -> tuple[Incident, list[Finding]] | None:
        """A stored incident with its stored findings, for the correlator to bring back one it
        forgot (its newest version: one a failed save left unwritten, else the store's)."""
        inc = self._unwritten.get(incident_id) or self.store.incident(incident_id)
        if inc is None:
            return None
        return inc, self.store.findings_by_ids(inc.finding_ids)

    def _recall_listing(self, finding_id: str) -> tuple[Incident, list[Finding]] | None:
        """The stored incident that lists ``finding_id``, with its stored findings, for the
        correlator to bring back a forgotten incident that one of its findings (not only the
        one that opened it) returns to; its newest version, as :meth:`_recall`."""
        if finding_id in self._unlisted:
            return None
        for pending in reversed(self._unwritten.values()):
            if finding_id in pending.finding_ids:
                return pending, self.store.findings_by_ids(pending.finding_ids)
        inc = self.store.incident_listing(finding_id)
        if inc is None or inc.id in self._unwritten:  # its newest version no longer lists it
            return None
        return inc, self.store.findings_by_ids(inc.finding_ids)

    def update(self, findings: list[Finding], now: int) -> list[Incident]:
        """Correlate new or grown ``findings`` (may be empty: incidents also resolve with time),
        save the incidents that changed and enqueue their notifications."""
        with self._lock:
            changed = self.correlator.update(findings, now)
            self._commit(changed, now)
        return changed

    def _commit(self, changed: list[Incident], now: int) -> None:
        """Save ``changed`` and enqueue their notifications, after what an earlier commit
        could not write (the newest version of each incident). Until both succeed they are
        kept; saving again is an upsert and the outbox ignores a dedup key it already has, so a
        retry repeats nothing a person sees."""
        if not changed and not self._unwritten:
            return
        for inc in changed:
            self._unwritten.pop(inc.id, None)  # re-inserted last: the newest version wins
            self._unwritten[inc.id] = inc
        pending = list(self._unwritten.values())
        self.store.save_incidents(pending)
        self._enqueue(pending, now)
        self._unwritten.clear()
        self.changed += len(pending)

    def _enqueue(self, incidents: list[Incident], now: int) -> None:
        if not self.sinks or not incidents:
            return
        items = self.routing.items_for(self.store, incidents, now)
        new = self.store.enqueue_notifications(items)
        self.enqueued += new
        if new and self._wake is not None:
            self._wake()

    def open_incidents(self) -> int:
        """How many incidents are open now."""
        with self._lock:
            return sum(1 for i in self.correlator.incidents() if i.status is IncidentStatus.OPEN)


class IncidentThread:
    """Runs an :class:`IncidentPipeline` in a thread of its own, at most once per ``period_s``.

    Why not in the engine's tick: correlating costs per round (every touched incident is
    re-summarised, saved and compared), not per finding, and under remote-write load the engine
    ticks many times a second. Handing findings over and correlating them once per period keeps
    that cost off the path from a sample's receipt to its finding being stored, and bounds it
    under a storm of findings. Incidents lag their findings by at most about ``period_s``.

    Nothing is lost by the hand-over: findings are stored before they are submitted, and a
    restart correlates stored findings that no incident holds (:meth:`IncidentPipeline.start`).
    A round that fails keeps its findings for the next one. :meth:`stop` runs a last round for
    what was submitted before it.
    """

    def __init__(
        self,
        pipeline: IncidentPipeline,
        clock: Callable[[], int],
        *,
        period_s: float = 1.0,
        on_error: Callable[[Exception], None] | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.clock = clock
        self.period_s = period_s
        self.rounds = 0
        self._on_error = on_error
        self._failures = FailureLog(log, "correlating incidents (retried each round)")
        self._pending: list[Finding] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """Whether the thread is running (submitted findings are correlated by it)."""
        return self._thread is not None

    def submit(self, findings: Sequence[Finding]) -> None:
        """Hand stored findings over; they are correlated in the next round."""
        if findings:
            with self._lock:
                self._pending.extend(findings)

    def start(self) -> None:
        """Start the rounds (no-op when running)."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="relia-incidents", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Stop the rounds after a last one for what was submitted."""
        thread, self._thread = self._thread, None
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout)

    def run_round(self) -> None:
        """Correlate what was submitted (possibly nothing: incidents also resolve with time)."""
        with self._lock:
            batch, self._pending = self._pending, []
        try:
            self.pipeline.update(batch, self.clock())
        except Exception:
            with self._lock:  # try them again next round, ahead of what came since
                self._pending[:0] = batch
            raise
        self.rounds += 1

    def _loop(self) -> None:
        while True:
            stopping = self._stop.wait(self.period_s)
            try:
                self.run_round()
            except Exception as exc:  # noqa: BLE001 - a store hiccup: the next round retries
                self._failures.failed(exc)
                if self._on_error is not None:
                    self._on_error(exc)
            else:
                self._failures.succeeded()
            if stopping:
                return
