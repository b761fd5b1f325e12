"""Logging for work that retries on a timer: a failure that repeats is not a flood.

A store that is away for ten minutes fails every engine tick (several a second under
remote-write), every incident round (one a second) and every HA leader round. Each logging a
traceback buries the one line that says what is wrong. :class:`FailureLog` logs the first
failure of a kind with its traceback, the same failure again once a minute as one line with the
count, and the recovery as one line.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

__all__ = ["FailureLog"]


class FailureLog:
    """Reports the failures of one repeated task (``what``: "engine tick", ...) to ``logger``.

    Call :meth:`failed` from the ``except`` block (it logs the traceback of the exception being
    handled) and :meth:`succeeded` after each round that worked. ``last_error`` is the failure
    of the last round, None once one succeeded. ``traceback=False`` logs the first failure as
    one line too, for failures whose message says everything (a file that cannot be read)."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        repeat_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        traceback: bool = True,
    ) -> None:
        self.logger = logger
        self.what = what
        self.repeat_s = repeat_s
        self.clock = clock
        self.traceback = traceback
        self.last_error: str | None = None
        self.failures = 0  # in a row
        self._logged_at = 0.0

    def failed(self, exc: BaseException) -> str:
        """Record a failed round; returns its one-line description."""
        msg = f"{type(exc).__name__}: {exc}"
        self.failures += 1
        now = self.clock()
        if msg != self.last_error:
            if self.traceback:
                self.logger.error("%s failed", self.what, exc_info=exc)
            else:
                self.logger.warning("%s: %s", self.what, exc)
            self._logged_at = now
        elif now - self._logged_at >= self.repeat_s:
            self.logger.warning("%s still failing (%d in a row): %s", self.what, self.failures, msg)
            self._logged_at = now
        self.last_error = msg
        return msg

    def succeeded(self) -> None:
        """Record a round that worked (logs the recovery after failures)."""
        if self.failures:
            self.logger.warning("%s recovered after %d failures", self.what, self.failures)
        self.failures = 0
        self.last_error = None
