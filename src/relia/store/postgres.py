"""The shared state store: a PostgreSQL database, for several relia replicas.

The same :class:`~relia.store.base.Store` protocol and semantics as the embedded DuckDB store
(:mod:`relia.store.duckdb`), chosen with ``store: postgresql://…`` in ``relia.yaml``.

Connections (psycopg 3, sync; no pool library): one writer connection behind a lock (the engine
writes from one thread; the lock also keeps two writes of this process from interleaving), and a
small free list of reader connections that API threads borrow for one read each and hand back.
Every connection runs in autocommit mode: a read is one statement (its own transaction, seeing
committed data only) and a write runs inside one explicit transaction. :meth:`PostgresStore.close`
waits for reads in flight, then closes every connection.

Reconnecting: a connection the server dropped (restart, failover, idle timeout) is noticed on its
next use. A read is then retried once on a fresh connection; so is a write whose transaction
failed before COMMIT was sent (nothing of it can have been applied). A write that lost its
connection during COMMIT is reported as a :class:`~relia.errors.StoreError` (it may or may not have
been applied), and the next call connects afresh.

Writes are set-based: samples travel in one ``COPY … FROM STDIN (FORMAT BINARY)`` built with NumPy
(no per-row Python), then one ``INSERT … ON CONFLICT`` and one trim; the other writes pass whole
columns as arrays to ``unnest``. The per-series sample count is kept in ``sample_counts`` in the
same transaction, so the trim to the newest ``samples_per_series`` reads only the rows that go.

Migrations (``migrations/postgresql/``) are applied each in its own transaction under a
transaction-scoped advisory lock, so replicas opening a fresh database at once apply each one once.

Errors name the store by its DSN without the password, which never appears in a message.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Collection, Mapping
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg.conninfo import conninfo_to_dict
from pydantic import ValidationError

from relia.errors import ConfigError, DataError, StoreError
from relia.incidents.model import Finding, Incident, IncidentStatus
from relia.notify.outbox import OutboxItem, OutboxStatus
from relia.signals import MetricBatch
from relia.store._nul import nul_in_finding
from relia.store.base import (
    FindingKey,
    IncidentKey,
    LogCounts,
    SampleScores,
    ScoredSamples,
    SeriesInfo,
)
from relia.store.duckdb import (
    _CURRENT_VERSION,
    _NEWEST_OF_SINK,
    _NO_SEQ,
    _as_ids,
    _as_int64,
    _as_limit,
    _dump_evidence,
    _dump_payload,
    _finding_filters,
    _finding_from_row,
    _incident_filters,
    _json_default,
    _last_per_key,
    _now_ms,
    _seen_columns,
    _series_rows,
)
from relia.store.migrations import Migration, latest_version, load_migrations

__all__ = ["PostgresStore", "packaged_migrations_dir", "redact_dsn"]

log = logging.getLogger(__name__)

T = TypeVar("T")

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
#: The per-sample detector output columns of the samples table (schema 2).
_BAND = ("score", "expected", "lower", "upper")
# The advisory lock taken while migrating (any constant bigint; "relia" in ASCII).
_MIGRATION_LOCK = 0x72656C6961
# Idle reader connections kept for reuse; more may be open while many threads read at once.
_MAX_IDLE_READERS = 4
# The staging table of append_samples, one per writer connection (temporary tables are).
_STAGE = "relia_stage_samples"
_STAGE_DDL = (
    f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE} (series_id BIGINT, ts BIGINT, "
    "value DOUBLE PRECISION, scored BOOLEAN, score DOUBLE PRECISION, expected DOUBLE PRECISION, "
    "lower DOUBLE PRECISION, upper DOUBLE PRECISION) ON COMMIT DELETE ROWS"
)
# One row of the staging table in PostgreSQL's binary COPY format: a field count, then per field
# its length and big-endian value. Every field is fixed-width and never NULL (NaN stands for a
# missing score and becomes NULL in SQL), so a whole batch is one NumPy structured array.
_COPY_ROW = np.dtype(
    [
        ("nfields", ">i2"),
        ("l_sid", ">i4"),
        ("series_id", ">i8"),
        ("l_ts", ">i4"),
        ("ts", ">i8"),
        ("l_value", ">i4"),
        ("value", ">f8"),
        ("l_scored", ">i4"),
        ("scored", "u1"),
        *(f for c in _BAND for f in ((f"l_{c}", ">i4"), (c, ">f8"))),
    ]
)
# The staging table of mark_series_seen (filled by a binary COPY, as the samples are).
_STAGE_SEEN = "relia_stage_seen"
_STAGE_SEEN_DDL = (
    f"CREATE TEMP TABLE IF NOT EXISTS {_STAGE_SEEN} (id BIGINT, seen_at BIGINT) "
    "ON COMMIT DELETE ROWS"
)
_SEEN_ROW = np.dtype(
    [("nfields", ">i2"), ("l_id", ">i4"), ("id", ">i8"), ("l_seen_at", ">i4"), ("seen_at", ">i8")]
)
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_COPY_TRAILER = b"\xff\xff"

_FINDING_COLUMNS = (
    "id, kind, key, series_id, start_ts, end_ts, score, severity, detector, summary, evidence"
)
_INCIDENT_COLUMNS = (
    "id, status, title, severity, labels, start_ts, end_ts, opened_at, updated_at, resolved_at, "
    "version, finding_ids, finding_count, keys, cause, merged_into"
)
_OUTBOX_COLUMNS = (
    "id, sink, incident_id, version, payload, created_at, attempts, next_attempt_at, "
    "delivered_at, last_error, status"
)


def packaged_migrations_dir() -> Traversable:
    """The packaged PostgreSQL migrations (``relia/store/migrations/postgresql/``)."""
    return resources.files("relia.store.migrations").joinpath("postgresql")


def redact_dsn(dsn: str) -> str:
    """``dsn`` as ``postgresql://user@host:port/dbname``: what errors and logs may show (never
    the password or other options)."""
    try:
        parts = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "postgresql://(an invalid connection string)"
    user = parts.get("user")
    host = parts.get("host") or parts.get("hostaddr") or ""
    port = parts.get("port")
    db = parts.get("dbname") or ""
    auth = f"{user}@" if user else ""
    at = f"{host}:{port}" if port else str(host)
    return f"postgresql://{auth}{at}/{db}"


#: libpq TCP settings for the store's connections (unless the DSN sets them): probe an idle
#: connection after 30 s, every 10 s, give up after 3 lost probes; and fail a send that the
#: server has not acknowledged within 60 s (Linux).
TCP_KEEPALIVE = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    "tcp_user_timeout": 60_000,
}


class PostgresStore:
    """The :class:`~relia.store.base.Store` in a PostgreSQL database.

    ``dsn`` is a libpq connection string (``postgresql://user:pw@host:port/db``; a
    ``host=… dbname=…`` string works here, though ``store:`` in relia.yaml refuses it).
    ``samples_per_series`` bounds the samples kept per series (the newest ones). Opening
    connects, then applies the missing schema migrations; ``migrations_dir`` replaces the
    packaged ones (for tests). ``connect_timeout`` (seconds) applies unless the DSN
    sets one. Thread-safe; usable as a context manager; :meth:`close` is idempotent.
    """

    def __init__(
        self,
        dsn: str,
        samples_per_series: int = 2000,
        *,
        migrations_dir: str | Path | Traversable | None = None,
        connect_timeout: float = 10.0,
    ) -> None:
        if (
            isinstance(samples_per_series, bool)
            or not isinstance(samples_per_series, int | np.integer)
            or samples_per_series < 1
        ):
            raise ConfigError(
                f"samples_per_series must be an integer >= 1, got {samples_per_series!r}",
                where="store",
            )
        if not isinstance(dsn, str) or not dsn:
            raise ConfigError("the PostgreSQL store needs a connection string", where="store")
        self._samples_per_series = int(samples_per_series)
        self._dsn = dsn
        self._display = redact_dsn(dsn)
        try:
            parts = conninfo_to_dict(dsn)
        except psycopg.Error:
            # Its message may quote the string, password included: say what, not the text.
            raise StoreError(
                "not a valid PostgreSQL connection string", where=self._display
            ) from None
        self._password = str(parts.get("password") or "")
        self._connect_kwargs: dict[str, Any] = {"autocommit": True}
        if "connect_timeout" not in parts:
            self._connect_kwargs["connect_timeout"] = max(1, round(connect_timeout))
        if "application_name" not in parts:
            self._connect_kwargs["application_name"] = "relia"
        # A server that vanished without closing the connection (a failover, a network cut)
        # would otherwise hold a read or write for the kernel's defaults (hours idle, ~15 minutes
        # of retransmits); with these, about a minute. The DSN's own settings win.
        for key, value in TCP_KEEPALIVE.items():
            if key not in parts:
                self._connect_kwargs[key] = value
        self._write_lock = threading.Lock()
        # Guards the idle readers and counts the reads in flight, so close() can wait for them
        # instead of closing a connection under a running query.
        self._readers = threading.Condition(threading.Lock())
        self._idle: list[psycopg.Connection[Any]] = []
        self._n_reading = 0
        self._closed = False
        self._writer: psycopg.Connection[Any] | None = None
        # Set once the schema is known: from then on each write checks that no newer relia
        # migrated the store under this one (an HA rolling upgrade), see _write.
        self._known_version: int | None = None
        self._outdated: StoreError | None = None
        migrations = load_migrations(
            packaged_migrations_dir() if migrations_dir is None else migrations_dir
        )
        try:
            self._version = self._migrate(migrations)
            self._has_band = self._samples_have_band()
            self._has_seen = self._series_have_seen_at()
            self._has_seq = self._findings_have_stored_seq()
            self._known_version = latest_version(migrations)
        except BaseException:
            self._drop_writer()
            self._closed = True
            raise

    # -- properties -------------------------------------------------------------------------

    @property
    def dsn(self) -> str:
        """The connection string without the password (as errors name the store)."""
        return self._display

    @property
    def samples_per_series(self) -> int:
        """How many of the newest samples are kept per series."""
        return self._samples_per_series

    @property
    def schema_version(self) -> int:
        """The migration the schema is at."""
        return self._version

    @property
    def outdated(self) -> str | None:
        """Why this store writes nothing more (a newer relia migrated it while it was open),
        or None."""
        return None if self._outdated is None else str(self._outdated)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    # -- series -----------------------------------------------------------------------------

    def upsert_series(
        self, series: list[tuple[int, str, dict[str, str]]], seen_at: int | None = None
    ) -> None:
        """Register series (id, metric name, labels); a known id keeps its name and labels.
        Every series named is seen at ``seen_at`` (ms UTC; default: the wall clock now): a new
        one gets it, a known one's ``seen_at`` is raised to it, never lowered."""
        ids, names, labels = _series_rows(series)
        seen = _now_ms() if seen_at is None else _as_int64(seen_at, "seen_at")
        if not ids:
            return
        if self._has_seen:
            # The conflicting rows are updated only where that raises seen_at (no dead row
            # versions for a registration that changes nothing).
            sql = (
                "INSERT INTO series AS o (id, name, labels, created_at, seen_at) "
                "SELECT id, name, labels::jsonb, now(), %s "
                "FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS u(id, name, labels) "
                "ORDER BY id ON CONFLICT (id) DO UPDATE SET seen_at = excluded.seen_at "
                "WHERE o.seen_at < excluded.seen_at"
            )
            params: list[Any] = [seen, ids, names, labels]
        else:  # a custom migration set without schema 10
            sql = (
                "INSERT INTO series (id, name, labels, created_at) "
                "SELECT id, name, labels::jsonb, now() "
                "FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS u(id, name, labels) "
                "ORDER BY id ON CONFLICT (id) DO NOTHING"
            )
            params = [ids, names, labels]
        self._write("registering series", lambda c: c.execute(sql, params))

    def mark_series_seen(self, seen: Mapping[int, int]) -> None:
        """Raise the ``seen_at`` of each series id to the given ms UTC (never lower it), in one
        transaction; unknown ids are ignored. The ids travel in one binary ``COPY`` (as samples
        do); the rows to raise are locked in id order first, so replicas marking the same
        series never deadlock. A no-op on a schema without ``seen_at``."""
        ids, ms = _seen_columns(seen)
        if not len(ids) or not self._has_seen:
            return
        rows = np.zeros(len(ids), dtype=_SEEN_ROW)
        rows["nfields"] = 2
        rows["l_id"] = 8
        rows["l_seen_at"] = 8
        rows["id"], rows["seen_at"] = ids, ms
        payload = _COPY_HEADER + rows.tobytes() + _COPY_TRAILER

        def write(c: psycopg.Connection[Any]) -> None:
            with (
                c.cursor() as cur,
                cur.copy(f"COPY {_STAGE_SEEN} FROM STDIN (FORMAT BINARY)") as cp,
            ):
                cp.write(payload)
            c.execute(f"ANALYZE {_STAGE_SEEN}")
            c.execute(
                f"SELECT s.id FROM series AS s JOIN {_STAGE_SEEN} AS t ON t.id = s.id "
                "WHERE s.seen_at < t.seen_at ORDER BY s.id FOR UPDATE OF s"
            )
            c.execute(
                f"UPDATE series AS s SET seen_at = t.seen_at FROM {_STAGE_SEEN} AS t "
                "WHERE t.id = s.id AND s.seen_at < t.seen_at"
            )

        self._write("marking series seen", write)

    def forget_series(self, before: int) -> int:
        """Delete, in one transaction, every series whose ``seen_at`` is before ``before`` with
        its samples, sample count and checkpoint; returns how many went. The series are found by a
        scan of ``series`` (``seen_at`` has no index: see migration 0010) and locked in id
        order. Nothing is forgotten on a schema without ``seen_at``."""
        cut = _as_int64(before, "before")
        if not self._has_seen:
            return 0

        def forget(c: psycopg.Connection[Any]) -> int:
            row = c.execute(
                """
                WITH gone AS MATERIALIZED (
                    DELETE FROM series WHERE id IN (
                        SELECT id FROM series WHERE seen_at < %s ORDER BY id FOR UPDATE
                    ) RETURNING id
                ), s AS (
                    DELETE FROM samples WHERE series_id IN (SELECT id FROM gone)
                ), n AS (
                    DELETE FROM sample_counts WHERE series_id IN (SELECT id FROM gone)
                ), k AS (
                    DELETE FROM checkpoints WHERE series_id IN (SELECT id FROM gone)
                )
                SELECT count(*) FROM gone
                """,
                [cut],
            ).fetchone()
            return int(row[0]) if row else 0

        return self._write("forgetting series", forget)

    def list_series(self) -> list[SeriesInfo]:
        """Every known series with its sample range and count, ordered by name then labels."""
        out = self._series_infos("", [])
        # Sorted here, as the DuckDB store does: "by labels" means by sorted (name, value) pairs.
        out.sort(key=lambda s: (s.name, tuple(sorted(s.labels.items())), s.series_id))
        return out

    def series_info(self, series_id: int) -> SeriesInfo | None:
        """One series as :meth:`list_series` describes it, or None (index probes only)."""
        found = self._series_infos("WHERE s.id = %s", [_as_int64(series_id, "series_id")])
        return found[0] if found else None

    def _series_infos(self, where: str, params: list[int]) -> list[SeriesInfo]:
        """The series rows that pass ``where`` with their sample range and count."""
        # first/last come from the primary key's ends (min/max become index probes), the count
        # from sample_counts: no scan of the samples themselves.
        seen = "s.seen_at" if self._has_seen else "NULL::bigint"
        sql = f"""
                SELECT s.id, s.name, s.labels, m.first_ts, m.last_ts, coalesce(n.n, 0),
                    {seen}
                FROM series AS s
                LEFT JOIN sample_counts AS n ON n.series_id = s.id
                LEFT JOIN LATERAL (
                    SELECT min(ts) AS first_ts, max(ts) AS last_ts
                    FROM samples WHERE series_id = s.id
                ) AS m ON true
                {where}
                """
        rows = self._read("listing series", lambda c: c.execute(sql, params).fetchall())
        return [
            SeriesInfo(
                series_id=int(sid),
                name=str(name),
                labels={str(k): str(v) for k, v in lab.items()},
                first_ts=None if first is None else int(first),
                last_ts=None if last is None else int(last),
                n_samples=int(n),
                seen_at=None if seen is None else int(seen),
            )
            for sid, name, lab, first, last, n, seen in rows
        ]

    # -- samples ----------------------------------------------------------------------------

    def append_samples(self, batch: MetricBatch, scores: SampleScores | None = None) -> None:
        """Add samples; keeps only the newest ``samples_per_series`` per series.

        A sample with the same (series, ts) as a stored one replaces it; within the batch the
        last one written wins. The whole batch is one transaction. ``scores`` is matched to the
        samples by (series, ts) and stored beside them (NaN as NULL); a sample it lacks gets
        none, except that a replaced sample keeps what it had.
        """
        if not isinstance(batch, MetricBatch):
            raise DataError(f"append_samples expects a MetricBatch, got {type(batch).__name__}")
        if len(batch) == 0:
            return
        sid, ts, value = _last_per_key(batch.series_id, batch.ts, batch.value)
        rows = np.zeros(len(sid), dtype=_COPY_ROW)
        rows["nfields"] = 8
        for c in ("l_sid", "l_ts", "l_value", *(f"l_{b}" for b in _BAND)):
            rows[c] = 8
        rows["l_scored"] = 1
        rows["series_id"], rows["ts"], rows["value"] = sid, ts, value
        for c in _BAND:
            rows[c] = np.nan
        if scores is not None and self._has_band:
            at, band = _match_scores(sid, ts, scores)
            rows["scored"][at] = 1
            for c, a in zip(_BAND, band, strict=True):
                rows[c][at] = a
        payload = _COPY_HEADER + rows.tobytes() + _COPY_TRAILER
        keep = self._samples_per_series
        cols = "series_id, ts, value"
        if self._has_band:
            # Two inserts in one statement: scored rows replace the band, the others keep the one
            # the replaced row had. RETURNING (xmax = 0) tells an insert from a replacement, so
            # the per-series counts grow by exactly the rows that are new.
            band_cols = ", ".join(_BAND)
            band_vals = ", ".join(f"nullif({c}, 'NaN')" for c in _BAND)
            band_set = ", ".join(f"{c} = excluded.{c}" for c in _BAND)
            upsert = f"""
                WITH a AS (
                    INSERT INTO samples AS o ({cols}, {band_cols})
                    SELECT {cols}, {band_vals} FROM {_STAGE} WHERE scored ORDER BY series_id, ts
                    ON CONFLICT (series_id, ts)
                    DO UPDATE SET value = excluded.value, {band_set}
                    RETURNING o.series_id, (o.xmax = 0) AS inserted
                ), b AS (
                    INSERT INTO samples AS o ({cols})
                    SELECT {cols} FROM {_STAGE} WHERE NOT scored ORDER BY series_id, ts
                    ON CONFLICT (series_id, ts) DO UPDATE SET value = excluded.value
                    RETURNING o.series_id, (o.xmax = 0) AS inserted
                ), added AS (
                    SELECT series_id, count(*) AS k
                    FROM (SELECT * FROM a UNION ALL SELECT * FROM b) AS u
                    WHERE inserted GROUP BY series_id
                )
                """
        else:
            upsert = f"""
                WITH a AS (
                    INSERT INTO samples AS o ({cols})
                    SELECT {cols} FROM {_STAGE} ORDER BY series_id, ts
                    ON CONFLICT (series_id, ts) DO UPDATE SET value = excluded.value
                    RETURNING o.series_id, (o.xmax = 0) AS inserted
                ), added AS (
                    SELECT series_id, count(*) AS k FROM a WHERE inserted GROUP BY series_id
                )
                """
        # Ordered by series so that replicas writing the same series lock rows in one order.
        upsert += (
            "INSERT INTO sample_counts (series_id, n) SELECT series_id, k FROM added "
            "ORDER BY series_id ON CONFLICT (series_id) DO UPDATE SET n = sample_counts.n + "
            "excluded.n"
        )
        # The trim reads, per series over its bound, only its `extra` oldest index entries (the
        # last of them is the cutoff): a steady stream of one new sample per series costs one
        # index probe per series, however many samples each keeps.
        trim = f"""
            WITH over AS MATERIALIZED (
                SELECT series_id, n - {keep} AS extra FROM sample_counts
                WHERE series_id = ANY(%s::bigint[]) AND n > {keep}
            ), cut AS MATERIALIZED (
                SELECT o.series_id, x.ts AS cutoff FROM over AS o
                CROSS JOIN LATERAL (
                    SELECT s.ts FROM samples AS s WHERE s.series_id = o.series_id
                    ORDER BY s.ts OFFSET o.extra - 1 LIMIT 1
                ) AS x
            ), gone AS (
                DELETE FROM samples AS s USING cut
                WHERE s.series_id = cut.series_id AND s.ts <= cut.cutoff
                RETURNING s.series_id
            )
            UPDATE sample_counts AS c SET n = c.n - g.k
            FROM (SELECT series_id, count(*) AS k FROM gone GROUP BY series_id) AS g
            WHERE c.series_id = g.series_id
        """
        touched = np.unique(sid).tolist()

        def write(c: psycopg.Connection[Any]) -> None:
            with c.cursor() as cur, cur.copy(f"COPY {_STAGE} FROM STDIN (FORMAT BINARY)") as cp:
                cp.write(payload)
            c.execute(upsert)
            # The cut points have no statistics: without this the planner may join them to the
            # samples by a hash join that reads every stored sample, instead of probing the
            # primary key once per series (SET LOCAL: for the rest of this transaction only).
            c.execute("SET LOCAL enable_hashjoin = off")
            c.execute("SET LOCAL enable_mergejoin = off")
            c.execute(trim, [touched])

        self._write("appending samples", write)

    def samples(
        self,
        series_id: int,
        since: int | None = None,
        until: int | None = None,
        limit: int | None = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """(ts, value) of one series in time order, ``since <= ts <= until``; ``limit`` keeps
        the newest."""
        got = self._select_samples(series_id, since, until, limit, "ts, value", 2)
        return got[0].astype(np.int64), np.ascontiguousarray(got[1])

    def scored_samples(
        self,
        series_id: int,
        since: int | None = None,
        until: int | None = None,
        limit: int | None = None,
    ) -> ScoredSamples:
        """Like :meth:`samples`, with each sample's score, expected value and band (NaN where
        there is none)."""
        if not self._has_band:
            ts, value = self.samples(series_id, since, until, limit)
            nan = np.full(len(ts), np.nan)
            return ScoredSamples(ts, value, nan, nan.copy(), nan.copy(), nan.copy())
        cols = "ts, value, " + ", ".join(f"coalesce({c}, 'NaN')" for c in _BAND)
        got = self._select_samples(series_id, since, until, limit, cols, 2 + len(_BAND))
        return ScoredSamples(got[0].astype(np.int64), *(np.ascontiguousarray(a) for a in got[1:]))

    def learned_samples(self, since: Mapping[int, int]) -> MetricBatch:
        """The samples stored with a score of each series in ``since``, from its time there on,
        in one query (a join with the series' start times), sorted by series then time."""
        if not since or not self._has_band:
            return MetricBatch.empty()
        ids = [_as_int64(k, "series_id") for k in since]
        starts = [_as_int64(v, "since") for v in since.values()]
        sql = (
            "SELECT s.series_id, s.ts, coalesce(s.value, 'NaN') FROM samples AS s "
            "JOIN unnest(%s::bigint[], %s::bigint[]) AS r(series_id, since) "
            "ON s.series_id = r.series_id AND s.ts >= r.since "
            "WHERE s.score IS NOT NULL AND s.score <> 'NaN' ORDER BY 1, 2"
        )
        rows = self._read(
            "reading the samples to relearn", lambda c: c.execute(sql, [ids, starts]).fetchall()
        )
        if not rows:
            return MetricBatch.empty()
        sid, ts, value = zip(*rows, strict=True)
        return MetricBatch(
            np.fromiter(sid, np.int64, len(rows)),
            np.fromiter(ts, np.int64, len(rows)),
            np.array(value, dtype=np.float64),
        )

    def _select_samples(
        self,
        series_id: int,
        since: int | None,
        until: int | None,
        limit: int | None,
        cols: str,
        n_cols: int,
    ) -> list[npt.NDArray[Any]]:
        params: list[int] = [
            _as_int64(series_id, "series_id"),
            _INT64_MIN if since is None else _as_int64(since, "since"),
            _INT64_MAX if until is None else _as_int64(until, "until"),
        ]
        sql = f"SELECT {cols} FROM samples WHERE series_id = %s AND ts >= %s AND ts <= %s"
        if limit is None:
            sql += " ORDER BY ts"
        else:
            # The newest `limit`, then back to time order.
            sql = f"SELECT * FROM ({sql} ORDER BY ts DESC LIMIT %s) AS t ORDER BY 1"
            params.append(_as_limit(limit))
        rows = self._read("reading samples", lambda c: c.execute(sql, params).fetchall())
        if not rows:
            return [np.empty(0, np.int64)] + [np.empty(0, np.float64) for _ in range(n_cols - 1)]
        ts = np.fromiter((r[0] for r in rows), np.int64, len(rows))
        rest = np.array([r[1:] for r in rows], dtype=np.float64).reshape(len(rows), n_cols - 1)
        return [ts] + [rest[:, i] for i in range(n_cols - 1)]

    # -- checkpoints ------------------------------------------------------------------------

    def save_checkpoints(self, checkpoints: dict[int, bytes]) -> None:
        """Store detector checkpoints by series id (replacing older ones), in one transaction."""
        ids: list[int] = []
        blobs: list[bytes] = []
        for key, blob in checkpoints.items():
            ids.append(_as_int64(key, "series_id", "checkpoints"))
            if not isinstance(blob, bytes | bytearray | memoryview):
                raise DataError(
                    f"checkpoint of series {key} must be bytes, got {type(blob).__name__}",
                    where="checkpoints",
                )
            blobs.append(bytes(blob))
        if not ids:
            return
        self._write(
            "saving checkpoints",
            lambda c: c.execute(
                "INSERT INTO checkpoints (series_id, blob, updated_at) "
                "SELECT series_id, blob, now() "
                "FROM unnest(%s::bigint[], %s::bytea[]) AS u(series_id, blob) ORDER BY series_id "
                "ON CONFLICT (series_id) DO UPDATE "
                "SET blob = excluded.blob, updated_at = excluded.updated_at",
                [ids, blobs],
            ),
        )

    def load_checkpoints(self) -> dict[int, bytes]:
        """Every stored detector checkpoint by series id."""
        rows = self._read(
            "loading checkpoints",
            lambda c: c.execute("SELECT series_id, blob FROM checkpoints").fetchall(),
        )
        return {int(sid): bytes(blob) for sid, blob in rows}

    # -- findings ---------------------------------------------------------------------------

    def add_findings(self, findings: list[Finding]) -> int:
        """Persist findings; one with a known id replaces it (a window grew). Returns how many
        were new."""
        by_id: dict[str, Finding] = {}
        for i, f in enumerate(findings):
            if not isinstance(f, Finding):
                raise DataError(
                    f"expected a Finding, got {type(f).__name__}", where=f"findings[{i}]"
                )
            nul = nul_in_finding(f)
            if nul is not None:  # text and jsonb cannot hold it: refused, as DuckDB does
                raise DataError(
                    f"{nul} holds a NUL character, which the store cannot keep",
                    where=f"findings[{i}]",
                )
            by_id[f.id] = f  # the last one given for an id wins
        if not by_id:
            return 0
        rows = list(by_id.values())
        params = [
            [f.id for f in rows],
            [f.kind.value for f in rows],
            [f.key for f in rows],
            [
                None if f.series_id is None else _as_int64(f.series_id, "series_id", f.id)
                for f in rows
            ],
            [_as_int64(f.start, "start", f.id) for f in rows],
            [_as_int64(f.end, "end", f.id) for f in rows],
            [float(f.score) for f in rows],
            [f.severity.value for f in rows],
            [f.detector for f in rows],
            [f.summary for f in rows],
            [_dump_evidence(f) for f in rows],
        ]
        updates = ", ".join(
            f"{c} = excluded.{c}" for c in _FINDING_COLUMNS.split(", ")[1:] + ["updated_at"]
        )
        unnest = (
            "unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::bigint[], "
            "%s::bigint[], %s::float8[], %s::text[], %s::text[], %s::text[], %s::text[])"
        )
        if self._has_seq:
            # Numbered in store order (findings_after) by a counter row that stays locked
            # until this transaction commits: replicas writing at once commit in number order,
            # so a reader past a number never misses one committed later.
            sql = (
                f"WITH up AS (INSERT INTO findings AS o ({_FINDING_COLUMNS}, created_at, "
                f"updated_at, stored_seq) SELECT {_FINDING_COLUMNS}, now(), now(), "
                f"%s + row_number() OVER (ORDER BY id) FROM {unnest} AS u({_FINDING_COLUMNS}) "
                f"ORDER BY id ON CONFLICT (id) DO UPDATE SET {updates}, "
                "stored_seq = excluded.stored_seq RETURNING (o.xmax = 0) AS inserted) "
                "SELECT count(*) FILTER (WHERE inserted) FROM up"
            )
        else:  # a custom migration set without schema 11
            sql = (
                f"WITH up AS (INSERT INTO findings AS o ({_FINDING_COLUMNS}, created_at, "
                f"updated_at) SELECT {_FINDING_COLUMNS}, now(), now() FROM {unnest} "
                f"AS u({_FINDING_COLUMNS}) ORDER BY id "
                f"ON CONFLICT (id) DO UPDATE SET {updates} RETURNING (o.xmax = 0) AS inserted) "
                "SELECT count(*) FILTER (WHERE inserted) FROM up"
            )

        def write(c: psycopg.Connection[Any]) -> int:
            args: list[Any] = params
            if self._has_seq:
                got = c.execute(
                    "UPDATE findings_seq SET last = last + %s RETURNING last", [len(rows)]
                ).fetchone()
                assert got is not None  # the migration put the one row there
                args = [int(got[0]) - len(rows), *params]
            row = c.execute(sql, args).fetchone()
            return int(row[0]) if row else 0

        return self._write("saving findings", write)

    def findings(
        self,
        since: int | None = None,
        series_id: int | None = None,
        limit: int = 1000,
        *,
        until: int | None = None,
        before: FindingKey | None = None,
    ) -> list[Finding]:
        """Findings whose end is at or after ``since`` and whose start is at or before
        ``until``, newest (by end, then start, then id) first; ``before``: only those after the
        finding with that (end, start, id) in this order."""
        where, params = _finding_filters(since, series_id, until, before, "%s")
        sql = f"SELECT {_FINDING_COLUMNS} FROM findings"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY end_ts DESC, start_ts DESC, id LIMIT %s"
        params.append(_as_limit(limit))
        rows = self._read("reading findings", lambda c: c.execute(sql, params).fetchall())
        return [self._finding(row) for row in rows]

    def findings_by_ids(self, ids: Collection[str]) -> list[Finding]:
        """The stored findings among ``ids``, newest (by end, then start) first."""
        wanted = _as_ids(ids)
        if not wanted:
            return []
        sql = (
            f"SELECT {_FINDING_COLUMNS} FROM findings WHERE id = ANY(%s) "
            "ORDER BY end_ts DESC, start_ts DESC, id"
        )
        rows = self._read("reading findings", lambda c: c.execute(sql, [wanted]).fetchall())
        return [self._finding(row) for row in rows]

    def findings_without_incident(self, since: int, limit: int = 1000) -> list[Finding]:
        """Findings ending at or after ``since`` that no stored incident lists, newest (by end,
        then start) first (the same anti-join as :meth:`prune_history`)."""
        sql = (
            "WITH kept AS (SELECT DISTINCT jsonb_array_elements_text(finding_ids) AS id "
            f"FROM incidents) SELECT {_FINDING_COLUMNS} FROM findings WHERE end_ts >= %s "
            "AND NOT EXISTS (SELECT 1 FROM kept WHERE kept.id = findings.id) "
            "ORDER BY end_ts DESC, start_ts DESC, id LIMIT %s"
        )
        params = [_as_int64(since, "since"), _as_limit(limit)]
        rows = self._read("reading findings", lambda c: c.execute(sql, params).fetchall())
        return [self._finding(row) for row in rows]

    def findings_after(self, seq: int, limit: int = 1000) -> list[tuple[int, Finding]]:
        """(store order number, finding) of the findings stored (new or replaced) after number
        ``seq``, in store order, at most ``limit``."""
        if not self._has_seq:
            raise StoreError(_NO_SEQ, where=self._display)
        sql = (
            f"SELECT stored_seq, {_FINDING_COLUMNS} FROM findings WHERE stored_seq > %s "
            "ORDER BY stored_seq LIMIT %s"
        )
        params = [_as_int64(seq, "seq"), _as_limit(limit)]
        rows = self._read("reading findings", lambda c: c.execute(sql, params).fetchall())
        return [(int(row[0]), self._finding(row[1:])) for row in rows]

    def findings_seq(self) -> int:
        """The store order number of the last finding stored (0: none yet)."""
        if not self._has_seq:
            raise StoreError(_NO_SEQ, where=self._display)
        row = self._read(
            "reading findings", lambda c: c.execute("SELECT last FROM findings_seq").fetchone()
        )
        return int(row[0]) if row else 0

    def _finding(self, row: tuple[Any, ...]) -> Finding:
        return _finding_from_row(row, self._display)

    # -- log files --------------------------------------------------------------------------

    def commit_log_progress(self, states: dict[str, bytes], counts: LogCounts) -> None:
        """In one transaction: add ``counts`` to the stored ones and replace the state blobs in
        ``states``; then only the newest ``samples_per_series`` windows of each file are kept."""
        n = len(counts)
        if not states and n == 0:
            return
        for name, blob in states.items():
            if not isinstance(name, str) or not isinstance(blob, bytes | bytearray):
                raise DataError(f"log state of {name!r} must be bytes under a str name")
        files = list(counts.file)  # a bad name (None) is refused by the database, as in DuckDB
        windows = np.asarray(counts.window_start, np.int64).tolist()
        templates = np.asarray(counts.template_id, np.int64).tolist()
        added = np.asarray(counts.count, np.int64).tolist()
        touched = list(dict.fromkeys(files))
        names = list(states)
        blobs = [bytes(b) for b in states.values()]

        def write(c: psycopg.Connection[Any]) -> None:
            if n:
                # Summed first: ON CONFLICT cannot update one row twice in a statement.
                c.execute(
                    "INSERT INTO log_counts (file, window_start, template_id, count) "
                    "SELECT file, window_start, template_id, sum(count)::bigint "
                    "FROM unnest(%s::text[], %s::bigint[], %s::bigint[], %s::bigint[]) "
                    "AS u(file, window_start, template_id, count) "
                    "GROUP BY file, window_start, template_id "
                    "ORDER BY file, window_start, template_id "
                    "ON CONFLICT (file, window_start, template_id) "
                    "DO UPDATE SET count = log_counts.count + excluded.count",
                    [files, windows, templates, added],
                )
                c.execute(
                    "DELETE FROM log_counts AS l USING ("
                    "SELECT f.file, (SELECT min(w.window_start) FROM ("
                    "SELECT DISTINCT window_start FROM log_counts WHERE file = f.file "
                    "ORDER BY window_start DESC LIMIT %s) AS w) AS oldest "
                    "FROM unnest(%s::text[]) AS f(file)) AS k "
                    "WHERE l.file = k.file AND l.window_start < k.oldest",
                    [self._samples_per_series, touched],
                )
            if states:
                c.execute(
                    "INSERT INTO log_state (file, state, updated_at) SELECT file, state, now() "
                    "FROM unnest(%s::text[], %s::bytea[]) AS u(file, state) ORDER BY file "
                    "ON CONFLICT (file) DO UPDATE SET state = excluded.state, "
                    "updated_at = excluded.updated_at",
                    [names, blobs],
                )

        self._write("saving log progress", write)

    def load_log_states(self) -> dict[str, bytes]:
        """Every stored log file state blob by file name."""
        rows = self._read(
            "reading log states",
            lambda c: c.execute("SELECT file, state FROM log_state ORDER BY file").fetchall(),
        )
        return {str(f): bytes(b) for f, b in rows}

    def log_counts(self, file: str | None = None, since: int | None = None) -> LogCounts:
        """Stored counts, ordered by file, window and template."""
        where: list[str] = []
        params: list[object] = []
        if file is not None:
            where.append("file = %s")
            params.append(str(file))
        if since is not None:
            where.append("window_start >= %s")
            params.append(_as_int64(since, "since"))
        sql = "SELECT file, window_start, template_id, count FROM log_counts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY file, window_start, template_id"
        rows = self._read("reading log counts", lambda c: c.execute(sql, params).fetchall())
        if not rows:
            return LogCounts.empty()
        ints = np.array([r[1:] for r in rows], dtype=np.int64)
        return LogCounts(
            [str(r[0]) for r in rows],
            np.ascontiguousarray(ints[:, 0]),
            np.ascontiguousarray(ints[:, 1]),
            np.ascontiguousarray(ints[:, 2]),
        )

    # -- incidents --------------------------------------------------------------------------

    def save_incidents(self, incidents: list[Incident]) -> None:
        """Store incidents, replacing those with a known id (the last given for an id wins),
        in one transaction."""
        by_id: dict[str, Incident] = {}
        for i, inc in enumerate(incidents):
            if not isinstance(inc, Incident):
                raise DataError(
                    f"expected an Incident, got {type(inc).__name__}", where=f"incidents[{i}]"
                )
            by_id[inc.id] = inc
        if not by_id:
            return
        rows = list(by_id.values())

        def ints(values: list[int | None], what: str) -> list[int | None]:
            return [None if v is None else _as_int64(v, what, "incidents") for v in values]

        def texts(values: list[Any]) -> list[str]:
            return [json.dumps(v, default=_json_default) for v in values]

        params = [
            [r.id for r in rows],
            [r.status.value for r in rows],
            [r.title for r in rows],
            [r.severity.value for r in rows],
            texts([r.labels for r in rows]),
            ints([r.start for r in rows], "start"),
            ints([r.end for r in rows], "end"),
            ints([r.opened_at for r in rows], "opened_at"),
            ints([r.updated_at for r in rows], "updated_at"),
            ints([r.resolved_at for r in rows], "resolved_at"),
            ints([r.version for r in rows], "version"),
            texts([r.finding_ids for r in rows]),
            ints([r.finding_count for r in rows], "finding_count"),
            texts([r.keys for r in rows]),
            texts([r.cause for r in rows]),
            [r.merged_into for r in rows],
        ]
        names = _INCIDENT_COLUMNS.split(", ")
        updates = ", ".join(f"{c} = excluded.{c}" for c in names[1:])
        select = ", ".join(
            f"{c}::jsonb" if c in ("labels", "finding_ids", "keys") else c for c in names
        )
        types = (
            "text text text text text bigint bigint bigint bigint bigint bigint text bigint "
            "text text text"
        ).split()
        arrays = ", ".join(f"%s::{t}[]" for t in types)
        sql = (
            f"INSERT INTO incidents ({_INCIDENT_COLUMNS}) SELECT {select} "
            f"FROM unnest({arrays}) AS u({_INCIDENT_COLUMNS}) ORDER BY id "
            f"ON CONFLICT (id) DO UPDATE SET {updates}"
        )
        self._write("saving incidents", lambda c: c.execute(sql, params))

    def incidents(
        self,
        since: int | None = None,
        status: IncidentStatus | None = None,
        limit: int = 1000,
        *,
        before: IncidentKey | None = None,
    ) -> list[Incident]:
        """Incidents updated at or after ``since`` (with ``status``), newest ``updated_at``
        first, then by id; ``before``: only those after the incident with that (updated_at, id)
        in this order."""
        where, params = _incident_filters(since, status, before, "%s")
        sql = f"SELECT {_INCIDENT_COLUMNS} FROM incidents"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY updated_at DESC, id LIMIT %s"
        params.append(_as_limit(limit))
        rows = self._read("reading incidents", lambda c: c.execute(sql, params).fetchall())
        return [self._incident(row) for row in rows]

    def incident(self, incident_id: str) -> Incident | None:
        """One incident by id, or None."""
        rows = self._read(
            "reading an incident",
            lambda c: c.execute(
                f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE id = %s", [str(incident_id)]
            ).fetchall(),
        )
        return self._incident(rows[0]) if rows else None

    def incident_listing(self, finding_id: str) -> Incident | None:
        """The incident whose ``finding_ids`` lists ``finding_id`` (the most recently updated,
        then by id, should several), or None: JSONB containment, which the GIN index
        ``incidents_by_finding`` (migration 12) answers without reading every incident. The
        matches are taken first (MATERIALIZED), then ordered: with ``ORDER BY ... LIMIT 1``
        alone the planner may walk ``incidents_updated`` and test every row instead."""
        sql = (
            "WITH listing AS MATERIALIZED (SELECT * FROM incidents "
            "WHERE finding_ids @> %s::jsonb) "
            f"SELECT {_INCIDENT_COLUMNS} FROM listing ORDER BY updated_at DESC, id LIMIT 1"
        )
        wanted = json.dumps([str(finding_id)])
        rows = self._read("reading an incident", lambda c: c.execute(sql, [wanted]).fetchall())
        return self._incident(rows[0]) if rows else None

    def _incident(self, row: tuple[Any, ...]) -> Incident:
        d = dict(zip(_INCIDENT_COLUMNS.split(", "), row, strict=True))
        iid = d["id"]
        try:
            d["cause"] = json.loads(d["cause"])  # JSON text; the others arrive decoded (JSONB)
            d["start"], d["end"] = d.pop("start_ts"), d.pop("end_ts")
            return Incident.model_validate(d)
        except (ValueError, ValidationError) as e:
            first = str(e).splitlines()[0]
            raise StoreError(
                f"incident {iid!r} cannot be read: {first}", where=self._display
            ) from e

    # -- notification outbox ----------------------------------------------------------------

    def enqueue_notifications(self, items: list[OutboxItem]) -> int:
        """Insert outbox items in one transaction, ignoring any whose id (the dedup key) is
        already stored (or repeats in ``items``: the first wins); returns how many were new."""
        by_id: dict[str, OutboxItem] = {}
        for i, item in enumerate(items):
            if not isinstance(item, OutboxItem):
                raise DataError(
                    f"expected an OutboxItem, got {type(item).__name__}", where=f"items[{i}]"
                )
            by_id.setdefault(item.id, item)
        if not by_id:
            return 0
        rows = list(by_id.values())
        params = [
            [r.id for r in rows],
            [r.sink for r in rows],
            [r.incident_id for r in rows],
            [r.version for r in rows],
            [_dump_payload(r) for r in rows],
            [r.created_at for r in rows],
            [r.attempts for r in rows],
            [r.next_attempt_at for r in rows],
            [r.delivered_at for r in rows],
            [r.last_error for r in rows],
            [r.status.value for r in rows],
        ]
        # Counted by what the insert returns: another replica enqueueing the same key at the
        # same time makes one of the two inserts a no-op, never a double.
        sql = (
            f"WITH new AS (INSERT INTO outbox ({_OUTBOX_COLUMNS}) SELECT {_OUTBOX_COLUMNS} "
            "FROM unnest(%s::text[], %s::text[], %s::text[], %s::bigint[], %s::text[], "
            "%s::bigint[], %s::int[], %s::bigint[], %s::bigint[], %s::text[], %s::text[]) "
            f"AS u({_OUTBOX_COLUMNS}) ORDER BY id ON CONFLICT (id) DO NOTHING RETURNING id) "
            "SELECT count(*) FROM new"
        )

        def write(c: psycopg.Connection[Any]) -> int:
            row = c.execute(sql, params).fetchone()
            return int(row[0]) if row else 0

        return self._write("enqueueing notifications", write)

    def due_notifications(self, sink: str, now: int, limit: int) -> list[OutboxItem]:
        """Pending items of ``sink`` with ``next_attempt_at <= now``, oldest (created, version)
        first, at most ``limit``; an item waits while an older version of the same incident to
        the same sink is still pending."""
        sql = (
            f"SELECT {_OUTBOX_COLUMNS} FROM outbox AS o "
            "WHERE o.sink = %s AND o.status = 'pending' AND o.next_attempt_at <= %s "
            "AND NOT EXISTS (SELECT 1 FROM outbox AS p WHERE p.sink = o.sink "
            "AND p.incident_id = o.incident_id AND p.status = 'pending' AND p.version < o.version) "
            "ORDER BY o.created_at, o.version, o.id LIMIT %s"
        )
        params = [str(sink), _as_int64(now, "now"), _as_limit(limit)]
        rows = self._read("reading the outbox", lambda c: c.execute(sql, params).fetchall())
        return [self._outbox_item(row) for row in rows]

    def mark_delivered(self, ids: list[str], now: int) -> None:
        """Mark pending items delivered at ``now`` (counting the attempt), in one transaction."""
        if not ids:
            return
        params = [_as_int64(now, "now"), [str(i) for i in ids]]
        self._write(
            "marking notifications delivered",
            lambda c: c.execute(
                "UPDATE outbox SET status = 'delivered', delivered_at = %s, "
                "attempts = attempts + 1 WHERE status = 'pending' AND id = ANY(%s::text[])",
                params,
            ),
        )

    def mark_attempt_failed(
        self,
        item_id: str,
        attempts: int,
        next_attempt_at: int,
        error: str,
        *,
        give_up: bool = False,
    ) -> None:
        """Record a failed attempt (attempt count, next try, error); with ``give_up`` the item
        becomes failed and is never retried."""
        params = [
            _as_int64(attempts, "attempts"),
            _as_int64(next_attempt_at, "next_attempt_at"),
            str(error),
            "failed" if give_up else "pending",
            str(item_id),
        ]
        self._write(
            "recording a failed delivery",
            lambda c: c.execute(
                "UPDATE outbox SET attempts = %s, next_attempt_at = %s, last_error = %s, "
                "status = %s WHERE id = %s AND status = 'pending'",
                params,
            ),
        )

    def outbox_counts(self) -> dict[str, dict[str, int]]:
        """Per sink, how many items are pending, delivered and failed (all three keys)."""
        rows = self._read(
            "counting the outbox",
            lambda c: c.execute(
                "SELECT sink, status, count(*) FROM outbox GROUP BY sink, status"
            ).fetchall(),
        )
        out: dict[str, dict[str, int]] = {}
        for sink, status, n in rows:
            counts = out.setdefault(str(sink), {s.value: 0 for s in OutboxStatus})
            counts[str(status)] = int(n)
        return out

    def notified_incidents(
        self, sinks: Collection[str], incident_ids: Collection[str]
    ) -> set[tuple[str, str]]:
        """The (sink, incident id) pairs, among ``sinks`` and ``incident_ids``, with at least one
        outbox item (any status)."""
        names, ids = sorted({str(s) for s in sinks}), sorted({str(i) for i in incident_ids})
        if not names or not ids:
            return set()
        rows = self._read(
            "reading the outbox",
            lambda c: c.execute(
                "SELECT DISTINCT sink, incident_id FROM outbox "
                "WHERE sink = ANY(%s) AND incident_id = ANY(%s)",
                [names, ids],
            ).fetchall(),
        )
        return {(str(s), str(i)) for s, i in rows}

    # -- history retention -----------------------------------------------------------------

    def prune_history(self, before: int) -> dict[str, int]:
        """Delete finished history older than ``before``, in one transaction: resolved incidents
        resolved before it; delivered or failed outbox items finished before it (a failed item
        finished when it was given up, its ``next_attempt_at``), but for the item of a remaining
        incident's current version and each sink's newest item of a remaining incident; then
        findings ending before it that no remaining incident lists. Counts deleted per kind.

        Each delete reads an index (migration 0007, ``findings_end``, the incidents' primary key);
        the findings still listed by an incident are one hashed set (an anti-join), not a lookup
        per row."""
        cut = _as_int64(before, "before")

        def prune(c: psycopg.Connection[Any]) -> dict[str, int]:
            incidents = c.execute(
                "DELETE FROM incidents WHERE status = 'resolved' AND resolved_at < %s", [cut]
            ).rowcount
            outbox = c.execute(
                "DELETE FROM outbox AS o WHERE o.status <> 'pending' "
                "AND coalesce(o.delivered_at, o.next_attempt_at) < %s "
                f"AND NOT EXISTS ({_CURRENT_VERSION}) AND NOT EXISTS ({_NEWEST_OF_SINK})",
                [cut],
            ).rowcount
            findings = c.execute(
                "WITH kept AS (SELECT DISTINCT jsonb_array_elements_text(finding_ids) AS id "
                "FROM incidents) "
                "DELETE FROM findings AS f WHERE f.end_ts < %s "
                "AND NOT EXISTS (SELECT 1 FROM kept WHERE kept.id = f.id)",
                [cut],
            ).rowcount
            return {
                "outbox": max(outbox, 0),
                "incidents": max(incidents, 0),
                "findings": max(findings, 0),
            }

        return self._write("pruning history", prune)

    def _outbox_item(self, row: tuple[Any, ...]) -> OutboxItem:
        iid, sink, incident, version, payload, created, attempts, nxt, done, error, status = row
        try:
            return OutboxItem(
                id=iid,
                sink=sink,
                incident_id=incident,
                version=version,
                payload=json.loads(payload),
                created_at=created,
                attempts=attempts,
                next_attempt_at=nxt,
                delivered_at=done,
                last_error=error,
                status=OutboxStatus(status),
            )
        except (ValueError, ValidationError) as e:
            first = str(e).splitlines()[0]
            raise StoreError(
                f"outbox item {iid!r} cannot be read: {first}", where=self._display
            ) from e

    # -- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Close the store (idempotent): waits for reads in flight, then closes every
        connection."""
        with self._write_lock, self._readers:
            if self._closed:
                return
            self._closed = True  # no new reads start from here on
            self._readers.wait_for(lambda: self._n_reading == 0)
            idle, self._idle = self._idle, []
            for conn in idle:
                conn.close()
            self._drop_writer()

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"schema {self._version}"
        return f"PostgresStore({self._display!r}, {state})"

    # -- internals --------------------------------------------------------------------------

    def _error(self, what: str, e: BaseException) -> StoreError:
        return StoreError(f"{what} failed: {self._first_line(e)}", where=self._display)

    def _first_line(self, e: BaseException) -> str:
        text = str(e).strip()
        line = text.splitlines()[0].strip() if text else type(e).__name__
        if self._password:  # libpq does not echo it; make sure nothing else does either
            line = line.replace(self._password, "***")
        return line

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            return psycopg.connect(self._dsn, **self._connect_kwargs)
        except psycopg.Error as e:
            msg = self._first_line(e).removeprefix("connection failed: ")
            raise StoreError(f"cannot connect to the store: {msg}", where=self._display) from e

    def _drop_writer(self) -> None:
        conn, self._writer = self._writer, None
        if conn is not None:
            conn.close()

    def _write(self, what: str, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run ``fn`` in one transaction on the writer connection (connecting if needed); once
        more on a fresh connection if the server dropped the old one before COMMIT.

        Each transaction first checks the schema: once a newer relia migrated the store past
        what this one knows, this one writes nothing more (one error logged; each write then
        raises it), as it may no longer write what the newer schema needs."""
        with self._write_lock:
            self._check_open()
            if self._outdated is not None:
                raise self._outdated
            for attempt in range(2):
                if self._writer is None or self._writer.closed:
                    conn = self._connect()
                    try:
                        conn.execute(_STAGE_DDL)  # temporary: one per connection
                        conn.execute(_STAGE_SEEN_DDL)
                    except psycopg.Error as e:
                        conn.close()
                        raise self._error(what, e) from e
                    self._writer = conn
                conn = self._writer
                committing = False
                try:
                    with conn.transaction():
                        self._check_schema(conn)
                        out = fn(conn)
                        committing = True  # COMMIT is sent as the block ends
                    return out
                except psycopg.Error as e:
                    if conn.broken or conn.closed:
                        self._drop_writer()
                        if attempt == 0 and not committing:
                            continue  # nothing of it was applied: safe to run again
                    raise self._error(what, e) from e
            raise AssertionError("unreachable")  # pragma: no cover

    def _check_schema(self, conn: psycopg.Connection[Any]) -> None:
        """Refuse the write in progress if the schema moved past what this relia knows, in the
        write's own transaction. The shared lock makes a migration (which takes it exclusively)
        wait for the writes in flight, and a write waiting for a migration sees its version,
        read by a second statement, whose snapshot is taken after the lock was granted."""
        if self._known_version is None:  # still migrating
            return
        conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", [_MIGRATION_LOCK])
        row = conn.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
        current = int(row[0]) if row else 0
        if current <= self._known_version:
            return
        self._outdated = StoreError(
            f"the store was migrated by a newer relia (schema {current} > "
            f"{self._known_version}) while this one ran: it writes nothing more; stop it and "
            "upgrade it (docs/ha.md, Upgrading)",
            where=self._display,
        )
        log.error("%s", self._outdated)
        raise self._outdated

    def _read(self, what: str, fn: Callable[[psycopg.Connection[Any]], T]) -> T:
        """Run ``fn`` (one statement) on a borrowed reader connection; once more on a fresh one
        if the server dropped it."""
        with self._readers:
            self._check_open()
            self._n_reading += 1
        try:
            for attempt in range(2):
                conn = self._borrow()
                try:
                    out = fn(conn)
                except psycopg.Error as e:
                    if not (conn.broken or conn.closed):
                        self._give_back(conn)  # the statement failed; the connection is fine
                        raise self._error(what, e) from e
                    conn.close()
                    # The server went away: every idle connection is as dead as this one.
                    self._discard_idle()
                    if attempt == 0:
                        continue
                    raise self._error(what, e) from e
                except BaseException:
                    conn.close()
                    raise
                self._give_back(conn)
                return out
            raise AssertionError("unreachable")  # pragma: no cover
        finally:
            with self._readers:
                self._n_reading -= 1
                self._readers.notify_all()

    def _borrow(self) -> psycopg.Connection[Any]:
        with self._readers:
            if self._idle:
                return self._idle.pop()
        return self._connect()  # outside the lock: connecting takes a while

    def _give_back(self, conn: psycopg.Connection[Any]) -> None:
        with self._readers:
            if not self._closed and not conn.closed and len(self._idle) < _MAX_IDLE_READERS:
                self._idle.append(conn)
                return
        conn.close()

    def _discard_idle(self) -> None:
        with self._readers:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the store is closed", where=self._display)

    def _migrate(self, migrations: list[Migration]) -> int:
        known = latest_version(migrations)

        def step(c: psycopg.Connection[Any]) -> tuple[int, bool]:
            # Taken first in every step: replicas opening a fresh database at once queue here,
            # and each finds the version the one before it reached.
            c.execute("SELECT pg_advisory_xact_lock(%s)", [_MIGRATION_LOCK])
            c.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                "name TEXT NOT NULL, applied_at TIMESTAMPTZ NOT NULL)"
            )
            row = c.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchone()
            current = int(row[0]) if row else 0
            if current > known:
                raise StoreError(
                    f"the store was written by a newer relia (schema {current} > {known}); "
                    "upgrade relia or use another database",
                    where=self._display,
                )
            if current == known:
                return current, False
            m = migrations[current]  # versions are 1..N, so version v sits at index v - 1
            try:
                c.execute(m.sql)  # no parameters: one text, several statements
            except psycopg.Error as e:
                raise StoreError(
                    f"migration {m.version:04d}_{m.name} failed: {self._first_line(e)}",
                    where=self._display,
                ) from e
            c.execute("INSERT INTO schema_migrations VALUES (%s, %s, now())", [m.version, m.name])
            return m.version, True

        while True:
            version, applied = self._write("migrating the schema", step)
            if not applied:
                return version

    def _findings_have_stored_seq(self) -> bool:
        # By column, as seen_at: a custom migrations_dir may stop before schema 11.
        rows = self._read(
            "reading the schema of findings",
            lambda c: c.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'findings' AND table_schema = current_schema()"
            ).fetchall(),
        )
        return "stored_seq" in {str(r[0]) for r in rows}

    def _series_have_seen_at(self) -> bool:
        # By column, as the band: a custom migrations_dir may stop before schema 10.
        rows = self._read(
            "reading the schema of series",
            lambda c: c.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'series' AND table_schema = current_schema()"
            ).fetchall(),
        )
        return "seen_at" in {str(r[0]) for r in rows}

    def _samples_have_band(self) -> bool:
        # By column, not by version: a custom migrations_dir may number its versions otherwise.
        rows = self._read(
            "reading the schema of samples",
            lambda c: c.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'samples' AND table_schema = current_schema()"
            ).fetchall(),
        )
        return set(_BAND) <= {str(r[0]) for r in rows}


