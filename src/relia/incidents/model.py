"""The :class:`Finding`: one thing relia found, with its evidence; the :class:`Incident`: findings
that belong together, with a lifecycle and a ranked likely cause."""

from __future__ import annotations

import hashlib
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = [
    "Finding",
    "FindingKind",
    "Incident",
    "IncidentStatus",
    "OPEN_INCIDENTS_MAX",
    "SEVERITY_RANK",
    "Severity",
    "severity_for_score",
]

#: The most open incidents relia reads back at once: the engine restores this many after a
#: restart, and the dispatcher re-posts this many to receivers that forget firing alerts.
OPEN_INCIDENTS_MAX = 100_000


class FindingKind(StrEnum):
    METRIC = "metric"
    LOG = "log"
    SLO = "slo"
    EVENT = "event"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"


#: The severities in order, least first: compare ``SEVERITY_RANK[a] > SEVERITY_RANK[b]``.
SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


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

    @model_validator(mode="after")
    def _ends_at_or_after_its_start(self) -> Finding:
        # Every producer keeps end >= start; a finding that does not would never overlap
        # anything in the correlator's time rule and would sort wrongly in the store.
        if self.end < self.start:
            raise ValueError(f"end ({self.end}) is before start ({self.start})")
        return self

    @staticmethod
    def make_id(kind: FindingKind, key: str, start: int, detector: str) -> str:
        """A deterministic id: re-detecting an anomaly after a restart does not duplicate it."""
        text = f"{kind.value}|{key}|{start}|{detector}"
        return hashlib.blake2b(text.encode(), digest_size=10).hexdigest()


class IncidentStatus(StrEnum):
    OPEN = "open"
    RESOLVED = "resolved"


class Incident(BaseModel):
    """Findings that overlap in time and share identifying labels (or a topology edge).

    Times are int64 ms UTC: ``start``/``end`` span its findings, ``opened_at``/``updated_at``/
    ``resolved_at`` are the engine's clock. ``version`` starts at 1 and grows by one on every
    change a person should hear about (a new key joined, severity rose, resolved, reopened,
    merged away); a finding merely growing moves ``end``/``updated_at`` only. An incident merged
    into an older one is resolved with ``merged_into`` naming the survivor and holds no findings.
    ``finding_ids`` holds only the newest findings of each key; ``finding_count`` counts them all,
    and the span, severity, labels and cause are those of them all.
    """

    model_config = ConfigDict(frozen=True, use_enum_values=False)

    id: str = Field(description="deterministic: a hash of its first finding's id")
    status: IncidentStatus
    title: str
    severity: Severity = Field(description="the highest severity of its findings")
    labels: dict[str, str] = Field(description="the identifying labels all its findings share")
    start: int
    end: int
    opened_at: int
    updated_at: int
    resolved_at: int | None = None
    version: int = Field(ge=1)
    finding_ids: list[str] = Field(
        description="its newest findings: at most MAX_FINDINGS_PER_KEY of each key (correlate)"
    )
    finding_count: int = Field(
        0,
        ge=0,
        description="how many findings ever joined it, those no longer in finding_ids included "
        "(a record stored without it reads as len(finding_ids))",
    )
    keys: list[str] = Field(description="the series, log or SLO keys involved")
    cause: list[dict[str, Any]] = Field(
        default_factory=list,
        description="ranked likely cause, best first: {key, score, reason}",
    )
    merged_into: str | None = Field(
        None, description="the incident this one was merged into (then it is resolved)"
    )

    @model_validator(mode="before")
    @classmethod
    def _count_of_an_older_record(cls, data: Any) -> Any:
        # Records stored before finding_count existed (a NULL column, a JSON body without it)
        # held every finding in finding_ids.
        if isinstance(data, dict) and data.get("finding_count") is None:
            data = {**data, "finding_count": len(data.get("finding_ids") or ())}
        return data

    @staticmethod
    def make_id(first_finding_id: str) -> str:
        """The id of the incident opened by the finding ``first_finding_id``."""
        text = f"incident|{first_finding_id}"
        return hashlib.blake2b(text.encode(), digest_size=10).hexdigest()
