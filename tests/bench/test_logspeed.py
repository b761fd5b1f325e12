"""Tests of the log-speed corpus (bench/logcorpus.py) and benchmark (bench/logspeed.py).

The benchmark tests run both parsers briefly on small corpora; they assert nothing about speed
(that is what the script measures), only that it runs end to end and writes what it promises.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import logcorpus as lc  # noqa: E402
import logspeed  # noqa: E402

LOGHUB = Path(__file__).resolve().parents[3] / "shared/data/loghub2k"
needs_loghub = pytest.mark.skipif(
    not (LOGHUB / "HDFS/HDFS_2k.log_structured_corrected.csv").is_file(),
    reason=f"Loghub-2k data not found at {LOGHUB} (logpai/loghub-2.0 2k samples with corrected "
    "labels, copied to shared/data/loghub2k)",
)
HAS_DRAIN3 = importlib.util.find_spec("drain3") is not None

HDFS_RAW = (
    "081109 203615 148 INFO dfs.DataNode$PacketResponder: PacketResponder 1 for block "
    "blk_38865049064139660 terminating"
)
HDFS_CONTENT = "PacketResponder 1 for block blk_38865049064139660 terminating"
HDFS_TEMPLATE = "PacketResponder <*> for block <*> terminating"


def _lines(table: lc.SourceTable, n: int, seed: int = 0) -> list[str]:
    out, _ = lc.generate_chunk(table, n, np.random.default_rng(seed))
    return out.tobytes().decode().split("\n")[:-1]


# -- aligning templates and encoding lines ---------------------------------------------------


def test_parameter_spans_align_the_template_to_the_content() -> None:
    spans = lc.parameter_spans(HDFS_CONTENT, HDFS_TEMPLATE)
    assert spans is not None
    assert [HDFS_CONTENT[a:b] for a, b in spans] == ["1", "blk_38865049064139660"]
    # The corrected ground truth collapses runs of spaces that the raw message keeps.
    spans = lc.parameter_spans("clusterAddMember  (command 1902)", "clusterAddMember (command <*>)")
    assert spans == [(27, 31)]
    assert lc.parameter_spans("no parameters here", "no parameters here") == []
    assert lc.parameter_spans("something else", "PacketResponder <*> terminating") is None


def test_header_bound_stays_valid_for_any_date_field() -> None:
    assert [lc.header_bound(v) for v in (1, 10, 12, 13, 23, 24, 28, 29, 31, 59, 99)] == [
        12, 12, 12, 23, 23, 28, 28, 29, 31, 59, 99,
    ]  # fmt: skip


def test_generated_lines_keep_constants_and_refresh_every_parameter() -> None:
    table = lc.build_table([("HDFS", [(HDFS_RAW, HDFS_CONTENT, HDFS_TEMPLATE)])])
    assert table.unaligned == {"HDFS": 0} and table.parameters == 2
    lines = _lines(table, 3000)
    shape = re.compile(
        r"0811(\d\d) 2036(\d\d) 1(\d\d) INFO dfs\.DataNode\$PacketResponder: "
        r"PacketResponder (\d) for block ([a-z]{3})_([1-9]\d{15,17}) terminating"
    )
    groups = []
    for line in lines:
        m = shape.fullmatch(line)
        assert m is not None, line
        groups.append(m.groups())
    day, hour, pid, _, prefix, number = (list(col) for col in zip(*groups, strict=True))
    # Header digits: "09" may become 01..12 (any month or day), "15" 01..23, "48" 01..48.
    assert {int(x) for x in day} == set(range(1, 13))
    assert {int(x) for x in hour} == set(range(1, 24))
    assert {int(x) for x in pid} == set(range(1, 49))
    # A 17-digit number becomes 16, 17 or 18 digits; the letters of the parameter are fresh.
    assert {len(x) for x in number} == {16, 17, 18}
    assert len(set(prefix)) > 1000
    assert len(set(lines)) == len(lines)


@pytest.mark.parametrize(
    ("value", "pattern"),
    [
        ("0x3fA0", r"0x[0-9A-F]{4}"),  # hex keeps its prefix and case
        ("113d3a99c3da401f", r"[0-9a-f]{16}"),
        ("req-38101a0b-2096-447d", r"[a-z]{3}-[0-9a-f]{8}-\d{3,5}-[0-9a-f]{4}"),
        ("node-246:8042", r"[a-z]{4}-\d{2,4}:\d{3,5}"),
        ("000012", r"\d{6}"),  # zero-padded: fixed width
        ("MSRA-SA-39", r"[A-Z]{4}-[A-Z]{2}-\d{1,3}"),
    ],
)
def test_parameter_values_keep_their_shape(value: str, pattern: str) -> None:
    raw = f"INFO got {value} now"
    table = lc.build_table([("X", [(raw, f"got {value} now", "got <*> now")])])
    for line in _lines(table, 200, seed=3):
        assert re.fullmatch(rf"INFO got {pattern} now", line), line


def test_unaligned_lines_fall_back_to_digit_runs() -> None:
    raw = "Jul  1 09:00:55 host app[0]: sts:5_rsn:0 id 77"
    # A ground-truth quirk: <NUM> is no <*>, so the template does not match the content.
    table = lc.build_table([("X", [(raw, "sts:5_rsn:0 id 77", "sts:<NUM>_rsn:<NUM> id <*>")])])
    assert table.unaligned == {"X": 1}
    for line in _lines(table, 50):
        assert re.fullmatch(r"Jul  \d \d\d:\d\d:\d\d host app\[0\]: sts:\d_rsn:\d id \d{1,3}", line)


# -- writing corpora ----------------------------------------------------------------------------


def _fake_loghub(root: Path) -> Path:
    """Two tiny systems in the Loghub-2k layout."""
    systems = {
        "Alpha": [
            ("2015-10-18 18:01:47,978 INFO [main] Created app_1445144423722_0020",
             "Created app_1445144423722_0020", "Created <*>"),
            ("2015-10-18 18:01:48,963 INFO [main] Executing with tokens:",
             "Executing with tokens:", "Executing with tokens:"),
        ],
        "Beta": [
            ("Dec 10 06:55:46 LabSZ sshd[24200]: Invalid user webmaster from 173.234.31.186",
             "Invalid user webmaster from 173.234.31.186", "Invalid user <*> from <*>"),
        ],
    }  # fmt: skip
    for name, rows in systems.items():
        d = root / name
        d.mkdir(parents=True)
        (d / f"{name}_2k.log").write_text("".join(raw + "\n" for raw, _, _ in rows))
        with (d / f"{name}_2k.log_structured_corrected.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["LineId", "Content", "EventId", "EventTemplate"])
            for i, (_, content, template) in enumerate(rows, 1):
                w.writerow([i, content, f"E{i}", template])
    return root


def test_write_corpus_per_system_files_are_reproducible(tmp_path: Path) -> None:
    table = lc.load_sources(_fake_loghub(tmp_path / "loghub"))
    info = lc.write_corpus(tmp_path / "a", table, 2001, seed=5)
    assert [f.name for f in info.files] == ["Alpha", "Beta"]
    assert [f.lines for f in info.files] == [1001, 1000] and info.lines == 2001
    assert info.lines_per_system == {"Alpha": 1001, "Beta": 1000}
    for f in info.files:
        text = f.path.read_bytes()
        assert text.count(b"\n") == f.lines and len(text) == f.bytes
    assert all(
        line.startswith("Dec ") for line in (tmp_path / "a/Beta.log").read_text().split("\n")[:-1]
    )
    # Alpha's parameterless line is made distinct by its header alone; nearly all lines differ.
    assert info.distinct_lines > 0.95 * info.lines
    again = lc.write_corpus(tmp_path / "b", table, 2001, seed=5)
    other = lc.write_corpus(tmp_path / "c", table, 2001, seed=6)
    assert (tmp_path / "a/Alpha.log").read_bytes() == (tmp_path / "b/Alpha.log").read_bytes()
    assert (tmp_path / "a/Alpha.log").read_bytes() != (tmp_path / "c/Alpha.log").read_bytes()
    assert again.distinct_lines == info.distinct_lines and other.lines == info.lines
    mixed = lc.write_corpus(tmp_path / "m", table, 500, seed=5, layout="mixed")
    assert [f.name for f in mixed.files] == ["mixed"] and sum(
        mixed.lines_per_system.values()
    ) == 500


@needs_loghub
def test_loghub_corpus_of_20k_lines() -> None:
    table = lc.load_sources(LOGHUB)
    assert len(table.systems) == 14 and table.lines == 28_000
    # Only Mac's 20 lines whose ground truth writes <NUM> do not align.
    assert sum(table.unaligned.values()) <= 20
    lines = _lines(table, 20_000, seed=1)
    assert len(lines) == 20_000
    assert len(set(lines)) >= 19_980


# -- the benchmark ------------------------------------------------------------------------------

STAND_IN = '''
from dataclasses import dataclass
import numpy as np

@dataclass
class Parsed:
    template_ids: np.ndarray
    templates: dict

def parse_lines(lines):
    """A trivial stand-in: one template per number of words."""
    ids = np.array([len(line.split()) for line in lines], dtype=np.int64)
    return Parsed(ids, {int(i): "<*>" for i in np.unique(ids)})

def drops_lines(lines):
    return Parsed(np.zeros(len(lines) // 2, dtype=np.int64), {0: "<*>"})
'''


@pytest.fixture
def stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A module ``standin_parser`` importable by the benchmark's child processes."""
    (tmp_path / "standin_parser.py").write_text(STAND_IN)
    path = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path) + (os.pathsep + path if path else ""))
    return "standin_parser"


