"""The embedded state store: one DuckDB file (``<data_dir>/relia.duckdb``), no server.

Writes are set-based: a batch of samples is handed to DuckDB as an Arrow table and merged with a
few SQL statements (insert, or replace where the batch goes back in time; trim to the newest
``samples_per_series`` per series), never row by row from Python. A series is trimmed only once
it outgrew its bound (up to an eighth past ``samples_per_series``, at a point that differs per
series); the store counts samples per series in memory to know which. Where the cut falls is
remembered as the rows arrive (:mod:`relia.store._marks`), so a trim is a delete of the rows older
than a ts, pruned to the oldest row groups, instead of a read of every row of the series: at
10,000 series × 2,250 samples that took a trim of 1,111 series from 1.1 s to 0.06 s.

Threads: the engine writes from its thread while the HTTP API reads from others. A DuckDB
connection must not be used by two threads at once, so writes go through a writer connection
behind a lock (which also keeps two writers from conflicting), and every read gets its own
short-lived cursor (a connection to the same database), so reads run alongside a write and see
only committed data. Incidents and the outbox have a second writer and lock of their own: they
share no table with the engine's writes, and a slow incident save must not delay a finding.
:meth:`DuckDBStore.close` waits for reads in flight.

Each sample can carry what the detector said about it (score, expected value, band: schema 2);
stores whose schema lacks those columns (an older custom migration set) keep samples only.

Samples of series that are not registered with :meth:`DuckDBStore.upsert_series` are kept, but
only registered series are listed. Lowering ``samples_per_series`` takes effect for a series at its
next append.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import duckdb
import numpy as np
import numpy.typing as npt
import pyarrow as pa
from pydantic import ValidationError

from relia.errors import ConfigError, DataError, StoreError
from relia.incidents.model import Finding, FindingKind, Incident, IncidentStatus, Severity
from relia.notify.outbox import OutboxItem, OutboxStatus
from relia.signals import MetricBatch, is_sorted_by_series, series_key, series_runs
from relia.store._marks import TrimMarks
from relia.store._nul import nul_in_finding, nul_in_series
from relia.store.base import (
    FindingKey,
    IncidentKey,
    LogCounts,
    SampleScores,
    ScoredSamples,
    SeriesInfo,
)
from relia.store.migrations import Migration, latest_version, load_migrations

__all__ = ["STORE_FILE", "DuckDBStore", "open_store"]

#: The file name of the store inside a data directory.
STORE_FILE = "relia.duckdb"

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1
# The name an incoming Arrow table is registered under on a writer connection. Only the writers
# register, each under its lock, on connections of their own, so one fixed name is enough.
_BATCH = "relia_incoming"
# The scores arriving with a batch (registered beside it) and the merged rows of both.
_SCORES = "relia_incoming_scores"
_MERGED = "relia_merged"
# The series an append trims (registered beside the batch).
_TRIM = "relia_trim"
#: The per-sample detector output columns of the samples table (schema 2).
_BAND = ("score", "expected", "lower", "upper")

_FINDING_COLUMNS = (
    "id, kind, key, series_id, start_ts, end_ts, score, severity, detector, summary, evidence"
)
#: Why findings_after cannot answer on a custom migration set that stops before schema 11.
_NO_SEQ = "the store order of findings is missing (the store's migration 0011 was not applied)"
_INCIDENT_COLUMNS = (
    "id, status, title, severity, labels, start_ts, end_ts, opened_at, updated_at, resolved_at, "
    "version, finding_ids, finding_count, keys, cause, merged_into"
)


class DuckDBStore:
    """The :class:`~relia.store.base.Store` in a DuckDB file (or ``":memory:"`` for tests).

    ``samples_per_series`` bounds the samples kept per series (the newest ones). Opening applies
    the missing schema migrations; ``migrations_dir`` replaces the packaged ones (for tests).
    Usable as a context manager; :meth:`close` is idempotent.
    """

    def __init__(
        self,
        path: str | Path,
        samples_per_series: int = 2000,
        *,
        migrations_dir: str | Path | None = None,
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
        self._samples_per_series = int(samples_per_series)
        self._path = str(path)
        self._write_lock = threading.Lock()
        # Incidents and the outbox have a writer of their own: their rounds (an incident thread,
        # a dispatcher) then never hold up the engine's path from a sample to its stored finding.
        # The two writers touch disjoint tables, so DuckDB never sees their transactions conflict.
        self._side_lock = threading.Lock()
        # Guards handing out read cursors and counts the reads in flight, so close() can wait
        # for them instead of closing a connection under a running query.
        self._readers = threading.Condition(threading.Lock())
        self._n_reading = 0
        self._closed = False
        migrations = load_migrations(migrations_dir)
        self._root = _connect(self._path)
        try:
            # The root connection only hands out cursors; the writer is a cursor of its own, so
            # readers can take cursors while a write is running.
            self._writer = self._root.cursor()
            self._side_writer = self._root.cursor()
            self._version = self._migrate(migrations)
            # By column, not by version: a custom migrations_dir may number its versions
            # otherwise, or stop before schema 10.
            self._has_band = set(_BAND) <= self._columns("samples")
            self._has_seen = "seen_at" in self._columns("series")
            self._has_seq = "stored_seq" in self._columns("findings")  # schema 11
            # Stored samples per series, kept in memory so an append trims only the series that
            # outgrew their bound (see append_samples). One aggregate at open; the writer is the
            # only one who changes the table (the file is locked to this process).
            try:
                has_samples = self._writer.execute(
                    "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'samples'"
                ).fetchone()
                got = (
                    self._writer.execute(
                        "SELECT series_id, count(*), max(ts) FROM samples GROUP BY series_id"
                    ).fetchall()
                    if has_samples and has_samples[0]
                    else []
                )
            except duckdb.Error as e:
                # The first full read of the file: a copy cut short fails here, not at open.
                raise StoreError(
                    f"cannot read the store: {_first_line(e)} (the file looks damaged: restore "
                    "a backup or move it away)",
                    where=self._path,
                ) from e
            self._counts: dict[int, int] = {int(a): int(b) for a, b, _ in got}
            # The newest stored ts of each series: a sample newer than it replaces nothing.
            self._newest: dict[int, int] = {int(a): int(c) for a, _, c in got}
            # Where to cut each series when it is trimmed, learned from the appends that follow.
            self._marks = TrimMarks(self._samples_per_series)
        except BaseException:
            self._root.close()
            self._closed = True
            raise

    # -- properties -------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The database file (or ``":memory:"``)."""
        return self._path

    @property
    def samples_per_series(self) -> int:
        """How many of the newest samples are kept per series."""
        return self._samples_per_series

    @property
    def schema_version(self) -> int:
        """The migration the schema is at."""
        return self._version

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
        table = pa.table(
            {
                "id": pa.array(ids, pa.int64()),
                "name": pa.array(names, pa.string()),
                "labels": pa.array(labels, pa.string()),
            }
        )
        with self._transaction("registering series") as w, _registered(w, table):
            if not self._has_seen:  # a custom migration set without schema 10
                w.execute(
                    f"INSERT INTO series (id, name, labels, created_at) "
                    f"SELECT id, name, labels, ? FROM {_BATCH} ON CONFLICT (id) DO NOTHING",
                    [_utc_now()],
                )
                return
            w.execute(
                f"INSERT INTO series (id, name, labels, created_at, seen_at) "
                f"SELECT id, name, labels, ?, ? FROM {_BATCH} ON CONFLICT (id) DO UPDATE "
                "SET seen_at = greatest(series.seen_at, excluded.seen_at)",
                [_utc_now(), seen],
            )

    def mark_series_seen(self, seen: Mapping[int, int]) -> None:
        """Raise the ``seen_at`` of each series id to the given ms UTC (never lower it), in one
        transaction; unknown ids are ignored. One join of the ids (an Arrow table) against
        ``series``. A no-op on a schema without ``seen_at`` (a custom migration set)."""
        ids, ms = _seen_columns(seen)
        if not len(ids) or not self._has_seen:
            return
        table = pa.table({"id": ids, "seen_at": ms})
        with self._transaction("marking series seen") as w, _registered(w, table):
            w.execute(
                f"UPDATE series SET seen_at = b.seen_at FROM {_BATCH} AS b "
                "WHERE series.id = b.id AND (series.seen_at IS NULL OR series.seen_at < b.seen_at)"
            )

    def forget_series(self, before: int) -> int:
        """Delete, in one transaction, every series whose ``seen_at`` is before ``before`` with
        its samples and checkpoint; returns how many went. The in-memory count, newest ts and
        trim marks of each go too, so an id registered again is a new series. Nothing is
        forgotten on a schema without ``seen_at`` (a custom migration set)."""
        cut = _as_int64(before, "before")
        if not self._has_seen:
            return 0
        with self._transaction("forgetting series") as w:
            gone = np.asarray(
                w.execute("DELETE FROM series WHERE seen_at < ? RETURNING id", [cut]).fetchnumpy()[
                    "id"
                ],
                dtype=np.int64,
            )
            if len(gone):
                with _registered(w, pa.table({"id": gone})):
                    w.execute(f"DELETE FROM samples WHERE series_id IN (SELECT id FROM {_BATCH})")
                    w.execute(
                        f"DELETE FROM checkpoints WHERE series_id IN (SELECT id FROM {_BATCH})"
                    )
        # Once committed, as append_samples does: an id registered again starts with no rows,
        # no newest ts (its first append is forward) and no trim marks.
        for k in gone.tolist():
            self._counts.pop(k, None)
            self._newest.pop(k, None)
        self._marks.forget(gone)
        return len(gone)

    def list_series(self) -> list[SeriesInfo]:
        """Every known series with its sample range and count, ordered by name then labels."""
        out = self._series_infos(
            """
            LEFT JOIN (
                SELECT series_id, min(ts) AS first_ts, max(ts) AS last_ts, count(*) AS n
                FROM samples GROUP BY series_id
            ) AS a ON a.series_id = s.id
            """,
            [],
        )
        # Sorted here rather than in SQL: "by labels" means by the sorted (name, value) pairs,
        # which JSON text order does not match ('{"a":"1"}' sorts after '{"a":"1","b":"2"}').
        out.sort(key=lambda s: (s.name, tuple(sorted(s.labels.items())), s.series_id))
        return out

    def series_info(self, series_id: int) -> SeriesInfo | None:
        """One series as :meth:`list_series` describes it, or None: its row and the aggregate
        over its own samples (the API's samples route asks this on every request)."""
        sid = _as_int64(series_id, "series_id")
        found = self._series_infos(
            """
            LEFT JOIN (
                SELECT series_id, min(ts) AS first_ts, max(ts) AS last_ts, count(*) AS n
                FROM samples WHERE series_id = ? GROUP BY series_id
            ) AS a ON a.series_id = s.id
            WHERE s.id = ?
            """,
            [sid, sid],
        )
        return found[0] if found else None

    def _series_infos(self, join: str, params: list[int]) -> list[SeriesInfo]:
        """Series rows joined (``join``: its ``a`` gives first_ts, last_ts and n) as SeriesInfo."""
        seen = "s.seen_at" if self._has_seen else "NULL"
        with self._reader("listing series") as cur:
            rows = cur.execute(
                f"""
                SELECT s.id, s.name, s.labels::VARCHAR, a.first_ts, a.last_ts, coalesce(a.n, 0),
                    {seen}
                FROM series AS s {join}
                """,
                params,
            ).fetchall()
        return [
            SeriesInfo(
                series_id=int(sid),
                name=str(name),
                labels=json.loads(lab),
                first_ts=None if first is None else int(first),
                last_ts=None if last is None else int(last),
                n_samples=int(n),
                seen_at=None if seen is None else int(seen),
            )
            for sid, name, lab, first, last, n, seen in rows
        ]

    # -- samples ----------------------------------------------------------------------------

    def append_samples(self, batch: MetricBatch, scores: SampleScores | None = None) -> None:
        """Add samples; keeps the newest ``samples_per_series`` per series, and at most an
        eighth more: a series is trimmed back once it outgrows its bound (:func:`_trim_at`).
        A series over ``samples_per_series`` that gets back-filled rows is trimmed exactly at
        once, as PostgreSQL trims: a late sample older than those already trimmed never stays.

        A sample with the same (series, ts) as a stored one replaces it; within the batch the
        last one written wins. The whole batch is one transaction.

        ``scores`` (the engine's ``ScoredPoints``) is matched to the samples by (series, ts) and
        stored beside them: score, expected value and band (NaN is stored as NULL). A sample it
        lacks gets none, except that a replaced sample keeps what it had: a source repeating a
        sample the detector already scored (and now skips) must not erase its band.
        """
        if not isinstance(batch, MetricBatch):
            raise DataError(f"append_samples expects a MetricBatch, got {type(batch).__name__}")
        n = len(batch)
        if n == 0:
            return
        sid, ts, value = _last_per_key(batch.series_id, batch.ts, batch.value)
        table = pa.table({"series_id": sid, "ts": ts, "value": value})
        scored = _scores_table(scores) if scores is not None and self._has_band else None
        keep = self._samples_per_series
        ids, first, n_rows = series_runs(sid)  # sid is sorted
        newest = np.fromiter(
            (self._newest.get(k, _INT64_MIN) for k in ids.tolist()), np.int64, len(ids)
        )
        # A stream moves forward: when every sample is newer than what its series has stored,
        # nothing is replaced, and the joins against the whole samples table (most of an
        # append's cost once millions of rows are stored) are skipped.
        forward = ts[first] > newest  # ts is sorted within a series
        appends_only = bool(forward.all())
        rows = self._marks.rows(ids)
        try:
            with self._transaction("appending samples") as w, _registered(w, table):
                if appends_only:
                    self._insert_new(w, scored)
                    replaced = np.empty(0, np.int64)
                else:
                    replaced = self._replace_rows(w, scored)
                counts = self._counts_after(ids, n_rows, replaced)
                # The trim may cut inside this batch, so its marks go in before the commit...
                self._marks.appended(rows, forward, first, n_rows, ts)
                over = np.fromiter(
                    (c > _trim_at(k, keep) for k, c in counts.items()), np.bool_, len(counts)
                )
                if not appends_only:
                    over |= _backfilled_over(ts, first, n_rows, newest, ids, replaced, counts, keep)
                if over.any():
                    self._trim(w, ids[over], rows[over], counts)
        except BaseException:
            self._marks.reset(rows)  # ...and are forgotten when it rolls back
            raise
        self._counts.update(counts)  # only once the transaction committed
        last = first + n_rows - 1  # the last row of each series: its newest ts
        self._newest.update(zip(ids.tolist(), np.maximum(ts[last], newest).tolist(), strict=True))

    def _trim(
        self,
        w: duckdb.DuckDBPyConnection,
        ids: npt.NDArray[np.int64],
        rows: npt.NDArray[np.int64],
        counts: dict[int, int],
    ) -> None:
        """Trim series ``ids`` (which outgrew their bound) back to ``samples_per_series``, and
        set their entries of ``counts`` to what is left. Where the trim marks know the cut
        (:mod:`relia.store._marks`) it is a delete of the rows older than a ts, which DuckDB
        prunes to the oldest row groups; elsewhere the cut is found by reading the series."""
        keep = self._samples_per_series
        have = np.fromiter((counts[k] for k in ids.tolist()), np.int64, len(ids))
        known, cutoff, after = self._marks.cuts(rows, have)
        if known.any():
            cut = pa.table({"series_id": ids[known], "cutoff": cutoff[known]})
            with _registered(w, cut, _TRIM):
                # The constant bound lets DuckDB skip the row groups newer than every cut.
                w.execute(
                    f"DELETE FROM samples USING {_TRIM} AS t "
                    "WHERE samples.series_id = t.series_id AND samples.ts < t.cutoff "
                    f"AND samples.ts < {int(cutoff[known].max())}"
                )
        if not known.all():
            # max(ts, k) gives the k largest ts of a series (a bounded heap, no full sort), so
            # its last element is the newest ts that no longer fits; it and everything older
            # go. ts is unique per series, so exactly `keep` rows remain.
            exact = pa.table({"series_id": ids[~known]})
            with _registered(w, exact, _TRIM):
                w.execute(
                    f"""
                    DELETE FROM samples USING (
                        SELECT series_id, list_last(max(ts, {keep + 1})) AS cutoff
                        FROM samples
                        WHERE series_id IN (SELECT series_id FROM {_TRIM})
                        GROUP BY series_id
                        HAVING count(*) > {keep}
                    ) AS cut
                    WHERE samples.series_id = cut.series_id AND samples.ts <= cut.cutoff
                    """
                )
        counts.update(zip(ids.tolist(), after.tolist(), strict=True))

    def _insert_new(self, w: duckdb.DuckDBPyConnection, scored: pa.Table | None) -> None:
        """Insert the registered batch, none of whose (series, ts) is stored, with this batch's
        band where it has one."""
        if scored is None:
            w.execute(
                f"INSERT INTO samples (series_id, ts, value) "
                f"SELECT series_id, ts, value FROM {_BATCH}"
            )
            return
        cols = "series_id, ts, value, " + ", ".join(_BAND)
        band = ", ".join(f"s.{c}" for c in _BAND)
        with _registered(w, scored, _SCORES):
            w.execute(
                f"INSERT INTO samples ({cols}) "
                f"SELECT b.series_id, b.ts, b.value, {band} FROM {_BATCH} AS b "
                f"LEFT JOIN {_SCORES} AS s ON s.series_id = b.series_id AND s.ts = b.ts"
            )

    def _replace_rows(
        self, w: duckdb.DuckDBPyConnection, scored: pa.Table | None
    ) -> npt.NDArray[np.int64]:
        """Insert the registered batch where stored rows of the same (series, ts) may exist: they
        are replaced (keeping their band where this batch has no scores for them). Returns the
        series id of each replaced row."""
        if self._has_band:
            # The new rows with their band, decided before the rows they replace are deleted:
            # this batch's scores where given, else what the replaced row had.
            if scored is None:
                band = ", ".join(f"o.{c}" for c in _BAND)
                src = f"{_BATCH} AS b"
            else:
                band = ", ".join(
                    f"CASE WHEN s.series_id IS NULL THEN o.{c} ELSE s.{c} END AS {c}" for c in _BAND
                )
                src = (
                    f"{_BATCH} AS b LEFT JOIN {_SCORES} AS s "
                    "ON s.series_id = b.series_id AND s.ts = b.ts"
                )
            with _registered(w, scored, _SCORES) if scored is not None else nullcontext():
                w.execute(
                    f"CREATE OR REPLACE TEMP TABLE {_MERGED} AS "
                    f"SELECT b.series_id, b.ts, b.value, {band} FROM {src} "
                    "LEFT JOIN samples AS o ON o.series_id = b.series_id AND o.ts = b.ts"
                )
        replaced = w.execute(
            f"DELETE FROM samples USING {_BATCH} AS b "
            "WHERE samples.series_id = b.series_id AND samples.ts = b.ts "
            "RETURNING samples.series_id"
        ).fetchnumpy()["series_id"]
        if self._has_band:
            cols = "series_id, ts, value, " + ", ".join(_BAND)
            w.execute(f"INSERT INTO samples ({cols}) SELECT {cols} FROM {_MERGED}")
            w.execute(f"DROP TABLE {_MERGED}")
        else:
            self._insert_new(w, None)  # the stored rows of these keys are gone
        return np.asarray(replaced, dtype=np.int64)

    def _counts_after(
        self,
        ids: npt.NDArray[np.int64],
        n_new: npt.NDArray[np.int64],
        replaced: npt.NDArray[np.int64],
    ) -> dict[int, int]:
        """The stored samples of each series ``ids`` once its ``n_new`` added rows are in and the
        ``replaced`` ones (stored rows the new ones took the place of) are gone."""
        n_new = n_new.copy()
        if len(replaced):
            # Every replaced row has the series of a new row, so its id is among `ids`.
            rid, n_rep = np.unique(replaced, return_counts=True)
            n_new[np.searchsorted(ids, rid)] -= n_rep
        old = self._counts
        return {k: old.get(k, 0) + d for k, d in zip(ids.tolist(), n_new.tolist(), strict=True)}

    def samples(
        self,
        series_id: int,
        since: int | None = None,
        until: int | None = None,
        limit: int | None = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        """(ts, value) of one series in time order, ``since <= ts <= until``; ``limit`` keeps
        the newest."""
        params = [
            _as_int64(series_id, "series_id"),
            _INT64_MIN if since is None else _as_int64(since, "since"),
            _INT64_MAX if until is None else _as_int64(until, "until"),
        ]
        sql = "SELECT ts, value FROM samples WHERE series_id = ? AND ts >= ? AND ts <= ?"
        if limit is None:
            sql += " ORDER BY ts"
        else:
            sql += f" ORDER BY ts DESC LIMIT {_as_limit(limit)}"
        with self._reader("reading samples") as cur:
            cols = cur.execute(sql, params).fetchnumpy()
        ts = np.asarray(cols["ts"], dtype=np.int64)
        value = np.asarray(cols["value"], dtype=np.float64)
        if limit is not None:
            ts, value = ts[::-1], value[::-1]
        return np.ascontiguousarray(ts), np.ascontiguousarray(value)

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
        params = [
            _as_int64(series_id, "series_id"),
            _INT64_MIN if since is None else _as_int64(since, "since"),
            _INT64_MAX if until is None else _as_int64(until, "until"),
        ]
        cols = "ts, value, " + ", ".join(_BAND)
        sql = f"SELECT {cols} FROM samples WHERE series_id = ? AND ts >= ? AND ts <= ?"
        if limit is None:
            sql += " ORDER BY ts"
        else:
            sql += f" ORDER BY ts DESC LIMIT {_as_limit(limit)}"
        with self._reader("reading samples") as cur:
            got = cur.execute(sql, params).fetchnumpy()
        step = 1 if limit is None else -1  # newest first from the query: back to time order
        out: dict[str, Any] = {}
        for c in ("ts", "value", *_BAND):
            # NULL comes back masked: NaN is what the rest of relia reads as "none".
            col = got[c]
            dtype = np.int64 if c == "ts" else np.float64
            arr = np.ma.filled(col.astype(dtype), np.nan) if np.ma.isMaskedArray(col) else col
            out[c] = np.ascontiguousarray(np.asarray(arr, dtype=dtype)[::step])
        return ScoredSamples(**out)

    def learned_samples(self, since: Mapping[int, int]) -> MetricBatch:
        """The samples stored with a score of each series in ``since``, from its time there on,
        in one query (a join with the series' start times), sorted by series then time."""
        if not since or not self._has_band:
            return MetricBatch.empty()
        starts = pa.table(
            {
                "series_id": pa.array([_as_int64(k, "series_id") for k in since], pa.int64()),
                "since": pa.array([_as_int64(v, "since") for v in since.values()], pa.int64()),
            }
        )
        sql = (
            "SELECT s.series_id, s.ts, s.value FROM samples AS s "
            "JOIN relia_learned_since AS r ON s.series_id = r.series_id AND s.ts >= r.since "
            "WHERE s.score IS NOT NULL AND NOT isnan(s.score) ORDER BY s.series_id, s.ts"
        )
        with (
            self._reader("reading the samples to relearn") as cur,
            _registered(cur, starts, "relia_learned_since"),
        ):
            got = cur.execute(sql).fetchnumpy()
        value = got["value"]
        if np.ma.isMaskedArray(value):
            value = np.ma.filled(value.astype(np.float64), np.nan)
        return MetricBatch(got["series_id"], got["ts"], value)

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
        table = pa.table(
            {"series_id": pa.array(ids, pa.int64()), "blob": pa.array(blobs, pa.binary())}
        )
        with self._transaction("saving checkpoints") as w, _registered(w, table):
            w.execute(
                f"INSERT INTO checkpoints SELECT series_id, blob, ? FROM {_BATCH} "
                "ON CONFLICT (series_id) DO UPDATE "
                "SET blob = excluded.blob, updated_at = excluded.updated_at",
                [_utc_now()],
            )

    def load_checkpoints(self) -> dict[int, bytes]:
        """Every stored detector checkpoint by series id."""
        with self._reader("loading checkpoints") as cur:
            rows = cur.execute("SELECT series_id, blob FROM checkpoints").fetchall()
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
            if nul is not None:  # PostgreSQL cannot keep it: refused by both stores alike
                raise DataError(
                    f"{nul} holds a NUL character, which the store cannot keep",
                    where=f"findings[{i}]",
                )
            by_id[f.id] = f  # the last one given for an id wins
        if not by_id:
            return 0
        rows = list(by_id.values())
        table = pa.table(
            {
                "id": pa.array([f.id for f in rows], pa.string()),
                "kind": pa.array([f.kind.value for f in rows], pa.string()),
                "key": pa.array([f.key for f in rows], pa.string()),
                "series_id": pa.array(
                    [
                        None if f.series_id is None else _as_int64(f.series_id, "series_id", f.id)
                        for f in rows
                    ],
                    pa.int64(),
                ),
                "start_ts": pa.array([_as_int64(f.start, "start", f.id) for f in rows], pa.int64()),
                "end_ts": pa.array([_as_int64(f.end, "end", f.id) for f in rows], pa.int64()),
                "score": pa.array([f.score for f in rows], pa.float64()),
                "severity": pa.array([f.severity.value for f in rows], pa.string()),
                "detector": pa.array([f.detector for f in rows], pa.string()),
                "summary": pa.array([f.summary for f in rows], pa.string()),
                "evidence": pa.array([_dump_evidence(f) for f in rows], pa.string()),
            }
        )
        now = _utc_now()
        updates = ", ".join(
            f"{c} = excluded.{c}" for c in _FINDING_COLUMNS.split(", ")[1:] + ["updated_at"]
        )
        with self._transaction("saving findings") as w, _registered(w, table):
            known = w.execute(
                f"SELECT count(*) FROM findings WHERE id IN (SELECT id FROM {_BATCH})"
            ).fetchall()[0][0]
            if self._has_seq:
                # The next numbers of the store order (findings_after), taken in this
                # transaction: the engine's writer is the only one that writes findings.
                last = w.execute(
                    "UPDATE findings_seq SET last = last + ? RETURNING last", [len(rows)]
                ).fetchall()[0][0]
                w.execute(
                    f"INSERT INTO findings ({_FINDING_COLUMNS}, created_at, updated_at, "
                    f"stored_seq) SELECT {_FINDING_COLUMNS}, ?, ?, "
                    f"? + row_number() OVER (ORDER BY id) FROM {_BATCH} "
                    f"ON CONFLICT (id) DO UPDATE SET {updates}, stored_seq = excluded.stored_seq",
                    [now, now, int(last) - len(rows)],
                )
            else:  # a custom migration set without schema 11
                w.execute(
                    f"INSERT INTO findings ({_FINDING_COLUMNS}, created_at, updated_at) "
                    f"SELECT {_FINDING_COLUMNS}, ?, ? FROM {_BATCH} "
                    f"ON CONFLICT (id) DO UPDATE SET {updates}",
                    [now, now],
                )
        return len(rows) - int(known)

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
        where, params = _finding_filters(since, series_id, until, before, "?")
        sql = f"SELECT {_FINDING_COLUMNS} FROM findings"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY end_ts DESC, start_ts DESC, id LIMIT {_as_limit(limit)}"
        with self._reader("reading findings") as cur:
            rows = cur.execute(sql, params).fetchall()
        return [self._finding(row) for row in rows]

    def findings_by_ids(self, ids: Collection[str]) -> list[Finding]:
        """The stored findings among ``ids``, newest (by end, then start) first."""
        wanted = _as_ids(ids)
        if not wanted:
            return []
        sql = (
            f"SELECT {_FINDING_COLUMNS} FROM findings WHERE id IN (SELECT unnest(?::VARCHAR[])) "
            "ORDER BY end_ts DESC, start_ts DESC, id"
        )
        with self._reader("reading findings") as cur:
            rows = cur.execute(sql, [wanted]).fetchall()
        return [self._finding(row) for row in rows]

    def findings_without_incident(self, since: int, limit: int = 1000) -> list[Finding]:
        """Findings ending at or after ``since`` that no stored incident lists, newest (by end,
        then start) first (the same anti-join as :meth:`prune_history`)."""
        sql = (
            f"SELECT {_FINDING_COLUMNS} FROM findings WHERE end_ts >= ? AND id NOT IN ("
            "SELECT k.fid FROM (SELECT unnest(json_extract_string(finding_ids, '$[*]')) "
            "AS fid FROM incidents) AS k WHERE k.fid IS NOT NULL) "
            f"ORDER BY end_ts DESC, start_ts DESC, id LIMIT {_as_limit(limit)}"
        )
        with self._reader("reading findings") as cur:
            rows = cur.execute(sql, [_as_int64(since, "since")]).fetchall()
        return [self._finding(row) for row in rows]

    def findings_after(self, seq: int, limit: int = 1000) -> list[tuple[int, Finding]]:
        """(store order number, finding) of the findings stored (new or replaced) after number
        ``seq``, in store order, at most ``limit``."""
        if not self._has_seq:
            raise StoreError(_NO_SEQ, where=self._path)
        sql = (
            f"SELECT stored_seq, {_FINDING_COLUMNS} FROM findings WHERE stored_seq > ? "
            "ORDER BY stored_seq LIMIT ?"
        )
        with self._reader("reading findings") as cur:
            rows = cur.execute(sql, [_as_int64(seq, "seq"), _as_limit(limit)]).fetchall()
        return [(int(row[0]), self._finding(row[1:])) for row in rows]

    def findings_seq(self) -> int:
        """The store order number of the last finding stored (0: none yet)."""
        if not self._has_seq:
            raise StoreError(_NO_SEQ, where=self._path)
        with self._reader("reading findings") as cur:
            return int(cur.execute("SELECT last FROM findings_seq").fetchall()[0][0])

    def _finding(self, row: tuple[Any, ...]) -> Finding:
        return _finding_from_row(row, self._path)

    # -- log files --------------------------------------------------------------------------

    def commit_log_progress(self, states: dict[str, bytes], counts: LogCounts) -> None:
        """In one transaction: add ``counts`` to the stored ones and replace the state blobs in
        ``states``; then only the newest ``samples_per_series`` windows of each file are kept.

        The engine writes a tick's line counts and the read offsets reached by those lines here
        together, so a crash leaves either both or neither.
        """
        n = len(counts)
        if not states and n == 0:
            return
        for name, blob in states.items():
            if not isinstance(name, str) or not isinstance(blob, bytes | bytearray):
                raise DataError(f"log state of {name!r} must be bytes under a str name")
        counted = pa.table(
            {
                "file": pa.array(counts.file, pa.string()),
                "window_start": pa.array(np.asarray(counts.window_start, np.int64)),
                "template_id": pa.array(np.asarray(counts.template_id, np.int64)),
                "count": pa.array(np.asarray(counts.count, np.int64)),
            }
        )
        blobs = pa.table(
            {
                "file": pa.array(list(states), pa.string()),
                "state": pa.array([bytes(b) for b in states.values()], pa.binary()),
            }
        )
        # Not sorted: a missing name (None) must reach the database, which refuses it (StoreError).
        files = list(dict.fromkeys(counts.file))
        with self._transaction("saving log progress") as w:
            if n:
                with _registered(w, counted):
                    # Summed first: ON CONFLICT cannot update one row twice in a statement.
                    w.execute(
                        "INSERT INTO log_counts "
                        f"SELECT file, window_start, template_id, sum(count)::BIGINT FROM {_BATCH} "
                        "GROUP BY file, window_start, template_id "
                        "ON CONFLICT (file, window_start, template_id) "
                        "DO UPDATE SET count = log_counts.count + excluded.count"
                    )
                for f in files:
                    w.execute(
                        "DELETE FROM log_counts WHERE file = ? AND window_start < coalesce(("
                        "SELECT min(window_start) FROM (SELECT DISTINCT window_start FROM "
                        "log_counts WHERE file = ? ORDER BY window_start DESC LIMIT ?)), "
                        f"{_INT64_MIN})",
                        [f, f, self._samples_per_series],
                    )
            if states:
                with _registered(w, blobs, _SCORES):
                    w.execute(
                        f"INSERT INTO log_state SELECT file, state, ? FROM {_SCORES} "
                        "ON CONFLICT (file) DO UPDATE SET state = excluded.state, "
                        "updated_at = excluded.updated_at",
                        [_utc_now()],
                    )

    def load_log_states(self) -> dict[str, bytes]:
        """Every stored log file state blob by file name."""
        with self._reader("reading log states") as cur:
            rows = cur.execute("SELECT file, state FROM log_state ORDER BY file").fetchall()
        return {str(f): bytes(b) for f, b in rows}

    def log_counts(self, file: str | None = None, since: int | None = None) -> LogCounts:
        """Stored counts, ordered by file, window and template."""
        where: list[str] = []
        params: list[object] = []
        if file is not None:
            where.append("file = ?")
            params.append(file)
        if since is not None:
            where.append("window_start >= ?")
            params.append(_as_int64(since, "since"))
        sql = "SELECT file, window_start, template_id, count FROM log_counts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY file, window_start, template_id"
        with self._reader("reading log counts") as cur:
            cols = cur.execute(sql, params).fetchnumpy()
        return LogCounts(
            [str(x) for x in cols["file"]],
            np.asarray(cols["window_start"], np.int64),
            np.asarray(cols["template_id"], np.int64),
            np.asarray(cols["count"], np.int64),
        )

    # -- lifecycle --------------------------------------------------------------------------

    def close(self) -> None:
        """Close the store (idempotent). Committed data is on disk afterwards."""
        with self._write_lock, self._side_lock, self._readers:
            if self._closed:
                return
            self._closed = True  # no new reads start from here on
            self._readers.wait_for(lambda: self._n_reading == 0)
            try:
                self._writer.close()
                self._side_writer.close()
                self._root.close()
            except duckdb.Error as e:
                raise StoreError(
                    f"closing the store failed: {_first_line(e)}", where=self._path
                ) from e

    def __enter__(self) -> DuckDBStore:
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
        return f"DuckDBStore({self._path!r}, {state})"

    # -- internals --------------------------------------------------------------------------

    def _migrate(self, migrations: list[Migration]) -> int:
        w = self._writer
        try:
            w.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version INTEGER PRIMARY KEY, name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL)"
            )
            current = int(
                w.execute("SELECT coalesce(max(version), 0) FROM schema_migrations").fetchall()[0][
                    0
                ]
            )
        except duckdb.Error as e:
            raise StoreError(
                f"cannot read the schema version: {_first_line(e)}", where=self._path
            ) from e
        known = latest_version(migrations)
        if current > known:
            raise StoreError(
                f"the store was written by a newer relia (schema {current} > {known}); "
                "upgrade relia or use another data directory",
                where=self._path,
            )
        for m in migrations[current:]:  # versions are 1..N, so version v sits at index v - 1
            try:
                w.begin()
                w.execute(m.sql)
                w.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                    [m.version, m.name, _utc_now()],
                )
                w.commit()
            except duckdb.Error as e:
                _rollback(w)
                raise StoreError(
                    f"migration {m.version:04d}_{m.name} failed: {_first_line(e)}", where=self._path
                ) from e
            current = m.version
        return current

    def _columns(self, table: str) -> set[str]:
        """The column names of ``table`` (in schema ``main``)."""
        try:
            cols = self._writer.execute(
                "SELECT column_name FROM duckdb_columns() "
                "WHERE table_name = ? AND schema_name = 'main'",
                [table],
            ).fetchall()
        except duckdb.Error as e:
            raise StoreError(
                f"cannot read the schema of {table}: {_first_line(e)}", where=self._path
            ) from e
        return {str(c[0]) for c in cols}

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("the store is closed", where=self._path)

    @contextmanager
    def _transaction(self, what: str, *, side: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A writer connection inside a transaction: committed on success, else rolled back.
        ``side``: the incidents' and outbox's writer, else the engine's."""
        with self._side_lock if side else self._write_lock:
            self._check_open()
            w = self._side_writer if side else self._writer
            try:
                w.begin()
                yield w
                w.commit()
            except duckdb.Error as e:
                _rollback(w)
                raise StoreError(f"{what} failed: {_first_line(e)}", where=self._path) from e
            except BaseException:
                _rollback(w)
                raise

    @contextmanager
    def _reader(self, what: str) -> Iterator[duckdb.DuckDBPyConnection]:
        """A fresh cursor for one read, closed afterwards."""
        with self._readers:
            self._check_open()
            try:
                cur = self._root.cursor()
            except duckdb.Error as e:
                raise StoreError(f"{what} failed: {_first_line(e)}", where=self._path) from e
            self._n_reading += 1
        try:
            yield cur
        except duckdb.Error as e:
            raise StoreError(f"{what} failed: {_first_line(e)}", where=self._path) from e
        finally:
            try:
                cur.close()
            finally:
                with self._readers:
                    self._n_reading -= 1
                    self._readers.notify_all()

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

        def ints(values: list[int | None], what: str) -> pa.Array:
            return pa.array(
                [None if v is None else _as_int64(v, what, "incidents") for v in values],
                pa.int64(),
            )

        def texts(values: list[Any]) -> pa.Array:
            return pa.array([json.dumps(v, default=_json_default) for v in values], pa.string())

        table = pa.table(
            {
                "id": pa.array([r.id for r in rows], pa.string()),
                "status": pa.array([r.status.value for r in rows], pa.string()),
                "title": pa.array([r.title for r in rows], pa.string()),
                "severity": pa.array([r.severity.value for r in rows], pa.string()),
                "labels": texts([r.labels for r in rows]),
                "start_ts": ints([r.start for r in rows], "start"),
                "end_ts": ints([r.end for r in rows], "end"),
                "opened_at": ints([r.opened_at for r in rows], "opened_at"),
                "updated_at": ints([r.updated_at for r in rows], "updated_at"),
                "resolved_at": ints([r.resolved_at for r in rows], "resolved_at"),
                "version": ints([r.version for r in rows], "version"),
                "finding_ids": texts([r.finding_ids for r in rows]),
                "finding_count": ints([r.finding_count for r in rows], "finding_count"),
                "keys": texts([r.keys for r in rows]),
                "cause": texts([r.cause for r in rows]),
                "merged_into": pa.array([r.merged_into for r in rows], pa.string()),
            }
        )
        updates = ", ".join(f"{c} = excluded.{c}" for c in _INCIDENT_COLUMNS.split(", ")[1:])
        with self._transaction("saving incidents", side=True) as w, _registered(w, table):
            w.execute(
                f"INSERT INTO incidents ({_INCIDENT_COLUMNS}) SELECT {_INCIDENT_COLUMNS} "
                f"FROM {_BATCH} ON CONFLICT (id) DO UPDATE SET {updates}"
            )

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
        where, params = _incident_filters(since, status, before, "?")
        sql = f"SELECT {_INCIDENT_COLUMNS} FROM incidents"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY updated_at DESC, id LIMIT {_as_limit(limit)}"
        with self._reader("reading incidents") as cur:
            rows = cur.execute(sql, params).fetchall()
        return [self._incident(row) for row in rows]

    def incident(self, incident_id: str) -> Incident | None:
        """One incident by id, or None."""
        with self._reader("reading an incident") as cur:
            rows = cur.execute(
                f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE id = ?", [str(incident_id)]
            ).fetchall()
        return self._incident(rows[0]) if rows else None

    def incident_listing(self, finding_id: str) -> Incident | None:
        """The incident whose ``finding_ids`` lists ``finding_id`` (the most recently updated,
        then by id, should several), or None. A scan of the JSON text, narrowed by substring
        first (the id as it is written in it) before the exact test on the parsed list."""
        fid = str(finding_id)
        sql = (
            f"SELECT {_INCIDENT_COLUMNS} FROM incidents WHERE contains(finding_ids, ?) "
            "AND list_contains(json_extract_string(finding_ids, '$[*]'), ?) "
            "ORDER BY updated_at DESC, id LIMIT 1"
        )
        with self._reader("reading an incident") as cur:
            rows = cur.execute(sql, [json.dumps(fid), fid]).fetchall()
        return self._incident(rows[0]) if rows else None

    def _incident(self, row: tuple[Any, ...]) -> Incident:
        names = _INCIDENT_COLUMNS.split(", ")
        d = dict(zip(names, row, strict=True))
        iid = d["id"]
        try:
            for c in ("labels", "finding_ids", "keys", "cause"):
                d[c] = json.loads(d[c])
            d["start"], d["end"] = d.pop("start_ts"), d.pop("end_ts")
            return Incident.model_validate(d)
        except (ValueError, ValidationError) as e:
            first = str(e).splitlines()[0]
            raise StoreError(f"incident {iid!r} cannot be read: {first}", where=self._path) from e

    # -- notification outbox --------------------------------------------------------------

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
        table = pa.table(
            {
                "id": pa.array([r.id for r in rows], pa.string()),
                "sink": pa.array([r.sink for r in rows], pa.string()),
                "incident_id": pa.array([r.incident_id for r in rows], pa.string()),
                "version": pa.array([r.version for r in rows], pa.int64()),
                "payload": pa.array([_dump_payload(r) for r in rows], pa.string()),
                "created_at": pa.array([r.created_at for r in rows], pa.int64()),
                "attempts": pa.array([r.attempts for r in rows], pa.int32()),
                "next_attempt_at": pa.array([r.next_attempt_at for r in rows], pa.int64()),
                "delivered_at": pa.array([r.delivered_at for r in rows], pa.int64()),
                "last_error": pa.array([r.last_error for r in rows], pa.string()),
                "status": pa.array([r.status.value for r in rows], pa.string()),
            }
        )
        with self._transaction("enqueueing notifications", side=True) as w, _registered(w, table):
            known = w.execute(
                f"SELECT count(*) FROM outbox WHERE id IN (SELECT id FROM {_BATCH})"
            ).fetchall()[0][0]
            w.execute(
                f"INSERT INTO outbox ({_OUTBOX_COLUMNS}) SELECT {_OUTBOX_COLUMNS} FROM {_BATCH} "
                "ON CONFLICT (id) DO NOTHING"
            )
        return len(rows) - int(known)

    def due_notifications(self, sink: str, now: int, limit: int) -> list[OutboxItem]:
        """Pending items of ``sink`` with ``next_attempt_at <= now``, oldest (created, version)
        first, at most ``limit``; an item waits while an older version of the same incident to
        the same sink is still pending."""
        sql = (
            f"SELECT {_OUTBOX_COLUMNS} FROM outbox AS o "
            "WHERE o.sink = ? AND o.status = 'pending' AND o.next_attempt_at <= ? "
            "AND NOT EXISTS (SELECT 1 FROM outbox AS p WHERE p.sink = o.sink "
            "AND p.incident_id = o.incident_id AND p.status = 'pending' AND p.version < o.version) "
            f"ORDER BY o.created_at, o.version, o.id LIMIT {_as_limit(limit)}"
        )
        with self._reader("reading the outbox") as cur:
            rows = cur.execute(sql, [str(sink), _as_int64(now, "now")]).fetchall()
        return [self._outbox_item(row) for row in rows]

    def mark_delivered(self, ids: list[str], now: int) -> None:
        """Mark pending items delivered at ``now`` (counting the attempt), in one transaction."""
        if not ids:
            return
        table = pa.table({"id": pa.array([str(i) for i in ids], pa.string())})
        with (
            self._transaction("marking notifications delivered", side=True) as w,
            _registered(w, table),
        ):
            w.execute(
                "UPDATE outbox SET status = 'delivered', delivered_at = ?, attempts = attempts + 1 "
                f"WHERE status = 'pending' AND id IN (SELECT id FROM {_BATCH})",
                [_as_int64(now, "now")],
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
        with self._transaction("recording a failed delivery", side=True) as w:
            w.execute(
                "UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ?, status = ? "
                "WHERE id = ? AND status = 'pending'",
                [
                    _as_int64(attempts, "attempts"),
                    _as_int64(next_attempt_at, "next_attempt_at"),
                    str(error),
                    "failed" if give_up else "pending",
                    str(item_id),
                ],
            )

    def outbox_counts(self) -> dict[str, dict[str, int]]:
        """Per sink, how many items are pending, delivered and failed (all three keys)."""
        with self._reader("counting the outbox") as cur:
            rows = cur.execute(
                "SELECT sink, status, count(*) FROM outbox GROUP BY sink, status"
            ).fetchall()
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
        with self._reader("reading the outbox") as cur:
            rows = cur.execute(
                "SELECT DISTINCT sink, incident_id FROM outbox "
                "WHERE sink IN (SELECT unnest(?::VARCHAR[])) "
                "AND incident_id IN (SELECT unnest(?::VARCHAR[]))",
                [names, ids],
            ).fetchall()
        return {(str(s), str(i)) for s, i in rows}

    # -- history retention -----------------------------------------------------------------

    def prune_history(self, before: int) -> dict[str, int]:
        """Delete finished history older than ``before``, in one transaction: resolved incidents
        resolved before it; delivered or failed outbox items finished before it (a failed item
        finished when it was given up, its ``next_attempt_at``), but for the item of a remaining
        incident's current version and each sink's newest item of a remaining incident; then
        findings ending before it that no remaining incident lists. Counts deleted per kind.

        Set-based deletes without secondary indexes: DuckDB scans a column quickly (min/max per
        row group skip most of it), and an index on ``end_ts`` or ``status`` would turn the
        upserts that move them into the delete-and-insert its constraint checks trip over. Runs
        on the engine's writer, which also writes the findings: the two never race on a row."""
        cut = _as_int64(before, "before")
        with self._transaction("pruning history") as w:
            incidents = w.execute(
                "DELETE FROM incidents WHERE status = 'resolved' AND resolved_at < ?", [cut]
            ).fetchall()[0][0]
            outbox = w.execute(
                "DELETE FROM outbox AS o WHERE o.status IN ('delivered', 'failed') "
                "AND coalesce(o.delivered_at, o.next_attempt_at) < ? "
                f"AND NOT EXISTS ({_CURRENT_VERSION}) AND NOT EXISTS ({_NEWEST_OF_SINK})",
                [cut],
            ).fetchall()[0][0]
            findings = w.execute(
                "DELETE FROM findings WHERE end_ts < ? AND id NOT IN ("
                "SELECT k.fid FROM (SELECT unnest(json_extract_string(finding_ids, '$[*]')) "
                "AS fid FROM incidents) AS k WHERE k.fid IS NOT NULL)",
                [cut],
            ).fetchall()[0][0]
        return {"outbox": int(outbox), "incidents": int(incidents), "findings": int(findings)}

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
                f"outbox item {iid!r} cannot be read: {first}", where=self._path
            ) from e


def open_store(data_dir: str | Path, samples_per_series: int = 2000) -> DuckDBStore:
    """Open (creating it if needed) the store of a data directory: ``<data_dir>/relia.duckdb``.

    The store is private to relia's user, whatever the umask: the directories relia creates
    are 0700 and its files 0600. For that the process's umask drops group and other bits from
    here on (as PostgreSQL's server does): DuckDB creates ``relia.duckdb.wal`` again after every
    checkpoint, with the umask's mode, and takes no mode of its own.
    """
    os.umask(os.umask(0o077) | 0o077)
    directory = Path(data_dir)
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as e:
        raise StoreError(
            f"cannot create the data directory: {e.strerror or e}", where=str(directory)
        ) from e
    return DuckDBStore(directory / STORE_FILE, samples_per_series)


def _connect(path: str) -> duckdb.DuckDBPyConnection:
    try:
        return duckdb.connect(path)
    except duckdb.Error as e:
        msg = _first_line(e)
        if "Could not set lock" in msg:
            pid = re.search(r"PID (\d+)", msg)
            holder = f" (process {pid.group(1)})" if pid else ""
            raise StoreError(
                f"the store file is locked by another process{holder}; another relia may be "
                "running with this data directory",
                where=path,
            ) from e
        if "not a valid DuckDB database" in msg:
            raise StoreError(
                "not a relia store: the file is not a valid DuckDB database", where=path
            ) from e
        raise StoreError(f"cannot open the store: {msg}", where=path) from e


@contextmanager
def _registered(
    conn: duckdb.DuckDBPyConnection, table: pa.Table, name: str = _BATCH
) -> Iterator[None]:
    conn.register(name, table)
    try:
        yield
    finally:
        conn.unregister(name)


def _backfilled_over(
    ts: npt.NDArray[np.int64],
    first: npt.NDArray[np.int64],
    n_rows: npt.NDArray[np.int64],
    newest: npt.NDArray[np.int64],
    ids: npt.NDArray[np.int64],
    replaced: npt.NDArray[np.int64],
    counts: dict[int, int],
    keep: int,
) -> npt.NDArray[np.bool_]:
    """Which series of an append are over ``keep`` and got new rows no newer than what they
    had (a back-fill, not a replacement): they are trimmed exactly now, as PostgreSQL trims,
    since such a row may be older than rows already trimmed away and would otherwise show
    before a hole until the series next outgrows its slack. Replacing rows adds none, so a
    source repeating samples costs no trim."""
    run = np.repeat(np.arange(len(ids)), n_rows)  # each row's series, by position in `ids`
    n_old = np.add.reduceat((ts <= newest[run]).astype(np.int64), first)
    n_replaced = np.zeros(len(ids), np.int64)
    if len(replaced):
        rid, n_rep = np.unique(replaced, return_counts=True)
        n_replaced[np.searchsorted(ids, rid)] = n_rep
    held = np.fromiter(counts.values(), np.int64, len(counts))  # in the order of `ids`
    return (n_old > n_replaced) & (held > keep)


def _trim_at(series_id: int, keep: int) -> int:
    """How many stored samples a series may reach before an append trims it back to ``keep``.

    Trimming is the costly part of an append (it reads every stored row of the series it
    trims), so a series may grow up to an eighth past ``keep`` before it is trimmed, and the
    point in that slack where it is trimmed differs per series (ids are hashes): series fed at
    one rate then trim on different appends instead of all on the same one. Below 8 samples
    there is no slack: the bound is exact.
    """
    slack = keep // 8
    low = slack // 2
    return keep + low + series_id % (slack - low + 1)


def _last_per_key(
    sid: npt.NDArray[np.int64], ts: npt.NDArray[np.int64], *cols: npt.NDArray[Any]
) -> tuple[npt.NDArray[Any], ...]:
    """Sorted by (series, ts, arrival), the last row of each (series, ts): unique keys, each
    with its last-written columns."""
    n = len(sid)
    if is_sorted_by_series(sid, ts):  # the engine sorts a tick once; keep its order
        s, t, ordered = sid, ts, cols
    else:
        order = np.lexsort((np.arange(n), ts, sid))
        s, t, ordered = sid[order], ts[order], tuple(c[order] for c in cols)
    last = np.ones(n, dtype=bool)
    last[:-1] = (s[1:] != s[:-1]) | (t[1:] != t[:-1])
    if last.all():
        return (s, t, *ordered)
    return (s[last], t[last], *(c[last] for c in ordered))


def _scores_table(scores: SampleScores) -> pa.Table:
    try:
        sid = np.asarray(scores.series_id, dtype=np.int64)
        ts = np.asarray(scores.ts, dtype=np.int64)
        band = [np.asarray(getattr(scores, c), dtype=np.float64) for c in _BAND]
    except (AttributeError, TypeError, ValueError) as e:
        raise DataError(f"append_samples: scores must have series_id, ts and {_BAND}: {e}") from e
    if any(a.ndim != 1 or len(a) != len(sid) for a in (ts, *band)):
        raise DataError("append_samples: the arrays of scores differ in length or shape")
    sid, ts, *band = _last_per_key(sid, ts, *band)
    cols: dict[str, pa.Array] = {"series_id": pa.array(sid), "ts": pa.array(ts)}
    for c, a in zip(_BAND, band, strict=True):
        cols[c] = pa.array(a, pa.float64(), from_pandas=True)  # NaN -> NULL
    return pa.table(cols)


def _rollback(conn: duckdb.DuckDBPyConnection) -> None:
    try:
        conn.rollback()
    except duckdb.Error:  # no transaction open (it failed before BEGIN, or DuckDB ended it)
        pass


def _series_rows(
    series: list[tuple[int, str, dict[str, str]]],
) -> tuple[list[int], list[str], list[str]]:
    """Validated columns (ids, names, canonical label JSON) of an ``upsert_series`` argument;
    :class:`DataError` naming the entry on a bad one. Shared by both stores."""
    ids: list[int] = []
    names: list[str] = []
    labels: list[str] = []
    seen: set[int] = set()
    for i, entry in enumerate(series):
        where = f"series[{i}]"
        if not isinstance(entry, Sequence) or isinstance(entry, str) or len(entry) != 3:
            raise DataError("expected a tuple (series_id, name, labels)", where=where)
        sid = _as_int64(entry[0], "series_id", where)
        name, lab = entry[1], entry[2]
        if not isinstance(name, str) or not name:
            raise DataError(f"name must be a non-empty string, got {name!r}", where=where)
        if not isinstance(lab, Mapping):
            raise DataError(f"labels must be a mapping, got {type(lab).__name__}", where=where)
        nul = nul_in_series(name, lab)
        if nul is not None:  # PostgreSQL cannot keep it: refused by both stores alike
            raise DataError(
                f"{nul} holds a NUL character, which the store cannot keep", where=where
            )
        if sid in seen:  # the first registration wins, as it would across two calls
            continue
        seen.add(sid)
        ids.append(sid)
        names.append(name)
        # The canonical form of SeriesIndex (sorted, __name__ dropped), as compact JSON.
        labels.append(json.dumps(dict(series_key(name, lab)[1]), separators=(",", ":")))
    return ids, names, labels


def _finding_from_row(row: tuple[Any, ...], where: str) -> Finding:
    """A stored finding row (columns as ``_FINDING_COLUMNS``) as a Finding; :class:`StoreError`
    naming the store (``where``) if it does not validate. Shared by both stores."""
    fid, kind, key, sid, start, end, score, severity, detector, summary, evidence = row
    try:
        return Finding(
            id=fid,
            kind=FindingKind(kind),
            key=key,
            series_id=sid,
            start=start,
            end=end,
            score=score,
            severity=Severity(severity),
            detector=detector,
            summary=summary,
            evidence=json.loads(evidence),
        )
    except (ValueError, ValidationError) as e:
        first = str(e).splitlines()[0]
        raise StoreError(f"finding {fid!r} cannot be read: {first}", where=where) from e


def _as_int64(value: object, what: str, where: str | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise DataError(f"{what} must be an integer, got {value!r}", where=where)
    out = int(value)
    if not _INT64_MIN <= out <= _INT64_MAX:
        raise DataError(f"{what} {out} does not fit in int64", where=where)
    return out


def _finding_filters(
    since: int | None,
    series_id: int | None,
    until: int | None,
    before: FindingKey | None,
    mark: str,
) -> tuple[list[str], list[object]]:
    """WHERE terms and their parameters (``mark``: the driver's placeholder) of
    :meth:`findings`. Shared by both stores."""
    where: list[str] = []
    params: list[object] = []
    if since is not None:
        where.append(f"end_ts >= {mark}")
        params.append(_as_int64(since, "since"))
    if until is not None:
        # In SQL, before LIMIT: filtered afterwards, the newest findings past ``until`` would
        # fill the page and push out those in the range.
        where.append(f"start_ts <= {mark}")
        params.append(_as_int64(until, "until"))
    if series_id is not None:
        where.append(f"series_id = {mark}")
        params.append(_as_int64(series_id, "series_id"))
    if before is not None:
        end, start, fid = _as_key(before, 3, "before")
        # After (end, start, id) in the order end DESC, start DESC, id ASC: a row comparison
        # cannot mix directions, so spelled out.
        where.append(
            f"(end_ts < {mark} OR (end_ts = {mark} AND (start_ts < {mark} "
            f"OR (start_ts = {mark} AND id > {mark}))))"
        )
        params += [end, end, start, start, fid]
    return where, params


def _incident_filters(
    since: int | None,
    status: IncidentStatus | None,
    before: IncidentKey | None,
    mark: str,
) -> tuple[list[str], list[object]]:
    """WHERE terms and their parameters of :meth:`incidents`. Shared by both stores."""
    where: list[str] = []
    params: list[object] = []
    if since is not None:
        where.append(f"updated_at >= {mark}")
        params.append(_as_int64(since, "since"))
    if status is not None:
        where.append(f"status = {mark}")
        params.append(IncidentStatus(status).value)
    if before is not None:
        updated, iid = _as_key(before, 2, "before")
        # After (updated_at, id) in the order updated_at DESC, id ASC.
        where.append(f"(updated_at < {mark} OR (updated_at = {mark} AND id > {mark}))")
        params += [updated, updated, iid]
    return where, params


def _as_key(key: object, size: int, what: str) -> tuple[Any, ...]:
    """A paging key: ``size - 1`` int64 values, then an id (str)."""
    if not isinstance(key, tuple) or len(key) != size or not isinstance(key[-1], str):
        raise DataError(f"{what} must be a tuple of {size - 1} int(s) and an id, got {key!r}")
    return (*(_as_int64(v, what) for v in key[:-1]), key[-1])


def _as_ids(ids: object) -> list[str]:
    """``ids`` (a collection of finding ids, not one id) as a list without repeats."""
    if isinstance(ids, str | bytes) or not isinstance(ids, Collection):
        raise DataError(f"ids must be a collection of str, got {type(ids).__name__}")
    out = list(dict.fromkeys(ids))
    bad = next((i for i in out if not isinstance(i, str)), None)
    if bad is not None:
        raise DataError(f"ids must be str, got {bad!r}")
    return out


def _as_limit(limit: object) -> int:
    out = _as_int64(limit, "limit")
    if out < 0:
        raise DataError(f"limit must be >= 0, got {out}")
    return out


def _json_default(obj: object) -> Any:
    # Detectors put NumPy scalars and arrays into evidence; store them as plain JSON.
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def _dump_evidence(f: Finding) -> str:
    try:
        return json.dumps(f.evidence, default=_json_default)
    except (TypeError, ValueError) as e:
        raise DataError(f"evidence cannot be stored as JSON: {e}", where=f"finding {f.id}") from e


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _now_ms() -> int:
    """The wall clock, ms since the Unix epoch (UTC): what ``seen_at`` is by default."""
    return time.time_ns() // 1_000_000


def _seen_columns(seen: Mapping[int, int]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The ids and ms of a ``mark_series_seen`` argument as int64 arrays (no Python loop per
    id beyond NumPy's own); :class:`DataError` if it is not a mapping of integers. Shared by
    both stores."""
    if not isinstance(seen, Mapping):
        raise DataError(f"seen must be a mapping of series id to ms, got {type(seen).__name__}")
    n = len(seen)
    try:
        ids = np.fromiter(seen.keys(), np.int64, n)
        ms = np.fromiter(seen.values(), np.int64, n)
    except (TypeError, ValueError, OverflowError) as e:
        raise DataError(f"seen must map int64 series ids to int64 ms: {e}") from e
    return ids, ms


def _utc_now() -> datetime:
    # Naive UTC, as the TIMESTAMP columns hold (no time zone conversion on the way in or out).
    return datetime.now(UTC).replace(tzinfo=None)


_OUTBOX_COLUMNS = (
    "id, sink, incident_id, version, payload, created_at, attempts, next_attempt_at, "
    "delivered_at, last_error, status"
)
# An outbox item ``o`` of a stored incident that is its current version, or its sink's newest item
# of it: kept by retention however old. A restart enqueues the current version again (and would
# send it twice without its row); a sink with a min_severity knows it heard about an incident by
# having an item of it (relia.notify.routing), which must hold while the incident's newest version
# is saved and not yet enqueued too. Each is its own NOT EXISTS with equality conditions only, so
# both plan as anti-joins (not a scan of the outbox per row, as one OR of the two would).
_CURRENT_VERSION = (
    "SELECT 1 FROM incidents AS i WHERE i.id = o.incident_id AND i.version = o.version"
)
_NEWEST_OF_SINK = (
    "SELECT 1 FROM (SELECT sink, incident_id, max(version) AS version FROM outbox "
    "GROUP BY sink, incident_id) AS n JOIN incidents AS i ON i.id = n.incident_id "
    "WHERE n.sink = o.sink AND n.incident_id = o.incident_id AND n.version = o.version"
)


def _dump_payload(item: OutboxItem) -> str:
    try:
        return json.dumps(item.payload, default=_json_default)
    except (TypeError, ValueError) as e:
        raise DataError(
            f"payload cannot be stored as JSON: {e}", where=f"outbox item {item.id}"
        ) from e
