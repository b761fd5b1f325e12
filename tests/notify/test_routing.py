"""min_severity per sink: which incident versions each sink hears about (relia.notify.routing),
end to end through the outbox and the dispatcher, across a restart, and for refreshes."""

from __future__ import annotations

from collections.abc import Collection

import pytest
from prometheus_client import CollectorRegistry

from relia.incidents.model import Incident, Severity
from relia.notify.dispatcher import Dispatcher
from relia.notify.outbox import notifications_for
from relia.notify.routing import SeverityRouting, filtered_counter, reaches
from tests.notify.factory import T0, IncidentMemoryStore, incident, resolved
from tests.notify.test_dispatcher import RefreshSink, ScriptedSink, make

S = 1000  # ms


def publish(store: IncidentMemoryStore, routing: SeverityRouting, *incs: Incident) -> None:
    """What the engine does with changed incidents: save them, enqueue their notifications."""
    store.save_incidents(list(incs))
    store.enqueue_notifications(routing.items_for(store, list(incs), T0))


def setup() -> tuple[IncidentMemoryStore, Dispatcher, ScriptedSink, ScriptedSink, SeverityRouting]:
    chat, pager = ScriptedSink("chat"), ScriptedSink("pager")
    store, d, _ = make([chat, pager])
    routing = SeverityRouting({"chat": Severity.INFO, "pager": Severity.CRITICAL})
    return store, d, chat, pager, routing


def test_severity_order() -> None:
    assert reaches(Severity.CRITICAL, Severity.WARNING) and reaches("warning", "warning")
    assert not reaches(Severity.WARNING, Severity.CRITICAL) and not reaches("info", "warning")
    assert all(reaches(s, Severity.INFO) for s in Severity)


def test_a_warning_incident_is_not_sent_to_a_critical_sink() -> None:
    store, d, chat, pager, routing = setup()
    publish(store, routing, incident("a", 1, severity=Severity.WARNING))
    d.run_once(T0)
    assert chat.delivered == ["chat:a:1"]
    assert pager.delivered == [] and pager.attempts == []
    assert store.outbox_counts().get("pager") is None  # nothing enqueued for it at all


def test_escalation_sends_and_the_downgrade_and_resolution_follow() -> None:
    store, d, chat, pager, routing = setup()
    v1 = incident("a", 1, severity=Severity.WARNING)
    v2 = v1.model_copy(update={"version": 2, "severity": Severity.CRITICAL})
    v3 = v2.model_copy(update={"version": 3, "severity": Severity.WARNING})
    v4 = resolved(v3, T0 + 60 * S)
    for v in (v1, v2, v3, v4):
        publish(store, routing, v)
        d.run_once(T0)
    assert chat.delivered == ["chat:a:1", "chat:a:2", "chat:a:3", "chat:a:4"]
    # Told it opened (at v2, its first critical version), so told every change after it.
    assert pager.delivered == ["pager:a:2", "pager:a:3", "pager:a:4"]


def test_an_incident_that_never_reached_the_minimum_sends_nothing_not_even_its_resolution() -> None:
    store, d, chat, pager, _ = setup()
    registry = CollectorRegistry()
    minimums = {"chat": Severity.INFO, "pager": Severity.CRITICAL}
    routing = SeverityRouting(minimums, filtered=filtered_counter(registry, minimums))
    v1 = incident("a", 1, severity=Severity.INFO)
    v2 = v1.model_copy(update={"version": 2, "severity": Severity.WARNING})
    for v in (v1, v2, resolved(v2, T0 + 60 * S)):
        publish(store, routing, v)
        d.run_once(T0)
    assert chat.delivered == ["chat:a:1", "chat:a:2", "chat:a:3"]
    assert pager.delivered == []
    # What the pager was not sent is counted, so a quiet pager can be told from a broken one.
    filtered = "relia_notify_filtered_total"
    assert registry.get_sample_value(filtered, {"sink": "pager"}) == 3
    assert registry.get_sample_value(filtered, {"sink": "chat"}) == 0
    v4 = v1.model_copy(update={"id": "b", "severity": Severity.CRITICAL})
    publish(store, routing, v4)
    publish(store, routing, v4.model_copy(update={"version": 2, "severity": Severity.WARNING}))
    # Heard about at its first version, so its downgrade is sent, not filtered.
    assert registry.get_sample_value(filtered, {"sink": "pager"}) == 3


def test_a_warning_sink_hears_warning_and_critical_incidents_not_info_ones() -> None:
    ops = ScriptedSink("ops")
    store, d, _ = make([ops])
    routing = SeverityRouting({"ops": Severity.WARNING})
    publish(
        store,
        routing,
        incident("i", 1, severity=Severity.INFO),
        incident("w", 1, severity=Severity.WARNING),
        incident("c", 1, severity=Severity.CRITICAL),
    )
    d.run_once(T0)
    assert sorted(ops.delivered) == ["ops:c:1", "ops:w:1"]


class NoHistoryStore(IncidentMemoryStore):
    def notified_incidents(
        self, sinks: Collection[str], incident_ids: Collection[str]
    ) -> set[tuple[str, str]]:
        raise AssertionError("sinks that hear everything need no look-up")


def test_by_default_every_sink_gets_every_version_as_before() -> None:
    store = NoHistoryStore()
    incs = [incident("a", 1, severity=s) for s in Severity]
    for routing in (SeverityRouting(["am", "hook"]), SeverityRouting({"am": Severity.INFO})):
        sinks = list(routing.sinks)
        got = routing.items_for(store, incs, T0)
        assert got == [it for inc in incs for it in notifications_for(inc, sinks, T0)]
    assert SeverityRouting([]).items_for(store, incs, T0) == []


