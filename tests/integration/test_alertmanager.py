"""Delivery to a real Alertmanager on loopback: labels and annotations arrive, alerts resolve with
their incident, and an Alertmanager that is down (twice) during an incident still gets every
notification once, so its receiver hears each change once."""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from relia.incidents.model import Incident, IncidentStatus, Severity
from relia.notify.dispatcher import Dispatcher
from relia.notify.outbox import OutboxItem, notifications_for
from relia.notify.sinks import AlertmanagerSink
from relia.store import DuckDBStore
from tests.integration.conftest import AlertmanagerServer

pytestmark = pytest.mark.integration


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class CountingSink:
    """Counts the deliveries Alertmanager accepted, per outbox item."""

    def __init__(self, inner: AlertmanagerSink) -> None:
        self.inner = inner
        self.name = inner.name
        self.resend_interval = inner.resend_interval
        self.accepted: Counter[str] = Counter()

    def deliver(self, item: OutboxItem) -> None:
        self.inner.deliver(item)
        self.accepted[item.id] += 1

    def refresh(self, open_incidents: Any) -> None:
        self.inner.refresh(open_incidents)


class Relia:
    """The part of relia up that notifies: a store, the dispatcher thread, one Alertmanager
    sink. ``publish`` does what the engine does with a changed incident."""

    def __init__(self, path: Path, am_url: str) -> None:
        self.store = DuckDBStore(path)
        self.sink = CountingSink(AlertmanagerSink(am_url, 2.0, name="am", resend_interval=60.0))
        self.dispatcher = Dispatcher(
            self.store,
            [self.sink],
            registry=CollectorRegistry(),
            base_delay=0.1,
            max_delay=0.5,
            breaker_threshold=3,
            breaker_cooldown=0.5,
            poll_interval=0.1,
            rng=random.Random(1),
        )
        self.stop = threading.Event()
        self.thread = self.dispatcher.start(self.stop)

    def publish(self, inc: Incident) -> None:
        self.store.save_incidents([inc])
        self.store.enqueue_notifications(notifications_for(inc, ["am"], now_ms()))
        self.dispatcher.notify()

    def close(self) -> None:
        self.stop.set()
        self.dispatcher.notify()
        self.thread.join(timeout=10)
        self.sink.inner.close()
        self.store.close()


@pytest.fixture
def relia(tmp_path: Path, alertmanager_server: AlertmanagerServer) -> Iterator[Relia]:
    r = Relia(tmp_path / "relia.duckdb", alertmanager_server.url)
    try:
        yield r
    finally:
        r.close()