def _run(args: list[str], capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    assert logspeed.main(args) == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert isinstance(doc, dict)
    return doc


@pytest.mark.skipif(not HAS_DRAIN3, reason="drain3 (bench extra) is not installed")
def test_logspeed_runs_both_parsers_on_a_small_corpus(
    tmp_path: Path, stand_in: str, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "logspeed.json"
    data = _fake_loghub(tmp_path / "loghub")
    doc = _run(
        ["--lines", "20000", "--drain-lines", "2000", "--data", str(data)]
        + ["--relia-entry", f"{stand_in}:parse_lines", "--out", str(out)],
        capsys,
    )
    assert doc == json.loads(out.read_text())
    corpus = doc["corpus"]
    assert isinstance(corpus, dict)
    assert corpus["lines"] == 20_000 and corpus["distinct_lines"] > 19_000
    assert not Path(corpus["files"][0]["path"]).exists()  # the temporary corpus is removed
    rows = doc["parsers"]
    assert isinstance(rows, dict)
    assert rows["relia"]["lines"] == 20_000 and rows["relia"]["templates"] > 0
    assert rows["drain3"]["lines"] == rows["relia_same_lines"]["lines"] == 2000
    assert rows["drain3"]["files"].keys() == {"Alpha", "Beta"}
    assert rows["drain3"]["config"]["masking"] == 0  # Drain3's default configuration
    for row in rows.values():
        assert row["complete"] and row["lines_per_s"] > 0
        assert row["peak_rss_mb"] >= row["rss_start_mb"] > 0
    # The Drain3 child carries neither NumPy nor the parent's memory.
    assert rows["drain3"]["peak_rss_mb"] < rows["relia"]["peak_rss_mb"]
    assert doc["speedup_same_lines"] > 0 and isinstance(doc["meets_speedup"], bool)
    assert doc["command"].startswith("python bench/logspeed.py --lines 20000")


def test_logspeed_keeps_and_reuses_its_corpus(
    tmp_path: Path, stand_in: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _fake_loghub(tmp_path / "loghub")
    args = ["--lines", "3000", "--drain-lines", "0", "--data", str(data), "--corpus"]
    args += [str(tmp_path / "corpus"), "--relia-entry", f"{stand_in}:parse_lines", "--out"]
    first = _run(args + [str(tmp_path / "1.json")], capsys)
    before = (tmp_path / "corpus/Alpha.log").stat().st_mtime_ns
    second = _run(args + [str(tmp_path / "2.json")], capsys)
    assert (tmp_path / "corpus/Alpha.log").stat().st_mtime_ns == before
    assert first["corpus"] == second["corpus"]
    assert "drain3" not in second["parsers"]  # type: ignore[operator]


def test_logspeed_rejects_a_parser_that_drops_lines(
    tmp_path: Path, stand_in: str, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _fake_loghub(tmp_path / "loghub")
    args = ["--lines", "500", "--drain-lines", "0", "--data", str(data)]
    with pytest.raises(RuntimeError, match="template ids for"):
        logspeed.main(args + ["--relia-entry", f"{stand_in}:drops_lines"])


def test_logspeed_user_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "x.json"
    assert logspeed.main(["--data", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "no such folder" in capsys.readouterr().err
    data = _fake_loghub(tmp_path / "loghub")
    args = ["--lines", "100", "--drain-lines", "0", "--data", str(data), "--out", str(out)]
    assert logspeed.main(args + ["--relia-entry", "no_such_module_x:parse"]) == 2
    assert "--relia-entry" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.slow
@needs_loghub
@pytest.mark.skipif(not HAS_DRAIN3, reason="drain3 (bench extra) is not installed")
@pytest.mark.skipif(
    importlib.util.find_spec("relia.logs") is None, reason="relia.logs is not there yet"
)
def test_logspeed_with_relias_parser_on_loghub(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = _run(
        ["--lines", "20000", "--drain-lines", "1400", "--out", str(tmp_path / "l.json")], capsys
    )
    rows = doc["parsers"]
    assert isinstance(rows, dict)
    assert rows["relia"]["entry"] == "relia.logs:parse_lines"
    assert rows["relia"]["lines"] == 20_000 and len(rows["relia"]["files"]) == 14
    assert rows["drain3"]["lines"] == 1400


def test_a_timed_out_parser_gets_a_bound_not_a_rate() -> None:
    msgs = [
        {"ready": True, "warmup_s": 0.1},
        {"start": "A", "epoch": 1000.0},
        {"file": "A", "lines": 100, "seconds": 1.0, "cpu_s": 1.0, "templates": 3},
        {"start": "B", "epoch": 1001.0},
    ]
    row = logspeed.summarize(msgs, 200, ended=1011.0, timeout=11.0)
    assert row["complete"] is False and row["lines_per_s"] is None
    assert row["unfinished_file"] == "B" and row["lines_per_s_completed_files"] == 100.0
    assert row["seconds_incl_unfinished"] == 11.0
    assert row["lines_per_s_at_most"] == round(200 / 11.0, 1)
    done = logspeed.summarize(msgs[:3], 100)
    assert done["complete"] is True and done["lines_per_s"] == 100.0


def test_logspeed_leaves_no_temporary_corpus_behind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import tempfile

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    out = tmp_path / "x.json"
    assert logspeed.main(["--data", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert capsys.readouterr().err.count("\n") == 1
    assert list(scratch.iterdir()) == []
    # A build that fails midway (a full disk) removes what it wrote.
    import logcorpus

    def full_disk(folder: Path, *args: object) -> None:
        (folder / "part.log").write_text("x")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(logcorpus, "write_corpus", full_disk)
    data = _fake_loghub(tmp_path / "loghub")
    with pytest.raises(OSError):
        logspeed.main(["--lines", "100", "--data", str(data), "--out", str(out)])
    assert list(scratch.iterdir()) == []


def test_logspeed_refuses_an_unwritable_out_before_building(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = _fake_loghub(tmp_path / "loghub")
    assert logspeed.main(["--lines", "100", "--data", str(data), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is a folder" in err and "building" not in err
