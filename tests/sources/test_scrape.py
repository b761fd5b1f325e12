"""Exposition parsing (text 0.0.4 and OpenMetrics 1.0) and ScrapeSource against fakes."""

from __future__ import annotations

import gzip
import logging
import time

import httpx
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from relia.errors import SourceError
from relia.signals import MetricBatch, SeriesIndex, describe
from relia.sources.base import MetricSource
from relia.sources.fakes import fake_scrape_transport
from relia.sources.scrape import ACCEPT, ScrapeSource, parse_exposition
from tests.slow_http import slow_server, timed

NOW = 1_700_000_000_000

TEXT = """\
# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000

# A histogram
# TYPE latency_seconds histogram
latency_seconds_bucket{le="0.5"} 1
latency_seconds_bucket{le="+Inf"} 2
latency_seconds_sum 0.7
latency_seconds_count 2
temperature{job="exporter-side"} NaN
"""

OPENMETRICS = """\
# TYPE jobs counter
# HELP jobs Jobs run.
jobs_total{queue="a"} 5.0 1700000001.250
# TYPE up_gauge gauge
up_gauge 1
# EOF
"""


def as_dict(index: SeriesIndex, batch: MetricBatch) -> dict[str, tuple[int, float]]:
    """``{promql text of the series: (ts, value)}``."""
    cols = (batch.series_id.tolist(), batch.ts.tolist(), batch.value.tolist())
    return {describe(index.key(sid)): (ts, v) for sid, ts, v in zip(*cols, strict=True)}


def test_text_format() -> None:
    index = SeriesIndex()
    got = as_dict(index, parse_exposition(TEXT, index, NOW))
    assert got['http_requests_total{code="200",method="post"}'] == (1395066363000, 1027.0)
    assert got['http_requests_total{code="400",method="post"}'] == (1395066363000, 3.0)
    assert got['latency_seconds_bucket{le="0.5"}'] == (NOW, 1.0)
    assert got['latency_seconds_bucket{le="+Inf"}'] == (NOW, 2.0)
    assert got["latency_seconds_sum"] == (NOW, 0.7)
    assert np.isnan(got['temperature{job="exporter-side"}'][1])
    assert len(got) == 7


def test_openmetrics_format_and_extra_labels() -> None:
    index = SeriesIndex()
    extra = {"job": "svc", "instance": "h:1"}
    got = as_dict(index, parse_exposition(OPENMETRICS, index, NOW, extra))
    assert got['jobs_total{instance="h:1",job="svc",queue="a"}'] == (1_700_000_001_250, 5.0)
    assert got['up_gauge{instance="h:1",job="svc"}'] == (NOW, 1.0)


def test_clashing_labels_are_kept_as_exported() -> None:
    index = SeriesIndex()
    got = as_dict(index, parse_exposition(TEXT, index, NOW, {"job": "scraper"}))
    assert 'temperature{exported_job="exporter-side",job="scraper"}' in got


def test_same_series_same_id_across_scrapes() -> None:
    index = SeriesIndex()
    a = parse_exposition(TEXT, index, NOW)
    b = parse_exposition(TEXT, index, NOW + 1000)
    assert a.series_id.tolist() == b.series_id.tolist()


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ('ok 1\nbad{a="b" 1\n', "line 2"),
        ("# TYPE x gauge\nx 1\n# EOF\nafter 1\n", "OpenMetrics"),
        ("g 1\nh two\n", "line 2: 'h two'"),
    ],
)
def test_invalid_text_is_source_error_with_line(text: str, fragment: str) -> None:
    with pytest.raises(SourceError) as err:
        parse_exposition(text, SeriesIndex(), NOW, openmetrics="# EOF" in text or None)
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_openmetrics_without_eof_is_an_error_when_declared() -> None:
    with pytest.raises(SourceError, match="EOF"):
        parse_exposition("g 1\n", SeriesIndex(), NOW, openmetrics=True)


_line = st.one_of(
    st.sampled_from(
        [
            "# TYPE a counter",
            "# HELP a help",
            "a_total 1",
            'b{x="1"} 2 1700000000000',
            'c{le="+Inf"} NaN',
            "# EOF",
            "",
            "d -Inf",
            'e{x="\\"q\\""} 1e3',
        ]
    ),
    st.text(max_size=20),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(_line, max_size=8).map("\n".join))
def test_random_exposition_parses_or_raises_source_error(text: str) -> None:
    try:
        batch = parse_exposition(text, SeriesIndex(), NOW)
    except SourceError as exc:
        assert "\n" not in str(exc)
        return
    assert batch.ts.dtype == np.int64


def test_scrape_source_adds_target_labels_and_up() -> None:
    seen: list[httpx.Request] = []
    inner = fake_scrape_transport(TEXT)

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return inner.handle_request(request)

    index = SeriesIndex()
    source = ScrapeSource(
        "api", "http://10.0.0.5:8080/metrics", index, transport=httpx.MockTransport(handle)
    )
    assert isinstance(source, MetricSource)
    got = as_dict(index, source.poll(NOW))
    assert seen[0].headers["accept"] == ACCEPT
    assert got['up{instance="10.0.0.5:8080",job="api"}'] == (NOW, 1.0)
    assert 'latency_seconds_count{instance="10.0.0.5:8080",job="api"}' in got
    assert source.last_error is None


