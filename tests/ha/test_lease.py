"""The lease row against a real PostgreSQL: one holder at a time, growing tokens, expiry by the
database's clock, the fence check, a server restart."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from relia.errors import StoreError
from relia.ha.lease import Grant, Lease, LeaseUnavailable
from tests.pgserver import PostgresServer

pytestmark = pytest.mark.integration

MakeLease = Callable[..., Lease]


@pytest.fixture
def make_lease(postgres_dsn: str) -> Iterator[MakeLease]:
    made: list[Lease] = []

    def make(holder: str, ttl: float = 30.0) -> Lease:
        lease = Lease(postgres_dsn, holder, ttl)
        if not made:
            lease.ensure_schema()
        made.append(lease)
        return lease

    yield make
    for lease in made:
        lease.close()


def test_one_holder_at_a_time_and_each_new_holder_gets_a_larger_token(
    make_lease: MakeLease,
) -> None:
    a, b = make_lease("a"), make_lease("b")
    first = a.acquire()
    assert first is not None and first.token == 1 and 29 < first.remaining <= 30
    assert b.acquire() is None
    assert a.acquire() is None  # even its holder does not take an unexpired lease again
    renewed = a.renew(first.token)
    assert renewed is not None and renewed.token == first.token
    assert b.renew(first.token) is None  # another holder's name cannot renew it
    holder = b.current()
    assert holder is not None and (holder.holder, holder.token, holder.held) == ("a", 1, True)
    a.release(first.token)
    second = b.acquire()
    assert second is not None and second.token == 2
    assert a.renew(first.token) is None
    assert not a.is_current(first.token) and b.is_current(second.token)
    # The margin: a lease running out within it does not count as held.
    assert b.is_current(second.token, margin=10.0) and not b.is_current(second.token, 31.0)
    b.release(second.token)
    third = a.acquire()
    assert third is not None and third.token == 3


def test_a_holder_that_stops_renewing_loses_the_lease_after_its_ttl(
    make_lease: MakeLease,
) -> None:
    a, b = make_lease("a", ttl=0.6), make_lease("b", ttl=0.6)
    grant = a.acquire()
    assert grant is not None
    t0 = time.monotonic()
    taken: Grant | None = None
    while taken is None and time.monotonic() - t0 < 5:
        taken = b.acquire()
        time.sleep(0.02)
    waited = time.monotonic() - t0
    assert taken is not None and taken.token == grant.token + 1
    assert waited >= 0.5  # not before the ttl ran out (database clock; a little slack)
    # Lapsed: the old holder can neither renew nor pass the fence check.
    assert a.renew(grant.token) is None and not a.is_current(grant.token)


def test_racing_replicas_get_one_grant(make_lease: MakeLease) -> None:
    leases = [make_lease(f"r{i}") for i in range(6)]
    leases[0].acquire()  # the row exists and is held...
    leases[0].release(1)  # ...then free: everyone races for it at once
    grants: list[Grant | None] = []
    barrier = threading.Barrier(len(leases))

    def race(lease: Lease) -> None:
        barrier.wait()
        grants.append(lease.acquire())

    threads = [threading.Thread(target=race, args=(lease,)) for lease in leases]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    won = [g for g in grants if g is not None]
    assert len(grants) == 6 and len(won) == 1 and won[0].token == 2


def test_the_lease_survives_a_server_restart(
    make_lease: MakeLease, postgres_server: PostgresServer
) -> None:
    a, b = make_lease("a"), make_lease("b")
    grant = a.acquire()
    assert grant is not None
    postgres_server.stop()
    try:
        with pytest.raises(
            LeaseUnavailable, match="lease relia-leader: the database did not answer"
        ):
            a.renew(grant.token)
    finally:
        postgres_server.start()
    # A new connection is opened by itself; the row (and its token) outlived the restart.
    assert b.acquire() is None
    renewed = a.renew(grant.token)
    assert renewed is not None and renewed.token == grant.token
    assert a.is_current(grant.token)


def test_a_missing_table_is_a_store_error(postgres_dsn: str) -> None:
    with Lease(postgres_dsn, "a", 5.0) as lease, pytest.raises(StoreError, match="migration 0006"):
        lease.acquire()


def test_the_dsn_is_not_in_errors_or_repr() -> None:
    lease = Lease("postgresql://u:hunter2@127.0.0.1:1/x", "a", 5.0, timeout=0.2)
    with pytest.raises(LeaseUnavailable) as info:
        lease.acquire()
    assert "hunter2" not in str(info.value) and "hunter2" not in repr(lease)


def test_a_lapsed_lease_cannot_be_renewed_even_when_nobody_took_it(
    make_lease: MakeLease,
) -> None:
    a = make_lease("a", ttl=0.3)
    grant = a.acquire()
    assert grant is not None
    time.sleep(0.4)
    holder = a.current()
    assert holder is not None and holder.holder == "a" and not holder.held
    assert holder.remaining < 0
    # A lapsed tenure is over: its holder starts a new one, with a new token.
    assert a.renew(grant.token) is None and not a.is_current(grant.token)
    again = a.acquire()
    assert again is not None and again.token == grant.token + 1


def test_a_stale_token_of_the_same_holder_neither_renews_nor_passes_the_fence(
    make_lease: MakeLease,
) -> None:
    # Two processes with one replica_id: the older tenure's token is fenced off.
    a = make_lease("a")
    first = a.acquire()
    assert first is not None
    a.release(first.token)
    second = a.acquire()
    assert second is not None and second.token == first.token + 1
    assert a.renew(first.token) is None and not a.is_current(first.token)
    assert a.is_current(second.token)


def test_a_release_with_a_stale_token_leaves_the_new_holder_in_place(
    make_lease: MakeLease,
) -> None:
    a, b = make_lease("a"), make_lease("b")
    first = a.acquire()
    assert first is not None
    a.release(first.token)
    released = b.current()
    assert released is not None and released.holder is None and not released.held
    second = b.acquire()
    assert second is not None
    a.release(first.token)  # late: the lease moved on
    holder = a.current()
    assert holder is not None and (holder.holder, holder.token, holder.held) == ("b", 2, True)
    assert a.acquire() is None and b.is_current(second.token)


def test_a_lease_nobody_ever_took_is_not_current_for_any_token(make_lease: MakeLease) -> None:
    a = make_lease("a")
    assert a.current() is None
    assert not a.is_current(0) and not a.is_current(1)


def test_the_ttl_must_be_positive() -> None:
    for ttl in (0, -1.0):
        with pytest.raises(ValueError, match="ttl must be positive"):
            Lease("postgresql://127.0.0.1:1/x", "a", ttl)


def test_a_call_blocked_by_a_lock_gives_up_within_the_timeout(
    make_lease: MakeLease, postgres_dsn: str
) -> None:
    import psycopg

    grant = make_lease("a").acquire()
    assert grant is not None
    with Lease(postgres_dsn, "a", 30.0, timeout=0.3) as a, psycopg.connect(postgres_dsn) as other:
        other.execute("SELECT * FROM leader_lease FOR UPDATE")  # holds the row's lock
        t0 = time.monotonic()
        with pytest.raises(LeaseUnavailable, match="did not answer"):
            a.renew(grant.token)
        assert time.monotonic() - t0 < 2.0  # failed, rather than holding its caller


def test_a_dsn_with_its_own_options_keeps_them_and_the_timeouts(postgres_dsn: str) -> None:
    # relia in its own schema of a shared database: the lease table is where the store's
    # migrations put it (search_path), and the lease's own timeouts still apply.
    import psycopg

    from relia.store.postgres import PostgresStore

    with psycopg.connect(postgres_dsn, autocommit=True) as admin:
        admin.execute("CREATE SCHEMA relia")
    dsn = f"{postgres_dsn}?options=-csearch_path%3Drelia"
    PostgresStore(dsn).close()  # migrations, in schema relia
    with Lease(dsn, "a", 30.0, timeout=0.3) as lease, psycopg.connect(dsn) as other:
        grant = lease.acquire()
        assert grant is not None and grant.token == 1
        other.execute("SELECT * FROM leader_lease FOR UPDATE")  # holds the row's lock
        t0 = time.monotonic()
        with pytest.raises(LeaseUnavailable, match="did not answer"):
            lease.renew(grant.token)
        assert time.monotonic() - t0 < 2.0


def test_the_lease_connection_probes_a_vanished_server(postgres_dsn: str) -> None:
    # As the store's connections do (tests/store/test_postgres.py): a server gone without
    # closing the connection is noticed in about a minute, not the kernel's hours.
    with Lease(postgres_dsn, "a", 30.0)._connect() as conn:
        params = conn.info.get_parameters()
    assert (params["keepalives"], params["keepalives_idle"]) == ("1", "30")
    assert params["tcp_user_timeout"] == "60000"
