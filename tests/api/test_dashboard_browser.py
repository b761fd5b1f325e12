"""The dashboard in a real browser: Debian's Chromium driven by Playwright, against the real app
(``create_app`` on a DuckDB store, the SLO and incidents routers mounted) served by uvicorn on
127.0.0.1. Each page renders its data and one interaction works; no console errors.

Without /usr/bin/chromium the tests are skipped, or fail when ``CI`` is set. Playwright never
downloads a browser here.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import uvicorn
from fastapi import APIRouter, FastAPI, HTTPException

from relia.api.app import create_app
from relia.api.slos import slos_router
from relia.engine.executor import ScoredPoints
from relia.engine.loop import Engine
from relia.incidents.model import Finding, FindingKind, Incident, IncidentStatus, Severity
from relia.signals import MetricBatch
from relia.store.duckdb import DuckDBStore
from tests.api.test_slos import HOUR, T0, Clock, burning_series, slo_engine
from tests.api.test_slos import SPEC as SLO_SPEC

# A real server and browser; ~10-20 s for the file (the browser and the SLO evaluation start once).
pytestmark = [pytest.mark.integration, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TOKEN = "dashboard-test-token"
NOW = T0  # the app's clock: the data below ends here
STEP = 15_000
N = 120
SPIKE = (100, 101, 102)  # the anomalous samples of cpu
CPU_ID = 4_611_686_018_427_400_000  # above 2**53: the page must keep it a string
LAT_ID = 7


def _chromium() -> str:
    if not os.path.exists(CHROMIUM):
        msg = f"{CHROMIUM} is not installed: sudo apt-get install -y chromium"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return CHROMIUM


# -- data --------------------------------------------------------------------------------------


def _seed_series(store: DuckDBStore) -> None:
    store.upsert_series(
        [
            (CPU_ID, "cpu_usage", {"instance": "a", "job": "api"}),
            (LAT_ID, "http_latency_seconds", {"job": "api"}),
        ]
    )
    ts = NOW - 60_000 - np.arange(N - 1, -1, -1, dtype=np.int64) * STEP
    k = np.arange(N)
    for sid, base, amp in ((CPU_ID, 50.0, 5.0), (LAT_ID, 0.2, 0.02)):
        expected = base + amp * np.sin(k / 8)
        value = expected + amp * 0.2 * np.cos(k * 1.7)
        score = np.full(N, 0.1)
        if sid == CPU_ID:
            value[list(SPIKE)] = 90.0
            score[list(SPIKE)] = 0.97
        # the model warms up over the first 10 samples: no band, no score there
        expected[:10] = np.nan
        score[:10] = np.nan
        lower, upper = expected - amp * 0.8, expected + amp * 0.8
        ids = np.full(N, sid, dtype=np.int64)
        points = ScoredPoints(
            ids, ts, value, score, expected, lower, upper, np.full(N, -1, np.int8)
        )
        store.append_samples(MetricBatch(ids, ts, value), points)


def _finding(
    kind: FindingKind, key: str, start: int, end: int, sev: Severity, sid: int | None, text: str
) -> Finding:
    score = {Severity.CRITICAL: 0.97, Severity.WARNING: 0.7, Severity.INFO: 0.3}[sev]
    return Finding(
        id=Finding.make_id(kind, key, start, "test"),
        kind=kind,
        key=key,
        series_id=sid,
        start=start,
        end=end,
        score=score,
        severity=sev,
        detector="test",
        summary=text,
    )


def _spike_ts(i: int) -> int:
    return NOW - 60_000 - (N - 1 - i) * STEP


CPU_KEY = 'cpu_usage{instance="a",job="api"}'
F_CPU = _finding(
    FindingKind.METRIC,
    CPU_KEY,
    _spike_ts(SPIKE[0]),
    _spike_ts(SPIKE[-1]),
    Severity.CRITICAL,
    CPU_ID,
    "cpu_usage 90 far above the expected 50",
)
F_LOG = _finding(
    FindingKind.LOG,
    "api.log:template 17",
    _spike_ts(SPIKE[0]),
    _spike_ts(SPIKE[-1]) + 30_000,
    Severity.WARNING,
    None,
    "a burst of 'connection reset by peer'",
)
F_OLD = _finding(
    FindingKind.METRIC,
    'http_latency_seconds{job="api"}',
    NOW - 3 * HOUR,
    NOW - 2 * HOUR,
    Severity.WARNING,
    LAT_ID,
    "latency above its band for an hour",
)
F_DEPLOY = _finding(
    FindingKind.EVENT,
    "deploy api v42",
    NOW - 4 * HOUR,
    NOW - 4 * HOUR,
    Severity.INFO,
    None,
    "api v42 deployed",
)
FINDINGS = [F_CPU, F_LOG, F_OLD, F_DEPLOY]

OPEN = Incident(
    id=Incident.make_id(F_CPU.id),
    status=IncidentStatus.OPEN,
    title=f"{CPU_KEY} and 1 more on job=api",
    severity=Severity.CRITICAL,
    labels={"job": "api"},
    start=F_CPU.start,
    end=F_LOG.end,
    opened_at=F_CPU.start,
    updated_at=F_LOG.end,
    version=2,
    finding_ids=[F_CPU.id, F_LOG.id],
    finding_count=57,  # it lists the newest findings of each key; 55 more joined before them
    keys=[F_CPU.key, F_LOG.key],
    cause=[
        {"key": F_CPU.key, "score": 0.9, "reason": "anomalous first, largest deviation"},
        {"key": F_LOG.key, "score": 0.4, "reason": "log burst 15 s later"},
    ],
)
RESOLVED = Incident(
    id=Incident.make_id(F_OLD.id),
    status=IncidentStatus.RESOLVED,
    title='http_latency_seconds{job="api"} on job=api',
    severity=Severity.WARNING,
    labels={"job": "api"},
    start=F_OLD.start,
    end=F_OLD.end,
    opened_at=F_OLD.start,
    updated_at=F_OLD.end + 300_000,
    resolved_at=F_OLD.end + 300_000,
    version=2,
    finding_ids=[F_OLD.id],
    keys=[F_OLD.key],
    cause=[{"key": F_OLD.key, "score": 0.8, "reason": "the only series"}],
)
INCIDENTS = [OPEN, RESOLVED]


def _stub_incidents_router(store: DuckDBStore) -> APIRouter:
    """``GET /api/v1/incidents[/{id}]`` serving :data:`INCIDENTS` as documented, for when the
    incidents store and router (relia.incidents.api) are not there."""
    router = APIRouter(prefix="/api/v1")

    def finding_json(f: Finding) -> dict[str, Any]:
        d = f.model_dump(mode="json")
        d["series_id"] = None if f.series_id is None else str(f.series_id)
        return d

    @router.get("/incidents")
    def incidents() -> dict[str, Any]:
        return {"incidents": [i.model_dump(mode="json") for i in INCIDENTS]}

    @router.get("/incidents/{incident_id}")
    def incident(incident_id: str) -> dict[str, Any]:
        for i in INCIDENTS:
            if i.id == incident_id:
                found = [f for f in store.findings(limit=1000) if f.id in i.finding_ids]
                return {
                    "incident": i.model_dump(mode="json"),
                    "findings": [finding_json(f) for f in found],
                }
        raise HTTPException(404, f"no incident {incident_id}")

    return router


def _incidents_router(store: DuckDBStore) -> tuple[APIRouter, str]:
    """H1's router over the store when it is there, else the stub (and which one)."""
    try:
        api = importlib.import_module("relia.incidents.api")
    except ImportError:
        api = None
    if api is None or not hasattr(store, "save_incidents"):
        return _stub_incidents_router(store), "stub"
    store.save_incidents(INCIDENTS)
    router: APIRouter = api.incidents_router(store)
    return router, "relia.incidents.api"


