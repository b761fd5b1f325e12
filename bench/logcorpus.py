"""A large log corpus for speed benchmarks, built from the Loghub-2k lines with fresh parameters.

Usage::

    python bench/logcorpus.py --lines 10000000 --out /tmp/logspeed [--seed 0] [--data PATH]
        [--layout per-system|mixed]

The corpus is one file per system (``<S>.log``, the lines split evenly over the 14 systems: a log
file has one header layout, as a user's files do), or with ``--layout mixed`` one file whose every
line comes from any system. Every generated line is a raw Loghub-2k line (``<S>/<S>_2k.log``,
chosen uniformly at random among its file's sources) whose variable parts are replaced by fresh
random values, so that no parser can win by caching whole lines:

- **Message parameters.** The ground truth (``<S>_2k.log_structured_corrected.csv``: ``Content``
  and ``EventTemplate``) says where the parameters are: the template's constant parts are aligned
  to the content (a regular expression with one lazy group per ``<*>``, whitespace runs in the
  constants matching any whitespace run). Inside each parameter span, every run of ASCII letters
  and digits gets a new value of the same shape: a number without a leading zero gets random
  digits of length L-1, L or L+1 (never less than 1; a zero-padded number keeps its width), a hex
  run (``0x``-prefixed, or lowercase/uppercase hex with a digit and a letter) gets random hex
  digits of the same case, anything else keeps its character classes (digit -> digit, lower ->
  lower, upper -> upper). Punctuation inside a parameter is kept.
- **Header.** The part of the raw line before the content (timestamp, level, host, pid, ...) is
  kept, but the last one or two digits of every digit run in it are replaced by a uniform value
  of the same width: a single digit by 1-9, two digits v by 1..b with b = 12 when v <= 12, 23 when
  v <= 23, 28 when v <= 28, else v itself (kept when 0). Timestamps, dates, pids and counters
  change on every line while staying valid, whichever field a run is (month, day, hour, ...).
- Lines whose template cannot be aligned to their content (none in the corrected Loghub-2k data)
  fall back to treating every digit run of the content as a parameter; their count is reported.

Generation is vectorized: each source line is pre-encoded once as bytes plus a per-byte class
(keep, random digit, random letter, optional digit, ...), and a chunk of lines is produced by one
gather over those arrays and one table lookup for all random bytes. The corpus is reproducible
from ``(seed, lines, data)``. The number of distinct lines is counted exactly up to 64-bit hash
collisions (expected < 1e-5 for 10 million lines).
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from relia.errors import DataError, ReliaError

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared/data/loghub2k"
DOWNLOAD_HINT = (
    "expected <S>/<S>_2k.log and <S>/<S>_2k.log_structured_corrected.csv per system, as in "
    "https://github.com/logpai/loghub-2.0 (2k samples with corrected labels)"
)
#: Lines per generated chunk; fixed so a seed always gives the same corpus.
CHUNK_LINES = 100_000

# Byte classes. KEEP bytes are copied; the others are drawn from an alphabet.
KEEP = 0
DIGIT = 1
DIGIT_NZ = 2  # first digit of a number without a leading zero
LOWER = 3
UPPER = 4
HEX_LOWER = 5
HEX_UPPER = 6
OPT_DIGIT = 7  # a digit that is dropped half of the time (numbers of length L-1 .. L+1)
HDR_ONE = 8  # a one-digit header run: uniform in [1, bound]
HDR_PAIR = 9  # the first of the last two digits of a header run: uniform in [1, bound], 2 bytes
HDR_PAIR_LO = 10  # the second of those two digits (written together with HDR_PAIR)

_ALPHABETS = {
    DIGIT: b"0123456789",
    DIGIT_NZ: b"123456789",
    LOWER: b"abcdefghijklmnopqrstuvwxyz",
    UPPER: b"ABCDEFGHIJKLMNOPQRSTUVWXYZ",
    HEX_LOWER: b"0123456789abcdef",
    HEX_UPPER: b"0123456789ABCDEF",
    OPT_DIGIT: b"0123456789",
}
_N_CLASSES = 11
_TABLE = np.frombuffer(b"".join(_ALPHABETS.values()), dtype=np.uint8)
_BASE = np.zeros(_N_CLASSES, dtype=np.int64)
_SIZE = np.zeros(_N_CLASSES, dtype=np.float32)
_pos = 0
for _cls, _alpha in _ALPHABETS.items():
    _BASE[_cls], _SIZE[_cls] = _pos, len(_alpha)
    _pos += len(_alpha)

_ALNUM_RUN = re.compile(r"[0-9A-Za-z]+")
_DIGIT_RUN = re.compile(r"[0-9]+")
_HEX_PREFIXED = re.compile(r"0[xX][0-9a-fA-F]+")
_HEX_LOWER = re.compile(r"(?=[0-9a-f]*[a-f])(?=[0-9a-f]*[0-9])[0-9a-f]+")
_HEX_UPPER = re.compile(r"(?=[0-9A-F]*[A-F])(?=[0-9A-F]*[0-9])[0-9A-F]+")
_WS = re.compile(r"\s+")


def template_regex(template: str) -> re.Pattern[str]:
    """A pattern that matches a message of ``template`` with one group per ``<*>``.

    Whitespace runs in the constant parts match any whitespace run: the corrected ground truth
    collapses runs of spaces that the raw message still has (``clusterAddMember  (command 1)``).
    """
    parts = []
    for const in template.split("<*>"):
        words = _WS.split(const)
        parts.append(r"\s+".join(re.escape(w) for w in words))
    return re.compile(r"\s*" + "(.*?)".join(parts) + r"\s*", re.DOTALL)


def parameter_spans(content: str, template: str) -> list[tuple[int, int]] | None:
    """Where the ``<*>`` of ``template`` sit in ``content``: (start, end) per parameter, in order;
    None when the template does not match the content."""
    m = template_regex(template).fullmatch(content)
    if m is None:
        return None
    return [m.span(i) for i in range(1, (m.lastindex or 0) + 1)]


def header_bound(v: int) -> int:
    """The largest value that may replace a two-digit header value ``v`` (>= 1).

    A header does not say which digits are a month, a day, an hour or a pid, so the bound is the
    widest range that stays valid for every field ``v`` could be: up to 12 is any month, up to 23
    an hour, up to 28 a day of any month, beyond that ``v`` itself (a day 31 stays a day of its
    month, a second 59 a second).
    """
    for limit in (12, 23, 28):
        if v <= limit:
            return limit
    return v


@dataclass
class _Encoder:
    """Builds one source line's bytes and per-byte classes and bounds."""

    data: bytearray = field(default_factory=bytearray)
    cls: list[int] = field(default_factory=list)
    bound: list[int] = field(default_factory=list)

    def keep(self, text: str) -> None:
        raw = text.encode("utf-8")
        self.data += raw
        self.cls += [KEEP] * len(raw)
        self.bound += [0] * len(raw)

    def put(self, text: str, classes: Sequence[int], bounds: Sequence[int] | None = None) -> None:
        self.data += text.encode("ascii")
        self.cls += classes
        self.bound += bounds if bounds is not None else [0] * len(classes)

    def header(self, text: str) -> None:
        """Keep the header but refresh the last one or two digits of each digit run."""
        pos = 0
        for m in _DIGIT_RUN.finditer(text):
            self.keep(text[pos : m.start()])
            run = m.group()
            tail = run[-2:]
            self.keep(run[: -len(tail)])
            v = int(tail)
            if v == 0:
                self.keep(tail)
            elif len(tail) == 1:
                self.put(tail, [HDR_ONE], [9])
            else:
                self.put(tail, [HDR_PAIR, HDR_PAIR_LO], [header_bound(v), 0])
            pos = m.end()
        self.keep(text[pos:])

    def parameter(self, text: str) -> None:
        """A fresh value of the same shape for every letter/digit run of a parameter."""
        pos = 0
        for m in _ALNUM_RUN.finditer(text):
            self.keep(text[pos : m.start()])
            self._run(m.group())
            pos = m.end()
        self.keep(text[pos:])

    def _run(self, run: str) -> None:
        n = len(run)
        if run.isdigit():
            if n == 1:
                self.put(run, [DIGIT])
            elif run[0] == "0":  # zero-padded: a fixed-width field
                self.put(run, [DIGIT] * n)
            else:  # L-1 mandatory digits (first non-zero) + 2 optional: length L-1, L or L+1
                self.put(run[:-1] + "00", [DIGIT_NZ] + [DIGIT] * (n - 2) + [OPT_DIGIT] * 2)
        elif _HEX_PREFIXED.fullmatch(run):
            upper = any(c in "ABCDEF" for c in run[2:])
            self.keep(run[:2])
            self.put(run[2:], [HEX_UPPER if upper else HEX_LOWER] * (n - 2))
        elif _HEX_LOWER.fullmatch(run):
            self.put(run, [HEX_LOWER] * n)
        elif _HEX_UPPER.fullmatch(run):
            self.put(run, [HEX_UPPER] * n)
        else:
            self.put(run, [DIGIT if c.isdigit() else LOWER if c.islower() else UPPER for c in run])


