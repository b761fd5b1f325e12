"""Template mining: turn log messages into templates (``Received block <*> of size <*>``) and ids.

How it works, in two steps that each do what they are best at:

1. **Masking and hashing, compiled** (:mod:`relia.logs._kernels`). One Numba pass over the bytes of
   a whole column of lines skips each line's learned header, cuts the message into segments at the
   punctuation that separates values from keys, replaces parameter segments (numbers, addresses,
   paths with digits, domain names, dates) by ``<*>`` and hashes the result, the line's *skeleton*.
   ``uid=0`` → ``uid=<*>``, ``/10.251.42.84:50010`` → ``<*>:<*>``, ``core.2275`` → ``core.<*>``.

2. **Learning, per distinct skeleton, in Python.** A skeleton hash learned before is found in a
   compiled hash table (:class:`relia.logs._kernels.SkeletonCache`) in the same pass. A new
   skeleton is matched against the known templates of its length (a template's ``<*>``
   positions match anything). If none matches it becomes a template of its own, indexed by
   each of its positions: when :attr:`MinerConfig.variable_after` templates of one length agree
   everywhere but one position, that position is a parameter made of words (user names, host
   names) and they merge into one template with ``<*>`` there. A line that differs from a template
   of the same length and first word in two or more positions, yet shares
   :attr:`MinerConfig.similarity` of them, is absorbed and the differing positions become ``<*>``.
   A merged template keeps the smallest id of those it absorbed, and the other ids stay valid as
   aliases of it, so ids are stable across batches and restarts.

Words that only ever take one or two values at a position stay part of the template: operational
logs often spell states as words (``RUNNING to SUCCEEDED``, ``LOOKING``) and those are different
events, not parameters. Capitalized words of letters only (``GET``/``POST``/``DELETE``,
``Started``/``Paused``/``Stopped``) name actions and states, small closed sets, so they wait for
:attr:`MinerConfig.word_variable_after` values rather than :attr:`MinerConfig.variable_after`
(lowercase names such as users, and values with digits or punctuation, do not). Fresh values (a
new host, program or class name on every line) are caught by rules that look at how a position
varies:

- the first word becomes a parameter too, once :attr:`MinerConfig.first_word_after` distinct
  values were seen with the rest equal (more than elsewhere: a first word often names the event);
  so does the second word of a two-word message (``removing <*>``), on the same evidence;
- a (length, first word) family that holds :attr:`MinerConfig.family_size` live templates is one
  event whose words vary several at a time: a line sharing
  :attr:`MinerConfig.family_similarity` of its words (and at least three) is absorbed, and so is
  one (sharing at least three) that differs only where the family took several words;
- when a template is generalized, its siblings that the new template covers merge into it (their
  ids become aliases), so no narrower copy stays live beside it;
- a position where the kernel masked a value (``user <*> from`` after ``user 0``) takes any word;
- a value may span several words or be absent (``0 bytes sent`` and ``1058 bytes (1.03 KB)
  sent``, ``lifetime 00:01`` and ``lifetime <1 sec``): a template of another length that equals a
  new one but for runs that hold a masked value joins it as a *variant* (see
  :meth:`TemplateMiner._join_variant`); both keep matching their own lines, and the larger id
  answers as the smaller one. An optional clause of words (``over <*> seconds``) stays apart.

A template's text (:meth:`TemplateMiner.template`, :attr:`TemplateMiner.templates`) is written
as the corrected Loghub-2.0 ground truth writes templates (:func:`written`): paths, numbers,
booleans, ``null``/``root``/``admin`` and values glued to a unit (``<*>ms``) read ``<*>``, values
joined by ``.`` or nothing are one, a date in words around a clock time is one timestamp. Only the
text changes; ids, matching and the saved model do not.

Matching is compiled as well (:func:`relia.logs._kernels.scan_lines`): the pass that masks and
hashes a line also matches it against the live templates (only those of its word count whose
first word is its own or a parameter), over all cores, and only the lines no template fits are
learned in Python, in rounds of growing size, so fresh word values cost Python time only while the
templates are still being learned. A batch is scanned in blocks of growing size (4,096 lines,
then four times as many each time), so that a fresh miner learns from the first lines before it
scans the rest. The compiled template table is rebuilt after each change by concatenating
per-template pieces encoded once. A line that fits several templates takes the narrowest (fewest
``<*>``, then the oldest), whichever path (cache, Python lookup, compiled matcher, restored model)
it takes.

Why our own code rather than Drain (Drain3): Drain walks a prefix tree on the first tokens, so a
message that starts with a parameter lands in a different branch for every value, and it matches
with a similarity threshold that merges distinct events that share most words. Template mining is
the product here; ``bench/loghub.py`` and ``bench/logspeed.py`` measure both side by side.

Memory is bounded on endless input: the hash cache is cleared when it reaches
:attr:`MinerConfig.max_cached_skeletons`, and beyond :attr:`MinerConfig.max_templates` templates new
events go to one overflow template (counted) instead of growing the model.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import os
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
from numpy.typing import NDArray

from relia.errors import DataError
from relia.logs._kernels import (
    EncodedTemplate,
    SkeletonCache,
    TemplateTable,
    encode_templates,
    scan_lines,
    skeletons,
)

__all__ = [
    "OVERFLOW_TEMPLATE",
    "WILDCARD",
    "MinerConfig",
    "Template",
    "TemplateMiner",
    "mask_messages",
    "parameter_pattern",
    "written",
]

WILDCARD = "<*>"
#: Text of the template that collects events once :attr:`MinerConfig.max_templates` is reached.
OVERFLOW_TEMPLATE = "<relia: template limit reached>"

_STATE_VERSION = 1
_SIMILAR_SCAN = 64  # most recent templates of one (length, first word) compared with a new line
_MIN_CONTEXT = 3  # words a template keeps fixed at least, whatever its length
_FIRST_ROUND = 64  # new skeletons learned in Python before the compiled matcher runs again
_FIRST_BLOCK = 4096  # lines of a batch scanned (and learned from) before the next, 4x as many


def mask_messages(messages: Sequence[str] | pl.Series) -> list[str]:
    """Skeletons of messages: parameter segments → ``<*>``, whitespace collapsed (see _kernels)."""
    data, offsets = _arrow_buffers(_as_series(messages))
    rows = np.arange(len(offsets) - 1, dtype=np.int64)
    return skeletons(data, offsets, rows, _NO_HEADER)


_NO_HEADER = np.zeros(4, dtype=np.int64)


def _as_series(lines: Sequence[str] | pl.Series) -> pl.Series:
    series = lines if isinstance(lines, pl.Series) else pl.Series(lines, dtype=pl.String)
    return series.fill_null("")


def _arrow_buffers(series: pl.Series) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    """The UTF-8 bytes and int64 offsets of a string column, without a Python string per line."""
    array = series.cast(pl.String).to_arrow()
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if array.type != pa.large_string():  # casting to its own type would still copy it
        array = array.cast(pa.large_string())
    _, offsets_buffer, data_buffer = array.buffers()
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64)[
        array.offset : array.offset + len(array) + 1
    ]
    data = (
        np.frombuffer(data_buffer, dtype=np.uint8)
        if data_buffer is not None
        else np.zeros(1, dtype=np.uint8)
    )
    return data, np.ascontiguousarray(offsets)


@dataclass(frozen=True)
class MinerConfig:
    """The miner's settings: one configuration for all logs (none are tuned per system)."""

    #: Distinct words at one position (all else equal) that make the position a parameter.
    variable_after: int = 3
    #: Share of positions a line must share with a template to be absorbed into it (see _absorb).
    similarity: float = 0.7
    #: Live templates of one length and first word from which the family counts as one event
    #: whose words vary several at a time (see :meth:`TemplateMiner._absorb`).
    family_size: int = 8
    #: Share of positions a line must share with a template of such a family to be absorbed.
    family_similarity: float = 0.5
    #: Never turn the first word of a message into a parameter.
    keep_first_word: bool = False
    #: Distinct values (all else equal) that make a position a parameter when every value is a
    #: word of letters only (``GET``/``POST``/``DELETE``, ``Started``/``Paused``/``Stopped``):
    #: such words name actions and states, closed sets of a few members that are different
    #: events, while values with digits or punctuation (ids, names, addresses) are parameters
    #: from :attr:`variable_after` on.
    word_variable_after: int = 6
    #: Distinct first words (all else equal) that make the first word a parameter. Higher than
    #: :attr:`variable_after`: a first word often names the event ("cupsd startup succeeded",
    #: a handful of daemons), while a parameter there takes a fresh value on nearly every line.
    first_word_after: int = 12
    #: Live templates kept at most; beyond this new events share the overflow template.
    max_templates: int = 50_000
    #: Distinct skeletons remembered for the one-lookup path before the cache is cleared.
    max_cached_skeletons: int = 200_000
    #: Templates of more words than this are not generalized word by word: that indexes a
    #: template under one key per position, each as long as the template, so its cost grows
    #: with the square of its length (a one-line dump of 100,000 words asked for tens of GB).
    #: Such lines still share templates when they repeat or differ in a few words (absorbed).
    #: Loghub's longest message has 132 words.
    max_generalized_words: int = 256


