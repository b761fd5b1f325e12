"""Metrics read from a Prometheus server through its HTTP API (``/api/v1/query_range``).

:class:`PrometheusClient` runs range queries, splitting long ranges so that no request asks for
more than :data:`MAX_POINTS_PER_CHUNK` points per series (Prometheus refuses more than 11,000),
and merges the pieces per label set. :class:`PrometheusSource` polls a list of queries, each from
where its previous poll ended, so every sample is returned once.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from relia._http import deadline_client, request_deadline
from relia._urls import shown_url
from relia.errors import SourceError
from relia.signals import MetricBatch, SeriesIndex
from relia.sources.base import PartialPollError

__all__ = [
    "MAX_POINTS_PER_CHUNK",
    "PrometheusClient",
    "PrometheusSource",
    "QueryRefused",
    "QueryTimeout",
    "RangeSeries",
]

log = logging.getLogger(__name__)

#: 307/308 redirects a query follows at most (httpx's default limit too).
MAX_REDIRECTS = 20

#: Points per series asked for in one request; below Prometheus's hard limit of 11,000.
MAX_POINTS_PER_CHUNK = 10_000


class QueryTimeout(SourceError):
    """Prometheus did not answer within the client's ``timeout``."""


class QueryRefused(SourceError):
    """Prometheus answered and refused this query (HTTP 4xx: bad PromQL, a query that hit its
    limits): the query's trouble, where other queries may still work, unlike a server that
    cannot be reached."""


@dataclass(frozen=True, eq=False)
class RangeSeries:
    """One series of a range query: its labels (``__name__`` included when present) and samples.

    Compared by identity (``eq=False``): arrays have no single truth value.
    """

    labels: dict[str, str]
    ts: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    _key: tuple[tuple[str, str], ...] = field(default=(), init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "ts", np.ascontiguousarray(self.ts, dtype=np.int64))
        object.__setattr__(self, "values", np.ascontiguousarray(self.values, dtype=np.float64))
        object.__setattr__(self, "_key", tuple(sorted(self.labels.items())))

    @property
    def name(self) -> str:
        """The metric name, or ``""`` for an expression whose result has none."""
        return self.labels.get("__name__", "")

    def __len__(self) -> int:
        return len(self.ts)


def _seconds(ms: int) -> str:
    # Prometheus takes float seconds; three decimals keep milliseconds exact.
    return f"{ms // 1000}.{ms % 1000:03d}" if ms >= 0 else f"{ms / 1000:.3f}"


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    """``url``'s scheme, host and port, the port filled in where the scheme implies it."""
    default = {"http": 80, "https": 443}.get(url.scheme)
    return url.scheme, url.host, url.port if url.port is not None else default


