"""The :class:`Finding`: one thing relia found, with its evidence."""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["Finding", "FindingKind", "Severity", "severity_for_score"]


class FindingKind(StrEnum):
    METRIC = "metric"
    LOG = "log"
    SLO = "slo"
    EVENT = "event"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


def severity_for_score(score: float) -> Severity:
    """Map an anomaly score in [0, 1] to a severity: ≥ 0.9 critical, ≥ 0.5 warning, else info."""
    if score >= 0.9:
        return Severity.CRITICAL
    if score >= 0.5:
        return Severity.WARNING
    return Severity.INFO


class Finding(BaseModel):
    """An anomaly (or SLO burn, log burst, event) over ``[start, end]`` on one series or key.

    ``start``/``end`` are int64 ms UTC. ``evidence`` holds what a person needs to judge it: the
    observed value, what was expected (value and band), and which part of the detector fired.
    """

    model_config = ConfigDict(frozen=True, use_enum_values=False)

    id: str
    kind: FindingKind
    key: str = Field(description="the series (PromQL-style text) or log/SLO key")
    series_id: int | None = None
    start: int
    end: int
    score: float = Field(ge=0.0, le=1.0)
    severity: Severity
    detector: str
    summary: str
    evidence: dict[str, Any] = Field(default_factory=dict)

    @staticmethod
    def make_id(kind: FindingKind, key: str, start: int, detector: str) -> str:
        """A deterministic id: re-detecting an anomaly after a restart does not duplicate it."""
        text = f"{kind.value}|{key}|{start}|{detector}"
        return hashlib.blake2b(text.encode(), digest_size=10).hexdigest()
