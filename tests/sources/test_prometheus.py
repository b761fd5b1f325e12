"""PrometheusClient and PrometheusSource against the in-memory fake server."""

from __future__ import annotations

import time
import urllib.parse

import httpx
import numpy as np
import pytest

from relia.errors import SourceError
from relia.signals import SeriesIndex
from relia.sources.base import MetricSource, PartialPollError
from relia.sources.fakes import fake_prometheus_transport
from relia.sources.prometheus import (
    MAX_POINTS_PER_CHUNK,
    PrometheusClient,
    PrometheusSource,
    QueryRefused,
    QueryTimeout,
    RangeSeries,
)
from tests.slow_http import slow_server, timed

T0 = 1_700_000_000_000
URL = "http://prom.test:9090"


def ramp(name: str, n: int, step_ms: int = 1000, **labels: str) -> RangeSeries:
    ts = T0 + np.arange(n, dtype=np.int64) * step_ms
    return RangeSeries({"__name__": name, **labels}, ts, np.arange(n, dtype=np.float64))


def test_query_range_single_request() -> None:
    transport = fake_prometheus_transport([ramp("m", 100, a="1"), ramp("m", 100, a="2")])
    with PrometheusClient(URL, transport=transport) as client:
        result = client.query_range('m{a="2"}', T0, T0 + 9_000, 1.0)
    assert len(transport.calls) == 1
    assert len(result) == 1
    assert result[0].labels == {"__name__": "m", "a": "2"}
    assert result[0].ts.tolist() == [T0 + i * 1000 for i in range(10)]
    assert result[0].values.tolist() == list(range(10))


def test_long_range_is_chunked_and_merged_without_duplicates() -> None:
    n = 35_000  # more than three chunks of 10,000 points at a 1 s step
    transport = fake_prometheus_transport([ramp("m", n, a="1"), ramp("m", n, a="2")])
    with PrometheusClient(URL, transport=transport) as client:
        result = client.query_range("m", T0, T0 + (n - 1) * 1000, 1.0)
    assert len(transport.calls) == 4
    for _path, params in transport.calls:
        points = (float(params["end"]) - float(params["start"])) / float(params["step"]) + 1
        assert points <= MAX_POINTS_PER_CHUNK
    assert sorted(r.labels["a"] for r in result) == ["1", "2"]
    for r in result:
        assert len(r) == n
        assert np.all(np.diff(r.ts) == 1000)
        assert r.values.tolist() == list(range(n))


def test_fake_enforces_prometheus_points_limit() -> None:
    transport = fake_prometheus_transport([ramp("m", 20_000)])
    http = httpx.Client(transport=transport, base_url=URL)
    resp = http.get(
        "/api/v1/query_range",
        params={"query": "m", "start": T0 / 1000, "end": T0 / 1000 + 11_001, "step": 1},
    )
    assert resp.status_code == 400
    assert resp.json()["errorType"] == "bad_data"
    assert "11,000 points" in resp.json()["error"]


def test_special_values_are_parsed() -> None:
    s = RangeSeries(
        {"__name__": "x"},
        np.array([T0, T0 + 1000, T0 + 2000, T0 + 3000]),
        np.array([np.nan, np.inf, -np.inf, 1.5]),
    )
    with PrometheusClient(URL, transport=fake_prometheus_transport([s])) as client:
        (r,) = client.query_range("x", T0, T0 + 3000, 1.0)
    assert np.isnan(r.values[0]) and r.values[1] == np.inf and r.values[2] == -np.inf
    assert r.values[3] == 1.5


def test_range_points_are_evaluated_like_prometheus() -> None:
    # A sample every 10 s queried at a 5 s step: each point repeats the latest sample.
    s = ramp("slow", 3, step_ms=10_000)
    with PrometheusClient(URL, transport=fake_prometheus_transport([s])) as client:
        (r,) = client.query_range("slow", T0, T0 + 20_000, 5.0)
    assert r.values.tolist() == [0, 0, 1, 1, 2]


