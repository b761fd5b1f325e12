"""``relia logs templates``, driven in-process with Typer's runner."""

from __future__ import annotations

import io
import json
import os
import zlib
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from relia.cli import app
from relia.logs import cli as logs_cli
from relia.logs.header import HeaderFormat
from relia.logs.miner import TemplateMiner
from tests.closed_pipe import run_into_closed_pipe

runner = CliRunner()
EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "logs"

USERS = ["alice", "bob", "carol", "dave"]


def _log_lines(n: int, seed: int = 0, hosts: tuple[str, ...] = ("web-1", "web-2")) -> list[str]:
    """Syslog-style lines of four events with fresh values."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        ts = f"Mar  {1 + i % 9} 10:{i % 60:02d}:{(7 * i) % 60:02d}"
        host = hosts[i % len(hosts)]
        kind = i % 4
        if kind == 0:
            msg = f"sshd[{1000 + i}]: Accepted password for {USERS[(i // 4) % 4]} from 10.0.0.{i % 250} port {int(rng.integers(1024, 65535))} ssh2"  # noqa: E501
        elif kind == 1:
            msg = f"kernel: eth0 link up at {int(rng.integers(10, 1000))} Mbps"
        elif kind == 2:
            msg = f"cron[{2000 + i}]: job {int(rng.integers(1, 99))} finished in {int(rng.integers(1, 500))} ms"  # noqa: E501
        else:
            msg = f"sshd[{1000 + i}]: session closed for user {USERS[(i // 4) % 4]}"
        out.append(f"{ts} {host} {msg}")
    return out


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def _invoke(*args: str | Path, input: bytes | str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, ["logs", "templates", *map(str, args)], input=input)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_templates_table_and_csv(tmp_path: Path) -> None:
    log = _write(tmp_path / "a.log", _log_lines(200))
    out = tmp_path / "t.csv"
    code, stdout, stderr = _invoke(log, "--out", out)
    assert code == 0, stderr
    frame = pl.read_csv(out)
    assert frame.columns == ["id", "count", "template"]
    assert frame["count"].sum() == 200
    assert frame["count"].to_list() == sorted(frame["count"].to_list(), reverse=True)
    assert set(frame["template"]) == {
        "Accepted password for <*> from <*> port <*> ssh2",
        "eth0 link up at <*> Mbps",
        "job <*> finished in <*> ms",
        "session closed for user <*>",
    }
    # The table on stdout, the summary on stderr.
    assert "eth0 link up at <*> Mbps" in stdout
    assert "200 lines from 1 input" in stderr and "4 templates" in stderr
    assert "200 lines" not in stdout


def test_table_shows_brackets_as_text_and_top_limits_rows(tmp_path: Path) -> None:
    lines = [f"2024-01-01 10:00:0{i % 10} INFO [main] x.Y: state [UP] n={i}" for i in range(30)]
    lines += [f"2024-01-01 10:00:0{i % 10} INFO [main] x.Y: other {i} thing" for i in range(10)]
    log = _write(tmp_path / "b.log", lines)
    code, stdout, _ = _invoke(log, "--top", "1")
    assert code == 0
    assert "state [UP] n=<*>" in stdout  # not swallowed as rich markup
    assert "other <*> thing" not in stdout
    assert "1 more templates" in stdout


def test_structured_rows_final_ids_and_parameters(tmp_path: Path) -> None:
    lines = _log_lines(120)
    log = _write(tmp_path / "a.log", lines)
    structured = tmp_path / "lines.csv"
    model = tmp_path / "m.bin"
    code, _, stderr = _invoke(log, "--structured", structured, "--model", model)
    assert code == 0, stderr
    rows = pl.read_csv(structured)
    assert rows.columns == ["file", "line", "template_id", "template", "parameters"]
    assert rows["line"].to_list() == list(range(1, 121))
    assert rows["file"].unique().to_list() == [str(log)]
    first = rows.row(0, named=True)
    assert first["template"] == "Accepted password for <*> from <*> port <*> ssh2"
    assert json.loads(first["parameters"])[:2] == ["alice", "10.0.0.0"]
    # Every id is a live template of the saved model and every parameter list is what the
    # miner's own parameters() gives for that line's message.
    miner = TemplateMiner.from_bytes(model.read_bytes())
    live = {t.id: t.text for t in miner.templates}
    header = HeaderFormat.detect(lines)
    for row in rows.iter_rows(named=True):
        assert live[row["template_id"]] == row["template"]
        _, message = header.split(lines[row["line"] - 1])
        assert json.loads(row["parameters"]) == miner.parameters(message, row["template_id"])


def test_line_numbers_count_skipped_lines(tmp_path: Path) -> None:
    """Blank, binary and over-long lines are skipped and counted, yet later lines keep their
    line numbers in the file; invalid UTF-8 is kept."""
    good = _log_lines(8)
    data = b"\n".join(
        [
            good[0].encode(),
            b"",
            good[1].encode(),
            b"\x00\x01\x02\x03garbage\x00",
            good[2].encode() + b" caf\xe9",
            b"x" * (2 << 20),
            b"   ",
            good[3].encode(),
        ]
    )
    log = tmp_path / "mixed.log"
    log.write_bytes(data)  # no newline at the end: the last line still counts
    structured = tmp_path / "lines.csv"
    code, _, stderr = _invoke(log, "--structured", structured)
    assert code == 0, stderr
    rows = pl.read_csv(structured)
    assert rows["line"].to_list() == [1, 3, 5, 8]
    assert "\ufffd" in rows["parameters"][2] or "\ufffd" in rows["template"][2]
    assert "2 blank" in stderr and "1 binary" in stderr and "1 over 1 MiB" in stderr
    assert "1 line with invalid UTF-8 kept" in stderr


def test_model_keeps_ids_stable_across_runs(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.log", _log_lines(80, seed=1))
    b_lines = _log_lines(80, seed=2) + [
        f"Mar  3 11:00:{i:02d} web-3 nginx[77]: upstream timed out after {i} s" for i in range(9)
    ]
    b = _write(tmp_path / "b.log", b_lines)
    model = tmp_path / "model.bin"
    first, second = tmp_path / "1.csv", tmp_path / "2.csv"
    assert _invoke(a, "--model", model, "--structured", first)[0] == 0
    assert model.exists()
    code, _, stderr = _invoke(a, b, "--model", model, "--structured", second)
    assert code == 0, stderr
    before = pl.read_csv(first)
    after = pl.read_csv(second).filter(pl.col("file") == str(a))
    assert after["template_id"].to_list() == before["template_id"].to_list()
    new = pl.read_csv(second).filter(pl.col("file") == str(b))
    assert new["template_id"].max() > before["template_id"].max()  # a new event, a new id
    assert "model" in stderr and "4 → 5 templates" in stderr


def test_model_ids_of_merged_templates_resolve_to_the_survivor(tmp_path: Path) -> None:
    """A word position that varies only later (a third user) merges templates: the id the first
    run gave stays valid in the model and names the merged template."""
    a = _write(tmp_path / "a.log", [f"worker {u} is ready now" for u in ("red", "blue")])
    b = _write(tmp_path / "b.log", ["worker green is ready now"])
    model = tmp_path / "m.bin"
    first = tmp_path / "1.csv"
    assert _invoke(a, "--model", model, "--structured", first)[0] == 0
    ids_before = pl.read_csv(first)["template_id"].to_list()
    assert len(set(ids_before)) == 2
    assert _invoke(b, "--model", model)[0] == 0
    miner = TemplateMiner.from_bytes(model.read_bytes())
    resolved = miner.resolve(np.array(ids_before, dtype=np.int64))
    assert set(resolved.tolist()) == {min(ids_before)}
    assert miner.template(max(ids_before)) == "worker <*> is ready now"


def test_jsonl_fields_in_order_and_bad_lines_counted(tmp_path: Path) -> None:
    lines = [
        json.dumps({"message": "disk sda1 is 91 percent full", "msg": "ignored"}),
        json.dumps({"msg": "disk sdb1 is 97 percent full"}),
        json.dumps({"log": "disk sdc1 is 12 percent full\n"}),
        "this is not json {",
        json.dumps({"level": "info", "text": "no message field"}),
        json.dumps({"message": "disk sdd2 is 55 percent full", "level": "warn"}),
        json.dumps([1, 2, 3]),
    ]
    log = _write(tmp_path / "app.jsonl", lines)
    structured = tmp_path / "lines.csv"
    code, _, stderr = _invoke(log, "--format", "jsonl", "--structured", structured)
    assert code == 0, stderr
    rows = pl.read_csv(structured)
    assert rows["line"].to_list() == [1, 2, 3, 6]
    assert rows["template"].unique().to_list() == ["disk <*> is <*> percent full"]
    assert json.loads(rows["parameters"][0]) == ["sda1", "91"]
    assert (
        f"{log}: skipped 2 lines that are not JSON objects and 1 line without a message/msg/log "
        f"field (first at {log}:4)" in stderr
    )


def test_jsonl_messages_polars_cannot_parse_are_mined_not_called_missing(tmp_path: Path) -> None:
    # Polars' strict JSON reader gives no message for NaN, 1e999 or a lone surrogate escape (a
    # cut-off emoji), anywhere in the line; these lines were reported as "without a
    # message/msg/log field", although each has one.
    lines = [json.dumps({"message": f"disk sd{i} is ok"}) for i in range(9)]
    lines += [
        '{"message": NaN}',
        '{"message": "temp \\ud83d high"}',
        '{"message": 1e999}',
        '{"message": "disk sdz is ok", "latency": NaN}',
        '{"level": NaN}',
    ]
    log = _write(tmp_path / "app.jsonl", lines)
    structured = tmp_path / "lines.csv"
    code, _, stderr = _invoke(log, "--structured", structured)
    assert code == 0, stderr
    rows = pl.read_csv(structured)
    assert rows["line"].to_list() == list(range(1, 14))
    by_line = dict(zip(rows["line"], rows["template"], strict=True))
    assert by_line[10] == "NaN" and by_line[12] == "Infinity"
    assert by_line[11] == "temp \ufffd high"  # the lone surrogate as U+FFFD, as a bad byte
    assert by_line[13] == by_line[1] == "disk <*> is ok"
    # Only the line that really has no message field is called so.
    assert f"{log}: skipped 1 line without a message/msg/log field (first at {log}:14)" in stderr


@pytest.mark.parametrize("fmt", ["auto", "jsonl"])
def test_a_json_line_nested_too_deeply_is_skipped_as_not_json(tmp_path: Path, fmt: str) -> None:
    # json.loads raises RecursionError (not ValueError) on it: this was a traceback.
    lines = [json.dumps({"message": f"job {i} done"}) for i in range(20)]
    lines.insert(3, '{"message": ' + "[" * 100_000)
    log = _write(tmp_path / "app.jsonl", lines)
    code, _, stderr = _invoke(log, "--format", fmt)
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert f"{log}: skipped 1 line that is not a JSON object" in stderr


def test_auto_format_picks_jsonl_per_file(tmp_path: Path) -> None:
    plain = _write(tmp_path / "a.log", _log_lines(40))
    jsonl = _write(
        tmp_path / "b.log",
        [json.dumps({"ts": i, "message": f"job {i} finished in {i * 3} ms"}) for i in range(40)],
    )
    code, stdout, stderr = _invoke(plain, jsonl, "-v")
    assert code == 0
    assert f"{plain}: plain" in stderr and f"{jsonl}: jsonl" in stderr
    # The same event from both files is one template.
    out = tmp_path / "t.csv"
    _invoke(plain, jsonl, "--out", out)
    counts = dict(pl.read_csv(out).select("template", "count").iter_rows())
    assert counts["job <*> finished in <*> ms"] == 10 + 40


def test_plain_format_mines_json_lines_as_text(tmp_path: Path) -> None:
    log = _write(tmp_path / "b.log", [json.dumps({"message": f"n {i}"}) for i in range(5)])
    out = tmp_path / "t.csv"
    assert _invoke(log, "--format", "plain", "--out", out)[0] == 0
    # One template of the whole line (the header rule may take '{"message":' for a component).
    (template,) = pl.read_csv(out)["template"].to_list()
    assert template.endswith('"n <*>"}')


def test_stdin(tmp_path: Path) -> None:
    data = "\n".join(_log_lines(40)) + "\n"
    structured = tmp_path / "lines.csv"
    code, stdout, stderr = _invoke("-", "--structured", structured, input=data)
    assert code == 0, stderr
    assert "session closed for user <*>" in stdout
    rows = pl.read_csv(structured)
    assert rows["file"].unique().to_list() == ["<stdin>"] and len(rows) == 40


def test_empty_file_is_reported_not_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.log"
    empty.write_bytes(b"")
    out = tmp_path / "t.csv"
    structured = tmp_path / "lines.csv"
    code, _, stderr = _invoke(empty, "--out", out, "--structured", structured)
    assert code == 0
    assert f"{empty}: empty" in stderr
    assert pl.read_csv(out).height == 0
    assert structured.read_text().strip() == "file,line,template_id,template,parameters"


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda p: p / "missing.log", "missing.log: no such file"),
        (lambda p: p, "is a directory, not a log file"),
        # An empty name was taken for "." and reported as a directory.
        (lambda p: "", "INPUT: must name a file, got an empty string"),
    ],
)
def test_bad_inputs_exit_2_with_one_line(tmp_path: Path, make: object, expected: str) -> None:
    target = make(tmp_path)  # type: ignore[operator]
    code, stdout, stderr = _invoke(target)
    assert code == 2
    assert stderr.startswith("relia: error: ") and expected in stderr
    assert len(stderr.strip().splitlines()) == 1 and stdout == ""


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_exits_2(tmp_path: Path) -> None:
    log = _write(tmp_path / "secret.log", ["x"])
    log.chmod(0)
    code, _, stderr = _invoke(log)
    assert code == 2 and "secret.log: cannot read" in stderr


def test_unreadable_file_exits_2_even_as_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = _write(tmp_path / "secret.log", ["x"])
    real_open = Path.open

    def deny(self: Path, *args: object, **kwargs: object) -> object:
        if self == log:
            raise PermissionError(13, "Permission denied")
        return real_open(self, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr(Path, "open", deny)
    code, _, stderr = _invoke(log)
    assert code == 2 and stderr == f"relia: error: {log}: cannot read: Permission denied\n"


@pytest.mark.parametrize(
    "data", [b"not a model at all", zlib.compress(b"[1, 2]"), zlib.compress(b'{"version": 1}')]
)
def test_corrupt_model_exits_2_and_is_left_alone(tmp_path: Path, data: bytes) -> None:
    log = _write(tmp_path / "a.log", _log_lines(10))
    model = tmp_path / "m.bin"
    model.write_bytes(data)
    code, _, stderr = _invoke(log, "--model", model)
    assert code == 2
    assert stderr.startswith(f"relia: error: {model}: not a relia template model")
    assert model.read_bytes() == data


def test_model_that_is_a_directory_exits_2(tmp_path: Path) -> None:
    log = _write(tmp_path / "a.log", _log_lines(10))
    code, _, stderr = _invoke(log, "--model", tmp_path)
    assert code == 2 and "is a directory, not a model file" in stderr


def test_stdin_twice_and_bad_plot_suffix_exit_2(tmp_path: Path) -> None:
    code, _, stderr = _invoke("-", "-", input="a\n")
    assert code == 2 and "stdin ('-') can be read only once" in stderr
    log = _write(tmp_path / "a.log", ["x 1"])
    code, _, stderr = _invoke(log, "--plot", tmp_path / "p.svg")
    assert code == 2 and "--plot: plot must end in .png or .html" in stderr


def test_unwritable_output_exits_2_before_mining(tmp_path: Path) -> None:
    log = _write(tmp_path / "a.log", ["x 1"])
    code, _, stderr = _invoke(log, "--out", tmp_path / "no" / "such" / "dir.csv")
    assert code == 2 and "cannot write" in stderr


@pytest.mark.parametrize("option", ["--out", "--structured", "--model"])
def test_an_output_that_is_an_input_is_refused_and_the_input_kept(
    tmp_path: Path, option: str
) -> None:
    log = _write(tmp_path / "a.log", _log_lines(20))
    before = log.read_bytes()
    code, _, stderr = _invoke(log, option, tmp_path / "." / "a.log")
    assert code == 2 and stderr.count("\n") == 1
    assert stderr.startswith(f"relia: error: {option}: ") and "is also an input" in stderr
    assert log.read_bytes() == before


def test_two_outputs_to_one_file_are_refused(tmp_path: Path) -> None:
    log = _write(tmp_path / "a.log", _log_lines(20))
    out = tmp_path / "t.csv"
    code, _, stderr = _invoke(log, "--out", out, "--structured", out)
    assert code == 2 and "--structured: the same file as --out" in stderr
    assert not out.exists()


def test_plot_html(tmp_path: Path) -> None:
    log = _write(tmp_path / "a.log", _log_lines(40))
    page = tmp_path / "t.html"
    code, _, stderr = _invoke(log, "--plot", page)
    assert code == 0, stderr
    text = page.read_text()
    assert "<svg" in text and "Templates (4)" in text and "job &lt;*&gt; finished" in text


def test_example_files_mine(tmp_path: Path) -> None:
    out = tmp_path / "t.csv"
    code, _, stderr = _invoke(EXAMPLES / "shop.log", EXAMPLES / "shop.jsonl", "--out", out, "-v")
    assert code == 0, stderr
    frame = pl.read_csv(out)
    assert frame["count"].sum() == 90
    assert "order <*> placed by <*> total=<*> EUR" in frame["template"].to_list()
    assert "shop.log: plain" in stderr and "shop.jsonl: jsonl" in stderr


def test_small_batches_and_chunks_give_the_same_result(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Streaming in many batches (and reading in tiny chunks) mines what one batch does."""
    lines = _log_lines(300, seed=3)
    lines[17] = ""
    log = _write(tmp_path / "a.log", lines)
    one = tmp_path / "one.csv"
    many = tmp_path / "many.csv"
    assert _invoke(log, "--structured", one)[0] == 0
    monkeypatch.setattr(logs_cli, "BATCH_LINES", 7)
    monkeypatch.setattr(logs_cli, "_READ_BYTES", 50)
    assert _invoke(log, "--structured", many)[0] == 0
    assert pl.read_csv(one).equals(pl.read_csv(many))