def encode_line(raw: str, content: str, template: str) -> tuple[_Encoder, bool]:
    """Encode one raw line (without its newline); True when the template aligned."""
    enc = _Encoder()
    body = raw.rstrip()
    if content and body.endswith(content):
        head, trail = body[: len(body) - len(content)], raw[len(body) :]
    else:  # content not found at the end: the whole line is treated as a header
        head, content, trail = raw, "", ""
    enc.header(head)
    spans = parameter_spans(content, template) if content else []
    aligned = spans is not None
    if spans is None:  # fall back: every digit run of the content is a parameter
        spans = [m.span() for m in _DIGIT_RUN.finditer(content)]
    pos = 0
    for a, b in spans:
        enc.keep(content[pos:a])
        enc.parameter(content[a:b])
        pos = b
    enc.keep(content[pos:] + trail + "\n")
    return enc, aligned


@dataclass(frozen=True)
class SourceTable:
    """Every source line pre-encoded: concatenated bytes, classes and bounds, with offsets."""

    systems: list[str]
    data: np.ndarray[Any, np.dtype[np.uint8]]
    cls: np.ndarray[Any, np.dtype[np.uint8]]
    bound: np.ndarray[Any, np.dtype[np.uint8]]
    offsets: np.ndarray[Any, np.dtype[np.int64]]  # len = lines + 1
    system_of: np.ndarray[Any, np.dtype[np.int16]]  # system index per source line
    unaligned: dict[str, int]  # per system: lines whose template did not align
    parameters: int  # parameter spans over all source lines

    @property
    def lines(self) -> int:
        return len(self.offsets) - 1


