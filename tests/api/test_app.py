from __future__ import annotations

import logging
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from relia.api.app import create_app, parse_time
from relia.engine.findings import FindingTracker
from relia.engine.local import LocalExecutor
from relia.engine.loop import Engine
from relia.errors import DataError, StoreError
from relia.incidents.model import Finding, FindingKind, Severity
from relia.signals import MetricBatch, SeriesIndex
from relia.store.base import SampleScores, SeriesInfo, Store
from relia.store.duckdb import DuckDBStore
from relia.timeparse import MAX_MS, format_ms
from relia.timeparse import parse_time as cli_parse_time
from tests.api.bandstore import BandMemoryStore

with warnings.catch_warnings():
    # Starlette >= 1.x warns that TestClient wants the httpx2 package; httpx works the same.
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

T0 = 1_700_000_000_000
STEP = 15_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
YEAR_1000_MS = -30610224000000  # 1000-01-01T00:00:00Z
BIG_ID = 2**62 + 12345  # above 2**53: must survive JSON as a string


class Src:
    name = "src"

    def __init__(self, index: SeriesIndex) -> None:
        self.sid = index.get_or_add("cpu", {"host": "a"})
        self.k = 0

    def poll(self, now_ms: int) -> MetricBatch:
        self.k += 1
        v = 50.0 + (self.k % 3) + (60.0 if self.k in (30, 31) else 0.0)
        if self.k == 10:
            v = np.nan
        return MetricBatch.for_series(self.sid, [now_ms], [v])


@pytest.fixture(params=["memory", "duckdb"])
def setup(request: pytest.FixtureRequest) -> Iterator[tuple[Store, Engine, Src]]:
    store: Store = BandMemoryStore() if request.param == "memory" else DuckDBStore(":memory:")
    index = SeriesIndex()
    src = Src(index)
    clock = {"now": T0}
    eng = Engine(
        store,
        [src],
        LocalExecutor("cusum", {}),
        index=index,
        clock=lambda: clock["now"],
        registry=CollectorRegistry(),
    )
    for _ in range(40):
        eng.tick()
        clock["now"] += STEP
    store.upsert_series([(BIG_ID, "big", {"x": "1"})])
    store.append_samples(MetricBatch.for_series(BIG_ID, [T0], [1.0]))
    yield store, eng, src
    store.close()


def _client(store: Store, eng: Engine | None = None, **kw: object) -> TestClient:
    return TestClient(
        create_app(store, engine=eng, clock=lambda: T0 + 40 * STEP, **kw),
        base_url="http://localhost",
    )


def test_healthz_reports_engine(setup: tuple[Store, Engine, Src]) -> None:
    store, eng, _ = setup
    r = _client(store, eng).get("/healthz")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["engine"]["ticks"] == 40 and body["engine"]["series"] == 1
    assert body["engine"]["last_tick_ms"] == T0 + 39 * STEP
    assert _client(store).get("/healthz").json()["engine"] is None


def test_metrics_text(setup: tuple[Store, Engine, Src]) -> None:
    store, eng, _ = setup
    r = _client(store, eng).get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    for name in (
        "relia_engine_ticks_total 40.0",
        "relia_samples_ingested_total 40.0",
        "relia_engine_tick_duration_seconds_bucket",
        "relia_series 1.0",
        "relia_findings_total",
    ):
        assert name in text


def test_series_ids_are_strings(setup: tuple[Store, Engine, Src]) -> None:
    store, eng, src = setup
    body = _client(store, eng).get("/api/v1/series").json()
    ids = {s["id"]: s for s in body["series"]}
    assert str(BIG_ID) in ids and str(src.sid) in ids
    s = ids[str(src.sid)]
    assert s["key"] == 'cpu{host="a"}' and s["n_samples"] == 40
    assert s["first_ts"] == T0 and s["last_ts"] == T0 + 39 * STEP
    assert all(isinstance(x["id"], str) for x in body["series"])


def test_samples_with_findings_and_nan(setup: tuple[Store, Engine, Src]) -> None:
    store, eng, src = setup
    c = _client(store, eng)
    r = c.get(f"/api/v1/series/{src.sid}/samples")
    assert r.status_code == 200
    b = r.json()
    assert len(b["ts"]) == 40 and b["ts"][0] == T0
    assert b["value"][9] is None  # NaN is sent as null
    for k in ("score", "expected", "lower", "upper"):
        assert len(b[k]) == 40  # one per sample (null where the store has none)
    assert b["threshold"] == 0.5
    assert b["series"]["id"] == str(src.sid)
    assert len(b["findings"]) == 1
    f = b["findings"][0]
    assert f["series_id"] == str(src.sid) and f["start"] == T0 + 29 * STEP
    # a range before the finding has no findings; limit keeps the newest
    b2 = c.get(
        f"/api/v1/series/{src.sid}/samples", params={"until": str(T0 + 5 * STEP), "limit": 3}
    ).json()
    assert b2["ts"] == [T0 + 3 * STEP, T0 + 4 * STEP, T0 + 5 * STEP] and b2["findings"] == []
    b3 = c.get(f"/api/v1/series/{BIG_ID}/samples").json()
    assert b3["series"]["id"] == str(BIG_ID) and b3["ts"] == [T0]


