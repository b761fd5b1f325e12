"""Sinks: Alertmanager alerts, the signed webhook, the log line, errors saying if a retry helps."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable

import httpx
import pytest

from relia.config import NotifyConfig
from relia.errors import ConfigError
from relia.incidents.model import Severity
from relia.notify.outbox import OutboxItem, notifications_for
from relia.notify.sinks import (
    AlertmanagerSink,
    DeliveryError,
    LogSink,
    RefreshingSink,
    Sink,
    WebhookSink,
    alert_for,
    build_sinks,
    sign,
    verify_signature,
)
from tests.notify.factory import T0, incident, resolved
from tests.slow_http import slow_server, timed

SECRET = "s3cr3t-value-never-logged"


class Recorder:
    """An httpx MockTransport handler answering ``status`` and keeping every request."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(self.status, text="nope" if self.status >= 300 else "")

    def bodies(self) -> list[object]:
        return [json.loads(r.content) for r in self.requests]


def item_of(inc: object, sink: str = "am") -> OutboxItem:
    (item,) = notifications_for(inc, [sink], now=T0)  # type: ignore[arg-type]
    return item


def am_sink(
    rec: Callable[[httpx.Request], httpx.Response], now: int = T0 + 1000
) -> AlertmanagerSink:
    return AlertmanagerSink(
        "http://am.test:9093/",
        2.0,
        name="am",
        resend_interval=60.0,
        external_url="http://relia.test:8787",
        clock=lambda: now,
        transport=httpx.MockTransport(rec),
    )


def test_alertmanager_alert_has_labels_annotations_and_times() -> None:
    rec = Recorder()
    sink = am_sink(rec)
    assert isinstance(sink, RefreshingSink) and isinstance(sink, Sink)
    sink.deliver(item_of(incident()))
    (req,) = rec.requests
    assert req.method == "POST" and str(req.url) == "http://am.test:9093/api/v2/alerts"
    (alert,) = json.loads(req.content)
    assert alert["labels"] == {
        "alertname": "ReliaIncident",
        "incident_id": "inc1",
        "severity": "warning",
        "job": "api",
        "instance": "a",
    }
    ann = alert["annotations"]
    assert ann["summary"] == 'cpu_usage{instance="a"} and 1 more on job=api'
    assert "2 finding(s)" in ann["description"] and "latency" in ann["description"]
    assert ann["likely_cause"].startswith('1. cpu_usage{instance="a",job="api"} (score 0.90)')
    assert ann["relia_url"] == "http://relia.test:8787/#incidents/inc1"
    assert alert["generatorURL"] == ann["relia_url"]
    assert alert["startsAt"] == "2024-05-20T10:13:20.000Z"  # opened_at = T0
    # Open: ends 4 resend intervals after now unless refreshed (now = T0 + 1 s).
    assert alert["endsAt"] == "2024-05-20T10:17:21.000Z"


def test_alertmanager_counts_every_finding_and_key_of_a_large_incident() -> None:
    rec = Recorder()
    sink = am_sink(rec)
    many = incident(
        finding_ids=[f"f{i}" for i in range(250)], keys=[f"k{i:03d}" for i in range(150)]
    )
    sink.deliver(item_of(many))
    sink.refresh([many])  # built from the incident itself, not from a stored payload
    for alerts in rec.bodies():
        description = alerts[0]["annotations"]["description"]  # type: ignore[index]
        assert "250 finding(s) on k000, k001, k002, k003, k004 and 145 more" in description


def test_alertmanager_resolved_alert_ends_at_resolution() -> None:
    rec = Recorder()
    sink = am_sink(rec)
    inc = incident()
    sink.deliver(item_of(inc))
    sink.deliver(item_of(resolved(inc, T0 + 30_000)))
    alerts = rec.bodies()[1]
    assert isinstance(alerts, list) and len(alerts) == 1
    assert alerts[0]["endsAt"] == "2024-05-20T10:13:50.000Z"
    assert alerts[0]["labels"]["incident_id"] == "inc1"
    merged = resolved(inc, T0 + 40_000).model_copy(update={"merged_into": "inc0", "version": 3})
    sink.deliver(item_of(merged))
    (last,) = rec.bodies()[2]  # type: ignore[misc]
    assert last["annotations"]["description"].endswith("; merged into incident inc0")


