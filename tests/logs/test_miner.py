"""The template miner: masking, learning word parameters, stable ids, bounds, model bytes."""

from __future__ import annotations

import json
import re
import time
import zlib
from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from relia.errors import DataError
from relia.logs._kernels import SkeletonCache, TemplateTable, scan_lines
from relia.logs.miner import (
    _NO_HEADER,
    OVERFLOW_TEMPLATE,
    MinerConfig,
    TemplateMiner,
    _arrow_buffers,
    _one_clock_per_run,
    mask_messages,
    written,
)


@pytest.mark.parametrize(
    ("message", "skeleton"),
    [
        ("took 12 ms", "took <*> ms"),
        ("took 12.5 ms", "took <*> ms"),
        ("from 10.0.0.1 port 22", "from <*> port <*>"),
        ("to /10.251.42.84:50010", "to <*>:<*>"),
        ("value 0x1f3a at 0xDEADBEEF", "value <*> at <*>"),
        ("Opening /var/log/app12.log now", "Opening <*> now"),
        ("resolved db1.example.com ok", "resolved <*> ok"),
        ("hosts a.example.com b.example.org up", "hosts <*> <*> up"),
        ("session opened by (uid=0)", "session opened by (uid=<*>)"),
        ("uid=0 euid=0", "uid=<*> euid=<*>"),
        ("Accepted password port 22 ssh2", "Accepted password port <*> ssh2"),
        ("eth1 up, jk2_init() ok", "eth1 up, jk2_init() ok"),
        ("block blk_-1608999687 done", "block <*> done"),
        ("core.2275 node-246", "core.<*> node-<*>"),
        ("run-parts /etc/cron.hourly done", "run-parts <*> done"),
        ("to proxy.cse.example:5070 ok", "to <*>:<*> ok"),
        ("at Foo.java:12 and key:7", "at Foo.java:<*> and key:<*>"),
        ("at Sat Jul  9 22:53:19 2005", "at <*> <*> <*> <*>:<*>:<*> <*>"),
        ("  spaces   collapse\there  ", "spaces collapse here"),
        ("", ""),
    ],
)
def test_masking(message: str, skeleton: str) -> None:
    assert mask_messages([message]) == [skeleton]


def test_negative_numbers_are_parameters() -> None:
    assert mask_messages(["offset -3 bytes", "exit code -12"]) == [
        "offset <*> bytes",
        "exit code <*>",
    ]


def test_word_parameter_merges_after_three_distinct_values() -> None:
    miner = TemplateMiner()
    first = miner.add(["user alice logged in", "user bob logged in"])
    assert len(set(first.tolist())) == 2  # two words: could be two events
    assert sorted(t.text for t in miner.templates) == ["user alice logged in", "user bob logged in"]
    third = miner.add(["user carol logged in"])
    # The third value makes the position a parameter; the merged template keeps the smallest id.
    assert third.tolist() == [int(first.min())]
    assert [t.text for t in miner.templates] == ["user <*> logged in"]
    assert miner.templates[0].count == 3
    # The absorbed id stays valid and answers for the survivor.
    assert miner.template(int(first.max())) == "user <*> logged in"
    assert miner.resolve(first).tolist() == [int(first.min())] * 2
    assert miner.add(["user dave logged in"]).tolist() == [int(first.min())]


def test_states_spelled_as_words_stay_apart() -> None:
    miner = TemplateMiner()
    ids = miner.add(["state changed to RUNNING", "state changed to STOPPED"] * 3)
    assert len(set(ids.tolist())) == 2


def _fresh_words(n: int, length: int, seed: int) -> list[str]:
    """``n`` random lowercase words: fresh parameter values, as in the speed corpus."""
    rng = np.random.default_rng(seed)
    letters = rng.integers(ord("a"), ord("z") + 1, size=(n, length), dtype=np.uint8)
    return [row.tobytes().decode() for row in letters]


def test_fresh_first_word_on_every_line_is_a_parameter() -> None:
    names = _fresh_words(40, 9, seed=1)
    miner = TemplateMiner()
    ids = miner.add([f"{name}: scheduler told me to run this job" for name in names])
    assert [t.text for t in miner.templates] == ["<*>: scheduler told me to run this job"]
    assert len(set(miner.resolve(ids).tolist())) == 1
    assert miner.match(["zzz: scheduler told me to run this job"]).tolist() == [int(ids[0])]


def test_a_few_event_names_as_first_word_stay_separate_events() -> None:
    daemons = ["cupsd", "syslogd", "klogd", "portmap", "sdpd", "hcid", "xinetd"]
    miner = TemplateMiner()
    ids = miner.add([f"{d} startup succeeded" for d in daemons] * 20)
    assert len(set(ids.tolist())) == len(daemons)
    assert "cupsd startup succeeded" in {t.text for t in miner.templates}


