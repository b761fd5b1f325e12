"""The engine's side of remote-write: a push source that drains the ingest queue each tick.

:meth:`IngestSource.poll` takes what the queue holds (up to ``max_samples_per_tick``);
:meth:`IngestSource.decided` times each request's receipt → its findings stored, and
:meth:`IngestSource.stored` commits the WAL once the engine has stored those samples (the
engine stores a tick's findings first, then its samples). Samples drained by a tick that failed
before storing them are handed out again by the next poll, so nothing acknowledged is dropped by
a failing tick.
"""

from __future__ import annotations

import time
from collections.abc import Collection

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from relia.ingest.queue import DrainToken, IngestQueue
from relia.ingest.remote_write import RemoteWriteDecoder
from relia.signals import MetricBatch

__all__ = ["IngestMetrics", "IngestSource"]


class IngestMetrics:
    """Remote-write counters on relia's own ``/metrics``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "relia_remote_write_requests",
            "Remote-write requests by HTTP status",
            ["code"],
            registry=registry,
        )
        self.unavailable = Counter(
            "relia_remote_write_unavailable",
            "Remote-write requests answered 503 with Retry-After, by reason: queue_full, "
            "shutting_down, wal_error (also counted under code 503)",
            ["reason"],
            registry=registry,
        )
        self.samples = Counter(
            "relia_remote_write_samples", "Samples accepted by remote-write", registry=registry
        )
        self.stale = Counter(
            "relia_remote_write_stale_markers",
            "Prometheus stale markers received and dropped",
            registry=registry,
        )
        self.histograms = Counter(
            "relia_remote_write_histograms_skipped",
            "Native histogram samples received and skipped (not supported)",
            registry=registry,
        )
        # Read from the queue at each scrape (watch): set by the engine's poll, it froze while
        # a store outage kept ticks from polling, exactly when the queue fills.
        self.queue_samples = Gauge(
            "relia_ingest_queue_samples", "Samples waiting in the ingest queue", registry=registry
        )
        # Tenths up to 1 s: the figure people hold relia to (a finding within a second).
        buckets = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0) + (
            1.5, 2.5, 5.0, 10.0, 30.0,
        )  # fmt: skip
        self.decided = Histogram(
            "relia_ingest_to_findings_seconds",
            "From a remote-write request's receipt to its samples scored and the findings they "
            "raised stored (measured for every request, whether it raised any)",
            buckets=buckets,
            registry=registry,
        )
        self.lag = Histogram(
            "relia_ingest_to_stored_seconds",
            "From a remote-write request's receipt to its samples stored and committed in the "
            "write-ahead log (after their findings)",
            buckets=buckets,
            registry=registry,
        )

    def watch(self, queue: IngestQueue) -> None:
        """Have ``relia_ingest_queue_samples`` read ``queue`` at each scrape."""
        self.queue_samples.set_function(lambda: queue.samples)


class IngestSource:
    """A :class:`~relia.sources.base.MetricSource` fed by remote-write through ``queue``.

    ``push = True`` tells the engine it may tick for this source alone as soon as data waits.
    """

    push = True

    def __init__(
        self,
        queue: IngestQueue,
        *,
        name: str = "remote_write",
        max_samples_per_tick: int | None = None,
        metrics: IngestMetrics | None = None,
        decoder: RemoteWriteDecoder | None = None,
        max_body_bytes: int = 16 << 20,
    ) -> None:
        self.name = name
        self.queue = queue
        #: What the HTTP receiver decodes with (its series land in the engine's index).
        self.decoder = decoder
        self.max_body_bytes = max_body_bytes
        self.max_samples_per_tick = max_samples_per_tick
        self.metrics = metrics
        if metrics is not None:
            metrics.watch(queue)
        self._pending: tuple[MetricBatch, DrainToken] | None = None

    def poll(self, now_ms: int) -> MetricBatch:
        """The queued samples (and any a failed tick did not store)."""
        batch, token = self.queue.drain(self.max_samples_per_tick)
        if self._pending is not None:
            old_batch, old_token = self._pending
            if token is None:
                batch, token = old_batch, old_token
            else:
                batch = MetricBatch.concat([old_batch, batch])
                token = DrainToken(token.seq, old_token.received + token.received)
        self._pending = (batch, token) if token is not None else None
        return batch

    def decided(self) -> None:
        """The last poll's samples are scored and their findings stored (the samples follow)."""
        if self._pending is not None and self.metrics is not None:
            _observe_since_receipt(self.metrics.decided, self._pending[1])

    def stored(self) -> None:
        """The last poll's samples are stored: commit them in the WAL."""
        if self._pending is None:
            return
        _, token = self._pending
        self._pending = None
        self.queue.commit(token)
        if self.metrics is not None:
            _observe_since_receipt(self.metrics.lag, token)

    def status(self) -> dict[str, object]:
        """For ``/healthz``: what waits in the queue, and a WAL write that is failing (a full
        disk: the queue cannot take writes, or cannot free what was stored)."""
        return {"queue_samples": self.queue.samples, "wal_error": self.queue.error}

    def forget(self, series_ids: Collection[int]) -> None:
        """The engine forgot these series: the decoder resolves them afresh when named again."""
        if self.decoder is not None:
            self.decoder.forget(series_ids)

    def close(self) -> None:
        self.queue.close()


def _observe_since_receipt(histogram: Histogram, token: DrainToken) -> None:
    """Observe, for each request ``token`` drained, the seconds since its receipt."""
    now = time.time()
    for received, _n in token.received:
        histogram.observe(max(0.0, now - received))
