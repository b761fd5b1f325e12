"""``relia up``: the store, the sources from the config, the engine and the HTTP API, until told
to stop.

The engine loop runs in the calling thread and uvicorn in a background thread, so signal handlers
(installed when called from the main thread) stop both: SIGINT or SIGTERM sets the stop event, the
loop finishes its tick, the server shuts down, detector state is checkpointed and the store is
closed.
"""

from __future__ import annotations

import functools
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry

from relia._urls import shown_url
from relia.config import ApiConfig, ReliaConfig
from relia.engine.executors import build_executor
from relia.engine.gc_pacing import GcPacing
from relia.engine.loop import Engine, recovery_from_store
from relia.errors import ConfigError
from relia.signals import SeriesIndex
from relia.sources.base import MetricSource
from relia.store.base import Store

if TYPE_CHECKING:
    from relia.ha.duties import HaRuntime
    from relia.ingest.remote_write import RemoteWriteDecoder
    from relia.ingest.source import IngestSource
    from relia.logs.engine import LogPipeline
    from relia.notify.dispatcher import Dispatcher
    from relia.notify.sinks import Sink
    from relia.signals import MetricBatch
    from relia.slo.evaluate import SloEvaluator

__all__ = ["build_ingest_source", "build_slo_evaluator", "build_sources", "run_up"]

log = logging.getLogger("relia.up")


def build_sources(
    config: ReliaConfig, index: SeriesIndex, registry: CollectorRegistry | None = None
) -> list[MetricSource]:
    """The sources ``config`` asks for: this host, scrape targets, Prometheus queries, and the
    remote-write receiver. Scrape health goes to ``registry`` (relia's own ``/metrics``)."""
    sources: list[MetricSource] = []
    seen: dict[str, str] = {}

    def add(src: MetricSource, where: str) -> None:
        if src.name in seen:
            raise ConfigError(
                f"source name {src.name!r} is already used by {seen[src.name]}", where=where
            )
        seen[src.name] = where
        sources.append(src)

    if config.host.enabled:
        from relia.sources.host import HostSource

        add(HostSource(index, per_cpu=config.host.per_cpu), "host")
    if config.scrape:
        from relia.sources.scrape import ScrapeMetrics, ScrapeSource

        scrape_metrics = ScrapeMetrics(registry) if registry is not None else None
        for i, t in enumerate(config.scrape):
            target = ScrapeSource(
                t.name,
                t.url,
                index,
                timeout=t.timeout,
                interval=t.interval,
                metrics=scrape_metrics,
                max_body_bytes=t.max_body_bytes,
                max_future_ms=round(config.ingest.max_future * 1000),
            )
            add(target, f"scrape[{i}].name")
    if config.prometheus:
        from relia.sources.prometheus import PrometheusSource

        for i, p in enumerate(config.prometheus):
            queries = [(q.query, q.step) for q in p.queries]
            src = PrometheusSource(
                p.name,
                p.url,
                queries,
                index,
                lookback_s=p.lookback,
                timeout=p.timeout,
                delay_s=p.delay,
            )
            add(src, f"prometheus[{i}].name")
    if config.api.enabled and config.ingest.remote_write:
        add(build_ingest_source(config, index), "ingest")
    return sources


def build_ingest_source(config: ReliaConfig, index: SeriesIndex) -> IngestSource:
    """The remote-write source (nothing on disk yet: ``run_up`` replays its WAL with
    ``queue.recover``, then mounts :func:`relia.ingest.api.remote_write_router` on its ``queue``
    and ``decoder``)."""
    from relia.ingest.queue import IngestQueue
    from relia.ingest.remote_write import RemoteWriteDecoder
    from relia.ingest.source import IngestSource

    ing = config.ingest
    decoder = RemoteWriteDecoder(
        index,
        max_decoded_bytes=ing.max_decoded_bytes,
        max_future_ms=round(ing.max_future * 1000),
    )
    wal_dir = ing.wal_dir if ing.wal_dir is not None else Path(config.data_dir) / "wal"
    fsync = 0.0 if ing.fsync_every_write else ing.fsync_interval
    queue = IngestQueue(ing.max_queue_samples, wal_dir, fsync_interval_s=fsync)
    return IngestSource(
        queue,
        decoder=decoder,
        max_samples_per_tick=ing.max_samples_per_tick,
        max_body_bytes=ing.max_body_bytes,
    )