def find_systems(root: Path) -> list[tuple[str, Path, Path]]:
    """(system, raw log, structured ground truth) for every system folder under ``root``."""
    if not root.is_dir():
        raise DataError(f"no such folder; {DOWNLOAD_HINT}", where=str(root))
    found = []
    for d in sorted(p for p in root.iterdir() if p.is_dir()):
        log = d / f"{d.name}_2k.log"
        truth = d / f"{d.name}_2k.log_structured_corrected.csv"
        if log.is_file() and truth.is_file():
            found.append((d.name, log, truth))
    if not found:
        raise DataError(f"no Loghub-2k systems found; {DOWNLOAD_HINT}", where=str(root))
    return found


#: One source line: (raw line without its newline, ground-truth Content, EventTemplate).
Source = tuple[str, str, str]


def build_table(systems: Sequence[tuple[str, Sequence[Source]]]) -> SourceTable:
    """Encode the source lines of each named system into one table."""
    data = bytearray()
    cls: list[int] = []
    bound: list[int] = []
    offsets = [0]
    system_of: list[int] = []
    unaligned: dict[str, int] = {}
    params = 0
    for k, (name, sources) in enumerate(systems):
        if not sources:
            raise DataError("no source lines", where=name)
        unaligned[name] = 0
        for raw, content, template in sources:
            enc, ok = encode_line(raw, content, template)
            unaligned[name] += not ok
            params += template.count("<*>") if ok else 0
            data += enc.data
            cls += enc.cls
            bound += enc.bound
            offsets.append(len(data))
            system_of.append(k)
    return SourceTable(
        systems=[name for name, _ in systems],
        data=np.frombuffer(bytes(data), dtype=np.uint8),
        cls=np.asarray(cls, dtype=np.uint8),
        bound=np.asarray(bound, dtype=np.uint8),
        offsets=np.asarray(offsets, dtype=np.int64),
        system_of=np.asarray(system_of, dtype=np.int16),
        unaligned=unaligned,
        parameters=params,
    )


