from __future__ import annotations

import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from relia.engine.local import LocalExecutor
from relia.engine.loop import Engine
from relia.ingest.queue import IngestQueue
from relia.ingest.remote_write import RemoteWriteDecoder
from relia.ingest.source import IngestMetrics, IngestSource
from relia.signals import SeriesIndex
from tests.engine.memstore import MemoryStore
from tests.ingest.prompb import encode

T0 = 1_700_000_000_000


class Rig:
    def __init__(self, tmp: Path) -> None:
        self.index = SeriesIndex()
        self.decoder = RemoteWriteDecoder(self.index)
        self.queue = IngestQueue(10_000, tmp)
        self.queue.recover(lambda p: self.decoder.decode(p).batch)
        self.registry = CollectorRegistry()
        self.source = IngestSource(self.queue, metrics=IngestMetrics(self.registry))
        self.store = MemoryStore()
        self.engine = Engine(
            self.store,
            [self.source],
            LocalExecutor("default"),
            index=self.index,
            clock=lambda: T0,
            registry=self.registry,
        )

    def write(self, i: int, n: int = 5) -> None:
        body = encode([({"__name__": "m", "i": str(i)}, [(T0 + k, float(k)) for k in range(n)])])
        self.queue.offer(self.decoder.decode(body).batch, body)