def test_findings_filters(setup: tuple[Store, Engine, Src]) -> None:
    store, eng, src = setup
    c = _client(store, eng)
    all_ = c.get("/api/v1/findings").json()["findings"]
    assert len(all_) == 1 and all_[0]["severity"] in ("warning", "critical")
    assert 'cpu{host="a"}' in all_[0]["summary"]
    assert c.get("/api/v1/findings", params={"since": "-1m"}).json()["findings"] == []
    assert len(c.get("/api/v1/findings", params={"since": "-1h"}).json()["findings"]) == 1
    iso = datetime.fromtimestamp(T0 / 1000, UTC).isoformat()
    assert len(c.get("/api/v1/findings", params={"since": iso}).json()["findings"]) == 1
    assert c.get("/api/v1/findings", params={"series_id": str(BIG_ID)}).json()["findings"] == []
    assert (
        len(c.get("/api/v1/findings", params={"series_id": str(src.sid)}).json()["findings"]) == 1
    )


def test_bad_parameters(setup: tuple[Store, Engine, Src]) -> None:
    store, eng, src = setup
    c = _client(store, eng)
    r = c.get("/api/v1/findings", params={"since": "yesterday-ish"})
    assert r.status_code == 400 and "since" in r.json()["detail"]
    assert c.get("/api/v1/findings", params={"limit": 0}).status_code == 422
    r = c.get("/api/v1/series/12x/samples")
    assert r.status_code == 400 and "series_id" in r.json()["detail"]
    r = c.get(f"/api/v1/series/{2**64}/samples")
    assert r.status_code == 400
    r = c.get("/api/v1/series/42/samples")
    assert r.status_code == 404 and "42" in r.json()["detail"]
    r = c.get(f"/api/v1/series/{src.sid}/samples", params={"since": "-1m", "until": "-1h"})
    assert r.status_code == 400 and "after" in r.json()["detail"]


