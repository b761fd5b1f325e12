from __future__ import annotations

import pytest
from pydantic import ValidationError

from relia.incidents.model import Finding, FindingKind, Severity, severity_for_score


def test_finding_ids_are_deterministic() -> None:
    a = Finding.make_id(FindingKind.METRIC, 'up{job="x"}', 1000, "default")
    assert a == Finding.make_id(FindingKind.METRIC, 'up{job="x"}', 1000, "default")
    assert a != Finding.make_id(FindingKind.METRIC, 'up{job="x"}', 2000, "default")


def test_finding_validates_score_and_round_trips() -> None:
    f = Finding(
        id="x", kind=FindingKind.METRIC, key="k", start=1, end=2, score=0.9,
        severity=severity_for_score(0.9), detector="mad", summary="s",
        evidence={"expected": 1.0, "band": [0.5, 1.5]},
    )  # fmt: skip
    assert f.severity is Severity.CRITICAL
    assert Finding.model_validate_json(f.model_dump_json()) == f
    with pytest.raises(ValidationError):
        Finding(**{**f.model_dump(), "score": 1.5})
