"""``relia up`` evaluating SLOs: the ``slos`` config section, the engine's SLO round and thread,
and findings from firing burn-rate alerts, against the fake Prometheus of relia.sources.fakes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client import generate_latest

from relia.config import ApiConfig, HostConfig, ReliaConfig, SloConfig, load_config
from relia.engine.local import LocalExecutor
from relia.engine.loop import Engine
from relia.engine.up import build_slo_evaluator, run_up
from relia.errors import ConfigError, StoreError
from relia.incidents.model import Finding, FindingKind, Severity
from relia.signals import SeriesIndex
from relia.slo.evaluate import DETECTOR, SloEvaluator
from relia.slo.loader import load_slos
from relia.sources.fakes import fake_prometheus_transport
from relia.sources.prometheus import PrometheusClient, RangeSeries
from relia.store.base import Store
from relia.store.duckdb import STORE_FILE, DuckDBStore
from tests.engine.memstore import MemoryStore

T0 = 1_714_564_800_000  # 2024-05-01T12:00:00Z, on the 5-minute grid
URL = "http://prometheus.test"

SPEC = """\
apiVersion: relia/v1
service: shop
slos:
  - name: checkout
    objective: 99
    period: 7d
    sli:
      events:
        error_query: req{kind="bad",window="{{.window}}"}
        total_query: req{kind="total",window="{{.window}}"}
    alerting:
      name: ShopCheckoutBurn
"""


def _series(end_ms: int, hot: tuple[int, int] | None, bad_rate: float = 2.0) -> list[RangeSeries]:
    """10 requests/s and 0.1 % errors for 7.5 days up to ``end_ms`` (a sample a minute), with
    ``bad_rate`` errors/s between ``hot = (start_ms, end_ms)``. Labelled ``window="5m"`` so the
    spec's ``{{.window}}`` selects them: the fake only understands series selectors."""
    ts = end_ms - np.arange(int(7.5 * 1440), -1, -1, dtype=np.int64) * 60_000
    bad = np.full(len(ts), 0.01)
    if hot is not None:
        bad[(ts > hot[0]) & (ts <= hot[1])] = bad_rate
    labels = {"__name__": "req", "window": "5m"}
    return [
        RangeSeries({**labels, "kind": "total"}, ts, np.full(len(ts), 10.0)),
        RangeSeries({**labels, "kind": "bad"}, ts, bad),
    ]


@pytest.fixture
def spec(tmp_path: Path) -> Path:
    path = tmp_path / "shop.yaml"
    path.write_text(SPEC)
    return path


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


StoreFactory = Callable[[], Store]


@pytest.fixture(params=["memory", "duckdb"])
def make_store(request: pytest.FixtureRequest) -> Iterator[StoreFactory]:
    made: list[Store] = []

    def make() -> Store:
        st: Store = MemoryStore() if request.param == "memory" else DuckDBStore(":memory:")
        made.append(st)
        return st

    yield make
    for st in made:
        st.close()


def _engine(store: Store, clock: Clock, spec: Path, series: list[RangeSeries]) -> Engine:
    client = PrometheusClient(URL, transport=fake_prometheus_transport(series))
    evaluator = SloEvaluator(client, load_slos([spec]))
    return Engine(
        store,
        [],
        LocalExecutor("default"),
        index=SeriesIndex(),
        clock=clock,
        slo_evaluator=evaluator,
        slo_interval_s=60.0,
    )


# -- config ----------------------------------------------------------------------------------