def test_random_letter_host_names_are_parameters() -> None:
    hosts = [".".join(_fresh_words(4, 4, seed=s)) for s in range(60)]
    lines = [
        f"{a}:{1000 + i} open through proxy {b}:{80 + i} HTTPS"
        for i, (a, b) in enumerate(zip(hosts[:30], hosts[30:], strict=True))
    ]
    miner = TemplateMiner()
    miner.add(lines)
    assert [t.text for t in miner.templates] == ["<*>:<*> open through proxy <*>:<*> HTTPS"]
    resolve = [f"Could not resolve {h} error 11001" for h in hosts[:5]]
    miner.add(resolve)
    assert "Could not resolve <*> error <*>" in {t.text for t in miner.templates}


def test_a_family_of_siblings_varying_in_two_places_merges() -> None:
    # Two names change on every line: no single position ever varies alone.
    left, right = _fresh_words(30, 8, seed=2), _fresh_words(30, 10, seed=3)
    miner = TemplateMiner()
    ids = miner.add(
        [f"Registering class {a} for class {b}" for a, b in zip(left, right, strict=True)]
    )
    assert [t.text for t in miner.templates] == ["Registering class <*> for class <*>"]
    assert len(set(miner.resolve(ids).tolist())) == 1


def test_fresh_values_in_a_known_template_skip_the_python_path() -> None:
    miner = TemplateMiner()
    miner.add(
        [
            f"user {w} logged in from {h}.example.org"
            for w, h in zip(_fresh_words(5, 6, seed=4), _fresh_words(5, 5, seed=5), strict=True)
        ]
    )
    lines = [f"user {w} logged in from a.example.org" for w in _fresh_words(20_000, 7, seed=6)]
    ids = miner.add(lines)
    assert len(set(ids.tolist())) == 1 and len(miner) == 1
    # The compiled matcher took them: they did not enter the per-skeleton (Python) cache.
    assert len(miner._cache) < 100


def test_ids_are_stable_across_batches() -> None:
    batch1 = [f"Received block blk_{i} of size {i * 7}" for i in range(5)] + ["disk full"]
    batch2 = ["disk full", "new event 12 here"] + [
        f"Received block blk_{i} of size 3" for i in (9,)
    ]
    miner = TemplateMiner()
    ids1 = miner.add(batch1)
    ids2 = miner.add(batch2)
    assert ids2[0] == ids1[-1] and ids2[2] == ids1[0]
    assert ids2[1] not in set(ids1.tolist())
    assert miner.match(batch1).tolist() == ids1.tolist()


def test_model_bytes_round_trip_and_keep_learning() -> None:
    miner = TemplateMiner()
    ids = miner.add(["user alice logged in", "user bob logged in", "disk 3 is full"])
    restored = TemplateMiner.from_bytes(miner.to_bytes())
    assert restored.match(["user alice logged in", "disk 9 is full"]).tolist() == [
        ids[0],
        ids[2],
    ]
    assert [(t.id, t.text, t.count) for t in restored.templates] == [
        (t.id, t.text, t.count) for t in miner.templates
    ]
    # It goes on learning where it stopped: the third user merges as it would have before.
    merged = restored.add(["user carol logged in"])
    assert merged.tolist() == [min(ids[0], ids[1])]
    assert restored.template(int(merged[0])) == "user <*> logged in"
    # New events get new ids after the restored ones.
    assert int(restored.add(["fan speed 4000 rpm"])[0]) > int(ids.max())


def test_match_does_not_learn() -> None:
    miner = TemplateMiner()
    miner.add(["disk 3 is full"])
    before = [(t.id, t.text, t.count) for t in miner.templates]
    assert miner.match(["disk 7 is full", "totally new event", ""]).tolist()[:2] == [0, -1]
    assert [(t.id, t.text, t.count) for t in miner.templates] == before
    assert miner.match([]).tolist() == []


def test_parameters() -> None:
    miner = TemplateMiner()
    message = "Failed password for root from 10.0.0.1 port 22 ssh2"
    (tid,) = miner.add([message]).tolist()
    # "root" is a value in the written form (Loghub-2.0's rule US), and a parameter too.
    assert miner.template(tid) == "Failed password for <*> from <*> port <*> ssh2"
    assert miner.parameters(message, tid) == ["root", "10.0.0.1", "22"]
    assert miner.parameters("Failed  password for root from 1.2.3.4   port 9 ssh2", tid) == [
        "root",
        "1.2.3.4",
        "9",
    ]
    assert miner.parameters("something else", tid) == []
    words = miner.add(["user alice logged in", "user bob logged in", "user carol logged in"])
    assert miner.parameters("user bob logged in", int(words[1])) == ["bob"]


def test_unknown_template_id() -> None:
    miner = TemplateMiner()
    miner.add(["a b c"])
    with pytest.raises(KeyError):
        miner.template(5)
    with pytest.raises(KeyError):  # what match() gives a line no template fits is no id either
        miner.template(-1)


