"""The kit every ``stochgrad`` command is built from: one behaviour for the same thing.

- **Output folder**: :func:`add_output_options` gives a command ``--out DIR`` and ``--restart``;
  :func:`output` checks the folder is writable before any work, locks it against a second run,
  deletes the command's checkpoints on ``--restart``, and prints the paths written at the end
  (or, on Ctrl-C, where the finished work is kept).
- **Resume**: a command finds its checkpoint with :meth:`Output.checkpoint` and, when it loads
  one, says so with :meth:`Output.resumed` ("resumed from ...").
- **Errors**: :class:`UserError` (and the library's ``ValueError``s, file errors, bad
  checkpoints) become one line ``error: ...`` with exit status 2; ``--debug`` shows the
  traceback. See :func:`stochgrad.cli.main`.
- **Progress**: :func:`progress` is a context manager yielding an ``advance(n=1)`` callback, the
  ``progress=`` argument of the library's trainers and studies.
- **Parallel jobs**: :func:`add_chunk_timeout_option` gives ``--chunk-timeout SECONDS``;
  :func:`parallel_errors` turns a job past it, or a dead worker, into one ``error: ...`` line.
- **Tables and figures**: :func:`table` (rich, fitting :data:`WIDTH` columns), :func:`figure` and
  :func:`save_figure` (matplotlib's Agg backend, chosen once here), :func:`write_json`,
  :func:`write_csv` (cells a spreadsheet would run as formulas are escaped).
- **Help**: :class:`HelpFormatter` appends every option's default to its help.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from stochgrad._csv import csv_cell, csv_text, summarize_names
from stochgrad.checkpoint import OutputLock, save_json, write_text

__all__ = [
    "WIDTH",
    "HelpFormatter",
    "Output",
    "UserError",
    "add_chunk_timeout_option",
    "add_output_options",
    "csv_cell",
    "figure",
    "fmt",
    "fmt_rel",
    "make_console",
    "output",
    "parallel_errors",
    "progress",
    "save_figure",
    "summarize_names",
    "table",
    "write_csv",
    "write_json",
    "z_score",
    "z_style",
]

#: Tables and the console fit this many columns.
WIDTH = 100


class UserError(Exception):
    """A mistake in what the user asked for: printed as one line ``error: ...``, exit status 2."""


# ---------------------------------------------------------------------------------------------
# console, progress
# ---------------------------------------------------------------------------------------------
def make_console(stderr: bool = False) -> Console:
    """A console :data:`WIDTH` columns wide (narrower on a narrow terminal)."""
    width = WIDTH
    if sys.stdout.isatty():
        with contextlib.suppress(OSError):
            width = min(WIDTH, os.get_terminal_size().columns)
    return Console(highlight=False, emoji=False, width=width, stderr=stderr)


#: Called after every advance of every progress bar (tests use it to interrupt a command).
PROGRESS_HOOKS: list[Callable[[], None]] = []


@contextlib.contextmanager
def progress(console: Console, description: str, total: int | None) -> Iterator[Callable]:
    """A transient progress bar; yields ``advance(n: int = 1)`` to pass as ``progress=``.

    >>> with progress(make_console(), "work", total=3) as advance:
    ...     for _ in range(3):
    ...         advance()
    """
    bar = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
    with bar:
        task = bar.add_task(description, total=total)

        def advance(n: int | float = 1) -> None:
            bar.advance(task, n)
            for hook in PROGRESS_HOOKS:
                hook()

        yield advance


# ---------------------------------------------------------------------------------------------
# the output folder, resume and restart
# ---------------------------------------------------------------------------------------------
def add_output_options(
    parser: argparse.ArgumentParser, default: str, *, resumable: bool = True
) -> None:
    """``--out DIR`` (default ``default``) and, for a command with checkpoints, ``--restart``."""
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(default),
        metavar="DIR",
        help="folder for everything this command writes",
    )
    if resumable:
        parser.add_argument(
            "--restart",
            action="store_true",
            help="discard the checkpoint in --out and start afresh (the default resumes)",
        )


def check_writable(folder: Path) -> Path:
    """Create ``folder`` if needed and prove it writable with a probe file; else UserError."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--out {folder}: exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".stochgrad-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"--out {folder}: not writable ({exc.strerror or exc})") from None
    return folder


