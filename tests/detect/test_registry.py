from __future__ import annotations

from pathlib import Path

import pytest

from relia.detect import available, create, describe, register, resolve
from relia.detect.registry import _REGISTRY
from relia.errors import DetectorError


def test_create_by_name_with_params() -> None:
    det = create("mad", window=32)
    assert det.config.model_dump()["window"] == 32


def test_unknown_name_lists_known_ones() -> None:
    with pytest.raises(DetectorError, match=r"no detector named 'nope' \(known: .*mad"):
        create("nope")


def test_bad_params_name_the_field() -> None:
    with pytest.raises(DetectorError, match="'window'"):
        create("mad", window=-1)
    with pytest.raises(DetectorError, match="'colour'"):
        create("mad", colour="red")


def test_duplicate_names_are_refused_and_targets_checked() -> None:
    with pytest.raises(DetectorError, match="already registered"):
        register("mad", "relia.detect.stats:RollingMAD", "again")
    with pytest.raises(DetectorError, match="module:Class"):
        register("x-bad", "relia.detect.stats.RollingMAD", "no colon")


def test_lazy_import_errors_are_clear() -> None:
    register("x-missing", "relia_no_such_module:Thing", "missing", replace=True)
    try:
        with pytest.raises(DetectorError, match="not installed"):
            resolve("x-missing")
    finally:
        del _REGISTRY["x-missing"]


def test_default_is_registered() -> None:
    assert "default" in available()
    assert create("default").score([1.0, 2.0]).shape == (2,)


def test_preset_parameters_apply_and_explicit_ones_override_them() -> None:
    register(
        "x-preset",
        "relia.detect.stats:RollingMAD",
        "mad with a short window",
        preset={"window": 32, "min_samples": 8},
    )
    try:
        assert create("x-preset").config.model_dump()["window"] == 32
        cfg = create("x-preset", window=64).config.model_dump()
        assert cfg["window"] == 64 and cfg["min_samples"] == 8
    finally:
        del _REGISTRY["x-preset"]


def test_replace_overwrites_a_registered_name() -> None:
    register("x-twice", "relia.detect.stats:RollingMAD", "first")
    try:
        register("x-twice", "relia.detect.changepoint:EwmaCusum", "second", replace=True)
        assert describe("x-twice").summary == "second"
        assert create("x-twice").name == "cusum"
    finally:
        del _REGISTRY["x-twice"]


@pytest.mark.parametrize("target", ["relia.detect.stats:Nope", "relia.detect.stats:numba"])
def test_a_target_that_is_not_a_detector_class_is_refused(target: str) -> None:
    register("x-notdet", target, "not a detector", replace=True)
    try:
        with pytest.raises(DetectorError, match="is not a Detector class"):
            create("x-notdet")
    finally:
        del _REGISTRY["x-notdet"]


def test_available_names_are_sorted() -> None:
    names = available()
    assert names == sorted(names) and {"mad", "cusum", "seasonal", "ensemble"} <= set(names)


def test_a_target_module_failing_its_own_import_is_a_detector_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "relia_broken_family.py").write_text("from math import no_such_name\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    register("x-broken", "relia_broken_family:Thing", "broken", replace=True)
    try:
        with pytest.raises(DetectorError, match="x-broken") as err:
            create("x-broken")
        assert "not installed" not in str(err.value)  # math is installed: the module is broken
        assert "no_such_name" in str(err.value)
    finally:
        del _REGISTRY["x-broken"]


@pytest.mark.parametrize("name", available())
def test_a_count_parameter_past_what_the_kernels_take_is_refused(name: str) -> None:
    # Unbounded, min_samples=10**30 passed the config and died in Numba at the first score.
    config_class = resolve(name).config_class
    counts = [
        field
        for field, info in config_class.model_fields.items()
        if info.annotation is int and field != "seed"
    ]
    for field in counts:
        with pytest.raises(DetectorError, match=f"invalid parameter '{field}'.*less than"):
            create(name, **{field: 10**30})