def test_max_templates_bound_sends_new_events_to_the_overflow_template() -> None:
    miner = TemplateMiner(max_templates=3)
    ids = miner.add([f"event{c} happened" for c in "abcdef"]).tolist()
    assert ids[:3] == [0, 1, 2]
    assert len(set(ids[3:])) == 1 and ids[3] not in ids[:3]
    texts = {t.id: t for t in miner.templates}
    assert texts[ids[3]].text == OVERFLOW_TEMPLATE and texts[ids[3]].count == 3
    # Known events still match their own templates; the model does not grow further.
    assert miner.add(["eventa happened", "eventz happened"]).tolist() == [0, ids[3]]
    assert len(miner) == 4
    restored = TemplateMiner.from_bytes(miner.to_bytes())
    assert restored.match(["eventq happened"]).tolist() == [-1]  # match never learns
    assert restored.add(["eventq happened"]).tolist() == [ids[3]]


def test_skeleton_cache_is_bounded() -> None:
    miner = TemplateMiner(MinerConfig(max_cached_skeletons=5))
    messages = [f"event{chr(97 + i % 26)}{chr(97 + i // 26)} happened" for i in range(60)]
    ids = miner.add(messages)
    # The cache is private; its size is what this test is about.
    assert len(miner._cache) <= 5
    assert miner.add(messages).tolist() == ids.tolist()  # misses cost lookups, not new ids
    assert len(miner) == 60


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not a model",
        zlib.compress(b"not json"),
        zlib.compress(json.dumps({"version": 999}).encode()),
        zlib.compress(json.dumps({"version": 1}).encode()),
        zlib.compress(json.dumps([1, 2]).encode()),
        # json.loads raises RecursionError on this: it was a traceback from relia logs.
        zlib.compress(b"[" * 100_000),
    ],
)
def test_corrupt_model_bytes(data: bytes) -> None:
    with pytest.raises(DataError, match="not a relia template model"):
        TemplateMiner.from_bytes(data)


@pytest.mark.parametrize(
    ("state", "why"),
    [
        ([1, 2], "expected a JSON object, got list"),
        (None, "expected a JSON object, got null"),
        ({"version": 1}, "no field 'config'"),
    ],
)
def test_a_foreign_model_says_what_it_lacks_not_a_python_error(state: object, why: str) -> None:
    with pytest.raises(DataError) as err:
        TemplateMiner.from_bytes(zlib.compress(json.dumps(state).encode()))
    assert str(err.value) == f"not a relia template model: {why}"


def test_inconsistent_model_state() -> None:
    miner = TemplateMiner()
    miner.add(["a b c 1", "x y"])
    state = json.loads(zlib.decompress(miner.to_bytes()))
    state["parent"] = [5, 1]
    with pytest.raises(DataError):  # at load, or at the latest when the model is used
        restored = TemplateMiner.from_bytes(zlib.compress(json.dumps(state).encode()))
        restored.add(["a b c 2", "q"])


def _saved_state() -> dict[str, Any]:
    miner = TemplateMiner()
    miner.add(["user alice logged in", "user bob logged in", "disk 3 is full"])
    state: dict[str, Any] = json.loads(zlib.decompress(miner.to_bytes()))
    return state


@pytest.mark.parametrize(
    ("edit", "why"),
    [
        (lambda s: s["config"].update(similarity="x"), "config.similarity should be a number"),
        (lambda s: s["config"].update(similarity=True), "config.similarity should be a number"),
        (lambda s: s["config"].update(similarity=1.5), "config.similarity should be from 0 to 1"),
        (lambda s: s["config"].update(variable_after=None), "config.variable_after should be int"),
        (lambda s: s["config"].update(family_size=2.5), "config.family_size should be int"),
        (lambda s: s["config"].update(keep_first_word="no"), "config.keep_first_word should be"),
        (lambda s: s["config"].update(colour=1), "unknown config setting 'colour'"),
        (lambda s: s.update(config=[1]), "its config is not a JSON object"),
        (lambda s: s["counts"].__setitem__(0, "2"), "a template count should be int, got str"),
        (lambda s: s["counts"].__setitem__(0, -1), "a template count is negative"),
        (lambda s: s["tokens"][0].__setitem__(0, 7), "a template word should be str, got int"),
        (lambda s: s["parent"].__setitem__(0, 0.0), "a template id should be int, got float"),
        (lambda s: s.update(overflow="0"), "the overflow id should be int, got str"),
    ],
)
def test_a_model_field_of_the_wrong_type_is_refused_at_load(
    edit: Callable[[dict[str, Any]], None], why: str
) -> None:
    # config.similarity="x" was loaded without a word and crashed the mining with a TypeError.
    state = _saved_state()
    edit(state)
    with pytest.raises(DataError) as err:
        TemplateMiner.from_bytes(zlib.compress(json.dumps(state).encode()))
    assert str(err.value).startswith(f"not a relia template model: {why}")


def test_a_model_saved_with_whole_numbers_for_shares_loads() -> None:
    # JSON may write a share of 1.0 as 1.
    state = _saved_state()
    state["config"]["similarity"] = 1
    miner = TemplateMiner.from_bytes(zlib.compress(json.dumps(state).encode()))
    assert miner.config.similarity == 1.0 and len(miner.templates) == 3


