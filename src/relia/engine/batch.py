"""Batch detection over many series: in this process, or spread over Ray workers.

:func:`detect_many` scores every series of its inputs with a fresh detector (the detector's batch
``score_detail``, the same call ``relia detect`` makes for one file), thresholds the scores and
returns one :class:`SeriesResult` per series: always a compact summary (points, anomalous points,
anomaly windows), and the per-point arrays when asked (``return_scores``). With ``out_dir`` every
series is also written as a scored CSV (``<stem>.csv``).

An input is a recipe, not the data: :class:`SeriesFile` (one series per CSV or Parquet file, read
by :func:`~relia.sources.files.read_series`), :class:`WideParquet` (many series in one Parquet
file: a time column and one value column per series) or :class:`SeriesArrays` (a series already
in memory, e.g. from a PromQL query). With ``executor="ray"`` each worker (a Ray actor, one core:
its thread pools are pinned to one thread) loads, scores and writes its own chunk of inputs, so
file data never travels through the driver and only the compact results come back.

Both executors run the same function on every input, so they give identical results; errors too:
the first bad input in input order is reported (a :class:`~relia.errors.ReliaError` naming it),
and no output file is left behind (workers write hidden part files, renamed only when every input
succeeded; a rename that fails half-way puts back what the earlier ones replaced).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, TextIO

import numpy as np
import numpy.typing as npt

from relia.engine._rayutil import check_ray_address, init_address, quiet_ray_logs
from relia.errors import ConfigError, DataError, DetectorError, ReliaError, SourceError, StoreError

__all__ = [
    "RayBatchRunner",
    "ScoredArrays",
    "SeriesArrays",
    "SeriesFile",
    "SeriesInput",
    "SeriesResult",
    "WideParquet",
    "WindowSummary",
    "detect_many",
    "folder_files",
    "write_scored_csv",
]

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

#: Environment of a Ray batch worker: every thread pool one thread, so a worker is one core and
#: ``workers=N`` means N cores (Numba, BLAS and Polars would otherwise each start a pool per core).
WORKER_THREAD_ENV = {
    "NUMBA_NUM_THREADS": "1",
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "POLARS_MAX_THREADS": "1",
}

RAY_HINT = "the Ray executor needs Ray: pip install 'relia[ray]'"

_ERRORS: dict[str, type[ReliaError]] = {
    c.__name__: c
    for c in (ReliaError, ConfigError, DataError, DetectorError, SourceError, StoreError)
}


# -- inputs --------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Loaded:
    """One series as loaded by an input: display name, output stem, arrays."""

    name: str
    stem: str
    ts: IntArray
    values: FloatArray
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class SeriesFile:
    """One series per CSV or Parquet file, read by :func:`relia.sources.files.read_series`."""

    path: Path
    time_col: str | None = None
    value_col: str | None = None
    #: What results and messages call it; default the path as given (see :func:`_for_workers`).
    shown: str | None = None

    @property
    def label(self) -> str:
        return self.shown if self.shown is not None else str(self.path)

    def load(self) -> list[_Loaded]:
        from relia.sources.files import read_series

        with _named(self.path, self.shown):
            frame = read_series(self.path, time_col=self.time_col, value_col=self.value_col)
        return [_Loaded(self.label, Path(self.path).stem, frame.ts, frame.values, frame.notes)]


@dataclass(frozen=True)
class WideParquet:
    """Many series in one Parquet file, wide layout: ``time_col`` (int64 ms since the epoch, or a
    datetime) and one numeric column per series, named after it."""

    path: Path
    time_col: str = "timestamp"
    #: What messages call it; default the path as given (see :func:`_for_workers`).
    shown: str | None = None

    @property
    def label(self) -> str:
        return self.shown if self.shown is not None else str(self.path)

    def load(self) -> list[_Loaded]:
        import polars as pl

        where = self.label
        try:
            df = pl.read_parquet(self.path)
        except (pl.exceptions.PolarsError, pl.exceptions.PanicException, OSError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DataError(f"cannot read Parquet: {first}", where=where) from None
        if self.time_col not in df.columns:
            raise DataError(f"no time column {self.time_col!r}", where=where)
        tcol = df.get_column(self.time_col)
        if tcol.dtype == pl.Datetime:
            tcol = tcol.dt.epoch("ms")
        elif not tcol.dtype.is_integer():
            raise DataError(
                f"time column {self.time_col!r} must be int64 ms or a datetime, not {tcol.dtype}",
                where=where,
            )
        ts = np.ascontiguousarray(tcol.to_numpy(), dtype=np.int64)
        out = []
        for name in df.columns:
            if name == self.time_col:
                continue
            col = df.get_column(name)
            if not col.dtype.is_numeric():
                raise DataError(f"column {name!r} is {col.dtype}, not numeric", where=where)
            values = np.ascontiguousarray(col.cast(pl.Float64).to_numpy(), dtype=np.float64)
            out.append(_Loaded(name, name, ts, values))
        return out


@contextlib.contextmanager
def _named(path: Path, shown: str | None) -> Iterator[None]:
    """An error that names ``path`` names it ``shown`` instead (the path as the user gave it,
    not the absolute one a Ray worker was sent)."""
    try:
        yield
    except ReliaError as exc:
        where = exc.where
        if shown is None or where is None or not where.startswith(str(path)):
            raise
        raise type(exc)(exc.message, where=shown + where[len(str(path)) :]) from None


def _for_workers(inp: SeriesInput) -> SeriesInput:
    """``inp`` with an absolute path: a Ray worker opens a relative one in its own working
    directory, which on a cluster started elsewhere is not this one. Results and messages
    keep the path as given."""
    if isinstance(inp, (SeriesFile, WideParquet)) and not inp.path.is_absolute():
        return replace(inp, path=Path(os.path.abspath(inp.path)), shown=inp.label)
    return inp


@dataclass(frozen=True, eq=False)
class SeriesArrays:
    """A series already in memory (``ts`` int64 ms UTC, ``values`` float64)."""

    name: str
    ts: IntArray
    values: FloatArray
    stem: str | None = None

    @property
    def label(self) -> str:
        return self.name

    def load(self) -> list[_Loaded]:
        ts = np.ascontiguousarray(self.ts, dtype=np.int64)
        values = np.ascontiguousarray(self.values, dtype=np.float64)
        if ts.shape != values.shape or ts.ndim != 1:
            raise DataError(f"{len(ts)} timestamps for {len(values)} values", where=self.name)
        return [_Loaded(self.name, self.stem or _safe_stem(self.name), ts, values)]


SeriesInput = SeriesFile | WideParquet | SeriesArrays


def _safe_stem(name: str) -> str:
    """A file name for a series name (labels and slashes make poor file names)."""
    stem = re.sub(r"[^A-Za-z0-9._=-]+", "_", name).strip("._")
    return stem[:150] or "series"


# -- results -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WindowSummary:
    """One anomaly window: first and last timestamp, points in it, and the peak point (its time,
    score, value, and the model's expected value and band there; NaN while warming up)."""

    start_ts: int
    end_ts: int
    points: int
    peak_ts: int
    peak_score: float
    peak_value: float
    expected: float
    lower: float
    upper: float


@dataclass(frozen=True, eq=False)
class ScoredArrays:
    """Per-point output of one series (``values`` is what was scored: the rate with
    ``counter``)."""

    ts: IntArray
    values: FloatArray
    score: FloatArray
    expected: FloatArray
    lower: FloatArray
    upper: FloatArray
    component: npt.NDArray[np.int8]
    flags: npt.NDArray[np.bool_]


@dataclass(frozen=True)
class SeriesResult:
    """What batch detection found in one series.

    ``index`` is the position of its input in the list given, ``name`` names the series (the
    file path for a :class:`SeriesFile`), ``output`` is the CSV written (with ``out_dir``) and
    ``scored`` the per-point arrays (with ``return_scores``).
    """

    index: int
    name: str
    stem: str
    points: int
    anomalous_points: int
    windows: tuple[WindowSummary, ...]
    max_score: float
    output: Path | None = None
    scored: ScoredArrays | None = field(default=None, compare=False)
    #: What reading the input noted but accepted (a clock that stepped back), naming the place.
    notes: tuple[str, ...] = ()


# -- the work of one input (the same in both executors) ------------------------------------------


@dataclass(frozen=True)
class _Job:
    detector: str
    params: dict[str, Any]
    threshold: float
    counter: bool
    return_scores: bool
    out_dir: Path | None
    token: str


@dataclass(frozen=True)
class _Failure:
    """A user error on one input, carried back from a worker as plain fields."""

    index: int
    kind: str
    message: str
    where: str | None

    def error(self) -> ReliaError:
        return _ERRORS.get(self.kind, ReliaError)(self.message, where=self.where)


def write_scored_csv(
    target: TextIO | Path, ts: IntArray, values: FloatArray, scores: FloatArray, flags: Any
) -> None:
    """Write ``timestamp,value,anomaly_score,is_anomaly`` rows (the ``relia detect`` output)."""
    import polars as pl

    from relia.timeparse import format_ms_column

    frame = pl.DataFrame(
        {
            "timestamp": format_ms_column(ts),
            "value": values,
            "anomaly_score": np.round(scores, 6),
            "is_anomaly": np.asarray(flags).astype(np.int8),
        }
    )
    frame.write_csv(target, float_precision=None, null_value="")


def _part_path(job: _Job, index: int, k: int) -> Path:
    assert job.out_dir is not None
    return job.out_dir / f".relia-{job.token}-{index}-{k}.part"


def _score_one(index: int, k: int, s: _Loaded, job: _Job) -> SeriesResult:
    from relia.detect import Thresholder, create

    ts, values, name = s.ts, s.values, s.name
    if job.counter:
        from relia.detect.preprocess import counter_to_rate

        _, values = counter_to_rate(ts, values)
        name = f"{name} (rate per second)"
    detail = create(job.detector, **job.params).score_detail(values, ts)
    score = detail.score
    if job.counter:
        # Rows without a rate (the first, missing values) have nothing to judge.
        score = np.where(np.isnan(values), 0.0, score)
    th = Thresholder(job.threshold)
    flags = th.flags(score)
    windows = tuple(
        WindowSummary(
            w.start_ts,
            w.end_ts,
            w.end_index - w.start_index + 1,
            int(ts[w.peak_index]),
            w.peak_score,
            float(values[w.peak_index]),
            float(detail.expected[w.peak_index]),
            float(detail.lower[w.peak_index]),
            float(detail.upper[w.peak_index]),
        )
        for w in th.windows(ts, score)
    )
    output = None
    if job.out_dir is not None:
        output = _part_path(job, index, k)
        try:
            with output.open("w", encoding="utf-8", newline="") as fh:
                write_scored_csv(fh, ts, values, score, flags)
        except OSError as exc:
            raise DataError(f"cannot write: {exc.strerror}", where=str(output)) from None
    scored = None
    if job.return_scores:
        scored = ScoredArrays(
            ts, values, score, detail.expected, detail.lower, detail.upper, detail.component, flags
        )
    return SeriesResult(
        index=index,
        name=name,
        stem=s.stem,
        points=len(ts),
        anomalous_points=int(np.count_nonzero(flags)),
        windows=windows,
        max_score=float(np.max(score)) if len(score) else 0.0,
        output=output,
        scored=scored,
        notes=s.notes,
    )


def _run_chunk(
    items: Sequence[tuple[int, SeriesInput]], job: _Job
) -> tuple[list[SeriesResult], _Failure | None]:
    """Load and score each input in order; stop at the first user error (returned, not raised,
    so it crosses a process boundary as plain fields)."""
    results: list[SeriesResult] = []
    for index, inp in items:
        try:
            loaded = inp.load()
            results.extend(_score_one(index, k, s, job) for k, s in enumerate(loaded))
        except ReliaError as exc:
            return results, _Failure(index, type(exc).__name__, exc.message, exc.where)
    return results, None


# -- executors -----------------------------------------------------------------------------------


def _import_ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise ConfigError(RAY_HINT) from None
    return ray


class _BatchWorker:
    """The Ray actor of a batch run: builds the detector once (a bad name fails here) and warms
    its compiled kernel, then scores chunks of inputs."""

    def __init__(self, detector: str, params: dict[str, Any]) -> None:
        from relia.detect import create

        # Warm-up outside any timed chunk: Numba loads (or compiles) the kernel on first use.
        t = np.arange(256, dtype=np.int64) * 60_000
        create(detector, **params).score_detail(np.sin(np.arange(256) / 5.0), t)

    def ready(self) -> int:
        return os.getpid()

    def cpu_seconds(self) -> float:
        return time.process_time()

    def run(
        self, items: list[tuple[int, SeriesInput]], job: _Job
    ) -> tuple[list[SeriesResult], _Failure | None]:
        return _run_chunk(items, job)


class RayBatchRunner:
    """``workers`` Ray actors that score chunks of inputs (see :func:`detect_many`).

    Connects to ``address`` (or starts a local Ray when none is running in this process; that one
    is shut down by :meth:`close`). Starting the actors, their warm-up included, happens here, so
    a caller timing :meth:`run` times the work alone. A context manager.
    """

    def __init__(
        self,
        detector: str = "default",
        params: dict[str, Any] | None = None,
        *,
        workers: int | None = None,
        address: str | None = None,
    ) -> None:
        from relia.detect import create

        if workers is not None and workers < 1:
            raise ConfigError(f"workers must be at least 1, got {workers}")
        self.detector = detector
        self.params = dict(params or {})
        create(detector, **self.params)  # a bad name or parameter fails before Ray starts
        ray = _import_ray()
        self._ray = ray
        self._started_ray = False
        if not ray.is_initialized():
            check_ray_address(address, "--ray-address")
            try:
                with quiet_ray_logs():
                    ray.init(
                        address=init_address(address),
                        include_dashboard=False,
                        log_to_driver=False,
                        configure_logging=False,
                    )
            except (ConnectionError, RuntimeError, ValueError) as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                what = f"cannot connect to Ray at {address}" if address else "cannot start Ray"
                where = "--ray-address" if address else "--executor"
                raise ConfigError(f"{what}: {first}", where=where) from None
            self._started_ray = True
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        self.workers = workers if workers is not None else max(1, int(cpus))
        # More workers than CPUs share them rather than wait for CPUs that never come.
        per_worker = min(1.0, cpus / self.workers)
        cls = ray.remote(_BatchWorker).options(
            num_cpus=per_worker, runtime_env={"env_vars": dict(WORKER_THREAD_ENV)}
        )
        self._actors = [cls.remote(detector, self.params) for _ in range(self.workers)]
        try:
            self.worker_pids: list[int] = ray.get([a.ready.remote() for a in self._actors])
        except Exception:
            self.close()
            raise

    def run(
        self,
        inputs: Sequence[SeriesInput],
        job: _Job,
        *,
        chunk_size: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> list[SeriesResult]:
        """Score ``inputs`` in chunks, at most two chunks queued per actor (one running, one
        waiting, so no actor idles between chunks); stop dispatching at the first failure."""
        if job.detector != self.detector or job.params != self.params:
            raise ConfigError("this runner was started for another detector")
        ray = self._ray
        n = len(inputs)
        # Many small chunks balance the load (a worker that finishes early takes the next one); a
        # chunk still amortizes the few milliseconds a call costs over several inputs.
        size = chunk_size or max(1, min(64, math.ceil(n / (16 * self.workers))))
        chunks = [
            [(i, inputs[i]) for i in range(start, min(n, start + size))]
            for start in range(0, n, size)
        ]
        load = [0] * self.workers
        pending: dict[Any, tuple[int, int]] = {}  # ref -> (actor, chunk)
        parts: dict[int, list[SeriesResult]] = {}
        failures: list[_Failure] = []
        nxt = done = 0
        while pending or (nxt < len(chunks) and not failures):
            while nxt < len(chunks) and not failures and min(load) < 2:
                a = load.index(min(load))
                ref = self._actors[a].run.remote(chunks[nxt], job)
                pending[ref] = (a, nxt)
                load[a] += 1
                nxt += 1
            ready, _ = ray.wait(list(pending), num_returns=1)
            a, c = pending.pop(ready[0])
            load[a] -= 1
            try:
                results, failure = ray.get(ready[0])
            except ray.exceptions.RayActorError as exc:
                # The worker process died (OOM, node lost, killed): one clear error naming what
                # it was scoring, not Ray's traceback; the parts written are removed as for any
                # failure, and no more chunks go out.
                results, failure = [], _died(chunks[c], exc)
            parts[c] = results
            if failure is not None:
                failures.append(failure)
            done += len(chunks[c])
            if progress is not None:
                progress(done, n)
        out = [r for c in sorted(parts) for r in parts[c]]
        if failures:
            raise _RunFailed(min(failures, key=lambda f: f.index), out)
        return out

    def cpu_seconds(self) -> list[float]:
        """CPU seconds each worker process has used so far (to tell a worker that computed from
        one that waited for a core another process held)."""
        return [float(s) for s in self._ray.get([a.cpu_seconds.remote() for a in self._actors])]

    def close(self) -> None:
        """Stop the actors (and the local Ray this runner started); idempotent."""
        for a in self.__dict__.get("_actors", []):
            with contextlib.suppress(Exception):
                self._ray.kill(a)
        self._actors = []
        if self._started_ray:
            self._ray.shutdown()
            self._started_ray = False

    def __enter__(self) -> RayBatchRunner:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _died(chunk: list[tuple[int, SeriesInput]], exc: BaseException) -> _Failure:
    """The failure of a chunk whose Ray worker died while scoring it."""
    index, first = chunk[0]
    what = first.label if len(chunk) == 1 else f"{first.label} (and {len(chunk) - 1} more)"
    text = str(exc).strip()
    why = text.splitlines()[0] if text else type(exc).__name__
    return _Failure(
        index,
        "ReliaError",
        f"a Ray worker died while scoring {what}: {why}",
        "--executor",
    )


class _RunFailed(Exception):
    """Internal: a run stopped at a failure; carries what was done so part files get removed."""

    def __init__(self, failure: _Failure, done: list[SeriesResult]) -> None:
        super().__init__(failure.message)
        self.failure = failure
        self.done = done


def _run_local(
    inputs: Sequence[SeriesInput], job: _Job, progress: Callable[[int, int], None] | None
) -> list[SeriesResult]:
    out: list[SeriesResult] = []
    for i, inp in enumerate(inputs):
        results, failure = _run_chunk([(i, inp)], job)
        out.extend(results)
        if failure is not None:
            raise _RunFailed(failure, out)
        if progress is not None:
            progress(i + 1, len(inputs))
    return out


# -- the entry point -----------------------------------------------------------------------------


def detect_many(
    inputs: Sequence[SeriesInput],
    detector: str = "default",
    params: dict[str, Any] | None = None,
    *,
    threshold: float = 0.5,
    counter: bool = False,
    executor: Literal["local", "ray"] = "local",
    workers: int | None = None,
    address: str | None = None,
    runner: RayBatchRunner | None = None,
    out_dir: Path | None = None,
    return_scores: bool = False,
    chunk_size: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[SeriesResult]:
    """Score every series of ``inputs`` with a fresh ``detector``; one result per series, in
    input order.

    ``executor="local"`` scores one series after another in this process; ``"ray"`` spreads
    chunks of inputs (``chunk_size`` inputs each; default: about 16 chunks per worker, at most
    64 inputs) over ``workers`` Ray actors (default: the cluster's CPUs) at ``address`` (default:
    a Ray already initialized in this process, else a new local one), or over an existing
    ``runner``. ``counter``: score each series' rate per second (as ``relia detect --counter``).
    ``out_dir``: write ``<stem>.csv`` per series there (it must exist). ``progress(done, total)``
    is called as inputs finish.

    Raises the :class:`~relia.errors.ReliaError` of the first bad input in input order (no
    output file is left then), :class:`~relia.errors.ConfigError` for a bad executor, worker
    count, Ray address, or Ray not installed.
    """
    from relia.detect import Thresholder, create

    if executor not in ("local", "ray"):
        raise ConfigError(f"executor must be 'local' or 'ray', got {executor!r}")
    if workers is not None and workers < 1:
        raise ConfigError(f"workers must be at least 1, got {workers}")
    Thresholder(threshold)  # a bad threshold fails before any work
    create(detector, **(params or {}))
    if out_dir is not None and not out_dir.is_dir():
        raise DataError("not a directory", where=str(out_dir))
    job = _Job(
        detector,
        dict(params or {}),
        threshold,
        counter,
        return_scores,
        None if out_dir is None else Path(out_dir),
        uuid.uuid4().hex[:12],
    )
    if not inputs:
        return []
    if executor == "ray":
        # Workers resolve relative paths in their own working directory: sent absolute.
        inputs = [_for_workers(inp) for inp in inputs]
        if job.out_dir is not None:
            job = replace(job, out_dir=Path(os.path.abspath(job.out_dir)))
    try:
        if executor == "local":
            results = _run_local(inputs, job, progress)
        elif runner is not None:
            results = runner.run(inputs, job, chunk_size=chunk_size, progress=progress)
        else:
            with RayBatchRunner(detector, params, workers=workers, address=address) as own:
                results = own.run(inputs, job, chunk_size=chunk_size, progress=progress)
    except _RunFailed as failed:
        _remove_parts(job)
        raise failed.failure.error() from None
    except BaseException:
        _remove_parts(job)
        raise
    if job.out_dir is not None:
        results = _publish(results, job)
    return results


def _remove_parts(job: _Job) -> None:
    if job.out_dir is None:
        return
    for p in job.out_dir.glob(f".relia-{job.token}-*.part"):
        with contextlib.suppress(OSError):
            p.unlink()


def _publish(results: list[SeriesResult], job: _Job) -> list[SeriesResult]:
    """Rename every part file to ``<stem>.csv`` once all succeeded (two series with one stem
    would overwrite each other: refused, nothing published)."""
    assert job.out_dir is not None
    seen: dict[str, SeriesResult] = {}
    for r in results:
        other = seen.setdefault(r.stem, r)
        if other is not r:
            _remove_parts(job)
            raise DataError(
                f"{other.name} and {r.name} would both be written to {r.stem}.csv",
                where=str(job.out_dir),
            )
    for r in results:
        target = job.out_dir / f"{r.stem}.csv"
        if target.is_dir():
            # Found before any rename: a failure half-way would leave the earlier files behind.
            _remove_parts(job)
            raise DataError("cannot write: Is a directory", where=str(target))
    # All or nothing: a file a rename replaces is kept as a hidden hard link (a copy where links
    # are not allowed) until every rename succeeded, so a failure half-way (a permission error)
    # puts back what was there and removes what was new.
    out: list[SeriesResult] = []
    kept: list[tuple[Path, Path | None]] = []  # (published target, what it replaced)
    target = job.out_dir
    try:
        for i, r in enumerate(results):
            assert r.output is not None
            target = job.out_dir / f"{r.stem}.csv"
            before = _keep_aside(target, job.out_dir / f".relia-{job.token}-{i}.old")
            kept.append((target, before))
            os.replace(r.output, target)
            out.append(replace(r, output=target))
    except OSError as exc:
        _take_back(kept[: len(out)])
        _drop_aside(kept)
        _remove_parts(job)
        raise DataError(f"cannot write: {exc.strerror}", where=str(target)) from None
    _drop_aside(kept)
    return out


def _keep_aside(target: Path, aside: Path) -> Path | None:
    """A hidden hard link to (or copy of) ``target`` at ``aside``; None when there is none."""
    if not target.exists():
        return None
    try:
        os.link(target, aside)
    except OSError:
        shutil.copy2(target, aside)
    return aside


def _take_back(published: list[tuple[Path, Path | None]]) -> None:
    """Undo renames: each target gets back the file it replaced, or goes when it was new."""
    for target, before in reversed(published):
        with contextlib.suppress(OSError):
            if before is None:
                target.unlink()
            else:
                os.replace(before, target)


def _drop_aside(kept: list[tuple[Path, Path | None]]) -> None:
    for _, before in kept:
        if before is not None:
            with contextlib.suppress(OSError):
                before.unlink(missing_ok=True)


def folder_files(folder: Path) -> list[Path]:
    """The ``*.csv`` and ``*.parquet`` files directly in ``folder`` (hidden ones skipped), sorted
    by name; raises :class:`~relia.errors.DataError` when it cannot be listed."""
    try:
        entries = sorted(folder.iterdir())
    except OSError as exc:
        raise DataError(f"cannot list: {exc.strerror}", where=str(folder)) from None
    return [
        p
        for p in entries
        if p.is_file() and p.suffix.lower() in (".csv", ".parquet") and not p.name.startswith(".")
    ]