def test_bad_promql_is_source_error_with_prometheus_text() -> None:
    with PrometheusClient(URL, transport=fake_prometheus_transport([])) as client:
        with pytest.raises(SourceError) as err:
            client.query_range("sum(", T0, T0 + 1000, 1.0)
    msg = str(err.value)
    assert msg.startswith(f"{URL}/api/v1/query_range: ")
    assert "HTTP 400 (bad_data)" in msg and "parse error" in msg


def _answer(status: int, body: bytes, ctype: str = "application/json") -> httpx.MockTransport:
    return httpx.MockTransport(
        lambda req: httpx.Response(status, content=body, headers={"Content-Type": ctype})
    )


@pytest.mark.parametrize(
    ("transport", "fragment"),
    [
        (_answer(200, b"<html>hi</html>", "text/html"), "not JSON"),
        (_answer(502, b"Bad Gateway", "text/plain"), "HTTP 502, answer is not JSON"),
        (
            _answer(200, b'{"status":"success","data":{"resultType":"vector","result":[]}}'),
            "expected a matrix result, got 'vector'",
        ),
        (
            _answer(422, b'{"status":"error","errorType":"execution","error":"too\\nmany"}'),
            "HTTP 422 (execution): too many",
        ),
        (
            _answer(200, b'{"status":"success","data":{"resultType":"matrix","result":[{}]}}'),
            None,
        ),
        (
            _answer(
                200,
                b'{"status":"success","data":{"resultType":"matrix",'
                b'"result":[{"metric":{},"values":[[1,"x"]]}]}}',
            ),
            "malformed samples",
        ),
    ],
)
def test_wrong_answers_are_source_errors(
    transport: httpx.MockTransport, fragment: str | None
) -> None:
    with PrometheusClient(URL, transport=transport) as client:
        if fragment is None:
            assert client.query_range("up", T0, T0, 1.0)[0].labels == {}
            return
        with pytest.raises(SourceError) as err:
            client.query_range("up", T0, T0, 1.0)
    assert fragment in str(err.value) and URL in str(err.value)


def test_unreachable_and_timeout() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    with PrometheusClient(URL, transport=httpx.MockTransport(refuse)) as client:
        with pytest.raises(SourceError, match="cannot reach Prometheus: Connection refused"):
            client.query_range("up", T0, T0, 1.0)
    with PrometheusClient(URL, timeout=2, transport=httpx.MockTransport(slow)) as client:
        with pytest.raises(SourceError, match="did not answer within 2s"):
            client.query_range("up", T0, T0, 1.0)


def test_instant_query() -> None:
    with PrometheusClient(URL, transport=fake_prometheus_transport([ramp("m", 10)])) as client:
        (r,) = client.query("m", T0 + 4_500)
    assert r.ts.tolist() == [T0 + 4_500] and r.values.tolist() == [4.0]


def test_source_polls_continue_without_duplicates() -> None:
    series = [ramp("m", 2000, a="1"), ramp("n", 2000)]
    index = SeriesIndex()
    source = PrometheusSource(
        "prom",
        URL,
        [("m", 1.0), ("n", 5.0), ("m_missing", 1.0)],
        index,
        lookback_s=60,
        transport=fake_prometheus_transport(series),
    )
    assert isinstance(source, MetricSource)
    now = T0 + 600_000 + 300  # not on the step grid
    first = source.poll(now)
    m_id = index.find("m", {"a": "1"})
    n_id = index.find("n")
    assert m_id is not None and n_id is not None
    m_ts = first.ts[first.series_id == m_id]
    assert m_ts[0] == T0 + 540_000 and m_ts[-1] == T0 + 600_000  # aligned, lookback 60 s
    assert len(first.ts[first.series_id == n_id]) == 13  # 60 s at a 5 s step, both ends
    assert len(source.poll(now)) == 0  # nothing new at the same time
    second = source.poll(now + 12_000)
    assert second.ts[second.series_id == m_id].tolist() == [
        T0 + 601_000 + i * 1000 for i in range(12)
    ]
    assert second.ts[second.series_id == n_id].tolist() == [T0 + 605_000, T0 + 610_000]
    assert second.value[second.series_id == m_id][0] == 601.0