def test_the_template_count_leaves_out_variants_joined_to_another_template() -> None:
    miner = TemplateMiner()
    assert miner.add(["sent 5 bytes (1.0 KB) ok", "sent 5 bytes ok"]).tolist() == [0, 0]
    assert miner.template_count == len(miner.templates) == 1
    assert len(miner) == 2  # max_templates caps the variant too
    restored = TemplateMiner.from_bytes(miner.to_bytes())
    assert restored.template_count == 1


def test_truncated_model_bytes() -> None:
    miner = TemplateMiner()
    miner.add(["user alice logged in", "disk 3 is full"])
    data = miner.to_bytes()
    with pytest.raises(DataError):
        TemplateMiner.from_bytes(data[: len(data) // 2])


_WORDS = st.sampled_from(
    ["user", "alice", "bob", "disk", "is", "full", "=", "id=7", "0x1f", "10.0.0.1", "a.b.com"]
)
_MESSAGE = st.one_of(
    st.lists(_WORDS, max_size=8).map(" ".join),
    st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=30),
)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(_MESSAGE, max_size=15), min_size=1, max_size=4))
def test_random_messages_never_crash_and_add_then_match_agree(batches: list[list[str]]) -> None:
    miner = TemplateMiner()
    all_ids = []
    for batch in batches:
        ids = miner.add(batch)
        assert ids.dtype == np.int64 and len(ids) == len(batch)
        assert (ids >= 0).all()
        # After the batch, matching without learning gives the same ids.
        assert miner.match(batch).tolist() == ids.tolist()
        for message, tid in zip(batch, ids.tolist(), strict=True):
            assert isinstance(miner.template(tid), str)
            assert isinstance(miner.parameters(message, tid), list)
        all_ids.append(ids)
    # Ids of earlier batches stay valid: they resolve to the live template the line now matches.
    for batch, ids in zip(batches, all_ids, strict=True):
        assert miner.match(batch).tolist() == miner.resolve(ids).tolist()
    assert sum(t.count for t in miner.templates) == sum(len(b) for b in batches)


_SUBSUMED = [
    "user user user alice user bob user bob",
    "user user user user user alice user user",
    "user user user user alice bob user bob",
    "user user user user user user user alice",
]


# A template can stay live while a more general one also fits its lines ('user user user user
# user alice user user' beside 'user user user <*> <*> <*> user <*>'): every path (skeleton cache,
# Python lookup, compiled matcher, a restored miner) must pick the same one, the narrowest.
@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(_MESSAGE, max_size=15), min_size=1, max_size=4))
@example(batches=[_SUBSUMED])
def test_a_restored_miner_matches_as_the_saved_one(batches: list[list[str]]) -> None:
    miner = TemplateMiner()
    for batch in batches:
        miner.add(batch)
    restored = TemplateMiner.from_bytes(miner.to_bytes())
    for batch in batches:
        assert restored.match(batch).tolist() == miner.match(batch).tolist()


def test_second_word_of_two_word_messages_is_a_parameter_after_many_values() -> None:
    miner = TemplateMiner()
    names = _fresh_words(30, 7, seed=7)
    ids = miner.add([f"removing {name}" for name in names])
    assert [t.text for t in miner.templates] == ["removing <*>"]
    assert len(set(miner.resolve(ids).tolist())) == 1
    # A handful of values are states, not parameters: they stay apart.
    states = miner.add([f"isScreenOn {s}" for s in ("true", "false", "unknown")] * 5)
    assert len(set(states.tolist())) == 3


def test_family_varying_in_most_words_merges() -> None:
    # Seven words, four of them fresh keys on every line: no two lines share half their words,
    # but the family took many words at exactly those positions.
    keys = [_fresh_words(40, 6, seed=10 + k) for k in range(4)]
    lines = [
        "Setting BTCoex Config: " + ", ".join(f"{k[i]}_4Q:{i % 2}" for k in keys) for i in range(40)
    ]
    miner = TemplateMiner()
    ids = miner.add(lines)
    assert len(set(miner.resolve(ids).tolist())) <= 2
    assert len(miner) <= 2
    assert miner.match(lines).tolist() == miner.resolve(ids).tolist()


def test_a_fresh_miner_learns_from_the_first_block_and_numbers_ids_in_order() -> None:
    # More lines than one block: the event first seen near the end still gets the next id.
    names = _fresh_words(12_000, 6, seed=20)
    lines = [f"user {n} logged in from host{i % 7}" for i, n in enumerate(names)]
    lines[11_000] = "disk 3 is full"
    miner = TemplateMiner()
    ids = miner.add(lines)
    assert ids[11_000] == int(ids.max()) and ids[11_000] not in set(ids[:11_000].tolist())
    assert miner.match(lines).tolist() == ids.tolist()
    assert sum(t.count for t in miner.templates) == len(lines)


