"""Tests of the Loghub-2.0 log-parsing metrics (relia.logs.metrics)."""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from relia.errors import DataError
from relia.logs.metrics import ParseScores, evaluate


def f1(p: float, r: float) -> float:
    return 0.0 if p + r == 0 else 2 * p * r / (p + r)


def naive(pred: list[str], truth: list[str]) -> dict[str, float]:
    """The four metrics written out from their definitions, one group at a time."""
    n = len(truth)
    truth_lines: dict[str, set[int]] = defaultdict(set)
    pred_lines: dict[str, set[int]] = defaultdict(set)
    for i, (p, t) in enumerate(zip(pred, truth, strict=True)):
        truth_lines[t].add(i)
        pred_lines[p].add(i)
    pred_groups = list(pred_lines.values())
    good = [t for t, lines in truth_lines.items() if lines in pred_groups]
    ga = sum(len(truth_lines[t]) for t in good) / n
    pga, rga = len(good) / len(pred_lines), len(good) / len(truth_lines)
    pa = sum(p == t for p, t in zip(pred, truth, strict=True)) / n
    right = [p for p, lines in pred_lines.items() if {truth[i] for i in lines} == {p}]
    pta, rta = len(right) / len(pred_lines), len(right) / len(truth_lines)
    return {"ga": ga, "fga": f1(pga, rga), "pa": pa, "fta": f1(pta, rta)}


# -- hand-computed cases ------------------------------------------------------------------------

TRUTH = ["a <*>", "a <*>", "b", "b", "c <*>", "c <*>"]
PRED = ["a <*>", "a <*>", "b", "b2", "c x", "c x"]


def test_hand_computed_mixed_case() -> None:
    s = evaluate(PRED, TRUTH)
    # Truth groups a={0,1}, b={2,3}, c={4,5}; predicted a={0,1}, b={2}, b2={3}, "c x"={4,5}.
    # a and c are grouped right (4 lines), b is split.
    assert s.ga == pytest.approx(4 / 6)
    assert (s.correct_groups, s.predicted_templates, s.truth_templates) == (2, 4, 3)
    assert (s.pga, s.rga) == (pytest.approx(2 / 4), pytest.approx(2 / 3))
    assert s.fga == pytest.approx(4 / 7)  # 2 * (1/2 * 2/3) / (1/2 + 2/3)
    # Exact text on lines 0, 1, 2.
    assert s.pa == pytest.approx(3 / 6)
    # FTA: predicted "a <*>" and "b" are pure and carry their truth text ("b" counts although
    # its truth group is split, as in the reference code); "b2" and "c x" have the wrong text.
    assert s.correct_templates == 2
    assert s.fta == pytest.approx(4 / 7)
    assert s.lines == 6


def test_right_groups_wrong_text() -> None:
    s = evaluate(["x", "x", "y"], ["a <*>", "a <*>", "b"])
    assert (s.ga, s.fga) == (1.0, 1.0)
    assert (s.pa, s.fta) == (0.0, 0.0)


def test_right_text_on_some_lines_of_a_merged_group() -> None:
    # One predicted group holds both truth groups: nothing is grouped right, FTA's group is impure,
    # yet the lines whose text happens to match still count for PA.
    s = evaluate(["a"] * 10, ["a"] * 9 + ["b"])
    assert (s.ga, s.fga, s.fta) == (0.0, 0.0, 0.0)
    assert s.pa == pytest.approx(0.9)
    assert (s.predicted_templates, s.truth_templates) == (1, 2)


def test_perfect_parse_is_one() -> None:
    s = evaluate(TRUTH, TRUTH)
    assert (s.ga, s.fga, s.pa, s.fta) == (1.0, 1.0, 1.0, 1.0)
    assert s.pga == s.rga == s.pta == s.rta == 1.0


def test_all_in_one_group() -> None:
    s = evaluate(["<*>"] * 6, TRUTH)
    assert (s.ga, s.fga, s.pa, s.fta) == (0.0, 0.0, 0.0, 0.0)
    assert (s.predicted_templates, s.correct_groups, s.correct_templates) == (1, 0, 0)
    # When the truth is one group too, lumping everything together is the right grouping.
    s = evaluate(["<*>"] * 4, ["same"] * 4)
    assert (s.ga, s.fga, s.pa, s.fta) == (1.0, 1.0, 0.0, 0.0)


