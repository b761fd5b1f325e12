"""Prometheus remote-write into ``relia up``: the decoder, the bounded queue behind its write-ahead
log, and the push source that hands queued samples to the engine. The HTTP route is in
:mod:`relia.ingest.api` (not imported here: it pulls in FastAPI)."""

from relia.ingest.queue import DrainToken, IngestQueue, QueueClosed, QueueFull
from relia.ingest.remote_write import DecodedWrite, RemoteWriteDecoder
from relia.ingest.source import IngestMetrics, IngestSource

__all__ = [
    "DecodedWrite",
    "DrainToken",
    "IngestMetrics",
    "IngestQueue",
    "IngestSource",
    "QueueClosed",
    "QueueFull",
    "RemoteWriteDecoder",
]