def test_token(setup: tuple[Store, Engine, Src]) -> None:
    store, eng, _ = setup
    c = _client(store, eng, token="s3cret")
    assert c.get("/api/v1/series").status_code == 401
    r = c.get("/api/v1/findings", headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    ok = c.get("/api/v1/series", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    assert c.get("/healthz").status_code == 200
    assert c.get("/metrics").status_code == 401  # needs a read token since issue 6
    assert c.get("/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 200
    assert c.get("/").status_code == 200


def test_dashboard_is_self_contained(setup: tuple[Store, Engine, Src]) -> None:
    store, eng, _ = setup
    r = _client(store, eng).get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    html = r.text
    for ref in ("/api/v1/findings", "/api/v1/series", "/samples", "/healthz", "createElementNS"):
        assert ref in html
    # The band behind the line, anomalous points with what was expected in their tooltip.
    for ref in (
        'col("expected")',
        'col("lower")',
        'col("upper")',
        'col("score")',
        "data.threshold",
        'class: "band"',
        'id="tip"',
        '"expected "',
    ):
        assert ref in html, ref
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")
    assert "https://" not in html


def test_openapi_documents_string_ids(setup: tuple[Store, Engine, Src]) -> None:
    store, eng, _ = setup
    schema = _client(store, eng).get("/openapi.json").json()
    assert "/api/v1/series/{series_id}/samples" in schema["paths"]
    assert "2**53" in schema["info"]["description"]
    assert schema["components"]["schemas"]["SeriesOut"]["properties"]["id"]["type"] == "string"


# -- time parsing ---------------------------------------------------------------------------

NOW = 1_750_000_000_000


def test_parse_time_forms() -> None:
    assert parse_time("1700000000000", NOW) == 1_700_000_000_000
    assert parse_time("now", NOW) == NOW
    assert parse_time("-1h", NOW) == NOW - 3_600_000
    assert parse_time("-90s", NOW) == NOW - 90_000
    assert parse_time("-1.5m", NOW) == NOW - 90_000
    assert parse_time("2023-11-14T22:13:20Z", NOW) == 1_700_000_000_000
    assert parse_time("2023-11-14T23:13:20+01:00", NOW) == 1_700_000_000_000
    assert parse_time("2023-11-14T22:13:20", NOW) == 1_700_000_000_000  # naive = UTC
    with pytest.raises(DataError, match="since"):
        parse_time("1h", NOW, field="since")


@given(st.integers(10**11, MAX_MS))
def test_parse_time_ms_roundtrip(ms: int) -> None:
    assert parse_time(str(ms), NOW) == ms


@given(st.integers(-(10**10), 10**11 - 1).filter(lambda s: not 10**7 <= s < 10**8))
def test_an_epoch_number_below_1e11_is_seconds_as_in_the_cli(seconds: int) -> None:
    # Eight digits are ISO-8601's basic date (YYYYMMDD), in the CLI as here.
    assert parse_time(str(seconds), NOW) == seconds * 1000


def test_eight_digits_are_a_date_as_in_the_cli() -> None:
    assert parse_time("20240101", NOW) == 1704067200000
    with pytest.raises(DataError, match="since"):
        parse_time("10000000", NOW, field="since")


@given(
    st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    )
)
def test_parse_time_iso_roundtrip(dt: datetime) -> None:
    dt = dt.replace(microsecond=dt.microsecond // 1000 * 1000)
    # Integer arithmetic: dt.timestamp() * 1000 in floats is 1 ms low now and then.
    assert parse_time(dt.isoformat(), NOW) == (dt - EPOCH) // timedelta(milliseconds=1)


@given(st.text(max_size=30))
def test_parse_time_never_crashes_otherwise(text: str) -> None:
    try:
        parse_time(text, NOW)
    except DataError as exc:
        assert "expected" in str(exc)


# -- the expected band end to end -------------------------------------------------------------


@pytest.mark.parametrize("kind", ["memory", "duckdb"])
def test_samples_carry_the_detectors_expected_value_and_band(kind: str) -> None:
    # What the engine does each tick, with the band handed to the store: executor output in,
    # the same numbers out of the API (NaN as null), for the default detector.
    store: Store = BandMemoryStore() if kind == "memory" else DuckDBStore(":memory:")
    ex = LocalExecutor("default", {})
    sid = 77
    store.upsert_series([(sid, "lat", {"svc": "api"})])
    rng = np.random.default_rng(1)
    n = 300
    ts = T0 + STEP * np.arange(n, dtype=np.int64)
    vals = 20.0 + rng.normal(0.0, 1.0, n)
    vals[250] = 60.0  # a spike well outside the band
    vals[100] = np.nan
    tracker = FindingTracker("default", lambda s: 'lat{svc="api"}', ex.components)
    points = []
    for a in range(0, n, 50):  # six ticks
        b = MetricBatch.for_series(sid, ts[a : a + 50], vals[a : a + 50])
        p = ex.process(b)
        store.append_samples(b, p)
        store.add_findings(tracker.update(p))
        points.append(p)
    body = _client(store).get(f"/api/v1/series/{sid}/samples").json()
    assert body["threshold"] is None  # no engine: the dashboard falls back to its default
    assert body["ts"] == ts.tolist()
    for k in ("score", "expected", "lower", "upper"):
        want = np.concatenate([getattr(p, k) for p in points])
        got = np.array([np.nan if x is None else x for x in body[k]])
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-9, err_msg=k)
    assert body["expected"][0] is None  # warming up: no band yet
    assert body["score"][250] >= 0.5
    assert body["upper"][250] < 60.0 < body["upper"][250] + 40  # outside, but a real band
    assert body["lower"][200] <= body["expected"][200] <= body["upper"][200]
    # The spike's finding says what was expected, the band and which part of the detector fired.
    (f,) = [f for f in body["findings"] if f["start"] <= ts[250] <= f["end"]]
    ev = f["evidence"]
    assert ev["value"] == 60.0 and ev["peak_ts"] == ts[250]
    assert ev["expected"] == pytest.approx(body["expected"][250])
    assert (ev["lower"], ev["upper"]) == pytest.approx((body["lower"][250], body["upper"][250]))
    assert ev["component"] in ("above", "new_range")
    assert "above expected" in f["summary"] and "band" in f["summary"]
    store.close()


def test_openapi_documents_the_band(setup: tuple[Store, Engine, Src]) -> None:
    store, eng, _ = setup
    schema = _client(store, eng).get("/openapi.json").json()
    props = schema["components"]["schemas"]["SamplesOut"]["properties"]
    assert {"score", "expected", "lower", "upper", "threshold"} <= set(props)


def test_a_store_that_is_away_answers_503_with_retry_after_not_400(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A store outage is the server's trouble, not the request's: clients retry a 503.
    class AwayStore(BandMemoryStore):
        def list_series(self) -> list[SeriesInfo]:
            raise StoreError("cannot connect to the store: connection refused", where="pg")

        def findings(self, *args: object, **kwargs: object) -> list[Finding]:
            raise StoreError("cannot connect to the store: connection refused", where="pg")

    client = TestClient(create_app(AwayStore()), base_url="http://localhost")
    with caplog.at_level(logging.WARNING, logger="relia.api.app"):
        for path in ("/api/v1/series", "/api/v1/findings"):
            r = client.get(path)
            assert r.status_code == 503, path
            assert r.headers["Retry-After"] == "5"
            # Where the store lives (a file path, a host) is the operator's, not every reader's:
            # the cause goes to relia's log, once, not to each client.
            assert r.json()["detail"] == "the store is unavailable; retry later"
    assert caplog.text.count("pg: cannot connect to the store: connection refused") == 1
    r = client.get("/api/v1/findings?since=yesterday")
    assert r.status_code == 400  # bad input stays the client's


def test_parse_time_names_the_field_when_a_relative_time_is_out_of_range() -> None:
    # 400 digits of hours overflow a float: one clear DataError, not an OverflowError (a 500).
    with pytest.raises(DataError, match="since"):
        parse_time("-" + "9" * 400 + "h", NOW, field="since")
    # Finite but beyond int64 ms: every store would choke on it.
    with pytest.raises(DataError, match="until"):
        parse_time("-99999999999999999w", NOW, field="until")


def test_samples_answer_400_naming_the_parameter_for_an_out_of_range_relative_time(
    setup: tuple[Store, Engine, Src],
) -> None:
    store, eng, src = setup
    c = TestClient(
        create_app(store, engine=eng, clock=lambda: T0),
        raise_server_exceptions=False,
        base_url="http://localhost",
    )
    for param in ("since", "until"):
        r = c.get(f"/api/v1/series/{src.sid}/samples", params={param: "-" + "9" * 400 + "h"})
        assert r.status_code == 400 and param in r.json()["detail"], (param, r.text)
    r = c.get("/api/v1/findings", params={"since": "-99999999999999999w"})
    assert r.status_code == 400 and "since" in r.json()["detail"]


# -- hand-made findings: order, limits, ranges, ids and JSON edges ------------------------------

SID = 7


def _finding(start: int, end: int, sid: int | None = SID, **evidence: object) -> Finding:
    key = f'lat{{n="{start}"}}'
    return Finding(
        id=Finding.make_id(FindingKind.METRIC, key, start, "t"), kind=FindingKind.METRIC,
        key=key, series_id=sid, start=start, end=end, score=0.9, severity=Severity.WARNING,
        detector="t", summary=key, evidence=dict(evidence),
    )  # fmt: skip


@pytest.fixture(params=["memory", "duckdb"])
def made(request: pytest.FixtureRequest) -> Iterator[Store]:
    """Series SID with samples at T0 + k * STEP (k < 20) and findings ending at k = 2, 5, 8, 11
    (each starting one step before), plus one of another series."""
    store: Store = BandMemoryStore() if request.param == "memory" else DuckDBStore(":memory:")
    store.upsert_series([(SID, "lat", {}), (BIG_ID, "big", {})])
    ts = T0 + STEP * np.arange(20, dtype=np.int64)
    store.append_samples(MetricBatch.for_series(SID, ts, np.ones(20)))
    store.add_findings(
        [_finding(T0 + (k - 1) * STEP, T0 + k * STEP) for k in (2, 5, 8, 11)]
        + [_finding(T0, T0 + 3 * STEP, sid=BIG_ID)]
    )
    yield store
    store.close()


def _ends(found: list[dict[str, object]]) -> list[int]:
    return [int(str(f["end"])) // STEP - T0 // STEP for f in found]


def test_findings_are_newest_first_and_limit_keeps_exactly_the_newest(made: Store) -> None:
    c = _client(made)
    got = c.get("/api/v1/findings", params={"series_id": str(SID)}).json()["findings"]
    assert _ends(got) == [11, 8, 5, 2]
    got = c.get("/api/v1/findings", params={"series_id": str(SID), "limit": 2}).json()
    assert _ends(got["findings"]) == [11, 8]
    # since: findings ending at or after it, whichever series
    got = c.get("/api/v1/findings", params={"since": str(T0 + 5 * STEP)}).json()["findings"]
    assert _ends(got) == [11, 8, 5]


def test_findings_limit_above_10000_is_422_naming_limit(made: Store) -> None:
    r = _client(made).get("/api/v1/findings", params={"limit": 10_001})
    assert r.status_code == 422 and "limit" in r.text
    assert _client(made).get("/api/v1/findings", params={"limit": 10_000}).status_code == 200


@pytest.mark.parametrize("limit", ["0", "10001", "ten"])
def test_a_query_parameter_out_of_range_is_one_line_naming_it(made: Store, limit: str) -> None:
    # Every other 4xx has a string `detail` (the dashboard shows only a string); FastAPI's own
    # validation answer is a list of objects, which the dashboard showed as a bare "HTTP 422".
    r = _client(made).get("/api/v1/findings", params={"limit": limit})
    body = r.json()
    assert r.status_code == 422 and isinstance(body["detail"], str), r.text
    assert body["detail"].startswith("query parameter limit: "), body["detail"]
    assert "\n" not in body["detail"]
    assert body["errors"][0]["loc"] == ["query", "limit"]


@pytest.mark.parametrize("bad", ["12x", "-5", "", str(2**63), "5\n", "\u0665"])
def test_findings_bad_series_id_is_400_naming_it(made: Store, bad: str) -> None:
    c = TestClient(
        create_app(made, clock=lambda: T0),
        raise_server_exceptions=False,
        base_url="http://localhost",
    )
    r = c.get("/api/v1/findings", params={"series_id": bad})
    assert r.status_code == 400 and "series_id" in r.json()["detail"], r.text


def test_a_bad_series_id_names_where_it_was_given(made: Store) -> None:
    c = _client(made)
    r = c.get("/api/v1/series/12x/samples")
    assert r.status_code == 400
    assert r.json()["detail"].startswith("path parameter series_id: expected a series id")
    r = c.get("/api/v1/findings", params={"series_id": "12x"})
    assert r.json()["detail"].startswith("query parameter series_id: expected a series id")


def test_the_largest_63_bit_id_is_a_valid_id_and_one_more_is_not(made: Store) -> None:
    c = _client(made)
    top = str(2**63 - 1)
    assert c.get("/api/v1/findings", params={"series_id": top}).json() == {
        "findings": [],
        "truncated": False,
        "next": None,
    }
    r = c.get(f"/api/v1/series/{top}/samples")
    assert r.status_code == 404 and top in r.json()["detail"]
    r = c.get(f"/api/v1/series/{2**63}/samples")
    assert r.status_code == 400 and "series_id" in r.json()["detail"]


def test_samples_show_the_findings_of_the_shown_range_only(made: Store) -> None:
    c = _client(made)
    url = f"/api/v1/series/{SID}/samples"
    # The newest 10 samples (k = 10..19): only the finding ending at 11.
    b = c.get(url, params={"limit": 10}).json()
    assert b["ts"][0] == T0 + 10 * STEP and _ends(b["findings"]) == [11]
    # until equal to a finding's start includes it; the finding after it is left out.
    b = c.get(url, params={"since": str(T0 + 3 * STEP), "until": str(T0 + 7 * STEP)}).json()
    assert _ends(b["findings"]) == [8, 5]
    # A range past the last sample still only holds findings that overlap it: none here.
    b = c.get(url, params={"since": str(T0 + 30 * STEP), "until": str(T0 + 40 * STEP)}).json()
    assert b["ts"] == [] and b["findings"] == []
    # All of them, not only the newest one.
    assert _ends(c.get(url).json()["findings"]) == [11, 8, 5, 2]


@pytest.mark.parametrize("limit", [0, 1_000_001])
def test_samples_limit_out_of_bounds_is_422_naming_limit(made: Store, limit: int) -> None:
    r = _client(made).get(f"/api/v1/series/{SID}/samples", params={"limit": limit})
    assert r.status_code == 422 and "limit" in r.text


def test_samples_with_since_equal_to_until_is_that_one_sample(made: Store) -> None:
    t = str(T0 + 4 * STEP)
    r = _client(made).get(f"/api/v1/series/{SID}/samples", params={"since": t, "until": t})
    assert r.status_code == 200 and r.json()["ts"] == [T0 + 4 * STEP]


@pytest.mark.parametrize("param", ["since", "until"])
def test_samples_bad_time_is_400_naming_that_parameter(made: Store, param: str) -> None:
    r = _client(made).get(f"/api/v1/series/{SID}/samples", params={param: "soon"})
    # The same form as a parameter FastAPI refuses: "query parameter limit: ..."
    assert r.status_code == 400
    assert r.json()["detail"] == (
        f"query parameter {param}: expected ISO-8601 (UTC if no offset; eight digits are a "
        "date, 20240101), 'now', relative like -1h or now-1h, or epoch seconds (a number from "
        "1e11 up is ms), got 'soon'"
    )


def test_findings_since_of_eight_digits_not_a_date_is_400_saying_why(made: Store) -> None:
    # The detail said epoch seconds were accepted, so 12345678 looked like a valid time refused.
    r = _client(made).get("/api/v1/findings", params={"since": "12345678"})
    assert r.status_code == 400
    detail = r.json()["detail"]
    assert detail.startswith("query parameter since: ") and "'12345678'" in detail
    assert "eight digits are read as a date, YYYYMMDD" in detail and "\n" not in detail


def test_infinite_values_and_nan_evidence_go_out_as_null(made: Store) -> None:
    made.append_samples(
        MetricBatch.for_series(SID, [T0 + 30 * STEP, T0 + 31 * STEP], [np.inf, -np.inf])
    )
    made.add_findings([_finding(T0 + 30 * STEP, T0 + 31 * STEP, ratio=float("nan"), n=3)])
    c = _client(made)
    b = c.get(f"/api/v1/series/{SID}/samples", params={"since": str(T0 + 30 * STEP)}).json()
    assert b["value"] == [None, None]
    (f,) = b["findings"]
    assert f["evidence"] == {"ratio": None, "n": 3}


def test_healthz_of_a_single_node_says_it_leads_and_the_time() -> None:
    body = _client(BandMemoryStore()).get("/healthz").json()
    assert body["ha"] == {"mode": "single", "leader": True}
    assert body["now_ms"] == T0 + 40 * STEP
    app = create_app(BandMemoryStore(), leader=lambda: {"mode": "ha", "leader": False})
    assert TestClient(app, base_url="http://localhost").get("/healthz").json()["ha"] == {
        "mode": "ha",
        "leader": False,
    }


def test_parse_time_refuses_a_time_past_year_9999_naming_the_field() -> None:
    assert parse_time(str(MAX_MS), NOW) == MAX_MS
    with pytest.raises(DataError, match="query parameter since: .* out of range"):
        parse_time("999999999999999999", NOW, field="since")


@pytest.mark.parametrize("text", ["\u0661\u0667" + "\u0660" * 11, "-\u0665h"])
def test_parse_time_takes_ascii_digits_only(text: str) -> None:
    # Arabic-Indic digits are not a time a client meant to send.
    with pytest.raises(DataError, match="since"):
        parse_time(text, NOW, field="since")


def test_dashboard_cannot_be_framed_and_runs_only_its_own_script() -> None:
    # The page keeps a bearer token in localStorage: another site must not frame it
    # (clickjacking), and only its own inline script may run, so injected markup executes nothing.
    import base64
    import hashlib
    import re

    r = TestClient(create_app(BandMemoryStore()), base_url="http://localhost").get("/")
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["x-content-type-options"] == "nosniff"
    assert r.headers["referrer-policy"] == "no-referrer"
    directives = r.headers["content-security-policy"].split(";")
    csp = dict(d.strip().split(" ", 1) for d in directives)
    assert csp["default-src"] == "'none'"
    assert csp["frame-ancestors"] == "'none'"
    assert csp["connect-src"] == "'self'"
    assert csp["base-uri"] == "'none'" and csp["form-action"] == "'none'"
    scripts = re.findall(r"<script>(.*?)</script>", r.text, re.DOTALL)
    assert len(scripts) == 1
    digest = base64.b64encode(hashlib.sha256(scripts[0].encode()).digest()).decode()
    assert csp["script-src"] == f"'sha256-{digest}'"
    assert "unsafe" not in csp["script-src"]


def test_a_trailing_slash_is_not_redirected_to_the_host_the_client_names(
    setup: tuple[Store, Engine, Src],
) -> None:
    # Starlette's slash redirect builds its Location from the request's Host header, which a
    # shared cache could then serve to others; relia's routes have one spelling each. Auth on:
    # with auth off, a Host that is not loopback is refused before any route.
    store, eng, _ = setup
    r = _client(store, eng, token="t0k").get(
        "/api/v1/series/",
        headers={"Host": "evil.example", "Authorization": "Bearer t0k"},
        follow_redirects=False,
    )
    assert r.status_code == 404 and "location" not in r.headers


@pytest.mark.parametrize(
    "path", ["/healthz", "/metrics", "/", "/api/v1/series", "/api/v1/findings"]
)
def test_head_is_answered_wherever_get_is_with_its_headers_and_no_body(
    setup: tuple[Store, Engine, Src], path: str
) -> None:
    store, eng, _ = setup
    client = _client(store, eng)
    get, head = client.get(path), client.head(path)
    assert get.status_code == head.status_code == 200
    assert head.content == b""
    assert head.headers["content-type"] == get.headers["content-type"]


def test_head_needs_the_role_get_needs(
    setup: tuple[Store, Engine, Src],
) -> None:
    store, eng, _ = setup
    client = _client(store, eng, token="s3cret")
    assert client.head("/api/v1/series").status_code == 401
    ok = client.head("/api/v1/series", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200 and ok.content == b""
    assert client.head("/api/v1/nothing-here").status_code == 404


def test_an_unknown_query_parameter_is_400_naming_it(setup: tuple[Store, Engine, Src]) -> None:
    store, eng, _ = setup
    client = _client(store, eng)
    r = client.get("/api/v1/findings?since=-1h&limt=5")
    assert r.status_code == 400
    assert r.json()["detail"] == (
        "unknown query parameter 'limt' (this route takes: before, limit, series_id, since, until)"
    )
    assert client.get("/api/v1/findings?since=-1h&limit=5").status_code == 200
    r = client.get("/api/v1/series?verbose=1")
    assert r.status_code == 400 and "'verbose' (this route takes: limit)" in r.json()["detail"]


# -- the audit of the read routes (docs/security.md, README's HTTP API) ----------------------


def test_a_samples_request_reads_its_own_series_not_the_whole_list(made: Store) -> None:
    # Listing every series (a GROUP BY over all samples) on each samples request made the
    # dashboard's refresh quadratic in the number of series.
    calls: list[str] = []
    real = made.list_series

    def counted() -> list[SeriesInfo]:
        calls.append("list_series")
        return real()

    made.list_series = counted  # type: ignore[method-assign]
    r = _client(made).get(f"/api/v1/series/{SID}/samples")
    assert r.status_code == 200 and r.json()["series"]["n_samples"] == 20
    assert calls == []
    assert _client(made).get("/api/v1/series/12345/samples").status_code == 404


def test_the_series_list_is_limited_and_says_when_it_was_cut(made: Store) -> None:
    c = _client(made)
    whole = c.get("/api/v1/series").json()
    assert [s["name"] for s in whole["series"]] == ["big", "lat"] and not whole["truncated"]
    cut = c.get("/api/v1/series", params={"limit": 1}).json()
    assert [s["name"] for s in cut["series"]] == ["big"] and cut["truncated"]
    r = c.get("/api/v1/series", params={"limit": 1_000_001})
    assert r.status_code == 422 and r.json()["detail"].startswith("query parameter limit:")


def test_samples_until_keeps_the_findings_in_range_however_many_come_later(made: Store) -> None:
    # The 1,000 newest findings were read first and the range applied afterwards: 1,001 later
    # findings of the series pushed the one inside the range out.
    made.add_findings([_finding(T0 + 10**7 + k, T0 + 10**7 + k) for k in range(1001)])
    r = _client(made).get(
        f"/api/v1/series/{SID}/samples", params={"since": str(T0), "until": str(T0 + 3 * STEP)}
    )
    assert _ends(r.json()["findings"]) == [2]


def _many(made: Store, n: int, base: int = T0 + 10**6) -> set[str]:
    """``n`` findings of series SID, some sharing an end (the cursor must break ties)."""
    ends = [base + k // 3 * STEP for k in range(n)]
    found = [_finding(end - 1 - k % 3, end) for k, end in zip(range(n), ends, strict=True)]
    made.add_findings(found)
    return {f.id for f in found}


def test_findings_page_on_with_next_and_see_each_old_one_once(made: Store) -> None:
    old = _many(made, 50) | {f.id for f in made.findings(limit=100)}
    c = _client(made)
    seen: list[str] = []
    params: dict[str, str | int] = {"limit": 7}
    for page_no in range(100):
        got = c.get("/api/v1/findings", params=params).json()
        seen += [f["id"] for f in got["findings"]]
        if page_no == 1:  # new findings arrive between pages: they come first, not in between
            made.add_findings([_finding(T0 + 10**8 + k, T0 + 10**8 + k) for k in range(5)])
        if not got["truncated"]:
            assert got["next"] is None
            break
        assert len(got["findings"]) == 7
        params = {"limit": 7, "before": got["next"]}
    assert sorted(seen) == sorted(old)  # every old one exactly once, none skipped


def test_findings_say_when_the_list_was_cut(made: Store) -> None:
    c = _client(made)
    full = c.get("/api/v1/findings", params={"limit": 5}).json()
    assert len(full["findings"]) == 5 and not full["truncated"] and full["next"] is None
    cut = c.get("/api/v1/findings", params={"limit": 4}).json()
    assert cut["truncated"] and cut["next"]


@pytest.mark.parametrize("bad", ["x", "1,2", "1,x,id", "1,2,", "1,2,a\x00b"])
def test_a_bad_cursor_is_400_naming_before(made: Store, bad: str) -> None:
    r = _client(made).get("/api/v1/findings", params={"before": bad})
    assert r.status_code == 400
    assert r.json()["detail"].startswith("query parameter before: expected the `next`")


def test_findings_until_keeps_those_starting_by_then(made: Store) -> None:
    got = _client(made).get("/api/v1/findings", params={"until": str(T0 + 4 * STEP)}).json()
    assert sorted(_ends(got["findings"])) == [2, 3, 5]  # 5 starts at k = 4


@given(st.integers(YEAR_1000_MS, MAX_MS))
def test_parse_time_reads_a_formatted_time_back_to_the_millisecond(ms: int) -> None:
    # Float seconds came back 1 ms low for some times (2004-09-23T15:54:43.735Z).
    assert parse_time(format_ms(ms), NOW) == ms


def test_samples_until_an_exact_iso_time_keeps_that_sample() -> None:
    store = BandMemoryStore()
    store.upsert_series([(SID, "lat", {})])
    at = 1_095_954_883_735  # 2004-09-23T15:54:43.735Z
    store.append_samples(MetricBatch.for_series(SID, [at], [1.0]))
    r = _client(store).get(
        f"/api/v1/series/{SID}/samples", params={"since": format_ms(at), "until": format_ms(at)}
    )
    assert r.json()["ts"] == [at]


@pytest.mark.parametrize(
    "text", ["1700000000", "1700000000000", "now-1h", "-1h", "NOW", "now", "2023-11-14T22:13:20Z"]
)
def test_the_api_reads_times_as_the_cli_does(text: str) -> None:
    assert parse_time(text, NOW) == cli_parse_time(text, now_ms=NOW)


def test_findings_since_in_epoch_seconds_is_not_january_1970(made: Store) -> None:
    later = str((T0 + 6 * STEP) // 1000)  # seconds: the findings ending at k = 8 and 11
    got = _client(made).get("/api/v1/findings", params={"since": later}).json()
    assert sorted(_ends(got["findings"])) == [8, 11]


@pytest.mark.parametrize("path", ["/?utm_source=chat", "/healthz?_=123"])
def test_the_page_and_healthz_take_any_query(path: str) -> None:
    r = _client(BandMemoryStore()).get(path)
    assert r.status_code == 200


def test_a_405_allows_head_wherever_it_allows_get() -> None:
    client = _client(BandMemoryStore())
    for method, path in (("OPTIONS", "/api/v1/series"), ("POST", "/"), ("DELETE", "/healthz")):
        r = client.request(method, path)
        assert r.status_code == 405
        assert [m.strip() for m in r.headers["allow"].split(",")] == ["GET", "HEAD"], path


class _OutageStore(DuckDBStore):
    """Its samples are refused while ``down`` (a full disk, PostgreSQL away)."""

    def __init__(self) -> None:
        super().__init__(":memory:")
        self.down = False

    def append_samples(self, batch: MetricBatch, scores: SampleScores | None = None) -> None:
        if self.down:
            raise StoreError("cannot connect to the store: connection refused")
        super().append_samples(batch, scores)


def _wait(pred: Callable[[], object], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_healthz_is_degraded_while_ticks_fail_and_ok_once_the_store_is_back() -> None:
    store = _OutageStore()
    index = SeriesIndex()
    eng = Engine(store, [Src(index)], LocalExecutor("cusum", {}), index=index)
    client = TestClient(create_app(store, engine=eng), base_url="http://localhost")
    eng.tick()
    store.down = True
    stop = threading.Event()
    thread = threading.Thread(target=eng.run, args=(stop, 0.02), daemon=True)
    thread.start()
    try:
        _wait(lambda: eng.status()["last_error"] is not None)
        health = client.get("/healthz").json()
        assert health["status"] == "degraded"
        problems = health["engine"]["problems"]
        assert any(
            p.startswith("engine ticks fail: StoreError: cannot connect to the store")
            for p in problems
        ), problems
        assert any("samples wait for the store" in p for p in problems), problems
        store.down = False
        _wait(lambda: eng.status()["last_error"] is None and not eng.status()["problems"])
        assert client.get("/healthz").json()["status"] == "ok"
    finally:
        stop.set()
        thread.join(10)
