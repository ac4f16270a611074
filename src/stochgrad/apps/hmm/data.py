"""Series to fit: one numeric column of a CSV file, and the bundled earthquake counts.

>>> y = load_earthquakes()
>>> y.shape, int(y[0]), int(y.sum())
(torch.Size([107]), 13, 2072)
"""

from __future__ import annotations

import csv
import importlib.resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

__all__ = ["TIME_COLUMNS", "earthquakes_path", "load_earthquakes", "load_series"]

#: Column names taken as the time axis (case-insensitive).
TIME_COLUMNS = ("year", "time", "date", "t", "index")


def load_series(path: str | Path, column: str | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """Read one numeric column of a CSV with a header.

    Without ``column`` the file must have exactly one column besides an optional time column
    (``year``, ``time``, ``date``, ``t``, ``index``; used as the x axis).

    Returns:
        ``(x, values, name)``: x axis (the time column, or 0..n-1), float values, column name.

    Raises:
        FileNotFoundError: no such file (or a folder).
        ValueError: an empty file, a missing or ambiguous column, non-numeric or non-finite
            data (the message names the file, the column and the row).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {'not a file' if path.exists() else 'no such file'}")
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    rows = [r for r in rows if any(c.strip() for c in r)]
    if len(rows) < 2:
        raise ValueError(f"{path}: expected a header and at least one data row")
    header = [h.strip() for h in rows[0]]
    time_cols = [h for h in header if h.lower() in TIME_COLUMNS]
    if column is None:
        rest = [h for h in header if h not in time_cols]
        if len(rest) != 1:
            raise ValueError(
                f"{path}: expected one data column besides a time column, found {rest}; pass column"
            )
        column = rest[0]
    if column not in header:
        raise ValueError(f"column {column!r} not in {path} (columns {header})")
    j = header.index(column)
    values = np.empty(len(rows) - 1)
    for i, r in enumerate(rows[1:]):
        cell = r[j].strip() if j < len(r) else ""
        try:
            values[i] = float(cell)
        except ValueError:
            raise ValueError(
                f"column {column!r} of {path} must be numeric: data row {i + 1} holds {cell!r}"
            ) from None
    if not np.all(np.isfinite(values)):
        i = int(np.flatnonzero(~np.isfinite(values))[0])
        raise ValueError(f"column {column!r} of {path} has non-finite values (data row {i + 1})")
    x = np.arange(len(values), dtype=float)
    if time_cols and time_cols[0] != column:
        try:
            x = np.array([float(r[header.index(time_cols[0])]) for r in rows[1:]])
        except (ValueError, IndexError):
            pass
    return x, values, column


def earthquakes_path() -> Any:
    """The bundled ``earthquakes.csv`` (columns ``year``, ``count``) as a resource (use it with
    ``importlib.resources.as_file``)."""
    return importlib.resources.files("stochgrad") / "data" / "earthquakes.csv"


def load_earthquakes() -> Tensor:
    """Annual counts of major earthquakes (magnitude >= 7), 1900-2006: float64 tensor ``[107]``.

    Zucchini & MacDonald (2009), Table 1.1; hmmlearn's Poisson HMM example.

    >>> y = load_earthquakes()
    >>> y.shape, int(y[0]), int(y.sum())
    (torch.Size([107]), 13, 2072)
    """
    with importlib.resources.as_file(earthquakes_path()) as p:
        _, values, _ = load_series(p, "count")
    return torch.as_tensor(values, dtype=torch.float64)
