"""In-memory stand-ins for sources and the servers they talk to; no network, for tests and examples.

- :class:`FakeSource` hands out prepared batches, one per poll.
- :func:`fake_prometheus_transport` is an ``httpx`` transport that answers like a Prometheus
  server holding the given series: ``/api/v1/query_range`` (with Prometheus's evaluation: the
  latest sample at or before each step within a 5 minute lookback, and its 11,000 points limit),
  ``/api/v1/query``, ``/api/v1/label/__name__/values``, ``/api/v1/status/buildinfo``,
  ``/-/ready`` and ``/-/healthy``. Queries may be series selectors
  (``name{label="v",other=~"re.*"}``); anything else is answered as a PromQL parse error.
- :func:`fake_scrape_transport` answers every request with fixed exposition text.
"""

from __future__ import annotations

import json
import math
import re
import time
from typing import Any
from urllib.parse import parse_qs

import httpx
import numpy as np

from relia.signals import MetricBatch
from relia.sources.prometheus import RangeSeries

__all__ = [
    "FakePrometheusTransport",
    "FakeSource",
    "fake_prometheus_transport",
    "fake_scrape_transport",
]

#: Prometheus refuses range queries with more points per series than this.
PROMETHEUS_MAX_POINTS = 11_000
#: How far back Prometheus looks for a sample when evaluating at a time (its default).
LOOKBACK_MS = 300_000


class FakeSource:
    """A source that returns ``batches`` one per poll, then empty batches."""

    def __init__(self, name: str, batches: list[MetricBatch]) -> None:
        self.name = name
        self._batches = list(batches)
        self.polls: list[int] = []

    def poll(self, now_ms: int) -> MetricBatch:
        self.polls.append(now_ms)
        return self._batches.pop(0) if self._batches else MetricBatch.empty()


_SELECTOR = re.compile(r"^\s*([a-zA-Z_:][a-zA-Z0-9_:]*)?\s*(?:\{(.*)\})?\s*$", re.S)
_MATCHER = re.compile(r'\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*(?:,|$)')


def _parse_selector(query: str) -> list[tuple[str, str, str]] | None:
    """Matchers of a selector as ``(label, op, value)``; ``None`` if not a plain selector."""
    m = _SELECTOR.match(query)
    if not m or (m.group(1) is None and m.group(2) is None):
        return None
    matchers = [("__name__", "=", m.group(1))] if m.group(1) else []
    body = (m.group(2) or "").strip()
    pos = 0
    while pos < len(body):
        mm = _MATCHER.match(body, pos)
        if not mm or mm.end() == pos:
            return None
        value = json.loads(f'"{mm.group(3)}"')
        matchers.append((mm.group(1), mm.group(2), value))
        pos = mm.end()
    return matchers or None


def _matches(labels: dict[str, str], matchers: list[tuple[str, str, str]]) -> bool:
    for name, op, value in matchers:
        have = labels.get(name, "")
        if op == "=" and have != value:
            return False
        if op == "!=" and have == value:
            return False
        if op == "=~" and not re.fullmatch(value, have):
            return False
        if op == "!~" and re.fullmatch(value, have):
            return False
    return True


def _fmt(value: float) -> str:
    # Prometheus writes sample values as strings, with NaN and infinities spelled like this.
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)$")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def _seconds(text: str, what: str) -> float:
    m = _DURATION.match(text.strip())
    if m:
        return float(m.group(1)) * _UNIT[m.group(2)]
    bad = f'invalid parameter "{what}": cannot parse "{text}" to a valid timestamp'
    try:
        out = float(text)
    except ValueError:
        raise ValueError(bad) from None
    if not math.isfinite(out):
        raise ValueError(bad)
    return out


def _json(status: int, body: dict[str, Any]) -> httpx.Response:
    return httpx.Response(status, json=body)


def _error(status: int, kind: str, message: str) -> httpx.Response:
    return _json(status, {"status": "error", "errorType": kind, "error": message})


