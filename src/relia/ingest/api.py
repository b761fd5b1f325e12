"""``POST /api/v1/write``: the Prometheus remote-write 1.0 receiver.

Answers: 204 when the samples are in the WAL and the queue; 400 for a payload that cannot be
decoded or holds a sample over ``ingest.max_future`` ahead of relia's clock (nothing of it is
kept; the message names the timeseries and says so), and 400 when the request named new
series over relia's ``max_series`` (the other series' samples are kept: the body says how many
were refused); 413 over the size limits; 415 for another encoding or protocol version, and for
a request without ``Content-Encoding: snappy`` or ``Content-Type: application/x-protobuf``
(the spec's senders MUST send both; a cross-site web page cannot without a preflight); 503 with
``Retry-After`` while the queue is full, while relia is shutting down and while the WAL cannot
take writes. Prometheus retries 5xx and drops a batch on a 4xx, which is what each case wants.
A full queue is a 503, not a 429: Prometheus drops a batch answered 429 as non-recoverable unless
``queue_config.retry_on_http_429`` is set (off by default), so a 429 would lose the senders'
samples whenever a store outage fills the queue. ``relia_remote_write_unavailable_total``
tells the 503s apart by ``reason``.
A client that closes the connection before its body ended is counted under 499 in ``/metrics``
(nginx's code; nothing is kept, and the client sees no answer).

Decoding is CPU work. A request of ordinary size (Prometheus sends up to 2,000 samples, some
tens of KB) is decoded on the event loop: that takes about a millisecond, while handing it to the
thread pool and back costs two thread switches, each of which can wait for the GIL for a whole
switch interval under load (measured: the hand-over was a fifth of relia up's GIL time at 400k
samples/s). Larger bodies go to the thread pool so the event loop keeps serving.
"""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from relia.errors import DataError
from relia.ingest.queue import IngestQueue, QueueClosed, QueueFull
from relia.ingest.remote_write import (
    NOTHING_STORED,
    DecodedWrite,
    RemoteWriteDecoder,
    RequestTooLarge,
)
from relia.ingest.source import IngestMetrics

log = logging.getLogger(__name__)

__all__ = ["WRITE_PATH", "remote_write_router"]

#: Where the receiver is served.
WRITE_PATH = "/api/v1/write"

#: The status counted for a request whose client went away before its body ended (nginx's).
CLIENT_CLOSED = 499

#: Bodies up to this size (compressed) are decoded on the event loop, larger ones in a thread.
INLINE_BODY_BYTES = 256 << 10


def _problem(status: int, message: str, headers: dict[str, str] | None = None) -> Response:
    # The shape of every other error of the API ({"detail": ...}, as the auth and size limits
    # in front of this route answer): one shape for clients to read. Prometheus logs the body
    # as it is, which reads as well.
    return JSONResponse({"detail": message}, status_code=status, headers=headers)


def _refused(decoded: DecodedWrite, kept: int, limit: int | None) -> Response:
    # A 4xx, as Mimir answers its per-tenant series limit: Prometheus drops the batch instead of
    # retrying it, and a retry could not help (the series stay refused until the limit is raised).
    return _problem(
        400,
        f"series limit reached: {decoded.refused_series} new series refused (relia holds "
        f"max_series = {limit} series), their {decoded.refused_samples} samples "
        f"dropped; the other {kept} samples were accepted",
    )


