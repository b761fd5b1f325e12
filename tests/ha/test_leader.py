"""The elector: when it leads, when it demotes itself, what its fence answers; then two electors
on a real PostgreSQL."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from relia.ha.leader import LeaderElector
from relia.ha.lease import Grant, Lease, LeaseUnavailable


class FakeLease:
    """A lease whose answers the test sets: ``grant`` on acquire/renew (None: refused),
    ``down`` raises LeaseUnavailable, ``current`` answers is_current."""

    holder = "me"
    name = "relia-leader"
    ttl = 10.0

    def __init__(self) -> None:
        self.grant: Grant | None = Grant(1, 10.0)
        self.down = False
        self.current = True
        self.released: list[int] = []

    def _answer(self) -> Grant | None:
        if self.down:
            raise LeaseUnavailable("the database did not answer", where="lease relia-leader")
        return self.grant

    def acquire(self) -> Grant | None:
        return self._answer()

    def renew(self, token: int) -> Grant | None:
        return self._answer()

    def release(self, token: int) -> None:
        self.released.append(token)

    def is_current(self, token: int, margin: float = 0.0) -> bool:
        if self.down:
            raise LeaseUnavailable("the database did not answer", where="lease relia-leader")
        return self.current


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def elector(lease: FakeLease) -> tuple[LeaderElector, Clock, list[str], CollectorRegistry]:
    clock, events, registry = Clock(), [], CollectorRegistry()
    e = LeaderElector(
        lease,
        renew_interval=3.0,
        on_elected=lambda t: events.append(f"elected {t}"),
        on_demoted=lambda: events.append("demoted"),
        registry=registry,
        clock=clock,
    )
    return e, clock, events, registry


def test_elected_renews_and_demotes_when_the_lease_is_lost() -> None:
    lease = FakeLease()
    e, clock, events, registry = elector(lease)
    assert e.token() is None
    assert e.step() == 3.0
    assert events == ["elected 1"] and e.token() == 1 and e.is_leader
    assert registry.get_sample_value("relia_leader") == 1
    assert registry.get_sample_value("relia_leader_fencing_token") == 1
    clock.t += 3
    e.step()
    assert e.token() == 1
    lease.grant = None  # the renewal is refused: expired or taken over
    clock.t += 3
    e.step()
    assert events == ["elected 1", "demoted"] and e.token() is None
    assert registry.get_sample_value("relia_leader") == 0
    assert registry.get_sample_value("relia_leader_changes_total") == 2
    assert e.status()["leader"] is False


def test_an_unreachable_database_demotes_only_when_the_lease_would_run_out() -> None:
    lease = FakeLease()
    e, clock, events, _ = elector(lease)
    e.step()  # leads until t0 + 10; counts as held until t0 + 7 (margin 3)
    lease.down = True
    clock.t += 3
    e.step()  # a renewal at +6 could still land before +7: keeps leading
    assert e.token() == 1 and events == ["elected 1"]
    clock.t += 1.5
    e.step()  # +4.5: the next try at +7.5 is too late
    assert e.token() is None and events == ["elected 1", "demoted"]
    # While it is down, following: no grant, no error raised.
    assert e.step() == 3.0 and e.token() is None


def test_a_frozen_process_holds_no_token_before_its_thread_runs() -> None:
    lease = FakeLease()
    e, clock, events, _ = elector(lease)
    e.step()
    clock.t += 7.5  # frozen past the point where the lease counted as held
    assert e.token() is None  # the fence answers without the elector thread or the database
    assert not e.check(1)


def test_a_failed_fence_check_demotes() -> None:
    lease = FakeLease()
    e, _clock, events, _ = elector(lease)
    e.step()
    assert e.check(1)
    lease.current = False  # the database says the token moved on
    assert not e.check(1)
    assert e.token() is None  # at once, for every thread
    e.step()
    assert events == ["elected 1", "demoted"]
    lease.current, lease.grant = True, Grant(2, 10.0)
    e.step()
    assert events[-1] == "elected 2"


def test_stop_demotes_and_releases() -> None:
    lease = FakeLease()
    e, _clock, events, _ = elector(lease)
    e.step()
    e.stop()
    assert events == ["elected 1", "demoted"] and lease.released == [1]


def test_the_ttl_must_leave_room_for_a_renewal_and_the_margin() -> None:
    lease = FakeLease()
    with pytest.raises(ValueError, match="must exceed renew_interval"):
        LeaderElector(lease, renew_interval=5.0)


# -- on a real PostgreSQL -------------------------------------------------------------------


def wait_for(pred: Callable[[], bool], timeout: float) -> float:
    t0 = time.monotonic()
    while not pred():
        assert time.monotonic() - t0 < timeout, "not reached in time"
        time.sleep(0.02)
    return time.monotonic() - t0


@pytest.mark.integration
def test_two_electors_one_leader_and_a_handover(postgres_dsn: str) -> None:
    leases = [Lease(postgres_dsn, name, ttl=1.5) for name in ("a", "b")]
    leases[0].ensure_schema()
    history: list[tuple[str, int]] = []
    electors = []
    for lease in leases:
        e = LeaderElector(lease, renew_interval=0.2, margin=0.3)
        e.set_callbacks(
            on_elected=lambda t, n=lease.holder: history.append((n, t)), on_demoted=None
        )
        electors.append(e)
    try:
        for e in electors:
            e.start()
        wait_for(lambda: any(e.is_leader for e in electors), 5)
        time.sleep(1.0)  # several renewals: still exactly one leader
        assert sum(e.is_leader for e in electors) == 1 and len(history) == 1
        first = next(e for e in electors if e.is_leader)
        other = next(e for e in electors if e is not first)
        # A clean stop releases the lease: the other takes over within a renewal or two.
        first.stop()
        took = wait_for(lambda: other.is_leader, 3)
        assert took < 1.0
        assert [t for _, t in history] == [1, 2]
        assert other.check(2) and not first.check(1)
    finally:
        for e in electors:
            e.stop()
        for lease in leases:
            lease.close()


@pytest.mark.integration
def test_a_holder_that_stops_renewing_is_replaced_after_the_ttl(postgres_dsn: str) -> None:
    with Lease(postgres_dsn, "silent", ttl=1.0) as silent, Lease(postgres_dsn, "b", 1.0) as b:
        silent.ensure_schema()
        grant = silent.acquire()  # and never renewed
        assert grant is not None
        e = LeaderElector(b, renew_interval=0.1, margin=0.2)
        t0 = time.monotonic()
        e.start()
        try:
            wait_for(lambda: e.is_leader, 5)
            assert time.monotonic() - t0 >= 0.9
            assert e.token() == grant.token + 1
            assert not silent.is_current(grant.token)
        finally:
            e.stop()
