"""Run ``relia`` with standard output a pipe whose reader has gone (as ``relia … | head``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")


def run_into_closed_pipe(
    *args: str, stdin: bytes | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[bytes]:
    """``python -m relia ARGS`` in a new process whose stdout's reading end is closed before it
    starts: its first write to stdout fails with EPIPE, whatever the timing."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, os.environ.get("PYTHONPATH", "")])}
    try:
        return subprocess.run(
            [sys.executable, "-m", "relia", *args],
            stdout=write_end,
            stderr=subprocess.PIPE,
            input=stdin,
            cwd=cwd,
            env=env,
            timeout=120,
            check=False,
        )
    finally:
        os.close(write_end)