class Output:
    """The output folder of one run: files, checkpoints, and what was written.

    Made by :func:`output`; not constructed directly.
    """

    def __init__(self, folder: Path, console: Console, restart: bool):
        self.folder = folder
        self.console = console
        self.restart = restart
        self.written: list[Path] = []
        self.checkpoints: list[Path] = []
        self.resumed_from: Path | None = None

    def path(self, name: str) -> Path:
        """``folder / name``, recorded to be listed at the end if it exists by then."""
        p = self.folder / name
        if p not in self.written:
            self.written.append(p)
        return p

    def checkpoint(self, name: str) -> Path:
        """The path of a checkpoint; with ``--restart`` an existing one is deleted first."""
        p = self.folder / name
        if p not in self.checkpoints:
            self.checkpoints.append(p)
            if self.restart and p.exists():
                if p.is_dir():
                    import shutil

                    shutil.rmtree(p)
                else:
                    p.unlink()
                self.console.print(f"--restart: removed {p}", soft_wrap=True, markup=False)
        return p

    def resumed(self, path: Path, detail: str = "") -> None:
        """Print "resumed from PATH (detail)"."""
        self.resumed_from = Path(path)
        extra = f" ({detail})" if detail else ""
        self.console.print(f"resumed from {path}{extra}", soft_wrap=True, markup=False)

    def report(self) -> None:
        """Print the files written (those recorded with :meth:`path` that exist)."""
        paths = [p for p in self.written if p.exists()]
        paths += [p for p in self.checkpoints if p.exists() and p not in paths]
        if paths:
            self.console.print("written:")
            for p in paths:
                self.console.print(f"  {p}", soft_wrap=True, markup=False)


@contextlib.contextmanager
def output(args: argparse.Namespace, console: Console) -> Iterator[Output]:
    """Open ``args.out``: checked writable and locked before any work; report at the end.

    On Ctrl-C it prints where the finished work is kept before the interrupt goes on to
    :func:`stochgrad.cli.main` (exit status 130).
    """
    existed = Path(args.out).exists()
    folder = check_writable(args.out)
    out = Output(folder, console, bool(getattr(args, "restart", False)))
    try:
        with OutputLock(folder), _keep_on_interrupt(out, console):
            yield out
    except BaseException:
        if not existed:  # a run that failed before writing anything leaves no empty folder
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    out.report()


@contextlib.contextmanager
def _keep_on_interrupt(out: Output, console: Console) -> Iterator[None]:
    """On Ctrl-C, say where the finished work is kept (the interrupt goes on to ``main``)."""
    try:
        yield
    except KeyboardInterrupt:
        kept = [p for p in out.checkpoints if p.exists()]
        if kept:
            console.print(
                f"finished work is kept in {', '.join(map(str, kept))}; "
                "rerun the same command to resume",
                soft_wrap=True,
                markup=False,
            )
        raise


def add_chunk_timeout_option(parser: argparse.ArgumentParser, job: str = "chunk") -> None:
    """``--chunk-timeout SECONDS``: the most one parallel job may run (default: no limit)."""
    from stochgrad.cli.argtypes import positive_float

    parser.add_argument(
        "--chunk-timeout",
        type=positive_float,
        default=None,
        metavar="SECONDS",
        help=f"stop with an error when one {job} runs longer than this (default: no limit)",
    )


