"""Reading the inputs of the telegraph model: counts tables and kinetics tables (CSV).

Only reading: the command line writes the results (:mod:`stochgrad.cli.telegraph`).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from stochgrad.apps.telegraph.likelihood import DTYPE

__all__ = ["read_counts", "read_kinetics"]

KINETICS_COLUMNS = ("k_on", "k_off", "k_syn")


def _read_rows(path: str | Path) -> list[list[str]]:
    """The non-empty rows of a CSV file (UTF-8 text)."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            return [r for r in csv.reader(fh) if r and any(v.strip() for v in r)]
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text CSV file (not UTF-8)") from None
    except csv.Error as exc:
        raise ValueError(f"{path}: not a readable CSV file ({exc})") from None


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def read_counts(path: str | Path, genes_in: str | None = None) -> tuple[np.ndarray, list[str], str]:
    """Read a counts CSV as ``[genes, cells]``; detect its orientation unless ``genes_in`` is given.

    Detection, in order: a header whose first cell names genes (``gene...``) or cells
    (``cell...``); only row labels (genes in rows) or only a header (genes in columns); else
    genes in rows when the table has at least as many columns as rows (more cells than genes).

    Args:
        path: CSV file of non-negative integer counts, optional header row and label column.
        genes_in: ``"rows"``, ``"columns"`` or None (detect).

    Returns:
        ``(counts [G, C] int64, gene names, how the orientation was decided)``.

    Raises:
        OSError: the file cannot be read (missing, a folder, no permission).
        ValueError: empty table, text where counts belong, rows of different lengths,
            non-integer or negative counts, not a text file, bad ``genes_in``.

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "c.csv")
    >>> _ = open(p, "w").write("gene,c1,c2,c3\\nA,0,1,2\\nB,3,0,1\\n")
    >>> read_counts(p)[0].shape
    (2, 3)
    """
    if genes_in not in (None, "rows", "columns"):
        raise ValueError(f"genes_in must be 'rows', 'columns' or None, got {genes_in!r}")
    rows = _read_rows(path)
    if not rows:
        raise ValueError(f"{path}: empty counts table")
    header = None
    if not all(_is_number(v) for v in rows[0][1:]) or not _is_number(rows[0][0]):
        header, rows = rows[0], rows[1:]
    labels = None
    if rows and not _is_number(rows[0][0]):
        labels = [r[0] for r in rows]
        rows = [r[1:] for r in rows]
        if header is not None:
            corner, header = header[0], header[1:]
        else:
            corner = ""
    else:
        corner = ""
    for i, r in enumerate(rows):
        if len(r) != len(rows[0]):
            raise ValueError(
                f"{path}: data row {i + 1} has {len(r)} counts where the first data row has "
                f"{len(rows[0])}; every row needs the same number of cells"
            )
        for j, v in enumerate(r):
            if not _is_number(v):
                raise ValueError(
                    f"{path}: data row {i + 1}, column {j + 1 + (labels is not None)}: "
                    f"{v!r} is not a number; counts must be non-negative integers"
                )
    values = np.array([[float(v) for v in r] for r in rows])
    if values.size == 0 or values.ndim != 2:
        raise ValueError(f"{path}: no counts found")
    if not np.isfinite(values).all() or (values < 0).any() or (values != np.round(values)).any():
        bad = np.argwhere(~np.isfinite(values) | (values < 0) | (values != np.round(values)))[0]
        raise ValueError(
            f"{path}: counts must be non-negative integers, got {values[tuple(bad)]:g} "
            f"(data row {bad[0] + 1}, count {bad[1] + 1})"
        )
    if genes_in is not None:
        how = f"--genes-in {genes_in}"
    elif corner.lower().startswith("gene"):
        genes_in, how = "rows", "header's first cell names genes"
    elif corner.lower().startswith("cell"):
        genes_in, how = "columns", "header's first cell names cells"
    elif labels is not None and header is None:
        genes_in, how = "rows", "row labels only"
    elif header is not None and labels is None:
        genes_in, how = "columns", "column header only"
    else:
        genes_in = "rows" if values.shape[1] >= values.shape[0] else "columns"
        how = "more columns than rows" if genes_in == "rows" else "more rows than columns"
    if genes_in == "rows":
        names = labels or [f"gene{i}" for i in range(values.shape[0])]
        out = values
    else:
        if header is not None and len(header) != values.shape[1]:
            raise ValueError(
                f"{path}: the header names {len(header)} genes but the rows hold "
                f"{values.shape[1]} counts"
            )
        names = header or [f"gene{i}" for i in range(values.shape[1])]
        out = values.T
    return out.astype(np.int64), list(names), f"genes in {genes_in} ({how})"


def read_kinetics(path: str | Path) -> Tensor:
    """Read a kinetics CSV with columns ``k_on, k_off, k_syn`` (one row per gene; other columns
    such as a gene name are ignored) as ``[G, 3]`` float64 rates.

    Args:
        path: the CSV file, with a header row naming its columns.

    Returns:
        ``[G, 3]`` float64 ``(k_on, k_off, k_syn)``.

    Raises:
        OSError: the file cannot be read.
        ValueError: no rows, a missing column, a value that is not a finite positive number.

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "k.csv")
    >>> _ = open(p, "w").write("gene,k_on,k_off,k_syn\\nA,0.5,2,30\\n")
    >>> read_kinetics(p).tolist()
    [[0.5, 2.0, 30.0]]
    """
    rows = _read_rows(path)
    if not rows:
        raise ValueError(f"{path}: empty kinetics table")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in KINETICS_COLUMNS if c not in header]
    if missing:
        raise ValueError(
            f"{path}: needs columns {', '.join(KINETICS_COLUMNS)} in its header row "
            f"(missing {', '.join(missing)})"
        )
    if len(rows) < 2:
        raise ValueError(f"{path}: no genes below the header row")
    cols = [header.index(c) for c in KINETICS_COLUMNS]
    values = []
    for line, r in enumerate(rows[1:], start=2):
        row = []
        for c, name in zip(cols, KINETICS_COLUMNS, strict=True):
            v = r[c] if c < len(r) else ""
            if not _is_number(v) or not (0 < float(v) < float("inf")):
                raise ValueError(
                    f"{path}: line {line}: {name} must be a finite number > 0, got {v!r}"
                )
            row.append(float(v))
        values.append(row)
    return torch.tensor(values, dtype=DTYPE)
