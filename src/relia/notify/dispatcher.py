"""The dispatcher: delivers the outbox to the sinks, with retries and a circuit breaker per sink.

Each :meth:`Dispatcher.run_once` asks the store for each sink's due items (oldest first; an item
waits while an older version of its incident is pending, so v3 never overtakes v2) and delivers
them one by one, marking each delivered as soon as the sink accepted it, so a crash repeats at
most the one delivery in flight (receivers get the dedup key for that case).

A retryable failure schedules the next try ``base_delay × 2^(attempts-1)`` later (capped at
``max_delay``, with jitter so many items do not retry in lockstep). A non-retryable one (a 4xx),
and an item still undelivered ``max_age`` after it was written, become failed: counted, logged,
never silent. ``breaker_threshold`` consecutive retryable failures open the sink's breaker: no
attempts for ``breaker_cooldown``, then one probe (half-open) that closes it or opens it again.
An answer that is not retryable (a 4xx) shows the receiver is up: it closes the breaker too.

Sinks whose receiver forgets firing alerts (Alertmanager) are refreshed every
``resend_interval`` with the open incidents, once their outbox is drained: those the sink heard
about, under its ``min_severity`` (:mod:`relia.notify.routing`; by default all of them). A
refresh counts for the breaker as a delivery does, so a receiver that is down while nothing else
is sent still opens it (``relia_notify_breaker_state``), and a refresh can be the half-open
probe.

Fencing (HA replicas, :mod:`relia.ha`): with a ``fence``, a run sends only while the fence gives a
token, asks the database (:meth:`Fence.check`) right before each send and again before marking
the item delivered, and hands the token to the sink, which puts it where the receiver can check it
(``X-Relia-Fencing-Token``; an Alertmanager annotation). A stale leader therefore sends nothing
and marks nothing once its check fails. The window that remains: a process that freezes *after* a
check succeeded and *before* its request is on the wire for longer than the fence's margin sends
one request with its old token after the new leader took over; the item is not marked delivered
(the check before marking fails), so the new leader sends it again, and a receiver that keeps the
highest token it has seen (or the dedup key) can drop the stale one.
"""

from __future__ import annotations

import inspect
import logging
import random
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge

from relia._failurelog import FailureLog
from relia.incidents.model import OPEN_INCIDENTS_MAX, Incident, IncidentStatus, Severity
from relia.notify.outbox import OutboxItem, OutboxStatus
from relia.notify.routing import SeverityRouting
from relia.notify.sinks import DeliveryError, RefreshingSink, Sink

__all__ = [
    "BreakerState",
    "CircuitBreaker",
    "Dispatcher",
    "Fence",
    "OutboxStore",
    "backoff_delay",
]

log = logging.getLogger("relia.notify")

#: Items asked from the store per sink per round.
_BATCH = 100
#: Rounds per sink per run: a chain of versions of one incident is delivered a version a round.
_MAX_ROUNDS = 20
#: A sink's turn in a run, in seconds, when it has no ``timeout`` of its own (the log sink).
_TURN_S = 5.0
#: How often the pending gauge is recomputed when nothing happened (seconds).
_GAUGE_EVERY_S = 5.0
#: How often the items of sinks no longer configured are looked at for their give-up (ms).
_ORPHANS_EVERY_MS = 60_000


class OutboxStore(Protocol):
    """What the dispatcher needs from the store (a part of :class:`relia.store.base.Store`)."""

    def due_notifications(self, sink: str, now: int, limit: int) -> list[OutboxItem]: ...

    def mark_delivered(self, ids: list[str], now: int) -> None: ...

    def mark_attempt_failed(
        self,
        item_id: str,
        attempts: int,
        next_attempt_at: int,
        error: str,
        *,
        give_up: bool = False,
    ) -> None: ...

    def outbox_counts(self) -> dict[str, dict[str, int]]: ...

    def notified_incidents(
        self, sinks: Collection[str], incident_ids: Collection[str]
    ) -> set[tuple[str, str]]: ...

    def incidents(
        self,
        since: int | None = None,
        status: IncidentStatus | None = None,
        limit: int = 1000,
    ) -> list[Incident]: ...


