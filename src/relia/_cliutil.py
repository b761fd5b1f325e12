"""What every ``relia`` command shares: the stderr console and the user-error wrapper.

Kept apart from :mod:`relia.cli` so that command groups in other packages (``relia.slo.cli``) can
use them without importing the whole CLI.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import os
import re
import stat
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, ParamSpec, TypeVar

import typer
from rich.console import Console

from relia._urls import http_url_problem
from relia.errors import ConfigError, DataError, ReliaError

__all__ = [
    "Staged",
    "check_output_place",
    "check_url",
    "count_of",
    "err_console",
    "output_path",
    "same_file",
    "stdout_console",
    "to_stdout",
    "unwrap_help",
    "user_errors",
    "write_atomically",
    "writing",
]

# Not a terminal (a pipe, a CI log): rich would wrap tables at 80 columns.
err_console = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 160)

P = ParamSpec("P")
R = TypeVar("R")


def _stdout_gone() -> NoReturn:
    """Standard output is a closed pipe (``| head``): end the run quietly with exit code 0."""
    # Python would complain again when it flushes stdout at exit.
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    raise typer.Exit(0) from None


def user_errors(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn a ReliaError into one line on stderr (``relia: error: …``) and exit code 2; a closed
    standard output pipe (``| head``, whatever wrote to it: echo, print, a rich Console) ends the
    run quietly with exit code 0."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            result = fn(*args, **kwargs)
            sys.stdout.flush()  # a closed pipe shows here, not at exit
            return result
        except BrokenPipeError:
            _stdout_gone()
        except ReliaError as exc:
            for line in str(exc).splitlines() or [type(exc).__name__]:
                err_console.print(f"relia: error: {line}", markup=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper


def same_file(a: Path, b: Path) -> bool:
    """Whether two paths name one file (also through links): an output must not be an input."""
    try:
        return os.path.samefile(a, b) if a.exists() and b.exists() else a.resolve() == b.resolve()
    except OSError:
        return False


def check_url(url: str, option: str) -> None:
    """Refuse, naming ``option``, a URL no request can be sent to (``http_url_problem``)."""
    problem = http_url_problem(url)
    if problem is not None:
        raise ConfigError(problem, where=option)


def _new_file_beside(target: Path, prefix: str, suffix: str) -> tuple[int, Path]:
    """A new empty file beside ``target`` for its next content, open for writing: its fd and
    path. The name is random and the file made with O_EXCL (``mkstemp``), so a link planted at
    a guessable name (in a shared folder) is never written through; it gets the mode
    ``target`` has, or a new file would get, so a 0600 output stays 0600 once replaced."""
    import tempfile

    try:
        mode = stat.S_IMODE(target.stat().st_mode)
    except OSError:
        mode = 0o666 & ~_umask()
    fd, name = tempfile.mkstemp(prefix=prefix, suffix=suffix, dir=target.parent)
    try:
        os.fchmod(fd, mode)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(name)
        raise
    return fd, Path(name)


def _umask() -> int:
    """The process's umask, read without changing it where Linux tells it (another thread
    creating a file meanwhile would get the wrong mode)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path`` and rename it over ``path``: a run that
    fails part-way (a full disk) leaves the old file whole, never a cut-off one. Raises OSError.

    As :meth:`Staged.part`: a target that exists and is not a regular file (a FIFO, a device) is
    written directly, and a link is followed (the file it names is replaced, the link stays)."""
    try:
        mode: int | None = path.stat().st_mode
    except OSError:
        mode = None
    if mode is not None and not stat.S_ISREG(mode):
        with path.open("wb") as fh:
            fh.write(data)
        return
    path = path.resolve() if path.is_symlink() else path
    fd, tmp = _new_file_beside(path, f".{path.name}.", ".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


class Staged:
    """Outputs written to temporary files beside their targets, renamed over them at the end.

    A target that exists and is not a regular file (``/dev/null``, a FIFO, a terminal) is written
    directly: renaming over it would replace the device node with a plain file.
    """

    def __init__(self) -> None:
        self.parts: list[tuple[Path, Path]] = []
        #: What to say once committed: ``wrote TARGET ...``, one line per output.
        self.said: list[str] = []

    def part(self, target: Path, note: str = "") -> Path:
        """The file to write ``target``'s content to (a temporary one beside it, same suffix)."""
        self.said.append(f"wrote {target} {note}".rstrip())
        try:
            mode = target.stat().st_mode
        except OSError:
            mode = None
        if mode is not None and not stat.S_ISREG(mode):
            return target
        # A link is followed: the file it names is replaced and the link stays a link.
        real = target.resolve() if target.is_symlink() else target
        fd, part = _new_file_beside(real, f".{real.stem}.", f".relia-part{real.suffix}")
        os.close(fd)  # the writers (Polars, the plotters) open it by name
        self.parts.append((part, real))
        return part

    def commit(self) -> None:
        for part, target in self.parts:
            with writing(target):
                os.replace(part, target)
        self.parts = []

    def discard(self) -> None:
        for part, _ in self.parts:
            with contextlib.suppress(OSError):
                part.unlink(missing_ok=True)
        self.parts = []


