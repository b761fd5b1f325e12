"""Correlation: findings that belong together become one :class:`Incident`.

Pure: no clock, disk or network; the engine passes ``now`` (its clock, int64 ms UTC) and the
findings it stored. Findings are few (tens per tick, not samples), so this is plain Python written
for clarity rather than speed.

The rules, in the order :meth:`IncidentCorrelator.update` applies them to each finding:

1. **Grouping.** A finding joins an open incident when it overlaps the incident's span in time
   (within ``group_window``) and either shares the value of an identifying label (one of
   ``group_by``; or it is on a key the incident already holds), or its service is one of the
   incident's services or the other end of a ``topology`` edge from one. The service of a finding
   is its ``service`` label and its ``job`` label (either may name a topology node), so one
   service's findings group even when ``group_by`` leaves those labels out. A finding matching
   several open incidents merges them into the oldest one.
2. **Same key.** A finding on a key whose last incident is still open joins it even outside the
   group window; one whose last incident resolved less than ``reopen_window`` ago reopens it.
3. **Flapping.** Each time a key goes wrong again after being quiet for ``resolve_after`` is an
   *episode*. A key with ``flap_max`` episodes within ``flap_window`` is flapping: its findings
   never open a new incident (they join, and if needed reopen, its last one), and an incident
   holding a flapping key is not resolved until the key stops flapping. So one on/off series
   opens at most ``flap_max`` incidents per ``flap_window`` and sends a bounded number of
   changes, however fast it flaps.
4. Otherwise the finding **opens** a new incident, whose id is a hash of the finding's id.

After the findings, every open incident whose findings all ended more than ``resolve_after``
before ``now`` (and that holds no flapping key) is **resolved**.
"""

from __future__ import annotations

import heapq
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from relia.config import IncidentsConfig
from relia.incidents.model import (
    SEVERITY_RANK,
    Finding,
    FindingKind,
    Incident,
    IncidentStatus,
    Severity,
)

__all__ = ["IncidentCorrelator", "finding_labels", "key_labels", "rank_causes"]

LabelsOf = Callable[[Finding], Mapping[str, str]]
#: Gives a stored incident by id with its stored findings, or None (see IncidentCorrelator).
#: ``recall_listing`` has the same shape, given a finding id: the stored incident listing it.
Recall = Callable[[str], "tuple[Incident, list[Finding]] | None"]

_SEVERITY_WEIGHT = {Severity.INFO: 0.0, Severity.WARNING: 0.5, Severity.CRITICAL: 1.0}
# A label value that stands for "the same key" in the identity sets: a key without any of the
# group_by labels (a host metric, a log file) still groups with itself.
_KEY = "__key__"
# The labels that name a finding's service in the topology.
_SERVICE_LABELS = ("service", "job")
# One item inside a key's braces: a name, bare or quoted (Prometheus 3 quotes names that are
# not legacy ones), then ="value" unless it is the quoted metric name ({"my metric",a="1"}).
_QUOTED = r'"((?:[^"\\]|\\.)*)"'
_ITEM = re.compile(rf"(?:([A-Za-z_][A-Za-z0-9_]*)|{_QUOTED})(?:={_QUOTED})?(?:,|(?=}}$))")
_UNESCAPE = re.compile(r"\\(.)")
# How many merges a recalled incident's ``merged_into`` is followed through to its survivor.
_MERGE_HOPS = 16
# How many dropped finding ids of each key an incident remembers, newest last (see _drop): a
# finding reported again is told from a late new one by its id; only one older than all of them
# is judged by its start (the memory of a key flapping for days must stay bounded).
_DROPPED_IDS_PER_KEY = 200


def _unescape(text: str) -> str:
    return _UNESCAPE.sub(lambda m: "\n" if m.group(1) == "n" else m.group(1), text)


def key_labels(key: str) -> dict[str, str]:
    """The labels of a PromQL-style key (``name{a="1",b="2"}``, ``{"my metric","a-b"="1"}``);
    ``{}`` for a key without (or one that does not parse)."""
    brace = key.find("{")  # a name holding "{" is quoted, inside the braces
    if brace < 0 or not key.endswith("}"):
        return {}
    out: dict[str, str] = {}
    i, end = brace + 1, len(key) - 1
    while i < end:
        m = _ITEM.match(key, i)
        if m is None:
            return {}
        bare, quoted, value = m.group(1), m.group(2), m.group(3)
        if value is not None:
            out[bare if bare is not None else _unescape(quoted)] = _unescape(value)
        i = m.end()
    return out


def finding_labels(series_labels: Callable[[int], Mapping[str, str] | None]) -> LabelsOf:
    """A ``labels_of`` for :class:`IncidentCorrelator`: a metric finding's series labels (from
    ``series_labels(series_id)``, e.g. the engine's ``SeriesIndex.labels``; ``None`` or a
    ``KeyError`` when unknown), else the labels written in its key (log findings: ``file``), and
    for an SLO finding its ``slo`` and ``service`` (from its evidence)."""

    def labels_of(f: Finding) -> Mapping[str, str]:
        if f.series_id is not None:
            try:
                found = series_labels(f.series_id)
            except (KeyError, LookupError, ValueError):
                found = None
            except Exception:  # noqa: BLE001 - an unknown id (DataError) groups by its key
                found = None
            if found is not None:
                return found
        out = key_labels(f.key)
        if f.kind is FindingKind.SLO:
            for name in ("slo", "service"):
                value = f.evidence.get(name)
                if isinstance(value, str) and value:
                    out[name] = value
        return out

    return labels_of


