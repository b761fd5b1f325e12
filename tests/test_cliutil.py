"""Helpers every command shares: staged outputs written beside their targets and renamed."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from relia._cliutil import Staged, output_path, write_atomically
from relia.errors import DataError


def test_staged_outputs_replace_their_targets_only_on_commit(tmp_path: Path) -> None:
    target = tmp_path / "t.csv"
    target.write_text("old\n")
    staged = Staged()
    staged.part(target, "(1 row)").write_text("new\n")
    assert target.read_text() == "old\n"
    staged.commit()
    assert target.read_text() == "new\n" and staged.said == [f"wrote {target} (1 row)"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]


def test_discarded_outputs_leave_the_old_files_and_no_parts(tmp_path: Path) -> None:
    target = tmp_path / "t.csv"
    target.write_text("old\n")
    staged = Staged()
    staged.part(target).write_text("new\n")
    staged.part(tmp_path / "new.csv").write_text("new\n")
    staged.discard()
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.csv"]


@pytest.mark.skipif(not Path("/dev/null").is_char_device(), reason="needs /dev/null")
def test_a_device_is_written_directly_not_renamed_over(tmp_path: Path) -> None:
    # Renaming over /dev/full (relia detect -o /dev/full, as root) replaced the device with a
    # plain file. A link to /dev/null stands for it here: the rename would replace the link.
    link = tmp_path / "o.csv"
    link.symlink_to("/dev/null")
    staged = Staged()
    assert staged.part(link) == link
    staged.commit()
    assert link.is_symlink() and Path("/dev/null").is_char_device()


def test_a_link_to_a_file_stays_a_link_and_its_file_is_replaced(tmp_path: Path) -> None:
    real = tmp_path / "real.csv"
    real.write_text("old\n")
    link = tmp_path / "o.csv"
    link.symlink_to(real)
    staged = Staged()
    staged.part(link).write_text("new\n")
    staged.commit()
    assert link.is_symlink() and real.read_text() == "new\n"
    assert staged.said == [f"wrote {link}"]


def test_a_failed_rename_names_the_target(tmp_path: Path) -> None:
    staged = Staged()
    staged.part(tmp_path / "t.csv").unlink()  # gone: nothing to rename
    with pytest.raises(DataError) as err:
        staged.commit()
    assert str(err.value) == f"{tmp_path / 't.csv'}: cannot write: No such file or directory"


def test_write_atomically_writes_into_a_fifo_and_leaves_it_a_fifo(tmp_path: Path) -> None:
    # `relia slo rules -o FIFO` renamed a plain file over the FIFO.
    fifo = tmp_path / "rules.fifo"
    os.mkfifo(fifo)
    fifo_copy = tmp_path / "same.fifo"  # a second name: the first may be renamed over
    os.link(fifo, fifo_copy)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    write_atomically(fifo, b"groups: []\n")
    reader.join(10)
    if reader.is_alive():  # the FIFO was renamed over: let the waiting reader go
        fd = os.open(fifo_copy, os.O_WRONLY | os.O_NONBLOCK)
        os.close(fd)
    assert got == [b"groups: []\n"] and fifo.is_fifo()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rules.fifo", "same.fifo"]


def test_write_atomically_follows_a_link_and_replaces_its_file(tmp_path: Path) -> None:
    real = tmp_path / "target.yml"
    real.write_text("old\n")
    link = tmp_path / "link.yml"
    link.symlink_to(real.name)
    write_atomically(link, b"new\n")
    assert link.is_symlink() and real.read_text() == "new\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.yml", "target.yml"]


def test_a_link_planted_at_the_temporary_name_is_not_written_through(tmp_path: Path) -> None:
    # The temporary names were .NAME.PID.tmp and .STEM.PID.relia-partSUFFIX: another user of a
    # shared folder could plant a link there and have relia overwrite the file it names.
    victim = tmp_path / "victim.txt"
    victim.write_text("untouched\n")
    pid = os.getpid()
    (tmp_path / f".rules.yml.{pid}.tmp").symlink_to(victim)
    (tmp_path / f".scored.{pid}.relia-part.csv").symlink_to(victim)
    out = tmp_path / "rules.yml"
    write_atomically(out, b"relia output\n")
    staged = Staged()
    staged.part(tmp_path / "scored.csv").write_text("t,v\n")
    staged.commit()
    assert victim.read_text() == "untouched\n"
    for written, text in ((out, "relia output\n"), (tmp_path / "scored.csv", "t,v\n")):
        assert written.read_text() == text and not written.is_symlink() and written.is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if not p.is_symlink()) == [
        "rules.yml",
        "scored.csv",
        "victim.txt",
    ]


def test_a_replaced_output_keeps_its_mode_and_a_new_one_follows_the_umask(tmp_path: Path) -> None:
    # The new file was made with the umask's mode, so a 0600 output became world-readable.
    private = tmp_path / "private.yml"
    private.write_text("old\n")
    private.chmod(0o600)
    shared = tmp_path / "shared.csv"
    shared.write_text("old\n")
    shared.chmod(0o640)
    write_atomically(private, b"new\n")
    staged = Staged()
    staged.part(shared).write_text("new\n")
    staged.commit()
    old_mask = os.umask(0o027)
    try:
        write_atomically(tmp_path / "new.yml", b"new\n")
    finally:
        os.umask(old_mask)
    assert private.stat().st_mode & 0o777 == 0o600
    assert shared.stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "new.yml").stat().st_mode & 0o777 == 0o640


def test_an_output_name_that_ends_in_a_slash_is_refused(tmp_path: Path) -> None:
    assert output_path(str(tmp_path / "o.yml"), "--out") == tmp_path / "o.yml"
    with pytest.raises(DataError) as err:
        output_path(f"{tmp_path / 'o.yml'}/", "--out")
    assert (
        str(err.value) == f"--out: names a directory ({tmp_path / 'o.yml'}/); --out writes one file"
    )


def test_an_output_place_that_cannot_be_looked_at_is_one_data_error(tmp_path: Path) -> None:
    # is_dir() lets ENAMETOOLONG through (Python 3.11): a 300-character name was a traceback.
    from relia._cliutil import check_output_place

    long = tmp_path / ("a" * 300 + ".png")
    with pytest.raises(DataError) as err:
        check_output_place(long, "cannot write plot")
    assert str(err.value) == f"{long}: cannot write plot: File name too long"
    deep = tmp_path / ("b" * 300) / "p.png"
    with pytest.raises(DataError) as err:
        check_output_place(deep, "cannot write")
    assert str(err.value) == f"{deep}: cannot write: File name too long"


def test_logs_templates_plot_with_a_name_too_long_is_exit_2(tmp_path: Path) -> None:
    # relia logs templates checks its outputs through check_output_place (above).
    from typer.testing import CliRunner

    from relia.cli import app

    log = tmp_path / "a.log"
    log.write_text("2024-01-01 10:00:00 INFO started\n")
    plot = tmp_path / ("a" * 300 + ".png")
    res = CliRunner().invoke(app, ["logs", "templates", str(log), "--plot", str(plot)])
    assert res.exit_code == 2
    assert res.stderr == f"relia: error: {plot}: cannot write plot: File name too long\n"
