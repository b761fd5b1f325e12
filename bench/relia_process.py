"""Start ``relia up`` as a subprocess for a benchmark and wait until its API listens."""

from __future__ import annotations

import queue
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path


def start_relia_up(
    command: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    while_waiting: Callable[[subprocess.Popen[str]], None] | None = None,
    timeout_s: float = 120.0,
) -> tuple[subprocess.Popen[str], str, list[str]]:
    """Run ``command`` (``relia up …``) and return (process, API URL, the last 40 stderr lines,
    kept up to date while it runs). ``while_waiting(proc)`` is called every ~0.1 s until the URL
    shows (e.g. to sample memory during start-up). Exits with the stderr tail if it dies or does
    not start within ``timeout_s`` (then it is killed)."""
    proc = subprocess.Popen(
        list(command),
        cwd=cwd,
        env=dict(env),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    tail: list[str] = []

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            tail.append(line)
            del tail[:-40]
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            raise SystemExit("relia up did not start:\n" + "".join(tail))
        if while_waiting is not None:
            while_waiting(proc)
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            continue
        if "http://" in line:
            return proc, line[line.index("http://") :].split()[0], tail