@dataclass
class _State:
    """The working state of one incident (the public one is :attr:`snap`)."""

    id: str
    opened_at: int
    status: IncidentStatus = IncidentStatus.OPEN
    resolved_at: int | None = None
    # The findings it keeps, oldest first (a dict as an ordered set): the newest
    # ``max_per_key`` of each key (see MAX_FINDINGS_PER_KEY); older ones are dropped (_drop).
    finding_ids: dict[str, None] = field(default_factory=dict)
    finding_count: int = 0  # how many findings ever joined, dropped and merged in included
    snap: Incident | None = None
    # Running aggregates over every finding that joined (kept or dropped), kept so that matching
    # a finding against an incident is O(1) rather than O(its findings): with thousands of
    # findings in one incident the per-finding rescans were most of ``relia up``'s CPU.
    # The same for summarising it: with them a snapshot costs O(keys), not O(findings).
    keys: dict[str, list[str]] = field(default_factory=dict)  # key -> its kept ids, ordered
    idents: set[tuple[str, str]] = field(default_factory=set)  # union of the findings' idents
    nodes: set[str] = field(default_factory=set)  # union of the findings' service nodes
    span: tuple[int, int] | None = None  # (min start, max end); None: recompute
    shared: frozenset[tuple[str, str]] | None = None  # intersection of the findings' idents
    per_key: dict[str, dict[str, Any]] = field(default_factory=dict)  # see _fold
    stale_keys: set[str] = field(default_factory=set)  # per_key to redo (a finding grew)
    # What was dropped from ``keys``: per key the fold of its dropped findings (a refold of a
    # stale key starts from it) and the (first, last) start of them, by which a dropped finding
    # reported again (grown) is known to be this incident's. ``seeded_dropped``: the same
    # range inferred by :meth:`IncidentCorrelator.seed` from a capped stored record (the fold
    # itself is not stored: it is rebuilt as far as those findings are fed again).
    archive: dict[str, dict[str, Any]] = field(default_factory=dict)
    dropped: dict[str, tuple[int, int]] = field(default_factory=dict)
    seeded_dropped: dict[str, tuple[int, int]] = field(default_factory=dict)
    # The ids of the newest dropped findings of each key (_DROPPED_IDS_PER_KEY), and the latest
    # start of those forgotten beyond them: an unknown finding in ``dropped`` is one reported
    # again only if its id is listed here or it starts no later than that.
    dropped_ids: dict[str, dict[str, int]] = field(default_factory=dict)  # key -> {id: start}
    dropped_lost: dict[str, int] = field(default_factory=dict)
    floor: tuple[int, int] | None = None  # the span of the dropped findings (and a seeded one)
    severity_floor: Severity | None = None  # a seeded record's severity, when it dropped some


def rank_causes(
    findings: Iterable[Finding],
    nodes_of: Callable[[Finding], frozenset[str]] = lambda f: frozenset(),
    dependents: Mapping[str, frozenset[str]] | None = None,
) -> list[dict[str, Any]]:
    """Rank an incident's keys as its likely cause, best first: ``[{key, score, reason,
    summary}]`` (``summary``: that of the key's highest-scoring finding, what a person reads).

    Each key scores ``0.5·upstream + 0.25·earliness + 0.15·severity + 0.1·peak score``, each part
    in [0, 1]:

    - *upstream*: the share of the incident's other services that depend (directly or not) on
      the key's service in the topology; a failing dependency explains its dependents, and
      its own detector often fires later than theirs, so this weighs most.
    - *earliness*: 1 for the key that went wrong first, 0 for the last, linear between.
    - *severity*: info 0, warning 0.5, critical 1 (the highest of the key's findings).
    - *peak score*: the highest anomaly score of the key's findings.

    Ties go to the earlier onset, then the key's text, so the order is deterministic.
    """
    per_key: dict[str, dict[str, Any]] = {}
    for f in findings:
        _fold(per_key, f, nodes_of(f))
    return _rank(per_key, dependents or {})


#: How many findings of each key an incident keeps, the newest (those the store holds in its
#: ``finding_ids``, the correlator in memory). A key that flaps for as long as the incident stays
#: open makes a finding every few seconds or minutes (a soak test: 1,134 in 18 minutes, about
#: 100,000 a day), and the stored incident is rewritten whole on every change: it must grow with
#: its keys, not with its age. 20 is more than a person reads of one key (the newest show its
#: current pattern) and far more than a flap takes to count (``flap_max``). A dropped finding still
#: counts: in ``finding_count``, the span, severity, labels and cause (see ``_State.archive``).
MAX_FINDINGS_PER_KEY = 20

#: How many keys an incident's ``cause`` lists (best first). A storm can put thousands of keys
#: in one incident; nobody reads past the first few, and ranking them all on every update of the
#: incident was most of its cost. ``keys`` still lists every key.
MAX_CAUSES = 20


def _fold(per_key: dict[str, dict[str, Any]], f: Finding, nodes: frozenset[str]) -> None:
    """Fold one finding into the per-key summary that :func:`_rank` ranks."""
    k = per_key.get(f.key)
    if k is None:
        per_key[f.key] = {
            "onset": f.start,
            "severity": f.severity,
            "score": f.score,
            "nodes": frozenset(nodes),
            "summary": f.summary,
        }
        return
    if f.score > k["score"]:
        k["summary"] = f.summary
    k["onset"] = min(k["onset"], f.start)
    if SEVERITY_RANK[f.severity] > SEVERITY_RANK[k["severity"]]:
        k["severity"] = f.severity
    k["score"] = max(k["score"], f.score)
    if not nodes <= k["nodes"]:
        k["nodes"] = k["nodes"] | nodes  # frozensets: _rank groups keys by them


