"""Batch detection over many series (relia.engine.batch): local and Ray give the same results."""

from __future__ import annotations

import io
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import polars as pl
import pytest

from relia.detect import Thresholder, create
from relia.engine.batch import (
    RayBatchRunner,
    SeriesArrays,
    SeriesFile,
    SeriesInput,
    SeriesResult,
    WideParquet,
    _for_workers,
    _Job,
    _run_chunk,
    _RunFailed,
    detect_many,
    folder_files,
    write_scored_csv,
)
from relia.errors import ConfigError, DataError, DetectorError, ReliaError

T0 = 1_700_000_000_000
STEP = 60_000


def _values(seed: int, n: int = 600, spike_at: int = 450) -> np.ndarray:
    rng = np.random.default_rng(seed)
    day = np.sin(2 * np.pi * np.arange(n) / 240)
    v = 50 + 10 * day + rng.normal(0, 1, n)
    v[spike_at] += 60
    return v


def _ts(n: int = 600) -> np.ndarray:
    return T0 + STEP * np.arange(n, dtype=np.int64)


def _inputs(tmp_path: Path) -> list[SeriesInput]:
    """Every kind of input: CSV and Parquet files, a wide Parquet of three series, arrays."""
    a = tmp_path / "a.csv"
    pl.DataFrame({"timestamp": _ts() // 1000, "value": _values(1)}).write_csv(a)
    b = tmp_path / "b.parquet"
    pl.DataFrame({"time": _ts(), "v": _values(2)}).write_parquet(b)
    wide = tmp_path / "wide.parquet"
    pl.DataFrame(
        {"timestamp": _ts(), **{f"w{k}": _values(10 + k) for k in range(3)}}
    ).write_parquet(wide)
    return [
        SeriesFile(a),
        SeriesFile(b, time_col="time", value_col="v"),
        WideParquet(wide),
        SeriesArrays("mem{job='x'}", _ts(), _values(3)),
    ]


def _key(r: SeriesResult) -> str:
    # repr: NaN (a band still warming up) compares unequal to itself, its repr does not.
    return repr((r.index, r.name, r.stem, r.points, r.anomalous_points, r.windows, r.max_score))


def test_local_summary_matches_the_detector_and_thresholder(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path)
    results = detect_many(inputs, "default", return_scores=True)
    assert [r.name for r in results] == [
        str(tmp_path / "a.csv"),
        str(tmp_path / "b.parquet"),
        "w0",
        "w1",
        "w2",
        "mem{job='x'}",
    ]
    assert [r.index for r in results] == [0, 1, 2, 2, 2, 3]
    assert results[-1].stem == "mem_job=_x"
    th = Thresholder(0.5)
    for seed, r in zip([1, 2, 10, 11, 12, 3], results, strict=True):
        expected = create("default").score_detail(_values(seed), _ts())
        assert r.scored is not None
        np.testing.assert_array_equal(r.scored.score, expected.score)
        np.testing.assert_array_equal(r.scored.ts, _ts())
        assert r.points == 600
        assert r.anomalous_points == int(np.count_nonzero(expected.score >= 0.5))
        windows = th.windows(_ts(), expected.score)
        assert [(w.start_ts, w.end_ts, w.peak_score) for w in r.windows] == [
            (w.start_ts, w.end_ts, w.peak_score) for w in windows
        ]
        # The spike is found, and its window describes the peak point.
        spike = next(w for w in r.windows if w.start_ts <= T0 + 450 * STEP <= w.end_ts)
        assert spike.peak_value == pytest.approx(_values(seed)[450])
        assert spike.lower < spike.expected < spike.upper < spike.peak_value
        assert r.max_score == pytest.approx(float(expected.score.max()))


@pytest.mark.slow
def test_ray_gives_the_same_results_as_local(tmp_path: Path, ray_local: ModuleType) -> None:
    inputs = _inputs(tmp_path)
    local = detect_many(inputs, "default", return_scores=True)
    calls: list[tuple[int, int]] = []
    remote = detect_many(
        inputs,
        "default",
        executor="ray",
        workers=2,
        chunk_size=1,
        return_scores=True,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert [_key(r) for r in remote] == [_key(r) for r in local]
    for a, b in zip(local, remote, strict=True):
        assert a.scored is not None and b.scored is not None
        np.testing.assert_array_equal(a.scored.score, b.scored.score)
        np.testing.assert_array_equal(a.scored.expected, b.scored.expected)
    assert sorted(calls)[-1] == (4, 4) and len(calls) == 4


def test_out_dir_gets_one_csv_per_series(tmp_path: Path) -> None:
    inputs = _inputs(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    results = detect_many(inputs, "mad", out_dir=out, return_scores=True)
    assert sorted(p.name for p in out.iterdir()) == [
        "a.csv",
        "b.csv",
        "mem_job=_x.csv",
        "w0.csv",
        "w1.csv",
        "w2.csv",
    ]
    for r in results:
        assert r.output == out / f"{r.stem}.csv" and r.scored is not None
        buf = io.StringIO()
        write_scored_csv(buf, r.scored.ts, r.scored.values, r.scored.score, r.scored.flags)
        assert r.output.read_text() == buf.getvalue()


@pytest.mark.parametrize("executor", ["local", pytest.param("ray", marks=pytest.mark.slow)])
def test_bad_input_is_named_and_nothing_is_written(
    tmp_path: Path, executor: str, request: pytest.FixtureRequest
) -> None:
    if executor == "ray":
        request.getfixturevalue("ray_local")
    inputs = _inputs(tmp_path)
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,value\n2024-01-01T00:00:00Z,1\nnot a time,2\n")
    also_bad = tmp_path / "zz.csv"
    also_bad.write_text("")
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(DataError, match=r"bad\.csv: row 2 \(line 3\)"):
        detect_many(
            [*inputs[:2], SeriesFile(bad), *inputs[2:], SeriesFile(also_bad)],
            "mad",
            executor="ray" if executor == "ray" else "local",
            workers=2 if executor == "ray" else None,
            chunk_size=1,
            out_dir=out,
        )
    assert list(out.iterdir()) == []


def test_two_series_with_one_stem_are_refused(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    twins: list[SeriesInput] = [
        SeriesArrays("x", _ts(), _values(1), stem="same"),
        SeriesArrays("y", _ts(), _values(2), stem="same"),
    ]
    with pytest.raises(DataError, match="x and y would both be written to same.csv"):
        detect_many(twins, "mad", out_dir=out)
    assert list(out.iterdir()) == []


def test_counter_scores_the_rate(tmp_path: Path) -> None:
    counter = np.cumsum(np.full(600, 5.0))
    (r,) = detect_many([SeriesArrays("c", _ts(), counter)], "mad", counter=True, return_scores=True)
    assert r.name == "c (rate per second)" and r.scored is not None
    assert np.isnan(r.scored.values[0]) and r.scored.score[0] == 0.0
    np.testing.assert_allclose(r.scored.values[1:], 5.0 / 60)


def test_wide_parquet_errors_name_the_file(tmp_path: Path) -> None:
    p = tmp_path / "w.parquet"
    pl.DataFrame({"t": _ts(), "x": _values(1)}).write_parquet(p)
    with pytest.raises(DataError, match=r"w\.parquet: no time column 'timestamp'"):
        WideParquet(p).load()
    pl.DataFrame({"timestamp": _ts(), "x": ["a"] * 600}).write_parquet(p)
    with pytest.raises(DataError, match=r"w\.parquet: column 'x' is String, not numeric"):
        WideParquet(p).load()
    pl.DataFrame({"timestamp": ["now"] * 600, "x": _values(1)}).write_parquet(p)
    with pytest.raises(DataError, match="must be int64 ms or a datetime"):
        WideParquet(p).load()
    p.write_bytes(b"PAR1 garbage")
    with pytest.raises(DataError, match=r"w\.parquet: cannot read Parquet"):
        WideParquet(p).load()


def test_user_errors_before_any_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    one: list[SeriesInput] = [SeriesArrays("s", _ts(), _values(1))]
    with pytest.raises(ConfigError, match="executor must be 'local' or 'ray'"):
        detect_many(one, executor="spark")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="workers must be at least 1"):
        detect_many(one, executor="ray", workers=0)
    with pytest.raises(DataError, match="not a directory"):
        detect_many(one, out_dir=tmp_path / "missing")
    assert detect_many([], "mad") == []
    # Ray missing: the error says how to install it.
    monkeypatch.setitem(sys.modules, "ray", None)
    with pytest.raises(ConfigError, match=r"pip install 'relia\[ray\]'"):
        detect_many(one, executor="ray")


def test_folder_files_lists_csv_and_parquet_only(tmp_path: Path) -> None:
    for name in ("b.csv", "a.parquet", "c.txt", ".hidden.csv", "D.CSV"):
        (tmp_path / name).write_text("x")
    (tmp_path / "sub.csv").mkdir()
    assert [p.name for p in folder_files(tmp_path)] == ["D.CSV", "a.parquet", "b.csv"]
    with pytest.raises(DataError, match="cannot list"):
        folder_files(tmp_path / "nope")


def test_window_summary_describes_each_window_of_the_scores() -> None:
    values = _values(4)
    values[300:306] += np.array([20.0, 40.0, 60.0, 50.0, 30.0, 20.0])  # a window of several points
    (r,) = detect_many([SeriesArrays("s", _ts(), values)], "mad")
    detail = create("mad").score_detail(values, _ts())
    windows = Thresholder(0.5).windows(_ts(), detail.score)
    # A window whose peak is neither its first nor its last point.
    assert any(w.start_index < w.peak_index < w.end_index for w in windows)
    assert [
        (s.start_ts, s.end_ts, s.points, s.peak_ts, s.peak_score, s.peak_value) for s in r.windows
    ] == [
        (
            w.start_ts,
            w.end_ts,
            w.end_index - w.start_index + 1,
            int(_ts()[w.peak_index]),
            w.peak_score,
            float(values[w.peak_index]),
        )
        for w in windows
    ]
    assert r.anomalous_points == int(np.count_nonzero(detail.score >= 0.5)) > len(windows)


def test_arrays_of_different_lengths_are_refused_naming_the_series() -> None:
    with pytest.raises(DataError, match="^s: 5 timestamps for 600 values$"):
        detect_many([SeriesArrays("s", _ts()[:5], _values(1))], "mad")


def test_a_name_without_file_name_characters_gets_the_stem_series() -> None:
    (r,) = detect_many([SeriesArrays("{/}", _ts(), _values(1))], "mad")
    assert r.stem == "series"


def test_wide_parquet_datetime_time_column_is_read_as_ms(tmp_path: Path) -> None:
    p = tmp_path / "w.parquet"
    stamps = pl.Series(_ts()).cast(pl.Datetime("ms")).cast(pl.Datetime("us"))
    pl.DataFrame({"timestamp": stamps, "x": _values(1)}).write_parquet(p)
    (loaded,) = WideParquet(p).load()
    np.testing.assert_array_equal(loaded.ts, _ts())


def test_local_progress_counts_finished_inputs(tmp_path: Path) -> None:
    calls: list[tuple[int, int]] = []
    detect_many(_inputs(tmp_path), "mad", progress=lambda done, n: calls.append((done, n)))
    assert calls == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_bad_threshold_or_detector_fails_even_without_inputs() -> None:
    with pytest.raises(DetectorError, match="threshold must be in"):
        detect_many([], "mad", threshold=1.5)
    with pytest.raises(ReliaError, match="nope"):
        detect_many([], "nope")


def test_a_bad_first_input_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("")
    with pytest.raises(DataError, match=r"bad\.csv"):
        detect_many([SeriesFile(bad), *_inputs(tmp_path)], "mad")


def test_an_interrupted_run_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()

    def interrupt(done: int, total: int) -> None:
        if done == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        detect_many(_inputs(tmp_path), "mad", out_dir=out, progress=interrupt)
    assert list(out.iterdir()) == []


def test_a_failed_run_keeps_part_files_of_other_runs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    other = out / ".relia-0123456789ab-0-0.part"  # another run writing to the same directory
    other.write_text("x")
    bad = tmp_path / "bad.csv"
    bad.write_text("")
    with pytest.raises(DataError):
        detect_many([*_inputs(tmp_path), SeriesFile(bad)], "mad", out_dir=out)
    assert list(out.iterdir()) == [other]


def test_a_target_that_cannot_be_replaced_leaves_no_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.csv").mkdir()  # b's output cannot go there; a's must not be published alone
    pair: list[SeriesInput] = [
        SeriesArrays("a", _ts(), _values(1)),
        SeriesArrays("b", _ts(), _values(2)),
    ]
    with pytest.raises(DataError, match=rf"^{out / 'b.csv'}: cannot write: "):
        detect_many(pair, "mad", out_dir=out)
    assert list(out.iterdir()) == [out / "b.csv"]
    assert list((out / "b.csv").iterdir()) == []


def _refuse_rename_to(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Renames onto ``name`` fail with a permission error; every other rename happens."""
    import errno
    import os

    real_replace = os.replace

    def replace(src: Path, dst: Path) -> None:
        if Path(dst).name == name:
            raise OSError(errno.EACCES, "Permission denied")
        real_replace(src, dst)

    monkeypatch.setattr("relia.engine.batch.os.replace", replace)


def _abc() -> list[SeriesInput]:
    return [SeriesArrays(n, _ts(), _values(i)) for i, n in enumerate("abc", start=1)]


def test_a_failed_rename_removes_the_part_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    _refuse_rename_to(monkeypatch, "b.csv")
    with pytest.raises(DataError, match=rf"^{out / 'b.csv'}: cannot write: Permission denied$"):
        detect_many(_abc(), "mad", out_dir=out)
    assert not [p for p in out.iterdir() if p.suffix == ".part"]


def _no_links(src: Path, dst: Path) -> None:  # a filesystem without hard links
    raise OSError(1, "Operation not permitted")


@pytest.mark.parametrize("hard_links", [True, False])
def test_a_failed_rename_takes_back_what_the_run_had_published(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, hard_links: bool
) -> None:
    if not hard_links:
        monkeypatch.setattr("relia.engine.batch.os.link", _no_links)
    out = tmp_path / "out"
    out.mkdir()
    (out / "a.csv").write_text("a from an earlier run\n")  # replaced, then given back
    _refuse_rename_to(monkeypatch, "c.csv")
    with pytest.raises(DataError, match=rf"^{out / 'c.csv'}: cannot write: Permission denied$"):
        detect_many(_abc(), "mad", out_dir=out)
    assert sorted(p.name for p in out.iterdir()) == ["a.csv"]
    assert (out / "a.csv").read_text() == "a from an earlier run\n"


def test_a_rerun_replaces_its_outputs_and_leaves_nothing_hidden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    pair: list[SeriesInput] = [
        SeriesArrays("a", _ts(), _values(1)),
        SeriesArrays("b", _ts(), _values(2)),
    ]
    detect_many(pair, "mad", out_dir=out)
    first = (out / "a.csv").read_text()
    (out / "a.csv").write_text("stale\n")

    monkeypatch.setattr("relia.engine.batch.os.link", _no_links)
    detect_many(pair, "mad", out_dir=out)
    assert sorted(p.name for p in out.iterdir()) == ["a.csv", "b.csv"]
    assert (out / "a.csv").read_text() == first


def test_ray_runner_with_no_workers_is_refused_before_ray_starts() -> None:
    with pytest.raises(ConfigError, match="workers must be at least 1, got 0"):
        RayBatchRunner("mad", workers=0)


class _FakeRef:
    def __init__(self, value: object) -> None:
        self.value = value


class _FakeRay:
    """Just what :meth:`RayBatchRunner.run` uses; ``wait`` hands back the oldest or the newest
    pending call, so chunks finish in input order or in reverse."""

    def __init__(self, newest_first: bool) -> None:
        self.newest_first = newest_first

    def wait(self, refs: list[_FakeRef], num_returns: int) -> tuple[list[_FakeRef], list[_FakeRef]]:
        ref = refs[-1] if self.newest_first else refs[0]
        return [ref], [r for r in refs if r is not ref]

    def get(self, ref: _FakeRef) -> object:
        return ref.value


class _FakeActor:
    def __init__(self, started: list[int]) -> None:
        self.started = started
        self.run = self

    def remote(self, chunk: list[tuple[int, SeriesInput]], job: _Job) -> _FakeRef:
        self.started.extend(i for i, _ in chunk)
        return _FakeRef(_run_chunk(chunk, job))


@pytest.mark.parametrize("newest_first", [False, True])
def test_ray_runner_reports_the_first_bad_input_and_starts_none_after_a_failure(
    tmp_path: Path, newest_first: bool
) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    bad = {1: tmp_path / "bad1.csv", 3: tmp_path / "bad3.csv"}
    for p in bad.values():
        p.write_text("")
    inputs: list[SeriesInput] = [
        SeriesFile(bad[i]) if i in bad else SeriesArrays(f"s{i}", _ts(), _values(i))
        for i in range(8)
    ]
    started: list[int] = []
    runner = object.__new__(RayBatchRunner)
    runner.detector, runner.params, runner.workers = "mad", {}, 2
    runner._ray = _FakeRay(newest_first)  # type: ignore[assignment]
    runner._actors = [_FakeActor(started), _FakeActor(started)]
    job = _Job("mad", {}, 0.5, False, False, None, "t")
    with pytest.raises(_RunFailed) as failed:
        runner.run(inputs, job, chunk_size=1)
    assert failed.value.failure.index == 1 and "bad1.csv" in str(failed.value.failure.where)
    # Two chunks queued per worker; once one has failed, no further chunk is started.
    assert sorted(started) == ([0, 1, 2, 3, 4] if not newest_first else [0, 1, 2, 3])


class _Died(Exception):
    """Stands for ``ray.exceptions.RayActorError``."""


class _DyingRef(_FakeRef):
    pass


class _FakeRayWithDeaths(_FakeRay):
    exceptions = type("exceptions", (), {"RayActorError": _Died})

    def get(self, ref: _FakeRef) -> object:
        if isinstance(ref, _DyingRef):
            raise _Died("The actor died unexpectedly before finishing this task.\n(more)")
        return ref.value


class _DyingActor(_FakeActor):
    """Writes its chunk's part files, then its process dies before it can answer."""

    def remote(self, chunk: list[tuple[int, SeriesInput]], job: _Job) -> _FakeRef:
        self.started.extend(i for i, _ in chunk)
        _run_chunk(chunk, job)
        return _DyingRef(None)


def test_a_ray_worker_dying_is_one_error_naming_its_chunk_and_leaves_no_parts(
    tmp_path: Path,
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    inputs: list[SeriesInput] = [SeriesArrays(f"s{i}", _ts(), _values(i)) for i in range(8)]
    started: list[int] = []
    runner = object.__new__(RayBatchRunner)
    runner.detector, runner.params, runner.workers = "mad", {}, 2
    runner._ray = _FakeRayWithDeaths(newest_first=False)  # type: ignore[assignment]
    runner._actors = [_FakeActor(started), _DyingActor(started)]
    with pytest.raises(ReliaError) as info:
        detect_many(inputs, "mad", out_dir=out, executor="ray", runner=runner, chunk_size=2)
    assert str(info.value) == (
        "--executor: a Ray worker died while scoring s2 (and 1 more): "
        "The actor died unexpectedly before finishing this task."
    )
    assert list(out.iterdir()) == []


_CLUSTER = """
import sys
from ray.cluster_utils import Cluster

cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
print(cluster.address, flush=True)
sys.stdin.read()  # until the test is done
cluster.shutdown()
"""


@pytest.mark.integration
@pytest.mark.slow
def test_relative_paths_work_on_a_ray_cluster_started_in_another_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The workers of a cluster started elsewhere opened ``metrics/a.csv`` in their own working
    directory (``no such file``, though the driver had found it)."""
    import os
    import subprocess

    pytest.importorskip("ray")
    from typer.testing import CliRunner

    from relia.cli import app

    (tmp_path / "elsewhere").mkdir()
    here = tmp_path / "here"
    (here / "metrics").mkdir(parents=True)
    for name, seed in (("a", 1), ("b", 2)):
        ts = np.arange(300, dtype=np.int64) * 60_000
        pl.DataFrame({"timestamp": ts, "value": _values(seed, 300, 250)}).write_csv(
            here / "metrics" / f"{name}.csv"
        )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    cluster = subprocess.Popen(
        [sys.executable, "-c", _CLUSTER],
        cwd=tmp_path / "elsewhere",
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert cluster.stdout is not None
        address = cluster.stdout.readline().strip()
        assert address, "the cluster did not start"
        monkeypatch.chdir(here)
        args = ["detect", "metrics", "--out", "scored", "--executor", "ray", "--workers", "1"]
        proc = subprocess.run(
            [sys.executable, "-m", "relia", *args, "--ray-address", address],
            capture_output=True,
            text=True,
            timeout=180,
            env=env,
        )
        assert proc.returncode == 0, proc.stderr
        # The series keep the names they were given, not the absolute paths the workers got.
        assert "metrics/a.csv" in proc.stderr and str(here) not in proc.stderr, proc.stderr
        local = CliRunner().invoke(app, ["detect", "metrics", "--out", "scored_local"])
        assert local.exit_code == 0, local.stderr
        for name in ("a.csv", "b.csv"):
            assert (here / "scored" / name).read_bytes() == (
                here / "scored_local" / name
            ).read_bytes()
    finally:
        if cluster.stdin is not None:
            cluster.stdin.close()
        cluster.wait(60)


def test_inputs_go_to_ray_workers_absolute_and_keep_the_name_they_were_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.csv").write_text("timestamp,value\n1,1\n2,2\n")
    sent = _for_workers(SeriesFile(Path("d/a.csv")))
    assert isinstance(sent, SeriesFile)
    assert sent.path == tmp_path / "d" / "a.csv" and sent.label == "d/a.csv"
    assert sent.load()[0].name == "d/a.csv"
    gone = _for_workers(SeriesFile(Path("d/gone.csv")))
    with pytest.raises(DataError, match=r"^d/gone.csv: no such file$"):
        gone.load()
    wide = _for_workers(WideParquet(Path("d/w.parquet")))
    with pytest.raises(DataError, match=r"^d/w.parquet: cannot read Parquet"):
        wide.load()
    absolute = SeriesFile(tmp_path / "d" / "a.csv")
    assert _for_workers(absolute) is absolute