def test_skeleton_cache_grows_and_stays_bounded() -> None:
    cache = SkeletonCache(limit=100)
    hashes = np.arange(1, 61, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    cache.put(hashes, np.arange(60, dtype=np.int64))
    assert len(cache) == 60 and len(cache.keys) >= 120  # at most half full
    cache.put(hashes[:10], np.arange(100, 110, dtype=np.int64))  # overwrite, no growth in size
    assert len(cache) == 60
    stored = {int(k): int(v) for k, v in zip(cache.keys, cache.vals, strict=True) if v >= 0}
    assert stored[int(hashes[0])] == 100 and stored[int(hashes[59])] == 59
    more = np.arange(1000, 1100, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    cache.put(more, np.arange(100, dtype=np.int64))
    assert len(cache) <= 100  # cleared once full


def _scan(
    messages: list[str], table: TemplateTable, cache: SkeletonCache | None = None
) -> list[int]:
    data, offsets = _arrow_buffers(pl.Series(messages, dtype=pl.String))
    rows = np.arange(len(messages), dtype=np.int64)
    ids, _ = scan_lines(data, offsets, rows, _NO_HEADER, cache or SkeletonCache(8), table)
    return ids.tolist()


def test_compiled_matcher_takes_the_narrowest_template_across_buckets() -> None:
    table = TemplateTable.of(
        [
            (9, ["a", "<*>", "<*>", "d"], {1: ("", ""), 2: ("", "")}),  # first word "a"
            (5, ["<*>", "b", "c", "d"], {0: ("", "")}),  # first word a parameter
            (7, ["a", "b", "c", "<*>"], {3: ("", "")}),
            (3, ["x=<*>", "y"], {0: ("x=", "")}),  # affixes
        ]
    )
    assert _scan(["a b c d", "q b c d", "a b c q", "a q q d", "a q q q"], table) == [5, 5, 7, 9, -1]
    assert _scan(["x=1 y", "x=abc y", "z=1 y", "x= y", "a b c"], table) == [3, 3, -1, 3, -1]
    # A cached skeleton hash answers before the table (the cache holds learned ids).
    cache = SkeletonCache(8)
    _, hashes = scan_lines(
        *_arrow_buffers(pl.Series(["a b c d"])), np.zeros(1, np.int64), _NO_HEADER, cache, None
    )
    cache.put(hashes, np.array([42], dtype=np.int64))
    assert _scan(["a b c d", "q b c d"], table, cache) == [42, 5]


def test_compiled_table_follows_merges() -> None:
    miner = TemplateMiner()
    miner.add(["user alice logged in", "user bob logged in", "disk 3 is full"])
    before = miner._compiled()
    miner.add(["user carol logged in"])  # merges the users
    after = miner._compiled()
    assert after is not before
    rebuilt = TemplateTable.of(
        [
            (t.id, t.text.split(" "), {p: (a, b) for p, a, b in miner._fits[t.id]})
            for t in miner.templates
        ]
    )
    for name in ("ids", "starts", "word_hash", "kind", "bounds", "affixes", "members"):
        assert np.array_equal(getattr(after, name), getattr(rebuilt, name)), name


def test_empty_value_is_the_same_event() -> None:
    # A field that is sometimes blank ("()") is the same event as the filled one, either order.
    for lines in (
        ["connection from 1.2.3.4 () at noon", "connection from 1.2.3.5 (a.example.net) at noon"],
        ["connection from 1.2.3.5 (a.example.net) at noon", "connection from 1.2.3.4 () at noon"],
    ):
        miner = TemplateMiner()
        ids = miner.add(lines)
        assert ids[0] == ids[1]
        assert miner.template(int(ids[0])) == "connection from <*> (<*>) at noon"
    # A different word in the brackets is not an empty value.
    miner = TemplateMiner()
    ids = miner.add(
        ["open file (read) now please", "open file (<*>) now please".replace("<*>", "7")]
    )
    assert ids[0] != ids[1]


def test_capitalized_action_and_state_words_need_more_values() -> None:
    # HTTP methods and lifecycle states are small closed sets of different events: four or five
    # capitalized words at one position stay apart ...
    miner = TemplateMiner()
    methods = ["GET", "POST", "DELETE", "PUT", "HEAD"]
    ids = miner.add([f'10.0.0.1 "{m} /v2/servers/7" status: 200' for m in methods] * 3)
    assert len(set(ids.tolist())) == len(methods)
    states = ["Started", "Paused", "Resumed", "Stopped"]
    ids = miner.add([f"[instance: 42] VM {s} (Lifecycle Event)" for s in states] * 3)
    assert len(set(ids.tolist())) == len(states)
    # ... and a sixth makes the position a parameter after all (an open set of names).
    ids = miner.add(['10.0.0.1 "PATCH /v2/servers/7" status: 200'])
    assert miner.template(int(ids[0])) == '<*> "<*> <*>" status: <*>'
    # Lowercase names (user names) and values with digits merge from the third value on.
    users = miner.add([f"session closed for user {u}" for u in ("root", "news", "cyrus")])
    assert len(set(miner.resolve(users).tolist())) == 1
    nodes = miner.add([f"node {n} joined the ring" for n in ("a1b", "c2d", "e3f")])
    assert len(set(miner.resolve(nodes).tolist())) == 1


def test_a_value_of_several_words_joins_templates_of_other_lengths() -> None:
    lines = [
        "h:5070 close, 0 bytes sent, 0 bytes received, lifetime 00:01",
        "h:5070 close, 1058 bytes (1.03 KB) sent, 0 bytes received, lifetime 00:01",
        "h:5070 close, 403 bytes sent, 426 bytes received, lifetime <1 sec",
        "h:5070 close, 12 bytes sent, 18846 bytes (18.4 KB) received, lifetime <1 sec",
    ]
    miner = TemplateMiner()
    ids = miner.add(lines)
    assert len(set(ids.tolist())) == 1 and int(ids[0]) == 0
    assert [t.text for t in miner.templates] == [
        "h:<*> close, <*> bytes sent, <*> bytes received, lifetime <*>"
    ]
    assert miner.templates[0].count == 4
    # The joined templates keep matching lines of their own lengths, also once restored.
    again = ["h:80 close, 9 bytes (9.1 KB) sent, 7 bytes received, lifetime 00:02"]
    restored = TemplateMiner.from_bytes(miner.to_bytes())
    assert miner.match(again).tolist() == restored.match(again).tolist() == [0]
    assert restored.template(0) == miner.template(0)
    # One value per <*> of the template's text, a value of several words as one.
    assert miner.parameters(lines[1], 0) == ["5070", "1058 bytes (1.03 KB)", "0", "00:01"]
    # A bracketed value splits where it sits; so does a list of several numbers.
    miner = TemplateMiner()
    ids = miner.add(
        [
            "RRD_update (1.2): illegal attempt to update using time 5",
            "RRD_update (1.2 3.4): illegal attempt to update using time 5",
        ]
    )
    assert ids[0] == ids[1]
    assert (
        miner.template(int(ids[0])) == "RRD_update (<*>): illegal attempt to update using time <*>"
    )


def test_an_optional_clause_of_words_is_another_event() -> None:
    miner = TemplateMiner()
    ids = miner.add(
        [
            "total of 3 ddr error(s) detected and corrected",
            "total of 3 ddr error(s) detected and corrected over 20 seconds",
            "authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=1.2.3.4",
            "authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=1.2.3.4 user=root",
            "PCI: Probing PCI hardware",
            "PCI: Probing PCI hardware (bus 00)",
            "Took 2.5 seconds to spawn the instance on the hypervisor.",
            "Took 2.5 seconds to build instance.",
        ]
    )
    assert len(set(miner.resolve(ids).tolist())) == 8


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        # Paths, numbers, booleans and the usual user names are values (Loghub-2.0 PS/DG/BL/US).
        ("Resolved <*> to /default-rack", "Resolved <*> to <*>"),
        ("isScreenOn true", "isScreenOn <*>"),
        ("login by admin: value null", "login by <*>: value <*>"),
        ("obj=false, user=Root", "obj=<*>, user=<*>"),
        ("mapped 4G/4G at 10", "mapped 4G/4G at <*>"),
        # A value glued to a unit or decoration is one value (WV).
        ("took <*>ms", "took <*>"),
        ("headroom=<memory:<*>, vCores:<*>>", "headroom=<memory:<*>, vCores:<*>"),
        ("IOSwitch<<*>>(<*>)::cb", "<*>(<*>)::cb"),
        # Values joined by a dot, or glued together, are one (DV, CV); a slash keeps them apart.
        ("v<*>.<*>.<*> and <*>/<*>", "<*> and <*>/<*>"),
        ("mount <*><*>/data ok", "mount <*>/data ok"),  # not a path, so not one <*> as a whole
        # A date in words around a clock time is one timestamp.
        ("at <*> <*> <*> <*>:<*>:<*> <*>", "at <*>:<*>:<*>"),
        ("from <*>-<*>-<*> <*>:<*>:<*> to", "from <*>-<*>-<*> <*>:<*>:<*> to"),
        # Words, spaces between values, and values kept apart by punctuation stay as they are.
        ("send <*> <*> bytes, status: ok", "send <*> <*> bytes, status: ok"),
        ("a  b ", "a b"),
    ],
)
def test_written_form(template: str, expected: str) -> None:
    assert written(template) == expected