def test_scrape_source_openmetrics_content_type() -> None:
    index = SeriesIndex()
    transport = fake_scrape_transport(
        OPENMETRICS, "application/openmetrics-text; version=1.0.0; charset=utf-8"
    )
    source = ScrapeSource("om", "https://example.test/metrics", index, transport=transport)
    got = as_dict(index, source.poll(NOW))
    assert got['jobs_total{instance="example.test:443",job="om",queue="a"}'][1] == 5.0


@pytest.mark.parametrize(
    ("transport", "fragment"),
    [
        (fake_scrape_transport("nope", status_code=503), "HTTP 503"),
        (fake_scrape_transport("x{ 1\n"), "invalid Prometheus text exposition"),
        (
            httpx.MockTransport(
                lambda r: (_ for _ in ()).throw(httpx.ConnectError("refused", request=r))
            ),
            "cannot reach target: refused",
        ),
    ],
)
def test_scrape_failure_gives_up_zero_and_logs(
    transport: httpx.MockTransport, fragment: str, caplog: pytest.LogCaptureFixture
) -> None:
    index = SeriesIndex()
    source = ScrapeSource("bad", "http://[::1]:9100/metrics", index, transport=transport)
    with caplog.at_level(logging.WARNING, logger="relia.sources.scrape"):
        batch = source.poll(NOW)
    assert len(batch) == 1
    assert describe(index.key(int(batch.series_id[0]))) == 'up{instance="[::1]:9100",job="bad"}'
    assert batch.value[0] == 0.0 and batch.ts[0] == NOW
    assert source.last_error is not None and fragment in source.last_error
    assert any(fragment in rec.getMessage() for rec in caplog.records)


def test_a_page_larger_than_the_limit_is_a_failed_scrape_not_memory_spent() -> None:
    # An exporter gone wrong (a label with a request id in it) can serve gigabytes: the page is
    # read in pieces and given up at the limit, gzip-compressed pages by their decoded size.
    page = "# TYPE temperature gauge\n" + "".join(f'temperature{{i="{i}"}} 1\n' for i in range(100))
    size = len(page.encode())
    index = SeriesIndex()
    at_limit = ScrapeSource(
        "app", "http://h:9100/metrics", index, transport=fake_scrape_transport(page),
        max_body_bytes=size,
    )  # fmt: skip
    assert len(at_limit.poll(NOW)) == 101 and at_limit.last_error is None
    gzipped = httpx.MockTransport(
        lambda r: httpx.Response(
            200, content=gzip.compress(page.encode()),
            headers={"Content-Type": "text/plain", "Content-Encoding": "gzip"},
        )
    )  # fmt: skip
    for transport in (fake_scrape_transport(page), gzipped):
        over = ScrapeSource(
            "app", "http://h:9100/metrics", index, transport=transport, max_body_bytes=size - 1
        )
        batch = over.poll(NOW)
        assert len(batch) == 1 and batch.value[0] == 0.0  # up = 0
        assert over.last_error == (
            f"http://h:9100/metrics: the page is larger than {size - 1} bytes (max_body_bytes)"
        )


# -- counters: raw value kept, a derived `:rate` series added --------------------------------


def _pages(*pages: str | None) -> httpx.MockTransport:
    """Answers the n-th request with the n-th page (``None``: HTTP 503)."""
    queue = list(pages)

    def handle(request: httpx.Request) -> httpx.Response:
        page = queue.pop(0)
        if page is None:
            return httpx.Response(503)
        ctype = "application/openmetrics-text" if page.endswith("# EOF\n") else "text/plain"
        return httpx.Response(200, content=page.encode(), headers={"Content-Type": ctype})

    return httpx.MockTransport(handle)


def _counter_page(requests: float) -> str:
    return (
        "# TYPE http_requests_total counter\n"
        f'http_requests_total{{code="200"}} {requests}\n'
        "# TYPE temperature gauge\n"
        "temperature 21.5\n"
        "# TYPE latency_seconds histogram\n"
        'latency_seconds_bucket{le="+Inf"} 7\n'
        "latency_seconds_count 7\n"
        "latency_seconds_sum 1.5\n"
    )


def _polls(
    *pages: str | None, every_ms: int = 15_000
) -> tuple[SeriesIndex, list[dict[str, float]]]:
    """Poll a source once per page, ``every_ms`` apart; ``{series: value}`` of each poll."""
    index = SeriesIndex()
    source = ScrapeSource("app", "http://h:9100/metrics", index, transport=_pages(*pages))
    out = []
    for i in range(len(pages)):
        got = as_dict(index, source.poll(NOW + i * every_ms))
        out.append({k: v for k, (_, v) in got.items()})
    return index, out