class FakePrometheusTransport(httpx.MockTransport):
    """The transport made by :func:`fake_prometheus_transport`; ``calls`` logs every request."""

    def __init__(self, series: list[RangeSeries]) -> None:
        self.series = [RangeSeries(dict(s.labels), *_sorted(s.ts, s.values)) for s in series]
        self.calls: list[tuple[str, dict[str, str]]] = []
        super().__init__(self._handle)

    def _handle(self, request: httpx.Request) -> httpx.Response:
        params = {k: v[-1] for k, v in parse_qs(request.url.query.decode()).items()}
        if request.method == "POST":
            form = parse_qs(request.content.decode())
            params.update({k: v[-1] for k, v in form.items()})
        path = request.url.path
        self.calls.append((path, params))
        try:
            if path == "/api/v1/query_range":
                return self._query_range(params)
            if path == "/api/v1/query":
                return self._query(params)
        except ValueError as exc:
            return _error(400, "bad_data", str(exc))
        if path == "/api/v1/label/__name__/values":
            names = sorted({s.labels.get("__name__", "") for s in self.series} - {""})
            return _json(200, {"status": "success", "data": names})
        if path == "/api/v1/status/buildinfo":
            data = {"version": "fake", "revision": "", "branch": "", "goVersion": ""}
            return _json(200, {"status": "success", "data": data})
        if path == "/-/ready":
            return httpx.Response(200, text="Prometheus Server is Ready.\n")
        if path == "/-/healthy":
            return httpx.Response(200, text="Prometheus Server is Healthy.\n")
        return httpx.Response(404, text="404 page not found\n")

    def _select(self, params: dict[str, str]) -> list[RangeSeries]:
        query = params.get("query")
        if not query:
            raise ValueError(
                'invalid parameter "query": unknown position: parse error: '
                "no expression found in input"
            )
        matchers = _parse_selector(query)
        if matchers is None:
            raise ValueError(
                f'invalid parameter "query": 1:1: parse error: the fake Prometheus only '
                f"understands series selectors, got {query!r}"
            )
        return [s for s in self.series if _matches(s.labels, matchers)]

    def _query_range(self, params: dict[str, str]) -> httpx.Response:
        for name in ("start", "end", "step"):
            if name not in params:
                raise ValueError(
                    f'invalid parameter "{name}": cannot parse "" to a valid timestamp'
                )
        start = _seconds(params["start"], "start")
        end = _seconds(params["end"], "end")
        step = _seconds(params["step"], "step")
        if end < start:
            raise ValueError('invalid parameter "end": end timestamp must not be before start time')
        if step <= 0:
            raise ValueError(
                'invalid parameter "step": zero or negative query resolution step widths are '
                "not accepted. Try a positive integer"
            )
        if (end - start) / step > PROMETHEUS_MAX_POINTS:
            raise ValueError(
                "exceeded maximum resolution of 11,000 points per timeseries. Try decreasing "
                "the query resolution (?step=XX)"
            )
        start_ms, end_ms, step_ms = round(start * 1000), round(end * 1000), round(step * 1000)
        grid = np.arange(start_ms, end_ms + 1, step_ms, dtype=np.int64)
        result = []
        for s in self._select(params):
            ts, vals = _evaluate(s, grid)
            if len(ts):
                values = [
                    [t / 1000, _fmt(v)] for t, v in zip(ts.tolist(), vals.tolist(), strict=True)
                ]
                result.append({"metric": s.labels, "values": values})
        return _json(200, {"status": "success", "data": {"resultType": "matrix", "result": result}})

    def _query(self, params: dict[str, str]) -> httpx.Response:
        at = _seconds(params["time"], "time") if "time" in params else time.time()
        grid = np.array([round(at * 1000)], dtype=np.int64)
        result = []
        for s in self._select(params):
            ts, vals = _evaluate(s, grid)
            if len(ts):
                result.append({"metric": s.labels, "value": [ts[0] / 1000, _fmt(float(vals[0]))]})
        return _json(200, {"status": "success", "data": {"resultType": "vector", "result": result}})


def _sorted(ts: np.ndarray[Any, Any], values: np.ndarray[Any, Any]) -> tuple[Any, Any]:
    order = np.argsort(ts, kind="stable")
    return np.asarray(ts)[order], np.asarray(values)[order]


def _evaluate(s: RangeSeries, grid: np.ndarray[Any, Any]) -> tuple[Any, Any]:
    """Prometheus's instant-vector rule at each grid time: newest sample ``<= t`` within 5 min."""
    if len(s.ts) == 0:
        return grid[:0], np.empty(0, np.float64)
    pos = np.searchsorted(s.ts, grid, side="right") - 1
    ok = pos >= 0
    idx = np.where(ok, pos, 0)
    ok &= grid - s.ts[idx] <= LOOKBACK_MS
    return grid[ok], s.values[idx[ok]]


def fake_prometheus_transport(series: list[RangeSeries]) -> FakePrometheusTransport:
    """A transport answering like a Prometheus server that holds ``series`` (see module doc)."""
    return FakePrometheusTransport(series)


def fake_scrape_transport(
    text: str,
    content_type: str = "text/plain; version=0.0.4; charset=utf-8",
    status_code: int = 200,
) -> httpx.MockTransport:
    """A transport answering every request with ``text`` as a ``/metrics`` page."""

    def handle(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            status_code, content=text.encode(), headers={"Content-Type": content_type}
        )

    return httpx.MockTransport(handle)