def test_template_text_is_the_written_form() -> None:
    miner = TemplateMiner()
    ids = miner.add(["isScreenOn true", "request took 12ms ok", "connection at /var/log/a2"])
    texts = [miner.template(int(i)) for i in ids]
    assert texts == ["isScreenOn <*>", "request took <*> ok", "connection at <*>"]
    assert [t.text for t in miner.templates] == texts
    # Parameters follow the written text's <*>, and ids survive a save and load.
    assert miner.parameters("request took 12ms ok", int(ids[1])) == ["12ms"]
    restored = TemplateMiner.from_bytes(miner.to_bytes())
    assert restored.match(["isScreenOn true"]).tolist() == [int(ids[0])]
    assert restored.template(int(ids[0])) == "isScreenOn <*>"


# -- thresholds at their boundaries (found untested by a mutation audit) -------------------------

_TEN = "alpha bravo charlie delta echo foxtrot golf hotel india juliet"


def test_a_line_sharing_seventy_percent_of_a_templates_words_is_absorbed() -> None:
    # similarity 0.7: 7 of 10 words in common is enough, and the 3 others become parameters.
    miner = TemplateMiner()
    ids = miner.add([_TEN, "alpha bravo charlie delta echo foxtrot golf xray yankee zulu"])
    assert ids.tolist() == [0, 0]
    assert miner.template(0) == "alpha bravo charlie delta echo foxtrot golf <*> <*> <*>"
    # 6 of 10 is not: two events.
    miner = TemplateMiner()
    ids = miner.add([_TEN, "alpha bravo charlie delta echo foxtrot kilo lima mike november"])
    assert ids.tolist() == [0, 1] and len(miner) == 2


