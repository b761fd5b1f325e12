"""Real servers on loopback for integration tests.

Fixtures (session-scoped):

- ``test_exporter``: a ``/metrics`` endpoint on 127.0.0.1 (prometheus_client on its own registry)
  exposing ``relia_test_wave`` (gauge, ``sin(2π t / 60)`` with ``t`` in seconds since the epoch,
  labels ``shape="sine"``) and ``relia_test_requests_total`` (counter growing by 10 per second
  since the exporter started). ``.url`` is the ``/metrics`` URL, ``.address`` ``host:port``.
- ``prometheus_server``: the Debian ``prometheus`` binary scraping that exporter every second
  under job ``relia_test``, ready and holding a few samples. ``.url`` is its base URL,
  ``.exporter_url`` the exporter's ``/metrics`` URL, ``.job`` the job name.
- ``alertmanager_server`` (per test): the Debian ``prometheus-alertmanager`` with a webhook
  receiver in the test. ``.url``, ``.received`` (notifications), ``.stop()``, ``.start()``.

Without the binary the tests fail when ``CI`` is set and are skipped otherwise.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tests.http_receiver import HttpReceiver

WAVE_PERIOD_S = 60.0
REQUESTS_PER_S = 10.0
JOB = "relia_test"


def wave_value(t_s: float) -> float:
    """What ``relia_test_wave`` reads at time ``t_s`` (seconds since the epoch)."""
    return math.sin(2 * math.pi * t_s / WAVE_PERIOD_S)


class _TestCollector(Collector):
    def __init__(self) -> None:
        self.started = time.time()

    def collect(self) -> Iterator[Metric]:
        now = time.time()
        wave = GaugeMetricFamily("relia_test_wave", "A sine wave of period 60 s.", labels=["shape"])
        wave.add_metric(["sine"], wave_value(now))
        yield wave
        requests = CounterMetricFamily("relia_test_requests", "Requests, 10 per second.")
        requests.add_metric([], REQUESTS_PER_S * (now - self.started))
        yield requests


@dataclass(frozen=True)
class Exporter:
    url: str
    address: str
    started: float


@dataclass(frozen=True)
class PrometheusServer:
    url: str
    exporter_url: str
    exporter_address: str
    job: str
    data_dir: Path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def test_exporter() -> Iterator[Exporter]:
    registry = CollectorRegistry()
    collector = _TestCollector()
    registry.register(collector)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    port = server.server_port
    try:
        yield Exporter(
            url=f"http://127.0.0.1:{port}/metrics",
            address=f"127.0.0.1:{port}",
            started=collector.started,
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _prometheus_binary() -> str:
    binary = shutil.which("prometheus")
    if binary is None:
        msg = "the prometheus binary is not installed: sudo apt-get install -y prometheus"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return binary


def _wait_ready(url: str, proc: subprocess.Popen[bytes], deadline: float, log: Path) -> None:
    with httpx.Client(timeout=2.0) as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                tail = log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"prometheus exited with {proc.returncode}:\n{tail}")
            try:
                if http.get(f"{url}/-/ready").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        else:
            raise RuntimeError(f"prometheus at {url} not ready in time")
        # Ready is not enough: wait until a few scrapes of the exporter are stored.
        while time.monotonic() < deadline:
            end = time.time()
            resp = http.get(
                f"{url}/api/v1/query_range",
                params={"query": "relia_test_wave", "start": end - 60, "end": end, "step": 1},
            )
            result = resp.json().get("data", {}).get("result", [])
            if result and len({v[1] for v in result[0]["values"]}) >= 3:
                return
            time.sleep(0.25)
        raise RuntimeError(f"prometheus at {url} stored no samples of the test exporter in time")


@contextlib.contextmanager
def _running_prometheus(
    binary: str,
    root: Path,
    config: Path,
    data: Path,
    wait: Callable[[str, subprocess.Popen[bytes], float, Path], None],
    timeout_s: float,
    extra_args: Sequence[str] = (),
) -> Iterator[str]:
    """Start Prometheus on a free loopback port, wait (up to ``timeout_s``) until ``wait`` says it
    is ready, yield its URL, and stop it on the way out. Retries when the probed port is taken
    before it binds."""
    log = root / "prometheus.log"
    proc: subprocess.Popen[bytes] | None = None
    url = ""
    for _attempt in range(3):
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={data}",
                    *extra_args,
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=root,
            )
        try:
            wait(url, proc, time.monotonic() + timeout_s, log)
            break
        except RuntimeError:
            proc.terminate()
            proc.wait(timeout=10)
            if "address already in use" not in log.read_text(errors="replace"):
                raise
    else:
        raise RuntimeError("prometheus found no free port in 3 attempts")
    assert proc is not None
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture(scope="session")
def prometheus_server(test_exporter: Exporter) -> Iterator[PrometheusServer]:
    binary = _prometheus_binary()
    with tempfile.TemporaryDirectory(prefix="relia-prom-") as tmp:
        root = Path(tmp)
        config = root / "prometheus.yml"
        config.write_text(
            "global:\n"
            "  scrape_interval: 1s\n"
            "  evaluation_interval: 1s\n"
            "scrape_configs:\n"
            f"  - job_name: {JOB}\n"
            "    scrape_interval: 1s\n"
            "    scrape_timeout: 1s\n"
            "    static_configs:\n"
            f"      - targets: ['{test_exporter.address}']\n"
        )
        with _running_prometheus(binary, root, config, root / "data", _wait_ready, 20.0) as url:
            yield PrometheusServer(
                url=url,
                exporter_url=test_exporter.url,
                exporter_address=test_exporter.address,
                job=JOB,
                data_dir=root / "data",
            )


# --- SLO reports (tests/integration/test_slo_prometheus.py) -------------------------------------

#: The backfilled request counters end here (2024-05-01T12:00:00Z, on the 5-minute grid).
SLO_DATA_END_S = 1_714_564_800
#: Minutes of backfilled data: 2.5 days, so a 2-day SLO window and its alert windows are covered.
SLO_DATA_MINUTES = 3600


def slo_requests_per_minute(minute_end_s: int) -> tuple[int, int]:
    """(good, bad) requests in the minute that ends at ``minute_end_s``: 120 a minute with 1 bad,
    3 bad from 6 h to 1 h before the end (a slow burn), 24 bad in the last hour (a fast burn).
    Rates change only on the 5-minute grid, so ``rate(x[5m])`` at grid times is exact."""
    age = SLO_DATA_END_S - minute_end_s
    bad = 24 if age < 3600 else 3 if age < 6 * 3600 else 1
    return 120 - bad, bad


def _slo_openmetrics() -> str:
    lines = [
        "# HELP relia_slo_requests Requests served, by status code.",
        "# TYPE relia_slo_requests counter",
    ]
    start = SLO_DATA_END_S - SLO_DATA_MINUTES * 60
    for code, pick in (("200", 0), ("500", 1)):
        count = 0
        lines.append(f'relia_slo_requests_total{{code="{code}"}} 0 {start}')
        for i in range(1, SLO_DATA_MINUTES + 1):
            t = start + 60 * i
            count += slo_requests_per_minute(t)[pick]
            lines.append(f'relia_slo_requests_total{{code="{code}"}} {count} {t}')
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class SloPrometheus:
    url: str
    data_end_s: int


@contextlib.contextmanager
def backfilled_prometheus(
    openmetrics: str,
    prefix: str,
    ready: Callable[[str, subprocess.Popen[bytes], float, Path], None],
) -> Iterator[str]:
    """A Prometheus serving ``openmetrics`` backfilled (no scraping; evaluation interval 1m, so
    subqueries without a step sample every minute): the text is turned into TSDB blocks by
    ``promtool tsdb create-blocks-from openmetrics``. ``ready`` waits until the blocks answer.
    Yields the base URL."""
    binary = _prometheus_binary()
    promtool = shutil.which("promtool")
    if promtool is None:
        msg = "promtool is not installed: sudo apt-get install -y prometheus"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
        root = Path(tmp)
        source = root / "backfill.om"
        source.write_text(openmetrics)
        data = root / "data"
        made = subprocess.run(
            [promtool, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if made.returncode != 0:
            raise RuntimeError(f"promtool failed:\n{made.stdout}\n{made.stderr}")
        config = root / "prometheus.yml"
        config.write_text("global:\n  evaluation_interval: 1m\n")
        # The backfilled data lies in the past: keep it whatever its age.
        extra = ("--storage.tsdb.retention.time=100y",)
        with _running_prometheus(binary, root, config, data, ready, 30.0, extra) as url:
            yield url


@pytest.fixture(scope="session")
def slo_prometheus() -> Iterator[SloPrometheus]:
    """A Prometheus serving 2.5 days of backfilled request counters (see
    :func:`backfilled_prometheus`)."""
    ready = wait_backfilled("count(relia_slo_requests_total)", "2")  # both codes' series
    with backfilled_prometheus(_slo_openmetrics(), "relia-slo-prom-", ready) as url:
        yield SloPrometheus(url=url, data_end_s=SLO_DATA_END_S)


def wait_backfilled(
    query: str, expect: str
) -> Callable[[str, subprocess.Popen[bytes], float, Path], None]:
    """A readiness check for :func:`backfilled_prometheus`: ready, and ``query`` at the data's
    end answers ``expect`` (the backfilled blocks are loaded)."""

    def wait(url: str, proc: subprocess.Popen[bytes], deadline: float, log: Path) -> None:
        with httpx.Client(timeout=2.0) as http:
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    tail = log.read_text(errors="replace")[-2000:]
                    raise RuntimeError(f"prometheus exited with {proc.returncode}:\n{tail}")
                try:
                    resp = http.get(
                        f"{url}/api/v1/query", params={"query": query, "time": SLO_DATA_END_S}
                    )
                    result = resp.json().get("data", {}).get("result", [])
                    if resp.status_code == 200 and result and result[0]["value"][1] == expect:
                        return
                except (httpx.HTTPError, ValueError, KeyError):
                    pass
                time.sleep(0.1)
        raise RuntimeError(f"prometheus at {url} did not serve the backfilled data in time")

    return wait


# --- Alertmanager (tests/integration/test_alertmanager.py; relia up end-to-end tests) -------------


class AlertmanagerServer:
    """A real ``prometheus-alertmanager`` on 127.0.0.1 whose one receiver is a webhook to a
    server in the test. ``.url`` is its base URL (the same across :meth:`stop` and
    :meth:`start`: the port is kept), ``.received`` the notifications the webhook got (dicts as
    Alertmanager sends them, in arrival order). Routing: grouped by ``incident_id``,
    ``group_wait`` 0s, ``group_interval`` 1s, ``repeat_interval`` 24h; no clustering; storage
    (silences, notification log) in a temporary directory kept across restarts."""

    def __init__(self, binary: str, root: Path) -> None:
        self._binary = binary
        self.root = root
        self._receiver = HttpReceiver(lambda: 200)
        self.config = root / "alertmanager.yml"
        self.config.write_text(
            "route:\n"
            "  receiver: relia-test\n"
            "  group_by: ['incident_id']\n"
            "  group_wait: 0s\n"
            "  group_interval: 1s\n"
            "  repeat_interval: 24h\n"
            "receivers:\n"
            "  - name: relia-test\n"
            "    webhook_configs:\n"
            f"      - url: {self._receiver.url}/\n"
            "        send_resolved: true\n"
        )
        self._proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self.url = ""

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def received(self) -> list[dict[str, Any]]:
        """The notifications the webhook got so far, as Alertmanager sent them, oldest first."""
        return [json.loads(post.body) for post in self._receiver.posts]

    def start(self, timeout_s: float = 15.0) -> None:
        """Start it (on the port of the first start, if any) and wait until it is ready."""
        if self.running:
            return
        for _attempt in range(3):
            port = self.port or _free_port()
            log = self.root / "alertmanager.log"
            with log.open("ab") as out:
                self._proc = subprocess.Popen(
                    [
                        self._binary,
                        f"--config.file={self.config}",
                        f"--storage.path={self.root / 'data'}",
                        f"--web.listen-address=127.0.0.1:{port}",
                        "--cluster.listen-address=",
                        "--log.level=warn",
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    cwd=self.root,
                )
            url = f"http://127.0.0.1:{port}"
            if self._wait_ready(url, time.monotonic() + timeout_s):
                self.port, self.url = port, url
                return
            self._terminate()
            tail = log.read_text(errors="replace")[-2000:]
            if self.port or "address already in use" not in tail:
                raise RuntimeError(f"alertmanager did not start on port {port}:\n{tail}")
        raise RuntimeError("alertmanager found no free port in 3 attempts")

    def stop(self) -> None:
        """Stop it gracefully (it writes its notification log on the way out)."""
        self._terminate()

    def close(self) -> None:
        self._terminate()
        self._receiver.close()

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)

    def _wait_ready(self, url: str, deadline: float) -> bool:
        with httpx.Client(timeout=1.0) as http:
            while time.monotonic() < deadline:
                if self._proc is None or self._proc.poll() is not None:
                    return False
                try:
                    if http.get(f"{url}/-/ready").status_code == 200:
                        return True
                except httpx.HTTPError:
                    pass
                time.sleep(0.05)
        return False


def _alertmanager_binary() -> str:
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        msg = (
            "the alertmanager binary is not installed: "
            "sudo apt-get install -y prometheus-alertmanager"
        )
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return binary


@pytest.fixture
def alertmanager_server() -> Iterator[AlertmanagerServer]:
    """A fresh Alertmanager per test, started (see :class:`AlertmanagerServer`)."""
    binary = _alertmanager_binary()
    with tempfile.TemporaryDirectory(prefix="relia-am-") as tmp:
        server = AlertmanagerServer(binary, Path(tmp))
        try:
            server.start()
            yield server
        finally:
            server.close()