class PrometheusClient:
    """A small client for Prometheus's HTTP API. Errors are :class:`SourceError` naming the URL.

    ``timeout`` bounds each request whole (:class:`QueryTimeout` past it). A 307 or 308 redirect
    is followed with the query; another 3xx is an error naming where it points, since following
    it would drop the POSTed query."""

    def __init__(
        self,
        url: str,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        #: The URL as messages show it: without its password.
        self.shown = shown_url(self.url)
        self.timeout = timeout
        self._http = deadline_client(base_url=self.url, timeout=timeout, transport=transport)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> PrometheusClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, path: str, params: dict[str, str], where: str) -> tuple[httpx.Response, bytes]:
        """POST ``params`` as a form, following 307/308 redirects; the answer and its body.

        ``timeout`` bounds the whole request, redirects, headers and body included (httpx's own
        timeout is per read, so a server that trickles its answer would hold a caller up for
        good)."""
        url: httpx.URL | str = path
        try:
            with request_deadline(self.timeout) as deadline:
                for _ in range(MAX_REDIRECTS + 1):
                    # POST with a form body: long PromQL does not run into URL length limits.
                    with self._http.stream("POST", url, data=params) as resp:
                        if not 300 <= resp.status_code < 400:
                            body = bytearray()
                            for chunk in resp.iter_bytes():
                                if time.monotonic() > deadline:
                                    raise httpx.ReadTimeout("query deadline passed")
                                body += chunk
                            return resp, bytes(body)
                        url = self._redirect(resp, where)
        except httpx.TimeoutException:
            raise QueryTimeout(
                f"Prometheus did not answer within {self.timeout:g}s", where=where
            ) from None
        except httpx.HTTPError as exc:
            raise SourceError(f"cannot reach Prometheus: {exc}", where=where) from None
        raise SourceError(
            f"more than {MAX_REDIRECTS} redirects, the last to {shown_url(str(url))}", where=where
        )

    def _redirect(self, resp: httpx.Response, where: str) -> httpx.URL:
        """Where a 3xx answer sends the query, or a :class:`SourceError` saying why not."""
        location = resp.headers.get("location", "").strip()
        if not location:
            raise SourceError(
                f"HTTP {resp.status_code} redirect without a Location header", where=where
            )
        target = resp.url.join(location)
        shown = shown_url(str(target))
        # 307 and 308 repeat the POST with its body. A 301, 302 or 303 turns it into a GET
        # without the query (as clients follow them), which Prometheus would refuse as a
        # missing parameter: say where the server is instead.
        if resp.status_code not in (307, 308):
            raise SourceError(
                f"HTTP {resp.status_code}: Prometheus redirects to {shown}; use that URL",
                where=where,
            )
        if _origin(target) == _origin(resp.url):
            # Same origin (scheme, host and port, as httpx and browsers judge it): keep the
            # URL's user and password (httpx drops them on a new URL). Another port may be
            # another server, which must not be handed them.
            target = target.copy_with(username=resp.url.username, password=resp.url.password)
        log.debug("%s: HTTP %d, following to %s", where, resp.status_code, shown)
        return target

    def _request(self, path: str, params: dict[str, str]) -> Any:
        where = f"{self.shown}{path}"
        resp, raw = self._post(path, params, where)
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError, ValueError):
            text = raw.decode(resp.encoding or "utf-8", errors="replace")
            snippet = text[:80].replace("\n", " ")
            raise SourceError(
                f"HTTP {resp.status_code}, answer is not JSON: {snippet!r}", where=where
            ) from None
        if not isinstance(body, dict):
            raise SourceError(f"HTTP {resp.status_code}, answer is not a JSON object", where=where)
        if resp.status_code >= 400 or body.get("status") != "success":
            kind = body.get("errorType") or "error"
            text = str(body.get("error") or resp.reason_phrase or "unknown error")
            text = " ".join(text.split())  # one line
            refused = QueryRefused if 400 <= resp.status_code < 500 else SourceError
            raise refused(
                f"Prometheus answered HTTP {resp.status_code} ({kind}): {text}", where=where
            )
        return body.get("data")

    def query_range(
        self, query: str, start_ms: int, end_ms: int, step_s: float
    ) -> list[RangeSeries]:
        """Evaluate ``query`` at ``start_ms``, ``start_ms + step``, … ``<= end_ms``.

        Returns one :class:`RangeSeries` per label set, samples in time order.
        """
        step_ms = round(step_s * 1000)
        where = f"{self.shown}/api/v1/query_range"
        if step_ms <= 0:
            raise SourceError(f"step must be positive, got {step_s!r}", where=where)
        if end_ms < start_ms:
            raise SourceError(f"end {end_ms} is before start {start_ms}", where=where)
        span = step_ms * (MAX_POINTS_PER_CHUNK - 1)
        parts: dict[tuple[tuple[str, str], ...], list[RangeSeries]] = {}
        chunk_start = start_ms
        while chunk_start <= end_ms:
            chunk_end = min(chunk_start + span, end_ms)
            data = self._request(
                "/api/v1/query_range",
                {
                    "query": query,
                    "start": _seconds(chunk_start),
                    "end": _seconds(chunk_end),
                    "step": f"{step_ms / 1000:g}",
                },
            )
            for series in _parse_matrix(data, where):
                parts.setdefault(series._key, []).append(series)
            # The next chunk begins one step on, on the same grid: no point is asked twice.
            chunk_start = chunk_end + step_ms
        return [_merge(pieces) for pieces in parts.values()]

    def query(self, query: str, time_ms: int | None = None) -> list[RangeSeries]:
        """An instant query; each result is a one-sample series."""
        params = {"query": query}
        if time_ms is not None:
            params["time"] = _seconds(time_ms)
        where = f"{self.shown}/api/v1/query"
        data = self._request("/api/v1/query", params)
        if not isinstance(data, dict) or data.get("resultType") != "vector":
            kind = data.get("resultType") if isinstance(data, dict) else None
            raise SourceError(f"expected a vector result, got {kind!r}", where=where)
        out = []
        for item in _result_list(data, where):
            metric, value = item.get("metric", {}), item.get("value")
            if not isinstance(value, list) or len(value) != 2:
                raise SourceError("malformed sample in vector result", where=where)
            ts, vals = _samples([value], where)
            out.append(RangeSeries(_labels(metric, where), ts, vals))
        return out


def _result_list(data: Any, where: str) -> list[dict[str, Any]]:
    result = data.get("result")
    if not isinstance(result, list) or not all(isinstance(r, dict) for r in result):
        raise SourceError("malformed result (expected a list of series)", where=where)
    return result


def _labels(metric: Any, where: str) -> dict[str, str]:
    if not isinstance(metric, dict):
        raise SourceError("malformed series labels", where=where)
    return {str(k): str(v) for k, v in metric.items()}


def _samples(values: Any, where: str) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """``[[1700000000.5, "1.25"], ...]`` to (ms, float64) arrays; "NaN"/"+Inf" handled."""
    if not isinstance(values, list):
        raise SourceError("malformed samples (expected a list)", where=where)
    if not values:
        return np.empty(0, np.int64), np.empty(0, np.float64)
    try:
        pairs = np.array(values, dtype=object)
        if pairs.ndim != 2 or pairs.shape[1] != 2:
            raise ValueError("shape")
        ts = np.round(pairs[:, 0].astype(np.float64) * 1000).astype(np.int64)
        vals = pairs[:, 1].astype(np.float64)
    except (ValueError, TypeError):
        raise SourceError(
            'malformed samples (expected [time, "value"] pairs)', where=where
        ) from None
    return ts, vals


