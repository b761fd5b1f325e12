"""Where notifications go: Alertmanager (API v2), a signed webhook, the log.

A sink delivers one :class:`~relia.notify.outbox.OutboxItem` or raises :class:`DeliveryError`
saying whether trying again can help: a timeout, a connection error, 408, 429 or a 5xx can; any
other 4xx (a bad URL, a refused token, a payload the receiver rejects) or a redirect (not
followed) cannot, and the dispatcher marks the item failed instead of retrying it for a day.

Secrets (the webhook's HMAC key) live only inside the sink object: they are not in its repr, in
error messages or in log lines.

Verifying a webhook (receiver side)
-----------------------------------
Each POST carries the JSON body and three headers::

    X-Relia-Timestamp:  1716200000                 (Unix seconds when it was sent)
    X-Relia-Signature:  sha256=<hex>               HMAC-SHA256(secret, timestamp + "." + body)
    X-Relia-Dedup-Key:  <sink>:<incident id>:<version>

A receiver recomputes the HMAC over the raw body bytes (before parsing the JSON), compares it in
constant time, rejects timestamps older than a few minutes (a replayed request), and drops a dedup
key it has already handled (relia retries when an answer is lost, so a receiver can see a delivery
twice; the key makes handling it once easy). :func:`verify_signature` does the first three.

With HA replicas (:mod:`relia.ha`) the leader's fencing token travels too: as the header
``X-Relia-Fencing-Token`` and as ``fencing_token`` in the signed body (webhook), as the header and
the annotation ``relia_fencing_token`` (Alertmanager). Tokens grow with each new leader; a receiver
that remembers the largest one it has seen can refuse a request carrying a smaller one (what a
leader that lost its lease mid-send could still send; see :mod:`relia.notify.dispatcher`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

import httpx

from relia._http import deadline_client, request_deadline
from relia._urls import shown_url
from relia.config import NotifyConfig
from relia.errors import ConfigError
from relia.incidents.model import Incident
from relia.notify.outbox import OutboxItem, incident_payload

__all__ = [
    "ALERTNAME",
    "FENCING_ANNOTATION",
    "FENCING_HEADER",
    "AlertmanagerSink",
    "DeliveryError",
    "LogSink",
    "RefreshingSink",
    "Sink",
    "WebhookSink",
    "alert_for",
    "build_sinks",
    "sign",
    "verify_signature",
]

log = logging.getLogger("relia.notify")

#: The ``alertname`` label of every alert relia sends to Alertmanager.
ALERTNAME = "ReliaIncident"
SIGNATURE_HEADER = "X-Relia-Signature"
TIMESTAMP_HEADER = "X-Relia-Timestamp"
DEDUP_HEADER = "X-Relia-Dedup-Key"
FENCING_HEADER = "X-Relia-Fencing-Token"
#: The Alertmanager annotation that carries the fencing token.
FENCING_ANNOTATION = "relia_fencing_token"

_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_RESERVED = ("alertname", "incident_id", "severity")


class DeliveryError(Exception):
    """A delivery failed; ``retryable`` says whether trying again later can succeed."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


@runtime_checkable
class Sink(Protocol):
    """Delivers outbox items somewhere. ``deliver`` returns when the receiver accepted it."""

    @property
    def name(self) -> str: ...

    def deliver(self, item: OutboxItem) -> None: ...


@runtime_checkable
class RefreshingSink(Sink, Protocol):
    """A sink whose receiver forgets firing alerts unless they are re-sent (Alertmanager)."""

    @property
    def resend_interval(self) -> float: ...

    def refresh(self, open_incidents: Sequence[Incident]) -> None: ...


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _fencing_headers(token: int | None) -> dict[str, str]:
    return {} if token is None else {FENCING_HEADER: str(token)}


