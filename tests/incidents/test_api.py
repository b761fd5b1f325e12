"""The incidents router on a bare FastAPI app: list with filters, show, 404, bad input."""

from __future__ import annotations

import warnings
from collections.abc import Iterator

import pytest
from fastapi import FastAPI

from relia.config import IncidentsConfig
from relia.incidents.api import incidents_router
from relia.incidents.correlate import IncidentCorrelator, key_labels
from relia.incidents.model import Finding, FindingKind, IncidentStatus, Severity
from relia.store import DuckDBStore

with warnings.catch_warnings():
    # Starlette >= 1.x warns that TestClient wants the httpx2 package; httpx works the same.
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

T0 = 1_700_000_000_000
M = 60_000
NOW = T0 + 60 * M


def finding(key: str, start: int, sid: int | None = None) -> Finding:
    return Finding(
        id=Finding.make_id(FindingKind.METRIC, key, start, "t"), kind=FindingKind.METRIC,
        key=key, series_id=sid, start=start, end=start + M, score=0.8,
        severity=Severity.WARNING, detector="t", summary=key,
    )  # fmt: skip


@pytest.fixture
def client() -> Iterator[tuple[TestClient, DuckDBStore, dict[str, str]]]:
    store = DuckDBStore(":memory:")
    c = IncidentCorrelator(IncidentsConfig(), lambda f: key_labels(f.key))
    a = finding('cpu{job="api"}', T0, sid=2**62 + 1)
    b = finding('mem{job="api"}', T0 + 10_000)
    d = finding('cpu{job="db"}', T0 + 30 * M)
    store.add_findings([a, b, d, finding("unrelated", T0)])
    store.save_incidents(c.update([a, b], T0 + M))
    store.save_incidents(c.update([], T0 + 20 * M))  # resolves the api incident
    store.save_incidents(c.update([d], T0 + 31 * M))
    ids = {i.keys[0]: i.id for i in store.incidents()}
    app = FastAPI()
    app.include_router(incidents_router(store, clock=lambda: NOW))
    with TestClient(app, base_url="http://localhost") as tc:
        yield tc, store, ids
    store.close()


def test_list_newest_first_with_status_and_since(
    client: tuple[TestClient, DuckDBStore, dict[str, str]],
) -> None:
    tc, _, ids = client
    got = tc.get("/api/v1/incidents").json()["incidents"]
    assert [i["id"] for i in got] == [ids['cpu{job="db"}'], ids['cpu{job="api"}']]
    assert got[1]["status"] == "resolved" and got[1]["version"] == 2
    assert got[1]["labels"] == {"job": "api"} and got[1]["cause"][0]["key"] == 'cpu{job="api"}'
    r = tc.get("/api/v1/incidents", params={"status": "open"}).json()["incidents"]
    assert [i["id"] for i in r] == [ids['cpu{job="db"}']]
    r = tc.get("/api/v1/incidents", params={"status": "resolved"}).json()["incidents"]
    assert [i["id"] for i in r] == [ids['cpu{job="api"}']]
    # Relative to the router's clock: NOW - 35m = T0 + 25m, after the api incident's update.
    r = tc.get("/api/v1/incidents", params={"since": "-35m"}).json()["incidents"]
    assert [i["id"] for i in r] == [ids['cpu{job="db"}']]
    r = tc.get("/api/v1/incidents", params={"since": str(T0)}).json()["incidents"]
    assert len(r) == 2
    assert len(tc.get("/api/v1/incidents", params={"limit": 1}).json()["incidents"]) == 1


def test_bad_parameters_are_4xx_with_a_message(
    client: tuple[TestClient, DuckDBStore, dict[str, str]],
) -> None:
    tc, _, _ = client
    r = tc.get("/api/v1/incidents", params={"since": "yesterday-ish"})
    assert r.status_code == 400
    assert "since: expected" in r.json()["detail"] and "yesterday-ish" in r.json()["detail"]
    r = tc.get("/api/v1/incidents", params={"since": "12345678"})  # not a date, YYYYMMDD
    assert r.status_code == 400 and "eight digits are read as a date, YYYYMMDD" in r.text
    r = tc.get("/api/v1/incidents", params={"status": "closed"})
    assert r.status_code == 422 and "status" in r.text
    assert tc.get("/api/v1/incidents", params={"limit": 0}).status_code == 422


def test_show_has_the_findings_with_string_series_ids(
    client: tuple[TestClient, DuckDBStore, dict[str, str]],
) -> None:
    tc, store, ids = client
    api_id = ids['cpu{job="api"}']
    r = tc.get(f"/api/v1/incidents/{api_id}")
    assert r.status_code == 200
    body = r.json()
    assert body["incident"]["id"] == ids['cpu{job="api"}']
    keys = sorted(f["key"] for f in body["findings"])
    assert keys == ['cpu{job="api"}', 'mem{job="api"}']
    by_key = {f["key"]: f for f in body["findings"]}
    assert by_key['cpu{job="api"}']["series_id"] == str(2**62 + 1)
    assert by_key['mem{job="api"}']["series_id"] is None
    assert store.incident(ids['cpu{job="api"}']).status is IncidentStatus.RESOLVED  # type: ignore[union-attr]