def test_source_error_names_source_and_query_and_retries() -> None:
    calls = {"n": 0}
    good = fake_prometheus_transport([ramp("m", 100)])

    def flaky(request: httpx.Request) -> httpx.Response:
        calls["n"] += 1
        if calls["n"] == 1:
            raise httpx.ConnectError("Connection refused", request=request)
        return good.handle_request(request)

    index = SeriesIndex()
    source = PrometheusSource(
        "prom", URL, [("m", 1.0)], index, lookback_s=10, transport=httpx.MockTransport(flaky)
    )
    with pytest.raises(SourceError, match=r"source 'prom', query 'm': .*cannot reach"):
        source.poll(T0 + 50_000)
    batch = source.poll(T0 + 50_000)  # the failed range is asked again
    assert batch.ts.tolist() == [T0 + 40_000 + i * 1000 for i in range(11)]


def test_series_without_name_use_the_query() -> None:
    payload = (
        b'{"status":"success","data":{"resultType":"matrix","result":'
        b'[{"metric":{"job":"a"},"values":[[1700000000,"2"]]}]}}'
    )
    index = SeriesIndex()
    source = PrometheusSource(
        "p", URL, [("sum by (job) (x)", 1.0)], index, lookback_s=5, transport=_answer(200, payload)
    )
    batch = source.poll(T0)
    assert index.key(int(batch.series_id[0])) == ("sum by (job) (x)", (("job", "a"),))


def test_a_failing_query_loses_nothing_of_the_others() -> None:
    # "sum(" is bad PromQL: the fake answers HTTP 400 for it at every poll.
    index = SeriesIndex()
    source = PrometheusSource(
        "prom",
        URL,
        [("m", 1.0), ("sum(", 1.0), ("n", 1.0)],
        index,
        lookback_s=10,
        transport=fake_prometheus_transport([ramp("m", 100), ramp("n", 100)]),
    )
    with pytest.raises(PartialPollError, match=r"source 'prom', query 'sum\(': .*HTTP 400") as err:
        source.poll(T0 + 50_000)
    first = err.value.batch
    m_id, n_id = index.find("m"), index.find("n")
    # The queries before and after the broken one are both delivered, with the error.
    assert first.ts[first.series_id == m_id].tolist() == [T0 + 40_000 + i * 1000 for i in range(11)]
    assert first.ts[first.series_id == n_id].tolist() == [T0 + 40_000 + i * 1000 for i in range(11)]
    with pytest.raises(PartialPollError) as err:
        source.poll(T0 + 53_000)
    second = err.value.batch
    # ... and each continues where it ended: no sample lost or repeated.
    for sid in (m_id, n_id):
        assert second.ts[second.series_id == sid].tolist() == [
            T0 + 51_000,
            T0 + 52_000,
            T0 + 53_000,
        ]


def test_a_query_that_failed_is_asked_again_from_where_it_stopped() -> None:
    fail = {"q": "n"}
    good = fake_prometheus_transport([ramp("m", 100), ramp("n", 100)])

    def handle(request: httpx.Request) -> httpx.Response:
        if f"query={fail['q']}&" in request.content.decode():
            return httpx.Response(503, json={"status": "error", "error": "overloaded"})
        return good.handle_request(request)

    index = SeriesIndex()
    source = PrometheusSource(
        "prom", URL, [("m", 1.0), ("n", 1.0)], index, lookback_s=2,
        transport=httpx.MockTransport(handle),
    )  # fmt: skip
    with pytest.raises(PartialPollError):
        source.poll(T0 + 50_000)
    fail["q"] = "nothing"
    batch = source.poll(T0 + 52_000)
    n_id = index.find("n")
    assert batch.ts[batch.series_id == n_id].tolist() == [T0 + 48_000 + i * 1000 for i in range(5)]


