"""The elector: when it leads, when it demotes itself, what its fence answers; then two electors
on a real PostgreSQL."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import pytest
from prometheus_client import CollectorRegistry

from relia.errors import StoreError
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


def test_the_renew_interval_must_be_positive() -> None:
    with pytest.raises(ValueError, match="renew_interval must be positive"):
        LeaderElector(FakeLease(), renew_interval=0.0)


def test_the_token_stops_counting_exactly_when_only_the_margin_is_left() -> None:
    lease = FakeLease()
    e, clock, _events, _ = elector(lease)
    e.step()  # the lease runs until +10; the margin is 3
    clock.t += 6.9
    assert e.token() == 1
    clock.t += 0.1  # +7: exactly the margin left is not enough
    assert e.token() is None and not e.is_leader


def test_the_lease_is_counted_from_when_the_request_was_sent_not_answered() -> None:
    class SlowLease(FakeLease):
        """Answers 2 seconds after it was asked."""

        def __init__(self, clock: Clock) -> None:
            super().__init__()
            self.clock = clock

        def acquire(self) -> Grant | None:
            self.clock.t += 2
            return super().acquire()

        def renew(self, token: int) -> Grant | None:
            self.clock.t += 2
            return super().renew(token)

    clock, events = Clock(), []
    lease = SlowLease(clock)
    e = LeaderElector(
        lease, renew_interval=3.0, on_elected=lambda t: events.append(f"elected {t}"), clock=clock
    )
    e.step()  # sent at 1000, answered at 1002: held until 1010, counts until 1007
    assert clock.t == 1002 and e.token() == 1
    clock.t = 1007.0
    assert e.token() is None
    clock.t = 1003.0
    e.step()  # renewal sent at 1003, answered at 1005: counts until 1010
    clock.t = 1009.9
    assert e.token() == 1
    clock.t = 1010.0
    assert e.token() is None


def test_a_renewal_that_leaves_less_than_the_margin_demotes() -> None:
    lease = FakeLease()
    e, clock, events, registry = elector(lease)
    e.step()
    lease.grant = Grant(1, 2.0)  # renewed, but the database gives it only 2 more seconds
    clock.t += 3
    e.step()
    assert events == ["elected 1", "demoted"] and e.token() is None
    assert registry.get_sample_value("relia_leader") == 0


def test_a_short_grant_wakes_the_elector_when_the_lease_stops_counting() -> None:
    lease = FakeLease()
    lease.grant = Grant(1, 5.0)  # counts as held for 2 seconds (margin 3), less than a round
    e, _clock, _events, _ = elector(lease)
    assert e.step() == 2.0


def test_an_unreachable_database_demotes_when_the_next_renewal_would_land_just_too_late() -> None:
    lease = FakeLease()
    e, clock, events, _ = elector(lease)
    e.step()
    lease.down = True
    clock.t += 4  # the next try at +7 would land exactly when the lease stops counting
    e.step()
    assert e.token() is None and events == ["elected 1", "demoted"]


def test_a_fence_check_that_cannot_reach_the_database_fails_and_demotes() -> None:
    lease = FakeLease()
    e, _clock, events, _ = elector(lease)
    e.step()
    lease.down = True
    assert not e.check(1)
    assert e.token() is None
    e.step()
    assert events == ["elected 1", "demoted"]


def test_stop_demotes_before_it_releases_the_lease() -> None:
    lease = FakeLease()
    e, _clock, events, _ = elector(lease)
    lease.release = lambda token: events.append(f"released {token}")  # type: ignore[method-assign]
    e.step()
    e.stop()
    # The duties stop before another replica can take the lease over.
    assert events == ["elected 1", "demoted", "released 1"]


def test_stop_with_the_database_down_still_demotes_and_does_not_raise() -> None:
    lease = FakeLease()
    e, _clock, events, _ = elector(lease)
    e.step()

    def release(token: int) -> None:
        raise LeaseUnavailable("the database did not answer", where="lease relia-leader")

    lease.release = release  # type: ignore[method-assign]
    e.stop()
    assert events == ["elected 1", "demoted"] and e.token() is None


def test_status_and_metrics_follow_the_tenure_and_the_last_error() -> None:
    lease = FakeLease()
    e, clock, _events, registry = elector(lease)
    lease.down = True
    e.step()
    assert e.status()["last_error"] is not None and e.status()["leader"] is False
    lease.down = False
    e.step()
    status = e.status()
    assert (status["leader"], status["fencing_token"], status["leader_changes"]) == (True, 1, 1)
    assert status["last_error"] is None and status["replica_id"] == "me"
    lease.down = True
    clock.t += 3
    e.step()
    assert "did not answer" in e.status()["last_error"]
    lease.down = False
    clock.t += 1
    e.step()
    assert e.status()["last_error"] is None and e.token() == 1
    lease.grant = None
    clock.t += 3
    e.step()
    status = e.status()
    assert (status["leader"], status["fencing_token"], status["leader_changes"]) == (
        False,
        None,
        2,
    )
    assert registry.get_sample_value("relia_leader_fencing_token") == 0


def test_a_database_away_is_logged_once_with_its_traceback_then_a_line_a_minute(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # An hour's outage at one round per renew_interval must not be ~1,200 warnings.
    lease = FakeLease()
    e, clock, _events, _registry = elector(lease)
    lease.down = True
    with caplog.at_level(logging.INFO, logger="relia.ha"):
        for _ in range(41):  # 120 s
            e.step()
            clock.t += 3
        lease.down = False
        e.step()
    records = [(r.levelname, r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert records[0] == ("ERROR", "leader election failed", True)
    still = [r for r in records if "still failing" in r[1]]
    assert len(still) == 2 and "did not answer" in still[0][1]  # at 60 s and 120 s
    assert ("WARNING", "leader election recovered after 41 failures", False) in records
    assert len(records) == 5  # and "me is the leader now"


def test_a_store_error_from_the_lease_is_reported_and_paced(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The lease table missing (or not where this connection looks) is not a database that
    # did not answer, but it must still reach /healthz and not log a traceback every round.
    lease = FakeLease()

    def missing() -> Grant | None:
        raise StoreError("the leader_lease table is missing", where="lease relia-leader")

    lease.acquire = missing  # type: ignore[method-assign]
    e = LeaderElector(lease, renew_interval=0.02)  # type: ignore[arg-type]
    with caplog.at_level(logging.INFO, logger="relia.ha"):
        e.start()
        try:
            wait_for(lambda: e.status()["last_error"] is not None, 5)
            time.sleep(0.2)  # about ten more rounds
        finally:
            e.stop()
    assert "leader_lease table is missing" in e.status()["last_error"]
    assert len([r for r in caplog.records if r.exc_info]) == 1


def test_a_failing_election_callback_demotes_and_the_elector_tries_again() -> None:
    lease = FakeLease()
    events: list[str] = []

    def on_elected(token: int) -> None:
        events.append(f"elected {token}")
        if len(events) == 1:
            raise RuntimeError("the duties could not start")

    e = LeaderElector(
        lease,
        renew_interval=0.02,
        on_elected=on_elected,
        on_demoted=lambda: events.append("demoted"),
    )
    e.start()
    try:
        wait_for(lambda: len(events) >= 3, 5)
        # Not a leader without its duties: demoted, then elected again (they started).
        assert events[:3] == ["elected 1", "demoted", "elected 1"]
    finally:
        e.stop()


def test_a_failed_fence_check_wakes_the_elector_to_demote_at_once() -> None:
    lease = FakeLease()
    events: list[str] = []
    e = LeaderElector(
        lease,
        renew_interval=2.0,
        on_elected=lambda t: events.append(f"elected {t}"),
        on_demoted=lambda: events.append("demoted"),
    )
    e.start()
    try:
        wait_for(lambda: events == ["elected 1"], 5)
        lease.current = False
        assert not e.check(1)
        # Not at the next renewal, 2 seconds away: the duties stop now.
        assert wait_for(lambda: "demoted" in events, 1.0) < 1.0
    finally:
        e.stop()


def test_stop_returns_at_once_rather_than_after_a_renewal_interval() -> None:
    lease = FakeLease()
    e = LeaderElector(lease, renew_interval=5.0, margin=1.0)
    e.start()
    wait_for(lambda: e.is_leader, 5)
    t0 = time.monotonic()
    e.stop()
    assert time.monotonic() - t0 < 1.0 and not e.is_leader and lease.released == [1]


def test_a_leader_that_cannot_do_its_work_steps_down_and_does_not_lead_again_meanwhile() -> None:
    # Its store connections hang (the lease's own works): renewing would keep every other
    # replica from leading while nothing is correlated or sent.
    lease = FakeLease()
    e, clock, events, _registry = elector(lease)
    stuck: list[str] = []
    e.set_health(lambda: stuck[0] if stuck else None)
    e.step()
    assert e.token() == 1
    stuck.append("a correlation round has not completed in 31s")
    clock.t += 3
    e.step()
    assert events == ["elected 1", "demoted"] and e.token() is None
    assert lease.released == [1]  # another replica takes over at once
    assert "stepped down" in e.status()["last_error"]
    clock.t += 3
    e.step()  # still stuck: does not take the lease back
    assert e.token() is None and events == ["elected 1", "demoted"]
    stuck.clear()
    e.step()
    assert e.token() == 1
