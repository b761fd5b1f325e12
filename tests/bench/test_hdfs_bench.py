"""Smoke tests of the HDFS session benchmark (bench/hdfs.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from relia.errors import DataError

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

import hdfs  # noqa: E402

HDFS_DATA = Path(__file__).resolve().parents[3] / "shared/data/hdfs/HDFS_100k_sessions.jsonl"
needs_hdfs = pytest.mark.skipif(
    not HDFS_DATA.is_file(),
    reason=f"HDFS sessions not found at {HDFS_DATA} (deep-loglizer's HDFS_100k grouped by block)",
)

OK = ["open", "write", "commit"]


def write_jsonl(path: Path, rows: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_small_file_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows: list[dict[str, object]] = [
        {"BlockId": f"b{i}", "Label": 0, "split": "train", "templates": OK} for i in range(50)
    ]
    rows += [
        {"BlockId": "t0", "Label": 0, "split": "test", "templates": OK},
        {"BlockId": "t1", "Label": 1, "split": "test", "templates": [*OK, "panic"]},
        {"BlockId": "t2", "Label": 1, "split": "test", "templates": OK},
    ]
    data = write_jsonl(tmp_path / "s.jsonl", rows)
    out = tmp_path / "r.json"
    assert hdfs.main(["--data", str(data), "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["relia"] | {"precision": 1.0, "recall": 0.5} == doc["relia"]
    assert doc["relia"]["tp"] == 1 and doc["relia"]["fn"] == 1
    assert doc["reasons_tp"]["kinds"] == {"unseen_template": 1}
    assert doc["extra_sequence_ceiling"]["anomalies_with_a_normal_sequence"] == 1
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == doc


def test_bad_input_names_the_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = {"BlockId": "b", "Label": 0, "split": "train", "templates": OK}
    data = tmp_path / "bad.jsonl"
    data.write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(DataError, match=r"bad\.jsonl:2: not JSON"):
        hdfs.load(data)
    write_jsonl(data, [good, {**good, "templates": [1, 2]}])
    with pytest.raises(DataError, match=r"bad\.jsonl:2: field 'templates'"):
        hdfs.load(data)
    write_jsonl(data, [good])
    with pytest.raises(DataError, match="no 'test' sessions"):
        hdfs.load(data)
    assert hdfs.main(["--data", str(tmp_path / "missing.jsonl")]) == 2
    assert "relia: error:" in capsys.readouterr().err
    # A folder was "HDFS sessions file not found".
    with pytest.raises(DataError, match="is a directory, not an HDFS sessions file"):
        hdfs.load(tmp_path)


def _sessions_file(path: Path, bad: bytes) -> Path:
    """Three good train/test lines, then ``bad`` as line 4."""
    good = [
        {"BlockId": "b0", "Label": 0, "split": "train", "templates": OK},
        {"BlockId": "t0", "Label": 0, "split": "test", "templates": OK},
        {"BlockId": "t1", "Label": 1, "split": "test", "templates": [*OK, "panic"]},
    ]
    path.write_bytes(b"".join(json.dumps(r).encode() + b"\n" for r in good) + bad + b"\n")
    return path


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        # Each was a traceback: AttributeError, UnicodeDecodeError.
        (b"[1, 2]", "s.jsonl:4: not a JSON object (a JSON list)"),
        (b'"just a string"', "s.jsonl:4: not a JSON object (a JSON str)"),
        (
            b'{"BlockId": "b\xe9", "Label": 0, "split": "train", "templates": []}',
            "s.jsonl:4: not UTF-8: byte 0xe9 at column 15",
        ),
    ],
)
def test_bad_lines_are_one_message_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], bad: bytes, message: str
) -> None:
    data = _sessions_file(tmp_path / "s.jsonl", bad)
    out = tmp_path / "r.json"
    assert hdfs.main(["--data", str(data), "--out", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"relia: error: {tmp_path}/{message}\n"
    assert captured.out == "" and not out.exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        # Were taken as normal (anything but 1) or as a split of their own, so F1 came out 0.0
        # without a word.
        ("Label", 2, "field 'Label' must be 0 (normal) or 1 (anomalous), got 2"),
        ("Label", -1, "field 'Label' must be 0 (normal) or 1 (anomalous), got -1"),
        ("Label", True, "field 'Label' must be 0 (normal) or 1 (anomalous), got True"),
        ("split", "Train", "field 'split' must be 'train' or 'test', got 'Train'"),
        ("split", "valid", "field 'split' must be 'train' or 'test', got 'valid'"),
    ],
)
def test_labels_other_than_0_1_and_unknown_splits_are_refused(
    tmp_path: Path, field: str, value: object, message: str
) -> None:
    row = {"BlockId": "x", "Label": 0, "split": "train", "templates": OK, field: value}
    data = _sessions_file(tmp_path / "s.jsonl", json.dumps(row).encode())
    with pytest.raises(DataError) as err:
        hdfs.load(data)
    assert str(err.value) == f"{data}:4: {message}"


@pytest.mark.parametrize("make", ["a directory", "under a file", "a directory with a slash"])
def test_an_out_that_cannot_be_written_fails_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, make: str
) -> None:
    # --out was written after the run (minutes on the full data) and the table: a traceback.
    data = _sessions_file(tmp_path / "s.jsonl", b"")
    (tmp_path / "file.txt").write_text("x")
    out = {
        "a directory": str(tmp_path),
        "under a file": str(tmp_path / "file.txt" / "r.json"),
        "a directory with a slash": f"{tmp_path}/",
    }[make]
    ran: list[Path] = []
    real_run = hdfs.run
    monkeypatch.setattr(hdfs, "run", lambda data: ran.append(data) or real_run(data))
    assert hdfs.main(["--data", str(data), "--out", out]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"relia: error: {Path(out)}: cannot write: ")
    assert len(captured.err.splitlines()) == 1 and captured.out == "" and ran == []
    assert (tmp_path / "file.txt").read_text() == "x"


def test_an_out_that_is_writable_is_left_as_it_was_until_the_result(tmp_path: Path) -> None:
    out = tmp_path / "new" / "r.json"
    hdfs.check_out(out)
    assert not out.exists()  # the probe leaves no empty file behind
    out.write_text("old")
    hdfs.check_out(out)
    assert out.read_text() == "old"


def test_ceiling_groups_identical_sequences() -> None:
    sessions = [["a"], ["a"], ["a"], ["b"], ["c"]]
    labels = np.array([0, 1, 1, 1, 0], bool)
    c = hdfs.ceiling(sessions, labels)
    # Flagging "b" then "a": "a" has 2 anomalies and 1 normal; P 3/4, R 1 -> F1 6/7.
    assert c["f1"] == pytest.approx(6 / 7) and c["anomalies_with_a_normal_sequence"] == 2


@needs_hdfs
def test_train_labels_do_not_change_the_result(tmp_path: Path) -> None:
    """The model never sees labels: flipping every train label leaves the result as it is."""
    doc = hdfs.run(HDFS_DATA)
    rows = [json.loads(line) for line in HDFS_DATA.read_text().splitlines() if line.strip()]
    for r in rows:
        if r["split"] == "train":
            r["Label"] = 1 - r["Label"]
    flipped = hdfs.run(write_jsonl(tmp_path / "flipped.jsonl", rows))
    assert flipped["relia"] == doc["relia"]
    assert doc["sessions"] == {"train": 6352, "test": 1588}
    assert doc["relia"]["f1"] <= doc["extra_sequence_ceiling"]["f1"]
    assert doc["relia"]["precision"] >= 0.9  # measured 1.000 (30 TP, 0 FP)
