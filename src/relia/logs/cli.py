"""``relia logs …``: mine message templates from log files.

``relia logs templates`` streams its inputs in batches of :data:`BATCH_LINES` lines through one
:class:`~relia.logs.miner.TemplateMiner`, so memory stays bounded whatever the input size. Bytes
become lines through :class:`~relia.logs.reader.LineDecoder`: binary garbage, invalid UTF-8, blank
lines and lines over 1 MiB are counted and reported at the end, never a crash and never a silent
drop. User errors (a missing or unreadable file, a corrupt model) are one ``relia: error: …`` line
and exit code 2.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import io
import json
import os
import re
import secrets
import shutil
import stat
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from tempfile import gettempdir
from typing import IO, Annotated

import numpy as np
import polars as pl
import typer
from numpy.typing import NDArray

from relia._cliutil import (
    Staged,
    check_output_place,
    count_of,
    err_console,
    output_path,
    same_file,
    to_stdout,
    user_errors,
    writing,
)
from relia.errors import DataError
from relia.logs.header import HeaderFormat
from relia.logs.miner import WILDCARD, TemplateMiner
from relia.logs.miner import parameter_pattern as _parameter_regex
from relia.logs.reader import LineDecoder, ReadCounts

__all__ = [
    "BATCH_LINES",
    "MESSAGE_FIELDS",
    "LogFormat",
    "TemplateRun",
    "logs_app",
    "mine_templates",
    "parameters_json",
]

logs_app = typer.Typer(
    help="Logs: mine message templates (with ids, counts and parameters) from log files.",
    no_args_is_help=True,
)

#: Lines mined per batch: large enough for the vectorized paths, small enough to bound memory.
BATCH_LINES = 200_000
#: JSON fields a jsonl line's message is taken from, the first one present wins.
MESSAGE_FIELDS = ("message", "msg", "log")
_READ_BYTES = 1 << 22
_HEADER_SAMPLE = 2000  # lines a file's header layout is learned from
_FORMAT_SAMPLE = 100  # lines --format auto looks at
_JSON_SHARE = 0.9  # share of the sample that must be JSON objects for auto to pick jsonl
_VECTOR_GROUP = 500  # lines of one template from which parameters are extracted by Polars
_PROGRESS_BYTES = 32 << 20  # inputs at least this large get a progress bar (on a terminal)
STDIN = "-"


class LogFormat(StrEnum):
    """How to read an input: ``plain`` text lines, ``jsonl`` objects, or ``auto`` per file."""

    auto = "auto"
    plain = "plain"
    jsonl = "jsonl"


# --- reading ---------------------------------------------------------------------------------


class _NumberedDecoder:
    """A :class:`LineDecoder` that also gives the file line number of every line it hands out.

    The decoder skips (and counts) blank, binary and over-long lines without saying which, so a
    chunk in which something was skipped is decoded again one line at a time from a copy of the
    decoder taken before it. Chunks without skips (the common case) cost one ``feed``.
    """

    def __init__(self) -> None:
        self.decoder = LineDecoder()

    @property
    def counts(self) -> ReadCounts:
        return self.decoder.counts

    def _ended(self) -> int:
        counts = self.decoder.counts
        return counts.lines + counts.skipped

    def feed(self, chunk: bytes) -> tuple[list[str], NDArray[np.int64]]:
        before = copy.deepcopy(self.decoder)  # holds only the unfinished line: cheap
        first = self._ended() + 1
        lines = self.decoder.feed(chunk)
        if self.decoder.counts.skipped == before.counts.skipped:
            return lines, np.arange(first, first + len(lines), dtype=np.int64)
        self.decoder = before
        lines, numbers = [], []
        start = 0
        while (newline := chunk.find(b"\n", start)) >= 0:
            for line in self.decoder.feed(chunk[start : newline + 1]):
                lines.append(line)
                numbers.append(self._ended())
            start = newline + 1
        self.decoder.feed(chunk[start:])  # the unfinished last line waits for its newline
        return lines, np.array(numbers, dtype=np.int64)

    def finish(self) -> tuple[list[str], NDArray[np.int64]]:
        lines = self.decoder.finish()
        return lines, np.full(len(lines), self._ended(), dtype=np.int64)


def _open_input(path: Path) -> IO[bytes]:
    if str(path) == STDIN:
        return sys.stdin.buffer
    try:
        return path.open("rb")
    except IsADirectoryError:
        raise DataError("is a directory, not a log file", where=str(path)) from None
    except OSError as exc:
        raise DataError(f"cannot read: {exc.strerror or exc}", where=str(path)) from None


def _batches(
    stream: IO[bytes], decoder: _NumberedDecoder, where: str, on_bytes: Callable[[int], None]
) -> Iterator[tuple[list[str], NDArray[np.int64]]]:
    """(lines, their line numbers) in batches of about :data:`BATCH_LINES`."""
    read = getattr(stream, "read1", stream.read)  # read1: a pipe answers what it has
    lines: list[str] = []
    numbers: list[NDArray[np.int64]] = []
    while True:
        try:
            chunk = read(_READ_BYTES)
        except OSError as exc:
            raise DataError(f"cannot read: {exc.strerror or exc}", where=where) from None
        if not chunk:
            break
        on_bytes(len(chunk))
        got, nums = decoder.feed(chunk)
        lines.extend(got)
        numbers.append(nums)
        if len(lines) >= BATCH_LINES:
            yield lines, np.concatenate(numbers)
            lines, numbers = [], []
    got, nums = decoder.finish()
    lines.extend(got)
    numbers.append(nums)
    if lines:
        yield lines, np.concatenate(numbers)


# --- one run ---------------------------------------------------------------------------------


@dataclass
class FileReport:
    """What was read from one input: its format, header layout and counts of skipped lines."""

    name: str
    format: LogFormat = LogFormat.plain
    header: HeaderFormat = field(default_factory=lambda: HeaderFormat(pattern=""))
    counts: ReadCounts = field(default_factory=ReadCounts)
    #: jsonl lines that are not a JSON object, and objects without a message field (skipped).
    not_json: int = 0
    no_message: int = 0
    first_bad_line: int | None = None

    @property
    def messages(self) -> int:
        """Lines mined from this input."""
        return self.counts.lines - self.not_json - self.no_message


@dataclass
class TemplateRun:
    """The outcome of :func:`mine_templates`: the miner, per-input reports, this run's counts."""

    miner: TemplateMiner
    files: list[FileReport]
    #: Lines of this run per live template id (templates no line of this run matched are absent).
    counts: dict[int, int]
    templates_before: int

    @property
    def lines(self) -> int:
        """Messages mined in this run."""
        return sum(f.messages for f in self.files)

    def rows(self) -> list[tuple[int, int, str]]:
        """(id, count, template) of the templates seen in this run, most frequent first."""
        rows = [(i, n, self.miner.template(i)) for i, n in self.counts.items()]
        rows.sort(key=lambda r: (-r[1], r[0]))
        return rows


