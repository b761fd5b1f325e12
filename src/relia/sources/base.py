"""The source protocol: a pull source answers ``poll()`` with a columnar batch."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from relia.signals import MetricBatch

__all__ = ["MetricSource"]


@runtime_checkable
class MetricSource(Protocol):
    """A pull source of metrics.

    ``poll(now_ms)`` returns the samples that became available since the previous poll,
    registering their series in ``index`` (given at construction). Failures raise
    :class:`relia.errors.SourceError` with the source's name in the message.
    """

    name: str

    def poll(self, now_ms: int) -> MetricBatch: ...