def test_when_every_query_fails_the_error_carries_an_empty_batch() -> None:
    index = SeriesIndex()
    source = PrometheusSource(
        "prom", URL, [("sum(", 1.0), ("max(", 1.0)], index, lookback_s=2,
        transport=fake_prometheus_transport([]),
    )  # fmt: skip
    with pytest.raises(PartialPollError, match=r"query 'sum\('.*; query 'max\('") as err:
        source.poll(T0 + 50_000)
    assert len(err.value.batch) == 0


def test_times_off_the_second_keep_their_milliseconds() -> None:
    # A range starting 50 ms past a second is asked as "….050", not "….50" (half a second),
    # and every answered time comes back to the exact millisecond.
    s = ramp("m", 10)
    transport = fake_prometheus_transport([s])
    with PrometheusClient(URL, transport=transport) as client:
        (r,) = client.query_range("m", T0 + 50, T0 + 50 + 7 * 99, 0.007)
    assert transport.calls[0][1]["start"] == f"{(T0 + 50) // 1000}.050"
    assert r.ts.tolist() == [T0 + 50 + 7 * i for i in range(100)]


def test_answered_times_are_rounded_to_the_millisecond_not_truncated() -> None:
    # 2183226373.411 s is 2183226373410.9998 ms as a float: truncating would lose a millisecond.
    body = (
        b'{"status":"success","data":{"resultType":"matrix",'
        b'"result":[{"metric":{},"values":[[2183226373.411,"1"]]}]}}'
    )
    with PrometheusClient(URL, transport=_answer(200, body)) as client:
        (r,) = client.query_range("up", 2183226373411, 2183226373411, 1.0)
    assert r.ts.tolist() == [2183226373411]


@pytest.mark.parametrize(
    ("status", "refused"),
    [(400, True), (422, True), (499, True), (500, False), (503, False)],
)
def test_only_an_http_4xx_answer_is_the_query_refused(status: int, refused: bool) -> None:
    # 4xx: this query's trouble (bad PromQL, limits); 5xx: the server's, like one unreachable.
    body = b'{"status":"error","errorType":"x","error":"no"}'
    with PrometheusClient(URL, transport=_answer(status, body)) as client:
        with pytest.raises(SourceError, match=f"HTTP {status} \\(x\\): no") as err:
            client.query_range("up", T0, T0, 1.0)
    assert isinstance(err.value, QueryRefused) is refused


def test_an_unreachable_server_is_not_the_query_refused() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    with PrometheusClient(URL, transport=httpx.MockTransport(refuse)) as client:
        with pytest.raises(SourceError) as err:
            client.query_range("up", T0, T0, 1.0)
    assert not isinstance(err.value, QueryRefused)


@pytest.mark.parametrize(
    ("start", "end", "step", "fragment"),
    [
        (T0, T0 + 1000, 0.0, "step must be positive, got 0.0"),
        (T0, T0 + 1000, 0.0004, "step must be positive"),  # rounds to 0 ms
        (T0 + 1000, T0, 1.0, f"end {T0} is before start {T0 + 1000}"),
    ],
)
def test_an_impossible_range_is_refused_before_asking(
    start: int, end: int, step: float, fragment: str
) -> None:
    transport = fake_prometheus_transport([ramp("m", 10)])
    with PrometheusClient(URL + "/", transport=transport) as client:
        with pytest.raises(SourceError) as err:
            client.query_range("m", start, end, step)
    assert fragment in str(err.value)
    assert str(err.value).startswith(f"{URL}/api/v1/query_range: ")  # trailing "/" dropped
    assert transport.calls == []


def _sloppy(points: list[int]) -> httpx.MockTransport:
    """A server answering every range query with the same samples, whatever range was asked."""
    values = [[t / 1000, str(t - T0)] for t in points]
    result = [{"metric": {"__name__": "m"}, "values": values}]
    body = {"status": "success", "data": {"resultType": "matrix", "result": result}}
    return httpx.MockTransport(lambda req: httpx.Response(200, json=body))


