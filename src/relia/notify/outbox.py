"""The durable outbox: every notification is written here before any sink sees it.

An :class:`OutboxItem` is one change of one incident for one sink. Its id is the dedup key
``"{sink}:{incident_id}:{version}"``: enqueueing the same change twice (after a crash, a replay)
keeps one item, and receivers get the key so that a delivery repeated after a lost answer can be
dropped on their side. The item carries a snapshot of the incident (``payload``), so what is
delivered never depends on what the incident became later.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from relia.incidents.model import Incident

__all__ = [
    "PAYLOAD_LIST_MAX",
    "OutboxItem",
    "OutboxStatus",
    "dedup_key",
    "incident_payload",
    "notifications_for",
]


class OutboxStatus(StrEnum):
    """Where an item is: waiting (or retrying), delivered, or given up on."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


def dedup_key(sink: str, incident_id: str, version: int) -> str:
    """The id of the item for one incident version and one sink."""
    return f"{sink}:{incident_id}:{version}"


class OutboxItem(BaseModel):
    """One notification waiting for (or done with) delivery to one sink. Times are ms UTC."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(description='dedup key "{sink}:{incident_id}:{version}"')
    sink: str
    incident_id: str
    version: int = Field(ge=1)
    payload: dict[str, Any] = Field(description="the incident as JSON-able data, at this version")
    created_at: int
    attempts: int = Field(0, ge=0)
    next_attempt_at: int
    delivered_at: int | None = None
    last_error: str | None = None
    status: OutboxStatus = OutboxStatus.PENDING


#: How many finding ids (the newest) and keys (the first) a notification lists; the totals are
#: in ``finding_count`` and ``key_count``. An incident that never calms down gathers findings
#: for days, and each version's notification (a webhook body, an outbox row) must stay small.
PAYLOAD_LIST_MAX = 100


def incident_payload(incident: Incident) -> dict[str, Any]:
    """The snapshot of ``incident`` that notifications carry: its JSON form with at most
    :data:`PAYLOAD_LIST_MAX` finding ids (the newest) and keys (the first), and their totals
    ``finding_count`` and ``key_count``."""
    payload = incident.model_dump(mode="json")
    payload["finding_count"] = incident.finding_count  # finding_ids: the newest of each key
    payload["key_count"] = len(incident.keys)
    payload["finding_ids"] = payload["finding_ids"][-PAYLOAD_LIST_MAX:]
    payload["keys"] = payload["keys"][:PAYLOAD_LIST_MAX]
    return payload


def notifications_for(incident: Incident, sinks: Sequence[str], now: int) -> list[OutboxItem]:
    """One pending item per sink for the incident's current version, due at ``now``."""
    payload = incident_payload(incident)
    return [
        OutboxItem(
            id=dedup_key(sink, incident.id, incident.version),
            sink=sink,
            incident_id=incident.id,
            version=incident.version,
            payload=payload,
            created_at=now,
            next_attempt_at=now,
        )
        for sink in sinks
    ]
