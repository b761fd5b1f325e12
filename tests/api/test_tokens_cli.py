from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from relia.api.auth import TOKEN_PREFIX, AuthConfig, Role
from relia.cli import app
from relia.config import load_config
from tests.closed_pipe import run_into_closed_pipe

runner = CliRunner()


def test_create_prints_a_token_once_and_an_entry_that_loads(tmp_path: Path) -> None:
    result = runner.invoke(app, ["token", "create", "--name", "ci-push", "--role", "ingest"])
    assert result.exit_code == 0, result.output
    token = result.stdout.strip()
    assert token.startswith(TOKEN_PREFIX) and "\n" not in token  # alone on stdout
    assert token not in result.stderr
    # The guidance on stderr is a YAML block to paste: it loads and accepts the token.
    snippet = result.stderr[result.stderr.index("api:") :]
    path = tmp_path / "relia.yaml"
    path.write_text(snippet)
    auth = AuthConfig.from_api_config(load_config(path, environ={}).api)
    assert auth is not None
    entry = auth.identify(token)
    assert entry is not None and entry.name == "ci-push" and entry.role is Role.INGEST
    again = runner.invoke(app, ["token", "create", "--name", "ci-push"])
    assert again.stdout.strip() != token


def test_create_rejects_bad_names_and_roles() -> None:
    bad = runner.invoke(app, ["token", "create", "--name", "a b", "--role", "read"])
    assert bad.exit_code == 2 and "relia: error: --name:" in bad.stderr
    assert runner.invoke(app, ["token", "create", "--name", "x", "--role", "root"]).exit_code == 2


def test_hash_reads_the_token_from_stdin(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["token", "hash", "--name", "old", "--role", "admin"], input="t0k\n"
    )
    assert result.exit_code == 0, result.output
    path = tmp_path / "relia.yaml"
    path.write_text("api:\n  tokens:\n  - " + result.stdout)
    auth = AuthConfig.from_api_config(load_config(path, environ={}).api)
    assert auth is not None and auth.identify("t0k") is not None
    empty = runner.invoke(app, ["token", "hash"], input="")
    assert empty.exit_code == 2 and "no token on stdin" in empty.stderr


def test_create_rejects_a_name_with_a_trailing_newline() -> None:
    # "$" in a regex also matches before a final newline; the name must end where the text does.
    bad = runner.invoke(app, ["token", "create", "--name", "ci\n"])
    assert bad.exit_code == 2 and "relia: error: --name:" in bad.stderr
    assert bad.stdout == ""  # no token was made


def test_hash_rejects_a_name_that_would_not_paste_back() -> None:
    # The entry is pasted into YAML as is: "x}" breaks the file, "x, role: admin" reads as the
    # name "x", and "" as no name at all. The same names as `create` are refused up front.
    for name in ("x}", "x, role: admin", "", "ci\n"):
        bad = runner.invoke(app, ["token", "hash", "--name", name], input="t0k\n")
        assert bad.exit_code == 2 and "relia: error: --name:" in bad.stderr, name
        assert bad.stdout == ""


def test_a_token_is_the_prefix_and_256_random_bits() -> None:
    result = runner.invoke(app, ["token", "create", "--name", "ci"])
    token = result.stdout.strip()
    # 32 bytes in URL-safe base64 without padding: 43 characters.
    assert len(token) == len(TOKEN_PREFIX) + 43, token


def test_the_role_is_read_unless_asked_and_hash_names_the_entry_name() -> None:
    created = runner.invoke(app, ["token", "create", "--name", "ci"])
    assert created.exit_code == 0, created.output
    assert "New read token 'ci'" in created.stderr and "role: read," in created.stderr
    hashed = runner.invoke(app, ["token", "hash"], input="t0k\n")
    assert hashed.exit_code == 0, hashed.output
    assert hashed.stdout.startswith("{name: NAME, role: read, sha256: ")


def test_names_are_1_to_100_of_the_allowed_characters_starting_with_a_letter_or_digit() -> None:
    for good in ("a" * 100, "7", "x@y.z-1_2"):
        ok = runner.invoke(app, ["token", "create", "--name", good])
        assert ok.exit_code == 0, (good, ok.output)
    for bad_name in ("a" * 101, "_x", "-x", "a/b"):
        bad = runner.invoke(app, ["token", "create", f"--name={bad_name}"])
        assert bad.exit_code == 2 and "relia: error: --name:" in bad.stderr, bad_name


def test_hash_ignores_the_line_end_of_a_token_file_written_on_windows() -> None:
    unix = runner.invoke(app, ["token", "hash"], input="t0k\n")
    windows = runner.invoke(app, ["token", "hash"], input="t0k\r\n")
    assert windows.exit_code == 0 and windows.stdout == unix.stdout


def test_create_prints_the_entry_on_one_line_however_long() -> None:
    # docs/security.md shows the entry on one line; the console wrapped it at its width (160
    # when not a terminal, the terminal's otherwise: 80 columns split every entry).
    name = "n" * 100
    result = runner.invoke(app, ["token", "create", "--name", name, "--role", "admin"])
    assert result.exit_code == 0, result.output
    (line,) = [s for s in result.stderr.splitlines() if "sha256" in s]
    assert line.startswith(f"  - {{name: {name}, role: admin, sha256: ")
    assert line.endswith('"}')


@pytest.mark.parametrize("token", [b"\xff\xfe\xfa\n", "tøken\n".encode(), b"t0k\x1b[2J\n"])
def test_hash_refuses_a_token_no_http_header_can_carry(token: bytes) -> None:
    result = runner.invoke(app, ["token", "hash"], input=token)
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit), result.exception
    assert (
        result.stderr
        == "relia: error: stdin: a token is printable ASCII (it goes in an HTTP header)\n"
    )
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("args", "stdin"),
    [(["token", "create", "--name", "ci"], None), (["token", "hash"], b"relia_abc\n")],
)
def test_a_closed_stdout_pipe_ends_the_run_quietly_with_0(
    args: list[str], stdin: bytes | None
) -> None:
    # `relia token hash < t | true` exited 1 (print's buffer met the closed pipe at exit).
    r = run_into_closed_pipe(*args, stdin=stdin)
    assert r.returncode == 0, r.stderr
    assert b"Traceback" not in r.stderr and b"Exception" not in r.stderr
