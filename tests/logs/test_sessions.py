"""Tests of session anomaly detection (relia.logs.sessions): known answers, state, streaming."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from relia.detect.checkpoint import pack, unpack
from relia.errors import ConfigError, DataError, DetectorError
from relia.incidents.model import Finding, FindingKind
from relia.logs.sessions import (
    SESSION_DETECTOR,
    Reason,
    ScoredSession,
    SessionFindings,
    SessionModel,
    SessionTracker,
)

# A write workflow: open, allocate, three replicas written and acknowledged (interleaved in a
# few orders, like concurrent datanodes), commit, and a verification in some sessions.
ORDERS = (
    ["write", "write", "write", "ack", "ack", "ack"],
    ["write", "ack", "write", "ack", "write", "ack"],
    ["write", "write", "ack", "write", "ack", "ack"],
)


def normal_session(rng: random.Random) -> list[str]:
    body = list(rng.choice(ORDERS))
    tail = ["verify"] if rng.random() < 0.3 else []
    return ["open", "allocate", *body, "commit", *tail]


def normal_sessions(n: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    return [normal_session(rng) for _ in range(n)]


BASE = ["open", "allocate", "write", "ack", "write", "ack", "write", "ack", "commit"]


@pytest.fixture(scope="module")
def model() -> SessionModel:
    return SessionModel().fit(normal_sessions(600, seed=1))


def kinds(model: SessionModel, session: Sequence[str]) -> set[str]:
    return {r.kind for r in model.score([session]).reasons[0]}


def test_fresh_normal_sessions_are_not_flagged(model: SessionModel) -> None:
    sc = model.score(normal_sessions(400, seed=2))
    assert not sc.anomaly.any()
    assert (sc.score < 0.5).all()
    assert all(r == () for r in sc.reasons)


def test_unseen_template(model: SessionModel) -> None:
    session = [*BASE[:4], "disk failure", *BASE[4:]]
    sc = model.score([session])
    assert sc.anomaly[0] and sc.score[0] == 1.0
    assert sc.reasons[0][0].kind == "unseen_template"


def test_missing_step(model: SessionModel) -> None:
    no_commit = [t for t in BASE if t != "commit"]
    assert model.predict([no_commit])[0]
    got = kinds(model, no_commit)
    assert "missing_template" in got
    assert "unseen_transition" in got  # ack -> session end never ends a normal session
    one_ack_lost = BASE[:-2] + ["commit"]
    got = kinds(model, one_ack_lost)
    assert {"count_low", "invariant_violated"} <= got
    detail = " ".join(r.detail for r in model.score([one_ack_lost]).reasons[0])
    assert "'write'" in detail and "'ack'" in detail and "here 3:2" in detail


def test_reordered_step_fires_only_the_transition(model: SessionModel) -> None:
    session = ["open", "commit", *BASE[2:8], "allocate"]  # same counts, commit before allocate
    sc = model.score([session])
    assert sc.anomaly[0]
    assert {r.kind for r in sc.reasons[0]} == {"unseen_transition"}
    assert any("'open' -> 'commit'" in r.detail for r in sc.reasons[0])


def test_repeated_step(model: SessionModel) -> None:
    session = [*BASE, "commit"]
    got = kinds(model, session)
    assert "count_high" in got
    assert "invariant_violated" in got  # one commit per open
    assert model.predict([session])[0]


def test_rare_in_contaminated_training_is_still_flagged() -> None:
    """Training holds a few anomalous sessions: rare (< alpha), not only unseen, is flagged."""
    train = normal_sessions(1000, seed=3)
    for i in range(0, 1000, 200):  # 0.5 % of training sessions hit an exception
        train[i] = [*BASE[:3], "exception", *BASE[3:]]
    m = SessionModel(alpha=0.01).fit(train)
    sc = m.score([[*BASE[:3], "exception", *BASE[3:]], BASE])
    assert sc.anomaly.tolist() == [True, False]
    reason = sc.reasons[0][0]
    assert reason.kind == "rare_template" and reason.frequency == pytest.approx(0.005)
    assert 0.5 < sc.score[0] < 1.0


def test_integer_and_string_ids_agree(model: SessionModel) -> None:
    train = normal_sessions(300, seed=4)
    ids = {t: i for i, t in enumerate(sorted({t for s in train for t in s}))}
    tests = [BASE, BASE[:-1], [*BASE, "commit"], ["open", "commit", *BASE[2:8], "allocate"]]
    ms = SessionModel().fit(train)
    mi = SessionModel().fit([[ids[t] for t in s] for s in train])
    a = ms.score(tests)
    b = mi.score([np.array([ids[t] for t in s]) for s in tests])
    assert a.anomaly.tolist() == b.anomaly.tolist() == [False, True, True, True]
    np.testing.assert_array_equal(a.score, b.score)
    assert [[r.kind for r in rs] for rs in a.reasons] == [[r.kind for r in rs] for rs in b.reasons]
    # An id the miner created after training is an unseen template.
    assert b.reasons[0] == () and mi.score([[*mi.vocab[:2], 999]]).reasons[0][0].kind == (
        "unseen_template"
    )


def test_invariants_are_reported(model: SessionModel) -> None:
    inv = {(x, y): (p, q) for x, y, p, q, _ in model.invariants}
    assert inv.get(("write", "ack")) == (1, 1) or inv.get(("ack", "write")) == (1, 1)
    assert all(s > 0.99 for *_, s in model.invariants)


def test_model_round_trip(model: SessionModel) -> None:
    blob = model.to_bytes()
    again = SessionModel.from_bytes(blob)
    tests = [BASE, BASE[:-1], [*BASE, "x"], *normal_sessions(50, seed=5)]
    a, b = model.score(tests), again.score(tests)
    np.testing.assert_array_equal(a.score, b.score)
    assert a.reasons == b.reasons
    assert again.to_bytes() == blob
    assert len(blob) < 4096


def test_bad_input_and_state() -> None:
    with pytest.raises(DataError, match="no sessions"):
        SessionModel().fit([])
    with pytest.raises(DetectorError, match="not fitted"):
        SessionModel().score([BASE])
    with pytest.raises(ConfigError, match="alpha"):
        SessionModel(alpha=0.7)
    with pytest.raises(DataError, match="ints or strings"):
        SessionModel().fit([[1.5, 2.0]])  # type: ignore[list-item]
    with pytest.raises(DetectorError):
        SessionModel.from_bytes(b"not a checkpoint")
    with pytest.raises(DetectorError, match="not a session model"):
        SessionModel.from_bytes(SessionTracker().to_bytes())
    m = SessionModel().fit([[], ["a"]])  # empty sessions are sessions too
    assert m.score([]).anomaly.shape == (0,)
    assert m.score([[]]).anomaly.shape == (1,)


def test_model_parameters_are_checked() -> None:
    for bad in (0.0, 0.5, -0.1):
        with pytest.raises(ConfigError, match="alpha"):
            SessionModel(alpha=bad)
    with pytest.raises(ConfigError, match="max_invariant_templates"):
        SessionModel(max_invariant_templates=-1)
    with pytest.raises(ConfigError, match="max_reasons"):
        SessionModel(max_reasons=0)
    assert SessionModel(alpha=0.49, max_invariant_templates=0, max_reasons=1).alpha == 0.49
    # No invariant search at all: the model still learns and scores.
    m = SessionModel(max_invariant_templates=0).fit([["a", "b"]] * 20)
    assert m.invariants == [] and not m.predict([["a", "b"]])[0]


def test_invariant_search_keeps_the_most_frequent_templates() -> None:
    train = [["a", "b", "d", *(["c"] if i % 2 else [])] for i in range(40)]
    assert {(x, y) for x, y, *_ in SessionModel().fit(train).invariants} == {
        ("a", "b"),
        ("a", "d"),
        ("b", "d"),
    }
    capped = SessionModel(max_invariant_templates=2).fit(train)
    assert capped.invariants == [("a", "b", 1, 1, 1.0)]


def test_invariant_rules_at_alpha() -> None:
    # Two templates that showed up together in exactly alpha of training sessions may carry one.
    m = SessionModel(alpha=0.01).fit([["a"]] * 99 + [["x", "y"]])
    assert [(x, y, p, q) for x, y, p, q, _ in m.invariants] == [("x", "y", 1, 1)]
    # Support must exceed 1 - alpha: 3 of 4 sessions at 1:1 is exactly 1 - alpha, not enough.
    m = SessionModel(alpha=0.25).fit([["x", "y"]] * 3 + [["x", "y", "y"]])
    assert m.invariants == []
    m = SessionModel(alpha=0.25).fit([["x", "y"]] * 4 + [["x", "y", "y"]])
    assert [(x, y, p, q) for x, y, p, q, _ in m.invariants] == [("x", "y", 1, 1)]


def test_invariant_ratio_is_the_one_most_sessions_keep() -> None:
    # 1:1 in 300 sessions, 1:2 in two (of two shapes): the ratio is 1:1, not the most shapes.
    train = [["x", "y"]] * 300 + [["x", "y", "y"], ["x", "x", "y", "y", "y", "y"]]
    m = SessionModel().fit(train)
    assert [(x, y, p, q) for x, y, p, q, _ in m.invariants] == [("x", "y", 1, 1)]


def test_a_feature_exactly_at_alpha_is_not_flagged() -> None:
    # "v" is in exactly alpha (1/4) of training sessions: score 0.5, no flag, no reason.
    m = SessionModel(alpha=0.25).fit([["a"]] * 3 + [["a", "v"]])
    sc = m.score([["a", "v"]])
    assert sc.score[0] == pytest.approx(0.5)
    assert not sc.anomaly[0] and sc.reasons[0] == ()


def test_a_count_never_seen_is_flagged_even_for_a_template_at_alpha() -> None:
    # "v" is in alpha of training sessions, never three times: the count is what's new.
    m = SessionModel(alpha=0.25).fit([["a"]] * 3 + [["v", "v", "a"]])
    sc = m.score([["v", "v", "v", "a"]])
    assert sc.anomaly[0] and sc.score[0] == 1.0
    assert [r.kind for r in sc.reasons[0]] == ["count_high"]
    assert sc.reasons[0][0].detail == "'v' x3; >= 3 in no training session"


def test_missing_template_only_for_templates_nearly_always_there() -> None:
    # "b" in exactly 1 - alpha of training: its absence is normal (score 0: [a] was seen).
    m = SessionModel(alpha=0.25).fit([["a", "b"]] * 3 + [["a"]])
    sc = m.score([["a"]])
    assert sc.score[0] == 0.0 and not sc.anomaly[0]
    # In more than 1 - alpha: absent is rare (in 1/5 of training), flagged as missing.
    m = SessionModel(alpha=0.25).fit([["a", "b"]] * 4 + [["a"]])
    sc = m.score([["a"]])
    missing = [r for r in sc.reasons[0] if r.kind == "missing_template"]
    assert sc.anomaly[0] and [r.detail for r in missing] == [
        "'b' absent; present in 80% of training sessions"
    ]
    assert missing[0].frequency == pytest.approx(0.2)


def test_unseen_template_is_the_only_reason_for_its_transitions(model: SessionModel) -> None:
    session = [*BASE[:4], "disk failure", *BASE[4:]]
    assert [r.kind for r in model.score([session]).reasons[0]] == ["unseen_template"]


def test_scores_never_exceed_one_for_features_far_rarer_than_alpha() -> None:
    m = SessionModel(alpha=0.4).fit([["a"]] * 999 + [["a", "b"]])
    sc = m.score([["a", "b"]])
    assert sc.anomaly[0] and sc.score[0] == 1.0
    assert sc.reasons[0][0].kind == "rare_template"


def test_reasons_rarest_first_and_capped() -> None:
    train = [["open", "write", "commit"]] * 995 + [["open", "write", "oops", "commit"]] * 5
    session = ["open", "write", "oops", "write"]  # rare template, no commit, write twice
    sc = SessionModel().fit(train).score([session])
    freqs = [r.frequency for r in sc.reasons[0]]
    assert freqs == sorted(freqs) and len(freqs) >= 3
    assert sc.reasons[0][-1].kind == "rare_template" and freqs[-1] == pytest.approx(0.005)
    capped = SessionModel(max_reasons=2).fit(train).score([session])
    assert capped.reasons[0] == sc.reasons[0][:2]


def test_reason_details_name_what_a_person_checks(model: SessionModel) -> None:
    no_commit = [t for t in BASE if t != "commit"]
    details = [r.detail for r in model.score([no_commit]).reasons[0]]
    assert "'commit' absent; present in 100% of training sessions" in details
    assert "'ack' -> session end never seen in training" in details
    starts_late = BASE[1:]
    details = [r.detail for r in model.score([starts_late]).reasons[0]]
    assert "session start -> 'allocate' never seen in training" in details


def test_long_template_text_is_clipped_in_details() -> None:
    t80, t81 = "x" * 80, "y" * 81
    m = SessionModel().fit([[t80, t81]] * 10)
    details = " ".join(r.detail for r in m.score([[t81, t80]]).reasons[0])
    assert repr(t80) in details and repr("y" * 77 + "...") in details and t81 not in details


def test_corrupt_model_checkpoint_is_refused_at_load() -> None:
    ck = unpack(SessionModel().fit([["a", "b"]] * 5).to_bytes())
    ck["state"]["df"] = ck["state"]["df"][:1]
    with pytest.raises(DetectorError, match="vocabulary and counts differ"):
        SessionModel.from_bytes(pack(ck))


def test_bool_template_ids_are_refused() -> None:
    with pytest.raises(DataError, match="ints or strings"):
        SessionModel().fit([[True, False]])
    with pytest.raises(DataError, match="ints or strings"):
        SessionModel().fit([np.array([True])])


# ---------------------------------------------------------------------- streaming


def events(sessions: Sequence[Sequence[int]], gap: int = 10, every: int = 1000) -> list[tuple]:
    """(key, template, ts) of sessions started ``every`` ms apart (they overlap for big gaps)."""
    out = []
    for s, seq in enumerate(sessions):
        out += [(f"blk_{s}", t, s * every + j * gap) for j, t in enumerate(seq)]
    out.sort(key=lambda e: e[2])
    return out


def feed(tracker: SessionTracker, evs: list[tuple], batch: int = 7) -> list:
    out = []
    for lo in range(0, len(evs), batch):
        k, t, ts = zip(*evs[lo : lo + batch], strict=True)
        out += tracker.observe(list(k), np.array(t), np.array(ts))
    return out


INT_BASE = [0, 1, 2, 3, 2, 3, 2, 3, 4]


def test_tracker_idle_timeout_and_warm_up() -> None:
    seqs = [INT_BASE] * 60 + [INT_BASE + [4]] + [INT_BASE] * 5
    tracker = SessionTracker(idle_timeout_ms=500, warmup_sessions=40)
    out = feed(tracker, events(seqs, gap=10, every=1000))
    assert tracker.warming_up == 0 and tracker.model.fitted
    assert 60 <= len(out) <= 65 and tracker.open_sessions == len(seqs) - len(out)
    assert [s.key for s in out] == [f"blk_{i}" for i in range(len(out))]
    assert all(s.closed_by == "idle" for s in out)
    assert out[0].start_ms == 0 and out[0].end_ms == 80
    assert out[0].templates.tolist() == INT_BASE
    flagged = [s.key for s in out + tracker.flush() if s.anomaly]
    assert flagged == ["blk_60"]


def test_tracker_interleaved_sessions_keep_their_order() -> None:
    seqs = [INT_BASE] * 30
    tracker = SessionTracker(SessionModel().fit(seqs), idle_timeout_ms=100)
    out = feed(tracker, events(seqs, gap=40, every=30), batch=13)  # sessions overlap in time
    out += tracker.flush()
    assert len(out) == 30 and {s.key for s in out} == {f"blk_{i}" for i in range(30)}
    assert all(s.templates.tolist() == INT_BASE and not s.anomaly for s in out)


def test_tracker_bounds() -> None:
    model = SessionModel().fit([INT_BASE] * 10)
    tracker = SessionTracker(model, max_events_per_session=4, idle_timeout_ms=10**9)
    out = tracker.observe(["a"] * 9, INT_BASE, list(range(9)))
    assert [s.closed_by for s in out] == ["max_events", "max_events"]
    assert [len(s.templates) for s in out + tracker.flush()] == [4, 4, 1]
    tracker = SessionTracker(model, max_open_sessions=2, idle_timeout_ms=10**9)
    out = tracker.observe(["a", "b", "a", "c"], [0, 0, 1, 0], [0, 1, 2, 3])
    assert [(s.key, s.closed_by) for s in out] == [("b", "evicted")]
    with pytest.raises(DataError, match="differ in length"):
        tracker.observe(["a"], [1, 2], [0])
    with pytest.raises(ConfigError, match="idle_timeout_ms"):
        SessionTracker(idle_timeout_ms=0)


def test_tracker_checkpoint_mid_stream() -> None:
    seqs = [INT_BASE] * 40 + [INT_BASE[:-1]] + [INT_BASE] * 10
    evs = events(seqs, gap=30, every=100)
    half = len(evs) // 2
    whole = SessionTracker(idle_timeout_ms=250, warmup_sessions=20)
    expect = feed(whole, evs) + whole.flush()
    first = SessionTracker(idle_timeout_ms=250, warmup_sessions=20)
    got = feed(first, evs[:half])
    second = SessionTracker.from_bytes(first.to_bytes())
    got += feed(second, evs[half:]) + second.flush()
    summary = [(s.key, s.start_ms, s.end_ms, s.templates.tolist(), s.anomaly) for s in expect]
    assert [(s.key, s.start_ms, s.end_ms, s.templates.tolist(), s.anomaly) for s in got] == summary
    assert [s.key for s in expect if s.anomaly] == ["blk_40"]
    with pytest.raises(DetectorError, match="not a session tracker"):
        SessionTracker.from_bytes(SessionModel().fit([[1]]).to_bytes())


def test_a_session_closes_on_the_event_that_reaches_the_cap() -> None:
    model = SessionModel().fit([INT_BASE] * 10)
    tracker = SessionTracker(model, max_events_per_session=4, idle_timeout_ms=10**9)
    assert tracker.observe(["a"] * 2, [0, 1], [0, 1]) == []
    out = tracker.observe(["a"] * 2, [2, 3], [2, 3])
    assert [(s.closed_by, s.templates.tolist()) for s in out] == [("max_events", [0, 1, 2, 3])]
    assert tracker.open_sessions == 0


def test_late_events_widen_the_session_span() -> None:
    model = SessionModel().fit([INT_BASE] * 10)
    tracker = SessionTracker(model, idle_timeout_ms=10**9)
    tracker.observe(["a", "b", "b"], [0, 0, 1], [100, 300, 200])  # b out of order in one batch
    tracker.observe(["a"], [1], [50])  # an event for a stamped before its first
    spans = {s.key: (s.start_ms, s.end_ms) for s in tracker.flush()}
    assert spans == {"a": (50, 100), "b": (200, 300)}
    # The same where the batch overflows the cap and the session closes in it.
    tracker = SessionTracker(model, idle_timeout_ms=10**9, max_events_per_session=3)
    tracker.observe(["a"], [0], [100])
    out = tracker.observe(["a"] * 2, [1, 2], [50, 60])
    assert [(s.start_ms, s.end_ms, s.closed_by) for s in out] == [(50, 100, "max_events")]


def test_the_least_recently_active_session_is_evicted_across_batches() -> None:
    model = SessionModel().fit([INT_BASE] * 10)
    tracker = SessionTracker(model, max_open_sessions=2, idle_timeout_ms=10**9)
    assert tracker.observe(["a", "b"], [0, 0], [0, 1]) == []
    assert tracker.observe(["a"], [1], [2]) == []  # a is now the more recently active
    out = tracker.observe(["c"], [0], [3])
    assert [(s.key, s.closed_by) for s in out] == [("b", "evicted")]


def test_the_clock_never_goes_back() -> None:
    model = SessionModel().fit([INT_BASE] * 10)
    tracker = SessionTracker(model, idle_timeout_ms=500)
    tracker.observe(["a"], [0], [1000])
    tracker.observe(["b"], [0], [100])  # a late line
    assert tracker.clock_ms == 1000
    assert tracker.close_idle(200) == [] and tracker.clock_ms == 1000
    assert [s.key for s in tracker.close_idle(1500)] == ["a", "b"]


def test_idle_timeout_boundary() -> None:
    model = SessionModel().fit([INT_BASE] * 10)
    tracker = SessionTracker(model, idle_timeout_ms=500)
    tracker.observe(["a"], [0], [1000])
    assert tracker.close_idle(1499) == []
    assert [(s.key, s.closed_by) for s in tracker.close_idle(1500)] == [("a", "idle")]


def test_warm_up_fits_on_exactly_warmup_sessions() -> None:
    tracker = SessionTracker(idle_timeout_ms=10, warmup_sessions=3)
    assert tracker.flush() == []  # nothing seen: nothing to fit, no error
    for i in range(2):
        assert tracker.observe([f"s{i}"], [0], [100 * i]) == []
    out = tracker.observe(["s2"], [0], [200])  # closes s1 (s0 closed above): 2 warm
    assert out == [] and tracker.warming_up == 2
    out = tracker.observe(["s3"], [0], [300])  # closes s2: the third, the model is fitted
    assert [s.key for s in out] == ["s0", "s1", "s2"] and tracker.model.fitted
    assert tracker.warming_up == 0


def test_flush_scores_a_partial_warm_up() -> None:
    tracker = SessionTracker(idle_timeout_ms=10, warmup_sessions=100)
    tracker.observe(["a", "b"], [0, 0], [0, 0])
    tracker.observe(["c"], [1], [50])  # a and b idle: held back for warm-up
    assert tracker.warming_up == 2
    out = tracker.flush()
    assert [(s.key, s.closed_by) for s in out] == [("a", "idle"), ("b", "idle"), ("c", "flush")]
    assert tracker.model.fitted


def test_tracker_checkpoint_keeps_clock_settings_and_warm_up() -> None:
    model = SessionModel(alpha=0.2, max_invariant_templates=3, max_reasons=2)
    tracker = SessionTracker(model, idle_timeout_ms=10, warmup_sessions=100)
    tracker.observe(["a", "b"], [0, 0], [0, 0])
    tracker.observe(["c"], [1], [50])
    again = SessionTracker.from_bytes(tracker.to_bytes())
    assert again.clock_ms == 50 and again.warming_up == 2 and again.open_sessions == 1
    m = again.model
    assert (m.alpha, m.max_invariant_templates, m.max_reasons) == (0.2, 3, 2)
    out = again.flush()
    assert [(s.key, s.closed_by) for s in out] == [("a", "idle"), ("b", "idle"), ("c", "flush")]
    ck = unpack(tracker.to_bytes())
    ck["warm_closed_by"] = ck["warm_closed_by"][:1]
    with pytest.raises(DetectorError, match="corrupt session tracker checkpoint"):
        SessionTracker.from_bytes(pack(ck))


def test_tracker_refuses_non_integer_ids_or_times() -> None:
    tracker = SessionTracker()
    with pytest.raises(DataError, match="integers"):
        tracker.observe(["a"], [1], [0.5])  # type: ignore[list-item]
    with pytest.raises(DataError, match="integers"):
        tracker.observe(["a"], [1.0], [0])  # type: ignore[list-item]


def test_one_batch_keeps_each_sessions_arrival_order() -> None:
    model = SessionModel().fit([INT_BASE] * 10)
    tracker = SessionTracker(model, idle_timeout_ms=10**9)
    rng = np.random.default_rng(7)
    keys = [f"k{k}" for k in rng.integers(0, 3, 500)]
    tids = np.arange(500)
    tracker.observe(keys, tids, np.zeros(500, np.int64))
    for s in tracker.flush():
        assert s.templates.tolist() == [t for t, k in zip(tids, keys, strict=True) if k == s.key]


# ---------------------------------------------------------------------- properties

tokens = st.one_of(st.integers(0, 6), st.sampled_from(["a", "b", "c", "d"]), st.just(2**70))
session_lists = st.lists(st.lists(tokens, max_size=12), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@given(train=session_lists, test=session_lists)
@example(train=[[]], test=[[0]])  # an empty vocabulary once crashed scoring
def test_random_sessions_never_crash_and_are_deterministic(
    train: list[list[int | str]], test: list[list[int | str]]
) -> None:
    m1, m2 = SessionModel().fit(train), SessionModel().fit(train)
    assert m1.to_bytes() == m2.to_bytes()
    a, b = m1.score(test), SessionModel.from_bytes(m2.to_bytes()).score(test)
    np.testing.assert_array_equal(a.score, b.score)
    assert a.reasons == b.reasons
    assert ((a.score >= 0) & (a.score <= 1)).all()
    np.testing.assert_array_equal(a.anomaly, a.score > 0.5)
    assert all(bool(r) == f for r, f in zip(a.reasons, a.anomaly, strict=True))


@settings(max_examples=40, deadline=None)
@given(
    evs=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 4), st.integers(0, 50)), max_size=80),
    batch=st.integers(1, 9),
    cut=st.integers(0, 80),
)
def test_tracker_loses_and_duplicates_no_event(
    evs: list[tuple[int, int, int]], batch: int, cut: int
) -> None:
    evs.sort(key=lambda e: e[2])
    tracker = SessionTracker(
        idle_timeout_ms=7, warmup_sessions=3, max_open_sessions=4, max_events_per_session=5
    )
    out = feed(tracker, evs[:cut], batch)
    tracker = SessionTracker.from_bytes(tracker.to_bytes())
    out += feed(tracker, evs[cut:], batch) + tracker.flush()
    per_key: dict[int, list[int]] = {}
    for s in out:
        per_key.setdefault(int(s.key), []).extend(s.templates.tolist())
        assert 1 <= len(s.templates) <= 5 and s.start_ms <= s.end_ms
    expect: dict[int, list[int]] = {}
    for k, t, _ in evs:
        expect.setdefault(k, []).append(t)
    assert {k: sorted(v) for k, v in per_key.items()} == {k: sorted(v) for k, v in expect.items()}


# ---------------------------------------------------------------------- engine hook


def test_session_findings_for_the_engine() -> None:
    model = SessionModel().fit([INT_BASE] * 50)
    texts = {t: f"text of {t}" for t in range(10)}
    scorer = SessionFindings(
        "hdfs.log", SessionTracker(model, idle_timeout_ms=1000), template_text=texts.__getitem__
    )
    # Tick 1: two sessions and a line without a key; tick 2: only session "a" goes on.
    keys: list[str | None] = ["a"] * 5 + ["b"] * 9 + [None]
    assert scorer.observe(keys, [*INT_BASE[:5], *INT_BASE, 7], 10_000) == []
    assert scorer.observe(["a"] * 5, [*INT_BASE[5:], 4], 10_500) == []
    found = scorer.observe([], [], 12_000)  # both idle now; "a" repeated its commit
    assert [f.evidence["session"] for f in found] == ["a"]
    f = found[0]
    assert f.detector == SESSION_DETECTOR and f.start == 10_000 and f.end == 10_500
    assert f.key == 'log-session{file="hdfs.log",session="a"}'
    assert f.evidence["lines"] == 10 and f.evidence["template_ids"] == [*INT_BASE, 4]
    assert {r["kind"] for r in f.evidence["reasons"]} >= {"count_high", "invariant_violated"}
    assert "text of 4" in f.summary and 0.5 < f.score <= 1.0
    again = SessionFindings.from_bytes("hdfs.log", scorer.to_bytes())
    assert again.flush() == [] and scorer.flush() == []
    with pytest.raises(DataError, match="differ in length"):
        scorer.observe(["a"], [1, 2], 0)


def test_session_findings_bound_their_evidence_and_summary() -> None:
    model = SessionModel().fit([INT_BASE] * 50)
    long = {t: f"{t}" * 100 for t in range(10)}  # template texts of 100 characters
    scorer = SessionFindings(
        "hdfs.log", SessionTracker(model, idle_timeout_ms=1000), template_text=long.__getitem__
    )
    lines = INT_BASE * 30  # 270 lines: every count far off
    assert scorer.observe(["a"] * len(lines), lines, 0) == []
    (f,) = scorer.observe([], [], 5000)
    assert f.evidence["lines"] == 270 and f.evidence["template_ids"] == lines[:200]
    assert f.evidence["closed_by"] == "idle"
    shown = f.summary.split("[", 1)[1]
    assert all(len(part.strip(" ]")) == 80 for part in shown.split("|"))


def test_session_findings_flush_reports_only_abnormal_sessions() -> None:
    model = SessionModel().fit([INT_BASE] * 50)
    scorer = SessionFindings("hdfs.log", SessionTracker(model, idle_timeout_ms=1000))
    lines = [*INT_BASE, *INT_BASE[:-1]]  # "a" normal, "b" without its commit
    assert scorer.observe(["a"] * 9 + ["b"] * 8, lines, 0) == []
    found = scorer.flush()
    assert [(f.evidence["session"], f.evidence["closed_by"]) for f in found] == [("b", "flush")]


def test_a_key_back_after_the_idle_timeout_starts_a_new_session() -> None:
    model = SessionModel().fit([INT_BASE] * 50)
    tracker = SessionTracker(model, idle_timeout_ms=1000)
    assert tracker.observe(["a", "b"], [0, 0], [0, 0]) == []
    # No call for an hour, then "a" again: its old session is over, whatever the call order.
    out = tracker.observe(["a"], [1], [3_600_000])
    assert [(s.key, s.templates.tolist(), s.closed_by) for s in out] == [
        ("a", [0], "idle"),
        ("b", [0], "idle"),
    ]
    assert [(s.key, s.start_ms, s.templates.tolist()) for s in tracker.flush()] == [
        ("a", 3_600_000, [1])
    ]
    # The same boundary as close_idle: idle for exactly the timeout is over.
    tracker = SessionTracker(model, idle_timeout_ms=1000)
    tracker.observe(["a"], [0], [0])
    assert tracker.observe(["a"], [1], [999]) == []
    out = tracker.observe(["a"], [2], [1999])
    assert [(s.templates.tolist(), s.closed_by) for s in out] == [([0, 1], "idle")]
    # The engine's path: a quiet file gets no tick, then a whole normal workflow again.
    scorer = SessionFindings("hdfs.log", SessionTracker(model, idle_timeout_ms=1000))
    assert scorer.observe(["a"] * 9, INT_BASE, 0) == []
    assert scorer.observe(["a"] * 9, INT_BASE, 3_600_000) == []
    assert scorer.flush() == []


def test_sessions_split_at_max_events_in_one_tick_get_distinct_finding_ids() -> None:
    """A key whose lines pass ``max_events_per_session`` within one tick makes several sessions
    that all start at the tick's time; each abnormal one is its own finding (one id each, so none
    replaces another in the store), and a replay from a checkpoint gives the same ids."""
    model = SessionModel().fit([INT_BASE] * 50)
    scorer = SessionFindings(
        "hdfs.log", SessionTracker(model, idle_timeout_ms=1000, max_events_per_session=4)
    )
    lines = INT_BASE * 3  # 27 lines: six full sessions of 4, then 3 lines left open
    saved = scorer.to_bytes()
    found = scorer.observe(["a"] * 10, lines[:10], 5_000)  # two full, "a" open with 2
    found += scorer.observe(["a"] * 17, lines[10:], 5_000)  # the open one fills, three more
    found += scorer.flush()
    assert [f.evidence["lines"] for f in found] == [4] * 6 + [3]
    assert all(f.start == 5_000 for f in found)
    assert len({f.id for f in found}) == len(found) == 7
    # The first session of a key keeps the id it always had.
    key = 'log-session{file="hdfs.log",session="a"}'
    assert found[0].id == Finding.make_id(FindingKind.LOG, key, 5_000, SESSION_DETECTOR)
    # A replay of the same lines from the same checkpoint gives the same ids, across a checkpoint
    # taken in between too.
    replay = SessionFindings.from_bytes("hdfs.log", saved)
    again = replay.observe(["a"] * 10, lines[:10], 5_000)
    replay = SessionFindings.from_bytes("hdfs.log", replay.to_bytes())
    again += replay.observe(["a"] * 17, lines[10:], 5_000) + replay.flush()
    assert [f.id for f in again] == [f.id for f in found]


def test_events_of_one_call_that_stop_for_the_idle_timeout_make_two_sessions() -> None:
    # One call with a whole file's events: a key quiet for the idle timeout between two of them
    # ends its session there, as if they had come one by one.
    model = SessionModel().fit([INT_BASE] * 50)
    one = SessionTracker(model, idle_timeout_ms=1000)
    out = one.observe(["a", "a", "b", "a", "a"], [0, 1, 5, 2, 3], [0, 10, 20, 5000, 5001])
    out += one.flush()
    by_one = SessionTracker(model, idle_timeout_ms=1000)
    events = [("a", 0, 0), ("a", 1, 10), ("b", 5, 20), ("a", 2, 5000), ("a", 3, 5001)]
    got = [s for k, t, ts in events for s in by_one.observe([k], [t], [ts])] + by_one.flush()

    def shown(sessions: list[ScoredSession]) -> list[tuple[str, list[int], int, int, str]]:
        return sorted(
            (str(s.key), s.templates.tolist(), s.start_ms, s.end_ms, s.closed_by) for s in sessions
        )

    assert (
        shown(out)
        == shown(got)
        == [
            ("a", [0, 1], 0, 10, "idle"),
            ("a", [2, 3], 5000, 5001, "flush"),
            ("b", [5], 20, 20, "idle"),
        ]
    )
    # Late events (out of order) count from the latest time seen, not the one before them.
    tracker = SessionTracker(model, idle_timeout_ms=1000)
    out = tracker.observe(["a"] * 4, [0, 1, 2, 3], [0, 2000, 1500, 2600]) + tracker.flush()
    assert [s.templates.tolist() for s in out] == [[0], [1, 2, 3]]


# ---------------------------------------------------------------------- audit fixes


def test_each_unseen_template_is_a_reason_naming_it() -> None:
    m = SessionModel().fit([[1, 2, 3]] * 200)
    one, two = m.score([[1, 2, 3, 99], [1, 2, 3, 98, 98, 97]]).reasons
    assert one == (Reason("unseen_template", 0.0, (99,), "'template 99' never seen in training"),)
    assert [(r.templates, r.detail) for r in two] == [  # in the order they came
        ((98,), "'template 98' (x2) never seen in training"),
        ((97,), "'template 97' never seen in training"),
    ]
    # By name too, and in sessions of several at once.
    m = SessionModel().fit([["a", "b"]] * 200)
    sc = m.score([["a", "b", "disk failure"], ["a", "b"], ["a", "b", "oom"]])
    assert [[r.templates for r in rs] for rs in sc.reasons] == [[("disk failure",)], [], [("oom",)]]


def test_a_template_merge_refits_the_model_as_if_merged_from_the_start() -> None:
    # Templates 1 and 2 (two values of one word) merge into 1: sessions [0, 1, 2] read [0, 1, 1].
    tracker = SessionTracker(idle_timeout_ms=10, warmup_sessions=30)
    evs = events([[0, 1, 2]] * 30 + [[0, 1]], gap=1, every=100)
    assert not any(s.anomaly for s in feed(tracker, evs[:-2]))
    tracker.observe(["x", "y"], [0, 2], [10_000, 10_000])  # open and warm-up sessions alike
    version = tracker.model_version
    tracker.remap({2: 1})
    assert tracker.model_version == version + 1
    assert tracker.model.vocab == SessionModel().fit([[0, 1, 1]]).vocab
    scored = tracker.observe(["z"] * 3, [0, 1, 1], [20_000] * 3)
    assert [(s.key, s.anomaly) for s in scored] == [("x", True), ("y", True)]
    (z,) = tracker.flush()
    assert not z.anomaly  # a normal session in the merged ids
    assert SessionTracker.from_bytes(tracker.to_bytes()).model.vocab == [0, 1]
    # A merge of ids the model never learned leaves it as it is.
    tracker.remap({7: 5})
    assert tracker.model_version == version + 1


def test_a_merge_rewrites_open_and_warming_up_sessions() -> None:
    tracker = SessionTracker(idle_timeout_ms=10, warmup_sessions=3)
    tracker.observe(["a", "a", "b"], [0, 2, 0], [0, 0, 0])
    tracker.close_idle(100)  # "a" and "b" warming up
    tracker.observe(["c", "c"], [0, 2], [100, 100])  # open
    tracker.remap({2: 1})
    fitted = tracker.flush()
    assert [s.templates.tolist() for s in fitted] == [[0, 1], [0], [0, 1]]
    # A model given fitted has no training sessions to refit on: it is learned again.
    tracker = SessionTracker(SessionModel().fit([[0, 2]] * 20))
    tracker.remap({2: 1})
    assert not tracker.model.fitted


def test_session_findings_saved_state_holds_the_model_not_the_sessions() -> None:
    scorer = SessionFindings("dn", SessionTracker(idle_timeout_ms=10, warmup_sessions=20))
    assert scorer.saved_state() == b""  # warming up: nothing learned to keep
    for k in range(20):
        scorer.observe([f"b{k}"] * 3, [0, 1, 2], 100 * k)
    scorer.observe(["open"], [0], 10_000)
    state = scorer.saved_state()
    assert state and scorer.saved_state() is state  # made again only when the model changes
    again = SessionFindings("dn", SessionTracker(idle_timeout_ms=10, warmup_sessions=20))
    again.restore(state)
    assert again.tracker.model.fitted and again.tracker.open_sessions == 0
    assert again.observe(["x", "x"], [0, 5], 20_000) == []
    (found,) = again.close_idle(30_000)
    assert "'template 5' never seen in training" in found.summary
    # The training sessions came along: a merge refits it.
    again.remap_templates({2: 1})
    assert again.tracker.model.fitted and again.saved_state() != state
    with pytest.raises(DetectorError):
        again.restore(b"not a checkpoint")


def test_bad_keys_and_arguments_are_named() -> None:
    tracker = SessionTracker()
    with pytest.raises(DataError, match=r"^keys: session keys must be ints or strings, got float"):
        tracker.observe([1.5], [1], [0])  # type: ignore[list-item]
    with pytest.raises(DataError, match="events: template ids and ts must be one-dimensional"):
        tracker.observe(["a", "b"], np.array([[1], [2]]), [0, 0])
    assert tracker.open_sessions == 0
    for bad in (None, 2.5, True, "8"):
        with pytest.raises(ConfigError, match="max_invariant_templates"):
            SessionModel(max_invariant_templates=bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigError, match="max_reasons"):
            SessionModel(max_reasons=bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="name"):
        SessionFindings("")
    with pytest.raises(ConfigError, match="tracker"):
        SessionFindings("dn", SessionModel())  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="template_text"):
        SessionFindings("dn", template_text="text")  # type: ignore[arg-type]