def test_summary_counts_inputs_and_messages(tmp_path: Path) -> None:
    a = _write(tmp_path / "a.log", _log_lines(12))
    b = _write(tmp_path / "b.log", _log_lines(8, seed=1))
    code, _, stderr = _invoke(a, b)
    assert code == 0, stderr
    assert "20 lines from 2 inputs → 4 templates" in stderr
    code, _, stderr = _invoke(a)
    assert "12 lines from 1 input → 4 templates" in stderr


def test_blank_only_file_is_counted_not_called_empty(tmp_path: Path) -> None:
    blank = tmp_path / "blank.log"
    blank.write_bytes(b"\n\n  \n")
    code, _, stderr = _invoke(blank)
    assert code == 0, stderr
    assert "skipped lines: 3 blank" in stderr
    assert "empty" not in stderr


def test_jsonl_summary_and_verbose_count_only_mined_messages(tmp_path: Path) -> None:
    lines = [json.dumps({"message": f"disk sd{i} is {i} percent full"}) for i in range(4)]
    lines.insert(2, "not json at all")
    log = _write(tmp_path / "app.jsonl", lines)
    code, _, stderr = _invoke(log, "--format", "jsonl", "-v")
    assert code == 0, stderr
    # Only the kinds there are, in the singular for one.
    assert f"{log}: skipped 1 line that is not a JSON object (first at {log}:3)" in stderr
    assert f"{log}: jsonl, 4 messages, header: none" in stderr
    assert "4 lines from 1 input" in stderr
    lines = [json.dumps({"message": f"disk sd{i} is {i} percent full"}) for i in range(4)]
    lines.insert(1, json.dumps({"level": "info"}))
    log = _write(tmp_path / "app.jsonl", lines)
    code, _, stderr = _invoke(log, "--format", "jsonl", "-v")
    assert f"{log}: jsonl, 4 messages, header: none" in stderr
    assert "4 lines from 1 input" in stderr
    assert f"{log}: skipped 1 line without a message/msg/log field (first at {log}:2)" in stderr