RATE = 'http_requests_total:rate{code="200",instance="h:9100",job="app"}'
RAW = 'http_requests_total{code="200",instance="h:9100",job="app"}'


def test_counter_gets_a_rate_series_and_keeps_its_raw_value() -> None:
    _, polls = _polls(_counter_page(1000), _counter_page(1300))
    assert RATE not in polls[0]  # the first scrape has nothing to compare with
    assert polls[0][RAW] == 1000.0 and polls[1][RAW] == 1300.0
    assert polls[1][RATE] == pytest.approx(300 / 15)
    # Only counters get a rate: not gauges, nor the histogram's series.
    assert [k for k in polls[1] if ":rate" in k] == [RATE]


def test_counter_reset_counts_from_zero() -> None:
    _, polls = _polls(_counter_page(1000), _counter_page(1300), _counter_page(45))
    # The target restarted: it has counted 45 since, so the rate is 45 / 15 s, never negative.
    assert polls[2][RATE] == pytest.approx(3.0)


def test_rate_spans_failed_scrapes_and_nan_samples() -> None:
    _, polls = _polls(_counter_page(1000), None, _counter_page(float("nan")), _counter_page(1600))
    assert RATE not in polls[1]  # the failed scrape: only up = 0
    assert np.isnan(polls[2][RATE])  # a missing value stays missing
    # The increase since the last good sample, spread over the 45 s since it.
    assert polls[3][RATE] == pytest.approx(600 / 45)


def test_a_counter_missing_from_a_scrape_starts_afresh() -> None:
    gone = "# TYPE temperature gauge\ntemperature 20\n"
    _, polls = _polls(_counter_page(1000), gone, _counter_page(1300), _counter_page(1330))
    assert RATE not in polls[2]  # stale, as in Prometheus: no rate across its absence
    assert polls[3][RATE] == pytest.approx(2.0)


def test_openmetrics_counter_total_gets_a_rate_created_does_not() -> None:
    def page(n: int, ts: str) -> str:
        return (
            "# TYPE jobs counter\n"
            f'jobs_total{{queue="a"}} {n} {ts}\n'
            f'jobs_created{{queue="a"}} 1700000000.0 {ts}\n'
            "# EOF\n"
        )

    index = SeriesIndex()
    pages = _pages(page(10, "1700000001.0"), page(10, "1700000001.0"), page(40, "1700000011.0"))
    source = ScrapeSource("om", "http://h:1/metrics", index, transport=pages)
    batches = [as_dict(index, source.poll(NOW + i * 15_000)) for i in range(3)]
    rate = 'jobs_total:rate{instance="h:1",job="om",queue="a"}'
    # The exporter's own timestamps: a repeated sample (same time) gives no rate ...
    assert rate not in batches[0] and rate not in batches[1]
    # ... and the rate uses them (30 in 10 s), stamped with the sample's time.
    assert batches[2][rate] == (1_700_000_011_000, pytest.approx(3.0))
    assert not any(k.startswith("jobs_created:rate") for b in batches for k in b)


def test_counters_map_raw_series_to_their_rate_series() -> None:
    index = SeriesIndex()
    source = ScrapeSource("app", "http://h:9100/metrics", index, transport=_pages(_counter_page(1)))
    source.poll(NOW)
    raw = index.find("http_requests_total", {"code": "200", "instance": "h:9100", "job": "app"})
    assert raw is not None
    assert describe(index.key(source.counters[raw])) == RATE
    assert len(source.counters) == 1


def test_infinite_samples_are_missing_like_nan() -> None:
    pages = [_counter_page(v) for v in (1000, float("inf"), 1600, float("-inf"), 1700)]
    _, polls = _polls(*pages)
    # No rate of +/-inf (a -inf rate would be a negative rate), as counter_to_rate: NaN ...
    assert np.isnan(polls[1][RATE]) and np.isnan(polls[3][RATE])
    # ... and the last finite sample stays the reference, so the rate spans the gap.
    assert polls[2][RATE] == pytest.approx(600 / 30)
    assert polls[4][RATE] == pytest.approx(100 / 30)


def test_a_nan_first_sample_gives_no_rate_and_no_reference() -> None:
    _, polls = _polls(_counter_page(float("nan")), _counter_page(1000), _counter_page(1300))
    assert RATE not in polls[0] and RATE not in polls[1]  # nothing finite to compare with yet
    assert polls[2][RATE] == pytest.approx(300 / 15)


def test_a_sample_not_after_the_previous_one_is_ignored() -> None:
    def page(n: int, ts: str) -> str:
        return f"# TYPE jobs counter\njobs_total {n} {ts}\n# EOF\n"

    index = SeriesIndex()
    stamps = [("10", "1700000001.0"), ("20", "1700000001.0"), ("15", "1700000000.5")]
    pages = _pages(*(page(int(n), ts) for n, ts in stamps), page(40, "1700000011.0"))
    source = ScrapeSource("om", "http://h:1/metrics", index, transport=pages)
    batches = [as_dict(index, source.poll(NOW + i * 15_000)) for i in range(4)]
    rate = 'jobs_total:rate{instance="h:1",job="om"}'
    # The same time again, or an earlier one: no rate (never a negative dt) ...
    assert rate not in batches[1] and rate not in batches[2]
    # ... and neither replaces the reference: 30 counted in the 10 s since the first sample.
    assert batches[3][rate] == (1_700_000_011_000, pytest.approx(3.0))


