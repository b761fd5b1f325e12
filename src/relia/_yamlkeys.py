"""Keys written twice in one YAML mapping: YAML forbids them, and PyYAML reads them silently as
the last value (``objective: 99.9`` then ``objective: 99`` is 99; a second ``scrape:`` section
drops the first's targets). Shared by the readers of ``relia.yaml`` and of SLO specs."""

from __future__ import annotations

import yaml

__all__ = ["Loc", "repeated_keys"]

#: A path into a document: mapping keys and sequence indexes.
Loc = tuple[str | int, ...]


def repeated_keys(root: yaml.Node | None) -> list[tuple[Loc, int, int]]:
    """Keys written twice in one mapping below ``root``, mapping by mapping, depth first in
    document order (a mapping's repeats before those of the mappings inside it; callers sort by
    line): the path and line of each repeat and the line of the first. A key written next to a
    merge (``<<``) is not a repeat (it overrides the merged one), and a mapping reached through
    aliases is checked once, where it is written. Keys of different types (``1`` and ``"1"``)
    are different keys."""
    found: list[tuple[Loc, int, int]] = []
    done: set[int] = set()
    todo: list[tuple[yaml.Node, Loc]] = [(root, ())] if root is not None else []
    while todo:  # depth first in document order, so an anchor comes before its aliases
        current, loc = todo.pop()
        if id(current) in done:  # an alias: its node was checked where it was written
            continue
        done.add(id(current))
        children: list[tuple[yaml.Node, Loc]] = []
        if isinstance(current, yaml.SequenceNode):
            children = [(child, (*loc, i)) for i, child in enumerate(current.value)]
        elif isinstance(current, yaml.MappingNode):
            first: dict[tuple[str, str], int] = {}
            for key, value in current.value:
                if not isinstance(key, yaml.ScalarNode):
                    continue
                line = key.start_mark.line + 1
                if (key.tag, key.value) in first:
                    found.append(((*loc, key.value), line, first[key.tag, key.value]))
                else:
                    first[key.tag, key.value] = line
                children.append((value, (*loc, key.value)))
        todo.extend(reversed(children))
    return found