def _pick_format(lines: list[str]) -> LogFormat:
    sample = [line for line in lines[:_FORMAT_SAMPLE] if line.strip()]
    objects = 0
    for line in sample:
        if line.lstrip().startswith("{"):
            try:
                objects += isinstance(json.loads(line), dict)
            except (ValueError, RecursionError):  # RecursionError: nested too deeply for json
                pass
    return LogFormat.jsonl if sample and objects >= _JSON_SHARE * len(sample) else LogFormat.plain


def _json_messages(lines: pl.Series, report: FileReport, numbers: NDArray[np.int64]) -> pl.Series:
    """Messages of jsonl lines (the first of :data:`MESSAGE_FIELDS` present); lines without one
    are null, counted in ``report`` as not JSON or as lacking a message field."""
    frame = pl.DataFrame({"line": lines})
    extracted = frame.select(
        pl.coalesce([pl.col("line").str.json_path_match(f"$.{name}") for name in MESSAGE_FIELDS])
    ).to_series()
    missing = np.flatnonzero(extracted.is_null().to_numpy())
    # Only the few lines Polars gave no message go through Python: to tell the two kinds of
    # skipped line apart, and because Python's parser reads what Polars' strict one refuses
    # (NaN, Infinity, 1e999, a lone surrogate escape such as a cut-off emoji) anywhere in a line.
    found: dict[int, str] = {}
    skipped: list[int] = []
    for i in missing.tolist():
        try:
            obj = json.loads(lines[i])
        except (ValueError, RecursionError):  # RecursionError: nested too deeply for json
            obj = None
        message = _message_of(obj) if isinstance(obj, dict) else None
        if message is not None:
            found[i] = message
            continue
        skipped.append(i)
        if isinstance(obj, dict):
            report.no_message += 1
        else:
            report.not_json += 1
    if skipped and report.first_bad_line is None:
        report.first_bad_line = int(numbers[skipped[0]])
    if found:
        extracted = extracted.scatter(list(found), list(found.values()))
    return extracted


