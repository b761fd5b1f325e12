"""Findings into incidents: grouping, merging, resolving, flapping, restarts, cause ranking."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from relia.config import IncidentsConfig
from relia.incidents.correlate import (
    MAX_CAUSES,
    MAX_FINDINGS_PER_KEY,
    IncidentCorrelator,
    finding_labels,
    key_labels,
    rank_causes,
)
from relia.incidents.model import Finding, FindingKind, Incident, IncidentStatus, Severity
from relia.signals import SeriesIndex

S = 1000
M = 60 * S
T0 = 1_700_000_000_000


def finding(
    key: str,
    start: int,
    end: int | None = None,
    *,
    score: float = 0.7,
    severity: Severity = Severity.WARNING,
    kind: FindingKind = FindingKind.METRIC,
    evidence: dict[str, Any] | None = None,
) -> Finding:
    return Finding(
        id=Finding.make_id(kind, key, start, "t"),
        kind=kind,
        key=key,
        start=start,
        end=start if end is None else end,
        score=score,
        severity=severity,
        detector="t",
        summary=key,
        evidence=evidence or {},
    )


def by_key(f: Finding) -> Mapping[str, str]:
    return key_labels(f.key)


def correlator(**cfg: Any) -> IncidentCorrelator:
    return IncidentCorrelator(IncidentsConfig(**cfg), by_key)


def uncapped(**cfg: Any) -> IncidentCorrelator:
    """A correlator that keeps every finding of an incident: the reference for the capped one."""
    return IncidentCorrelator(IncidentsConfig(**cfg), by_key, max_per_key=10**9)


def test_overlap_and_shared_label_make_one_incident() -> None:
    c = correlator()
    a = finding('cpu{job="api",instance="a"}', T0, T0 + M)
    b = finding('latency{job="api",instance="b"}', T0 + 2 * M, T0 + 3 * M)
    got = c.update([a, b], T0 + 3 * M)
    assert len(got) == 1
    inc = got[0]
    assert inc.status is IncidentStatus.OPEN and inc.version == 1
    assert inc.id == Incident.make_id(a.id)
    assert inc.finding_ids == [a.id, b.id]
    assert inc.keys == [a.key, b.key]
    assert inc.labels == {"job": "api"}
    assert (inc.start, inc.end) == (T0, T0 + 3 * M)
    assert inc.title == 'cpu{job="api",instance="a"} and 1 more on job=api'


def test_no_shared_label_or_no_overlap_make_two() -> None:
    c = correlator()
    got = c.update(
        [finding('cpu{job="api"}', T0, T0 + M), finding('cpu{job="db"}', T0, T0 + M)], T0 + M
    )
    assert len(got) == 2
    c = correlator(group_window="1m")
    a = finding('cpu{job="api"}', T0, T0 + M)
    c.update([a], T0 + M)
    # Same label, but it starts 3 minutes after a ended (> 1m window), and a is still open.
    got = c.update([finding('mem{job="api"}', T0 + 4 * M, T0 + 4 * M)], T0 + 4 * M)
    assert len(got) == 1 and got[0].keys == ['mem{job="api"}']


def test_growing_finding_updates_without_version_bump() -> None:
    c = correlator()
    a = finding('cpu{job="api"}', T0, T0 + M)
    (first,) = c.update([a], T0 + M)
    (grown,) = c.update([a.model_copy(update={"end": T0 + 2 * M})], T0 + 2 * M)
    assert grown.id == first.id and grown.version == 1
    assert grown.end == T0 + 2 * M and grown.updated_at == T0 + 2 * M
    assert c.update([a.model_copy(update={"end": T0 + 2 * M})], T0 + 2 * M) == []
    # Severity rising is news.
    hot = a.model_copy(update={"severity": Severity.CRITICAL, "score": 0.95})
    (rose,) = c.update([hot], T0 + 2 * M)
    assert rose.version == 2 and rose.severity is Severity.CRITICAL
    # A new key joining is news too.
    (joined,) = c.update([finding('mem{job="api"}', T0 + 2 * M)], T0 + 2 * M)
    assert joined.version == 3 and len(joined.keys) == 2


def test_topology_edge_joins_and_ranks_the_dependency_first() -> None:
    c = correlator(topology={"api": ["db"], "web": ["api"]})
    web = finding('errors{service="web"}', T0, T0 + M, severity=Severity.CRITICAL, score=0.95)
    api = finding('latency{service="api"}', T0 + 10 * S, T0 + M)
    db = finding('latency{service="db"}', T0 + 20 * S, T0 + M)
    got = c.update([web, api, db], T0 + M)
    assert len(got) == 1
    inc = got[0]
    assert set(inc.keys) == {web.key, api.key, db.key}
    assert inc.labels == {}
    # db went wrong last and is less severe, but both others depend on it.
    assert [x["key"] for x in inc.cause] == [db.key, api.key, web.key]
    assert "upstream of api, web" in inc.cause[0]["reason"]
    assert inc.title.startswith(db.key + " and 2 more")
    # Without the edge: three incidents.
    assert len(correlator().update([web, api, db], T0 + M)) == 3


def test_findings_on_one_service_group_even_when_group_by_leaves_it_out() -> None:
    # A finding's service (its service or job label) is its node in the topology, and a node is
    # linked to itself: one service's findings are one incident whatever group_by says. Labels
    # that name no service (instance here) group only through group_by.
    c = correlator(group_by=["pod"])
    a = finding('cpu{service="api",pod="p1"}', T0, T0 + M)
    b = finding('latency{job="api",pod="p2"}', T0 + M, T0 + 2 * M)
    assert len(c.update([a, b], T0 + 2 * M)) == 1
    c = correlator(group_by=["pod"])
    a = finding('cpu{instance="h1",pod="p1"}', T0, T0 + M)
    b = finding('latency{instance="h1",pod="p2"}', T0 + M, T0 + 2 * M)
    assert len(c.update([a, b], T0 + 2 * M)) == 2


def test_cause_without_topology_is_first_onset_then_severity() -> None:
    late = finding("b", T0 + M, severity=Severity.CRITICAL, score=1.0)
    early = finding("a", T0)
    ranked = rank_causes([late, early])
    assert [r["key"] for r in ranked] == ["a", "b"]
    assert ranked[0]["reason"].startswith("went wrong first")
    assert "went wrong 60s later" in ranked[1]["reason"]
    assert ranked[0]["score"] > ranked[1]["score"]
    # Same onset: severity decides.
    ranked = rank_causes([finding("x", T0), finding("y", T0, severity=Severity.CRITICAL)])
    assert ranked[0]["key"] == "y"
    assert rank_causes([]) == []


def test_finding_joining_two_incidents_merges_them_into_the_older() -> None:
    c = correlator()
    a = finding('cpu{job="api",instance="a"}', T0, T0 + M)
    (ia,) = c.update([a], T0 + M)
    b = finding('cpu{job="db",instance="b"}', T0 + 30 * S, T0 + M)
    (ib,) = c.update([b], T0 + M + 1)
    assert ia.id != ib.id
    # Shares job=api with the first and instance=b with the second.
    bridge = finding('conn{job="api",instance="b"}', T0 + M, T0 + M)
    got = {i.id: i for i in c.update([bridge], T0 + M + 2)}
    assert set(got) == {ia.id, ib.id}
    kept, gone = got[ia.id], got[ib.id]
    assert kept.status is IncidentStatus.OPEN and kept.version == 2
    assert set(kept.finding_ids) == {a.id, b.id, bridge.id}
    assert gone.status is IncidentStatus.RESOLVED and gone.merged_into == ia.id
    assert gone.finding_ids == [] and gone.version == 2 and gone.resolved_at == T0 + M + 2
    # Later findings of the merged-away key go to the survivor.
    (again,) = c.update([b.model_copy(update={"end": T0 + 2 * M})], T0 + 2 * M)
    assert again.id == ia.id


def test_resolves_after_quiet_and_reopens_within_the_window() -> None:
    c = correlator(resolve_after="5m", reopen_window="30m")
    a = finding('cpu{job="api"}', T0, T0 + M)
    (inc,) = c.update([a], T0 + M)
    assert c.update([], T0 + 6 * M) == []  # quiet for exactly 5m: not yet
    (done,) = c.update([], T0 + 6 * M + 1)
    assert done.status is IncidentStatus.RESOLVED and done.resolved_at == T0 + 6 * M + 1
    assert done.version == 2 and done.resolved_at >= done.start
    assert c.update([], T0 + 7 * M) == []
    # Back 10 minutes later: the same incident reopens.
    (back,) = c.update([finding('cpu{job="api"}', T0 + 16 * M)], T0 + 16 * M)
    assert back.id == inc.id and back.status is IncidentStatus.OPEN and back.version == 3
    assert back.resolved_at is None and len(back.finding_ids) == 2
    # Resolved for longer than the reopen window: a new incident.
    c.update([], T0 + 30 * M)
    late = finding('cpu{job="api"}', T0 + 90 * M)
    (new,) = c.update([late], T0 + 90 * M)
    assert new.id == Incident.make_id(late.id) and new.version == 1


def test_fifty_on_off_cycles_of_one_series_make_one_incident() -> None:
    c = correlator()  # defaults: resolve 5m, reopen 30m, flap 3 per 1h
    seen: dict[str, list[Incident]] = {}
    key = 'cpu{job="api"}'
    for i in range(50):
        t = T0 + i * 11 * M  # on for one minute, off for ten
        for now in (t, t + M, t + 6 * M + 1):
            grown = finding(key, t, min(now, t + M))
            for inc in c.update([grown] if now <= t + M else [], now):
                seen.setdefault(inc.id, []).append(inc)
    assert len(seen) == 1
    (history,) = seen.values()
    # Damped: after flap_max episodes the incident is held open; a handful of changes, not 100.
    versions = [i.version for i in history]
    assert versions == sorted(versions) and versions[-1] <= 6
    last = history[-1]
    assert last.status is IncidentStatus.OPEN and last.finding_count == 50
    # It keeps the newest of them; what it says still covers all 50.
    newest = [finding(key, T0 + i * 11 * M).id for i in range(50 - MAX_FINDINGS_PER_KEY, 50)]
    assert last.finding_ids == newest
    assert (last.start, last.end) == (T0, T0 + 49 * 11 * M + M)
    # Once the series calms down for the flap window, it resolves.
    end = T0 + 49 * 11 * M + M
    (done,) = c.update([], end + 61 * M)
    assert done.status is IncidentStatus.RESOLVED


def test_flapping_key_opens_at_most_flap_max_incidents() -> None:
    # Resolved quickly and reopened only briefly: each cycle would open a new incident.
    c = correlator(resolve_after="1m", reopen_window="1m", flap_window="1h", flap_max=3)
    ids: set[str] = set()
    for i in range(50):
        t = T0 + i * 6 * M
        ids |= {x.id for x in c.update([finding("up", t, t + M)], t + M)}
        ids |= {x.id for x in c.update([], t + 2 * M + 1)}
    assert len(ids) == 3


def test_seed_after_restart_opens_no_duplicate() -> None:
    c = correlator()
    a = finding('cpu{job="api"}', T0, T0 + M)
    b = finding('mem{job="api"}', T0 + 10 * S, T0 + M)
    (inc,) = c.update([a, b], T0 + M)

    fresh = correlator()
    fresh.seed([inc], [a, b])
    assert fresh.incidents() == [inc]
    (grown,) = fresh.update([a.model_copy(update={"end": T0 + 2 * M})], T0 + 2 * M)
    assert grown.id == inc.id and grown.version == inc.version and grown.end == T0 + 2 * M
    (more,) = fresh.update([finding('disk{job="api"}', T0 + 2 * M)], T0 + 2 * M)
    assert more.id == inc.id and more.version == inc.version + 1
    # Without seeding, the same grown finding would open a second incident.
    (dup,) = correlator().update([a.model_copy(update={"end": T0 + 2 * M})], T0 + 2 * M)
    assert dup.id == inc.id and dup.version == 1  # same id (deterministic), but version reset


def test_finding_labels_from_index_key_and_slo_evidence() -> None:
    index = SeriesIndex()
    sid = index.get_or_add("cpu", {"job": "api", "instance": "a"})
    metric = finding("cpu", T0).model_copy(update={"series_id": sid})
    labels_of = finding_labels(index.labels)
    assert dict(labels_of(metric)) == {"job": "api", "instance": "a"}
    unknown = metric.model_copy(update={"series_id": 12345, "key": 'cpu{job="x"}'})
    assert dict(labels_of(unknown)) == {"job": "x"}
    log = finding('new_template{file="app",template="3"}', T0, kind=FindingKind.LOG)
    assert dict(labels_of(log)) == {"file": "app", "template": "3"}
    slo = finding(
        "checkout-avail:page", T0, kind=FindingKind.SLO,
        evidence={"slo": "checkout-avail", "service": "checkout"},
    )  # fmt: skip
    assert dict(labels_of(slo)) == {"slo": "checkout-avail", "service": "checkout"}
    # An SLO without a service names none (an empty value would group every such SLO).
    no_service = slo.model_copy(update={"evidence": {"slo": "checkout-avail", "service": ""}})
    assert dict(labels_of(no_service)) == {"slo": "checkout-avail"}
    # So an SLO burning on service=checkout groups with checkout's metrics.
    c = IncidentCorrelator(IncidentsConfig(), labels_of)
    got = c.update([slo, finding('latency{service="checkout"}', T0)], T0)
    assert len(got) == 1 and len(got[0].keys) == 2


def test_key_labels() -> None:
    assert key_labels('a{x="1",y="b c"}') == {"x": "1", "y": "b c"}
    assert key_labels("plain") == {}
    assert key_labels("slo:page") == {}
    assert key_labels('{job="api"}') == {"job": "api"}  # a selector without a metric name
    # Prometheus 3 quoting: a quoted metric name and quoted label names.
    assert key_labels('{"my metric","a-b"="1",job="x\\"y"}') == {"a-b": "1", "job": 'x"y'}
    assert key_labels('{"kc{job=\\"a\\"}"}') == {}


KEYS = [
    'cpu{job="api",instance="a"}',
    'cpu{job="db",instance="b"}',
    'mem{job="api",instance="b"}',
    'err{service="web"}',
    'err{service="api"}',
    "host_load",
]


@st.composite
def streams(draw: st.DrawFn) -> list[tuple[int, list[Finding]]]:
    """Ticks of (now, findings): new findings and grown ones, time moving forward."""
    now = T0
    live: list[Finding] = []
    out: list[tuple[int, list[Finding]]] = []
    for _ in range(draw(st.integers(1, 25))):
        now += draw(st.integers(0, 20)) * M
        batch: list[Finding] = []
        for _ in range(draw(st.integers(0, 3))):
            if live and draw(st.booleans()):
                i = draw(st.integers(0, len(live) - 1))
                f = live[i].model_copy(
                    update={
                        "end": max(live[i].end, now),
                        "severity": draw(st.sampled_from(list(Severity))),
                    }
                )
                live[i] = f
            else:
                start = now - draw(st.integers(0, 5)) * M
                f = finding(draw(st.sampled_from(KEYS)), start, now)
                if any(g.id == f.id for g in live):
                    continue
                live.append(f)
            batch.append(f)
        out.append((now, batch))
    return out


@settings(max_examples=150, deadline=None)
@given(
    streams(),
    st.sampled_from([{}, {"topology": {"web": ["api"]}}, {"reopen_window": "1m", "flap_max": 2}]),
)
def test_every_finding_lands_in_exactly_one_incident(
    ticks: list[tuple[int, list[Finding]]], cfg: dict[str, Any]
) -> None:
    c = uncapped(**cfg)  # every finding is kept (the capped one: test_a_cap_changes_nothing...)
    latest: dict[str, Incident] = {}
    fed: set[str] = set()
    for now, batch in ticks:
        fed |= {f.id for f in batch}
        for inc in c.update(batch, now):
            prev = latest.get(inc.id)
            if prev is not None:
                assert inc.version >= prev.version
                news = (
                    inc.status != prev.status
                    or set(inc.keys) - set(prev.keys)
                    or inc.merged_into != prev.merged_into
                )
                if news:
                    assert inc.version > prev.version
            else:
                assert inc.version >= 1
            if inc.status is IncidentStatus.RESOLVED:
                assert inc.resolved_at is not None and inc.resolved_at >= inc.start
            else:
                assert inc.resolved_at is None and inc.merged_into is None
            assert inc.start <= inc.end and inc.cause and inc.title
            latest[inc.id] = inc
    owners: dict[str, list[str]] = {}
    for inc in latest.values():
        for fid in inc.finding_ids:
            owners.setdefault(fid, []).append(inc.id)
    assert set(owners) == fed
    assert all(len(v) == 1 for v in owners.values()), owners


_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


@settings(max_examples=150, deadline=None)
@given(
    streams(),
    st.sampled_from([{}, {"topology": {"web": ["api"], "api": ["db"]}}, {"flap_max": 2}]),
)
def test_running_summaries_equal_a_summary_from_scratch(
    ticks: list[tuple[int, list[Finding]]], cfg: dict[str, Any]
) -> None:
    """Severity, labels, span and cause are kept as running aggregates (grown findings may even
    lower a severity); every snapshot must equal what its findings give when summed up anew."""
    c = uncapped(**cfg)  # the sums below are over the kept findings
    for now, batch in ticks:
        for inc in c.update(batch, now):
            if inc.merged_into is not None:
                continue
            fs = [c._findings[fid] for fid in inc.finding_ids]
            assert inc.severity == max((f.severity for f in fs), key=_RANK.__getitem__)
            shared = frozenset.intersection(*(c._ident[f.id] for f in fs))
            assert inc.labels == {n: v for n, v in sorted(shared) if n != "__key__"}
            assert (inc.start, inc.end) == (min(f.start for f in fs), max(f.end for f in fs))
            nodes = lambda f: c._nodes[f.id]  # noqa: E731
            assert inc.cause == rank_causes(fs, nodes, c._dependents)[:MAX_CAUSES]


def test_a_storm_lists_the_likeliest_causes_and_every_key() -> None:
    c = correlator()
    fs = [
        finding(f'cpu{{job="api",instance="i{n}"}}', T0 + n * S, score=0.5 + n / 1000)
        for n in range(3 * MAX_CAUSES)
    ]
    (inc,) = c.update(fs, T0 + M)
    assert len(inc.keys) == 3 * MAX_CAUSES
    assert [x["key"] for x in inc.cause] == [x["key"] for x in rank_causes(fs)][:MAX_CAUSES]
    assert inc.cause[0]["key"] == fs[0].key  # the first to go wrong


# -- rules at their boundaries (found untested by a mutation audit) ------------------------------


def test_a_finding_within_the_group_window_of_the_incident_joins_it_on_either_side() -> None:
    # An incident spanning [T0+10m, T0+11m] with a 1m window takes findings from T0+9m to T0+12m.
    def incidents_of(late: Finding) -> int:
        c = correlator(group_window="1m")
        c.update([finding('cpu{job="api"}', T0 + 10 * M, T0 + 11 * M)], T0 + 11 * M)
        c.update([late], T0 + 12 * M + 1)
        return len(c.incidents())

    assert incidents_of(finding('mem{job="api"}', T0 + 12 * M)) == 1  # starts 1m after its end
    assert incidents_of(finding('mem{job="api"}', T0 + 12 * M + 1)) == 2  # 1m and 1ms after
    # Reported late: it ended 1m before the incident began, so it still belongs to it.
    assert incidents_of(finding('mem{job="api"}', T0 + 8 * M, T0 + 9 * M)) == 1
    assert incidents_of(finding('mem{job="api"}', T0 + 8 * M, T0 + 9 * M - 1)) == 2


def test_a_finding_sharing_a_label_with_any_one_finding_of_the_incident_joins_it() -> None:
    c = correlator()
    a = finding('cpu{job="api",instance="a"}', T0)
    b = finding('mem{job="api",instance="b"}', T0 + 10 * S)
    (inc,) = c.update([a, b], T0 + 10 * S)
    assert inc.labels == {"job": "api"}  # what all of them share
    # Shares instance="b" with b alone (not with a, not with the incident's common labels).
    d = finding('disk{job="db",instance="b"}', T0 + M)
    (joined,) = c.update([d], T0 + M)
    assert joined.id == inc.id and joined.keys == [a.key, b.key, d.key]


def test_a_key_reopens_its_incident_only_if_it_resolved_less_than_reopen_window_ago() -> None:
    def back_after(quiet: int) -> Incident:
        c = correlator(resolve_after="5m", reopen_window="30m")
        c.update([finding('cpu{job="api"}', T0, T0 + M)], T0 + M)
        (done,) = c.update([], T0 + 6 * M + 1)
        assert done.resolved_at == T0 + 6 * M + 1
        now = T0 + 6 * M + 1 + quiet
        (back,) = c.update([finding('cpu{job="api"}', now)], now)
        return back

    first = Incident.make_id(finding('cpu{job="api"}', T0, T0 + M).id)
    assert back_after(30 * M - 1).id == first  # resolved 30m - 1ms ago: reopened
    assert back_after(30 * M).id != first  # resolved exactly 30m ago: a new incident


def test_the_last_report_of_a_finding_in_one_batch_wins() -> None:
    a = finding('cpu{job="api"}', T0, T0 + M)
    grown = a.model_copy(update={"end": T0 + 3 * M})
    (inc,) = correlator().update([a, grown], T0 + 3 * M)
    assert inc.finding_ids == [a.id] and inc.end == T0 + 3 * M


def test_incidents_opened_and_merged_in_one_update_report_only_the_survivor() -> None:
    a = finding('cpu{job="api",instance="a"}', T0)
    b = finding('cpu{job="db",instance="b"}', T0 + 10 * S)  # shares nothing with a: opens its own
    bridge = finding('conn{job="api",instance="b"}', T0 + 20 * S)  # shares a label with each
    got = correlator().update([a, b, bridge], T0 + M)
    # Nobody heard of the merged-away incident, so there is no news of it being merged.
    assert len(got) == 1
    assert got[0].status is IncidentStatus.OPEN and got[0].merged_into is None
    assert set(got[0].finding_ids) == {a.id, b.id, bridge.id}


def test_a_new_finding_on_a_merged_away_key_joins_the_survivor() -> None:
    c = correlator(group_window="1m")
    a = finding('cpu{job="api",instance="a"}', T0, T0 + M)
    (ia,) = c.update([a], T0 + M)
    b = finding('cpu{job="db",instance="b"}', T0 + 30 * S, T0 + M)
    c.update([b], T0 + M + 1)
    c.update([finding('conn{job="api",instance="b"}', T0 + M)], T0 + M + 2)  # merges b into a
    # Outside the 1m window, so only the key's own open incident can take it: the survivor.
    (again,) = c.update([finding(b.key, T0 + 3 * M)], T0 + 3 * M)
    assert again.id == ia.id and len(c.incidents()) == 1


def test_a_seeded_incident_whose_findings_were_trimmed_still_resolves() -> None:
    # After a restart the store may no longer hold an open incident's findings (trimmed, or past
    # the seeding limit). The incident keeps its stored span, and resolves from it: it ended at
    # T0 + 1m, so with resolve_after 5m it is quiet from T0 + 6m on.
    c = correlator(resolve_after="5m")
    a = finding('cpu{job="api"}', T0, T0 + M)
    (inc,) = c.update([a], T0 + M)
    fresh = correlator(resolve_after="5m")
    fresh.seed([inc], [])
    assert fresh.update([], T0 + 6 * M) == []  # 5m after its end: not yet quiet
    (done,) = fresh.update([], T0 + 6 * M + 1)
    assert done.id == inc.id and done.status is IncidentStatus.RESOLVED
    assert done.resolved_at == T0 + 6 * M + 1 and done.version == inc.version + 1
    assert (done.start, done.end, done.finding_ids) == (inc.start, inc.end, inc.finding_ids)
    assert fresh.update([], T0 + 7 * M) == []  # resolved once
    assert fresh.incidents() == [done]


def test_seed_skips_incidents_merged_into_another() -> None:
    c = correlator()
    a = finding('cpu{job="api",instance="a"}', T0, T0 + M)
    (ia,) = c.update([a], T0 + M)
    b = finding('cpu{job="db",instance="b"}', T0 + 30 * S, T0 + M)
    c.update([b], T0 + M + 1)
    bridge = finding('conn{job="api",instance="b"}', T0 + M)
    got = {i.id: i for i in c.update([bridge], T0 + M + 2)}
    kept = got[ia.id]
    (gone,) = (i for i in got.values() if i.merged_into == ia.id)
    # The store holds both (the merged-away one as resolved); after a restart only the
    # survivor is an incident of the correlator.
    fresh = correlator()
    fresh.seed([kept, gone], [a, b, bridge])
    assert fresh.incidents() == [kept]


def test_a_resolved_incident_is_kept_for_the_flap_window_so_a_grown_finding_reopens_it() -> None:
    # retain=0: resolved incidents are forgotten as soon as they are too old to reopen *and*
    # to count as flapping (reopen 30m, flap window 1h: after 1h).
    c = IncidentCorrelator(IncidentsConfig(), by_key, retain=0)
    a = finding('cpu{job="api"}', T0, T0 + M)
    c.update([a], T0 + M)
    (done,) = c.update([], T0 + 6 * M + 1)
    assert done.status is IncidentStatus.RESOLVED
    c.update([], T0 + 46 * M)  # resolved ~40m ago: past the reopen window, inside the flap one
    (back,) = c.update([a.model_copy(update={"end": T0 + 46 * M})], T0 + 46 * M)
    # The same incident, back: opened when it first was, and one more change to hear of.
    assert back.status is IncidentStatus.OPEN
    assert back.opened_at == T0 + M and back.version == 3


def test_a_gap_of_exactly_resolve_after_is_not_a_new_episode() -> None:
    # flap_max=2: a second episode would make the key flapping and hold its incident open.
    c = correlator(resolve_after="5m", flap_max=2)
    c.update([finding("up", T0, T0 + M)], T0 + M)
    c.update([finding("up", T0 + 6 * M)], T0 + 6 * M)  # quiet for exactly 5m: same episode
    (done,) = c.update([], T0 + 11 * M + 1)  # quiet for 5m and 1ms after its last finding
    assert done.status is IncidentStatus.RESOLVED


def test_an_overlapping_finding_of_a_key_is_part_of_its_running_episode() -> None:
    c = correlator(resolve_after="5m", flap_max=2)
    c.update([finding("up", T0, T0 + 20 * M)], T0 + 20 * M)
    # Another detector reports a short stretch inside it, late, then one more that overlaps:
    # all one episode (the key was never quiet), so it is not flapping.
    c.update([finding("up", T0 + M, T0 + 2 * M)], T0 + 20 * M)
    c.update([finding("up", T0 + 10 * M, T0 + 21 * M)], T0 + 21 * M)
    (done,) = c.update([], T0 + 26 * M + 1)
    assert done.status is IncidentStatus.RESOLVED


def test_a_flapping_hold_down_ends_when_the_first_episode_leaves_the_flap_window() -> None:
    c = correlator(resolve_after="5m", flap_window="1h", flap_max=2)
    c.update([finding("up", T0, T0 + M)], T0 + M)
    c.update([], T0 + 6 * M + 1)  # resolved
    c.update([finding("up", T0 + 30 * M, T0 + 31 * M)], T0 + 31 * M)  # reopened: 2 episodes
    assert c.update([], T0 + 59 * M) == []  # quiet, but flapping: held open
    # Episodes at T0 and T0+30m; the window (T0, T0+60m] holds only the second one.
    (done,) = c.update([], T0 + 60 * M)
    assert done.status is IncidentStatus.RESOLVED and done.resolved_at == T0 + 60 * M


def test_after_a_restart_with_a_lower_flap_max_a_flapping_key_reopens_its_last_incident() -> None:
    c = correlator(resolve_after="5m", reopen_window="1m", flap_max=3)
    f1, f2 = finding("up", T0, T0 + M), finding("up", T0 + 20 * M, T0 + 21 * M)
    c.update([f1], T0 + M)
    c.update([], T0 + 6 * M + 1)
    c.update([f2], T0 + 21 * M)  # resolved 15m ago, past the reopen window: a second incident
    c.update([], T0 + 26 * M + 1)
    first, second = c.incidents()
    assert second.status is IncidentStatus.RESOLVED
    # Two episodes in the hour: flapping once flap_max is 2, so no third incident.
    fresh = correlator(resolve_after="5m", reopen_window="1m", flap_max=2)
    fresh.seed([first, second], [f1, f2])
    (back,) = fresh.update([finding("up", T0 + 30 * M)], T0 + 30 * M)
    assert back.id == second.id and back.status is IncidentStatus.OPEN


# -- cause ranking --------------------------------------------------------------------------------


def service_of(f: Finding) -> frozenset[str]:
    service = key_labels(f.key).get("service")
    return frozenset({service}) if service else frozenset()


def test_cause_scores_follow_the_documented_weights() -> None:
    # 0.5·upstream + 0.25·earliness + 0.15·severity + 0.1·peak score.
    (alone,) = rank_causes([finding("a", T0, score=0.7)])
    assert alone["score"] == 0.395  # 0.25·1 + 0.15·0.5 + 0.1·0.7: alone, it went wrong first
    early = finding("a", T0, score=0.6)
    late = finding("b", T0 + M, severity=Severity.CRITICAL, score=1.0)
    assert [(r["key"], r["score"]) for r in rank_causes([late, early])] == [
        ("a", 0.385),  # 0.25·1 + 0.15·0.5 + 0.1·0.6
        ("b", 0.25),  # 0.25·0 + 0.15·1 + 0.1·1.0
    ]
    api = finding('latency{service="api"}', T0, score=0.6)
    db = finding('latency{service="db"}', T0 + M, score=0.6)
    ranked = rank_causes([api, db], service_of, {"db": frozenset({"api"})})
    assert [(r["key"], r["score"]) for r in ranked] == [
        (db.key, 0.635),  # 0.5·1 (api depends on it) + 0.25·0 + 0.15·0.5 + 0.1·0.6
        (api.key, 0.385),  # 0.5·0 + 0.25·1 + 0.15·0.5 + 0.1·0.6
    ]


def test_a_key_is_ranked_by_its_earliest_onset_peak_score_and_top_summary() -> None:
    key = "disk_io"
    fs = [  # in the order reported
        finding(key, T0 + M, score=0.3).model_copy(update={"summary": "first report"}),
        finding(key, T0 + 2 * M, score=0.9).model_copy(update={"summary": "the peak"}),
        finding(key, T0, score=0.5).model_copy(update={"summary": "late, but earliest"}),
    ]
    other = finding("net_errors", T0 + 30 * S, score=0.3)
    top, second = rank_causes([*fs, other])
    assert top["key"] == key and top["reason"].startswith("went wrong first")  # onset T0
    assert top["summary"] == "the peak" and "score 0.90" in top["reason"]
    assert second["key"] == other.key and "went wrong 30s later" in second["reason"]


def test_a_key_nothing_depends_on_gets_no_upstream_credit() -> None:
    # The incident's only service is api: there is nothing it could be upstream of, so the
    # host metric that went wrong first ranks first.
    host = finding("host_load", T0)
    api = finding('latency{service="api"}', T0 + M)
    ranked = rank_causes([api, host], service_of, {"db": frozenset({"api"})})
    assert [r["key"] for r in ranked] == [host.key, api.key]
    assert [r["score"] for r in ranked] == [0.395, 0.145]  # 0.25 + 0.075 + 0.07; 0.075 + 0.07


# -- bounded incidents: the newest MAX_FINDINGS_PER_KEY of each key ------------------------------

FLAPPER = 'cpu{job="api"}'


def flaps(n: int, key: str = FLAPPER, at: int = T0) -> list[Finding]:
    """``n`` findings of ``key``, one every 30s lasting 10s (one episode that never calms down);
    the first is the worst: critical, score 0.99."""
    return [
        finding(
            key,
            at + i * 30 * S,
            at + i * 30 * S + 10 * S,
            score=0.99 if i == 0 else 0.5 + (i % 7) / 20,
            severity=Severity.CRITICAL if i == 0 else Severity.WARNING,
        )
        for i in range(n)
    ]


def feed(c: IncidentCorrelator, fs: list[Finding], per_update: int = 1) -> list[Incident]:
    """Feed ``fs`` a few at a time, the clock at the end of each batch; every change seen."""
    seen: list[Incident] = []
    for i in range(0, len(fs), per_update):
        batch = fs[i : i + per_update]
        seen += c.update(batch, max(f.end for f in batch))
    return seen


def maps_of(c: IncidentCorrelator) -> list[int]:
    return [len(c._findings), len(c._ident), len(c._nodes), len(c._owner)]


def nodes_by_key(f: Finding) -> frozenset[str]:
    labels = key_labels(f.key)
    return frozenset(labels[n] for n in ("service", "job") if labels.get(n))


def test_a_key_flapping_a_thousand_times_keeps_its_newest_findings_and_says_the_same() -> None:
    other = finding('mem{job="api"}', T0 + 45 * S, T0 + 2 * M, score=0.8)
    fs = flaps(1000)
    fs.insert(2, other)
    c, ref = correlator(), uncapped()
    biggest = 0
    for i in range(0, len(fs), 5):
        batch = fs[i : i + 5]
        now = max(f.end for f in batch)
        got, want = c.update(batch, now), ref.update(batch, now)
        biggest = max(biggest, *maps_of(c))
        # Each change says what the uncapped incident says, but for the findings it lists.
        assert [g.model_dump(exclude={"finding_ids", "finding_count"}) for g in got] == [
            w.model_dump(exclude={"finding_ids", "finding_count"}) for w in want
        ]
        assert [g.finding_count for g in got] == [len(w.finding_ids) for w in want]
    (inc,) = c.incidents()
    assert inc.status is IncidentStatus.OPEN and inc.finding_count == 1001
    assert inc.finding_ids == [other.id] + [f.id for f in fs[-MAX_FINDINGS_PER_KEY:]]
    assert len(inc.model_dump_json()) < 4000  # it was ~26 kB per 1,000 findings, growing
    # Dropped findings are forgotten: the maps hold the kept ones (and one just taken).
    assert maps_of(c) == [MAX_FINDINGS_PER_KEY + 1] * 4
    assert biggest <= MAX_FINDINGS_PER_KEY + 1
    # What it says is that of all 1,001 findings (the worst and the first one were dropped).
    assert inc.cause == rank_causes(fs, nodes_by_key)[:MAX_CAUSES]
    assert inc.cause[0]["key"] == FLAPPER and inc.cause[0]["reason"].startswith("went wrong first")
    assert inc.severity is Severity.CRITICAL
    assert (inc.start, inc.end) == (T0, fs[-1].end)
    assert inc.labels == {"job": "api"} and inc.keys == [FLAPPER, other.key]


def test_a_stale_key_is_refolded_from_what_it_dropped() -> None:
    c = correlator()
    fs = flaps(MAX_FINDINGS_PER_KEY * 3)
    feed(c, fs)
    kept = fs[-1]
    # The newest grows (its key is refolded): the dropped critical finding still counts.
    (inc,) = c.update([kept.model_copy(update={"end": kept.end + M})], kept.end + M)
    assert (
        inc.severity is Severity.CRITICAL
        and inc.cause[0]["score"] == (rank_causes([*fs[:-1], kept])[0]["score"])
    )
    assert (inc.start, inc.end) == (T0, kept.end + M)


def test_a_dropped_finding_that_grows_lands_in_its_incident() -> None:
    c = correlator()
    fs = flaps(3 * MAX_FINDINGS_PER_KEY)
    (first, *_), last = feed(c, fs), fs[-1]
    assert fs[0].id not in c._owner and fs[0].id not in c._findings  # dropped and forgotten
    grown = fs[0].model_copy(update={"end": last.end + M})
    (inc,) = c.update([grown], last.end + M)
    assert inc.id == first.id and len(c.incidents()) == 1  # not a duplicate
    assert inc.finding_count == 3 * MAX_FINDINGS_PER_KEY  # counted once
    assert grown.id not in inc.finding_ids and (inc.start, inc.end) == (T0, last.end + M)
    assert maps_of(c) == [MAX_FINDINGS_PER_KEY] * 4
    # Resolved, a dropped finding growing again reopens it, as a kept one would.
    (done,) = c.update([], last.end + 30 * M)
    assert done.status is IncidentStatus.RESOLVED
    again = fs[1].model_copy(update={"end": last.end + 31 * M})
    (back,) = c.update([again], last.end + 31 * M)
    assert back.id == first.id and back.status is IncidentStatus.OPEN
    assert back.version == done.version + 1 and back.finding_count == done.finding_count
    assert len(c.incidents()) == 1


def test_a_dropped_finding_growing_after_its_key_moved_on_returns_to_its_old_incident() -> None:
    old = flaps(2 * MAX_FINDINGS_PER_KEY)
    new = flaps(2 * MAX_FINDINGS_PER_KEY, at=old[-1].end + 30 * M)
    grown = old[0].model_copy(update={"end": old[0].end + S})
    seen: list[list[Incident]] = []
    for x in (
        correlator(reopen_window="1m", flap_max=100),
        uncapped(reopen_window="1m", flap_max=100),
    ):
        (a, *_) = feed(x, old)
        x.update([], old[-1].end + 10 * M)  # resolved, and past its reopen window:
        (b, *_) = feed(x, new)
        assert a.id != b.id
        seen.append(x.update([grown], new[-1].end))
        assert x._last_of_key[FLAPPER] == a.id
    got, want = seen
    # It went back to its old incident (reopened and, long ended, resolved again), as a kept one.
    assert [(i.id, i.version, i.status) for i in got] == [(i.id, i.version, i.status) for i in want]
    assert [i.id for i in got] == [a.id] and got[0].finding_count == len(old)


def test_incidents_that_dropped_findings_merge_into_one_that_says_the_same() -> None:
    a = flaps(2 * MAX_FINDINGS_PER_KEY, key='cpu{instance="a"}')
    b = flaps(2 * MAX_FINDINGS_PER_KEY, key='mem{job="b"}', at=T0 + 5 * S)
    link = finding('net{instance="a",job="b"}', a[-1].end, score=0.6)
    c, ref = correlator(), uncapped()
    for x in (c, ref):
        feed(x, sorted(a + b, key=lambda f: f.start), per_update=4)
        assert len(x.incidents()) == 2
    got_gone, got = sorted(c.update([link], link.end), key=lambda i: i.merged_into is None)
    _, want = sorted(ref.update([link], link.end), key=lambda i: i.merged_into is None)
    assert got.model_dump(exclude={"finding_ids", "finding_count"}) == want.model_dump(
        exclude={"finding_ids", "finding_count"}
    )
    assert got_gone.merged_into == got.id and got_gone.finding_count == 0
    assert got.finding_count == len(want.finding_ids) == 4 * MAX_FINDINGS_PER_KEY + 1
    assert len(got.finding_ids) == 2 * MAX_FINDINGS_PER_KEY + 1
    assert maps_of(c) == [2 * MAX_FINDINGS_PER_KEY + 1] * 4


def test_a_restart_from_a_capped_record_keeps_grouping_span_and_count() -> None:
    c = correlator()
    fs = flaps(5 * MAX_FINDINGS_PER_KEY)
    feed(c, fs)
    (stored,) = c.incidents()
    kept = [f for f in fs if f.id in stored.finding_ids]
    dropped = [f for f in fs if f.id not in stored.finding_ids]

    fresh = correlator()
    fresh.seed([stored], kept)  # what the store gives back: the kept findings by id
    (seeded,) = fresh.incidents()
    assert seeded == stored
    # A new finding joins it; the span does not shrink, the worst (dropped) finding still counts.
    nxt = finding(FLAPPER, fs[-1].start + 30 * S, fs[-1].end + 30 * S)
    (inc,) = fresh.update([nxt], nxt.end)
    assert inc.id == stored.id and inc.finding_count == stored.finding_count + 1
    assert (inc.start, inc.end) == (T0, nxt.end) and inc.severity is Severity.CRITICAL
    assert inc.finding_ids == stored.finding_ids[1:] + [nxt.id]
    # The dropped findings, fed again (the engine correlates what it stored without an
    # incident), join it without counting twice and give back its cause.
    (again,) = fresh.update(dropped, nxt.end)
    assert again.id == stored.id and again.finding_count == stored.finding_count + 1
    assert again.cause == rank_causes([*fs, nxt])[:MAX_CAUSES]
    assert len(fresh.incidents()) == 1 and maps_of(fresh) == [MAX_FINDINGS_PER_KEY] * 4


def test_a_restart_does_not_reopen_a_resolved_incident_for_its_dropped_findings() -> None:
    c = correlator()
    fs = flaps(2 * MAX_FINDINGS_PER_KEY)
    feed(c, fs)
    (done,) = c.update([], fs[-1].end + 10 * M)
    assert done.status is IncidentStatus.RESOLVED
    fresh = correlator()
    fresh.seed([done], [f for f in fs if f.id in done.finding_ids])
    dropped = [f for f in fs if f.id not in done.finding_ids]
    assert fresh.update(dropped, fs[-1].end + 11 * M) == []  # nothing changed: no news
    (inc,) = fresh.incidents()
    assert inc == done


def test_a_record_stored_before_the_cap_is_capped_when_seeded() -> None:
    ref = uncapped()
    fs = flaps(3 * MAX_FINDINGS_PER_KEY)
    feed(ref, fs)
    (stored,) = ref.incidents()
    old = Incident.model_validate(stored.model_dump(exclude={"finding_count"}))
    assert old.finding_count == len(fs)  # an older record without it: every finding listed
    c = correlator()
    c.seed([old], fs)
    nxt = finding(FLAPPER, fs[-1].start + 30 * S, fs[-1].end + 30 * S)
    (inc,) = c.update([nxt], nxt.end)
    assert inc.id == old.id and inc.finding_count == len(fs) + 1
    assert inc.finding_ids == [f.id for f in fs[-MAX_FINDINGS_PER_KEY + 1 :]] + [nxt.id]
    assert inc.cause == rank_causes([*fs, nxt])[:MAX_CAUSES] and inc.start == T0


@st.composite
def growing_streams(draw: st.DrawFn) -> list[tuple[int, list[Finding]]]:
    """As :func:`streams`, but new findings start at ``now`` (a key's findings come in order)
    and a finding only grows (its severity and score stay): what a detector reports."""
    now = T0
    live: list[Finding] = []
    out: list[tuple[int, list[Finding]]] = []
    for _ in range(draw(st.integers(1, 30))):
        now += draw(st.integers(0, 10)) * M
        batch: list[Finding] = []
        for _ in range(draw(st.integers(0, 4))):
            if live and draw(st.booleans()):
                i = draw(st.integers(0, len(live) - 1))
                live[i] = live[i].model_copy(update={"end": max(live[i].end, now)})
                batch.append(live[i])
            else:
                f = finding(
                    draw(st.sampled_from(KEYS)),
                    now,
                    score=draw(st.sampled_from([0.3, 0.6, 0.95])),
                    severity=draw(st.sampled_from(list(Severity))),
                )
                if all(g.id != f.id for g in live):
                    live.append(f)
                    batch.append(f)
        out.append((now, batch))
    return out


@settings(max_examples=150, deadline=None)
@given(
    growing_streams(),
    st.sampled_from(
        [
            {},
            {"topology": {"web": ["api"]}},
            {"reopen_window": "1m", "flap_max": 2},
            {"group_window": "1m", "resolve_after": "2m", "reopen_window": "3m"},
        ]
    ),
)
def test_a_cap_changes_nothing_an_incident_says_but_which_findings_it_lists(
    ticks: list[tuple[int, list[Finding]]], cfg: dict[str, Any]
) -> None:
    c = IncidentCorrelator(IncidentsConfig(**cfg), by_key, max_per_key=2)
    ref = uncapped(**cfg)
    for now, batch in ticks:
        got, want = c.update(batch, now), ref.update(batch, now)
        assert [g.model_dump(exclude={"finding_ids", "finding_count"}) for g in got] == [
            w.model_dump(exclude={"finding_ids", "finding_count"}) for w in want
        ]
        for g, w in zip(got, want, strict=True):
            assert g.finding_count == len(w.finding_ids)
            assert set(g.finding_ids) <= set(w.finding_ids)
            per_key = {k: sum(1 for i in g.finding_ids if c._findings[i].key == k) for k in g.keys}
            assert all(n <= 2 for n in per_key.values())


def test_forgetting_a_resolved_incident_forgets_what_it_dropped() -> None:
    c = IncidentCorrelator(IncidentsConfig(), by_key, retain=0)
    fs = flaps(2 * MAX_FINDINGS_PER_KEY)
    feed(c, fs)
    assert c._dropping == {FLAPPER: {c.incidents()[0].id}}
    c.update([], fs[-1].end + 10 * M)  # resolved
    c.update([], fs[-1].end + 3 * 60 * M)  # past the reopen and flap windows: forgotten
    assert c.incidents() == [] and c._dropping == {} and maps_of(c) == [0, 0, 0, 0]


# -- ids and versions over forgetting, merges, late findings, ties ------------------------------


class Stored:
    """What the engine's store gives a correlator's ``recall``: each incident's newest version
    and every finding fed."""

    def __init__(self) -> None:
        self.incidents: dict[str, Incident] = {}
        self.findings: dict[str, Finding] = {}
        self.listings = 0

    def recall(self, iid: str) -> tuple[Incident, list[Finding]] | None:
        inc = self.incidents.get(iid)
        if inc is None:
            return None
        return inc, [self.findings[i] for i in inc.finding_ids if i in self.findings]

    def listing(self, fid: str) -> tuple[Incident, list[Finding]] | None:
        self.listings += 1
        found = [i for i in self.incidents.values() if fid in i.finding_ids]
        found.sort(key=lambda i: (-i.updated_at, i.id))  # as the stores
        return self.recall(found[0].id) if found else None

    def listed_twice(self) -> dict[str, list[str]]:
        owners: dict[str, list[str]] = {}
        for inc in self.incidents.values():
            for fid in inc.finding_ids:
                owners.setdefault(fid, []).append(inc.id)
        return {fid: ids for fid, ids in owners.items() if len(ids) > 1}

    def update(self, c: IncidentCorrelator, fs: list[Finding], now: int) -> list[Incident]:
        self.findings.update((f.id, f) for f in fs)
        out = c.update(fs, now)
        self.incidents.update((i.id, i) for i in out)
        return out


def test_a_finding_of_a_forgotten_incident_that_grows_never_reopens_its_id_at_version_1() -> None:
    first = finding('lat{instance="h0"}', T0, T0 + M)
    grown = first.model_copy(update={"end": T0 + 3 * 60 * M})
    for recalls in (True, False):
        stored = Stored()
        c = IncidentCorrelator(
            IncidentsConfig(), by_key, retain=0, recall=stored.recall if recalls else None
        )
        (opened,) = stored.update(c, [first], T0 + M)
        stored.update(c, [], T0 + 10 * M)  # resolved: version 2
        stored.update(c, [], T0 + 2 * 60 * M)  # past the reopen and flap windows: forgotten
        assert c.incidents() == []
        (back,) = stored.update(c, [grown], grown.end)
        assert back.status is IncidentStatus.OPEN and first.id in back.finding_ids
        if recalls:  # the stored incident reopens, one version on
            assert (back.id, back.version, back.opened_at) == (opened.id, 3, opened.opened_at)
        else:  # it cannot tell: a new opening, under an id of its own
            assert back.id != opened.id and back.version == 1


def test_a_finding_that_joined_a_forgotten_incident_and_grows_reopens_that_incident() -> None:
    # Not the opener: the second key's finding. Without recall_listing it would join or open
    # another incident while the stored one still lists it (listed twice, counted twice).
    a = finding('lat{instance="h0"}', T0, T0 + M)
    b = finding('err{instance="h0"}', T0 + S, T0 + M)
    stored = Stored()
    c = IncidentCorrelator(
        IncidentsConfig(), by_key, retain=0, recall=stored.recall, recall_listing=stored.listing
    )
    (opened,) = stored.update(c, [a, b], T0 + M)
    stored.update(c, [], T0 + 10 * M)  # resolved: version 2
    stored.update(c, [], T0 + 2 * 60 * M)  # past the reopen and flap windows: forgotten
    assert c.incidents() == [] and stored.listings == 0
    grown = b.model_copy(update={"end": T0 + 3 * 60 * M})
    (back,) = stored.update(c, [grown], grown.end)
    assert (back.id, back.version, back.opened_at) == (opened.id, 3, opened.opened_at)
    assert back.status is IncidentStatus.OPEN and back.finding_count == 2
    assert set(back.finding_ids) == {a.id, b.id} and stored.listed_twice() == {}
    assert stored.listings == 1
    # Known again: growing on, or a new finding joining it, asks nothing.
    stored.update(c, [grown.model_copy(update={"end": grown.end + M})], grown.end + M)
    stored.update(c, [finding('lat{instance="h0"}', grown.end + M)], grown.end + M)
    assert stored.listings == 1 and len(stored.incidents) == 1


def test_an_incident_merged_away_in_the_update_its_severity_rose_skips_no_version() -> None:
    c = correlator()
    c.update([finding('b{pod="p"}', 0, 0, score=0.95, severity=Severity.CRITICAL)], 10)
    a = finding('a{instance="z"}', 1000, 1000, score=0.6)
    (opened,) = c.update([a], 1010)
    grown = a.model_copy(update={"end": 2000, "score": 0.95, "severity": Severity.CRITICAL})
    bridge = finding('x{instance="z",pod="p"}', 2000, score=0.95, severity=Severity.CRITICAL)
    merged = {i.id: i for i in c.update([grown, bridge], 2010)}[opened.id]
    assert merged.merged_into is not None and merged.severity is Severity.CRITICAL
    assert merged.version == opened.version + 1


def test_a_late_finding_within_the_dropped_range_of_its_key_is_counted() -> None:
    # The incident dropped the findings of starts 0s and 10s; one of start 5s, new, comes late.
    key = 'lat{instance="h"}'
    fs = [finding(key, i * 10 * S, i * 10 * S + S) for i in range(MAX_FINDINGS_PER_KEY + 2)]
    late = finding(key, 5 * S, 6 * S)
    capped, ref = correlator(), uncapped()
    for c in (capped, ref):
        feed(c, fs)
        c.update([late], fs[-1].end + S)
    (got,), (want,) = capped.incidents(), ref.incidents()
    assert got.finding_count == len(want.finding_ids) == len(fs) + 1
    assert got.finding_ids == [f.id for f in fs[2:]]  # the newest of the key stay listed
    dropped_again = fs[0].model_copy(update={"end": fs[0].end + S})  # a dropped one grows
    capped.update([dropped_again], fs[-1].end + 2 * S)
    assert capped.incidents()[0].finding_count == len(fs) + 1  # not counted twice


def test_keys_whose_scores_tie_exactly_rank_by_onset() -> None:
    # 0.25 · 1 + 0.15 · 0.5 + 0.1 · 0.3 and 0.25 · 0.5 + 0.15 · 1 + 0.1 · 0.8 are both 0.355,
    # but not in floating point: the earlier onset must still come first.
    fs = [
        finding('a{instance="h"}', 0, score=0.30, severity=Severity.WARNING),
        finding('b{instance="h"}', 1000, score=0.80, severity=Severity.CRITICAL),
        finding('c{instance="h"}', 2000, score=0.0, severity=Severity.INFO),
    ]
    ranked = rank_causes(fs)
    assert [r["key"] for r in ranked] == ['a{instance="h"}', 'b{instance="h"}', 'c{instance="h"}']
    assert ranked[0]["score"] == ranked[1]["score"] == 0.355


@settings(max_examples=60, deadline=None)
@given(
    streams(),
    st.sampled_from([1, 2, MAX_FINDINGS_PER_KEY]),
    st.sampled_from([{}, {"reopen_window": "1m", "flap_window": "10m", "flap_max": 2}]),
)
def test_every_version_of_an_id_is_the_one_before_plus_one_when_incidents_are_forgotten(
    ticks: list[tuple[int, list[Finding]]], cap: int, cfg: dict[str, Any]
) -> None:
    """Incidents are forgotten as soon as they may be (``retain=0``) and recalled from what was
    stored: an id's versions go 1, 2, 3... (a finding merely growing repeats one), and neither
    the incidents in memory nor the stored ones ever share a finding."""
    stored = Stored()
    c = IncidentCorrelator(
        IncidentsConfig(**cfg),
        by_key,
        retain=0,
        max_per_key=cap,
        recall=stored.recall,
        recall_listing=stored.listing,
    )
    for now, batch in ticks:
        before = dict(stored.incidents)
        for inc in stored.update(c, batch, now):
            prev = before.get(inc.id)
            want = {1} if prev is None else {prev.version, prev.version + 1}
            assert inc.version in want, (prev, inc)
        held = [fid for inc in c.incidents() for fid in inc.finding_ids]
        assert len(held) == len(set(held))
        assert stored.listed_twice() == {}
