"""The engine: the long-running loop, executors, and ``relia up``."""

from relia.engine.executor import Executor, ScoredPoints, shard_of
from relia.engine.findings import FindingTracker
from relia.engine.local import DetectorShard, LocalExecutor
from relia.engine.loop import Engine, EngineMetrics, TickResult, wall_clock_ms
from relia.engine.up import build_sources, run_up

__all__ = [
    "DetectorShard",
    "Engine",
    "EngineMetrics",
    "Executor",
    "FindingTracker",
    "LocalExecutor",
    "ScoredPoints",
    "TickResult",
    "build_sources",
    "run_up",
    "shard_of",
    "wall_clock_ms",
]
