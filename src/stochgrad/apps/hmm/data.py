"""Series to fit: one numeric column of a CSV file, and the bundled earthquake counts.

>>> y = load_earthquakes()
>>> y.shape, int(y[0]), int(y.sum())
(torch.Size([107]), 13, 2072)
"""

from __future__ import annotations

import importlib.resources
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stochgrad._csv import ragged_row, summarize_names, table_rows

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
        ValueError: an empty file, a file that is not UTF-8, a row with more or fewer fields
            than the header, a missing or ambiguous column, non-numeric or non-finite data
            (the message names the file, the column and the line; a long list of columns is
            cut to its first few).

    >>> import os, tempfile
    >>> p = os.path.join(tempfile.mkdtemp(), "s.csv")
    >>> _ = open(p, "w").write("year,count\\n1900,13\\n1901,14\\n")
    >>> load_series(p)
    (array([1900., 1901.]), array([13., 14.]), 'count')
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {'not a file' if path.exists() else 'no such file'}")
    rows = list(table_rows(path))
    if len(rows) < 2:
        raise ValueError(f"{path}: expected a header and at least one data row")
    (header_line, header), body = rows[0], rows[1:]
    header = [h.strip() for h in header]
    for line, r in body:
        if len(r) != len(header):
            raise ragged_row(path, line, len(r), len(header), f"the header (line {header_line})")
    time_cols = [h for h in header if h.lower() in TIME_COLUMNS]
    if column is None:
        rest = [h for h in header if h not in time_cols]
        if len(rest) != 1:
            raise ValueError(
                f"{path}: expected one data column besides a time column, found {len(rest)} "
                f"({summarize_names(rest, quote=True)}); pass column"
            )
        column = rest[0]
    if column not in header:
        raise ValueError(
            f"column {column!r} not in {path} (its {len(header)} columns: "
            f"{summarize_names(header, quote=True)})"
        )
    j = header.index(column)
    values = np.empty(len(body))
    for i, (line, r) in enumerate(body):
        cell = r[j].strip()
        try:
            values[i] = float(cell)
        except ValueError:
            raise ValueError(
                f"column {column!r} of {path} must be numeric: data row {i + 1} (line {line}) "
                f"holds {cell[:40]!r}"
            ) from None
    if not np.all(np.isfinite(values)):
        i = int(np.flatnonzero(~np.isfinite(values))[0])
        raise ValueError(
            f"column {column!r} of {path} has non-finite values (data row {i + 1}, line "
            f"{body[i][0]})"
        )
    x = np.arange(len(values), dtype=float)
    if time_cols and time_cols[0] != column:
        t = header.index(time_cols[0])
        try:
            x = np.array([float(r[t]) for _, r in body])
        except ValueError:
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
