"""Which sinks hear about which incident versions: each sink's ``min_severity``.

A sink hears about an incident from its first version whose severity reaches the sink's minimum,
and then about every later version (a downgrade below the minimum and the resolution included),
so a pager told that an incident opened is always told that it resolved. An incident that never
reaches the minimum is never sent to that sink, not even its resolution. A sink whose minimum is
``info`` (the default) hears every version, as if there were no filter.

"This sink already heard about this incident" is read from the store: the sink has an outbox
item for the incident (any status: pending, delivered, given up). The decision is taken when the
items are enqueued, so nothing is enqueued for a version a sink must not hear; the dispatcher
delivers what is in the outbox as before. The store keeps what the rule needs: history retention
(:meth:`relia.store.base.Store.prune_history`) keeps each sink's newest item of every remaining
incident, so the rule holds across restarts and pruning, and for every replica under HA.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter

from relia.incidents.model import SEVERITY_RANK, Incident, Severity
from relia.notify.outbox import OutboxItem, notifications_for

__all__ = ["HeardStore", "SeverityRouting", "filtered_counter", "reaches"]

#: Filtered (sink, incident) pairs remembered for counting each version once.
_COUNTED_MAX = 100_000


def reaches(severity: Severity | str, minimum: Severity | str) -> bool:
    """Whether ``severity`` is at least ``minimum`` (info < warning < critical)."""
    return SEVERITY_RANK[Severity(severity)] >= SEVERITY_RANK[Severity(minimum)]


def filtered_counter(registry: CollectorRegistry, sinks: Iterable[str]) -> Counter:
    """``relia_notify_filtered_total{sink}``: the incident versions a sink was not sent because
    they were under its ``min_severity`` before it heard of the incident, each sink's at zero from
    the start. Made once per process (a pipeline is made per leader tenure) and handed to each
    :class:`SeverityRouting`."""
    counter = Counter(
        "relia_notify_filtered",
        "Incident versions a sink was not sent: under its min_severity, not yet heard of",
        ["sink"],
        registry=registry,
    )
    for sink in sinks:
        counter.labels(sink=sink)
    return counter


class HeardStore(Protocol):
    """What the routing needs from the store (a part of :class:`relia.store.base.Store`)."""

    def notified_incidents(
        self, sinks: Collection[str], incident_ids: Collection[str]
    ) -> set[tuple[str, str]]: ...


class SeverityRouting:
    """The sinks, in order, and the least severity each must see before it hears about an
    incident. ``sinks`` is a list of names (no minimum: every sink hears everything) or a
    mapping from name to minimum. ``filtered`` (:func:`filtered_counter`) counts by sink the
    versions it is not sent."""

    def __init__(
        self,
        sinks: Sequence[str] | Mapping[str, Severity | str],
        *,
        filtered: Counter | None = None,
    ) -> None:
        if isinstance(sinks, Mapping):
            self._min = {str(n): Severity(m) for n, m in sinks.items()}
        else:
            self._min = {str(n): Severity.INFO for n in sinks}
        self._filtered = filtered
        #: The ``now`` of the first :meth:`items_for` call: versions made before it were made
        #: (and counted) by an earlier process or leader, and come back only as replays.
        self._since: int | None = None
        #: (sink, incident id) -> the newest version counted as filtered, so a version handed
        #: over again (a growth without a new version, a commit retried) counts once.
        self._counted: dict[tuple[str, str], int] = {}

    @property
    def sinks(self) -> list[str]:
        """The sink names, in order."""
        return list(self._min)

    def minimum(self, sink: str) -> Severity:
        """The least severity that starts notifying ``sink`` (info for an unknown name)."""
        return self._min.get(sink, Severity.INFO)

    @property
    def filters(self) -> bool:
        """Whether some sink does not hear every version."""
        return any(m is not Severity.INFO for m in self._min.values())

    def items_for(
        self, store: HeardStore, incidents: Sequence[Incident], now: int
    ) -> list[OutboxItem]:
        """The outbox items for the current version of each of ``incidents``: one per sink that
        hears about it. Asks ``store`` which sinks already heard about an incident only for the
        versions below some sink's minimum (with no minimum set, never)."""
        below = {
            (s, inc.id)
            for inc in incidents
            for s, m in self._min.items()
            if not reaches(inc.severity, m)
        }
        heard: set[tuple[str, str]] = set()
        if below:
            heard = store.notified_incidents(
                sorted({s for s, _ in below}), sorted({i for _, i in below})
            )
        out: list[OutboxItem] = []
        for inc in incidents:
            sinks = [s for s in self._min if (s, inc.id) not in below or (s, inc.id) in heard]
            if sinks:
                out.extend(notifications_for(inc, sinks, now))
        if self._filtered is not None:
            self._count_filtered(incidents, below - heard, now)
        return out

    def _count_filtered(
        self, incidents: Sequence[Incident], filtered: set[tuple[str, str]], now: int
    ) -> None:
        """Count each filtered version once: not again when it is handed over again, nor when a
        restart (or a new HA leader) re-enqueues the versions already known (they were counted
        by the process that made them)."""
        if self._since is None:
            self._since = now
        versions = {inc.id: (inc.version, inc.updated_at) for inc in incidents}
        for sink, iid in filtered:
            version, updated_at = versions[iid]
            if updated_at < self._since or self._counted.get((sink, iid), 0) >= version:
                continue
            self._counted[(sink, iid)] = version
            self._filtered.labels(sink=sink).inc()  # type: ignore[union-attr]
        if len(self._counted) > _COUNTED_MAX:  # the oldest half: incidents long gone
            for key in list(self._counted)[: _COUNTED_MAX // 2]:
                del self._counted[key]

    def heard_of(
        self, store: HeardStore, sink: str, incidents: Sequence[Incident]
    ) -> list[Incident]:
        """Those of ``incidents`` that ``sink`` hears about at their current version (what it
        may be re-sent: Alertmanager's refresh of the open incidents), in their order."""
        minimum = self.minimum(sink)
        below = [inc.id for inc in incidents if not reaches(inc.severity, minimum)]
        if not below:
            return list(incidents)
        heard = {i for _, i in store.notified_incidents([sink], below)}
        return [inc for inc in incidents if reaches(inc.severity, minimum) or inc.id in heard]