def test_a_family_of_eight_siblings_absorbs_a_line_sharing_half_its_words() -> None:
    # Ten words; the last five are fresh on every line, so two lines share only half of them.
    cols = [_fresh_words(8, 6, seed=30 + k) for k in range(5)]
    family = ["Job alpha bravo charlie delta " + " ".join(c[i] for c in cols) for i in range(8)]
    # Shares 5 of 10 words with the first sibling (differs at "delta", which the family never
    # varied, so only family_similarity can take it).
    line = "Job alpha bravo charlie echo " + " ".join([cols[0][0], *_fresh_words(4, 7, seed=40)])
    miner = TemplateMiner()
    assert miner.add(family).tolist() == list(range(8))  # 50% < similarity: eight siblings
    assert miner.add([line]).tolist() == [0]  # the eighth made it a family: 50% is enough
    assert miner.template(0) == f"Job alpha bravo charlie <*> {cols[0][0]} <*> <*> <*> <*>"
    # Seven siblings are not a family yet: the same line is a new event.
    miner = TemplateMiner()
    miner.add(family[:7])
    assert miner.add([line]).tolist() == [7]


def test_the_first_word_becomes_a_parameter_at_the_twelfth_distinct_value() -> None:
    names = _fresh_words(12, 9, seed=1)
    miner = TemplateMiner()
    miner.add([f"{name}: scheduler told me to run this job" for name in names[:11]])
    assert len(miner) == 11  # eleven could still be event names
    miner.add([f"{names[11]}: scheduler told me to run this job"])
    assert [t.text for t in miner.templates] == ["<*>: scheduler told me to run this job"]


def test_keep_first_word_never_makes_the_first_word_a_parameter() -> None:
    miner = TemplateMiner(MinerConfig(keep_first_word=True))
    names = _fresh_words(40, 9, seed=1)
    ids = miner.add([f"{name}: scheduler told me to run this job" for name in names])
    assert len(set(ids.tolist())) == 40 and len(miner) == 40


def test_a_three_word_template_with_a_parameter_first_word_keeps_its_other_two_words() -> None:
    # "<*> connected <word>" for 13 words: the first word is a parameter (12 fresh names each),
    # and then only two words stay fixed, which is as little context as a template keeps.
    words = _fresh_words(13, 5, seed=50)
    lines = [
        f"{name} connected {word}"
        for k, word in enumerate(words)
        for name in _fresh_words(12, 8, seed=100 + k)
    ]
    miner = TemplateMiner()
    miner.add(lines)
    assert sorted(t.text for t in miner.templates) == sorted(f"<*> connected {w}" for w in words)


def test_capitalized_names_with_digits_are_parameters_from_the_third_value() -> None:
    # Only words of letters wait for word_variable_after values; DB1, DB2, DB3 are names.
    miner = TemplateMiner()
    ids = miner.add([f"connected to {host} now" for host in ("DB1", "DB2", "DB3")])
    assert ids.tolist() == [0, 0, 0]
    assert miner.template(0) == "connected to <*> now"


def test_letters_shared_by_word_values_do_not_become_part_of_the_template() -> None:
    # alice/alfred/alan share "al", and webnode/dbnode/cachenode share "node": that is chance,
    # not a fixed prefix or suffix (those end at punctuation), so any other value fits too.
    miner = TemplateMiner()
    ids = miner.add([f"user {name} logged in" for name in ("alice", "alfred", "alan")])
    assert miner.match(["user bob logged in"]).tolist() == [int(ids[0])]
    ids = miner.add([f"host {name} is up" for name in ("webnode", "dbnode", "cachenode")])
    assert miner.match(["host proxy is up"]).tolist() == [int(ids[0])]


def test_words_at_a_templates_parameters_count_as_shared_when_absorbing() -> None:
    # The template holds three numbers (parameters); a line with words there and three other
    # words changed shares 2 + 3 + 2 = 7 of 10 positions: enough (similarity 0.7).
    miner = TemplateMiner()
    ids = miner.add(
        [
            "alpha bravo 1 2 3 foxtrot golf hotel india juliet",
            "alpha bravo kilo lima mike foxtrot golf xray yankee zulu",
        ]
    )
    assert ids.tolist() == [0, 0]
    assert miner.template(0) == "alpha bravo <*> <*> <*> foxtrot golf <*> <*> <*>"