def _typed(value: Any, kind: type[Any], what: str) -> Any:
    """``value`` if it is a ``kind`` (a bool is no number here), else a ValueError naming it."""
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ValueError(f"{what} should be {kind.__name__}, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    """A JSON value's kind as a message names it."""
    return "null" if value is None else type(value).__name__


def _count(value: Any, what: str) -> int:
    """A non-negative int of a saved model (an id, a count, a position)."""
    number: int = _typed(value, int, what)
    if number < 0:
        raise ValueError(f"{what} is negative ({number})")
    return number


def _config_from(saved: Any) -> MinerConfig:
    """The :class:`MinerConfig` of a saved model, each setting checked for its type and range:
    a wrong one (``"x"`` for a share, null for a count) would only fail later, mid-mining."""
    if not isinstance(saved, dict):
        raise ValueError("its config is not a JSON object")
    known = {f.name: f for f in dataclasses.fields(MinerConfig)}
    unknown = sorted(set(saved) - set(known))
    if unknown:
        raise ValueError(f"unknown config setting {unknown[0]!r}")
    values: dict[str, Any] = {}
    for name, value in saved.items():
        default = known[name].default
        what = f"config.{name}"
        if isinstance(default, bool):
            values[name] = _typed(value, bool, what)
        elif isinstance(default, int):
            if _count(value, what) < 1:
                raise ValueError(f"{what} should be at least 1, got {value}")
            values[name] = value
        else:  # a share of positions: a float from 0 to 1 (JSON may write 1.0 as 1)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"{what} should be a number, got {_kind(value)}")
            share = float(value)
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"{what} should be from 0 to 1, got {value}")
            values[name] = share
    return MinerConfig(**values)


@dataclass(frozen=True)
class Template:
    """One template: its id, its text with ``<*>`` for parameters, and how many lines it matched."""

    id: int
    text: str
    count: int


