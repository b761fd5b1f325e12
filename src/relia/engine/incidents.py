"""Findings → incidents → outbox: the engine's correlation and notification step.

Every batch of findings the engine stores (metric and log findings from its tick, SLO findings
from its SLO thread) goes through one :class:`IncidentCorrelator` under one lock. The incidents
that changed are saved, and each change a person should hear about (a new ``version``) becomes one
outbox item per sink, which the :class:`~relia.notify.Dispatcher` delivers in its own thread.

Crash safety without one big transaction: findings, incidents and outbox items are written in
that order, and every step can be redone from the one before it. On :meth:`start`:

- stored findings that no stored incident holds (relia died between storing them and saving
  their incident) are correlated again;
- every recent incident's current version is enqueued again; the outbox ignores a dedup key it
  already has (``sink:incident:version``), so what was enqueued or delivered before is not
  repeated, and what was lost between saving an incident and enqueueing it is not lost.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence

from relia.config import IncidentsConfig
from relia.incidents.correlate import IncidentCorrelator, finding_labels
from relia.incidents.model import Finding, Incident, IncidentStatus
from relia.notify.outbox import notifications_for
from relia.store.base import Store

__all__ = ["IncidentPipeline"]

log = logging.getLogger(__name__)

_DAY_MS = 86_400_000


class IncidentPipeline:
    """Correlates findings into incidents, saves them and enqueues their notifications.

    ``series_labels`` gives a series' labels by id (the engine's ``SeriesIndex.labels``);
    ``sinks`` names the configured sinks (none: incidents are kept, nothing is enqueued);
    ``wake`` is called after new notifications were enqueued (the dispatcher's ``notify``).
    Thread-safe.
    """

    def __init__(
        self,
        store: Store,
        config: IncidentsConfig,
        series_labels: Callable[[int], Mapping[str, str] | None],
        *,
        sinks: Sequence[str] = (),
        wake: Callable[[], None] | None = None,
    ) -> None:
        self.store = store
        self.config = config
        self.sinks = list(sinks)
        self.correlator = IncidentCorrelator(config, finding_labels(series_labels))
        self._wake = wake
        self._lock = threading.Lock()
        self.enqueued = 0
        self.changed = 0

    def start(self, now: int) -> int:
        """Restore the correlator from the store and redo what a crash may have cut short;
        returns how many incidents were restored."""
        cfg = self.config
        horizon = int(max(cfg.reopen_window, cfg.flap_window, cfg.resolve_after) * 1000)
        with self._lock:
            open_incs = self.store.incidents(status=IncidentStatus.OPEN, limit=100_000)
            recent = self.store.incidents(
                since=now - max(horizon, _DAY_MS), status=IncidentStatus.RESOLVED, limit=100_000
            )
            incidents = open_incs + [i for i in recent if i.status is IncidentStatus.RESOLVED]
            known = {fid for inc in incidents for fid in inc.finding_ids}
            since = min((i.start for i in incidents), default=now - horizon)
            since = min(since, now - horizon)
            findings = self.store.findings(since=since, limit=100_000)
            seeded = [f for f in findings if f.id in known]
            self.correlator.seed(incidents, seeded)
            orphans = [f for f in findings if f.id not in known]
            if orphans:
                log.info("correlating %d findings stored without an incident", len(orphans))
                orphans.sort(key=lambda f: (f.start, f.id))
                self._commit(self.correlator.update(orphans, now), now)
            # Re-enqueue the current version of every incident we know: a no-op for those
            # already in the outbox.
            self._enqueue(incidents, now)
        return len(incidents)

    def update(self, findings: list[Finding], now: int) -> list[Incident]:
        """Correlate new or grown ``findings`` (may be empty: incidents also resolve with time),
        save the incidents that changed and enqueue their notifications."""
        with self._lock:
            changed = self.correlator.update(findings, now)
            self._commit(changed, now)
        return changed

    def _commit(self, changed: list[Incident], now: int) -> None:
        if not changed:
            return
        self.store.save_incidents(changed)
        self.changed += len(changed)
        self._enqueue(changed, now)

    def _enqueue(self, incidents: list[Incident], now: int) -> None:
        if not self.sinks or not incidents:
            return
        items = [it for inc in incidents for it in notifications_for(inc, self.sinks, now)]
        new = self.store.enqueue_notifications(items)
        self.enqueued += new
        if new and self._wake is not None:
            self._wake()

    def open_incidents(self) -> int:
        """How many incidents are open now."""
        with self._lock:
            return sum(1 for i in self.correlator.incidents() if i.status is IncidentStatus.OPEN)
