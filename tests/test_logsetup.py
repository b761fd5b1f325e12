from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from relia._logsetup import configure_logging
from relia.cli import app

runner = CliRunner()


def test_info_lines_of_relia_reach_stderr_with_utc_time(capsys: pytest.CaptureFixture[str]) -> None:
    # Without a handler Python prints only warnings: a log sink's notifications went nowhere.
    configure_logging("info")
    configure_logging("info")  # again: still one line per record
    logging.getLogger("relia.notify.sinks").info("relia incident %s", '{"id": 1}')
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1
    assert re.fullmatch(
        r'\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ INFO relia\.notify\.sinks: relia incident \{"id": 1\}',
        lines[0],
    )


def test_warning_level_keeps_info_lines_out(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("warning")
    logging.getLogger("relia.up").info("retention: 3 rows")
    logging.getLogger("relia.up").warning("store away")
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize(("setting", "shown"), [(None, True), ("warning", False)])
def test_relia_up_writes_info_lines_at_the_configured_level(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, setting: str | None, shown: bool
) -> None:
    import relia.engine.up

    def run_up(*args: object, **kwargs: object) -> int:
        logging.getLogger("relia.notify.sinks").info("relia incident {}")
        return 0

    monkeypatch.setattr(relia.engine.up, "run_up", run_up)
    path = tmp_path / "relia.yaml"
    level = f"log_level: {setting}\n" if setting else ""
    path.write_text(f"data_dir: {tmp_path / 'd'}\napi: {{port: 0}}\n{level}")
    result = runner.invoke(app, ["up", "-c", str(path)])
    assert result.exit_code == 0, result.output
    assert ("INFO relia.notify.sinks: relia incident {}" in result.stderr) is shown


def test_log_level_takes_the_four_levels_only(tmp_path: Path) -> None:
    path = tmp_path / "relia.yaml"
    path.write_text("log_level: loud\n")
    result = runner.invoke(app, ["config", "check", str(path)])
    assert result.exit_code == 2
    assert f"{path}:1: log_level:" in result.stderr