def test_chunks_answered_outside_their_range_give_each_time_once_in_order() -> None:
    # 1 ms steps: 20,001 points, three chunks, each answered with the same five samples.
    points = [T0 + 4000, T0, T0 + 1000, T0 + 3000, T0 + 2000]
    with PrometheusClient(URL, transport=_sloppy(points)) as client:
        (r,) = client.query_range("m", T0, T0 + 20_000, 0.001)
    assert r.ts.tolist() == [T0 + i * 1000 for i in range(5)]
    assert r.values.tolist() == [0.0, 1000.0, 2000.0, 3000.0, 4000.0]


def test_a_source_returns_only_samples_inside_the_asked_range() -> None:
    # The server answers every poll with samples before and after the asked range: each
    # sample is still returned once, by the poll whose range holds it.
    index = SeriesIndex()
    points = [T0 + i * 1000 for i in range(10)]
    source = PrometheusSource(
        "p", URL, [("m", 1.0)], index, lookback_s=2, transport=_sloppy(points)
    )
    first = source.poll(T0 + 4_000)
    assert first.ts.tolist() == [T0 + 2000, T0 + 3000, T0 + 4000]
    second = source.poll(T0 + 6_000)
    assert second.ts.tolist() == [T0 + 5000, T0 + 6000]
    assert len(source.poll(T0 + 6_500)) == 0


def test_a_first_poll_whose_lookback_is_not_a_whole_number_of_steps_stays_on_the_grid() -> None:
    index = SeriesIndex()
    source = PrometheusSource(
        "p", URL, [("m", 3.0)], index, lookback_s=10,
        transport=fake_prometheus_transport([ramp("m", 100)]),
    )  # fmt: skip
    batch = source.poll(T0 + 50_000)
    end = (T0 + 50_000) // 3000 * 3000
    assert batch.ts.tolist() == [end - 9000, end - 6000, end - 3000, end]


def test_a_poll_one_step_later_returns_that_one_step() -> None:
    index = SeriesIndex()
    source = PrometheusSource(
        "p", URL, [("m", 1.0)], index, lookback_s=2,
        transport=fake_prometheus_transport([ramp("m", 100)]),
    )  # fmt: skip
    source.poll(T0 + 10_000)
    batch = source.poll(T0 + 11_000)
    assert batch.ts.tolist() == [T0 + 11_000] and batch.value.tolist() == [11.0]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"[]", "answer is not a JSON object"),
        (b'{"status":"success"}', "malformed answer (no data object)"),
        (b'{"status":"success","data":{"resultType":"matrix","result":[1]}}', "malformed result"),
        (
            b'{"status":"success","data":{"resultType":"matrix",'
            b'"result":[{"metric":["a"],"values":[]}]}}',
            "malformed series labels",
        ),
        (
            b'{"status":"success","data":{"resultType":"matrix",'
            b'"result":[{"metric":{},"values":[[1,"2","3"]]}]}}',
            "malformed samples",
        ),
    ],
)
def test_malformed_answers_are_source_errors_not_crashes(body: bytes, fragment: str) -> None:
    with PrometheusClient(URL, transport=_answer(200, body)) as client:
        with pytest.raises(SourceError) as err:
            client.query_range("up", T0, T0, 1.0)
    assert fragment in str(err.value)


def test_an_instant_query_answered_with_a_matrix_is_a_source_error() -> None:
    body = b'{"status":"success","data":{"resultType":"matrix","result":[]}}'
    with PrometheusClient(URL, transport=_answer(200, body)) as client:
        with pytest.raises(SourceError, match="expected a vector result, got 'matrix'"):
            client.query("up")


def test_an_answer_that_is_not_text_is_a_source_error() -> None:
    with PrometheusClient(URL, transport=_answer(502, b"\x80\x81 gateway")) as client:
        with pytest.raises(SourceError, match="HTTP 502, answer is not JSON"):
            client.query_range("up", T0, T0, 1.0)


