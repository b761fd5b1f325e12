"""Fixtures shared by every test package.

- ``postgres_server`` / ``postgres_dsn``: a real PostgreSQL server on loopback
  (``tests/pgserver.py``).
- ``ray_local`` (session): a real local Ray instance on this machine's cores, started once and
  shut down after the session; yields the ``ray`` module. Without Ray the tests fail when ``CI``
  is set and are skipped otherwise.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from types import ModuleType

import pytest
from hypothesis import settings

from tests.pgserver import postgres_dsn, postgres_server

__all__ = ["postgres_dsn", "postgres_server", "ray_local"]

# Tests check behaviour, not speed (bench/ measures that): no per-example deadline, which a
# loaded machine or a first example that imports Polars or compiles a kernel would miss.
settings.register_profile("relia", deadline=None)
settings.load_profile("relia")


@pytest.fixture(autouse=True)
def _relia_logging_as_it_was() -> Iterator[None]:
    """A test that runs ``relia up``'s command configures the ``relia`` logger (a stderr
    handler at INFO, :mod:`relia._logsetup`); the next test starts without it."""
    logger = logging.getLogger("relia")
    handlers, level = list(logger.handlers), logger.level
    yield
    logger.handlers[:] = handlers
    logger.setLevel(level)


@pytest.fixture(scope="session")
def ray_local() -> Iterator[ModuleType]:
    try:
        import ray
    except ImportError:
        msg = "ray is not installed: pip install -e '.[test]'"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    if not ray.is_initialized():
        ray.init(
            address="local",  # a Ray of its own, never RAY_ADDRESS's or another session's
            num_cpus=os.cpu_count() or 2,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    try:
        yield ray
    finally:
        ray.shutdown()
