"""A small in-memory Store for engine and API tests (the real one is relia.store.duckdb)."""

from __future__ import annotations

import time
from collections.abc import Collection, Mapping

import numpy as np
import numpy.typing as npt

from relia.incidents.model import Finding, Incident, IncidentStatus
from relia.notify.outbox import OutboxItem, OutboxStatus
from relia.signals import MetricBatch
from relia.store.base import LogCounts, SeriesInfo


class MemoryStore:
    def __init__(self, samples_per_series: int = 2000) -> None:
        self.samples_per_series = samples_per_series
        self._series: dict[int, tuple[str, dict[str, str]]] = {}
        self._ts: dict[int, npt.NDArray[np.int64]] = {}
        self._val: dict[int, npt.NDArray[np.float64]] = {}
        self._ckpt: dict[int, bytes] = {}
        self._seen: dict[int, int] = {}
        self._findings: dict[str, Finding] = {}
        self._seq = 0  # the store order of findings (findings_after)
        self._stored_seq: dict[str, int] = {}
        self._log_states: dict[str, bytes] = {}
        self._log_counts: dict[tuple[str, int, int], int] = {}
        self._incidents: dict[str, Incident] = {}
        self.closed = False

    @property
    def schema_version(self) -> int:
        return 1

    def upsert_series(
        self, series: list[tuple[int, str, dict[str, str]]], seen_at: int | None = None
    ) -> None:
        seen = int(time.time() * 1000) if seen_at is None else int(seen_at)
        for sid, name, labels in series:
            self._series.setdefault(int(sid), (name, dict(labels)))
            self._seen[int(sid)] = max(self._seen.get(int(sid), seen), seen)

    def mark_series_seen(self, seen: Mapping[int, int]) -> None:
        for sid, ms in seen.items():
            if int(sid) in self._series:
                self._seen[int(sid)] = max(self._seen[int(sid)], int(ms))

    def forget_series(self, before: int) -> int:
        gone = [sid for sid in self._series if self._seen.get(sid, before) < before]
        for sid in gone:
            for d in (self._series, self._seen, self._ts, self._val, self._ckpt):
                d.pop(sid, None)  # type: ignore[attr-defined]
        return len(gone)

    def list_series(self) -> list[SeriesInfo]:
        out = []
        for sid, (name, labels) in self._series.items():
            ts = self._ts.get(sid, np.empty(0, np.int64))
            out.append(
                SeriesInfo(
                    sid,
                    name,
                    labels,
                    int(ts[0]) if len(ts) else None,
                    int(ts[-1]) if len(ts) else None,
                    len(ts),
                    self._seen.get(sid),
                )
            )
        return sorted(out, key=lambda s: (s.name, sorted(s.labels.items())))

    def series_info(self, series_id: int) -> SeriesInfo | None:
        if series_id not in self._series:
            return None
        name, labels = self._series[series_id]
        ts = self._ts.get(series_id, np.empty(0, np.int64))
        first, last = (int(ts[0]), int(ts[-1])) if len(ts) else (None, None)
        return SeriesInfo(series_id, name, labels, first, last, len(ts), self._seen.get(series_id))

    def append_samples(self, batch: MetricBatch, scores: object | None = None) -> None:
        # The band (scores) is kept by tests/api/bandstore.py's subclass; the engine tests
        # only need the samples.
        for sid, ts, val in batch.split():
            t = np.concatenate([self._ts.get(sid, np.empty(0, np.int64)), ts])
            v = np.concatenate([self._val.get(sid, np.empty(0)), val])
            # last write wins on equal ts
            order = np.argsort(t, kind="stable")
            t, v = t[order], v[order]
            keep = np.ones(len(t), bool)
            keep[:-1] = t[1:] != t[:-1]
            t, v = t[keep][-self.samples_per_series :], v[keep][-self.samples_per_series :]
            self._ts[sid], self._val[sid] = t, v

    def samples(
        self,
        series_id: int,
        since: int | None = None,
        until: int | None = None,
        limit: int | None = None,
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        t = self._ts.get(series_id, np.empty(0, np.int64))
        v = self._val.get(series_id, np.empty(0))
        m = np.ones(len(t), bool)
        if since is not None:
            m &= t >= since
        if until is not None:
            m &= t <= until
        t, v = t[m], v[m]
        if limit is not None:
            t, v = t[len(t) - min(limit, len(t)) :], v[len(v) - min(limit, len(v)) :]
        return t, v

    def learned_samples(self, since: Mapping[int, int]) -> MetricBatch:
        return MetricBatch.empty()  # it keeps no scores: nothing was learned as far as it knows

    def save_checkpoints(self, checkpoints: dict[int, bytes]) -> None:
        self._ckpt.update(checkpoints)

    def load_checkpoints(self) -> dict[int, bytes]:
        return dict(self._ckpt)

    def add_findings(self, findings: list[Finding]) -> int:
        new = sum(1 for f in findings if f.id not in self._findings)
        for f in findings:
            self._findings[f.id] = f
            self._seq += 1
            self._stored_seq[f.id] = self._seq
        return new

    def findings(
        self,
        since: int | None = None,
        series_id: int | None = None,
        limit: int = 1000,
        *,
        until: int | None = None,
        before: tuple[int, int, str] | None = None,
    ) -> list[Finding]:
        def key(f: Finding) -> tuple[int, int, str]:
            return (-f.end, -f.start, f.id)  # as the real stores: end, start newest first, id

        out = [
            f
            for f in self._findings.values()
            if (since is None or f.end >= since)
            and (until is None or f.start <= until)
            and (series_id is None or f.series_id == series_id)
            and (before is None or key(f) > (-before[0], -before[1], before[2]))
        ]
        out.sort(key=key)
        return out[:limit]

    def findings_after(self, seq: int, limit: int = 1000) -> list[tuple[int, Finding]]:
        after = sorted(
            (n, i) for i, n in self._stored_seq.items() if n > seq and i in self._findings
        )
        return [(n, self._findings[i]) for n, i in after[:limit]]

    def findings_seq(self) -> int:
        return self._seq

    def findings_by_ids(self, ids: Collection[str]) -> list[Finding]:
        out = [self._findings[i] for i in dict.fromkeys(ids) if i in self._findings]
        out.sort(key=lambda f: (f.end, f.start), reverse=True)
        return out

    def findings_without_incident(self, since: int, limit: int = 1000) -> list[Finding]:
        listed = {fid for inc in self._incidents.values() for fid in inc.finding_ids}
        out = [f for f in self._findings.values() if f.end >= since and f.id not in listed]
        out.sort(key=lambda f: (f.end, f.start), reverse=True)
        return out[:limit]

    def commit_log_progress(self, states: dict[str, bytes], counts: LogCounts) -> None:
        for f, w, t, n in zip(
            counts.file,
            counts.window_start.tolist(),
            counts.template_id.tolist(),
            counts.count.tolist(),
            strict=True,
        ):
            self._log_counts[(f, w, t)] = self._log_counts.get((f, w, t), 0) + n
        for f in set(counts.file):
            windows = sorted({w for (g, w, _) in self._log_counts if g == f})
            old = set(windows[: max(0, len(windows) - self.samples_per_series)])
            for key in [k for k in self._log_counts if k[0] == f and k[1] in old]:
                del self._log_counts[key]
        self._log_states.update({k: bytes(v) for k, v in states.items()})

    def load_log_states(self) -> dict[str, bytes]:
        return dict(self._log_states)

    def log_counts(self, file: str | None = None, since: int | None = None) -> LogCounts:
        rows = sorted(
            (k, n)
            for k, n in self._log_counts.items()
            if (file is None or k[0] == file) and (since is None or k[1] >= since)
        )
        return LogCounts(
            [k[0] for k, _ in rows],
            np.array([k[1] for k, _ in rows], np.int64),
            np.array([k[2] for k, _ in rows], np.int64),
            np.array([n for _, n in rows], np.int64),
        )

    def close(self) -> None:
        self.closed = True

    # -- incidents --

    def save_incidents(self, incidents: list[Incident]) -> None:
        for inc in incidents:
            self._incidents[inc.id] = inc

    def incidents(
        self,
        since: int | None = None,
        status: IncidentStatus | None = None,
        limit: int = 1000,
        *,
        before: tuple[int, str] | None = None,
    ) -> list[Incident]:
        out = [
            i
            for i in self._incidents.values()
            if (since is None or i.updated_at >= since)
            and (status is None or i.status is status)
            and (before is None or (-i.updated_at, i.id) > (-before[0], before[1]))
        ]
        out.sort(key=lambda i: (-i.updated_at, i.id))  # as the real stores: newest first, then id
        return out[:limit]

    def incident(self, incident_id: str) -> Incident | None:
        return self._incidents.get(incident_id)

    def incident_listing(self, finding_id: str) -> Incident | None:
        listing = [i for i in self._incidents.values() if finding_id in i.finding_ids]
        listing.sort(key=lambda i: (-i.updated_at, i.id))  # as the real stores
        return listing[0] if listing else None

    # -- notification outbox --

    def _outbox_items(self) -> dict[str, OutboxItem]:
        # Created on first use, so this block needs no line in __init__.
        items: dict[str, OutboxItem] = self.__dict__.setdefault("_outbox", {})
        return items

    def enqueue_notifications(self, items: list[OutboxItem]) -> int:
        outbox = self._outbox_items()
        new = 0
        for item in items:
            if item.id not in outbox:
                outbox[item.id] = item
                new += 1
        return new

    def due_notifications(self, sink: str, now: int, limit: int) -> list[OutboxItem]:
        outbox = self._outbox_items()
        pending = [i for i in outbox.values() if i.sink == sink and i.status == "pending"]
        oldest = {}
        for i in pending:  # an item waits while an older version of its incident is pending
            oldest[i.incident_id] = min(i.version, oldest.get(i.incident_id, i.version))
        due = [
            i for i in pending if i.next_attempt_at <= now and i.version == oldest[i.incident_id]
        ]
        due.sort(key=lambda i: (i.created_at, i.version, i.id))
        return due[:limit]

    def mark_delivered(self, ids: list[str], now: int) -> None:
        outbox = self._outbox_items()
        for i in ids:
            item = outbox.get(i)
            if item is not None and item.status == "pending":
                outbox[i] = item.model_copy(
                    update={
                        "status": OutboxStatus.DELIVERED,
                        "delivered_at": now,
                        "attempts": item.attempts + 1,
                    }
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
        outbox = self._outbox_items()
        item = outbox.get(item_id)
        if item is not None and item.status == "pending":
            outbox[item_id] = item.model_copy(
                update={
                    "attempts": attempts,
                    "next_attempt_at": next_attempt_at,
                    "last_error": error,
                    "status": OutboxStatus.FAILED if give_up else OutboxStatus.PENDING,
                }
            )

    def outbox_counts(self) -> dict[str, dict[str, int]]:
        outbox = self._outbox_items()
        out: dict[str, dict[str, int]] = {}
        for item in outbox.values():
            counts = out.setdefault(item.sink, {"pending": 0, "delivered": 0, "failed": 0})
            counts[str(item.status)] += 1
        return out

    # -- history retention --

    def notified_incidents(
        self, sinks: Collection[str], incident_ids: Collection[str]
    ) -> set[tuple[str, str]]:
        names, ids = set(sinks), set(incident_ids)
        return {
            (i.sink, i.incident_id)
            for i in self._outbox_items().values()
            if i.sink in names and i.incident_id in ids
        }

    def prune_history(self, before: int) -> dict[str, int]:
        old = [
            k
            for k, i in self._incidents.items()
            if i.status is IncidentStatus.RESOLVED
            and i.resolved_at is not None
            and i.resolved_at < before
        ]
        for k in old:
            del self._incidents[k]
        outbox = self._outbox_items()
        current = {(i.id, i.version) for i in self._incidents.values()}
        newest: dict[tuple[str, str], int] = {}  # each sink's newest item of an incident
        for i in outbox.values():
            key = (i.sink, i.incident_id)
            newest[key] = max(newest.get(key, i.version), i.version)
        gone = [
            k
            for k, i in outbox.items()
            if i.status != "pending"
            and (i.delivered_at if i.delivered_at is not None else i.next_attempt_at) < before
            and (i.incident_id, i.version) not in current
            and not (
                i.incident_id in self._incidents and newest[i.sink, i.incident_id] == i.version
            )
        ]
        for k in gone:
            del outbox[k]
        kept = {fid for i in self._incidents.values() for fid in i.finding_ids}
        stale = [k for k, f in self._findings.items() if f.end < before and k not in kept]
        for k in stale:
            del self._findings[k]
        return {"outbox": len(gone), "incidents": len(old), "findings": len(stale)}