def build_log_pipeline(config: ReliaConfig, store: Store, index: SeriesIndex) -> LogPipeline | None:
    """The log pipeline of ``config.logs`` (None when it lists no files).

    Files with a session key get a session scorer: it learns what a normal session looks like
    from the first closed sessions, then flags abnormal ones as findings, naming templates by the
    text of the pipeline's miner. Its model is stored with the file's state; its open sessions
    live in memory only (lost at a restart).
    """
    if not config.logs.files:
        return None
    from relia.logs.engine import LogPipeline
    from relia.logs.sessions import SessionFindings

    logs = LogPipeline(store, config.logs, index)
    for f in config.logs.files:
        if f.session_key:
            logs.session_scorers[f.label] = SessionFindings(
                f.label, template_text=functools.partial(logs.template_text, f.label)
            )
    return logs


def build_slo_evaluator(config: ReliaConfig) -> SloEvaluator | None:
    """The SLO evaluator ``config.slos`` asks for (None when it lists no files): the specs are
    loaded and checked here, so a bad spec stops ``relia up`` before it starts."""
    slos_cfg = config.slos
    if not slos_cfg.files:
        return None
    from relia.slo.evaluate import SloEvaluator
    from relia.slo.loader import load_alerting_slos
    from relia.sources.prometheus import PrometheusClient

    slos = load_alerting_slos(slos_cfg.files, sloth_windows=slos_cfg.sloth_windows)
    url = slos_cfg.prometheus
    if url is None:
        if not config.prometheus:  # ReliaConfig's validator catches this for loaded files
            raise ConfigError("set slos.prometheus or add a prometheus source", where="slos")
        url = config.prometheus[0].url
    step = int(slos_cfg.step) if slos_cfg.step is not None else None
    evaluator = SloEvaluator(
        PrometheusClient(url, timeout=slos_cfg.timeout),
        slos,
        step_s=step,
        min_range_s=int(slos_cfg.min_range),
    )
    log.info(
        "evaluating %d SLOs against %s every %gs", len(slos), shown_url(url), slos_cfg.interval
    )
    return evaluator


def _open_store(config: ReliaConfig) -> Store:
    # Both stores serve concurrent readers (API threads) while the engine writes.
    from relia.store import open_store_url

    return open_store_url(config.store, config.data_dir, config.samples_per_series)


def _bind(host: str, port: int) -> socket.socket:
    host = host.strip("[]")  # "[::1]" as in a URL
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}", where="api") from None
    return sock


def _url(sock: socket.socket, *, tls: bool = False) -> str:
    host, port = sock.getsockname()[:2]
    scheme = "https" if tls else "http"
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


def _decode_batch(decoder: RemoteWriteDecoder, payload: bytes) -> MetricBatch:
    # Acknowledged before: taken whatever the clock says now (it may have moved back) and
    # whatever the limits are now (they may have been lowered since).
    return decoder.decode(payload, replay=True).batch


def warm_kernels(config: ReliaConfig, *, remote_write: bool) -> None:
    """Compile the kernels the first tick and the first remote-write request run, before relia
    says it is up. Compiling holds the GIL for seconds (after an install, about 4 s for the
    detector and 5 s for the remote-write decoder, whose first request runs it on the event
    loop), which would stall the API just after ``relia is up``; later starts load them from
    Numba's cache, but for the detector table's loop (about a second, compiled per process).
    Ray actors compile their own."""
    import numpy as np

    if config.engine.executor == "local":
        from relia.engine.local import DetectorShard

        shard = DetectorShard(config.detector.name, config.detector.params)
        one = np.zeros(1, np.int64)
        shard.process(one, one, np.zeros(1))
    if remote_write:
        from relia.ingest.remote_write import warm_up

        warm_up()


def _mount_ingest(app: Any, sources: list[MetricSource], engine: Engine, auth: Any) -> None:
    """Replay the remote-write source's WAL (samples acknowledged before a crash and not yet
    stored are queued again), serve ``POST /api/v1/write`` for it (behind the ingest role),
    export its metrics on the engine's registry and let it wake the engine when data arrives."""
    from fastapi import Depends

    from relia.api.auth import Role
    from relia.ingest.api import WRITE_PATH, remote_write_router
    from relia.ingest.source import IngestMetrics, IngestSource

    for src in sources:
        if isinstance(src, IngestSource) and src.decoder is not None:
            src.queue.recover(functools.partial(_decode_batch, src.decoder))
            src.metrics = IngestMetrics(engine.registry)
            src.metrics.watch(src.queue)
            src.queue.notify = engine.wake
            router = remote_write_router(
                src.queue,
                src.decoder,
                max_body_bytes=src.max_body_bytes,
                metrics=src.metrics,
            )
            deps = [] if auth is None else [Depends(auth.dependency(Role.INGEST))]
            app.include_router(router, dependencies=deps)
            # ingest.max_body_bytes, not api.max_body_bytes, bounds a remote-write body (the
            # route enforces it as it reads): a larger ingest limit would otherwise do nothing.
            app.limit_body(WRITE_PATH, src.max_body_bytes)