def test_slos_config_section(tmp_path: Path) -> None:
    path = tmp_path / "relia.yaml"
    path.write_text(
        "prometheus:\n"
        "  - {name: prom, url: 'http://127.0.0.1:9090', queries: [{query: up}]}\n"
        "slos:\n"
        "  files: [a.yaml, b.yaml]\n"
        "  interval: 2m\n"
        "  step: 1m\n"
    )
    cfg = load_config(path, environ={})
    assert cfg.slos.files == [Path("a.yaml"), Path("b.yaml")]
    assert cfg.slos.interval == 120.0 and cfg.slos.step == 60.0 and cfg.slos.prometheus is None
    env = {"RELIA_SLOS__PROMETHEUS": "http://10.0.0.1:9090/"}
    assert load_config(path, environ=env).slos.prometheus == "http://10.0.0.1:9090"
    assert load_config(environ={}).slos == SloConfig()  # off by default


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("slos:\n  files: [a.yaml]\n", ":1: slos: no Prometheus to evaluate the SLOs against"),
        ("slos:\n  files: [a.yaml]\n  prometheus: ftp://x\n", ":3: slos.prometheus: must start"),
        ("slos:\n  interval: soon\n", ":2: slos.interval: expected a duration"),
        ("slos:\n  step: 90.5s\n", ":2: slos.step: the step must be a whole number"),
        ("slos:\n  min_range: 1.5s\n", ":2: slos.min_range: the min_range must be a whole"),
        ("slos:\n  fles: [a.yaml]\n", ":2: slos.fles: unknown field 'fles'; did you mean 'files'?"),
    ],
)
def test_slos_config_errors_name_file_line_and_field(
    tmp_path: Path, text: str, expected: str
) -> None:
    path = tmp_path / "relia.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert f"{path}{expected}" in str(info.value)


def test_build_slo_evaluator(spec: Path, tmp_path: Path) -> None:
    assert build_slo_evaluator(ReliaConfig()) is None
    source = {"name": "p", "url": "http://127.0.0.1:9090", "queries": [{"query": "up"}]}
    cfg = ReliaConfig.model_validate(
        {"prometheus": [source], "slos": {"files": [spec], "step": "10m", "min_range": "2m"}}
    )
    ev = build_slo_evaluator(cfg)
    assert ev is not None and [s.id for s in ev.slos] == ["shop-checkout"] and ev.step_s == 600
    assert ev.min_range_s == 120  # the config's, not the 5m default
    assert SloConfig().min_range == 300.0
    assert isinstance(ev.client, PrometheusClient) and ev.client.url == "http://127.0.0.1:9090"
    ev.close()
    bad = tmp_path / "bad.yaml"
    bad.write_text(SPEC.replace("objective: 99", "objective: 101"))
    cfg = ReliaConfig(slos=SloConfig(files=[bad], prometheus="http://127.0.0.1:9090"))
    with pytest.raises(ConfigError, match=f"{bad}.*objective"):
        build_slo_evaluator(cfg)


# -- the engine's SLO round ------------------------------------------------------------------


def test_firing_alerts_become_findings_extended_then_closed(
    make_store: StoreFactory, spec: Path
) -> None:
    store = make_store()
    clock = Clock(T0)
    # A fast burn (20 % errors) for the hour up to T0 + 10 minutes, then recovery.
    series = _series(T0 + 3_600_000, hot=(T0 - 3_000_000, T0 + 600_000))
    engine = _engine(store, clock, spec, series)
    first = engine.slo_tick()
    assert first.evaluated == 1 and first.errors == {} and first.new_findings == 1
    [f] = store.findings()
    assert f.kind is FindingKind.SLO and f.detector == DETECTOR
    assert f.key == "shop-checkout:page" and f.severity is Severity.CRITICAL
    assert f.start == f.end == T0 and f.series_id is None
    page = {w["name"]: w for w in f.evidence["windows"]}
    assert page["quick"]["firing"] and page["quick"]["long_burn_rate"] > 14
    assert f.evidence["alert_name"] == "ShopCheckoutBurn"
    assert 0 < f.evidence["budget_remaining_ratio"] < 1
    text = generate_latest(engine.registry).decode()
    assert 'relia_slo_burn_rate_alerts_firing{severity="page",slo="shop-checkout"} 1.0' in text
    assert "relia_slo_error_budget_remaining_ratio" in text

    clock.now = T0 + 300_000  # still burning: the same finding grows
    second = engine.slo_tick()
    assert (second.new_findings, second.updated_findings) == (0, 1)
    [g] = store.findings()
    assert g.id == f.id and g.end == T0 + 300_000 and g.evidence["evaluations"] == 2
    status = engine.status()["slos"]
    assert status["count"] == 1 and status["firing"] >= 1 and status["errors"] == {}

    clock.now = T0 + 3_600_000  # recovered: the 5-minute window is clean, nothing new
    third = engine.slo_tick()
    assert third.new_findings == third.updated_findings == third.firing == 0
    assert [x.id for x in store.findings()] == [f.id]
    engine.close()


