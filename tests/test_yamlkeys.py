"""Tests of the repeated-key finder shared by the relia.yaml and SLO spec readers."""

from __future__ import annotations

import yaml

from relia._yamlkeys import repeated_keys


def _repeats(text: str) -> list[tuple[tuple[str | int, ...], int, int]]:
    return repeated_keys(yaml.compose(text, Loader=yaml.SafeLoader))


def test_an_empty_document_has_no_repeats() -> None:
    assert repeated_keys(None) == []
    assert _repeats("") == []


def test_each_repeat_is_named_by_path_with_its_line_and_the_first_line() -> None:
    text = "a: 1\nlist:\n  - x: 1\n    x: 2\n    x: 3\na: 2\n"
    # A mapping's own repeats come before those of the mappings inside it (callers sort by line).
    assert _repeats(text) == [
        (("a",), 6, 1),
        (("list", 0, "x"), 4, 3),
        (("list", 0, "x"), 5, 3),
    ]


def test_sibling_mappings_come_in_document_order() -> None:
    text = "outer:\n  b: 1\n  b: 2\n  inner:\n    c: 1\n    c: 2\nlast:\n  d: 1\n  d: 2\n"
    assert [line for _, line, _ in _repeats(text)] == [3, 6, 9]


def test_keys_of_different_types_are_different_keys() -> None:
    assert _repeats('1: a\n"1": b\n') == []
    assert _repeats("1: a\n1: b\n") == [((("1"),), 2, 1)]


def test_a_complex_key_is_skipped_not_a_crash() -> None:
    # `? [a, b]` is a sequence used as a key: it cannot repeat a scalar key, and it is no
    # string to name a path by; the SLO reader checks keys before it builds the document.
    text = "? [a, b]\n: 1\n? [a, b]\n: 2\nk: 1\nk: 2\n"
    assert _repeats(text) == [(("k",), 6, 5)]


def test_a_mapping_used_through_aliases_is_reported_once_where_written() -> None:
    text = "base: &b\n  k: 1\n  k: 2\nuse1: *b\nuse2: *b\n"
    assert _repeats(text) == [(("base", "k"), 3, 2)]


def test_a_key_beside_a_merge_is_no_repeat_but_two_merges_are() -> None:
    assert _repeats("a: &a {k: 1}\nb:\n  <<: *a\n  k: 2\n") == []
    assert _repeats("a: &a {k: 1}\nb:\n  <<: *a\n  <<: *a\n") == [(("b", "<<"), 4, 3)]
