from __future__ import annotations

import logging

import pytest

from relia._failurelog import FailureLog


def test_a_repeated_failure_logs_one_traceback_a_line_a_minute_and_the_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = {"t": 0.0}
    flog = FailureLog(logging.getLogger("t"), "engine tick", clock=lambda: now["t"])
    with caplog.at_level(logging.INFO, logger="t"):
        for _ in range(100):  # 100 s of one failure a second
            try:
                raise OSError("disk full")
            except OSError as exc:
                assert flog.failed(exc) == "OSError: disk full"
            now["t"] += 1.0
        assert flog.last_error == "OSError: disk full"
        flog.succeeded()
        flog.succeeded()
    lines = [(r.levelno, r.getMessage(), r.exc_info is not None) for r in caplog.records]
    assert lines == [
        (logging.ERROR, "engine tick failed", True),
        (logging.WARNING, "engine tick still failing (61 in a row): OSError: disk full", False),
        (logging.WARNING, "engine tick recovered after 100 failures", False),
    ]
    assert flog.last_error is None and flog.failures == 0


def test_a_different_failure_is_logged_with_its_traceback_at_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flog = FailureLog(logging.getLogger("t"), "round", clock=lambda: 0.0)
    with caplog.at_level(logging.INFO, logger="t"):
        for exc in (OSError("disk full"), OSError("disk full"), TimeoutError("slow")):
            flog.failed(exc)
    assert [r.exc_info is not None for r in caplog.records] == [True, True]
    assert flog.failures == 3 and flog.last_error == "TimeoutError: slow"


def test_the_minute_is_counted_from_the_traceback_not_from_the_clock_zero(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # time.monotonic() is large: a failure at t=1000 followed by the same failure a second
    # later is one traceback, not a traceback and an immediate "still failing" line.
    now = {"t": 1000.0}
    flog = FailureLog(logging.getLogger("t"), "round", clock=lambda: now["t"])
    with caplog.at_level(logging.INFO, logger="t"):
        for t in (1000.0, 1001.0, 1059.0, 1060.0):
            now["t"] = t
            flog.failed(OSError("disk full"))
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (logging.ERROR, "round failed"),
        (logging.WARNING, "round still failing (4 in a row): OSError: disk full"),
    ]