class _Api:
    """uvicorn serving the API on a bound socket, in a daemon thread."""

    def __init__(self, app: Any, sock: socket.socket, api: ApiConfig | None = None) -> None:
        import uvicorn

        from relia.api.timeouts import with_header_timeout

        api = api if api is not None else ApiConfig()
        self.sock = sock
        cfg = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            # h11 (not httptools) because it has a header size limit: a header block still
            # incomplete past this size gets 400 and the connection is closed (so a client cannot
            # make uvicorn buffer an endless header; the app answers 431 to smaller excesses).
            # relia's h11 protocol adds a deadline for the request line and headers, which
            # uvicorn lacks (slow clients, relia.api.timeouts).
            http=with_header_timeout(api.header_timeout),
            h11_max_incomplete_event_size=api.max_header_bytes,
            # uvicorn answers 503 once its open connections (the asking one counted) or the
            # requests it is answering reach this: +1 serves api.max_connections connections.
            limit_concurrency=api.max_connections + 1,
            ssl_certfile=str(api.tls_cert) if api.tls_cert is not None else None,
            ssl_keyfile=str(api.tls_key) if api.tls_key is not None else None,
        )
        self.server = uvicorn.Server(cfg)
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [sock]}, name="relia-api", daemon=True
        )

    def start(self, timeout: float = 30.0) -> None:
        self.thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise ConfigError("the HTTP API did not start", where="api")
            time.sleep(0.01)

    def stop(self, timeout: float = 10.0) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout)
        self.sock.close()


