"""relia: a reliability engine for distributed and machine-learning systems."""

from relia.errors import (
    ConfigError,
    DataError,
    DetectorError,
    ReliaError,
    SourceError,
    StoreError,
)
from relia.incidents.model import Finding, FindingKind, Severity
from relia.signals import Event, LogBatch, MetricBatch, SeriesIndex

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataError",
    "DetectorError",
    "Event",
    "Finding",
    "FindingKind",
    "LogBatch",
    "MetricBatch",
    "ReliaError",
    "SeriesIndex",
    "Severity",
    "SourceError",
    "StoreError",
    "__version__",
]
