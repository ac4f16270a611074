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

from stochgrad.checkpoint import (
    RESTART_HINT,
    CheckpointError,
    RunCheckpoint,
    saved_float,
    saved_tensor,
    saved_value,
)

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


#: The size of a CPU ``torch.Generator``'s state (what ``get_state`` returns).
_GENERATOR_STATE = torch.Generator().get_state().numel()


def saved_generator_state(state: Any, key: str) -> torch.Tensor:
    """``state[key]`` checked to be a CPU ``torch.Generator`` state (``set_state`` takes it).

    >>> saved_generator_state({"rng": torch.Generator().get_state()}, "rng").dtype
    torch.uint8
    """
    return saved_tensor(state, key, shape=(_GENERATOR_STATE,), dtype=torch.uint8)


def saved_module_state(state: Any, key: str, module: torch.nn.Module) -> dict[str, Any]:
    """``state[key]`` checked to be a ``state_dict`` of ``module`` (a fresh one, made as the
    run makes it): the same entries, each a finite tensor of the same shape and dtype.
    (``load_state_dict`` refuses another shape, but casts another dtype silently.)

    >>> net = torch.nn.Linear(2, 1)
    >>> saved = {"weight": torch.zeros(1, 3), "bias": torch.zeros(1)}
    >>> saved_module_state({"model": saved}, "model", net)
    Traceback (most recent call last):
    ...
    ValueError: model: weight must have shape [1, 2], got [1, 3]
    """
    saved = saved_value(state, key, dict)
    expected = module.state_dict()
    try:
        if set(saved) != set(expected):
            odd = sorted(map(str, set(saved) ^ set(expected)))
            raise ValueError(f"entries differ from the model's ({', '.join(odd[:3])})")
        for name, ref in expected.items():
            saved_tensor(saved, name, shape=tuple(ref.shape), dtype=ref.dtype, finite=True)
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"{key}: {exc}") from None
    return saved


def saved_optimizer_state(
    state: Any, key: str, optimizer: torch.optim.Optimizer, *, lr: bool = True
) -> dict[str, Any]:
    """``state[key]`` checked to be a state dict that ``optimizer`` (a fresh one, made as the
    run makes it) can continue from.

    ``load_state_dict`` checks the sizes of the parameter groups only; a moment of another
    shape or dtype would be taken, and fail or mislead later. Checked here: groups covering each
    parameter once, with the hyperparameters of ``optimizer`` (the learning rate only when
    ``lr``: a schedule changes it, and then it must be finite and >= 0), and per-parameter
    tensors (Adam's moments, SGD's momentum) of the parameter's shape and dtype, finite, the
    second moments and step counts >= 0.

    Raises:
        ValueError, TypeError: naming ``key`` and what does not fit.

    >>> w = torch.zeros(3, requires_grad=True)
    >>> opt = torch.optim.Adam([w])
    >>> w.grad = torch.ones(3); opt.step()
    >>> saved = opt.state_dict()
    >>> saved["state"][0]["exp_avg"] = torch.zeros(2)
    >>> saved_optimizer_state({"optimizer": saved}, "optimizer", torch.optim.Adam([w]))
    Traceback (most recent call last):
    ...
    ValueError: optimizer: exp_avg of parameter 0 must have shape [3], got [2]
    """
    saved = saved_value(state, key, dict)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    expected = optimizer.state_dict()["param_groups"]
    try:
        groups = saved_value(saved, "param_groups", list)
        if len(groups) != len(expected):
            raise ValueError(f"param_groups must hold {len(expected)} group(s), got {len(groups)}")
        seen: list[int] = []
        for g, (group, ref) in enumerate(zip(groups, expected, strict=True)):
            for i in saved_value(group, "params", list):
                if isinstance(i, bool) or not isinstance(i, int):
                    raise TypeError(f"params must hold ints, got {type(i).__name__}")
                seen.append(i)
            saved_float(group, "lr", minimum=0.0)
            for name, value in ref.items():
                if name == "params" or (name == "lr" and not lr) or name not in group:
                    continue
                if group[name] != value:
                    raise ValueError(f"{name} of group {g} is {group[name]!r}, not {value!r}")
        if sorted(seen) != list(range(len(params))):
            raise ValueError(f"param_groups must cover parameters 0..{len(params) - 1} once")
        for i, per in saved_value(saved, "state", dict).items():
            if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(params):
                raise ValueError(f"state of an unknown parameter {i!r}")
            if not isinstance(per, dict):
                raise TypeError(f"state of parameter {i} must be a dict, got {type(per).__name__}")
            for name, value in per.items():
                if value is None:  # SGD without momentum
                    continue
                if name == "step":
                    if isinstance(value, torch.Tensor):
                        saved_tensor(per, name, shape=(), finite=True, minimum=0.0)
                    else:
                        saved_float(per, name, minimum=0.0)
                    continue
                p = params[i]
                where = f"{name} of parameter {i}"
                saved_tensor(
                    {where: value},
                    where,
                    shape=tuple(p.shape),
                    dtype=p.dtype,
                    finite=True,
                    minimum=0.0 if name.endswith("_sq") else None,
                )
    except (ValueError, TypeError) as exc:
        raise type(exc)(f"{key}: {exc}") from None
    return saved


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


def _check_loaded(
    ckpt: RunCheckpoint,
    keys: Sequence[Key],
    check_result: Callable[[Key, Any], None] | None,
    check_state: Callable[[Key, Any], None] | None,
) -> None:
    """Run the checks of the cells ``keys`` found in ``ckpt``; a failure is one
    :class:`~stochgrad.checkpoint.CheckpointError` naming the file, the cell and the field."""
    for key in keys:
        if key in ckpt.runs:
            what, check, found = "finished run", check_result, ckpt.runs[key]
        elif key in ckpt.partial:
            what, check, found = "run in progress", check_state, ckpt.partial[key]
        else:
            continue
        if check is None:
            continue
        try:
            check(key, found)
        except CheckpointError:
            raise
        except (ValueError, TypeError, KeyError, IndexError, AttributeError, RuntimeError) as exc:
            # RuntimeError: torch's word for a tensor of the wrong shape or dtype
            lines = str(exc).strip().splitlines()
            why = (lines[0] if lines else type(exc).__name__)[:200]
            cell = "/".join(map(str, key))
            raise CheckpointError(
                f"{ckpt.path}: its {what} {cell} cannot be used ({why}); {RESTART_HINT}"
            ) from None


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
    check_result: Callable[[Key, R], None] | None = None,
    check_state: Callable[[Key, Any], None] | None = None,
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
        check_result: ``check_result(key, result)`` for each finished cell found in the
            checkpoint, before any work: raises ``ValueError`` or ``TypeError`` when the result
            does not fit the settings (a curve of another length, another grid point).
        check_state: ``check_state(key, state)`` likewise for each mid-run state found, before
            ``run_cell`` gets it: the shapes, dtypes and ranges of what it holds.

    Returns:
        :class:`Grid` with every cell's result.

    Raises:
        stochgrad.checkpoint.CheckpointMismatch: the checkpoint was made with other settings.
        stochgrad.checkpoint.CheckpointError: the checkpoint is corrupt or foreign, or a cell it
            holds fails ``check_result`` or ``check_state`` (one line naming the file).
    """
    keys = [tuple(k) for k in keys]
    if len(set(keys)) != len(keys):
        raise ValueError("keys: each cell must appear once")
    ckpt = RunCheckpoint(checkpoint if checkpoint is not None else "", config, result_type)
    if checkpoint is not None:
        if resume:
            ckpt.load()
            _check_loaded(ckpt, keys, check_result, check_state)
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
