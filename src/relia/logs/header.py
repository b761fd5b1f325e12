"""Find where a log line's header (timestamp, level, host, component, pid…) ends.

Log files arrive without a format description, so the layout is learned from a sample of lines by
a handful of general rules about what headers look like, never per-system patterns:

- a separator character (``|`` or a tab) that splits every line into the same number of leading
  fields → those fields are the header;
- otherwise the line is cut into tokens (a balanced ``[...]`` group counts as one token), and a
  column belongs to the header when, in at least :data:`AGREEMENT` of the sample, it holds a
  timestamp or number, a log level, a bracketed group, a lone ``-`` separator, or a component that
  ends with ``:`` (``sshd[24200]:``, ``org.apache.Foo:``). The header runs up to the last such
  column among the first :data:`MAX_HEADER_COLUMNS`.

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
    HEADER_SEPARATOR,
    HEADER_TOKENS,
    LAST_COMPONENT,
    LAST_DASH,
    LAST_PLAIN,
)

__all__ = ["AGREEMENT", "MAX_HEADER_COLUMNS", "HeaderFormat"]

#: Share of sampled lines that must agree before a column counts as part of the header.
AGREEMENT = 0.9
#: The header is looked for only among the first this-many tokens of a line.
MAX_HEADER_COLUMNS = 10
_SAMPLE = 2000
_PREFIX = 512  # characters of a line looked at while learning; headers are short

# One token: a balanced [...] group (one level of nesting, as in Zookeeper's
# "[QuorumPeer[myid=1]/0:2181:Foo@774]") or a run of non-space characters.
_TOKEN = r"(?:\[[^\[\]]*(?:\[[^\[\]]*\][^\[\]]*)*\]|\S+)"
_TOKEN_RE = re.compile(_TOKEN)
# A component that closes the header: "sshd[24200]:", "dfs.DataNode$PacketResponder:", or (in
# the few lines whose component holds spaces) the first colon-ended token among the next three:
# "Microsoft Word[14463]:", "sandboxd[129] ([31211]):", "syslogd 1.4.1:".
_COMPONENT = r"(?:\S+\s+){0,2}?\S*:"
# A lone "-" that separates header and message, possibly after a name holding a space
# ("chrome.exe *64 - ...").
_DASH = r"(?:\S+\s+){0,2}?-"
_NUMERIC = re.compile(r"^[\d\-:.,/_+TZ]*\d[\d\-:.,/_+TZ]*$")
_LEVELS = frozenset(
    "trace debug info information notice warn warning error err critical crit fatal severe "
    "alert emerg emergency".split()
)


def _is_level(token: str) -> bool:
    return token.strip("[]():<>").lower() in _LEVELS


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
    #: The same layout for the compiled batch path: (mode, separator byte, columns, last rule).
    layout: tuple[int, int, int, int] = (0, 0, 0, 0)

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
        kind, count = max(counts.items(), key=lambda item: item[1])
        if count >= needed:
            end, rule = column + 1, kind
            if kind == "component":
                component_column = column
                break  # "component:" closes a header
    if component_column < 0:
        # A "-" separator a column or two after the fixed columns, where names vary in width.
        dashes = sum(1 for t in tokenized if "-" in t[end : end + 3])
        if dashes >= needed:
            pattern = rf"^(?:{_TOKEN}\s+){{{end}}}{_DASH}(?:\s+|$)"
            return HeaderFormat(
                pattern=pattern,
                columns=end + 1,
                rule="separator",
                layout=(HEADER_TOKENS, 0, end, LAST_DASH),
            )
    if end == 0:
        return HeaderFormat(pattern="")
    if component_column >= 0:
        pattern = rf"^(?:{_TOKEN}\s+){{{component_column}}}{_COMPONENT}(?:\s+|$)"
        layout = (HEADER_TOKENS, 0, component_column, LAST_COMPONENT)
    else:
        pattern = rf"^(?:{_TOKEN}\s+){{{end - 1}}}{_TOKEN}(?:\s+|$)"
        layout = (HEADER_TOKENS, 0, end - 1, LAST_PLAIN)
    return HeaderFormat(pattern=pattern, columns=end, rule=rule, layout=layout)