def _message_of(obj: dict[str, object]) -> str | None:
    """The message of a parsed jsonl object, as Polars' ``json_path_match`` gives it: a string
    as it is, any other value as compact JSON; ``None`` when no message field has a value."""
    for name in MESSAGE_FIELDS:
        value = obj.get(name)
        if value is None:
            continue
        text = (
            value
            if isinstance(value, str)
            else json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        )
        # A lone surrogate cannot be UTF-8: it becomes U+FFFD, as a bad byte does.
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return None


@dataclass
class _Parts:
    """Per-line results spilled to Parquet files, so that memory stays bounded on large inputs;
    ids are made final (after every merge) only once all input is mined."""

    directory: Path
    paths: list[Path] = field(default_factory=list)

    def write(
        self,
        file_index: int,
        numbers: NDArray[np.int64],
        ids: NDArray[np.int64],
        messages: pl.Series,
    ) -> None:
        path = self.directory / f"part-{len(self.paths):06d}.parquet"
        pl.DataFrame(
            {
                "file": np.full(len(ids), file_index, dtype=np.int32),
                "line": numbers,
                "id": ids,
                "message": messages,
            }
        ).write_parquet(path, compression="lz4")
        self.paths.append(path)


def mine_templates(
    inputs: list[Path],
    *,
    fmt: LogFormat = LogFormat.auto,
    miner: TemplateMiner | None = None,
    parts: _Parts | None = None,
    on_bytes: Callable[[int], None] = lambda n: None,
    on_file: Callable[[FileReport], None] = lambda report: None,
) -> TemplateRun:
    """Mine every input (a path, or ``-`` for stdin) with one miner, batch by batch.

    Each plain input's header layout is learned from its first lines
    (:meth:`HeaderFormat.detect`); with ``fmt`` auto, an input whose first lines are JSON objects
    is read as jsonl, whose messages are taken whole from their field. ``on_file`` is given each
    input's report as soon as that input is read to its end.
    """
    miner = TemplateMiner() if miner is None else miner
    templates_before = miner.template_count
    reports: list[FileReport] = []
    tally = np.zeros(0, dtype=np.int64)
    for index, path in enumerate(inputs):
        name = "<stdin>" if str(path) == STDIN else str(path)
        report = FileReport(name=name)
        reports.append(report)
        decoder = _NumberedDecoder()
        stream = _open_input(path)
        try:
            first = True
            for lines, numbers in _batches(stream, decoder, name, on_bytes):
                series = pl.Series("line", lines, dtype=pl.String)
                if first:
                    report.format = _pick_format(lines) if fmt is LogFormat.auto else fmt
                if report.format is LogFormat.jsonl:
                    extracted = _json_messages(series, report, numbers)
                    kept = extracted.is_not_null()
                    series = extracted.filter(kept)
                    numbers = numbers[kept.to_numpy()]
                elif first:
                    # jsonl messages come without a header (time and level are fields of their
                    # own): only plain lines have their header learned and cut off.
                    report.header = HeaderFormat.detect(series.head(_HEADER_SAMPLE).to_list())
                first = False
                messages = report.header.split_many(series)
                ids = miner.add(messages)
                if len(ids):
                    counts = np.bincount(ids, minlength=len(tally))
                    counts[: len(tally)] += tally
                    tally = counts
                if parts is not None:
                    parts.write(index, numbers, ids, messages)
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()
        report.counts = decoder.counts
        on_file(report)
    # Merges in later batches may have absorbed ids: count every line under its live template.
    seen = np.flatnonzero(tally)
    live = miner.resolve(seen.astype(np.int64))
    totals: dict[int, int] = {}
    for old, new in zip(seen.tolist(), live.tolist(), strict=True):
        totals[new] = totals.get(new, 0) + int(tally[old])
    return TemplateRun(miner=miner, files=reports, counts=totals, templates_before=templates_before)