class TemplateMiner:
    """Incremental template miner: :meth:`add` learns from messages and returns their ids."""

    def __init__(self, config: MinerConfig | None = None, *, max_templates: int | None = None):
        config = config or MinerConfig()
        if max_templates is not None:
            config = dataclasses.replace(config, max_templates=max_templates)
        self.config = config
        self._tokens: list[list[str]] = []  # template id -> tokens (for live templates)
        self._parent: list[int] = []  # template id -> id it merged into (itself when live)
        self._counts: list[int] = []
        self._by_text: dict[str, int] = {}  # live template text -> id
        self._shape: list[Shape] = []  # template id -> its generalized positions
        self._shapes: dict[int, set[Shape]] = {}  # length -> _fits of live templates
        self._fits: dict[
            int, Shape
        ] = {}  # live id -> positions that take any word (see _index_live)
        self._by_head: dict[tuple[int, str], list[int]] = {}  # (length, first word) -> ids
        self._by_first: dict[str, list[int]] = {}  # first word -> ids, all lengths
        # Variant of another length -> the template it joined (a smaller id; see _join_variant).
        self._group: dict[int, int] = {}
        self._siblings: dict[str, dict[str, int]] = {}  # "pos\0text with <*> at pos" -> word -> id
        # Skeleton hash -> the id it was learned as, probed by the compiled scan.
        self._cache = SkeletonCache(config.max_cached_skeletons)
        self._overflow: int | None = None
        self._live = 0  # templates that were not merged into another
        self._changes = 0  # bumped whenever the live templates change
        self._table: tuple[int, TemplateTable] | None = None  # compiled copy, at _changes
        self._encoded: dict[int, EncodedTemplate] = {}  # live id -> its piece of the table

    # -- public API -------------------------------------------------------------------------

    def add(self, messages: Sequence[str] | pl.Series) -> NDArray[np.int64]:
        """Learn from ``messages`` and return each one's template id (final after this batch)."""
        return self._assign(messages, learn=True)

    def match(self, messages: Sequence[str] | pl.Series) -> NDArray[np.int64]:
        """Template ids of ``messages`` without learning; ``-1`` for a message no template fits."""
        return self._assign(messages, learn=False)

    def template(self, template_id: int) -> str:
        """The current text of a template (an id absorbed by a merge answers for its survivor)."""
        if not 0 <= template_id < len(self._parent):
            raise KeyError(f"no template with id {template_id}")
        head = self._head(template_id)
        return self._text(head, [v for v in self._group if self._head(v) == head])

    @property
    def templates(self) -> list[Template]:
        """Live templates, by id."""
        variants: dict[int, list[int]] = {}
        for v in self._group:
            variants.setdefault(self._head(v), []).append(v)
        return [
            Template(id=i, text=self._text(i, variants.get(i, [])), count=self._counts[i])
            for i in range(len(self._parent))
            if self._parent[i] == i and i not in self._group
        ]

    def _text(self, head: int, variants: list[int]) -> str:
        """The text of template ``head`` and its ``variants`` of other lengths: where they differ
        by a value of several words, one ``<*>`` stands for it (``(<*> <*>):`` and ``(<*>):``
        read ``(<*>):``); words present in only some of them are left out."""
        tokens = self._tokens[head]
        for v in sorted(variants):
            tokens = _join_words(tokens, self._tokens[self._find(v)])
        return written(" ".join(tokens))

    def __len__(self) -> int:
        """Live templates, variants of other lengths included (what ``max_templates`` caps)."""
        return self._live

    @property
    def template_count(self) -> int:
        """Live templates as :attr:`templates` lists them: a variant of another length counts
        with the template it joined, as its lines do."""
        return self._live - sum(1 for v in self._group if self._parent[v] == v)

    def resolve(self, template_ids: NDArray[np.int64]) -> NDArray[np.int64]:
        """Map ids (possibly absorbed by later merges) to the ids of their live templates."""
        if len(self._parent) == 0:
            return template_ids.copy()
        roots = np.array([self._head(i) for i in range(len(self._parent))], dtype=np.int64)
        out = template_ids.copy()
        known = out >= 0
        out[known] = roots[out[known]]
        return out

    def parameters(self, message: str, template_id: int) -> list[str]:
        """The parameter values of ``message`` under template ``template_id`` (``[]``: none fit),
        one per ``<*>`` of its written text (:meth:`template`).

        A line of a variant of another length is matched with that variant's words, and its
        values are put at the template's ``<*>``: a value the variant spells in more words (``18846
        bytes (18.4 KB)`` where another has ``0 bytes``) is one value, and one the variant lacks
        is ``""``."""
        head = self._head(template_id)
        text = " ".join(message.split())
        kept = self.template(template_id)
        # The template's own words first, then those of its variants of other lengths.
        for i in [head, *(v for v in self._group if self._head(v) == head)]:
            own = written(" ".join(self._tokens[self._find(i)]))
            if own == kept:
                match = parameter_pattern(own).fullmatch(text)
                if match:
                    return list(match.groups())
                continue
            values = _values_onto(own, kept, text)
            if values is not None:
                return values
        return []

    # -- state ------------------------------------------------------------------------------

    def to_bytes(self) -> bytes:
        """The whole model (templates, aliases, counts, learning index), compressed JSON."""
        state: dict[str, Any] = {
            "version": _STATE_VERSION,
            "config": dataclasses.asdict(self.config),
            "tokens": self._tokens,
            "shape": self._shape,
            "parent": self._parent,
            "counts": self._counts,
            "siblings": self._siblings,
            "overflow": self._overflow,
            "groups": sorted(self._group.items()),
        }
        return zlib.compress(json.dumps(state, separators=(",", ":")).encode(), 6)

    @classmethod
    def from_bytes(cls, data: bytes) -> TemplateMiner:
        """Rebuild a miner saved by :meth:`to_bytes`; it goes on learning where it stopped."""
        try:
            state = json.loads(zlib.decompress(data))
            if not isinstance(state, dict):
                kind = "null" if state is None else type(state).__name__
                raise ValueError(f"expected a JSON object, got {kind}")
            version = state.get("version")
            if isinstance(version, int) and not isinstance(version, bool):
                if version > _STATE_VERSION:
                    raise ValueError(
                        f"written by a newer relia (template model version {version} > "
                        f"{_STATE_VERSION}); upgrade relia or use another data directory"
                    )
            if version != _STATE_VERSION:
                raise ValueError(f"unsupported model version {version!r}")
            miner = cls(_config_from(state["config"]))
            miner._tokens = [
                [_typed(w, str, "a template word") for w in t] for t in state["tokens"]
            ]
            miner._shape = [
                tuple(
                    (_count(p, "a parameter position"), _typed(a, str, "a shape word"),
                     _typed(b, str, "a shape word"))
                    for p, a, b in shape
                )
                for shape in state["shape"]
            ]  # fmt: skip
            miner._parent = [_count(p, "a template id") for p in state["parent"]]
            miner._counts = [_count(c, "a template count") for c in state["counts"]]
            miner._siblings = {
                _typed(k, str, "a sibling key"): {
                    _typed(w, str, "a sibling word"): _count(i, "a template id")
                    for w, i in v.items()
                }
                for k, v in state["siblings"].items()
            }
            overflow = state["overflow"]
            miner._overflow = None if overflow is None else _count(overflow, "the overflow id")
            miner._group = {
                _count(v, "a template id"): _count(h, "a template id")
                for v, h in state.get("groups", [])
            }
            ids = len(miner._parent)
            if not (len(miner._tokens) == len(miner._shape) == len(miner._counts) == ids):
                raise ValueError("its lists of templates disagree in length")
            if any(not 0 <= h < v < ids for v, h in miner._group.items()):
                raise ValueError("a template variant is out of range")
            if any(not 0 <= p < ids for p in miner._parent) or not (
                miner._overflow is None or 0 <= miner._overflow < ids
            ):
                raise ValueError("a template id is out of range")
            if any(
                p >= len(t)
                for t, shape in zip(miner._tokens, miner._shape, strict=True)
                for p, _, _ in shape
            ):
                raise ValueError("a parameter position is out of range")
        except KeyError as exc:
            raise DataError(f"not a relia template model: no field {exc}") from exc
        # RecursionError: JSON nested too deeply (a corrupt or hostile file), not a traceback.
        except (ValueError, TypeError, AttributeError, RecursionError, zlib.error) as exc:
            raise DataError(f"not a relia template model: {exc}") from exc
        for i, parent in enumerate(miner._parent):
            if parent == i:
                miner._live += 1
                miner._index_live(i)
        return miner

    # -- internals --------------------------------------------------------------------------

    def add_lines(
        self, lines: Sequence[str] | pl.Series, header: NDArray[np.int64] | None = None
    ) -> NDArray[np.int64]:
        """Learn from raw lines whose header has the given kernel layout; return template ids."""
        return self._assign(lines, learn=True, layout=header)

    def _assign(
        self,
        messages: Sequence[str] | pl.Series,
        *,
        learn: bool,
        layout: NDArray[np.int64] | None = None,
    ) -> NDArray[np.int64]:
        series = _as_series(messages)
        if len(series) == 0:
            return np.empty(0, dtype=np.int64)
        layout = _NO_HEADER if layout is None else layout
        data, offsets = _arrow_buffers(series)
        count = len(series)
        ids = np.empty(count, dtype=np.int64)
        start, size = 0, _FIRST_BLOCK if learn else count
        while start < count:
            # Learning goes block by block, growing: what the first lines teach (a fresh miner
            # knows nothing) spares the many lines after them a trip to Python.
            rows = np.arange(start, min(count, start + size), dtype=np.int64)
            start, size = start + len(rows), size * 4
            ids[rows] = self._scan(data, offsets, rows, layout, learn)
        ids = self.resolve(ids)
        if learn:
            live = ids[ids >= 0]
            if len(live):
                tally = np.bincount(live, minlength=len(self._counts))
                for i in np.flatnonzero(tally):
                    self._counts[i] += int(tally[i])
        return ids

    def _scan(
        self,
        data: NDArray[np.uint8],
        offsets: NDArray[np.int64],
        rows: NDArray[np.int64],
        layout: NDArray[np.int64],
        learn: bool,
    ) -> NDArray[np.int64]:
        """Template ids of lines ``rows``: one compiled pass masks, hashes, probes the skeleton
        cache and else matches the live templates; what none fits is learned (when ``learn``)."""
        ids, hashes = scan_lines(
            data, offsets, rows, layout, self._cache, self._compiled() if self._live else None
        )
        unknown = np.flatnonzero(ids < 0)
        if learn and len(unknown):
            # One line per new skeleton, in order of first appearance, so that ids are numbered
            # as the lines came.
            distinct, first, inverse = np.unique(
                hashes[unknown], return_index=True, return_inverse=True
            )
            order = np.argsort(first, kind="stable")
            learned = np.empty(len(distinct), dtype=np.int64)
            learned[order] = self._learn_rows(
                data, offsets, layout, rows[unknown[first[order]]], distinct[order]
            )
            ids[unknown] = learned[inverse.reshape(-1)]
        return ids

    def _learn_rows(
        self,
        data: NDArray[np.uint8],
        offsets: NDArray[np.int64],
        layout: NDArray[np.int64],
        rows: NDArray[np.int64],
        hashes: NDArray[np.uint64],
    ) -> NDArray[np.int64]:
        """The ids of the new skeletons of lines ``rows`` (no template fitted them; ``hashes``).

        Rounds: the next few skeletons are learned in Python, then the compiled matcher assigns
        every pending line that fits a template learned so far, and so on with twice as many per
        round. When fresh parameter values make every line a new skeleton, only the lines of new
        events (and of templates still generalizing) reach Python.
        """
        out = np.empty(len(rows), dtype=np.int64)
        pending = np.arange(len(rows), dtype=np.int64)
        step = _FIRST_ROUND
        while len(pending):
            take, pending = pending[:step], pending[step:]
            step *= 2
            texts = skeletons(data, offsets, rows[take], layout)
            learned = np.array([self._learn(text) for text in texts], dtype=np.int64)
            out[take] = learned
            self._cache.put(hashes[take], learned)
            if len(pending) and self._live:
                found, _ = scan_lines(
                    data, offsets, rows[pending], layout, self._cache, self._compiled()
                )
                hit = found >= 0
                out[pending[hit]] = found[hit]
                pending = pending[~hit]
        return out

    def _compiled(self) -> TemplateTable:
        """The live templates as a :class:`TemplateTable`, rebuilt only after they changed, from
        pieces encoded once per template version."""
        if self._table is None or self._table[0] != self._changes:
            encoded = self._encoded
            new = [i for i in self._fits if i not in encoded and i != self._overflow]
            pieces = encode_templates(
                [(self._tokens[i], {p: (a, b) for p, a, b in self._fits[i]}) for i in new]
            )
            encoded.update(zip(new, pieces, strict=True))
            self._table = (self._changes, TemplateTable(list(encoded.items())))
        return self._table[1]

    def _head(self, i: int) -> int:
        """The id a template answers as: its survivor, or the template its variant joined."""
        i = self._find(i)
        group = self._group
        while i in group:  # links point to smaller ids, and _find never raises one
            i = self._find(group[i])
        return i

    def _find(self, i: int) -> int:
        parent = self._parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]  # path halving keeps chains short
            i = parent[i]
        return i

    def _lookup(self, skeleton: str) -> int:
        # The narrowest template that fits (fewest <*>, then the oldest), as the compiled
        # matcher chooses: a line gets the same id whichever path it takes.
        tokens = skeleton.split(" ") if skeleton else []
        best, best_key = -1, (0, 0)
        for shape in self._shapes.get(len(tokens), ()):
            candidate = _fit(tokens, shape)
            if candidate is not None:
                found = self._by_text.get(" ".join(candidate))
                if (
                    found is not None
                    and self._fits[found] == shape  # that template's own rule, nothing looser
                    and (best < 0 or (len(shape), found) < best_key)
                ):
                    best, best_key = found, (len(shape), found)
        return best

    def _learn(self, skeleton: str) -> int:
        found = self._lookup(skeleton)
        if found < 0:
            tokens = skeleton.split(" ") if skeleton else []
            found = self._empty_value(tokens)
            if found < 0:
                found = self._absorb(tokens)
            if found < 0:
                found = self._create(tokens)
        return self._find(found)

    def _empty_value(self, tokens: list[str]) -> int:
        """The template that differs from ``tokens`` only where one of them holds a masked value
        and the other the same word with that value empty (``(<*>)`` and ``()``, ``user=<*>`` and
        ``user=``), merged to keep the value's ``<*>``; -1 if there is none.

        An empty value is still a value: a field that is sometimes blank (``from 1.2.3.4 ()``
        beside ``from 1.2.3.4 (host.example.net)``) does not make another event.
        """
        if len(tokens) < _MIN_CONTEXT or not any(
            WILDCARD in t or t[-1:] in _EMPTY_ENDS for t in tokens
        ):
            return -1
        for i in reversed(self._by_head.get((len(tokens), tokens[0]), ())[-_SIMILAR_SCAN:]):
            if self._parent[i] != i:
                continue
            merged, differs = [], False
            for a, b in zip(self._tokens[i], tokens, strict=True):
                if a == b:
                    merged.append(a)
                elif WILDCARD in a and a != WILDCARD and a.replace(WILDCARD, "", 1) == b:
                    merged.append(a)
                    differs = True
                elif WILDCARD in b and b != WILDCARD and b.replace(WILDCARD, "", 1) == a:
                    merged.append(b)
                    differs = True
                else:
                    break
            else:
                if not differs:
                    continue
                if merged == self._tokens[i]:
                    return i
                return self._merge({i}, merged)
        return -1

    def _absorb(self, tokens: list[str]) -> int:
        """Generalize the most similar template of the same length and first word, if close enough.

        Several words of one event can vary at once (a host and a user); the one-position rule of
        :meth:`_generalize` never sees those agree everywhere else. A template that already shares
        :attr:`MinerConfig.similarity` of the positions (a ``<*>`` counts) takes the new line, and
        the positions where they differ become parameters.
        """
        threshold = self.config.similarity
        if threshold > 1.0 or len(tokens) < 4:
            return -1
        candidates = self._by_head.get((len(tokens), tokens[0]))
        if not candidates:
            return -1
        best, best_equal, family = -1, -1, 0
        for i in candidates[-_SIMILAR_SCAN:]:
            if self._parent[i] != i:
                continue
            family += 1
            equal = 0
            for a, b in zip(self._tokens[i], tokens, strict=True):
                if a == b or a == WILDCARD:
                    equal += 1
            if equal > best_equal:
                best, best_equal = i, equal
        # A family of one length and first word that keeps spawning siblings is one event whose
        # words vary several at a time (fresh names in two places): judge it by half its words.
        if family >= self.config.family_size:
            threshold = min(threshold, self.config.family_similarity)
        # One differing word is the one-position rule's to judge (it waits for several values).
        if best < 0 or best_equal < _MIN_CONTEXT or best_equal > len(tokens) - 2:
            return -1
        template = self._tokens[best]
        if best_equal < threshold * len(tokens) and not (
            family >= self.config.family_size and self._family_varies(candidates, template, tokens)
        ):
            return -1
        merged = [
            a if (a == b or a == WILDCARD) else WILDCARD
            for a, b in zip(template, tokens, strict=True)
        ]
        positions = tuple(
            (p, "", "") for p, (a, b) in enumerate(zip(template, tokens, strict=True)) if a != b
        )
        # The siblings the generalized template now covers are the same event: they merge too
        # (their ids stay aliases), rather than stay live beside it.
        members = {best}
        generalized = {p for p, _, _ in positions}
        for i in candidates[-_SIMILAR_SCAN:]:
            if self._parent[i] == i and i != best:
                other = self._tokens[i]
                if all(
                    p in generalized or a == b or a == WILDCARD
                    for p, (a, b) in enumerate(zip(merged, other, strict=True))
                ):
                    members.add(i)
        return self._merge(members, merged, *positions)

    def _family_varies(self, candidates: list[int], template: list[str], tokens: list[str]) -> bool:
        """Whether the family ``candidates`` took several words at every position where
        ``tokens`` differs from ``template``: those positions are its parameters, however few
        words the two share (fresh names in four places of a seven-word event)."""
        live = [self._tokens[i] for i in candidates[-_SIMILAR_SCAN:] if self._parent[i] == i]
        need = self.config.variable_after
        return all(
            len({words[p] for words in live}) >= need
            for p, (a, b) in enumerate(zip(template, tokens, strict=True))
            if a != b and a != WILDCARD
        )

    def _create(self, tokens: list[str]) -> int:
        if len(self) >= self.config.max_templates:
            if self._overflow is None:
                self._overflow = self._new_id([OVERFLOW_TEMPLATE], ())
            return self._overflow
        new = self._new_id(tokens, ())
        self._index_live(new)
        found = self._generalize(new)
        self._join_variant(found)
        return found

    def _join_variant(self, i: int) -> None:
        """Join live template ``i`` to a template of another length that it equals but for runs
        of words where both hold a masked value (or one of them nothing at all).

        A parameter may span several words, or be absent: ``1058 bytes (1.03 KB) sent`` beside
        ``0 bytes sent``, ``lifetime 00:01`` beside ``lifetime <1 sec``, a list of one or two
        numbers. Only runs that hold a ``<*>`` qualify, never words alone, so events that differ
        in words (``to spawn the instance`` and ``to build instance``) stay apart. The two keep
        matching lines by their own words (the matchers work per word count); the larger id
        answers as the smaller one (ids and counts), and its text is the smaller one's.
        """
        tokens = self._tokens[i]
        if len(tokens) < _MIN_CONTEXT or i == self._overflow or i in self._group:
            return
        head = self._head(i)
        for j in reversed(self._by_first.get(tokens[0], ())[-_SIMILAR_SCAN:]):
            other = self._tokens[j]
            if (
                self._parent[j] != j
                or len(other) == len(tokens)
                or self._head(j) == head
                or not _variants(tokens, other)
            ):
                continue
            a, b = sorted((head, self._head(j)))
            self._group[b] = a
            return

    def _new_id(self, tokens: list[str], shape: Shape) -> int:
        new = len(self._parent)
        self._live += 1
        self._tokens.append(tokens)
        self._shape.append(shape)
        self._parent.append(new)
        self._counts.append(0)
        return new

    def _index_live(self, i: int) -> None:
        self._changes += 1
        self._encoded.pop(i, None)
        tokens = self._tokens[i]
        self._by_text[" ".join(tokens)] = i
        # A line fits where the template generalized a word, and also where the kernel masked a
        # value ("user <*> from" was seen with "user 0"): a word there ("admin") is a value too.
        fits = {p: (p, a, b) for p, a, b in self._shape[i]}
        for p, token in enumerate(tokens):
            if token == WILDCARD:
                fits.setdefault(p, (p, "", ""))
        self._fits[i] = tuple(sorted(fits.values()))
        self._shapes.setdefault(len(tokens), set()).add(self._fits[i])
        if tokens:
            heads = self._by_head.setdefault((len(tokens), tokens[0]), [])
            if not heads or heads[-1] != i:
                heads.append(i)
            firsts = self._by_first.setdefault(tokens[0], [])
            if not firsts or firsts[-1] != i:
                firsts.append(i)

    def _generalize(self, i: int) -> int:
        """Index template ``i`` by each word position; merge once a position varies enough."""
        tokens = self._tokens[i]
        if i == self._overflow or len(tokens) > self.config.max_generalized_words:
            return i
        generalized = {p for p, _, _ in self._shape[i]}
        # A parameter needs context: at least two words of the template stay fixed. With just
        # two ("removing <name>", "isScreenOn <state>") only the first word may stay, and the
        # other becomes a parameter on the evidence a first word needs (a handful of values
        # are states; fresh values on every line are not).
        fixed = len(tokens) - len(generalized)
        if fixed < 2 or (fixed == 2 and 0 in generalized):
            return i
        for p, word in enumerate(tokens):
            # The first word names the event more often than not ("cupsd startup succeeded").
            if p in generalized or (p == 0 and (self.config.keep_first_word or fixed < 3)):
                continue
            need = self.config.variable_after if p and fixed >= 3 else self.config.first_word_after
            key = f"{p}\0" + " ".join(tokens[:p] + [WILDCARD] + tokens[p + 1 :])
            words = self._siblings.setdefault(key, {})
            words.setdefault(word, i)
            if len(words) < need:
                continue
            prefix, suffix = _common_affixes(list(words))
            # Actions and states wait for more values than other parameters.
            if len(words) < self.config.word_variable_after and _all_letters(words, prefix, suffix):
                continue
            del self._siblings[key]
            members = {self._find(m) for m in words.values()}
            merged = list(tokens)
            merged[p] = prefix + WILDCARD + suffix
            return self._merge(members, merged, (p, prefix, suffix))
        return i

    def _merge(self, members: set[int], tokens: list[str], *positions: tuple[int, str, str]) -> int:
        text = " ".join(tokens)
        existing = self._by_text.get(text)
        if existing is not None:
            members.add(existing)
        survivor = min(members)
        shape = {position[0]: position for position in positions}
        for m in members:
            for entry in self._shape[m]:
                shape.setdefault(entry[0], entry)
            self._by_text.pop(" ".join(self._tokens[m]), None)
            if m != survivor:
                joined = self._group.pop(m, None)
                if joined is not None and self._head(joined) != self._head(survivor):
                    a, b = sorted((self._head(joined), self._head(survivor)))
                    self._group[b] = a
                self._fits.pop(m, None)
                self._encoded.pop(m, None)
                self._live -= 1
                self._parent[m] = survivor
                self._counts[survivor] += self._counts[m]
                self._counts[m] = 0
        self._tokens[survivor] = tokens
        self._shape[survivor] = tuple(sorted(shape.values()))
        self._index_live(survivor)
        # The generalized template may now vary at another position too.
        return self._generalize(survivor)


