"""Reading the inputs of the telegraph model: counts tables and kinetics tables.

Counts come as CSV/TSV text (optionally gzipped; row and column labels), AnnData ``.h5ad``
files (through ``anndata``, an optional dependency: ``pip install "stochgrad[bio]"``) or 10x
Genomics matrix folders (``matrix.mtx``, ``features.tsv``/``genes.tsv``, ``barcodes.tsv``,
read with :func:`scipy.io.mmread`). Which axis holds the genes is decided from the labels, the
header's first cell or the file format, never from the table's shape: an undecidable table is
refused with a request for ``genes_in``. An empty field or NaN is a missing cell (the
convention of the ``txburst`` scripts of Larsson et al., *Nature* 2019), kept as NaN.

Only reading: the command line writes the results (:mod:`stochgrad.cli.telegraph`).
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse
import torch
from torch import Tensor

from stochgrad._csv import not_utf8, ragged_row, summarize_names, table_rows
from stochgrad.apps.telegraph.likelihood import DTYPE

__all__ = ["MISSING", "read_counts", "read_kinetics"]

KINETICS_COLUMNS = ("k_on", "k_off", "k_syn")

MISSING = ("", "na", "nan", "n/a")
"""Fields read as a missing cell (compared in lower case, blanks stripped): ``txburst`` writes
empty fields, R writes ``NA``, numpy ``nan``."""

#: what the error messages offer when the orientation cannot be decided
_ASK = "give the orientation (genes_in='rows'|'columns', on the command line --genes-in)"

# Gene ids: Ensembl (ENSG00000243485, ENSMUSG..., with a version suffix or a symbol around it),
# FlyBase, WormBase; and names such as gene0, gene_12, feature3.
_GENE_ID = re.compile(r"(?<![A-Za-z0-9])(ENS[A-Z]*G\d{5,}|FBgn\d{5,}|WBGene\d{5,})")
_GENE_WORD = re.compile(r"^(genes?|features?)(?![a-z])", re.IGNORECASE)
# Cells: sequenced barcodes (AAACCTGAGAAGGCCT-1, with sample prefixes or suffixes), cell0 /
# cell_12 / barcode3, sequencing-run and GEO sample ids of plate-based protocols.
_BARCODE = re.compile(r"(?<![A-Za-z])[ACGTN]{8,}(?![A-Za-z])")
_CELL_WORD = re.compile(r"^(cells?|barcodes?)(?![a-z])", re.IGNORECASE)
_RUN_ID = re.compile(r"^(SRR|ERR|DRR|GSM)\d{5,}$")
_INTEGER = re.compile(r"^[+-]?\d+$")


# ---------------------------------------------------------------------------------------------
# orientation
# ---------------------------------------------------------------------------------------------
def _label_kind(labels: Sequence[str] | None) -> str | None:
    """``"genes"`` or ``"cells"`` (90 % of the labels look so), ``"numbered"`` (all integers),
    ``"named"`` (anything else) or None (no labels)."""
    if not labels:
        return None
    step = max(1, len(labels) // 2000)  # a sample is enough to recognise a kind
    sample = [str(v).strip() for v in labels[::step]]
    n = len(sample)
    genes = sum(bool(_GENE_ID.search(v) or _GENE_WORD.match(v)) for v in sample)
    cells = sum(bool(_BARCODE.search(v) or _CELL_WORD.match(v) or _RUN_ID.match(v)) for v in sample)
    if genes >= 0.9 * n:
        return "genes"
    if cells >= 0.9 * n:
        return "cells"
    if all(_INTEGER.match(v) for v in sample):
        return "numbered"
    return "named"


def _corner_kind(corner: str) -> str | None:
    c = corner.strip().lower()
    if _GENE_WORD.match(c) or c in ("symbol", "gene_symbol", "ensembl", "ensembl_id"):
        return "genes"
    if _CELL_WORD.match(c):
        return "cells"
    return None


def _show(labels: Sequence[str]) -> str:
    return str(labels[0]) + (", ..." if len(labels) > 1 else "")


def _orientation(
    source: str,
    row_labels: Sequence[str] | None,
    col_labels: Sequence[str] | None,
    corner: str,
    genes_in: str | None,
) -> tuple[str, str]:
    """Which axis holds the genes, and how that was decided.

    Evidence: the header's first cell (``gene...`` / ``cell...``), labels that look like genes
    or like cells on either axis, and, only when neither is there, names on one axis against
    bare numbers on the other (genes have names, cells are often numbered). Evidence that
    disagrees, or none, is an error asking for ``genes_in``; ``genes_in`` overrides.
    """
    kinds = {"rows": _label_kind(row_labels), "columns": _label_kind(col_labels)}
    labels = {"rows": row_labels, "columns": col_labels}
    other = {"rows": "columns", "columns": "rows"}
    votes: list[tuple[str, str]] = []
    corner_kind = _corner_kind(corner)
    if corner_kind == "genes":
        votes.append(("rows", "header's first cell names genes"))
    elif corner_kind == "cells":
        votes.append(("columns", "header's first cell names cells"))
    for axis in ("rows", "columns"):
        word = axis[:-1] if axis == "rows" else "column"
        if kinds[axis] == "genes":
            votes.append((axis, f"{word} labels are genes ({_show(labels[axis])})"))
        elif kinds[axis] == "cells":
            votes.append((other[axis], f"{word} labels are cells ({_show(labels[axis])})"))
    if not votes:
        for axis in ("rows", "columns"):
            if kinds[axis] == "named" and kinds[other[axis]] == "numbered":
                word = axis[:-1] if axis == "rows" else "column"
                votes.append((axis, f"{word} labels are names, the others only numbers"))
    decided = {axis for axis, _ in votes}
    reasons = "; ".join(reason for _, reason in votes)
    if genes_in is not None:
        if decided and decided != {genes_in}:
            return genes_in, f"--genes-in {genes_in}, overriding: {reasons}"
        return genes_in, f"--genes-in {genes_in}" + (f"; {reasons}" if reasons else "")
    if len(decided) == 1:
        return decided.pop(), reasons
    if decided:
        raise ValueError(
            f"{source}: the labels disagree on which axis holds genes ({reasons}); {_ASK}"
        )
    seen = ", ".join(
        f"{word} {_describe(kinds[axis], labels[axis])}"
        for axis, word in (("rows", "row labels"), ("columns", "column labels"))
    )
    raise ValueError(f"{source}: cannot tell genes from cells by the labels ({seen}); {_ASK}")


def _describe(kind: str | None, labels: Sequence[str] | None) -> str:
    if kind is None:
        return "absent"
    return {"numbered": "only numbers", "named": "names"}.get(kind, kind) + f" ({_show(labels)})"


# ---------------------------------------------------------------------------------------------
# value checks
# ---------------------------------------------------------------------------------------------
def _first_bad(values: np.ndarray) -> int | None:
    """Flat index of the first value that is neither a non-negative integer nor NaN."""
    if values.dtype == bool or values.dtype.kind not in "iuf":
        return 0 if values.size else None
    bad = values < 0
    if values.dtype.kind == "f":
        bad |= ~np.isnan(values) & (~np.isfinite(values) | (values != np.round(values)))
    hits = np.flatnonzero(bad.reshape(-1))
    return int(hits[0]) if hits.size else None


#: The largest count a text table is read with: float64, the type counts are parsed as, holds
#: every integer up to 2**53 exactly (a larger one is refused as too large, never wrapped round
#: to a negative int64).
MAX_EXACT = 2**53


def _first_too_large(values: np.ndarray) -> int | None:
    """Flat index of the first value above :data:`MAX_EXACT`."""
    if values.dtype.kind not in "iuf":
        return None
    hits = np.flatnonzero((values > MAX_EXACT).reshape(-1))
    return int(hits[0]) if hits.size else None


def _check_matrix(
    m: Any, genes: Sequence[str], cells: Sequence[str], source: str, hint: str = ""
) -> None:
    """Refuse a ``[G, C]`` dense or CSR matrix holding anything but counts and NaN."""
    values = m.data if scipy.sparse.issparse(m) else m
    flat = _first_bad(values)
    if flat is None:
        return
    if scipy.sparse.issparse(m):
        g = int(np.searchsorted(m.indptr, flat, side="right")) - 1
        c, v = int(m.indices[flat]), values[flat]
    else:
        g, c = divmod(flat, m.shape[1])
        v = m[g, c]
    raise ValueError(
        f"{source}: counts must be non-negative integers (NaN marks a missing cell), got {v} "
        f"for gene {genes[g]!s}, cell {cells[c]!s}{hint}"
    )


# ---------------------------------------------------------------------------------------------
# text tables
# ---------------------------------------------------------------------------------------------
def _open_text(path: Path) -> io.TextIOBase:
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline="")
    return open(path, encoding="utf-8-sig", newline="")


def _delimiter(path: Path, suffix: str) -> str:
    """``,`` for .csv, a tab for .tsv/.tab, else sniffed from the first lines."""
    if suffix == ".csv":
        return ","
    if suffix in (".tsv", ".tab"):
        return "\t"
    try:
        with _open_text(path) as fh:
            head = fh.read(1 << 16)
    except UnicodeDecodeError:
        raise not_utf8(path) from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise ValueError(f"{path}: not a readable CSV file (broken gzip: {exc})") from None
    try:
        return csv.Sniffer().sniff(head, delimiters=",\t;").delimiter
    except csv.Error:
        if "\n" not in head.strip():  # one line: a single column or a single row
            return ","
        raise ValueError(
            f"{path}: cannot tell its delimiter (comma, tab or semicolon); name it .csv or .tsv"
        ) from None


def _is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _is_value(s: str) -> bool:
    return _is_number(s) or s.strip().lower() in MISSING


def _parse_row(fields: list[str], line: int, offset: int, path: Path) -> np.ndarray:
    try:
        return np.array(fields, dtype=np.float64)
    except ValueError:
        pass
    out = np.empty(len(fields))
    for j, v in enumerate(fields):
        if v.strip().lower() in MISSING:
            out[j] = np.nan
        elif _is_number(v):
            out[j] = float(v)
        else:
            raise ValueError(
                f"{path}: line {line}, column {j + 1 + offset}: {v[:40]!r} is not a number; "
                "counts must be non-negative integers (an empty field marks a missing cell)"
            ) from None
    return out


def _read_text(path: Path, suffix: str, genes_in: str | None) -> tuple[np.ndarray, list[str], str]:
    rows = table_rows(path, _delimiter(path, suffix))
    first = next(rows, None)
    if first is None:
        raise ValueError(f"{path}: empty counts table")
    second = next(rows, None)
    if second is None:  # one row: data, or a header alone
        if not all(_is_value(v) for v in first[1]):
            raise ValueError(f"{path}: no counts found")
        header, body, labelled = None, [first], False
    else:
        head, data = first[1], second[1]
        text_header = not all(_is_value(v) for v in head[1:])
        corner_empty = head[0].strip() == ""
        # a label column: the data rows start with text, or the header has an empty corner
        # above names (R's write.csv, pandas' to_csv), whatever the row labels look like
        labelled = not _is_value(data[0]) or (corner_empty and text_header)
        is_header = (
            text_header or (labelled and corner_empty) or (not labelled and not _is_value(head[0]))
        )
        header = first if is_header else None
        body = [second] if is_header else [first, second]
    values: list[np.ndarray] = []
    labels: list[str] = []
    lines: list[int] = []
    width, against = len(body[0][1]), f"the first data row (line {body[0][0]})"
    if header is not None and len(header[1]) != width:
        # a header may leave out the corner above a label column (R's write.table): then its
        # first cell names a column, not the labels ("gene", "cell")
        cornerless = labelled and len(header[1]) == width - 1 and not _corner_kind(header[1][0])
        if not cornerless:
            raise ValueError(
                f"{path}: the header (line {header[0]}) has {len(header[1])} fields but the data "
                f"rows have {width} (line {body[0][0]}: {width - labelled} counts"
                f"{' after a label' if labelled else ''}); every row needs one field per column"
            )
    elif header is not None:
        against = f"the header (line {header[0]})"
    for line, r in _chain(body, rows):
        if len(r) != width:
            raise ragged_row(path, line, len(r), width, against)
        if labelled:
            labels.append(r[0].strip())
        values.append(_parse_row(r[1:] if labelled else r, line, int(labelled), path))
        lines.append(line)
    if not values or width - labelled == 0:
        raise ValueError(f"{path}: no counts found")
    m = np.vstack(values)
    flat = _first_bad(m)
    if flat is None:
        flat = _first_too_large(m)
    if flat is not None:
        i, j = divmod(flat, m.shape[1])
        v = m[i, j]
        what = (
            f"count {v:.6g} is too large: a count above 2**53 = {MAX_EXACT:,} cannot be read "
            "exactly"
            if v > MAX_EXACT
            else f"counts must be non-negative integers, got {v:g}"
        )
        raise ValueError(f"{path}: line {lines[i]}, column {j + 1 + labelled}: {what}")
    corner, columns = "", None
    if header is not None:
        columns = [h.strip() for h in header[1]]
        if labelled and len(columns) == m.shape[1] + 1:
            corner, columns = columns[0], columns[1:]
    axis, how = _orientation(str(path), labels or None, columns, corner, genes_in)
    if axis == "rows":
        names = labels or [f"gene{i}" for i in range(m.shape[0])]
    else:
        names = columns or [f"gene{i}" for i in range(m.shape[1])]
        m = m.T
    counts = np.ascontiguousarray(m) if np.isnan(m).any() else m.astype(np.int64)
    return counts, list(names), f"genes in {axis} ({how})"


def _chain(
    first: list[tuple[int, list[str]]], rest: Iterator[tuple[int, list[str]]]
) -> Iterator[tuple[int, list[str]]]:
    yield from first
    yield from rest


# ---------------------------------------------------------------------------------------------
# AnnData and 10x
# ---------------------------------------------------------------------------------------------
def _read_h5ad(path: Path, genes_in: str | None, layer: str | None) -> tuple[Any, list[str], str]:
    try:
        import anndata  # noqa: F401
        import h5py
    except ImportError as exc:
        raise ImportError(
            f'reading .h5ad files needs anndata: pip install "stochgrad[bio]" ({exc})',
            name=exc.name,
        ) from None
    try:
        from anndata.io import read_elem
    except ImportError:  # anndata < 0.11
        from anndata.experimental import read_elem
    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path}: not an .h5ad (HDF5) file ({exc})") from None
    with fh:
        layers = sorted(fh["layers"]) if "layers" in fh else []
        if layer is not None and layer not in layers:
            raise ValueError(
                f"{path}: no layer {layer!r}; its layers: {', '.join(layers) or 'none'} "
                "(default: X)"
            )
        if layer is None and "X" not in fh:
            raise ValueError(f"{path}: no X matrix; choose a layer: {', '.join(layers) or 'none'}")
        m = read_elem(fh["layers"][layer] if layer is not None else fh["X"])
        obs = [str(v) for v in read_elem(fh["obs"]).index]
        var = [str(v) for v in read_elem(fh["var"]).index]
    where = f"layer {layer!r}" if layer is not None else "X"
    if m.ndim != 2 or m.shape != (len(obs), len(var)):
        raise ValueError(f"{path}: {where} has shape {m.shape}, not obs x var")
    if genes_in is None and _label_kind(obs) == "genes" and _label_kind(var) == "cells":
        raise ValueError(
            f"{path}: AnnData stores cells x genes, but obs_names look like genes "
            f"({_show(obs)}) and var_names like cells ({_show(var)}); if this file holds genes "
            "as obs, pass genes_in='rows' (--genes-in rows)"
        )
    axis = genes_in or "columns"
    if axis == "columns":
        names, cells = var, obs
        m = scipy.sparse.csr_matrix(m.T) if scipy.sparse.issparse(m) else np.asarray(m).T
        how = f"AnnData {where}: var_names are genes, obs_names cells"
    else:
        names, cells = obs, var
        m = scipy.sparse.csr_matrix(m) if scipy.sparse.issparse(m) else np.asarray(m)
        how = f"--genes-in rows: obs_names of {where} are genes"
    hint = "; not raw counts? choose them with a layer" + (
        f" ({', '.join(layers)})" if layers else ""
    )
    _check_matrix(m, names, cells, str(path), hint if layer is None else "")
    return m, names, f"genes in {axis} ({how})"


def _find(folder: Path, *names: str) -> Path | None:
    return next((folder / n for n in names if (folder / n).is_file()), None)


def _read_lines(path: Path) -> list[list[str]]:
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            return [line.rstrip("\r\n").split("\t") for line in fh if line.strip()]
    except UnicodeDecodeError:
        raise not_utf8(path) from None
    except (EOFError, gzip.BadGzipFile, zlib.error) as exc:
        raise ValueError(f"{path}: not a readable text file ({exc})") from None


def _read_10x(
    folder: Path, genes_in: str | None, matrix: Path | None = None
) -> tuple[Any, list[str], str]:
    matrix = matrix or _find(folder, "matrix.mtx.gz", "matrix.mtx")
    features = _find(folder, "features.tsv.gz", "features.tsv", "genes.tsv.gz", "genes.tsv")
    barcodes = _find(folder, "barcodes.tsv.gz", "barcodes.tsv")
    missing = [
        what
        for what, p in (
            ("matrix.mtx[.gz]", matrix),
            ("features.tsv[.gz] or genes.tsv", features),
            ("barcodes.tsv[.gz]", barcodes),
        )
        if p is None
    ]
    if missing:
        raise ValueError(f"{folder}: not a 10x matrix folder, missing {', '.join(missing)}")
    if genes_in == "columns":
        raise ValueError(
            f"{folder}: a 10x matrix holds features in rows by its format; genes_in='columns' "
            "contradicts it"
        )
    from scipy.io import mmread

    try:
        m = mmread(str(matrix))
    except (ValueError, OSError, EOFError) as exc:
        raise ValueError(f"{matrix}: not a Matrix Market file ({exc})") from None
    feats, cells = _read_lines(features), [r[0] for r in _read_lines(barcodes)]
    if m.ndim != 2 or m.shape != (len(feats), len(cells)):
        raise ValueError(
            f"{folder}: the files do not match: {matrix.name} is {m.shape[0]} x {m.shape[1]}, "
            f"{features.name} lists {len(feats)} features and {barcodes.name} {len(cells)} "
            "barcodes"
        )
    m = scipy.sparse.csr_matrix(m)
    keep = np.array([len(r) < 3 or r[2] == "Gene Expression" for r in feats], dtype=bool)
    names = [r[0] for r, k in zip(feats, keep, strict=True) if k]
    how = "10x matrix: features x barcodes"
    if not keep.all():
        m = m[np.flatnonzero(keep)]
        how += f"; {int((~keep).sum())} features other than Gene Expression left out"
    _check_matrix(m, names, cells, str(matrix))
    return m, names, f"genes in rows ({how})"


# ---------------------------------------------------------------------------------------------
# the entry points
# ---------------------------------------------------------------------------------------------
def read_counts(
    path: str | Path, genes_in: str | None = None, *, layer: str | None = None
) -> tuple[Any, list[str], str]:
    """Read a counts table as ``[genes, cells]``, deciding its orientation unless ``genes_in``
    is given.

    Formats, by name: ``.csv``, ``.tsv``/``.tab`` and ``.txt`` or no suffix (delimiter sniffed),
    each optionally ``.gz``, with an optional header row and label column; ``.h5ad`` (AnnData:
    obs are cells, var genes; ``layer`` or X); a 10x folder (or its ``matrix.mtx[.gz]``),
    features x barcodes, only ``Gene Expression`` features kept, gene ids as names.

    Orientation of a text table, from (in this order) the header's first cell (``gene...`` or
    ``cell...``), labels that look like genes (Ensembl ``ENS[A-Z]*G\\d+``, FlyBase, WormBase
    ids, ``gene0``) or cells (barcodes ``[ACGTN]{8,}(-\\d+)?``, ``cell0``, SRR/GSM ids) on
    either axis, and names on one axis against bare numbers on the other (``txburst``'s tables:
    genes named, cells numbered). Disagreeing evidence, or none, is an error asking for
    ``genes_in``; the table's shape is never used.

    An empty field, ``NA`` or ``nan`` (:data:`MISSING`) is a missing cell, NaN in the result.

    Args:
        path: the file or 10x folder.
        genes_in: ``"rows"``, ``"columns"`` or None (decide).
        layer: the AnnData layer of an ``.h5ad`` file (default X).

    Returns:
        ``(counts [G, C], gene names, how the orientation was decided)``. ``counts`` is an
        int64 array, a float64 array with NaN where cells are missing, or (sparse ``.h5ad``, 10x)
        a ``scipy.sparse.csr_matrix``.

    Raises:
        OSError: the file cannot be read (missing, no permission).
        ImportError: an ``.h5ad`` file without ``anndata`` installed.
        ValueError: an unknown file type, an empty table, a file that is not UTF-8 (naming
            the byte's offset and line), text where counts belong, a row with more or fewer
            fields than the header or the first data row (naming its line and both counts), a
            negative or non-integer count, a count above ``2**53`` (:data:`MAX_EXACT`: float64
            cannot hold it exactly), an undecidable orientation, a missing layer, 10x files
            that do not match, bad ``genes_in``.

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "c.csv")
    >>> _ = open(p, "w").write("gene,c1,c2,c3\\nA,0,1,2\\nB,3,,1\\n")
    >>> counts, names, how = read_counts(p)
    >>> counts.tolist(), names, how
    ([[0.0, 1.0, 2.0], [3.0, nan, 1.0]], ['A', 'B'], "genes in rows (header's first cell names genes)")
    """
    if genes_in not in (None, "rows", "columns"):
        raise ValueError(f"genes_in must be 'rows', 'columns' or None, got {genes_in!r}")
    p = Path(path)
    if p.is_dir():
        if layer is not None:
            raise ValueError(f"{p}: layer applies to .h5ad files only, got layer={layer!r}")
        return _read_10x(p, genes_in)
    name = p.name.lower()
    stem = name[:-3] if name.endswith(".gz") else name
    suffix = Path(stem).suffix
    if name.endswith(".h5ad"):
        return _read_h5ad(p, genes_in, layer)
    if layer is not None:
        raise ValueError(f"{p}: layer applies to .h5ad files only, got layer={layer!r}")
    if suffix == ".mtx":
        return _read_10x(p.parent, genes_in, matrix=p)
    if suffix not in (".csv", ".tsv", ".tab", ".txt", ""):
        raise ValueError(
            f"{p}: unknown file type {suffix!r}; expected .csv, .tsv or .txt (optionally .gz), "
            ".h5ad, or a 10x folder (matrix.mtx, features.tsv, barcodes.tsv)"
        )
    return _read_text(p, suffix, genes_in)


def read_kinetics(path: str | Path) -> Tensor:
    """Read a kinetics CSV with columns ``k_on, k_off, k_syn`` (one row per gene; other columns
    such as a gene name are ignored) as ``[G, 3]`` float64 rates.

    Args:
        path: the CSV file, with a header row naming its columns.

    Returns:
        ``[G, 3]`` float64 ``(k_on, k_off, k_syn)``.

    Raises:
        OSError: the file cannot be read.
        ValueError: no rows, a file that is not UTF-8, a missing column, a row with more or
            fewer fields than the header (naming its line), a value that is not a finite
            positive number.

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "k.csv")
    >>> _ = open(p, "w").write("gene,k_on,k_off,k_syn\\nA,0.5,2,30\\n")
    >>> read_kinetics(p).tolist()
    [[0.5, 2.0, 30.0]]
    """
    rows = table_rows(path, ",")
    first = next(rows, None)
    if first is None:
        raise ValueError(f"{path}: empty kinetics table")
    header = [h.strip() for h in first[1]]
    missing = [c for c in KINETICS_COLUMNS if c not in header]
    if missing:
        raise ValueError(
            f"{path}: needs columns {', '.join(KINETICS_COLUMNS)} in its header row "
            f"(missing {', '.join(missing)}; it has {summarize_names(header)})"
        )
    cols = [header.index(c) for c in KINETICS_COLUMNS]
    values = []
    for line, r in rows:
        if len(r) != len(header):
            raise ragged_row(path, line, len(r), len(header), f"the header (line {first[0]})")
        row = []
        for c, name in zip(cols, KINETICS_COLUMNS, strict=True):
            v = r[c]
            if not _is_number(v) or not (0 < float(v) < float("inf")):
                raise ValueError(
                    f"{path}: line {line}: {name} must be a finite number > 0, got {v[:40]!r}"
                )
            row.append(float(v))
        values.append(row)
    if not values:
        raise ValueError(f"{path}: no genes below the header row")
    return torch.tensor(values, dtype=DTYPE)
