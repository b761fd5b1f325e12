"""Find where a log line's header (timestamp, level, host, component, pid…) ends.

Log files arrive without a format description, so the layout is learned from a sample of lines by
a handful of general rules about what headers look like, never per-system patterns:

- a separator character (``|`` or a tab) that splits every line into the same number of leading
  fields → those fields are the header;
- otherwise the line is cut into tokens (a balanced ``[...]`` group counts as one token), and a
  column belongs to the header when, in at least :data:`AGREEMENT` of the sample, it holds a
  timestamp or number, a log level, a bracketed group, a lone ``-`` separator, or a component that
  ends with ``:`` (``sshd[24200]:``, ``org.apache.Foo:``). The header runs up to the last such
  column among the first :data:`MAX_HEADER_COLUMNS`; columns in between (a host, BGL's
  ``RAS KERNEL``) take any token;
- a header starts with a column of a recognisable kind: one of those above, a month or weekday
  name (``Jun 14 15:16:01``) or a host-like name holding a digit, ``.`` or ``-``
  (``nova-api.log.1``, ``node-246``). Lines that start with a plain word ("job 7 finished in
  21 ms") have no header, whatever columns follow;
- a line is cut only where each column is of its kind: a number, level, bracket group or ``-``
  wherever at least :data:`STRICT` of the sample held one (a column fewer lines agree on, such as
  BGL's ``-`` that alert flags replace in one line in fourteen, takes any token), and a token that
  opens a bracket is a whole balanced group, never the word ``[Sun`` of ``[Sun De]c``. Each
  column has one way to match, so the compiled cut (:mod:`relia.logs._kernels`, which does not
  backtrack) and the regular expression agree on every line.

The learned layout becomes one regular expression, used line by line by :meth:`HeaderFormat.split`
and by Polars over whole columns in :meth:`HeaderFormat.split_many` (the batch path). A line the
expression does not match (a stack-trace continuation, a stray line) keeps its whole text as the
message: nothing is dropped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from numpy.typing import NDArray

from relia.logs._kernels import (
    COLUMN_ANY,
    COLUMN_BRACKET,
    COLUMN_DASH,
    COLUMN_LEVEL,
    COLUMN_NUMBER,
    HEADER_SEPARATOR,
    HEADER_TOKENS,
    LAST_COMPONENT,
    LAST_DASH,
    LAST_PLAIN,
    LEVELS,
    NUMBER_BYTES,
)

__all__ = ["AGREEMENT", "MAX_HEADER_COLUMNS", "STRICT", "HeaderFormat"]

#: Share of sampled lines that must agree before a column counts as part of the header.
AGREEMENT = 0.9
#: Share of sampled lines that must hold a column's kind before a line's header is checked for
#: it (below, as BGL's alert flags in place of its "-", the column takes any token).
STRICT = 0.99
#: The header is looked for only among the first this-many tokens of a line.
MAX_HEADER_COLUMNS = 10
_SAMPLE = 2000
_PREFIX = 512  # characters of a line looked at while learning; headers are short

# One token: a balanced [...] group (one level of nesting, as in Zookeeper's
# "[QuorumPeer[myid=1]/0:2181:Foo@774]") or a run of non-space characters.
_GROUP = r"\[[^\[\]]*(?:\[[^\[\]]*\][^\[\]]*)*\]"
_TOKEN = rf"(?:{_GROUP}|\S+)"
_TOKEN_RE = re.compile(_TOKEN)
# What a header column of each kind matches in a line (always followed by whitespace), each with
# exactly one way to match, so that the compiled kernel (which does not backtrack) cuts the same:
# a token that opens a bracket is a whole balanced group, never the word "[Sun" of "[Sun De]c".
_NUMBER_CHARS = "[0-9" + "".join(re.escape(c) for c in NUMBER_BYTES if not c.isdigit()) + "]"
_STRIP = r"[\[\]():<>]*"


def _ascii_nocase(word: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" for c in word)


_COLUMN = {
    COLUMN_ANY: rf"(?:{_GROUP}|[^\[\s]\S*)",
    COLUMN_BRACKET: _GROUP,
    COLUMN_NUMBER: rf"{_NUMBER_CHARS}*[0-9]{_NUMBER_CHARS}*",
    COLUMN_LEVEL: _STRIP
    + "(?:"
    + "|".join(_ascii_nocase(w) for w in sorted(LEVELS, key=lambda w: (-len(w), w)))
    + ")"
    + _STRIP,
    COLUMN_DASH: "-",
}
# A component that closes the header: "sshd[24200]:", "dfs.DataNode$PacketResponder:", or (in
# the few lines whose component holds spaces) the first colon-ended token among the next three:
# "Microsoft Word[14463]:", "sandboxd[129] ([31211]):", "syslogd 1.4.1:".
_COMPONENT = r"(?:\S+\s+){0,2}?\S*:"
# A lone "-" that separates header and message, possibly after a name holding a space
# ("chrome.exe *64 - ...").
_DASH = r"(?:\S+\s+){0,2}?-"
_NUMERIC = re.compile(rf"^{_COLUMN[COLUMN_NUMBER]}$")
_LEVELS = frozenset(LEVELS)
# Parts of a timestamp written as words, and names (hosts, nodes, files, dotted modules) that
# hold a digit, "." or "-": kinds a header may start with, beside those above.
_TIME_WORDS = frozenset(
    "jan feb mar apr may jun jul aug sep oct nov dec mon tue wed thu fri sat sun".split()
)
_NAME = re.compile(r"^[A-Za-z0-9_]*[A-Za-z][A-Za-z0-9_]*[0-9.\-][A-Za-z0-9_.:/\-]*$")


def _is_level(token: str) -> bool:
    return token.strip("[]():<>").lower() in _LEVELS


def _opens_header(token: str) -> bool:
    """Whether a line's first token is of a kind a header starts with."""
    return bool(
        _NUMERIC.match(token)
        or _is_level(token)
        or _is_bracketed(token)
        or token == "-"
        or _is_component(token)
        or token.lower() in _TIME_WORDS
        or _NAME.match(token)
    )


