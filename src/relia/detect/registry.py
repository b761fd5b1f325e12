"""Build detectors by name. Families are imported lazily, on first use.

A registry entry is a ``"module:Class"`` path plus optional preset parameters, so ``default`` can
be a family with a configuration the project stands behind, and heavy families load only when
asked for. Duplicate names are refused.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from relia.detect.base import Detector
from relia.errors import DetectorError

__all__ = ["DetectorEntry", "available", "create", "describe", "register", "resolve"]


@dataclass(frozen=True)
class DetectorEntry:
    name: str
    target: str
    summary: str
    preset: dict[str, Any] = field(default_factory=dict)


_REGISTRY: dict[str, DetectorEntry] = {}


def register(
    name: str,
    target: str,
    summary: str,
    *,
    preset: dict[str, Any] | None = None,
    replace: bool = False,
) -> None:
    """Register ``name`` -> ``"module:Class"``; ``preset`` parameters are applied first."""
    if ":" not in target:
        raise DetectorError(f"detector target must look like 'module:Class', got {target!r}")
    if name in _REGISTRY and not replace:
        raise DetectorError(f"a detector named {name!r} is already registered")
    _REGISTRY[name] = DetectorEntry(name, target, summary, dict(preset or {}))


def resolve(name: str) -> type[Detector]:
    """The class behind a registered name (imports its module)."""
    entry = _entry(name)
    module_name, _, cls_name = entry.target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise DetectorError(
            f"detector {name!r} needs {exc.name!r}, which is not installed"
        ) from None
    except ImportError as exc:
        # The module is there but fails its own imports: say so, not "not installed".
        raise DetectorError(f"detector {name!r}: importing {module_name!r} failed: {exc}") from None
    cls = getattr(module, cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, Detector)):
        raise DetectorError(f"{entry.target} is not a Detector class")
    return cls


def create(name: str, **params: Any) -> Detector:
    """A new detector by registered name; ``params`` override the entry's preset."""
    entry = _entry(name)
    cls = resolve(name)
    return cls(**{**entry.preset, **params})


def available() -> list[str]:
    """Registered names, sorted."""
    return sorted(_REGISTRY)


def describe(name: str) -> DetectorEntry:
    return _entry(name)


def _entry(name: str) -> DetectorEntry:
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(available())
        raise DetectorError(f"no detector named {name!r} (known: {known})") from None


register(
    "mad",
    "relia.detect.stats:RollingMAD",
    "rolling median / MAD z-score: robust to spikes, blind to seasonality and drift",
)
register(
    "seasonal",
    "relia.detect.seasonal:SeasonalProfile",
    "daily profile: EWMA mean and variance per time-of-day slot",
)
register(
    "cusum",
    "relia.detect.changepoint:EwmaCusum",
    "EWMA z-score for spikes plus two-sided CUSUM for level shifts",
)
register(
    "ensemble",
    "relia.detect.ensemble:Ensemble",
    "several detectors on one stream, scored by the highest (default members: mad, cusum)",
)
register(
    "adaptive",
    "relia.detect.adaptive:Adaptive",
    "robust level + daily profile forecast; surprise calibrated on the series' own history",
)
# The default is the detector the project stands behind: `adaptive` with its own defaults (one
# configuration for every series; see bench/results/nab.json for how it measures).
register(
    "default",
    "relia.detect.adaptive:Adaptive",
    "relia's recommended detector (now: adaptive, calibrated per series)",
)
