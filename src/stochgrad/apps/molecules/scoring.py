"""Scoring functions of finished molecules, and an oracle that counts unique calls.

Scores (all computed by RDKit; an invalid SMILES scores 0):

* QED, the quantitative estimate of drug-likeness (Bickerton et al. 2012, Nat. Chem.),
  ``rdkit.Chem.QED.qed``, in [0, 1].
* Penalised logP (Gomez-Bombarelli et al. 2018; You et al. 2018, GCPN):
  :math:`\\mathrm{logP} - \\mathrm{SA} - \\max(0, \\text{largest ring} - 6)` with Crippen logP
  and the synthetic-accessibility score of Ertl & Schuffenhauer 2009 (RDKit Contrib
  ``SA_Score/sascorer.py``). Unbounded; :func:`squash_logp` maps it to (0, 1) for the agent.
* Tanimoto similarity to a target on Morgan radius-2, 2048-bit fingerprints.
* Weighted sums of the above.

The :class:`Oracle` follows the PMO convention (Gao et al. 2022, "Sample efficiency matters",
NeurIPS Datasets and Benchmarks): a call is one *unique valid* molecule (canonical SMILES);
repeats are served from a cache and invalid SMILES score 0, neither counting against the
budget. :func:`top_auc` is PMO's area under the top-k-average curve.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from stochgrad._checks import check_callable, check_int

__all__ = [
    "canonical",
    "qed_score",
    "penalized_logp",
    "squash_logp",
    "tanimoto_similarity",
    "make_objective",
    "Oracle",
    "top_auc",
    "CELECOXIB",
]

CELECOXIB = "Cc1ccc(-c2cc(C(F)(F)F)nn2-c2ccc(S(N)(=O)=O)cc2)cc1"


def _mol(smiles: str) -> Any:
    from rdkit import Chem, RDLogger

    RDLogger.DisableLog("rdApp.*")
    if not isinstance(smiles, str):
        raise TypeError(f"smiles must be a str, got {type(smiles).__name__}")
    return Chem.MolFromSmiles(smiles) if smiles else None


def canonical(smiles: str) -> str | None:
    """RDKit canonical SMILES, or ``None`` if ``smiles`` does not parse.

    >>> canonical("OCC"), canonical("C1CC")
    ('CCO', None)
    """
    from rdkit import Chem

    mol = _mol(smiles)
    return None if mol is None else Chem.MolToSmiles(mol)


def qed_score(smiles: str) -> float:
    """QED of ``smiles`` (0 if invalid).

    >>> round(qed_score("CC(=O)Oc1ccccc1C(=O)O"), 4)  # aspirin
    0.5501
    """
    from rdkit.Chem import QED

    mol = _mol(smiles)
    return 0.0 if mol is None else float(QED.qed(mol))


@lru_cache(maxsize=1)
def _sascorer() -> Any:
    from rdkit import RDConfig

    path = f"{RDConfig.RDContribDir}/SA_Score/sascorer.py"
    spec = importlib.util.spec_from_file_location("sascorer", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"RDKit's SA score not found at {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def penalized_logp(smiles: str) -> float:
    """Penalised logP: Crippen logP - SA score - max(0, largest ring size - 6).

    Returns ``nan`` for an invalid SMILES (the objective then scores it 0).

    >>> round(penalized_logp("c1ccccc1"), 3)  # logP 1.687 - SA 1.0 - no ring penalty
    0.687
    """
    from rdkit.Chem import Crippen

    mol = _mol(smiles)
    if mol is None:
        return math.nan
    rings = [len(r) for r in mol.GetRingInfo().AtomRings()]
    ring_penalty = max(0, max(rings, default=0) - 6)
    return float(Crippen.MolLogP(mol) - _sascorer().calculateScore(mol) - ring_penalty)


def squash_logp(value: float, *, scale: float = 2.0) -> float:
    """Map penalised logP to (0, 1) by ``sigmoid(value / scale)``; ``nan`` (invalid) -> 0.

    >>> squash_logp(0.0), squash_logp(float("nan"))
    (0.5, 0.0)
    """
    if math.isnan(value):
        return 0.0
    return 1.0 / (1.0 + math.exp(-value / scale))


@lru_cache(maxsize=4096)
def _fingerprint(smiles: str) -> Any:

    mol = _mol(smiles)
    if mol is None:
        return None
    return _morgan().GetFingerprint(mol)


@lru_cache(maxsize=1)
def _morgan() -> Any:
    from rdkit.Chem import rdFingerprintGenerator

    return rdFingerprintGenerator.GetMorganGenerator(radius=2, fpSize=2048)


def tanimoto_similarity(smiles: str, target: str) -> float:
    """Tanimoto similarity of Morgan r2 2048-bit fingerprints (0 if ``smiles`` is invalid).

    Raises:
        ValueError: if ``target`` is not a valid SMILES.

    >>> tanimoto_similarity(CELECOXIB, CELECOXIB)
    1.0
    """
    from rdkit import DataStructs

    ref = _fingerprint(target)
    if ref is None:
        raise ValueError(f"target must be a valid SMILES, got {target!r}")
    fp = _fingerprint(smiles)
    return 0.0 if fp is None else float(DataStructs.TanimotoSimilarity(fp, ref))


def make_objective(
    name: str, *, target: str | None = None, weights: dict[str, float] | None = None
) -> Callable[[str], float]:
    """The score in [0, 1] that the agent maximises.

    Args:
        name: ``"qed"``, ``"logp"`` (squashed penalised logP), ``"similarity"`` (to
            ``target``) or ``"sum"`` (``weights`` over those three names).
        target: the target SMILES for ``"similarity"`` (and for a weighted sum using it).
        weights: for ``"sum"``, e.g. ``{"qed": 0.5, "similarity": 0.5}``; non-negative and
            summing to 1 so the score stays in [0, 1].

    Raises:
        ValueError: for an unknown name, a missing or invalid target, or bad weights.

    >>> f = make_objective("sum", target="CCO", weights={"qed": 0.5, "similarity": 0.5})
    >>> abs(f("CCO") - (0.5 * qed_score("CCO") + 0.5)) < 1e-12
    True
    """
    singles: dict[str, Callable[[str], float]] = {
        "qed": qed_score,
        "logp": lambda s: squash_logp(penalized_logp(s)),
    }
    needs_target = name == "similarity" or (name == "sum" and "similarity" in (weights or {}))
    if needs_target:
        if target is None or canonical(target) is None:
            raise ValueError(f"target must be a valid SMILES for similarity, got {target!r}")
        singles["similarity"] = lambda s: tanimoto_similarity(s, target)
    if name in singles:
        return singles[name]
    if name != "sum":
        raise ValueError(f"name must be one of qed, logp, similarity, sum; got {name!r}")
    if not weights or any(k not in singles for k in weights):
        raise ValueError(f"weights must map names in {sorted(singles)} to numbers, got {weights}")
    if any(w < 0 for w in weights.values()) or abs(sum(weights.values()) - 1.0) > 1e-9:
        raise ValueError(f"weights must be non-negative and sum to 1, got {weights}")
    items = list(weights.items())
    return lambda s: sum(w * singles[k](s) for k, w in items)


@dataclass
class Oracle:
    """A scoring function with a budget of unique valid molecules and a cache (PMO convention).

    Args:
        score: maps a canonical SMILES to a score.
        budget: the maximum number of unique valid molecules scored.

    Attributes:
        history: ``(canonical smiles, score)`` in the order first scored.

    >>> o = Oracle(qed_score, budget=2)
    >>> s = o(["CCO", "OCC", "C1CC", "c1ccccc1", "CCN"])
    >>> o.calls, [round(float(x), 3) for x in s]
    (2, [0.407, 0.407, 0.0, 0.443, 0.0])
    """

    score: Callable[[str], float]
    budget: int
    cache: dict[str, float] = field(default_factory=dict)
    history: list[tuple[str, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_callable("score", self.score)
        self.budget = check_int("budget", self.budget, minimum=1)

    @property
    def calls(self) -> int:
        """Unique valid molecules scored so far."""
        return len(self.history)

    @property
    def exhausted(self) -> bool:
        return self.calls >= self.budget

    def __call__(self, smiles: Sequence[str]) -> np.ndarray:
        """Scores of ``smiles``: invalid -> 0, cached -> cached, new -> scored while budget lasts.

        New molecules beyond the budget score 0 and are not recorded.
        """
        out = np.zeros(len(smiles))
        for i, s in enumerate(smiles):
            can = canonical(s)
            if can is None:
                continue
            if can not in self.cache:
                if self.exhausted:
                    continue
                value = float(self.score(can))
                if not math.isfinite(value):
                    raise ValueError(f"score returned {value} for {can!r}; expected a finite float")
                self.cache[can] = value
                self.history.append((can, value))
            out[i] = self.cache[can]
        return out

    def top(self, k: int) -> list[tuple[str, float]]:
        """The ``k`` best molecules scored so far, best first."""
        return sorted(self.history, key=lambda kv: -kv[1])[:k]


def top_auc(
    scores: Sequence[float],
    budget: int,
    *,
    top_n: int = 10,
    freq_log: int = 100,
    finish: bool = True,
) -> float:
    """PMO's AUC of the top-``top_n``-average curve, normalised by the budget.

    The top-n mean is taken after every ``freq_log`` calls and integrated by the trapezoid
    rule from 0 (the curve starts at 0) to the last call; if the run ended before the budget
    (``finish``), the remaining calls count at the final value. Reproduces ``top_auc`` of
    the PMO benchmark (Gao et al. 2022).

    Args:
        scores: scores in call order.
        budget: the oracle budget (``max_oracle_calls``).

    Raises:
        ValueError: if ``scores`` is empty or ``budget``/``top_n``/``freq_log`` < 1.

    >>> top_auc([1.0] * 100, 100, freq_log=10)  # 0 -> 1 on the first 10 calls, then 1
    0.95
    """
    check_int("budget", budget, minimum=1)
    check_int("top_n", top_n, minimum=1)
    check_int("freq_log", freq_log, minimum=1)
    vals = np.asarray(scores, dtype=float)[:budget]
    if vals.size == 0:
        raise ValueError("scores must be non-empty")
    total, prev, called = 0.0, 0.0, 0
    for idx in range(freq_log, min(vals.size, budget), freq_log):
        now = float(np.sort(vals[:idx])[::-1][:top_n].mean())
        total += freq_log * (now + prev) / 2
        prev, called = now, idx
    now = float(np.sort(vals)[::-1][:top_n].mean())
    total += (vals.size - called) * (now + prev) / 2
    if finish and vals.size < budget:
        total += (budget - vals.size) * now
    return total / budget
