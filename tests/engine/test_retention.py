"""History retention under ``relia up``: :class:`HistoryPruner` on a fake clock."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from relia.engine.retention import HistoryPruner
from relia.errors import StoreError
from relia.incidents.model import Finding, FindingKind, Incident, IncidentStatus, Severity
from relia.notify.outbox import OutboxItem, OutboxStatus
from tests.engine.memstore import MemoryStore

DAY = 86_400_000
T0 = 1_716_200_000_000


class Clock:
    """The engine's clock, moved by hand (ms UTC)."""

    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def finding(fid: str, end: int) -> Finding:
    return Finding(
        id=fid, kind=FindingKind.METRIC, key=f"cpu{{id={fid!r}}}", start=end - 60_000, end=end,
        score=0.8, severity=Severity.WARNING, detector="t", summary="odd",
    )  # fmt: skip


def incident(iid: str, fids: list[str], resolved_at: int | None) -> Incident:
    at = (resolved_at or T0) - DAY
    return Incident(
        id=iid, status=IncidentStatus.OPEN if resolved_at is None else IncidentStatus.RESOLVED,
        title=iid, severity=Severity.WARNING, labels={}, start=at, end=at + 60_000, opened_at=at,
        updated_at=resolved_at or at, resolved_at=resolved_at, version=1, finding_ids=fids,
        keys=[], cause=[],
    )  # fmt: skip


def delivered(iid: str, at: int) -> OutboxItem:
    return OutboxItem(
        id=f"am:{iid}:1", sink="am", incident_id=iid, version=1, payload={}, created_at=at,
        next_attempt_at=at, delivered_at=at, attempts=1, status=OutboxStatus.DELIVERED,
    )  # fmt: skip


def history(store: MemoryStore) -> None:
    """Two resolved incidents (resolved at T0 and T0 + 20 days), an open one, their findings
    and their delivered notifications."""
    store.add_findings([finding("f-old", T0), finding("f-new", T0 + 20 * DAY)])
    store.add_findings([finding("f-open", T0 - 90 * DAY)])
    store.save_incidents(
        [
            incident("old", ["f-old"], T0),
            incident("new", ["f-new"], T0 + 20 * DAY),
            incident("open", ["f-open"], None),
        ]
    )
    store.enqueue_notifications([delivered("old", T0), delivered("new", T0 + 20 * DAY)])


def value(registry: CollectorRegistry, kind: str) -> float | None:
    return registry.get_sample_value("relia_history_pruned_total", {"kind": kind})


