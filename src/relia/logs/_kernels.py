"""The batch path of template mining, compiled: header skip, masking and skeleton hashing per line.

One pass over the UTF-8 bytes of a whole Arrow string column (no Python string per line,
:func:`scan_lines`): for each line, skip the learned header, cut the message into segments, mask the
parameter segments into the line's *skeleton*, hash its words and the skeleton (64 bit), look the
skeleton up in the cache of learned skeletons (:class:`SkeletonCache`) and else match it against
the live templates (:class:`TemplateTable`). Only lines that nothing fits go back to Python, as one
representative per distinct hash, and :func:`skeletons` writes those skeletons out with the very
same masking code, so the matching path and the learning path cannot disagree.

The masking rules (first that applies wins, per segment — a run of bytes other than whitespace and
``= : , ; ( ) [ ] { } < > " ' | @ #``):

1. a domain name (letters, digits, ``-`` and ``.``, ending in a known top-level domain) → ``<*>``;
2. a month or weekday name (``Jun``, ``Sat``) → ``<*>``;
3. a path holding a digit (``/udev/vcsa2``) or two slashes from its start (``/etc/cron.d``) →
   ``<*>``; a dotted name of three or more labels right before ``:`` and a digit, a host before
   its port (``proxy.cse.cuhk.edu:5070``) → ``<*>``;
4. a word, ``.`` or ``-``, then a digit (``core.2275``, ``node-246``) → the word and ``<*>``;
5. a segment that starts with a digit (or ``-`` and a digit) or holds three or more (``0x1f``,
   ``10.2.3.4``, ``-3``, ``blk_-160…``) → ``<*>``; names with one or two digits stay words
   (``ssh2``, ``eth1``).

Whitespace runs become one space; leading and trailing whitespace goes.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from numba import njit, prange
from numpy.typing import NDArray

__all__ = [
    "TLDS",
    "EncodedTemplate",
    "SkeletonCache",
    "TemplateTable",
    "encode_templates",
    "hash_lines",
    "scan_lines",
    "skeletons",
    "token_hashes",
]

TLDS = (
    "com net org edu gov mil int io info biz name pro asia mobi tv me co us ca cc ai app dev "
    "cloud xyz top site online hk cn tw jp kr sg in au nz uk de fr it es nl be ch at se no dk "
    "fi pl cz ru br ar mx za eu local internal lan localdomain"
).split()
_NAMES = "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec Mon Tue Wed Thu Fri Sat Sun".split()


def _table(words: list[str]) -> tuple[NDArray[np.uint8], NDArray[np.int64]]:
    blob = np.frombuffer("".join(words).encode(), dtype=np.uint8).copy()
    ends = np.cumsum([len(w) for w in words]).astype(np.int64)
    return blob, np.concatenate([[0], ends]).astype(np.int64)


_TLD_BLOB, _TLD_OFF = _table(TLDS)
_NAME_BLOB, _NAME_OFF = _table(_NAMES)
_SEPARATOR = np.zeros(256, dtype=np.bool_)
for _ch in "=:,;()[]{}<>\"'|@#":
    _SEPARATOR[ord(_ch)] = True
_SPACE = np.zeros(256, dtype=np.bool_)
for _ch in " \t\n\r\x0b\x0c":
    _SPACE[ord(_ch)] = True
# One lookup classifies a byte for the masking loop (counted without branches).
_DIGIT, _DOT, _SLASH, _OTHER, _IS_SPACE, _IS_SEP = 1, 2, 4, 8, 16, 32
_CLASS = np.full(256, _OTHER, dtype=np.uint8)  # _OTHER: a byte a domain name cannot hold
for _b in range(256):
    if _SPACE[_b]:
        _CLASS[_b] = _IS_SPACE
    elif _SEPARATOR[_b]:
        _CLASS[_b] = _IS_SEP
    elif 48 <= _b <= 57:
        _CLASS[_b] = _DIGIT
    elif _b == 45 or 65 <= _b <= 90 or 97 <= _b <= 122:  # "-" and ASCII letters
        _CLASS[_b] = 0
_CLASS[ord(".")] = _DOT
_CLASS[ord("/")] = _SLASH | _OTHER

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x9E3779B97F4A7C15)  # golden-ratio multiplier: mixes whole words well

# Header layouts (see relia.logs.header.HeaderFormat.kernel_layout).
HEADER_NONE = 0
HEADER_SEPARATOR = 1
HEADER_TOKENS = 2
LAST_PLAIN = 0
LAST_COMPONENT = 1
LAST_DASH = 2
# What a header column holds (the fifth and later entries of a layout; missing: any token).
COLUMN_ANY = 0  # a balanced [...] group if it opens a bracket, else a run of non-space bytes
COLUMN_NUMBER = 1  # NUMBER_BYTES only, with a digit: "2005-06-03-15.42.50.675872", "17/06/09"
COLUMN_LEVEL = 2  # a log level, in any case, within any of "[]():<>": "[error]", "<INFO>"
COLUMN_BRACKET = 3  # a balanced [...] group
COLUMN_DASH = 4  # a lone "-"
NUMBER_BYTES = "0123456789-:.,/_+TZ"
LEVELS = (
    "trace debug info information notice warn warning error err critical crit fatal severe "
    "alert emerg emergency"
).split()
_LEVEL_BLOB, _LEVEL_OFF = _table(LEVELS)
_NUMBER_BYTE = np.zeros(256, dtype=np.bool_)
for _ch in NUMBER_BYTES:
    _NUMBER_BYTE[ord(_ch)] = True
_STRIP_BYTE = np.zeros(256, dtype=np.bool_)
for _ch in "[]():<>":
    _STRIP_BYTE[ord(_ch)] = True


@njit(cache=True, inline="always")
def _is_digit(b: int) -> bool:
    return 48 <= b <= 57


@njit(cache=True, inline="always")
def _is_letter(b: int) -> bool:
    return (65 <= b <= 90) or (97 <= b <= 122)


@njit(cache=True, inline="always")
def _push(h, acc, nacc, b):  # type: ignore[no-untyped-def]
    """Add one byte to the hash: gather into a 64-bit word, multiply once per eight bytes."""
    acc = (acc << np.uint64(8)) | np.uint64(b)
    nacc += 1
    if nacc == 8:
        h = (h ^ acc) * _FNV_PRIME
        h ^= h >> np.uint64(29)
        acc = np.uint64(0)
        nacc = 0
    return h, acc, nacc


@njit(cache=True, inline="always")
def _finish(h, acc, nacc):  # type: ignore[no-untyped-def]
    """The hash after the last byte :func:`_push` gathered."""
    h = (h ^ acc ^ (np.uint64(nacc) << np.uint64(56))) * _FNV_PRIME
    return h ^ (h >> np.uint64(31))


@njit(cache=True)
def _in_table(data, s, e, blob, off):  # type: ignore[no-untyped-def]
    n = e - s
    for k in range(len(off) - 1):
        if off[k + 1] - off[k] != n:
            continue
        same = True
        for j in range(n):
            if data[s + j] != blob[off[k] + j]:
                same = False
                break
        if same:
            return True
    return False


@njit(cache=True)
def _is_domain(data, s, e, tld_blob, tld_off):  # type: ignore[no-untyped-def]
    last_dot = -1
    prev_dot = True  # no empty labels, and the first byte may not be a dot
    for j in range(s, e):
        b = data[j]
        if b == 46:  # "."
            if prev_dot:
                return False
            last_dot = j
            prev_dot = True
        elif _is_letter(b) or _is_digit(b) or b == 45:
            prev_dot = False
        else:
            return False
    if last_dot < 0 or prev_dot:
        return False
    return _in_table(data, last_dot + 1, e, tld_blob, tld_off)


@njit(cache=True)
def _group_end(data, i, e):  # type: ignore[no-untyped-def]
    """End of the balanced [...] group at ``i`` (one level of nesting inside), else -1."""
    depth = 0
    for j in range(i, e):
        b = data[j]
        if b == 91:  # "["
            depth += 1
            if depth > 2:
                return -1
        elif b == 93:  # "]"
            depth -= 1
            if depth == 0:
                return j + 1
    return -1


@njit(cache=True)
def _column_end(data, i, e, space, kind):  # type: ignore[no-untyped-def]
    """End of the header column of ``kind`` (``COLUMN_*``) at ``i``, else -1 (no such column)."""
    if kind == COLUMN_BRACKET or (kind == COLUMN_ANY and data[i] == 91):
        return _group_end(data, i, e) if data[i] == 91 else -1
    j = i
    while j < e and not space[data[j]]:
        j += 1
    if kind == COLUMN_NUMBER:
        digit = False
        for k in range(i, j):
            if not _NUMBER_BYTE[data[k]]:
                return -1
            digit = digit or _is_digit(data[k])
        return j if digit else -1
    if kind == COLUMN_LEVEL:
        a = i
        z = j
        while a < z and _STRIP_BYTE[data[a]]:
            a += 1
        while z > a and _STRIP_BYTE[data[z - 1]]:
            z -= 1
        for k in range(len(_LEVEL_OFF) - 1):
            if _LEVEL_OFF[k + 1] - _LEVEL_OFF[k] != z - a:
                continue
            same = True
            for q in range(z - a):
                b = data[a + q]
                if 65 <= b <= 90:  # ASCII upper case
                    b += 32
                if b != _LEVEL_BLOB[_LEVEL_OFF[k] + q]:
                    same = False
                    break
            if same:
                return j
        return -1
    if kind == COLUMN_DASH:
        return j if j - i == 1 and data[i] == 45 else -1
    return j


@njit(cache=True)
def _message_start(data, s, e, layout, space):  # type: ignore[no-untyped-def]
    """Where the message of the line ``data[s:e]`` starts, per the learned header layout."""
    mode = layout[0]
    if mode == HEADER_SEPARATOR:
        need = layout[2]
        sep = layout[1]
        for j in range(s, e):
            if data[j] == sep:
                need -= 1
                if need == 0:
                    return j + 1
        return s
    if mode != HEADER_TOKENS:
        return s
    columns = layout[2]
    last = layout[3]
    i = s
    for c in range(columns):  # the fixed columns, each followed by whitespace
        if i >= e or space[data[i]]:
            return s
        i = _column_end(data, i, e, space, layout[4 + c] if 4 + c < len(layout) else COLUMN_ANY)
        if i < 0 or i >= e or not space[data[i]]:
            return s
        while i < e and space[data[i]]:
            i += 1
    if last == LAST_PLAIN:
        if i >= e:
            return s
        kind = layout[4 + columns] if 4 + columns < len(layout) else COLUMN_ANY
        i = _column_end(data, i, e, space, kind)
        if i < 0:
            return s
    else:
        found = False
        for _ in range(3):  # the closing token is among the next three
            if i >= e:
                break
            start = i
            while i < e and not space[data[i]]:
                i += 1
            if last == LAST_COMPONENT and i - start >= 1 and data[i - 1] == 58:
                found = True
            elif last == LAST_DASH and i - start == 1 and data[start] == 45:
                found = True
            if found:
                break
            while i < e and space[data[i]]:
                i += 1
        if not found:
            return s
    if i < e and not space[data[i]]:
        return s
    while i < e and space[data[i]]:
        i += 1
    return i


@njit(cache=True)
def _line(data, s, e, cls, space, tld_blob, tld_off, name_blob, name_off, out, pos, hashing=True):  # type: ignore[no-untyped-def]
    """Hash the skeleton of ``data[s:e]`` (unless not ``hashing``: 0); write it to ``out[pos:]``
    too unless ``out`` is empty. ``cls`` is :data:`_CLASS`, ``space`` :data:`_SPACE`.
    """
    h = _FNV_OFFSET
    acc = np.uint64(0)  # bytes gathered into a word; mixed into h eight at a time
    nacc = 0
    emit = len(out) > 0
    pending_space = False
    wrote = False
    i = s
    while i < e:
        b = data[i]
        kind = cls[b]
        if kind & _IS_SPACE:
            pending_space = wrote
            i += 1
            continue
        if pending_space:
            if hashing:
                h, acc, nacc = _push(h, acc, nacc, 32)
            if emit:
                out[pos] = 32
                pos += 1
            pending_space = False
        if kind & _IS_SEP:
            if hashing:
                h, acc, nacc = _push(h, acc, nacc, b)
            if emit:
                out[pos] = b
                pos += 1
            wrote = True
            i += 1
            continue
        j = i
        digits = 0
        dots = 0
        slashes = 0
        other = 0  # a byte a domain name cannot hold
        while j < e:
            b = data[j]
            c = cls[b]
            if c & (_IS_SPACE | _IS_SEP):
                break
            if emit:  # copied as it is read; a masked segment keeps only a prefix of it
                out[pos + j - i] = b
            digits += c & _DIGIT
            dots += (c & _DOT) >> 1
            slashes += (c & _SLASH) >> 2
            other |= c & _OTHER
            j += 1
        keep = j  # bytes [i, keep) are written as they are, then "<*>" if masked
        masked = False
        if (
            # (a domain ends in letters: numbers like 10.0.0.1 or 12.5 skip the TLD lookup)
            (
                dots > 0
                and not other
                and not _is_digit(data[j - 1])
                and _is_domain(data, i, j, tld_blob, tld_off)
            )
            or (j - i == 3 and 65 <= data[i] <= 90 and _in_table(data, i, j, name_blob, name_off))
            or (
                dots >= 2
                and not other
                and j + 1 < e
                and data[j] == 58
                and _is_digit(data[j + 1])
                and data[i] != 46
                and data[j - 1] != 46
            )
            or (slashes >= 2 and data[i] == 47)
        ):
            keep, masked = i, True
        elif digits > 0:
            if slashes:
                keep, masked = i, True
            else:
                k = i
                while k < j and _is_letter(data[k]):
                    k += 1
                if (
                    k > i
                    and k + 1 < j
                    and (data[k] == 46 or data[k] == 45)
                    and _is_digit(data[k + 1])
                ):
                    keep, masked = k + 1, True
                elif (
                    _is_digit(data[i])
                    or (data[i] == 45 and i + 1 < j and _is_digit(data[i + 1]))  # -3
                    or digits >= 3
                ):
                    keep, masked = i, True
        if hashing:
            for k in range(i, keep):
                h, acc, nacc = _push(h, acc, nacc, data[k])
            if masked:
                for c in (60, 42, 62):  # "<*>"
                    h, acc, nacc = _push(h, acc, nacc, c)
        if emit:
            pos += keep - i
            if masked:
                out[pos] = 60  # "<*>"
                out[pos + 1] = 42
                out[pos + 2] = 62
                pos += 3
        wrote = True
        i = j
    if not hashing:
        return np.uint64(0), pos
    return _finish(h, acc, nacc), pos


@njit(cache=True, parallel=True)
def _hash_all(data, offsets, layout, cls, space, tld_blob, tld_off, name_blob, name_off, hashes):  # type: ignore[no-untyped-def]
    empty = np.empty(0, dtype=np.uint8)
    for n in prange(len(offsets) - 1):
        s = offsets[n]
        e = offsets[n + 1]
        start = _message_start(data, s, e, layout, space)
        h, _ = _line(data, start, e, cls, space, tld_blob, tld_off, name_blob, name_off, empty, 0)
        hashes[n] = h


@njit(cache=True)
def _emit(  # type: ignore[no-untyped-def]
    data, offsets, rows, layout, cls, space, tld_blob, tld_off, name_blob, name_off, out, ends
):
    pos = 0
    for r in range(len(rows)):
        n = rows[r]
        s = offsets[n]
        e = offsets[n + 1]
        start = _message_start(data, s, e, layout, space)
        _, pos = _line(data, start, e, cls, space, tld_blob, tld_off, name_blob, name_off, out, pos)
        ends[r] = pos


def hash_lines(
    data: NDArray[np.uint8], offsets: NDArray[np.int64], layout: NDArray[np.int64]
) -> NDArray[np.uint64]:
    """The skeleton hash of every line (``data[offsets[n]:offsets[n+1]]``) after its header, byte
    by byte (:func:`scan_lines` hashes a skeleton by its words instead, for its own cache)."""
    hashes = np.empty(len(offsets) - 1, dtype=np.uint64)
    _hash_all(
        data,
        offsets,
        layout,
        _CLASS,
        _SPACE,
        _TLD_BLOB,
        _TLD_OFF,
        _NAME_BLOB,
        _NAME_OFF,
        hashes,
    )
    return hashes


def skeletons(
    data: NDArray[np.uint8],
    offsets: NDArray[np.int64],
    rows: NDArray[np.int64],
    layout: NDArray[np.int64],
) -> list[str]:
    """The skeleton text of the lines ``rows`` (the same bytes :func:`hash_lines` hashed)."""
    if len(rows) == 0:
        return []
    budget = int(np.sum(offsets[rows + 1] - offsets[rows])) * 3 + 3 * len(rows) + 16
    out = np.empty(budget, dtype=np.uint8)
    ends = np.empty(len(rows), dtype=np.int64)
    _emit(
        data,
        offsets,
        rows,
        layout,
        _CLASS,
        _SPACE,
        _TLD_BLOB,
        _TLD_OFF,
        _NAME_BLOB,
        _NAME_OFF,
        out,
        ends,
    )
    raw = out.tobytes()
    starts = np.concatenate([[0], ends[:-1]])
    return [
        raw[a:b].decode("utf-8", errors="replace")
        for a, b in zip(starts.tolist(), ends.tolist(), strict=True)
    ]


# -- matching lines against learned templates, compiled -----------------------------------------

_TOKEN_PRIME = np.uint64(0x100000001B3)
#: The bucket head of templates whose first word is a parameter (or that have no words).
_WILD_HEAD = np.uint64(0x5BD1E9955BD1E995)
#: Lines per parallel work item of :func:`scan_lines`: one set of scratch buffers serves them all
#: (a buffer allocated per line costs more than masking a short line).
_CHUNK = 2048


@njit(cache=True, inline="always")
def _token_hash(buf, s, e):  # type: ignore[no-untyped-def]
    """The hash of one skeleton token ``buf[s:e]``, as :func:`_scan_all` computes it."""
    h = _FNV_OFFSET
    acc = np.uint64(0)
    nacc = 0
    for k in range(s, e):
        h, acc, nacc = _push(h, acc, nacc, buf[k])
    return _finish(h, acc, nacc)


@njit(cache=True, inline="always")
def _fold(h, token):  # type: ignore[no-untyped-def]
    """Mix one token's hash into a skeleton's hash."""
    h = (h ^ token) * _FNV_PRIME
    return h ^ (h >> np.uint64(29))


@njit(cache=True, inline="always")
def _bucket_key(length, head):  # type: ignore[no-untyped-def]
    """The bucket of the templates of ``length`` words whose first word hashes to ``head``."""
    h = (head ^ (np.uint64(length) * _FNV_PRIME)) * _TOKEN_PRIME
    return h ^ (h >> np.uint64(29))


@njit(cache=True)
def _hash_tokens(blob, offsets, out):  # type: ignore[no-untyped-def]
    for k in range(len(offsets) - 1):
        out[k] = _token_hash(blob, offsets[k], offsets[k + 1])


@njit(cache=True)
def _bucket_keys(lengths, heads, wild, out):  # type: ignore[no-untyped-def]
    for k in range(len(lengths)):
        out[k] = _bucket_key(lengths[k], _WILD_HEAD if wild[k] else heads[k])


def token_hashes(tokens: list[str]) -> NDArray[np.uint64]:
    """The hash :func:`scan_lines` gives each of ``tokens`` (UTF-8), for building its table."""
    encoded = [t.encode() for t in tokens]
    blob = np.frombuffer(b"".join(encoded) or b"\0", dtype=np.uint8)
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(t) for t in encoded], out=offsets[1:])
    out = np.empty(len(encoded), dtype=np.uint64)
    _hash_tokens(blob, offsets, out)
    return out


@dataclass(frozen=True)
class EncodedTemplate:
    """One template's piece of a :class:`TemplateTable`, kept by the miner until the template
    changes, so that the table is rebuilt by concatenation rather than from text."""

    word_hash: NDArray[np.uint64]
    kind: NDArray[np.uint8]
    bounds: NDArray[np.int64]  # into ``affixes`` of this template alone
    affixes: bytes
    wild: int  # parameter positions: the rank of a template among those a line fits


def encode_templates(
    templates: list[tuple[list[str], dict[int, tuple[str, str]]]],
) -> list[EncodedTemplate]:
    """Encode templates (words, parameter position -> (prefix, suffix)) for a table."""
    hashes = token_hashes([w for words, _ in templates for w in words])
    out = []
    base = 0
    for words, shape in templates:
        n = len(words)
        kind = np.zeros(n, dtype=np.uint8)
        bounds = np.zeros((n, 4), dtype=np.int64)
        affixes = bytearray()
        for p, (prefix, suffix) in shape.items():
            kind[p] = 1
            bounds[p, 0] = len(affixes)
            affixes += prefix.encode()
            bounds[p, 1] = bounds[p, 2] = len(affixes)
            affixes += suffix.encode()
            bounds[p, 3] = len(affixes)
        out.append(
            EncodedTemplate(hashes[base : base + n], kind, bounds, bytes(affixes), len(shape))
        )
        base += n
    return out


class TemplateTable:
    """Live templates as flat arrays for :func:`scan_lines`.

    Templates are numbered by rank, fewest ``<*>`` positions first and then the oldest id, so
    that a line that fits several takes the narrowest (the miner's own rule). The words of
    template ``t`` are ``starts[t]:starts[t + 1]``; per word, ``kind`` 0 = a literal
    (``word_hash``), 1 = a parameter position whose word must start with
    ``affixes[bounds[j, 0]:bounds[j, 1]]`` and end with ``affixes[bounds[j, 2]:bounds[j, 3]]``.

    A line is compared only with the templates of its word count whose first word is its own
    first word or a parameter (thousands of templates, a handful of candidates): the templates
    of bucket ``bucket_keys[b]`` (sorted) are ``members[bucket_start[b]:bucket_start[b + 1]]``,
    by rank.
    """

    def __init__(self, entries: list[tuple[int, EncodedTemplate]]) -> None:
        entries = sorted(entries, key=lambda e: (e[1].wild, e[0]))
        count = len(entries)
        encoded = [e for _, e in entries]
        self.ids = np.array([i for i, _ in entries], dtype=np.int64)
        lengths = np.array([len(e.kind) for e in encoded], dtype=np.int64)
        self.starts = np.zeros(count + 1, dtype=np.int64)
        np.cumsum(lengths, out=self.starts[1:])
        words = int(self.starts[-1])
        if words:
            self.word_hash = np.concatenate([e.word_hash for e in encoded])
            self.kind = np.concatenate([e.kind for e in encoded])
            affix_start = np.zeros(count, dtype=np.int64)
            np.cumsum([len(e.affixes) for e in encoded[:-1]], out=affix_start[1:])
            self.bounds = np.concatenate([e.bounds for e in encoded])
            self.bounds += np.repeat(affix_start, lengths)[:, None]
        else:
            self.word_hash = np.zeros(0, dtype=np.uint64)
            self.kind = np.zeros(0, dtype=np.uint8)
            self.bounds = np.zeros((0, 4), dtype=np.int64)
        blob = b"".join(e.affixes for e in encoded)
        self.affixes = np.frombuffer(blob or b"\0", dtype=np.uint8).copy()
        first = np.minimum(self.starts[:-1], max(words - 1, 0))
        if words:
            heads = self.word_hash[first]
            wild = (lengths == 0) | (self.kind[first] == 1)
        else:
            heads = np.zeros(count, dtype=np.uint64)
            wild = np.ones(count, dtype=np.bool_)
        keys = np.empty(count, dtype=np.uint64)
        _bucket_keys(lengths, heads, wild, keys)
        self.members = np.lexsort((np.arange(count), keys)).astype(np.int64)
        self.bucket_keys, first_member = np.unique(keys[self.members], return_index=True)
        self.bucket_start = np.append(first_member, count).astype(np.int64)

    @classmethod
    def of(
        cls, templates: list[tuple[int, list[str], dict[int, tuple[str, str]]]]
    ) -> TemplateTable:
        """The table of templates (id, words, parameter position -> (prefix, suffix))."""
        encoded = encode_templates([(words, shape) for _, words, shape in templates])
        return cls([(t[0], e) for t, e in zip(templates, encoded, strict=True)])


@njit(cache=True, inline="always")
def _fits(t, ntok, buf, tok_s, tok_e, tok_h, starts, word_hash, kind, bounds, affixes):  # type: ignore[no-untyped-def]
    """Whether the tokenized line fits template ``t`` (of its word count)."""
    base = starts[t]
    for p in range(ntok):
        j = base + p
        if kind[j] == 0:
            if tok_h[p] != word_hash[j]:
                return False
            continue
        ps = bounds[j, 0]
        pl = bounds[j, 1] - ps
        ss = bounds[j, 2]
        sl = bounds[j, 3] - ss
        ws = tok_s[p]
        we = tok_e[p]
        if we - ws < pl + sl:
            return False
        for q in range(pl):
            if buf[ws + q] != affixes[ps + q]:
                return False
        for q in range(sl):
            if buf[we - sl + q] != affixes[ss + q]:
                return False
    return True


@njit(cache=True, inline="always")
def _cache_get(keys, vals, h):  # type: ignore[no-untyped-def]
    """The id stored for skeleton hash ``h`` in the open-addressing cache (-1: none)."""
    mask = len(keys) - 1
    slot = np.int64(h & np.uint64(mask))
    while True:
        v = vals[slot]
        if v < 0 or keys[slot] == h:
            return v
        slot = (slot + 1) & mask


@njit(cache=True)
def _cache_put(keys, vals, hashes, ids, size, limit):  # type: ignore[no-untyped-def]
    mask = len(keys) - 1
    for k in range(len(hashes)):
        if size >= limit:  # bounded memory: start over (a miss only costs a match)
            vals[:] = -1
            size = 0
        h = hashes[k]
        slot = np.int64(h & np.uint64(mask))
        while vals[slot] >= 0 and keys[slot] != h:
            slot = (slot + 1) & mask
        if vals[slot] < 0:
            size += 1
        keys[slot] = h
        vals[slot] = ids[k]
    return size


class SkeletonCache:
    """Skeleton hash -> template id, an open-addressing table that :func:`scan_lines` probes.

    Bounded: once it holds ``limit`` entries it is cleared before the next insert.
    """

    def __init__(self, limit: int) -> None:
        self.limit = max(1, limit)
        self.keys = np.zeros(16, dtype=np.uint64)
        self.vals = np.full(16, -1, dtype=np.int64)
        self.size = 0

    def __len__(self) -> int:
        return self.size

    def put(self, hashes: NDArray[np.uint64], ids: NDArray[np.int64]) -> None:
        """Remember ``ids[k]`` for ``hashes[k]`` (ids >= 0)."""
        need = 2 * min(self.size + len(hashes), self.limit)  # at most half full: short probes
        if need > len(self.keys):
            capacity = len(self.keys)
            while capacity < need:
                capacity *= 2
            live = self.vals >= 0
            old_keys, old_vals = self.keys[live], self.vals[live]
            self.keys = np.zeros(capacity, dtype=np.uint64)
            self.vals = np.full(capacity, -1, dtype=np.int64)
            self.size = _cache_put(self.keys, self.vals, old_keys, old_vals, 0, self.limit)
        self.size = _cache_put(self.keys, self.vals, hashes, ids, self.size, self.limit)


@njit(cache=True, parallel=True)
def _scan_all(  # type: ignore[no-untyped-def]
    data,
    offsets,
    rows,
    layout,
    cls,
    space,
    tld_blob,
    tld_off,
    name_blob,
    name_off,
    cache_keys,
    cache_vals,
    ids,
    starts,
    word_hash,
    kind,
    bounds,
    affixes,
    bucket_keys,
    bucket_start,
    members,
    out_ids,
    out_hash,
):
    count = len(rows)
    chunks = (count + _CHUNK - 1) // _CHUNK
    matching = len(ids) > 0
    for c in prange(chunks):
        lo = c * _CHUNK
        hi = min(count, lo + _CHUNK)
        longest = 0
        for r in range(lo, hi):
            longest = max(longest, offsets[rows[r] + 1] - offsets[rows[r]])
        # Masking writes at most "<*>" (3 bytes) per input byte; a token holds at least one
        # input byte and is followed by whitespace, so there are at most longest // 2 + 1.
        buf = np.empty(3 * longest + 8, dtype=np.uint8)
        tok_s = np.empty(longest // 2 + 2, dtype=np.int64)
        tok_e = np.empty(longest // 2 + 2, dtype=np.int64)
        tok_h = np.empty(longest // 2 + 2, dtype=np.uint64)
        for r in range(lo, hi):
            n = rows[r]
            s = offsets[n]
            e = offsets[n + 1]
            start = _message_start(data, s, e, layout, space)
            _, m = _line(
                data, start, e, cls, space, tld_blob, tld_off, name_blob, name_off, buf, 0, False
            )
            # One pass over the skeleton cuts it into tokens and hashes each, 8 bytes per
            # multiply; the skeleton's hash is made of the tokens' hashes.
            ntok = 0
            a = 0
            h = _FNV_OFFSET
            th = _FNV_OFFSET
            acc = np.uint64(0)
            nacc = 0
            for k in range(m + 1 if m > 0 else 0):
                if k == m or buf[k] == 32:
                    th = _finish(th, acc, nacc)
                    tok_s[ntok] = a
                    tok_e[ntok] = k
                    tok_h[ntok] = th
                    h = _fold(h, th)
                    ntok += 1
                    a = k + 1
                    th = _FNV_OFFSET
                    acc = np.uint64(0)
                    nacc = 0
                else:
                    th, acc, nacc = _push(th, acc, nacc, buf[k])
            h = _finish(h, np.uint64(ntok), 0)
            out_hash[r] = h
            found = _cache_get(cache_keys, cache_vals, h)
            out_ids[r] = found
            if found >= 0 or not matching:
                continue
            # The narrowest template among those headed by this first word and those headed by
            # a parameter: each bucket is ranked, so its first fit is its best.
            best = len(ids)
            for head in range(2):
                if head == 0 and ntok == 0:
                    continue
                key = _bucket_key(ntok, tok_h[0] if head == 0 else _WILD_HEAD)
                b = np.searchsorted(bucket_keys, key)
                if b == len(bucket_keys) or bucket_keys[b] != key:
                    continue
                for k in range(bucket_start[b], bucket_start[b + 1]):
                    t = members[k]
                    if t >= best:
                        break
                    if _fits(
                        t, ntok, buf, tok_s, tok_e, tok_h, starts, word_hash, kind, bounds, affixes
                    ):
                        best = t
                        break
            if best < len(ids):
                out_ids[r] = ids[best]


def scan_lines(
    data: NDArray[np.uint8],
    offsets: NDArray[np.int64],
    rows: NDArray[np.int64],
    layout: NDArray[np.int64],
    cache: SkeletonCache,
    table: TemplateTable | None,
) -> tuple[NDArray[np.int64], NDArray[np.uint64]]:
    """The template id and skeleton hash of each line ``rows`` (after its header), over all cores.

    The id is the cached one for the skeleton hash, else that of the narrowest template in
    ``table`` the skeleton fits (a word fits a literal template word when they are equal, and a
    ``<*>`` position when it has that position's affixes: the miner's own lookup rule), else -1.
    """
    out_ids = np.empty(len(rows), dtype=np.int64)
    out_hash = np.empty(len(rows), dtype=np.uint64)
    if len(rows) == 0:
        return out_ids, out_hash
    if table is None:
        table = _empty_table()
    _scan_all(
        data,
        offsets,
        rows,
        layout,
        _CLASS,
        _SPACE,
        _TLD_BLOB,
        _TLD_OFF,
        _NAME_BLOB,
        _NAME_OFF,
        cache.keys,
        cache.vals,
        table.ids,
        table.starts,
        table.word_hash,
        table.kind,
        table.bounds,
        table.affixes,
        table.bucket_keys,
        table.bucket_start,
        table.members,
        out_ids,
        out_hash,
    )
    return out_ids, out_hash


@functools.cache
def _empty_table() -> TemplateTable:
    return TemplateTable([])
