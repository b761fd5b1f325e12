"""bench/young.py: false alarms by a series' age, on a few tiny series."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import young  # noqa: E402


def test_young_counts_every_alarm_once_by_age_and_component(tmp_path: Path) -> None:
    out = tmp_path / "young.json"
    args = ["--detector", "mad", "--seeds", "2", "--points", "1500", "--out", str(out)]
    assert young.main(args) == 0
    doc = json.loads(out.read_text())
    assert (doc["seeds"], doc["points"], doc["threshold"]) == (2, 1500, 0.5)
    cases = doc["detectors"]["mad"]
    assert set(cases) == set(young.CASES)
    for case in cases.values():
        bands = case["ages"]
        # Bands cover the series without a gap and end at its length.
        assert [b["from"] for b in bands] == [0, 300, 1000]
        assert [b["to"] for b in bands] == [300, 1000, 1500]
        total = sum(b["alarms_per_series"] for b in bands)
        assert total == pytest.approx(case["alarms_per_series"])
        assert sum(case["by_component"].values()) == pytest.approx(2 * total)
        assert 0 <= case["critical_per_series"] <= case["alarms_per_series"]
    # Heavy tails make a median/MAD detector alarm: the count is not trivially zero.
    assert cases["student_t3"]["alarms_per_series"] > cases["gaussian"]["alarms_per_series"]


def test_young_refuses_an_empty_run(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        young.main(["--seeds", "0"])
    assert info.value.code == 2
    assert "--seeds" in capsys.readouterr().err


def test_young_checks_every_name_before_measuring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    measured: list[str] = []
    monkeypatch.setattr(young, "measure", lambda name, *a: measured.append(name))
    out = tmp_path / "young.json"
    args = ["--detector", "default", "--detector", "nosuch", "--out", str(out)]
    assert young.main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nosuch" in err
    assert measured == [] and not out.exists()
    assert young.main(["--detector", "mad", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a folder" in err
    assert measured == []