def _fold_summary(per_key: dict[str, dict[str, Any]], key: str, other: Mapping[str, Any]) -> None:
    """Fold another per-key summary of ``key`` into ``per_key`` (as if its findings came after)."""
    k = per_key.get(key)
    if k is None:
        per_key[key] = dict(other)
        return
    if other["score"] > k["score"]:
        k["summary"] = other["summary"]
    k["onset"] = min(k["onset"], other["onset"])
    if SEVERITY_RANK[other["severity"]] > SEVERITY_RANK[k["severity"]]:
        k["severity"] = other["severity"]
    k["score"] = max(k["score"], other["score"])
    if not other["nodes"] <= k["nodes"]:
        k["nodes"] = k["nodes"] | other["nodes"]


def _widen(span: tuple[int, int] | None, lo: int, hi: int) -> tuple[int, int]:
    return (lo, hi) if span is None else (min(span[0], lo), max(span[1], hi))


def _rank(
    per_key: Mapping[str, Mapping[str, Any]],
    deps: Mapping[str, frozenset[str]],
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """Rank the per-key summaries (see :func:`rank_causes`); the best ``limit`` of them."""
    if not per_key:
        return []
    first = min(k["onset"] for k in per_key.values())
    span = max(k["onset"] for k in per_key.values()) - first
    all_nodes: set[str] = set().union(*(k["nodes"] for k in per_key.values()))
    # Totals first, words only for the keys that are listed. Keys share few distinct service
    # sets, so what lies below each set is worked out once; sort keys are (-total, onset, key).
    below_of: dict[frozenset[str], tuple[set[str], float]] = {}
    weight = _SEVERITY_WEIGHT
    ranked: list[tuple[float, int, str]] = []
    for key, k in per_key.items():
        nodes = k["nodes"]
        got = below_of.get(nodes)
        if got is None:
            others = all_nodes - nodes
            below_set = {n for n in others if any(n in deps.get(m, frozenset()) for m in nodes)}
            got = (below_set, len(below_set) / len(others) if others else 0.0)
            below_of[nodes] = got
        onset = k["onset"]
        earliness = 1.0 if span == 0 else 1.0 - (onset - first) / span
        total = 0.5 * got[1] + 0.25 * earliness + 0.15 * weight[k["severity"]] + 0.1 * k["score"]
        # Rounded for the order: totals equal in real arithmetic may differ in the last bit
        # (0.1 * 0.8 + 0.25 * 0.5 vs 0.25 + ...), and must fall through to onset, then key.
        ranked.append((-round(total, 9), onset, key))
    best = sorted(ranked) if limit is None else heapq.nsmallest(limit, ranked)
    out: list[dict[str, Any]] = []
    for neg_total, onset, key in best:
        total = -neg_total
        k = per_key[key]
        below = below_of[k["nodes"]][0]
        reasons: list[str] = []
        if below:
            reasons.append("upstream of " + ", ".join(sorted(below)))
        if len(per_key) > 1:
            lag = onset - first
            reasons.append("went wrong first" if lag == 0 else f"went wrong {_ms_text(lag)} later")
        reasons.append(f"{k['severity'].value}, score {float(k['score']):.2f}")
        out.append(
            {
                "key": key,
                "score": round(total, 3),
                "reason": "; ".join(reasons),
                "summary": k["summary"],
            }
        )
    return out


def _ms_text(ms: int) -> str:
    s = ms / 1000
    if s < 120:
        return f"{s:g}s"
    if s < 7200:
        return f"{s / 60:.0f}m"
    return f"{s / 3600:.1f}h"


class IncidentCorrelator:
    """Groups findings into incidents that open, update and resolve (see the module's rules).

    ``labels_of`` gives a finding's labels (see :func:`finding_labels`). ``retain`` bounds the
    resolved incidents kept in memory past the reopen and flap windows; ``max_per_key`` the
    findings an incident keeps of each key (:data:`MAX_FINDINGS_PER_KEY`). Keep one correlator
    per engine; after a restart, :meth:`seed` it from the store before the first
    :meth:`update`. Not thread-safe: the engine calls it from its tick.

    ``recall`` gives a stored incident by id with its stored findings (None: not stored). An
    incident id is never reused for a second opening: a finding of an incident the correlator
    forgot (pruned from memory, or not restored at a restart) that grows again reopens the
    stored incident from its stored version. Without ``recall``, such a finding opens a new
    incident whose id also hashes the time it opened. ``recall_listing`` gives the stored
    incident whose ``finding_ids`` lists a finding id (with its stored findings): a finding of a
    forgotten incident other than the one that opened it returns to it the same way, so that
    no two stored incidents list one finding. Both are asked only about a finding unknown here
    and older than the reopen and flap windows (one that grew, or a late one).
    """

    def __init__(
        self,
        config: IncidentsConfig,
        labels_of: LabelsOf,
        *,
        retain: int = 1000,
        max_per_key: int = MAX_FINDINGS_PER_KEY,
        recall: Recall | None = None,
        recall_listing: Recall | None = None,
    ) -> None:
        self.config = config
        self._retain = max(0, retain)
        self._cap = max(1, max_per_key)
        self._labels_of = labels_of
        self._window = int(config.group_window * 1000)
        self._resolve = int(config.resolve_after * 1000)
        self._reopen = int(config.reopen_window * 1000)
        self._flap_window = int(config.flap_window * 1000)
        self._flap_max = config.flap_max
        self._recall = recall
        self._recall_listing = recall_listing
        # Only an incident resolved longer ago than this is ever forgotten (_prune; a restart
        # restores more), so only a finding that started before it may be one of its.
        self._horizon = max(self._reopen, self._flap_window)
        self._group_by = tuple(config.group_by)
        # Undirected neighbours (for grouping) and transitive dependents (for cause ranking).
        self._neighbours: dict[str, set[str]] = {}
        for svc, deps in config.topology.items():
            for d in deps:
                self._neighbours.setdefault(svc, set()).add(d)
                self._neighbours.setdefault(d, set()).add(svc)
        self._dependents = _dependents(config.topology)
        self._findings: dict[str, Finding] = {}
        self._ident: dict[str, frozenset[tuple[str, str]]] = {}
        self._nodes: dict[str, frozenset[str]] = {}
        self._owner: dict[str, str] = {}  # finding id -> incident id
        self._incidents: dict[str, _State] = {}
        self._last_of_key: dict[str, str] = {}  # key -> the incident it last joined
        # key -> the incidents that dropped findings of it (see _holder_of_dropped)
        self._dropping: dict[str, set[str]] = {}
        self._last_end: dict[str, int] = {}  # key -> end of its latest finding
        self._episodes: dict[str, deque[int]] = {}  # key -> start of each episode
        self._taking: str | None = None  # the finding _take is correlating

    # -- public ----------------------------------------------------------------------------

    def incidents(self) -> list[Incident]:
        """The incidents held in memory (open ones and recently resolved), oldest first."""
        snaps = [s.snap for s in self._incidents.values() if s.snap is not None]
        return sorted(snaps, key=lambda i: (i.opened_at, i.id))

    def update(self, findings: list[Finding], now: int) -> list[Incident]:
        """Take new or grown findings (a known id replaces its finding) and the engine's ``now``;
        return the incidents that changed, with ``version`` bumped where a person should hear."""
        bump: set[str] = set()
        touched: set[str] = set()
        opened: set[str] = set()
        out: dict[str, Incident] = {}
        latest: dict[str, Finding] = {}
        for f in findings:
            latest[f.id] = f  # the last one given for an id wins
        ordered = sorted(latest.values(), key=lambda f: (f.start, f.end, f.id))
        # Before any change (a recall may fail: nothing is half done), bring back the stored
        # incidents that forgotten findings opened.
        taken = {f.id for f in ordered if self._forgotten_opener(f, now)}
        for f in ordered:
            self._take(f, now, bump, touched, opened, out, f.id in taken)
        for st in list(self._incidents.values()):
            if st.status is IncidentStatus.OPEN and self._quiet(st, now):
                st.status = IncidentStatus.RESOLVED
                st.resolved_at = now
                bump.add(st.id)
                touched.add(st.id)
        for iid in sorted(touched):
            if iid not in self._incidents:
                continue
            snap = self._snapshot(self._incidents[iid], now, iid in bump, iid in opened)
            if snap is not None:
                out[iid] = snap
        self._prune(now)
        return sorted(out.values(), key=lambda i: (i.opened_at, i.id))

    def seed(
        self,
        incidents: list[Incident],
        findings: list[Finding],
        history: Iterable[Finding] = (),
    ) -> None:
        """Restore state after a restart from what the store holds: ``incidents`` (the open ones,
        and resolved ones recent enough to reopen) and their ``findings``. A finding whose id is
        seeded then grows in its incident instead of opening a duplicate.

        An incident that dropped findings (``finding_count`` above its ``finding_ids``) keeps its
        stored span and severity as a floor, and a stored finding of one of its full keys that
        started before the oldest one it kept is taken as one it dropped: fed again (the engine
        correlates the findings stored without an incident) it is folded back into the incident
        without counting twice.

        ``history``: the stored findings of the last ``flap_window`` (and ``resolve_after``
        before it), from which the episodes of each key are counted again: a key flapping before
        the restart still is, though its incident lists only its newest findings."""
        by_id = {f.id: f for f in findings}
        held: set[str] = set()
        for inc in sorted(incidents, key=lambda i: (i.updated_at, i.id)):
            if inc.merged_into is None:
                held |= self._restore(inc, by_id, claim_keys=True)
        # Episodes from the findings' history, so a key flapping before the restart still is:
        # the incidents list only the newest findings of each key, so ``history`` (every stored
        # finding of the flap window) brings back the episodes of those they dropped.
        seen = {f.id: f for f in by_id.values() if f.id in held}
        for f in history:
            seen.setdefault(f.id, f)
        for f in sorted(seen.values(), key=lambda f: (f.start, f.id)):
            self._episode(f)

    def _restore(
        self, inc: Incident, by_id: Mapping[str, Finding], *, claim_keys: bool
    ) -> set[str]:
        """Restore the stored incident ``inc`` (not merged away) with those of its findings in
        ``by_id``; returns their ids. ``claim_keys``: its keys' last incident is it (a seed, in
        order of update), else only for keys that have none (a recall)."""
        st = _State(
            id=inc.id,
            opened_at=inc.opened_at,
            status=inc.status,
            resolved_at=inc.resolved_at,
            snap=inc,
            finding_count=inc.finding_count,
            # Trimmed from the store or dropped: the incident keeps its stored span.
            floor=(inc.start, inc.end),
        )
        held: set[str] = set()
        for key in inc.keys:  # in their order, which its capped finding_ids no longer give
            st.keys[key] = []
        for fid in inc.finding_ids:
            f = by_id.get(fid)
            if f is None or fid in self._owner:  # trimmed from the store (or held already)
                continue
            self._remember(f)
            self._owner[fid] = inc.id
            held.add(fid)
            self._add(st, fid)  # drops the oldest of a record stored before the cap
        for key in [k for k, kept in st.keys.items() if not kept]:
            del st.keys[key]  # all its findings trimmed
        if inc.finding_count > len(inc.finding_ids):
            st.severity_floor = inc.severity
            for key, kept in st.keys.items():
                oldest = min(self._findings[i].start for i in kept)
                if len(kept) >= self._cap and oldest > inc.start:
                    st.seeded_dropped[key] = (inc.start, oldest - 1)
                    self._dropping.setdefault(key, set()).add(st.id)
        self._incidents[inc.id] = st
        for key in inc.keys:
            if claim_keys or key not in self._last_of_key:
                self._last_of_key[key] = inc.id
        return held

    def _forgotten_opener(self, f: Finding, now: int) -> bool:
        """Whether the id of an incident ``f`` would open (``Incident.make_id(f.id)``) may be
        in use already: ``f`` is unknown and old enough to be of an incident this correlator
        forgot. With ``recall_listing``, the stored incident that lists ``f`` is restored first
        (whether ``f`` opened it or joined it), so that ``f`` returns to it. Failing that, with
        ``recall``, the stored incident ``f`` opened (its merge survivor, for one merged away;
        ``f`` may have been dropped from its list); True then only if ``f`` is still not held
        (the stored id is taken all the same)."""
        if f.id in self._owner or f.start >= now - self._horizon:
            return False
        iid = Incident.make_id(f.id)
        if iid not in self._incidents and self._holder_of_dropped(f) is not None:
            return False  # one a held incident dropped (a restart feeds them all): no lookup
        if iid in self._incidents:
            return True
        if self._recall_listing is not None:
            listed = self._recall_listing(f.id)
            if listed is not None:
                self._bring_back(listed)
                if f.id in self._owner:
                    return False
        if self._recall is None:
            return True  # it may have been pruned: never reuse it
        got = self._recall(iid)
        if got is None:
            return False
        self._bring_back(got)
        return f.id not in self._owner

    def _bring_back(self, got: tuple[Incident, list[Finding]]) -> None:
        """Restore a recalled stored incident with its stored findings, unless held (for one
        merged away: its survivor, recalled in turn)."""
        for _ in range(_MERGE_HOPS):
            inc, fs = got
            if inc.merged_into is None:
                if inc.id not in self._incidents:
                    self._restore(inc, {g.id: g for g in fs}, claim_keys=False)
                break
            if inc.merged_into in self._incidents:
                break
            nxt = None if self._recall is None else self._recall(inc.merged_into)
            if nxt is None:
                break
            got = nxt

    def holds_dropped(self, f: Finding) -> bool:
        """Whether ``f``, unknown, is one an incident dropped (it lists only the newest findings
        of each key): fed again, it folds back into that incident without counting again."""
        return f.id not in self._owner and self._holder_of_dropped(f) is not None

    # -- one finding -----------------------------------------------------------------------

    def _take(
        self,
        f: Finding,
        now: int,
        bump: set[str],
        touched: set[str],
        opened: set[str],
        out: dict[str, Incident],
        taken: bool = False,
    ) -> None:
        """Correlate one finding; ``taken``: the id it would open an incident under may be in
        use (:meth:`_forgotten_opener`)."""
        known = f.id in self._owner
        self._remember(f)
        if not known:
            held = self._holder_of_dropped(f)
            if held is not None:
                self._take_dropped(f, held[0], held[1], now, bump, touched, out)
                return
        self._taking = f.id  # dropped at once, it is still needed until the end (_drop)
        flapping = self._flapping(f.key, f.start)  # before this episode counts
        if not known:
            self._episode(f)
        if known:
            st = self._incidents[self._owner[f.id]]
            if st.status is IncidentStatus.RESOLVED:  # it grew after all: the incident is back
                self._reopen_state(st, bump)
        else:
            matches = [s for s in self._open() if self._matches(f, s)]
            if matches:
                st = matches[0]
            else:
                st = self._last_state(f.key) or self._new_state(f, now, opened, taken)
                if st.status is IncidentStatus.RESOLVED:
                    assert st.resolved_at is not None
                    if flapping or now - st.resolved_at < self._reopen:
                        self._reopen_state(st, bump)
                    else:
                        st = self._new_state(f, now, opened, taken)
            if f.key not in st.keys:
                bump.add(st.id)
            self._owner[f.id] = st.id
            st.finding_count += 1
            self._add(st, f.id)
        touched.add(st.id)
        self._last_of_key[f.key] = st.id
        # A finding (new or grown) that now matches other open incidents merges them.
        others = [s for s in self._open() if s is not st and self._matches(f, s)]
        if others:
            self._merge([st, *others], now, bump, touched, out)
        self._taking = None
        if f.id not in self._owner:  # a late finding dropped at once (older than those kept)
            self._forget(f.id)

    def _holder_of_dropped(self, f: Finding) -> tuple[_State, bool] | None:
        """The incident that dropped a finding like ``f`` (unknown, on a key it dropped findings
        of, starting within their range), and whether it was dropped here (not since a restart).
        The key's last incident is tried first; None if none did."""
        ids = self._dropping.get(f.key)
        if not ids:
            return None
        last = self._last_of_key.get(f.key)
        for iid in sorted(ids, key=lambda i: (i != last, i)):
            st = self._incidents[iid]
            r = st.dropped.get(f.key)
            if r is not None and r[0] <= f.start <= r[1]:
                # Within the range of what it dropped, but maybe a late new finding: only a
                # dropped one by its id, or one older than every id it still remembers.
                lost = st.dropped_lost.get(f.key)
                if f.id in st.dropped_ids.get(f.key, ()) or (lost is not None and f.start <= lost):
                    return st, True
            r = st.seeded_dropped.get(f.key)
            if r is not None and r[0] <= f.start <= r[1]:
                return st, False
        return None

    def _take_dropped(
        self,
        f: Finding,
        st: _State,
        exact: bool,
        now: int,
        bump: set[str],
        touched: set[str],
        out: dict[str, Incident],
    ) -> None:
        """A finding ``st`` dropped is reported again (grown; or, after a restart, fed again):
        fold it into what ``st`` keeps of dropped findings, then forget it again. It does not
        count again, and reopens ``st`` only where a finding ``st`` still held would: a grown
        one, not one a restart feeds again unchanged (which ends within ``st``'s span)."""
        if st.status is IncidentStatus.RESOLVED:
            end = self._span(st)[1] if st.finding_ids else (st.floor or (f.end, f.end))[1]
            if exact or f.end > end:
                self._reopen_state(st, bump)
        ident, nodes = self._ident[f.id], self._nodes[f.id]
        _fold(st.archive, f, nodes)
        _fold(st.per_key, f, nodes)
        st.shared = ident if st.shared is None else st.shared & ident
        st.idents |= ident
        st.nodes |= nodes
        st.floor = _widen(st.floor, f.start, f.end)
        if st.span is not None:
            st.span = _widen(st.span, f.start, f.end)
        touched.add(st.id)
        self._last_of_key[f.key] = st.id
        others = [s for s in self._open() if s is not st and self._matches(f, s)]
        if others:
            self._merge([st, *others], now, bump, touched, out)
        self._forget(f.id)

    def _new_state(self, f: Finding, now: int, opened: set[str], taken: bool = False) -> _State:
        iid = Incident.make_id(f.id)
        if taken or iid in self._incidents:
            # Its plain id belongs to an earlier opening (stored, or maybe forgotten): a second
            # one under it would start again at version 1, overwrite the stored history and
            # hit notification keys the outbox already holds.
            iid = Incident.make_id(f"{f.id}@{now}")
        st = _State(id=iid, opened_at=now)
        self._incidents[iid] = st
        opened.add(iid)
        return st

    def _reopen_state(self, st: _State, bump: set[str]) -> None:
        st.status = IncidentStatus.OPEN
        st.resolved_at = None
        bump.add(st.id)

    def _merge(
        self,
        states: list[_State],
        now: int,
        bump: set[str],
        touched: set[str],
        out: dict[str, Incident],
    ) -> None:
        """Merge ``states`` into the oldest; the others are resolved with ``merged_into``."""
        states.sort(key=lambda s: (s.opened_at, s.id))
        keep, gone = states[0], states[1:]
        keys = set(self._keys(keep))
        for st in gone:
            if not set(self._keys(st)) <= keys:
                bump.add(keep.id)
            # Its last word before its findings move (keep may drop and forget some of them).
            # Not bumped, even if its severity rose in this update: merged away is its one next
            # version (prev + 1), carrying that severity.
            base = (
                None
                if st.snap is None
                else self._snapshot(st, now, False, False, force=True, quiet=True)
            )
            # What ``st`` dropped first, so that dropping more into ``keep`` folds onto it.
            keep.finding_count += st.finding_count
            for key, k in st.archive.items():
                _fold_summary(keep.archive, key, k)
                _fold_summary(keep.per_key, key, k)
            for mine, theirs in (
                (keep.dropped, st.dropped),
                (keep.seeded_dropped, st.seeded_dropped),
            ):
                for key, (lo, hi) in theirs.items():
                    mine[key] = _widen(mine.get(key), lo, hi)
                    self._dropping[key].discard(st.id)
                    self._dropping[key].add(keep.id)
            for key, ids in st.dropped_ids.items():
                keep.dropped_ids.setdefault(key, {}).update(ids)
                self._trim_dropped_ids(keep, key)
            for key, lost in st.dropped_lost.items():
                keep.dropped_lost[key] = max(lost, keep.dropped_lost.get(key, lost))
            if st.floor is not None:
                keep.floor = _widen(keep.floor, *st.floor)
                if keep.span is not None:
                    keep.span = _widen(keep.span, *st.floor)
            if st.shared is not None:
                keep.shared = st.shared if keep.shared is None else keep.shared & st.shared
            keep.idents |= st.idents
            keep.nodes |= st.nodes
            if st.severity_floor is not None and (
                keep.severity_floor is None
                or SEVERITY_RANK[st.severity_floor] > SEVERITY_RANK[keep.severity_floor]
            ):
                keep.severity_floor = st.severity_floor
            # Its keys in their first order (its kept ids no longer give it: some were dropped).
            for key in st.keys:
                keep.keys.setdefault(key, [])
            for fid in list(st.finding_ids):
                self._owner[fid] = keep.id
                key = self._findings[fid].key
                self._add(keep, fid)
                keys.add(key)
                if self._last_of_key.get(key) == st.id:
                    self._last_of_key[key] = keep.id
            del self._incidents[st.id]
            touched.discard(st.id)
            if base is None:  # opened in this very update: nobody heard of it, so no news
                continue
            out[st.id] = base.model_copy(
                update={
                    "status": IncidentStatus.RESOLVED,
                    "resolved_at": now,
                    "merged_into": keep.id,
                    "finding_ids": [],
                    "finding_count": 0,
                    "version": base.version + 1,
                    "updated_at": now,
                }
            )
        touched.add(keep.id)

    # -- rules -----------------------------------------------------------------------------

    def _add(self, st: _State, fid: str) -> None:
        """Append a remembered finding to ``st`` and fold it into the state's aggregates."""
        f = self._findings[fid]
        st.finding_ids[fid] = None
        kept = st.keys.setdefault(f.key, [])
        kept.append(fid)
        ident = self._ident[fid]
        st.shared = ident if st.shared is None else st.shared & ident
        st.idents |= ident
        _fold(st.per_key, f, self._nodes[fid])
        st.nodes |= self._nodes[fid]
        if st.span is not None:
            st.span = (min(st.span[0], f.start), max(st.span[1], f.end))
        elif len(st.finding_ids) == 1:
            st.span = _widen(st.floor, f.start, f.end)
        if len(kept) > self._cap:
            # The oldest by start: a late finding is dropped at once, the newest stay listed.
            self._drop(st, min(kept, key=lambda i: (self._findings[i].start, i)))

    def _drop(self, st: _State, fid: str) -> None:
        """Drop the oldest kept finding ``fid`` of its key from ``st`` and forget it. What it
        said stays: ``per_key`` already holds it, ``archive`` keeps it for a refold of the key,
        ``floor`` its span, ``shared``/``idents``/``nodes`` were only ever narrowed/widened."""
        f = self._findings[fid]
        kept = st.keys[f.key]
        kept.remove(fid)
        del st.finding_ids[fid]
        _fold(st.archive, f, self._nodes[fid])
        st.dropped[f.key] = _widen(st.dropped.get(f.key), f.start, f.start)
        st.dropped_ids.setdefault(f.key, {})[fid] = f.start
        self._trim_dropped_ids(st, f.key)
        self._dropping.setdefault(f.key, set()).add(st.id)
        st.floor = _widen(st.floor, f.start, f.end)
        if self._owner.get(fid) == st.id:
            del self._owner[fid]
        if fid != self._taking:
            self._forget(fid)

    def _trim_dropped_ids(self, st: _State, key: str) -> None:
        """Forget the oldest dropped ids of ``key`` beyond the bound, keeping their latest start."""
        ids = st.dropped_ids[key]
        while len(ids) > _DROPPED_IDS_PER_KEY:
            start = ids.pop(next(iter(ids)))
            lost = st.dropped_lost.get(key)
            st.dropped_lost[key] = start if lost is None else max(lost, start)

    def _forget(self, fid: str) -> None:
        self._findings.pop(fid, None)
        self._ident.pop(fid, None)
        self._nodes.pop(fid, None)

    def _span(self, st: _State) -> tuple[int, int]:
        """(earliest start, latest end) of the findings of ``st`` (which has some), dropped
        ones (and a seeded record's span) included."""
        if st.span is None:
            fs = [self._findings[i] for i in st.finding_ids]
            st.span = _widen(st.floor, min(g.start for g in fs), max(g.end for g in fs))
        return st.span

    def _remember(self, f: Finding) -> None:
        old = self._findings.get(f.id)
        owner = self._incidents.get(self._owner.get(f.id, ""))
        if old is not None and owner is not None:
            owner.stale_keys.add(f.key)  # its score, severity or summary may have changed
        if old is not None and owner is not None and owner.span is not None:
            if f.start <= old.start and f.end >= old.end:  # grown, as findings do: widen
                owner.span = (min(owner.span[0], f.start), max(owner.span[1], f.end))
            else:  # shrunk (unusual): recompute on next use
                owner.span = None
        if f.id not in self._ident:
            labels = self._labels_of(f)
            ident = {(n, str(labels[n])) for n in self._group_by if n in labels}
            ident.add((_KEY, f.key))
            self._ident[f.id] = frozenset(ident)
            self._nodes[f.id] = frozenset(
                str(labels[n]) for n in _SERVICE_LABELS if n in labels and labels[n]
            )
        self._findings[f.id] = f

    def _matches(self, f: Finding, st: _State) -> bool:
        if not st.finding_ids:
            return False
        start, end = self._span(st)
        if f.start > end + self._window or f.end < start - self._window:
            return False
        # Sharing a label (or linked node) with any one finding == with the union of them all.
        nodes = self._nodes[f.id]
        if not self._ident[f.id].isdisjoint(st.idents):
            return True
        linked = set().union(*(self._neighbours.get(n, set()) for n in nodes)) | nodes
        return not linked.isdisjoint(st.nodes)

    def _episode(self, f: Finding) -> None:
        """Count a new episode of ``f.key`` if the key was quiet for ``resolve_after``."""
        prev = self._last_end.get(f.key)
        if prev is None or f.start - prev > self._resolve:
            self._episodes.setdefault(f.key, deque()).append(f.start)
        self._last_end[f.key] = max(prev if prev is not None else f.end, f.end)

    def _flapping(self, key: str, at: int) -> bool:
        eps = self._episodes.get(key)
        if not eps:
            return False
        return sum(1 for t in eps if at - self._flap_window < t <= at) >= self._flap_max

    def _quiet(self, st: _State, now: int) -> bool:
        if st.finding_ids:
            end = self._span(st)[1]
        elif st.snap is not None:  # seeded, its findings trimmed from the store: its stored span
            end = st.snap.end
        else:
            return False
        if now - end <= self._resolve:
            return False
        # Hold-down: an incident with a flapping key stays open until the key calms down.
        return not any(self._flapping(k, now) for k in st.keys)

    def _open(self) -> list[_State]:
        return sorted(
            (s for s in self._incidents.values() if s.status is IncidentStatus.OPEN),
            key=lambda s: (s.opened_at, s.id),
        )

    def _last_state(self, key: str) -> _State | None:
        iid = self._last_of_key.get(key)
        return self._incidents.get(iid) if iid is not None else None

    def _keys(self, st: _State) -> list[str]:
        return list(st.keys)

    # -- output ----------------------------------------------------------------------------

    def _snapshot(
        self,
        st: _State,
        now: int,
        bump: bool,
        new: bool,
        *,
        force: bool = False,
        quiet: bool = False,
    ) -> Incident | None:
        """The public incident of ``st``; None if nothing changed since the last one. ``quiet``:
        a risen severity does not bump the version (the caller's change does)."""
        prev = st.snap
        if not st.finding_ids and prev is not None:
            # Seeded without its findings (trimmed from the store): only its status can change.
            if st.status is prev.status and st.resolved_at == prev.resolved_at:
                return prev if force else None
            snap = prev.model_copy(
                update={
                    "status": st.status,
                    "resolved_at": st.resolved_at,
                    "updated_at": now,
                    "version": prev.version + (1 if bump else 0),
                }
            )
            st.snap = snap
            return snap
        for key in st.stale_keys:
            if key in st.keys:
                dropped = st.archive.get(key)  # the refold starts from what was dropped
                if dropped is None:
                    st.per_key.pop(key, None)
                else:
                    st.per_key[key] = dict(dropped)
                for fid in st.keys[key]:
                    _fold(st.per_key, self._findings[fid], self._nodes[fid])
        st.stale_keys.clear()
        severities = [k["severity"] for k in st.per_key.values()]
        if st.severity_floor is not None:
            severities.append(st.severity_floor)
        severity = max(severities, key=SEVERITY_RANK.__getitem__)
        shared = st.shared if st.shared is not None else frozenset()
        labels = {n: v for n, v in sorted(shared) if n != _KEY}
        cause = _rank(st.per_key, self._dependents, MAX_CAUSES)
        keys = self._keys(st)
        start, end = self._span(st)
        if (
            prev is not None
            and SEVERITY_RANK[severity] > SEVERITY_RANK[prev.severity]
            and not quiet
        ):
            bump = True
        fields: dict[str, Any] = {
            "id": st.id,
            "status": st.status,
            "title": _title(cause[0]["key"], len(keys), labels, self._group_by),
            "severity": severity,
            "labels": labels,
            "start": start,
            "end": end,
            "opened_at": st.opened_at,
            "resolved_at": st.resolved_at,
            "finding_ids": list(st.finding_ids),
            "finding_count": st.finding_count,
            "keys": keys,
            "cause": cause,
        }
        # model_construct: every field is built above with its declared type, and validating
        # the id lists of an incident holding thousands of findings on every update was a
        # large part of correlating a storm.
        if prev is None or new:
            snap = Incident.model_construct(**fields, updated_at=now, version=1)
        else:
            same = all(getattr(prev, k) == v for k, v in fields.items())
            if same and not bump and not force:
                return None
            snap = Incident.model_construct(
                **fields, updated_at=now, version=prev.version + (1 if bump else 0)
            )
        st.snap = snap
        return snap

    def _prune(self, now: int) -> None:
        """Forget the oldest resolved incidents beyond ``retain`` once they are too old to reopen
        or to count as flapping. Kept until then (and up to ``retain`` after) so that a finding
        of theirs that grows again returns to them instead of opening a second incident."""
        horizon = max(self._reopen, self._flap_window)
        old = sorted(
            (
                s
                for s in self._incidents.values()
                if s.status is IncidentStatus.RESOLVED
                and (s.resolved_at is None or now - s.resolved_at > horizon)
            ),
            key=lambda s: (s.resolved_at or 0, s.id),
        )
        for st in old[: max(0, len(old) - self._retain)]:
            del self._incidents[st.id]
            for key in st.dropped.keys() | st.seeded_dropped.keys():
                self._dropping[key].discard(st.id)
                if not self._dropping[key]:
                    del self._dropping[key]
            for fid in st.finding_ids:
                if self._owner.get(fid) == st.id:
                    del self._owner[fid]
                    self._findings.pop(fid, None)
                    self._ident.pop(fid, None)
                    self._nodes.pop(fid, None)
        for key in [k for k, iid in self._last_of_key.items() if iid not in self._incidents]:
            del self._last_of_key[key]
        for key in list(self._episodes):
            eps = self._episodes[key]
            while eps and eps[0] <= now - self._flap_window:
                eps.popleft()
            if not eps and key not in self._last_of_key:
                del self._episodes[key]
                self._last_end.pop(key, None)


def _title(top: str, n_keys: int, labels: Mapping[str, str], order: tuple[str, ...]) -> str:
    text = top if n_keys == 1 else f"{top} and {n_keys - 1} more"
    if labels:
        text += " on " + ", ".join(f"{n}={labels[n]}" for n in order if n in labels)
    return text


def _dependents(topology: Mapping[str, list[str]]) -> dict[str, frozenset[str]]:
    """For each service, every service that depends on it directly or through others."""
    direct: dict[str, set[str]] = {}
    for svc, deps in topology.items():
        for d in deps:
            direct.setdefault(d, set()).add(svc)
    out: dict[str, frozenset[str]] = {}
    for node in direct:
        seen: set[str] = set()
        todo = list(direct[node])
        while todo:
            n = todo.pop()
            if n not in seen and n != node:
                seen.add(n)
                todo.extend(direct.get(n, ()))
        out[node] = frozenset(seen)
    return out
