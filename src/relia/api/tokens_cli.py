"""``relia token …``: create API tokens and hash existing ones.

The token is printed once and never stored by relia: the configuration keeps its SHA-256 only
(``api.tokens``). Kept free of FastAPI imports so the CLI starts fast.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import sys
from typing import Annotated, Literal

import typer

from relia._cliutil import err_console, user_errors
from relia.errors import ConfigError, DataError

__all__ = ["token_app"]

token_app = typer.Typer(help="API tokens: create one, or hash one you have.", no_args_is_help=True)

# The same prefix as relia.api.auth.TOKEN_PREFIX (not imported: that module pulls in FastAPI).
_PREFIX = "relia_"
# \Z, not $: "$" also matches before a final newline, which would let "ci\n" through.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}\Z")


def _check_name(name: str) -> None:
    # Both commands print the name unquoted into a YAML entry to paste: only names that read
    # back as themselves get through ("x}" would break the file, "x, role: admin" read as "x").
    if not _NAME.match(name):
        raise ConfigError(
            "use 1 to 100 letters, digits and _ . @ - (starting with a letter or digit)",
            where="--name",
        )


def _entry(name: str, role: str, digest: str) -> str:
    # Quoted: a hash of digits only would be read as a YAML number.
    return f'  - {{name: {name}, role: {role}, sha256: "{digest}"}}'


@token_app.command("create")
@user_errors
def create(
    name: Annotated[
        str, typer.Option("--name", help="what logs and errors call the token: who holds it")
    ],
    role: Annotated[
        Literal["read", "ingest", "admin"],
        typer.Option("--role", help="read: GET the API; ingest: remote-write; admin: everything"),
    ] = "read",
) -> None:
    """Print a new random token (once) and the api.tokens entry to paste into relia.yaml."""
    _check_name(name)
    token = _PREFIX + secrets.token_urlsafe(32)  # 256 random bits
    digest = hashlib.sha256(token.encode("utf-8")).hexdigest()
    # The token goes to stdout alone on its line (scripts can capture it); the guidance to stderr.
    err_console.print(f"New {role} token {name!r}: shown once, store it now.", markup=False)
    print(token)
    err_console.print("Add to relia.yaml (only the hash goes in the file):", markup=False)
    # soft_wrap: the entry stays on one line to paste, whatever the terminal's width.
    err_console.print(
        f"api:\n  tokens:\n{_entry(name, role, digest)}", markup=False, soft_wrap=True
    )


@token_app.command("hash")
@user_errors
def hash_(
    name: Annotated[str, typer.Option("--name", help="name for the printed entry")] = "NAME",
    role: Annotated[
        Literal["read", "ingest", "admin"], typer.Option("--role", help="role for the entry")
    ] = "read",
) -> None:
    """Read a token from stdin (never from the command line: shell history, ps) and print its
    api.tokens entry."""
    _check_name(name)
    token = sys.stdin.buffer.readline().strip()
    if not token:
        raise DataError("no token on stdin", where="stdin")
    if not (token.isascii() and token.decode("ascii").isprintable()):
        # A header carries ASCII: a token outside it could never be presented, so never match.
        raise DataError("a token is printable ASCII (it goes in an HTTP header)", where="stdin")
    digest = hashlib.sha256(token).hexdigest()
    print(_entry(name, role, digest).strip().removeprefix("- "))