@contextlib.contextmanager
def writing(target: Path, what: str = "cannot write") -> Iterator[None]:
    """An OSError while writing ``target`` as one line naming it (Polars' have no strerror)."""
    try:
        yield
    except BrokenPipeError:
        raise  # a closed pipe ends the run quietly (user_errors), it is not a failed write
    except OSError as exc:
        why = exc.strerror or str(exc).strip() or type(exc).__name__
        raise DataError(f"{what}: {why}", where=str(target)) from None


def to_stdout(text: str) -> None:
    """Write to standard output; a closed pipe (``| head``) ends the run quietly, any other
    failure (a full disk behind a redirect) is one line."""
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        _stdout_gone()
    except OSError as exc:
        raise DataError(f"cannot write: {exc.strerror or exc}", where="standard output") from None


def output_path(arg: str | None, option: str) -> Path | None:
    """The file an output option names (take the option as ``str`` with ``metavar="PATH"``).
    Each is one file, so a name that ends in a slash (a folder) is refused: Path would drop the
    slash and write a file of that name."""
    if arg is None:
        return None
    if not arg.strip():
        raise DataError("must name a file, got an empty string", where=option)
    path = Path(arg)
    if arg.endswith(("/", os.sep)):
        if path.exists() and not path.is_dir():
            raise DataError("is a file, not a directory", where=str(path))  # as relia detect says
        raise DataError(f"names a directory ({arg}); {option} writes one file", where=option)
    return path


class _StdoutConsole(Console):
    def on_broken_pipe(self) -> None:
        # Rich's own exits 1; a closed pipe is how `| head` says it has seen enough.
        self.quiet = True
        _stdout_gone()


def stdout_console() -> Console:
    """A rich Console on standard output for tables; a closed pipe ends the run quietly with
    exit code 0, as :func:`to_stdout`. Not a terminal (a pipe, a test): 200 columns, as rich
    would wrap tables at 80."""
    return _StdoutConsole(highlight=False, width=None if sys.stdout.isatty() else 200)


def count_of(n: int, noun: str) -> str:
    """``1 point``, ``12,000 points``: a count for a message, with its noun's plural."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def check_output_place(path: Path, what: str) -> None:
    """Refuse before any work an output that is a folder, or whose folder is missing, with the
    message the write would give (``what``: e.g. ``cannot write plot``)."""
    try:
        if path.is_dir():
            raise DataError(f"{what}: Is a directory", where=str(path))
        if not path.parent.is_dir():
            raise DataError(f"{what}: No such file or directory", where=str(path))
    except OSError as exc:
        # is_dir() lets some errors through: a name too long, a parent folder not searchable.
        raise DataError(f"{what}: {exc.strerror or exc}", where=str(path)) from None


def _tidy_typer_help() -> None:
    """Two things Typer's (0.29) rich help gets wrong, put right for every command.

    - A flag (``--json``, ``--version``, ``--help``) takes no value, yet its type column read
      ``<bool>``, as if ``--json true`` were the way to give it (it is refused).
    - The usage line wrote a required argument as ``{files}...``; it is ``FILES...``, as Click
      writes it (an optional one ``[FILES]...``).
    """
    from typer.core import TyperArgument, TyperOption

    if getattr(TyperOption, "_relia_tidied", False):
        return
    shown_type = getattr(TyperOption, "display_type_rich", None)
    if shown_type is not None:

        def display_type_rich(self: TyperOption, ctx: Any) -> str | None:
            if self.is_flag and not self.count:
                return None
            return shown_type(self, ctx)  # type: ignore[no-any-return]

        TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]
    if hasattr(TyperArgument, "_usage_display_name"):

        def usage_name(self: TyperArgument) -> str:
            name = self.metavar or (self.name or "").upper()
            if not self.required:
                name = f"[{name}]"
            return name + ("..." if self.nargs != 1 else "")

        TyperArgument._usage_display_name = usage_name  # type: ignore[method-assign]
    TyperOption._relia_tidied = True  # type: ignore[attr-defined]


_tidy_typer_help()

# A line break inside a paragraph, unless the next line starts a list item.
_SOFT_BREAK = re.compile(r"(?<!\n)\n(?![\n\s]*[-*]\s)(?!\n)")


def _unwrapped(text: str) -> str:
    return _SOFT_BREAK.sub(" ", inspect.cleandoc(text))


def unwrap_help(app: typer.Typer) -> None:
    """Join the lines of every paragraph of the commands' help texts, in ``app`` and its groups.

    Typer's rich help keeps a docstring's single line breaks, so a paragraph wrapped at 100
    columns in the source came out as ragged half lines in an 80-column terminal (and in the
    command list). Blank lines and list items (``- ``, ``* ``) are kept.
    """
    for command in app.registered_commands:
        text = command.help if command.help is not None else inspect.getdoc(command.callback)
        if text:
            command.help = _unwrapped(text)
    for group in app.registered_groups:
        if group.help:
            group.help = _unwrapped(group.help)
        if group.typer_instance is not None:
            info = group.typer_instance.info
            if isinstance(info.help, str):
                info.help = _unwrapped(info.help)
            unwrap_help(group.typer_instance)
