"""The log pipeline of ``relia up``: tail files, mine and count templates, make findings.

Each engine tick the :class:`~relia.engine.loop.Engine` calls two methods:

1. :meth:`LogPipeline.closed_windows` (first): the counts of windows that ended become samples of
   ``log_template_count{file=…,template=…}`` (one series per template id of the file, zero where
   the template had no line) and ``log_line_count{file=…}``, at the window's start. The engine
   stores and scores them with the sources' samples: the default detector, thresholds and findings
   of any metric, so a template's rate departing from its normal is an ordinary finding.
2. :meth:`LogPipeline.ingest` (after the samples are stored): read every file's new lines
   (:class:`~relia.logs.tail.FileTailer`), split the header
   (:class:`~relia.logs.header.HeaderFormat`, learned on a file's first
   :data:`HEADER_MIN_LINES` lines, held uncommitted until there are that many, and kept), assign
   templates (a :class:`~relia.logs.miner.TemplateMiner` per file), add the lines to the current
   window's counts, report templates never seen before, and commit.

**Exactly once.** A tick's counts, each file's read offset, its miner, and which windows were
already emitted are written in one store transaction (:meth:`Store.commit_log_progress`). A crash
before it leaves the store at the previous tick: the lines are read again after a restart and
counted then, once. Samples of a closed window are written before the transaction that marks the
window emitted, so a crash in between emits the same window again with the same values, which the
store replaces (same series and time): nothing is lost and nothing counted twice. Lines are put in
the window of the tick that read them (arrival time: a header's timestamp may be missing or
unparsable, and a file's backlog must not rewrite windows already emitted).

**New templates.** After ``warmup_lines`` lines of a file (while a file's normal vocabulary is
still being learned every template is new), a template id never returned before is a finding of
kind ``log`` from detector ``log_new_template``, with the template text and an example line. It is
reported on the next tick, if the id was not merged into an older one meanwhile (a parameter's
second value). Its id depends on the file and the template id only, so the replay after a crash
does not duplicate it.

**Sessions.** Files with ``session_key`` get each line's key extracted; a
:class:`SessionScorer` given for the file (``session_scorers``) receives the keys and template ids
each tick and returns findings. The ids it gets are those of live templates: when the miner
merges templates, the scorer is told (:meth:`SessionScorer.remap_templates`) before it sees the
tick's ids, so a merge does not make normal sessions look new. Every tick, also one in which the
file gave no lines, the scorer closes its idle sessions. Its learned model
(:meth:`SessionScorer.saved_state`) is stored with the file's state in the same transaction and
given back after a restart; its open sessions and warm-up sessions live in memory only, so a
restart drops the sessions in flight (their later lines open new ones) and a warm-up not
finished begins again.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import struct
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import polars as pl

from relia._failurelog import FailureLog
from relia.config import LogFileConfig, LogsConfig
from relia.errors import DataError, DetectorError, StoreError
from relia.incidents.model import Finding, FindingKind, severity_for_score
from relia.logs.header import HeaderFormat
from relia.logs.miner import TemplateMiner
from relia.logs.tail import FileTailer, TailState
from relia.signals import MetricBatch, SeriesIndex, describe, series_key
from relia.store.base import LogCounts, Store, store_location

__all__ = [
    "LINE_COUNT",
    "NEW_TEMPLATE_DETECTOR",
    "TEMPLATE_COUNT",
    "LogPipeline",
    "LogTickResult",
    "SessionScorer",
]

log = logging.getLogger(__name__)

IntArray = npt.NDArray[np.int64]

#: Metric name of the lines per template per window.
TEMPLATE_COUNT = "log_template_count"
#: Metric name of the lines per file per window.
LINE_COUNT = "log_line_count"
#: Detector name (and key prefix) of new-template findings.
NEW_TEMPLATE_DETECTOR = "log_new_template"
#: Score of a new-template finding: a warning, not a page (new code paths log new lines).
NEW_TEMPLATE_SCORE = 0.6
#: New-template findings per file per tick at most; the rest are logged (a deploy can add many).
MAX_NEW_TEMPLATE_FINDINGS = 50
#: Windows emitted at most per file and tick after a long stop (older ones stay in the store).
MAX_WINDOWS_PER_TICK = 1000
_STATE_VERSION = 1
_HEADER_SAMPLE = 2000
#: Lines of a file gathered before its header layout is learned (from a few lines it is often
#: wrong, and it is kept for the life of the file's state).
HEADER_MIN_LINES = 200
#: ...or bytes of them, or windows waited since the first of them, whichever comes first.
HEADER_MAX_BYTES = 4 << 20
HEADER_MAX_WINDOWS = 5
_TEXT_IN_SUMMARY = 160
#: Characters of a template text or example line kept in a finding's evidence.
_TEXT_IN_EVIDENCE = 2000


class SessionScorer(Protocol):
    """The hook for session scoring (``relia.logs.sessions``): one per file with a session key.

    ``observe`` gets the tick's lines of the file as parallel columns: each line's session key
    (None where the pattern did not match) and live template id; it returns findings (new or
    grown). ``close_idle`` is called on every tick (findings of the sessions that went idle).
    ``remap_templates`` hears of template merges (old id -> the live id it answers as now).
    ``saved_state`` is stored with the file's state (empty: nothing to store) and handed to
    ``restore`` when the pipeline starts again.
    """

    def observe(
        self, keys: Sequence[str | None], template_ids: IntArray, now_ms: int
    ) -> list[Finding]: ...

    def close_idle(self, now_ms: int) -> list[Finding]: ...

    def remap_templates(self, merged: Mapping[int, int]) -> None: ...

    def saved_state(self) -> bytes: ...

    def restore(self, data: bytes) -> None: ...


@dataclass(frozen=True)
class LogTickResult:
    """What one :meth:`LogPipeline.ingest` did."""

    lines: int = 0
    skipped: int = 0
    new_templates: int = 0
    new_findings: int = 0
    updated_findings: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    #: The findings stored this tick (new and updated), for incident correlation.
    findings: list[Finding] = field(default_factory=list)


@dataclass
class _File:
    """One tailed file and what the pipeline knows about it."""

    spec: LogFileConfig
    tailer: FileTailer
    miner: TemplateMiner
    header: HeaderFormat | None = None
    lines: int = 0  # lines counted so far (ever)
    next_id: int = 0  # template ids below this were returned before
    emitted_until: int | None = None  # start of the last window emitted as samples
    # Counts of windows not emitted yet (committed, or added this tick): window -> id -> n.
    pending: dict[int, dict[int, int]] = field(default_factory=dict)
    to_emit: int | None = None  # windows up to this one went out this tick (pending commit)
    session_re: re.Pattern[str] | None = None
    series: dict[int, int] = field(default_factory=dict)  # template id -> series id
    error: str | None = None
    saved_tail: dict[str, Any] | None = None
    # Lines read but held back (not committed) until the header layout is learned from enough
    # of them, and the tick that read the first; after a restart they are read again.
    held: list[str] = field(default_factory=list)
    held_bytes: int = 0
    held_since: int | None = None
    # New template ids of the last tick, reported on the next one if still live (a second
    # value of a word parameter is a new id until a third merges it): (id, example, before).
    candidates: list[tuple[int, str, int]] = field(default_factory=list)
    waiting_logged: bool = False
    # What the session scorer knows: the live id of each id below next_id when it last heard of
    # merges, and its state as last committed.
    session_roots: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    session_state: bytes = b""
    # A file that fails every tick (a FIFO, a path it may not read) is logged once, then once a
    # minute with the count, not on every tick.
    failures: FailureLog | None = None

    @property
    def name(self) -> str:
        return self.spec.label


class LogPipeline:
    """Tails the configured files for the engine; see the module text.

    ``index`` is the engine's series index. ``session_scorers`` maps a file's name to its
    :class:`SessionScorer`.
    """

    def __init__(
        self,
        store: Store,
        config: LogsConfig,
        index: SeriesIndex,
        *,
        session_scorers: Mapping[str, SessionScorer] | None = None,
        miner_factory: Callable[[], TemplateMiner] = TemplateMiner,
    ) -> None:
        self.store = store
        self.config = config
        self.index = index
        self.window_ms = max(1, int(round(config.window * 1000)))
        self.session_scorers = dict(session_scorers or {})
        self.miner_factory = miner_factory
        self._files: list[_File] = []
        self._started = False
        # Session scorers are not reloaded after a failed commit: the lines of each file they
        # were given (counted from the file's first), so a replay does not give them twice, and
        # their findings of a tick not committed, stored with the next one.
        self._session_lines: dict[str, int] = {}
        self._session_unsaved: list[Finding] = []
        # Files whose scorer took its saved model back (once: after a failed commit the scorer
        # in memory is ahead of the store).
        self._session_restored: set[str] = set()

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> None:
        """(Re)load every file's state from the store: offsets, miners, counts not yet emitted."""
        for f in self._files:
            f.tailer.close()
        states = self.store.load_log_states()
        self._files = [self._load(spec, states.get(spec.label)) for spec in self.config.files]
        self._started = True
        if states:
            log.info("resumed %d log files", sum(1 for s in self.config.files if s.label in states))

    def forget(self, series_ids: Collection[int]) -> None:
        """The engine forgot these series (templates that stopped occurring): a template that
        occurs again is registered anew."""
        gone = set(series_ids)
        for f in self._files:
            f.series = {t: sid for t, sid in f.series.items() if sid not in gone}

    def close(self) -> None:
        """Close the files (the state is already in the store)."""
        for f in self._files:
            f.tailer.close()

    def _load(self, spec: LogFileConfig, blob: bytes | None) -> _File:
        cfg = self.config
        state: dict[str, Any] = {}
        miner: TemplateMiner | None = None
        sessions = b""
        if blob is not None:
            try:
                state = self.decode_state(blob)
                rest = blob[4 + struct.unpack_from("<I", blob)[0] :]
                # The session scorer's state, when there is one, follows the miner.
                n_sessions = int(state.get("sessions", 0))
                if n_sessions:
                    rest, sessions = rest[:-n_sessions], rest[-n_sessions:]
                miner = TemplateMiner.from_bytes(rest) if rest else None
            except (ValueError, struct.error, DataError) as e:
                raise StoreError(
                    f"the stored state of log file {spec.label!r} cannot be read: {e}",
                    where=store_location(self.store),
                ) from e
        tail = TailState.from_dict(state["tail"]) if "tail" in state else None
        f = _File(
            spec=spec,
            tailer=FileTailer(
                spec.path,
                tail,
                max_line_bytes=cfg.max_line_bytes,
                max_bytes_per_poll=cfg.max_bytes_per_tick,
                start_at=cfg.start_at,
            ),
            miner=miner if miner is not None else self.miner_factory(),
            header=_header(state.get("header")),
            candidates=[(int(t), str(x), int(n)) for t, x, n in state.get("candidates", [])],
            lines=int(state.get("lines", 0)),
            next_id=int(state.get("next_id", 0)),
            emitted_until=state.get("emitted_until"),
            saved_tail=state.get("tail"),
        )
        if spec.session_key is not None:
            f.session_re = re.compile(spec.session_key)
        scorer = self.session_scorers.get(spec.label)
        if scorer is not None:
            f.session_roots = f.miner.resolve(np.arange(f.next_id, dtype=np.int64))
            f.session_state = sessions
            if sessions and spec.label not in self._session_restored:
                try:
                    scorer.restore(sessions)
                except DetectorError as e:
                    # Learned again from the next sessions: no reason to keep relia from starting.
                    log.warning("log file %s: session model not restored (%s)", spec.label, e)
            self._session_restored.add(spec.label)
        if f.emitted_until is not None:
            c = self.store.log_counts(spec.label, since=f.emitted_until + self.window_ms)
            for w, t, n in zip(
                c.window_start.tolist(), c.template_id.tolist(), c.count.tolist(), strict=True
            ):
                f.pending.setdefault(w, {})[t] = n
        return f

    @staticmethod
    def decode_state(blob: bytes) -> dict[str, Any]:
        """The readable part of a stored file state: ``tail`` (offsets and read counts, a
        :class:`~relia.logs.tail.TailState` dict), ``lines``, ``header``, ``emitted_until``…
        (the miner that follows it is left out). :class:`ValueError` if it is not one."""
        try:
            (n,) = struct.unpack_from("<I", blob)
            state = json.loads(blob[4 : 4 + n])
        except (struct.error, UnicodeDecodeError) as e:
            raise ValueError(str(e)) from None
        version = state.get("version") if isinstance(state, dict) else None
        if isinstance(version, int) and not isinstance(version, bool) and version > _STATE_VERSION:
            # Not garbage: kept as it is for the relia that wrote it.
            raise ValueError(
                f"written by a newer relia (log state version {version} > {_STATE_VERSION}); "
                "upgrade relia or use another data directory"
            )
        if not isinstance(state, dict) or version != _STATE_VERSION:
            raise ValueError("not a relia log file state of a known version")
        return state

    # -- per tick ---------------------------------------------------------------------------

    def window_of(self, ts: int) -> int:
        """Start of the window holding ``ts``."""
        return ts - ts % self.window_ms

    def closed_windows(self, now: int) -> MetricBatch:
        """Samples of the windows that ended by ``now`` and were not emitted yet (per file: the
        lines per template, zeros included, and the lines in all). Marked emitted by the next
        :meth:`ingest`."""
        if not self._started:
            self.start()
        last_closed = self.window_of(now) - self.window_ms
        parts: list[MetricBatch] = []
        for f in self._files:
            f.to_emit = None
            if f.emitted_until is None or last_closed <= f.emitted_until:
                continue
            first = max(
                f.emitted_until + self.window_ms,
                last_closed - (MAX_WINDOWS_PER_TICK - 1) * self.window_ms,
            )
            windows = np.arange(first, last_closed + 1, self.window_ms, dtype=np.int64)
            parts.append(self._window_samples(f, windows))
            f.to_emit = last_closed
        return MetricBatch.concat(parts) if parts else MetricBatch.empty()

    def _window_samples(self, f: _File, windows: IntArray) -> MetricBatch:
        ids = np.array(sorted(t.id for t in f.miner.templates), dtype=np.int64)
        col = {int(t): i for i, t in enumerate(ids.tolist())}
        counts = np.zeros((len(windows), len(ids)), dtype=np.float64)
        for wi, w in enumerate(windows.tolist()):
            got = f.pending.get(w)
            if not got:
                continue
            # Ids counted earlier may have merged into another template since: count them there.
            keys = np.fromiter(got, np.int64, len(got))
            live = f.miner.resolve(keys)
            for t, n in zip(live.tolist(), got.values(), strict=True):
                j = col.get(t)
                if j is not None:
                    counts[wi, j] += n
        totals = np.array(
            [sum(f.pending.get(w, {}).values()) for w in windows.tolist()], dtype=np.float64
        )
        sids = np.array([self._series(f, t) for t in ids.tolist()], dtype=np.int64)
        total_sid = self.index.get_or_add(LINE_COUNT, {"file": f.name}, source="logs")
        n_w, n_t = counts.shape
        batch = MetricBatch(
            np.concatenate(
                [np.tile(sids, n_w), np.full(n_w, -1 if total_sid is None else total_sid, np.int64)]
            ),
            np.concatenate([np.repeat(windows, n_t), windows]),
            np.concatenate([counts.ravel(), totals]),
        )
        if total_sid is not None and (sids >= 0).all():
            return batch
        # Series the index refused (over max_series, id -1): their counts are dropped.
        keep = batch.series_id >= 0
        return MetricBatch(batch.series_id[keep], batch.ts[keep], batch.value[keep])

    def _series(self, f: _File, template_id: int) -> int:
        """The series of a template's counts; -1 while the index refuses it (max_series)."""
        sid = f.series.get(template_id)
        if sid is None:
            sid = self.index.get_or_add(
                TEMPLATE_COUNT, {"file": f.name, "template": str(template_id)}, source="logs"
            )
            if sid is None:
                return -1
            f.series[template_id] = sid
        return sid

    def ingest(self, now: int) -> LogTickResult:
        """Read, mine and count the new lines of every file; commit counts and offsets together.

        A file that cannot be read is reported in ``errors`` (and :meth:`status`); the others go
        on. If the commit fails, the in-memory state is reloaded from the store on the next call.
        """
        if not self._started:
            self.start()
        try:
            return self._ingest(now)
        except BaseException:
            # Memory is ahead of the store now: start again from what was committed.
            self._started = False
            raise

    def _ingest(self, now: int) -> LogTickResult:
        window = self.window_of(now)
        states: dict[str, bytes] = {}
        cf: list[str] = []
        cw: list[int] = []
        ct: list[IntArray] = []
        cn: list[IntArray] = []
        findings: list[Finding] = list(self._session_unsaved)
        errors: dict[str, str] = {}
        n_lines = n_skipped = n_new = 0
        for f in self._files:
            before = f.tailer.state.counts.skipped
            error: DataError | None
            try:
                lines = f.tailer.poll()
                # Lines read before an error (an old file drained, its successor unreadable)
                # are counted: the read offset is past them.
                error = f.tailer.deferred_error
            except DataError as e:
                error, lines = e, []
            f.error = None if error is None else str(error)
            if f.failures is None:
                f.failures = FailureLog(log, f"log file {f.name}", traceback=False)
            if error is not None:
                errors[f.name] = str(error)
                f.failures.failed(error)
            else:
                f.failures.succeeded()
            self._note_waiting(f)
            tail = f.tailer.state
            n_skipped += tail.counts.skipped - before
            if f.header is None and (lines or f.held):
                lines = self._hold_for_header(f, lines, now)
                if f.held:
                    continue  # nothing of this file committed: its lines are read again
            if f.to_emit is not None:
                f.emitted_until = f.to_emit
            # A clock going back must not put lines into a window already emitted.
            w = window if f.emitted_until is None else max(window, f.emitted_until + self.window_ms)
            reported = f.candidates
            f.candidates = []
            if lines:
                ids, new = self._mine(f, lines, now, findings)
                n_new += new
                uniq, cnt = np.unique(ids, return_counts=True)
                bucket = f.pending.setdefault(w, {})
                for t, c in zip(uniq.tolist(), cnt.tolist(), strict=True):
                    bucket[t] = bucket.get(t, 0) + c
                cf.extend([f.name] * len(uniq))
                cw.extend([w] * len(uniq))
                ct.append(uniq)
                cn.append(cnt.astype(np.int64))
                if f.emitted_until is None:
                    f.emitted_until = w - self.window_ms
                f.lines += len(lines)
                n_lines += len(lines)
            self._close_idle_sessions(f, now, findings)
            self._report_live(f, reported, now, findings)
            tail_dict = tail.to_dict()
            scorer = self.session_scorers.get(f.name)
            sessions = scorer.saved_state() if scorer is not None else b""
            changed = (
                lines
                or reported
                or f.to_emit is not None
                or tail_dict != f.saved_tail
                or sessions != f.session_state
            )
            if changed:
                states[f.name] = self._blob(f, tail_dict, sessions)
        counts = LogCounts(
            cf,
            np.array(cw, np.int64),
            np.concatenate(ct) if ct else np.empty(0, np.int64),
            np.concatenate(cn) if cn else np.empty(0, np.int64),
        )
        new_f = self.store.add_findings(findings) if findings else 0
        # One transaction: the counts of these lines and the offsets after them.
        self.store.commit_log_progress(states, counts)
        self._session_unsaved = []
        for f in self._files:
            if f.to_emit is not None:
                for old in [w for w in f.pending if w <= f.to_emit]:
                    del f.pending[old]
                f.to_emit = None
            if f.name in states:
                f.saved_tail = f.tailer.state.to_dict()
                scorer = self.session_scorers.get(f.name)
                f.session_state = scorer.saved_state() if scorer is not None else b""
        return LogTickResult(
            n_lines, n_skipped, n_new, new_f, len(findings) - new_f, errors, findings
        )

    def _note_waiting(self, f: _File) -> None:
        """Log once that a file is not there (a typo, a directory not made yet)."""
        if not f.tailer.waiting:
            f.waiting_logged = False
            return
        if not f.waiting_logged:
            log.warning("log file %s: %s", f.name, _waiting(f.spec.path))
            f.waiting_logged = True

    def _hold_for_header(self, f: _File, lines: list[str], now: int) -> list[str]:
        """The lines to mine now: none while the file's first lines are too few to learn its
        header from (they are held, uncommitted); all held ones once there are enough, or once
        they waited :data:`HEADER_MAX_WINDOWS` windows (a quiet file is mined anyway)."""
        if f.held_since is None:
            f.held_since = now
        f.held.extend(lines)
        f.held_bytes += sum(map(len, lines))
        waited = now - f.held_since >= HEADER_MAX_WINDOWS * self.window_ms
        if len(f.held) < HEADER_MIN_LINES and f.held_bytes < HEADER_MAX_BYTES and not waited:
            return []
        lines, f.held, f.held_bytes, f.held_since = f.held, [], 0, None
        return lines

    def _report_live(
        self,
        f: _File,
        candidates: list[tuple[int, str, int]],
        now: int,
        findings: list[Finding],
    ) -> None:
        """New-template findings for last tick's new ids that are still templates of their own:
        an id merged into an older one since was a parameter's second value, not a new event."""
        if not candidates:
            return
        ids = np.array([t for t, _, _ in candidates], dtype=np.int64)
        live = f.miner.resolve(ids)
        for (t, line, before), head in zip(candidates, live.tolist(), strict=True):
            if head == t:
                findings.append(self._new_template_finding(f, t, line, before, now))

    def _mine(
        self, f: _File, lines: list[str], now: int, findings: list[Finding]
    ) -> tuple[IntArray, int]:
        """Template ids of ``lines``; their new ids become :attr:`_File.candidates`, reported
        on the next tick if still live."""
        if f.header is None:
            f.header = HeaderFormat.detect(lines[:_HEADER_SAMPLE])
            log.info("log file %s: header %s", f.name, f.header.rule)
        series = pl.Series("line", lines, dtype=pl.String)
        messages = f.header.split_many(series)
        ids = np.asarray(f.miner.add(messages), dtype=np.int64)
        new_mask = ids >= f.next_id
        n_new = 0
        if new_mask.any():
            new_ids, first = np.unique(ids[new_mask], return_index=True)
            at = np.flatnonzero(new_mask)[first]  # the first line of each new template
            n_new = len(new_ids)
            made = 0
            for t, i in sorted(zip(new_ids.tolist(), at.tolist(), strict=True), key=lambda x: x[1]):
                if f.lines + i < self.config.warmup_lines:
                    continue
                if made == MAX_NEW_TEMPLATE_FINDINGS:
                    log.warning("log file %s: more new templates this tick than reported", f.name)
                    break
                f.candidates.append((t, _cap(lines[i]), f.lines + i))
                made += 1
            f.next_id = int(ids.max()) + 1
        if f.session_re is not None:
            self._sessions(f, series, ids, now, findings)
        return ids, n_new

    def _new_template_finding(
        self, f: _File, template_id: int, line: str, lines_before: int, now: int
    ) -> Finding:
        key = describe(
            series_key(NEW_TEMPLATE_DETECTOR, {"file": f.name, "template": str(template_id)})
        )
        text = f.miner.template(template_id)
        return Finding(
            # Not by time: a replay after a crash finds the same template and the same finding.
            id=Finding.make_id(FindingKind.LOG, key, 0, NEW_TEMPLATE_DETECTOR),
            kind=FindingKind.LOG,
            key=key,
            start=now,
            end=now,
            score=NEW_TEMPLATE_SCORE,
            severity=severity_for_score(NEW_TEMPLATE_SCORE),
            detector=NEW_TEMPLATE_DETECTOR,
            summary=f"{f.name}: new log template {template_id}: {_short(text)}",
            evidence={
                "file": f.name,
                "path": str(f.spec.path),
                "template_id": template_id,
                "template": _cap(text),
                "example": _cap(line),
                # The file's lines before this one, this tick's earlier lines included
                # (f.lines alone counts only the ticks before).
                "lines_before": lines_before,
            },
        )

    def _sessions(
        self, f: _File, lines: pl.Series, ids: IntArray, now: int, findings: list[Finding]
    ) -> None:
        scorer = self.session_scorers.get(f.name)
        if scorer is None or f.session_re is None:
            return
        # Lines replayed after a failed commit were given to the scorer already.
        seen = self._session_lines.get(f.name, f.lines) - f.lines
        self._session_lines[f.name] = f.lines + len(lines)
        if seen >= len(lines):
            return
        if seen > 0:
            lines, ids = lines[seen:], ids[seen:]
        # The scorer learned ids of earlier ticks: those merged since are rewritten first, and
        # this tick's ids reach it as the live ids they answer as (as the counts do).
        roots = f.miner.resolve(np.arange(f.next_id, dtype=np.int64))
        known = f.session_roots
        moved = np.flatnonzero(roots[: len(known)] != known)
        if len(moved):
            scorer.remap_templates(dict(zip(moved.tolist(), roots[moved].tolist(), strict=True)))
        f.session_roots = roots
        ids = roots[ids]
        pattern = f.session_re
        group = pattern.groupindex.get("session", 1 if pattern.groups else 0)
        try:
            # Polars' regex engine over the whole column; a group 0 is made group 1.
            vec = pattern.pattern if group else f"({pattern.pattern})"
            keys: list[str | None] = lines.str.extract(vec, max(group, 1)).to_list()
        except pl.exceptions.ComputeError:
            # A Python-only construct (look-behind, back-reference): line by line.
            keys = [m.group(group) if (m := pattern.search(x)) else None for x in lines]
        found = scorer.observe(keys, ids, now)
        self._session_unsaved.extend(found)
        findings.extend(found)

    def _close_idle_sessions(self, f: _File, now: int, findings: list[Finding]) -> None:
        """Findings of the file's sessions that went idle by ``now``: on every tick, so that the
        last sessions of a file gone quiet are scored too."""
        scorer = self.session_scorers.get(f.name)
        if scorer is None or f.session_re is None:
            return
        found = scorer.close_idle(now)
        self._session_unsaved.extend(found)
        findings.extend(found)

    def template_text(self, file: str, template_id: int) -> str:
        """The current text of template ``template_id`` of log file ``file`` (its name)."""
        for f in self._files:
            if f.name == file:
                return f.miner.template(template_id)
        raise KeyError(f"no log file named {file!r}")

    def _blob(self, f: _File, tail: dict[str, Any], sessions: bytes = b"") -> bytes:
        state = {
            "version": _STATE_VERSION,
            "path": str(f.spec.path),
            "tail": tail,
            "header": None if f.header is None else dataclasses.asdict(f.header),
            "lines": f.lines,
            "next_id": f.next_id,
            "candidates": f.candidates,
            "emitted_until": f.to_emit if f.to_emit is not None else f.emitted_until,
        }
        if sessions:
            state["sessions"] = len(sessions)
        head = json.dumps(state, separators=(",", ":")).encode()
        # The miner goes with the offsets: template ids stay those the counted lines got. The
        # session model after it holds ids of that miner.
        return struct.pack("<I", len(head)) + head + f.miner.to_bytes() + sessions

    # -- status -----------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        """Per file: path, lines counted, read offset, skipped lines by reason, templates."""
        out: dict[str, Any] = {}
        for f in self._files:
            st = f.tailer.state
            c = st.counts
            out[f.name] = {
                "path": str(f.spec.path),
                "lines": f.lines,
                "offset": st.current.offset if st.current else None,
                "templates": len(f.miner),
                "skipped": {"binary": c.binary, "too_long": c.too_long, "blank": c.blank},
                "invalid_utf8": c.invalid_utf8,
                "rotations": c.rotations,
                "truncations": c.truncations,
                "lost_rotated": c.lost_rotated,
                "lost_truncated": c.lost_truncated,
                "error": f.error,
                "waiting": _waiting(f.spec.path) if f.tailer.waiting else None,
                # Lines read but not counted yet: the header is learned from more of them.
                "held_for_header": len(f.held),
            }
        return out


def _header(saved: dict[str, Any] | None) -> HeaderFormat | None:
    """The header layout saved with a file's state (JSON made its tuples lists)."""
    if saved is None:
        return None
    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in saved.items()}
    try:
        return HeaderFormat(**fields)
    except TypeError:
        # Saved by a relia whose layout had other fields: learn it again from the next lines.
        log.warning("the saved header layout does not fit this relia; learning it again")
        return None


def _waiting(path: Path) -> str:
    """Why a file is waited for, in words."""
    if not path.parent.is_dir():
        return f"waiting for the file: no such file, nor its directory {path.parent}"
    return "waiting for the file: no such file"


def _cap(text: str) -> str:
    """``text`` cut to :data:`_TEXT_IN_EVIDENCE` characters, saying how long it was."""
    if len(text) <= _TEXT_IN_EVIDENCE:
        return text
    return text[:_TEXT_IN_EVIDENCE] + f"… ({len(text)} characters)"


def _short(text: str) -> str:
    return text if len(text) <= _TEXT_IN_SUMMARY else text[: _TEXT_IN_SUMMARY - 1] + "…"
