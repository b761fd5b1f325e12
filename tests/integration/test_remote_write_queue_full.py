"""A real Prometheus remote-writes into relia's receiver while nothing drains its queue (a store
that stalls): the full queue's answers make Prometheus retry, and no point is lost."""

from __future__ import annotations

import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from relia.ingest.api import remote_write_router
from relia.ingest.queue import IngestQueue
from relia.ingest.remote_write import RemoteWriteDecoder
from relia.ingest.source import IngestMetrics
from relia.signals import SeriesIndex
from tests.integration.conftest import Exporter, _prometheus_binary, _running_prometheus

pytestmark = pytest.mark.integration

STALL_S = 10.0


class Receiver:
    """The remote-write route over a tiny queue, served by uvicorn on loopback in a thread."""

    def __init__(self, wal_dir: Path) -> None:
        self.index = SeriesIndex()
        self.queue = IngestQueue(10, wal_dir)
        self.registry = CollectorRegistry()
        self.metrics = IngestMetrics(self.registry)
        app = FastAPI()
        app.include_router(
            remote_write_router(self.queue, RemoteWriteDecoder(self.index), metrics=self.metrics)
        )
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off"))
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )
        #: (series name, ts) of every sample drained so far.
        self.points: set[tuple[str, int]] = set()

    def drain(self) -> None:
        batch, token = self.queue.drain()
        if token is None:
            return
        for sid, ts in zip(batch.series_id.tolist(), batch.ts.tolist(), strict=True):
            self.points.add((self.index.key(sid)[0], ts))
        self.queue.commit(token)

    def count(self, code: str) -> float:
        got = self.registry.get_sample_value("relia_remote_write_requests_total", {"code": code})
        return got or 0.0


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    rx = Receiver(tmp_path / "wal")
    rx.thread.start()
    deadline = time.monotonic() + 10
    while not rx.server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield rx
    finally:
        rx.server.should_exit = True
        rx.thread.join(10)
        rx.sock.close()
        rx.queue.close()


def test_no_point_is_lost_while_a_full_queue_holds_prometheus_back(
    test_exporter: Exporter, receiver: Receiver
) -> None:
    binary = _prometheus_binary()
    with tempfile.TemporaryDirectory(prefix="relia-rw-full-") as tmp:
        root = Path(tmp)
        config = root / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n"
            "scrape_configs:\n"
            "  - job_name: relia_rw_full\n"
            "    scrape_interval: 1s\n"
            "    static_configs:\n"
            f"      - targets: ['{test_exporter.address}']\n"
            "remote_write:\n"
            f"  - url: {receiver.url}/api/v1/write\n"
            "    queue_config: {batch_send_deadline: 1s, max_samples_per_send: 5,"
            " min_backoff: 100ms, max_backoff: 1s}\n"
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

        with _running_prometheus(binary, root, config, root / "data", ready, 20.0) as prom:
            # The store stalls: nothing drains, the queue fills and answers "retry later".
            deadline = time.monotonic() + STALL_S
            while time.monotonic() < deadline:
                time.sleep(0.2)
            assert receiver.count("503") + receiver.count("429") > 0, "the queue never filled"
            # The store is back: drain until Prometheus sent what it holds, and longer.
            end_s = time.time()
            with httpx.Client(timeout=5.0) as http:
                # Prometheus's own copy of the test wave up to the end of the stall.
                r = http.get(
                    f"{prom}/api/v1/query",
                    params={"query": "relia_test_wave[60s]", "time": f"{end_s:.3f}"},
                )
                result = r.json()["data"]["result"]
                assert result, "prometheus scraped nothing"
                wanted = {round(float(t) * 1000) for t, _ in result[0]["values"]}
                catch_up = time.monotonic() + 30
                while time.monotonic() < catch_up:
                    receiver.drain()
                    got = {ts for name, ts in receiver.points if name == "relia_test_wave"}
                    if wanted <= got:
                        break
                    time.sleep(0.1)
            missing = sorted(wanted - got)
            assert not missing, f"{len(missing)} of {len(wanted)} points lost: {missing[:5]}"
            assert receiver.count("429") == 0
