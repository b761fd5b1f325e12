"""bench/up_footprint.py: what it refuses before it starts ``relia up``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import up_footprint  # noqa: E402


def test_an_unwritable_out_is_refused_before_relia_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    started: list[object] = []
    monkeypatch.setattr(up_footprint, "measure", lambda *a: started.append(a))
    assert up_footprint.main(["--seconds", "1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a folder" in err
    assert started == []