def test_a_connection_dropped_mid_answer_is_a_source_error() -> None:
    def drop(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("Server disconnected", request=request)

    with PrometheusClient(URL, transport=httpx.MockTransport(drop)) as client:
        with pytest.raises(SourceError, match="cannot reach Prometheus: Server disconnected"):
            client.query_range("up", T0, T0, 1.0)


def test_the_step_asked_is_the_millisecond_step_the_range_is_cut_on() -> None:
    # Prometheus would evaluate at 1.0004 s intervals, off the millisecond grid of the chunks.
    transport = fake_prometheus_transport([ramp("m", 10)])
    with PrometheusClient(URL, transport=transport) as client:
        (r,) = client.query_range("m", T0, T0 + 5000, 1.0004)
    assert transport.calls[0][1]["step"] == "1"
    assert r.ts.tolist() == [T0 + i * 1000 for i in range(6)]


def test_a_source_step_below_a_millisecond_is_one_millisecond() -> None:
    # relia.yaml refuses it, but a source built in code may be given one: it polls on a 1 ms
    # grid rather than failing every poll with "step must be positive".
    index = SeriesIndex()
    source = PrometheusSource(
        "p", URL, [("m", 0.0004)], index, lookback_s=0.003,
        transport=fake_prometheus_transport([ramp("m", 10)]),
    )  # fmt: skip
    batch = source.poll(T0 + 5_000)
    assert batch.ts.tolist() == [T0 + 4_997, T0 + 4_998, T0 + 4_999, T0 + 5_000]


def test_a_lookback_is_kept_to_the_millisecond() -> None:
    # 1.001 s is 1000.9999999999999 ms as a float: the first poll reaches 1001 ms back.
    index = SeriesIndex()
    source = PrometheusSource(
        "p", URL, [("m", 0.001)], index, lookback_s=1.001,
        transport=fake_prometheus_transport([ramp("m", 10)]),
    )  # fmt: skip
    assert source.poll(T0 + 5_000).ts[0] == T0 + 5_000 - 1_001


def test_chunks_listing_labels_in_another_order_are_one_series() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        start = float(dict(httpx.QueryParams(request.content.decode()))["start"])
        labels = [("a", "1"), ("b", "2"), ("__name__", "m")]
        metric = dict(labels if start * 1000 < T0 + 5_000 else labels[::-1])
        result = [{"metric": metric, "values": [[start, "1"]]}]
        body = {"status": "success", "data": {"resultType": "matrix", "result": result}}
        return httpx.Response(200, json=body)

    with PrometheusClient(URL, transport=httpx.MockTransport(handle)) as client:
        result = client.query_range("m", T0, T0 + 15_000, 0.001)  # two chunks
    assert len(result) == 1 and result[0].ts.tolist() == [T0, T0 + 10_000]


def test_an_error_answer_without_an_error_type_still_reads_well() -> None:
    body = b'{"status":"error","error":"overloaded"}'
    with PrometheusClient(URL, transport=_answer(503, body)) as client:
        with pytest.raises(SourceError, match=r"HTTP 503 \(error\): overloaded$"):
            client.query_range("up", T0, T0, 1.0)


def test_series_over_the_limit_are_dropped_and_the_others_kept() -> None:
    index = SeriesIndex(max_series=2)
    series = [ramp("m", 100, a="1"), ramp("m", 100, a="2"), ramp("m", 100, a="3"), ramp("n", 100)]
    source = PrometheusSource(
        "prom",
        URL,
        [("m", 1.0), ("n", 1.0)],
        index,
        lookback_s=10,
        transport=fake_prometheus_transport(series),
    )
    batch = source.poll(T0 + 50_000)
    kept = {index.key(int(s)) for s in batch.series_id}
    assert len(kept) == 2 and len(index) == 2
    assert ("n", ()) not in kept
    assert len(batch) == 2 * 11  # every sample of the two kept series
    assert index.refused() == {"prom": 2}


def test_errors_do_not_show_the_password_of_the_url() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    client = PrometheusClient(
        "http://admin:s3cret@127.0.0.1:9", transport=httpx.MockTransport(refuse)
    )
    with pytest.raises(SourceError) as err:
        client.query("up")
    assert "s3cret" not in str(err.value)
    assert str(err.value).startswith("http://admin:***@127.0.0.1:9/api/v1/query: cannot reach")


# -- a whole-request timeout, redirects, and the evaluation delay ------------------------------


def test_the_timeout_bounds_an_answer_that_trickles_in() -> None:
    answer = (
        b'{"status":"success",\n' + b" \n" * 40 + b'"data":{"resultType":"matrix","result":[]}}'
    )
    with slow_server(answer, every=0.3, ctype="application/json") as url:
        with PrometheusClient(url, timeout=1.0) as client:
            started = time.monotonic()
            with pytest.raises(QueryTimeout, match="did not answer within 1s"):
                client.query_range("up", T0, T0, 1.0)
            assert time.monotonic() - started < 1.8  # not the 12 s the answer takes


def test_the_timeout_bounds_an_answer_whose_headers_trickle_in() -> None:
    # The status line, then a header byte every 0.2 s for ever: each read is inside httpx's
    # per-read timeout, so only a deadline on the whole request ends it.
    with slow_server(b"", header_every=0.2) as url:
        with PrometheusClient(url, timeout=0.5) as client:
            took, error = timed(lambda: client.query_range("up", T0, T0, 1.0))
    assert isinstance(error, QueryTimeout)
    assert str(error) == f"{url}/api/v1/query_range: Prometheus did not answer within 0.5s"
    assert took < 2.0


def _moved(status: int, location: str | None, then: httpx.BaseTransport) -> httpx.MockTransport:
    """``prom.test`` answers ``status`` with ``location``; any other host is ``then``."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.host == "prom.test":
            headers = {} if location is None else {"Location": location}
            return httpx.Response(status, headers=headers)
        return then.handle_request(request)

    return httpx.MockTransport(handle)


@pytest.mark.parametrize("status", [307, 308])
@pytest.mark.parametrize(
    "location", ["http://new.test:9090/api/v1/query_range", "//new.test:9090/api/v1/query_range"]
)
def test_a_307_or_308_redirect_is_followed_with_the_query(status: int, location: str) -> None:
    seen: list[tuple[str, str, bytes]] = []
    fake = fake_prometheus_transport([ramp("m", 10)])

    def record(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, str(request.url), request.read()))
        return fake.handle_request(request)

    transport = _moved(status, location, httpx.MockTransport(record))
    with PrometheusClient(URL, transport=transport) as client:
        (r,) = client.query_range("m", T0, T0 + 3000, 1.0)
    assert r.values.tolist() == [0.0, 1.0, 2.0, 3.0]
    ((method, url, body),) = seen
    assert method == "POST" and url == "http://new.test:9090/api/v1/query_range"
    assert b"query=m" in body


@pytest.mark.parametrize(
    ("status", "location", "message"),
    [
        (
            301,
            "https://prom.example/api/v1/query_range",
            "HTTP 301: Prometheus redirects to https://prom.example/api/v1/query_range; "
            "use that URL",
        ),
        (
            302,
            "https://user:secret@prom.example/api/v1/query_range",
            "HTTP 302: Prometheus redirects to https://user:***@prom.example/api/v1/query_range",
        ),
        (303, "/elsewhere", "HTTP 303: Prometheus redirects to http://prom.test:9090/elsewhere"),
        (302, None, "HTTP 302 redirect without a Location header"),
        (308, "/api/v1/query_range", "more than 20 redirects, the last to http://prom.test:9090"),
    ],
)
def test_a_redirect_not_followed_says_where_it_goes(
    status: int, location: str | None, message: str
) -> None:
    transport = _moved(status, location, fake_prometheus_transport([]))
    with PrometheusClient(URL, transport=transport) as client:
        with pytest.raises(SourceError) as err:
            client.query_range("m", T0, T0, 1.0)
    assert message in str(err.value) and str(err.value).startswith(URL)
    assert "secret" not in str(err.value) and not isinstance(err.value, QueryRefused)


def test_a_redirect_on_the_same_server_keeps_the_urls_credentials() -> None:
    auths: list[str | None] = []
    fake = fake_prometheus_transport([ramp("m", 10)])

    def handle(request: httpx.Request) -> httpx.Response:
        auths.append(request.headers.get("Authorization"))
        if request.url.path == "/old/api/v1/query_range":
            return httpx.Response(308, headers={"Location": "/api/v1/query_range"})
        return fake.handle_request(request)

    url = "http://u:p@prom.test:9090/old"
    with PrometheusClient(url, transport=httpx.MockTransport(handle)) as client:
        assert len(client.query_range("m", T0, T0, 1.0)) == 1
    assert len(auths) == 2 and auths[0] is not None and auths[1] == auths[0]


@pytest.mark.parametrize(
    "location",
    [
        "http://prom.test:9091/api/v1/query_range",  # the same host, another port
        "https://prom.test:9090/api/v1/query_range",  # another scheme
        "http://prom.test/api/v1/query_range",  # the default port, 80
        "http://other.test:9090/api/v1/query_range",  # another host
    ],
)
def test_a_redirect_to_another_origin_is_not_given_the_urls_credentials(location: str) -> None:
    # Only the host and scheme were compared: a 307 to another port on the same host got the
    # user and password.
    seen: list[tuple[str, str | None]] = []
    fake = fake_prometheus_transport([ramp("m", 10)])

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append((str(request.url), request.headers.get("Authorization")))
        if request.url.port == 9090 and request.url.path == "/old/api/v1/query_range":
            return httpx.Response(307, headers={"Location": location})
        return fake.handle_request(request)

    url = "http://u:PWSECRET@prom.test:9090/old"
    with PrometheusClient(url, transport=httpx.MockTransport(handle)) as client:
        assert len(client.query_range("m", T0, T0, 1.0)) == 1
    (first_url, first_auth), (second_url, second_auth) = seen
    assert first_auth is not None and second_auth is None
    assert second_url == location and "PWSECRET" not in second_url and "@" not in second_url


def _lagging_prometheus(clock: list[int], lag_ms: int) -> httpx.MockTransport:
    """A Prometheus whose series is worth ``t // 1000`` at ``t``, but stores a sample ``lag_ms``
    after its time (when its scrape ends): a step it does not have yet gets the latest it has."""

    def handle(request: httpx.Request) -> httpx.Response:
        form = urllib.parse.parse_qs(request.content.decode())
        start, end = (round(float(form[k][0]) * 1000) for k in ("start", "end"))
        step = round(float(form["step"][0]) * 1000)
        stored = clock[0] - lag_ms
        values = [[t / 1000, str(min(t, stored) // 1000)] for t in range(start, end + 1, step)]
        result = [{"metric": {"__name__": "slow_value"}, "values": values}]
        body = {"status": "success", "data": {"resultType": "matrix", "result": result}}
        return httpx.Response(200, json=body)

    return httpx.MockTransport(handle)


def test_a_source_asks_only_up_to_its_delay_so_it_stores_what_prometheus_will_keep() -> None:
    clock = [T0]
    index = SeriesIndex()
    source = PrometheusSource(
        "prom",
        URL,
        [("slow_value", 1.0)],
        index,
        lookback_s=10,
        transport=_lagging_prometheus(clock, lag_ms=3000),
        delay_s=5,
    )
    polled: dict[int, float] = {}
    for i in range(40):
        clock[0] = T0 + i * 1000 + 250
        batch = source.poll(clock[0])
        polled.update(zip(batch.ts.tolist(), batch.value.tolist(), strict=True))
    assert max(polled) == T0 + 34_000  # 5 s behind the last poll, on the step grid
    assert len(polled) == 50  # the 10 s lookback, then every step once
    # Asked again later, Prometheus answers the same for every time polled live.
    assert all(v == t // 1000 for t, v in polled.items())
