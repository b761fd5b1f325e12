"""Scraping ``/metrics`` endpoints: Prometheus text format 0.0.4 and OpenMetrics 1.0.

:func:`parse_exposition` turns exposition text into a :class:`MetricBatch` (parsing is done by
``prometheus_client``'s parsers). Each sample is its own series, named as exposed
(``http_requests_total``, ``latency_seconds_bucket`` with its ``le`` label, a classic-format
counter ``foo`` as ``foo``, …). A series twice at one time keeps its first sample, as Prometheus
does; the others are dropped and logged.

:class:`ScrapeSource` fetches one target the way Prometheus does: it adds ``job`` and
``instance`` labels (a scraped label that clashes is kept as ``exported_<name>``, prefixed again
while that name is taken) and a synthetic ``up`` series, 1 when the scrape worked and 0 when it
did not; ``timeout`` bounds the whole scrape. A failing target does not raise:
its error is logged and kept on :attr:`ScrapeSource.last_error`, so one bad target does not stop
the engine. Each target is scraped on its own ``interval`` (every poll when ``None``), and its
health is exported as relia's own metrics (:class:`ScrapeMetrics`: ``relia_scrape_up``,
``relia_scrape_duration_seconds``, ``relia_scrape_samples``, ``relia_scrape_failures_total``, each
labelled with the target's name).

Counters (samples of a family whose ``# TYPE`` is ``counter``: ``x_total``, or ``x`` in the
classic format) keep their raw value, and the source adds a derived series ``x_total:rate`` (or
``x:rate``) with the same labels: the rate per second between two consecutive scrapes of that
series, reset-aware like PromQL ``rate()`` (a counter that went down restarted from zero, see
:func:`relia.detect.preprocess.counter_increase`). A detector should watch the rate: the raw value
is a new maximum at every scrape and its restarts look like crashes. The first scrape of a counter
gives no rate, nor does a sample whose timestamp is not after the previous one; a NaN or infinite
sample gives a NaN rate, and the next rate spans the gap. :attr:`ScrapeSource.counters` maps each
raw counter series to its rate series.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Collection, Iterable
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as _parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families as _parse_text

from relia._http import deadline_client, request_deadline
from relia._urls import shown_url
from relia.detect.preprocess import counter_increase
from relia.errors import SourceError
from relia.signals import MetricBatch, SeriesIndex, describe
from relia.store._nul import nul_in_series
from relia.timeparse import MAX_FUTURE_MS

__all__ = [
    "ACCEPT",
    "DEFAULT_MAX_BODY_BYTES",
    "RATE_SUFFIX",
    "ScrapeMetrics",
    "ScrapeSource",
    "parse_exposition",
]

log = logging.getLogger(__name__)

#: Appended to a counter's name to name its derived rate series.
RATE_SUFFIX = ":rate"

#: What Prometheus asks for: OpenMetrics first, the classic text format as fallback.
#: The largest page a scrape reads (decoded); a larger one is a failed scrape (up = 0). Big
#: enough for kube-state-metrics of a large cluster, small enough not to run relia out of memory.
DEFAULT_MAX_BODY_BYTES = 64 << 20
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
    source: str = "",
    max_future_ms: int | None = MAX_FUTURE_MS,
) -> MetricBatch:
    """Parse exposition text into a batch, registering every series in ``index``.

    Samples without a timestamp get ``now_ms``. ``extra_labels`` (e.g. ``job``, ``instance``) are
    added to every series; a scraped label of the same name is renamed ``exported_<name>``
    (``exported_exported_<name>`` when that is taken, and so on). A series twice at one time
    keeps its first sample.
    ``openmetrics`` picks the parser; by default it is chosen by the ``# EOF`` line.
    Samples of a new series the index refuses (over its ``max_series``; counted for
    ``source``) are left out, and so are samples timestamped over ``max_future_ms`` after
    ``now_ms`` (logged): as Prometheus drops them, since one would stop the scoring of its
    series until real time caught up. Raises :class:`SourceError` naming the offending line
    where it can be found.
    """
    return _parse(text, index, now_ms, extra_labels, openmetrics, source, max_future_ms)[0]


# `# TYPE <name> counter` in the classic format, the name bare or quoted (UTF-8 names).
_COUNTER_TYPE = re.compile(
    r'^[ \t]*#[ \t]+TYPE[ \t]+("(?:[^"\\]|\\.)*"|\S+)[ \t]+counter[ \t]*\r?$', re.MULTILINE
)
_UNESCAPE = re.compile(r"\\(.)")


def _classic_counter_names(text: str) -> set[str]:
    """The names of the classic text's counter families, as their ``# TYPE`` lines write them."""
    names = set()
    for match in _COUNTER_TYPE.finditer(text):
        name = match.group(1)
        if name.startswith('"'):
            name = _UNESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), name[1:-1])
        names.add(name)
    return names