def _rfc3339(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


#: Bytes of a receiver's answer read at most (enough for an error message's first words).
_BODY_CAP = 4096
#: Alerts per refresh POST: Alertmanager takes a large batch slower than one timeout allows.
REFRESH_CHUNK = 1000


def _secret_parts(url: str) -> list[str]:
    """The parts of ``url`` that may hold a token (userinfo, path, query, long path segments),
    raw and percent-decoded, longest first: what an echoing error page must not reveal."""
    parsed = httpx.URL(url)
    raw_path = parsed.raw_path.decode("ascii", "replace")
    path, _, query = raw_path.partition("?")
    parts = {url, raw_path, path, query, parsed.path, parsed.username, parsed.password}
    for segment in parsed.path.split("/") + path.split("/") + re.split("[&=]", query):
        if len(segment) >= 8:  # a token's length; "api", "v2", "alerts" stay readable
            parts.add(segment)
    return sorted((p for p in parts if p and p != "/"), key=len, reverse=True)


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for part in secrets:
        text = text.replace(part, "…")
    return text


def _post(
    client: httpx.Client,
    sink: str,
    url: str,
    timeout: float,
    secrets: Sequence[str] = (),
    **kwargs: Any,
) -> None:
    """POST and turn every failure into a DeliveryError that says if a retry can help.

    ``timeout`` bounds the whole attempt, status line, headers and answer included: httpx's own
    timeout is per read, so a receiver that trickles its answer would hold the dispatcher (and
    every other sink) up. At most ``_BODY_CAP`` bytes of the answer are read. ``secrets`` (parts
    of the sink's URL) are replaced by ``…`` in the message: an error page can echo the path,
    token and all."""
    try:
        with request_deadline(timeout) as deadline, client.stream("POST", url, **kwargs) as resp:
            code = resp.status_code
            body = bytearray()
            # The status decides; the body is only for the error message (and lets the
            # connection be reused), so past the deadline or the cap it is left unread.
            try:
                if time.monotonic() < deadline:
                    for chunk in resp.iter_bytes():
                        body += chunk
                        if len(body) >= _BODY_CAP or time.monotonic() >= deadline:
                            break
            except httpx.HTTPError:
                pass  # the answer's status is in: a body cut short changes nothing
            charset = resp.charset_encoding or "utf-8"
    except httpx.TimeoutException as e:
        raise DeliveryError(f"sink {sink}: timed out ({type(e).__name__})", retryable=True) from e
    except httpx.HTTPError as e:
        error = _scrub(f"{type(e).__name__}: {e}", secrets)
        raise DeliveryError(f"sink {sink}: {error}", retryable=True) from e
    if 200 <= code < 300:
        return
    if 300 <= code < 400:
        # Not followed: a 301/302 turns the POST into a GET, and a redirect answers the same way
        # every time. Where it points is left out like the url itself (it may hold a token).
        raise DeliveryError(
            f"sink {sink}: HTTP {code}: redirected elsewhere (relia does not follow redirects: "
            "set the sink's url to where it points)",
            retryable=False,
        )
    text = bytes(body[:_BODY_CAP]).decode(charset, errors="replace")
    snippet = _scrub(text, secrets)[:200].strip().replace("\n", " ")
    retryable = code in (408, 429) or code >= 500
    # No URL in the message: a webhook URL can hold a token in its path (Slack's do).
    raise DeliveryError(f"sink {sink}: HTTP {code}: {snippet}", retryable=retryable)


# -- Alertmanager ---------------------------------------------------------------------------


def _labels(payload: Mapping[str, Any]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for k, v in dict(payload.get("labels") or {}).items():
        # Alertmanager rejects invalid label names (and treats empty values as absent): keep the
        # valid ones, never let an incident label override relia's own three.
        if _LABEL_NAME.match(str(k)) and str(v) != "" and k not in _RESERVED:
            labels[str(k)] = str(v)
    labels["alertname"] = ALERTNAME
    labels["incident_id"] = str(payload["id"])
    labels["severity"] = str(payload.get("severity", "warning"))
    return labels


def _cause_text(cause: Sequence[Mapping[str, Any]], top: int = 3) -> str:
    parts = []
    for i, c in enumerate(cause[:top], 1):
        score = c.get("score")
        s = f" (score {float(score):.2f})" if isinstance(score, int | float) else ""
        reason = f": {c['reason']}" if c.get("reason") else ""
        parts.append(f"{i}. {c.get('key', '?')}{s}{reason}")
    return "; ".join(parts)


def alert_for(
    payload: Mapping[str, Any], ends_at: int | None, link: str | None = None
) -> dict[str, Any]:
    """The Alertmanager v2 alert of an incident snapshot (``Incident.model_dump(mode="json")``).

    ``ends_at`` (ms) is when Alertmanager should consider it resolved: the resolution time of a
    resolved incident, a few resend intervals ahead for an open one.
    """
    keys = list(payload.get("keys") or [])
    # The totals: a payload lists at most 100 of each (notify.outbox.incident_payload); an
    # item enqueued before the totals existed lists them all.
    n_keys = int(payload.get("key_count", len(keys)))
    n_findings = int(payload.get("finding_count", len(payload.get("finding_ids") or [])))
    shown = ", ".join(keys[:5]) + (f" and {n_keys - 5} more" if n_keys > 5 else "")
    description = (
        f"relia incident {payload['id']} ({payload.get('status', 'open')}, version "
        f"{payload.get('version', 1)}): {n_findings} finding(s) "
        f"on {shown or 'no keys'} from {_rfc3339(int(payload.get('start', 0)))} to "
        f"{_rfc3339(int(payload.get('end', 0)))}"
    )
    if payload.get("merged_into"):
        description += f"; merged into incident {payload['merged_into']}"
    causes = list(payload.get("cause") or [])
    if causes and causes[0].get("summary"):
        # What the likeliest cause's detector said comes first: it is what a person reads.
        description = f"{causes[0]['summary']}. {description}"
    annotations = {"summary": str(payload.get("title", "")), "description": description}
    cause = _cause_text(list(payload.get("cause") or []))
    if cause:
        annotations["likely_cause"] = cause
    alert: dict[str, Any] = {
        "labels": _labels(payload),
        "annotations": annotations,
        "startsAt": _rfc3339(int(payload.get("opened_at", payload.get("start", 0)))),
    }
    if ends_at is not None:
        alert["endsAt"] = _rfc3339(ends_at)
    if link:
        annotations["relia_url"] = link
        alert["generatorURL"] = link
    return alert


class AlertmanagerSink:
    """Posts incidents to Alertmanager's ``/api/v2/alerts`` as alerts named ``ReliaIncident``.

    Labels: ``alertname``, ``incident_id``, ``severity`` and the incident's identifying labels.
    Annotations: ``summary`` (the title), ``description``, ``likely_cause``, ``relia_url``.

    Alertmanager resolves an alert by itself at its ``endsAt``. A firing alert is sent with
    ``endsAt`` = now + 4 × ``resend_interval`` (as Prometheus does) and :meth:`refresh` re-posts
    the open incidents every ``resend_interval``; a resolved one carries its ``resolved_at``.

    An alert's identity in Alertmanager is its label set. When an incident's labels change
    (its severity rose, a label stopped being shared), the alert posted before is ended in the
    same request, so no stale copy keeps firing. That memory is per process: after a restart a
    stale copy ends at its own ``endsAt`` at the latest.
    """

    def __init__(
        self,
        url: str,
        timeout: float = 5.0,
        *,
        name: str = "alertmanager",
        resend_interval: float = 60.0,
        external_url: str | None = None,
        clock: Callable[[], int] = _wall_ms,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._name = name
        self._endpoint = url.rstrip("/") + "/api/v2/alerts"
        self._timeout = float(timeout)
        self._secrets = _secret_parts(self._endpoint)
        self._resend = float(resend_interval)
        self._external = external_url.rstrip("/") if external_url else None
        self._clock = clock
        self._client = deadline_client(timeout=timeout, transport=transport)
        # incident id -> the label set last posted for it (see the class docstring).
        self._posted: dict[str, dict[str, str]] = {}

    @property
    def name(self) -> str:
        """The sink's configured name."""
        return self._name

    @property
    def timeout(self) -> float:
        """Seconds one HTTP attempt may take, answer included."""
        return self._timeout

    @property
    def resend_interval(self) -> float:
        """Seconds between refreshes of the open incidents' alerts."""
        return self._resend

    def _link(self, incident_id: str) -> str | None:
        # The dashboard's page for the incident: it asks for a token itself when auth is on,
        # where the JSON route would answer a click from a chat message with 401.
        return f"{self._external}/#incidents/{incident_id}" if self._external else None

    def _alerts(
        self, payload: Mapping[str, Any], now: int, fencing_token: int | None = None
    ) -> list[dict[str, Any]]:
        iid = str(payload["id"])
        resolved = payload.get("status") == "resolved"
        ends = (
            int(payload.get("resolved_at") or now)
            if resolved
            else now + int(4 * self._resend * 1000)
        )
        alert = alert_for(payload, ends, self._link(iid))
        if fencing_token is not None:
            alert["annotations"][FENCING_ANNOTATION] = str(fencing_token)
        out = [alert]
        before = self._posted.get(iid)
        if before is not None and before != alert["labels"]:
            out.append({**alert, "labels": before, "endsAt": _rfc3339(now)})
        return out

    def _remember(self, payload: Mapping[str, Any], alerts: list[dict[str, Any]]) -> None:
        iid = str(payload["id"])
        if payload.get("status") == "resolved":
            self._posted.pop(iid, None)
        else:
            self._posted[iid] = alerts[0]["labels"]

    def deliver(self, item: OutboxItem, fencing_token: int | None = None) -> None:
        """Post the item's incident snapshot as one alert (firing or resolved); the leader's
        ``fencing_token`` (HA) goes in a header and an annotation."""
        alerts = self._alerts(item.payload, self._clock(), fencing_token)
        _post(
            self._client,
            self._name,
            self._endpoint,
            self._timeout,
            self._secrets,
            json=alerts,
            headers=_fencing_headers(fencing_token),
        )
        self._remember(item.payload, alerts)

    def refresh(self, open_incidents: Sequence[Incident], fencing_token: int | None = None) -> None:
        """Re-post the firing alerts of ``open_incidents`` so Alertmanager keeps them firing.

        Idempotent on Alertmanager's side (same labels: the same alert, its ``endsAt`` moved).
        Posted ``REFRESH_CHUNK`` alerts at a time; the first chunk that fails raises.
        """
        now = self._clock()
        alerts: list[dict[str, Any]] = []
        for inc in open_incidents:
            payload = incident_payload(inc)
            if payload.get("status") == "resolved":
                continue
            mine = self._alerts(payload, now, fencing_token)
            alerts.extend(mine)
            self._remember(payload, mine)
        # In chunks: each POST has its own timeout, and one chunk failing fails the refresh.
        for start in range(0, len(alerts), REFRESH_CHUNK):
            _post(
                self._client,
                self._name,
                self._endpoint,
                self._timeout,
                self._secrets,
                json=alerts[start : start + REFRESH_CHUNK],
                headers=_fencing_headers(fencing_token),
            )

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()

    def __repr__(self) -> str:
        return f"AlertmanagerSink(name={self._name!r}, url={shown_url(self._endpoint)!r})"


# -- webhook --------------------------------------------------------------------------------


def sign(body: bytes, timestamp: str, secret: str | bytes) -> str:
    """The ``X-Relia-Signature`` value: ``sha256=`` + hex HMAC-SHA256 of ``timestamp.body``."""
    key = secret.encode() if isinstance(secret, str) else secret
    mac = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify_signature(
    body: bytes,
    headers: Mapping[str, str],
    secret: str | bytes,
    tolerance_s: float = 300.0,
    *,
    now: float | None = None,
) -> bool:
    """Whether a webhook request is genuine: signed with ``secret`` over this exact body and
    timestamp, and the timestamp within ``tolerance_s`` of ``now`` (Unix seconds; default: the
    clock). Header names are matched case-insensitively."""
    lower = {k.lower(): v for k, v in headers.items()}
    ts = lower.get(TIMESTAMP_HEADER.lower())
    got = lower.get(SIGNATURE_HEADER.lower())
    if ts is None or got is None:
        return False
    try:
        sent = int(ts)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - sent) > tolerance_s:
        return False
    return hmac.compare_digest(sign(body, ts, secret), got)


class WebhookSink:
    """POSTs ``{dedup_key, incident, sent_at}`` as JSON, signed with HMAC-SHA256 (see the module
    docstring for the headers and how a receiver verifies them)."""

    def __init__(
        self,
        url: str,
        secret: str | bytes,
        timeout: float = 5.0,
        *,
        name: str = "webhook",
        clock: Callable[[], int] = _wall_ms,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not secret:
            raise ConfigError("the webhook secret is empty", where=f"sink {name}")
        self._name = name
        self._url = url
        self._timeout = float(timeout)
        self._secrets = _secret_parts(url)
        self._secret = secret.encode() if isinstance(secret, str) else bytes(secret)
        self._clock = clock
        self._client = deadline_client(timeout=timeout, transport=transport)

    @property
    def name(self) -> str:
        """The sink's configured name."""
        return self._name

    @property
    def timeout(self) -> float:
        """Seconds one HTTP attempt may take, answer included."""
        return self._timeout

    def deliver(self, item: OutboxItem, fencing_token: int | None = None) -> None:
        """Post the item; 2xx means the receiver has it. The leader's ``fencing_token`` (HA) is
        in the signed body and in a header."""
        now = self._clock()
        doc: dict[str, Any] = {"dedup_key": item.id, "incident": item.payload, "sent_at": now}
        if fencing_token is not None:
            doc["fencing_token"] = fencing_token
        body = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
        ts = str(now // 1000)
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: ts,
            SIGNATURE_HEADER: sign(body, ts, self._secret),
            DEDUP_HEADER: item.id,
            **_fencing_headers(fencing_token),
        }
        _post(
            self._client,
            self._name,
            self._url,
            self._timeout,
            self._secrets,
            content=body,
            headers=headers,
        )

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()

    def __repr__(self) -> str:
        # Never the secret.
        return f"WebhookSink(name={self._name!r}, host={httpx.URL(self._url).host!r})"


# -- log ------------------------------------------------------------------------------------


class LogSink:
    """Writes each notification as one JSON line to the ``relia.notify`` logger (INFO)."""

    def __init__(self, name: str = "log", logger: logging.Logger | None = None) -> None:
        self._name = name
        self._log = logger or log

    @property
    def name(self) -> str:
        """The sink's configured name."""
        return self._name

    def deliver(self, item: OutboxItem, fencing_token: int | None = None) -> None:
        """Log the item (with the leader's ``fencing_token`` under HA); never fails."""
        p = item.payload
        line = {
            "dedup_key": item.id,
            "incident_id": item.incident_id,
            "version": item.version,
            "status": p.get("status"),
            "severity": p.get("severity"),
            "title": p.get("title"),
            "labels": p.get("labels"),
            "opened_at": p.get("opened_at"),
            "resolved_at": p.get("resolved_at"),
        }
        if fencing_token is not None:
            line["fencing_token"] = fencing_token
        self._log.info("relia incident %s", json.dumps(line, sort_keys=True))

    def close(self) -> None:
        """Nothing to close."""

    def __repr__(self) -> str:
        return f"LogSink(name={self._name!r})"


# -- from the config ------------------------------------------------------------------------


def build_sinks(
    config: NotifyConfig, environ: Mapping[str, str] | None = None
) -> list[AlertmanagerSink | WebhookSink | LogSink]:
    """The sinks ``config`` describes; webhook secrets are read from ``environ`` (default: the
    process environment) here, and kept only inside the sink."""
    env = os.environ if environ is None else environ
    out: list[AlertmanagerSink | WebhookSink | LogSink] = []
    for i, s in enumerate(config.sinks):
        where = f"notify.sinks.{i}"
        if s.type == "log":
            out.append(LogSink(s.name))
        elif s.url is None:
            raise ConfigError(f"a url is required for type {s.type}", where=f"{where}.url")
        elif s.type == "alertmanager":
            out.append(
                AlertmanagerSink(
                    s.url,
                    s.timeout,
                    name=s.name,
                    resend_interval=s.resend_interval,
                    external_url=config.external_url,
                )
            )
        else:
            secret = env.get(s.secret_env or "")
            if not secret:
                raise ConfigError(
                    f"the environment variable {s.secret_env} is not set (or empty)",
                    where=f"{where}.secret_env",
                )
            out.append(WebhookSink(s.url, secret, s.timeout, name=s.name))
    return out
