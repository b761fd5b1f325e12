"""Incidents and stores for the notify tests."""

from __future__ import annotations

from typing import Any

from relia.incidents.model import Incident, IncidentStatus, Severity
from tests.engine.memstore import MemoryStore

T0 = 1_716_200_000_000  # 2024-05-20T10:13:20Z, ms


def incident(iid: str = "inc1", version: int = 1, **kw: Any) -> Incident:
    """An open incident on job=api (override any field)."""
    fields: dict[str, Any] = {
        "id": iid,
        "status": IncidentStatus.OPEN,
        "title": 'cpu_usage{instance="a"} and 1 more on job=api',
        "severity": Severity.WARNING,
        "labels": {"job": "api", "instance": "a"},
        "start": T0 - 60_000,
        "end": T0,
        "opened_at": T0,
        "updated_at": T0,
        "version": version,
        "finding_ids": ["f1", "f2"],
        "keys": ['cpu_usage{instance="a",job="api"}', 'latency{instance="a",job="api"}'],
        "cause": [{"key": 'cpu_usage{instance="a",job="api"}', "score": 0.9, "reason": "first"}],
    }
    fields.update(kw)
    return Incident(**fields)


def resolved(inc: Incident, at: int) -> Incident:
    """``inc`` resolved at ``at``, one version later."""
    return inc.model_copy(
        update={
            "status": IncidentStatus.RESOLVED,
            "resolved_at": at,
            "updated_at": at,
            "version": inc.version + 1,
        }
    )


class IncidentMemoryStore(MemoryStore):
    """MemoryStore whose open incidents are whatever a test puts in ``open``."""

    def __init__(self) -> None:
        super().__init__()
        self.open: list[Incident] = []

    def incidents(
        self, since: int | None = None, status: IncidentStatus | None = None, limit: int = 1000
    ) -> list[Incident]:
        return [i for i in self.open if status is None or i.status == status][:limit]
