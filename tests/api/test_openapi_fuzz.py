"""Schemathesis against the OpenAPI schema: no generated request makes the API answer 5xx.

Runs with auth on and an admin token, over a DuckDB store seeded by a real engine (series,
samples with bands, findings), so handlers reach the store with every generated parameter.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import schemathesis
from fastapi import APIRouter, FastAPI, Query
from fastapi.responses import JSONResponse
from hypothesis import HealthCheck, given, settings
from prometheus_client import CollectorRegistry
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup

from relia.api.app import create_app
from relia.api.auth import AuthConfig, Role, new_token
from relia.engine.local import LocalExecutor
from relia.engine.loop import Engine
from relia.signals import MetricBatch, SeriesIndex
from relia.store.duckdb import DuckDBStore

T0 = 1_700_000_000_000
STEP = 15_000
TOKEN = new_token()
HEADERS = {"Authorization": f"Bearer {TOKEN}"}
# Per operation: the file stays well under 30 s on this 2-core machine. RELIA_FUZZ_EXAMPLES=1000
# searches harder (run before a release).
EXAMPLES = int(os.environ.get("RELIA_FUZZ_EXAMPLES", "40"))


class _Spiky:
    name = "spiky"

    def __init__(self, index: SeriesIndex) -> None:
        self.sid = index.get_or_add("cpu", {"host": "a"})
        self.k = 0

    def poll(self, now_ms: int) -> MetricBatch:
        self.k += 1
        v = 50.0 + (self.k % 3) + (60.0 if self.k in (30, 31) else 0.0)
        return MetricBatch.for_series(self.sid, [now_ms], [np.nan if self.k == 10 else v])


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DuckDBStore]:
    path: Path = tmp_path_factory.mktemp("fuzz") / "relia.duckdb"
    db = DuckDBStore(path)
    index = SeriesIndex()
    clock = {"now": T0}
    engine = Engine(
        db,
        [_Spiky(index)],
        LocalExecutor("cusum", {}),
        index=index,
        clock=lambda: clock["now"],
        registry=CollectorRegistry(),
    )
    for _ in range(40):
        engine.tick()
        clock["now"] += STEP
    assert db.findings(limit=10), "the seed should hold findings"
    yield db
    db.close()


def _fuzz(app: FastAPI) -> None:
    """Every operation of ``app``'s schema, ``EXAMPLES`` generated requests each, with the
    admin token; raises (schemathesis' failure) on the first 5xx."""
    schema = schemathesis.openapi.from_asgi("/openapi.json", app, headers=HEADERS)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert operations
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # TestClient wants httpx2
                case.call_and_validate(headers=HEADERS, checks=[not_a_server_error])

        check()


def _app(store: DuckDBStore, *routers: tuple[APIRouter, Role]) -> FastAPI:
    auth = AuthConfig.plain(TOKEN, name="fuzzer", role=Role.ADMIN)
    return create_app(store, auth=auth, routers=routers, clock=lambda: T0 + 40 * STEP)


def test_no_5xx_on_any_generated_request(store: DuckDBStore) -> None:
    _fuzz(_app(store))


@pytest.mark.parametrize("how", ["answers 503", "raises"])
def test_the_fuzzer_finds_a_5xx(store: DuckDBStore, how: str) -> None:
    # A route that fails on part of its input, as a careless handler would: the check above is
    # only worth something if this one is caught, whether the handler answers 5xx itself or
    # raises (the test client re-raises what would be a 500).
    broken = APIRouter()

    @broken.get("/api/v1/broken")
    def divide(n: int = Query(ge=-5, le=5)) -> Any:
        if n == 0 and how == "answers 503":
            return JSONResponse({"detail": "oops"}, status_code=503)
        return {"x": 1 / n}

    with pytest.raises((FailureGroup, ZeroDivisionError)) as info:
        _fuzz(_app(store, (broken, Role.READ)))
    text = str(info.value) + "\n".join(getattr(info.value, "__notes__", []))
    assert ("ST101 Server error" if how == "answers 503" else "division by zero") in text
    assert "/api/v1/broken?n=0" in text  # the reproducing request
    assert TOKEN not in text  # schemathesis filters the Authorization header
