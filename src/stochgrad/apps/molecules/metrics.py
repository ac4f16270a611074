"""MOSES-style metrics of generated SMILES: validity, uniqueness, novelty, internal diversity.

Definitions follow Polykovskiy et al. 2020 ("Molecular Sets (MOSES)", Front. Pharmacol.):

* validity: the fraction of generated strings that RDKit parses;
* uniqueness@k: the fraction of distinct canonical SMILES among the first ``k`` valid ones;
* novelty: the fraction of distinct valid molecules not in the training set;
* internal diversity: :math:`1 - \\frac{1}{|G|^2}\\sum_{x, y \\in G} T(x, y)`, the mean Tanimoto
  similarity over all ordered pairs of valid molecules (diagonal included, as MOSES does), on
  Morgan radius-2, 2048-bit fingerprints.

The ``moses`` package is not imported (its ``__init__`` fails with current pandas); the
pairwise Tanimoto matrix is computed here as a bit-matrix product in chunks, because RDKit's
bulk routine is one row at a time and MOSES' own needs its package.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from stochgrad._checks import check_int, check_seed
from stochgrad.apps.molecules.scoring import _fingerprint, canonical

__all__ = ["MosesMetrics", "fingerprint_matrix", "internal_diversity", "moses_metrics"]


def _check_smiles(name: str, smiles: Any) -> Sequence[str]:
    """``smiles`` if it is a sequence of strings (one str is refused: it is not a list)."""
    if isinstance(smiles, str) or not isinstance(smiles, Sequence):
        raise TypeError(f"{name} must be a list of SMILES strings, got {type(smiles).__name__}")
    bad = next((i for i, s in enumerate(smiles) if not isinstance(s, str)), None)
    if bad is not None:
        raise TypeError(f"{name}[{bad}] must be a SMILES str, got {type(smiles[bad]).__name__}")
    return smiles


def fingerprint_matrix(smiles: Sequence[str]) -> np.ndarray:
    """Morgan r2 2048-bit fingerprints of valid ``smiles`` as a ``[n, 2048]`` uint8 matrix.

    Raises:
        ValueError: if a SMILES is invalid.
    """
    out = np.zeros((len(smiles), 2048), dtype=np.uint8)
    for i, s in enumerate(smiles):
        fp = _fingerprint(s)
        if fp is None:
            raise ValueError(f"smiles[{i}] = {s!r} is not a valid SMILES")
        out[i, list(fp.GetOnBits())] = 1
    return out


def internal_diversity(smiles: Sequence[str], *, chunk: int = 2048) -> float:
    """``1 -`` mean pairwise Tanimoto similarity (all ordered pairs, diagonal included).

    Args:
        smiles: valid SMILES (at least one).
        chunk: rows per block of the similarity matrix (memory ``chunk * n`` floats).

    Raises:
        ValueError: if ``smiles`` is empty or contains an invalid SMILES.

    >>> round(internal_diversity(["CCO", "CCO"]), 6), internal_diversity(["CCO", "c1ccccc1"])
    (0.0, 0.5)
    """
    _check_smiles("smiles", smiles)
    if len(smiles) == 0:
        raise ValueError("smiles must be non-empty")
    chunk = check_int("chunk", chunk, minimum=1)
    fps = fingerprint_matrix(smiles).astype(np.float32)
    counts = fps.sum(1)
    total = 0.0
    for start in range(0, len(smiles), chunk):
        block = fps[start : start + chunk]
        inter = block @ fps.T
        union = counts[start : start + chunk, None] + counts[None, :] - inter
        sim = np.where(union > 0, inter / np.maximum(union, 1), 1.0)
        total += float(sim.sum(dtype=np.float64))
    return 1.0 - total / len(smiles) ** 2


@dataclass(frozen=True)
class MosesMetrics:
    """Metrics of one set of generated SMILES."""

    num_generated: int
    validity: float
    uniqueness: float
    unique_at: int
    novelty: float
    internal_diversity: float


def moses_metrics(
    generated: Sequence[str],
    train: Iterable[str] | None = None,
    *,
    unique_at: int = 10_000,
    diversity_sample: int | None = None,
    seed: int = 0,
) -> MosesMetrics:
    """Validity, uniqueness@``unique_at``, novelty and internal diversity of ``generated``.

    Args:
        generated: generated strings (invalid ones allowed).
        train: training SMILES for novelty (canonicalised here); ``None`` gives novelty ``nan``.
        unique_at: uniqueness over the first ``unique_at`` valid molecules.
        diversity_sample: compute IntDiv on a seeded subset of this many valid molecules
            (``None``: all of them).
        seed: seed of that subset.

    Raises:
        ValueError: if ``generated`` is empty or ``unique_at`` < 1.

    >>> m = moses_metrics(["CCO", "OCC", "C1CC", "c1ccccc1"], ["CCO"])
    >>> m.validity, round(m.uniqueness, 4), m.novelty
    (0.75, 0.6667, 0.5)
    """
    _check_smiles("generated", generated)
    if len(generated) == 0:
        raise ValueError("generated must be non-empty")
    if train is not None:
        train = _check_smiles("train", list(train) if not isinstance(train, str) else train)
    seed = check_seed("seed", seed)
    check_int("unique_at", unique_at, minimum=1)
    if diversity_sample is not None:
        check_int("diversity_sample", diversity_sample, minimum=1)
    valid = [c for c in (canonical(s) for s in generated) if c is not None]
    validity = len(valid) / len(generated)
    first = valid[:unique_at]
    uniqueness = len(set(first)) / len(first) if first else float("nan")
    distinct = set(valid)
    if train is None or not distinct:
        novelty = float("nan")
    else:
        train_set = {c for c in (canonical(s) for s in train) if c is not None}
        novelty = len(distinct - train_set) / len(distinct)
    pool = valid
    if diversity_sample is not None and len(valid) > diversity_sample:
        idx = np.random.default_rng(seed).choice(len(valid), diversity_sample, replace=False)
        pool = [valid[i] for i in idx]
    intdiv = internal_diversity(pool) if pool else float("nan")
    return MosesMetrics(len(generated), validity, uniqueness, unique_at, novelty, intdiv)
