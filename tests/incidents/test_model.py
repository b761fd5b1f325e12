from __future__ import annotations

import math
from typing import Any

import pytest
from pydantic import ValidationError

from relia.incidents.model import (
    Finding,
    FindingKind,
    Incident,
    IncidentStatus,
    Severity,
    severity_for_score,
)


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


@pytest.mark.parametrize(
    ("score", "severity"),
    [
        (0.0, Severity.INFO),
        (math.nextafter(0.5, 0.0), Severity.INFO),
        (0.5, Severity.WARNING),
        (math.nextafter(0.9, 0.0), Severity.WARNING),
        (0.9, Severity.CRITICAL),
        (1.0, Severity.CRITICAL),
    ],
)
def test_severity_boundaries_belong_to_the_higher_severity(
    score: float, severity: Severity
) -> None:
    assert severity_for_score(score) is severity


def _finding(**fields: Any) -> Finding:
    base: dict[str, Any] = {
        "id": "f1", "kind": "metric", "key": "k", "start": 1, "end": 2, "score": 0.5,
        "severity": "warning", "detector": "default", "summary": "s",
    }  # fmt: skip
    return Finding(**{**base, **fields})


@pytest.mark.parametrize("score", [0.0, 1.0])
def test_a_score_at_either_end_of_the_range_is_accepted(score: float) -> None:
    assert _finding(score=score).score == score


@pytest.mark.parametrize("score", [-1e-9, -0.1, 1.0 + 1e-9, math.nan, math.inf])
def test_a_score_outside_zero_to_one_is_refused_naming_the_score(score: float) -> None:
    with pytest.raises(ValidationError) as info:
        _finding(score=score)
    assert [e["loc"] for e in info.value.errors()] == [("score",)]


@pytest.mark.parametrize(("field", "value"), [("start", "soon"), ("end", 2.5)])
def test_finding_times_must_be_integer_milliseconds(field: str, value: object) -> None:
    with pytest.raises(ValidationError) as info:
        _finding(**{field: value})
    assert [e["loc"] for e in info.value.errors()] == [(field,)]


def test_a_finding_that_ends_before_it_starts_is_refused_naming_end() -> None:
    assert _finding(start=5, end=5).end == 5  # a one-point finding
    with pytest.raises(ValidationError) as info:
        _finding(start=5, end=4)
    assert "end (4) is before start (5)" in str(info.value)


def test_finding_ids_are_stable_across_releases() -> None:
    """Stored findings are keyed by this id: a new release must derive the same id, or every
    anomaly re-detected after an upgrade would be stored (and notified) a second time."""
    fid = Finding.make_id(FindingKind.METRIC, 'up{job="x"}', 1000, "default")
    assert fid == "50ca66c348864aefc13c"
    assert Incident.make_id("abc") == "753a336a356500396620"


def test_every_part_of_a_finding_id_tells_findings_apart() -> None:
    fid = Finding.make_id(FindingKind.METRIC, "k", 1000, "default")
    assert len(fid) == 20 and int(fid, 16) >= 0
    others = {
        Finding.make_id(FindingKind.LOG, "k", 1000, "default"),
        Finding.make_id(FindingKind.METRIC, "k2", 1000, "default"),
        Finding.make_id(FindingKind.METRIC, "k", 1001, "default"),
        Finding.make_id(FindingKind.METRIC, "k", 1000, "mad"),
        # The parts are kept apart: a key ending in digits is not the start's digits.
        Finding.make_id(FindingKind.METRIC, "k1", 0, "default"),
        Finding.make_id(FindingKind.METRIC, "k10", 0, "default"),
    }
    assert fid not in others and len(others) == 6
    assert Finding.make_id(FindingKind.METRIC, "k1", 23, "d") != Finding.make_id(
        FindingKind.METRIC, "k12", 3, "d"
    )


def test_an_incident_id_is_not_its_first_findings_id() -> None:
    fid = Finding.make_id(FindingKind.METRIC, "k", 1000, "default")
    iid = Incident.make_id(fid)
    assert iid == Incident.make_id(fid) and len(iid) == 20
    assert iid not in (fid, Finding.make_id(FindingKind.METRIC, "k", 1000, "default"))
    assert iid != Incident.make_id(Finding.make_id(FindingKind.METRIC, "k", 1001, "default"))


def _incident(**fields: Any) -> Incident:
    base: dict[str, Any] = {
        "id": "i1", "status": "open", "title": "t", "severity": "warning",
        "labels": {"job": "x"}, "start": 1, "end": 2, "opened_at": 3, "updated_at": 4,
        "version": 1, "finding_ids": ["f1"], "keys": ["k"],
    }  # fmt: skip
    return Incident(**{**base, **fields})


def test_a_new_incident_is_open_unmerged_and_round_trips() -> None:
    inc = _incident()
    assert inc.status is IncidentStatus.OPEN and inc.severity is Severity.WARNING
    assert inc.resolved_at is None and inc.merged_into is None and inc.cause == []
    assert Incident.model_validate_json(inc.model_dump_json()) == inc
    assert _finding().series_id is None and _finding().evidence == {}


@pytest.mark.parametrize("version", [0, -1])
def test_an_incident_version_starts_at_one(version: int) -> None:
    assert _incident(version=1).version == 1
    with pytest.raises(ValidationError) as info:
        _incident(version=version)
    assert [e["loc"] for e in info.value.errors()] == [("version",)]


def test_findings_and_incidents_cannot_be_changed_in_place() -> None:
    f = _finding()
    with pytest.raises(ValidationError):
        f.score = 0.1  # type: ignore[misc]
    inc = _incident()
    with pytest.raises(ValidationError):
        inc.status = IncidentStatus.RESOLVED  # type: ignore[misc]
    assert f.score == 0.5 and inc.status is IncidentStatus.OPEN


def test_the_stored_names_of_kinds_severities_and_statuses() -> None:
    """These strings are stored, served by the API and matched by receivers."""
    assert [k.value for k in FindingKind] == ["metric", "log", "slo", "event"]
    assert [s.value for s in Severity] == ["info", "warning", "critical"]
    assert [s.value for s in IncidentStatus] == ["open", "resolved"]
    with pytest.raises(ValidationError):
        _finding(severity="high")


def test_an_incident_stored_before_finding_count_counts_its_finding_ids() -> None:
    body = {
        "id": "i1", "status": "open", "title": "t", "severity": "warning", "labels": {},
        "start": 1, "end": 2, "opened_at": 1, "updated_at": 2, "version": 1,
        "finding_ids": ["a", "b", "c"], "keys": ["k"],
    }  # fmt: skip
    assert Incident.model_validate(body).finding_count == 3  # it listed every finding
    assert Incident.model_validate({**body, "finding_count": None}).finding_count == 3
    capped = Incident.model_validate({**body, "finding_count": 1134})
    assert capped.finding_count == 1134  # it lists the newest of each key
    assert Incident.model_validate_json(capped.model_dump_json()) == capped
