"""The incident pipeline off the tick: IncidentThread rounds, and Engine.run handing over."""

from __future__ import annotations

import threading
import time

import pytest
from prometheus_client import CollectorRegistry

from relia.config import IncidentsConfig
from relia.engine.incidents import IncidentPipeline, IncidentThread
from relia.engine.local import LocalExecutor
from relia.engine.loop import Engine
from relia.errors import StoreError
from relia.incidents.model import Finding, FindingKind, Incident, IncidentStatus, Severity
from relia.notify.outbox import OutboxItem
from relia.signals import MetricBatch, SeriesIndex
from tests.engine.memstore import MemoryStore
from tests.engine.test_loop import STEP, T0, WaveSource


def _finding(key: str, start: int) -> Finding:
    return Finding(
        id=Finding.make_id(FindingKind.METRIC, key, start, "t"),
        kind=FindingKind.METRIC,
        key=key,
        start=start,
        end=start,
        score=0.9,
        severity=Severity.WARNING,
        detector="t",
        summary=key,
        evidence={},
    )


class CountingPipeline:
    """Records each update; fails the first ``fail`` of them."""

    def __init__(self, fail: int = 0) -> None:
        self.calls: list[list[str]] = []
        self.fail = fail

    def update(self, findings: list[Finding], now: int) -> list[object]:
        if self.fail:
            self.fail -= 1
            raise OSError("store is away")
        self.calls.append([f.id for f in findings])
        return []


def test_findings_submitted_between_rounds_are_correlated_in_one_round() -> None:
    pipe = CountingPipeline()
    th = IncidentThread(pipe, lambda: T0, period_s=3600)  # type: ignore[arg-type]
    fs = [_finding(f'cpu{{i="{n}"}}', T0) for n in range(5)]
    th.submit(fs[:2])
    th.submit(fs[2:])
    th.submit([])
    th.run_round()
    th.run_round()  # nothing new: still a round (incidents resolve with time)
    assert pipe.calls == [[f.id for f in fs], []]


def test_a_failed_round_keeps_its_findings_for_the_next() -> None:
    pipe = CountingPipeline(fail=1)
    errors: list[Exception] = []
    th = IncidentThread(pipe, lambda: T0, period_s=0.01, on_error=errors.append)  # type: ignore[arg-type]
    a, b = _finding("a", T0), _finding("b", T0)
    th.submit([a])
    th.start()
    deadline = time.monotonic() + 10
    while not errors and time.monotonic() < deadline:
        time.sleep(0.01)
    th.submit([b])
    th.stop()
    assert len(errors) == 1
    flat = [fid for call in pipe.calls for fid in call]
    assert flat == [a.id, b.id]  # each exactly once, the failed one first


def test_a_finding_that_grew_while_a_round_failed_is_correlated_at_its_newest() -> None:
    # The engine submits the grown finding while the round holding its older version fails:
    # the retry must hand the older one first, since the last one given for an id wins.
    old = _finding("a", T0)
    grown = old.model_copy(update={"end": T0 + 60_000})
    seen: list[int] = []

    class Pipe:
        def update(self, findings: list[Finding], now: int) -> list[object]:
            if not seen:
                seen.append(-1)
                th.submit([grown])
                raise OSError("store is away")
            seen.extend(f.end for f in findings)
            return []

    th = IncidentThread(Pipe(), lambda: T0, period_s=3600)  # type: ignore[arg-type]
    th.submit([old])
    with pytest.raises(OSError):
        th.run_round()
    th.run_round()
    assert seen == [-1, T0, T0 + 60_000]


class FlakyStore(MemoryStore):
    """Fails the next ``fail_saves`` saves of incidents and ``fail_enqueues`` enqueues."""

    fail_saves = 0
    fail_enqueues = 0

    def save_incidents(self, incidents: list[Incident]) -> None:
        if self.fail_saves:
            self.fail_saves -= 1
            raise StoreError("cannot connect to the store: connection refused")
        super().save_incidents(incidents)

    def enqueue_notifications(self, items: list[OutboxItem]) -> int:
        if self.fail_enqueues:
            self.fail_enqueues -= 1
            raise StoreError("cannot connect to the store: connection refused")
        return super().enqueue_notifications(items)


def _pipeline_and_a_stored_finding(store: FlakyStore) -> tuple[IncidentPipeline, Finding]:
    pipe = IncidentPipeline(store, IncidentsConfig(), lambda sid: None, sinks=["am"])
    pipe.start(T0)
    f = _finding('cpu{job="db"}', T0)
    store.add_findings([f])
    return pipe, f


