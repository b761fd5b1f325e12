from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from relia.config import ApiConfig, HostConfig, LogFileConfig, LogsConfig, ReliaConfig, ScrapeTarget
from relia.engine.up import build_log_pipeline, build_sources, run_up
from relia.errors import ConfigError
from relia.signals import MetricBatch, SeriesIndex
from relia.store.duckdb import DuckDBStore


class Running:
    """run_up in a thread; the URL it reports; its return code."""

    def __init__(self, config: ReliaConfig) -> None:
        self.stop = threading.Event()
        self.url: str | None = None
        self.rc: int | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(config,), daemon=True)
        self.thread.start()
        assert self._ready.wait(60), "run_up did not become ready"
        if self.error:
            raise self.error

    def _run(self, config: ReliaConfig) -> None:
        def ready(url: str) -> None:
            self.url = url
            self._ready.set()

        try:
            self.rc = run_up(config, stop=self.stop, ready=ready)
        except BaseException as exc:  # surfaced to the test thread
            self.error = exc
            self._ready.set()

    def get(self, path: str, **kw: Any) -> httpx.Response:
        assert self.url
        return httpx.get(self.url + path, timeout=10, **kw)

    def wait_for(self, pred: Any, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = pred()
            if got:
                return got
            time.sleep(0.05)
        raise AssertionError("condition not met in time")

    def finish(self) -> int | None:
        self.stop.set()
        self.thread.join(30)
        assert not self.thread.is_alive()
        if self.error:
            raise self.error
        return self.rc


def _config(tmp_path: Path, **kw: Any) -> ReliaConfig:
    return ReliaConfig(
        data_dir=tmp_path / "data",
        interval=0.2,
        host=HostConfig(enabled=True),
        api=ApiConfig(port=0, **kw),
    )


def test_up_serves_ticks_stops_and_resumes(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    r = Running(cfg)
    assert r.url and r.url.startswith("http://127.0.0.1:")
    assert r.get("/healthz").json()["status"] == "ok"
    r.wait_for(lambda: r.get("/healthz").json()["engine"]["ticks"] >= 3)
    series = r.wait_for(lambda: r.get("/api/v1/series").json()["series"])
    names = {s["name"] for s in series}
    assert "host_cpu_percent" in names
    sid = next(s["id"] for s in series if s["name"] == "host_cpu_percent")
    assert r.get(f"/api/v1/series/{sid}/samples").json()["ts"]
    assert "relia_engine_ticks_total" in r.get("/metrics").text
    assert r.get("/").status_code == 200
    assert r.finish() == 0

    with DuckDBStore(cfg.data_dir / "relia.duckdb") as store:
        ckpts = store.load_checkpoints()
        n_before = {s.series_id: s.n_samples for s in store.list_series()}
    assert len(ckpts) >= len(series)

    again = Running(cfg)
    health = again.get("/healthz").json()["engine"]
    assert health["restored_series"] == len(ckpts)
    again.wait_for(lambda: again.get("/healthz").json()["engine"]["ticks"] >= 2)
    assert again.finish() == 0
    with DuckDBStore(cfg.data_dir / "relia.duckdb") as store:
        after = {s.series_id: s.n_samples for s in store.list_series()}
    assert all(after[k] > v for k, v in n_before.items() if k in after)


def test_up_with_token_and_no_api(tmp_path: Path) -> None:
    r = Running(_config(tmp_path, token="t0k"))
    assert r.get("/api/v1/series").status_code == 401
    assert r.get("/api/v1/series", headers={"Authorization": "Bearer t0k"}).status_code == 200
    assert r.finish() == 0
    quiet = Running(_config(tmp_path).model_copy(update={"api": ApiConfig(enabled=False)}))
    assert quiet.url == ""
    assert quiet.finish() == 0


def test_port_in_use_is_a_config_error(tmp_path: Path) -> None:
    r = Running(_config(tmp_path))
    assert r.url
    port = int(r.url.rsplit(":", 1)[1])
    try:
        with pytest.raises(ConfigError, match=f"cannot listen on 127.0.0.1:{port}"):
            run_up(_config(tmp_path / "other").model_copy(update={"api": ApiConfig(port=port)}))
    finally:
        assert r.finish() == 0


def test_build_sources_from_config(tmp_path: Path) -> None:
    cfg = ReliaConfig(
        host=HostConfig(enabled=False),
        scrape=[
            ScrapeTarget(name="app", url="http://127.0.0.1:9/metrics"),
            ScrapeTarget(name="app", url="http://127.0.0.1:10/metrics"),
        ],
    )
    with pytest.raises(ConfigError, match=r"scrape\[1\].name.*'app'"):
        build_sources(cfg, SeriesIndex())
    small = ScrapeTarget(name="app", url="http://127.0.0.1:9/metrics", max_body_bytes=4096)
    ok = cfg.model_copy(update={"scrape": [small]})
    srcs = build_sources(ok, SeriesIndex())
    assert [s.name for s in srcs] == ["app", "remote_write"]
    assert srcs[0].max_body_bytes == 4096  # type: ignore[attr-defined]


def test_session_findings_of_up_name_their_templates_by_text(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("relia.logs.engine.HEADER_MIN_LINES", 1)
    log = tmp_path / "dn.log"
    lines = []
    for b in range(1000):  # the scorer's warm-up: 1,000 sessions
        lines += [f"INFO allocate block blk_{b}", f"INFO block blk_{b} replicated to 3 nodes"]
    log.write_text("\n".join(lines) + "\n")
    files = [LogFileConfig(path=log, name="dn", session_key=r"(blk_\d+)")]
    config = ReliaConfig(data_dir=tmp_path, logs=LogsConfig(files=files, window=60))
    store = DuckDBStore(tmp_path / "s.duckdb")
    assert build_log_pipeline(ReliaConfig(data_dir=tmp_path), store, SeriesIndex()) is None
    logs = build_log_pipeline(config, store, SeriesIndex())
    assert logs is not None
    logs.ingest(1_000_000)
    with log.open("a") as f:
        f.write("INFO allocate block blk_5000\nERROR write failed for blk_5000: disk full\n")
    logs.ingest(2_000_000)
    (found,) = [f for f in logs.ingest(3_000_000).findings if f.detector == "log-session"]
    assert found.summary.startswith("dn: abnormal session blk_5000 (2 lines): ")
    assert found.summary.endswith(" never seen in training [write failed for <*>: disk full]")
    texts = [r["texts"] for r in found.evidence["reasons"]]
    assert texts[0] == ["write failed for <*>: disk full"]
    assert ["block <*> replicated to <*> nodes"] in texts  # missing: the step that did not come
    store.close()


def test_a_prometheus_source_gets_its_delay_from_config() -> None:
    source = {"name": "p", "url": "http://127.0.0.1:9", "queries": [{"query": "up"}]}
    cfg = ReliaConfig.model_validate(
        {"host": {"enabled": False}, "api": {"enabled": False}, "prometheus": [source]}
    )
    (default,) = build_sources(cfg, SeriesIndex())
    assert default.delay_ms == 30_000  # type: ignore[attr-defined]
    later = ReliaConfig.model_validate(
        {
            "host": {"enabled": False},
            "api": {"enabled": False},
            "prometheus": [source | {"delay": "45s"}],
        }
    )
    (src,) = build_sources(later, SeriesIndex())
    assert src.delay_ms == 45_000  # type: ignore[attr-defined]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly(tmp_path: Path, sig: signal.Signals) -> None:
    code = (
        "import sys\n"
        "from relia.config import load_config\n"
        "from relia.engine.up import run_up\n"
        "sys.exit(run_up(load_config(), ready=lambda u: print('READY', u, flush=True)))\n"
    )
    env = {
        **os.environ,
        "RELIA_DATA_DIR": str(tmp_path / "data"),
        "RELIA_API__PORT": "0",
        "RELIA_INTERVAL": "0.2",
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("READY http://127.0.0.1:"), line
        url = line.split()[1]
        deadline = time.monotonic() + 20
        while httpx.get(url + "/healthz").json()["engine"]["ticks"] < 2:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        proc.send_signal(sig)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with DuckDBStore(tmp_path / "data" / "relia.duckdb") as store:
        assert store.load_checkpoints()


def test_up_with_role_tokens_and_limits(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from relia.api.auth import hash_token, new_token
    from relia.config import ApiToken

    tokens = {role: new_token() for role in ("read", "ingest", "admin")}
    api = ApiConfig(
        port=0,
        tokens=[ApiToken(name=f"{r}-bot", role=r, sha256=hash_token(t)) for r, t in tokens.items()],
        max_body_bytes=100,
        max_header_bytes=2048,
    )
    cfg = _config(tmp_path).model_copy(update={"api": api})
    with caplog.at_level("INFO"):
        r = Running(cfg)
        assert r.url and r.url.startswith("http://127.0.0.1:")
        url = r.url

        def get(path: str, role: str | None = None, **kw: Any) -> int:
            headers = {"Authorization": f"Bearer {tokens[role]}"} if role else {}
            return httpx.get(url + path, headers=headers, timeout=10, **kw).status_code

        assert get("/healthz") == 200 and get("/") == 200
        assert get("/api/v1/series") == 401 and get("/metrics") == 401
        assert get("/api/v1/series", "read") == 200 and get("/metrics", "read") == 200
        assert get("/api/v1/series", "ingest") == 403
        assert get("/api/v1/series", "admin") == 200
        assert get("/healthz", None, params={"pad": "a" * 3000}) == 431
        big = httpx.post(url + "/api/v1/series", content=b"x" * 1000, timeout=10)
        assert big.status_code == 413  # before auth and routing: the body is never read
        assert r.finish() == 0
    assert "API auth is on: tokens read-bot, ingest-bot, admin-bot" in caplog.text
    for token in tokens.values():
        assert token not in caplog.text


def test_up_guards_remote_write_incidents_and_slos_by_role(tmp_path: Path) -> None:
    # The routers run_up mounts itself: remote-write for ingest tokens only, the read routes for
    # read tokens only, admin everywhere (docs/security.md, "Tokens and roles").
    from relia.api.auth import hash_token, new_token
    from relia.config import ApiToken
    from tests.ingest.prompb import encode

    tokens = {role: new_token() for role in ("read", "ingest", "admin")}
    api = ApiConfig(
        port=0,
        tokens=[ApiToken(name=f"{r}-bot", role=r, sha256=hash_token(t)) for r, t in tokens.items()],
    )
    r = Running(_config(tmp_path).model_copy(update={"api": api}))
    assert r.url
    url = r.url
    now_ms = int(time.time() * 1000)
    body = encode([({"__name__": "pushed_total", "job": "agent"}, [(now_ms, 1.0)])])

    def status(method: str, path: str, role: str | None) -> int:
        headers = {"Authorization": f"Bearer {tokens[role]}"} if role else {}
        if method == "POST":  # what every remote-write sender sends
            headers |= {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"}
        content = body if method == "POST" else None
        return httpx.request(
            method, url + path, headers=headers, content=content, timeout=10
        ).status_code

    try:
        write = {role: status("POST", "/api/v1/write", role) for role in (None, *tokens)}
        assert write == {None: 401, "read": 403, "ingest": 204, "admin": 204}
        for path in ("/api/v1/incidents", "/api/v1/slos"):
            got = {role: status("GET", path, role) for role in (None, *tokens)}
            assert got == {None: 401, "read": 200, "ingest": 403, "admin": 200}, path
    finally:
        assert r.finish() == 0


def test_up_refuses_an_exposed_api_without_auth(tmp_path: Path) -> None:
    from relia.config import load_config

    with pytest.raises(ConfigError, match=r"api\.auth: auth is off but api\.host '0\.0\.0\.0'"):
        load_config(environ={"RELIA_API__HOST": "0.0.0.0", "RELIA_DATA_DIR": str(tmp_path)})


@pytest.mark.integration
@pytest.mark.slow
def test_up_with_the_ray_executor(tmp_path: Path, ray_local: Any) -> None:
    cfg = _config(tmp_path)
    cfg.engine.executor = "ray"
    cfg.engine.ray_actors = 2
    r = Running(cfg)
    r.wait_for(lambda: r.get("/healthz").json()["engine"]["ticks"] >= 3)
    series = r.wait_for(lambda: r.get("/api/v1/series").json()["series"])
    sid = next(s["id"] for s in series if s["name"] == "host_cpu_percent")
    # Scored by the actors: a score beside every sample (0 while the model warms up).
    got = r.wait_for(lambda: r.get(f"/api/v1/series/{sid}/samples").json()["score"])
    assert all(s is not None for s in got)
    assert "relia_executor_actor_restarts_total 0.0" in r.get("/metrics").text
    assert r.finish() == 0
    assert ray_local.is_initialized()  # the executor reused the Ray it found, and left it up
    with DuckDBStore(cfg.data_dir / "relia.duckdb") as store:
        # The actors' detector state was checkpointed to the store on the way out.
        assert len(store.load_checkpoints()) >= len(series)


def test_up_executor_options_are_checked(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from relia.cli import app

    runner = CliRunner()
    res = runner.invoke(app, ["up", "--data-dir", str(tmp_path), "--executor", "spark"])
    assert res.exit_code == 2
    assert res.stderr.strip() == "relia: error: --executor: expected local or ray, got 'spark'"
    res = runner.invoke(app, ["up", "--executor", "local", "--ray-address", "auto"])
    assert res.exit_code == 2
    assert "relia: error: --ray-address: needs --executor ray, not local" in res.stderr


def test_up_replays_remote_write_samples_acknowledged_before_a_crash(tmp_path: Path) -> None:
    # Acknowledged (in the WAL) but never stored: relia died. The next `relia up` stores them.
    from relia.ingest.queue import IngestQueue
    from relia.ingest.remote_write import RemoteWriteDecoder
    from tests.ingest.prompb import encode

    cfg = _config(tmp_path)
    now_ms = int(time.time() * 1000)
    body = encode([({"__name__": "acked_before_crash", "job": "agent"}, [(now_ms, 1.0)])])
    queue = IngestQueue(1000, cfg.data_dir / "wal")
    queue.recover(lambda payload: RemoteWriteDecoder(SeriesIndex()).decode(payload).batch)
    queue.offer(RemoteWriteDecoder(SeriesIndex()).decode(body).batch, body)
    queue.close()
    r = Running(cfg)
    try:
        names = r.wait_for(
            lambda: (
                {s["name"] for s in r.get("/api/v1/series").json()["series"]}
                & {"acked_before_crash"}
            )
        )
        assert names == {"acked_before_crash"}
    finally:
        assert r.finish() == 0


def test_a_wal_held_by_another_relia_stops_up_before_the_engine_touches_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The lock was taken when the WAL was replayed, after engine.start(): the refused replica
    # had relearned and wrote a "final checkpoint" of series another replica owns.
    from relia.ingest.queue import IngestQueue

    cfg = _config(tmp_path)
    # A store with series and samples, as the other replica left it.
    from relia.store import open_store

    with open_store(cfg.data_dir) as store:
        store.upsert_series([(1, "cpu", {})])
        import types

        import numpy as np

        ts, nan = np.array([1_000, 2_000], np.int64), np.full(2, np.nan)
        scored = types.SimpleNamespace(
            series_id=np.ones(2, np.int64),
            ts=ts,
            score=np.zeros(2),
            expected=nan,
            lower=nan,
            upper=nan,
        )  # learned by the other replica's detector: relearned at a start
        store.append_samples(MetricBatch.for_series(1, ts, [1.0, 2.0]), scored)
    saved: list[dict[int, bytes]] = []
    real = DuckDBStore.save_checkpoints

    def save_checkpoints(self: DuckDBStore, checkpoints: dict[int, bytes]) -> None:
        saved.append(checkpoints)
        real(self, checkpoints)

    monkeypatch.setattr(DuckDBStore, "save_checkpoints", save_checkpoints)
    other = IngestQueue(1000, cfg.data_dir / "wal")
    other.recover(lambda payload: MetricBatch.empty())  # holds the lock
    try:
        with pytest.raises(ConfigError, match="the WAL is in use by another relia") as info:
            run_up(cfg, stop=threading.Event())
        assert str(info.value).startswith(f"{cfg.data_dir / 'wal'}: ")
    finally:
        other.close()
    assert saved == []


def test_the_wal_replays_every_acknowledged_sample_under_lowered_limits(tmp_path: Path) -> None:
    # Accepted under the old limits, then relia restarted with lower ones: the replay is not
    # refused by them (the senders were told these samples were kept).
    import functools

    from relia.engine.up import _decode_batch
    from relia.ingest.queue import IngestQueue
    from relia.ingest.remote_write import RemoteWriteDecoder
    from tests.ingest.prompb import encode

    before = RemoteWriteDecoder(SeriesIndex())
    queue = IngestQueue(1000, tmp_path)
    for i in range(3):
        body = encode([({"__name__": "m", "i": str(i)}, [(k, float(k)) for k in range(50)])])
        queue.offer(before.decode(body).batch, body)
    queue.close()
    index = SeriesIndex(max_series=1)
    now = RemoteWriteDecoder(index, max_decoded_bytes=100, max_future_ms=0)
    again = IngestQueue(1000, tmp_path)
    assert again.recover(functools.partial(_decode_batch, now)) == 3
    assert again.corrupt_records == 0 and again.samples == 150
    assert len(index) == 3 and index.refused() == {}


def test_up_frees_its_port_when_it_stops(tmp_path: Path) -> None:
    import socket

    r = Running(_config(tmp_path))
    assert r.url
    port = int(r.url.rsplit(":", 1)[1])
    assert r.finish() == 0
    with socket.socket() as s:  # a second `relia up` on the same port can listen now
        s.bind(("127.0.0.1", port))
        s.listen()


def test_up_in_the_main_thread_restores_signal_handlers_and_a_second_signal_stops_waiting(
    tmp_path: Path,
) -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def interrupt_twice(url: str) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # asks for a clean stop
        time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGINT)  # impatient: stop waiting

    with pytest.raises(KeyboardInterrupt):
        run_up(_config(tmp_path), ready=interrupt_twice)
    assert {sig: signal.getsignal(sig) for sig in before} == before
    stop = threading.Event()
    assert run_up(_config(tmp_path), stop=stop, ready=lambda url: stop.set()) == 0
    assert {sig: signal.getsignal(sig) for sig in before} == before
    with DuckDBStore(tmp_path / "data" / "relia.duckdb") as store:
        assert store.list_series() is not None  # closed and readable after both


def test_build_sources_has_no_remote_write_without_the_api() -> None:
    cfg = ReliaConfig(host=HostConfig(enabled=False), api=ApiConfig(enabled=False))
    assert build_sources(cfg, SeriesIndex()) == []
    on = cfg.model_copy(update={"api": ApiConfig()})
    assert [s.name for s in build_sources(on, SeriesIndex())] == ["remote_write"]


def test_up_turns_a_stored_finding_into_an_incident_and_delivers_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A finding relia stored before it died without correlating it: the next `relia up` opens
    # its incident, serves it and delivers its notification to the configured sink.
    from relia.config import NotifyConfig, SinkConfig
    from relia.incidents.model import Finding, FindingKind, Severity

    cfg = _config(tmp_path).model_copy(
        update={"notify": NotifyConfig(sinks=[SinkConfig(name="ops-log", type="log")])}
    )
    now_ms = int(time.time() * 1000)
    f = Finding(
        id=Finding.make_id(FindingKind.METRIC, 'cpu{job="db"}', now_ms, "t"),
        kind=FindingKind.METRIC,
        key='cpu{job="db"}',
        start=now_ms,
        end=now_ms,
        score=0.9,
        severity=Severity.WARNING,
        detector="t",
        summary="cpu",
        evidence={},
    )
    cfg.data_dir.mkdir(parents=True)
    with DuckDBStore(cfg.data_dir / "relia.duckdb") as store:
        store.add_findings([f])
    with caplog.at_level("INFO", logger="relia.notify"):
        r = Running(cfg)
        try:
            (incident,) = r.wait_for(lambda: r.get("/api/v1/incidents").json()["incidents"])
            assert incident["finding_ids"] == [f.id]
            r.wait_for(lambda: "relia incident" in caplog.text)
        finally:
            assert r.finish() == 0
    assert caplog.text.count(f'"incident_id": "{incident["id"]}"') == 1
    with DuckDBStore(cfg.data_dir / "relia.duckdb") as store:
        assert store.outbox_counts()["ops-log"]["delivered"] == 1


def test_up_deletes_history_older_than_the_retention_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from relia.incidents.model import Finding, FindingKind, Incident, IncidentStatus, Severity

    # A retention of its own (not the default 30 days): the one configured is the one used.
    cfg = _config(tmp_path).model_copy(update={"retention": 35 * 86400.0})
    day = 86_400_000
    now_ms = int(time.time() * 1000)

    def finding(key: str, end: int) -> Finding:
        return Finding(
            id=Finding.make_id(FindingKind.METRIC, key, end, "t"), kind=FindingKind.METRIC,
            key=key, start=end - 60_000, end=end, score=0.9, severity=Severity.WARNING,
            detector="t", summary="cpu", evidence={},
        )  # fmt: skip

    def incident(iid: str, f: Finding, resolved_at: int) -> Incident:
        return Incident(
            id=iid, status=IncidentStatus.RESOLVED, title=iid, severity=Severity.WARNING,
            labels={}, start=f.start, end=f.end, opened_at=f.start, updated_at=resolved_at,
            resolved_at=resolved_at, version=2, finding_ids=[f.id], keys=[f.key], cause=[],
        )  # fmt: skip

    old, kept = finding('cpu{job="old"}', now_ms - 45 * day), finding('cpu{job="b"}', now_ms - day)
    cfg.data_dir.mkdir(parents=True)
    with DuckDBStore(cfg.data_dir / "relia.duckdb") as store:
        store.add_findings([old, kept])
        store.save_incidents(
            [incident("old", old, now_ms - 40 * day), incident("kept", kept, now_ms - day)]
        )
    with caplog.at_level("INFO", logger="relia.engine.retention"):
        r = Running(cfg)
        try:
            r.wait_for(lambda: "retention: deleted" in caplog.text)
            metrics = r.get("/metrics").text
            assert 'relia_history_pruned_total{kind="incidents"} 1.0' in metrics
            assert 'relia_history_pruned_total{kind="findings"} 1.0' in metrics
        finally:
            assert r.finish() == 0
    assert "deleted 1 findings, 1 incidents and 0 notifications older than 35d" in caplog.text
    with DuckDBStore(cfg.data_dir / "relia.duckdb") as store:
        assert [i.id for i in store.incidents()] == ["kept"]
        assert [f.id for f in store.findings(limit=100)] == [kept.id]


def test_up_on_ipv6_loopback_reports_a_bracketed_url(tmp_path: Path) -> None:
    r = Running(_config(tmp_path, host="::1"))
    try:
        assert r.url and r.url.startswith("http://[::1]:")
        assert r.get("/healthz").status_code == 200  # the URL it reports works
    finally:
        assert r.finish() == 0


def test_ingest_writes_its_wal_where_configured_and_fsyncs_every_write_when_asked(
    tmp_path: Path,
) -> None:
    from relia.config import IngestConfig
    from relia.engine.up import build_ingest_source

    wal = tmp_path / "elsewhere"
    cfg = ReliaConfig(
        data_dir=tmp_path / "data", ingest=IngestConfig(wal_dir=wal, fsync_every_write=True)
    )
    src = build_ingest_source(cfg, SeriesIndex())
    src.queue.recover(lambda payload: MetricBatch.empty())
    assert wal.is_dir() and not (tmp_path / "data" / "wal").exists()
    assert src.queue.fsync_interval_s == 0.0  # fsync before every acknowledgement
    src.queue.close()
    default = build_ingest_source(ReliaConfig(data_dir=tmp_path / "d2"), SeriesIndex())
    assert default.queue.wal_dir == tmp_path / "d2" / "wal"
    assert default.queue.fsync_interval_s is None  # the OS flushes


def test_remote_write_bodies_are_limited_by_ingest_max_body_bytes_not_the_apis(
    tmp_path: Path,
) -> None:
    import warnings

    from prometheus_client import CollectorRegistry

    from relia.api.app import create_app
    from relia.config import IngestConfig
    from relia.engine.local import LocalExecutor
    from relia.engine.loop import Engine
    from relia.engine.up import _mount_ingest, build_ingest_source
    from tests.engine.memstore import MemoryStore

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Starlette's TestClient wants httpx2
        from fastapi.testclient import TestClient

    cfg = ReliaConfig(data_dir=tmp_path / "data", ingest=IngestConfig(max_body_bytes=2000))
    index = SeriesIndex()
    src = build_ingest_source(cfg, index)
    assert src.decoder is not None and src.decoder.max_future_ms == 600_000  # ingest.max_future
    store = MemoryStore()
    eng = Engine(
        store, [src], LocalExecutor("cusum", {}), index=index, registry=CollectorRegistry()
    )
    app = create_app(store, engine=eng, max_body_bytes=1000)
    _mount_ingest(app, [src], eng, None)
    client = TestClient(app, base_url="http://localhost")
    # Over the API's 1000 bytes, under ingest's 2000: the receiver reads it (and finds it no
    # snappy block), where the API's limit used to answer 413.
    remote_write = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"}
    r = client.post("/api/v1/write", content=b"\xff" * 1500, headers=remote_write)
    assert r.status_code == 400 and "snappy" in r.text
    too_long = client.post("/api/v1/write", content=b"\xff" * 2001, headers=remote_write)
    assert too_long.status_code == 413
    src.queue.close()


def test_slos_without_their_own_prometheus_query_the_first_prometheus_source(
    tmp_path: Path,
) -> None:
    from relia.engine.up import build_slo_evaluator
    from tests.engine.test_slo_engine import SPEC

    spec = tmp_path / "shop.yaml"
    spec.write_text(SPEC)
    sources = [
        {"name": f"p{n}", "url": f"http://127.0.0.1:{9090 + n}", "queries": [{"query": "up"}]}
        for n in range(2)
    ]
    cfg = ReliaConfig.model_validate({"prometheus": sources, "slos": {"files": [spec]}})
    ev = build_slo_evaluator(cfg)
    assert ev is not None and ev.client.url == "http://127.0.0.1:9090"  # type: ignore[attr-defined]
    ev.close()


def test_the_first_ticks_and_remote_writes_kernels_are_compiled_before_up_is_said() -> None:
    # Compiling holds the GIL for seconds (the remote-write decoder's kernel is compiled on the
    # event loop by the first request): done before "relia is up", it cannot stall the API just
    # after. A fresh process, so nothing compiled them before.
    code = """
from relia.config import ReliaConfig
from relia.detect.batched import _adaptive_rows
from relia.ingest._kernels import _scan
from relia.engine.up import warm_kernels
before = (len(_adaptive_rows.signatures), len(_scan.signatures))
warm_kernels(ReliaConfig(), remote_write=True)
print(before, (len(_adaptive_rows.signatures), len(_scan.signatures)))
"""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "(0, 0) (1, 1)"


def test_up_caps_series_at_max_series_and_keeps_those_it_stored_over_a_restart(
    tmp_path: Path,
) -> None:
    from tests.ingest.prompb import encode

    headers = {
        "Content-Encoding": "snappy",
        "Content-Type": "application/x-protobuf",
        "X-Prometheus-Remote-Write-Version": "0.1.0",
    }

    def write(r: Running, names: list[str], ts: int) -> httpx.Response:
        assert r.url
        body = encode([({"__name__": n, "job": "w"}, [(ts, 1.0)]) for n in names])
        return httpx.post(r.url + "/api/v1/write", content=body, headers=headers, timeout=10)

    def stored(r: Running) -> set[str]:
        return {s["name"] for s in r.get("/api/v1/series").json()["series"]}

    def refused(r: Running) -> float:
        for line in r.get("/metrics").text.splitlines():
            if line.startswith('relia_series_refused_total{source="remote_write"}'):
                return float(line.split()[-1])
        raise AssertionError("no relia_series_refused_total for remote_write")

    now = int(time.time() * 1000)
    cfg = _config(tmp_path).model_copy(update={"max_series": 3, "host": HostConfig(enabled=False)})
    r = Running(cfg)
    try:
        got = write(r, ["a", "b", "c", "d", "e"], now)
        assert got.status_code == 400
        assert "2 new series refused" in got.text and "max_series = 3" in got.text
        assert r.wait_for(lambda: stored(r) == {"a", "b", "c"})
        assert refused(r) == 2
        assert "relia_series_limit 3.0" in r.get("/metrics").text
        assert write(r, ["a", "b"], now + 1000).status_code == 204
    finally:
        assert r.finish() == 0
    # A lower limit after a restart: the stored series are still taken, new ones are not.
    again = Running(cfg.model_copy(update={"max_series": 1}))
    try:
        assert write(again, ["a", "b", "c"], now + 2000).status_code == 204
        got = write(again, ["c", "z"], now + 3000)
        assert got.status_code == 400 and "1 new series refused" in got.text
        assert "the other 1 samples were accepted" in got.text
    finally:
        assert again.finish() == 0


def test_up_after_downtime_longer_than_forget_after_keeps_the_history_of_series_alive(
    tmp_path: Path,
) -> None:
    cfg = _config(tmp_path).model_copy(update={"forget_after": 3600.0})
    r = Running(cfg)
    r.wait_for(lambda: r.get("/healthz").json()["engine"]["ticks"] >= 3)
    assert r.finish() == 0
    path = cfg.data_dir / "relia.duckdb"
    with DuckDBStore(path) as store:
        before = {s.series_id: s.n_samples for s in store.list_series()}
        assert len(store.load_checkpoints()) == len(before) > 0
    # relia was down for five hours: longer than forget_after plus the pruner's grace.
    import duckdb

    con = duckdb.connect(str(path))
    con.execute("UPDATE series SET seen_at = seen_at - 5 * 3600 * 1000")
    con.close()
    again = Running(cfg)
    again.wait_for(lambda: again.get("/healthz").json()["engine"]["ticks"] >= 3)
    assert again.finish() == 0  # joins the pruner, whose first round ran at start
    with DuckDBStore(path) as store:
        after = {s.series_id: s.n_samples for s in store.list_series()}
        assert len(store.load_checkpoints()) >= len(before)
    assert all(after[k] > n for k, n in before.items())