Shape = tuple[tuple[int, str, str], ...]
"""The generalized positions of a template: (position, text before ``<*>``, text after it)."""

_AFFIX_SEPARATORS = frozenset("=:,;()[]{}<>\"'|@#/")
# Last characters of a word that may be a field with its value left empty ("()", "rhost=").
_EMPTY_ENDS = frozenset(")]}=:\"'>")


def _common_affixes(words: list[str]) -> tuple[str, str]:
    """What all ``words`` share before and after the varying part, cut at a separator."""
    first = words[0]
    prefix_len = len(first)
    suffix_len = len(first)
    for word in words[1:]:
        n = 0
        limit = min(prefix_len, len(word))
        while n < limit and word[n] == first[n]:
            n += 1
        prefix_len = n
        m = 0
        limit = min(suffix_len, len(word))
        while m < limit and word[-1 - m] == first[-1 - m]:
            m += 1
        suffix_len = m
    prefix = first[:prefix_len]
    while prefix and prefix[-1] not in _AFFIX_SEPARATORS:
        prefix = prefix[:-1]
    suffix = first[len(first) - suffix_len :] if suffix_len else ""
    while suffix and suffix[0] not in _AFFIX_SEPARATORS:
        suffix = suffix[1:]
    shortest = min(len(w) for w in words)
    if len(prefix) + len(suffix) >= shortest:
        return "", ""
    return prefix, suffix


