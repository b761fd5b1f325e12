"""The leader's duties: the findings feed, and correlation + delivery that run only while the
fence holds."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from relia.config import IncidentsConfig
from relia.engine.incidents import IncidentPipeline
from relia.errors import StoreError
from relia.ha.duties import FindingsFeed, LeaderDuties, ha_dsn
from relia.incidents.model import Finding, FindingKind, Incident, Severity
from tests.engine.memstore import MemoryStore

T0 = 1_716_200_000_000
M = 60_000


def finding(key: str, start: int, end: int | None = None) -> Finding:
    return Finding(
        id=Finding.make_id(FindingKind.METRIC, key, start, "t"), kind=FindingKind.METRIC,
        key=key, start=start, end=start + M if end is None else end, score=0.8,
        severity=Severity.WARNING, detector="t", summary=f"{key} is odd",
    )  # fmt: skip


def test_the_feed_gives_new_and_grown_findings_once() -> None:
    store = MemoryStore()
    old = finding('cpu{job="api"}', T0)
    store.add_findings([old])
    feed = FindingsFeed(store, horizon_ms=10 * M)
    feed.reset(T0)
    assert feed.poll(T0) == []  # what the pipeline's start handled is not passed again
    new = finding('mem{job="api"}', T0 + 1000)
    store.add_findings([new])
    assert feed.poll(T0 + 2000) == [new]
    assert feed.poll(T0 + 3000) == []
    grown = old.model_copy(update={"end": old.end + M})
    store.add_findings([grown])
    assert feed.poll(T0 + 4000) == [grown]
    # Past the horizon a finding is forgotten (memory stays bounded), and not passed again.
    assert feed.poll(T0 + 30 * M) == []
    assert feed._seen == {}


def test_ha_is_on_exactly_for_a_postgresql_store() -> None:
    assert ha_dsn("postgresql://u@h/db") == "postgresql://u@h/db"
    assert ha_dsn("postgres://u@h/db") == "postgres://u@h/db"
    assert ha_dsn(None) is None and ha_dsn("./relia-data") is None


class Fence:
    def __init__(self, token: int | None) -> None:
        self.held = token
        self.ok = True

    def token(self) -> int | None:
        return self.held

    def check(self, token: int) -> bool:
        return self.ok and token == self.held


def wait_for(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    t0 = time.monotonic()
    while not pred():
        assert time.monotonic() - t0 < timeout, "not reached in time"
        time.sleep(0.01)


def duties(store: MemoryStore, fence: Fence) -> tuple[LeaderDuties, list[IncidentPipeline]]:
    made: list[IncidentPipeline] = []

    def make() -> IncidentPipeline:
        made.append(IncidentPipeline(store, IncidentsConfig(), lambda sid: None, sinks=["am"]))
        return made[-1]

    d = LeaderDuties(
        store, make, fence, dispatcher=None, interval_s=0.01, horizon_s=600, clock=lambda: T0
    )
    return d, made


def test_the_leader_correlates_what_any_replica_stored_and_stops_when_demoted() -> None:
    store = MemoryStore()
    # Stored by a follower before this replica was elected: an orphan the start picks up.
    store.add_findings([finding('cpu{job="api"}', T0 - M)])
    fence = Fence(5)
    d, made = duties(store, fence)
    d.elected(5)
    wait_for(lambda: len(store.incidents()) == 1)
    # Stored (by anyone) while leading: the feed passes it on.
    store.add_findings([finding('cpu{job="db"}', T0 - 30_000)])
    wait_for(lambda: len(store.incidents()) == 2)
    assert len(made) == 1 and store.outbox_counts()["am"]["pending"] == 2
    d.demoted()
    rounds = d.rounds
    store.add_findings([finding('cpu{job="web"}', T0 - 20_000)])
    time.sleep(0.1)
    assert d.rounds == rounds and len(store.incidents()) == 2
    # Elected again: a fresh pipeline, which finds the orphan.
    fence.held = 6
    d.elected(6)
    wait_for(lambda: len(store.incidents()) == 3)
    assert len(made) == 2
    d.demoted()


def test_a_stale_fence_stops_correlation_before_it_writes() -> None:
    store = MemoryStore()
    store.add_findings([finding('cpu{job="api"}', T0 - M)])
    fence = Fence(5)
    fence.ok = False  # the token moved on before the first round
    d, made = duties(store, fence)
    d.elected(5)
    done = threading.Event()
    threading.Thread(target=lambda: (d._threads[0].join(5), done.set()), daemon=True).start()
    assert done.wait(5)  # the thread ended by itself
    assert made == [] and store.incidents() == []
    d.demoted()


def test_findings_of_a_round_whose_writes_failed_are_correlated_by_the_next() -> None:
    class OutageStore(MemoryStore):
        fail_saves = 0

        def save_incidents(self, incidents: list[Incident]) -> None:
            if self.fail_saves:
                self.fail_saves -= 1
                raise StoreError("cannot connect to the store: connection refused")
            super().save_incidents(incidents)

    store = OutageStore()
    fence = Fence(5)
    d, made = duties(store, fence)
    d.elected(5)
    wait_for(lambda: d.rounds >= 2)  # leading: the pipeline has started
    store.fail_saves = 1  # the next round's write of incidents fails once
    store.add_findings([finding('cpu{job="db"}', T0 - 30_000)])
    wait_for(lambda: len(store.incidents()) == 1)
    assert store.fail_saves == 0
    d.demoted()
