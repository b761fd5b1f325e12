"""What only the leader does: correlate findings into incidents, deliver the outbox, delete
history older than ``retention`` (:class:`~relia.engine.retention.HistoryPruner`).

Every replica's engine stores its findings (it runs without an incident pipeline under HA). The
leader reads them back from the shared store every ``interval_s`` (:class:`FindingsFeed`: the
findings that are new or changed since its last read) and passes them to an
:class:`~relia.engine.incidents.IncidentPipeline` made for its tenure, and it runs the
:class:`~relia.notify.Dispatcher`'s thread. A new tenure starts with ``IncidentPipeline.start``,
which seeds from the store and correlates the findings the previous leader never did (the crash
recovery path), so nothing stored is left out across a failover.

Writes are fenced the way sends are: each round asks the database whether the tenure's token
still holds the lease before it correlates and saves. The window: a leader that freezes between
that check and its writes for longer than the lease may save one round of incident changes after
its successor started (the outbox keeps one item per ``sink:incident:version``, so a change is
still notified at most once per version, and the successor's next round rewrites the incidents
from the findings).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry

from relia._failurelog import FailureLog
from relia.config import HaConfig
from relia.engine.incidents import IncidentPipeline
from relia.engine.retention import HistoryPruner
from relia.ha.leader import LeaderElector
from relia.ha.lease import Lease
from relia.incidents.model import Finding
from relia.notify.dispatcher import Dispatcher, Fence
from relia.store.base import Store

__all__ = ["FindingsFeed", "HaRuntime", "LeaderDuties", "ha_dsn"]

log = logging.getLogger("relia.ha")

#: The least time a correlation round may take before the leader counts as stuck (see
#: ``HaRuntime.start``; 3 lease TTLs when that is longer).
STUCK_MIN_S = 30.0

#: Findings read per query, and the most one poll returns (the rest comes with the next).
_PAGE = 10_000
_POLL_MAX = 100_000


class FindingsFeed:
    """The findings stored in ``store`` (new, or replaced as they grew; by any replica) since the
    last :meth:`poll`, in store order (``Store.findings_after``): every one, however many were
    stored and whatever their times, the writers' clocks or the leader's. A finding stored again
    unchanged is passed again, harmlessly."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._last = 0  # the store order number read last

    def reset(self) -> None:
        """Count what the store holds now as seen (call before the pipeline's ``start``, which
        handles those: what is stored in between is passed once more, harmlessly)."""
        self._last = self.store.findings_seq()

    def poll(self) -> list[Finding]:
        """The findings stored since the last call (at most ``_POLL_MAX``: paged on from where
        the last call stopped, so a storm takes several rounds but loses nothing)."""
        out: list[Finding] = []
        while len(out) < _POLL_MAX:
            page = self.store.findings_after(self._last, _PAGE)
            out.extend(f for _, f in page)
            if page:
                self._last = page[-1][0]
            if len(page) < _PAGE:
                break
        return out


