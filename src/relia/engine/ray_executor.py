"""The Ray executor: the detector state of every series in Ray actors, one shard per actor.

Series go to shard ``shard_of(series_id, n_actors)`` (ids are hashes, so shards are even and a
series always lands on the same actor). Each actor holds a
:class:`~relia.engine.local.DetectorShard`, the same class the local executor uses, so scores and
checkpoints are the same numbers.
:meth:`RayExecutor.process` sends every shard its part of a batch at once and gathers the results
with one ``ray.get``.

**An actor that dies** is replaced by a new one, which is brought back to the exact state the dead
one had: its series' last checkpoints are restored, then the samples each series learned after its
checkpoint are replayed, then the failed call is run again. The data for that comes from a
``recover`` callable (the engine builds it from its store,
:func:`relia.engine.loop.recovery_from_store`), so this module knows nothing about stores. Ray's
own actor restarts are off: a restarted actor would come back empty.

**Every wait on Ray is bounded** (``call_timeout_s``): an actor that does not answer in time (its
node lost or partitioned, the local raylet killed) is killed and replaced like a dead one, and a
replacement that Ray cannot place in time (no node has the CPUs it needs) fails the call with a
:class:`~relia.errors.ReliaError` naming the shard and the CPUs, so the engine's tick fails
with that reason instead of hanging. Once ``stop`` is set (``relia up`` got SIGTERM), a wait
lasts at most ``STOP_GRACE_S`` more, so a wedged cluster cannot hold up the shutdown.

Ray is imported lazily: importing relia never imports ray.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Collection
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
from prometheus_client import CollectorRegistry, Counter

from relia.detect.checkpoint import pack
from relia.engine._rayutil import check_ray_address, init_address, quiet_ray_logs
from relia.engine.executor import IntArray, ScoredPoints, shard_of
from relia.engine.local import DetectorShard, Refused, log_refused, merge_refused
from relia.errors import ConfigError, DetectorError, ReliaError
from relia.signals import MetricBatch

if TYPE_CHECKING:
    from types import ModuleType

__all__ = ["ActorStats", "Recovery", "RayExecutor", "ShardActor", "ShardFilter", "import_ray"]

log = logging.getLogger(__name__)

BoolArray = npt.NDArray[np.bool_]
#: Given series ids, which of them belong to the shard being recovered.
ShardFilter = Callable[[IntArray], BoolArray]
#: Given a shard filter: (the stored checkpoints of the shard's series, the samples those series
#: learned after their checkpoint, i.e. newer than the checkpoint's last point).
Recovery = Callable[[ShardFilter], tuple[dict[int, bytes], MetricBatch]]
ActorStats = dict[str, int]

_INSTALL = "pip install 'relia[ray]'"

#: How long one wait on Ray may last by default (``relia up`` derives it from the interval:
#: :func:`call_timeout_for`).
DEFAULT_CALL_TIMEOUT_S = 60.0
#: Once ``stop`` is set, how much longer a wait on Ray may last: enough for a healthy cluster to
#: hand back the final checkpoint, short enough that a wedged one does not hold up SIGTERM.
STOP_GRACE_S = 5.0
#: A wait on Ray is sliced so that ``stop`` is seen (and signal handlers run) this often.
_WAIT_SLICE_S = 0.25


def call_timeout_for(interval_s: float | None) -> float:
    """The bound on one wait on Ray for an engine ticking every ``interval_s``: three intervals,
    at least 30 s (restoring a large shard takes a while), so a wedged cluster fails a tick
    before ``/healthz`` would call the tick stuck."""
    if interval_s is None:
        return DEFAULT_CALL_TIMEOUT_S
    return max(30.0, 3.0 * interval_s)


def _seconds(s: float) -> str:
    """``s`` for a message: ``0.3``, ``30``, ``120`` (never ``1.2e+02``)."""
    return f"{s:.1f}".rstrip("0").rstrip(".")


class _NoAnswer(Exception):
    """A wait on Ray ran past its bound (the refs not ready) after ``waited_s`` seconds."""

    def __init__(self, waited_s: float, text: str = "") -> None:
        super().__init__(text or f"no answer from Ray within {_seconds(waited_s)} s")
        self.waited_s = waited_s


def import_ray() -> ModuleType:
    """The ``ray`` module, or :class:`ConfigError` naming ``engine.executor`` and the install
    command when it is missing."""
    try:
        import ray
    except ImportError:
        raise ConfigError(
            f"the ray executor needs Ray, which is not installed: {_INSTALL}",
            where="engine.executor",
        ) from None
    return ray


class ShardActor(DetectorShard):
    """What runs inside one Ray actor: a :class:`DetectorShard`, plus memory figures."""

    def stats(self, checkpoint_bytes: bool = False) -> ActorStats:
        """Series held, the actor process' resident memory (bytes) and its pid; with
        ``checkpoint_bytes``, the size of every series' checkpoint summed (packs each one, without
        touching the changed flags that :meth:`checkpoints` clears)."""
        import psutil

        out: ActorStats = {
            "series": self.n_series(),
            "rss_bytes": int(psutil.Process().memory_info().rss),
            "pid": os.getpid(),
        }
        if checkpoint_bytes:
            if self._table is not None:
                table = self._table
                out["checkpoint_bytes"] = sum(len(table.checkpoint(s)) for s in table.series_ids)
            else:
                out["checkpoint_bytes"] = sum(
                    len(pack(d.state_dict())) for d in self._detectors.values()
                )
        return out


class RayExecutor:
    """Runs the streaming detectors in ``n_actors`` Ray actors (the :class:`Executor` protocol).

    ``address``: the Ray cluster to join (``ray.init(address=...)``); unset, a Ray already
    initialised in this process is used, else a local one on this machine's CPUs is started.
    ``n_actors`` defaults to the cluster's CPUs. ``recover`` supplies what a replacement actor
    needs (see the module docstring); without it a replaced actor starts its series afresh (and
    says so in the log). ``registry`` gets ``relia_executor_actor_restarts_total``.
    ``call_timeout_s`` bounds every wait on Ray; once ``stop`` is set, a wait lasts at most
    :data:`STOP_GRACE_S` more.
    """

    #: Replacements tried for one call before giving up on it.
    max_restarts_per_call = 3

    def __init__(
        self,
        detector_name: str,
        params: dict[str, Any] | None = None,
        *,
        n_actors: int | None = None,
        address: str | None = None,
        recover: Recovery | None = None,
        registry: CollectorRegistry | None = None,
        call_timeout_s: float = DEFAULT_CALL_TIMEOUT_S,
        stop: threading.Event | None = None,
    ) -> None:
        if n_actors is not None and n_actors < 1:
            raise ConfigError(f"must be >= 1, got {n_actors}", where="engine.ray_actors")
        self.call_timeout_s = call_timeout_s
        self._stop = stop
        ray = import_ray()
        # A bad detector name or parameter fails here, before any Ray process starts; this
        # shard also tells the component names.
        probe = DetectorShard(detector_name, params)
        self.detector_name = detector_name
        self.params = dict(params or {})
        self._components = probe.components
        self._recover = recover
        self._ray = ray
        self._started_ray = False
        if not ray.is_initialized():
            self._init_ray(ray, address)
        elif address is not None:
            log.info("Ray is already initialised in this process; engine.ray_address is unused")
        self._closed = False
        self._actors: list[Any] = []
        try:
            self._start(ray, n_actors, registry)
        except BaseException:
            # Nothing left running: the actors made so far are killed, a Ray started here is
            # shut down again.
            self.close()
            raise
        log.info(
            "ray executor: %d actors (%.2g CPU each) for detector %s",
            self.n_shards,
            self._actor_cpus,
            detector_name,
        )

    def _start(
        self, ray: ModuleType, n_actors: int | None, registry: CollectorRegistry | None
    ) -> None:
        cpus = float(ray.cluster_resources().get("CPU", 1.0))
        self.n_shards = n_actors if n_actors is not None else max(1, int(cpus))
        # One CPU each while they fit, else a fair share, so that every actor can be placed
        # (and a replacement too, once Ray freed the dead one's share).
        self._actor_cpus = min(1.0, cpus / self.n_shards) if cpus > 0 else 0.0
        self._actor_cls = ray.remote(
            num_cpus=self._actor_cpus, max_restarts=0, scheduling_strategy="SPREAD"
        )(ShardActor)
        self.restarts = 0
        self._restarts_metric = Counter(
            "relia_executor_actor_restarts",
            "Ray actors replaced after they died (each restored from its shard's checkpoints)",
            registry=registry if registry is not None else CollectorRegistry(),
        )
        # Shards whose replacement actor is not yet restored: restored before their next call.
        self._pending: set[int] = set()
        for _ in range(self.n_shards):
            self._actors.append(self._new_actor())  # one by one: a failure kills those made
        # Wait for every actor: a cluster that cannot place them fails here, not mid-tick.
        try:
            self._get([a.n_series.remote() for a in self._actors])
        except _NoAnswer as exc:
            raise ConfigError(
                f"Ray did not start the {self.n_shards} actors within "
                f"{_seconds(exc.waited_s)} s: {self._room()}",
                where="engine.ray_actors",
            ) from None

    def _room(self) -> str:
        """The cluster's CPUs against an actor's share, for a message about placing actors."""
        try:
            cpus = float(self._ray.cluster_resources().get("CPU", 0.0))
        except Exception:  # noqa: BLE001 - the message goes on without the count
            return f"an actor needs {self._actor_cpus:.2g} CPU"
        return f"the cluster has {cpus:g} CPUs, an actor needs {self._actor_cpus:.2g}"

    def _get(self, refs: Any, deadline: float | None = None) -> Any:
        """``ray.get(refs)``, waiting at most ``call_timeout_s`` or until ``deadline`` (a
        ``time.monotonic()``; at most :data:`STOP_GRACE_S` more once ``stop`` is set);
        :class:`_NoAnswer` past that. Sliced, so that ``stop`` is seen."""
        ray = self._ray
        start = time.monotonic()
        if deadline is None:
            deadline = start + self.call_timeout_s
        while True:
            now = time.monotonic()
            if self._stop is not None and self._stop.is_set():
                deadline = min(deadline, now + STOP_GRACE_S)
            left = max(0.0, deadline - now)
            try:
                # Asked at least once, with no wait left too: refs already done are taken.
                return ray.get(refs, timeout=min(left, _WAIT_SLICE_S))
            except ray.exceptions.GetTimeoutError:
                if left <= 0:
                    raise _NoAnswer(now - start) from None

    def _init_ray(self, ray: ModuleType, address: str | None) -> None:
        check_ray_address(address, "engine.ray_address")
        try:
            with quiet_ray_logs():
                if address is not None:
                    ray.init(address=address, log_to_driver=False, configure_logging=False)
                else:
                    ray.init(
                        address=init_address(None),  # never RAY_ADDRESS's cluster (unchecked)
                        num_cpus=os.cpu_count() or 1,
                        include_dashboard=False,
                        log_to_driver=False,
                        configure_logging=False,
                    )
        except (ConnectionError, ValueError, RuntimeError) as exc:
            where = "engine.ray_address" if address is not None else "engine.executor"
            what = f"cannot connect to Ray at {address}" if address else "cannot start Ray"
            raise ConfigError(f"{what}: {exc}".splitlines()[0], where=where) from None
        self._started_ray = True

    def _new_actor(self) -> Any:
        return self._actor_cls.remote(self.detector_name, self.params)

    @property
    def components(self) -> tuple[str, ...]:
        return self._components

    # -- calls with recovery ---------------------------------------------------------------

    def _owns(self, k: int) -> ShardFilter:
        n = self.n_shards

        def owns(series_id: IntArray) -> BoolArray:
            return np.asarray(shard_of(series_id, n) == k, dtype=np.bool_)

        return owns

    def _replace(self, k: int, exc: BaseException) -> None:
        """Start a new actor for shard ``k`` (the old one died, with ``exc``); it is restored
        before its first call."""
        try:
            self._ray.kill(self._actors[k], no_restart=True)
        except Exception:  # noqa: BLE001 - it is dead already; killing is only to be sure
            log.debug("killing the dead actor of shard %d failed", k, exc_info=True)
        self._actors[k] = self._new_actor()
        self._pending.add(k)  # restored by the next call to the shard (see _call)
        self.restarts += 1
        self._restarts_metric.inc()
        log.warning(
            "Ray actor of shard %d/%d died (%s); replacing it (restart %d)",
            k,
            self.n_shards,
            type(exc).__name__,
            self.restarts,
        )

    def _restore_pending(self, k: int) -> None:
        # Left in _pending until done: if this fails (the store, or the actor again), the next
        # call to the shard tries again rather than scoring with an empty state.
        actor = self._actors[k]
        # Placed first: a replacement no node has room for fails here, named, not in a hang.
        try:
            self._get(actor.n_series.remote())
        except _NoAnswer as exc:
            raise ReliaError(
                f"cannot place a replacement Ray actor for shard {k} within "
                f"{_seconds(exc.waited_s)} s ({self._room()}); its series are not scored "
                "until it starts",
                where="engine.executor",
            ) from None
        if self._recover is None:
            log.warning("shard %d: no recovery source; its series start afresh", k)
            self._pending.discard(k)
            return
        checkpoints, replay = self._recover(self._owns(k))
        restored = 0
        if checkpoints:
            # The refusals come back to be logged here: an actor's log does not reach the driver.
            restored, refused = self._get(actor.restore_report.remote(checkpoints))
            log_refused(refused)
        replayed = 0
        if len(replay):
            # The scores were stored when the dead actor first made them; only the state counts.
            done = self._get(actor.process.remote(replay.series_id, replay.ts, replay.value))
            replayed = len(done)
        self._pending.discard(k)
        log.info(
            "shard %d restored: %d series from checkpoints, %d samples replayed",
            k,
            restored,
            replayed,
        )

    def _call(self, k: int, method: str, *args: Any, died: BaseException | None = None) -> Any:
        """``actor.method(*args)`` on shard ``k``, replacing the actor while it dies or does not
        answer within ``call_timeout_s`` (``died``: how the actor already failed on this call,
        which counts as the first try)."""
        ray = self._ray
        for attempt in range(self.max_restarts_per_call + 1):
            try:
                if died is not None:
                    exc, died = died, None
                    raise exc
                if k in self._pending:
                    self._restore_pending(k)
                try:
                    return self._get(getattr(self._actors[k], method).remote(*args))
                except _NoAnswer as exc:
                    # Lost with its node, or wedged: replaced like a dead one (a replacement
                    # that cannot be placed either fails in _restore_pending, named).
                    raise _NoAnswer(
                        exc.waited_s, f"no answer within {_seconds(exc.waited_s)} s from shard {k}"
                    ) from None
            except (ray.exceptions.RayActorError, _NoAnswer) as exc:
                if attempt == self.max_restarts_per_call:
                    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                    raise ReliaError(
                        f"the Ray actor of shard {k} died {attempt + 1} times in a row: {first}",
                        where="engine.executor",
                    ) from exc
                self._replace(k, exc)
        raise AssertionError("unreachable")

    def _fan_out(self, calls: dict[int, tuple[str, tuple[Any, ...]]]) -> dict[int, Any]:
        """Run ``{shard: (method, args)}`` on every shard at once; one ``ray.get`` when all
        actors live, else each failed shard again through :meth:`_call`."""
        ray = self._ray
        for k in list(self._pending):
            if k in calls:
                self._call(k, "n_series")  # restores it first
        refs = {
            k: getattr(self._actors[k], method).remote(*args) for k, (method, args) in calls.items()
        }
        # One bound for the whole call: a shard still busy when another failed gets the rest.
        begun = time.monotonic()
        deadline = begun + self.call_timeout_s
        try:
            values = self._get(list(refs.values()), deadline)
            return dict(zip(refs, values, strict=True))
        except (ray.exceptions.RayActorError, _NoAnswer):
            pass
        out: dict[int, Any] = {}
        for k, ref in refs.items():
            try:
                try:
                    out[k] = self._get(ref, deadline)
                except _NoAnswer:
                    waited_s = time.monotonic() - begun
                    text = f"no answer within {_seconds(waited_s)} s from shard {k}"
                    raise _NoAnswer(waited_s, text) from None
            except (ray.exceptions.RayActorError, _NoAnswer) as exc:
                method, args = calls[k]
                # Replaces the actor, restores the new one, then calls (this death counting).
                out[k] = self._call(k, method, *args, died=exc)
        return out

    # -- the Executor protocol -------------------------------------------------------------

    def process(self, batch: MetricBatch) -> ScoredPoints:
        """Score a batch: every shard's part on its actor, in parallel; results in shard order."""
        self._check_open()
        if len(batch) == 0:
            return ScoredPoints.empty()
        shard = shard_of(batch.series_id, self.n_shards)
        calls: dict[int, tuple[str, tuple[Any, ...]]] = {}
        for k in np.unique(shard).tolist():
            m = shard == k
            calls[k] = ("process", (batch.series_id[m], batch.ts[m], batch.value[m]))
        results = self._fan_out(calls)
        return ScoredPoints.concat([_writable(results[k]) for k in sorted(results)])

    def checkpoints(self, changed_only: bool = False) -> dict[int, bytes]:
        """Every actor's checkpoints (``changed_only``: series that learned since the last such
        call; a replaced actor reports all it replayed as changed)."""
        self._check_open()
        results = self._fan_out({k: ("checkpoints", (changed_only,)) for k in self._shards()})
        out: dict[int, bytes] = {}
        for k in sorted(results):
            out.update(results[k])
        return out

    def restore(self, checkpoints: dict[int, bytes]) -> int:
        """Send each actor the checkpoints of its series; returns how many were restored."""
        self._check_open()
        if not checkpoints:
            return 0
        ids = np.fromiter(checkpoints, dtype=np.int64, count=len(checkpoints))
        shard = shard_of(ids, self.n_shards)
        calls: dict[int, tuple[str, tuple[Any, ...]]] = {}
        for k in np.unique(shard).tolist():
            mine = ids[shard == k].tolist()
            calls[k] = ("restore_report", ({sid: checkpoints[sid] for sid in mine},))
        restored = 0
        refused: Refused = {}
        for n, why in self._fan_out(calls).values():
            restored += n
            merge_refused(refused, why)
        log_refused(refused)
        return restored

    def forget(self, series_ids: Collection[int]) -> int:
        """Each actor drops the state of its series among these; returns how many were held.

        A shard whose replacement actor is not yet restored is restored first (as before any
        call), then forgets: the forgotten series never come back from that restore. An actor
        that dies during the call is replaced, restored and asked again, so the same holds.
        """
        self._check_open()
        if not series_ids:
            return 0
        ids = np.fromiter(series_ids, dtype=np.int64, count=len(series_ids))
        shard = shard_of(ids, self.n_shards)
        calls: dict[int, tuple[str, tuple[Any, ...]]] = {}
        for k in np.unique(shard).tolist():
            calls[k] = ("forget", (ids[shard == k].tolist(),))
        return int(sum(self._fan_out(calls).values()))

    def n_series(self) -> int:
        """Series held across all actors."""
        self._check_open()
        return int(sum(self._fan_out({k: ("n_series", ()) for k in self._shards()}).values()))

    def actor_stats(self, checkpoint_bytes: bool = False) -> list[ActorStats]:
        """Per actor, in shard order: ``shard``, ``series``, ``rss_bytes`` (the actor process'
        resident memory), ``pid`` and, with ``checkpoint_bytes``, the summed checkpoint sizes."""
        self._check_open()
        res = self._fan_out({k: ("stats", (checkpoint_bytes,)) for k in self._shards()})
        return [{"shard": k, **res[k]} for k in sorted(res)]

    def actors(self) -> list[Any]:
        """The actor handles, in shard order (for tests and operators: ``ray.kill`` one)."""
        return list(self._actors)

    def close(self) -> None:
        """Kill the actors; shut Ray down if this executor started it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        for actor in self._actors:
            try:
                self._ray.kill(actor, no_restart=True)
            except Exception:  # noqa: BLE001 - shutting down; a dead actor is fine
                log.debug("killing an actor failed", exc_info=True)
        if self._started_ray:
            self._ray.shutdown()

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _shards(self) -> range:
        return range(self.n_shards)

    def _check_open(self) -> None:
        if self._closed:
            raise DetectorError("this ray executor is closed")


def _writable(points: ScoredPoints) -> ScoredPoints:
    # Arrays Ray hands back from its object store are read-only views of shared memory; the
    # engine may keep and modify what process() returns, as with the local executor.
    arrays = (points.series_id, points.ts, points.value, points.score, points.expected)
    if all(a.flags.writeable for a in (*arrays, points.lower, points.upper, points.component)):
        return points
    return ScoredPoints(
        points.series_id.copy(),
        points.ts.copy(),
        points.value.copy(),
        points.score.copy(),
        points.expected.copy(),
        points.lower.copy(),
        points.upper.copy(),
        points.component.copy(),
        points.dropped,
    )