def test_alertmanager_ends_the_old_alert_when_labels_change() -> None:
    rec = Recorder()
    sink = am_sink(rec)
    inc = incident()
    sink.deliver(item_of(inc))
    worse = inc.model_copy(update={"severity": Severity.CRITICAL, "version": 2})
    sink.deliver(item_of(worse))
    new, old = rec.bodies()[1]  # type: ignore[misc]
    assert new["labels"]["severity"] == "critical"
    assert old["labels"]["severity"] == "warning"
    assert old["endsAt"] == "2024-05-20T10:13:21.000Z"  # ended now
    sink.deliver(item_of(resolved(worse, T0 + 5000)))
    assert len(rec.bodies()[2]) == 1  # type: ignore[arg-type]


def test_alertmanager_refresh_reposts_open_incidents_only() -> None:
    rec = Recorder()
    sink = am_sink(rec, now=T0 + 120_000)
    sink.refresh([incident("a"), resolved(incident("b"), T0), incident("c")])
    (alerts,) = rec.bodies()
    assert [a["labels"]["incident_id"] for a in alerts] == ["a", "c"]  # type: ignore[union-attr]
    assert {a["endsAt"] for a in alerts} == {"2024-05-20T10:19:20.000Z"}  # type: ignore[union-attr]
    sink.refresh([])
    assert len(rec.requests) == 1  # nothing to refresh: no request


def test_invalid_and_reserved_incident_labels_are_not_sent() -> None:
    rec = Recorder()
    inc = incident(labels={"job": "api", "bad-name": "x", "severity": "low", "empty": ""})
    am_sink(rec).deliver(item_of(inc))
    (alert,) = rec.bodies()[0]  # type: ignore[misc]
    assert alert["labels"] == {
        "alertname": "ReliaIncident",
        "incident_id": "inc1",
        "severity": "warning",
        "job": "api",
    }


@pytest.mark.parametrize(
    ("status", "retryable"),
    [(500, True), (503, True), (408, True), (429, True), (400, False), (401, False), (404, False)],
)
def test_http_errors_say_whether_a_retry_helps(status: int, retryable: bool) -> None:
    for sink in (
        am_sink(Recorder(status)),
        WebhookSink(
            "http://hook.test/x",
            SECRET,
            name="hook",
            transport=httpx.MockTransport(Recorder(status)),
        ),
    ):
        with pytest.raises(DeliveryError, match=f"HTTP {status}") as info:
            sink.deliver(item_of(incident()))
        assert info.value.retryable is retryable


def test_alertmanager_counts_an_item_enqueued_before_the_totals_from_its_lists() -> None:
    # An outbox item written before finding_count and key_count existed lists every id and key.
    old = incident(keys=[f"k{i}" for i in range(7)], finding_ids=["f1", "f2", "f3"])
    payload = old.model_dump(mode="json")
    description = alert_for(payload, None)["annotations"]["description"]
    assert "3 finding(s) on k0, k1, k2, k3, k4 and 2 more" in description
    # Exactly five keys: all shown, no "and 0 more".
    five = incident(keys=[f"k{i}" for i in range(5)]).model_dump(mode="json")
    assert (
        "2 finding(s) on k0, k1, k2, k3, k4 from"
        in alert_for(five, None)["annotations"]["description"]
    )


@pytest.mark.parametrize("status", [300, 301, 302, 307, 308])
def test_a_redirect_is_not_followed_and_says_where_to_point_the_sink(status: int) -> None:
    def moved(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers={"Location": "https://hook.test/x?token=t0ken"})

    for sink in (
        am_sink(moved),
        WebhookSink(
            "http://hook.test/x", SECRET, name="hook", transport=httpx.MockTransport(moved)
        ),
    ):
        with pytest.raises(DeliveryError) as info:
            sink.deliver(item_of(incident()))
        assert not info.value.retryable  # a redirect answers the same way next time
        text = str(info.value)
        assert f"HTTP {status}: redirected" in text and "set the sink's url" in text
        assert "t0ken" not in text  # like the sink's own url, the target may hold a token


@pytest.mark.parametrize(
    "exc",
    [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("x")],
)
def test_transport_errors_are_retryable(exc: Exception) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    sink = am_sink(handler)
    with pytest.raises(DeliveryError) as info:
        sink.deliver(item_of(incident()))
    assert info.value.retryable