def test_verbose_line_of_an_input_comes_as_soon_as_it_is_read(tmp_path: Path) -> None:
    # The -v lines came only after every input was read (and every output written): the first
    # file's line waited on a slow pipe after it.
    import queue
    import subprocess
    import sys
    import threading

    log = _write(tmp_path / "a.log", ["job 7 finished in 21 ms"])
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "relia", "logs", "templates", str(log), "-", "-v"],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    assert proc.stdin is not None and proc.stderr is not None
    lines: queue.Queue[bytes] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(b) for b in proc.stderr or ()])
    reader.start()
    try:
        # Standard input stays open: the run is still reading it when a.log's line must come.
        first = lines.get(timeout=60).decode()
        assert first == f"{log}: plain, 1 message, header: none\n"
        assert proc.poll() is None
        proc.stdin.write(b"job 8 finished in 22 ms\n")
        proc.stdin.close()
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join()
        for pipe in (proc.stdin, proc.stderr):
            pipe.close()
    rest = b"".join(lines.queue).decode()
    assert rest.startswith("<stdin>: plain, 1 message, header: none\n"), rest


def test_verbose_names_the_header_of_a_plain_file(tmp_path: Path) -> None:
    log = _write(tmp_path / "a.log", _log_lines(40))
    code, _, stderr = _invoke(log, "-v")
    assert code == 0, stderr
    line = next(s for s in stderr.splitlines() if s.startswith(f"{log}: plain"))
    assert "40 messages, header: " in line and " columns" in line


