"""The ``store`` fixture: each backend-neutral store test runs on DuckDB and on PostgreSQL."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.store.backends import BACKENDS, open_backend


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The name of the store backend under test."""
    return str(request.param)


@pytest.fixture
def make_store(request: pytest.FixtureRequest, backend: str) -> Iterator[Callable[..., Any]]:
    """Opens stores of the backend under test (DuckDB: a new in-memory one each; PostgreSQL:
    on the test's fresh database); closes them after."""
    opened: list[Any] = []

    def make(samples_per_series: int = 5) -> Any:
        s = open_backend(request, backend, samples_per_series)
        opened.append(s)
        return s

    yield make
    for s in opened:
        s.close()


@pytest.fixture
def store(make_store: Callable[..., Any]) -> Any:
    """An empty store keeping 5 samples per series."""
    return make_store(5)
