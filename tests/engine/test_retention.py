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
    assert line == (
        "retention: deleted 1 findings, 1 incidents and 1 notifications older than 30 days"
    )
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
        "retention: deleted 3 findings, 2 incidents and 1 notifications older than 1.5 days"
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


def test_the_log_line_names_the_retention_in_days_or_hours() -> None:
    from relia.engine.retention import _days

    day, hour = 86_400_000, 3_600_000
    assert [_days(day), _days(2 * day), _days(36 * hour)] == ["1 day", "2 days", "1.5 days"]
    assert [_days(hour), _days(12 * hour)] == ["1 hour", "12 hours"]
