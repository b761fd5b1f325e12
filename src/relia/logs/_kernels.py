"""The batch path of template mining, compiled: header skip, masking and skeleton hashing per line.

One pass over the UTF-8 bytes of a whole Arrow string column (no Python string per line): for each
line, skip the learned header, cut the message into segments, mask the parameter segments and hash
the resulting *skeleton* (FNV-1a, 64 bit). Only lines whose hash the miner has not seen go back to
Python, as one representative per distinct hash, and :func:`skeletons` writes those skeletons out
with the very same code, so the hash path and the learning path cannot disagree.

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

import numpy as np
from numba import njit, prange
from numpy.typing import NDArray

__all__ = ["TLDS", "TemplateTable", "hash_lines", "match_lines", "skeletons", "token_hashes"]

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

_FNV_OFFSET = np.uint64(0xCBF29CE484222325)
_FNV_PRIME = np.uint64(0x9E3779B97F4A7C15)  # golden-ratio multiplier: mixes whole words well

# Header layouts (see relia.logs.header.HeaderFormat.kernel_layout).
HEADER_NONE = 0
HEADER_SEPARATOR = 1
HEADER_TOKENS = 2
LAST_PLAIN = 0
LAST_COMPONENT = 1
LAST_DASH = 2


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
def _skip_token(data, i, e, space):  # type: ignore[no-untyped-def]
    """End of the token at ``i``: a balanced [...] group (one nesting level) or a non-space run."""
    if data[i] == 91:  # "["
        depth = 0
        j = i
        while j < e:
            b = data[j]
            if b == 91:
                depth += 1
                if depth > 2:
                    break
            elif b == 93:
                depth -= 1
                if depth == 0:
                    return j + 1
            j += 1
    j = i
    while j < e and not space[data[j]]:
        j += 1
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
    for _ in range(columns):  # the fixed columns, each followed by whitespace
        if i >= e or space[data[i]]:
            return s
        i = _skip_token(data, i, e, space)
        if i >= e or not space[data[i]]:
            return s
        while i < e and space[data[i]]:
            i += 1
    if last == LAST_PLAIN:
        if i >= e:
            return s
        i = _skip_token(data, i, e, space)
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
def _line(data, s, e, sep, space, tld_blob, tld_off, name_blob, name_off, out, pos):  # type: ignore[no-untyped-def]
    """Hash the skeleton of ``data[s:e]``; write it to ``out[pos:]`` too unless ``out`` is empty."""
    h = _FNV_OFFSET
    acc = np.uint64(0)  # bytes gathered into a word; mixed into h eight at a time
    nacc = 0
    emit = len(out) > 0
    pending_space = False
    wrote = False
    i = s
    while i < e:
        b = data[i]
        if space[b]:
            pending_space = wrote
            i += 1
            continue
        if pending_space:
            h, acc, nacc = _push(h, acc, nacc, 32)
            if emit:
                out[pos] = 32
                pos += 1
            pending_space = False
        if sep[b]:
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
        other = False  # a byte a domain name cannot hold
        while j < e and not space[data[j]] and not sep[data[j]]:
            c = data[j]
            if 48 <= c <= 57:
                digits += 1
            elif c == 46:
                dots += 1
            elif c == 47:
                slashes += 1
                other = True
            elif not (_is_letter(c) or c == 45):
                other = True
            j += 1
        keep = j  # bytes [i, keep) are written as they are, then "<*>" if masked
        masked = False
        if (
            (dots > 0 and not other and _is_domain(data, i, j, tld_blob, tld_off))
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
        for k in range(i, keep):
            h, acc, nacc = _push(h, acc, nacc, data[k])
            if emit:
                out[pos] = data[k]
                pos += 1
        if masked:
            for c in (60, 42, 62):  # "<*>"
                h, acc, nacc = _push(h, acc, nacc, c)
                if emit:
                    out[pos] = c
                    pos += 1
        wrote = True
        i = j
    h = (h ^ acc ^ (np.uint64(nacc) << np.uint64(56))) * _FNV_PRIME
    h ^= h >> np.uint64(31)
    return h, pos


@njit(cache=True, parallel=True)
def _hash_all(data, offsets, layout, sep, space, tld_blob, tld_off, name_blob, name_off, hashes):  # type: ignore[no-untyped-def]
    empty = np.empty(0, dtype=np.uint8)
    for n in prange(len(offsets) - 1):
        s = offsets[n]
        e = offsets[n + 1]
        start = _message_start(data, s, e, layout, space)
        h, _ = _line(data, start, e, sep, space, tld_blob, tld_off, name_blob, name_off, empty, 0)
        hashes[n] = h


@njit(cache=True)
def _emit(  # type: ignore[no-untyped-def]
    data, offsets, rows, layout, sep, space, tld_blob, tld_off, name_blob, name_off, out, ends
):
    pos = 0
    for r in range(len(rows)):
        n = rows[r]
        s = offsets[n]
        e = offsets[n + 1]
        start = _message_start(data, s, e, layout, space)
        _, pos = _line(data, start, e, sep, space, tld_blob, tld_off, name_blob, name_off, out, pos)
        ends[r] = pos


def hash_lines(
    data: NDArray[np.uint8], offsets: NDArray[np.int64], layout: NDArray[np.int64]
) -> NDArray[np.uint64]:
    """The skeleton hash of every line (``data[offsets[n]:offsets[n+1]]``) after its header."""
    hashes = np.empty(len(offsets) - 1, dtype=np.uint64)
    _hash_all(
        data,
        offsets,
        layout,
        _SEPARATOR,
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
        _SEPARATOR,
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


@njit(cache=True, inline="always")
def _token_hash(buf, s, e):  # type: ignore[no-untyped-def]
    """FNV-1a of one skeleton token ``buf[s:e]`` (the table's literal words use the same)."""
    h = _FNV_OFFSET
    for k in range(s, e):
        h = (h ^ np.uint64(buf[k])) * _TOKEN_PRIME
    return h


@njit(cache=True)
def _hash_tokens(blob, offsets, out):  # type: ignore[no-untyped-def]
    for k in range(len(offsets) - 1):
        out[k] = _token_hash(blob, offsets[k], offsets[k + 1])


def token_hashes(tokens: list[str]) -> NDArray[np.uint64]:
    """The hash :func:`match_lines` gives each of ``tokens`` (UTF-8), for building its table."""
    encoded = [t.encode() for t in tokens]
    blob = np.frombuffer(b"".join(encoded) or b"\0", dtype=np.uint8)
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(t) for t in encoded], out=offsets[1:])
    out = np.empty(len(encoded), dtype=np.uint64)
    _hash_tokens(blob, offsets, out)
    return out