def _is_bracketed(token: str) -> bool:
    return len(token) >= 2 and token[0] == "[" and token[-1] == "]"


def _is_component(token: str) -> bool:
    return len(token) >= 2 and token.endswith(":") and not _NUMERIC.match(token[:-1])


@dataclass(frozen=True)
class HeaderFormat:
    """A learned header layout: the regular expression that matches one line's header.

    ``pattern`` is empty when the sample showed no header (messages are then whole lines).
    ``columns`` and ``rule`` describe what was found, for humans (``relia logs templates -v``).
    """

    pattern: str
    columns: int = 0
    rule: str = "none"
    #: The same layout for the compiled batch path: (mode, separator byte, columns, last rule,
    #: then the kind of each column: ``COLUMN_*`` of :mod:`relia.logs._kernels`).
    layout: tuple[int, ...] = (0, 0, 0, 0)

    @classmethod
    def detect(cls, sample: Sequence[str]) -> HeaderFormat:
        """Learn the header layout from (up to the first 2,000 non-empty) lines of one file."""
        lines = [line[:_PREFIX] for line in sample if line.strip()][:_SAMPLE]
        if not lines:
            return cls(pattern="")
        for separator in ("|", "\t"):
            fields = _separator_fields(lines, separator)
            if fields:
                sep = re.escape(separator)
                return cls(
                    pattern=rf"^(?:[^{sep}\n]*{sep}){{{fields}}}",
                    columns=fields,
                    rule=f"separator {separator!r}",
                    layout=(HEADER_SEPARATOR, ord(separator), fields, LAST_PLAIN),
                )
        return _detect_token_columns(lines)

    def kernel_layout(self) -> NDArray[np.int64]:
        """:attr:`layout` as the array :func:`relia.logs._kernels.hash_lines` takes."""
        return np.array(self.layout, dtype=np.int64)

    def _compiled(self) -> re.Pattern[str] | None:
        return _compile(self.pattern) if self.pattern else None

    def split(self, line: str) -> tuple[dict[str, str], str]:
        """``({"header": text}, message)``; a line without the learned header is all message."""
        compiled = self._compiled()
        if compiled is None:
            return {}, line.strip()
        match = compiled.match(line)
        if match is None:
            return {}, line.strip()
        return {"header": match.group(0).rstrip()}, line[match.end() :].strip()

    def messages(self, lines: Sequence[str]) -> list[str]:
        """The message of every line (the batch form of :meth:`split`), computed by Polars."""
        return self.split_many(pl.Series("line", lines, dtype=pl.String)).to_list()

    def split_many(self, lines: pl.Series) -> pl.Series:
        """Messages of a whole column of lines at once (Polars' regex engine, all cores)."""
        if not self.pattern:
            return lines.str.strip_chars()
        return lines.str.replace(self.pattern, "").str.strip_chars()