def _exported(labels: dict[str, str], extra: dict[str, str]) -> dict[str, str]:
    """``labels`` with the target's ``extra`` labels set; a scraped label they replace is kept
    as ``exported_<name>``, prefixed again while that name is taken (Prometheus with
    ``honor_labels: false``), so that two scraped series never become one."""
    clashes = sorted(((k, labels[k]) for k in extra if k in labels), key=lambda kv: len(kv[0]))
    labels.update(extra)
    for k, v in clashes:
        new = f"exported_{k}"
        while new in labels:
            new = f"exported_{new}"
        labels[new] = v
    return labels


def _is_counter_sample(family: Any, sample: Any) -> bool:
    # A counter family has `x_total` (the count) and, in OpenMetrics, `x_created` (a timestamp,
    # not a count). The classic text parser names the samples `x_total` too.
    return bool(family.type == "counter" and sample.name.endswith("_total"))


def _parse(
    text: str,
    index: SeriesIndex,
    now_ms: int,
    extra_labels: dict[str, str] | None,
    openmetrics: bool | None,
    source: str = "",
    max_future_ms: int | None = MAX_FUTURE_MS,
) -> tuple[MetricBatch, npt.NDArray[np.bool_]]:
    """:func:`parse_exposition`, and which of the samples are counters."""
    om = _is_openmetrics(text) if openmetrics is None else openmetrics
    parser = _parse_openmetrics if om else _parse_text
    extra = extra_labels or {}
    # The classic parser names a counter's samples `x_total` even when the page says `x`
    # (OpenMetrics requires `_total`, so there the name is as exposed): undo that rename.
    classic_counters = set() if om else _classic_counter_names(text)
    ids: list[int] = []
    stamps: list[int] = []
    values: list[float] = []
    counters: list[bool] = []
    seen: set[tuple[int, int]] = set()
    duplicates = 0
    first_duplicate = -1
    nul_samples = 0
    unstorable: str | None = None
    has_nul = "\x00" in text  # checked per sample only then (an escaped \0 is no NUL)
    try:
        families: Iterable[Any] = parser(text)
        for family in families:
            renamed = (
                family.type == "counter"
                and family.name in classic_counters
                and f"{family.name}_total" not in classic_counters
            )
            for sample in family.samples:
                labels = _exported(dict(sample.labels), extra) if extra else dict(sample.labels)
                name = sample.name
                if renamed and name == f"{family.name}_total":
                    name = family.name
                nul = nul_in_series(name, labels) if has_nul else None
                if nul is not None:
                    # PostgreSQL cannot keep a NUL (remote-write refuses such a series with a
                    # 400): the sample is left out here rather than registered and dropped later.
                    nul_samples += 1
                    unstorable = unstorable or f"{nul} of {name!r}"
                    continue
                sid = index.get_or_add(name, labels, source=source)
                if sid is None:  # over max_series: this series' samples are dropped
                    continue
                ts = _ts_ms(sample.timestamp, now_ms)
                # A series twice at one time: the first sample is kept, as Prometheus keeps
                # it ("duplicate sample for timestamp"); two would both be scored and muddle
                # the counter's rate.
                if (sid, ts) in seen:
                    duplicates += 1
                    if first_duplicate < 0:
                        first_duplicate = sid
                    continue
                seen.add((sid, ts))
                ids.append(sid)
                stamps.append(ts)
                values.append(float(sample.value))
                counters.append(_is_counter_sample(family, sample))
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        fmt = "OpenMetrics" if om else "Prometheus text"
        where = _locate(text, om)
        msg = " ".join(str(exc).split()) or type(exc).__name__
        raise SourceError(
            f"invalid {fmt} exposition{' at ' + where if where else ''}: {msg}"
        ) from None
    if nul_samples:
        log.warning(
            "scrape %s: %d samples with a NUL character left out (no store keeps one), the "
            "first: %s",
            source,
            nul_samples,
            unstorable,
        )
    if duplicates:
        log.warning(
            "scrape %s: %d duplicate samples (a series twice at one time) dropped, the first of %s",
            source,
            duplicates,
            describe(index.key(first_duplicate)),
        )
    batch = MetricBatch(
        np.asarray(ids, dtype=np.int64),
        np.asarray(stamps, dtype=np.int64),
        np.asarray(values, dtype=np.float64),
    )
    is_counter = np.asarray(counters, dtype=np.bool_)
    if max_future_ms is not None and len(batch):
        ahead = batch.ts > now_ms + max_future_ms
        if ahead.any():
            first = int(np.argmax(ahead))
            log.warning(
                "scrape %s: %d samples timestamped over %gs ahead of relia's clock dropped "
                "(ingest.max_future), the first %s at %d",
                source,
                int(np.count_nonzero(ahead)),
                max_future_ms / 1000,
                describe(index.key(int(batch.series_id[first]))),
                int(batch.ts[first]),
            )
            keep = ~ahead
            batch = MetricBatch(batch.series_id[keep], batch.ts[keep], batch.value[keep])
            is_counter = is_counter[keep]
    return batch, is_counter


