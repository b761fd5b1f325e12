"""Scraping ``/metrics`` endpoints: Prometheus text format 0.0.4 and OpenMetrics 1.0.

:func:`parse_exposition` turns exposition text into a :class:`MetricBatch` (parsing is done by
``prometheus_client``'s parsers). Each sample is its own series, named as exposed
(``http_requests_total``, ``latency_seconds_bucket`` with its ``le`` label, …).

:class:`ScrapeSource` fetches one target the way Prometheus does: it adds ``job`` and
``instance`` labels (a scraped label that clashes is kept as ``exported_<name>``) and a synthetic
``up`` series, 1 when the scrape worked and 0 when it did not. A failing target does not raise:
its error is logged and kept on :attr:`ScrapeSource.last_error`, so one bad target does not stop
the engine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import httpx
import numpy as np
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as _parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as _parse_text

from relia.errors import SourceError
from relia.signals import MetricBatch, SeriesIndex

__all__ = ["ACCEPT", "ScrapeSource", "parse_exposition"]

log = logging.getLogger(__name__)

#: What Prometheus asks for: OpenMetrics first, the classic text format as fallback.
ACCEPT = "application/openmetrics-text;version=1.0.0;q=0.9,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"


def _is_openmetrics(text: str) -> bool:
    # OpenMetrics text must end with `# EOF`; the classic format has no such line.
    return text.rstrip().endswith("# EOF")


def _ts_ms(ts: Any, default: int) -> int:
    if ts is None:
        return default
    sec = getattr(ts, "sec", None)
    if sec is not None:  # OpenMetrics Timestamp(sec, nsec)
        return int(sec) * 1000 + int(ts.nsec) // 1_000_000
    return round(float(ts) * 1000)  # the text parser gives float seconds


def _locate(text: str, openmetrics: bool) -> str:
    """Find the first line the text-format parser rejects, as ``line N: 'text'``."""
    for n, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            if openmetrics and stripped.startswith("# EOF") and stripped != "# EOF":
                return f"line {n}: {line[:120]!r}"
            continue
        try:
            for _ in _parse_text(stripped + "\n"):
                pass
        except Exception:  # any parser failure marks this line
            return f"line {n}: {line[:120]!r}"
    return ""


def parse_exposition(
    text: str,
    index: SeriesIndex,
    now_ms: int,
    extra_labels: dict[str, str] | None = None,
    *,
    openmetrics: bool | None = None,
) -> MetricBatch:
    """Parse exposition text into a batch, registering every series in ``index``.

    Samples without a timestamp get ``now_ms``. ``extra_labels`` (e.g. ``job``, ``instance``) are
    added to every series; a scraped label of the same name is renamed ``exported_<name>``.
    ``openmetrics`` picks the parser; by default it is chosen by the ``# EOF`` line.
    Raises :class:`SourceError` naming the offending line where it can be found.
    """
    om = _is_openmetrics(text) if openmetrics is None else openmetrics
    parser = _parse_openmetrics if om else _parse_text
    extra = extra_labels or {}
    ids: list[int] = []
    stamps: list[int] = []
    values: list[float] = []
    try:
        families: Iterable[Any] = parser(text)
        for family in families:
            for sample in family.samples:
                labels = dict(sample.labels)
                for k, v in extra.items():
                    if k in labels:
                        labels[f"exported_{k}"] = labels.pop(k)
                    labels[k] = v
                ids.append(index.get_or_add(sample.name, labels))
                stamps.append(_ts_ms(sample.timestamp, now_ms))
                values.append(float(sample.value))
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        fmt = "OpenMetrics" if om else "Prometheus text"
        where = _locate(text, om)
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise SourceError(
            f"invalid {fmt} exposition{' at ' + where if where else ''}: {msg}"
        ) from None
    return MetricBatch(
        np.asarray(ids, dtype=np.int64),
        np.asarray(stamps, dtype=np.int64),
        np.asarray(values, dtype=np.float64),
    )


def _instance(url: httpx.URL) -> str:
    port = url.port or (443 if url.scheme == "https" else 80)
    host = url.host
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{host}:{port}"


class ScrapeSource:
    """Scrapes one ``/metrics`` URL per poll, like a Prometheus scrape job of one target."""

    def __init__(
        self,
        name: str,
        url: str,
        index: SeriesIndex,
        timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.name = name
        self.url = url
        self.index = index
        self.timeout = timeout
        self.instance = _instance(httpx.URL(url))
        self.target_labels = {"job": name, "instance": self.instance}
        self.up_id = index.get_or_add("up", self.target_labels)
        #: The error text of the latest poll, ``None`` after a successful one.
        self.last_error: str | None = None
        self._http = httpx.Client(timeout=timeout, transport=transport, headers={"Accept": ACCEPT})

    def close(self) -> None:
        self._http.close()

    def _fetch(self) -> tuple[str, bool | None]:
        try:
            resp = self._http.get(self.url)
        except httpx.TimeoutException:
            raise SourceError(f"no answer within {self.timeout:g}s", where=self.url) from None
        except httpx.HTTPError as exc:
            raise SourceError(f"cannot reach target: {exc}", where=self.url) from None
        if resp.status_code != 200:
            raise SourceError(
                f"HTTP {resp.status_code} {resp.reason_phrase}".rstrip(), where=self.url
            )
        ctype = resp.headers.get("content-type", "").lower()
        om = True if ctype.startswith("application/openmetrics-text") else None
        return resp.text, om

    def poll(self, now_ms: int) -> MetricBatch:
        """Scrape the target; on failure only ``up`` = 0 is returned and the error is logged."""
        started = time.monotonic()
        try:
            text, om = self._fetch()
            batch = parse_exposition(text, self.index, now_ms, self.target_labels, openmetrics=om)
        except SourceError as exc:
            self.last_error = str(exc)
            log.warning("scrape %s (%s) failed: %s", self.name, self.url, exc)
            return MetricBatch.for_series(self.up_id, [now_ms], [0.0])
        self.last_error = None
        log.debug(
            "scraped %s: %d samples in %.3fs", self.url, len(batch), time.monotonic() - started
        )
        up = MetricBatch.for_series(self.up_id, [now_ms], [1.0])
        return MetricBatch.concat([batch, up])