def _compile(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def _separator_fields(lines: Sequence[str], separator: str) -> int:
    """How many leading ``separator``-ended fields nearly every line has (0: not such a file)."""
    counts = sorted(line.count(separator) for line in lines)
    # The count that AGREEMENT of the lines reach; messages may add separators of their own.
    reached = counts[int(len(counts) * (1.0 - AGREEMENT))]
    if reached < 2:
        return 0
    # A separated header starts with a timestamp or number in its first field.
    first_fields = [line.split(separator, 1)[0] for line in lines]
    numeric = sum(1 for field in first_fields if any(ch.isdigit() for ch in field))
    return reached if numeric >= AGREEMENT * len(lines) else 0


def _detect_token_columns(lines: Sequence[str]) -> HeaderFormat:
    needed = AGREEMENT * len(lines)
    tokenized = [_TOKEN_RE.findall(line)[: MAX_HEADER_COLUMNS + 1] for line in lines]
    end = 0  # header = columns [0, end)
    rule = "none"
    component_column = -1
    kinds: list[int] = []  # what each column of the header is checked for
    for column in range(MAX_HEADER_COLUMNS):
        tokens = [t[column] for t in tokenized if len(t) > column + 1]
        if len(tokens) < needed:
            break
        counts = {
            "number": sum(1 for t in tokens if _NUMERIC.match(t)),
            "level": sum(1 for t in tokens if _is_level(t)),
            "bracket": sum(1 for t in tokens if _is_bracketed(t)),
            "separator": sum(1 for t in tokens if t == "-"),
            "component": sum(1 for t in tokens if _is_component(t)),
        }
        strict = {
            COLUMN_NUMBER: counts["number"],
            COLUMN_LEVEL: counts["level"],
            COLUMN_BRACKET: counts["bracket"],
            COLUMN_DASH: counts["separator"],
        }
        kinds.append(next((k for k, n in strict.items() if n >= STRICT * len(tokens)), COLUMN_ANY))
        kind, count = max(counts.items(), key=lambda item: item[1])
        if count >= needed:
            end, rule = column + 1, kind
            if kind == "component":
                component_column = column
                break  # "component:" closes a header
    if component_column < 0:
        # A "-" separator a column or two after the fixed columns, where names vary in width.
        dashes = sum(1 for t in tokenized if "-" in t[end : end + 3])
        if dashes >= needed and (end == 0 or _starts_header(tokenized, needed)):
            pattern = rf"^{_columns(kinds[:end])}{_DASH}(?:\s+|$)"
            return HeaderFormat(
                pattern=pattern,
                columns=end + 1,
                rule="separator",
                layout=(HEADER_TOKENS, 0, end, LAST_DASH, *kinds[:end]),
            )
    if end == 0 or not _starts_header(tokenized, needed):
        return HeaderFormat(pattern="")
    if component_column >= 0:
        fixed = kinds[:component_column]
        pattern = rf"^{_columns(fixed)}{_COMPONENT}(?:\s+|$)"
        layout = (HEADER_TOKENS, 0, component_column, LAST_COMPONENT, *fixed)
    else:
        last = kinds[end - 1]
        pattern = rf"^{_columns(kinds[: end - 1])}{_COLUMN[last]}(?:\s+|$)"
        layout = (HEADER_TOKENS, 0, end - 1, LAST_PLAIN, *kinds[:end])
    return HeaderFormat(pattern=pattern, columns=end, rule=rule, layout=layout)


def _starts_header(tokenized: Sequence[Sequence[str]], needed: float) -> bool:
    """Whether the lines' first column is of a kind a header starts with (lines like "job 7
    finished in 21 ms" have no header, though a number follows their first word)."""
    return sum(1 for t in tokenized if t and _opens_header(t[0])) >= needed


def _columns(kinds: Sequence[int]) -> str:
    """The pattern of header columns of these kinds, each followed by whitespace."""
    return "".join(rf"{_COLUMN[k]}\s+" for k in kinds)