@contextlib.contextmanager
def parallel_errors(out: Output, size_hint: str = "a smaller --chunk-size") -> Iterator[None]:
    """A job past ``--chunk-timeout`` or a dead worker as one :class:`UserError` line that
    names the job, says where the finished work is kept and what to change."""
    from stochgrad.parallel import ChunkTimeout, WorkerCrashed

    try:
        yield
    except (ChunkTimeout, WorkerCrashed) as exc:
        kept = [str(p) for p in out.checkpoints if p.exists()]
        keep = f"; finished work is kept in {', '.join(kept)}" if kept else ""
        resume = " to resume" if kept else ""
        if isinstance(exc, ChunkTimeout):
            what = f"{exc} (--chunk-timeout {exc.limit:g}){keep}"
            fix = f"rerun with a larger --chunk-timeout or {size_hint}{resume}"
        else:
            what = f"{exc}{keep}"
            fix = f"rerun{resume} (with fewer workers if memory ran out)"
        raise UserError(f"{what}; {fix}") from None


# ---------------------------------------------------------------------------------------------
# numbers, tables, files, figures
# ---------------------------------------------------------------------------------------------
def fmt(value: float | None, digits: int = 4) -> str:
    """A number with ``digits`` significant digits (``—`` for None or NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.{digits}g}"


def fmt_rel(value: float) -> str:
    """A relative difference as a signed percentage."""
    return "—" if math.isnan(value) else f"{100.0 * value:+.2f}%"


def z_style(z: float) -> str:
    """Colour for a z-score: green within 3, yellow within 5, red beyond."""
    if math.isnan(z):
        return "dim"
    return "green" if abs(z) < 3 else ("yellow" if abs(z) < 5 else "red")


def z_score(measured: float, reference: float, se: float, floor: float = 1e-20) -> float:
    """``(measured - reference) / se``; ``nan`` when the reference is (numerically) zero."""
    if abs(reference) <= floor or se <= 0:
        return float("nan")
    return (measured - reference) / se


def table(
    title: str | None,
    columns: Sequence[str],
    *,
    caption: str | None = None,
    left: int = 1,
) -> Table:
    """A rich table: bold header, the first ``left`` columns left-aligned, the rest right."""
    t = Table(title=title, caption=caption, header_style="bold")
    for i, name in enumerate(columns):
        t.add_column(name, justify="left" if i < left else "right")
    return t


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as indented JSON, atomically (NaN written as null)."""
    save_json(_null_nan(data), path)
    return path


def _null_nan(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _null_nan(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_null_nan(v) for v in value]
    return value


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """Write a CSV atomically, text cells a spreadsheet would run as formulas escaped with a
    leading ``'`` (:func:`stochgrad._csv.csv_cell`, OWASP's CSV-injection guidance)."""
    write_text(path, csv_text(header, rows))
    return path


def figure(*args: Any, **kwargs: Any):
    """A ``matplotlib.figure.Figure`` (no pyplot, no display: the Agg backend, set here once)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(*args, **kwargs)


def save_figure(fig: Any, path: Path, dpi: int = 120) -> Path:
    """Save ``fig`` as PNG (by ``path``'s suffix) atomically."""
    suffix = Path(path).suffix.lstrip(".") or "png"
    buf = io.BytesIO()
    fig.savefig(buf, format=suffix, dpi=dpi)
    from stochgrad.checkpoint import atomic_write

    atomic_write(path, lambda fh: fh.write(buf.getvalue()))
    return path


# ---------------------------------------------------------------------------------------------
# help
# ---------------------------------------------------------------------------------------------
class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions as written and appends ``(default: X)`` to every option's help that
    does not already state its default."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (
            "default" in text
            or action.default is None
            or action.default is False
            or action.default is argparse.SUPPRESS
            or isinstance(action, (argparse._HelpAction, argparse._VersionAction))
            or not action.option_strings
        ):
            return text
        default = action.default
        if isinstance(default, (list, tuple)):
            default = ",".join(str(v) for v in default)
        return f"{text} (default: {str(default).replace('%', '%%')})"
