"""The scaffold every study runs on: a grid of cells, each run once, checkpointed, resumable.

A study is a grid of *cells* (estimator × seed, function × k, setting × replicate, ...), each
identified by a key tuple of strings and ints. :func:`run_grid` runs the cells that a checkpoint
does not already hold, saves each finished cell at once (and, for a long cell, its mid-run
state through the ``save`` callback it is given), and reports progress; an interrupted study
loses no finished work, and a rerun continues where it stopped. The random stream of a cell
comes from :func:`cell_generator` (or :func:`stream_generator` by name), so a cell's numbers
do not depend on which cells ran before it, nor on whether the study was resumed.

Examples:
    >>> import dataclasses
    >>> @dataclasses.dataclass
    ... class Square:
    ...     value: int
    ...     def to_state(self): return {"value": self.value}
    ...     @classmethod
    ...     def from_state(cls, s): return cls(int(s["value"]))
    >>> grid = run_grid([("a", 2), ("b", 3)], lambda key, state, save: Square(key[1] ** 2),
    ...                 config={"power": 2}, result_type=Square)
    >>> [r.value for r in grid.results.values()]
    [4, 9]
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import torch

from stochgrad.checkpoint import RunCheckpoint

__all__ = ["Grid", "cell_generator", "relative_difference", "run_grid", "stream_generator"]

R = TypeVar("R")
Key = tuple[Any, ...]


def cell_generator(seed: int, *index: int) -> torch.Generator:
    """A generator for one cell of a study, independent of the others and reproducible.

    >>> a = torch.rand(2, generator=cell_generator(0, 1, 2))
    >>> b = torch.rand(2, generator=cell_generator(0, 1, 2))
    >>> bool((a == b).all())
    True
    """
    words = np.random.SeedSequence([int(seed), *map(int, index)]).generate_state(2, np.uint32)
    return torch.Generator().manual_seed(int(words[0]) << 31 | int(words[1]) >> 1)


def stream_generator(seed: int, *names: str) -> torch.Generator:
    """:func:`cell_generator` indexed by names (an estimator, a purpose) instead of numbers.

    >>> a = torch.rand(1, generator=stream_generator(0, "disarm", "train"))
    >>> b = torch.rand(1, generator=stream_generator(0, "disarm", "probe"))
    >>> bool(a != b)
    True
    """
    return cell_generator(seed, *(zlib.crc32(n.encode()) for n in names))


def relative_difference(measured: float, reference: float) -> float:
    """``(measured - reference) / |reference|``; ``nan`` when the reference is 0."""
    if reference == 0:
        return float("nan")
    return (measured - reference) / abs(reference)


@dataclass
class Grid(Generic[R]):
    """The outcome of :func:`run_grid`.

    Attributes:
        config: the settings every cell shared.
        keys: the cells, in the order given.
        results: ``key -> result`` for every cell.
        resumed: cells loaded finished from the checkpoint.
        continued: cells continued from a mid-run state.
        seconds: wall time of the work done now.
    """

    config: Any
    keys: list[Key]
    results: dict[Key, R]
    resumed: int = 0
    continued: int = 0
    seconds: float = 0.0
    checkpoint: Path | None = field(default=None, repr=False)


def run_grid(
    keys: Sequence[Key],
    run_cell: Callable[[Key, dict[str, Any] | None, Callable[[dict[str, Any]], None]], R],
    *,
    config: Any,
    result_type: Any,
    checkpoint: str | Path | None = None,
    resume: bool = True,
    progress: Callable[..., None] | None = None,
    cell_units: Callable[[Key], int] | int = 1,
    on_result: Callable[[Key, R], None] | None = None,
    on_resume: Callable[[int, int], None] | None = None,
) -> Grid[R]:
    """Run every cell not already finished in ``checkpoint``; save each as it finishes.

    Args:
        keys: the cells (tuples of strings and ints), in the order to run them.
        run_cell: ``run_cell(key, state, save) -> result``. ``state`` is the cell's mid-run
            state from the checkpoint (``None`` for a fresh start); ``save(state)`` records a
            new mid-run state (tensors and plain values). A cell that is quick ignores both.
        config: the settings (a dataclass or a dict): stored in the checkpoint, and a
            checkpoint made with other settings is refused, naming what differs.
        result_type: the results' class, with ``to_state()`` and ``from_state(state)``.
        checkpoint: the ``.pt`` file (``None``: nothing is saved).
        resume: load finished cells from ``checkpoint`` (otherwise the file is started afresh).
        progress: ``progress(n)`` advances a progress bar by ``n`` units: ``cell_units`` per
            finished cell (finished cells found in the checkpoint count at once). When
            ``cell_units`` is not 1, ``run_cell`` may advance the bar itself through the same
            callback and the scaffold advances it only for resumed cells.
        cell_units: the progress units of one cell (an int, or a function of the key).
        on_result: called with each cell's key and result as it finishes (not resumed ones).
        on_resume: called once, before any work, with the numbers of finished and of
            partly run cells found in the checkpoint, when there are any.

    Returns:
        :class:`Grid` with every cell's result.

    Raises:
        stochgrad.checkpoint.CheckpointMismatch: the checkpoint was made with other settings.
        stochgrad.checkpoint.CheckpointError: the checkpoint is corrupt or foreign.
    """
    keys = [tuple(k) for k in keys]
    if len(set(keys)) != len(keys):
        raise ValueError("keys: each cell must appear once")
    ckpt = RunCheckpoint(checkpoint if checkpoint is not None else "", config, result_type)
    if checkpoint is not None:
        if resume:
            ckpt.load()
        else:
            ckpt.clear()
    wanted = set(keys)
    finished = sum(k in wanted for k in ckpt.runs)
    partial = sum(k in wanted and k not in ckpt.runs for k in ckpt.partial)
    if on_resume is not None and (finished or partial):
        on_resume(finished, partial)
    units = cell_units if callable(cell_units) else (lambda key: cell_units)
    scaffold_advances = not callable(cell_units) and cell_units == 1
    resumed = continued = 0
    start = time.perf_counter()
    for key in keys:
        if key in ckpt.runs:
            resumed += 1
            if progress is not None:
                progress(units(key))
            continue
        state = ckpt.partial.get(key)
        if state is not None:
            continued += 1

        def save(st: dict[str, Any], key: Key = key) -> None:
            if checkpoint is not None:
                ckpt.save_partial(key, st)

        result = run_cell(key, state, save)
        ckpt.runs[key] = result
        ckpt.partial.pop(key, None)
        if checkpoint is not None:
            ckpt.save()
        if on_result is not None:
            on_result(key, result)
        if progress is not None and scaffold_advances:
            progress(1)
    return Grid(
        config,
        keys,
        {k: ckpt.runs[k] for k in keys},
        resumed,
        continued,
        time.perf_counter() - start,
        Path(checkpoint) if checkpoint is not None else None,
    )