def test_incidents_a_failed_save_left_out_are_saved_and_notified_by_the_next_update() -> None:
    # The correlator has moved on when the save fails: passing the same findings again changes
    # nothing in it, so the pipeline itself must remember what it could not write.
    store = FlakyStore()
    pipe, f = _pipeline_and_a_stored_finding(store)
    store.fail_saves = 1
    with pytest.raises(StoreError):
        pipe.update([f], T0)
    assert store.incidents() == []
    pipe.update([], T0 + 1000)  # nothing new: the next round writes what the last could not
    (incident,) = store.incidents()
    assert incident.finding_ids == [f.id]
    assert store.outbox_counts()["am"]["pending"] == 1


def test_notifications_a_failed_enqueue_left_out_are_enqueued_by_the_next_update() -> None:
    store = FlakyStore()
    pipe, f = _pipeline_and_a_stored_finding(store)
    store.fail_enqueues = 1
    with pytest.raises(StoreError):
        pipe.update([f], T0)
    assert (
        len(store.incidents()) == 1 and store.outbox_counts().get("am", {}).get("pending", 0) == 0
    )
    pipe.update([], T0 + 1000)
    assert store.outbox_counts()["am"]["pending"] == 1
    pipe.update([], T0 + 2000)
    assert store.outbox_counts()["am"]["pending"] == 1  # enqueued once


def test_stop_runs_a_last_round_for_what_was_submitted() -> None:
    pipe = CountingPipeline()
    th = IncidentThread(pipe, lambda: T0, period_s=3600)  # type: ignore[arg-type]
    th.start()
    f = _finding("a", T0)
    th.submit([f])
    th.stop()
    assert not th.running
    assert [fid for call in pipe.calls for fid in call] == [f.id]


def test_engine_run_correlates_in_the_incident_thread() -> None:
    store = MemoryStore()
    index = SeriesIndex()
    ticks = {"n": 0}
    stop = threading.Event()
    pipeline = IncidentPipeline(store, IncidentsConfig(), index.labels)
    tick_threads: set[str] = set()
    update_threads: set[str] = set()
    real_update = pipeline.update

    def update(findings: list[Finding], now: int) -> list[object]:
        update_threads.add(threading.current_thread().name)
        return real_update(findings, now)  # type: ignore[return-value]

    pipeline.update = update  # type: ignore[method-assign]

    class Src(WaveSource):
        def poll(self, now_ms: int) -> MetricBatch:
            tick_threads.add(threading.current_thread().name)
            ticks["n"] += 1
            if ticks["n"] >= 60:
                stop.set()
            return super().poll(T0 + ticks["n"] * STEP)

    eng = Engine(
        store,
        [Src(index, spike_at=45)],
        LocalExecutor("cusum", {}),
        index=index,
        registry=CollectorRegistry(),
        clock=lambda: T0 + ticks["n"] * STEP,
        incidents=pipeline,
        incident_period_s=0.05,
    )
    t = threading.Thread(target=eng.run, args=(stop, 0.001), name="engine-loop")
    t.start()
    t.join(30)
    assert not t.is_alive()
    assert store.findings(), "the spike makes a finding"
    incidents = store.incidents()
    assert incidents and {fid for i in incidents for fid in i.finding_ids} == {
        f.id for f in store.findings()
    }
    assert "relia-incidents" in update_threads
    assert "engine-loop" in tick_threads
    eng.close()


# -- what a restart seeds and redoes (IncidentPipeline.start) ----------------------------------

MIN = 60_000


def test_a_restart_correlates_findings_stored_without_an_incident_and_notifies_them() -> None:
    # relia died between storing findings and saving their incident: the next start does it.
    store = FlakyStore()
    recent, older = _finding('cpu{job="db"}', T0 - MIN), _finding('mem{job="web"}', T0 - 20 * MIN)
    store.add_findings([recent, older])
    woken: list[int] = []
    pipe = IncidentPipeline(
        store, IncidentsConfig(), lambda sid: None, sinks=["am"], wake=lambda: woken.append(1)
    )
    pipe.start(T0)
    held = sorted(fid for inc in store.incidents() for fid in inc.finding_ids)
    assert held == sorted([recent.id, older.id])  # the one from 20 minutes ago too
    assert store.outbox_counts()["am"]["pending"] == len(store.incidents())
    assert woken  # the dispatcher hears of them at once