def read_system(log: Path, truth: Path) -> list[Source]:
    """The raw lines of one system with their ground-truth content and template."""
    raw = log.read_text(encoding="utf-8", errors="replace").split("\n")
    if raw and raw[-1] == "":
        raw.pop()
    with truth.open(newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or "Content" not in rows[0] or "EventTemplate" not in rows[0]:
        raise DataError("expected columns Content and EventTemplate", where=str(truth))
    if len(rows) != len(raw):
        raise DataError(
            f"{len(rows)} ground-truth rows for {len(raw)} raw lines in {log.name}",
            where=str(truth),
        )
    return [
        (line, row["Content"], row["EventTemplate"]) for line, row in zip(raw, rows, strict=True)
    ]


def load_sources(root: Path = DEFAULT_DATA) -> SourceTable:
    """Read and encode the raw lines of every system under ``root``."""
    return build_table([(name, read_system(log, truth)) for name, log, truth in find_systems(root)])


def generate_chunk(
    table: SourceTable, n: int, rng: np.random.Generator, sources: tuple[int, int] | None = None
) -> tuple[np.ndarray[Any, np.dtype[np.uint8]], np.ndarray[Any, np.dtype[np.int64]]]:
    """``n`` fresh lines as one byte array (each ending in a newline), and the source line of
    each, drawn uniformly from the source lines ``sources`` (lo, hi; default all)."""
    lo, hi = sources if sources is not None else (0, table.lines)
    src = rng.integers(lo, hi, size=n)
    starts = table.offsets[src]
    lens = table.offsets[src + 1] - starts
    total = int(lens.sum())
    # Byte i of the chunk comes from table byte idx[i]: consecutive within a line, jumping to the
    # next line's start at each line boundary. A cumulative sum of steps builds it (np.repeat of
    # per-line offsets is several times slower).
    step = np.ones(total, dtype=np.int64)
    step[0] = starts[0]
    step[np.cumsum(lens[:-1])] = starts[1:] - (starts[:-1] + lens[:-1]) + 1
    idx = np.cumsum(step, out=step)
    out = table.data[idx]
    cls = table.cls[idx]
    var = np.flatnonzero(cls)
    c = cls[var]
    u = rng.random(len(var), dtype=np.float32)
    alpha = c <= OPT_DIGIT
    ca = c[alpha]
    size = _SIZE[ca]
    pick = (u[alpha] * size).astype(np.int64)
    np.minimum(pick, size.astype(np.int64) - 1, out=pick)  # float32 rounding up to 1.0
    out[var[alpha]] = _TABLE[_BASE[ca] + pick]
    for kind in (HDR_ONE, HDR_PAIR):
        sel = c == kind
        pos = var[sel]
        b = table.bound[idx[pos]].astype(np.int64)
        v = 1 + np.minimum((u[sel] * b).astype(np.int64), b - 1)
        if kind == HDR_ONE:
            out[pos] = 48 + v
        else:
            out[pos] = 48 + v // 10
            out[pos + 1] = 48 + v % 10
    opt = var[c == OPT_DIGIT]
    if len(opt):
        keep = np.ones(total, dtype=bool)
        keep[opt[rng.random(len(opt)) < 0.5]] = False
        out = out[keep]
    return out, src


def line_hashes(chunk: np.ndarray[Any, np.dtype[np.uint8]]) -> np.ndarray[Any, Any]:
    """A 64-bit hash of every line of a chunk (for counting distinct lines)."""
    lines = chunk.tobytes().split(b"\n")[:-1]
    return pl.Series(lines, dtype=pl.Binary).hash(seed=0).to_numpy()


def generate(
    table: SourceTable, lines: int, seed: int, stream: int, sources: tuple[int, int] | None = None
) -> Iterator[tuple[np.ndarray[Any, np.dtype[np.uint8]], np.ndarray[Any, np.dtype[np.int64]]]]:
    """Chunks of one output file: (bytes, source line per line), ``lines`` lines in all, drawn
    from ``sources``; chunk k uses its own generator seeded by (seed, stream, k)."""
    done = 0
    k = 0
    while done < lines:
        n = min(CHUNK_LINES, lines - done)
        yield generate_chunk(table, n, np.random.default_rng([seed, stream, k]), sources)
        done += n
        k += 1


LAYOUTS = ("per-system", "mixed")


@dataclass(frozen=True)
class CorpusFile:
    """One file of a corpus: its name (the system, or ``mixed``), path, lines and bytes."""

    name: str
    path: Path
    lines: int
    bytes: int


@dataclass(frozen=True)
class CorpusInfo:
    """What :func:`write_corpus` wrote."""

    files: list[CorpusFile]
    layout: str
    distinct_lines: int
    seed: int
    seconds: float
    lines_per_system: dict[str, int]
    source_lines: int
    source_parameters: int
    unaligned_source_lines: dict[str, int]

    @property
    def lines(self) -> int:
        return sum(f.lines for f in self.files)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready description."""
        return {
            "layout": self.layout,
            "files": [
                {"name": f.name, "path": str(f.path), "lines": f.lines, "bytes": f.bytes}
                for f in self.files
            ],
            "lines": self.lines,
            "bytes": sum(f.bytes for f in self.files),
            "distinct_lines": self.distinct_lines,
            "distinct_share": round(self.distinct_lines / max(self.lines, 1), 6),
            "seed": self.seed,
            "build_s": round(self.seconds, 2),
            "lines_per_system": self.lines_per_system,
            "source_lines": self.source_lines,
            "source_parameters": self.source_parameters,
            "unaligned_source_lines": self.unaligned_source_lines,
        }


def write_corpus(
    folder: Path, table: SourceTable, lines: int, seed: int = 0, layout: str = "per-system"
) -> CorpusInfo:
    """Write ``lines`` generated lines under ``folder`` and count what was written.

    ``per-system``: one file ``<S>.log`` per system, the lines split evenly, each drawn from that
    system's source lines (a log file has one header layout, as a user's would). ``mixed``: one
    file ``mixed.log`` whose every line comes from any system.
    """
    if lines < 1:
        raise DataError("the corpus needs at least one line", where="--lines")
    if layout not in LAYOUTS:
        raise DataError(f"unknown layout {layout!r}; expected one of {LAYOUTS}", where="layout")
    t0 = time.perf_counter()
    plan: list[tuple[str, int, tuple[int, int] | None]]
    if layout == "mixed":
        plan = [("mixed", lines, None)]
    else:
        k = len(table.systems)
        starts = np.searchsorted(table.system_of, np.arange(k + 1))
        plan = [
            (name, lines // k + (i < lines % k), (int(starts[i]), int(starts[i + 1])))
            for i, name in enumerate(table.systems)
        ]
    hashes = []
    per_system = np.zeros(len(table.systems), dtype=np.int64)
    files = []
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for stream, (name, n, sources) in enumerate(plan):
            path = folder / f"{name}.log"
            size = 0
            with path.open("wb") as f:
                for chunk, src in generate(table, n, seed, stream, sources):
                    chunk.tofile(f)
                    size += len(chunk)
                    hashes.append(line_hashes(chunk))
                    per_system += np.bincount(table.system_of[src], minlength=len(per_system))
            files.append(CorpusFile(name, path, n, size))
    except OSError as exc:
        raise DataError(f"cannot write the corpus: {exc.strerror}", where=str(folder)) from exc
    distinct = len(np.unique(np.concatenate(hashes)))
    return CorpusInfo(
        files=files,
        layout=layout,
        distinct_lines=distinct,
        seed=seed,
        seconds=time.perf_counter() - t0,
        lines_per_system=dict(zip(table.systems, per_system.tolist(), strict=True)),
        source_lines=table.lines,
        source_parameters=table.parameters,
        unaligned_source_lines=table.unaligned,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Build a corpus file; prints what was written as JSON. Exit code 2 on a user error."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--lines", type=int, default=10_000_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="Loghub-2k folder")
    ap.add_argument("--layout", choices=LAYOUTS, default="per-system")
    ap.add_argument("--out", type=Path, required=True, help="folder to write the corpus into")
    args = ap.parse_args(argv)
    try:
        table = load_sources(args.data)
        info = write_corpus(args.out, table, args.lines, args.seed, args.layout)
    except ReliaError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(info.as_dict()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