class _OutageStore(MemoryStore):
    """A store whose ``add_findings`` fails while ``down``."""

    down = False

    def add_findings(self, findings: list[Finding]) -> int:
        if self.down:
            raise StoreError("cannot connect to the store: connection refused")
        return super().add_findings(findings)


def test_a_finding_the_store_could_not_take_is_stored_by_the_next_round(spec: Path) -> None:
    store = _OutageStore()
    clock = Clock(T0)
    series = _series(T0 + 3_600_000, hot=(T0 - 3_000_000, T0 + 600_000))
    engine = _engine(store, clock, spec, series)
    store.down = True
    with pytest.raises(StoreError):
        engine.slo_tick()  # fires while the store is down
    store.down = False
    clock.now = T0 + 3_600_000  # recovered by the next round: nothing fires any more
    result = engine.slo_tick()
    assert result.firing == 0 and result.new_findings == 1
    [f] = store.findings()
    assert f.key == "shop-checkout:page" and f.start == f.end == T0
    engine.close()


def test_rounds_the_store_refused_store_the_newest_version_of_a_finding(spec: Path) -> None:
    store = _OutageStore()
    clock = Clock(T0)
    series = _series(T0 + 3_600_000, hot=(T0 - 3_000_000, T0 + 600_000))
    engine = _engine(store, clock, spec, series)
    store.down = True
    for now in (T0, T0 + 300_000):  # fires, then still fires: two versions, neither stored
        clock.now = now
        with pytest.raises(StoreError):
            engine.slo_tick()
    store.down = False
    clock.now = T0 + 3_600_000
    assert engine.slo_tick().new_findings == 1
    [f] = store.findings()
    assert (f.start, f.end, f.evidence["evaluations"]) == (T0, T0 + 300_000, 2)
    engine.close()


def test_an_slo_whose_evaluation_failed_keeps_its_last_good_status(spec: Path) -> None:
    class FailingAfterOne(SloEvaluator):
        rounds = 0

        def evaluate(self, at_ms: int) -> Any:
            self.rounds += 1
            if self.rounds == 1:
                return super().evaluate(at_ms)
            return [], {slo.id: "cannot reach Prometheus" for slo in self.slos}

    series = _series(T0 + 3_600_000, hot=(T0 - 3_000_000, T0 + 600_000))
    client = PrometheusClient(URL, transport=fake_prometheus_transport(series))
    evaluator = FailingAfterOne(client, load_slos([spec]))
    engine = Engine(MemoryStore(), [], LocalExecutor("default"), index=SeriesIndex(),
                    clock=Clock(T0), slo_evaluator=evaluator)  # fmt: skip
    engine.slo_tick()
    [good] = engine.slo_statuses()
    assert good.slo.id == "shop-checkout" and good.firing
    failed = engine.slo_tick()
    assert failed.evaluated == 0 and "shop-checkout" in failed.errors
    assert engine.slo_statuses() == [good]
    assert engine.status()["slos"]["errors"] == {"shop-checkout": "cannot reach Prometheus"}
    engine.close()


