"""Anomaly detectors: a config/model pair per family, built by name through the registry."""

from relia.detect.base import Detail, Detector, DetectorConfig
from relia.detect.registry import available, create, describe, register, resolve
from relia.detect.threshold import AnomalyWindow, Thresholder

__all__ = [
    "AnomalyWindow",
    "Detail",
    "Detector",
    "DetectorConfig",
    "Thresholder",
    "available",
    "create",
    "describe",
    "register",
    "resolve",
]
