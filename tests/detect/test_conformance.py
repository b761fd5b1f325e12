"""Every registered detector passes the generated conformance suite."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from relia.detect import available, create
from relia.detect import conformance as cf

NAB = Path(
    os.environ.get("RELIA_NAB_DATA", Path(__file__).resolve().parents[3] / "shared/data/nab")
)


@pytest.mark.parametrize("check", cf.CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("name", available())
def test_conformance(name: str, check: cf.Factory) -> None:
    check(lambda: create(name))  # type: ignore[operator]


@pytest.mark.slow
@pytest.mark.parametrize("name", available())
def test_beats_random_on_nab(name: str) -> None:
    if not (NAB / "labels" / "combined_windows.json").exists():
        pytest.skip(f"NAB data not found at {NAB} (set RELIA_NAB_DATA)")
    aucs = cf.nab_roc_auc(lambda: create(name), NAB)
    assert len(aucs) >= 50
    mean_auc = float(np.nanmean(list(aucs.values())))
    assert mean_auc > 0.5, f"{name}: mean ROC-AUC {mean_auc:.3f} over {len(aucs)} NAB files"


def test_roc_auc_matches_definition() -> None:
    assert cf.roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert cf.roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) == 0.0
    assert cf.roc_auc([0, 1, 0, 1], [0.5, 0.5, 0.5, 0.5]) == 0.5
    assert np.isnan(cf.roc_auc([0, 0], [0.1, 0.2]))


def test_a_detector_whose_streaming_differs_fails_the_suite() -> None:
    """The suite can fail: a detector whose update() disagrees with its batch path is caught."""
    det_cls = type(create("mad"))

    class Drifting(det_cls):  # type: ignore[misc, valid-type]
        def update(self, ts: int, value: float) -> float:
            return min(1.0, super().update(ts, value) + 1e-6)

    with pytest.raises(AssertionError, match="streaming differs"):
        cf.check_streaming_equals_batch(lambda: Drifting())