class TemplateTable:
    """Live templates as flat arrays for :func:`match_lines`.

    Templates are grouped by word count (``by_length[n]:by_length[n + 1]`` are the templates of
    ``n`` words), most specific first (fewest ``<*>`` positions), so a line that fits several
    takes the narrowest. Per word of a template: ``kind`` 0 = literal (``word_hash``), 1 = a
    parameter position whose word must start with ``affixes[prefix_start:prefix_end]`` and end
    with ``affixes[suffix_start:suffix_end]``.
    """

    def __init__(self, templates: list[tuple[int, list[str], dict[int, tuple[str, str]]]]):
        templates = sorted(templates, key=lambda t: (len(t[1]), len(t[2]), t[0]))
        longest = max((len(t[1]) for t in templates), default=0)
        counts = np.bincount([len(t[1]) for t in templates], minlength=longest + 1)
        self.by_length = np.zeros(longest + 2, dtype=np.int64)
        np.cumsum(counts, out=self.by_length[1:])
        self.ids = np.array([t[0] for t in templates], dtype=np.int64)
        starts = np.zeros(len(templates) + 1, dtype=np.int64)
        np.cumsum([len(t[1]) for t in templates], out=starts[1:])
        self.starts = starts
        words = [w for t in templates for w in t[1]]
        self.word_hash = token_hashes(words)
        self.kind = np.zeros(len(words), dtype=np.uint8)
        bounds = np.zeros((len(words), 4), dtype=np.int64)
        affixes = bytearray()
        j = 0
        for _, tokens, shape in templates:
            for p in range(len(tokens)):
                if p in shape:
                    prefix, suffix = (a.encode() for a in shape[p])
                    self.kind[j] = 1
                    bounds[j, 0] = len(affixes)
                    affixes += prefix
                    bounds[j, 1] = bounds[j, 2] = len(affixes)
                    affixes += suffix
                    bounds[j, 3] = len(affixes)
                j += 1
        self.bounds = bounds
        self.affixes = np.frombuffer(bytes(affixes) or b"\0", dtype=np.uint8).copy()