def test_tick_stores_and_commits(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.write(1)
    rig.write(2)
    result = rig.engine.tick(push_only=True)
    assert result.samples == 10
    sid = rig.index.find("m", {"i": "1"})
    assert sid is not None
    ts, _ = rig.store.samples(sid)
    assert len(ts) == 5
    assert (tmp_path / "committed").read_text() == "2"
    lag = rig.registry.get_sample_value("relia_ingest_to_stored_seconds_count")
    assert lag == 2
    # Both requests were timed to their findings being decided, within the stored time.
    decided = rig.registry.get_sample_value("relia_ingest_to_findings_seconds_count")
    assert decided == 2
    assert rig.registry.get_sample_value(
        "relia_ingest_to_findings_seconds_sum"
    ) <= rig.registry.get_sample_value("relia_ingest_to_stored_seconds_sum")


def test_a_failed_tick_redelivers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rig = Rig(tmp_path)
    rig.write(1)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk full")

    with monkeypatch.context() as m:
        m.setattr(rig.store, "append_samples", broken)
        with pytest.raises(RuntimeError):
            rig.engine.tick()
    assert not (tmp_path / "committed").exists()
    rig.write(2)
    assert rig.engine.tick().samples == 10  # the failed tick's samples came back
    assert (tmp_path / "committed").read_text() == "2"


def test_wake_makes_run_tick_before_the_interval(tmp_path: Path) -> None:
    import threading
    import time

    rig = Rig(tmp_path)
    rig.queue.notify = rig.engine.wake
    stop = threading.Event()
    t = threading.Thread(target=rig.engine.run, args=(stop, 3600.0), daemon=True)
    t.start()
    try:
        deadline = time.monotonic() + 5
        while rig.engine.status()["ticks"] < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        rig.write(1)
        while rig.queue.samples and time.monotonic() < deadline:
            time.sleep(0.01)
        sid = rig.index.find("m", {"i": "1"})
        assert sid is not None
        while len(rig.store.samples(sid)[0]) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(rig.store.samples(sid)[0]) == 5  # long before the hour-long interval
    finally:
        stop.set()
        t.join(5)


def test_push_ticks_checkpoint_by_samples_learned_not_by_count(tmp_path: Path) -> None:
    """Remote-write ticks come several times a second: they trigger a checkpoint once a series
    may have learned a quarter of the store's window since the last one, not every N ticks."""
    from relia.store.duckdb import DuckDBStore

    rig = Rig(tmp_path)
    with DuckDBStore(":memory:", samples_per_series=40) as store:  # a quarter: 10 samples
        engine = Engine(
            store,
            [rig.source],
            LocalExecutor("default"),
            index=rig.index,
            clock=lambda: T0,
            checkpoint_every=1,  # were push ticks counted, every tick would checkpoint
            checkpoint_interval_s=1e9,
        )
        got = []
        for t in range(6):
            body = encode(
                [
                    (
                        {"__name__": "m", "i": str(i)},
                        [(T0 + 10 * t + k, float(k)) for k in range(4)],
                    )
                    for i in range(3)
                ]
            )
            rig.queue.offer(rig.decoder.decode(body).batch, body)
            got.append(engine.tick(push_only=True).checkpointed)
        assert got == [0, 0, 3, 0, 0, 3]  # 4 + 4 + 4 >= 10 samples per series
        body = encode([({"__name__": "m", "i": "0"}, [(T0 + 100, 1.0)])])
        rig.queue.offer(rig.decoder.decode(body).batch, body)
        assert engine.tick().checkpointed == 1  # a full tick counts toward checkpoint_every


def test_a_poll_not_stored_is_handed_out_again_with_what_came_since(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    src = rig.source
    assert src.name == "remote_write"  # what the engine's status and errors call it
    rig.write(1, n=2)
    first = src.poll(T0)
    assert len(first) == 2
    # Nothing new: the unstored samples come back on their own.
    again = src.poll(T0)
    assert again.series_id.tolist() == first.series_id.tolist()
    rig.write(2, n=3)
    both = src.poll(T0)
    i1, i2 = rig.index.find("m", {"i": "1"}), rig.index.find("m", {"i": "2"})
    assert both.series_id.tolist() == [i1] * 2 + [i2] * 3  # oldest first
    src.decided()
    src.stored()
    # Both requests were timed, and the commit covers the second one too.
    assert rig.registry.get_sample_value("relia_ingest_to_findings_seconds_count") == 2
    assert rig.registry.get_sample_value("relia_ingest_to_stored_seconds_count") == 2
    assert (tmp_path / "committed").read_text() == "2"
    assert len(src.poll(T0)) == 0  # stored: never handed out again
    src.stored()  # nothing pending: no commit, no timing
    assert rig.registry.get_sample_value("relia_ingest_to_stored_seconds_count") == 2


def test_what_was_not_stored_is_replayed_after_a_restart_and_what_was_is_not(
    tmp_path: Path,
) -> None:
    rig = Rig(tmp_path)
    rig.write(1, n=2)
    rig.source.poll(T0)
    rig.source.stored()
    rig.write(2, n=3)
    assert len(rig.source.poll(T0)) == 3  # drained, never stored
    rig.source.close()
    assert rig.queue.closed
    again = Rig(tmp_path)
    got = again.source.poll(T0)
    assert got.series_id.tolist() == [again.index.find("m", {"i": "2"})] * 3
    assert rig.index.find("m", {"i": "2"}) == again.index.find("m", {"i": "2"})
    again.source.stored()
    again.source.close()
    assert len(Rig(tmp_path).source.poll(T0)) == 0


def test_a_poll_takes_at_most_max_samples_per_tick_and_reports_the_rest(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.source.max_samples_per_tick = 5
    for i in range(3):
        rig.write(i, n=5)
    assert len(rig.source.poll(T0)) == 5
    assert rig.registry.get_sample_value("relia_ingest_queue_samples") == 10
    rig.source.stored()
    assert len(rig.source.poll(T0)) == 5
    assert rig.registry.get_sample_value("relia_ingest_queue_samples") == 5


def test_a_receipt_in_the_future_is_timed_as_zero_not_negative(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    rig.queue.clock = lambda: time.time() + 3600  # the receiver's clock ran ahead
    rig.write(1)
    rig.source.poll(T0)
    rig.source.decided()
    rig.source.stored()
    for name in ("relia_ingest_to_findings_seconds", "relia_ingest_to_stored_seconds"):
        assert rig.registry.get_sample_value(f"{name}_count") == 1
        assert rig.registry.get_sample_value(f"{name}_sum") == 0


def test_the_queue_gauge_follows_the_queue_without_a_poll(tmp_path: Path) -> None:
    # During a store outage ticks do not poll: the gauge must still show the queue filling.
    rig = Rig(tmp_path)
    for i in range(3):
        rig.write(i, n=5)
    assert rig.registry.get_sample_value("relia_ingest_queue_samples") == rig.queue.samples == 15
    rig.queue.drain()
    assert rig.registry.get_sample_value("relia_ingest_queue_samples") == 0


def test_healthz_is_degraded_and_names_the_wal_error_while_the_marker_cannot_be_written(
    tmp_path: Path,
) -> None:
    import warnings

    from relia.api.app import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        from fastapi.testclient import TestClient

    rig = Rig(tmp_path)
    client = TestClient(create_app(rig.store, engine=rig.engine), base_url="http://localhost")  # type: ignore[arg-type]
    (tmp_path / "committed.tmp").mkdir()  # the marker cannot be written
    rig.write(1)
    rig.engine.tick(push_only=True)  # stored: the tick does not fail for the marker
    assert rig.store.samples(rig.index.find("m", {"i": "1"}) or 0)[0].size == 5
    body = client.get("/healthz").json()
    assert body["status"] == "degraded"
    source = body["engine"]["sources"]["remote_write"]
    assert "commit marker" in source["wal_error"] and source["last_error"] == source["wal_error"]
    assert "write-ahead log" in body["engine"]["problems"][0]
    (tmp_path / "committed.tmp").rmdir()
    rig.write(2)
    rig.engine.tick(push_only=True)
    body = client.get("/healthz").json()
    assert body["status"] == "ok" and body["engine"]["problems"] == []
    assert body["engine"]["sources"]["remote_write"]["wal_error"] is None
    assert (tmp_path / "committed").read_text() == "2"