def _all_letters(words: dict[str, int], prefix: str, suffix: str) -> bool:
    """Whether every word's varying part (between the shared affixes) is letters only."""
    end = -len(suffix) if suffix else None
    cores = [w[len(prefix) : end] for w in words]
    return all(c.isascii() and c.isalpha() and c[0].isupper() for c in cores)


def _variants(a: list[str], b: list[str]) -> bool:
    """Whether ``a`` and ``b`` (of different lengths) are one event: at least
    :data:`_MIN_CONTEXT` literal words and half the longer one in common, in order, and every
    run where they differ is a value of several words (:func:`_value_run`) on each side, or on
    one side only a list of values or a bracketed aside that holds one, inside the message
    (``(1.03 KB)``). An optional clause of words (``over <*> seconds``, ``user=<*>``) at the end
    makes another event."""
    # Cheap bounds first: the words the two share at most, whatever their order.
    longer = max(len(a), len(b))
    if 2 * min(len(a), len(b)) < longer:
        return False
    shared = {t for t in a if WILDCARD not in t}.intersection(b)
    bound = sum(t in shared for t in a)
    if bound < _MIN_CONTEXT or 2 * bound < longer:
        return False
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    same = 0
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op == "equal":
            same += sum(WILDCARD not in t for t in a[a0:a1])
        elif op == "replace":
            if not (_value_run(a[a0:a1]) and _value_run(b[b0:b1])):
                return False
        else:
            run, end, length = (a[a0:a1], a1, len(a)) if a1 > a0 else (b[b0:b1], b1, len(b))
            if not (all(t == WILDCARD for t in run) or (end < length and _aside(run))):
                return False
    return same >= _MIN_CONTEXT and 2 * same >= max(len(a), len(b))


