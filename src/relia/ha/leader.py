"""Leader election: a thread that holds (or tries to take) the lease, and the fence the outbox
asks before each send.

:class:`LeaderElector` tries :meth:`Lease.acquire` every ``renew_interval`` while it follows, and
:meth:`Lease.renew` every ``renew_interval`` while it leads. It calls ``on_elected(token)`` when it
takes the lease and ``on_demoted()`` when it stops leading, always from its own thread, one call
at a time. It stops leading (demotes itself)

- when a renewal answers that the lease is no longer its own (expired, taken over);
- when the database cannot be reached and the next renewal could not land before the lease
  runs out (the lease's end is tracked on this process's monotonic clock from the moment each
  renewal was *sent*, so it is never later than the database's view);
- when :meth:`LeaderElector.check` (the outbox's fence check) finds its token stale.

:meth:`LeaderElector.token` answers without the database: the token while the lease is known to
run for more than ``margin`` more seconds, else None. A process frozen (SIGSTOP, a long pause)
past its lease therefore sends nothing when it resumes, even before its elector thread runs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from relia._failurelog import FailureLog
from relia.ha.lease import Grant, LeaseUnavailable

__all__ = ["LeaderElector", "LeaderMetrics", "LeaseLike"]

log = logging.getLogger("relia.ha")


class LeaseLike(Protocol):
    """What the elector needs of :class:`relia.ha.lease.Lease`."""

    holder: str
    name: str
    ttl: float

    def acquire(self) -> Grant | None: ...

    def renew(self, token: int) -> Grant | None: ...

    def release(self, token: int) -> None: ...

    def is_current(self, token: int, margin: float = 0.0) -> bool: ...


class LeaderMetrics:
    """``relia_leader`` (1 while leading), ``relia_leader_changes_total`` and
    ``relia_leader_fencing_token`` (the token held; 0 while following), in ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.leader = Gauge(
            "relia_leader", "1 while this replica is the leader, else 0", registry=registry
        )
        self.changes = Counter(
            "relia_leader_changes",
            "Times this replica became the leader or stopped being it",
            registry=registry,
        )
        self.token = Gauge(
            "relia_leader_fencing_token",
            "The fencing token this replica holds as leader (0 while following)",
            registry=registry,
        )


