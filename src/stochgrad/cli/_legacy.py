"""Transitional: the progress bar that ``stochgrad.cli.__getattr__`` still hands to the
applications not yet moved to :mod:`stochgrad.cli._kit` (delete with that ``__getattr__``).

The old code of ``stochgrad relax-toy`` and ``stochgrad discrete-vae`` that lived here is gone:
those commands are :mod:`stochgrad.cli.relax_toy` and :mod:`stochgrad.cli.discrete_vae`.
"""

from __future__ import annotations


def progress_bar(console):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    )