def run_up(
    config: ReliaConfig,
    *,
    stop: threading.Event | None = None,
    ready: Callable[[str], None] | None = None,
) -> int:
    """Run relia until SIGINT/SIGTERM or ``stop`` is set; returns the exit code (0).

    ``ready(url)`` is called once the engine has restored its state and the API listens (``url``
    is ``""`` when the API is disabled). Errors a user can cause (a port in use, an unwritable
    data directory) raise :class:`relia.errors.ReliaError`.
    """
    stop = stop if stop is not None else threading.Event()
    store = _open_store(config)
    engine: Engine | None = None
    api: _Api | None = None
    sinks: list[Sink] = []
    dispatcher: Dispatcher | None = None
    dispatch_stop = threading.Event()
    dispatch_thread: threading.Thread | None = None
    retention_stop = threading.Event()
    retention_thread: threading.Thread | None = None
    old_handlers: dict[int, Any] = {}
    ha: HaRuntime | None = None  # HA (relia.ha): on when the store is PostgreSQL
    try:
        index = SeriesIndex(max_series=config.max_series)  # every source's series, capped
        registry = CollectorRegistry()  # relia's own metrics, on /metrics
        from relia.ha.duties import HaRuntime, LeaderDuties, ha_dsn

        dsn = ha_dsn(config.store)
        if dsn is not None:
            ha = HaRuntime(dsn, config.ha, registry)
        else:  # one node: always the leader
            from relia.ha.leader import LeaderMetrics

            LeaderMetrics(registry).leader.set(1)
        slo_evaluator = build_slo_evaluator(config)  # first: a bad spec stops before any source
        sources = build_sources(config, index, registry)
        from relia.ingest.source import IngestSource

        for src in sources:
            if isinstance(src, IngestSource) and src.decoder is not None:
                # Before the engine starts: a replica refused for a WAL another one holds must
                # not relearn and write a final checkpoint of series that one owns.
                src.queue.claim()
        from relia.engine.incidents import IncidentPipeline
        from relia.incidents.model import Severity
        from relia.notify import Dispatcher, build_sinks
        from relia.notify.routing import filtered_counter

        sinks = list(build_sinks(config.notify))
        # Which incidents each sink hears about (relia.notify.routing): enqueued and refreshed.
        min_severity = {s.name: Severity(s.min_severity) for s in config.notify.sinks}
        if sinks:
            n = config.notify
            dispatcher = Dispatcher(
                store,
                sinks,
                registry=registry,
                base_delay=n.base_delay,
                max_delay=n.max_delay,
                breaker_threshold=n.breaker_threshold,
                breaker_cooldown=n.breaker_cooldown,
                max_age=n.max_age,
                # Under HA only the holder of the lease sends, checked before every send.
                fence=ha.elector if ha is not None else None,
                min_severity=min_severity,
            )

        # One for every pipeline (one per leader tenure under HA).
        filtered = filtered_counter(registry, [s.name for s in sinks])

        def make_pipeline() -> IncidentPipeline:
            return IncidentPipeline(
                store,
                config.incidents,
                index.labels,
                sinks={s.name: min_severity[s.name] for s in sinks},
                wake=dispatcher.notify if dispatcher is not None else None,
                filtered=filtered,
            )

        # Under HA the engine only stores findings; the leader correlates what every replica
        # stored (relia.ha.duties).
        incidents = make_pipeline() if ha is None else None
        logs = build_log_pipeline(config, store, index)
        # A replaced actor restores only the series the engine still holds (not one it forgot
        # within the hour the store's seen_at lags it): the engine exists once the executor does.
        engines: list[Engine] = []
        executor = build_executor(
            config.engine,
            config.detector,
            recover=recovery_from_store(
                store,
                sources,
                forget_after_s=config.forget_after,
                held=lambda: engines[0].held_series() if engines else None,
            ),
            registry=registry,
            interval_s=config.interval,
            stop=stop,  # a wedged Ray cluster does not hold up SIGTERM
        )
        engine = Engine(
            store,
            sources,
            executor,
            index=index,
            threshold=config.detector.threshold,
            interval_s=config.interval,
            slo_evaluator=slo_evaluator,
            slo_interval_s=config.slos.interval,
            logs=logs,
            incidents=incidents,
            registry=registry,
            gc_pacing=GcPacing(),
            forget_after_s=config.forget_after,
        )
        engines.append(engine)
        restored = engine.start()
        from relia.engine.retention import HistoryPruner

        # Old history is deleted where notifications are sent: here, or by the HA leader.
        # It also deletes the stored rows of series every replica has forgotten (forget_after).
        pruner = HistoryPruner(
            store,
            config.retention,
            engine.clock,
            registry=registry,
            forget_after_s=config.forget_after,
            may_forget=engine.receipts_written,
        )
        if ha is not None:
            ha.start(
                LeaderDuties(
                    store,
                    make_pipeline,
                    ha.elector,
                    dispatcher=dispatcher,
                    interval_s=config.interval,
                    clock=engine.clock,
                    pruner=pruner,
                )
            )
        else:
            retention_thread = pruner.start(retention_stop)
        if ha is None and dispatcher is not None:
            # After engine.start(): what a crash left un-enqueued is in the outbox by now.
            dispatch_thread = dispatcher.start(dispatch_stop)
            log.info("delivering notifications to %s", ", ".join(s.name for s in sinks))
        log.info(
            "relia up: %d sources, %d log files, %d series restored",
            len(sources),
            len(config.logs.files),
            restored,
        )
        warm_kernels(config, remote_write=any(isinstance(s, IngestSource) for s in sources))
        url = ""
        if config.api.enabled:
            from relia.api.app import create_app
            from relia.api.auth import AuthConfig

            auth = AuthConfig.from_api_config(config.api)
            sock = _bind(config.api.host, config.api.port)
            from relia.api.auth import Role
            from relia.api.slos import slos_router
            from relia.incidents.api import incidents_router

            app = create_app(
                store,
                engine=engine,
                auth=auth,
                routers=[
                    (incidents_router(store, clock=engine.clock), Role.READ),
                    (slos_router(engine), Role.READ),
                ],
                max_body_bytes=config.api.max_body_bytes,
                max_header_bytes=config.api.max_header_bytes,
                body_timeout_s=config.api.body_timeout,
                leader=ha.status if ha is not None else None,
            )
            _mount_ingest(app, sources, engine, auth)
            api = _Api(app, sock, config.api)
            api.start()
            url = _url(sock, tls=config.api.tls)
            if auth is None:
                log.info("API auth is off (loopback only)")
            else:
                log.info("API auth is on: tokens %s", ", ".join(t.name for t in auth.tokens))
            log.info("relia is serving on %s", url)

        if threading.current_thread() is threading.main_thread():

            def _on_signal(signum: int, frame: FrameType | None) -> None:
                if stop.is_set():  # a second signal: stop waiting for a clean shutdown
                    raise KeyboardInterrupt
                log.info("received %s, stopping", signal.Signals(signum).name)
                stop.set()

            for sig in (signal.SIGINT, signal.SIGTERM):
                old_handlers[sig] = signal.signal(sig, _on_signal)

        if ready is not None:
            ready(url)
        engine.run(stop, config.interval)
    finally:
        for signum, handler in old_handlers.items():
            signal.signal(signum, handler)
        retention_stop.set()  # a round under way finishes; joined before the store closes
        if ha is not None:
            # First: the lease is released at once, so another replica takes over now.
            ha.stop()
        if api is not None:
            api.stop()
        try:
            if engine is not None:
                engine.close()
        finally:
            if retention_thread is not None:
                retention_thread.join(timeout=15.0)
            try:
                if dispatcher is not None:
                    dispatch_stop.set()
                    dispatcher.notify()
                    if dispatch_thread is not None:
                        dispatch_thread.join(timeout=15.0)
                for sink in sinks:
                    closer = getattr(sink, "close", None)
                    if callable(closer):
                        closer()
            finally:
                store.close()
        log.info("relia stopped")
    return 0
