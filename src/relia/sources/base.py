"""The source protocol: a pull source answers ``poll()`` with a columnar batch."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from relia.errors import SourceError
from relia.signals import MetricBatch

__all__ = ["MetricSource", "PartialPollError"]


@runtime_checkable
class MetricSource(Protocol):
    """A pull source of metrics.

    ``poll(now_ms)`` returns the samples that became available since the previous poll,
    registering their series in ``index`` (given at construction). Failures raise
    :class:`relia.errors.SourceError` with the source's name in the message; a source made of
    several independent parts (the queries of a Prometheus source) raises
    :class:`PartialPollError` when only some failed, carrying what the others returned.

    A source that remembers series ids (to skip the index on every poll) also has
    ``forget(series_ids)``: the engine calls it when it forgets series that sent nothing for
    ``forget_after``, and the source must ask the index again if one of them returns.
    """

    name: str

    def poll(self, now_ms: int) -> MetricBatch: ...


class PartialPollError(SourceError):
    """Some parts of a poll failed (named in the message); ``batch`` holds what the others
    returned, which the caller keeps: one broken query must not lose the rest."""

    def __init__(self, message: str, batch: MetricBatch) -> None:
        super().__init__(message)
        self.batch = batch