def test_templates_of_equal_count_are_listed_by_id(tmp_path: Path) -> None:
    lines = ["zeta event here"] * 2 + ["alpha other thing happened"] * 2 + ["mid one"] * 3
    log = _write(tmp_path / "a.log", lines)
    out = tmp_path / "t.csv"
    assert _invoke(log, "--out", out, "--format", "plain")[0] == 0
    frame = pl.read_csv(out)
    assert frame["count"].to_list() == [3, 2, 2]
    ties = frame.filter(pl.col("count") == 2)["id"].to_list()
    assert ties == sorted(ties)
    code, stdout, _ = _invoke(log, "--format", "plain")
    assert stdout.index("zeta event here") < stdout.index("alpha other thing happened")


def _many_templates(path: Path, n: int) -> Path:
    """n templates: one line each of 1..n words."""
    return _write(path, [" ".join(["w"] * k) for k in range(1, n + 1)])


def test_top_default_zero_and_all_shown(tmp_path: Path) -> None:
    log = _many_templates(tmp_path / "a.log", 52)
    code, stdout, _ = _invoke(log)
    assert code == 0
    assert "… 2 more templates" in stdout  # 50 by default
    code, stdout, _ = _invoke(log, "--top", "0")
    assert code == 0 and "more templates" not in stdout
    assert " ".join(["w"] * 52) in stdout
    code, stdout, _ = _invoke(log, "--top", "52")
    assert code == 0 and "more templates" not in stdout


def test_plot_suffix_is_case_blind_and_htm_is_html(tmp_path: Path) -> None:
    log = _write(tmp_path / "a.log", _log_lines(20))
    page = tmp_path / "T.HTM"
    code, _, stderr = _invoke(log, "--plot", page)
    assert code == 0, stderr
    assert "<svg" in page.read_text()
    assert f"wrote {page}" in stderr


def test_first_bad_jsonl_line_is_the_first_of_the_file_across_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [json.dumps({"message": f"job {i} done"}) for i in range(12)]
    lines[3] = "broken {"
    lines[9] = "broken again {"
    log = _write(tmp_path / "a.jsonl", lines)
    monkeypatch.setattr(logs_cli, "BATCH_LINES", 2)
    monkeypatch.setattr(logs_cli, "_READ_BYTES", 16)
    code, _, stderr = _invoke(log, "--format", "jsonl")
    assert code == 0, stderr
    assert "skipped 2 lines that are not JSON objects" in stderr
    assert f"(first at {log}:4)" in stderr