def _match_scores(
    sid: npt.NDArray[np.int64], ts: npt.NDArray[np.int64], scores: SampleScores
) -> tuple[npt.NDArray[np.int64], list[npt.NDArray[np.float64]]]:
    """Where in the (sorted, unique) samples ``scores`` has a row, and its band there (the last
    row given per (series, ts)); rows of ``scores`` without a sample are ignored."""
    try:
        s_sid = np.asarray(scores.series_id, dtype=np.int64)
        s_ts = np.asarray(scores.ts, dtype=np.int64)
        band = [np.asarray(getattr(scores, c), dtype=np.float64) for c in _BAND]
    except (AttributeError, TypeError, ValueError) as e:
        raise DataError(f"append_samples: scores must have series_id, ts and {_BAND}: {e}") from e
    if any(a.ndim != 1 or len(a) != len(s_sid) for a in (s_ts, *band)):
        raise DataError("append_samples: the arrays of scores differ in length or shape")
    s_sid, s_ts, *band = _last_per_key(s_sid, s_ts, *band)
    # Both key sets are unique: sorted together, a sample and its score end up side by side.
    n = len(sid)
    all_sid = np.concatenate([sid, s_sid])
    all_ts = np.concatenate([ts, s_ts])
    src = np.concatenate([np.zeros(n, np.int8), np.ones(len(s_sid), np.int8)])
    order = np.lexsort((src, all_ts, all_sid))
    a, b = order[:-1], order[1:]
    pair = (all_sid[a] == all_sid[b]) & (all_ts[a] == all_ts[b]) & (src[a] == 0) & (src[b] == 1)
    at = a[pair]
    from_scores = b[pair] - n
    return at.astype(np.int64), [np.asarray(x, np.float64)[from_scores] for x in band]
