"""Public names: ``__all__`` is sorted and complete in every public module."""

from __future__ import annotations

import importlib

import pytest

import relia

MODULES = [
    "relia",
    "relia.errors",
    "relia.signals",
    "relia.config",
    "relia.detect",
    "relia.incidents",
    "relia.store",
    "relia.sources",
    "relia.notify",
    "relia.ingest",
    "relia.api",
]


@pytest.mark.parametrize("name", MODULES)
def test_all_is_sorted_and_resolves(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert exported == sorted(
        exported, key=lambda s: (s.startswith("__"), s)
    ) or exported == sorted(exported)
    for attr in exported:
        assert hasattr(module, attr), f"{name}.{attr} is in __all__ but missing"


def test_top_level_exports_the_public_types() -> None:
    for attr in ("MetricBatch", "SeriesIndex", "Finding", "ReliaError", "__version__"):
        assert attr in relia.__all__
