from __future__ import annotations

import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from relia.errors import DataError, StoreError
from relia.logs.tail import FileTailer, TailState
from relia.store.base import LogCounts
from relia.store.duckdb import DuckDBStore
from tests.engine.memstore import MemoryStore


def _append(path: Path, text: str | bytes) -> None:
    with path.open("ab") as f:
        f.write(text.encode() if isinstance(text, str) else text)


def _reload(t: FileTailer, **kw: object) -> FileTailer:
    """A new tailer from ``t``'s saved state, through JSON as the store keeps it (a restart)."""
    state = TailState.from_dict(json.loads(json.dumps(t.state.to_dict())))
    t.close()
    return FileTailer(t.path, state, **kw)  # type: ignore[arg-type]


def test_appended_lines_and_partial_last_line(tmp_path: Path) -> None:
    p = tmp_path / "app.log"
    t = FileTailer(p)
    assert t.poll() == []  # not there yet: waited for
    _append(p, "a\nb\nhal")
    assert t.poll() == ["a", "b"]
    assert t.state.current is not None and t.state.current.offset == 4
    _append(p, "f\n")
    assert t.poll() == ["half"]
    assert t.poll() == []
    assert t.state.counts.lines == 3 and t.state.counts.bytes == 9


def test_restart_resumes_exactly_with_a_partial_line_pending(tmp_path: Path) -> None:
    p = tmp_path / "app.log"
    _append(p, "1\n2\n3")
    t = FileTailer(p)
    assert t.poll() == ["1", "2"]
    t = _reload(t)  # the partial "3" is not part of the offset: read again
    _append(p, "4\n5\n")
    assert t.poll() == ["34", "5"]
    assert t.state.counts.lines == 4


def test_rotation_finishes_the_old_file_then_follows_the_new(tmp_path: Path) -> None:
    p = tmp_path / "app.log"
    _append(p, "old1\n")
    t = FileTailer(p)
    assert t.poll() == ["old1"]
    _append(p, "old2\nold3-partial")
    p.rename(tmp_path / "app.log.1")
    _append(p, "new1\n")
    # The writer still had the old file open and wrote to it after the rename.
    got = t.poll()
    assert got == ["old2"]  # the new file waits until the old one is done
    _append(tmp_path / "app.log.1", "\nold4\n")
    _append(p, "new2\n")
    assert t.poll() == ["old3-partial", "old4", "new1", "new2"]
    assert t.state.counts.rotations == 1 and t.state.draining is None
    _append(p, "new3\n")
    assert t.poll() == ["new3"]


def test_unterminated_last_line_of_a_rotated_file_is_a_line(tmp_path: Path) -> None:
    p = tmp_path / "app.log"
    _append(p, "a\nb")
    t = FileTailer(p)
    assert t.poll() == ["a"]
    p.rename(tmp_path / "app.log.1")
    _append(p, "c\n")
    assert t.poll() == []
    assert t.poll() == ["b", "c"]


def test_truncation_restarts_at_zero_and_is_counted(tmp_path: Path) -> None:
    p = tmp_path / "app.log"
    _append(p, "one\ntwo\n")
    t = FileTailer(p)
    assert t.poll() == ["one", "two"]
    p.write_bytes(b"x\n")  # shorter than the offset
    assert t.poll() == ["x"]
    assert t.state.counts.truncations == 1
    # copytruncate that grew past the offset before the next poll: the first bytes differ.
    p.write_bytes(b"RESET longer than before\nmore\n")
    assert t.poll() == ["RESET longer than before", "more"]
    assert t.state.counts.truncations == 2


def test_truncation_while_stopped(tmp_path: Path) -> None:
    p = tmp_path / "app.log"
    _append(p, "aaa\nbbb\n")
    t = FileTailer(p)
    t.poll()
    state = t.state
    t.close()
    with p.open("r+b") as f:  # same inode, new content
        f.truncate(0)
        f.write(b"ccc\n")
    t = FileTailer(p, state)
    assert t.poll() == ["ccc"]
    assert t.state.counts.truncations == 1


def test_rotated_while_stopped_old_file_found_by_inode(tmp_path: Path) -> None:
    p = tmp_path / "app.log"
    _append(p, "a\n")
    t = FileTailer(p)
    assert t.poll() == ["a"]
    state = t.state
    t.close()
    _append(p, "b\n")
    p.rename(tmp_path / "app.log.1")
    _append(p, "c\n")
    t = FileTailer(p, state)
    # The writer moved on long ago: the old file is finished at once, then the new one is read.
    assert t.poll() == ["b", "c"]
    assert t.state.counts.rotations == 1 and t.state.counts.lost_rotated == 0


