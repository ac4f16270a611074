"""Fitting many genes: chunks of genes across processes or Ray, progress, a resumable checkpoint.

:func:`fit_counts` cuts a counts table into chunks of genes, fits them with
:func:`~stochgrad.apps.telegraph.fit.fit_genes` through :func:`stochgrad.parallel.map_items`,
and saves each finished chunk at once in a :class:`~stochgrad.checkpoint.RunCheckpoint` (one run
per chunk, key ``("chunk", index)``): an interrupted fit rerun with the same data and settings
redoes only the unfinished chunks and gives the same numbers. The table may be dense or a scipy
sparse matrix (densified one chunk at a time, in the worker), and NaN marks a missing cell
(:func:`describe_counts`).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse
import torch

from stochgrad._checks import check_int
from stochgrad.apps.telegraph.fit import (
    MAX_CI_RATIO,
    MIN_CELLS,
    FewCellsWarning,
    GeneFits,
    _check_ratio,
    fit_genes,
    warn_few_cells,
)
from stochgrad.apps.telegraph.likelihood import MAX_COUNT, _too_large
from stochgrad.checkpoint import RunCheckpoint, load_state

__all__ = [
    "CHUNK_SIZE",
    "CountsInfo",
    "FitConfig",
    "auto_chunk_size",
    "describe_counts",
    "fit_counts",
]

#: Default genes per job of :func:`fit_counts`: 250 fits 1000 genes x 1000 cells about twice as
#: fast as 50 (``benchmarks/bench_telegraph_txburst.py``), the batch's fixed costs spread over
#: more genes.
CHUNK_SIZE = 250

#: The most worker processes :func:`fit_counts` starts.
MAX_WORKERS = 1024


@dataclass
class FitConfig:
    """Settings of a fit; a checkpoint made with other settings (or other data) is refused."""

    data_sha1: str = ""
    num_genes: int = 0
    num_cells: int = 0
    chunk_size: int = 250
    ci: bool = True
    max_iter: int = 60
    max_ci_ratio: float = MAX_CI_RATIO


@dataclass
class CountsInfo:
    """What a counts table holds, gene by gene (:func:`describe_counts`).

    Attributes:
        num_genes, num_cells: the table's shape ``[G, C]``.
        observed: ``[G]`` cells observed per gene (``C`` less its missing cells).
        expressed: ``[G]`` some observed count is above zero.
        fitted: ``[G]`` the genes :func:`fit_counts` fits: expressed, with at least 2 observed
            cells; the others get NaN kinetics and every flag.
        few_cells: ``[G]`` fitted genes with fewer than ``min_cells`` observed cells.
        missing: missing cells in the whole table.
        min_cells: the threshold of ``few_cells``.
    """

    num_genes: int
    num_cells: int
    observed: np.ndarray
    expressed: np.ndarray
    fitted: np.ndarray
    few_cells: np.ndarray
    missing: int
    min_cells: int


class _Table:
    """A validated ``[G, C]`` counts table, dense (numpy) or CSR, NaN marking missing cells."""

    def __init__(self, counts: Any, name: str = "counts", genes: Sequence[str] | None = None):
        if scipy.sparse.issparse(counts):
            m = scipy.sparse.csr_matrix(counts)
            m.sum_duplicates()
            self.sparse, values = m, m.data
        else:
            if isinstance(counts, torch.Tensor):
                if counts.device.type == "meta":
                    raise ValueError(f"{name} must hold values, got a tensor on the 'meta' device")
                counts = counts.detach().cpu().numpy()
            m = np.asarray(counts)
            self.sparse, values = None, m
        if m.ndim != 2:
            raise ValueError(f"{name} must be [genes, cells], got shape {list(m.shape)}")
        if values.dtype == bool or values.dtype.kind not in "iuf":
            raise TypeError(f"{name} must hold non-negative integers, got dtype {values.dtype}")
        self.shape = m.shape
        self.dense = m if self.sparse is None else None
        G, C = m.shape
        nan = np.isnan(values) if values.dtype.kind == "f" else None
        bad = values < 0
        if nan is not None:
            bad |= ~nan & (~np.isfinite(values) | (values != np.round(values)))
        if bad.any():
            gene, cell, v = self._locate(np.flatnonzero(bad.reshape(-1))[0], values)
            raise ValueError(
                f"{name} must hold non-negative integers (NaN marks a missing cell), got "
                f"{v:g} at gene {gene}, cell {cell}"
            )
        self.has_missing = bool(nan is not None and nan.any())
        if self.sparse is None:
            filled = np.where(nan, 0, m) if self.has_missing else m
            self.missing = nan.sum(1) if self.has_missing else np.zeros(G, dtype=np.int64)
            self.total = filled.sum(1) if G and C else np.zeros(G)
            self.max = filled.max(1) if G and C else np.zeros(G)
        else:
            rows = np.repeat(np.arange(G), np.diff(m.indptr))
            filled = m.copy()
            if self.has_missing:
                filled.data = np.where(nan, 0, filled.data)
                self.missing = np.bincount(rows[nan], minlength=G)
            else:
                self.missing = np.zeros(G, dtype=np.int64)
            self.total = np.asarray(filled.sum(1)).reshape(-1)
            self.max = filled.max(1).toarray().reshape(-1) if G and C else np.zeros(G)
        self.observed = C - np.asarray(self.missing, dtype=np.int64)
        if G and C and float(np.max(self.max)) > MAX_COUNT:  # before any work is spent on it
            gene = int(np.argmax(self.max))
            row = m[gene].toarray() if self.sparse is not None else m[gene][None]
            cell = int(np.nanargmax(np.asarray(row, dtype=np.float64)[0]))
            label = (
                f"{genes[gene]!r}, row {gene}" if genes is not None and len(genes) == G else gene
            )
            raise _too_large(f"{name} (gene {label}, cell {cell})", float(self.max[gene]))

    def _locate(self, flat: int, values: np.ndarray) -> tuple[int, int, float]:
        if self.sparse is None:
            gene, cell = divmod(int(flat), self.shape[1])
        else:
            gene = int(np.searchsorted(self.sparse.indptr, flat, side="right")) - 1
            cell = int(self.sparse.indices[flat])
        return gene, cell, float(values.reshape(-1)[flat])

    def rows(self, idx: np.ndarray) -> Any:
        """The genes ``idx``: a dense array (int64, or float64 with NaN) or a CSR slice."""
        if self.sparse is not None:
            return self.sparse[idx]
        return _dense(self.dense[idx], self.has_missing)

    def sha1(self) -> str:
        """SHA-1 of the dense table (int64, float64 when cells are missing) and its shape: the
        same data gives the same digest from a dense or a sparse source."""
        h = hashlib.sha1()
        G, C = self.shape
        step = max(1, (1 << 23) // max(C, 1))  # 64 MiB of float64 per block
        for i in range(0, G, step):
            block = self.sparse[i : i + step].toarray() if self.sparse is not None else None
            h.update(_dense(self.dense[i : i + step] if block is None else block, self.has_missing))
        h.update(str((G, C)).encode())
        return h.hexdigest()


def _dense(block: Any, missing: bool) -> np.ndarray:
    if scipy.sparse.issparse(block):
        block = block.toarray()
    return np.ascontiguousarray(block, dtype=np.float64 if missing else np.int64)


def auto_chunk_size(num_genes: int, backend: str = "serial", num_workers: int | None = None) -> int:
    """Genes per job of :func:`fit_counts` by default: :data:`CHUNK_SIZE`, or fewer so that each
    worker gets at least one chunk.

    Args:
        num_genes: genes to fit.
        backend: as in :func:`stochgrad.parallel.map_items` (``"serial"`` has one worker).
        num_workers: workers (default ``os.cpu_count()``).

    Returns:
        The chunk size, at least 1.

    >>> auto_chunk_size(10_000, "process", 2), auto_chunk_size(100, "process", 2)
    (250, 50)
    """
    import os

    workers = 1 if backend == "serial" else max(1, num_workers or os.cpu_count() or 1)
    return max(1, min(CHUNK_SIZE, -(-int(num_genes) // workers)))


def describe_counts(
    counts: Any, min_cells: int = MIN_CELLS, names: Sequence[str] | None = None
) -> CountsInfo:
    """Check a counts table and say which genes :func:`fit_counts` fits.

    Args:
        counts: ``[G, C]`` non-negative integer counts, genes x cells: a tensor, a numpy array
            or a scipy sparse matrix. NaN marks a missing cell (``txburst``'s convention).
        min_cells: the threshold of :attr:`CountsInfo.few_cells`.
        names: gene names for error messages (default: row indices).

    Returns:
        :class:`CountsInfo`.

    Raises:
        ValueError: not a 2-D table, a negative, non-integer or infinite value, a count above
            :data:`~stochgrad.apps.telegraph.likelihood.MAX_COUNT`.
        TypeError: not a numeric table.

    >>> info = describe_counts(np.array([[0, 3, float("nan")], [0, 0, 0]]))
    >>> info.observed.tolist(), info.fitted.tolist(), info.missing
    ([2, 3], [True, False], 1)
    """
    return _info(_Table(counts, genes=names), min_cells)


def _info(t: _Table, min_cells: int) -> CountsInfo:
    G, C = t.shape
    expressed = np.asarray(t.total > 0).reshape(-1)
    fitted = expressed & (t.observed >= 2)
    return CountsInfo(
        num_genes=G,
        num_cells=C,
        observed=t.observed,
        expressed=expressed,
        fitted=fitted,
        few_cells=fitted & (t.observed < min_cells),
        missing=int(G * C - t.observed.sum()),
        min_cells=int(min_cells),
    )


@dataclass
class _FitChunk:
    """The fits of one chunk of genes, as a run of the checkpoint."""

    fits: GeneFits

    def to_state(self) -> dict[str, Any]:
        return {c: torch.from_numpy(np.asarray(v)) for c, v in self.fits.to_state().items()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> _FitChunk:
        return cls(GeneFits.from_state({c: v.numpy() for c, v in state.items()}))


def _chunk_index(key: tuple[Any, ...]) -> int:
    """The chunk of a checkpoint key: ``("chunk", i)``, or ``("chunk<i>", 0)`` of earlier files."""
    if len(key) == 2 and key[0] == "chunk":
        return int(key[1])
    return int(str(key[0]).removeprefix("chunk"))


def _saved_chunk_size(checkpoint: str | Path | None, restart: bool) -> int | None:
    """The chunk size a readable checkpoint was made with (None if none can be read; a bad
    file is reported by :meth:`RunCheckpoint.load`)."""
    if checkpoint is None or restart or not Path(checkpoint).is_file():
        return None
    try:
        config = load_state(Path(checkpoint)).get("config", {})
        size = config.get("chunk_size") if isinstance(config, dict) else None
    except Exception:  # noqa: BLE001  (any unreadable file: RunCheckpoint.load says why)
        return None
    return size if isinstance(size, int) and not isinstance(size, bool) and size >= 1 else None


def _fit_chunk(payload: tuple[Any, bool, int, float]) -> GeneFits:
    """Worker job: fit one chunk of genes (module level so worker processes can import it)."""
    counts, ci, max_iter, max_ci_ratio = payload
    if scipy.sparse.issparse(counts):  # densified here: one chunk at a time in memory
        counts = _dense(counts, bool(np.isnan(counts.data).any()))
    with warnings.catch_warnings():  # the caller of fit_counts was warned once, with names
        warnings.simplefilter("ignore", FewCellsWarning)
        return fit_genes(
            torch.from_numpy(counts), ci=ci, max_iter=max_iter, max_ci_ratio=max_ci_ratio
        )


def fit_counts(
    counts: Any,
    *,
    chunk_size: int | None = None,
    ci: bool = True,
    max_iter: int = 60,
    max_ci_ratio: float = MAX_CI_RATIO,
    backend: str = "serial",
    num_workers: int | None = None,
    checkpoint: str | Path | None = None,
    restart: bool = False,
    progress: Callable[[int], None] | None = None,
    on_resume: Callable[[int, int], None] | None = None,
    names: Sequence[str] | None = None,
    timeout: float | None = None,
) -> GeneFits:
    """:func:`~stochgrad.apps.telegraph.fit.fit_genes` over many genes in chunks, in parallel,
    resumable.

    Genes with only zero counts, or fewer than 2 observed cells, get NaN kinetics and every
    non-identifiability flag. A NaN count is a missing cell: each gene's likelihood is over its
    observed cells (``txburst``'s convention); genes with fewer than
    :data:`~stochgrad.apps.telegraph.fit.MIN_CELLS` observed cells are fitted, with one
    :class:`~stochgrad.apps.telegraph.fit.FewCellsWarning` naming them. The other genes are
    sorted by their largest count (so a chunk shares a similar recurrence length) and cut into
    chunks of ``chunk_size``; chunks run through :func:`stochgrad.parallel.map_items`. Each
    finished chunk is saved to ``checkpoint`` at once (before ``progress`` hears of it), so an
    interrupted fit resumed with the same data and settings redoes only unfinished chunks and
    gives the same numbers.

    Args:
        counts: ``[G, C]`` counts, genes x cells (at least 2 cells): a tensor, a numpy array
            or a scipy sparse matrix (densified chunk by chunk); NaN marks a missing cell.
        chunk_size: genes per job; by default :data:`CHUNK_SIZE`, or fewer so that every
            worker gets a chunk. Larger chunks run faster (one batched pass over more genes);
            each chunk's table is densified in its worker.
        ci: as in :func:`~stochgrad.apps.telegraph.fit.fit_genes`.
        max_iter: as in :func:`~stochgrad.apps.telegraph.fit.fit_genes`.
        max_ci_ratio: as in :func:`~stochgrad.apps.telegraph.fit.fit_genes`.
        backend: as in :func:`stochgrad.parallel.map_items`.
        num_workers: as in :func:`stochgrad.parallel.map_items`.
        checkpoint: a ``.pt`` file, or None for no checkpoint.
        restart: discard an existing checkpoint and start afresh.
        progress: called with the number of genes just finished (also for resumed chunks).
        on_resume: called once, before any work, with the numbers of finished chunks found in
            ``checkpoint`` and of all chunks, when some were found.
        names: gene names for the few-cells warning (default: indices).
        timeout: seconds one chunk may run (``None``: no limit); a chunk past it stops the fit
            with :class:`stochgrad.parallel.ChunkTimeout` naming it, the finished chunks saved.

    Returns:
        :class:`~stochgrad.apps.telegraph.fit.GeneFits` in the order of the input genes.

    Raises:
        ValueError: not a 2-D table of non-negative integers (or NaN), fewer than 2 cells, bad
            settings.
        stochgrad.checkpoint.CheckpointMismatch: ``checkpoint`` was made with other data or
            settings.

    >>> x = torch.tensor([[0, 3, 1, 0, 7, 2, 0, 1]] * 2)
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", FewCellsWarning)  # 8 cells: far too few
    ...     fit_counts(x, ci=False).k_on.shape
    (2,)
    """
    from stochgrad.parallel import map_items

    table = _Table(counts, genes=names)
    G, C = table.shape
    if C < 2:
        raise ValueError(f"counts needs at least 2 cells per gene, got {C}")
    if chunk_size is not None:
        chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    max_iter = check_int("max_iter", max_iter, minimum=1)
    if not isinstance(ci, bool):
        raise TypeError(f"ci must be a bool, got {ci!r}")
    _check_ratio(max_ci_ratio)
    if names is not None:
        if isinstance(names, str) or not all(isinstance(n, str) for n in names):
            raise TypeError("names must be a sequence of gene names (str)")
        if len(names) != G:
            raise ValueError(f"names must name the {G} genes, got {len(names)} names")
    if num_workers is not None:  # more workers than this is a typing slip, not a plan
        check_int("num_workers", num_workers, minimum=1, maximum=MAX_WORKERS)
    info = _info(table, MIN_CELLS)
    fitted = np.flatnonzero(info.fitted)
    if chunk_size is None:  # a resumed fit keeps its chunks, whatever the workers now
        chunk_size = _saved_chunk_size(checkpoint, restart) or auto_chunk_size(
            len(fitted), backend, num_workers
        )
    warn_few_cells(info.observed[fitted], None if names is None else [names[i] for i in fitted])
    order = fitted[np.argsort(table.max[fitted], kind="stable")]
    chunks = [order[i : i + chunk_size] for i in range(0, len(order), chunk_size)]
    config = FitConfig(
        data_sha1=table.sha1(),
        num_genes=G,
        num_cells=C,
        chunk_size=chunk_size,
        ci=bool(ci),
        max_iter=max_iter,
        max_ci_ratio=float(max_ci_ratio),
    )
    ckpt = None
    done: dict[int, GeneFits] = {}
    if checkpoint is not None:
        ckpt = RunCheckpoint(checkpoint, config, result_type=_FitChunk)
        if restart:
            ckpt.clear()
        else:
            ckpt.load()
        done = {_chunk_index(key): run.fits for key, run in ckpt.runs.items()}
    todo = [i for i in range(len(chunks)) if i not in done]
    if done and on_resume is not None:
        on_resume(len(done), len(chunks))
    if progress is not None and done:
        progress(sum(len(chunks[i]) for i in done))

    def finished(j: int, fits: GeneFits) -> None:
        i = todo[j]
        done[i] = fits
        if ckpt is not None:
            ckpt.add(_FitChunk(fits), ("chunk", i))
        if progress is not None:
            progress(len(chunks[i]))

    map_items(
        _fit_chunk,
        [(table.rows(chunks[i]), ci, max_iter, float(max_ci_ratio)) for i in todo],
        backend=backend,
        num_workers=num_workers,
        callback=finished,
        timeout=timeout,
        labels=[f"chunk {i} of {len(chunks)} ({len(chunks[i])} genes)" for i in todo],
    )
    nan = np.full(G, np.nan)
    out = GeneFits(**{c: nan.copy() for c in GeneFits.COLUMNS})
    for c in GeneFits.FLAGS:  # genes not fitted: nothing is identifiable
        setattr(out, c, np.ones(G, dtype=bool))
    out.converged = np.zeros(G, dtype=bool)
    for i, idx in enumerate(chunks):
        for c in GeneFits.COLUMNS:
            getattr(out, c)[idx] = getattr(done[i], c)
    return out