def _join_words(a: list[str], b: list[str]) -> list[str]:
    """The words of ``a`` with each run where ``b`` differs written as one ``<*>`` (with what
    the two runs share before and after it), and runs only one of them has left out."""
    out: list[str] = []
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for op, a0, a1, b0, b1 in matcher.get_opcodes():
        if op == "equal":
            out.extend(a[a0:a1])
        elif op == "replace":
            # One character per <*>, so that no affix ends inside one.
            x, y = (" ".join(w).replace(WILDCARD, "\0") for w in (a[a0:a1], b[b0:b1]))
            prefix = os.path.commonprefix([x, y]).split("\0")[0]
            suffix = os.path.commonprefix([x[::-1], y[::-1]])[::-1].split("\0")[-1]
            # Affixes end at punctuation and hold no space ("(" and "):", not "ms (").
            while prefix and (prefix[-1] not in _AFFIX_SEPARATORS or " " in prefix):
                prefix = prefix[:-1]
            while suffix and (suffix[0] not in _AFFIX_SEPARATORS or " " in suffix):
                suffix = suffix[1:]
            out.append(prefix + WILDCARD + suffix)
    return out


def _value_run(words: list[str]) -> bool:
    """Whether ``words`` start with a masked value (after at most one punctuation mark):
    ``<*>:<*>``, ``<<*> sec``."""
    first = words[0]
    return first.startswith(WILDCARD) or (
        not first[:1].isalnum() and first[1:].startswith(WILDCARD)
    )