def _instance(url: httpx.URL) -> str:
    port = url.port or (443 if url.scheme == "https" else 80)
    host = url.host
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{host}:{port}"


class ScrapeMetrics:
    """Per-target scrape health on relia's own ``/metrics`` (one set shared by all targets)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.up = Gauge(
            "relia_scrape_up",
            "1 if the target's latest scrape worked",
            ["target"],
            registry=registry,
        )
        self.duration = Gauge(
            "relia_scrape_duration_seconds",
            "How long the target's latest scrape took",
            ["target"],
            registry=registry,
        )
        self.samples = Gauge(
            "relia_scrape_samples",
            "Samples the target's latest successful scrape returned",
            ["target"],
            registry=registry,
        )
        self.failures = Counter(
            "relia_scrape_failures", "Scrapes that failed", ["target"], registry=registry
        )


class ScrapeSource:
    """Scrapes one ``/metrics`` URL, like a Prometheus scrape job of one target.

    With ``interval`` (seconds) a poll scrapes only when the interval has passed since the last
    scrape (measured on the poll's ``now_ms``) and returns an empty batch otherwise; with ``None``
    every poll scrapes. A ``now_ms`` before the previous poll's (the clock stepped back) scrapes
    at once and starts the schedule again from there. ``timeout`` bounds the whole scrape:
    a target still sending its page then is a failed scrape.
    """

    def __init__(
        self,
        name: str,
        url: str,
        index: SeriesIndex,
        timeout: float = 5.0,
        transport: httpx.BaseTransport | None = None,
        *,
        interval: float | None = None,
        metrics: ScrapeMetrics | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_future_ms: int | None = MAX_FUTURE_MS,
    ) -> None:
        self.name = name
        self.max_future_ms = max_future_ms
        self.max_body_bytes = max_body_bytes
        self.url = url
        #: The URL as messages, logs and status show it: without its password.
        self.shown = shown_url(url)
        self.index = index
        self.timeout = timeout
        # At least 1 ms: a schedule that does not move on would loop forever.
        self.interval_ms = None if interval is None else max(1, round(interval * 1000))
        self.metrics = metrics
        self._next_due: int | None = None
        self._last_poll_ms: int | None = None
        self.instance = _instance(httpx.URL(url))
        self.target_labels = {"job": name, "instance": self.instance}
        #: None while the index refuses it (over max_series): asked again each poll.
        self.up_id = index.get_or_add("up", self.target_labels, source=name)
        #: The error text of the latest poll, ``None`` after a successful one.
        self.last_error: str | None = None
        #: Raw counter series seen so far -> their derived ``:rate`` series (a consumer that
        #: scores series may skip the raw ones: their rate says what matters).
        self.counters: dict[int, int] = {}
        # The latest finite sample (ts, value) of each counter in the latest successful scrape.
        self._last: dict[int, tuple[int, float]] = {}
        # Redirects are followed, as Prometheus follows them (its scrape default), up to httpx's 20.
        self._http = deadline_client(
            timeout=timeout,
            transport=transport,
            headers={"Accept": ACCEPT},
            follow_redirects=True,
        )

    def close(self) -> None:
        self._http.close()

    def forget(self, series_ids: Collection[int]) -> None:
        """The engine forgot these series: a counter (or its rate) that returns is registered
        anew, and its first sample after the return starts its rate afresh."""
        gone = set(series_ids)
        self.counters = {
            sid: rid for sid, rid in self.counters.items() if sid not in gone and rid not in gone
        }
        self._last = {sid: v for sid, v in self._last.items() if sid not in gone}
        if self.up_id in gone:
            self.up_id = None

    def _fetch(self) -> tuple[str, bool | None]:
        # `timeout` bounds the whole scrape, as Prometheus's scrape_timeout does: httpx's own
        # timeout is per read, so a target that trickles its headers or page would hold the
        # tick up.
        try:
            # Read in pieces up to the limit: an exporter gone wrong can serve gigabytes.
            with (
                request_deadline(self.timeout) as deadline,
                self._http.stream("GET", self.url) as resp,
            ):
                if resp.status_code != 200:
                    raise SourceError(
                        f"HTTP {resp.status_code} {resp.reason_phrase}".rstrip(), where=self.shown
                    )
                body = bytearray()
                for chunk in resp.iter_bytes():  # decoded: a gzip bomb stops at the limit too
                    if time.monotonic() > deadline:
                        raise httpx.ReadTimeout("scrape deadline passed")
                    body += chunk
                    if len(body) > self.max_body_bytes:
                        raise SourceError(
                            f"the page is larger than {self.max_body_bytes} bytes (max_body_bytes)",
                            where=self.shown,
                        )
                ctype = resp.headers.get("content-type", "").lower()
                encoding = resp.encoding or "utf-8"
        except httpx.TimeoutException:
            raise SourceError(f"no answer within {self.timeout:g}s", where=self.shown) from None
        except httpx.HTTPError as exc:
            raise SourceError(f"cannot reach target: {exc}", where=self.shown) from None
        om = True if ctype.startswith("application/openmetrics-text") else None
        return bytes(body).decode(encoding, errors="replace"), om

    def poll(self, now_ms: int) -> MetricBatch:
        """Scrape the target; on failure only ``up`` = 0 is returned and the error is logged.

        A successful scrape returns every sample, the ``:rate`` of each counter that was also in
        the previous successful scrape, and ``up`` = 1. Not yet due (see ``interval``): empty."""
        if self.interval_ms is not None:
            if self._last_poll_ms is not None and now_ms < self._last_poll_ms:
                # The wall clock stepped back: a schedule kept on the old clock would wait for
                # it to catch up (an hour step, an hour without scrapes), so start it again.
                log.warning(
                    "scrape %s: the clock went back %gs; scraping on a new schedule",
                    self.name,
                    (self._last_poll_ms - now_ms) / 1000,
                )
                self._next_due = None
            self._last_poll_ms = now_ms
            if self._next_due is not None and now_ms < self._next_due:
                return MetricBatch.empty()
            # On a grid from the first scrape, so a slow tick does not drift the schedule.
            due = now_ms if self._next_due is None else self._next_due
            # The first slot of the grid after now (arithmetic: after a long stall, a loop over
            # every missed slot would take seconds at a short interval).
            self._next_due = due + ((now_ms - due) // self.interval_ms + 1) * self.interval_ms
        started = time.monotonic()
        m = self.metrics
        try:
            text, om = self._fetch()
            batch, is_counter = _parse(
                text, self.index, now_ms, self.target_labels, om, self.name, self.max_future_ms
            )
        except SourceError as exc:
            # Every error names the target (a parse error does not know the URL by itself).
            self.last_error = str(exc) if exc.where else f"{self.shown}: {exc}"
            log.warning("scrape %s (%s) failed: %s", self.name, self.shown, exc)
            if m is not None:
                m.up.labels(target=self.name).set(0)
                m.failures.labels(target=self.name).inc()
                m.duration.labels(target=self.name).set(time.monotonic() - started)
            return self._up(now_ms, 0.0)
        self.last_error = None
        took = time.monotonic() - started
        if m is not None:
            m.up.labels(target=self.name).set(1)
            m.duration.labels(target=self.name).set(took)
            m.samples.labels(target=self.name).set(len(batch))
        log.debug("scraped %s: %d samples in %.3fs", self.shown, len(batch), took)
        rates = self._rates(batch, is_counter)
        return MetricBatch.concat([batch, rates, self._up(now_ms, 1.0)])

    def _up(self, now_ms: int, value: float) -> MetricBatch:
        if self.up_id is None:
            self.up_id = self.index.get_or_add("up", self.target_labels, source=self.name)
            if self.up_id is None:
                return MetricBatch.empty()
        return MetricBatch.for_series(self.up_id, [now_ms], [value])

    def _rate_id(self, sid: int) -> int:
        """The id of the counter's rate series; -1 while the index refuses it (over
        max_series: its rates are dropped, and the next scrape asks again)."""
        rid = self.counters.get(sid)
        if rid is None:
            name, labels = self.index.key(sid)
            rid = self.index.get_or_add(name + RATE_SUFFIX, dict(labels), source=self.name)
            if rid is None:
                return -1
            self.counters[sid] = rid
        return rid

    def _rates(self, batch: MetricBatch, is_counter: npt.NDArray[np.bool_]) -> MetricBatch:
        """The rate of each counter since its previous scrape; remembers this scrape's samples."""
        rows = np.flatnonzero(is_counter)
        sids = batch.series_id[rows].tolist()
        ts = batch.ts[rows]
        values = batch.value[rows]
        rate_ids = np.fromiter((self._rate_id(s) for s in sids), np.int64, len(sids))
        nan = (np.iinfo(np.int64).max, np.nan)  # no previous sample: no rate
        prev = [self._last.get(s, nan) for s in sids]
        prev_ts = np.fromiter((p[0] for p in prev), np.int64, len(prev))
        prev_val = np.fromiter((p[1] for p in prev), np.float64, len(prev))
        has_prev = prev_ts < ts
        dt_s = (ts[has_prev] - prev_ts[has_prev]) / 1000.0
        cur = values[has_prev]
        # An infinite sample is as missing as a NaN one (as in counter_to_rate): a NaN rate, not
        # +/-inf (-inf would be a negative rate).
        rate = np.where(np.isfinite(cur), counter_increase(prev_val[has_prev], cur) / dt_s, np.nan)
        # A counter missing from a scrape is stale, as in Prometheus: when it comes back its
        # first sample starts afresh. A NaN sample leaves the previous one as the reference, so
        # the next rate spans the gap; a sample not after the previous one is ignored.
        last: dict[int, tuple[int, float]] = {}
        for s, t, v in zip(sids, ts.tolist(), values.tolist(), strict=True):
            before = self._last.get(s)
            keep = math.isfinite(v) and (before is None or t > before[0])
            last[s] = (t, v) if keep or before is None else before
        self._last = {s: p for s, p in last.items() if math.isfinite(p[1])}
        rate = np.asarray(rate, dtype=np.float64)
        kept = rate_ids[has_prev] >= 0  # the rates of refused rate series are dropped
        if not kept.all():
            return MetricBatch(rate_ids[has_prev][kept], ts[has_prev][kept], rate[kept])
        return MetricBatch(rate_ids[has_prev], ts[has_prev], rate)