class LeaderElector:
    """Holds the lease ``lease`` for this replica (see the module docstring).

    ``margin`` (default ``renew_interval``): how long the lease must still run for a token to
    count as held; it must be shorter than ``lease.ttl - renew_interval`` or a healthy leader
    would count itself out between renewals. ``clock`` is monotonic seconds (injected in tests).
    """

    def __init__(
        self,
        lease: LeaseLike,
        *,
        renew_interval: float,
        on_elected: Callable[[int], None] | None = None,
        on_demoted: Callable[[], None] | None = None,
        registry: CollectorRegistry | None = None,
        margin: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if renew_interval <= 0:
            raise ValueError("renew_interval must be positive")
        self.lease = lease
        self.renew_interval = float(renew_interval)
        self.margin = float(renew_interval if margin is None else margin)
        if self.margin + self.renew_interval >= lease.ttl:
            raise ValueError(
                f"lease ttl {lease.ttl:g}s must exceed renew_interval + margin "
                f"({self.renew_interval:g}s + {self.margin:g}s)"
            )
        self._on_elected = on_elected
        self._on_demoted = on_demoted
        self._unable: Callable[[], str | None] | None = None
        self._clock = clock
        self.metrics = LeaderMetrics(registry if registry is not None else CollectorRegistry())
        self._state_lock = threading.Lock()
        self._token: int | None = None
        self._valid_until = 0.0  # monotonic seconds; meaningful while _token is set
        self._stale = False  # set by check() from another thread; the elector thread demotes
        self._last_token: int | None = None
        self._changes = 0
        self._last_error: str | None = None
        # A database away for an hour fails every round: one traceback, then a line a minute.
        self._failures = FailureLog(log, "leader election", clock=clock)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def set_callbacks(
        self,
        *,
        on_elected: Callable[[int], None] | None,
        on_demoted: Callable[[], None] | None,
    ) -> None:
        """Set what runs on election and demotion (before :meth:`start`)."""
        if self._thread is not None:
            raise RuntimeError("set the callbacks before starting the elector")
        self._on_elected = on_elected
        self._on_demoted = on_demoted

    def set_health(self, unable: Callable[[], str | None] | None) -> None:
        """``unable()`` says why this replica cannot do the leader's work now (None: it can).
        While it says so, a leader stops renewing and gives the lease up (another replica takes
        over at once) and a follower does not try to take it."""
        self._unable = unable

    # -- the fence (any thread) ----------------------------------------------------------

    def token(self) -> int | None:
        """The fencing token while this replica leads and its lease runs for at least
        ``margin`` more seconds; None otherwise. No database round trip."""
        with self._state_lock:
            if self._token is None or self._stale:
                return None
            if self._clock() + self.margin >= self._valid_until:
                return None
            return self._token

    def check(self, token: int) -> bool:
        """Ask the database whether ``token`` still holds the lease for ``margin`` more seconds.
        False (also when the database cannot be asked) makes this replica demote itself."""
        if self.token() != token:
            return False
        try:
            ok = self.lease.is_current(token, self.margin)
        except LeaseUnavailable as e:
            log.warning("fence check failed, treating the lease as lost: %s", e)
            ok = False
        if not ok:
            with self._state_lock:
                if self._token == token:
                    self._stale = True
            self._wake.set()
        return ok

    @property
    def is_leader(self) -> bool:
        """Whether this replica leads now (same as ``token() is not None``)."""
        return self.token() is not None

    def status(self) -> dict[str, Any]:
        """For ``/healthz``: whether this replica leads, its id, its token, the lease."""
        token = self.token()
        return {
            "mode": "ha",
            "leader": token is not None,
            "replica_id": self.lease.holder,
            "fencing_token": token,
            "lease": self.lease.name,
            "lease_ttl_seconds": self.lease.ttl,
            "leader_changes": self._changes,
            "last_error": self._last_error,
        }

    # -- the thread ----------------------------------------------------------------------

    def start(self) -> threading.Thread:
        """Run the election in a daemon thread until :meth:`stop`."""
        if self._thread is not None:
            raise RuntimeError("the elector was started already")
        self._thread = threading.Thread(target=self._run, name="relia-leader", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, *, release: bool = True, timeout: float = 15.0) -> None:
        """Stop the thread; if leading, demote (``on_demoted``) and, with ``release``, give the
        lease up so another replica takes over at once instead of after ``ttl``."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        token = self._token
        if token is not None:
            self._demote("shutting down")
            if release:
                try:
                    self.lease.release(token)
                except LeaseUnavailable as e:
                    log.warning("could not release the lease: %s", e)

    def step(self) -> float:
        """One round: renew while leading, try to acquire while following. Returns the seconds
        until the next round. :meth:`start` calls this in a loop; tests call it by hand."""
        if self._token is not None:
            return self._step_leading(self._token)
        why = self._unable() if self._unable is not None else None
        if why is not None:
            self._last_error = f"not competing for the lease: {why}"
            return self.renew_interval
        t0 = self._clock()
        try:
            grant = self.lease.acquire()
        except LeaseUnavailable as e:
            self._error(e)
            return self.renew_interval
        self._succeeded()
        if grant is not None:
            self._elect(grant, t0)
        return self._next_wait()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                wait = self.step()
            except Exception as e:  # noqa: BLE001 - a bug in a callback, a store error (the
                # lease table missing): must not end the election, and is reported in /healthz
                self._error(e)
                if self._token is not None:
                    self._demote("election round failed")
                wait = self.renew_interval
            self._wake.wait(max(0.0, wait))
            self._wake.clear()

    def _step_leading(self, token: int) -> float:
        if self._stale:
            self._demote("the fence check found the token stale")
            return self.renew_interval
        why = self._unable() if self._unable is not None else None
        if why is not None:
            self._last_error = f"stepped down: {why}"
            with self._state_lock:
                self._stale = True  # no token from now on, before the lease is given up
            try:
                self.lease.release(token)  # its own connection: the store's may hang
            except LeaseUnavailable as e:
                log.warning("could not release the lease: %s", e)
            self._demote(why)  # may wait for the hung round (on_demoted joins it, bounded)
            return self.renew_interval
        t0 = self._clock()
        try:
            grant = self.lease.renew(token)
        except LeaseUnavailable as e:
            self._error(e)
            # Keep leading only while a later renewal could still land in time.
            if self._clock() + self.renew_interval + self.margin >= self._valid_until:
                self._demote("the database is unreachable and the lease is running out")
                return self.renew_interval
            return self._next_wait()
        self._succeeded()
        if grant is None:
            self._demote("the lease was lost (expired or taken over)")
            return self.renew_interval
        with self._state_lock:
            self._valid_until = t0 + grant.remaining
        if self._clock() + self.margin >= self._valid_until:
            self._demote("the renewal came back too late")
            return self.renew_interval
        return self._next_wait()

    def _next_wait(self) -> float:
        if self._token is None:
            return self.renew_interval
        # Wake no later than the moment the lease stops counting as held, to demote on time.
        return min(self.renew_interval, max(0.0, self._valid_until - self.margin - self._clock()))

    def _elect(self, grant: Grant, sent_at: float) -> None:
        with self._state_lock:
            self._token = grant.token
            self._valid_until = sent_at + grant.remaining
            self._stale = False
        self._last_token = grant.token
        self._changes += 1
        m = self.metrics
        m.leader.set(1)
        m.token.set(grant.token)
        m.changes.inc()
        log.info("%s is the leader now (fencing token %d)", self.lease.holder, grant.token)
        if self._on_elected is not None:
            self._on_elected(grant.token)

    def _demote(self, why: str) -> None:
        with self._state_lock:
            token, self._token = self._token, None
            self._stale = False
        if token is None:
            return
        self._changes += 1
        m = self.metrics
        m.leader.set(0)
        m.token.set(0)
        m.changes.inc()
        log.warning("%s stopped leading (token %d): %s", self.lease.holder, token, why)
        if self._on_demoted is not None:
            self._on_demoted()

    def _error(self, e: Exception) -> None:
        self._last_error = str(e)
        self._failures.failed(e)

    def _succeeded(self) -> None:
        self._last_error = None
        self._failures.succeeded()
