from __future__ import annotations

import sys
from types import ModuleType

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from relia.config import DetectorSpec, EngineConfig
from relia.engine.executors import build_executor
from relia.engine.local import LocalExecutor
from relia.errors import ConfigError
from relia.signals import MetricBatch
from tests.engine.test_ray_executor import _FakeRay


def test_local_by_default() -> None:
    ex = build_executor(EngineConfig(), DetectorSpec(name="cusum", params={"k": 0.7}))
    assert isinstance(ex, LocalExecutor)
    assert ex.detector_name == "cusum" and ex.n_shards == 1


def test_ray_without_ray_installed_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # makes `import ray` raise ImportError
    with pytest.raises(ConfigError) as info:
        build_executor(EngineConfig(executor="ray"), DetectorSpec())
    assert str(info.value).startswith("engine.executor: ")
    assert "pip install 'relia[ray]'" in str(info.value)


@pytest.mark.integration
def test_ray_from_config(ray_local: ModuleType) -> None:
    from relia.engine.ray_executor import RayExecutor

    registry = CollectorRegistry()
    ex = build_executor(
        EngineConfig(executor="ray", ray_actors=2),
        DetectorSpec(name="default", params={"min_samples": 10}),
        registry=registry,
    )
    try:
        assert isinstance(ex, RayExecutor)
        assert ex.n_shards == 2 and ex.params == {"min_samples": 10}
        assert registry.get_sample_value("relia_executor_actor_restarts_total") == 0
    finally:
        ex.close()


def test_ray_from_config_joins_the_address_and_recovers_a_dead_actor_with_what_it_was_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = _FakeRay(initialized=False)
    monkeypatch.setitem(sys.modules, "ray", fake)
    monkeypatch.setattr("relia.engine._rayutil._has_ray_client", lambda: True)
    asked: list[bool] = []
    registry = CollectorRegistry()

    def recover(owns: object) -> tuple[dict[int, bytes], MetricBatch]:
        asked.append(True)
        return {}, MetricBatch.empty()

    ex = build_executor(
        EngineConfig(executor="ray", ray_actors=2, ray_address="ray://10.0.0.9:10001"),
        DetectorSpec(name="cusum", params={"k": 0.7}),
        recover=recover,
        registry=registry,
    )
    try:
        assert fake.inits[0]["address"] == "ray://10.0.0.9:10001"
        assert ex.n_shards == 2 and ex.detector_name == "cusum"
        ex.process(MetricBatch(np.array([1, 2]), np.array([1, 1]), np.array([1.0, 2.0])))
        fake.kill(fake.actors[1])
        ex.process(MetricBatch(np.array([1, 2]), np.array([2, 2]), np.array([1.0, 2.0])))
        assert asked == [True]
        assert registry.get_sample_value("relia_executor_actor_restarts_total") == 1
    finally:
        ex.close()