# --- outputs ---------------------------------------------------------------------------------


def parameters_json(messages: pl.Series, template: str) -> pl.Series:
    """The parameters of each message under ``template`` as a JSON list (``[]`` if it does not
    fit), as :meth:`TemplateMiner.parameters` finds them for one message, vectorized.

    The template's fixed pieces are found left to right by plain substring search (what the
    miner's lazy ``(.*?)`` groups do, and much faster than a regular expression with captures).
    """
    pieces = template.split(WILDCARD)
    if len(pieces) == 1:
        return pl.Series("parameters", ["[]"] * len(messages), dtype=pl.String)
    frame = pl.DataFrame({"rest": messages.str.replace_all(r"\s+", " ").str.strip_chars()})
    frame = frame.with_columns(
        ok=pl.col("rest").str.starts_with(pieces[0]),
        rest=pl.col("rest").str.strip_prefix(pieces[0]),
    )
    for k, piece in enumerate(pieces[1:-1], start=1):
        if not piece:  # two wildcards side by side: the first takes nothing, as (.*?) does
            frame = frame.with_columns(pl.lit("", dtype=pl.String).alias(str(k)))
            continue
        split = pl.col("rest").str.splitn(piece, 2)
        frame = frame.with_columns(
            split.struct.field("field_0").alias(str(k)), split.struct.field("field_1").alias("rest")
        )
    last = pieces[-1]
    k = len(pieces) - 1
    frame = frame.with_columns(
        ok=(pl.col("ok") & pl.col("rest").str.ends_with(last)).fill_null(False),
        **{str(k): pl.col("rest").str.strip_suffix(last)},
    )
    # {"1":"a","2":"b"} → ["a","b"]: inside a JSON string a quote is always escaped, so ',"<n>":'
    # can only be a key.
    encoded = (
        pl.struct([str(i) for i in range(1, k + 1)])
        .struct.json_encode()
        .str.replace_all(r',"\d+":', ",")
        .str.replace(r'^\{"1":', "[")
        .str.replace(r"\}$", "]")
    )
    return frame.select(
        pl.when(pl.col("ok")).then(encoded).otherwise(pl.lit("[]")).alias("parameters")
    ).to_series()


def _write_structured(target: IO[bytes], run: TemplateRun, parts: _Parts) -> int:
    """The per-line CSV (file, line, template_id, template, parameters) from the spilled parts,
    with final ids and parameters under the final templates."""
    miner = run.miner
    texts: dict[int, str] = {}
    patterns: dict[int, re.Pattern[str]] = {}
    rows = 0
    for path in parts.paths:
        part = pl.read_parquet(path)
        if len(part) == 0:
            continue
        ids = miner.resolve(part["id"].to_numpy())
        # Lines grouped by template: one regular expression per template and group.
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        starts = np.concatenate([[0], np.flatnonzero(np.diff(sorted_ids)) + 1])
        ends = np.concatenate([starts[1:], [len(ids)]])
        messages = part["message"].gather(order)
        templates: list[pl.Series] = []
        parameters: list[pl.Series] = []
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            template_id = int(sorted_ids[start])
            text = texts.get(template_id)
            if text is None:
                text = texts[template_id] = miner.template(template_id)
            group = messages.slice(start, end - start)
            templates.append(pl.Series([text], dtype=pl.String).new_from_index(0, len(group)))
            if len(group) >= _VECTOR_GROUP:
                found = parameters_json(group, text)
            else:
                # Small groups: Python's re is cheaper than setting up a vectorized pass.
                pattern = patterns.get(template_id)
                if pattern is None:
                    pattern = patterns[template_id] = _parameter_regex(text)
                found = pl.Series(
                    [_parameters_one(pattern, m) for m in group.to_list()], dtype=pl.String
                )
            parameters.append(_variant_parameters(miner, template_id, text, group, found))
        back = np.argsort(order)  # sorted by template -> line order
        name = run.files[int(part["file"][0])].name  # a part holds one batch of one input
        out = pl.DataFrame(
            {
                "file": pl.Series([name], dtype=pl.String).new_from_index(0, len(ids)),
                "line": part["line"],
                "template_id": ids,
                "template": pl.concat(templates).gather(back),
                "parameters": pl.concat(parameters).gather(back),
            }
        )
        out.write_csv(target, include_header=rows == 0)
        rows += len(out)
    if rows == 0:
        target.write(b"file,line,template_id,template,parameters\n")
    return rows