def test_a_restart_continues_a_firing_episode(make_store: StoreFactory, spec: Path) -> None:
    store = make_store()
    series = _series(T0 + 3_600_000, hot=(T0 - 3_000_000, T0 + 1_200_000))
    first = _engine(store, Clock(T0), spec, series)
    first.slo_tick()
    first.close()
    [f] = store.findings()
    second = _engine(store, Clock(T0 + 600_000), spec, series)  # relia restarted
    result = second.slo_tick()
    assert result.new_findings == 0 and result.updated_findings == 1
    [g] = store.findings()
    assert g.id == f.id and g.end == T0 + 600_000
    second.close()


def test_evaluation_errors_are_reported_not_raised(spec: Path) -> None:
    store = MemoryStore()
    engine = _engine(store, Clock(T0), spec, [])  # no series: no data, nothing fires
    assert engine.slo_tick().firing == 0
    ev = SloEvaluator(PrometheusClient("http://127.0.0.1:9", timeout=0.5), load_slos([spec]))
    broken = Engine(store, [], LocalExecutor("default"), index=SeriesIndex(),
                    clock=Clock(T0), slo_evaluator=ev)  # fmt: skip
    result = broken.slo_tick()
    assert result.evaluated == 0 and "cannot reach Prometheus" in result.errors["shop-checkout"]
    assert (
        'relia_slo_evaluation_errors_total{slo="shop-checkout"} 1.0'
        in generate_latest(broken.registry).decode()
    )
    plain = Engine(store, [], LocalExecutor("default"), index=SeriesIndex())
    with pytest.raises(RuntimeError, match="no SLO evaluator"):
        plain.slo_tick()
    assert "slos" not in plain.status()


def test_run_evaluates_slos_in_a_thread_of_their_own(spec: Path) -> None:
    store = MemoryStore()
    engine = _engine(store, Clock(T0), spec, _series(T0, hot=(T0 - 3_600_000, T0)))
    engine.slo_interval_s = 0.05
    stop = threading.Event()
    runner = threading.Thread(target=engine.run, args=(stop, 0.05))
    runner.start()
    try:
        deadline = time.monotonic() + 20
        while not store.findings() and time.monotonic() < deadline:
            time.sleep(0.02)
        names = {t.name for t in threading.enumerate()}
    finally:
        stop.set()
        runner.join(30)
    assert not runner.is_alive()
    assert "relia-slo" in names
    [f] = store.findings()
    assert f.kind is FindingKind.SLO
    assert engine.status()["slos"]["last_evaluation_ms"] == T0
    engine.close()


# -- relia up ------------------------------------------------------------------------------------


def test_run_up_turns_burning_slos_into_findings(
    spec: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import relia.sources.prometheus as prom

    now = int(time.time() * 1000)
    series = _series(now + 3_600_000, hot=(now - 3_600_000, now + 3_600_000))
    real = prom.PrometheusClient
    fake = fake_prometheus_transport(series)

    def make(url: str, timeout: float = 10.0, transport: Any = None) -> PrometheusClient:
        assert url == URL
        return real(url, timeout=timeout, transport=fake)

    monkeypatch.setattr(prom, "PrometheusClient", make)
    cfg = ReliaConfig(
        data_dir=tmp_path / "data",
        interval=0.2,
        host=HostConfig(enabled=False),
        api=ApiConfig(enabled=False),
        slos=SloConfig(files=[spec], prometheus=URL, interval=0.2),
    )
    stop = threading.Event()
    rc: list[int] = []
    thread = threading.Thread(target=lambda: rc.append(run_up(cfg, stop=stop)), daemon=True)
    thread.start()
    try:
        store_path = tmp_path / "data"
        deadline = time.monotonic() + 30
        while not (store_path.exists() and any(store_path.iterdir())):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        # A few SLO rounds from the first that asked Prometheus: on a loaded machine the
        # engine's start alone can take longer than a fixed sleep.
        while not fake.calls:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(1.5)
    finally:
        stop.set()
        thread.join(30)
    assert rc == [0]
    with DuckDBStore(tmp_path / "data" / STORE_FILE) as store:
        findings = store.findings()
    assert [f.key for f in findings] == ["shop-checkout:page"]
    assert findings[0].severity is Severity.CRITICAL