class Fence(Protocol):
    """Who may send (:class:`relia.ha.leader.LeaderElector` is one)."""

    def token(self) -> int | None:
        """The fencing token held now, or None when this process must not send."""
        ...

    def check(self, token: int) -> bool:
        """Whether ``token`` still holds the lease, asked of the database (slow, exact)."""
        ...


class _Fenced(Exception):
    """The fence check failed: stop this run, send and mark nothing more."""


def backoff_delay(attempts: int, base: float, cap: float, rng: random.Random) -> float:
    """Seconds to wait after the ``attempts``-th failed attempt: ``base × 2^(attempts-1)`` capped
    at ``cap``, scaled by a random factor in [0.5, 1] (jitter that still grows the delay)."""
    exp = min(max(attempts - 1, 0), 62)  # 2**62 s is past any cap; avoids huge floats
    delay = min(cap, base * float(2**exp))
    return delay * (0.5 + 0.5 * rng.random())


class BreakerState(IntEnum):
    """The circuit breaker's state, as the ``relia_notify_breaker_state`` gauge shows it."""

    CLOSED = 0
    OPEN = 1
    HALF_OPEN = 2


@dataclass
class CircuitBreaker:
    """Per sink: closed → open after ``threshold`` consecutive failures → half-open (one probe)
    after ``cooldown_ms`` → closed on success, open again on failure."""

    threshold: int
    cooldown_ms: int
    state: BreakerState = BreakerState.CLOSED
    failures: int = 0
    opened_at: int = 0
    #: When it first opened in the current outage (None while closed).
    down_since: int | None = None

    def allows(self, now: int) -> bool:
        """Whether an attempt may be made now (moves open → half-open after the cooldown)."""
        if self.state is BreakerState.OPEN and now >= self.opened_at + self.cooldown_ms:
            self.state = BreakerState.HALF_OPEN
        return self.state is not BreakerState.OPEN

    def success(self) -> tuple[int, int] | None:
        """An attempt succeeded: closed, failure count reset. Returns (when it first opened,
        failures since the last success) if this ended an outage, else None."""
        ended = None if self.down_since is None else (self.down_since, self.failures)
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.down_since = None
        return ended

    def failure(self, now: int) -> bool:
        """A retryable attempt failed; returns True when this opened the breaker."""
        self.failures += 1
        if self.state is BreakerState.HALF_OPEN or (
            self.state is BreakerState.CLOSED and self.failures >= self.threshold
        ):
            self.state = BreakerState.OPEN
            self.opened_at = now
            if self.down_since is None:
                self.down_since = now
            return True
        return False


def _breaker_failure(sink: str, breaker: CircuitBreaker, now: int, error: str) -> bool:
    """Count a retryable failure; returns whether it opened the breaker. An outage is logged
    as one WARNING when the breaker first opens and one INFO line per failed probe (each
    cooldown), not a WARNING every probe."""
    probing = breaker.state is BreakerState.HALF_OPEN
    if not breaker.failure(now):
        return False
    if probing and breaker.down_since is not None:
        log.info(
            "sink %s: still failing after %s (%s): %s; next try in %s",
            sink,
            _duration(now - breaker.down_since),
            _failures(breaker.failures),
            error,
            _duration(breaker.cooldown_ms),
        )
    else:
        log.warning(
            "sink %s: circuit breaker open after %d failure(s); last: %s",
            sink,
            breaker.failures,
            error,
        )
    return True


def _breaker_success(sink: str, breaker: CircuitBreaker, now: int) -> None:
    """Count a success; the end of an outage is logged with how long it lasted."""
    ended = breaker.success()
    if ended is not None:
        since, failures = ended
        log.info(
            "sink %s: delivering again after %s down (%s); circuit breaker closed",
            sink,
            _duration(now - since),
            _failures(failures),
        )


def _count(n: int) -> str:
    return f"{n} item" + ("" if n == 1 else "s")


def _failures(n: int) -> str:
    return f"{n} failure" + ("" if n == 1 else "s")