def webhook(rec: Recorder, now: int = T0 + 2500) -> WebhookSink:
    return WebhookSink(
        "http://hook.test/services/tok-in-path",  # as Slack-style URLs hold a token
        SECRET,
        3.0,
        name="hook",
        clock=lambda: now,
        transport=httpx.MockTransport(rec),
    )


def test_webhook_body_headers_and_signature() -> None:
    rec = Recorder()
    item = item_of(incident(), "hook")
    webhook(rec).deliver(item)
    (req,) = rec.requests
    body = json.loads(req.content)
    assert body == {"dedup_key": "hook:inc1:1", "incident": item.payload, "sent_at": T0 + 2500}
    assert req.headers["X-Relia-Dedup-Key"] == "hook:inc1:1"
    assert req.headers["X-Relia-Timestamp"] == str((T0 + 2500) // 1000)
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["X-Relia-Signature"] == sign(
        req.content, req.headers["X-Relia-Timestamp"], SECRET
    )
    now_s = (T0 + 2500) / 1000
    assert verify_signature(req.content, dict(req.headers), SECRET, 300, now=now_s)
    assert SECRET not in req.content.decode() and SECRET not in str(dict(req.headers))


def test_verify_signature_rejects_tampering_wrong_secret_and_old_requests() -> None:
    rec = Recorder()
    webhook(rec).deliver(item_of(incident(), "hook"))
    (req,) = rec.requests
    headers, body = dict(req.headers), req.content
    now_s = (T0 + 2500) / 1000
    assert verify_signature(body, headers, SECRET.encode(), 300, now=now_s)
    assert not verify_signature(body.replace(b"warning", b"critical"), headers, SECRET, now=now_s)
    assert not verify_signature(body, headers, "other-secret", now=now_s)
    # The timestamp is signed too: moving it breaks the signature...
    moved = {**headers, "x-relia-timestamp": str(int(now_s) + 1)}
    assert not verify_signature(body, moved, SECRET, now=now_s)
    # ...and a genuine request replayed after the tolerance is refused.
    assert not verify_signature(body, headers, SECRET, 300, now=now_s + 301)
    assert verify_signature(body, headers, SECRET, 300, now=now_s + 299)
    assert not verify_signature(body, {"x-relia-timestamp": headers["x-relia-timestamp"]}, SECRET)
    bad_ts = {**headers, "x-relia-timestamp": "soon"}
    assert not verify_signature(body, bad_ts, SECRET, now=now_s)


def test_secrets_stay_out_of_reprs_and_errors() -> None:
    sink = webhook(Recorder(500))
    assert SECRET not in repr(sink) and "tok-in-path" not in repr(sink)
    with pytest.raises(DeliveryError) as info:
        sink.deliver(item_of(incident(), "hook"))
    assert SECRET not in str(info.value) and "tok-in-path" not in str(info.value)
    with pytest.raises(ConfigError, match="secret is empty"):
        WebhookSink("http://hook.test/", "")


def test_log_sink_writes_one_json_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="relia.notify")
    LogSink("log").deliver(item_of(resolved(incident(), T0 + 7), "log"))
    (record,) = caplog.records
    line = json.loads(record.getMessage().removeprefix("relia incident "))
    assert line["dedup_key"] == "log:inc1:2" and line["status"] == "resolved"
    assert line["resolved_at"] == T0 + 7 and line["labels"] == {"job": "api", "instance": "a"}


def test_build_sinks_reads_the_secret_from_the_environment() -> None:
    config = NotifyConfig.model_validate(
        {
            "sinks": [
                {"name": "am", "type": "alertmanager", "url": "http://127.0.0.1:9093/"},
                {"name": "hook", "type": "webhook", "url": "http://h/x", "secret_env": "HOOK"},
                {"name": "log", "type": "log"},
            ]
        },
        context={"environ": {"HOOK": SECRET}},
    )
    sinks = build_sinks(config, {"HOOK": SECRET})
    assert [type(s).__name__ for s in sinks] == ["AlertmanagerSink", "WebhookSink", "LogSink"]
    assert [s.name for s in sinks] == ["am", "hook", "log"]
    assert SECRET not in repr(sinks)
    with pytest.raises(ConfigError, match=r"notify\.sinks\.1\.secret_env: .*HOOK is not set"):
        build_sinks(config, {})