def test_a_restart_keeps_the_rule() -> None:
    # Whether a sink heard about an incident is in the store (its outbox items), not in memory:
    # a new routing and a new dispatcher over the same store go on as the old ones would have.
    store, d, chat, pager, routing = setup()
    a1 = incident("a", 1, severity=Severity.CRITICAL)
    b1 = incident("b", 1, severity=Severity.WARNING)
    publish(store, routing, a1, b1)
    d.run_once(T0)
    assert pager.delivered == ["pager:a:1"]

    chat2, pager2 = ScriptedSink("chat"), ScriptedSink("pager")
    d2 = Dispatcher(store, [chat2, pager2], clock=lambda: T0)  # the same store, a new process
    routing2 = SeverityRouting({"chat": Severity.INFO, "pager": Severity.CRITICAL})
    # The restart enqueues every known incident's current version again: nothing new.
    publish(store, routing2, a1, b1)
    a2 = a1.model_copy(update={"version": 2, "severity": Severity.WARNING})
    publish(store, routing2, a2, resolved(b1, T0 + 60 * S))
    publish(store, routing2, resolved(a2, T0 + 60 * S))
    d2.run_once(T0)
    assert pager2.delivered == ["pager:a:2", "pager:a:3"]  # nothing of b
    assert sorted(chat2.delivered) == ["chat:a:2", "chat:a:3", "chat:b:2"]


def test_a_change_is_still_sent_when_retention_ran_between_its_save_and_its_enqueue() -> None:
    # The incident is open for longer than the retention; version 3 is saved, and retention
    # runs before it is enqueued (or relia dies there): the pager's newest item (v2) stays, so
    # the pager still hears about v3.
    store, d, _chat, pager, routing = setup()
    v1 = incident("a", 1, severity=Severity.CRITICAL)
    v2 = v1.model_copy(update={"version": 2, "severity": Severity.WARNING})
    publish(store, routing, v1)
    publish(store, routing, v2)
    d.run_once(T0)
    v3 = v2.model_copy(update={"version": 3, "keys": [*v2.keys, "disk"]})
    store.save_incidents([v3])
    assert store.prune_history(T0 + 365 * 86_400 * S)["outbox"] == 2  # both sinks' v1
    assert store.notified_incidents(["pager"], ["a"]) == {("pager", "a")}
    publish(store, routing, v3)
    d.run_once(T0)
    assert pager.delivered == ["pager:a:1", "pager:a:2", "pager:a:3"]


def test_refresh_re_posts_only_the_incidents_the_sink_heard_about() -> None:
    pager = RefreshSink()  # named "am"
    store, d, _ = make([pager], min_severity={"am": Severity.CRITICAL})  # type: ignore[arg-type]
    routing = SeverityRouting({"am": Severity.CRITICAL})
    never = incident("never", 1, severity=Severity.WARNING)
    crit = incident("crit", 1, severity=Severity.CRITICAL)
    was = incident("was", 1, severity=Severity.CRITICAL)
    publish(store, routing, never, crit, was)
    was2 = was.model_copy(update={"version": 2, "severity": Severity.WARNING})
    publish(store, routing, was2)
    store.open = [never, crit, was2]
    d.run_once(T0)
    assert sorted(pager.delivered) == ["am:crit:1", "am:was:1", "am:was:2"]
    assert pager.refreshed == [["crit", "was"]]


def test_refresh_of_a_sink_without_a_minimum_re_posts_every_open_incident() -> None:
    sink = RefreshSink()
    store, d, _ = make([sink])
    store.open = [incident("a", 1, severity=Severity.INFO), incident("b", 1)]
    d.run_once(T0)
    assert sink.refreshed == [["a", "b"]]


def test_a_minimum_for_an_unknown_sink_is_refused() -> None:
    with pytest.raises(ValueError, match="no sink named 'nope'"):
        make([ScriptedSink("am")], min_severity={"nope": Severity.CRITICAL})  # type: ignore[arg-type]


def test_a_filtered_version_is_counted_once_across_replays_and_restarts() -> None:
    store = IncidentMemoryStore()
    registry = CollectorRegistry()
    minimums = {"chat": Severity.INFO, "pager": Severity.CRITICAL}
    counter = filtered_counter(registry, minimums)
    filtered = "relia_notify_filtered_total"
    routing = SeverityRouting(minimums, filtered=counter)
    v1 = incident("a", 1, severity=Severity.WARNING)
    publish(store, routing, v1)
    grown = v1.model_copy(update={"end": T0 + 10 * S, "updated_at": T0 + 10 * S})
    store.enqueue_notifications(routing.items_for(store, [grown], T0 + 10 * S))  # same version
    store.enqueue_notifications(routing.items_for(store, [grown], T0 + 20 * S))  # a retry
    assert registry.get_sample_value(filtered, {"sink": "pager"}) == 1
    # A restart (or a new HA leader) re-enqueues what it knows: counted by the one that made it.
    for later in (T0 + 60 * S, T0 + 120 * S):
        restarted = SeverityRouting(minimums, filtered=counter)
        store.enqueue_notifications(restarted.items_for(store, [grown], later))
    assert registry.get_sample_value(filtered, {"sink": "pager"}) == 1
    v2 = grown.model_copy(update={"version": 2, "updated_at": T0 + 130 * S})
    store.enqueue_notifications(restarted.items_for(store, [v2], T0 + 130 * S))
    assert registry.get_sample_value(filtered, {"sink": "pager"}) == 2