def test_history_older_than_the_retention_goes_as_the_clock_moves(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStore()
    history(store)
    clock = Clock(T0 + 29 * DAY)
    registry = CollectorRegistry()
    pruner = HistoryPruner(store, 30 * 86400, clock, registry=registry)
    assert value(registry, "incidents") == 0.0  # exported before anything went
    with caplog.at_level(logging.INFO, logger="relia.engine.retention"):
        assert pruner.run_once() == {"outbox": 0, "incidents": 0, "findings": 0}
        assert "retention" not in caplog.text  # nothing deleted: nothing logged
        clock.now = T0 + 31 * DAY  # "old" resolved 31 days ago
        assert pruner.run_once() == {"outbox": 1, "incidents": 1, "findings": 1}
    (line,) = [r.getMessage() for r in caplog.records if r.name == "relia.engine.retention"]
    assert line == ("retention: deleted 1 findings, 1 incidents and 1 notifications older than 30d")
    assert {i.id for i in store.incidents()} == {"new", "open"}
    assert {f.id for f in store.findings(limit=100)} == {"f-new", "f-open"}
    assert store.outbox_counts()["am"]["delivered"] == 1
    assert (value(registry, "findings"), value(registry, "outbox")) == (1.0, 1.0)
    clock.now = T0 + 1000 * DAY  # the open incident and its finding stay, whatever their age
    pruner.run_once()
    assert [i.id for i in store.incidents()] == ["open"]
    assert [f.id for f in store.findings(limit=100)] == ["f-open"]
    assert value(registry, "incidents") == 2.0 and pruner.runs == 3
    assert pruner.deleted == {"findings": 2, "incidents": 2, "outbox": 2}


class FailingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.fail = 2
        self.calls = 0

    def prune_history(self, before: int) -> dict[str, int]:
        self.calls += 1
        if self.fail:
            self.fail -= 1
            raise StoreError("pruning history failed: connection lost")
        return super().prune_history(before)


def wait_for(pred: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_the_thread_prunes_at_once_retries_failures_and_stops(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = FailingStore()
    history(store)
    pruner = HistoryPruner(store, 30 * 86400, Clock(T0 + 31 * DAY), interval_s=3600, retry_s=0.01)
    stop = threading.Event()
    with caplog.at_level(logging.INFO, logger="relia.engine.retention"):
        thread = pruner.start(stop)
        # Two failures (logged once with the traceback), then the retry a moment later works.
        wait_for(lambda: pruner.runs == 1)
        stop.set()
        thread.join(5)
    assert not thread.is_alive() and store.calls == 3
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "pruning history" in errors[0].getMessage()
    assert "recovered after 2 failures" in caplog.text
    assert store.incident("old") is None


def test_after_a_round_that_worked_the_next_waits_for_the_interval() -> None:
    store = MemoryStore()
    pruner = HistoryPruner(store, 30 * 86400, Clock(T0), interval_s=3600)
    stop = threading.Event()
    thread = pruner.start(stop)
    wait_for(lambda: pruner.runs == 1)  # once at start
    time.sleep(0.1)
    assert pruner.runs == 1
    stop.set()
    thread.join(5)
    assert not thread.is_alive()


def test_what_ended_exactly_the_retention_ago_is_kept_until_a_ms_later() -> None:
    store = MemoryStore()
    history(store)
    clock = Clock(T0 + 30 * DAY)  # "old" resolved exactly 30 days ago: not older than that
    pruner = HistoryPruner(store, 30 * 86400, clock)
    assert pruner.run_once() == {"outbox": 0, "incidents": 0, "findings": 0}
    clock.now += 1
    assert pruner.run_once() == {"outbox": 1, "incidents": 1, "findings": 1}


def test_the_log_line_names_each_kinds_own_count(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore()
    store.add_findings([finding(f"f{i}", T0) for i in range(3)])
    store.save_incidents([incident("a", ["f0"], T0), incident("b", ["f1"], T0)])
    store.enqueue_notifications([delivered("a", T0)])
    pruner = HistoryPruner(store, 36 * 3600, Clock(T0 + 2 * DAY))
    with caplog.at_level(logging.INFO, logger="relia.engine.retention"):
        assert pruner.run_once() == {"outbox": 1, "incidents": 2, "findings": 3}
    assert caplog.records[-1].getMessage() == (
        "retention: deleted 3 findings, 2 incidents and 1 notifications older than 36h"
    )


def test_a_failed_round_is_retried_after_the_interval_when_that_is_shorter() -> None:
    store = FailingStore()
    store.fail = 1
    pruner = HistoryPruner(store, 30 * 86400, Clock(T0), interval_s=0.01, retry_s=3600)
    stop = threading.Event()
    thread = pruner.start(stop)
    assert thread.daemon  # never holds up the process's exit
    # The retry came after 0.01 s, not an hour. (Rounds go on every 0.01 s: by the time this
    # thread looks, more than one may have run.)
    wait_for(lambda: pruner.runs >= 1)
    stop.set()
    thread.join(5)
    assert not thread.is_alive() and store.calls == pruner.runs + 1


def test_series_are_forgotten_only_when_configured() -> None:
    store = MemoryStore()
    store.upsert_series([(1, "cpu", {})], seen_at=T0)
    pruner = HistoryPruner(store, 30 * 86400, Clock(T0 + 1000 * DAY))
    assert pruner.run_once() == {"outbox": 0, "incidents": 0, "findings": 0}
    assert [s.series_id for s in store.list_series()] == [1]
    assert pruner.deleted == {"findings": 0, "incidents": 0, "outbox": 0}


def test_series_not_seen_for_forget_after_plus_the_grace_go(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStore()
    history(store)
    hour = 3_600_000
    store.upsert_series([(1, "a", {}), (2, "b", {}), (3, "c", {})], seen_at=T0)
    store.mark_series_seen({3: T0 + DAY})
    clock = Clock(T0 + 7 * DAY + 3 * hour)  # 1 and 2: seen exactly forget_after + grace ago
    registry = CollectorRegistry()
    pruner = HistoryPruner(store, 30 * 86400, clock, registry=registry, forget_after_s=7 * 86400)
    assert value(registry, "series") == 0.0  # exported before anything went
    with caplog.at_level(logging.INFO, logger="relia.engine.retention"):
        assert pruner.run_once() == {"outbox": 0, "incidents": 0, "findings": 0, "series": 0}
        assert "retention" not in caplog.text
        clock.now += 1
        assert pruner.run_once() == {"outbox": 0, "incidents": 0, "findings": 0, "series": 2}
    assert [s.series_id for s in store.list_series()] == [3]
    (line,) = [r.getMessage() for r in caplog.records if r.name == "relia.engine.retention"]
    assert line == (
        "retention: deleted 0 findings, 0 incidents and 0 notifications older than 30d "
        "and 2 series not seen for 7d"
    )
    assert value(registry, "series") == 2.0 and value(registry, "findings") == 0.0
    clock.now = T0 + 31 * DAY  # history and series in the same round
    assert pruner.run_once() == {"outbox": 1, "incidents": 1, "findings": 1, "series": 1}
    assert pruner.deleted == {"findings": 1, "incidents": 1, "outbox": 1, "series": 3}
    assert value(registry, "series") == 3.0


def test_the_grace_is_configurable_and_the_cut_follows_the_clock() -> None:
    class Recording(MemoryStore):
        cuts: list[int] = []

        def forget_series(self, before: int) -> int:
            self.cuts.append(before)
            return super().forget_series(before)

    store = Recording()
    pruner = HistoryPruner(
        store, 30 * 86400, Clock(T0), forget_after_s=2 * 86400, forget_grace_s=60
    )
    pruner.run_once()
    assert store.cuts == [T0 - 2 * DAY - 60_000]


def test_a_failing_forget_fails_the_round_after_history_was_pruned() -> None:
    class Failing(MemoryStore):
        def forget_series(self, before: int) -> int:
            raise StoreError("forgetting series failed: connection lost")

    store = Failing()
    history(store)
    pruner = HistoryPruner(store, 30 * 86400, Clock(T0 + 31 * DAY), forget_after_s=86400)
    assert pruner.run_round() is False
    assert store.incident("old") is None  # prune_history ran first, in its own transaction
    assert pruner.runs == 0


def test_no_series_is_forgotten_before_the_engine_wrote_the_receipt_times() -> None:
    store = MemoryStore()
    store.upsert_series([(1, "cpu", {})], seen_at=T0)
    written = False
    pruner = HistoryPruner(
        store, 30 * 86400, Clock(T0 + DAY), forget_after_s=3600, may_forget=lambda: written
    )
    assert pruner.run_once()["series"] == 0  # relia was down: seen_at is old for every series
    assert [s.series_id for s in store.list_series()] == [1]
    written = True
    assert pruner.run_once()["series"] == 1