# -- behaviours found untested by a mutation audit ------------------------------------------


@pytest.mark.parametrize("status", [301, 302, 304, 307])
def test_a_redirect_is_not_a_delivery(status: int) -> None:
    # httpx does not follow redirects here: a 3xx means the receiver did not take the alert.
    for sink in (
        am_sink(Recorder(status)),
        WebhookSink(
            "http://hook.test/x",
            SECRET,
            name="hook",
            transport=httpx.MockTransport(Recorder(status)),
        ),
    ):
        with pytest.raises(DeliveryError, match=f"HTTP {status}"):
            sink.deliver(item_of(incident()))


def test_alertmanager_a_failed_post_still_ends_the_old_alert_on_retry() -> None:
    # v1 (warning) was accepted; v2 (critical) fails once with a 503. Alertmanager never saw
    # v2, so the retry must still end the warning alert, or it keeps firing beside the new one.
    rec = Recorder()
    sink = am_sink(rec)
    inc = incident()
    sink.deliver(item_of(inc))
    worse = inc.model_copy(update={"severity": Severity.CRITICAL, "version": 2})
    rec.status = 503
    with pytest.raises(DeliveryError):
        sink.deliver(item_of(worse))
    rec.status = 200
    sink.deliver(item_of(worse))
    new, old = rec.bodies()[2]  # type: ignore[misc]
    assert new["labels"]["severity"] == "critical"
    assert old["labels"]["severity"] == "warning"
    assert old["endsAt"] == "2024-05-20T10:13:21.000Z"  # ended now (T0 + 1 s)


def test_alertmanager_a_label_change_ends_the_alert_a_refresh_posted() -> None:
    # After a restart the sink knows nothing; the first refresh posts the warning alert, so
    # when the incident turns critical that alert is ended in the same request.
    rec = Recorder()
    sink = am_sink(rec)
    inc = incident()
    sink.refresh([inc])
    worse = inc.model_copy(update={"severity": Severity.CRITICAL, "version": 2})
    sink.deliver(item_of(worse))
    new, old = rec.bodies()[1]  # type: ignore[misc]
    assert new["labels"]["severity"] == "critical"
    assert old["labels"]["severity"] == "warning"
    assert old["endsAt"] == "2024-05-20T10:13:21.000Z"


def test_webhook_signature_is_the_documented_hmac() -> None:
    # What a receiver implements from the docs, without relia's code:
    # "sha256=" + hex HMAC-SHA256(secret, timestamp + "." + raw body).
    import hashlib
    import hmac

    rec = Recorder()
    webhook(rec).deliver(item_of(incident(), "hook"))
    (req,) = rec.requests
    ts = req.headers["X-Relia-Timestamp"]
    mac = hmac.new(SECRET.encode(), ts.encode() + b"." + req.content, hashlib.sha256)
    assert req.headers["X-Relia-Signature"] == "sha256=" + mac.hexdigest()


def test_verify_signature_tolerates_clock_skew_both_ways_up_to_the_tolerance() -> None:
    rec = Recorder()
    webhook(rec).deliver(item_of(incident(), "hook"))
    (req,) = rec.requests
    headers, body = dict(req.headers), req.content
    sent = (T0 + 2500) // 1000  # the timestamp header, whole seconds
    # Within 300 s either side (edges included): accepted.
    for now in (sent - 300, sent, sent + 300):
        assert verify_signature(body, headers, SECRET, 300, now=now)
    # A timestamp from further in the future than the tolerance is refused, like an old one.
    assert not verify_signature(body, headers, SECRET, 300, now=sent - 301)
    assert not verify_signature(body, headers, SECRET, 300, now=sent + 301)


def test_build_sinks_applies_resend_interval_and_external_url() -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    bodies: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
            bodies.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        config = NotifyConfig.model_validate(
            {
                "external_url": "http://relia.test:8787",
                "sinks": [
                    {
                        "name": "am",
                        "type": "alertmanager",
                        "url": f"http://127.0.0.1:{server.server_port}",
                        "resend_interval": "2m",
                    }
                ],
            }
        )
        (sink,) = build_sinks(config, {})
        assert isinstance(sink, AlertmanagerSink)
        assert sink.resend_interval == 120.0
        sink.deliver(item_of(incident()))
        sink.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
    (alerts,) = [json.loads(b) for b in bodies]
    assert alerts[0]["generatorURL"] == "http://relia.test:8787/#incidents/inc1"