# -- server and browser ------------------------------------------------------------------------


@dataclass
class Served:
    url: str
    engine: Engine
    incidents: str
    shots: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("dashboard")
    store = DuckDBStore(root / "relia.duckdb")
    _seed_series(store)
    store.add_findings(FINDINGS)
    spec = root / "shop.yaml"
    spec.write_text(SLO_SPEC)
    engine = slo_engine(spec, burning_series(T0 + HOUR, (T0 - 3_000_000, T0 + 600_000)), Clock(T0))
    engine.slo_tick()
    engine.interval_s = 2.0  # the page refreshes every interval (2 s is its floor)
    app = create_app(store, engine=engine, token=TOKEN, clock=lambda: NOW)
    app.include_router(slos_router(engine))
    inc_router, which = _incidents_router(store)
    app.include_router(inc_router)
    server = uvicorn.Server(
        uvicorn.Config(
            app, host="127.0.0.1", port=0, log_level="warning", lifespan="off", ws="none"
        )
    )
    thread = threading.Thread(target=server.run, name="dashboard-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield Served(f"http://127.0.0.1:{port}", engine, which, root)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        engine.close()
        store.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    executable = _chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@dataclass
class Page:
    """A page with the console's errors collected; ``allowed`` are patterns a test expects."""

    page: Any
    errors: list[str] = field(default_factory=list)
    allowed: list[str] = field(default_factory=list)

    def unexpected(self) -> list[str]:
        return [e for e in self.errors if not any(re.search(a, e) for a in self.allowed)]


@pytest.fixture
def open_page(browser: Any, served: Served) -> Iterator[Callable[..., Page]]:
    made: list[tuple[Any, Page]] = []

    def open_(tab: str = "series", *, token: str | None = TOKEN) -> Page:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        if token is not None:
            context.add_init_script(f"localStorage.setItem('relia_token', '{token}')")
        page = context.new_page()
        page.set_default_timeout(15_000)  # generous: a loaded CI machine, not a speed check
        p = Page(page)
        page.on("console", lambda m: p.errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: p.errors.append(f"uncaught: {e}"))
        made.append((context, p))
        page.goto(f"{served.url}/#{tab}")
        return p

    yield open_
    try:
        for _, p in made:
            assert p.unexpected() == [], "console errors"
    finally:
        for context, _ in made:
            context.close()


def _shot(p: Page, served: Served, name: str) -> None:
    path = served.shots / f"{name}.png"
    p.page.screenshot(path=str(path), full_page=True)
    assert path.stat().st_size > 10_000


# -- pages -------------------------------------------------------------------------------------


def test_series_band_anomalies_and_hover_tooltip(
    open_page: Callable[..., Page], served: Served
) -> None:
    p = open_page("series")
    page = p.page
    cpu = page.locator(f"#chart-{CPU_ID}")  # the id survived JSON as a string
    cpu.locator("path.band").wait_for()
    assert cpu.locator("path.band").get_attribute("d").count("Z") == 1  # one run with a band
    assert cpu.locator("path.expected").count() == 1
    assert cpu.locator("circle.anomaly").count() == len(SPIKE)
    lat = page.locator(f"#chart-{LAT_ID}")
    assert lat.locator("path.band").count() == 1 and lat.locator("circle.anomaly").count() == 0
    # the flagged series (it has a finding) comes first
    assert page.locator("#charts .chart").first.get_attribute("id") == f"chart-{CPU_ID}"
    assert "flagged" in (cpu.get_attribute("class") or "")
    # hovering an anomaly shows its value, what was expected and the band
    dot = cpu.locator("circle.anomaly").nth(1)
    box = dot.bounding_box()
    assert box is not None
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    tip = page.locator("#tip")
    tip.wait_for(state="visible")
    text = tip.inner_text()
    expected = 50 + 5 * np.sin(SPIKE[1] / 8)
    assert "value 90" in text and f"expected {expected:.3g}" in text, text
    assert re.search(r"band [\d.]+ – [\d.]+", text) and "score 0.97" in text
    assert "anomalous" in text
    _shot(p, served, "series")
    page.mouse.move(5, 5)
    tip.wait_for(state="hidden")
    # the filter keeps only matching charts
    page.fill("#filter", "latency")
    page.locator(f"#chart-{CPU_ID}").wait_for(state="detached")
    assert page.locator("#charts .chart").count() == 1


def test_findings_filter_by_severity_and_kind(
    open_page: Callable[..., Page], served: Served
) -> None:
    p = open_page("findings")
    page = p.page
    rows = page.locator("#findings tr")
    page.locator(f'#findings tr[data-id="{F_CPU.id}"]').wait_for()
    assert rows.count() == len(FINDINGS)
    assert page.locator("#badge-findings").inner_text() == str(len(FINDINGS))
    page.select_option("#f-severity", "warning")
    assert rows.count() == 2
    assert {rows.nth(i).get_attribute("data-id") for i in range(2)} == {F_LOG.id, F_OLD.id}
    page.select_option("#f-kind", "log")
    assert rows.count() == 1 and rows.first.get_attribute("data-id") == F_LOG.id
    assert page.locator("#findings-count").inner_text() == f"1 of {len(FINDINGS)} in 24 h"
    page.select_option("#f-kind", "slo")
    assert rows.count() == 1 and "No finding matches" in rows.first.inner_text()
    page.select_option("#f-kind", "")
    page.select_option("#f-severity", "critical")
    _shot(p, served, "findings")
    # a metric finding leads to its series' chart
    rows.first.click()
    page.locator(f"#chart-{CPU_ID}.focus").wait_for()
    assert page.locator("#tab-series").is_visible() and page.url.endswith("#series")
    # the page refreshes itself on the engine's interval
    with page.expect_request(re.compile(r"/api/v1/findings\?"), timeout=6000):
        pass


def test_incident_timeline_and_detail(open_page: Callable[..., Page], served: Served) -> None:
    p = open_page("incidents")
    page = p.page
    bars = page.locator("#timeline .tl-row .tl-bar")
    page.locator(f'.tl-row[data-id="{OPEN.id}"]').wait_for()
    assert bars.count() == len(INCIDENTS)
    open_bar = page.locator(f'.tl-row[data-id="{OPEN.id}"] .tl-bar')
    done_bar = page.locator(f'.tl-row[data-id="{RESOLVED.id}"] .tl-bar')
    assert set(open_bar.get_attribute("class").split()) >= {"critical", "open"}
    assert set(done_bar.get_attribute("class").split()) >= {"warning", "resolved"}
    # Both boxes in one script: the page's 2 s refresh may redraw the timeline between two
    # separate bounding_box() calls.
    ob, db = page.evaluate(
        """ids => ids.map((id) => {
          const r = document.querySelector(`.tl-row[data-id="${id}"] .tl-bar`)
            .getBoundingClientRect();
          return {x: r.x, width: r.width};
        })""",
        [OPEN.id, RESOLVED.id],
    )
    # the resolved one (an hour long, 2-3 h ago) lies left of the open one, and is wider
    assert db["x"] + db["width"] < ob["x"] and db["width"] > ob["width"] > 0
    assert page.locator("#badge-incidents").inner_text() == "1"
    assert page.locator("#incidents-count").inner_text() == "1 open · 1 resolved"
    # click: the detail with its ranked cause and its findings
    page.locator(f'.tl-row[data-id="{OPEN.id}"]').click()
    detail = page.locator("#incident-detail")
    detail.locator("tbody.incident-findings tr").first.wait_for()
    assert OPEN.title in detail.locator("h3").inner_text()
    causes = detail.locator("ol.cause li")
    assert causes.count() == 2 and F_CPU.key in causes.first.inner_text()
    assert "anomalous first" in causes.first.inner_text()
    keys = detail.locator("tbody.incident-findings td.key").all_inner_texts()
    assert sorted(keys) == sorted([F_CPU.key, F_LOG.key])
    assert detail.get_by_text("Findings (2 of 57, the newest of each key)").count() == 1
    _shot(p, served, "incidents")
    page.select_option("#i-status", "resolved")
    assert page.locator("#timeline .tl-row").count() == 1


def test_a_link_to_one_incident_opens_its_detail(
    open_page: Callable[..., Page], served: Served
) -> None:
    # The link relia's Alertmanager alerts carry (relia_url, generatorURL): /#incidents/<id>.
    p = open_page(f"incidents/{RESOLVED.id}")
    page = p.page
    detail = page.locator("#incident-detail")
    detail.locator("tbody.incident-findings tr").first.wait_for()
    assert RESOLVED.title in detail.locator("h3").inner_text()
    assert page.locator(f'.tl-row.selected[data-id="{RESOLVED.id}"]').count() == 1
    assert page.url.endswith(f"#incidents/{RESOLVED.id}")
    # Picking another incident moves the link with it; the tabs still work from there.
    page.locator(f'.tl-row[data-id="{OPEN.id}"]').click()
    page.wait_for_function(f"location.hash === '#incidents/{OPEN.id}'")
    page.click('nav button[data-tab="findings"]')
    page.wait_for_function("location.hash === '#findings'")
    assert page.locator("#tab-findings").is_visible()


def test_an_open_incident_not_among_the_recently_updated_still_counts(
    open_page: Callable[..., Page], served: Served
) -> None:
    # The page lists the 200 most recently updated incidents; an incident open for weeks and
    # not updated since can fall out of them. Here the recent list holds only the resolved one:
    # the open one still shows and counts, from the list of open incidents.
    p = open_page("findings")
    page = p.page

    def recent_without_the_open_one(route: Any) -> None:
        body = route.fetch().json()
        body["incidents"] = [i for i in body["incidents"] if i["status"] != "open"]
        route.fulfill(json=body)

    page.route("**/api/v1/incidents?limit=200", recent_without_the_open_one)
    page.click('nav button[data-tab="incidents"]')
    page.locator(f'.tl-row[data-id="{OPEN.id}"]').wait_for()
    assert page.locator(f'.tl-row[data-id="{RESOLVED.id}"]').count() == 1
    assert page.locator("#incidents-count").inner_text() == "1 open · 1 resolved"
    assert page.locator("#badge-incidents").inner_text() == "1"
    # The page keeps refreshing: a handler still running when its context closes would fail.
    page.unroute_all(behavior="ignoreErrors")


def test_slo_budget_bars_and_burn_rates(open_page: Callable[..., Page], served: Served) -> None:
    p = open_page("series")
    page = p.page
    page.locator("#charts .chart").first.wait_for()
    page.click('nav button[data-tab="slos"]')  # the interaction: switching tabs
    cards = page.locator("#slos .slo")
    page.locator('.slo[data-id="shop-checkout"] .budget').wait_for()
    assert cards.count() == 2 and page.url.endswith("#slos")
    assert not page.locator("#tab-series").is_visible()
    statuses = {st.slo.id: st for st in served.engine.slo_statuses()}
    checkout = page.locator('.slo[data-id="shop-checkout"]')
    left = statuses["shop-checkout"].remaining_ratio
    assert f"{left * 100:.1f}% of the error budget left" in checkout.locator(".budget").inner_text()
    width = checkout.locator(".budget .fill").evaluate("e => e.style.width")
    assert width == f"{left * 100:.1f}%"
    assert "firing: page/quick" in checkout.locator("h3").inner_text()
    assert checkout.locator("tbody tr").count() == 4
    assert checkout.locator("tr.firing").count() == len(statuses["shop-checkout"].firing)
    search = page.locator('.slo[data-id="shop-search"] .budget')
    assert "overspent" in search.inner_text() and "out" in (search.get_attribute("class") or "")
    _shot(p, served, "slos")


def test_token_prompt_on_401(open_page: Callable[..., Page]) -> None:
    p = open_page("findings", token=None)
    p.allowed.append(r"401")  # Chromium logs each refused request
    page = p.page
    page.locator("#auth").wait_for(state="visible")
    assert page.locator("#auth-err").inner_text() == ""  # no token yet: nothing was refused
    page.fill("#token", TOKEN)
    page.click("#save-token")
    page.locator(f'#findings tr[data-id="{F_CPU.id}"]').wait_for()
    assert not page.locator("#auth").is_visible()


def test_api_errors_and_empty_states_are_shown(open_page: Callable[..., Page]) -> None:
    p = open_page("series")
    p.allowed.append(r"status of 500")
    page = p.page
    page.locator("#charts .chart").first.wait_for()
    page.route(
        re.compile(r"/api/v1/incidents\?"),
        lambda route: route.fulfill(
            status=500, content_type="application/json", body='{"detail": "store is down"}'
        ),
    )
    page.route(
        re.compile(r"/api/v1/slos$"),
        lambda route: route.fulfill(
            content_type="application/json",
            body='{"configured": false, "interval_seconds": null, "last_evaluation": null,'
            ' "last_error": null, "slos": []}',
        ),
    )
    page.click('nav button[data-tab="incidents"]')
    err = page.locator("#incidents-err")
    err.wait_for(state="visible")
    assert "HTTP 500" in err.inner_text() and "store is down" in err.inner_text()
    assert "could not be loaded" in page.locator("#timeline").inner_text()
    page.click('nav button[data-tab="slos"]')
    page.get_by_text("No SLOs configured").wait_for()
    page.unroute(re.compile(r"/api/v1/incidents\?"))
    page.route(
        re.compile(r"/api/v1/incidents\?"),
        lambda route: route.fulfill(content_type="application/json", body='{"incidents": []}'),
    )
    page.click('nav button[data-tab="incidents"]')
    page.get_by_text("No incidents.").wait_for()
    assert not err.is_visible()


# -- what the API sends, as a user sees it -----------------------------------------------------


def _serve_json(page: Any, pattern: str, body: Any, status: int = 200) -> None:
    """Answer the page's requests matching ``pattern`` with ``body`` (replacing any earlier)."""
    page.unroute(re.compile(pattern))
    page.route(
        re.compile(pattern),
        lambda route: route.fulfill(
            status=status, content_type="application/json", body=json.dumps(body)
        ),
    )


def _samples(sid: str, key: str, n: int, **cols: Any) -> dict[str, Any]:
    """A samples answer: ``n`` points one step apart ending at NOW; ``cols`` override columns."""
    body: dict[str, Any] = {
        "series": {"id": sid, "key": key},
        "ts": [NOW - (n - 1 - i) * STEP for i in range(n)],
        "value": [float(i) for i in range(n)],
        "score": [None] * n,
        "expected": [None] * n,
        "lower": [None] * n,
        "upper": [None] * n,
        "threshold": 0.5,
        "findings": [],
    }
    body.update(cols)
    return body


XSS = "<img src=x onerror=window.__xss=1>"


def test_values_from_the_api_are_text_never_html(
    open_page: Callable[..., Page], served: Served
) -> None:
    """Series keys, finding keys and summaries, incident titles, labels and causes, SLO names and
    errors are user data: each shows as its text, none becomes an element."""
    p = open_page("series")
    page = p.page
    page.locator("#charts .chart").first.wait_for()
    slos = page.request.get(
        f"{served.url}/api/v1/slos", headers={"Authorization": f"Bearer {TOKEN}"}
    ).json()
    slos["slos"][0]["id"] = "slo " + XSS
    slos["slos"][0]["error"] = "bad query " + XSS
    slos["last_error"] = "evaluator " + XSS
    finding = {
        "id": "f1",
        "kind": "metric",
        "key": "key " + XSS,
        "series_id": "99",
        "start": NOW - 60_000,
        "end": NOW,
        "score": 0.9,
        "severity": "critical",
        "summary": "summary " + XSS,
    }
    incident = {
        "id": "i1",
        "status": "open",
        "title": "title " + XSS,
        "severity": "critical",
        "labels": {"job": "label " + XSS},
        "start": NOW - 60_000,
        "end": NOW,
        "updated_at": NOW,
        "version": 1,
        "cause": [{"key": "cause " + XSS, "score": 1.0, "reason": "reason " + XSS}],
    }
    _serve_json(page, r"/api/v1/series$", {"series": [{"id": "99", "key": "series " + XSS}]})
    _serve_json(page, r"/api/v1/series/99/samples", _samples("99", "series " + XSS, 20))
    _serve_json(page, r"/api/v1/findings\?", {"findings": [finding]})
    _serve_json(page, r"/api/v1/incidents\?", {"incidents": [incident]})
    _serve_json(page, r"/api/v1/incidents/i1$", {"incident": incident, "findings": [finding]})
    _serve_json(page, r"/api/v1/slos$", slos)
    page.click('nav button[data-tab="findings"]')
    page.locator('#findings tr[data-id="f1"]').wait_for()
    assert "key " + XSS in page.locator("#findings").inner_text()
    assert "summary " + XSS in page.locator("#findings").inner_text()
    page.click('nav button[data-tab="series"]')
    page.locator("#chart-99").wait_for()
    assert "series " + XSS in page.locator("#chart-99 .key").inner_text()
    page.click('nav button[data-tab="incidents"]')
    page.locator('.tl-row[data-id="i1"]').click()
    detail = page.locator("#incident-detail")
    detail.locator("tbody.incident-findings tr").first.wait_for()
    assert "title " + XSS in page.locator('.tl-row[data-id="i1"]').inner_text()
    shown = detail.inner_text()
    for text in ("title ", 'job="label ', "cause ", "reason ", "summary ", "key "):
        assert text + XSS in shown, text
    page.click('nav button[data-tab="slos"]')
    page.get_by_text("last evaluation failed").wait_for()
    shown = page.locator("#tab-slos").inner_text()
    for text in ("slo ", "bad query ", "SLO evaluation: evaluator "):
        assert text + XSS in shown, text
    assert page.locator("img").count() == 0
    assert page.evaluate("window.__xss") is None


def test_refused_token_says_so(open_page: Callable[..., Page]) -> None:
    p = open_page("findings", token="not-the-token")
    p.allowed.append(r"401")
    page = p.page
    page.get_by_text("that token was refused").wait_for()
    assert page.locator("#auth").is_visible()
    page.get_by_text("Findings could not be loaded.").wait_for()
    assert page.locator("#findings-err").inner_text() == ""  # the token box says it, once


def test_missing_routes_and_an_unreachable_api_are_named(
    open_page: Callable[..., Page],
) -> None:
    from playwright.sync_api import expect

    p = open_page("series")
    p.allowed += [r"status of 404", r"status of 500", r"ERR_FAILED"]
    page = p.page
    page.locator("#charts .chart").first.wait_for()
    _serve_json(page, r"/api/v1/incidents\?", {"detail": "Not Found"}, status=404)
    _serve_json(page, r"/api/v1/slos$", {"detail": "Not Found"}, status=404)
    _serve_json(page, rf"/api/v1/series/{LAT_ID}/samples", {"detail": "disk full"}, status=500)
    page.route(re.compile(r"/api/v1/findings\?"), lambda route: route.abort())
    page.route(re.compile(r"/healthz$"), lambda route: route.abort())
    page.click('nav button[data-tab="incidents"]')
    expect(page.locator("#incidents-err")).to_contain_text(
        "This relia serves no incidents (/api/v1/incidents?limit=200: HTTP 404 – Not Found)"
    )
    expect(page.locator("#findings-err")).to_contain_text(
        "/api/v1/findings?since=-24h&limit=500: relia unreachable"
    )
    expect(page.locator("#status")).to_contain_text("unreachable: /healthz: relia unreachable")
    page.click('nav button[data-tab="slos"]')
    expect(page.locator("#slos-err")).to_contain_text("This relia serves no SLOs")
    expect(page.locator("#slos")).to_have_text("SLOs could not be loaded.")  # not "Loading…"
    # The tabs' badges say the count is unknown, not the count of the last good load.
    for tab in ("findings", "incidents", "slos"):
        expect(page.locator(f"#badge-{tab}")).to_have_text("?")
    # one series' samples fail: its card says why, the other still draws
    page.click('nav button[data-tab="series"]')
    lat = page.locator(f"#chart-{LAT_ID} .err")
    lat.wait_for()
    assert "could not load samples" in lat.inner_text() and "HTTP 500 – disk full" in (
        lat.inner_text()
    )
    assert page.locator(f"#chart-{CPU_ID} path.series").count() == 1


def test_empty_states_say_so(open_page: Callable[..., Page]) -> None:
    p = open_page("findings")
    page = p.page
    page.locator(f'#findings tr[data-id="{F_CPU.id}"]').wait_for()
    page.fill("#f-text", "connection reset")  # a summary's words find it
    rows = page.locator("#findings tr")
    assert rows.count() == 1 and rows.first.get_attribute("data-id") == F_LOG.id
    page.fill("#f-text", "")
    merged = OPEN.model_dump(mode="json") | {"id": "merged", "merged_into": OPEN.id}
    _serve_json(page, r"/api/v1/incidents\?", {"incidents": [OPEN.model_dump(mode="json"), merged]})
    page.click('nav button[data-tab="incidents"]')
    # merged into another: not its own row, not counted
    page.get_by_text("1 open · 0 resolved").wait_for()
    assert page.locator(".tl-row").count() == 1
    page.select_option("#i-status", "resolved")
    page.get_by_text("No incident matches this filter.").wait_for()
    page.click('nav button[data-tab="series"]')
    page.locator("#charts .chart").first.wait_for()
    page.fill("#filter", "no such series")
    page.get_by_text("No series matches the filter.").wait_for()
    _serve_json(page, r"/api/v1/series$", {"series": []})
    _serve_json(page, r"/api/v1/findings\?", {"findings": []})
    _serve_json(
        page,
        r"/api/v1/slos$",
        {
            "configured": True,
            "interval_seconds": 60,
            "last_evaluation": None,
            "last_error": None,
            "slos": [],
        },
    )
    page.fill("#filter", "")
    page.get_by_text("No series yet.").wait_for()
    page.click('nav button[data-tab="findings"]')
    page.get_by_text("No findings in the last 24 hours.").wait_for()
    assert page.locator("#badge-findings").inner_text() == ""
    page.click('nav button[data-tab="slos"]')
    page.get_by_text("The SLO files hold no SLO.").wait_for()


def test_chart_marks_points_at_the_threshold_and_in_finding_windows(
    open_page: Callable[..., Page],
) -> None:
    p = open_page("findings")
    page = p.page
    page.locator(f'#findings tr[data-id="{F_CPU.id}"]').wait_for()
    n = 6
    edge = _samples(
        "11",
        "edge",
        n,
        score=[0.1, 0.5, 0.49, None, 0.1, 0.2],  # 0.5 is the threshold: anomalous
        expected=[None, None, 2.0, None, None, None],
        lower=[None, None, 1.0, None, None, None],  # a band at one point only
        upper=[None, None, 3.0, None, None, None],
    )
    unscored = _samples("12", "unscored", n, threshold=None)
    unscored["findings"] = [{"start": unscored["ts"][1], "end": unscored["ts"][3]}]
    empty = _samples("13", "empty", n, value=[None] * n)
    _serve_json(
        page,
        r"/api/v1/series$",
        {"series": [{"id": s, "key": k} for s, k in (("11", "edge"), ("12", "un"), ("13", "e"))]},
    )
    for body in (edge, unscored, empty):
        _serve_json(page, rf"/api/v1/series/{body['series']['id']}/samples", body)
    page.click('nav button[data-tab="series"]')
    page.locator("#chart-13").wait_for()
    dots = page.locator("#chart-11 circle.anomaly")
    assert [dots.nth(i).get_attribute("data-i") for i in range(dots.count())] == ["1"]
    band = page.locator("#chart-11 path.band").get_attribute("d") or ""
    assert band.count("Z") == 1 and band.count("L") == 3, band  # a thin bar, not nothing
    # no scores: the points inside the finding's window, both ends included
    dots = page.locator("#chart-12 circle.anomaly")
    assert [dots.nth(i).get_attribute("data-i") for i in range(dots.count())] == ["1", "2", "3"]
    assert "no samples yet" in page.locator("#chart-13").inner_text()


def test_an_unknown_tab_in_the_address_shows_the_series(open_page: Callable[..., Page]) -> None:
    p = open_page("nonsense")
    page = p.page
    page.locator("#charts .chart").first.wait_for()
    assert page.locator("#tab-series").is_visible() and page.url.endswith("#series")


def test_axis_labels_of_small_and_large_values_fit_in_the_chart(
    open_page: Callable[..., Page],
) -> None:
    # Prometheus's go_gc_duration_seconds (0.0000456 .. 0.0000508) showed "000508": the labels
    # are right-aligned at a fixed 44-unit margin and ran off the chart's left edge.
    p = open_page("findings")
    page = p.page
    page.locator(f'#findings tr[data-id="{F_CPU.id}"]').wait_for()
    n = 6
    small = _samples("21", "gc", n, value=[4.56e-5, 5.08e-5, 5.08e-5, 4.56e-5, 4.6e-5, 5.0e-5])
    big = _samples("22", "bytes", n, value=[-1.234e9, 2e9, 3e9, 1e9, 0.0, 2.5e9])
    _serve_json(
        page, r"/api/v1/series$", {"series": [{"id": "21", "key": "gc"}, {"id": "22", "key": "b"}]}
    )
    for body in (small, big):
        _serve_json(page, rf"/api/v1/series/{body['series']['id']}/samples", body)
    page.click('nav button[data-tab="series"]')
    for chart in ("#chart-21", "#chart-22"):
        page.locator(f"{chart} svg text.axis").first.wait_for()
        lefts = page.evaluate(
            f"[...document.querySelectorAll('{chart} svg text.axis')].map(t => t.getBBox().x)"
        )
        assert lefts and min(lefts) >= 0, (chart, lefts)


def test_a_findings_list_the_api_cut_is_not_shown_as_the_total(
    open_page: Callable[..., Page],
) -> None:
    # 800 findings in 24 h showed as "500 of 500 in 24 h".
    p = open_page("series")
    page = p.page
    page.locator("#charts .chart").first.wait_for()
    one = F_CPU.model_dump(mode="json")
    many = [{**one, "id": f"f{k}"} for k in range(500)]
    _serve_json(page, r"/api/v1/findings\?", {"findings": many, "truncated": True, "next": "x"})
    page.click('nav button[data-tab="findings"]')
    page.locator('#findings tr[data-id="f499"]').wait_for()
    assert page.locator("#badge-findings").inner_text() == "500+"
    assert page.locator("#findings-count").inner_text() == "500 of the newest 500 (500+ in 24 h)"
    _serve_json(page, r"/api/v1/findings\?", {"findings": many[:3], "truncated": False})
    page.click('nav button[data-tab="findings"]')
    page.get_by_text("3 of 3 in 24 h").wait_for()
    assert page.locator("#badge-findings").inner_text() == "3"


def test_open_incidents_the_api_cut_are_counted_as_a_lower_bound(
    open_page: Callable[..., Page],
) -> None:
    # More open incidents than the 10,000 the dashboard asks for showed an exact count.
    p = open_page("series")
    page = p.page
    page.locator("#charts .chart").first.wait_for()
    one = OPEN.model_dump(mode="json")
    page.unroute(re.compile(r"/api/v1/incidents\?"))
    page.route(
        re.compile(r"/api/v1/incidents\?"),
        lambda route: route.fulfill(
            content_type="application/json",
            body=json.dumps({"incidents": [one], "truncated": "status=open" in route.request.url}),
        ),
    )
    page.click('nav button[data-tab="incidents"]')
    page.get_by_text("1+ open · 0 resolved").wait_for()
    assert page.locator("#badge-incidents").inner_text() == "1+"
    _serve_json(page, r"/api/v1/incidents\?", {"incidents": [one], "truncated": False})
    page.click('nav button[data-tab="incidents"]')
    page.get_by_text("1 open · 0 resolved").wait_for()
    assert page.locator("#badge-incidents").inner_text() == "1"


def test_a_chart_breaks_its_lines_where_samples_are_missing(open_page: Callable[..., Page]) -> None:
    # 100 samples, six hours without any, 100 more: no straight ramp across the hole.
    p = open_page("findings")
    page = p.page
    page.locator(f'#findings tr[data-id="{F_CPU.id}"]').wait_for()
    n = 200
    ts = [NOW - (n - 1 - i) * STEP - (6 * 3_600_000 if i < 100 else 0) for i in range(n)]
    gap = _samples(
        "31",
        "gap",
        n,
        ts=ts,
        value=[10.0 if i < 100 else 30.0 for i in range(n)],
        expected=[10.0 if i < 100 else 30.0 for i in range(n)],
        lower=[9.0 if i < 100 else 29.0 for i in range(n)],
        upper=[11.0 if i < 100 else 31.0 for i in range(n)],
    )
    _serve_json(page, r"/api/v1/series$", {"series": [{"id": "31", "key": "gap"}]})
    _serve_json(page, r"/api/v1/series/31/samples", gap)
    page.click('nav button[data-tab="series"]')
    page.locator("#chart-31 path.series").wait_for()
    for cls, moves in (("series", 2), ("expected", 2), ("band", 2)):
        d = page.locator(f"#chart-31 path.{cls}").get_attribute("d") or ""
        assert d.count("M") == moves, (cls, d[:200])


def test_charts_load_a_few_at_a_time_and_at_most_a_screenful_of_hundreds(
    open_page: Callable[..., Page],
) -> None:
    # One request per series all at once kept relia busy with hundreds of series.
    p = open_page("findings")
    page = p.page
    page.locator(f'#findings tr[data-id="{F_CPU.id}"]').wait_for()
    page.evaluate(
        """() => {
          window.__inflight = 0; window.__most = 0; window.__asked = 0;
          const real = window.fetch;
          window.fetch = async (...args) => {
            const sampled = String(args[0]).includes("/samples");
            if (sampled) { window.__asked++; window.__most = Math.max(window.__most,
                                                                    ++window.__inflight); }
            try { return await real(...args); } finally { if (sampled) window.__inflight--; }
          };
        }"""
    )
    series = [{"id": str(100 + k), "key": f"s{k:03d}"} for k in range(250)]
    _serve_json(page, r"/api/v1/series$", {"series": series, "truncated": True})
    _serve_json(page, r"/api/v1/series/\d+/samples", _samples("100", "s", 5))
    page.click('nav button[data-tab="series"]')
    page.locator("#chart-299").wait_for()
    assert page.locator("#charts .chart").count() == 200
    assert page.evaluate("window.__asked") == 200
    assert 1 <= page.evaluate("window.__most") <= 4
    note = page.locator("#series-note").inner_text()
    assert "200 of 250 series shown" in note and "more series than the 250 listed" in note


def test_a_value_with_no_drawn_neighbour_is_a_dot(open_page: Callable[..., Page]) -> None:
    # Every other sample missing drew nothing: the path only moved (M) to each point.
    p = open_page("findings")
    page = p.page
    page.locator(f'#findings tr[data-id="{F_CPU.id}"]').wait_for()
    alternate = _samples("41", "alternate", 5, value=[1.0, None, 2.0, None, 3.0])
    one = _samples("42", "one", 1, value=[7.0])
    # 2 and 3 are joined; 5 stands alone after a pause of many steps.
    mixed = _samples("43", "mixed", 4, value=[1.0, None, 2.0, 3.0])
    mixed["ts"] = [*mixed["ts"][:3], mixed["ts"][2] + 1, mixed["ts"][3] + 100 * STEP]
    mixed["value"] = [1.0, None, 2.0, 3.0, 5.0]
    for key in ("score", "expected", "lower", "upper"):
        mixed[key] = [None] * 5
    _serve_json(
        page,
        r"/api/v1/series$",
        {"series": [{"id": s, "key": s} for s in ("41", "42", "43")]},
    )
    for body in (alternate, one, mixed):
        _serve_json(page, rf"/api/v1/series/{body['series']['id']}/samples", body)
    page.click('nav button[data-tab="series"]')
    page.locator("#chart-43 path.series").wait_for(state="attached")
    cy = "[...document.querySelectorAll('#chart-{} circle.lone')].map(c => +c.getAttribute('cy'))"
    assert len(page.evaluate(cy.format(41))) == 3
    assert len(page.evaluate(cy.format(42))) == 1
    # One dot each for 1 and 5 (the lowest and highest: 1 at the bottom of the axis).
    dots = page.evaluate(cy.format(43))
    assert len(dots) == 2 and dots[0] > dots[1]
    assert page.locator("#chart-42 text.axis").first.text_content() != "–"
    box = page.locator("#chart-41 circle.lone").first.bounding_box()
    assert box is not None and box["width"] > 1  # visible, not a hairline


def test_values_near_the_largest_float_are_drawn(open_page: Callable[..., Page]) -> None:
    # 1e308 is a valid reading: hi - lo overflowed, every coordinate was NaN, the card was
    # empty with "–" for labels and the console full of errors.
    p = open_page("findings")
    page = p.page
    page.locator(f'#findings tr[data-id="{F_CPU.id}"]').wait_for()
    n = 6
    wide = _samples("51", "wide", n, value=[1e308, -1e308, 0.0, 1e308, -1.5e308, 1.0])
    banded = _samples(
        "52",
        "banded",
        n,
        value=[1.0, 2.0, 3.0, 2.0, 1.0, 2.0],
        expected=[2.0] * n,
        lower=[-1.7e308] * n,
        upper=[1.7e308] * n,
    )
    flat = _samples("53", "flat", n, value=[1.7e308] * n)
    _serve_json(
        page,
        r"/api/v1/series$",
        {"series": [{"id": s, "key": s} for s in ("51", "52", "53")]},
    )
    for body in (wide, banded, flat):
        _serve_json(page, rf"/api/v1/series/{body['series']['id']}/samples", body)
    page.click('nav button[data-tab="series"]')
    page.locator("#chart-53 path.series").wait_for(state="attached")
    for chart in ("#chart-51", "#chart-52", "#chart-53"):
        svg = page.locator(f"{chart} svg").inner_html()
        assert "NaN" not in svg and "Infinity" not in svg, (chart, svg[:300])
        labels = page.locator(f"{chart} text.axis").all_text_contents()
        assert "–" not in labels[:3], (chart, labels)
    # past the largest prefix (E), an exponent: it read "1.00e+290E"
    assert page.locator("#chart-51 text.axis").all_text_contents()[:3] == [
        "-1.50e+308",
        "-2.50e+307",
        "1.00e+308",
    ]
    d = page.locator("#chart-51 path.series").get_attribute("d") or ""
    ys = [float(m) for m in re.findall(r"[ML][\d.]+ ([-\d.]+)", d)]
    # 1e308 near the top, -1.5e308 at the bottom, 0 and 1 between them
    assert len(ys) == n and ys[4] > ys[2] > ys[0] and ys[1] > ys[2] and ys[0] == ys[3]


# -- other web sites ---------------------------------------------------------------------------


@contextmanager
def _serve_on(app: Any, host: str) -> Iterator[str]:
    """``app`` served by uvicorn on ``host`` (an ephemeral port) in a thread; yields its URL."""
    server = uvicorn.Server(
        uvicorn.Config(app, host=host, port=0, log_level="warning", lifespan="off", ws="none")
    )
    thread = threading.Thread(target=server.run, name=f"uvicorn-{host}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_page_of_another_site_cannot_write_samples_with_auth_off(
    browser: Any, tmp_path: Path
) -> None:
    # The audit's repro: relia on 127.0.0.1 with auth off (make up), a page of another site
    # (127.0.0.2 is another origin and site) sends a snappy WriteRequest as a no-cors fetch,
    # which needs no preflight. relia stored it; now it keeps nothing.
    from fastapi.responses import HTMLResponse

    from relia.api.auth import Role
    from relia.ingest.api import remote_write_router
    from relia.ingest.queue import IngestQueue
    from relia.ingest.remote_write import RemoteWriteDecoder
    from relia.signals import SeriesIndex
    from tests.engine.memstore import MemoryStore
    from tests.ingest.prompb import encode

    index = SeriesIndex()
    queue = IngestQueue(1000, tmp_path / "wal")
    relia_app = create_app(
        MemoryStore(),
        routers=[(remote_write_router(queue, RemoteWriteDecoder(index)), Role.INGEST)],
    )
    body = encode([({"__name__": "injected"}, [(NOW, 1.0)])])  # snappy-compressed
    evil = FastAPI()
    with _serve_on(relia_app, "127.0.0.1") as relia_url:
        script = (
            f"fetch({json.dumps(relia_url + '/api/v1/write')}, {{method: 'POST', "
            f"mode: 'no-cors', body: new Uint8Array({json.dumps(list(body))})}})"
            ".then(() => { document.title = 'sent'; }, () => { document.title = 'failed'; });"
        )

        @evil.get("/", response_class=HTMLResponse)
        def page() -> str:
            return f"<!doctype html><title>evil</title><script>{script}</script>"

        with _serve_on(evil, "127.0.0.2") as evil_url:
            context = browser.new_context()
            try:
                tab = context.new_page()
                tab.goto(evil_url)
                tab.wait_for_function("document.title !== 'evil'", timeout=15_000)
                assert tab.title() == "sent"  # it went out (no-cors hides the answer)
                # The dashboard's own origin still reads the API with auth off.
                assert tab.goto(relia_url + "/api/v1/series").status == 200
            finally:
                context.close()
    assert queue.samples == 0 and len(index) == 0
    queue.close()
