"""Addresses that cannot work are refused before ``ray.init`` (which retried a closed port for
minutes), and Ray's own log lines stay off the terminal of a CLI run."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from relia.cli import app
from relia.engine import _rayutil
from relia.engine._rayutil import check_ray_address, init_address, quiet_ray_logs
from relia.errors import ConfigError


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_a_closed_port_is_refused_at_once_naming_the_option() -> None:
    port = _closed_port()
    start = time.monotonic()
    with pytest.raises(ConfigError) as info:
        check_ray_address(f"127.0.0.1:{port}", "--ray-address")
    assert time.monotonic() - start < 5
    assert str(info.value).startswith(
        f"--ray-address: cannot connect to Ray at 127.0.0.1:{port}: connection refused"
    )
    assert "\n" not in str(info.value)


def test_an_open_port_and_other_forms_go_to_ray() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        check_ray_address(f"127.0.0.1:{s.getsockname()[1]}", "--ray-address")
    for address in (None, "auto", "local", "bogus::"):
        check_ray_address(address, "--ray-address")


@pytest.mark.parametrize("address", ["127.0.0.1:0", "h:65536", "127.0.0.1:99999"])
def test_a_port_out_of_range_is_refused_not_retried_by_ray(address: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_ray_address(address, "--ray-address")
    assert str(info.value) == f"--ray-address: {address}: port must be 1-65535"


def test_an_http_address_is_refused_in_one_whole_sentence() -> None:
    # Ray's own message was cut off at "either:" and spoke of a RAY_ADDRESS nobody set.
    with pytest.raises(ConfigError) as info:
        check_ray_address("http://127.0.0.1:1", "--ray-address")
    assert str(info.value) == (
        "--ray-address: http://127.0.0.1:1: not a Ray address: give host:6379 (the GCS) "
        "or ray://host:10001"
    )


def test_auto_checks_the_ray_address_variable_it_would_join(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port = _closed_port()
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
    with pytest.raises(ConfigError) as info:
        check_ray_address("auto", "engine.ray_address")
    assert str(info.value) == (
        f"engine.ray_address: cannot connect to Ray at 127.0.0.1:{port} "
        "(auto: from RAY_ADDRESS): connection refused"
    )
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:99999")
    with pytest.raises(ConfigError, match=r"99999 \(auto: from RAY_ADDRESS\): port must be"):
        check_ray_address("auto", "engine.ray_address")
    # Unset, relia starts a Ray of its own: the variable is not used, so not checked.
    check_ray_address(None, "engine.ray_address")
    assert init_address(None) == "local" and init_address("auto") == "auto"


def test_ray_client_without_its_extra_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_rayutil, "_has_ray_client", lambda: False)
    with pytest.raises(ConfigError, match=r"^engine.ray_address: ray://h:10001: .*ray\[client\]"):
        check_ray_address("ray://h:10001", "engine.ray_address")
    monkeypatch.setattr(_rayutil, "_has_ray_client", lambda: True)
    check_ray_address("ray://h:10001", "engine.ray_address")


def test_ray_warnings_are_kept_quiet_while_it_starts(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("ray")
    before = logger.level
    with caplog.at_level(logging.WARNING), quiet_ray_logs():
        logger.warning("Token authentication is enabled for this Ray cluster.")
    assert "Token" not in caplog.text
    assert logger.level == before


def test_detect_with_a_closed_ray_address_exits_2_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ray = pytest.importorskip("ray")
    # As in a fresh `relia detect` process (another test may have started Ray in this one).
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.csv").write_text("timestamp,value\n1,1\n2,2\n")
    port = _closed_port()
    args = ["detect", str(folder), "--out", str(tmp_path / "out"), "--executor", "ray"]
    start = time.monotonic()
    result = CliRunner().invoke(app, [*args, "--ray-address", f"127.0.0.1:{port}"])
    assert time.monotonic() - start < 10
    assert result.exit_code == 2
    assert result.stderr == (
        f"relia: error: --ray-address: cannot connect to Ray at 127.0.0.1:{port}: "
        "connection refused\n"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("address", "problem"),
    [
        ("127.0.0.1:99999", "port must be 1-65535"),
        ("http://127.0.0.1:1", "not a Ray address: give host:6379 (the GCS) or ray://host:10001"),
    ],
)
def test_detect_with_an_address_ray_would_retry_exits_2_with_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, address: str, problem: str
) -> None:
    ray = pytest.importorskip("ray")
    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.csv").write_text("timestamp,value\n1,1\n2,2\n")
    args = ["detect", str(folder), "--out", str(tmp_path / "out"), "--executor", "ray"]
    result = CliRunner().invoke(app, [*args, "--ray-address", address])
    assert result.exit_code == 2
    assert result.stderr == f"relia: error: --ray-address: {address}: {problem}\n"


@pytest.mark.slow
@pytest.mark.integration
def test_without_an_address_detect_starts_its_own_ray_whatever_ray_address_says(
    tmp_path: Path,
) -> None:
    # RAY_ADDRESS (or a stale `ray start` file) was joined, and a closed one retried for minutes.
    pytest.importorskip("ray")
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.csv").write_text("timestamp,value\n1,1\n2,2\n3,2\n")
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "RAY_ADDRESS": f"127.0.0.1:{_closed_port()}",
    }
    args = ["detect", str(folder), "--out", str(tmp_path / "o"), "--executor", "ray"]
    proc = subprocess.run(
        [sys.executable, "-m", "relia", *args, "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o" / "a.csv").is_file()


@pytest.mark.slow
@pytest.mark.integration
def test_a_failing_ray_run_prints_one_line_not_rays_warnings(tmp_path: Path) -> None:
    # A Ray of its own (a child process): Ray's token-authentication notice came before the
    # error on stderr.
    pytest.importorskip("ray")
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.csv").write_text("timestamp,value\n1,1\n2,2\n")
    (folder / "b_bad.csv").write_text("timestamp,value\n1,1\nfoo,2\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    args = ["detect", str(folder), "--out", str(tmp_path / "o"), "--executor", "ray"]
    proc = subprocess.run(
        [sys.executable, "-m", "relia", *args, "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("relia: error:"), proc.stderr