def _variant_parameters(
    miner: TemplateMiner, template_id: int, text: str, messages: pl.Series, found: pl.Series
) -> pl.Series:
    """``found`` with the lines the template's text does not fit (those of a variant of another
    length: ``1058 bytes (1.03 KB) sent`` under ``<*> bytes sent``) given their values by the
    miner, which matches each with its own variant: one value per ``<*>`` for every line."""
    if WILDCARD not in text:
        return found
    misses = (found == "[]").arg_true()
    if len(misses) == 0:
        return found
    fixed = found.to_list()
    for i, message in zip(misses.to_list(), messages.gather(misses).to_list(), strict=True):
        values = miner.parameters(message or "", template_id)
        fixed[i] = json.dumps(values, ensure_ascii=False, separators=(",", ":"))
    return pl.Series(found.name, fixed, dtype=pl.String)


def _parameters_one(pattern: re.Pattern[str], message: str | None) -> str:
    match = pattern.fullmatch(" ".join((message or "").split()))
    if match is None:
        return "[]"
    return json.dumps(list(match.groups()), ensure_ascii=False, separators=(",", ":"))


def _templates_frame(run: TemplateRun) -> pl.DataFrame:
    rows = run.rows()
    return pl.DataFrame(
        {
            "id": [r[0] for r in rows],
            "count": [r[1] for r in rows],
            "template": [r[2] for r in rows],
        },
        schema={"id": pl.Int64, "count": pl.Int64, "template": pl.String},
    )


def _bar_label(template_id: int, text: str, width: int = 60) -> str:
    """``#id text``, the text cut to ``width`` characters: a bar says which event it is."""
    short = text if len(text) <= width else text[: width - 1] + "…"
    # A template is text: a $ escaped, or matplotlib reads what lies between two as TeX.
    return f"#{template_id}  {short}".replace("$", r"\$")


def _plot(path: Path, run: TemplateRun, top: int = 30, *, target: Path | None = None) -> None:
    """A bar chart of the most frequent templates (.png), or it above a table of all (.html),
    written to ``path`` (errors name ``target``, the file it stands for, when given)."""
    import html

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from relia.plot import html_page

    rows = run.rows()
    shown = rows[:top][::-1]
    fig, ax = plt.subplots(figsize=(11, 0.3 * max(len(shown), 3) + 1.2))
    ax.barh([_bar_label(r[0], r[2]) for r in shown], [r[1] for r in shown], color="#3182bd")
    ax.set_xlabel("lines")
    ax.set_title(f"{len(rows):,} templates, {run.lines:,} lines", loc="left", fontsize=11)
    ax.grid(axis="x", alpha=0.25)
    fig.tight_layout()
    try:
        if (target or path).suffix.lower() == ".png":
            fig.savefig(path, format="png", dpi=110)
        else:
            buf = io.StringIO()
            fig.savefig(buf, format="svg")
            table = "".join(
                f"<tr><td>{i}</td><td>{n}</td><td><code>{html.escape(t)}</code></td></tr>"
                for i, n, t in rows
            )
            title = f"Templates ({len(rows)})"
            header = ("id", "count", "template")
            page = html_page("relia logs templates", buf.getvalue(), title, header, table)
            path.write_text(page, encoding="utf-8")
    except OSError as exc:
        where = str(target or path)
        raise DataError(f"cannot write plot: {exc.strerror or exc}", where=where) from None
    finally:
        plt.close(fig)


def _load_model(path: Path) -> TemplateMiner:
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise DataError("is a directory, not a model file", where=str(path)) from None
    except OSError as exc:
        raise DataError(f"cannot read model: {exc.strerror or exc}", where=str(path)) from None
    try:
        return TemplateMiner.from_bytes(data)
    except DataError as exc:
        raise DataError(exc.message, where=str(path)) from None
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as exc:
        # A well-formed but foreign document can slip past from_bytes' own checks.
        raise DataError(f"not a relia template model: {exc}", where=str(path)) from None


