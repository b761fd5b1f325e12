"""Telemetry sources: files, Prometheus (query_range and scrape), this host, and in-memory fakes.

Every pull source implements :class:`MetricSource` (``name`` and ``poll(now_ms)``). Submodules
are imported on first use, so ``import relia.sources`` stays cheap (Polars, psutil and the
Prometheus parsers load only when asked for).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from relia.sources.base import MetricSource

if TYPE_CHECKING:
    from relia.sources.fakes import (
        FakePrometheusTransport,
        FakeSource,
        fake_prometheus_transport,
        fake_scrape_transport,
    )
    from relia.sources.files import FileSource, SeriesFrame, read_series
    from relia.sources.host import HostSource
    from relia.sources.prometheus import PrometheusClient, PrometheusSource, RangeSeries
    from relia.sources.scrape import ScrapeSource, parse_exposition

__all__ = [
    "FakePrometheusTransport",
    "FakeSource",
    "FileSource",
    "HostSource",
    "MetricSource",
    "PrometheusClient",
    "PrometheusSource",
    "RangeSeries",
    "ScrapeSource",
    "SeriesFrame",
    "fake_prometheus_transport",
    "fake_scrape_transport",
    "parse_exposition",
    "read_series",
]

_WHERE = {
    "FakePrometheusTransport": "fakes",
    "FakeSource": "fakes",
    "fake_prometheus_transport": "fakes",
    "fake_scrape_transport": "fakes",
    "FileSource": "files",
    "SeriesFrame": "files",
    "read_series": "files",
    "HostSource": "host",
    "PrometheusClient": "prometheus",
    "PrometheusSource": "prometheus",
    "RangeSeries": "prometheus",
    "ScrapeSource": "scrape",
    "parse_exposition": "scrape",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'relia.sources' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"relia.sources.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
