"""Build the executor ``relia.yaml`` asks for (``engine.executor``: ``local`` or ``ray``)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry

from relia.config import DetectorSpec, EngineConfig
from relia.engine.executor import Executor
from relia.engine.local import LocalExecutor

if TYPE_CHECKING:
    from relia.engine.ray_executor import Recovery

__all__ = ["build_executor"]


def build_executor(
    engine: EngineConfig,
    detector: DetectorSpec,
    *,
    recover: Recovery | None = None,
    registry: CollectorRegistry | None = None,
    interval_s: float | None = None,
    stop: threading.Event | None = None,
) -> Executor:
    """The local executor, or a :class:`~relia.engine.ray_executor.RayExecutor` (Ray imported
    only then) with ``recover`` to rebuild a dead actor's shard and its restart counter in
    ``registry``; its waits on Ray are bounded by a time derived from the engine's
    ``interval_s``, cut short once ``stop`` is set. Ray missing or unreachable:
    :class:`~relia.errors.ConfigError`."""
    if engine.executor == "local":
        return LocalExecutor(detector.name, detector.params)
    from relia.engine.ray_executor import RayExecutor, call_timeout_for

    return RayExecutor(
        detector.name,
        detector.params,
        n_actors=engine.ray_actors,
        address=engine.ray_address,
        recover=recover,
        registry=registry,
        call_timeout_s=call_timeout_for(interval_s),
        stop=stop,
    )