def test_only_counter_families_get_a_rate_whatever_the_name() -> None:
    def page(n: int) -> str:
        return f"# TYPE queue_total gauge\nqueue_total {n}\nlegacy_total {n}\n"

    _, polls = _polls(page(5), page(50))
    assert not [k for k in polls[1] if ":rate" in k]  # a gauge, and a sample with no TYPE


def test_each_counter_series_gets_its_own_rate() -> None:
    def page(ok: int, err: int) -> str:
        return (
            "# TYPE http_requests_total counter\n"
            f'http_requests_total{{code="200"}} {ok}\n'
            f'http_requests_total{{code="500"}} {err}\n'
        )

    _, polls = _polls(page(1000, 10), page(1300, 40), page(1600, 7))
    err = RATE.replace('code="200"', 'code="500"')
    assert polls[1][RATE] == pytest.approx(20.0) and polls[1][err] == pytest.approx(2.0)
    # Only the 500s' counter restarted.
    assert polls[2][RATE] == pytest.approx(20.0) and polls[2][err] == pytest.approx(7 / 15)


def _assert_scrape_rates_equal_counter_to_rate(
    steps: list[tuple[int, bool, int, float | None]],
) -> None:
    """Scrape a counter that grows by ``inc`` (or restarts at it) every ``gap_s`` seconds, its
    sample replaced by ``missing`` where that is given; the rates must be counter_to_rate's."""
    from relia.detect.preprocess import counter_to_rate

    values: list[float] = []
    stamps: list[int] = []
    value, t = 0, NOW
    for inc, restart, gap_s, missing in steps:
        value = inc if restart and inc < value else value + inc
        t += gap_s * 1000
        values.append(float(value) if missing is None else missing)
        stamps.append(t)
    index = SeriesIndex()
    source = ScrapeSource(
        "app", "http://h:9100/metrics", index, transport=_pages(*map(_counter_page, values))
    )
    got = [as_dict(index, source.poll(s)).get(RATE, (0, np.nan))[1] for s in stamps]
    expected = counter_to_rate(np.array(stamps), np.array(values))[1]
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 10_000), st.booleans(), st.integers(1, 120)),
        min_size=2,
        max_size=20,
    )
)
def test_scrape_rates_equal_counter_to_rate(steps: list[tuple[int, bool, int]]) -> None:
    # The source and `relia detect --counter` share one definition of a counter's rate.
    _assert_scrape_rates_equal_counter_to_rate([(*step, None) for step in steps])


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 10_000),
            st.booleans(),
            st.integers(1, 120),
            st.sampled_from([None, float("nan"), float("inf"), float("-inf")]),
        ),
        min_size=2,
        max_size=20,
    )
)
def test_scrape_rates_equal_counter_to_rate_with_missing_samples(
    steps: list[tuple[int, bool, int, float | None]],
) -> None:
    # A NaN or infinite sample is missing for both, and the next rate spans the gap.
    _assert_scrape_rates_equal_counter_to_rate(steps)


def test_scrape_source_keeps_its_own_interval() -> None:
    calls: list[int] = []
    inner = fake_scrape_transport(TEXT)

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return inner.handle_request(request)

    index = SeriesIndex()
    source = ScrapeSource(
        "api", "http://h:1/metrics", index, transport=httpx.MockTransport(handle), interval=30.0
    )
    sizes = [len(source.poll(NOW + dt)) for dt in (0, 10_000, 29_999, 30_000, 45_000, 95_000)]
    # Scraped at 0, 30 s and 95 s (60 s was skipped by a slow tick: the grid moves on to 120 s).
    assert len(calls) == 3
    assert [n > 0 for n in sizes] == [True, False, False, True, False, True]
    assert len(source.poll(NOW + 119_999)) == 0
    assert len(source.poll(NOW + 120_000)) > 0


def test_scrape_health_is_exported_per_target() -> None:
    from prometheus_client import CollectorRegistry

    from relia.sources.scrape import ScrapeMetrics

    registry = CollectorRegistry()
    metrics = ScrapeMetrics(registry)
    index = SeriesIndex()
    good = ScrapeSource(
        "good", "http://h:1/metrics", index, transport=fake_scrape_transport(TEXT), metrics=metrics
    )
    bad = ScrapeSource(
        "bad",
        "http://h:2/metrics",
        index,
        transport=fake_scrape_transport("", status_code=503),
        metrics=metrics,
    )
    n = len(good.poll(NOW))
    bad.poll(NOW)
    bad.poll(NOW + 1000)

    def value(name: str, target: str) -> float | None:
        return registry.get_sample_value(name, {"target": target})

    assert value("relia_scrape_up", "good") == 1.0
    assert value("relia_scrape_up", "bad") == 0.0
    assert value("relia_scrape_failures_total", "bad") == 2.0
    assert value("relia_scrape_failures_total", "good") is None
    # every sample but the synthetic up series and the rates of the counters
    assert value("relia_scrape_samples", "good") == n - 1
    for target in ("good", "bad"):  # a failed scrape's time is measured too
        duration = value("relia_scrape_duration_seconds", target)
        assert duration is not None and duration >= 0.0