def _check_inputs(names: list[str]) -> list[Path]:
    """The inputs as paths; fails before any work on one that is empty, missing, a directory or
    unreadable."""
    if sum(1 for name in names if name == STDIN) > 1:
        raise DataError("stdin ('-') can be read only once", where="INPUT")
    # Checked on the text: Path("") is ".", which would be reported as a directory.
    if any(not name.strip() for name in names):
        raise DataError("must name a file, got an empty string", where="INPUT")
    inputs = [Path(name) for name in names]
    for p in inputs:
        if str(p) == STDIN:
            continue
        if not p.exists():
            raise DataError("no such file", where=str(p))
        if p.is_dir():
            raise DataError("is a directory, not a log file", where=str(p))
        if not os.access(p, os.R_OK):
            raise DataError("cannot read: Permission denied", where=str(p))
    return inputs


def _is_standard_input(path: Path) -> bool:
    """Whether standard input is redirected from the regular file ``path``."""
    try:
        given = os.fstat(sys.stdin.fileno())
        named = path.stat()
    except (OSError, ValueError):  # ValueError: no real stdin (an embedding, a test runner)
        return False
    return stat.S_ISREG(given.st_mode) and (given.st_dev, given.st_ino) == (
        named.st_dev,
        named.st_ino,
    )


def _check_outputs(inputs: list[Path], outputs: dict[str, Path | None]) -> None:
    """Fail before any work on an output that is an input (also when it is the file standard
    input comes from), another output's file, or a place no file can go."""
    files = [p for p in inputs if str(p) != STDIN]
    reads_stdin = len(files) < len(inputs)
    taken: dict[str, Path] = {}
    for option, path in outputs.items():
        if path is None:
            continue
        if any(same_file(path, p) for p in files):
            raise DataError(f"{path} is also an input; write elsewhere", where=option)
        if reads_stdin and _is_standard_input(path):
            raise DataError(
                f"{path} is also an input (standard input); write elsewhere", where=option
            )
        for other, other_path in taken.items():
            if same_file(path, other_path):
                raise DataError(f"the same file as {other} ({path})", where=option)
        taken[option] = path
        if option == "--model" and path.exists():
            continue  # read before it is written: the reader names what is wrong with it
        what = {"--plot": "cannot write plot", "--model": "cannot write model"}
        check_output_place(path, what.get(option, "cannot write"))


def _summary(run: TemplateRun, seconds: float) -> list[str]:
    lines = []
    total = ReadCounts()
    for f in run.files:
        total.add(f.counts)
    rate = run.lines / seconds if seconds > 0 else 0.0
    lines.append(
        f"{count_of(run.lines, 'line')} from {count_of(len(run.files), 'input')} → "
        f"{count_of(len(run.counts), 'template')} in {seconds:.2f} s ({rate:,.0f} lines/s)"
    )
    skipped = []
    if total.blank:
        skipped.append(f"{total.blank:,} blank")
    if total.binary:
        skipped.append(f"{total.binary:,} binary")
    if total.too_long:
        skipped.append(f"{total.too_long:,} over 1 MiB")
    if skipped:
        lines.append("skipped lines: " + ", ".join(skipped))
    if total.invalid_utf8:
        lines.append(
            f"{count_of(total.invalid_utf8, 'line')} with invalid UTF-8 kept (bad bytes as U+FFFD)"
        )
    for f in run.files:
        if f.counts.lines + f.counts.skipped == 0:
            lines.append(f"{f.name}: empty")
        kinds = []
        if f.not_json:
            kinds.append(
                "1 line that is not a JSON object"
                if f.not_json == 1
                else f"{f.not_json:,} lines that are not JSON objects"
            )
        if f.no_message:
            kinds.append(
                f"{count_of(f.no_message, 'line')} without a {'/'.join(MESSAGE_FIELDS)} field"
            )
        if kinds:
            lines.append(
                f"{f.name}: skipped {' and '.join(kinds)} (first at {f.name}:{f.first_bad_line})"
            )
    return lines


# --- templates -------------------------------------------------------------------------------


@contextlib.contextmanager
def _pipe_closed_as_broken_pipe() -> Iterator[None]:
    """Polars reports a closed pipe as a plain OSError ("Broken pipe (os error 32)"): raise it
    as the BrokenPipeError that ends the run quietly (``user_errors``)."""
    try:
        yield
    except BrokenPipeError:
        raise
    except OSError as exc:
        if exc.errno == errno.EPIPE or "os error 32" in str(exc):
            raise BrokenPipeError(errno.EPIPE, "Broken pipe") from None
        raise


