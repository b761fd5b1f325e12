"""The in-memory fakes behave like the real things they stand in for."""

from __future__ import annotations

from typing import Any

import httpx
import numpy as np
import pytest

from relia.signals import MetricBatch
from relia.sources import MetricSource
from relia.sources.fakes import FakeSource, fake_prometheus_transport, fake_scrape_transport
from relia.sources.prometheus import RangeSeries

T0 = 1_700_000_000_000


def test_fake_source_hands_out_batches_then_empty() -> None:
    a = MetricBatch.for_series(1, [1, 2], [0.5, 0.6])
    b = MetricBatch.for_series(2, [3], [1.0])
    source = FakeSource("f", [a, b])
    assert isinstance(source, MetricSource)
    assert source.poll(10) is a
    assert source.poll(20) is b
    assert len(source.poll(30)) == 0
    assert source.polls == [10, 20, 30]


@pytest.fixture
def http() -> httpx.Client:
    series = [
        RangeSeries({"__name__": "req", "code": "200"}, np.array([T0]), np.array([1.0])),
        RangeSeries({"__name__": "req", "code": "500"}, np.array([T0]), np.array([2.0])),
        RangeSeries({"__name__": "other"}, np.array([T0]), np.array([3.0])),
    ]
    return httpx.Client(transport=fake_prometheus_transport(series), base_url="http://fake")


@pytest.mark.parametrize(
    ("query", "codes"),
    [
        ("req", ["200", "500"]),
        ('req{code="500"}', ["500"]),
        ('req{code!="500"}', ["200"]),
        ('req{code=~"5.."}', ["500"]),
        ('{__name__="req", code!~"2.*"}', ["500"]),
    ],
)
def test_selectors(http: httpx.Client, query: str, codes: list[str]) -> None:
    body = http.get("/api/v1/query", params={"query": query, "time": T0 / 1000}).json()
    assert body["data"]["resultType"] == "vector"
    assert sorted(r["metric"]["code"] for r in body["data"]["result"]) == codes


def test_query_range_by_post_form(http: httpx.Client) -> None:
    form = {"query": "other", "start": str(T0 / 1000), "end": str(T0 / 1000 + 2), "step": "1s"}
    body = http.post("/api/v1/query_range", data=form).json()
    (series,) = body["data"]["result"]
    assert [v[1] for v in series["values"]] == ["3.0", "3.0", "3.0"]
    assert [v[0] for v in series["values"]] == [T0 / 1000, T0 / 1000 + 1, T0 / 1000 + 2]


def test_lookback_ends_after_five_minutes(http: httpx.Client) -> None:
    start = T0 / 1000 + 299
    params: dict[str, Any] = {"query": "other", "start": start, "end": start + 2, "step": 1}
    (series,) = http.get("/api/v1/query_range", params=params).json()["data"]["result"]
    assert len(series["values"]) == 2


@pytest.mark.parametrize(
    "params",
    [
        {"query": "rate(x[5m])", "start": 0, "end": 1, "step": 1},
        {"query": "x", "start": "soon", "end": 1, "step": 1},
        {"query": "x", "start": 2, "end": 1, "step": 1},
        {"query": "x", "start": 0, "end": 1, "step": 0},
        {"query": "x", "start": 0, "end": 1},
    ],
)
def test_bad_requests_are_prometheus_style_400(http: httpx.Client, params: dict[str, Any]) -> None:
    resp = http.get("/api/v1/query_range", params=params)
    assert resp.status_code == 400
    assert resp.json()["status"] == "error" and resp.json()["errorType"] == "bad_data"


def test_status_endpoints(http: httpx.Client) -> None:
    assert http.get("/-/ready").status_code == 200
    assert http.get("/-/healthy").status_code == 200
    assert http.get("/api/v1/status/buildinfo").json()["data"]["version"] == "fake"
    assert http.get("/api/v1/label/__name__/values").json()["data"] == ["other", "req"]
    assert http.get("/nope").status_code == 404


def test_fake_scrape_transport() -> None:
    client = httpx.Client(transport=fake_scrape_transport("a 1\n", "text/plain", 200))
    resp = client.get("http://x/metrics")
    assert resp.text == "a 1\n" and resp.headers["content-type"] == "text/plain"
    assert np.isclose(float(resp.text.split()[1]), 1.0)
