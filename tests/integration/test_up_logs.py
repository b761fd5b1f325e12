"""``relia up`` tailing a log file, killed with SIGKILL mid-file (and mid-line), across a rotation
and a truncation: the stored counts equal the lines written, none lost, none counted twice."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from relia.logs.engine import LogPipeline
from relia.logs.tail import TailState
from relia.store.duckdb import DuckDBStore
from tests.integration.up_process import ReliaProcess

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class Relia(ReliaProcess):
    """``relia up`` in a subprocess, with what this test asks of it."""

    def logs(self) -> dict[str, Any]:
        got: dict[str, Any] = httpx.get(self.url + "/healthz", timeout=10).json()["engine"]["logs"]
        return got["app"]

    def wait_for(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred(self.logs()):
                return
            time.sleep(0.02)
        raise AssertionError(f"not reached in time: {self.logs()}")


class Writer:
    """Appends numbered lines and remembers how many it wrote."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.n = 0

    def lines(self, k: int, *, mode: str = "a") -> None:
        with self.path.open(mode) as f:
            for _ in range(k):
                kind = ("GET", "POST", "DELETE")[self.n % 3]
                f.write(
                    f"2024-05-01T12:00:00Z INFO api: {kind} /items/{self.n} took {self.n % 97}ms\n"
                )
                self.n += 1


def test_sigkill_mid_file_rotation_and_truncation_lose_and_double_nothing(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    config = tmp_path / "relia.yaml"
    config.write_text(
        f"data_dir: {tmp_path / 'data'}\n"
        "interval: 0.05\n"
        "host: {enabled: false}\n"
        "api: {port: 0}\n"
        "logs:\n"
        "  window: 1s\n"
        "  warmup_lines: 0\n"
        "  max_bytes_per_tick: 8000\n"  # about 110 lines a tick: the kill lands mid-file
        f"  files: [{{path: {log}, name: app}}]\n"
    )
    w = Writer(log)
    log.touch()
    procs: list[Relia] = []

    def start() -> Relia:
        procs.append(Relia(config))
        return procs[-1]

    try:
        # 1. Killed mid-file. The lines come once the API answers: a first start that compiles
        #    its kernels can serve late, and must not have read the whole file by then.
        r = start()
        r.wait_for(lambda s: s["lines"] == 0)
        w.lines(3000)
        r.wait_for(lambda s: s["lines"] >= 500)
        r.kill()
        # Read from the store while relia is down: asking the restarted one races its ticks.
        # The API counts lines as they are read; the store has them once their tick commits, so
        # it may hold fewer than the 500 seen (the rest are read again after the restart).
        with DuckDBStore(tmp_path / "data" / "relia.duckdb") as store:
            stored = int(store.log_counts("app").count.sum())
        assert 0 < stored < 3000, f"the kill did not land mid-file ({stored} of 3000 stored)"
        # A partial line is pending when it comes back; killed mid-file again.
        with log.open("a") as f:
            f.write("2024-05-01T12:00:00Z INFO api: half a li")
        r = start()
        r.wait_for(lambda s: s["lines"] >= 1500)
        r.kill()
        with log.open("a") as f:
            f.write("ne, finished after a restart\n")
        w.n += 1

        # 2. Rotation while relia is reading (the old file still has unread lines), killed
        #    while the old file and the new one are being read.
        r = start()
        w.lines(1000)
        log.rename(tmp_path / "app.log.1")
        w.lines(1000)
        r.wait_for(lambda s: s["rotations"] >= 1)
        r.wait_for(lambda s: s["lines"] >= 4000)
        r.kill()
        r = start()
        r.wait_for(lambda s: s["lines"] == w.n)

        # 3. Truncation (copytruncate) once everything was read; killed mid-file afterwards.
        w.lines(1500, mode="w")
        r.wait_for(lambda s: s["truncations"] >= 1 and s["lines"] >= w.n - 1000)
        r.kill()
        r = start()
        r.wait_for(lambda s: s["lines"] == w.n)
        r.stop()
    finally:
        for p in procs:
            p.ensure_gone()

    assert w.n == 3000 + 1 + 2000 + 1500
    with DuckDBStore(tmp_path / "data" / "relia.duckdb") as store:
        counts = store.log_counts("app")
        assert int(counts.count.sum()) == w.n
        blob = store.load_log_states()["app"]
    state = LogPipeline.decode_state(blob)
    tail = TailState.from_dict(state["tail"])
    assert state["lines"] == tail.counts.lines == w.n
    assert tail.counts.rotations == 1 and tail.counts.truncations == 1
    assert tail.counts.skipped == 0 and tail.counts.lost_rotated == 0