def test_the_timeout_bounds_a_delivery_whose_answer_trickles_in() -> None:
    # 200 at once, then 20 lines a second apart: httpx's per-read timeout never fires.
    with slow_server(b"ok\n" * 20, every=1.0) as url:
        sink = WebhookSink(url + "/hook", "s3cret", timeout=0.5, name="hook")
        began = time.monotonic()
        sink.deliver(notifications_for(incident(), ["hook"], T0)[0])  # 2xx: delivered
        took = time.monotonic() - began
        sink.close()
    assert took < 1.8  # about the timeout, not the 20 s the answer takes


def test_the_timeout_bounds_a_refresh_whose_answer_trickles_in() -> None:
    with slow_server(b"ok\n" * 20, every=1.0) as url:
        sink = AlertmanagerSink(url, timeout=0.5, name="am")
        began = time.monotonic()
        sink.refresh([incident("a")])
        took = time.monotonic() - began
        sink.close()
    assert took < 1.8


def test_the_timeout_bounds_a_delivery_whose_headers_trickle_in() -> None:
    # The status line at once, then a header byte every 0.2 s for ever: each read is inside
    # httpx's per-read timeout of 0.5 s, so only a deadline on the whole attempt ends it.
    with slow_server(b"", header_every=0.2) as url:
        sink = WebhookSink(url + "/hook", "s3cret", timeout=0.5, name="hook")
        item = notifications_for(incident(), ["hook"], T0)[0]
        took, error = timed(lambda: sink.deliver(item))
        sink.close()
    assert isinstance(error, DeliveryError) and error.retryable
    assert str(error) == "sink hook: timed out (ReadTimeout)"
    assert took < 2.0


def test_the_timeout_bounds_an_alertmanager_post_whose_headers_trickle_in() -> None:
    with slow_server(b"", header_every=0.2) as url:
        sink = AlertmanagerSink(url, timeout=0.5, name="am")
        took, error = timed(lambda: sink.deliver(item_of(incident())))
        sink.close()
    assert isinstance(error, DeliveryError)
    assert str(error) == "sink am: timed out (ReadTimeout)"
    assert took < 2.0


def test_alertmanager_refresh_posts_many_open_incidents_in_chunks() -> None:
    rec = Recorder()
    sink = am_sink(rec)
    sink.refresh([incident(f"i{n}") for n in range(2500)])
    sizes = [len(b) for b in rec.bodies()]  # type: ignore[arg-type]
    assert sizes == [1000, 1000, 500]  # each POST small enough to answer within the timeout


def test_alertmanager_refresh_fails_when_a_chunk_fails() -> None:
    answers = iter([200, 503])
    rec = Recorder()

    def handler(request: httpx.Request) -> httpx.Response:
        rec.status = next(answers, 200)
        return rec(request)

    sink = am_sink(handler)
    with pytest.raises(DeliveryError) as err:
        sink.refresh([incident(f"i{n}") for n in range(2500)])
    assert err.value.retryable and len(rec.requests) == 2


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.test/hooks/relia/tok_9f8e7d6c5b4a",
        "http://hooks.test/hooks?token=tok_9f8e7d6c5b4a",
        "http://relia:tok_9f8e7d6c5b4a@hooks.test/hook",
    ],
)
def test_an_error_page_that_echoes_the_url_does_not_leak_its_token(url: str) -> None:
    def echo(request: httpx.Request) -> httpx.Response:  # Express: "Cannot POST /path"
        shown = request.url.raw_path.decode()
        return httpx.Response(404, text=f"<pre>Cannot POST {shown} ({request.url})</pre>")

    sink = WebhookSink(url, SECRET, name="hook", transport=httpx.MockTransport(echo))
    with pytest.raises(DeliveryError) as err:
        sink.deliver(item_of(incident(), "hook"))
    assert "tok_9f8e7d6c5b4a" not in str(err.value)
    assert str(err.value).startswith("sink hook: HTTP 404: <pre>Cannot POST …")
