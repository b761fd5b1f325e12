"""docs/notifications.md against the code: its receiver-side verification snippet is run on a
real signed delivery, its webhook body and headers are compared with one, its metric names with
the dispatcher's, and its Alertmanager route is loaded by the real Alertmanager and routes relia's
alerts (that last one needs Debian's prometheus-alertmanager)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from relia.incidents.model import Finding, FindingKind, Incident, Severity
from relia.notify import Dispatcher, WebhookSink, notifications_for, verify_signature
from relia.notify.routing import filtered_counter
from relia.notify.sinks import AlertmanagerSink
from tests.http_receiver import HttpReceiver
from tests.notify.factory import IncidentMemoryStore, incident, resolved

DOC = Path(__file__).resolve().parents[2] / "docs" / "notifications.md"
SECRET = "doc-test-secret"
EXAMPLE_ID = "3f9a1c2e7b4d5a60c8e1"  # the incident id of the doc's samples: 20 hex digits


def doc_block(name: str) -> str:
    """The fenced code block right after ``<!-- doc-test: name -->`` in the doc."""
    m = re.search(rf"<!-- doc-test: {name} -->\n```\w*\n(.*?)\n```", DOC.read_text(), re.S)
    assert m is not None, f"no block marked {name!r} in {DOC}"
    return m.group(1)


@pytest.fixture
def receiver() -> Iterator[HttpReceiver]:
    r = HttpReceiver()
    try:
        yield r
    finally:
        r.close()


def delivered(
    receiver: HttpReceiver, token: int | None = None, skew_ms: int = 0
) -> tuple[dict[str, str], bytes]:
    """One real delivery by relia's webhook sink (its clock ``skew_ms`` off) to ``receiver``,
    with the fencing ``token`` when given; the headers and raw body the receiver got."""
    sink = WebhookSink(
        receiver.url + "/relia",
        SECRET,
        name="hook",
        clock=lambda: time.time_ns() // 1_000_000 + skew_ms,
    )
    try:
        (item,) = notifications_for(incident(EXAMPLE_ID), ["hook"], 1)
        if token is None:
            sink.deliver(item)
        else:
            sink.deliver(item, fencing_token=token)
    finally:
        sink.close()
    last = receiver.posts[-1]
    return last.headers, last.body


def test_the_incident_ids_the_doc_shows_are_as_long_as_real_ones() -> None:
    # The samples showed 16 hex digits; relia's ids have 20.
    real = Incident.make_id(Finding.make_id(FindingKind.METRIC, "cpu", 0, "default"))
    text = DOC.read_text()
    shown = re.findall(r'hook:(\w+):\d|"(?:incident_)?id": "(\w+)"|incidents/(\w+)"', text)
    shown += re.findall(r"relia incident (\w+) \(", text)
    ids = {i for found in shown for i in (found if isinstance(found, tuple) else (found,)) if i}
    assert ids == {EXAMPLE_ID}
    assert re.fullmatch("[0-9a-f]+", real) and re.fullmatch("[0-9a-f]+", EXAMPLE_ID)
    assert len(EXAMPLE_ID) == len(real) == 20


def test_the_verification_snippet_accepts_a_real_delivery_and_refuses_forgeries(
    receiver: HttpReceiver,
) -> None:
    scope: dict[str, Any] = {}
    exec(doc_block("verify"), scope)  # noqa: S102 - the doc's own snippet, on purpose
    verify = scope["verify"]
    secret = SECRET.encode()
    for token in (None, 7):
        headers, body = delivered(receiver, token)
        assert verify(body, headers, secret)
        assert verify_signature(body, headers, secret)  # relia's own helper agrees
        assert not verify(body.replace(b'"warning"', b'"info"'), headers, secret)
        assert not verify(body, headers, b"another-secret")
        assert not verify(body, {"X-Relia-Timestamp": headers["X-Relia-Timestamp"]}, secret)
        assert not verify(body, {k: v for k, v in headers.items() if "Timestamp" not in k}, secret)
    # Signed ten minutes ago (a replay): genuine, but refused as too old.
    headers, body = delivered(receiver, skew_ms=-600_000)
    assert verify_signature(body, headers, secret, tolerance_s=3600)
    assert not verify(body, headers, secret)


def test_the_webhook_body_and_headers_are_those_the_doc_shows(receiver: HttpReceiver) -> None:
    shown = json.loads(doc_block("webhook-body"))
    headers, body = delivered(receiver)
    real = json.loads(body)
    assert body == json.dumps(real, separators=(",", ":"), sort_keys=True).encode()
    assert set(real) == set(shown)
    assert set(real["incident"]) == set(shown["incident"])
    assert real["dedup_key"] == shown["dedup_key"] == f"hook:{EXAMPLE_ID}:1"
    assert real["incident"] == shown["incident"]  # the doc's example is factory.incident()
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Relia-Dedup-Key"] == real["dedup_key"]
    assert headers["X-Relia-Signature"].startswith("sha256=")
    assert int(headers["X-Relia-Timestamp"]) == real["sent_at"] // 1000
    assert "X-Relia-Fencing-Token" not in headers and "fencing_token" not in real
    headers, body = delivered(receiver, token=12)
    assert headers["X-Relia-Fencing-Token"] == "12" and json.loads(body)["fencing_token"] == 12
    table = DOC.read_text().split("## Webhook", 1)[1].split("<!-- doc-test", 1)[0]
    named = set(re.findall(r"^\| `([A-Za-z-]+)` \|", table, re.M))
    assert named == {k for k in headers if k == "Content-Type" or k.startswith("X-Relia-")}


def test_the_metric_names_are_the_dispatchers_and_the_routings() -> None:
    registry = CollectorRegistry()
    sink = WebhookSink("http://127.0.0.1:9/", SECRET)
    Dispatcher(IncidentMemoryStore(), [sink], registry=registry)
    filtered_counter(registry, [sink.name])  # counted where notifications are enqueued
    sink.close()
    exposed = {s.name for m in registry.collect() for s in m.samples if s.labels.get("sink")}
    exposed -= {n for n in exposed if n.endswith("_created")}
    section = DOC.read_text().split("## Watching delivery", 1)[1]
    assert set(re.findall(r"^\| `(relia_notify_\w+)` \|", section, re.M)) == exposed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.integration
def test_the_alertmanager_route_routes_relias_alerts(receiver: HttpReceiver) -> None:
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        msg = "prometheus-alertmanager is not installed"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    config = doc_block("alertmanager-config")
    # The receivers' URLs point at the test; groups are sent at once, their changes within 1 s.
    config = re.sub(r"url: http://(\w+)-bridge\.example/relia", rf"url: {receiver.url}/\1", config)
    config = re.sub(r"group_wait: \w+", "group_wait: 0s", config)
    config = re.sub(r"group_interval: \w+", "group_interval: 1s", config)
    assert config.count(receiver.url) == 2
    with tempfile.TemporaryDirectory(prefix="relia-am-doc-") as tmp:
        path = Path(tmp) / "alertmanager.yml"
        path.write_text(config)
        if shutil.which("amtool"):
            check = subprocess.run(
                ["amtool", "check-config", str(path)], capture_output=True, text=True, check=False
            )
            assert check.returncode == 0, check.stdout + check.stderr
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={path}",
                f"--storage.path={tmp}/data",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        sink = AlertmanagerSink(url, name="am")
        try:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
            now = time.time_ns() // 1_000_000
            warn = incident("a1", opened_at=now, start=now - 60_000, end=now)
            crit = incident("c1", opened_at=now, severity=Severity.CRITICAL, labels={"job": "db"})
            for inc in (warn, crit, resolved(crit, now + 1)):
                (item,) = notifications_for(inc, ["am"], now)
                sink.deliver(item)
                time.sleep(0.2)  # the resolve must not reach Alertmanager's group first
            want = {("/chat", "a1", "firing"), ("/pager", "c1", "resolved")}
            seen: set[tuple[str, str, str]] = set()
            while time.monotonic() < deadline + 15 and not want <= seen:
                seen = {
                    (post.path, a["labels"]["incident_id"], a["status"])
                    for post in receiver.posts
                    for a in json.loads(post.body)["alerts"]
                }
                time.sleep(0.1)
        finally:
            sink.close()
            proc.terminate()
            proc.wait(timeout=10)
    assert want <= seen
    assert all(p == "/chat" for p, i, _s in seen if i == "a1")
    assert all(p == "/pager" for p, i, _s in seen if i == "c1")
