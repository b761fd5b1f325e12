"""Tests of the user-facing exceptions (relia.errors)."""

from __future__ import annotations

import pytest

from relia.errors import (
    ConfigError,
    DataError,
    DetectorError,
    ReliaError,
    SourceError,
    StoreError,
)

KINDS = [ConfigError, DataError, DetectorError, SourceError, StoreError]


@pytest.mark.parametrize("kind", KINDS)
def test_every_error_is_a_relia_error_with_the_place_in_front(kind: type[ReliaError]) -> None:
    err = kind("must be positive", where="relia.yaml:3")
    assert isinstance(err, ReliaError)
    assert str(err) == "relia.yaml:3: must be positive"
    assert (err.message, err.where) == ("must be positive", "relia.yaml:3")


@pytest.mark.parametrize("where", [None, ""])
def test_without_a_place_the_message_is_alone(where: str | None) -> None:
    err = DataError("no lines to score", where=where)
    assert str(err) == "no lines to score"
    assert (err.message, err.where) == ("no lines to score", where)


def test_a_relia_error_is_caught_as_one() -> None:
    with pytest.raises(ReliaError, match=r"^row 12: bad value$"):
        raise DataError("bad value", where="row 12")