def _aside(words: list[str]) -> bool:
    """Whether ``words`` are one bracketed group that holds a masked value: ``(<*> KB)``."""
    last = words[-1].rstrip(",;:.")
    return (
        words[0].startswith("(")
        and last.endswith(")")
        and any(WILDCARD in t for t in words)
        and sum(t.count("(") - t.count(")") for t in words) == 0
    )


def _fit(tokens: list[str], shape: Shape) -> list[str] | None:
    """``tokens`` with the template shape's generalized positions written as ``<*>`` (or None)."""
    if not shape:
        return tokens
    candidate = list(tokens)
    for p, prefix, suffix in shape:
        token = tokens[p]
        if (
            len(token) < len(prefix) + len(suffix)
            or not token.startswith(prefix)
            or not token.endswith(suffix)
        ):
            return None
        candidate[p] = prefix + WILDCARD + suffix
    return candidate


# Where the written form cuts a template into pieces (kept): whitespace and the punctuation that
# separates fields; a path is one piece between these. Words are cut at ``. - + @ # $ % &`` too.
_PIECE = re.compile(r"""(\s|[,!;:=|"'\[\](){}])""")
_SUBWORD = re.compile(r"""(\s|[,!;:=|"'\[\](){}.\-+@#$%&])""")
_PATH = re.compile(r"(/[^/]+)+")
_DIGITS = re.compile(r"[0-9]+")
_GLUED = re.compile(r"[^\s/]*<\*>[^\s/]*")
_CLOCK = "<*>:<*>:<*>"
# Words that are values whatever the log: booleans, the null value, the superuser's names.
_VALUE_WORDS = frozenset({"true", "false", "null", "root", "admin"})


