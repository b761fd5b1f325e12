from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from relia.config import LogFileConfig, LogsConfig, load_config
from relia.engine.local import LocalExecutor
from relia.engine.loop import Engine
from relia.errors import ConfigError, StoreError
from relia.incidents.model import Finding, FindingKind
from relia.logs.engine import (
    LINE_COUNT,
    NEW_TEMPLATE_DETECTOR,
    TEMPLATE_COUNT,
    LogPipeline,
)
from relia.signals import SeriesIndex
from relia.store.base import LogCounts
from relia.store.duckdb import DuckDBStore
from tests.engine.memstore import MemoryStore

W = 60_000  # the window, ms
T0 = 1_700_000_000_000 - 1_700_000_000_000 % W


def _line(i: int, what: str = "Accepted connection from 10.0.0.{i} port {p}") -> str:
    return f"2024-05-01 12:00:{i % 60:02d} INFO sshd[{100 + i}]: " + what.format(i=i % 250, p=i)


def _write(path: Path, lines: Sequence[str]) -> None:
    with path.open("a") as f:
        f.writelines(s + "\n" for s in lines)


def _config(*paths: Path, warmup: int = 10, **kw: Any) -> LogsConfig:
    return LogsConfig(
        files=[LogFileConfig(path=p) for p in paths], window=W / 1000, warmup_lines=warmup, **kw
    )


def _total(store: Any, file: str) -> int:
    return int(store.log_counts(file).count.sum())


@pytest.fixture(autouse=True)
def _header_from_the_first_tick(monkeypatch: pytest.MonkeyPatch) -> None:
    """Most tests feed a few lines: learn the header from them at once (tests of the wait for
    more lines set the minimum back)."""
    monkeypatch.setattr("relia.logs.engine.HEADER_MIN_LINES", 1)