def test_one_group_per_line() -> None:
    s = evaluate([f"t{i}" for i in range(6)], TRUTH)
    # Only truth groups of one line could be matched; TRUTH has none.
    assert (s.ga, s.fga) == (0.0, 0.0)
    s = evaluate(["p", "q", "r"], ["a", "b", "b"])
    assert s.ga == pytest.approx(1 / 3)
    assert s.fga == pytest.approx(f1(1 / 3, 1 / 2))


def test_whitespace_is_significant() -> None:
    # No normalisation of the parser output, as in the reference evaluation.
    s = evaluate(["a  <*>", "b"], ["a <*>", "b"])
    assert s.pa == 0.5
    assert s.ga == 1.0


def test_accepts_numpy_and_as_dict() -> None:
    s = evaluate(np.array(PRED), np.array(TRUTH, dtype=object))
    assert s == evaluate(PRED, TRUTH)
    d = s.as_dict()
    assert d["ga"] == s.ga and d["lines"] == 6 and set(d) == set(ParseScores.__dataclass_fields__)


@pytest.mark.parametrize(
    ("pred", "truth", "match"),
    [
        (["a"], ["a", "b"], "1 predicted templates for 2"),
        ([], [], "no lines"),
        (["a", None], ["a", "b"], "line 2: template is missing"),
        (["a", "b"], ["a", 3], "must be strings"),
    ],
)
def test_bad_input(pred: list[object], truth: list[object], match: str) -> None:
    with pytest.raises(DataError, match=match):
        evaluate(pred, truth)  # type: ignore[arg-type]


# -- properties ---------------------------------------------------------------------------------

labels = st.lists(st.sampled_from("abcdef"), min_size=1, max_size=40)


@st.composite
def parse_pairs(draw: st.DrawFn) -> tuple[list[str], list[str]]:
    truth = draw(labels)
    pred = draw(st.lists(st.sampled_from("abcdefg"), min_size=len(truth), max_size=len(truth)))
    return pred, truth


@given(parse_pairs())
@settings(max_examples=200, deadline=None)
def test_matches_the_definitions(pair: tuple[list[str], list[str]]) -> None:
    pred, truth = pair
    s = evaluate(pred, truth)
    want = naive(pred, truth)
    for key, value in want.items():
        assert getattr(s, key) == pytest.approx(value), key
    assert s.predicted_templates == len(set(pred))
    assert s.truth_templates == len(set(truth))


@given(parse_pairs(), st.permutations("abcdefg"))
@settings(max_examples=200, deadline=None)
def test_relabelling_groups_keeps_grouping_scores(
    pair: tuple[list[str], list[str]], perm: list[str]
) -> None:
    pred, truth = pair
    rename = dict(zip("abcdefg", perm, strict=True))
    base = evaluate(pred, truth)
    for p, t in (([rename[x] for x in pred], truth), (pred, ["T" + x for x in truth])):
        s = evaluate(p, t)
        assert (s.ga, s.fga) == (base.ga, base.fga)
    # Grouping accuracy does not care which side is the truth.
    swapped = evaluate(truth, pred)
    assert (swapped.ga, swapped.fga) == (pytest.approx(base.ga), pytest.approx(base.fga))


@given(parse_pairs())
@settings(max_examples=200, deadline=None)
def test_scores_are_fractions(pair: tuple[list[str], list[str]]) -> None:
    pred, truth = pair
    s = evaluate(pred, truth)
    for key in ("ga", "fga", "pa", "fta", "pga", "rga", "pta", "rta"):
        assert 0.0 <= getattr(s, key) <= 1.0, key
    # A correct template needs a pure group of the right text, so it never outnumbers the
    # predicted groups whose text occurs in the truth.
    assert s.correct_templates <= len(set(pred) & set(truth))
    assert s.lines == len(truth) == sum(Counter(truth).values())


@pytest.mark.parametrize(
    ("pred", "truth", "message"),
    [
        (["a"], ["a", "b"], "predicted_templates: 1 predicted templates for 2 ground-truth lines"),
        ([], [], "truth_templates: no lines to score"),
        # The first missing line is named (counted from 1), on the side where it is missing.
        (["a", None, "c", None], ["a", "b", "c", "d"], "predicted_templates: line 2: template"),
        (["a", "b", "c"], ["a", "b", None], "truth_templates: line 3: template is missing (None)"),
        (["a", "b"], ["a", 3], "truth_templates: templates must be strings ("),
        ([1, "b"], ["a", "b"], "predicted_templates: templates must be strings ("),
    ],
)
def test_bad_input_names_the_side_and_line(
    pred: list[object], truth: list[object], message: str
) -> None:
    with pytest.raises(DataError) as err:
        evaluate(pred, truth)  # type: ignore[arg-type]
    assert str(err.value).startswith(message)