def _print_file_report(report: FileReport) -> None:
    """The ``-v`` line of one input: its format, messages mined and header found."""
    h = report.header
    header = f"{h.rule}, {h.columns} columns" if h.pattern else "none"
    err_console.print(
        f"{report.name}: {report.format.value}, {count_of(report.messages, 'message')}, "
        f"header: {header}",
        markup=False,
    )


def _print_table(run: TemplateRun, top: int) -> None:
    """The templates by count, the ``top`` most frequent (0: all), as a table on stdout."""
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    rows = run.rows()
    shown = rows if top == 0 else rows[:top]
    table = Table(title=None, show_edge=False, pad_edge=False)
    table.add_column("id", justify="right")
    table.add_column("count", justify="right")
    table.add_column("template", overflow="fold")
    for i, n, text in shown:
        table.add_row(str(i), f"{n:,}", Text(text))  # Text: templates hold [..] that is not markup
    # Rendered into a buffer and written by to_stdout: a full disk is one line, a closed pipe
    # a quiet end (rich's own writes give a traceback, and exit 1 on a closed pipe).
    terminal = sys.stdout.isatty()
    rendered = io.StringIO()
    console = Console(
        file=rendered,
        highlight=False,
        force_terminal=terminal,
        width=shutil.get_terminal_size().columns if terminal else 200,
    )
    console.print(table)
    if len(shown) < len(rows):
        more = len(rows) - len(shown)
        console.print(
            f"… {more:,} more templates (--top 0 shows all, --out writes all)", markup=False
        )
    to_stdout(rendered.getvalue())


def _spill_folder(stack: ExitStack, parent: Path) -> Path:
    """A new hidden folder in ``parent`` for spilled lines, removed when ``stack`` closes.

    Its removal is registered before it is made: a stop (SIGTERM is raised as an exception
    between two bytecodes) that landed right after the mkdir inside
    ``tempfile.TemporaryDirectory``'s constructor left the folder behind.
    """
    folder = parent / f".relia-lines-{secrets.token_hex(8)}"
    ours = True  # from before the mkdir on: a stop right after it must still remove it

    def remove() -> None:
        if ours:
            shutil.rmtree(folder, ignore_errors=True)

    stack.callback(remove)
    try:
        folder.mkdir(mode=0o700)
    except OSError as exc:
        ours = False  # it exists (another run's, 1 in 2**64) or was never made
        raise DataError(f"cannot write: {exc.strerror}", where=str(folder)) from None
    return folder


