from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from relia.engine.gc_pacing import GcPacing


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Node:
    """A container that can sit in a reference cycle."""

    def __init__(self) -> None:
        self.other: Node | None = None


def _cycle() -> weakref.ref[Node]:
    a, b = Node(), Node()
    a.other, b.other = b, a
    return weakref.ref(a)


@pytest.fixture
def pacing() -> Iterator[tuple[GcPacing, Clock]]:
    clock = Clock()
    p = GcPacing(600.0, clock, first_s=60.0)
    yield p, clock
    p.stop()


def test_first_step_freezes_and_stop_unfreezes(pacing: tuple[GcPacing, Clock]) -> None:
    p, _ = pacing
    assert p.step() is False
    assert gc.get_freeze_count() > 0
    p.stop()
    assert gc.get_freeze_count() == 0


def test_a_frozen_cycle_is_collected_at_the_next_full_collection(
    pacing: tuple[GcPacing, Clock],
) -> None:
    p, clock = pacing
    ref = _cycle()  # garbage already, but only a collection can free a cycle
    p.step()  # frozen with it
    gc.collect()
    assert ref() is not None  # the automatic collections do not walk frozen objects
    clock.now = 59.0
    assert p.step() is False and ref() is not None
    clock.now = 60.0
    assert p.step() is True
    assert ref() is None and p.collections == 1
    assert gc.get_freeze_count() > 0  # frozen again


def test_the_gap_doubles_up_to_the_period(pacing: tuple[GcPacing, Clock]) -> None:
    p, clock = pacing
    p.step()
    when = []
    for t in range(1, 3000):
        clock.now = float(t)
        if p.step():
            when.append(t)
    assert when[:6] == [60, 180, 420, 900, 1500, 2100]


def test_a_cycle_made_after_the_freeze_is_collected_as_usual(
    pacing: tuple[GcPacing, Clock],
) -> None:
    p, _ = pacing
    p.step()
    ref = _cycle()
    gc.collect()
    assert ref() is None


def test_period_must_be_positive() -> None:
    with pytest.raises(ValueError, match="period_s"):
        GcPacing(0.0)


def _schedule(p: GcPacing, clock: Clock, until: int) -> list[int]:
    """The whole seconds at which :meth:`GcPacing.step` collected, stepping once a second."""
    p.step()
    when = []
    for t in range(1, until):
        clock.now = float(t)
        if p.step():
            when.append(t)
    return when


def test_the_defaults_are_a_minute_first_and_ten_minutes_at_most() -> None:
    clock = Clock()
    p = GcPacing(clock=clock)
    try:
        assert _schedule(p, clock, 3000) == [60, 180, 420, 900, 1500, 2100, 2700]
    finally:
        p.stop()


def test_the_first_gap_is_never_longer_than_the_period() -> None:
    clock = Clock()
    p = GcPacing(100.0, clock, first_s=300.0)
    try:
        assert _schedule(p, clock, 350) == [100, 200, 300]
    finally:
        p.stop()


def test_first_s_must_be_positive() -> None:
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(ValueError, match="first_s"):
            GcPacing(600.0, first_s=bad)


def test_after_stop_the_next_step_freezes_again_and_starts_from_first_s(
    pacing: tuple[GcPacing, Clock],
) -> None:
    p, clock = pacing
    assert _schedule(p, clock, 500) == [60, 180, 420]  # the gap has grown to 480 s
    p.stop()
    assert gc.get_freeze_count() == 0
    clock.now = 1000.0
    assert p.step() is False  # a fresh start: it freezes, it does not collect
    assert gc.get_freeze_count() > 0
    clock.now = 1059.0
    assert p.step() is False
    clock.now = 1060.0
    assert p.step() is True


def test_stop_without_a_step_leaves_a_freeze_made_by_someone_else() -> None:
    gc.freeze()
    try:
        GcPacing(600.0, Clock()).stop()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