def remote_write_router(
    queue: IngestQueue,
    decoder: RemoteWriteDecoder,
    *,
    max_body_bytes: int = 16 << 20,
    metrics: IngestMetrics | None = None,
) -> APIRouter:
    """A router with ``POST /api/v1/write`` feeding ``queue`` (no auth inside: mount it behind
    the ingest role)."""
    router = APIRouter()

    def unavailable(reason: str, message: str, retry_after_s: int) -> Response:
        # A 503 that senders retry after Retry-After; /metrics counts it by reason.
        if metrics is not None:
            metrics.unavailable.labels(reason=reason).inc()
        return _problem(503, message, {"Retry-After": str(retry_after_s)})

    def accept(body: bytes) -> Response:
        try:
            decoded = decoder.decode(body, max_samples=queue.max_samples)
        except DataError as exc:
            # The decoder is all-or-nothing: say so where its message does not already.
            text = str(exc) if NOTHING_STORED in str(exc) else f"{exc}; {NOTHING_STORED}"
            return _problem(413 if isinstance(exc, RequestTooLarge) else 400, text)
        n = len(decoded.batch)
        if metrics is not None:
            metrics.stale.inc(decoded.stale)
            metrics.histograms.inc(decoded.histograms)
        done = (
            Response(status_code=204)
            if not decoded.refused_series
            else _refused(decoded, n, decoder.index.max_series)
        )
        if n == 0:
            return done
        try:
            queue.offer(decoded.batch, body)
        except QueueFull as exc:
            # 503, not 429: every Prometheus retries a 5xx, but drops a batch answered 429
            # unless retry_on_http_429 is set (off by default).
            return unavailable("queue_full", str(exc), exc.retry_after_s)
        except QueueClosed as exc:
            return unavailable("shutting_down", str(exc), 5)
        except OSError as exc:
            # The WAL could not take it (a full disk): not acknowledged, nothing kept. A 5xx,
            # which senders retry; the operator sees why in the log. The sender is told the
            # kind of failure only: the full text names files under data_dir, and an ingest
            # token reads nothing (/healthz hides the same text).
            log.error("remote-write: the WAL refused a write: %s", exc)
            why = f" ({exc.strerror})" if exc.strerror else ""
            return unavailable(
                "wal_error", f"the write-ahead log cannot take writes{why}: see relia's log", 30
            )
        if metrics is not None:
            metrics.samples.inc(n)
        return done

    @router.post(
        WRITE_PATH,
        status_code=204,
        summary="Prometheus remote-write 1.0 (snappy-compressed protobuf WriteRequest)",
        responses={
            400: {
                "description": "the payload cannot be decoded (nothing of it was kept), or it "
                "named new series over relia's max_series (those were refused, the rest kept)"
            },
            413: {"description": "the body or its sample count is over the limit"},
            415: {
                "description": "not snappy-compressed remote-write 1.0, or Content-Encoding "
                "or Content-Type missing"
            },
            503: {
                "description": "the ingest queue is full, relia is shutting down, or its "
                "write-ahead log cannot take writes (a full disk): retry after Retry-After "
                "seconds"
            },
        },
    )
    async def write(request: Request) -> Response:
        response = await _write(request)
        if metrics is not None:
            metrics.requests.labels(code=str(response.status_code)).inc()
        return response

    async def _write(request: Request) -> Response:
        if queue.closed:
            return unavailable("shutting_down", "relia is shutting down", 5)
        # Content-Encoding and Content-Type are required, as the remote-write spec says every
        # sender MUST send them: a web page cannot send either cross-site without a CORS
        # preflight (which relia refuses), so with auth off no other site can write samples.
        encoding = request.headers.get("content-encoding")
        if encoding is None:
            return _problem(415, "Content-Encoding header missing: remote-write needs snappy")
        encoding = encoding.strip().lower()
        if encoding != "snappy":
            return _problem(415, f"Content-Encoding {encoding!r}: only snappy is accepted")
        ctype = request.headers.get("content-type")
        if ctype is None:
            return _problem(
                415, "Content-Type header missing: remote-write needs application/x-protobuf"
            )
        ctype = ctype.lower()
        if (
            not ctype.startswith("application/x-protobuf")
            or "proto=" in ctype
            and ("prometheus.WriteRequest".lower() not in ctype)
        ):
            return _problem(415, f"Content-Type {ctype!r}: only remote-write 1.0 is accepted")
        version = request.headers.get("x-prometheus-remote-write-version", "0.1.0")
        if not version.startswith("0.1"):
            return _problem(415, f"remote-write version {version!r}: only 0.1.0 is accepted")
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_body_bytes:
            return _problem(413, f"body of {declared} bytes is over the limit of {max_body_bytes}")
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in request.stream():
                size += len(chunk)
                if size > max_body_bytes:
                    return _problem(413, f"body is over the limit of {max_body_bytes} bytes")
                chunks.append(chunk)
        except ClientDisconnect:
            # The sender went away mid-body (it retries what it did not see acknowledged):
            # nothing is kept, and nobody reads the answer. nginx's 499 counts it in /metrics.
            log.info("remote-write: the client closed the connection after %d bytes of body", size)
            return _problem(CLIENT_CLOSED, "the client closed the connection before the body ended")
        body = b"".join(chunks)
        if not body:
            return _problem(400, "empty body: expected a snappy-compressed WriteRequest")
        if len(body) <= INLINE_BODY_BYTES:
            return accept(body)
        return await run_in_threadpool(accept, body)

    return router