@logs_app.command("templates")
@user_errors
def templates(
    inputs: Annotated[
        list[str], typer.Argument(help="log files; '-' reads stdin", show_default=False)
    ],
    fmt: Annotated[
        LogFormat,
        typer.Option(
            "--format",
            help="plain lines, jsonl (message from the first of the fields message, msg, log), "
            "or auto: jsonl when a file's first lines are JSON objects",
        ),
    ] = LogFormat.auto,
    out_arg: Annotated[
        str | None,
        typer.Option(
            "--out",
            "-o",
            metavar="PATH",
            help="write the templates CSV: id,count,template (-: to stdout, in place of the table)",
        ),
    ] = None,
    structured_arg: Annotated[
        str | None,
        typer.Option(
            "--structured",
            metavar="PATH",
            help="write one CSV row per line: file,line,template_id,template,parameters (JSON); "
            "-: to stdout, in place of the table",
        ),
    ] = None,
    model_arg: Annotated[
        str | None,
        typer.Option(
            "--model",
            metavar="PATH",
            help="template model file: loaded if it exists, saved after (ids stay stable)",
        ),
    ] = None,
    plot_arg: Annotated[
        str | None,
        typer.Option("--plot", metavar="PATH", help="chart of the top templates (.html or .png)"),
    ] = None,
    top: Annotated[
        int, typer.Option("--top", min=0, help="templates shown in the table (0: all)")
    ] = 50,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="show each input's format and header")
    ] = False,
) -> None:
    """Mine message templates: a table of templates (id, count, text) by count.

    A plain file's header (timestamp, level, component, …) is learned from its first lines
    and cut off; jsonl messages are taken whole. The messages of all inputs are mined together.
    Counts are lines of this run. Skipped lines (blank, binary, over 1 MiB, bad JSON) are counted
    in the summary on stderr.
    """
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

    # "-" writes that CSV to standard output, in place of the table (as relia detect -o -).
    out_to_stdout, structured_to_stdout = out_arg == STDIN, structured_arg == STDIN
    if out_to_stdout and structured_to_stdout:
        raise DataError("only one of --out and --structured can be standard output (-)")
    for arg, option in ((model_arg, "--model"), (plot_arg, "--plot")):
        if arg == STDIN:
            raise DataError("writes a file; standard output (-) is not one", where=option)
    # str, not Path: Path drops the trailing slash that says a name is a folder.
    out = None if out_to_stdout else output_path(out_arg, "--out")
    structured = None if structured_to_stdout else output_path(structured_arg, "--structured")
    model = output_path(model_arg, "--model")
    plot = output_path(plot_arg, "--plot")
    if plot is not None and plot.suffix.lower() not in (".png", ".html", ".htm"):
        raise DataError(f"plot must end in .png or .html, got {plot.name!r}", where="--plot")
    paths = _check_inputs(inputs)
    _check_outputs(
        paths, {"--out": out, "--structured": structured, "--model": model, "--plot": plot}
    )
    miner = _load_model(model) if model is not None and model.exists() else TemplateMiner()
    started = time.perf_counter()
    # Nothing is opened for writing before every input is read (an output may be the file
    # standard input comes from); all are written beside their targets and renamed together at
    # the end, so a run that stops part-way leaves the old files whole and no new ones behind.
    staged = Staged()
    try:
        with ExitStack() as stack:
            parts: _Parts | None = None
            if structured is not None or structured_to_stdout:
                # Beside the target (same file system), unless it is standard output or not a
                # regular file (a FIFO, /dev/stdout): a folder in /dev is no place for it.
                beside = structured is not None and (
                    not structured.exists() or structured.is_file()
                )
                spill_in = structured.parent if beside and structured else Path(gettempdir())
                parts = _Parts(_spill_folder(stack, spill_in))
            size = sum(p.stat().st_size for p in paths if str(p) != STDIN)
            on_bytes: Callable[[int], None] = lambda n: None  # noqa: E731
            if err_console.is_terminal and size >= _PROGRESS_BYTES:
                progress = stack.enter_context(
                    Progress(
                        BarColumn(),
                        DownloadColumn(),
                        TimeRemainingColumn(),
                        console=err_console,
                        transient=True,
                    )
                )
                task = progress.add_task("mining", total=size)
                on_bytes = lambda n: progress.advance(task, n)  # noqa: E731
            # Each input's line as soon as it is read: a slow input (a pipe) after it does not
            # hold it back.
            on_file = _print_file_report if verbose else lambda report: None
            run = mine_templates(
                paths, fmt=fmt, miner=miner, parts=parts, on_bytes=on_bytes, on_file=on_file
            )
            if out is not None:
                with writing(out), staged.part(out).open("wb") as fh:
                    _templates_frame(run).write_csv(fh)
            if structured is not None and parts is not None:
                with writing(structured), staged.part(structured).open("wb") as fh:
                    _write_structured(fh, run, parts)
            if model is not None:
                with writing(model, "cannot write model"):
                    staged.part(model).write_bytes(miner.to_bytes())
            if plot is not None:
                _plot(staged.part(plot), run, target=plot)
            staged.commit()
            if out_to_stdout:
                buf = io.BytesIO()
                _templates_frame(run).write_csv(buf)
                to_stdout(buf.getvalue().decode("utf-8"))
            elif structured_to_stdout and parts is not None:
                with writing(Path("standard output")), _pipe_closed_as_broken_pipe():
                    _write_structured(sys.stdout.buffer, run, parts)
                    sys.stdout.buffer.flush()
    finally:
        staged.discard()
    seconds = time.perf_counter() - started

    if not (out_to_stdout or structured_to_stdout):
        _print_table(run, top)
    for line in _summary(run, seconds):
        err_console.print(line, markup=False, soft_wrap=True)
    if model is not None:
        after = count_of(miner.template_count, "template")
        err_console.print(f"model {model}: {run.templates_before:,} → {after}", markup=False)
    for line in staged.said:
        err_console.print(line, markup=False)