def test_rotated_while_stopped_and_old_file_gone_is_counted(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    p = tmp_path / "app.log"
    _append(p, "a\n")
    t = FileTailer(p)
    t.poll()
    state = t.state
    t.close()
    _append(p, "b\n")
    # Keep the old inode alive elsewhere so that the new file cannot reuse it.
    p.rename(tmp_path.parent / f"{tmp_path.name}-gone.log")
    _append(p, "c\n")
    t = FileTailer(p, state)
    assert t.poll() == ["c"]
    assert t.state.counts.lost_rotated == 1
    assert "were not read" in caplog.text


def test_start_at_end_and_bounded_reads(tmp_path: Path) -> None:
    p = tmp_path / "app.log"
    _append(p, "before\n")
    t = FileTailer(p, start_at="end", max_bytes_per_poll=10)
    assert t.poll() == []
    _append(p, "".join(f"line{i}\n" for i in range(10)))
    got: list[str] = []
    for _ in range(20):
        got += t.poll()
    assert got == [f"line{i}" for i in range(10)]
    # start_at only applies to a file never read: a saved state resumes where it was.
    t = _reload(t, start_at="end")
    _append(p, "after\n")
    assert t.poll() == ["after"]


def test_start_at_end_hands_out_a_line_being_written_whole(tmp_path: Path) -> None:
    # The writer was in the middle of a line when relia opened the file: that line is new, and
    # it comes out whole once complete, not as the fragment after the byte end.
    p = tmp_path / "app.log"
    _append(p, "old line\nhalf of a ")
    t = FileTailer(p, start_at="end")
    assert t.poll() == []
    _append(p, "new line\nnext\n")
    assert t.poll() == ["half of a new line", "next"]
    # A file that is all one partial line starts at 0, one ending in a newline at its end.
    q = tmp_path / "one.log"
    _append(q, "partial")
    t = FileTailer(q, start_at="end")
    assert t.poll() == []
    _append(q, " line\n")
    assert t.poll() == ["partial line"]


def test_unreadable_paths_are_data_errors(tmp_path: Path) -> None:
    d = tmp_path / "dir.log"
    d.mkdir()
    with pytest.raises(DataError, match="dir.log: is a directory"):
        FileTailer(d).poll()
    if os.geteuid() != 0:
        p = tmp_path / "secret.log"
        p.write_text("x\n")
        p.chmod(0)
        with pytest.raises(DataError, match="secret.log: cannot read: Permission denied"):
            FileTailer(p).poll()


def test_random_appends_rotations_truncations_and_restarts_lose_nothing(tmp_path: Path) -> None:
    """Every line written is handed out exactly once, in order (truncations only happen once a
    file was fully read: a line destroyed before it is read cannot be counted)."""
    rng = random.Random(7)
    p = tmp_path / "app.log"
    t = FileTailer(p, max_bytes_per_poll=64)
    written: list[str] = []
    got: list[str] = []
    partial = ""  # an unterminated last line already in the file
    n = 0

    def drain() -> None:
        nonlocal got
        for _ in range(1000):
            more = t.poll()
            got += more
            if not more and t.state.draining is None:
                return

    for _step in range(500):
        r = rng.random()
        if r < 0.5:
            text = ""
            if partial:
                text, partial = "\n", written.append(partial) or ""
            for _ in range(rng.randint(1, 5)):
                line = f"line {n} {'x' * rng.randint(0, 30)}"
                n += 1
                text += line + "\n"
                written.append(line)
            if rng.random() < 0.3:
                partial = f"partial {n}"
                n += 1
                text += partial
            _append(p, text)
        elif r < 0.56:
            # A file rotated away before any poll saw it cannot be followed (nor by any tailer
            # of a path): a poll between two rotations.
            got += t.poll()
            for i in range(8, 0, -1):
                old = tmp_path / f"app.log.{i}"
                if old.exists():
                    old.rename(tmp_path / f"app.log.{i + 1}")
            if p.exists():
                p.rename(tmp_path / "app.log.1")
                if partial:  # the old file's last line ends with the file
                    written.append(partial)
                    partial = ""
        elif r < 0.6 and not partial:
            drain()
            if got == written and p.exists():
                p.write_bytes(b"")
        elif r < 0.7:
            t = _reload(t, max_bytes_per_poll=64)
        else:
            got += t.poll()
    if partial:
        _append(p, "\n")
        written.append(partial)
    p.touch()  # a rotated file's last line ends once the path shows its successor
    drain()
    assert t.state.counts.rotations > 10 and t.state.counts.truncations >= 2
    assert got == written


def test_stores_commit_counts_and_states_together(tmp_path: Path) -> None:
    for store in (DuckDBStore(tmp_path / "s.duckdb", samples_per_series=10), MemoryStore(10)):
        counts = LogCounts(
            ["a", "a", "a", "b"],
            np.array([0, 0, 60, 0], np.int64),
            np.array([1, 1, 2, 1], np.int64),
            np.array([3, 4, 5, 6], np.int64),
        )
        store.commit_log_progress({"a": b"s1"}, counts)
        store.commit_log_progress({"a": b"s2", "b": b"x"}, counts)
        got = store.log_counts()
        assert got.file == ["a", "a", "b"]
        assert got.window_start.tolist() == [0, 60, 0]
        assert got.count.tolist() == [14, 10, 12]
        assert store.log_counts("a", since=60).count.tolist() == [10]
        assert store.load_log_states() == {"a": b"s2", "b": b"x"}
        # Only the newest samples_per_series windows of a file stay.
        many = LogCounts(
            ["a"] * 20, np.arange(20, dtype=np.int64) * 60, np.zeros(20, np.int64),
            np.ones(20, np.int64),
        )  # fmt: skip
        store.commit_log_progress({}, many)
        kept = store.log_counts("a")
        assert sorted(set(kept.window_start.tolist())) == [60 * i for i in range(10, 20)]
        store.close()


def test_duckdb_commit_is_all_or_nothing(tmp_path: Path) -> None:
    with DuckDBStore(tmp_path / "s.duckdb") as store:
        ok = LogCounts(["a"], np.array([0]), np.array([1]), np.array([2]))
        store.commit_log_progress({"a": b"one"}, ok)
        bad = LogCounts(["a"], np.array([0]), np.array([1]), np.array([2]))
        with pytest.raises(DataError):
            store.commit_log_progress({"a": "not bytes"}, bad)  # type: ignore[dict-item]
        # A failure inside the transaction (a NULL file name) rolls the state back too.
        broken = LogCounts([None], np.array([0]), np.array([1]), np.array([2]))  # type: ignore[list-item]
        with pytest.raises(StoreError):
            store.commit_log_progress({"a": b"two"}, broken)
        assert store.load_log_states() == {"a": b"one"}
        assert store.log_counts().count.tolist() == [2]


# -- written in a mutation audit of tail.py: each pins a behaviour no test above checked -------


def test_rewrite_that_grew_past_the_offset_is_noticed_after_the_first_read(tmp_path: Path) -> None:
    """The first bytes are remembered when the file is opened, not only from the next poll on."""
    p = tmp_path / "app.log"
    _append(p, "one\ntwo\n")
    t = FileTailer(p)
    assert t.poll() == ["one", "two"]  # opened and read in one poll
    p.write_bytes(b"RESET longer than before\n")
    assert t.poll() == ["RESET longer than before"]
    assert t.state.counts.truncations == 1


def test_rewrite_of_a_file_that_was_empty_when_opened_is_noticed(tmp_path: Path) -> None:
    """The remembered first bytes grow with the file (an empty file has none to compare)."""
    p = tmp_path / "app.log"
    p.touch()
    t = FileTailer(p)
    assert t.poll() == []
    _append(p, "one\ntwo\n")
    assert t.poll() == ["one", "two"]
    p.write_bytes(b"RESET longer than before\n")
    assert t.poll() == ["RESET longer than before"]
    assert t.state.counts.truncations == 1


def test_rewrite_below_a_pending_partial_line_with_the_same_first_bytes(tmp_path: Path) -> None:
    """A file that shrank below what was read (a pending partial line included) is read again,
    even when its first bytes (a banner longer than the remembered prefix) are the same."""
    p = tmp_path / "app.log"
    banner = "B" * 100
    _append(p, f"{banner}\n{'x' * 50}")  # a long line without its newline yet
    t = FileTailer(p)
    assert t.poll() == [banner]
    p.write_bytes(f"{banner}\nnew\n".encode())  # shorter than read, longer than the offset
    assert t.poll() == [banner, "new"]
    assert t.state.counts.truncations == 1


def test_counts_survive_truncation_and_rotation(tmp_path: Path) -> None:
    """The line counts in the state are every line handed out, across a truncation (the
    decoder restarts) and a finished rotation (the old file's decoder goes away)."""
    p = tmp_path / "app.log"
    _append(p, "a\nb\n")
    t = FileTailer(p)
    got = t.poll()
    p.write_bytes(b"c\n")
    got += t.poll()
    assert t.state.counts.truncations == 1
    assert t.state.counts.lines == len(got) == 3
    _append(p, "d\n")
    p.rename(tmp_path / "app.log.1")
    _append(p, "e\n")
    got += t.poll()
    got += t.poll()
    assert got == ["a", "b", "c", "d", "e"] and t.state.draining is None
    assert t.state.counts.lines == 5
    assert t.state.counts.bytes == 10
    assert _reload(t).state.counts.lines == 5


def test_second_rotation_while_draining_with_a_small_budget_loses_nothing(tmp_path: Path) -> None:
    """Rotated again before the first old file was drained (its backlog exceeds the budget): the
    first old file is read to its end before it is finished, then the second, then the path."""
    p = tmp_path / "app.log"
    _append(p, "start\n")
    t = FileTailer(p, max_bytes_per_poll=8)
    assert t.poll() == ["start"]
    old = [f"old{i}" for i in range(10)]
    _append(p, "".join(f"{s}\n" for s in old))
    p.rename(tmp_path / "app.log.1")
    _append(p, "mid\n")
    got = t.poll()  # the rotation is seen; the backlog is worked off 8 bytes at a time
    assert got and got[0] == "old0"
    (tmp_path / "app.log.1").rename(tmp_path / "app.log.2")
    p.rename(tmp_path / "app.log.1")
    _append(p, "new\n")
    for _ in range(50):
        got += t.poll()
    assert got == [*old, "mid", "new"]
    assert t.state.counts.rotations == 2


def test_restart_while_draining_finishes_the_old_file_on_the_first_poll(tmp_path: Path) -> None:
    """A saved rotated-away file was drained once before the stop: after the restart it is
    finished on the first poll (its last unfinished line handed out), then the new file read."""
    p = tmp_path / "app.log"
    _append(p, "a\nb")
    t = FileTailer(p)
    assert t.poll() == ["a"]
    p.rename(tmp_path / "app.log.1")
    _append(p, "c\n")
    assert t.poll() == []  # the rotation is seen: the old file is drained once
    assert t.state.draining is not None
    t = _reload(t)
    assert t.poll() == ["b", "c"]
    assert t.state.draining is None and t.state.counts.lines == 3


def test_a_file_beside_the_path_that_reused_the_inode_is_not_the_rotated_one(
    tmp_path: Path,
) -> None:
    """Rotated while stopped, the old file deleted and its inode reused by another file beside the
    path (made here by a saved state naming that file's inode with other first bytes): that file
    is not read from the saved offset; the old one is counted as lost."""
    p = tmp_path / "app.log"
    _append(p, "new\n")
    other = tmp_path / "app.log.1"
    _append(other, "unrelated line one\nunrelated line two\n")
    st = other.stat()
    state = TailState.from_dict(
        {"current": {"dev": st.st_dev, "ino": st.st_ino, "offset": 4, "fp": b"gone\n".hex()}}
    )
    t = FileTailer(p, state)
    assert t.poll() == ["new"]
    assert t.state.counts.lost_rotated == 1


def test_a_directory_beside_the_path_with_the_saved_inode_is_skipped(tmp_path: Path) -> None:
    p = tmp_path / "app.log"
    _append(p, "new\n")
    d = tmp_path / "app.log.d"
    d.mkdir()
    st = d.stat()
    state = TailState.from_dict({"current": {"dev": st.st_dev, "ino": st.st_ino, "offset": 0}})
    t = FileTailer(p, state)
    assert t.poll() == ["new"]
    assert t.state.counts.lost_rotated == 1


def test_start_at_end_does_not_skip_a_file_that_appears_after_lines_were_read(
    tmp_path: Path,
) -> None:
    """``start_at="end"`` is for a file never read; after a rotation while stopped whose new file
    did not exist yet, the file that then appears is read from its start, also after a restart."""
    p = tmp_path / "app.log"
    _append(p, "a\n")
    t = FileTailer(p, start_at="end")
    assert t.poll() == []
    _append(p, "b\n")
    assert t.poll() == ["b"]
    t = _reload(t, start_at="end")
    _append(p, "c\n")
    p.rename(tmp_path / "app.log.1")  # no new file yet
    assert t.poll() == ["c"]
    assert t.state.current is None and t.state.draining is None
    t = _reload(t, start_at="end")
    _append(p, "d\n")
    assert t.poll() == ["d"]


def test_start_at_end_does_not_skip_a_file_that_appears_while_one_is_draining(
    tmp_path: Path,
) -> None:
    """As above, with the rotated-away file still being drained when the state is saved (its only
    line is longer than one poll's budget, so no line, no byte was counted yet)."""
    p = tmp_path / "app.log"
    p.touch()
    t = FileTailer(p, start_at="end", max_bytes_per_poll=4)
    assert t.poll() == []
    t = _reload(t, start_at="end", max_bytes_per_poll=4)
    _append(p, "long line\n")
    p.rename(tmp_path / "app.log.1")  # no new file yet
    assert t.poll() == []
    assert t.state.current is None and t.state.draining is not None
    assert t.state.counts.bytes == 0
    t = _reload(t, start_at="end", max_bytes_per_poll=4)
    _append(p, "new\n")
    got: list[str] = []
    for _ in range(10):
        got += t.poll()
    assert got == ["long line", "new"]


def test_a_zero_byte_budget_still_makes_progress(tmp_path: Path) -> None:
    p = tmp_path / "app.log"
    _append(p, "a\n")
    t = FileTailer(p, max_bytes_per_poll=0)
    got: list[str] = []
    for _ in range(5):
        got += t.poll()
    assert got == ["a"]


def test_saved_draining_file_gone_after_a_restart_is_counted_and_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Stopped while a rotated-away file was still being drained, and that file is gone when relia
    starts again (deleted, or compressed by logrotate): its unfinished last line can never be
    handed out, so that is counted in ``lost_rotated`` and logged, as for a rotation while stopped
    (the rotation itself was already counted)."""
    p = tmp_path / "app.log"
    _append(p, "a\nb")
    t = FileTailer(p)
    assert t.poll() == ["a"]
    p.rename(tmp_path / "app.log.1")
    _append(p, "c\n")
    assert t.poll() == []
    assert t.state.draining is not None and t.state.counts.rotations == 1
    state = TailState.from_dict(json.loads(json.dumps(t.state.to_dict())))
    t.close()
    # Keep the old inode alive elsewhere so that no file beside the path can reuse it.
    (tmp_path / "app.log.1").rename(tmp_path.parent / f"{tmp_path.name}-gone.log")
    t = FileTailer(p, state)
    assert t.poll() == ["c"]
    assert t.state.counts.lost_rotated == 1 and t.state.counts.rotations == 1
    assert t.state.draining is None
    assert "were not read" in caplog.text


def test_a_failed_open_on_resume_is_retried_from_the_saved_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One failed open right after a restart (too many open files, a permission error) must not
    make the tailer start the file again from 0: every line would be handed out twice."""
    p = tmp_path / "app.log"
    _append(p, "".join(f"line {i}\n" for i in range(5)))
    t = FileTailer(p)
    assert t.poll() == [f"line {i}" for i in range(5)]
    t = _reload(t)
    _append(p, "line 5\n")
    real_open = os.open
    calls = {"n": 0}

    def failing_open(*args: object, **kw: object) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            raise PermissionError(13, "Permission denied")
        return real_open(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "open", failing_open)
    with pytest.raises(DataError, match="Permission denied"):
        t.poll()
    assert t.state.current is not None and t.state.current.offset == 35
    assert t.poll() == ["line 5"]
    assert t.state.counts.lines == 6


def test_lines_drained_before_the_new_file_fails_are_handed_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rotation whose new path cannot be opened: the old file's lines read in that poll are
    returned (the state is past them), and the error is kept for the caller."""
    p = tmp_path / "app.log"
    _append(p, "line 0\nline 1\n")
    t = FileTailer(p)
    assert t.poll() == ["line 0", "line 1"]
    _append(p, "line 2\nline 3\n")
    p.rename(tmp_path / "app.log.1")
    p.mkdir()  # the new "file" cannot be read
    assert t.poll() == ["line 2", "line 3"]
    assert t.deferred_error is not None and "is a directory" in str(t.deferred_error)
    _append(tmp_path / "app.log.1", "line 4\n")  # the writer still had the old file open
    assert t.poll() == ["line 4"]
    assert t.deferred_error is not None
    with pytest.raises(DataError, match="is a directory"):
        t.poll()  # nothing read before the error: raised
    p.rmdir()
    _append(p, "line 5\n")
    assert t.poll() == ["line 5"]
    assert t.deferred_error is None
    assert t.state.counts.lines == 6 and t.state.counts.lost_rotated == 0


def test_copytruncate_finishes_the_unread_tail_from_the_copy(tmp_path: Path) -> None:
    p = tmp_path / "app.log"
    _append(p, "".join(f"req {i} ok\n" for i in range(10)))
    t = FileTailer(p)
    assert len(t.poll()) == 10
    _append(p, "".join(f"req {i} ok\n" for i in range(10, 110)))
    shutil.copyfile(p, tmp_path / "app.log.1")
    os.truncate(p, 0)
    _append(p, "".join(f"req {i} ok\n" for i in range(110, 115)))
    got = t.poll() + t.poll()
    assert got == [f"req {i} ok" for i in range(10, 115)]
    assert t.state.counts.truncations == 1 and t.state.counts.lost_truncated == 0


def test_copytruncate_without_a_copy_is_counted_as_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    p = tmp_path / "app.log"
    _append(p, "a 1\na 2\n")
    t = FileTailer(p)
    assert t.poll() == ["a 1", "a 2"]
    (tmp_path / "app.log.1.gz").write_bytes(b"a 1\na 2\n")  # compressed copies are not read
    os.truncate(p, 0)
    _append(p, "b\n")
    with caplog.at_level("WARNING"):
        assert t.poll() == ["b"]
    assert t.state.counts.lost_truncated == 1
    assert "no copy of it was found" in caplog.text


def test_random_copytruncate_with_unread_lines_and_restarts_loses_nothing(tmp_path: Path) -> None:
    """logrotate's copytruncate at random moments: lines written since the last poll are in the
    copy only (app.log.1, older copies shifted to .2, .3), and the tailer may be restarted from
    its saved state at any point. Every line comes out once, in order."""
    for seed in range(40):
        d = tmp_path / f"s{seed}"
        d.mkdir()
        rng = random.Random(seed)
        p = d / "app.log"
        p.touch()
        budget = rng.choice([40, 300, 1 << 20])
        t = FileTailer(p, max_bytes_per_poll=budget)
        written: list[str] = []
        got: list[str] = []
        n = 0
        for _step in range(120):
            r = rng.random()
            if r < 0.45:
                k = rng.randint(1, 6)
                lines = [f"{n + i:06d} {'y' * rng.randint(0, 20)}" for i in range(k)]
                n += len(lines)
                written += lines
                _append(p, "".join(x + "\n" for x in lines))
            elif r < 0.6:
                # A poll between two copytruncates (as between two rotations), then the copy.
                got += t.poll()
                for i in range(3, 0, -1):
                    old = d / f"app.log.{i}"
                    if old.exists():
                        old.rename(d / f"app.log.{i + 1}")
                shutil.copyfile(p, d / "app.log.1")
                os.truncate(p, 0)
            elif r < 0.7:
                t = _reload(t, max_bytes_per_poll=budget)
            else:
                got += t.poll()
        for _ in range(200):
            more = t.poll()
            got += more
            if not more and t.state.draining is None:
                break
        assert got == written, seed
        assert t.state.counts.lost_truncated == 0


def test_start_at_end_inside_an_over_long_line_skips_its_rest(tmp_path: Path) -> None:
    p = tmp_path / "app.log"
    _append(p, "x" * 125 + "yyy tail of the long line")  # 150 bytes, no newline
    t = FileTailer(p, max_line_bytes=100, start_at="end")
    assert t.poll() == []
    _append(p, "\nnew line 1\n")
    assert t.poll() == ["new line 1"]
    assert t.state.counts.too_long == 1 and t.state.counts.lines == 1
    assert t.state.current is not None and t.state.current.offset == p.stat().st_size
