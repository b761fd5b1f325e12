"""Ensembles: several detectors on the same stream, combined by the maximum score."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from pydantic import Field, field_validator

from relia.detect.base import Detector, DetectorConfig, FloatArray, IntArray, State, _new_out
from relia.errors import DetectorError

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
        for i, m in enumerate(members):
            problem = _member_problem(m)
            if problem is not None:
                raise ValueError(f"members.{i}{problem[0]}: {problem[1]}")
        return [{"name": m["name"], "params": dict(m.get("params", {}))} for m in members]


def _member_problem(member: object) -> tuple[str, str] | None:
    """What is wrong with one entry of ``members``: the field under it ("" for the entry
    itself) and a message; None if nothing."""
    if not isinstance(member, dict) or set(member) - {"name", "params"} or "name" not in member:
        return "", "each member is {name: ..., params: {...}}"
    if member["name"] == "default":
        return ".name", "an ensemble cannot contain 'default'"
    params = member.get("params", {})
    if not isinstance(params, dict):
        return ".params", f"a member's params are a mapping, not {type(params).__name__}"
    return None


def _member_error(index: int, exc: DetectorError) -> DetectorError:
    """A member's own error, named at its place in the ensemble's config (members.0.params.x),
    so that relia config check points at the member's line."""
    bad = re.match(r"invalid parameter '([^']*)' for detector '[^']*': (.*)", str(exc), re.S)
    field, why = (f"params.{bad[1]}", bad[2]) if bad else ("name", str(exc))
    return DetectorError(
        f"invalid parameter 'members.{index}.{field}' for detector 'ensemble': {why}"
    )


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
        members = params.get("members")
        if isinstance(members, list):
            # Checked here too, for the member's own place: the config's validator can only
            # name the whole list.
            for i, m in enumerate(members):
                problem = _member_problem(m)
                if problem is not None:
                    raise DetectorError(
                        f"invalid parameter 'members.{i}{problem[0]}' for detector "
                        f"{self.name!r}: {problem[1]}"
                    )
        super().__init__(config, **params)
        assert isinstance(self.config, EnsembleConfig)
        for i, m in enumerate(self.config.members):
            try:
                self._members.append(create(m["name"], **m["params"]))
            except DetectorError as exc:
                raise _member_error(i, exc) from None
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
