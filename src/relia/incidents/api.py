"""HTTP routes of incidents: ``GET /api/v1/incidents`` and ``GET /api/v1/incidents/{id}``.

No authentication here: the app mounts the router behind its token dependency.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Path, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from relia.errors import DataError
from relia.incidents.model import Finding, Incident, IncidentStatus
from relia.store.base import Store

__all__ = [
    "IncidentDetail",
    "IncidentList",
    "IncidentOut",
    "incident_findings",
    "incident_json",
    "incidents_router",
]

_TIME_NOTE = (
    "ISO-8601 (UTC if no offset; eight digits are a date, 20240101), 'now', relative like -1h "
    "or now-1h, or epoch seconds (a number from 1e11 up is ms)"
)
_CURSOR = re.compile(r"(-?[0-9]{1,18}),(.+)", re.DOTALL)


class CauseOut(BaseModel):
    key: str
    score: float = Field(description="0..1; higher is more likely the cause")
    reason: str
    summary: str = Field(description="the summary of the key's highest-scoring finding")


class IncidentOut(BaseModel):
    id: str
    status: IncidentStatus
    title: str
    severity: str
    labels: dict[str, str] = Field(description="identifying labels all its findings share")
    start: int = Field(description="earliest start of its findings, ms UTC")
    end: int = Field(description="latest end of its findings, ms UTC")
    opened_at: int
    updated_at: int
    resolved_at: int | None
    version: int = Field(description="grows on every change a person should hear about")
    finding_ids: list[str] = Field(
        description="its newest findings: at most 20 of each key (older ones still count)"
    )
    finding_count: int = Field(description="how many findings ever joined it")
    keys: list[str]
    cause: list[CauseOut] = Field(description="ranked likely cause, best first")
    merged_into: str | None = Field(description="set when merged into that incident")


class IncidentList(BaseModel):
    incidents: list[IncidentOut]
    truncated: bool = Field(description="true when more incidents match than `limit` listed")
    next: str | None = Field(
        description="when truncated: pass it as `before` for the next (older) page; else null"
    )


class IncidentDetail(BaseModel):
    incident: IncidentOut
    findings: list[dict[str, Any]] = Field(
        description="its findings as in /api/v1/findings (series ids as strings), newest first"
    )


def incident_json(inc: Incident) -> dict[str, Any]:
    """An incident as the API sends it."""
    return inc.model_dump(mode="json")


def _now_ms() -> int:
    from relia.engine.loop import wall_clock_ms

    return wall_clock_ms()


def incidents_router(store: Store, *, clock: Callable[[], int] = _now_ms) -> APIRouter:
    """The incident routes over ``store`` (prefix ``/api/v1``); ``clock`` resolves relative
    times like ``-1h``."""
    router = APIRouter(prefix="/api/v1", tags=["incidents"])

    @router.get(
        "/incidents",
        response_model=IncidentList,
        summary="Incidents, most recently updated first",
    )
    def list_incidents(
        status: Annotated[IncidentStatus | None, Query(description="open or resolved")] = None,
        since: Annotated[
            str | None, Query(description="updated at or after; " + _TIME_NOTE)
        ] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
        before: Annotated[
            str | None, Query(description="the `next` of the page before: the next page")
        ] = None,
    ) -> JSONResponse:
        # Imported here: relia.api.app mounts this router, so a module-level import would be
        # circular.
        from relia.api.app import parse_time

        try:
            lo = parse_time(since, clock(), field="since") if since is not None else None
        except DataError as e:
            raise HTTPException(status_code=400, detail=str(e)) from None
        after = _parse_cursor(before) if before is not None else None
        # One more than asked: whether there is a next page, without a count over all of them.
        found = store.incidents(since=lo, status=status, limit=limit + 1, before=after)
        page = found[:limit]
        more = len(found) > limit
        return JSONResponse(
            {
                "incidents": [incident_json(i) for i in page],
                "truncated": more,
                "next": f"{page[-1].updated_at},{page[-1].id}" if more else None,
            }
        )

    @router.get(
        "/incidents/{incident_id}",
        response_model=IncidentDetail,
        summary="One incident with its findings",
        responses={
            400: {"description": "the id contains a NUL character"},
            404: {"description": "no incident with this id"},
        },
    )
    def show_incident(
        incident_id: Annotated[str, Path(min_length=1, max_length=200)],
    ) -> JSONResponse:
        from relia.api.app import _finding_json

        if "\x00" in incident_id:
            # No stored id has one, and PostgreSQL refuses NUL in text: asking it would fail as
            # if the store were away (a 503) for what is a bad request.
            raise HTTPException(
                status_code=400, detail="path parameter incident_id: contains a NUL character (%00)"
            )
        inc = store.incident(incident_id)
        if inc is None:
            raise HTTPException(status_code=404, detail=f"no incident with id {incident_id!r}")
        return JSONResponse(
            {
                "incident": incident_json(inc),
                "findings": [_finding_json(f) for f in incident_findings(store, inc)],
            }
        )

    return router


def _parse_cursor(text: str) -> tuple[int, str]:
    """The (updated_at, id) of a page's ``next`` (``UPDATED_AT,ID``) given as ``before``."""
    m = _CURSOR.fullmatch(text)
    # No stored id holds a NUL, and PostgreSQL refuses one in text (a 503 for a bad request).
    if m is None or "\x00" in text:
        raise HTTPException(
            status_code=400,
            detail="query parameter before: expected the `next` of an earlier page "
            f"(UPDATED_AT,ID), got {text!r}",
        )
    return int(m.group(1)), m.group(2)


def incident_findings(store: Store, inc: Incident) -> list[Finding]:
    """The stored findings of ``inc``, newest first (those the store has trimmed are left out)."""
    return store.findings_by_ids(inc.finding_ids)
