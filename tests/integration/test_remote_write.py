"""A real Prometheus remote-writes into ``relia up`` (a subprocess); the series appear in relia."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.conftest import Exporter, _prometheus_binary, _running_prometheus

pytestmark = pytest.mark.integration


@pytest.fixture
def relia_up() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="relia-rw-") as tmp:
        root = Path(tmp)
        cfg = root / "relia.yaml"
        cfg.write_text(
            f"data_dir: {root / 'data'}\nhost: {{enabled: false}}\n"
            "interval: 1s\napi: {host: 127.0.0.1, port: 0}\n"
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("RELIA_")}
        proc = subprocess.Popen(
            [sys.executable, "-m", "relia", "up", "--config", str(cfg)],
            cwd=root,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        lines: queue.Queue[str] = queue.Queue()

        def pump() -> None:
            assert proc.stderr is not None
            for line in proc.stderr:
                lines.put(line)

        threading.Thread(target=pump, daemon=True).start()
        url = None
        deadline = time.monotonic() + 60
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                line = lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if "http://" in line:
                url = line[line.index("http://") :].split()[0]
        try:
            assert url is not None, "relia up did not start"
            yield url
        finally:
            proc.terminate()
            proc.wait(30)


def test_prometheus_remote_writes_into_relia(test_exporter: Exporter, relia_up: str) -> None:
    binary = _prometheus_binary()
    with tempfile.TemporaryDirectory(prefix="relia-rw-prom-") as tmp:
        root = Path(tmp)
        config = root / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n"
            "scrape_configs:\n"
            "  - job_name: relia_rw\n"
            "    scrape_interval: 1s\n"
            "    static_configs:\n"
            f"      - targets: ['{test_exporter.address}']\n"
            "remote_write:\n"
            f"  - url: {relia_up}/api/v1/write\n"
            "    queue_config: {batch_send_deadline: 1s}\n"
        )

        def ready(url: str, proc: subprocess.Popen[bytes], deadline: float, log: Path) -> None:
            with httpx.Client(timeout=2.0) as http:
                while time.monotonic() < deadline:
                    if proc.poll() is not None:
                        raise RuntimeError(log.read_text(errors="replace")[-2000:])
                    try:
                        if http.get(f"{url}/-/ready").status_code == 200:
                            return
                    except httpx.HTTPError:
                        pass
                    time.sleep(0.1)
            raise RuntimeError("prometheus not ready")

        with _running_prometheus(binary, root, config, root / "data", ready, 20.0):
            deadline = time.monotonic() + 45
            found: dict[str, object] | None = None
            with httpx.Client(timeout=5.0) as http:
                while time.monotonic() < deadline:
                    series = http.get(f"{relia_up}/api/v1/series").json()
                    items = series.get("series", series) if isinstance(series, dict) else series
                    for s in items:
                        if s.get("name") == "relia_test_wave":
                            found = s
                    if found is not None:
                        break
                    time.sleep(0.5)
                assert found is not None, "relia_test_wave never arrived by remote-write"
                assert found["labels"]["job"] == "relia_rw"  # type: ignore[index]
                metrics = http.get(f"{relia_up}/metrics").text
                assert 'relia_remote_write_requests_total{code="204"}' in metrics