@settings(max_examples=100, deadline=None)
@given(st.integers(min_value=0, max_value=4_000_000_000_000))
@example(2_148_931_970_140)  # 2148931970.14 s is 2148931970139.9998 ms as a float
def test_a_text_format_timestamp_is_kept_to_the_millisecond(ts: int) -> None:
    batch = parse_exposition(f"g 1 {ts}\n", SeriesIndex(), NOW, max_future_ms=None)
    assert batch.ts.tolist() == [ts]


def test_a_scraped_sample_too_far_ahead_is_dropped_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    index = SeriesIndex()
    soon, century = NOW + 60_000, NOW + 100 * 365 * 86_400_000
    text = f'a 1 {soon}\nb{{x="1"}} 2 {century}\nc 3\n'
    with caplog.at_level(logging.WARNING):
        batch = parse_exposition(text, index, NOW, source="t")
    assert sorted(index.key(int(s))[0] for s in batch.series_id) == ["a", "c"]
    assert "1 samples timestamped over 600s ahead" in caplog.text
    assert f'the first b{{x="1"}} at {century}' in caplog.text


@pytest.mark.parametrize(
    ("text", "openmetrics", "fragment"),
    [
        ("a 1\n# EOF junk\n", True, "OpenMetrics exposition at line 2: '# EOF junk'"),
        ("# TYPE a\n", None, "invalid Prometheus text exposition: ValueError"),  # no reason given
        ("a\t1 x\n# EOF\n", True, "invalid metric name:a 1 x"),  # one line, tabs as spaces
    ],
)
def test_parse_errors_say_where_and_why_on_one_line(
    text: str, openmetrics: bool | None, fragment: str
) -> None:
    with pytest.raises(SourceError) as err:
        parse_exposition(text, SeriesIndex(), NOW, openmetrics=openmetrics)
    assert fragment in str(err.value) and "\t" not in str(err.value)


def test_openmetrics_false_reads_the_classic_format_even_with_an_eof_line() -> None:
    # The classic format's timestamps are milliseconds, OpenMetrics' seconds.
    batch = parse_exposition("g 1 1700000000000\n# EOF\n", SeriesIndex(), NOW, openmetrics=False)
    assert batch.ts.tolist() == [1_700_000_000_000]


def test_a_url_without_port_gets_the_scheme_default_port_as_instance() -> None:
    index = SeriesIndex()
    source = ScrapeSource("web", "http://h/metrics", index, transport=fake_scrape_transport(TEXT))
    got = as_dict(index, source.poll(NOW))
    assert got['up{instance="h:80",job="web"}'] == (NOW, 1.0)


def _slow(request: httpx.Request) -> httpx.Response:
    raise httpx.ReadTimeout("timed out", request=request)


def test_a_redirected_target_is_followed_as_prometheus_follows_it() -> None:
    page = fake_scrape_transport(TEXT)

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/metrics":  # moved behind a proxy path
            return httpx.Response(301, headers={"Location": "/app/metrics"})
        return page.handle_request(request)

    index = SeriesIndex()
    source = ScrapeSource("api", "http://h:1/metrics", index, transport=httpx.MockTransport(handle))
    got = as_dict(index, source.poll(NOW))
    assert got['up{instance="h:1",job="api"}'] == (NOW, 1.0)
    assert 'latency_seconds_count{instance="h:1",job="api"}' in got

    def loop(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "/metrics"})

    looping = ScrapeSource("t", "http://h:1/metrics", index, transport=httpx.MockTransport(loop))
    batch = looping.poll(NOW)
    assert len(batch) == 1 and batch.value[0] == 0.0  # a failed scrape, not a hang
    assert looping.last_error is not None and "redirects" in looping.last_error


@pytest.mark.parametrize(
    ("transport", "timeout", "error"),
    [
        (
            fake_scrape_transport("", status_code=204),
            5.0,
            "http://h:1/metrics: HTTP 204 No Content",
        ),
        (httpx.MockTransport(_slow), 2.0, "http://h:1/metrics: no answer within 2s"),
        (
            # declared OpenMetrics (any case) and cut short: no `# EOF`, so not all there
            fake_scrape_transport("g 1\n", "Application/OpenMetrics-Text; version=1.0.0"),
            5.0,
            "http://h:1/metrics: invalid OpenMetrics exposition: Missing # EOF at end",
        ),
    ],
)
def test_what_makes_a_failed_scrape(
    transport: httpx.MockTransport, timeout: float, error: str
) -> None:
    index = SeriesIndex()
    source = ScrapeSource("t", "http://h:1/metrics", index, transport=transport, timeout=timeout)
    batch = source.poll(NOW)
    assert len(batch) == 1 and batch.series_id[0] == source.up_id and batch.value[0] == 0.0
    assert source.last_error == error