def test_show_lists_an_old_incidents_findings_however_many_ended_since(
    client: tuple[TestClient, DuckDBStore, dict[str, str]],
) -> None:
    tc, store, ids = client
    # 100,000 findings that ended after the api incident's: its own are still shown (they were
    # once read newest first up to 100,000 and filtered, so an old incident showed none).
    later = [finding(f"later{i}", T0 + 40 * M + i) for i in range(100_000)]
    store.add_findings(later)
    api_id = ids['cpu{job="api"}']
    body = tc.get(f"/api/v1/incidents/{api_id}").json()
    assert sorted(f["key"] for f in body["findings"]) == ['cpu{job="api"}', 'mem{job="api"}']


def test_the_schema_of_a_cause_lists_every_field_sent(
    client: tuple[TestClient, DuckDBStore, dict[str, str]],
) -> None:
    tc, _, ids = client
    db_id = ids['cpu{job="db"}']
    sent = tc.get(f"/api/v1/incidents/{db_id}").json()["incident"]["cause"][0]
    schema = tc.get("/openapi.json").json()["components"]["schemas"]["CauseOut"]
    assert set(schema["properties"]) == set(sent) == {"key", "score", "reason", "summary"}


def test_unknown_id_is_404(client: tuple[TestClient, DuckDBStore, dict[str, str]]) -> None:
    tc, _, _ = client
    r = tc.get("/api/v1/incidents/doesnotexist")
    assert r.status_code == 404 and "doesnotexist" in r.json()["detail"]


def test_routes_are_in_the_openapi_schema(
    client: tuple[TestClient, DuckDBStore, dict[str, str]],
) -> None:
    tc, _, _ = client
    schema = tc.get("/openapi.json").json()
    assert {"/api/v1/incidents", "/api/v1/incidents/{incident_id}"} <= set(schema["paths"])
    assert "IncidentOut" in schema["components"]["schemas"]


def test_an_id_longer_than_200_characters_is_422_not_a_lookup(
    client: tuple[TestClient, DuckDBStore, dict[str, str]],
) -> None:
    tc, _, _ = client
    assert tc.get("/api/v1/incidents/" + "x" * 200).status_code == 404
    r = tc.get("/api/v1/incidents/" + "x" * 201)
    assert r.status_code == 422 and "incident_id" in r.text


def test_an_incident_tells_how_many_findings_it_ever_had(
    client: tuple[TestClient, DuckDBStore, dict[str, str]],
) -> None:
    # It lists the newest findings of each key (MAX_FINDINGS_PER_KEY); the count is of all.
    tc, store, ids = client
    db_id = ids['cpu{job="db"}']
    inc = store.incident(db_id)
    assert inc is not None
    store.save_incidents([inc.model_copy(update={"finding_count": 1134})])
    listed = {i["id"]: i for i in tc.get("/api/v1/incidents").json()["incidents"]}
    assert listed[db_id]["finding_count"] == 1134 and len(listed[db_id]["finding_ids"]) == 1
    assert listed[ids['cpu{job="api"}']]["finding_count"] == 2
    shown = tc.get(f"/api/v1/incidents/{db_id}").json()["incident"]
    assert shown["finding_count"] == 1134
    schema = tc.get("/openapi.json").json()["components"]["schemas"]["IncidentOut"]
    assert set(schema["properties"]) == set(shown)
    assert "finding_count" in schema["required"]


@pytest.mark.parametrize("bad", ["%00", "inc%00x"])
def test_an_id_with_a_nul_character_is_400_naming_it_not_a_store_outage(
    postgres_dsn: str, bad: str
) -> None:
    # PostgreSQL refuses NUL in text: asked for such an id, the store failed, and the API
    # answered 503 "the store is unavailable" (and logged a store failure) for a bad request.
    from relia.store.postgres import PostgresStore

    with PostgresStore(postgres_dsn) as store:
        app = FastAPI()
        app.include_router(incidents_router(store, clock=lambda: NOW))
        with TestClient(app, base_url="http://localhost") as tc:
            r = tc.get(f"/api/v1/incidents/{bad}")
    assert r.status_code == 400
    assert (
        r.json()["detail"].startswith("path parameter incident_id: ")
        and "NUL" in r.json()["detail"]
    )


def test_incidents_page_on_with_next_and_say_when_cut(
    client: tuple[TestClient, DuckDBStore, dict[str, str]],
) -> None:
    tc, store, ids = client
    # More incidents, some updated at the same time: the id breaks the tie.
    extra = [
        inc.model_copy(update={"id": f"x{k:03d}", "updated_at": T0 + (k // 4) * M})
        for k, inc in enumerate([store.incidents()[0]] * 30)
    ]
    store.save_incidents(extra)
    every = {i.id for i in store.incidents(limit=1000)}
    seen: list[str] = []
    params: dict[str, str | int] = {"limit": 4}
    while True:
        got = tc.get("/api/v1/incidents", params=params).json()
        seen += [i["id"] for i in got["incidents"]]
        if len(seen) == 8:  # one updated between pages moves to the front, not in between
            store.save_incidents([extra[0].model_copy(update={"id": "new", "updated_at": NOW})])
        if not got["truncated"]:
            assert got["next"] is None
            break
        params = {"limit": 4, "before": got["next"]}
    assert sorted(seen) == sorted(every)
    assert tc.get("/api/v1/incidents", params={"limit": 40}).json()["truncated"] is False


@pytest.mark.parametrize("bad", ["yesterday", "1,", "x,inc1", "1,inc\x001"])
def test_a_bad_incidents_cursor_is_400_naming_before(
    client: tuple[TestClient, DuckDBStore, dict[str, str]], bad: str
) -> None:
    r = client[0].get("/api/v1/incidents", params={"before": bad})
    assert r.status_code == 400
    assert r.json()["detail"].startswith("query parameter before: expected the `next`")
