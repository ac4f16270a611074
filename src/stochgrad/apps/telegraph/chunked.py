"""Fitting many genes: chunks of genes across processes or Ray, progress, a resumable checkpoint.

:func:`fit_counts` cuts a counts table into chunks of genes, fits them with
:func:`~stochgrad.apps.telegraph.fit.fit_genes` through :func:`stochgrad.parallel.map_items`,
and saves each finished chunk at once in a :class:`~stochgrad.checkpoint.RunCheckpoint` (one run
per chunk, key ``("chunk", index)``): an interrupted fit rerun with the same data and settings
redoes only the unfinished chunks and gives the same numbers.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stochgrad._checks import check_int
from stochgrad.apps.telegraph.fit import MAX_CI_RATIO, GeneFits, fit_genes
from stochgrad.apps.telegraph.likelihood import _as_counts
from stochgrad.checkpoint import RunCheckpoint

__all__ = ["FitConfig", "fit_counts"]


@dataclass
class FitConfig:
    """Settings of a fit; a checkpoint made with other settings (or other data) is refused."""

    data_sha1: str = ""
    num_genes: int = 0
    num_cells: int = 0
    chunk_size: int = 50
    ci: bool = True
    max_iter: int = 60
    max_ci_ratio: float = MAX_CI_RATIO


@dataclass
class _FitChunk:
    """The fits of one chunk of genes, as a run of the checkpoint."""

    fits: GeneFits

    def to_state(self) -> dict[str, Any]:
        return {c: torch.from_numpy(np.asarray(v)) for c, v in self.fits.to_state().items()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> _FitChunk:
        return cls(GeneFits(**{c: state[c].numpy() for c in GeneFits.COLUMNS}))


def _chunk_index(key: tuple[Any, ...]) -> int:
    """The chunk of a checkpoint key: ``("chunk", i)``, or ``("chunk<i>", 0)`` of earlier files."""
    if len(key) == 2 and key[0] == "chunk":
        return int(key[1])
    return int(str(key[0]).removeprefix("chunk"))


def _fit_chunk(payload: tuple[np.ndarray, bool, int, float]) -> GeneFits:
    """Worker job: fit one chunk of genes (module level so worker processes can import it)."""
    counts, ci, max_iter, max_ci_ratio = payload
    return fit_genes(torch.from_numpy(counts), ci=ci, max_iter=max_iter, max_ci_ratio=max_ci_ratio)


def fit_counts(
    counts: Any,
    *,
    chunk_size: int = 50,
    ci: bool = True,
    max_iter: int = 60,
    max_ci_ratio: float = MAX_CI_RATIO,
    backend: str = "serial",
    num_workers: int | None = None,
    checkpoint: str | Path | None = None,
    restart: bool = False,
    progress: Callable[[int], None] | None = None,
    on_resume: Callable[[int, int], None] | None = None,
) -> GeneFits:
    """:func:`~stochgrad.apps.telegraph.fit.fit_genes` over many genes in chunks, in parallel,
    resumable.

    Genes with only zero counts get NaN kinetics and every non-identifiability flag. The other
    genes are sorted by their largest count (so a chunk shares a similar recurrence length) and
    cut into chunks of ``chunk_size``; chunks run through :func:`stochgrad.parallel.map_items`.
    Each finished chunk is saved to ``checkpoint`` at once (before ``progress`` hears of it), so
    an interrupted fit resumed with the same data and settings redoes only unfinished chunks and
    gives the same numbers.

    Args:
        counts: ``[G, C]`` counts, genes x cells (at least 2 cells).
        chunk_size: genes per job.
        ci, max_iter, max_ci_ratio: as in :func:`~stochgrad.apps.telegraph.fit.fit_genes`.
        backend, num_workers: as in :func:`stochgrad.parallel.map_items`.
        checkpoint: a ``.pt`` file, or None for no checkpoint.
        restart: discard an existing checkpoint and start afresh.
        progress: called with the number of genes just finished (also for resumed chunks).
        on_resume: called once, before any work, with the numbers of finished chunks found in
            ``checkpoint`` and of all chunks, when some were found.

    Returns:
        :class:`~stochgrad.apps.telegraph.fit.GeneFits` in the order of the input genes.

    Raises:
        ValueError: not a 2-D table of non-negative integers, fewer than 2 cells, bad settings.
        stochgrad.checkpoint.CheckpointMismatch: ``checkpoint`` was made with other data or
            settings.

    >>> x = torch.tensor([[0, 3, 1, 0, 7, 2, 0, 1]] * 2)
    >>> fit_counts(x, ci=False).k_on.shape
    (2,)
    """
    from stochgrad.parallel import map_items

    x = _as_counts(counts, "counts")
    if x.dim() != 2:
        raise ValueError(f"counts must be [genes, cells], got shape {list(x.shape)}")
    if x.shape[1] < 2:
        raise ValueError(f"counts needs at least 2 cells per gene, got {x.shape[1]}")
    chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    max_iter = check_int("max_iter", max_iter, minimum=0)
    if not (isinstance(max_ci_ratio, (int, float)) and max_ci_ratio > 1):
        raise ValueError(f"max_ci_ratio must be a number > 1, got {max_ci_ratio!r}")
    arr = np.ascontiguousarray(x.numpy())
    G = arr.shape[0]
    nonzero = np.flatnonzero(arr.sum(1) > 0)
    order = nonzero[np.argsort(arr[nonzero].max(1), kind="stable")]
    chunks = [order[i : i + chunk_size] for i in range(0, len(order), chunk_size)]
    config = FitConfig(
        data_sha1=hashlib.sha1(arr.tobytes() + str(arr.shape).encode()).hexdigest(),
        num_genes=G,
        num_cells=arr.shape[1],
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
        [(arr[chunks[i]], ci, max_iter, float(max_ci_ratio)) for i in todo],
        backend=backend,
        num_workers=num_workers,
        callback=finished,
    )
    nan = np.full(G, np.nan)
    out = GeneFits(**{c: nan.copy() for c in GeneFits.COLUMNS})
    for c in GeneFits.FLAGS:  # all-zero genes: nothing is identifiable
        setattr(out, c, np.ones(G, dtype=bool))
    for i, idx in enumerate(chunks):
        for c in GeneFits.COLUMNS:
            getattr(out, c)[idx] = getattr(done[i], c)
    return out