@pytest.mark.parametrize(("objects", "expected"), [(9, "jsonl"), (8, "plain")])
def test_auto_format_needs_nine_tenths_json_objects(
    tmp_path: Path, objects: int, expected: str
) -> None:
    lines = [json.dumps({"message": f"job {i} done"}) for i in range(objects)]
    lines += [f"plain line {i}" for i in range(10 - objects)]
    log = _write(tmp_path / "a.log", lines)
    code, _, stderr = _invoke(log, "-v")
    assert code == 0, stderr
    assert f"{log}: {expected}," in stderr


def test_auto_format_is_chosen_once_from_the_first_hundred_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines = [json.dumps({"message": f"job {i} done"}) for i in range(100)]
    lines += [f"plain text line number {i}" for i in range(60)]
    log = _write(tmp_path / "a.log", lines)
    for batch in (logs_cli.BATCH_LINES, 10):
        monkeypatch.setattr(logs_cli, "BATCH_LINES", batch)
        monkeypatch.setattr(logs_cli, "_READ_BYTES", 256 if batch == 10 else 1 << 22)
        code, _, stderr = _invoke(log, "-v")
        assert code == 0, stderr
        assert f"{log}: jsonl, 100 messages" in stderr
        assert "skipped 60 lines that are not JSON objects" in stderr