def test_a_page_is_decoded_with_its_charset_and_bad_bytes_do_not_fail_it() -> None:
    index = SeriesIndex()
    latin1 = httpx.MockTransport(
        lambda r: httpx.Response(
            200, content='g{city="Zürich"} 1\n'.encode("latin-1"),
            headers={"Content-Type": "text/plain; version=0.0.4; charset=iso-8859-1"},
        )
    )  # fmt: skip
    source = ScrapeSource("a", "http://h:1/metrics", index, transport=latin1)
    assert 'g{city="Zürich",instance="h:1",job="a"}' in as_dict(index, source.poll(NOW))
    broken = httpx.MockTransport(
        lambda r: httpx.Response(
            200, content=b'g{city="Z\xffrich"} 1\n', headers={"Content-Type": "text/plain"}
        )
    )
    source = ScrapeSource("b", "http://h:2/metrics", index, transport=broken)
    got = as_dict(index, source.poll(NOW))
    assert got['g{city="Z\ufffdrich",instance="h:2",job="b"}'] == (NOW, 1.0)
    assert source.last_error is None


def test_a_scrape_that_works_again_clears_the_error() -> None:
    index = SeriesIndex()
    source = ScrapeSource("app", "http://h:9100/metrics", index, transport=_pages(None, TEXT))
    source.poll(NOW)
    assert source.last_error == "http://h:9100/metrics: HTTP 503 Service Unavailable"
    assert as_dict(index, source.poll(NOW + 15_000))['up{instance="h:9100",job="app"}'][1] == 1.0
    assert source.last_error is None


def test_a_connection_dropped_mid_page_is_a_failed_scrape() -> None:
    def drop(request: httpx.Request) -> httpx.Response:
        raise httpx.RemoteProtocolError("Server disconnected", request=request)

    index = SeriesIndex()
    source = ScrapeSource("t", "http://h:1/metrics", index, transport=httpx.MockTransport(drop))
    batch = source.poll(NOW)
    assert len(batch) == 1 and batch.value[0] == 0.0
    assert source.last_error == "http://h:1/metrics: cannot reach target: Server disconnected"


def test_an_interval_below_a_millisecond_scrapes_every_millisecond() -> None:
    # relia.yaml refuses it, but a source built in code may be given one; it used to make the
    # first poll loop forever (a schedule that never moved on).
    calls: list[int] = []
    inner = fake_scrape_transport(TEXT)

    def handle(request: httpx.Request) -> httpx.Response:
        calls.append(1)
        return inner.handle_request(request)

    source = ScrapeSource(
        "api", "http://h:1/metrics", SeriesIndex(), transport=httpx.MockTransport(handle),
        interval=0.0001,
    )  # fmt: skip
    sizes = [len(source.poll(NOW + dt)) for dt in (0, 0, 1, 3)]
    assert [n > 0 for n in sizes] == [True, False, True, True] and len(calls) == 3


def test_an_interval_is_kept_to_the_millisecond() -> None:
    # 1.001 s is 1000.9999999999999 ms as a float: the interval is 1001 ms, not 1000.
    source = ScrapeSource(
        "api", "http://h:1/metrics", SeriesIndex(), transport=fake_scrape_transport(TEXT),
        interval=1.001,
    )  # fmt: skip
    sizes = [len(source.poll(NOW + dt)) for dt in (0, 1000, 1001)]
    assert [n > 0 for n in sizes] == [True, False, True]


def test_a_schedule_resumes_after_a_long_stall_without_counting_every_missed_slot() -> None:
    # A host that slept for a day with a 1 ms interval: the next scrape is the next slot of the
    # grid after now, found at once (not 86 million steps later).
    source = ScrapeSource(
        "api", "http://h:1/metrics", SeriesIndex(), transport=fake_scrape_transport(TEXT),
        interval=0.001,
    )  # fmt: skip
    source.poll(NOW)
    day = 86_400_000
    started = time.monotonic()
    assert len(source.poll(NOW + day)) > 0
    assert time.monotonic() - started < 1.0
    assert len(source.poll(NOW + day)) == 0 and len(source.poll(NOW + day + 1)) > 0


def test_a_long_bad_line_is_quoted_only_in_part() -> None:
    line = "g{" + "a" * 500 + " 1"
    with pytest.raises(SourceError) as err:
        parse_exposition(f"ok 1\n{line}\n", SeriesIndex(), NOW)
    assert f"at line 2: {line[:120]!r}:" in str(err.value)