def wait_for(what: str, ok: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not ok():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def alerts(am: AlertmanagerServer) -> list[dict[str, Any]]:
    resp = httpx.get(f"{am.url}/api/v2/alerts", params={"filter": "alertname=ReliaIncident"})
    resp.raise_for_status()
    out: list[dict[str, Any]] = resp.json()
    return out


def notifications(am: AlertmanagerServer, incident_id: str) -> list[tuple[str, str]]:
    """(group status, alert status) of each notification the receiver got for the incident."""
    return [
        (n["status"], a["status"])
        for n in list(am.received)
        for a in n["alerts"]
        if a["labels"].get("incident_id") == incident_id
    ]


def opened(iid: str, **kw: Any) -> Incident:
    t = now_ms()
    fields: dict[str, Any] = {
        "id": iid,
        "status": IncidentStatus.OPEN,
        "title": 'cpu_usage{instance="a"} on job=api',
        "severity": Severity.WARNING,
        "labels": {"job": "api", "instance": "a"},
        "start": t - 30_000,
        "end": t,
        "opened_at": t,
        "updated_at": t,
        "version": 1,
        "finding_ids": ["f1"],
        "keys": ['cpu_usage{instance="a",job="api"}'],
        "cause": [{"key": 'cpu_usage{instance="a",job="api"}', "score": 0.8, "reason": "first"}],
    }
    fields.update(kw)
    return Incident(**fields)


def changed(inc: Incident, **kw: Any) -> Incident:
    return inc.model_copy(update={"version": inc.version + 1, "updated_at": now_ms(), **kw})


def test_alert_arrives_with_labels_and_annotations_and_resolves(
    alertmanager_server: AlertmanagerServer, relia: Relia
) -> None:
    am = alertmanager_server
    t0 = time.monotonic()
    inc = opened("int-1")
    relia.publish(inc)
    wait_for("the alert in Alertmanager", lambda: len(alerts(am)) == 1)
    (alert,) = alerts(am)
    assert alert["labels"] == {
        "alertname": "ReliaIncident",
        "incident_id": "int-1",
        "severity": "warning",
        "job": "api",
        "instance": "a",
    }
    assert alert["annotations"]["summary"] == 'cpu_usage{instance="a"} on job=api'
    assert "1 finding(s)" in alert["annotations"]["description"]
    assert alert["annotations"]["likely_cause"].startswith('1. cpu_usage{instance="a",job="api"}')
    assert alert["status"]["state"] == "active"
    wait_for("the firing notification", lambda: notifications(am, "int-1") == [("firing",) * 2])

    relia.publish(changed(inc, status=IncidentStatus.RESOLVED, resolved_at=now_ms()))
    wait_for("the alert to resolve", lambda: alerts(am) == [])
    wait_for(
        "the resolved notification",
        lambda: notifications(am, "int-1") == [("firing",) * 2, ("resolved",) * 2],
    )
    time.sleep(1.5)  # a group interval more: nothing else arrives
    assert notifications(am, "int-1") == [("firing",) * 2, ("resolved",) * 2]
    assert dict(relia.sink.accepted) == {"am:int-1:1": 1, "am:int-1:2": 1}
    print(f"open -> notified -> resolved -> notified: {time.monotonic() - t0:.1f} s")


@pytest.mark.slow  # two restarts of Alertmanager: about 5 s
def test_alertmanager_down_during_the_incident_gets_everything_once(
    alertmanager_server: AlertmanagerServer, relia: Relia
) -> None:
    am = alertmanager_server
    t0 = time.monotonic()
    am.stop()
    # The incident opens and changes (a second series joins) while Alertmanager is down.
    v1 = opened("int-2")
    relia.publish(v1)
    wait_for(
        "a failed attempt", lambda: relia.store.due_notifications("am", 2**62, 1)[0].attempts > 0
    )
    v2 = changed(
        v1,
        title='cpu_usage{instance="a"} and 1 more on job=api',
        finding_ids=["f1", "f2"],
        keys=[*v1.keys, 'latency{instance="a",job="api"}'],
    )
    relia.publish(v2)
    time.sleep(1.0)  # retries and an open breaker while it stays down
    assert relia.store.outbox_counts()["am"]["pending"] == 2
    assert am.received == []
    am.start()
    wait_for("the outbox to drain", lambda: relia.store.outbox_counts()["am"]["pending"] == 0)
    (alert,) = alerts(am)
    assert alert["annotations"]["summary"] == v2.title  # the latest version won
    wait_for("the firing notification", lambda: notifications(am, "int-2") == [("firing",) * 2])

    # Down again; the incident resolves meanwhile. The restarted Alertmanager has forgotten the
    # alert but kept its notification log, so the resolution is still notified, once.
    am.stop()
    relia.publish(changed(v2, status=IncidentStatus.RESOLVED, resolved_at=now_ms()))
    time.sleep(0.5)
    assert relia.store.outbox_counts()["am"]["pending"] == 1
    am.start()
    wait_for(
        "the resolved notification",
        lambda: notifications(am, "int-2") == [("firing",) * 2, ("resolved",) * 2],
    )
    time.sleep(1.5)
    assert notifications(am, "int-2") == [("firing",) * 2, ("resolved",) * 2]
    assert relia.store.outbox_counts()["am"] == {"pending": 0, "delivered": 3, "failed": 0}
    assert dict(relia.sink.accepted) == {"am:int-2:1": 1, "am:int-2:2": 1, "am:int-2:3": 1}
    print(f"two outages, every notification once: {time.monotonic() - t0:.1f} s")


def test_a_critical_only_sink_never_posts_a_lesser_incident_not_even_by_refresh(
    tmp_path: Path, alertmanager_server: AlertmanagerServer
) -> None:
    from relia.notify.routing import SeverityRouting

    am = alertmanager_server
    store = DuckDBStore(tmp_path / "relia.duckdb")
    sink = AlertmanagerSink(am.url, 2.0, name="pager", resend_interval=0.2)
    minimum = {"pager": Severity.CRITICAL}
    d = Dispatcher(store, [sink], registry=CollectorRegistry(), min_severity=minimum)
    routing = SeverityRouting(minimum)

    def publish(*incs: Incident) -> None:
        store.save_incidents(list(incs))
        store.enqueue_notifications(routing.items_for(store, list(incs), now_ms()))
        d.run_once()

    try:
        low = opened("low-1", labels={"job": "api"})
        high = opened("high-1", labels={"job": "db"}, severity=Severity.CRITICAL)
        publish(low, high)
        wait_for(
            "the critical alert",
            lambda: [a["labels"]["incident_id"] for a in alerts(am)] == ["high-1"],
        )
        for _ in range(3):  # refreshes: the warning incident is open, and never posted
            time.sleep(0.25)
            d.run_once()
        assert [a["labels"]["incident_id"] for a in alerts(am)] == ["high-1"]
        assert notifications(am, "low-1") == []
        # It escalates: posted from now on, and its downgrade and resolution too.
        low2 = changed(low, severity=Severity.CRITICAL)
        publish(low2)
        wait_for("the escalated alert", lambda: len(alerts(am)) == 2)
        low3 = changed(low2, severity=Severity.WARNING)
        publish(low3)
        wait_for(
            "the downgraded alert",
            lambda: (
                {
                    a["labels"]["severity"]
                    for a in alerts(am)
                    if a["labels"]["incident_id"] == "low-1"
                }
                == {"warning"}
            ),
        )
        publish(changed(low3, status=IncidentStatus.RESOLVED, resolved_at=now_ms()))
        wait_for(
            "the resolution", lambda: [a["labels"]["incident_id"] for a in alerts(am)] == ["high-1"]
        )
        wait_for(
            "the resolved notification",
            lambda: ("resolved", "resolved") in notifications(am, "low-1"),
        )
    finally:
        sink.close()
        store.close()