def _duration(ms: int) -> str:
    """``150000`` → ``2m30s`` (whole seconds; under a second is ``0s``)."""
    from relia.slo.spec import format_duration

    return format_duration(ms // 1000) if ms >= 1000 else "0s"


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class _Outcome(Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    FAILED = "failed"


class Dispatcher:
    """Delivers the outbox of ``store`` to ``sinks``. Durations are in seconds, times in ms.

    ``clock`` returns ms UTC; ``registry`` receives the metrics (a private one when None);
    ``rng`` draws the jitter (seeded in tests); ``fence`` (HA) decides whether this process may
    send at all (see the module docstring); ``min_severity`` gives sinks their least severity
    (:mod:`relia.notify.routing`; a sink not in it: ``info``), so that a refresh re-posts to a
    sink only the open incidents it heard about (the outbox already holds only what each sink
    hears about). Call :meth:`run_once` yourself, or :meth:`start` a daemon thread that calls
    it every ``poll_interval`` and at once after :meth:`notify`.
    """

    def __init__(
        self,
        store: OutboxStore,
        sinks: Sequence[Sink],
        *,
        clock: Callable[[], int] = _wall_ms,
        registry: CollectorRegistry | None = None,
        base_delay: float = 1.0,
        max_delay: float = 300.0,
        breaker_threshold: int = 5,
        breaker_cooldown: float = 30.0,
        max_age: float = 86400.0,
        poll_interval: float = 0.25,
        rng: random.Random | None = None,
        fence: Fence | None = None,
        min_severity: Mapping[str, Severity] | None = None,
    ) -> None:
        names = [s.name for s in sinks]
        if len(set(names)) != len(names):
            raise ValueError(f"sink names must be unique, got {names}")
        minimums = dict(min_severity or {})
        unknown = sorted(set(minimums) - set(names))
        if unknown:
            raise ValueError(f"min_severity: there is no sink named {unknown[0]!r} ({names})")
        self._routing = SeverityRouting({n: minimums.get(n, Severity.INFO) for n in names})
        self._store = store
        self._sinks = list(sinks)
        self._clock = clock
        self._base = float(base_delay)
        self._cap = float(max_delay)
        self._max_age_ms = int(max_age * 1000)
        self._poll = float(poll_interval)
        self._rng = rng or random.Random()
        self._fence = fence
        # Sinks that take the token (the built-in ones); others are still fenced, just not told.
        self._takes_token = {s.name: _takes_token(s.deliver) for s in sinks}
        self._breakers = {
            n: CircuitBreaker(breaker_threshold, int(breaker_cooldown * 1000)) for n in names
        }
        self._refreshed: dict[str, int] = {}
        self._gauged_at: float | None = None
        #: Sinks the outbox holds pending items for that are not configured (a sink removed or
        #: renamed): found on the first run, their items given up after max_age.
        self._orphans: set[str] | None = None
        self._orphans_at: int | None = None
        self._wake = threading.Event()
        reg = registry if registry is not None else CollectorRegistry()
        self._delivered = Counter(
            "relia_notify_delivered", "Notifications delivered, per sink.", ["sink"], registry=reg
        )
        self._failed = Counter(
            "relia_notify_failed",
            "Notifications given up on (rejected by the receiver, or too old), per sink.",
            ["sink"],
            registry=reg,
        )
        self._retried = Counter(
            "relia_notify_retried",
            "Delivery attempts that failed and were scheduled again, per sink.",
            ["sink"],
            registry=reg,
        )
        self._refresh_failed = Counter(
            "relia_notify_refresh_failed",
            "Re-posts of the open incidents (refreshes) that failed, per sink.",
            ["sink"],
            registry=reg,
        )
        self._pending = Gauge(
            "relia_notify_pending",
            "Notifications waiting in the outbox, per sink.",
            ["sink"],
            registry=reg,
        )
        self._breaker_gauge = Gauge(
            "relia_notify_breaker_state",
            "Circuit breaker per sink: 0 closed, 1 open, 2 half-open.",
            ["sink"],
            registry=reg,
        )
        for n in names:  # every series exists from the start, at zero
            for metric in (self._delivered, self._failed, self._retried, self._refresh_failed):
                metric.labels(sink=n)
            self._pending.labels(sink=n).set(0)
            self._breaker_gauge.labels(sink=n).set(0)

    def breaker(self, sink: str) -> CircuitBreaker:
        """The circuit breaker of ``sink``."""
        return self._breakers[sink]

    def notify(self) -> None:
        """Wake the dispatcher thread now (new items were enqueued, or it should stop)."""
        self._wake.set()

    def run_once(self, now: int | None = None, stop: threading.Event | None = None) -> int:
        """Deliver what is due at ``now`` (default: the clock) to every sink, refresh sinks
        that need it; returns how many items were delivered. With a fence that gives no token
        (this replica does not lead), nothing is sent and 0 is returned.

        Sinks that need it are refreshed first, so a backlog elsewhere cannot let their open
        alerts expire. Each sink then has a turn of about its ``timeout`` (the attempt under
        way finishes): what is left waits for the next run, so a slow receiver cannot starve
        the others. Once ``stop`` is set, no new attempt starts."""
        now = self._clock() if now is None else now
        token: int | None = None
        if self._fence is not None:
            token = self._fence.token()
            if token is None:
                return 0
        delivered = 0
        touched = False
        try:
            touched = self._expire_orphans(now, token)
            for sink in self._sinks:
                if isinstance(sink, RefreshingSink) and not _stopping(stop):
                    self._maybe_refresh(sink, now, token)
        except _Fenced:
            log.warning("fencing token %s is stale: this replica stops sending", token)
            return 0
        for sink in self._sinks:
            if _stopping(stop):
                break
            try:
                n, changed = self._drain(sink, now, token, stop)
                delivered += n
                touched |= changed
                # Drained only now: its refresh waited for the backlog (see _maybe_refresh).
                if isinstance(sink, RefreshingSink) and not _stopping(stop):
                    self._maybe_refresh(sink, now, token)
            except _Fenced:
                log.warning("fencing token %s is stale: this replica stops sending", token)
                return delivered
            self._breaker_gauge.labels(sink=sink.name).set(int(self._breakers[sink.name].state))
        mono = time.monotonic()
        if touched or self._gauged_at is None or mono - self._gauged_at >= _GAUGE_EVERY_S:
            self._update_pending()
            self._gauged_at = mono
        return delivered

    def start(self, stop_event: threading.Event) -> threading.Thread:
        """Run :meth:`run_once` in a daemon thread until ``stop_event`` is set (set it, then
        call :meth:`notify` to stop at once). An error in a run is logged, not fatal."""
        thread = threading.Thread(
            target=self._loop, args=(stop_event,), name="relia-notify", daemon=True
        )
        thread.start()
        return thread

    # -- internals ----------------------------------------------------------------------------

    def _loop(self, stop: threading.Event) -> None:
        failures = FailureLog(log, "notification dispatch (retried each round)")
        while not stop.is_set():
            try:
                self.run_once(stop=stop)
                failures.succeeded()
            except Exception as exc:  # noqa: BLE001 - a store hiccup must not end delivery
                failures.failed(exc)
            self._wake.wait(self._poll)
            self._wake.clear()

    def _fence_check(self, token: int | None) -> None:
        """Raise :class:`_Fenced` unless ``token`` (None: no fence) still holds the lease."""
        if self._fence is not None and (token is None or not self._fence.check(token)):
            raise _Fenced

    def _drain(
        self, sink: Sink, now: int, token: int | None = None, stop: threading.Event | None = None
    ) -> tuple[int, bool]:
        """Deliver the due items of one sink for at most its turn (about its ``timeout``; see
        :meth:`run_once`); (how many were delivered, whether any changed)."""
        breaker = self._breakers[sink.name]
        turn_ends = time.monotonic() + float(getattr(sink, "timeout", _TURN_S))
        delivered = 0
        changed = False
        blocked: set[str] = set()  # incidents with a failed attempt in this run: keep order
        for _ in range(_MAX_ROUNDS):
            if not breaker.allows(now):
                break
            items = self._store.due_notifications(sink.name, now, _BATCH)
            progressed = False
            for item in items:
                if item.incident_id in blocked:
                    continue
                if now - item.created_at > self._max_age_ms:
                    self._fence_check(token)  # only the leader changes the outbox
                    self._give_up(item, now, f"undelivered after {item.attempts} attempt(s)")
                    changed = progressed = True
                    continue
                if not breaker.allows(now):
                    break
                # Its turn is over (or relia stops): the rest waits for the next run.
                if time.monotonic() >= turn_ends or _stopping(stop):
                    return delivered, changed
                outcome = self._attempt(sink, item, now, breaker, token)
                if outcome is _Outcome.DELIVERED:
                    delivered += 1
                if outcome is _Outcome.RETRY:
                    blocked.add(item.incident_id)
                else:  # delivered or failed: the incident's next version may go now
                    progressed = True
                changed = True
            if not progressed:
                break
        return delivered, changed

    def _attempt(
        self,
        sink: Sink,
        item: OutboxItem,
        now: int,
        breaker: CircuitBreaker,
        token: int | None = None,
    ) -> _Outcome:
        """One delivery attempt, its outcome recorded in the store and the metrics. Fenced:
        checked right before the send and again before marking it delivered."""
        self._fence_check(token)
        try:
            if token is not None and self._takes_token[sink.name]:
                sink.deliver(item, fencing_token=token)  # type: ignore[call-arg]
            else:
                sink.deliver(item)
        except DeliveryError as e:
            error, retryable = str(e), e.retryable
        except Exception as e:  # a bug in a sink: retried like an outage, and logged loudly
            log.exception("sink %s raised while delivering %s", sink.name, item.id)
            error, retryable = f"{type(e).__name__}: {e}", True
        else:
            # Lost the lease during the send: leave the item pending for the new leader (the
            # receiver may see it twice, with the same dedup key and a larger token).
            self._fence_check(token)
            self._store.mark_delivered([item.id], now)
            _breaker_success(sink.name, breaker, now)
            self._delivered.labels(sink=sink.name).inc()
            return _Outcome.DELIVERED
        # A deposed leader's send is refused by a receiver that enforces the token: recording
        # that refusal would give up on (or push back) the new leader's still-pending item.
        self._fence_check(token)
        attempts = item.attempts + 1
        if not retryable:
            # The receiver answered (it is up, it said no): for the breaker that is a success,
            # else a rejected half-open probe would leave it half-open (and refreshes blocked).
            _breaker_success(sink.name, breaker, now)
            self._give_up(item, now, error, attempts=attempts)
            return _Outcome.FAILED
        delay_ms = int(backoff_delay(attempts, self._base, self._cap, self._rng) * 1000)
        self._store.mark_attempt_failed(item.id, attempts, now + max(delay_ms, 1), error)
        self._retried.labels(sink=sink.name).inc()
        if not _breaker_failure(sink.name, breaker, now, error):
            log.info("sink %s: %s failed (attempt %d): %s", sink.name, item.id, attempts, error)
        return _Outcome.RETRY

    def _give_up(
        self, item: OutboxItem, now: int, error: str, *, attempts: int | None = None
    ) -> None:
        n = item.attempts if attempts is None else attempts
        self._store.mark_attempt_failed(item.id, n, now, error, give_up=True)
        self._failed.labels(sink=item.sink).inc()
        log.error("sink %s: gave up on %s: %s", item.sink, item.id, error)

    def _expire_orphans(self, now: int, token: int | None) -> bool:
        """Give up the items of sinks no longer configured once they are ``max_age`` old (no
        sink will ever deliver them, and pending items are never pruned); the first run logs
        them once. Returns whether any item changed."""
        if self._orphans is None:
            counts = self._store.outbox_counts()
            configured = {s.name for s in self._sinks}
            waiting = {
                name: n
                for name, by_status in counts.items()
                if name not in configured and (n := by_status.get(OutboxStatus.PENDING.value, 0))
            }
            self._orphans = set(waiting)
            if waiting:
                log.warning(
                    "the outbox holds notifications for sinks that are not configured (a sink "
                    "removed or renamed): %s; they are not delivered, and are given up %s after "
                    "they were written (notify.max_age)",
                    ", ".join(
                        f"{name} ({_count(n)} pending)" for name, n in sorted(waiting.items())
                    ),
                    _duration(self._max_age_ms),
                )
                for name in waiting:
                    self._failed.labels(sink=name)
                    self._pending.labels(sink=name).set(waiting[name])
        if not self._orphans:
            return False
        if self._orphans_at is not None and now - self._orphans_at < _ORPHANS_EVERY_MS:
            return False
        self._orphans_at = now
        changed = False
        for name in sorted(self._orphans):
            for _ in range(_MAX_ROUNDS):
                items = self._store.due_notifications(name, now, _BATCH)
                if not items:  # nothing of it pending any more
                    self._orphans.discard(name)
                    self._pending.labels(sink=name).set(0)
                    break
                expired = [i for i in items if now - i.created_at > self._max_age_ms]
                if not expired:
                    break
                self._fence_check(token)  # only the leader changes the outbox
                for item in expired:
                    self._give_up(item, now, "its sink is no longer configured")
                changed = True
        return changed

    def _maybe_refresh(self, sink: RefreshingSink, now: int, token: int | None = None) -> None:
        last = self._refreshed.get(sink.name)
        if last is not None and now - last < sink.resend_interval * 1000:
            return
        # Open: the receiver is down, wait for the cooldown. Half-open with the outbox drained
        # (its items given up after max_age, unsent): nothing else will probe, so refresh.
        if not self._breakers[sink.name].allows(now):
            return
        # While items wait, the receiver is behind: delivering them comes first, and re-sending
        # the current state now could briefly put a newer version ahead of an older one.
        counts = self._store.outbox_counts().get(sink.name, {})
        if counts.get(OutboxStatus.PENDING.value, 0):
            return
        # All of them (the store's default page is 1,000): one left out would expire there.
        open_incidents = self._store.incidents(status=IncidentStatus.OPEN, limit=OPEN_INCIDENTS_MAX)
        # Never the first word about an incident the sink must not hear about (min_severity).
        open_incidents = self._routing.heard_of(self._store, sink.name, open_incidents)
        # A stale leader re-posting open alerts could revive ones the new leader resolved.
        self._fence_check(token)
        self._refreshed[sink.name] = now
        # A refresh is an attempt like a delivery, for the breaker: with nothing else to send, it
        # is the only sign that the receiver is down (or back, when it is the half-open probe).
        breaker = self._breakers[sink.name]
        try:
            if token is not None and _takes_token(sink.refresh):
                sink.refresh(open_incidents, fencing_token=token)  # type: ignore[call-arg]
            else:
                sink.refresh(open_incidents)
        except DeliveryError as e:
            self._refresh_failed.labels(sink=sink.name).inc()
            log.warning("sink %s: refreshing open alerts failed: %s", sink.name, e)
            if not e.retryable:
                _breaker_success(sink.name, breaker, now)  # it answered: up, and it said no
            else:
                _breaker_failure(sink.name, breaker, now, str(e))
        else:
            _breaker_success(sink.name, breaker, now)

    def _update_pending(self) -> None:
        counts = self._store.outbox_counts()
        for name in [s.name for s in self._sinks] + sorted(self._orphans or ()):
            pending = counts.get(name, {}).get(OutboxStatus.PENDING.value, 0)
            self._pending.labels(sink=name).set(pending)


def _stopping(stop: threading.Event | None) -> bool:
    return stop is not None and stop.is_set()


def _takes_token(method: Callable[..., object]) -> bool:
    """Whether a sink's ``deliver``/``refresh`` accepts ``fencing_token=``."""
    try:
        return "fencing_token" in inspect.signature(method).parameters
    except (TypeError, ValueError):  # no signature to read (a builtin): do not pass it
        return False