def test_series_over_the_limit_are_dropped_and_the_rest_of_the_scrape_kept() -> None:
    index = SeriesIndex(max_series=4)  # up, the counter, temperature, the bucket
    source = ScrapeSource(
        "app",
        "http://h:9100/metrics",
        index,
        transport=_pages(_counter_page(1000), _counter_page(1300)),
    )
    polls = [as_dict(index, source.poll(NOW + i * 15_000)) for i in range(2)]
    for got in polls:
        assert sorted(got) == [
            RAW,
            'latency_seconds_bucket{instance="h:9100",job="app",le="+Inf"}',
            'temperature{instance="h:9100",job="app"}',
            'up{instance="h:9100",job="app"}',
        ]
    assert polls[1][RAW] == (NOW + 15_000, 1300.0)
    assert len(index) == 4
    # Refused each scrape: _count and _sum, and the counter's rate series.
    assert index.refused() == {"app": 6}


def test_a_target_whose_up_series_is_refused_still_scrapes_known_series() -> None:
    index = SeriesIndex(max_series=1)
    temp = index.get_or_add("temperature", {"job": "app", "instance": "h:9100"})
    source = ScrapeSource(
        "app", "http://h:9100/metrics", index, transport=_pages(_counter_page(1), None)
    )
    assert source.up_id is None
    got = source.poll(NOW)
    assert got.series_id.tolist() == [temp] and got.value.tolist() == [21.5]
    assert len(source.poll(NOW + 15_000)) == 0  # a failed scrape: no up series to say so
    assert index.refused()["app"] >= 5


def test_parse_exposition_leaves_out_refused_series() -> None:
    index = SeriesIndex(max_series=2)
    batch = parse_exposition(TEXT, index, NOW, source="file")
    assert len(batch) == 2 and len(index) == 2
    assert index.refused() == {"file": 5}


def test_forgotten_series_are_registered_anew_when_the_target_serves_them_again() -> None:
    index = SeriesIndex()
    pages = [_counter_page(1000), _counter_page(1300), _counter_page(1330), _counter_page(1360)]
    source = ScrapeSource("app", "http://h:9100/metrics", index, transport=_pages(*pages))
    source.poll(NOW)
    source.poll(NOW + 15_000)
    everything = list(index)
    assert len(source.counters) == 1 and source.up_id in everything
    # The engine forgot every series (say the target was away for a week).
    index.forget(everything)
    source.forget(everything)
    assert source.counters == {} and source.up_id is None
    back = as_dict(index, source.poll(NOW + 30_000))
    assert RATE not in back  # the counter starts afresh: no rate across what was forgotten
    assert 'up{instance="h:9100",job="app"}' in back and RAW in back
    later = as_dict(index, source.poll(NOW + 45_000))
    assert later[RATE][1] == pytest.approx(2.0)
    assert set(everything) <= set(index)  # the same ids again (hashes of the keys)


