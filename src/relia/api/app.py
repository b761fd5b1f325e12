"""The HTTP API (FastAPI) and the dashboard it serves.

Series ids are 63-bit integers; JSON numbers above 2**53 lose precision in JavaScript, so ids are
sent as decimal strings and accepted as such in paths and queries. Times are int64 ms UTC in
responses; query parameters also accept ISO-8601 and relative times (``-1h``).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import math
import re
from collections.abc import Callable, Sequence
from importlib import resources
from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from pydantic import BaseModel, Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import relia
from relia import timeparse
from relia._failurelog import FailureLog
from relia.api.auth import AuthConfig, BrowserGuard, RequestLimits, Role
from relia.engine.loop import Engine, wall_clock_ms
from relia.errors import DataError, ReliaError, StoreError
from relia.incidents.model import Finding
from relia.signals import describe, series_key
from relia.store.base import FindingKey, SeriesInfo, Store

__all__ = ["DEFAULT_MAX_BODY_BYTES", "create_app", "parse_time"]

log = logging.getLogger(__name__)

ID_NOTE = (
    "Series ids are 63-bit integers sent as decimal strings: JSON numbers above 2**53 lose "
    "precision in JavaScript."
)
TIME_NOTE = (
    "ISO-8601 (UTC if no offset; eight digits are a date, 20240101), 'now', relative like -1h "
    "or now-1h, or epoch seconds (a number from 1e11 up is ms)"
)

_ID = re.compile(r"[0-9]{1,19}")  # ASCII only: \d takes any Unicode digit
_MAX_ID = 2**63 - 1
_TS = re.compile(r"-?[0-9]{1,18}")  # an int64 ms, as a cursor holds it


def parse_time(text: str, now_ms: int, *, field: str = "time") -> int:
    """Parse a time as the CLI does (:func:`relia.timeparse.parse_time`); return ms UTC.

    :class:`DataError` naming ``field`` (``query parameter <field>``) when it is not one.
    """
    where = f"query parameter {field}"
    # Python's float() and int() read any Unicode digit: not a time a client meant to send.
    if not text.isascii():
        raise DataError(f"expected {TIME_NOTE}, got {text!r}", where=where)
    try:
        return timeparse.parse_time(text, now_ms=now_ms)
    except (ValueError, OverflowError) as e:
        # One message for every way a time is wrong, naming the forms; where the parser says
        # how it read the text (eight digits as a date, YYYYMMDD), that reason is kept: the
        # forms alone would suggest that 12345678 is epoch seconds.
        reason = str(e).removeprefix("not a time: ")
        if "out of range" in reason or "duration" in reason:
            raise DataError(
                f"{text!r} is out of range: expected a time in years 1 to 9999", where=where
            ) from None
        why = reason.removeprefix(repr(text)).strip()
        told = why.startswith("(") and why.endswith(")") and not why.startswith("(use ")
        said = f": {why[1:-1]}" if told else ""  # "(use ISO-8601, ...)" is TIME_NOTE again
        raise DataError(f"expected {TIME_NOTE}, got {text!r}{said}", where=where) from None


def _parse_id(text: str, where: str) -> int:
    """A series id given as ``where`` (``path parameter series_id``)."""
    if not _ID.fullmatch(text) or int(text) > _MAX_ID:
        raise DataError(
            f"expected a series id (decimal integer below 2**63), got {text!r}", where=where
        )
    return int(text)


# -- response models (documentation; handlers build JSON directly for speed) ----------------


_PLACES = {"query": "query parameter", "path": "path parameter", "header": "header"}


def _describe_invalid(error: dict[str, Any]) -> str:
    """One request validation error as ``query parameter limit: <message>``."""
    loc = [str(part) for part in error["loc"]]
    if loc and loc[0] in _PLACES:
        where = f"{_PLACES[loc[0]]} {'.'.join(loc[1:])}"
    elif loc and loc[0] == "body":
        where = "body" + (f" field {'.'.join(loc[1:])}" if len(loc) > 1 else "")
    else:
        where = ".".join(loc) or "request"
    return f"{where}: {' '.join(error['msg'].split())}"


class SeriesOut(BaseModel):
    id: str = Field(description=ID_NOTE)
    name: str
    labels: dict[str, str]
    key: str = Field(description="PromQL-style text of the series")
    first_ts: int | None = Field(description="oldest stored sample, ms UTC")
    last_ts: int | None = Field(description="newest stored sample, ms UTC")
    n_samples: int


class SeriesList(BaseModel):
    series: list[SeriesOut]
    truncated: bool = Field(description="true when more series exist than `limit` listed")


class FindingOut(BaseModel):
    id: str
    kind: str
    key: str
    series_id: str | None = Field(description=ID_NOTE)
    start: int
    end: int
    score: float
    severity: str
    detector: str
    summary: str
    evidence: dict[str, Any]


class FindingList(BaseModel):
    findings: list[FindingOut]
    truncated: bool = Field(description="true when more findings match than `limit` listed")
    next: str | None = Field(
        description="when truncated: pass it as `before` for the next (older) page; else null"
    )


class SamplesOut(BaseModel):
    series: SeriesOut
    ts: list[int] = Field(description="sample times, ms UTC, ascending")
    value: list[float | None] = Field(description="values; null where missing (NaN) or infinite")
    score: list[float | None] = Field(
        description="the detector's anomaly score of each sample in [0, 1]; null if not scored"
    )
    expected: list[float | None] = Field(
        description="what the detector expected for each sample; null while warming up"
    )
    lower: list[float | None] = Field(description="lower edge of the band of normal values")
    upper: list[float | None] = Field(description="upper edge of the band of normal values")
    threshold: float | None = Field(
        description="score from which a sample is anomalous (the engine's); null without engine"
    )
    findings: list[FindingOut] = Field(description="findings of this series in the range")


def _series_json(s: SeriesInfo) -> dict[str, Any]:
    return {
        "id": str(s.series_id),
        "name": s.name,
        "labels": dict(s.labels),
        "key": describe(series_key(s.name, s.labels)),
        "first_ts": s.first_ts,
        "last_ts": s.last_ts,
        "n_samples": s.n_samples,
    }


def _finding_json(f: Finding) -> dict[str, Any]:
    d = f.model_dump(mode="json")
    d["series_id"] = None if f.series_id is None else str(f.series_id)
    # Evidence comes from detectors: keep it valid JSON even if a NaN slipped in.
    d["evidence"] = {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v)
        for k, v in d["evidence"].items()
    }
    return d


def _json_floats(x: npt.NDArray[np.float64]) -> list[float | None]:
    # JSON has no NaN or infinity: those go out as null.
    obj = x.astype(object)
    obj[~np.isfinite(x)] = None
    out: list[float | None] = obj.tolist()
    return out


def _dashboard_html() -> str:
    return (resources.files("relia.api") / "dashboard" / "index.html").read_text(encoding="utf-8")


def _dashboard_headers(html: str) -> dict[str, str]:
    """Security headers of the dashboard page, which keeps a bearer token in localStorage.

    No other site may frame it (clickjacking), and the only script that runs is the page's own
    inline one, allowed by its SHA-256: markup slipped into the page through data executes
    nothing. Styles stay inline (the page sets ``style`` attributes); the page fetches only its
    own origin and loads nothing else (its icon is a ``data:`` URL).
    """
    scripts = re.findall(r"<script>(.*?)</script>", html, re.DOTALL)
    hashes = " ".join(
        "'sha256-" + base64.b64encode(hashlib.sha256(s.encode()).digest()).decode() + "'"
        for s in scripts
    )
    script_src = hashes or "'none'"
    csp = (
        f"default-src 'none'; script-src {script_src}; style-src 'unsafe-inline'; "
        "img-src data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
        "frame-ancestors 'none'"
    )
    return {
        "Content-Security-Policy": csp,
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
    }


DEFAULT_MAX_BODY_BYTES = 16 << 20
#: ``GET /api/v1/series``: series listed by default, and at most (``max_series``' default).
DEFAULT_SERIES_LIMIT = 10_000
MAX_SERIES_LIMIT = 1_000_000


def finding_cursor(f: Finding) -> str:
    """Where ``f`` stands in the findings' order, as the ``next`` of a page: ``END,START,ID``."""
    return f"{f.end},{f.start},{f.id}"