def test_counts_add_up_across_batches_and_merges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Counts in --out are lines of the run under their live template, whatever the batching,
    also when a later batch merges templates of earlier ones."""
    log = _write(tmp_path / "a.log", [f"worker {u} is ready now" for u in ("red", "blue", "green")])
    other = _write(tmp_path / "b.log", _log_lines(60))
    out = tmp_path / "t.csv"
    monkeypatch.setattr(logs_cli, "BATCH_LINES", 1)
    monkeypatch.setattr(logs_cli, "_READ_BYTES", 8)
    code, _, stderr = _invoke(log, other, "--out", out)
    assert code == 0, stderr
    counts = dict(pl.read_csv(out).select("template", "count").iter_rows())
    assert counts["worker <*> is ready now"] == 3
    assert counts["job <*> finished in <*> ms"] == 15
    assert sum(counts.values()) == 63


def test_jsonl_file_without_messages_writes_only_the_header(tmp_path: Path) -> None:
    log = _write(tmp_path / "a.jsonl", [json.dumps({"level": "info"})] * 3)
    structured = tmp_path / "lines.csv"
    code, _, stderr = _invoke(log, "--format", "jsonl", "--structured", structured)
    assert code == 0, stderr
    assert structured.read_text() == "file,line,template_id,template,parameters\n"
    assert "JSON object" not in stderr
    assert "skipped 3 lines without a message/msg/log field" in stderr


@pytest.mark.parametrize("bad", ["missing", "directory"])
def test_bad_input_leaves_existing_outputs_alone(tmp_path: Path, bad: str) -> None:
    out = tmp_path / "t.csv"
    out.write_text("id,count,template\n1,5,kept\n")
    target = tmp_path / "missing.log" if bad == "missing" else tmp_path / "sub"
    if bad == "directory":
        target.mkdir()
    code, _, stderr = _invoke(target, "--out", out)
    assert code == 2, stderr
    assert out.read_text() == "id,count,template\n1,5,kept\n"


# --- parts -----------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.sampled_from([b"", b"  ", b"\x00bin", b"\xff\xfe", b"x" * 40, b"caf\xe9 ok"]),
            st.text("ab 1\t", max_size=8).map(str.encode),
        ),
        max_size=30,
    ),
    st.integers(1, 64),
    st.booleans(),
)
def test_numbered_decoder_matches_the_file_lines(
    raw_lines: list[bytes], chunk: int, final_newline: bool
) -> None:
    data = b"\n".join(raw_lines) + (b"\n" if final_newline and raw_lines else b"")
    dec = logs_cli._NumberedDecoder()
    dec.decoder.max_line_bytes = 32  # b"x" * 40 is over-long
    lines: list[str] = []
    numbers: list[int] = []
    for i in range(0, len(data), chunk):
        got, nums = dec.feed(data[i : i + chunk])
        lines += got
        numbers += nums.tolist()
    got, nums = dec.finish()
    lines += got
    numbers += nums.tolist()
    # Each handed-out line is the decoded text of the file line its number names.
    file_lines = data.split(b"\n")
    assert len(lines) == len(numbers) == dec.counts.lines
    for text, n in zip(lines, numbers, strict=True):
        raw = file_lines[n - 1].removesuffix(b"\r")
        assert text == raw.decode("utf-8", errors="replace")
    assert numbers == sorted(set(numbers))


def _python_parameters(messages: list[str], template: str) -> list[str]:
    pattern = logs_cli._parameter_regex(template)
    return [logs_cli._parameters_one(pattern, m) for m in messages]


def test_parameters_json_vectorized_equals_python() -> None:
    cases = {
        "<*>": ["a b", ""],
        "<*><*> x": ["ab x", "x", " x"],
        "a <*> b <*>": ["a 1 b 2 b 3", "a  b ", "a \t1  b 2"],
        "<*> x <*> y": ["1 x 2 y 3 x 4 y"],
        "ab<*>bc": ["abc", "abbc", "abxbc"],
        'k="<*>", v=<*>\\': ['k="q\\"uote", v=1\\', 'k="é", v={"a":1}\\'],
        "no parameters": ["no parameters", "other"],
    }
    for template, messages in cases.items():
        got = logs_cli.parameters_json(pl.Series(messages, dtype=pl.String), template).to_list()
        assert got == _python_parameters(messages, template), template
        for value in got:
            assert isinstance(json.loads(value), list)


@settings(max_examples=80, deadline=None)
@given(
    st.lists(st.text(" ab,\"'\\", max_size=4), min_size=1, max_size=4),
    st.lists(st.lists(st.text(' ab,"\\é\t', max_size=5), min_size=3, max_size=3), max_size=6),
)
def test_parameters_json_property(pieces: list[str], values: list[list[str]]) -> None:
    template = "<*>".join(pieces)
    k = len(pieces) - 1
    messages = ["".join(p + (v[i] if i < k else "") for i, p in enumerate(pieces)) for v in values]
    messages.append("unrelated")
    got = logs_cli.parameters_json(pl.Series(messages, dtype=pl.String), template).to_list()
    assert got == _python_parameters(messages, template)


def test_a_stop_the_moment_the_spill_folder_is_made_leaves_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SIGTERM arrives as an exception between two bytecodes. Landing right after the folder's
    # mkdir, inside tempfile.TemporaryDirectory's constructor, it left the folder behind: no
    # cleanup was registered yet (seen under load in the test below).
    log = tmp_path / "app.log"
    log.write_text("user alice logged in\n" * 10)
    real_mkdir = os.mkdir

    def mkdir_then_stop(path: str | os.PathLike[str], mode: int = 0o777) -> None:
        real_mkdir(path, mode)
        if Path(path).name.startswith(".relia-lines-"):
            raise SystemExit(143)

    monkeypatch.setattr(os, "mkdir", mkdir_then_stop)
    result = runner.invoke(
        app, ["logs", "templates", str(log), "--structured", str(tmp_path / "lines.csv")]
    )
    assert result.exit_code == 143
    assert list(tmp_path.glob(".relia-lines-*")) == []


def test_a_run_stopped_with_sigterm_leaves_no_spill_folder(tmp_path: Path) -> None:
    # `relia logs templates --structured` spills lines into a hidden folder beside the output;
    # a run stopped by SIGTERM (kill, timeout, a CI job cancelled) takes it away, as Ctrl-C does.
    import signal
    import subprocess
    import sys
    import time

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    out = tmp_path / "lines.csv"
    proc = subprocess.Popen(
        [sys.executable, "-m", "relia", "logs", "templates", "-", "--structured", str(out)],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    try:
        assert proc.stdin is not None
        proc.stdin.write(b"user alice logged in\n" * 100)
        proc.stdin.flush()  # stdin stays open: the run waits for more lines
        deadline = time.monotonic() + 60
        while not list(tmp_path.glob(".relia-lines-*")):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the spill folder never appeared"
            time.sleep(0.05)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdin, proc.stderr):
            if pipe is not None:
                pipe.close()
    assert list(tmp_path.glob(".relia-lines-*")) == []


def test_plot_in_a_missing_folder_fails_before_mining_and_writes_nothing(tmp_path: Path) -> None:
    log = _write(tmp_path / "a.log", _log_lines(20))
    plot = tmp_path / "no-such-dir" / "p.html"
    out, model = tmp_path / "t.csv", tmp_path / "m.model"
    code, _, stderr = _invoke(log, "--out", out, "--model", model, "--plot", plot)
    assert code == 2
    assert stderr == f"relia: error: {plot}: cannot write plot: No such file or directory\n"
    assert not out.exists() and not model.exists()


def test_the_chart_names_each_bar_by_its_template_text(tmp_path: Path) -> None:
    # The bars were labelled "#3" alone, so a PNG said nothing without the CSV beside it.
    import re

    lines = [f"refund of {i} $ for order {7 * i}" for i in range(30)]
    lines += [f"job {i} finished in {3 * i} ms" for i in range(30)]
    log = _write(tmp_path / "a.log", lines)
    page = tmp_path / "t.html"
    code, _, stderr = _invoke(log, "--plot", page)
    assert code == 0, stderr
    # matplotlib writes each text of the SVG as a comment next to its glyphs.
    texts = re.findall(r"<!-- (.*?) -->", page.read_text())
    labels = [t for t in texts if t.startswith("#")]
    assert labels and all(" " in t for t in labels), labels
    assert any("job &lt;*&gt; finished" in t for t in labels), labels
    assert any("refund of &lt;*&gt; $ for order" in t for t in labels), labels  # a $ is no TeX


def test_the_summary_counts_one_line_and_one_template_in_the_singular(tmp_path: Path) -> None:
    log = _write(tmp_path / "a.log", ["job 7 finished in 21 ms"])
    code, _, stderr = _invoke(log)
    assert code == 0, stderr
    assert "1 line from 1 input → 1 template in" in stderr


def _relia(
    *args: str | Path, stdin: int | None = None, stdout: int | None = None, cwd: Path
) -> tuple[int, str]:
    """Run ``relia logs templates`` in a process of its own, with real standard streams."""
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    proc = subprocess.run(
        [sys.executable, "-m", "relia", "logs", "templates", *map(str, args)],
        stdin=stdin,
        stdout=subprocess.DEVNULL if stdout is None else stdout,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
        timeout=120,
    )
    return proc.returncode, proc.stderr.decode()


@pytest.mark.parametrize("option", ["--out", "--structured", "--model"])
def test_an_output_that_standard_input_comes_from_is_refused_and_kept(
    tmp_path: Path, option: str
) -> None:
    # `relia logs templates - --out v.log < v.log` emptied v.log before reading it, then
    # reported "<stdin>: empty" and exit 0.
    log = _write(tmp_path / "v.log", _log_lines(20))
    before = log.read_bytes()
    with log.open("rb") as stdin:
        code, stderr = _relia("-", option, log, stdin=stdin.fileno(), cwd=tmp_path)
    assert code == 2
    assert stderr == (
        f"relia: error: {option}: {log} is also an input (standard input); write elsewhere\n"
    )
    assert log.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.log"]


def test_standard_input_from_another_file_is_mined(tmp_path: Path) -> None:
    log = _write(tmp_path / "in.log", _log_lines(20))
    out = tmp_path / "t.csv"
    with log.open("rb") as stdin:
        code, stderr = _relia("-", "--out", out, stdin=stdin.fileno(), cwd=tmp_path)
    assert code == 0, stderr
    assert pl.read_csv(out)["count"].sum() == 20


def _old_outputs(tmp_path: Path) -> dict[Path, bytes]:
    olds = {
        tmp_path / "t.csv": b"old templates\n",
        tmp_path / "s.csv": b"old lines\n",
        tmp_path / "p.html": b"old chart\n",
    }
    for path, data in olds.items():
        path.write_bytes(data)
    return olds


def test_a_run_stopped_while_mining_leaves_every_old_output_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The outputs were opened (emptied) before the mining: a run stopped part-way (SIGTERM is
    # raised as SystemExit) left the old files empty.
    log = _write(tmp_path / "a.log", _log_lines(20))
    model = tmp_path / "m.bin"
    assert _invoke(log, "--model", model)[0] == 0
    olds = {**_old_outputs(tmp_path), model: model.read_bytes()}

    def stopped(*args: object, **kwargs: object) -> None:
        raise SystemExit(143)

    monkeypatch.setattr(logs_cli, "mine_templates", stopped)
    result = runner.invoke(
        app,
        ["logs", "templates", str(log), "--out", str(tmp_path / "t.csv"),
         "--structured", str(tmp_path / "s.csv"), "--plot", str(tmp_path / "p.html"),
         "--model", str(model)],
    )  # fmt: skip
    assert result.exit_code == 143
    assert {path: path.read_bytes() for path in olds} == olds
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a.log",
        "m.bin",
        "p.html",
        "s.csv",
        "t.csv",
    ]


def test_a_failed_write_keeps_the_outputs_already_written_old(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # --out is written before --structured: it is renamed over the old file only once every
    # output was written, so a full disk on the second leaves both old files whole.
    log = _write(tmp_path / "a.log", _log_lines(20))
    olds = _old_outputs(tmp_path)

    def full_disk(*args: object) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(logs_cli, "_write_structured", full_disk)
    code, stdout, stderr = _invoke(
        log, "--out", tmp_path / "t.csv", "--structured", tmp_path / "s.csv",
        "--plot", tmp_path / "p.html",
    )  # fmt: skip
    assert code == 2 and stdout == ""
    assert stderr == f"relia: error: {tmp_path / 's.csv'}: cannot write: No space left on device\n"
    assert {path: path.read_bytes() for path in olds} == olds
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.log", "p.html", "s.csv", "t.csv"]


@pytest.mark.skipif(not Path("/dev/full").is_char_device(), reason="needs /dev/full")
@pytest.mark.parametrize("option", ["--out", "--structured", "--plot"])
def test_a_full_device_as_output_is_one_line_and_stays_a_device(
    tmp_path: Path, option: str
) -> None:
    # A device is written directly: renaming a staged file over it would replace the device.
    log = _write(tmp_path / "a.log", _log_lines(20))
    target = "/dev/full" if option != "--plot" else str(tmp_path / "p.png")
    args = [log, option, target]
    if option == "--plot":  # a chart is named by its suffix: reach /dev/full through a link
        Path(target).symlink_to("/dev/full")
    code, stderr = _relia(*args, cwd=tmp_path)
    assert code == 2, stderr
    assert stderr.startswith(f"relia: error: {target}: cannot write")
    assert "No space left on device" in stderr and stderr.count("\n") == 1
    assert Path("/dev/full").is_char_device()


@pytest.mark.skipif(not Path("/dev/full").is_char_device(), reason="needs /dev/full")
def test_a_full_standard_output_is_one_line(tmp_path: Path) -> None:
    log = _write(tmp_path / "a.log", _log_lines(20))
    with open("/dev/full", "wb") as full:
        code, stderr = _relia(log, stdout=full.fileno(), cwd=tmp_path)
    assert code == 2
    assert stderr == "relia: error: standard output: cannot write: No space left on device\n"


def test_a_closed_standard_output_ends_the_run_quietly(tmp_path: Path) -> None:
    # `relia logs templates a.log | head -1`: rich exited 1 when the pipe closed.
    log = _write(tmp_path / "a.log", _log_lines(20))
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        code, stderr = _relia(log, stdout=write_end, cwd=tmp_path)
    finally:
        os.close(write_end)
    assert code == 0 and stderr == ""


@pytest.mark.parametrize("option", ["--out", "--structured", "--plot", "--model"])
def test_an_existing_file_named_with_a_trailing_slash_is_refused(
    tmp_path: Path, option: str
) -> None:
    # Path() dropped the slash: `--out t.csv/` overwrote t.csv and `--out new/` made a file.
    log = _write(tmp_path / "a.log", _log_lines(20))
    target = tmp_path / "t.html"
    target.write_bytes(b"old\n")
    code, _, stderr = _invoke(log, option, f"{target}/")
    assert code == 2
    assert stderr == f"relia: error: {target}: is a file, not a directory\n"
    assert target.read_bytes() == b"old\n"


@pytest.mark.parametrize("option", ["--out", "--structured", "--plot", "--model"])
def test_an_output_named_as_a_new_folder_is_refused_and_nothing_made(
    tmp_path: Path, option: str
) -> None:
    log = _write(tmp_path / "a.log", _log_lines(20))
    code, _, stderr = _invoke(log, option, f"{tmp_path / 'new'}/")
    assert code == 2
    assert stderr == (
        f"relia: error: {option}: names a directory ({tmp_path / 'new'}/); "
        f"{option} writes one file\n"
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.log"]


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("similarity", "x", "config.similarity should be a number, got str"),
        ("variable_after", None, "config.variable_after should be int, got null"),
        ("keep_first_word", 1, "config.keep_first_word should be bool, got int"),
        ("max_templates", 0, "config.max_templates should be at least 1, got 0"),
    ],
)
def test_a_model_with_a_setting_of_the_wrong_type_exits_2_and_is_left_alone(
    tmp_path: Path, setting: str, value: object, message: str
) -> None:
    # Loaded without a word, it crashed the mining with a TypeError traceback.
    log = _write(tmp_path / "a.log", _log_lines(20))
    model = tmp_path / "m.bin"
    assert _invoke(log, "--model", model)[0] == 0
    state = json.loads(zlib.decompress(model.read_bytes()))
    state["config"][setting] = value
    data = zlib.compress(json.dumps(state).encode())
    model.write_bytes(data)
    code, _, stderr = _invoke(log, "--model", model)
    assert code == 2
    assert stderr == f"relia: error: {model}: not a relia template model: {message}\n"
    assert model.read_bytes() == data


def test_the_model_line_counts_the_templates_the_summary_and_out_count(tmp_path: Path) -> None:
    # The shorter message joins the longer one as a variant: one template, one row in --out.
    # The model line counted the variant as a template of its own ("0 → 2 templates").
    log = _write(tmp_path / "a.log", ["sent 5 bytes (1.0 KB) ok", "sent 5 bytes ok"])
    model, out = tmp_path / "m.bin", tmp_path / "t.csv"
    code, _, stderr = _invoke(log, "--format", "plain", "--model", model, "--out", out)
    assert code == 0, stderr
    assert len(pl.read_csv(out)) == 1
    assert "2 lines from 1 input → 1 template in" in stderr
    assert f"model {model}: 0 → 1 template" in stderr
    code, _, stderr = _invoke(log, "--format", "plain", "--model", model)
    assert f"model {model}: 1 → 1 template" in stderr


def test_out_dash_writes_the_templates_csv_to_standard_output_in_place_of_the_table(
    tmp_path: Path,
) -> None:
    log = _write(tmp_path / "a.log", _log_lines(200))
    code, stdout, stderr = _invoke(log, "--out", "-")
    assert code == 0, stderr
    frame = pl.read_csv(io.BytesIO(stdout.encode()))
    assert frame.columns == ["id", "count", "template"] and frame["count"].sum() == 200
    assert not (tmp_path / "-").exists() and "wrote" not in stderr


def test_structured_dash_writes_one_row_per_line_to_standard_output(tmp_path: Path) -> None:
    log = _write(tmp_path / "a.log", _log_lines(200))
    code, stdout, stderr = _invoke(log, "--structured", "-")
    assert code == 0, stderr
    frame = pl.read_csv(io.BytesIO(stdout.encode()))
    assert frame.columns == ["file", "line", "template_id", "template", "parameters"]
    assert frame["line"].to_list() == list(range(1, 201))


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--out", "-", "--structured", "-"), "only one of --out and --structured can be"),
        (("--model", "-"), "--model: writes a file; standard output (-) is not one"),
        (("--plot", "-"), "--plot: writes a file; standard output (-) is not one"),
    ],
)
def test_standard_output_for_two_outputs_or_a_file_only_one_is_refused(
    tmp_path: Path, args: tuple[str, ...], said: str
) -> None:
    log = _write(tmp_path / "a.log", _log_lines(20))
    code, stdout, stderr = _invoke(log, *args)
    assert code == 2 and said in stderr and stdout == ""
    assert not (tmp_path / "-").exists()


def test_structured_dash_into_a_closed_pipe_ends_the_run_quietly(tmp_path: Path) -> None:
    # Polars reports the closed pipe as a plain OSError ("Broken pipe (os error 32)").
    log = _write(tmp_path / "a.log", _log_lines(20_000))
    result = run_into_closed_pipe("logs", "templates", str(log), "--structured", "-", cwd=tmp_path)
    assert result.returncode == 0 and result.stderr == b""


def test_structured_into_a_fifo_spills_its_lines_outside_the_fifos_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The spill folder went beside the target: for --structured /dev/stdout, into /dev.
    import threading

    log = _write(tmp_path / "a.log", _log_lines(50))
    fifo = tmp_path / "pipe" / "lines.csv"
    fifo.parent.mkdir()
    os.mkfifo(fifo)
    spilled_in: list[Path] = []
    spill = logs_cli._spill_folder

    def recording(stack: object, parent: Path) -> Path:
        spilled_in.append(parent)
        return spill(stack, parent)  # type: ignore[arg-type]

    monkeypatch.setattr(logs_cli, "_spill_folder", recording)
    received: list[bytes] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_bytes()))
    reader.start()
    code, _, stderr = _invoke(log, "--structured", fifo)
    reader.join(timeout=30)
    assert code == 0, stderr
    assert spilled_in and spilled_in[0] != fifo.parent
    assert received and received[0].count(b"\n") == 51  # the header and 50 rows
    assert fifo.is_fifo()


@pytest.mark.parametrize("repeat", [1, 200])  # the regular-expression and the vectorized path
def test_structured_lines_of_a_joined_variant_get_one_value_per_wildcard(
    tmp_path: Path, repeat: int
) -> None:
    """Lines of a variant of another length (``18846 bytes (18.4 KB)``) joined to a template
    get their values too, one per ``<*>``: a value of several words is one value."""
    log = tmp_path / "var.log"
    lines = [
        "conn 0 close, 0 bytes sent, 0 bytes received",
        "conn 1 close, 403 bytes sent, 426 bytes received",
        "conn 2 close, 12 bytes sent, 5 bytes received",
        "conn 9 close, 451 bytes sent, 18846 bytes (18.4 KB) received",
        "conn 10 close, 1058 bytes (1.03 KB) sent, 7 bytes received",
    ] * repeat
    log.write_text("\n".join(lines) + "\n")
    structured = tmp_path / "lines.csv"
    code, _, stderr = _invoke(log, "--structured", structured)
    assert code == 0, stderr
    rows = pl.read_csv(structured)
    assert rows["template"].unique().to_list() == [
        "conn <*> close, <*> bytes sent, <*> bytes received"
    ]
    params = [json.loads(x) for x in rows["parameters"]]
    assert params[:5] == [
        ["0", "0", "0"],
        ["1", "403", "426"],
        ["2", "12", "5"],
        ["9", "451", "18846 bytes (18.4 KB)"],
        ["10", "1058 bytes (1.03 KB)", "7"],
    ]
    assert all(len(p) == 3 for p in params)


def test_miner_parameters_of_a_variant_are_one_per_wildcard_of_the_template() -> None:
    miner = TemplateMiner()
    lines = [
        "conn 1 close, 403 bytes sent",
        "conn 2 close, 12 bytes sent",
        "conn 3 close, 5 bytes sent",
        "conn 9 close, 18846 bytes (18.4 KB) sent",
    ]
    ids = miner.add(lines)
    assert len(set(ids)) == 1
    text = miner.template(ids[-1])
    got = miner.parameters(lines[-1], ids[-1])
    assert len(got) == text.count("<*>") and got == ["9", "18846 bytes (18.4 KB)"]