def test_scrape_errors_and_logs_do_not_show_the_password_of_the_url(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("Connection refused", request=request)

    source = ScrapeSource(
        "node",
        "http://admin:s3cret@127.0.0.1:9/metrics",
        SeriesIndex(),
        transport=httpx.MockTransport(refuse),
    )
    with caplog.at_level(logging.WARNING):
        source.poll(0)
    assert source.last_error is not None and "s3cret" not in source.last_error
    assert "admin:***@127.0.0.1:9" in source.last_error
    assert "s3cret" not in caplog.text and "admin:***@" in caplog.text


# -- as Prometheus stores a scrape -------------------------------------------------------------


def test_an_exported_label_already_there_is_prefixed_again_so_two_series_stay_two() -> None:
    index = SeriesIndex()
    page = 'g{job="inner",exported_job="p"} 1\ng{job="inner",exported_job="q"} 2\n'
    batch = parse_exposition(page, index, NOW, {"job": "file", "instance": "h:1"})
    got = as_dict(index, batch)
    # What Prometheus stores for this page (honor_labels: false).
    assert got == {
        'g{exported_exported_job="inner",exported_job="p",instance="h:1",job="file"}': (NOW, 1.0),
        'g{exported_exported_job="inner",exported_job="q",instance="h:1",job="file"}': (NOW, 2.0),
    }
    assert len(set(batch.series_id.tolist())) == 2


def test_a_series_twice_in_one_scrape_keeps_its_first_sample_and_rates_use_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def page(n: int) -> str:
        return (
            "# TYPE req_total counter\n"
            f'req_total{{path="/x"}} {100 + n}\n'
            f'req_total{{path="/x"}} {1000 + n}\n'
        )

    index = SeriesIndex()
    source = ScrapeSource(
        "app", "http://h:9100/metrics", index, transport=_pages(page(0), page(15), page(30))
    )
    raw = 'req_total{instance="h:9100",job="app",path="/x"}'
    rate = 'req_total:rate{instance="h:9100",job="app",path="/x"}'
    with caplog.at_level(logging.WARNING, logger="relia.sources.scrape"):
        batches = [source.poll(NOW + i * 15_000) for i in range(3)]
    for i, batch in enumerate(batches):
        names = [describe(index.key(s)) for s in batch.series_id.tolist()]
        assert names.count(raw) == 1 and names.count(rate) == (1 if i else 0)
        got = as_dict(index, batch)
        assert got[raw][1] == 100 + 15 * i  # the first of the two, as Prometheus keeps it
        if i:
            assert got[rate][1] == pytest.approx(1.0)
    logged = [r.getMessage() for r in caplog.records if "duplicate" in r.getMessage()]
    assert len(logged) == 3 and "1 duplicate samples" in logged[0] and raw in logged[0]


def test_a_classic_counter_without_total_is_named_as_exposed() -> None:
    index = SeriesIndex()
    got = as_dict(index, parse_exposition("# TYPE envoy_rq counter\nenvoy_rq 5\n", index, NOW))
    assert got == {"envoy_rq": (NOW, 5.0)}
    source = ScrapeSource(
        "app",
        "http://h:1/metrics",
        index,
        transport=_pages(*(f"# TYPE foo counter\nfoo {n}\n" for n in (5, 20))),
    )
    source.poll(NOW)
    got = as_dict(index, source.poll(NOW + 15_000))
    assert got['foo{instance="h:1",job="app"}'] == (NOW + 15_000, 20.0)
    assert got['foo:rate{instance="h:1",job="app"}'] == (NOW + 15_000, 1.0)


def test_counters_ending_in_total_keep_their_name_in_both_formats() -> None:
    index = SeriesIndex()
    text = (
        "# TYPE a_total counter\na_total 1\n"
        '# TYPE "b.c" counter\n{"b.c"} 2\n'
        "# TYPE d_total gauge\nd_total 3\n"
    )
    assert set(as_dict(index, parse_exposition(text, index, NOW))) == {
        "a_total",
        '{"b.c"}',
        "d_total",
    }
    om = "# TYPE e counter\ne_total 1\ne_created 1700000000\n# EOF\n"
    assert set(as_dict(index, parse_exposition(om, index, NOW))) == {"e_total", "e_created"}


def test_the_timeout_bounds_the_whole_scrape_of_a_target_that_trickles() -> None:
    page = b"".join(b"g%d 1\n" % i for i in range(40))
    index = SeriesIndex()
    with slow_server(page, every=0.3) as url:
        source = ScrapeSource("drip", f"{url}/metrics", index, timeout=1.0)
        try:
            started = time.monotonic()
            batch = source.poll(NOW)
            took = time.monotonic() - started
        finally:
            source.close()
    assert took < 1.8  # not the 12 s the page takes to trickle in
    assert len(batch) == 1 and batch.value[0] == 0.0
    assert source.last_error == f"{url}/metrics: no answer within 1s"


def test_the_timeout_bounds_a_scrape_whose_headers_trickle_in() -> None:
    # The status line, then a header byte every 0.2 s for ever: each read is inside httpx's
    # per-read timeout, so only a deadline on the whole scrape ends it.
    index = SeriesIndex()
    with slow_server(b"", header_every=0.2) as url:
        source = ScrapeSource("drip", f"{url}/metrics", index, timeout=0.5)
        batches: list[MetricBatch] = []
        try:
            took, error = timed(lambda: batches.append(source.poll(NOW)))
        finally:
            source.close()
    assert error is None and took < 2.0
    (batch,) = batches
    assert len(batch) == 1 and batch.value[0] == 0.0
    assert source.last_error == f"{url}/metrics: no answer within 0.5s"


def test_a_schedule_starts_again_after_the_clock_steps_back() -> None:
    index = SeriesIndex()
    source = ScrapeSource(
        "api", "http://h:1/metrics", index, transport=fake_scrape_transport(TEXT), interval=15.0
    )
    assert len(source.poll(NOW)) > 0
    back = NOW - 3_600_000  # the wall clock steps back an hour
    assert len(source.poll(back + 15_000)) > 0  # scraped on the new clock
    assert len(source.poll(back + 20_000)) == 0  # and on its own interval from there
    assert len(source.poll(back + 30_000)) > 0


def test_a_series_with_a_nul_character_is_left_out_of_the_scrape_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # PostgreSQL cannot store a NUL; remote-write refuses such a series with a 400, and a scrape
    # leaves it out (registering it would keep a series no store can hold in the index).
    index = SeriesIndex()
    page = 'a{x="p\x00q"} 1\nb{x="ok"} 2\nc{y="\\\\0"} 3\n'  # the last is a backslash and a 0
    with caplog.at_level(logging.WARNING, logger="relia.sources.scrape"):
        batch = parse_exposition(page, index, NOW, source="app")
    assert sorted(as_dict(index, batch)) == ['b{x="ok"}', 'c{y="\\\\0"}']
    assert len(index) == 2
    logged = [r.getMessage() for r in caplog.records if "NUL" in r.getMessage()]
    assert logged == [
        "scrape app: 1 samples with a NUL character left out (no store keeps one), the first: "
        "the value of label 'x' of 'a'"
    ]