def parse_finding_cursor(text: str) -> FindingKey:
    """The key of a :func:`finding_cursor` given as ``before``; :class:`DataError` if not one."""
    parts = text.split(",", 2)
    # No stored id holds a NUL, and PostgreSQL refuses one in text (a 503 for a bad request).
    if (
        len(parts) == 3
        and all(_TS.fullmatch(p) for p in parts[:2])
        and parts[2]
        and "\x00" not in parts[2]
    ):
        return int(parts[0]), int(parts[1]), parts[2]
    raise DataError(
        f"expected the `next` of an earlier page (END,START,ID), got {text!r}",
        where="query parameter before",
    )


def _query_names(route: APIRoute) -> frozenset[str]:
    """The query parameters ``route`` declares, its dependencies' included (a walk of a few
    nodes, done only for a request that has a query)."""
    names: set[str] = set()
    stack = [route.dependant]
    while stack:
        dependant = stack.pop()
        names.update(f.alias for f in dependant.query_params)
        stack.extend(dependant.dependencies)
    return frozenset(names)


def reject_unknown_query(request: Request) -> None:
    """400 for a query parameter the route does not take: a typo (``limt=5``) was ignored and
    answered as if it were not there, which reads as the parameter not working."""
    route = request.scope.get("route")
    if not request.query_params or not isinstance(route, APIRoute):
        return
    known = _query_names(route)
    unknown = sorted(set(request.query_params.keys()) - known)
    if unknown:
        takes = ", ".join(sorted(known)) if known else "none"
        raise HTTPException(
            status_code=400,
            detail=f"unknown query parameter {unknown[0]!r} (this route takes: {takes})",
        )