def _parse_matrix(data: Any, where: str) -> list[RangeSeries]:
    if not isinstance(data, dict):
        raise SourceError("malformed answer (no data object)", where=where)
    kind = data.get("resultType")
    if kind != "matrix":
        raise SourceError(f"expected a matrix result, got {kind!r}", where=where)
    out = []
    for item in _result_list(data, where):
        ts, vals = _samples(item.get("values", []), where)
        out.append(RangeSeries(_labels(item.get("metric", {}), where), ts, vals))
    return out


def _merge(pieces: list[RangeSeries]) -> RangeSeries:
    if len(pieces) == 1:
        return pieces[0]
    ts = np.concatenate([p.ts for p in pieces])
    vals = np.concatenate([p.values for p in pieces])
    # Chunks do not overlap, but sort and dedupe anyway so a server that answers a little outside
    # the asked range cannot produce duplicate points.
    order = np.argsort(ts, kind="stable")
    ts, vals = ts[order], vals[order]
    keep = np.ones(len(ts), dtype=bool)
    keep[1:] = ts[1:] != ts[:-1]
    return RangeSeries(pieces[0].labels, ts[keep], vals[keep])


class PrometheusSource:
    """Polls range queries against a Prometheus server; each sample is returned once.

    ``queries`` is a list of ``(promql, step_seconds)``. The first poll reaches ``lookback_s``
    back; each later poll continues one step after the previous end. Evaluation times sit on the
    step grid (multiples of the step since the epoch), so series line up across polls.
    A failing query is retried from the same point next poll; the others go on (see ``poll``).

    The newest time asked is ``delay_s`` before the poll's ``now``: Prometheus stamps a sample
    with its scrape's start but stores it at the scrape's end, so a step evaluated at ``now``
    may not see it yet, and is never asked again. ``relia.yaml``'s ``delay`` defaults to 30s
    (a 15s scrape interval plus a 10s scrape timeout, and a margin); 0 here.
    """

    def __init__(
        self,
        name: str,
        url: str,
        queries: list[tuple[str, float]],
        index: SeriesIndex,
        lookback_s: float = 300.0,
        timeout: float = 10.0,
        transport: httpx.BaseTransport | None = None,
        *,
        delay_s: float = 0.0,
    ) -> None:
        self.name = name
        self.url = url.rstrip("/")
        self.delay_ms = round(delay_s * 1000)
        self.queries = [(str(q), float(step)) for q, step in queries]
        self.index = index
        self.lookback_ms = round(lookback_s * 1000)
        self.client = PrometheusClient(url, timeout=timeout, transport=transport)
        # Last evaluation time already returned, per query position.
        self._last_end: list[int | None] = [None] * len(self.queries)

    def close(self) -> None:
        self.client.close()

    def poll(self, now_ms: int) -> MetricBatch:
        """New samples of every query since the previous poll.

        Each query goes on from where it ended and fails alone: when some fail,
        :class:`PartialPollError` names them and carries the others' samples, and a failed
        query is asked for its range again at the next poll."""
        batches: list[MetricBatch] = []
        failures: list[str] = []
        for i, (query, step_s) in enumerate(self.queries):
            step_ms = max(1, round(step_s * 1000))
            end = ((now_ms - self.delay_ms) // step_ms) * step_ms
            last = self._last_end[i]
            start = (
                last + step_ms
                if last is not None
                else end - (self.lookback_ms // step_ms) * step_ms
            )
            if end < start:
                continue
            try:
                # The step the grid is cut on: a step under 1 ms is 1 ms, not refused.
                result = self.client.query_range(query, start, end, step_ms / 1000)
            except SourceError as exc:
                failures.append(f"query {query!r}: {exc}")
                # Asked again from the same start next poll, the first one's lookback included.
                self._last_end[i] = start - step_ms
                continue
            for series in result:
                labels = {k: v for k, v in series.labels.items() if k != "__name__"}
                name = series.labels.get("__name__", query)
                sid = self.index.get_or_add(name, labels, source=self.name)
                if sid is None:  # over max_series: this series is dropped, the others kept
                    continue
                # Guard against anything outside the asked range: a sample before it was
                # returned by an earlier poll, one after it will be by a later one.
                fresh = (series.ts >= start) & (series.ts <= end)
                if fresh.any():
                    batches.append(
                        MetricBatch.for_series(sid, series.ts[fresh], series.values[fresh])
                    )
            self._last_end[i] = end
        batch = MetricBatch.concat(batches)
        if failures:
            raise PartialPollError(f"source {self.name!r}, " + "; ".join(failures), batch)
        return batch
