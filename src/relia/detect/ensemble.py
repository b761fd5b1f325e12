"""Ensembles: several detectors on the same stream, combined by the maximum score."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, field_validator

from relia.detect.base import Detector, DetectorConfig, FloatArray, IntArray, State, _new_out

__all__ = ["Ensemble", "EnsembleConfig"]


class EnsembleConfig(DetectorConfig):
    #: Members as ``{"name": registry-name, "params": {...}}``.
    members: list[dict[str, Any]] = Field(
        default_factory=lambda: [{"name": "mad", "params": {}}, {"name": "cusum", "params": {}}],
        min_length=1,
    )

    @field_validator("members")
    @classmethod
    def _check(cls, members: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for m in members:
            if set(m) - {"name", "params"} or "name" not in m:
                raise ValueError("each member is {name: ..., params: {...}}")
            if m["name"] == "default":
                raise ValueError("an ensemble cannot contain 'default'")
        return [{"name": m["name"], "params": dict(m.get("params", {}))} for m in members]


class Ensemble(Detector):
    """Runs each member on every point; the score is the largest member score, and the
    expected value and band come from the member that scored highest."""

    name = "ensemble"
    config_class = EnsembleConfig
    config: EnsembleConfig

    def __init__(self, config: DetectorConfig | None = None, **params: Any) -> None:
        from relia.detect.registry import create

        # The base class checks the config (a DetectorError naming the parameter, like every
        # detector) before the members exist; the state is made again once they do.
        self._members: list[Detector] = []
        super().__init__(config, **params)
        assert isinstance(self.config, EnsembleConfig)
        self._members = [create(m["name"], **m["params"]) for m in self.config.members]
        comps: list[str] = []
        for m in self._members:
            comps.extend(f"{m.name}.{c}" for c in m.components)
        self.components = tuple(comps)  # type: ignore[misc]
        self.reset()

    def _initial_state(self) -> State:
        state: State = {}
        for i, m in enumerate(self._members):
            for k, v in m._initial_state().items():
                state[f"{i}.{k}"] = v
        return state

    def _check_state(self, state: State) -> str | None:
        for i, m in enumerate(self._members):
            sub = {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith(f"{i}.")}
            problem = m._check_state(sub)
            if problem is not None:
                return f"member {i} ({m.name}): {problem}"
        return None

    def _run(self, ts: IntArray, values: FloatArray, state: State, out: State) -> None:
        n = len(values)
        offset = 0
        best = np.full(n, -1.0)
        for i, m in enumerate(self._members):
            sub = {k.split(".", 1)[1]: v for k, v in state.items() if k.startswith(f"{i}.")}
            mo = _new_out(n)
            m._run(ts, values, sub, mo)
            better = mo["score"] > best
            if i == 0:
                better[:] = True
            best = np.where(better, mo["score"], best)
            for key in ("score", "expected", "lower", "upper"):
                out[key][better] = mo[key][better]
            fired = mo["component"] >= 0
            out["component"][better] = np.where(fired[better], mo["component"][better] + offset, -1)
            offset += len(m.components)
