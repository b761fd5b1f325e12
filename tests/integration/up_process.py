"""``relia up`` in a subprocess, for the tests that kill it (SIGKILL) and start it again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

_START = (
    "import sys\n"
    "from relia.config import load_config\n"
    "from relia.engine.up import run_up\n"
    "sys.exit(run_up(load_config(sys.argv[1]), ready=lambda u: print('READY', u, flush=True)))\n"
)


class ReliaProcess:
    """``relia up`` with the config at ``config``, started and ready (``url``: its API)."""

    def __init__(self, config: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _START, str(config)],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.startswith("READY http://"), f"relia up did not start: {line!r}"
        self.url = line.split()[1]

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final checkpoint."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        """SIGTERM, and a clean exit."""
        self.proc.send_signal(signal.SIGTERM)
        assert self.proc.wait(60) == 0

    def ensure_gone(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()
