"""Reading a logged-bandit file (CSV or Parquet) into :class:`LoggedData`, checked row by row.

A log is a table with one row per round:

- context features: the columns named in ``context_cols``, or every column whose name starts
  with ``context_prefix`` (default ``x_``), in the file's order;
- ``action`` (integers ``0 .. A - 1``), ``reward`` (finite numbers), ``propensity`` (the
  logging policy's probability of the logged action, in (0, 1]);
- optionally the logging policy's probability of every action, ``pi0_0 .. pi0_{A-1}``
  (``behavior_prefix``): then each row must sum to 1 and agree with ``propensity``;
- optionally, for simulated logs, the true expected rewards ``q_0 .. q_{A-1}``
  (``expected_prefix``, off by default), used for evaluation only.

Other columns are ignored. Every problem is a ``ValueError`` naming the file, the column and the
row (CSV: and the line), so that a user can find it. Parquet needs ``pyarrow`` (imported only
for a Parquet file). Only reading: the command line writes files
(:mod:`stochgrad.cli.offpolicy`); :func:`log_columns` gives the columns of a log to write one.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stochgrad._csv import ragged_row, summarize_names, table_rows
from stochgrad.apps.offpolicy.logged import LoggedData

__all__ = ["LOG_SUFFIXES", "log_columns", "read_log"]

#: File suffixes :func:`read_log` reads, by format.
LOG_SUFFIXES = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
#: How far a row of logging probabilities may sum from 1, or disagree with the propensity
#: (probabilities written as decimal text).
TOLERANCE = 1e-6
_SHOWN_COLUMNS = 12


class _Table:
    """The columns of a log file as strings (CSV) or arrays (Parquet), with row locations."""

    def __init__(self, path: Path, header: list[str], get: Any, lines: list[int] | None):
        self.path, self.header, self._get, self.lines = path, header, get, lines
        self.rows = 0

    def where(self, i: int) -> str:
        """``row 5 (line 6)`` of data row index ``i`` (the header is line 1 of a CSV)."""
        return f"row {i + 1}" + (f" (line {self.lines[i]})" if self.lines is not None else "")

    def fail(self, column: str, i: int, what: str) -> ValueError:
        return ValueError(f"{self.path}: column {column!r}, {self.where(i)}: {what}")

    def numbers(self, name: str) -> np.ndarray:
        """Column ``name`` as finite float64, or a ValueError at the first bad cell."""
        raw = self._get(name)
        try:
            values = np.asarray(raw, dtype=np.float64)
        except (ValueError, TypeError):
            values = None
        if values is None or values.shape != (self.rows,):
            for i, v in enumerate(raw):  # find the first cell that is not a number
                try:
                    float(v)
                except (ValueError, TypeError):
                    text = "empty (a missing value)" if str(v).strip() == "" else "not a number"
                    raise self.fail(name, i, f"{v!r} is {text}") from None
            raise ValueError(f"{self.path}: column {name!r} is not a column of numbers")
        bad = ~np.isfinite(values)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            what = "missing (empty or NaN)" if np.isnan(values[i]) else f"{values[i]} (not finite)"
            raise self.fail(name, i, f"the value is {what}")
        return values


def _read_csv(path: Path) -> _Table:
    rows, lines = [], []
    found = table_rows(path)  # blank lines are not rounds
    first = next(found, None)
    if first is None:
        raise ValueError(f"{path}: empty file; a log needs a header row naming its columns")
    header = [h.strip() for h in first[1]]
    against = f"the header (line {first[0]})"
    for line, r in found:
        if len(r) != len(header):
            raise ragged_row(path, line, len(r), len(header), against)
        rows.append(r)
        lines.append(line)
    index = {h: j for j, h in enumerate(header)}
    table = _Table(path, header, lambda name: [r[index[name]].strip() for r in rows], lines)
    table.rows = len(rows)
    return table


def _read_parquet(path: Path) -> _Table:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ImportError(
            f"{path}: reading Parquet needs pyarrow (pip install pyarrow, or "
            f"'stochgrad[parquet]'); or save the log as CSV ({exc})",
            name="pyarrow",
        ) from None
    try:
        data = pq.read_table(path)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        raise ValueError(f"{path}: not a readable Parquet file ({exc})") from None

    def get(name: str) -> Any:
        col = data.column(name)
        try:
            return col.to_numpy(zero_copy_only=False)
        except Exception:  # nested or other non-scalar types: say which column
            raise ValueError(f"{path}: column {name!r} has type {col.type}, not numbers") from None

    table = _Table(path, [str(c) for c in data.column_names], get, None)
    table.rows = data.num_rows
    return table


def _indexed(header: list[str], prefix: str | None) -> list[str]:
    """Columns ``prefix0, prefix1, ...`` (every integer from 0 up, none missing), or []."""
    if not prefix:
        return []
    pattern = re.compile(re.escape(prefix) + r"(\d+)$")
    found = {int(m.group(1)): h for h in header if (m := pattern.match(h))}
    return [found[k] for k in sorted(found)]


def _check_indexed(path: Path, prefix: str, cols: list[str]) -> None:
    numbers = sorted(int(c[len(prefix) :]) for c in cols)
    if numbers != list(range(len(numbers))):
        # the first few gaps, without counting up to a number as large as a column's name
        missing, expect = [], 0
        for k in sorted(set(numbers)):
            missing += range(expect, min(k, expect + 5 - len(missing)))
            expect = k + 1
            if len(missing) >= 5:
                break
        what = (
            f"missing {', '.join(prefix + str(k) for k in missing)}"
            if missing
            else "some numbered twice (such as 1 and 01)"
        )
        raise ValueError(
            f"{path}: columns {prefix}0 .. {prefix}{numbers[-1]} must name every action "
            f"0 .. {numbers[-1]} once, {what}"
        )


def _columns_text(header: list[str]) -> str:
    return summarize_names(header, _SHOWN_COLUMNS)


def read_log(
    path: str | Path,
    *,
    context_cols: Sequence[str] | None = None,
    context_prefix: str = "x_",
    action_col: str = "action",
    reward_col: str = "reward",
    propensity_col: str = "propensity",
    behavior_prefix: str | None = "pi0_",
    expected_prefix: str | None = None,
    num_actions: int | None = None,
) -> LoggedData:
    """Read a CSV or Parquet log into :class:`LoggedData`, checking every row.

    Args:
        path: a ``.csv`` (UTF-8, header row) or ``.parquet``/``.pq`` file.
        context_cols: the context feature columns, in order; without them, every column whose
            name starts with ``context_prefix``, in the file's order.
        context_prefix: see ``context_cols``.
        action_col: the column of the logged action (integers from 0).
        reward_col: the column of the reward.
        propensity_col: the column of the logging propensity.
        behavior_prefix: the logging policy's probabilities of every action, in columns
            ``{prefix}0 .. {prefix}{A-1}``, used when the file has them (``None``: ignored).
        expected_prefix: the true expected rewards ``{prefix}0 ..`` of a simulated log, read
            only when given (evaluation only).
        num_actions: the number of actions; by default the number of logging-probability
            columns, else the largest logged action plus one.

    Returns:
        :class:`LoggedData` (``behavior`` and ``expected_rewards`` ``None`` unless read).

    Raises:
        OSError: the file cannot be opened (missing, a folder, no permission).
        ImportError: a Parquet file without ``pyarrow`` installed.
        ValueError: an unknown suffix, an empty file, a CSV that is not UTF-8 (naming the
            byte's offset and line) or has a row with more or fewer fields than its header
            (naming the line), missing columns (the first few named), a cell that
            is empty, NaN or not a number, an action that is not an integer in range, a
            propensity outside (0, 1], logging probabilities that do not sum to 1 or disagree
            with the propensity, fewer than 2 rounds: each naming the file, column and row.

    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "log.csv")
    >>> _ = open(p, "w").write("x_0,x_1,action,reward,propensity\\n"
    ...                        "0.5,1.0,1,1,0.25\\n-0.3,2.0,0,0,0.5\\n")
    >>> d = read_log(p, num_actions=3)
    >>> d.contexts.shape, d.actions.tolist(), d.num_actions
    (torch.Size([2, 2]), [1, 0], 3)
    """
    path = Path(path)
    fmt = LOG_SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(
            f"{path}: unknown log format {path.suffix!r}; expected one of {', '.join(LOG_SUFFIXES)}"
        )
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file" + (" (a folder)" if path.exists() else ""))
    table = _read_csv(path) if fmt == "csv" else _read_parquet(path)
    header = table.header
    dup = sorted(h for h, n in Counter(header).items() if n > 1)
    if dup:
        raise ValueError(
            f"{path}: column names must be unique, repeated: {summarize_names(dup, _SHOWN_COLUMNS)}"
        )
    if context_cols is not None:
        if isinstance(context_cols, str) or not len(context_cols):
            raise ValueError(
                f"context_cols must be a non-empty list of names, got {context_cols!r}"
            )
        ctx = [str(c) for c in context_cols]
    else:
        ctx = [h for h in header if h.startswith(context_prefix)] if context_prefix else []
        if not ctx:
            raise ValueError(
                f"{path}: no context columns: none starts with {context_prefix!r} (columns: "
                f"{_columns_text(header)}); name them with context_cols (--context-cols)"
            )
    needed = [*ctx, action_col, reward_col, propensity_col]
    present = set(header)
    missing = [c for c in dict.fromkeys(needed) if c not in present]
    if missing:
        raise ValueError(
            f"{path}: missing column{'s' if len(missing) > 1 else ''} "
            f"{summarize_names(missing, _SHOWN_COLUMNS, quote=True)} (columns: "
            f"{_columns_text(header)})"
        )
    if table.rows < 2:
        raise ValueError(f"{path}: {table.rows} rounds; learning needs at least 2")
    behavior_cols = _indexed(header, behavior_prefix)
    expected_cols = _indexed(header, expected_prefix)
    for prefix, cols in ((behavior_prefix, behavior_cols), (expected_prefix, expected_cols)):
        if cols:
            _check_indexed(path, prefix, cols)
    A = num_actions
    if A is not None and (isinstance(A, bool) or not isinstance(A, (int, np.integer)) or A < 2):
        raise ValueError(f"num_actions must be an int >= 2 or None, got {A!r}")
    for prefix, cols in ((behavior_prefix, behavior_cols), (expected_prefix, expected_cols)):
        if cols and A is not None and len(cols) != A:
            raise ValueError(
                f"{path}: {len(cols)} columns {prefix}0 .. but num_actions is {A}; "
                "they need one per action"
            )
        if cols and A is None:
            A = len(cols)

    contexts = np.stack([table.numbers(c) for c in ctx], 1)
    actions = table.numbers(action_col)
    bad = np.flatnonzero((actions != np.round(actions)) | (actions < 0))
    if bad.size:
        i = int(bad[0])
        raise table.fail(action_col, i, f"actions must be integers 0, 1, ..., got {actions[i]:g}")
    actions = actions.astype(np.int64)
    if A is None:
        A = max(int(actions.max()) + 1, 2)
    bad = np.flatnonzero(actions >= A)
    if bad.size:
        i = int(bad[0])
        raise table.fail(
            action_col,
            i,
            f"action {actions[i]} is out of range: there are {A} actions (0..{A - 1})",
        )
    rewards = table.numbers(reward_col)
    prop = table.numbers(propensity_col)
    bad = np.flatnonzero(~((prop > 0) & (prop <= 1)))
    if bad.size:
        i = int(bad[0])
        raise table.fail(propensity_col, i, f"propensities must lie in (0, 1], got {prop[i]:g}")
    behavior = expected = None
    if behavior_cols:
        behavior = np.stack([table.numbers(c) for c in behavior_cols], 1)
        _check_behavior(table, behavior, behavior_cols, actions, prop, propensity_col)
    if expected_cols:
        expected = np.stack([table.numbers(c) for c in expected_cols], 1)

    def tensor(a: np.ndarray | None) -> torch.Tensor | None:
        return None if a is None else torch.from_numpy(np.array(a))  # own, writable memory

    return LoggedData(
        contexts=tensor(contexts),
        actions=tensor(actions),
        rewards=tensor(rewards),
        propensities=tensor(prop),
        behavior=tensor(behavior),
        expected_rewards=tensor(expected),
        num_actions=A,
        context_names=tuple(ctx),
    )


def _check_behavior(
    table: _Table,
    behavior: np.ndarray,
    cols: list[str],
    actions: np.ndarray,
    prop: np.ndarray,
    propensity_col: str,
) -> None:
    """Logging probabilities in [0, 1], each row summing to 1 and agreeing with the propensity."""
    bad = np.argwhere((behavior < 0) | (behavior > 1))
    if bad.size:
        i, j = (int(v) for v in bad[0])
        raise table.fail(cols[j], i, f"a probability must lie in [0, 1], got {behavior[i, j]:g}")
    sums = behavior.sum(1)
    bad = np.flatnonzero(np.abs(sums - 1) > TOLERANCE)
    if bad.size:
        i = int(bad[0])
        raise ValueError(
            f"{table.path}: {table.where(i)}: the logging probabilities {cols[0]} .. {cols[-1]} "
            f"sum to {sums[i]:.8g}, not 1"
        )
    chosen = behavior[np.arange(len(actions)), actions]
    bad = np.flatnonzero(np.abs(chosen - prop) > TOLERANCE)
    if bad.size:
        i = int(bad[0])
        raise table.fail(
            propensity_col,
            i,
            f"propensity {prop[i]:.8g} disagrees with {cols[actions[i]]} = {chosen[i]:.8g}, "
            "the logging probability of the logged action",
        )


def log_columns(
    data: LoggedData,
    *,
    context_prefix: str = "x_",
    behavior: bool = True,
    expected: bool = False,
) -> dict[str, np.ndarray]:
    """The columns of a log of ``data``, as :func:`read_log` reads them by default.

    ``{prefix}0 ..`` (contexts), ``action``, ``reward``, ``propensity``, and ``pi0_0 ..`` when
    ``behavior`` and ``data.behavior`` is known, ``q_0 ..`` when ``expected`` (read back with
    ``expected_prefix="q_"``). Write them with the ``csv`` module (``repr`` of a float reads
    back exactly), pandas, or pyarrow.

    >>> import numpy as np
    >>> from stochgrad.apps.offpolicy import SyntheticBandit
    >>> d = SyntheticBandit(n_actions=3, dim_context=2).sample(4, generator=np.random.default_rng(0))
    >>> list(log_columns(d))
    ['x_0', 'x_1', 'action', 'reward', 'propensity', 'pi0_0', 'pi0_1', 'pi0_2']
    """
    if not isinstance(data, LoggedData):
        raise TypeError(f"data must be a LoggedData, got {type(data).__name__}")
    cols: dict[str, np.ndarray] = {
        f"{context_prefix}{j}": data.contexts[:, j].numpy() for j in range(data.contexts.shape[1])
    }  # numbered, not data.context_names: read_log finds them by the prefix
    cols["action"] = data.actions.numpy()
    cols["reward"] = data.rewards.numpy()
    cols["propensity"] = data.propensities.numpy()
    if behavior and data.behavior is not None:
        cols.update({f"pi0_{a}": data.behavior[:, a].numpy() for a in range(data.num_actions)})
    if expected and data.expected_rewards is not None:
        cols.update(
            {f"q_{a}": data.expected_rewards[:, a].numpy() for a in range(data.num_actions)}
        )
    return cols
