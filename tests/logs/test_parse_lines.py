"""``relia.logs.parse_lines``: the one-call batch parse (header, templates, messages)."""

from __future__ import annotations

from relia.logs import HeaderFormat, TemplateMiner, parse_lines

RECEIVING = [
    f"2024-01-0{1 + i % 9} 10:00:{i % 60:02d} INFO dfs.DataNode: Receiving block blk_{1000 + i} "
    f"src /10.0.0.{i % 7}"
    for i in range(40)
]
DELETING = [
    f"2024-01-02 11:00:{i:02d} WARN dfs.FSNamesystem: BLOCK* ask 10.0.0.{i} to delete blk_{i}"
    for i in range(10)
]
LINES = RECEIVING + DELETING


def test_parse_lines_mines_templates_from_the_messages() -> None:
    parsed = parse_lines(LINES)
    assert parsed.messages[0] == "Receiving block blk_1000 src /10.0.0.0"
    assert parsed.messages[-1] == "BLOCK* ask 10.0.0.9 to delete blk_9"
    ids = parsed.template_ids.tolist()
    assert ids == [ids[0]] * 40 + [ids[-1]] * 10 and ids[0] != ids[-1]
    # The header (time, level, component) is not part of a template.
    assert parsed.templates == {
        ids[0]: "Receiving block <*> src <*>",
        ids[-1]: "BLOCK* ask <*> to delete <*>",
    }


def test_parse_lines_learns_the_header_past_a_stray_first_line() -> None:
    parsed = parse_lines(["stray line without header", *LINES])
    assert parsed.messages[:2] == [
        "stray line without header",
        "Receiving block blk_1000 src /10.0.0.0",
    ]


def test_parse_lines_uses_a_given_header() -> None:
    parsed = parse_lines(LINES, header=HeaderFormat(pattern=""))
    assert parsed.messages == LINES
    assert parsed.templates[int(parsed.template_ids[0])].endswith(
        "INFO dfs.DataNode: Receiving block <*> src <*>"
    )


def test_parse_lines_learns_into_a_given_miner() -> None:
    miner = TemplateMiner()
    first = parse_lines(RECEIVING, miner=miner)
    second = parse_lines(DELETING + RECEIVING[:1], miner=miner)
    assert {t.text for t in miner.templates} == {
        "Receiving block <*> src <*>",
        "BLOCK* ask <*> to delete <*>",
    }
    # The same miner gives the same message the same template id in a later batch.
    assert second.template_ids[-1] == first.template_ids[0]