@njit(cache=True, parallel=True)
def _match_all(  # type: ignore[no-untyped-def]
    data,
    offsets,
    rows,
    layout,
    sep,
    space,
    tld_blob,
    tld_off,
    name_blob,
    name_off,
    by_length,
    ids,
    starts,
    word_hash,
    kind,
    bounds,
    affixes,
    out_ids,
):
    longest = len(by_length) - 2
    for r in prange(len(rows)):
        out_ids[r] = -1
        n = rows[r]
        s = offsets[n]
        e = offsets[n + 1]
        start = _message_start(data, s, e, layout, space)
        buf = np.empty(3 * (e - start) + 8, dtype=np.uint8)
        _, m = _line(data, start, e, sep, space, tld_blob, tld_off, name_blob, name_off, buf, 0)
        ntok = 0
        if m > 0:
            ntok = 1
            for k in range(m):
                if buf[k] == 32:
                    ntok += 1
        if ntok > longest or by_length[ntok] == by_length[ntok + 1]:
            continue
        tok_s = np.empty(ntok, dtype=np.int64)
        tok_e = np.empty(ntok, dtype=np.int64)
        tok_h = np.empty(ntok, dtype=np.uint64)
        t = 0
        a = 0
        for k in range(m + 1 if ntok else 0):
            if k == m or buf[k] == 32:
                tok_s[t] = a
                tok_e[t] = k
                tok_h[t] = _token_hash(buf, a, k)
                t += 1
                a = k + 1
        for c in range(by_length[ntok], by_length[ntok + 1]):
            base = starts[c]
            fits = True
            for p in range(ntok):
                j = base + p
                if kind[j] == 0:
                    if tok_h[p] != word_hash[j]:
                        fits = False
                        break
                    continue
                ps = bounds[j, 0]
                pl = bounds[j, 1] - ps
                ss = bounds[j, 2]
                sl = bounds[j, 3] - ss
                ws = tok_s[p]
                we = tok_e[p]
                if we - ws < pl + sl:
                    fits = False
                    break
                for q in range(pl):
                    if buf[ws + q] != affixes[ps + q]:
                        fits = False
                        break
                if fits:
                    for q in range(sl):
                        if buf[we - sl + q] != affixes[ss + q]:
                            fits = False
                            break
                if not fits:
                    break
            if fits:
                out_ids[r] = ids[c]
                break


def match_lines(
    data: NDArray[np.uint8],
    offsets: NDArray[np.int64],
    rows: NDArray[np.int64],
    layout: NDArray[np.int64],
    table: TemplateTable,
) -> NDArray[np.int64]:
    """The id of the template in ``table`` that the skeleton of each line ``rows`` fits (-1: none).

    A word fits a literal template word when they are equal, and a ``<*>`` position when it has
    that position's affixes: the rule of the miner's own lookup, over all cores.
    """
    out = np.empty(len(rows), dtype=np.int64)
    if len(rows) == 0:
        return out
    _match_all(
        data,
        offsets,
        rows,
        layout,
        _SEPARATOR,
        _SPACE,
        _TLD_BLOB,
        _TLD_OFF,
        _NAME_BLOB,
        _NAME_OFF,
        table.by_length,
        table.ids,
        table.starts,
        table.word_hash,
        table.kind,
        table.bounds,
        table.affixes,
        out,
    )
    return out
