"""Keeps Python's full garbage collections off the path from a sample to its finding.

A full (generation 2) collection walks every container object the process holds and stops every
thread while it does. `relia up` holds millions of them once it watches a fleet (series labels,
incident state, the API's objects), so under load CPython's own schedule ran one every half
minute or so, each a 0.1-0.25 s pause of the engine and of the remote-write receiver alike, at a
random moment.

:class:`GcPacing` moves what exists into the permanent generation (:func:`gc.freeze`), so the
automatic collections only walk what was allocated since, and once per ``period_s`` it runs the
one full collection itself, between two engine ticks: unfreeze, collect, freeze again. The first
ones come sooner (after 60 s, then twice the gap each time up to ``period_s``), so what start-up
and the first minutes build (the series index, detector state) is frozen early. Memory
stays bounded: a cycle that becomes garbage is collected by the automatic collections if it was
allocated after the last freeze, else by the next full collection, at most ``period_s`` later.
Objects freed by reference counting (nearly all) are freed at once, frozen or not.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable

__all__ = ["GcPacing"]

log = logging.getLogger(__name__)


class GcPacing:
    """Full collections at most once per ``period_s`` (sooner at first), at :meth:`step`,
    instead of at random moments.

    Call :meth:`step` from the engine's loop between ticks (the first call freezes what exists)
    and :meth:`stop` when the loop ends (it unfreezes, handing collection back to CPython).
    """

    def __init__(
        self,
        period_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
        *,
        first_s: float = 60.0,
    ) -> None:
        if not period_s > 0 or not first_s > 0:
            raise ValueError(f"period_s and first_s must be > 0, got {period_s!r}, {first_s!r}")
        self.period_s = period_s
        self.first_s = min(first_s, period_s)
        self.clock = clock
        self.collections = 0
        self._last: float | None = None
        self._gap = self.first_s

    def step(self) -> bool:
        """Freeze on the first call; once the current gap (``first_s`` at first, doubling up to
        ``period_s``) has passed since the last full collection, run one (unfreeze, collect,
        freeze). Returns whether it collected."""
        now = self.clock()
        if self._last is None:
            gc.freeze()
            self._last = now
            self._gap = self.first_s
            return False
        if now - self._last < self._gap:
            return False
        t0 = time.perf_counter()
        gc.unfreeze()
        freed = gc.collect()
        gc.freeze()
        self._last = self.clock()
        self._gap = min(2 * self._gap, self.period_s)
        self.collections += 1
        log.debug("full garbage collection: %d freed in %.3f s", freed, time.perf_counter() - t0)
        return True

    def stop(self) -> None:
        """Unfreeze: CPython's own schedule collects everything again."""
        if self._last is not None:
            gc.unfreeze()
            self._last = None