@pytest.fixture(params=["memory", "duckdb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Any:
    s = MemoryStore() if request.param == "memory" else DuckDBStore(tmp_path / "s.duckdb")
    yield s
    s.close()


def test_counts_windows_and_template_series(tmp_path: Path, store: Any) -> None:
    p = tmp_path / "auth.log"
    _write(p, [_line(i) for i in range(30)])
    index = SeriesIndex()
    pipe = LogPipeline(store, _config(p), index)
    assert len(pipe.closed_windows(T0)) == 0
    r = pipe.ingest(T0 + 5)
    assert r.lines == 30 and r.new_templates == 1 and r.new_findings == 0  # in warm-up
    _write(p, [_line(i, "Failed password for user{i} from 10.0.0.1") for i in range(5)])
    _write(p, [_line(i) for i in range(3)])
    assert len(pipe.closed_windows(T0 + W - 1)) == 0  # the first window is still open
    pipe.ingest(T0 + W - 1)
    # Two windows later: the first is emitted, the second (empty) too.
    batch = pipe.closed_windows(T0 + 2 * W + 5)
    pipe.ingest(T0 + 2 * W + 5)
    got = {
        (index.name(int(s)), tuple(sorted(index.labels(int(s)).items())), int(t)): float(v)
        for s, t, v in zip(batch.series_id, batch.ts, batch.value, strict=True)
    }
    assert got[(LINE_COUNT, (("file", "auth"),), T0)] == 38
    assert got[(LINE_COUNT, (("file", "auth"),), T0 + W)] == 0
    per_template = sorted(
        v for (name, _, t), v in got.items() if name == TEMPLATE_COUNT and t == T0
    )
    assert per_template == [5.0, 33.0]
    assert all(v == 0 for (name, _, t), v in got.items() if name == TEMPLATE_COUNT and t == T0 + W)
    assert _total(store, "auth") == 38
    # Emitted windows are not emitted again.
    assert len(pipe.closed_windows(T0 + 2 * W + 10)) == 0


def test_new_template_after_warmup_is_a_finding_once(tmp_path: Path, store: Any) -> None:
    p = tmp_path / "auth.log"
    _write(p, [_line(i) for i in range(20)])
    pipe = LogPipeline(store, _config(p, warmup=20), SeriesIndex())
    pipe.ingest(T0)
    _write(p, [_line(i) for i in range(5)] + [_line(7, "Disk /dev/sda{i} failing")])
    r = pipe.ingest(T0 + 1000)
    assert r.new_templates == 1 and r.new_findings == 0
    r = pipe.ingest(T0 + 2000)  # reported a tick later, still a template of its own
    assert r.new_templates == 0 and r.new_findings == 1
    (f,) = store.findings()
    assert f.kind == FindingKind.LOG and f.detector == NEW_TEMPLATE_DETECTOR
    assert f.evidence["example"].endswith("Disk /dev/sda7 failing")
    assert "<*>" in f.evidence["template"] and "auth: new log template" in f.summary
    # A replay (the same lines after a crash before the commit) gives the same finding id.
    again = LogPipeline(MemoryStore(), _config(p, warmup=20), SeriesIndex())
    again.ingest(T0)
    again.ingest(T0 + 1000)
    again.ingest(T0 + 2000)
    assert [x.id for x in again.store.findings()] == [f.id]


@pytest.mark.parametrize("part", ["state", "miner"])
def test_a_log_state_written_by_a_newer_relia_says_so_and_names_the_store(
    tmp_path: Path, part: str
) -> None:
    # It read "not a relia log file state of a known version", with no store named.
    import json
    import struct
    import zlib

    p = tmp_path / "auth.log"
    path = tmp_path / "s.duckdb"
    _write(p, [_line(i) for i in range(50)])
    with DuckDBStore(path) as store:
        pipe = LogPipeline(store, _config(p), SeriesIndex())
        pipe.ingest(T0)
        pipe.close()
        [(name, blob)] = store.load_log_states().items()
        (n,) = struct.unpack_from("<I", blob)
        state, miner = json.loads(blob[4 : 4 + n]), json.loads(zlib.decompress(blob[4 + n :]))
        (state if part == "state" else miner)["version"] = 2
        head = json.dumps(state).encode()
        newer = struct.pack("<I", len(head)) + head + zlib.compress(json.dumps(miner).encode())
        store.commit_log_progress({name: newer}, LogCounts.empty())
    with DuckDBStore(path) as store:
        with pytest.raises(StoreError, match="written by a newer relia") as info:
            LogPipeline(store, _config(p), SeriesIndex()).start()
        assert str(info.value).startswith(f"{path}: the stored state of log file 'auth'")
        assert "version 2 > 1" in str(info.value) and "upgrade relia" in str(info.value)
        assert store.load_log_states() == {name: newer}  # left as it was


def test_restart_resumes_offsets_templates_and_open_window(tmp_path: Path) -> None:
    p = tmp_path / "auth.log"
    path = tmp_path / "s.duckdb"
    _write(p, [_line(i) for i in range(50)])
    with DuckDBStore(path) as store:
        pipe = LogPipeline(store, _config(p), SeriesIndex())
        pipe.ingest(T0)
        ids = {t.id: t.text for t in pipe._files[0].miner.templates}
        header = pipe._files[0].header
        pipe.close()
    _write(p, [_line(i) for i in range(50, 60)])
    with DuckDBStore(path) as store:
        pipe = LogPipeline(store, _config(p), SeriesIndex())
        pipe.start()
        assert pipe._files[0].header == header  # kept, not learned again from the next lines
        r = pipe.ingest(T0 + 10)
        assert r.lines == 10 and r.new_templates == 0
        f = pipe._files[0]
        assert {t.id: t.text for t in f.miner.templates} == ids and f.header == header
        assert f.lines == 60
        batch = pipe.closed_windows(T0 + W)
        total = batch.value[batch.series_id == pipe.index.find(LINE_COUNT, {"file": "auth"})]
        assert total.tolist() == [60.0]  # the window's lines from before and after the restart
        assert _total(store, "auth") == 60


class _FailingCommit(MemoryStore):
    fail = False

    def commit_log_progress(self, states: dict[str, bytes], counts: LogCounts) -> None:
        if self.fail:
            raise StoreError("disk full")
        super().commit_log_progress(states, counts)


def _a_tick_fails(tmp_path: Path, store: Any, new_lines: list[str]) -> LogPipeline:
    """A pipeline over ``auth.log`` that ingested 10 lines at T0, then ``new_lines`` at T0 + 1
    in a tick that ``store`` (its ``fail`` set meanwhile) made fail; ``fail`` is off again."""
    p = tmp_path / "auth.log"
    _write(p, [_line(i) for i in range(10)])
    pipe = LogPipeline(store, _config(p), SeriesIndex())
    pipe.ingest(T0)
    _write(p, new_lines)
    store.fail = True
    with pytest.raises(StoreError):
        pipe.ingest(T0 + 1)
    store.fail = False
    return pipe


def test_failed_commit_is_retried_from_the_store_without_double_counting(tmp_path: Path) -> None:
    store = _FailingCommit()
    pipe = _a_tick_fails(tmp_path, store, [_line(i) for i in range(10, 25)])
    r = pipe.ingest(T0 + 2)
    assert r.lines == 15
    assert _total(store, "auth") == 25 and pipe._files[0].lines == 25


def test_bad_input_is_counted_and_an_unreadable_file_does_not_stop_others(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.log", tmp_path / "bad.log"
    good.write_bytes(
        b"ok line 1\n\x00\x01\x02binary\n" + b"y" * 300 + b"\n" + b"caf\xe9 line 2\n\n"
    )
    store = MemoryStore()
    # The config refuses a directory; one that appears at the path later fails at read time.
    pipe = LogPipeline(store, _config(good, bad, max_line_bytes=200), SeriesIndex())
    bad.mkdir()
    r = pipe.ingest(T0)
    assert r.lines == 2 and r.skipped == 3
    assert "bad.log: is a directory" in r.errors["bad"]
    st = pipe.status()
    assert st["good"]["skipped"] == {"binary": 1, "too_long": 1, "blank": 1}
    assert st["good"]["invalid_utf8"] == 1 and st["bad"]["error"]


class _QuietScorer:
    """The parts of a session scorer that tests of ``observe`` leave alone."""

    def close_idle(self, now_ms: int) -> list[Finding]:
        return []

    def remap_templates(self, merged: Mapping[int, int]) -> None:
        pass

    def saved_state(self) -> bytes:
        return b""

    def restore(self, data: bytes) -> None:
        pass


def test_session_hook_gets_keys_and_template_ids(tmp_path: Path) -> None:
    p = tmp_path / "dn.log"
    _write(p, ["081109 203615 INFO dfs: Receiving blk_12 src: /10.0.0.1", "081109 203615 INFO x"])

    class Scorer(_QuietScorer):
        def __init__(self) -> None:
            self.seen: list[Any] = []

        def observe(self, keys: Sequence[str | None], ids: Any, now_ms: int) -> list[Finding]:
            self.seen.append((list(keys), ids.tolist(), now_ms))
            return []

    scorer = Scorer()
    cfg = LogsConfig(files=[LogFileConfig(path=p, session_key=r"(blk_-?\d+)")])
    LogPipeline(MemoryStore(), cfg, SeriesIndex(), session_scorers={"dn": scorer}).ingest(T0)
    ((keys, ids, now),) = scorer.seen
    assert keys == ["blk_12", None] and len(ids) == 2 and now == T0


def test_engine_scores_template_counts_and_reports_logs(tmp_path: Path) -> None:
    p = tmp_path / "auth.log"
    clock = [T0]
    store = MemoryStore()
    index = SeriesIndex()
    pipe = LogPipeline(store, _config(p), index)
    engine = Engine(
        store, [], LocalExecutor("default"), index=index, clock=lambda: clock[0], logs=pipe
    )
    for _ in range(5):
        _write(p, [_line(i) for i in range(20)])
        res = engine.tick()
        assert res.log_lines == 20
        clock[0] += W
    sid = index.find(LINE_COUNT, {"file": "auth"})
    assert sid is not None
    ts, values = store.samples(sid)
    assert ts.tolist() == [T0 + k * W for k in range(4)] and np.all(values == 20)
    status = engine.status()["logs"]["auth"]
    assert status["lines"] == 100 and status["templates"] == 1
    assert engine.checkpoint(changed_only=False) >= 2  # the log series have detector state
    engine.close()


def test_logs_config(tmp_path: Path) -> None:
    cfg = tmp_path / "relia.yaml"
    cfg.write_text(
        "logs:\n  window: 30s\n  files:\n    - path: /var/log/x.log\n"
        "    - {path: /var/log/y.log, name: why, session_key: 'req=(\\w+)'}\n"
    )
    logs = load_config(cfg, environ={}).logs
    assert logs.window == 30.0 and [f.label for f in logs.files] == ["x", "why"]
    cfg.write_text("logs:\n  files:\n    - path: /a/x.log\n    - path: /b/x.log\n")
    with pytest.raises(ConfigError, match="both named 'x': give one a name"):
        load_config(cfg, environ={})
    cfg.write_text("logs:\n  files:\n    - path: /a/x.log\n      session_key: '(unclosed'\n")
    with pytest.raises(ConfigError, match=r"relia.yaml:4: logs.files.0.session_key: not a valid"):
        load_config(cfg, environ={})


def _emitted(index: SeriesIndex, batch: Any, file: str = "auth") -> dict[int, float]:
    """The ``log_line_count`` samples of a batch: window start -> lines."""
    sid = index.find(LINE_COUNT, {"file": file})
    return {
        int(t): float(v)
        for s, t, v in zip(batch.series_id, batch.ts, batch.value, strict=True)
        if s == sid
    }


def test_after_a_long_stop_only_the_latest_windows_are_emitted_and_only_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("relia.logs.engine.MAX_WINDOWS_PER_TICK", 3)
    p = tmp_path / "auth.log"
    _write(p, [_line(i) for i in range(5)])
    index = SeriesIndex()
    pipe = LogPipeline(MemoryStore(), _config(p), index)
    pipe.ingest(T0)
    got = _emitted(index, pipe.closed_windows(T0 + 10 * W + 5))
    assert sorted(got) == [T0 + 7 * W, T0 + 8 * W, T0 + 9 * W]
    pipe.ingest(T0 + 10 * W + 5)
    assert len(pipe.closed_windows(T0 + 10 * W + 6)) == 0


def test_lines_read_after_the_clock_went_back_are_emitted_once_also_after_a_restart(
    tmp_path: Path, store: Any
) -> None:
    p = tmp_path / "auth.log"
    _write(p, [_line(i) for i in range(5)])
    index = SeriesIndex()
    pipe = LogPipeline(store, _config(p), index)
    pipe.ingest(T0)
    assert _emitted(index, pipe.closed_windows(T0 + 2 * W)) == {T0: 5, T0 + W: 0}
    pipe.ingest(T0 + 2 * W)
    _write(p, [_line(i) for i in range(7)])
    pipe.ingest(T0 + 10)  # the clock went back into a window already emitted
    pipe.close()
    index = SeriesIndex()
    pipe = LogPipeline(store, _config(p), index)
    # They are counted in the first window not emitted yet, not in an emitted one.
    assert _emitted(index, pipe.closed_windows(T0 + 3 * W)) == {T0 + 2 * W: 7}
    assert _total(store, "auth") == 12


def test_lines_of_a_template_merged_since_are_counted_under_the_survivor(tmp_path: Path) -> None:
    p = tmp_path / "app.log"
    _write(p, ["user alice logged in", "user bob logged in"])
    index = SeriesIndex()
    pipe = LogPipeline(MemoryStore(), _config(p), index)
    pipe.ingest(T0)
    _write(p, ["user carol logged in"])  # the third user merges the two templates into one
    pipe.ingest(T0 + 10)
    batch = pipe.closed_windows(T0 + W)
    (live,) = pipe._files[0].miner.templates
    sid = index.find(TEMPLATE_COUNT, {"file": "app", "template": str(live.id)})
    assert batch.value[batch.series_id == sid].tolist() == [3.0]
    assert _emitted(index, batch, "app") == {T0: 3}


def test_a_new_template_on_the_first_line_after_warmup_is_a_finding(tmp_path: Path) -> None:
    p = tmp_path / "auth.log"
    _write(p, [_line(i) for i in range(20)] + [_line(3, "Disk /dev/sda{i} failing")])
    store = MemoryStore()
    pipe = LogPipeline(store, _config(p, warmup=20), SeriesIndex())
    assert pipe.ingest(T0).new_templates == 2
    assert pipe.ingest(T0 + 1).new_findings == 1
    (f,) = store.findings()
    assert f.evidence["example"].endswith("Disk /dev/sda3 failing")


def test_a_new_template_finding_counts_the_lines_of_the_file_before_it(tmp_path: Path) -> None:
    # docs/logs.md: the finding has "how many lines of the file came before it", also when
    # those lines were read by the same tick.
    p = tmp_path / "auth.log"
    _write(p, [_line(i) for i in range(20)] + [_line(3, "Disk /dev/sda{i} failing")])
    store = MemoryStore()
    pipe = LogPipeline(store, _config(p, warmup=5), SeriesIndex())
    pipe.ingest(T0)
    _write(p, [_line(i) for i in range(4)] + [_line(4, "Fan {i} stopped")])
    pipe.ingest(T0 + 1)
    pipe.ingest(T0 + 2)
    got = {
        f.evidence["example"].split(": ")[-1]: f.evidence["lines_before"] for f in store.findings()
    }
    assert got == {"Disk /dev/sda3 failing": 20, "Fan 4 stopped": 25}


def test_new_template_findings_per_tick_are_capped_keeping_the_first_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("relia.logs.engine.MAX_NEW_TEMPLATE_FINDINGS", 2)
    p = tmp_path / "app.log"
    _write(p, ["disk full", "fan speed is 4000 rpm", "kernel panic on cpu 3 now"])
    store = MemoryStore()
    pipe = LogPipeline(store, _config(p, warmup=0), SeriesIndex())
    assert pipe.ingest(T0).new_templates == 3
    assert pipe.ingest(T0 + 1).new_findings == 2
    assert sorted(f.evidence["example"] for f in store.findings()) == [
        "disk full",
        "fan speed is 4000 rpm",
    ]


class _FailingFindings(MemoryStore):
    fail = False

    def add_findings(self, findings: list[Finding]) -> int:
        if self.fail:
            raise StoreError("disk full")
        return super().add_findings(findings)


def test_a_new_template_finding_is_not_lost_when_storing_it_fails(tmp_path: Path) -> None:
    store = _FailingFindings()
    p = tmp_path / "auth.log"
    _write(p, [_line(i) for i in range(10)])
    pipe = LogPipeline(store, _config(p), SeriesIndex())
    pipe.ingest(T0)
    _write(p, [_line(3, "Disk /dev/sda{i} failing")])
    assert pipe.ingest(T0 + 2).new_findings == 0  # mined now, reported on the next tick
    store.fail = True
    with pytest.raises(StoreError):
        pipe.ingest(T0 + 3)
    store.fail = False
    r = pipe.ingest(T0 + 4)
    assert r.new_findings == 1 and len(store.findings()) == 1
    assert _total(store, "auth") == 11


def test_a_finding_replayed_after_a_failed_commit_is_an_update_not_a_new_one(
    tmp_path: Path,
) -> None:
    store = _FailingCommit()
    pipe = _a_tick_fails(tmp_path, store, [_line(3, "Disk /dev/sda{i} failing")])
    pipe.ingest(T0 + 2)  # mined now, reported on the next tick, whose commit fails
    store.fail = True
    with pytest.raises(StoreError):
        pipe.ingest(T0 + 3)
    store.fail = False
    assert len(store.findings()) == 1
    r = pipe.ingest(T0 + 4)
    assert (r.new_findings, r.updated_findings) == (0, 1) and len(store.findings()) == 1


def test_after_a_failed_commit_closed_windows_emit_only_committed_lines(tmp_path: Path) -> None:
    pipe = _a_tick_fails(tmp_path, _FailingCommit(), [_line(i) for i in range(10, 25)])
    index = pipe.index
    # The 15 lines were not committed: the next tick reads them again, in its own window.
    assert _emitted(index, pipe.closed_windows(T0 + W + 1)) == {T0: 10}
    pipe.ingest(T0 + W + 1)
    assert _emitted(index, pipe.closed_windows(T0 + 2 * W)) == {T0 + W: 15}


def test_windows_emitted_on_an_idle_tick_are_not_emitted_again_after_a_restart(
    tmp_path: Path, store: Any
) -> None:
    p = tmp_path / "auth.log"
    _write(p, [_line(i) for i in range(5)])
    pipe = LogPipeline(store, _config(p), SeriesIndex())
    pipe.ingest(T0)
    assert len(pipe.closed_windows(T0 + 2 * W)) > 0
    pipe.ingest(T0 + 2 * W)  # no new lines: only the windows emitted are committed
    pipe.close()
    again = LogPipeline(store, _config(p), SeriesIndex())
    assert len(again.closed_windows(T0 + 2 * W + 5)) == 0


def test_skipped_lines_are_reported_by_the_tick_that_read_them(tmp_path: Path) -> None:
    p = tmp_path / "auth.log"
    _write(p, [_line(1), "", _line(2)])
    pipe = LogPipeline(MemoryStore(), _config(p), SeriesIndex())
    assert pipe.ingest(T0).skipped == 1
    _write(p, [_line(3)])
    r = pipe.ingest(T0 + 1)
    assert (r.lines, r.skipped) == (1, 0)


def test_a_tick_that_reads_only_skipped_lines_saves_its_offset(tmp_path: Path) -> None:
    p = tmp_path / "auth.log"
    _write(p, [_line(1)])
    store = MemoryStore()
    pipe = LogPipeline(store, _config(p), SeriesIndex())
    pipe.ingest(T0)
    _write(p, ["", ""])
    assert pipe.ingest(T0 + 1).skipped == 2
    pipe.close()
    again = LogPipeline(store, _config(p), SeriesIndex())
    assert again.ingest(T0 + 2).skipped == 0  # not read (and skipped) a second time
    assert again.status()["auth"]["skipped"]["blank"] == 2


def test_a_file_without_lines_yet_has_no_samples_until_its_first_lines(tmp_path: Path) -> None:
    p = tmp_path / "auth.log"
    p.touch()
    index = SeriesIndex()
    pipe = LogPipeline(MemoryStore(), _config(p), index)
    pipe.ingest(T0)
    assert len(pipe.closed_windows(T0 + 3 * W)) == 0
    _write(p, [_line(1)])
    pipe.ingest(T0 + 3 * W)
    assert _emitted(index, pipe.closed_windows(T0 + 5 * W)) == {T0 + 3 * W: 1, T0 + 4 * W: 0}


def test_a_file_error_clears_in_status_once_the_file_reads_again(tmp_path: Path) -> None:
    p = tmp_path / "auth.log"
    pipe = LogPipeline(MemoryStore(), _config(p), SeriesIndex())
    p.mkdir()  # after the config, which refuses a directory
    assert "is a directory" in pipe.ingest(T0).errors["auth"]
    p.rmdir()
    _write(p, [_line(1)])
    r = pipe.ingest(T0 + 1)
    assert r.errors == {} and r.lines == 1 and pipe.status()["auth"]["error"] is None


def test_a_file_failing_every_tick_is_logged_once_then_its_recovery(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    p = tmp_path / "auth.log"
    pipe = LogPipeline(MemoryStore(), _config(p), SeriesIndex())
    p.mkdir()  # fails on every tick, as a FIFO or an unreadable file would
    with caplog.at_level("WARNING", logger="relia.logs.engine"):
        for k in range(10):
            assert "is a directory" in pipe.ingest(T0 + k).errors["auth"]
        assert caplog.text.count("is a directory") == 1
        p.rmdir()
        _write(p, [_line(1)])
        assert pipe.ingest(T0 + 10).errors == {}
    assert "recovered after 10 failures" in caplog.text
    assert "Traceback" not in caplog.text  # the message says it all


class _Sessions(_QuietScorer):
    """A session scorer that records the keys it was given; a finding for key ``blk_2``."""

    def __init__(self) -> None:
        self.keys: list[str | None] = []

    def observe(self, keys: Sequence[str | None], ids: Any, now_ms: int) -> list[Finding]:
        self.keys.extend(keys)
        if "blk_2" not in keys:
            return []
        key = "session{file=dn,session=blk_2}"
        return [
            Finding(
                id=Finding.make_id(FindingKind.LOG, key, 0, "session"),
                kind=FindingKind.LOG,
                key=key,
                start=now_ms,
                end=now_ms,
                score=0.9,
                severity="warning",
                detector="session",
                summary="abnormal session blk_2",
            )
        ]


def _session_pipe(tmp_path: Path, store: Any) -> tuple[LogPipeline, _Sessions, Path]:
    p = tmp_path / "dn.log"
    _write(p, ["081109 203615 INFO dfs: Receiving blk_1 src: /10.0.0.1"])
    scorer = _Sessions()
    cfg = LogsConfig(files=[LogFileConfig(path=p, session_key=r"(blk_-?\d+)")])
    pipe = LogPipeline(store, cfg, SeriesIndex(), session_scorers={"dn": scorer})
    pipe.ingest(T0)
    _write(p, [f"081109 203616 INFO dfs: Receiving blk_{i} src: /10.0.0.1" for i in (2, 3)])
    return pipe, scorer, p


def test_lines_replayed_after_a_failed_commit_reach_the_session_scorer_once(
    tmp_path: Path,
) -> None:
    store = _FailingCommit()
    pipe, scorer, p = _session_pipe(tmp_path, store)
    store.fail = True
    with pytest.raises(StoreError):
        pipe.ingest(T0 + 1)
    store.fail = False
    _write(p, ["081109 203617 INFO dfs: Receiving blk_4 src: /10.0.0.1"])
    assert pipe.ingest(T0 + 2).lines == 3
    assert scorer.keys == ["blk_1", "blk_2", "blk_3", "blk_4"]
    assert _total(store, "dn") == 4


def test_a_session_finding_is_not_lost_when_storing_it_fails(tmp_path: Path) -> None:
    store = _FailingFindings()
    pipe, scorer, _ = _session_pipe(tmp_path, store)
    store.fail = True
    with pytest.raises(StoreError):
        pipe.ingest(T0 + 1)
    store.fail = False
    r = pipe.ingest(T0 + 2)
    assert [f.summary for f in store.findings()] == ["abnormal session blk_2"]
    assert r.new_findings == 1 and scorer.keys == ["blk_1", "blk_2", "blk_3"]
    assert pipe.ingest(T0 + 3).findings == []  # stored once, not again each tick


def test_template_series_over_the_limit_are_dropped_and_the_rest_emitted(tmp_path: Path) -> None:
    p = tmp_path / "auth.log"
    _write(p, [_line(i) for i in range(30)])
    _write(p, [_line(i, "Failed password for user{i} from 10.0.0.1") for i in range(5)])
    index = SeriesIndex(max_series=2)
    pipe = LogPipeline(MemoryStore(), _config(p), index)
    pipe.ingest(T0 + 5)
    batch = pipe.closed_windows(T0 + W + 5)
    # Two template series fit; the file's line count is refused, its samples dropped.
    names = {index.name(int(s)) for s in batch.series_id}
    assert names == {TEMPLATE_COUNT} and len(batch) == 2
    assert sorted(batch.value.tolist()) == [5.0, 30.0]
    assert index.refused() == {"logs": 1}


def test_forgotten_template_series_are_registered_anew(tmp_path: Path) -> None:
    p = tmp_path / "auth.log"
    _write(p, [_line(i) for i in range(30)])
    index = SeriesIndex()
    pipe = LogPipeline(MemoryStore(), _config(p), index)
    pipe.ingest(T0 + 5)
    first = pipe.closed_windows(T0 + W + 5)
    pipe.ingest(T0 + W + 5)
    ids = set(first.series_id.tolist())
    assert len(ids) == 2  # the template's count and the line count
    index.forget(ids)
    pipe.forget(ids)
    index.forget([])  # no tombstones left: an id the pipeline kept could not be named
    later = pipe.closed_windows(T0 + 2 * W + 5)
    assert set(later.series_id.tolist()) == ids and ids <= set(index)


def test_lines_read_before_a_rotation_error_are_counted_once(tmp_path: Path) -> None:
    """Rotated with unread lines, and the new path unreadable for a while (a directory): the
    old file's lines are counted, the error shown, and nothing is lost once it reads again."""
    p = tmp_path / "auth.log"
    _write(p, [_line(i) for i in range(5)])
    store = MemoryStore()
    pipe = LogPipeline(store, _config(p), SeriesIndex())
    pipe.ingest(T0)
    _write(p, [_line(i) for i in range(5, 8)])
    p.rename(tmp_path / "auth.log.1")
    p.mkdir()
    r = pipe.ingest(T0 + 1)
    assert r.lines == 3 and "is a directory" in r.errors["auth"]
    assert "is a directory" in pipe.status()["auth"]["error"]
    _write(tmp_path / "auth.log.1", [_line(8)])  # the writer had not reopened yet
    pipe.ingest(T0 + 2)
    pipe.ingest(T0 + 3)
    p.rmdir()
    _write(p, [_line(i) for i in range(9, 11)])
    r = pipe.ingest(T0 + 4)
    assert r.errors == {} and pipe.status()["auth"]["error"] is None
    assert _total(store, "auth") == 11 and pipe.status()["auth"]["lines"] == 11


_LOGHUB = [
    root / "shared/data/loghub2k"
    for root in Path(__file__).resolve().parents[2:4]
    if (root / "shared/data/loghub2k").is_dir()
]


@pytest.mark.skipif(not _LOGHUB, reason="the Loghub-2k data set is not there")
@pytest.mark.parametrize("first", [1, 10])
def test_the_header_is_learned_from_enough_lines_not_the_first_few(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, first: int
) -> None:
    monkeypatch.setattr("relia.logs.engine.HEADER_MIN_LINES", 200)
    lines = (_LOGHUB[0] / "Zookeeper/Zookeeper_2k.log").read_text().splitlines()

    def mined(ticks: list[list[str]]) -> tuple[str, list[str], int]:
        p = tmp_path / f"zk{len(ticks)}.log"
        p.touch()
        store = MemoryStore()
        pipe = LogPipeline(store, _config(p, warmup=0), SeriesIndex())
        for k, chunk in enumerate(ticks):
            _write(p, chunk)
            pipe.ingest(T0 + k * 1000)
        f = pipe._files[0]
        assert f.header is not None and _total(store, f.name) == len(lines)
        return f.header.rule, sorted(t.text for t in f.miner.templates), len(store.findings())

    at_once = mined([lines])
    # The first tick's few lines wait (uncommitted) for the rest: the same header and templates.
    assert mined([lines[:first], lines[first:]]) == at_once
    assert at_once[0] == "separator" and at_once[2] == 0  # warm-up 0: one tick, no findings yet


def test_a_quiet_file_is_mined_after_a_few_windows_and_restarts_keep_its_ids(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("relia.logs.engine.HEADER_MIN_LINES", 200)
    p = tmp_path / "auth.log"
    _write(p, [_line(i) for i in range(3)])
    store = MemoryStore()
    pipe = LogPipeline(store, _config(p, warmup=100), SeriesIndex())
    r = pipe.ingest(T0)
    assert r.lines == 0 and pipe.status()["auth"]["held_for_header"] == 3
    assert store.load_log_states() == {}  # nothing committed: read again after a restart
    pipe = LogPipeline(store, _config(p, warmup=100), SeriesIndex())
    assert pipe.ingest(T0).lines == 0
    _write(p, [_line(3)])
    assert pipe.ingest(T0 + 4 * W).lines == 0
    r = pipe.ingest(T0 + 5 * W)
    assert r.lines == 4 and r.new_findings == 0 and _total(store, "auth") == 4
    ids = {t.id: t.text for t in pipe._files[0].miner.templates}
    again = LogPipeline(store, _config(p, warmup=100), SeriesIndex())
    _write(p, [_line(4)])
    assert again.ingest(T0 + 6 * W).lines == 1  # the header is kept: no wait any more
    assert {t.id: t.text for t in again._files[0].miner.templates} == ids
    assert store.findings() == []


def test_a_second_value_of_a_word_parameter_is_not_a_new_template(tmp_path: Path) -> None:
    p = tmp_path / "app.log"
    _write(p, [f"INFO worker: task {i} completed for tenant acme" for i in range(500)])
    store = MemoryStore()
    pipe = LogPipeline(store, _config(p, warmup=100), SeriesIndex())
    pipe.ingest(T0)
    _write(p, ["INFO worker: task 501 completed for tenant globex"])
    assert pipe.ingest(T0 + 1).new_templates == 1  # a new id for now...
    _write(p, ["INFO worker: task 502 completed for tenant initech"])
    r = pipe.ingest(T0 + 2)  # ...merged by the third value: a parameter, not a new event
    assert r.new_findings == 0 and store.findings() == []
    _write(p, ["ERROR worker: disk 3 full"])
    pipe.ingest(T0 + 3)
    r = pipe.ingest(T0 + 4)
    assert r.new_findings == 1
    (f,) = store.findings()
    assert f.evidence["template"] == "disk <*> full"


def test_a_new_template_finding_of_a_huge_line_keeps_its_evidence_short(tmp_path: Path) -> None:
    p = tmp_path / "app.log"
    _write(p, [f"INFO request {i} served" for i in range(20)])
    store = MemoryStore()
    pipe = LogPipeline(store, _config(p, warmup=10), SeriesIndex())
    pipe.ingest(T0)
    _write(p, ["ERROR dump " + "x" * 500_000 + " end"])
    pipe.ingest(T0 + 1)
    pipe.ingest(T0 + 2)
    (f,) = store.findings()
    for key in ("template", "example"):
        text = f.evidence[key]
        assert len(text) < 2100 and text.endswith(" characters)") and "…" in text


def test_a_missing_file_is_shown_as_waited_for_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    typo = tmp_path / "typo" / "aap.log"
    later = tmp_path / "later.log"
    pipe = LogPipeline(MemoryStore(), _config(typo, later), SeriesIndex())
    with caplog.at_level("WARNING", logger="relia.logs.engine"):
        for k in range(3):
            pipe.ingest(T0 + k)
    status = pipe.status()
    assert status["aap"]["waiting"] == (
        f"waiting for the file: no such file, nor its directory {typo.parent}"
    )
    assert status["later"]["waiting"] == "waiting for the file: no such file"
    assert caplog.text.count("waiting for the file") == 2
    _write(later, [_line(0)])
    pipe.ingest(T0 + 3)
    assert pipe.status()["later"]["waiting"] is None


def test_a_steady_log_with_a_window_that_is_a_multiple_of_the_tick_has_no_empty_windows(
    tmp_path: Path,
) -> None:
    """The config refuses a window that some ticks miss (tests/test_config.py); one it accepts
    (30 s with a tick every 15 s) gives a steady log steady counts."""
    p = tmp_path / "auth.log"
    index = SeriesIndex()
    cfg = LogsConfig(files=[LogFileConfig(path=p)], window=30, warmup_lines=10)
    pipe = LogPipeline(MemoryStore(), cfg, index)
    emitted: dict[int, float] = {}
    for k in range(12):
        now = T0 + k * 15_000
        emitted.update(_emitted(index, pipe.closed_windows(now)))
        _write(p, [_line(i) for i in range(15)])  # a line a second
        pipe.ingest(now)
    assert len(emitted) == 5 and set(emitted.values()) == {30.0}


# -- session scoring with the real scorer (relia.logs.sessions) ------------------------------


def _blocks(first: int, n: int, steps: Sequence[str] = ("alpha", "beta")) -> list[str]:
    """``n`` normal sessions: a block allocated, then one line per step."""
    out: list[str] = []
    for b in range(first, first + n):
        out.append(f"2024-05-01 12:00:00 INFO allocate block blk_{b}")
        out += [f"2024-05-01 12:00:00 INFO step {s} done for blk_{b}" for s in steps]
    return out


def _failed_block(b: int) -> list[str]:
    return [
        f"2024-05-01 12:00:00 INFO allocate block blk_{b}",
        f"2024-05-01 12:00:00 ERROR write failed for blk_{b}: disk full",
    ]


def _real_sessions(tmp_path: Path, store: Any, scorer: Any = None) -> tuple[LogPipeline, Any, Path]:
    from relia.logs.sessions import SessionFindings, SessionTracker

    p = tmp_path / "dn.log"
    p.touch()
    if scorer is None:
        scorer = SessionFindings("dn", SessionTracker(idle_timeout_ms=W, warmup_sessions=20))
    cfg = LogsConfig(
        files=[LogFileConfig(path=p, session_key=r"(blk_\d+)")], window=W / 1000, warmup_lines=10
    )
    return LogPipeline(store, cfg, SeriesIndex(), session_scorers={"dn": scorer}), scorer, p


def _session_findings(r: Any) -> list[str]:
    return sorted(f.evidence["session"] for f in r.findings if f.detector == "log-session")


def test_a_template_merge_turns_no_normal_session_into_a_finding(tmp_path: Path) -> None:
    pipe, scorer, p = _real_sessions(tmp_path, MemoryStore())
    now = T0
    for k in range(4):  # 40 sessions: the model is fitted on "step alpha" and "step beta"
        _write(p, _blocks(10 * k, 10))
        assert _session_findings(pipe.ingest(now)) == []
        now += W
    assert scorer.tracker.model.fitted
    # A third step word: alpha, beta and gamma merge into "step <*> done for <*>".
    _write(p, [*_blocks(40, 10), *_blocks(900, 1, ["gamma"])])
    assert _session_findings(pipe.ingest(now)) == []
    now += W
    found = []
    for k in range(3):  # normal sessions after the merge are normal still
        _write(p, _blocks(100 + 10 * k, 10))
        found += _session_findings(pipe.ingest(now))
        now += W
    # Only the session that had one step instead of two.
    assert found == ["blk_900"]
    _write(p, [*_blocks(200, 10), *_failed_block(999)])
    pipe.ingest(now)
    assert _session_findings(pipe.ingest(now + W)) == ["blk_999"]


def test_sessions_of_a_file_gone_quiet_close_after_their_idle_timeout(tmp_path: Path) -> None:
    pipe, scorer, p = _real_sessions(tmp_path, MemoryStore())
    now = T0
    for k in range(3):
        _write(p, _blocks(10 * k, 10))
        pipe.ingest(now)
        now += W
    _write(p, _failed_block(999))  # the block's write fails; the process logs nothing more
    assert _session_findings(pipe.ingest(now)) == []
    r = pipe.ingest(now + W)  # no new line: the idle timeout passed
    assert _session_findings(r) == ["blk_999"] and scorer.tracker.open_sessions == 0
    assert "never seen in training" in r.findings[0].summary


def test_the_session_model_is_stored_with_the_file_and_survives_a_restart(
    tmp_path: Path, store: Any
) -> None:
    from relia.logs.sessions import SessionFindings, SessionTracker

    pipe, scorer, p = _real_sessions(tmp_path, store)
    now = T0
    for k in range(4):
        _write(p, _blocks(10 * k, 10))
        pipe.ingest(now)
        now += W
    assert scorer.tracker.model.fitted
    pipe.close()
    # A new process: a new scorer, which takes the stored model back (no warm-up again).
    again = SessionFindings("dn", SessionTracker(idle_timeout_ms=W, warmup_sessions=20))
    pipe, _, p = _real_sessions(tmp_path, store, again)
    _write(p, _failed_block(999))
    pipe.ingest(now)
    assert again.tracker.model.fitted
    assert _session_findings(pipe.ingest(now + W)) == ["blk_999"]
