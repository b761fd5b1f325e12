"""The dispatcher: backoff, circuit breaker, order per incident, give-ups, metrics, the thread."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Sequence

import pytest
from prometheus_client import CollectorRegistry

from relia.incidents.model import Incident, Severity
from relia.notify.dispatcher import BreakerState, Dispatcher, backoff_delay
from relia.notify.outbox import OutboxItem, notifications_for
from relia.notify.sinks import DeliveryError
from tests.notify.factory import T0, IncidentMemoryStore, incident, resolved

S = 1000  # ms


class ScriptedSink:
    """Fails while ``down`` (retryable unless ``reject``), records what it delivered."""

    def __init__(self, name: str = "am") -> None:
        self.name = name
        self.down = False
        self.reject = False
        self.attempts: list[str] = []
        self.delivered: list[str] = []

    def deliver(self, item: OutboxItem) -> None:
        self.attempts.append(item.id)
        if self.reject:
            raise DeliveryError("HTTP 400: bad alert", retryable=False)
        if self.down:
            raise DeliveryError("connection refused", retryable=True)
        self.delivered.append(item.id)


class RefreshSink(ScriptedSink):
    resend_interval = 60.0

    def __init__(self) -> None:
        super().__init__()
        self.refreshed: list[list[str]] = []

    def refresh(self, open_incidents: Sequence[Incident]) -> None:
        self.refreshed.append([i.id for i in open_incidents])


class FlakyRefreshSink(RefreshSink):
    """A RefreshSink whose refresh fails like its deliveries (``down``, ``reject``)."""

    def refresh(self, open_incidents: Sequence[Incident]) -> None:
        if self.reject:
            raise DeliveryError("HTTP 400: bad alerts", retryable=False)
        if self.down:
            raise DeliveryError("connection refused", retryable=True)
        super().refresh(open_incidents)


def make(
    sinks: Sequence[ScriptedSink], **kw: float
) -> tuple[IncidentMemoryStore, Dispatcher, CollectorRegistry]:
    store = IncidentMemoryStore()
    registry = CollectorRegistry()
    params: dict[str, float] = {"base_delay": 1.0, "max_delay": 300.0, "breaker_threshold": 3}
    params.update(kw)
    d = Dispatcher(
        store,
        sinks,
        clock=lambda: T0,
        registry=registry,
        rng=random.Random(7),
        breaker_threshold=int(params.pop("breaker_threshold")),
        **params,
    )
    return store, d, registry


def metric(registry: CollectorRegistry, name: str, sink: str = "am") -> float:
    value = registry.get_sample_value(name, {"sink": sink})
    assert value is not None, name
    return value


def test_backoff_doubles_with_jitter_up_to_the_cap() -> None:
    rng = random.Random(1)
    for attempts in range(1, 15):
        full = min(300.0, 2.0 ** (attempts - 1))
        for _ in range(50):
            d = backoff_delay(attempts, 1.0, 300.0, rng)
            assert full / 2 <= d <= full
    assert backoff_delay(10**6, 1.0, 300.0, rng) <= 300.0
    # Jitter: not every draw is the same.
    assert len({backoff_delay(5, 1.0, 300.0, rng) for _ in range(20)}) > 1


def test_retries_follow_the_backoff_schedule() -> None:
    sink = ScriptedSink()
    sink.down = True
    store, d, registry = make([sink], breaker_threshold=100)
    store.enqueue_notifications(notifications_for(incident(), ["am"], T0))
    now = T0
    for attempt in range(1, 9):
        assert d.run_once(now) == 0
        (item,) = store.due_notifications("am", 2**62, 10)
        full = min(300.0, 2.0 ** (attempt - 1)) * S
        assert item.attempts == attempt and item.last_error == "connection refused"
        assert full / 2 <= item.next_attempt_at - now <= full
        assert d.run_once(item.next_attempt_at - 1) == 0  # not yet due: no attempt
        assert len(sink.attempts) == attempt
        now = item.next_attempt_at
    assert metric(registry, "relia_notify_retried_total") == 8
    sink.down = False
    assert d.run_once(now) == 1
    assert sink.delivered == ["am:inc1:1"]
    assert store.outbox_counts()["am"] == {"pending": 0, "delivered": 1, "failed": 0}
    assert metric(registry, "relia_notify_delivered_total") == 1


def test_breaker_opens_probes_after_cooldown_and_closes() -> None:
    sink = ScriptedSink()
    sink.down = True
    store, d, registry = make([sink], breaker_threshold=3, breaker_cooldown=30.0, max_delay=0.001)
    for n in range(5):
        store.enqueue_notifications(notifications_for(incident(f"i{n}"), ["am"], T0 + n))
    # Three failures in a row open it; the other two items are not tried.
    d.run_once(T0 + 10)
    assert len(sink.attempts) == 3
    assert d.breaker("am").state is BreakerState.OPEN
    assert metric(registry, "relia_notify_breaker_state") == 1
    # Open: nothing is tried during the cooldown, though items are due.
    d.run_once(T0 + 10 + 29 * S)
    assert len(sink.attempts) == 3
    # After it: one probe (half-open); it fails, so open again for a new cooldown.
    d.run_once(T0 + 10 + 30 * S)
    assert len(sink.attempts) == 4
    assert d.breaker("am").state is BreakerState.OPEN
    d.run_once(T0 + 10 + 59 * S)
    assert len(sink.attempts) == 4
    # The receiver is back: the next probe succeeds, the breaker closes, the rest follows.
    sink.down = False
    assert d.run_once(T0 + 10 + 60 * S) == 5
    assert d.breaker("am").state is BreakerState.CLOSED
    assert metric(registry, "relia_notify_breaker_state") == 0
    assert sorted(sink.delivered) == [f"am:i{n}:1" for n in range(5)]
    assert metric(registry, "relia_notify_pending") == 0


def test_an_outage_logs_one_warning_then_a_line_per_probe_then_the_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = ScriptedSink()
    sink.down = True
    store, d, _ = make([sink], breaker_threshold=3, breaker_cooldown=30.0, max_delay=0.001)
    for n in range(3):
        store.enqueue_notifications(notifications_for(incident(f"i{n}"), ["am"], T0 + n))
    with caplog.at_level(logging.INFO, logger="relia.notify"):
        d.run_once(T0 + 10)
        for k in range(1, 5):  # an outage of two minutes: four failed probes
            d.run_once(T0 + 10 + 30 * S * k)
        sink.down = False
        d.run_once(T0 + 10 + 150 * S)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [
        "sink am: circuit breaker open after 3 failure(s); last: connection refused"
    ]
    probes = [r for r in caplog.records if "still failing" in r.getMessage()]
    assert len(probes) == 4 and all(r.levelno == logging.INFO for r in probes)
    assert probes[-1].getMessage() == (
        "sink am: still failing after 2m (7 failures): connection refused; next try in 30s"
    )
    back = caplog.records[-1]
    assert back.levelno == logging.INFO and back.getMessage() == (
        "sink am: delivering again after 2m30s down (7 failures); circuit breaker closed"
    )


def test_breaker_is_per_sink() -> None:
    am, hook = ScriptedSink("am"), ScriptedSink("hook")
    am.down = True
    store, d, _ = make([am, hook], breaker_threshold=1)
    store.enqueue_notifications(notifications_for(incident(), ["am", "hook"], T0))
    d.run_once(T0)
    assert d.breaker("am").state is BreakerState.OPEN
    assert d.breaker("hook").state is BreakerState.CLOSED
    assert hook.delivered == ["hook:inc1:1"]


def test_versions_of_an_incident_are_delivered_in_order() -> None:
    sink = ScriptedSink()
    store, d, _ = make([sink], breaker_threshold=100)
    v1 = incident()
    v2 = v1.model_copy(update={"version": 2, "severity": Severity.CRITICAL})
    v3 = resolved(v2, T0 + 2)
    sink.down = True
    store.enqueue_notifications(notifications_for(v1, ["am"], T0))
    d.run_once(T0)  # v1 fails, retries in 0.5-1 s
    store.enqueue_notifications(notifications_for(v2, ["am"], T0 + 1))
    store.enqueue_notifications(notifications_for(v3, ["am"], T0 + 2))
    sink.down = False
    d.run_once(T0 + 2)  # v2 and v3 are due, v1 is not: nothing may go yet
    assert sink.delivered == []
    assert d.run_once(T0 + 2 * S) == 3  # one run delivers the whole chain, in order
    assert sink.delivered == ["am:inc1:1", "am:inc1:2", "am:inc1:3"]


def test_a_failure_mid_chain_stops_the_rest_of_that_incident_only() -> None:
    sink = ScriptedSink()
    store, d, _ = make([sink], breaker_threshold=100)
    a1, b1 = incident("a"), incident("b")
    store.enqueue_notifications(notifications_for(a1, ["am"], T0))
    store.enqueue_notifications(notifications_for(resolved(a1, T0), ["am"], T0))
    store.enqueue_notifications(notifications_for(b1, ["am"], T0 + 1))

    def deliver(item: OutboxItem) -> None:  # a:1 goes, then the receiver fails on a:2
        sink.attempts.append(item.id)
        if item.id == "am:a:2":
            raise DeliveryError("HTTP 503", retryable=True)
        sink.delivered.append(item.id)

    sink.deliver = deliver  # type: ignore[method-assign]
    d.run_once(T0 + 10)
    assert sink.delivered == ["am:a:1", "am:b:1"]
    assert sink.attempts.count("am:a:2") == 1  # not hammered within one run


def test_rejected_items_fail_without_retry_and_unblock_the_next_version(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = ScriptedSink()
    store, d, registry = make([sink])
    v1 = incident()
    store.enqueue_notifications(notifications_for(v1, ["am"], T0))
    store.enqueue_notifications(notifications_for(resolved(v1, T0 + 1), ["am"], T0 + 1))
    sink.reject = True
    with caplog.at_level(logging.ERROR, logger="relia.notify"):
        d.run_once(T0 + 5)
    assert sink.attempts == ["am:inc1:1", "am:inc1:2"]  # each tried once, never again
    d.run_once(T0 + 10**7)
    assert len(sink.attempts) == 2
    assert store.outbox_counts()["am"] == {"pending": 0, "delivered": 0, "failed": 2}
    assert metric(registry, "relia_notify_failed_total") == 2
    assert metric(registry, "relia_notify_retried_total") == 0
    assert d.breaker("am").state is BreakerState.CLOSED  # the receiver is up, it said no
    assert "gave up on am:inc1:1: HTTP 400" in caplog.text


def test_items_older_than_max_age_are_given_up(caplog: pytest.LogCaptureFixture) -> None:
    sink = ScriptedSink()
    sink.down = True
    store, d, registry = make([sink], breaker_threshold=100, max_age=3600.0)
    store.enqueue_notifications(notifications_for(incident(), ["am"], T0))
    d.run_once(T0)
    (item,) = store.due_notifications("am", 2**62, 1)
    sink.down = False
    with caplog.at_level(logging.ERROR, logger="relia.notify"):
        assert d.run_once(T0 + 3600 * S + 1) == 0
    assert len(sink.attempts) == 1  # not tried again: given up
    assert store.outbox_counts()["am"]["failed"] == 1
    assert metric(registry, "relia_notify_failed_total") == 1
    assert "gave up on am:inc1:1: undelivered after 1 attempt(s)" in caplog.text
    assert item.attempts == 1


def test_a_sink_bug_is_retried_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(ScriptedSink):
        def deliver(self, item: OutboxItem) -> None:
            raise KeyError("oops")

    store, d, _ = make([Broken()])
    store.enqueue_notifications(notifications_for(incident(), ["am"], T0))
    with caplog.at_level(logging.ERROR, logger="relia.notify"):
        d.run_once(T0)
    (item,) = store.due_notifications("am", 2**62, 1)
    assert item.attempts == 1 and item.last_error == "KeyError: 'oops'"
    assert "sink am raised" in caplog.text


def test_refresh_runs_every_resend_interval_once_the_outbox_is_drained() -> None:
    sink = RefreshSink()
    store, d, _ = make([sink], breaker_threshold=1)
    store.open = [incident("a"), incident("b")]
    store.enqueue_notifications(notifications_for(incident("a"), ["am"], T0))
    sink.down = True
    d.run_once(T0)
    assert sink.refreshed == []  # an item is pending: deliver it first
    sink.down = False
    d.run_once(T0 + 31 * S)  # breaker probe succeeds, outbox drained: refresh
    assert sink.refreshed == [["a", "b"]]
    d.run_once(T0 + 90 * S)
    assert len(sink.refreshed) == 1  # 59 s later: not yet
    d.run_once(T0 + 91 * S)
    assert len(sink.refreshed) == 2


def test_thread_delivers_wakes_on_notify_and_stops() -> None:
    sink = ScriptedSink()
    store = IncidentMemoryStore()
    d = Dispatcher(store, [sink], poll_interval=30.0)  # only notify() can wake it in time
    stop = threading.Event()
    thread = d.start(stop)
    try:
        time.sleep(0.05)
        store.enqueue_notifications(
            notifications_for(incident(), ["am"], time.time_ns() // 1_000_000)
        )
        d.notify()
        deadline = time.monotonic() + 5
        while not sink.delivered and time.monotonic() < deadline:
            time.sleep(0.01)
        assert sink.delivered == ["am:inc1:1"]
    finally:
        stop.set()
        d.notify()
        thread.join(timeout=5)
    assert not thread.is_alive() and thread.daemon


def test_duplicate_sink_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unique"):
        Dispatcher(IncidentMemoryStore(), [ScriptedSink(), ScriptedSink()])


# -- fencing (HA replicas) --------------------------------------------------------------------


class ScriptedFence:
    """Gives ``held`` as the token; ``check`` answers ``current`` (a list: one answer per call,
    the last one repeated) and records each call."""

    def __init__(self, held: int | None, current: list[bool]) -> None:
        self.held = held
        self.current = current
        self.checks: list[int] = []

    def token(self) -> int | None:
        return self.held

    def check(self, token: int) -> bool:
        self.checks.append(token)
        return self.current[min(len(self.checks), len(self.current)) - 1]


class TokenSink(ScriptedSink):
    """Takes the fencing token, as the built-in sinks do."""

    def __init__(self) -> None:
        super().__init__()
        self.tokens: list[int | None] = []

    def deliver(self, item: OutboxItem, fencing_token: int | None = None) -> None:
        self.tokens.append(fencing_token)
        super().deliver(item)


def fenced(sink: ScriptedSink, fence: ScriptedFence) -> tuple[IncidentMemoryStore, Dispatcher]:
    store = IncidentMemoryStore()
    d = Dispatcher(store, [sink], clock=lambda: T0, rng=random.Random(7), fence=fence)
    store.enqueue_notifications(notifications_for(incident("i1"), ["am"], T0))
    store.enqueue_notifications(notifications_for(incident("i2"), ["am"], T0))
    return store, d


def test_a_fenced_leader_sends_with_its_token_checked_before_each_send_and_mark() -> None:
    sink = TokenSink()
    fence = ScriptedFence(7, [True])
    store, d = fenced(sink, fence)
    assert d.run_once(T0) == 2
    assert sink.delivered == ["am:i1:1", "am:i2:1"] and sink.tokens == [7, 7]
    assert fence.checks == [7, 7, 7, 7]  # before each send and before each mark
    assert store.outbox_counts()["am"]["delivered"] == 2


def test_a_follower_sends_nothing() -> None:
    sink = TokenSink()
    fence = ScriptedFence(None, [True])
    store, d = fenced(sink, fence)
    assert d.run_once(T0) == 0
    assert sink.attempts == [] and fence.checks == []
    assert store.outbox_counts()["am"]["pending"] == 2


def test_a_stale_fence_sends_nothing_and_marks_nothing() -> None:
    sink = TokenSink()
    fence = ScriptedFence(3, [False])  # the local view still says leader; the database does not
    store, d = fenced(sink, fence)
    assert d.run_once(T0) == 0
    assert sink.attempts == []
    assert store.outbox_counts()["am"] == {"pending": 2, "delivered": 0, "failed": 0}


def test_a_lease_lost_during_a_send_leaves_the_item_for_the_new_leader() -> None:
    sink = TokenSink()
    fence = ScriptedFence(3, [True, False])  # fine before the send, gone before the mark
    store, d = fenced(sink, fence)
    assert d.run_once(T0) == 0
    assert sink.delivered == ["am:i1:1"]  # the one send in the window (see the module doc)
    assert store.outbox_counts()["am"] == {"pending": 2, "delivered": 0, "failed": 0}


@pytest.mark.parametrize("retryable", [False, True])
def test_a_send_refused_after_the_lease_was_lost_leaves_the_item_untouched(
    retryable: bool,
) -> None:
    # A receiver enforcing the token refuses the deposed leader's send: that refusal must not
    # give up on (or push back) the item the new leader still has to deliver.
    sink = TokenSink()
    sink.reject, sink.down = not retryable, retryable
    fence = ScriptedFence(3, [True, False])  # fine before the send, gone after it failed
    store, d = fenced(sink, fence)
    assert d.run_once(T0) == 0
    assert sink.attempts == ["am:i1:1"]
    assert store.outbox_counts()["am"] == {"pending": 2, "delivered": 0, "failed": 0}
    assert [(i.attempts, i.next_attempt_at) for i in store.due_notifications("am", T0, 10)] == [
        (0, T0),
        (0, T0),
    ]


def test_a_stale_fence_does_not_refresh_open_alerts() -> None:
    sink = RefreshSink()
    store = IncidentMemoryStore()
    store.open = [incident("i1")]
    fence = ScriptedFence(3, [False])
    d = Dispatcher(store, [sink], clock=lambda: T0, rng=random.Random(7), fence=fence)
    d.run_once(T0)
    assert sink.refreshed == []
    fence.current = [True]
    fence.checks = []
    d.run_once(T0)
    assert sink.refreshed == [["i1"]]


def test_built_in_sinks_carry_the_fencing_token() -> None:
    import json

    import httpx

    from relia.notify.sinks import (
        FENCING_ANNOTATION,
        FENCING_HEADER,
        AlertmanagerSink,
        WebhookSink,
        verify_signature,
    )

    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    transport = httpx.MockTransport(handler)
    (item,) = notifications_for(incident("i1"), ["hook"], T0)
    hook = WebhookSink("http://hook.test/x", "s3cret", transport=transport, clock=lambda: T0)
    hook.deliver(item, fencing_token=42)
    hook.deliver(item)
    with_token, without = seen
    assert with_token.headers[FENCING_HEADER] == "42"
    assert json.loads(with_token.content)["fencing_token"] == 42  # inside what is signed
    assert verify_signature(with_token.content, dict(with_token.headers), "s3cret", now=T0 / 1000)
    assert FENCING_HEADER not in without.headers and b"fencing_token" not in without.content
    seen.clear()
    am = AlertmanagerSink("http://am.test", transport=transport, clock=lambda: T0, name="hook")
    am.deliver(item, fencing_token=43)
    am.refresh([incident("i1")], fencing_token=44)
    for request, token in zip(seen, ("43", "44"), strict=True):
        assert request.headers[FENCING_HEADER] == token
        (alert,) = json.loads(request.content)
        assert alert["annotations"][FENCING_ANNOTATION] == token


# -- behaviours found untested by a mutation audit ------------------------------------------


def test_breaker_opens_only_after_consecutive_failures() -> None:
    # Threshold 3; attempts go fail, fail, ok, fail, fail. The success in the middle resets the
    # count, so the run ends with 2 consecutive failures: the breaker stays closed and all 5
    # items are tried in the one run.
    sink = ScriptedSink()
    script = iter([True, True, False, True, True])  # True: the receiver fails

    def deliver(item: OutboxItem) -> None:
        sink.attempts.append(item.id)
        if next(script):
            raise DeliveryError("HTTP 503", retryable=True)
        sink.delivered.append(item.id)

    sink.deliver = deliver  # type: ignore[method-assign]
    store, d, _ = make([sink], breaker_threshold=3)
    for n in range(5):
        store.enqueue_notifications(notifications_for(incident(f"i{n}"), ["am"], T0 + n))
    d.run_once(T0 + 10)
    assert len(sink.attempts) == 5
    assert sink.delivered == ["am:i2:1"]
    assert d.breaker("am").state is BreakerState.CLOSED


def test_a_failed_attempt_is_not_retried_at_the_same_instant_even_with_zero_backoff() -> None:
    # A backoff of 0 s must still put the retry after the failed attempt: a second run at the
    # same millisecond (woken by notify()) must not try again.
    sink = ScriptedSink()
    sink.down = True
    store, d, _ = make([sink], base_delay=0.0, max_delay=0.0, breaker_threshold=100)
    store.enqueue_notifications(notifications_for(incident(), ["am"], T0))
    d.run_once(T0)
    d.run_once(T0)
    assert sink.attempts == ["am:inc1:1"]
    (item,) = store.due_notifications("am", 2**62, 1)
    assert item.next_attempt_at > T0


def test_a_rejected_item_is_recorded_with_the_attempt_it_took() -> None:
    # The store is told the new attempt count (Store.mark_attempt_failed): a fresh item that the
    # receiver refuses (HTTP 400) on its first try has been attempted once, not zero times.
    calls: list[tuple[str, int, bool]] = []

    class RecordingStore(IncidentMemoryStore):
        def mark_attempt_failed(
            self,
            item_id: str,
            attempts: int,
            next_attempt_at: int,
            error: str,
            *,
            give_up: bool = False,
        ) -> None:
            calls.append((item_id, attempts, give_up))
            super().mark_attempt_failed(item_id, attempts, next_attempt_at, error, give_up=give_up)

    sink = ScriptedSink()
    sink.reject = True
    store = RecordingStore()
    d = Dispatcher(store, [sink], clock=lambda: T0, rng=random.Random(7))
    store.enqueue_notifications(notifications_for(incident(), ["am"], T0))
    d.run_once(T0)
    assert calls == [("am:inc1:1", 1, True)]


def test_no_refresh_while_an_item_waits_for_its_retry() -> None:
    # The breaker stays closed (threshold 100) while v1 waits for a retry: a refresh now could
    # put the current state ahead of the pending change, so it waits for the outbox to drain.
    sink = RefreshSink()
    store, d, _ = make([sink], breaker_threshold=100)
    store.open = [incident("a")]
    store.enqueue_notifications(notifications_for(incident("a"), ["am"], T0))
    sink.down = True
    d.run_once(T0)
    assert d.breaker("am").state is BreakerState.CLOSED
    assert sink.refreshed == []
    sink.down = False
    d.run_once(T0 + 2 * S)  # the retry (due within 0.5-1 s) goes, then the refresh
    assert sink.delivered == ["am:a:1"]
    assert sink.refreshed == [["a"]]


def test_refresh_is_given_the_open_incidents_only() -> None:
    # A resolved incident re-posted as firing would revive it in Alertmanager.
    sink = RefreshSink()
    store, d, _ = make([sink])
    store.open = [incident("a"), resolved(incident("b"), T0), incident("c")]
    d.run_once(T0)
    assert sink.refreshed == [["a", "c"]]


def test_refresh_re_posts_every_open_incident_past_the_stores_default_page() -> None:
    # 1,500 open incidents: the store answers 1,000 unless asked for more, and an incident left
    # out of the refresh would expire in Alertmanager while it is still open.
    sink = RefreshSink()
    store, d, _ = make([sink])
    store.open = [incident(f"i{k:04d}") for k in range(1500)]
    d.run_once(T0)
    assert len(sink.refreshed) == 1 and len(sink.refreshed[0]) == 1500


def test_a_rejected_probe_closes_the_breaker_and_refreshing_resumes() -> None:
    # The receiver was down (breaker open); after the cooldown the probe is answered, with a 400:
    # the receiver is up, it said no. The breaker closes (it "closes or opens again" after a
    # probe), so with the outbox drained the open incident is re-posted; a breaker left half-open
    # would block the refresh until some later delivery succeeded, and Alertmanager would let
    # the open incident's alert expire meanwhile.
    sink = RefreshSink()
    store, d, _ = make([sink], breaker_threshold=1, breaker_cooldown=30.0)
    store.open = [incident("a")]
    store.enqueue_notifications(notifications_for(incident("a"), ["am"], T0))
    sink.down = True
    d.run_once(T0)
    assert d.breaker("am").state is BreakerState.OPEN
    sink.down, sink.reject = False, True
    d.run_once(T0 + 31 * S)
    assert sink.attempts == ["am:a:1", "am:a:1"]
    assert store.outbox_counts()["am"] == {"pending": 0, "delivered": 0, "failed": 1}
    assert d.breaker("am").state is BreakerState.CLOSED
    assert sink.refreshed == [["a"]]


def test_open_incidents_are_re_posted_after_an_outage_longer_than_max_age() -> None:
    # The receiver is down past max_age (60 s here): after the cooldown the pending item is
    # given up unsent, which leaves nothing to probe with. The open incident must still be
    # re-posted (the receiver forgot it during the outage), not wait for some new change.
    sink = RefreshSink()
    store, d, _ = make([sink], breaker_threshold=1, breaker_cooldown=30.0, max_age=60.0)
    store.open = [incident("a")]
    store.enqueue_notifications(notifications_for(incident("a"), ["am"], T0))
    sink.down = True
    d.run_once(T0)
    assert d.breaker("am").state is BreakerState.OPEN
    d.run_once(T0 + 20 * S)  # open, in its cooldown: no refresh either
    assert sink.refreshed == []
    d.run_once(T0 + 61 * S)  # cooldown over; the item is 61 s old: given up, not sent
    assert sink.attempts == ["am:a:1"]
    assert store.outbox_counts()["am"] == {"pending": 0, "delivered": 0, "failed": 1}
    assert sink.refreshed == [["a"]]


def test_failed_refreshes_open_the_breaker_and_a_refresh_is_the_probe() -> None:
    # Nothing to deliver, one open incident: the refreshes are the only traffic. A receiver
    # down all along must show as an open breaker, not stay "closed" on the dashboard.
    sink = FlakyRefreshSink()
    store, d, registry = make([sink], breaker_threshold=2, breaker_cooldown=30.0)
    store.open = [incident("a")]
    sink.down = True
    d.run_once(T0)
    assert d.breaker("am").state is BreakerState.CLOSED  # one failure of two
    d.run_once(T0 + 60 * S)
    assert d.breaker("am").state is BreakerState.OPEN
    assert metric(registry, "relia_notify_breaker_state") == 1
    assert metric(registry, "relia_notify_refresh_failed_total") == 2
    sink.down = False
    d.run_once(T0 + 80 * S)  # in its cooldown: no attempt
    d.run_once(T0 + 120 * S)  # half-open: the refresh is the probe, and it closes the breaker
    assert sink.refreshed == [["a"]]
    assert d.breaker("am").state is BreakerState.CLOSED
    assert metric(registry, "relia_notify_breaker_state") == 0


def test_a_rejected_refresh_does_not_open_the_breaker() -> None:
    sink = FlakyRefreshSink()
    store, d, registry = make([sink], breaker_threshold=1)
    store.open = [incident("a")]
    sink.reject = True
    d.run_once(T0)
    assert d.breaker("am").state is BreakerState.CLOSED
    assert metric(registry, "relia_notify_refresh_failed_total") == 1


def messages(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name.startswith("relia")]


def test_a_failure_under_the_threshold_logs_the_attempt(caplog: pytest.LogCaptureFixture) -> None:
    sink = ScriptedSink()
    sink.down = True
    store, d, _ = make([sink], breaker_threshold=3)
    store.enqueue_notifications(notifications_for(incident(), ["am"], T0))
    with caplog.at_level(logging.INFO, logger="relia.notify"):
        d.run_once(T0)
    assert (logging.INFO, "sink am: am:inc1:1 failed (attempt 1): connection refused") in (
        messages(caplog)
    )


def _refreshing_sink_down(breaker_threshold: int) -> tuple[FlakyRefreshSink, Dispatcher]:
    """A down Alertmanager-like sink with one open incident to refresh, and its dispatcher."""
    sink = FlakyRefreshSink()
    store, d, _ = make([sink], breaker_threshold=breaker_threshold, breaker_cooldown=30.0)
    store.open = [incident("a")]
    sink.down = True
    return sink, d


def test_an_outage_seen_by_refreshes_logs_its_start_and_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink, d = _refreshing_sink_down(breaker_threshold=2)
    with caplog.at_level(logging.INFO, logger="relia.notify"):
        d.run_once(T0)
        d.run_once(T0 + 60 * S)
        sink.down = False
        d.run_once(T0 + 120 * S)  # the probe is a refresh, and it works
    got = messages(caplog)
    assert (
        logging.WARNING,
        "sink am: circuit breaker open after 2 failure(s); last: connection refused",
    ) in got
    assert got[-1] == (
        logging.INFO,
        "sink am: delivering again after 1m down (2 failures); circuit breaker closed",
    )


def test_an_outage_ended_by_a_rejected_refresh_logs_its_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink, d = _refreshing_sink_down(breaker_threshold=1)
    with caplog.at_level(logging.INFO, logger="relia.notify"):
        d.run_once(T0)
        sink.down, sink.reject = False, True
        d.run_once(T0 + 61 * S)  # the next refresh is answered with a 400: up again
    assert (
        logging.INFO,
        "sink am: delivering again after 1m1s down (1 failure); circuit breaker closed",
    ) in messages(caplog)


def test_an_outage_ended_by_a_rejected_delivery_logs_its_end(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sink = ScriptedSink()
    store, d, _ = make([sink], breaker_threshold=1, breaker_cooldown=30.0)
    store.enqueue_notifications(notifications_for(incident("a"), ["am"], T0))
    sink.down = True
    with caplog.at_level(logging.INFO, logger="relia.notify"):
        d.run_once(T0)
        sink.down, sink.reject = False, True
        d.run_once(T0 + 31 * S)
    assert (
        logging.INFO,
        "sink am: delivering again after 31s down (1 failure); circuit breaker closed",
    ) in messages(caplog)


def test_an_outage_shorter_than_a_second_lasted_0s_and_one_second_1s() -> None:
    from relia.notify.dispatcher import _duration

    assert (_duration(0), _duration(999), _duration(1000), _duration(150_000)) == (
        "0s",
        "0s",
        "1s",
        "2m30s",
    )


def test_items_of_a_sink_no_longer_configured_are_named_then_given_up_after_max_age(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A sink renamed from hook to hook2 left its pending items pending forever: not delivered,
    # not given up, not counted, never pruned.
    sink = ScriptedSink("hook2")
    store, d, registry = make([sink], max_age=3600.0)
    store.enqueue_notifications(notifications_for(incident(), ["hook", "hook2"], T0))
    with caplog.at_level(logging.WARNING, logger="relia.notify"):
        d.run_once(T0 + 10 * S)
        d.run_once(T0 + 20 * S)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [
        "the outbox holds notifications for sinks that are not configured (a sink removed or "
        "renamed): hook (1 item pending); they are not delivered, and are given up 1h after "
        "they were written (notify.max_age)"
    ]
    assert sink.delivered == ["hook2:inc1:1"]
    assert store.outbox_counts()["hook"]["pending"] == 1
    assert metric(registry, "relia_notify_pending", "hook") == 1
    assert metric(registry, "relia_notify_failed_total", "hook") == 0
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="relia.notify"):
        d.run_once(T0 + 3600 * S + 1)
    assert store.outbox_counts()["hook"]["pending"] == 0
    assert store.outbox_counts()["hook"]["failed"] == 1
    assert metric(registry, "relia_notify_failed_total", "hook") == 1
    assert metric(registry, "relia_notify_pending", "hook") == 0
    assert "sink hook: gave up on hook:inc1:1: its sink is no longer configured" in caplog.text


def test_a_follower_leaves_the_items_of_unconfigured_sinks_alone() -> None:
    store, _, _ = make([ScriptedSink("hook2")])
    d = Dispatcher(store, [ScriptedSink("hook2")], max_age=60.0, fence=ScriptedFence(None, [False]))
    store.enqueue_notifications(notifications_for(incident(), ["hook"], T0))
    d.run_once(T0 + 3600 * S)
    assert store.outbox_counts()["hook"]["pending"] == 1


class SlowSink(ScriptedSink):
    """Takes ``each`` seconds per delivery, well inside its ``timeout`` (a receiver that answers
    in time, only slowly); records into ``events`` what happened, in order."""

    def __init__(self, name: str, events: list[str], each: float, timeout: float) -> None:
        super().__init__(name)
        self.events = events
        self.each = each
        self.timeout = timeout

    def deliver(self, item: OutboxItem) -> None:
        time.sleep(self.each)
        self.events.append(f"deliver {item.id}")
        super().deliver(item)


class RecordingRefreshSink(RefreshSink):
    def __init__(self, events: list[str]) -> None:
        super().__init__()
        self.events = events

    def refresh(self, open_incidents: Sequence[Incident]) -> None:
        self.events.append("refresh am")
        super().refresh(open_incidents)


def test_a_slow_sink_has_a_turn_of_about_its_timeout_then_the_others_go() -> None:
    events: list[str] = []
    slow = SlowSink("hook", events, each=0.1, timeout=0.25)
    log_sink = ScriptedSink("log")
    store, d, _ = make([slow, log_sink])
    incidents = [incident(f"i{n}") for n in range(20)]
    for inc in incidents:
        store.enqueue_notifications(notifications_for(inc, ["hook", "log"], T0))
    began = time.monotonic()
    d.run_once(T0)
    took = time.monotonic() - began
    assert len(log_sink.delivered) == 20  # not held up behind 2 s of slow deliveries
    assert 2 <= len(slow.delivered) <= 5 and took < 1.0
    while len(slow.delivered) < 20:  # the rest in the next runs
        d.run_once(T0)
    assert sorted(slow.delivered) == sorted(f"hook:i{n}:1" for n in range(20))


def test_refresh_comes_before_another_sinks_backlog() -> None:
    events: list[str] = []
    slow = SlowSink("hook", events, each=0.05, timeout=1.0)
    am = RecordingRefreshSink(events)
    store, d, _ = make([slow, am])
    store.open = [incident("a")]
    for n in range(5):
        store.enqueue_notifications(notifications_for(incident(f"i{n}"), ["hook"], T0))
    d.run_once(T0)
    assert events[0] == "refresh am"  # Alertmanager's alerts do not wait for the webhook
    assert am.refreshed == [["a"]] and len(slow.delivered) == 5


def test_the_thread_stops_without_draining_a_slow_backlog() -> None:
    events: list[str] = []
    slow = SlowSink("hook", events, each=0.2, timeout=60.0)
    store = IncidentMemoryStore()
    d = Dispatcher(store, [slow], poll_interval=30.0)
    now = time.time_ns() // 1_000_000
    for n in range(50):  # 10 s of deliveries, all within one turn
        store.enqueue_notifications(notifications_for(incident(f"i{n}"), ["hook"], now))
    stop = threading.Event()
    thread = d.start(stop)
    time.sleep(0.3)
    began = time.monotonic()
    stop.set()
    d.notify()
    thread.join(timeout=5)
    assert not thread.is_alive()
    assert time.monotonic() - began < 0.5  # the delivery under way, nothing after it
    assert len(slow.delivered) < 5
