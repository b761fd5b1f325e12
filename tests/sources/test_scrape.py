"""Exposition parsing (text 0.0.4 and OpenMetrics 1.0) and ScrapeSource against fakes."""

from __future__ import annotations

import logging

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relia.errors import SourceError
from relia.signals import MetricBatch, SeriesIndex, describe
from relia.sources.base import MetricSource
from relia.sources.fakes import fake_scrape_transport
from relia.sources.scrape import ACCEPT, ScrapeSource, parse_exposition

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