@functools.lru_cache(maxsize=65536)
def written(template: str) -> str:
    """``template`` written as the corrected Loghub-2.0 ground truth writes templates.

    The study fixed one way to write a template (``correct_single_template`` of
    logpai/loghub-2.0, rules DS, PS, BL, US, DG, WV, DV, CV), so that parsers that find the same
    parameters print the same text: a path (``/var/log/x``) is one ``<*>``; a piece that is a
    number, a boolean, ``null``, ``root`` or ``admin`` is a ``<*>``; a piece in which a ``<*>`` is
    glued to other characters (``<*>ms``, ``<*>>``, ``node<*>``) is one ``<*>``, since the value
    with its unit or decoration is the parameter; and ``<*>.<*>`` and ``<*><*>`` are one value.
    Pieces are cut at whitespace and field punctuation (and, but for paths, at
    ``. - + @ # $ % &``). Every rewrite turns text into ``<*>``, so the written template still
    matches every message the template matched (:func:`parameter_pattern`).
    """
    text = " ".join(template.split())
    text = "".join(WILDCARD if _PATH.fullmatch(p) else p for p in _PIECE.split(text))
    pieces = []
    for piece in _SUBWORD.split(text):
        if (
            piece.lower() in _VALUE_WORDS
            or _DIGITS.fullmatch(piece)
            or (WILDCARD in piece and piece != "<*>/<*>" and _GLUED.fullmatch(piece))
        ):
            piece = WILDCARD
        pieces.append(piece)
    text = "".join(pieces)
    for pair in ("<*>.<*>", "<*><*>"):
        while pair in text:
            text = text.replace(pair, WILDCARD)
    # A date in words around a clock time (``Sun Jul 24 03:06:08 2005``: the kernel masks the
    # names and numbers one word each) is one timestamp, written as its clock time.
    return _one_clock_per_run(text)


def _one_clock_per_run(text: str) -> str:
    """``text`` (words cut at single spaces) with each clock time ``<*>:<*>:<*>`` and the
    ``<*>`` words right around it written as the clock time alone.

    A scan of the words: the regular expression it replaces (any ``<*> `` words, the clock
    time, any `` <*>`` words) backtracked over every run of ``<*>`` words from each of their
    starts, quadratic in the run (seconds for one line of 10,000 words, at every window)."""
    if _CLOCK not in text:
        return text
    out: list[str] = []
    free = 0  # the ``<*>`` words at the end of ``out`` that no clock run took yet
    words = text.split(" ")
    i, n = 0, len(words)
    while i < n:
        word = words[i]
        i += 1
        if word == _CLOCK:
            if free:
                del out[-free:]
            out.append(_CLOCK)
            while i < n and words[i] == WILDCARD:
                i += 1
            free = 0
        else:
            out.append(word)
            free = free + 1 if word == WILDCARD else 0
    return " ".join(out)


@functools.lru_cache(maxsize=4096)
def _values_onto(own: str, kept: str, text: str) -> list[str] | None:
    """The values of ``text`` matched with the written template ``own`` (a variant), one per
    ``<*>`` of ``kept`` (the text the variants share); None if ``own`` does not fit ``text``.

    The two are aligned word by word: values of shared words go across; words of ``own`` alone
    that hold values extend the value before them (``18846`` → ``18846 bytes (18.4 KB)``);
    where the two differ otherwise, a ``<*>`` of ``kept`` gets the text of the differing words
    (``""`` for words ``own`` lacks)."""
    words = own.split(" ")
    pattern = " ".join(
        "(" + "(.*?)".join(re.escape(p) for p in w.split(WILDCARD)) + ")" for w in words
    )
    match = re.fullmatch(pattern, text, re.DOTALL)
    if match is None:
        return None
    word_group: list[int] = []  # the group of each word, followed by those of its <*>
    value_groups: list[list[int]] = []
    g = 1
    for w in words:
        n = w.count(WILDCARD)
        word_group.append(g)
        value_groups.append(list(range(g + 1, g + 1 + n)))
        g += 1 + n
    values: list[str] = []
    starts: list[int] = []
    shared = kept.split(" ")
    matcher = difflib.SequenceMatcher(None, words, shared, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        wanted = sum(w.count(WILDCARD) for w in shared[j1:j2])
        groups = [x for i in range(i1, i2) for x in value_groups[i]]
        if tag == "equal" or (tag == "replace" and wanted == len(groups)):
            values += [match.group(x) for x in groups]
            starts += [match.start(x) for x in groups]
        elif tag == "delete":
            if groups and values:
                values[-1] = text[starts[-1] : match.end(word_group[i2 - 1])]
        elif wanted:
            start = match.start(word_group[i1]) if i2 > i1 else match.end(0)
            run = text[start : match.end(word_group[i2 - 1])] if i2 > i1 else ""
            values += [run] + [""] * (wanted - 1)
            starts += [start] * wanted
    return values


def parameter_pattern(template: str) -> re.Pattern[str]:
    """A regular expression that matches a (whitespace-collapsed) message of ``template``, one
    lazy group per ``<*>``: its groups are the parameter values."""
    parts = template.split(WILDCARD)
    return re.compile("(.*?)".join(re.escape(part) for part in parts), re.DOTALL)
