"""The leader's duties: the findings feed, and correlation + delivery that run only while the
fence holds."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable

import pytest

from relia.config import HaConfig, IncidentsConfig
from relia.engine.incidents import IncidentPipeline
from relia.errors import StoreError
from relia.ha.duties import FindingsFeed, HaRuntime, LeaderDuties, ha_dsn
from relia.ha.lease import Lease, LeaseUnavailable
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
    feed = FindingsFeed(store)
    feed.reset()
    assert feed.poll() == []  # what the pipeline's start handled is not passed again
    new = finding('mem{job="api"}', T0 + 1000)
    store.add_findings([new])
    assert feed.poll() == [new]
    assert feed.poll() == []
    grown = old.model_copy(update={"end": old.end + M})
    store.add_findings([grown])
    assert feed.poll() == [grown]
    assert feed.poll() == []


def test_the_feed_gives_every_finding_of_a_storm_whatever_its_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # One poll used to read the newest 10,000 by end: the rest were never correlated. Paged in
    # store order (pages of 3 here), each poll returns up to its bound and the next goes on.
    from relia.ha import duties as duties_module

    monkeypatch.setattr(duties_module, "_PAGE", 3)
    monkeypatch.setattr(duties_module, "_POLL_MAX", 7)
    store = MemoryStore()
    feed = FindingsFeed(store)
    feed.reset()
    storm = [finding(f'cpu{{host="{i}"}}', T0 + i) for i in range(10)]
    store.add_findings(storm)
    got = feed.poll()
    assert len(got) == 9  # three pages: past the bound of 7, the next poll goes on
    got += feed.poll()
    assert got == storm and feed.poll() == []


def test_the_feed_does_not_depend_on_the_findings_times_or_the_leaders_clock() -> None:
    # A leader whose clock runs 15 minutes ahead, a follower's finding from its samples' times,
    # a backfilled finding from yesterday: each is passed once, when it is stored.
    store = MemoryStore()
    feed = FindingsFeed(store)
    feed.reset()
    fresh = finding('cpu{host="a"}', T0)
    old = finding('cpu{host="b"}', T0 - 24 * 60 * M)
    store.add_findings([fresh, old])
    assert feed.poll() == [fresh, old]


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
        store, make, fence, dispatcher=None, interval_s=0.01, clock=lambda: T0 + 15 * M
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
    lead = d._threads[0]
    lead.join(5)
    assert not lead.is_alive()  # the thread ended by itself
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


def test_a_finding_whose_severity_changed_is_passed_again() -> None:
    store = MemoryStore()
    f = finding('cpu{job="api"}', T0)
    store.add_findings([f])
    feed = FindingsFeed(store)
    feed.reset()
    worse = f.model_copy(update={"severity": Severity.CRITICAL, "score": 0.99})
    store.add_findings([worse])
    assert feed.poll() == [worse]
    reworded = worse.model_copy(update={"summary": "cpu is very odd"})
    store.add_findings([reworded])
    assert feed.poll() == [reworded]


def test_a_finding_stored_late_is_correlated_while_leading_whatever_the_leaders_clock() -> None:
    store = MemoryStore()
    fence = Fence(5)
    d, _made = duties(store, fence)  # the leader's clock: 15 minutes ahead of the samples
    d.elected(5)
    wait_for(lambda: d.rounds >= 2)
    # Stored late by a follower: it ended 4 minutes before T0, 19 by the leader's clock.
    store.add_findings([finding('cpu{job="db"}', T0 - 5 * M, T0 - 4 * M)])
    wait_for(lambda: len(store.incidents()) == 1)
    d.demoted()


def test_a_start_that_failed_on_the_store_is_redone_and_picks_up_the_orphans() -> None:
    class OutageStore(MemoryStore):
        fail_reads = 1

        def incidents(self, *args: object, **kwargs: object) -> list[Incident]:
            if self.fail_reads:
                self.fail_reads -= 1
                raise StoreError("cannot connect to the store: connection refused")
            return super().incidents(*args, **kwargs)  # type: ignore[arg-type]

    store = OutageStore()
    # Stored by a follower before this replica was elected, never correlated.
    store.add_findings([finding('cpu{job="api"}', T0 - M)])
    fence = Fence(5)
    d, made = duties(store, fence)
    d.elected(5)  # the first round's start fails on the store
    wait_for(lambda: len(store.incidents()) == 1)
    assert store.fail_reads == 0 and len(made) == 2
    d.demoted()


def test_a_finding_stored_while_the_tenure_starts_is_correlated_by_the_next_round() -> None:
    store = MemoryStore()
    late = finding('cpu{job="db"}', T0 - 30_000)

    class Starting(IncidentPipeline):
        def start(self, now: int) -> int:
            restored = super().start(now)
            store.add_findings([late])  # a follower stores it just after start read the store
            return restored

    fence = Fence(5)
    d = LeaderDuties(
        store,
        lambda: Starting(store, IncidentsConfig(), lambda sid: None, sinks=["am"]),
        fence,
        dispatcher=None,
        interval_s=0.01,
        clock=lambda: T0,
    )
    d.elected(5)
    wait_for(lambda: len(store.incidents()) == 1)
    d.demoted()


class FakeDispatcher:
    """Records the delivery threads it started and the stop events they were given."""

    def __init__(self) -> None:
        self.stops: list[threading.Event] = []
        self.woken = 0

    def start(self, stop: threading.Event) -> threading.Thread:
        self.stops.append(stop)
        t = threading.Thread(target=stop.wait, daemon=True)
        t.start()
        return t

    def notify(self) -> None:
        self.woken += 1


def test_a_new_election_ends_the_previous_tenures_delivery_and_demotion_ends_the_last() -> None:
    store = MemoryStore()
    fence = Fence(5)
    dispatcher = FakeDispatcher()
    d = LeaderDuties(
        store,
        lambda: IncidentPipeline(store, IncidentsConfig(), lambda sid: None, sinks=["am"]),
        fence,
        dispatcher=dispatcher,  # type: ignore[arg-type]
        interval_s=0.01,
        clock=lambda: T0,
    )
    d.elected(5)
    fence.held = 6
    d.elected(6)  # elected again without a demotion in between: never two senders
    assert [s.is_set() for s in dispatcher.stops] == [True, False]
    d.demoted()
    assert [s.is_set() for s in dispatcher.stops] == [True, True] and dispatcher.woken == 2


def test_the_leader_prunes_history_while_it_leads_and_stops_when_demoted() -> None:
    from relia.engine.retention import HistoryPruner
    from relia.incidents.model import IncidentStatus

    store = MemoryStore()
    day = 86_400_000
    old = finding('cpu{job="old"}', T0 - 41 * day)
    store.add_findings([old])
    store.save_incidents(
        [
            Incident(
                id="old", status=IncidentStatus.RESOLVED, title="old", severity=Severity.WARNING,
                labels={}, start=old.start, end=old.end, opened_at=old.start,
                updated_at=T0 - 40 * day, resolved_at=T0 - 40 * day, version=2,
                finding_ids=[old.id], keys=[old.key], cause=[],
            )
        ]
    )  # fmt: skip
    fence = Fence(5)
    pruner = HistoryPruner(store, 30 * 86400, lambda: T0, interval_s=0.01)
    d = LeaderDuties(
        store,
        lambda: IncidentPipeline(store, IncidentsConfig(), lambda sid: None),
        fence,
        dispatcher=None,
        interval_s=0.01,
        clock=lambda: T0,
        pruner=pruner,
    )
    time.sleep(0.05)
    assert pruner.runs == 0 and store.incident("old") is not None  # a follower never prunes
    d.elected(5)
    wait_for(lambda: store.incident("old") is None)
    assert store.findings(limit=10) == [] and pruner.deleted["findings"] == 1
    d.demoted()
    runs = pruner.runs
    time.sleep(0.1)
    assert pruner.runs == runs  # demoted: no more rounds


def test_the_replica_id_is_the_configured_one_or_host_and_pid() -> None:
    dsn = "postgresql://u@127.0.0.1:1/db"
    named = HaRuntime(dsn, HaConfig(replica_id="east-1"))
    assert named.status()["replica_id"] == "east-1" and named.status()["leader"] is False
    default = HaRuntime(dsn, HaConfig())
    assert default.status()["replica_id"] == f"{socket.gethostname()}:{os.getpid()}"


@pytest.mark.integration
def test_a_stopping_replica_hands_the_lease_over_at_once(postgres_dsn: str) -> None:
    with Lease(postgres_dsn, "b", 30.0) as other:
        other.ensure_schema()
        runtime = HaRuntime(
            postgres_dsn, HaConfig(lease_ttl=30.0, renew_interval=0.1, replica_id="a")
        )
        store = MemoryStore()
        d = LeaderDuties(
            store,
            lambda: IncidentPipeline(store, IncidentsConfig(), lambda sid: None, sinks=["am"]),
            runtime.elector,
            dispatcher=None,
            interval_s=0.01,
            clock=lambda: T0,
        )
        runtime.start(d)
        try:
            wait_for(lambda: runtime.status()["leader"])
        finally:
            runtime.stop()
        assert runtime.status()["leader"] is False
        # Released, not left to run out its 30 s: another replica takes it now.
        grant = other.acquire()
        assert grant is not None and grant.token == 2


@pytest.mark.integration
def test_a_lease_call_that_hangs_longer_than_a_renewal_interval_fails(postgres_dsn: str) -> None:
    import psycopg

    runtime = HaRuntime(postgres_dsn, HaConfig(lease_ttl=2.0, renew_interval=0.5, replica_id="a"))
    try:
        runtime.lease.ensure_schema()
        grant = runtime.lease.acquire()
        assert grant is not None
        with psycopg.connect(postgres_dsn) as other:
            other.execute("SELECT * FROM leader_lease FOR UPDATE")  # the row is locked
            t0 = time.monotonic()
            with pytest.raises(LeaseUnavailable):
                runtime.lease.renew(grant.token)
            assert time.monotonic() - t0 < 1.5  # gave up after about a renewal interval
    finally:
        runtime.lease.close()


@pytest.mark.integration
def test_the_feed_on_postgresql_passes_every_finding_of_a_storm(postgres_dsn: str) -> None:
    # 12,000 findings stored in one round by two replicas' stores: the old feed passed the
    # newest 10,000 by end and never the rest.
    from relia.store.postgres import PostgresStore

    with PostgresStore(postgres_dsn) as leader, PostgresStore(postgres_dsn) as follower:
        feed = FindingsFeed(leader)
        feed.reset()
        storm = [finding(f'cpu{{host="{i}"}}', T0 + i * 1000) for i in range(12_000)]
        follower.add_findings(storm[:6_000])
        leader.add_findings(storm[6_000:])
        got = feed.poll()
        assert len(got) == 12_000 and {f.id for f in got} == {f.id for f in storm}
        assert feed.poll() == []


def test_a_round_that_hangs_on_the_store_makes_the_duties_stuck() -> None:
    release = threading.Event()

    class HangingStore(MemoryStore):
        def findings_seq(self) -> int:
            release.wait(5)  # a store connection that hangs
            return super().findings_seq()

    store = HangingStore()
    d, _made = duties(store, Fence(5))
    assert d.stuck(0.05) is None
    d.elected(5)
    time.sleep(0.2)
    why = d.stuck(0.05)
    assert why is not None and "has not completed" in why
    release.set()
    wait_for(lambda: d.rounds >= 1)
    d.demoted()
    assert d.stuck(0.05) is None


def test_a_replica_whose_store_a_newer_relia_migrated_does_not_lead() -> None:
    # Its store refuses every write: as leader it would hold the lease and correlate nothing.
    class OutdatedStore(MemoryStore):
        outdated: str | None = None

    store = OutdatedStore()
    d, _made = duties(store, Fence(5))
    assert d.stuck(60.0) is None
    store.outdated = "store: the store was migrated by a newer relia (schema 14 > 13) ..."
    assert d.stuck(60.0) == store.outdated