class HeadAsGet:
    """Pure ASGI middleware: a ``HEAD`` request is served by the ``GET`` route of its path, with
    the same status and headers and no body. HTTP requires HEAD wherever GET is served (RFC 9110
    9.3.2; uptime probes use it), and FastAPI's routes, unlike Starlette's, do not add it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] == "GET":
            await self.app(scope, receive, send)
            return
        if scope["method"] != "HEAD":
            await self.app(scope, receive, _allow_head(send))
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                # Content-Length stays that of the GET answer, as RFC 9110 allows.
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, headers_only)


def _allow_head(send: Send) -> Send:
    """``send`` with ``HEAD`` added to a 405's ``Allow`` wherever it lists ``GET``: the router
    knows nothing of :class:`HeadAsGet`, and RFC 9110 10.2.1 wants every method served there."""

    async def with_head(message: Message) -> None:
        if message["type"] == "http.response.start" and message["status"] == 405:
            headers = []
            for name, value in message.get("headers", []):
                if name.lower() == b"allow":
                    methods = [m.strip() for m in value.split(b",")]
                    if b"GET" in methods and b"HEAD" not in methods:
                        value = b", ".join([*methods, b"HEAD"])
                headers.append((name, value))
            message = {**message, "headers": headers}
        await send(message)

    return with_head


class _ReliaApp(FastAPI):
    """FastAPI with the request limits outside its whole middleware stack: Starlette's error
    middleware would otherwise turn the cut-off read into a 500 before the limit could answer."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_header_bytes: int | None = None
    body_timeout_s: float | None = None
    #: Auth is off: only a loopback Host is answered (see :class:`BrowserGuard`).
    loopback_hosts_only: bool = False
    #: Paths with their own body limit (see :meth:`limit_body`).
    path_body_limits: dict[str, int]

    def limit_body(self, path: str, max_bytes: int) -> None:
        """Give ``path`` its own body limit instead of ``max_body_bytes`` (call before the app
        serves its first request: the middleware stack is built then)."""
        self.path_body_limits[path] = max_bytes

    def build_middleware_stack(self) -> ASGIApp:
        inner = super().build_middleware_stack()
        limited = RequestLimits(
            inner,
            self.max_body_bytes,
            self.max_header_bytes,
            self.body_timeout_s,
            path_limits=self.path_body_limits,
        )
        return BrowserGuard(HeadAsGet(limited), loopback_hosts_only=self.loopback_hosts_only)


#: The strings of the engine's and HA's status an unauthenticated /healthz still shows.
_PUBLIC_STRINGS = frozenset({"detector", "mode", "lease"})
_HIDDEN = "hidden: needs a token that may read"


def _without_places(status: dict[str, Any]) -> dict[str, Any]:
    """A status with every string but a few names hidden (:data:`_PUBLIC_STRINGS`): error
    texts, file paths, addresses and host names say where relia's data lives. Counts, times and
    whether something failed (a hidden text instead of null) stay."""

    def walk(value: Any, key: str) -> Any:
        if isinstance(value, dict):
            return {k: walk(v, str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v, key) for v in value]
        if isinstance(value, str) and key not in _PUBLIC_STRINGS:
            return _HIDDEN
        return value

    out: dict[str, Any] = walk(status, "")
    return out