def test_a_family_absorbs_a_line_differing_where_it_took_three_or_more_words() -> None:
    # Eight siblings: four fixed words, five fresh ones, and a last word taking three values.
    cols = [_fresh_words(9, 6, seed=60 + k) for k in range(5)]
    states = ["red", "green", "blue"]
    family = [
        "Job alpha bravo charlie " + " ".join(c[i] for c in cols) + " " + states[i % 3]
        for i in range(8)
    ]
    miner = TemplateMiner()
    assert miner.add(family).tolist() == list(range(8))
    # Shares only the 4 fixed words (40%, under family_similarity), but differs only where the
    # family took several words (at least variable_after = 3): the same event.
    line = "Job alpha bravo charlie " + " ".join(c[8] for c in cols) + " white"
    assert miner.add([line]).tolist() == [0]
    assert [t.text for t in miner.templates] == ["Job alpha bravo charlie <*> <*> <*> <*> <*> <*>"]


def test_a_word_where_the_template_holds_a_masked_value_fits_it() -> None:
    # "user 0" taught "user <*>": a name there ("admin") is a value of the same parameter.
    miner = TemplateMiner()
    (tid,) = miner.add(["user 0 logged in from gateway"]).tolist()
    assert miner.match(["user admin logged in from gateway"]).tolist() == [tid]
    assert miner.add(["user admin logged in from gateway"]).tolist() == [tid] and len(miner) == 1


def test_a_list_of_values_joins_while_the_common_words_are_half_the_longer_message() -> None:
    # 4 words in common: a list of 4 values (8 words in all) is the same event, one of 5 (9
    # words, 4 < 9 / 2) is not.
    miner = TemplateMiner()
    ids = miner.add(["job alpha done now", "job 1 2 3 4 alpha done now"])
    assert ids.tolist() == [0, 0]
    miner = TemplateMiner()
    ids = miner.add(["job alpha done now", "job 1 2 3 4 5 alpha done now"])
    assert ids.tolist() == [0, 1]


def test_an_empty_value_joins_from_three_words_on() -> None:
    # "uid=" is "uid=<*>" with the value left empty; three words are enough context ...
    miner = TemplateMiner()
    assert miner.add(["session for uid=", "session for uid=0"]).tolist() == [0, 0]
    assert miner.template(0) == "session for uid=<*>"
    # ... two are not: the line could be another event.
    miner = TemplateMiner()
    assert miner.add(["session uid=", "session uid=0"]).tolist() == [0, 1]


def test_a_short_message_without_an_aside_joins_the_longer_one_with_it() -> None:
    # Learned second, the four-word message finds its six-word variant (an aside that holds
    # a value inside the message) and answers as its id.
    miner = TemplateMiner()
    assert miner.add(["sent 5 bytes (1.0 KB) ok", "sent 5 bytes ok"]).tolist() == [0, 0]
    assert miner.template(0) == "sent <*> bytes ok"


def test_a_very_long_line_costs_memory_in_proportion_to_its_length() -> None:
    # Learning a template indexes it by each word position, under a key as long as the line:
    # a one-line dump of 100,000 words asked for tens of GB. Past max_generalized_words a
    # template is not indexed word by word; its state stays a few times the line's size.
    words = [f"w{i:05d}x" for i in range(3000)]
    miner = TemplateMiner()
    first = miner.add([" ".join(words)])
    state = zlib.decompress(miner.to_bytes())
    assert len(state) < 10 * len(" ".join(words))
    # Such lines still share a template when they differ in a few words (absorbed) or repeat.
    again = [*words[:-1], "other"]
    assert miner.add([" ".join(words), " ".join(again)]).tolist() == [first[0]] * 2


_CLOCK_RUN_REGEX = re.compile(r"(?<!\S)(?:<\*> )*<\*>:<\*>:<\*>(?: <\*>)*(?!\S)")


@given(
    st.lists(
        st.sampled_from(["<*>", "<*>:<*>:<*>", "a", "<*>:<*>", "<*>:<*>:<*>,", "b<*>"]),
        max_size=30,
    )
)
def test_a_clock_run_is_written_as_the_regular_expression_wrote_it(words: list[str]) -> None:
    text = " ".join(words)
    assert _one_clock_per_run(text) == _CLOCK_RUN_REGEX.sub("<*>:<*>:<*>", text)


def test_writing_a_template_of_a_very_long_line_is_linear() -> None:
    # 20,000 words took 3.9 s in the backtracking expression; every window writes its templates.
    text = " ".join(["<*>"] * 20_000 + ["x"])
    start = time.perf_counter()
    assert written(text) == text
    assert time.perf_counter() - start < 2.0  # linear: about 20 ms; the old one, seconds
