"""A real PostgreSQL server on loopback for tests (Debian's ``postgresql`` package).

Fixtures:

- ``postgres_server`` (session): a throw-away cluster (``initdb`` into a temporary directory,
  ``fsync`` off) listening on 127.0.0.1 on a free port. ``.dsn()`` is the connection string of its
  ``postgres`` database, ``.create_database()`` makes a fresh empty one and returns its DSN,
  ``.stop()`` / ``.start()`` stop and restart the server on the same port and data.
- ``postgres_dsn`` (per test): the DSN of a fresh, empty database on that server, dropped after.

The server binaries are looked up on PATH, then in ``/usr/lib/postgresql/<version>/bin`` (where
Debian puts them). PostgreSQL refuses to run as root, so under root the cluster belongs to the
``postgres`` user that the package creates. Without the binaries (or psycopg) the tests fail when
``CI`` is set and are skipped otherwise.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["PostgresServer", "postgres_dsn", "postgres_server"]


def _missing(msg: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def _bindir() -> Path | None:
    on_path = shutil.which("postgres")
    if on_path and shutil.which("initdb"):
        return Path(on_path).parent
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/postgres"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    return Path(candidates[-1]).parent if candidates else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PostgresServer:
    """One PostgreSQL cluster in ``root`` (see the module docstring)."""

    def __init__(self, bindir: Path, root: Path) -> None:
        self.bindir = bindir
        self.root = root
        self.data = root / "data"
        self.log = root / "postgres.log"
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None
        # PostgreSQL refuses to run as root: under root, run it as the package's postgres user.
        self._user: str | None = None
        if os.geteuid() == 0:
            self._user = "postgres"
            entry = pwd.getpwnam(self._user)
            os.chown(root, entry.pw_uid, entry.pw_gid)
        self._run(
            [
                str(bindir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "--no-sync",
            ]
        )

    def _run(self, argv: list[str]) -> None:
        result = subprocess.run(argv, capture_output=True, user=self._user, cwd=self.root)
        if result.returncode != 0:
            raise RuntimeError(
                f"{argv[0]} failed ({result.returncode}): "
                f"{result.stderr.decode(errors='replace')[-2000:]}"
            )

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def dsn(self, dbname: str = "postgres") -> str:
        """The connection string of ``dbname`` on this server."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the server (on the port of the first start, if any) and wait until it accepts
        connections."""
        if self.running:
            return
        for _attempt in range(3):
            port = self.port or _free_port()
            with self.log.open("ab") as out:
                self._proc = subprocess.Popen(
                    [
                        str(self.bindir / "postgres"),
                        "-D",
                        str(self.data),
                        "-h",
                        "127.0.0.1",
                        "-p",
                        str(port),
                        "-k",
                        str(self.root),  # the Unix socket lives with the cluster, not /run
                        "-c",
                        "fsync=off",
                        "-c",
                        "synchronous_commit=off",
                        "-c",
                        "full_page_writes=off",
                        "-c",
                        "max_connections=200",
                        "-c",
                        "shared_buffers=128MB",
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    user=self._user,
                    cwd=self.root,
                )
            if self._wait_ready(port, time.monotonic() + timeout_s):
                self.port = port
                return
            self._terminate()
            tail = self.log.read_text(errors="replace")[-2000:]
            if self.port or "already in use" not in tail:
                raise RuntimeError(f"postgres did not start on port {port}:\n{tail}")
        raise RuntimeError("postgres found no free port in 3 attempts")

    def _wait_ready(self, port: int, deadline: float) -> bool:
        import psycopg

        while time.monotonic() < deadline:
            if self._proc is None or self._proc.poll() is not None:
                return False
            try:
                with psycopg.connect(
                    f"postgresql://postgres@127.0.0.1:{port}/postgres", connect_timeout=2
                ):
                    return True
            except psycopg.OperationalError:
                time.sleep(0.05)
        return False

    def create_database(self) -> str:
        """A fresh empty database; returns its DSN."""
        import psycopg

        name = f"relia_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def drop_database(self, dsn: str) -> None:
        """Drop a database made by :meth:`create_database`, closing its connections first."""
        import psycopg

        name = dsn.rsplit("/", 1)[1]
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def stop(self) -> None:
        """Stop the server (fast shutdown); data stays for :meth:`start`."""
        self._terminate()

    def _terminate(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(2)  # SIGINT: fast shutdown, rolls back open transactions
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _missing("psycopg is not installed: pip install -e '.[test]'")
    bindir = _bindir()
    if bindir is None:
        _missing("the PostgreSQL server is not installed: sudo apt-get install -y postgresql")
    assert bindir is not None
    root = Path(tempfile.mkdtemp(prefix="relia-pg-"))
    server = PostgresServer(bindir, root)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        with contextlib.suppress(OSError):
            shutil.rmtree(root)


@pytest.fixture
def postgres_dsn(postgres_server: PostgresServer) -> Iterator[str]:
    if not postgres_server.running:  # a test stopped it and failed before starting it again
        postgres_server.start()
    dsn = postgres_server.create_database()
    try:
        yield dsn
    finally:
        if postgres_server.running:
            postgres_server.drop_database(dsn)
