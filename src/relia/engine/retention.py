"""History retention: ``relia up`` deletes finished history older than ``retention``.

Findings, incidents and notification outbox items would otherwise pile up for as long as relia
runs (each outbox item holds a whole incident snapshot). Once at start and then every
``interval_s`` (an hour), :class:`HistoryPruner` asks the store to delete, in one transaction
(:meth:`relia.store.base.Store.prune_history`):

- incidents resolved more than ``retention`` ago (open ones never, whatever their age);
- outbox items delivered or given up more than ``retention`` ago (pending ones never, nor the
  item of a remaining incident's current version: a restart enqueues that version again, and
  its row is what makes that a no-op instead of a second notification; nor each sink's newest
  item of a remaining incident: a sink with a ``min_severity`` keeps hearing about an incident
  it heard about, :mod:`relia.notify.routing`);
- findings that ended more than ``retention`` ago and that no remaining incident lists.

With ``forget_after_s`` set (idle series forgetting, ``forget_after``), each round then also
deletes the series no replica has received for ``forget_after_s`` plus ``forget_grace_s`` (three
hours by default), with their samples and detector checkpoints
(:meth:`relia.store.base.Store.forget_series`). It is judged by each series' ``seen_at`` in the
store, which every replica receiving the series raises, never by the ts of its samples (a source
may back-fill old ones); the grace leaves time for a replica's pending ``seen_at`` writes and
clock skew between replicas, so a series the engine still holds is not deleted under it. Those
deletions count as kind ``series``. No series is forgotten before the engine has written the
receipt times of the series it holds since it started (or resumed after a pause): after downtime
longer than ``forget_after_s`` plus the grace, every stored ``seen_at`` is that old, those of
the series alive too.

It runs where notifications are delivered: beside the engine on a single node, and under HA
only on the leader (started and stopped with its tenure by :class:`relia.ha.duties.LeaderDuties`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter

from relia._failurelog import FailureLog
from relia.config import human_duration
from relia.store.base import Store

__all__ = ["HistoryPruner"]

log = logging.getLogger(__name__)

#: What ``prune_history`` counts, in the order the log line names them.
KINDS = ("findings", "incidents", "outbox")
#: What ``forget_series`` counts (idle series forgetting, with ``forget_after_s``).
SERIES = "series"


class HistoryPruner:
    """Deletes history older than ``retention_s`` from ``store`` every ``interval_s``.

    ``clock`` returns ms UTC (the engine's); ``registry`` receives
    ``relia_history_pruned_total{kind}`` (a private registry when None). With
    ``forget_after_s``, each round also forgets the series not seen for ``forget_after_s`` +
    ``forget_grace_s`` (kind ``series``; see the module docstring), and with ``may_forget``
    only while it returns True (the engine's :meth:`~relia.engine.loop.Engine.receipts_written`).
    :meth:`run_once`
    prunes now; :meth:`start` runs it in a thread, at once and then every ``interval_s``, until
    the given event is set. Deleting nothing logs nothing; deleting something logs one INFO line
    with the counts.
    """

    def __init__(
        self,
        store: Store,
        retention_s: float,
        clock: Callable[[], int],
        *,
        interval_s: float = 3600.0,
        retry_s: float = 60.0,
        registry: CollectorRegistry | None = None,
        forget_after_s: float | None = None,
        forget_grace_s: float = 3 * 3600.0,
        may_forget: Callable[[], bool] | None = None,
    ) -> None:
        self.store = store
        self.retention_ms = int(retention_s * 1000)
        self.clock = clock
        self.interval_s = float(interval_s)
        self.retry_s = float(retry_s)
        self.forget_after_ms = None if forget_after_s is None else int(forget_after_s * 1000)
        self.forget_grace_ms = int(forget_grace_s * 1000)
        self.may_forget = may_forget
        self.runs = 0
        self.deleted = dict.fromkeys(self._kinds, 0)
        self._failures = FailureLog(log, "pruning history (retried in a minute)")
        reg = registry if registry is not None else CollectorRegistry()
        self._pruned = Counter(
            "relia_history_pruned",
            "Rows deleted by history retention, per kind (findings, incidents, outbox; series: "
            "idle series forgotten).",
            ["kind"],
            registry=reg,
        )
        for kind in (*KINDS, SERIES):
            self._pruned.labels(kind=kind)  # exported at 0 before the first deletion

    @property
    def _kinds(self) -> tuple[str, ...]:
        return KINDS if self.forget_after_ms is None else (*KINDS, SERIES)

    def run_once(self) -> dict[str, int]:
        """Delete what is older than the retention now, then (with ``forget_after_s``) forget
        the idle series; returns the counts per kind (``series`` only with ``forget_after_s``).
        Raises what the store raises."""
        now = self.clock()
        counts = dict(self.store.prune_history(now - self.retention_ms))
        if self.forget_after_ms is not None:
            counts[SERIES] = 0
            # Not before the engine wrote the receipt times of the series it restored: after
            # downtime longer than forget_after plus the grace, every stored seen_at is that old.
            if self.may_forget is None or self.may_forget():
                cut = now - self.forget_after_ms - self.forget_grace_ms
                counts[SERIES] = int(self.store.forget_series(cut))
        self.runs += 1
        for kind in self._kinds:
            n = int(counts.get(kind, 0))
            if n:
                self.deleted[kind] += n
                self._pruned.labels(kind=kind).inc(n)
        if any(counts.get(k, 0) for k in self._kinds):
            line = "retention: deleted %d findings, %d incidents and %d notifications older than %s"
            args: list[object] = [
                *(int(counts.get(k, 0)) for k in KINDS),
                human_duration(self.retention_ms / 1000),
            ]
            if self.forget_after_ms is not None:
                line += " and %d series not seen for %s"
                args += [counts[SERIES], human_duration(self.forget_after_ms / 1000)]
            log.info(line, *args)
        return counts

    def run_round(self) -> bool:
        """:meth:`run_once`, its failure logged (:class:`~relia._failurelog.FailureLog`) rather
        than raised; returns whether it worked."""
        try:
            self.run_once()
        except Exception as exc:  # noqa: BLE001 - a store hiccup: the next round retries
            self._failures.failed(exc)
            return False
        self._failures.succeeded()
        return True

    def start(self, stop: threading.Event) -> threading.Thread:
        """Prune now and then every ``interval_s`` in a daemon thread, until ``stop`` is set; a
        round that failed is tried again after ``retry_s`` (a minute, at most the interval)."""

        def loop() -> None:
            while not stop.is_set():
                ok = self.run_round()
                stop.wait(self.interval_s if ok else min(self.retry_s, self.interval_s))

        thread = threading.Thread(target=loop, name="relia-retention", daemon=True)
        thread.start()
        return thread