def create_app(
    store: Store,
    *,
    engine: Engine | None = None,
    auth: AuthConfig | None = None,
    routers: Sequence[tuple[APIRouter, Role]] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_header_bytes: int | None = None,
    body_timeout_s: float | None = None,
    token: str | None = None,
    registry: CollectorRegistry | None = None,
    clock: Callable[[], int] = wall_clock_ms,
    leader: Callable[[], dict[str, Any]] | None = None,
) -> FastAPI:
    """The relia HTTP API over ``store``; ``engine`` adds its status to ``/healthz``.

    With ``auth`` (None: off), every route but ``/healthz`` and the dashboard page needs
    ``Authorization: Bearer <token>`` of a role that allows it: ``read`` for the GET routes,
    ``/metrics`` and ``/openapi.json`` (``/docs`` is not served then: it cannot send a token).
    ``routers`` are mounted as they are, each behind the role paired with it. Request bodies over
    ``max_body_bytes`` get 413, headers over ``max_header_bytes`` (None: no limit here) 431, a
    body whose next part takes longer than ``body_timeout_s`` (None: no limit) 408. A browser's
    cross-site request to ``/api/`` gets 403, and with auth off a ``Host`` other than a loopback
    name or address 421 (:class:`~relia.api.auth.BrowserGuard`).
    ``token`` (deprecated) is one plain admin token, used when ``auth`` is None. ``registry``
    (default: the engine's) is what ``/metrics`` exposes. ``leader`` (HA replicas: the elector's
    status) says in ``/healthz`` whether this replica leads; without it, a single node always does.
    """
    if auth is None and token is not None:
        auth = AuthConfig.plain(token, name="token")
    if registry is None:
        registry = engine.registry if engine is not None else CollectorRegistry()
    metrics_registry = registry
    app = _ReliaApp(
        title="relia",
        version=relia.__version__,
        description="relia's HTTP API: series, samples and findings. " + ID_NOTE,
        # The generated docs pages fetch the schema without a token: served only with auth off.
        openapi_url=None if auth is not None else "/openapi.json",
        docs_url=None if auth is not None else "/docs",
        redoc_url=None if auth is not None else "/redoc",
        # Starlette's slash redirect puts the request's Host header in its Location, which a
        # shared cache could serve to others: each route has one spelling, the other is a 404.
        redirect_slashes=False,
    )
    app.max_body_bytes = max_body_bytes
    app.path_body_limits = {}
    app.max_header_bytes = max_header_bytes
    app.body_timeout_s = body_timeout_s
    app.loopback_hosts_only = auth is None

    def needs(role: Role) -> list[Any]:
        return [] if auth is None else [Depends(auth.dependency(role))]

    def api_guard(role: Role) -> list[Any]:
        # The token first, then the query: a caller without a token must not learn from a 400
        # which parameters a route takes. Only on /api/v1: a link to the page or a probe of
        # /healthz may carry a tracking or cache-busting parameter.
        return [*needs(role), Depends(reject_unknown_query)]

    store_failures = FailureLog(log, "reading the store for a request")

    @app.exception_handler(ReliaError)
    async def _relia_error(request: Request, exc: ReliaError) -> JSONResponse:
        if isinstance(exc, StoreError):
            # The store is away (PostgreSQL restarting, a full disk): the server's trouble, not
            # the request's, and worth retrying. Its message names where the store lives (a
            # file path, a host), which is the operator's business: it goes to the log, once
            # (then a line a minute while it repeats), and the client gets a plain answer.
            store_failures.failed(exc)
            return JSONResponse(
                {"detail": "the store is unavailable; retry later"},
                status_code=503,
                headers={"Retry-After": "5"},
            )
        return JSONResponse({"detail": str(exc)}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI answers with a list of objects in `detail`; every other 4xx here has one line
        # naming what is wrong (and the dashboard shows only a string). The list stays under
        # `errors` for programs, without the input it echoes.
        errors = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type")}
            for e in exc.errors()
        ]
        return JSONResponse(
            {"detail": "; ".join(_describe_invalid(e) for e in errors), "errors": errors},
            status_code=422,
        )

    if auth is not None:

        @app.get("/openapi.json", include_in_schema=False, dependencies=needs(Role.READ))
        def openapi() -> JSONResponse:
            return JSONResponse(app.openapi())

    @app.get(
        "/healthz",
        summary="Liveness and engine status",
        description="Open to all. With auth on, the error texts, paths and host names in the "
        "engine's and HA's status are shown only to a token that may read.",
    )
    def healthz(request: Request) -> dict[str, Any]:
        status = engine.status() if engine is not None else None
        ha = leader() if leader is not None else {"mode": "single", "leader": True}
        # Serving, but something relia needs fails (a WAL that cannot write): the engine's
        # "problems" say what.
        degraded = status is not None and bool(status.get("problems"))
        if auth is not None and not auth.may_read(request):
            status = None if status is None else _without_places(status)
            ha = _without_places(ha)
        return {
            "status": "degraded" if degraded else "ok",
            "version": relia.__version__,
            "now_ms": clock(),
            "engine": status,
            "ha": ha,
        }

    @app.get(
        "/metrics",
        summary="relia's own metrics (Prometheus text format)",
        response_class=PlainTextResponse,
        dependencies=needs(Role.READ),
    )
    def metrics() -> PlainTextResponse:
        return PlainTextResponse(
            generate_latest(metrics_registry).decode(), media_type=CONTENT_TYPE_LATEST
        )

    # The page holds no data (it asks for a token and sends it on its API calls): open.
    page = _dashboard_html()
    page_headers = _dashboard_headers(page)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def dashboard() -> HTMLResponse:
        return HTMLResponse(page, headers=page_headers)

    api = APIRouter(prefix="/api/v1", dependencies=api_guard(Role.READ))

    def _find_series(sid: int) -> SeriesInfo:
        info = store.series_info(sid)
        if info is None:
            raise HTTPException(status_code=404, detail=f"no series with id {sid}")
        return info

    @api.get(
        "/series",
        response_model=SeriesList,
        summary="Known series, by name then labels (the first `limit`)",
    )
    def list_series(
        limit: Annotated[
            int, Query(ge=1, le=MAX_SERIES_LIMIT, description="list at most N series")
        ] = DEFAULT_SERIES_LIMIT,
    ) -> JSONResponse:
        every = store.list_series()
        return JSONResponse(
            {
                "series": [_series_json(s) for s in every[:limit]],
                "truncated": len(every) > limit,
            }
        )

    @api.get(
        "/series/{series_id}/samples",
        response_model=SamplesOut,
        summary="Samples of one series with the detector's expected value and band, and the "
        "series' findings in the range",
    )
    def samples(
        series_id: Annotated[str, Path(description=ID_NOTE)],
        since: Annotated[str | None, Query(description="from this time; " + TIME_NOTE)] = None,
        until: Annotated[str | None, Query(description="up to this time; " + TIME_NOTE)] = None,
        limit: Annotated[
            int | None, Query(ge=1, le=1_000_000, description="keep the newest N samples")
        ] = None,
    ) -> JSONResponse:
        sid = _parse_id(series_id, "path parameter series_id")
        now = clock()
        lo = parse_time(since, now, field="since") if since is not None else None
        hi = parse_time(until, now, field="until") if until is not None else None
        if lo is not None and hi is not None and lo > hi:
            raise DataError(f"since ({lo}) is after until ({hi})", where="query parameters")
        info = _find_series(sid)
        got = store.scored_samples(sid, since=lo, until=hi, limit=limit)
        first = int(got.ts[0]) if len(got.ts) else lo
        found = [
            _finding_json(f)
            for f in store.findings(since=first, until=hi, series_id=sid, limit=1000)
        ]
        return JSONResponse(
            {
                "series": _series_json(info),
                "ts": got.ts.tolist(),
                "value": _json_floats(got.value),
                "score": _json_floats(got.score),
                "expected": _json_floats(got.expected),
                "lower": _json_floats(got.lower),
                "upper": _json_floats(got.upper),
                "threshold": engine.tracker.threshold if engine is not None else None,
                "findings": found,
            }
        )

    @api.get("/findings", response_model=FindingList, summary="Recent findings, newest first")
    def findings(
        since: Annotated[
            str | None, Query(description="findings ending at or after; " + TIME_NOTE)
        ] = None,
        until: Annotated[
            str | None, Query(description="findings starting at or before; " + TIME_NOTE)
        ] = None,
        series_id: Annotated[str | None, Query(description="only this series; " + ID_NOTE)] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
        before: Annotated[
            str | None, Query(description="the `next` of the page before: the next page")
        ] = None,
    ) -> JSONResponse:
        now = clock()
        lo = parse_time(since, now, field="since") if since is not None else None
        hi = parse_time(until, now, field="until") if until is not None else None
        if lo is not None and hi is not None and lo > hi:
            raise DataError(f"since ({lo}) is after until ({hi})", where="query parameters")
        sid = _parse_id(series_id, "query parameter series_id") if series_id is not None else None
        after = parse_finding_cursor(before) if before is not None else None
        # One more than asked: whether there is a next page, without a count over all of them.
        found = store.findings(since=lo, until=hi, series_id=sid, limit=limit + 1, before=after)
        page = found[:limit]
        more = len(found) > limit
        return JSONResponse(
            {
                "findings": [_finding_json(f) for f in page],
                "truncated": more,
                "next": finding_cursor(page[-1]) if more else None,
            }
        )

    app.include_router(api)
    for router, role in routers:
        app.include_router(router, dependencies=api_guard(role))
    return app