class LeaderDuties:
    """Starts the leader's work on :meth:`elected` and stops it on :meth:`demoted` (the
    elector's callbacks). ``make_pipeline`` builds a fresh pipeline per tenure (a demoted
    leader's correlator state is stale by the time it leads again). ``pruner``, when given,
    runs for each tenure beside the dispatcher."""

    def __init__(
        self,
        store: Store,
        make_pipeline: Callable[[], IncidentPipeline],
        fence: Fence,
        *,
        dispatcher: Dispatcher | None,
        interval_s: float,
        clock: Callable[[], int],
        pruner: HistoryPruner | None = None,
    ) -> None:
        self.store = store
        self.pruner = pruner
        self.make_pipeline = make_pipeline
        self.fence = fence
        self.dispatcher = dispatcher
        self.interval_s = float(interval_s)
        self.clock = clock
        self._stop: threading.Event | None = None
        self._threads: list[threading.Thread] = []
        self.rounds = 0
        #: When the correlation round under way began (monotonic s; None between rounds).
        self._round_since: float | None = None

    def elected(self, token: int) -> None:
        """Start correlating, delivering and pruning under ``token``."""
        self.demoted()  # never two tenures' threads at once
        stop = threading.Event()
        self._stop = stop
        lead = threading.Thread(
            target=self._lead, args=(token, stop), name="relia-incidents", daemon=True
        )
        lead.start()
        self._threads = [lead]
        if self.dispatcher is not None:
            self._threads.append(self.dispatcher.start(stop))
        if self.pruner is not None:  # one replica deletes old history: the leader
            self._threads.append(self.pruner.start(stop))

    def demoted(self, timeout: float = 10.0) -> None:
        """Stop both at once (each checks the fence before its next write or send anyway)."""
        stop, self._stop = self._stop, None
        if stop is None:
            return
        stop.set()
        if self.dispatcher is not None:
            self.dispatcher.notify()
        for t in self._threads:
            t.join(timeout)
        self._threads = []

    def _lead(self, token: int, stop: threading.Event) -> None:
        pipeline: IncidentPipeline | None = None
        feed = FindingsFeed(self.store)
        failures = FailureLog(log, "leader: correlating incidents (retried each round)")
        while not stop.is_set():
            self._round_since = time.monotonic()
            try:
                if self.fence.token() != token or not self.fence.check(token):
                    return
                now = self.clock()
                if pipeline is None:
                    feed.reset()
                    candidate = self.make_pipeline()
                    restored = candidate.start(now)
                    pipeline = candidate
                    log.info("leading: %d incidents restored from the store", restored)
                else:
                    pipeline.update(feed.poll(), now)
                self.rounds += 1
                failures.succeeded()
            except Exception as exc:  # noqa: BLE001 - a store hiccup: try again next round
                failures.failed(exc)
            finally:
                self._round_since = None
            stop.wait(self.interval_s)

    def stuck(self, limit_s: float) -> str | None:
        """Why this replica cannot do the leader's work (a correlation round under way for more
        than ``limit_s``: its store connections hang; its store refuses every write, as a newer
        relia migrated it), or None. Also true of a round of an
        earlier tenure that never returned: such a replica should not lead again."""
        outdated = getattr(self.store, "outdated", None)
        if isinstance(outdated, str):  # a newer relia migrated the store: it writes nothing
            return outdated
        since = self._round_since
        if since is None or time.monotonic() - since <= limit_s:
            return None
        return f"a correlation round has not completed in {time.monotonic() - since:.0f}s"


def ha_dsn(store_setting: object) -> str | None:
    """The PostgreSQL DSN when ``store`` (``ReliaConfig.store``) names one, else None: HA is on
    exactly when the store is PostgreSQL."""
    if isinstance(store_setting, str) and store_setting.lower().startswith(
        ("postgresql://", "postgres://")
    ):
        scheme, sep, rest = store_setting.partition("://")
        return f"{scheme.lower()}{sep}{rest}"  # libpq takes the scheme in lower case only
    return None


class HaRuntime:
    """HA for one ``relia up``: the lease (own connection to ``dsn``), the elector (its fence
    goes to the dispatcher) and, once :meth:`start` is given them, the leader's duties."""

    def __init__(
        self, dsn: str, config: HaConfig, registry: CollectorRegistry | None = None
    ) -> None:
        replica = config.replica_id or f"{socket.gethostname()}:{os.getpid()}"
        # A lease call that takes longer than a renewal interval is as good as failed.
        self.lease = Lease(dsn, replica, config.lease_ttl, timeout=min(2.0, config.renew_interval))
        self.elector = LeaderElector(
            self.lease, renew_interval=config.renew_interval, registry=registry
        )
        self.duties: LeaderDuties | None = None

    def start(self, duties: LeaderDuties) -> None:
        """Start competing for the lease; ``duties`` run while this replica leads."""
        self.duties = duties
        self.elector.set_callbacks(on_elected=duties.elected, on_demoted=duties.demoted)
        # A leader whose store connections hang (while the lease's own connection works) would
        # keep the lease and do nothing. Generous, so a slow start on a large store (seeding
        # the correlator) is not taken for a hang.
        limit = max(3 * self.lease.ttl, STUCK_MIN_S)
        self.elector.set_health(lambda: duties.stuck(limit))
        self.elector.start()
        log.info(
            "HA: replica %s competes for lease %s (ttl %gs)",
            self.lease.holder,
            self.lease.name,
            self.lease.ttl,
        )

    def stop(self) -> None:
        """Stop leading (duties stopped) and give the lease up, so another replica takes over
        at once; close the lease's connection."""
        try:
            self.elector.stop(release=True)
        finally:
            self.lease.close()

    def status(self) -> dict[str, Any]:
        """This replica's part in HA, for ``/healthz``."""
        return self.elector.status()
