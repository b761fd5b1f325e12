"""``relia up`` end to end with a real Alertmanager: a new log template opens an incident whose
alert arrives with its labels and resolves with it; Alertmanager down while another incident
opens, relia SIGKILLed with that notification pending, both restarted: nothing lost, nothing
delivered twice."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from relia.incidents.model import IncidentStatus
from relia.store.duckdb import DuckDBStore
from tests.integration.up_process import ReliaProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class Relia(ReliaProcess):
    """``relia up`` in a subprocess, with what this test asks of it."""

    def incidents(self) -> list[dict[str, Any]]:
        r = httpx.get(self.url + "/api/v1/incidents", timeout=10)
        r.raise_for_status()
        got: list[dict[str, Any]] = r.json()["incidents"]
        return got

    def metric(self, name: str, **labels: str) -> float | None:
        text = httpx.get(self.url + "/metrics", timeout=10).text
        want = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
        m = re.search(rf"^{re.escape(name)}\{{{re.escape(want)}\}} (\S+)$", text, re.M)
        return float(m.group(1)) if m else None


def wait_until(pred: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    # Generous: it returns as soon as ``pred`` holds; on a loaded 2-core machine, relia up,
    # Alertmanager and its webhook receiver once took over 30 s for the first notification.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return
        time.sleep(0.05)
    raise AssertionError(f"not reached in {timeout:g}s: {what}")


def normal_lines(path: Path, n: int) -> None:
    with path.open("a") as f:
        for i in range(n):
            f.write(f"2024-05-01T12:00:00Z INFO api: GET /items/{i} took {i % 97}ms\n")


def am_alerts(url: str) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = httpx.get(url + "/api/v2/alerts", timeout=5).json()
    return got


def notifications(received: list[dict[str, Any]], incident_id: str) -> list[str]:
    """The statuses (firing/resolved) of the webhook notifications about one incident."""
    return [
        n["status"]
        for n in list(received)
        if any(a["labels"].get("incident_id") == incident_id for a in n["alerts"])
    ]


def test_alerts_arrive_resolve_and_survive_outage_and_sigkill(
    tmp_path: Path, alertmanager_server: Any
) -> None:
    am = alertmanager_server
    app, db = tmp_path / "app.log", tmp_path / "db.log"
    normal_lines(app, 30)
    normal_lines(db, 30)
    data = tmp_path / "data"
    config = tmp_path / "relia.yaml"
    config.write_text(
        f"data_dir: {data}\n"
        "interval: 0.1\n"
        "host: {enabled: false}\n"
        "api: {port: 0}\n"
        "logs:\n"
        "  window: 1s\n"
        "  warmup_lines: 20\n"
        f"  files: [{{path: {app}, name: app}}, {{path: {db}, name: db}}]\n"
        "incidents: {resolve_after: 4s}\n"
        "notify:\n"
        "  base_delay: 0.2\n"
        "  max_delay: 1\n"
        "  breaker_cooldown: 1\n"
        f"  sinks: [{{name: am, type: alertmanager, url: '{am.url}'}}]\n"
    )
    procs: list[Relia] = []

    def start() -> Relia:
        procs.append(Relia(config))
        return procs[-1]

    try:
        r = start()
        # 1. A new template in app.log: an incident, whose alert reaches Alertmanager with its
        #    labels and annotations, then resolves with it.
        with app.open("a") as f:
            f.write("2024-05-01T12:00:01Z ERROR api: payment backend refused the connection\n")
        wait_until(lambda: len(r.incidents()) == 1, "the first incident")
        first = r.incidents()[0]
        wait_until(lambda: "firing" in notifications(am.received, first["id"]), "firing sent")
        alert = next(a for a in am_alerts(am.url) if a["labels"].get("incident_id") == first["id"])
        assert alert["labels"]["alertname"] == "ReliaIncident"
        assert alert["labels"]["severity"] == first["severity"]
        assert "payment backend" in alert["annotations"]["summary"] + alert["annotations"].get(
            "description", ""
        )
        wait_until(
            lambda: "resolved" in notifications(am.received, first["id"]),
            "the resolved notification",
        )
        assert r.incidents()[0]["status"] == "resolved"

        # 2. Alertmanager down; a second incident opens; relia is killed with its notification
        #    pending.
        am.stop()
        with db.open("a") as f:
            f.write("2024-05-01T12:00:02Z ERROR db: replica lag exceeded the limit\n")
        wait_until(lambda: len(r.incidents()) == 2, "the second incident")
        wait_until(lambda: (r.metric("relia_notify_retried_total", sink="am") or 0) >= 1, "retry")
        r.kill()
        store = DuckDBStore(data / "relia.duckdb")
        try:
            incidents = store.incidents(limit=10)
            assert len(incidents) == 2
            second = next(i for i in incidents if i.id != first["id"])
            assert store.outbox_counts()["am"]["pending"] >= 1
            kept = {f.id for f in store.findings(limit=100)}
            assert set(second.finding_ids) <= kept
        finally:
            store.close()

        # 3. Both back: every notification arrives, none twice.
        r = start()
        am.start()
        wait_until(
            lambda: all(i["status"] == "resolved" for i in r.incidents()), "both resolved", 30
        )
        wait_until(lambda: r.metric("relia_notify_pending", sink="am") == 0, "outbox drained", 30)
        wait_until(
            lambda: (
                not [a for a in am_alerts(am.url) if a["labels"].get("incident_id") == second.id]
            ),
            "the second alert resolved in Alertmanager",
        )
        time.sleep(2.5)  # more than Alertmanager's group_interval: a duplicate would show
        r.stop()
    finally:
        for p in procs:
            p.ensure_gone()
    store = DuckDBStore(data / "relia.duckdb")
    try:
        counts = store.outbox_counts()["am"]
        assert counts.get("pending", 0) == 0 and counts.get("failed", 0) == 0
        # Two incidents, each opened and resolved: four changes, each delivered once.
        assert counts["delivered"] == 4
        assert {i.status for i in store.incidents(limit=10)} == {IncidentStatus.RESOLVED}
    finally:
        store.close()
    assert notifications(am.received, first["id"]) == ["firing", "resolved"]
    # Alertmanager may fold a firing it had not sent yet into the resolved notice, but never
    # sends a change twice.
    statuses = notifications(am.received, second.id)
    assert statuses.count("firing") <= 1 and statuses.count("resolved") == 1