def test_an_orphan_older_than_every_restored_incident_is_still_correlated() -> None:
    store = FlakyStore()
    first = IncidentPipeline(store, IncidentsConfig(), lambda sid: None, sinks=["am"])
    first.start(T0 - MIN)
    opened = _finding('cpu{job="db"}', T0 - MIN)
    store.add_findings([opened])
    first.update([opened], T0 - MIN)
    orphan = _finding('mem{job="web"}', T0 - 20 * MIN)  # stored, then relia died
    store.add_findings([orphan])
    IncidentPipeline(store, IncidentsConfig(), lambda sid: None, sinks=["am"]).start(T0)
    held = [fid for inc in store.incidents() for fid in inc.finding_ids]
    assert sorted(held) == sorted([opened.id, orphan.id])


def test_a_restart_restores_an_incidents_findings_however_many_ended_since(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A start reads a bounded number of recent findings to find orphans; the restored
    # incidents' own findings are read by id, so an old incident is restored whole however
    # many findings ended after its own (here the bound is 2, and 3 ended since).
    monkeypatch.setattr("relia.engine.incidents._ORPHAN_SCAN_MAX", 2)
    store = FlakyStore()
    first = IncidentPipeline(store, IncidentsConfig(), lambda sid: None, sinks=["am"])
    first.start(T0)
    old = [_finding('cpu{job="db"}', T0), _finding('mem{job="db"}', T0)]
    store.add_findings(old)
    first.update(old, T0)
    later = [_finding(f'mem{{job="web{i}"}}', T0 + (i + 1) * MIN) for i in range(3)]
    store.add_findings(later)
    first.update(later, T0 + 3 * MIN)
    again = IncidentPipeline(store, IncidentsConfig(), lambda sid: None, sinks=["am"])
    again.start(T0 + 4 * MIN)
    joined = _finding('disk{job="db"}', T0 + 4 * MIN)
    store.add_findings([joined])
    again.update([joined], T0 + 4 * MIN)
    (db,) = [i for i in store.incidents() if i.labels == {"job": "db"}]
    assert sorted(db.finding_ids) == sorted(f.id for f in [*old, joined])
    assert {c["key"] for c in db.cause} == {'cpu{job="db"}', 'mem{job="db"}', 'disk{job="db"}'}


def test_a_restart_keeps_a_stored_incident_whole_and_notifies_nothing_twice() -> None:
    store = FlakyStore()
    first = IncidentPipeline(store, IncidentsConfig(), lambda sid: None, sinks=["am"])
    first.start(T0)
    f = _finding('cpu{job="db"}', T0)
    store.add_findings([f])
    (returned,) = first.update([f], T0)
    (incident,) = store.incidents()
    assert returned == incident
    woken: list[int] = []
    again = IncidentPipeline(
        store, IncidentsConfig(), lambda sid: None, sinks=["am"], wake=lambda: woken.append(1)
    )
    assert again.start(T0 + MIN) == 1  # restored
    assert store.incidents() == [incident]  # not correlated again into a second one
    assert store.outbox_counts()["am"] == {"pending": 1, "delivered": 0, "failed": 0}
    assert woken == []  # nothing new to send
    grown = f.model_copy(update={"end": T0 + 2 * MIN})
    store.add_findings([grown])
    again.update([grown], T0 + 2 * MIN)
    (after,) = store.incidents()
    assert after.id == incident.id and after.end == T0 + 2 * MIN  # grew, no duplicate


def test_a_restart_enqueues_what_a_crash_left_saved_but_not_enqueued() -> None:
    store = FlakyStore()
    pipe, f = _pipeline_and_a_stored_finding(store)
    store.fail_enqueues = 1
    with pytest.raises(StoreError):
        pipe.update([f], T0)  # saved, not enqueued, and then relia dies
    assert store.outbox_counts() == {}
    IncidentPipeline(store, IncidentsConfig(), lambda sid: None, sinks=["am"]).start(T0 + MIN)
    assert store.outbox_counts()["am"]["pending"] == 1


def test_a_restart_hours_later_still_sends_a_lost_resolution() -> None:
    # The resolution was saved but its notification lost; relia comes back two hours later
    # (past every correlation window, within a day): the "resolved" still goes out.
    store = FlakyStore()
    pipe, f = _pipeline_and_a_stored_finding(store)
    pipe.update([f], T0)
    store.fail_enqueues = 1
    with pytest.raises(StoreError):
        pipe.update([], T0 + 10 * MIN)  # resolves: saved, not enqueued
    (resolved,) = store.incidents()
    assert resolved.status is IncidentStatus.RESOLVED
    IncidentPipeline(store, IncidentsConfig(), lambda sid: None, sinks=["am"]).start(T0 + 130 * MIN)
    assert store.outbox_counts()["am"]["pending"] == 2  # opened and resolved


def test_a_key_going_wrong_again_after_a_restart_reopens_its_resolved_incident() -> None:
    store = FlakyStore()
    pipe, f = _pipeline_and_a_stored_finding(store)
    pipe.update([f], T0)
    pipe.update([], T0 + 10 * MIN)
    (resolved,) = store.incidents()
    assert resolved.status is IncidentStatus.RESOLVED
    again = IncidentPipeline(store, IncidentsConfig(), lambda sid: None, sinks=["am"])
    again.start(T0 + 15 * MIN)
    f2 = _finding('cpu{job="db"}', T0 + 16 * MIN)
    store.add_findings([f2])
    again.update([f2], T0 + 16 * MIN)
    (reopened,) = store.incidents()
    assert reopened.id == resolved.id and reopened.status is IncidentStatus.OPEN
    assert f2.id in reopened.finding_ids


def test_an_incident_changed_twice_while_the_store_is_away_is_saved_at_its_newest() -> None:
    store = FlakyStore()
    pipe, f = _pipeline_and_a_stored_finding(store)
    store.fail_saves = 2
    with pytest.raises(StoreError):
        pipe.update([f], T0)
    with pytest.raises(StoreError):
        pipe.update([], T0 + 10 * MIN)  # resolves it
    pipe.update([], T0 + 11 * MIN)
    (incident,) = store.incidents()
    assert incident.status is IncidentStatus.RESOLVED
    assert store.outbox_counts()["am"]["pending"] == 1  # the newest version, once


def test_a_restart_takes_back_a_flapping_incident_without_counting_its_dropped_findings() -> None:
    # The incident keeps the newest findings of each key; the others are stored without an
    # incident naming them, so a start finds them among the orphans: they must fold back into
    # it, not count twice, not open another one, not change what it says.
    from relia.incidents.correlate import MAX_FINDINGS_PER_KEY

    store = FlakyStore()
    first = IncidentPipeline(store, IncidentsConfig(), lambda sid: None, sinks=["am"])
    first.start(T0)
    key = 'cpu{job="db"}'
    fs = [
        _finding(key, T0 + i * 30_000).model_copy(
            update={"severity": Severity.CRITICAL if i == 0 else Severity.WARNING}
        )
        for i in range(3 * MAX_FINDINGS_PER_KEY)
    ]
    for f in fs:
        store.add_findings([f])
        first.update([f], f.end)
    (before,) = store.incidents()
    assert before.finding_count == len(fs) and len(before.finding_ids) == MAX_FINDINGS_PER_KEY
    again = IncidentPipeline(store, IncidentsConfig(), lambda sid: None, sinks=["am"])
    assert again.start(fs[-1].end + 1000) == 1
    (after,) = store.incidents()
    assert after.model_dump(exclude={"updated_at"}) == before.model_dump(exclude={"updated_at"})
    nxt = _finding(key, fs[-1].end + 30_000)
    store.add_findings([nxt])
    again.update([nxt], nxt.end)
    (last,) = store.incidents()
    assert last.id == before.id and last.finding_count == len(fs) + 1
    assert (last.start, last.severity) == (T0, Severity.CRITICAL)


def test_a_critical_only_sink_hears_an_incident_from_its_first_critical_version() -> None:
    store = FlakyStore()
    pipe = IncidentPipeline(
        store,
        IncidentsConfig(),
        lambda sid: None,
        sinks={"chat": Severity.INFO, "pager": Severity.CRITICAL},
    )
    pipe.start(T0)
    warn = _finding('cpu{job="db"}', T0)
    crit = _finding('mem{job="db"}', T0 + 1000).model_copy(update={"severity": Severity.CRITICAL})
    other = _finding('disk{job="web"}', T0)
    store.add_findings([warn, other])
    pipe.update([warn, other], T0)
    store.add_findings([crit])
    pipe.update([crit], T0 + 2000)
    pipe.update([], T0 + 60 * MIN)  # both resolve
    incs = {i.severity: i for i in store.incidents()}
    db, web = incs[Severity.CRITICAL], incs[Severity.WARNING]
    assert db.status is IncidentStatus.RESOLVED and web.status is IncidentStatus.RESOLVED

    def sent(sink: str) -> list[tuple[str, int, str, str]]:
        items = [i for i in store._outbox_items().values() if i.sink == sink]
        return sorted(
            (i.incident_id, i.version, i.payload["severity"], i.payload["status"]) for i in items
        )

    assert sent("chat") == sorted(
        [(db.id, 1, "warning", "open"), (db.id, 2, "critical", "open")]
        + [(db.id, 3, "critical", "resolved")]
        + [(web.id, 1, "warning", "open"), (web.id, 2, "warning", "resolved")]
    )
    # The pager hears about the db incident from its critical version on, its resolution too;
    # nothing about the web incident, which never was critical.
    assert sent("pager") == [(db.id, 2, "critical", "open"), (db.id, 3, "critical", "resolved")]
    # A restart over the same store enqueues nothing new for the pager.
    again = IncidentPipeline(
        store,
        IncidentsConfig(),
        lambda sid: None,
        sinks={"chat": Severity.INFO, "pager": Severity.CRITICAL},
    )
    again.start(T0 + 61 * MIN)
    assert store.outbox_counts()["pager"]["pending"] == 2


DAY = 24 * 60 * MIN


def _feed(pipe: IncidentPipeline, store: FlakyStore, fs: list[Finding], now: int) -> None:
    store.add_findings(fs)
    pipe.update(fs, now)


def test_a_restart_leaves_the_findings_of_an_incident_resolved_days_ago_in_it() -> None:
    # A reopened after days, so a restored incident starts days back; C, resolved two days
    # before the restart, was not restored: its finding must not count as stored without an
    # incident (it is listed by C in the store), nor join A, nor be notified again.
    store = FlakyStore()
    first = IncidentPipeline(store, IncidentsConfig(), lambda sid: None, sinks=["am"])
    first.start(T0)
    a = _finding('a{instance="A"}', T0)
    _feed(first, store, [a], T0)
    first.update([], T0 + 10 * MIN)
    c = _finding('c{instance="A"}', T0 + DAY).model_copy(update={"end": T0 + DAY + MIN})
    _feed(first, store, [c], T0 + DAY + MIN)
    first.update([], T0 + DAY + 10 * MIN)
    _feed(first, store, [a.model_copy(update={"end": T0 + 3 * DAY})], T0 + 3 * DAY)  # reopens
    before = {i.id: i for i in store.incidents()}
    pending = store.outbox_counts()["am"]["pending"]
    again = IncidentPipeline(store, IncidentsConfig(), lambda sid: None, sinks=["am"])
    again.start(T0 + 3 * DAY + MIN)
    assert {i.id: i for i in store.incidents()} == before
    assert again.enqueued == 0 and store.outbox_counts()["am"]["pending"] == pending


def test_a_finding_growing_days_after_its_incident_resolved_reopens_it_at_the_next_version() -> (
    None
):
    # Its incident was not restored (resolved two days before the restart): the same id must
    # not open again at version 1 over the stored history, with notification keys the outbox
    # already holds; the stored incident reopens, one version on, and is notified.
    store = FlakyStore()
    first = IncidentPipeline(store, IncidentsConfig(), lambda sid: None, sinks=["am"])
    first.start(T0)
    f = _finding('up_latency{instance="host1"}', T0).model_copy(update={"end": T0 + MIN})
    _feed(first, store, [f], T0 + MIN)
    first.update([], T0 + 7 * MIN)
    (resolved,) = store.incidents()
    assert (resolved.status, resolved.version) == (IncidentStatus.RESOLVED, 2)
    again = IncidentPipeline(store, IncidentsConfig(), lambda sid: None, sinks=["am"])
    again.start(T0 + 2 * DAY)
    _feed(again, store, [f.model_copy(update={"end": T0 + 2 * DAY + MIN})], T0 + 2 * DAY + MIN)
    (reopened,) = store.incidents()
    assert reopened.id == resolved.id and reopened.status is IncidentStatus.OPEN
    assert reopened.version == 3 and reopened.opened_at == resolved.opened_at
    assert again.enqueued == 1 and store.outbox_counts()["am"]["pending"] == 3


def test_a_flapping_key_keeps_its_hold_down_across_a_restart() -> None:
    # Two episodes, then a burst of more findings than its incident lists: the key flaps (three
    # episodes in the flap window), so its incident stays open through quiet time, restart or
    # not; the episodes of the findings it no longer lists must be counted again at a start.
    key = 'lat{instance="h"}'

    def run(restart: bool) -> Incident:
        store = FlakyStore()
        pipe = IncidentPipeline(store, IncidentsConfig(), lambda sid: None)
        pipe.start(T0)
        for at in (T0, T0 + 10 * MIN):
            _feed(pipe, store, [_finding(key, at).model_copy(update={"end": at + 1000})], at + 1000)
            pipe.update([], at + 7 * MIN)
        burst = [_finding(key, T0 + 20 * MIN + i * 10_000) for i in range(25)]
        for f in burst:
            _feed(pipe, store, [f], f.end + 1000)
        if restart:
            pipe = IncidentPipeline(store, IncidentsConfig(), lambda sid: None)
            pipe.start(burst[-1].end + MIN)
        pipe.update([], burst[-1].end + 6 * MIN)
        (inc,) = store.incidents()
        return inc

    kept, restarted = run(False), run(True)
    assert kept.status is IncidentStatus.OPEN
    assert (restarted.status, restarted.version) == (kept.status, kept.version)


class ListingStore(FlakyStore):
    """Counts the lookups of the incident listing a finding."""

    listings = 0

    def incident_listing(self, finding_id: str) -> Incident | None:
        self.listings += 1
        return super().incident_listing(finding_id)


def _listed_twice(store: MemoryStore) -> dict[str, list[str]]:
    owners: dict[str, list[str]] = {}
    for inc in store.incidents(limit=100_000):
        for fid in inc.finding_ids:
            owners.setdefault(fid, []).append(inc.id)
    return {fid: ids for fid, ids in owners.items() if len(ids) > 1}


def test_a_finding_that_did_not_open_its_incident_growing_days_later_reopens_it() -> None:
    # Two keys of one incident; it resolves and is not restored two days later. The second
    # key's finding (not the one that opened it) grows: the stored incident must reopen, one
    # version on, rather than a new incident listing that finding a second time.
    store = ListingStore()
    first = IncidentPipeline(store, IncidentsConfig(), lambda sid: None, sinks=["am"])
    first.start(T0)
    a = _finding('up_latency{instance="host1"}', T0).model_copy(update={"end": T0 + MIN})
    b = _finding('err_ratio{instance="host1"}', T0 + 1000).model_copy(update={"end": T0 + MIN})
    _feed(first, store, [a, b], T0 + MIN)
    first.update([], T0 + 7 * MIN)
    (resolved,) = store.incidents()
    assert resolved.status is IncidentStatus.RESOLVED and set(resolved.finding_ids) == {a.id, b.id}
    assert store.listings == 0  # new findings are never looked up
    pending = store.outbox_counts()["am"]["pending"]
    again = IncidentPipeline(store, IncidentsConfig(), lambda sid: None, sinks=["am"])
    assert again.start(T0 + 2 * DAY) == 0
    grown = b.model_copy(update={"end": T0 + 2 * DAY + MIN})
    _feed(again, store, [grown], T0 + 2 * DAY + MIN)
    (reopened,) = store.incidents()
    assert reopened.id == resolved.id and reopened.status is IncidentStatus.OPEN
    assert reopened.version == resolved.version + 1 and reopened.opened_at == resolved.opened_at
    assert reopened.finding_count == 2 and _listed_twice(store) == {}
    assert again.enqueued == 1 and store.outbox_counts()["am"]["pending"] == pending + 1
    assert store.listings == 1
    # It grows on: known now, no lookup; and a new finding of another key is not looked up.
    _feed(
        again,
        store,
        [grown.model_copy(update={"end": T0 + 2 * DAY + 2 * MIN})],
        T0 + 2 * DAY + 2 * MIN,
    )
    _feed(
        again,
        store,
        [_finding('cpu{instance="host9"}', T0 + 2 * DAY + 2 * MIN)],
        T0 + 2 * DAY + 2 * MIN,
    )
    assert store.listings == 1 and _listed_twice(store) == {}


def test_a_restart_does_not_look_up_the_findings_the_store_says_no_incident_lists() -> None:
    # relia died between storing a finding and saving its incident: at start it is correlated
    # as an orphan (old enough to be of a forgotten incident), without a lookup per orphan.
    store = ListingStore()
    f = _finding('up_latency{instance="host1"}', T0).model_copy(update={"end": T0 + 2 * 60 * MIN})
    store.add_findings([f])
    pipe = IncidentPipeline(store, IncidentsConfig(), lambda sid: None)
    pipe.start(T0 + 2 * 60 * MIN + MIN)
    (inc,) = store.incidents()
    assert inc.finding_ids == [f.id] and store.listings == 0
