"""Where ``relia up`` writes its log lines: stderr, one line each, UTC time first.

relia's modules log through ``logging.getLogger("relia.…")`` and never configure logging
themselves (a library that does fights the program embedding it). The ``relia up`` command is a
program, so it does: without a handler, Python's last-resort handler prints only warnings and
worse, and everything relia documents at INFO (a log sink's notifications, retention counts,
circuit breakers, recoveries) would be written nowhere.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, TextIO

__all__ = ["configure_logging"]

_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of each record (a test runner or a
    daemon wrapper may swap it after start-up), not the stream seen at start."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:  # StreamHandler.__init__ assigns it
        pass


def configure_logging(level: str = "info") -> logging.Handler:
    """Send the ``relia`` loggers' records at ``level`` and above to stderr. Called again, it
    replaces the handler it added before rather than adding a second one."""
    logger = logging.getLogger("relia")
    for old in [h for h in logger.handlers if isinstance(h, _StderrHandler)]:
        logger.removeHandler(old)
    handler = _StderrHandler()
    formatter = logging.Formatter(_FORMAT, datefmt="%Y-%m-%dT%H:%M:%SZ")
    formatter.converter = time.gmtime
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    logger.setLevel(level.upper())
    return handler
