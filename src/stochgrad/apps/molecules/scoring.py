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

Your own score: :class:`BatchScore` wraps any function ``list[str] -> scores`` (one number per
molecule, as a list, numpy array or tensor), evaluated in worker processes when ``workers > 1``
(through :class:`stochgrad.parallel.ParallelMap`); an :class:`Oracle` built on it calls the
function once per agent step with that step's new molecules.

The :class:`Oracle` follows the PMO convention (Gao et al. 2022, "Sample efficiency matters",
NeurIPS Datasets and Benchmarks): a call is one *unique valid* molecule (canonical SMILES);
repeats are served from a cache and invalid SMILES score 0, neither counting against the
budget. :func:`top_auc` is PMO's area under the top-k-average curve.
"""

from __future__ import annotations

import importlib.util
import math
import pickle
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import torch

from stochgrad._checks import check_bool, check_callable, check_float, check_int
from stochgrad.parallel import ParallelMap

__all__ = [
    "BatchScore",
    "ScoreError",
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
    scale = check_float("scale", scale, minimum=0.0, open_min=True)
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"value must be a number (NaN for invalid), got {type(value).__name__}")
    if math.isnan(value):
        return 0.0
    return 0.5 * (1.0 + math.tanh(value / (2.0 * scale)))  # the sigmoid, without overflow


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

    if not isinstance(target, str):
        raise TypeError(f"target must be a SMILES str, got {type(target).__name__}")
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
    if target is not None and (not isinstance(target, str) or canonical(target) is None):
        raise ValueError(f"target must be a valid SMILES, got {target!r}")
    if weights is not None:
        if name != "sum" or not isinstance(weights, dict):
            raise ValueError(f"weights must be a dict and go with name='sum', got {weights!r}")
        weights = {k: check_float(f"weights[{k!r}]", w) for k, w in weights.items()}
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


class ScoreError(RuntimeError):
    """The scoring function of a :class:`BatchScore` failed: it raised (the original exception
    is chained as ``__cause__``) or returned something other than one finite number or NaN per
    molecule. The message names the function."""


def _function_name(fn: Any) -> str:
    """``module:qualname`` of ``fn`` (its ``repr`` when it has none)."""
    qualname = getattr(fn, "__qualname__", None)
    module = getattr(fn, "__module__", None)
    return f"{module}:{qualname}" if qualname and module else repr(fn)


def _as_scores(out: Any, smiles: Sequence[str], name: str) -> np.ndarray:
    """The function's result as ``float64 [n]``, or a :class:`ScoreError` naming it."""
    if isinstance(out, torch.Tensor):
        out = out.detach().cpu().numpy()
    try:
        values = np.asarray(out, dtype=np.float64)
    except (TypeError, ValueError):
        raise ScoreError(
            f"score function {name} must return numbers (a list, numpy array or tensor), "
            f"got {type(out).__name__}"
        ) from None
    if values.shape != (len(smiles),):
        raise ScoreError(
            f"score function {name} must return one number per molecule: got shape "
            f"{values.shape} for {len(smiles)} molecules"
        )
    bad = np.flatnonzero(np.isinf(values))
    if bad.size:
        i = int(bad[0])
        raise ScoreError(
            f"score function {name} returned {values[i]} for {smiles[i]!r}; expected a finite "
            "number (NaN marks a molecule it could not score)"
        )
    return values


def _score_list(fn: Callable, smiles: list[str], name: str) -> np.ndarray:
    try:
        out = fn(smiles)
    except Exception as exc:
        raise ScoreError(f"score function {name} raised {type(exc).__name__}: {exc}") from exc
    return _as_scores(out, smiles, name)


def _encode(smiles: list[str]) -> torch.Tensor:
    """SMILES as a ``uint8 [n, width]`` tensor of NUL-padded UTF-8 bytes (what
    :class:`~stochgrad.parallel.ParallelMap` splits into chunks and ships to its workers)."""
    raw = [s.encode() for s in smiles]
    width = max(1, max(map(len, raw)))
    return torch.from_numpy(np.array(raw, dtype=f"S{width}").view(np.uint8).reshape(-1, width))


def _decode(chunk: torch.Tensor) -> list[str]:
    rows = np.ascontiguousarray(chunk.numpy())
    return [b.decode() for b in rows.view(f"S{rows.shape[1]}").reshape(-1)]


def _not_importable(fn: Callable) -> str | None:
    """Why spawned workers could not import ``fn`` (``None``: they can)."""
    try:
        pickle.dumps(fn)  # a function pickles as its module and name
    except Exception as exc:  # PicklingError, AttributeError ("local object"), TypeError
        kind = "a lambda" if getattr(fn, "__name__", "") == "<lambda>" else "not picklable"
        return f"it is {kind} ({type(exc).__name__}: {exc})"
    main = sys.modules.get("__main__")
    if getattr(fn, "__module__", None) == "__main__" and not hasattr(main, "__file__"):
        return "it is defined in an interactive session"
    return None


class _ChunkScorer:
    """What a worker process runs: decode a chunk of SMILES, call the function, check it.

    Module level, so spawned workers import it by name; the function travels by reference
    (its module and name), which is why it must be importable.
    """

    def __init__(self, fn: Callable, name: str):
        self.fn = fn
        self.name = name
        self.__wrapped__ = fn  # ParallelMap checks the function itself is importable

    def __call__(self, chunk: torch.Tensor) -> np.ndarray:
        return _score_list(self.fn, _decode(chunk), self.name)


class BatchScore:
    """A scoring function of a batch of SMILES, for :class:`Oracle`, optionally in parallel.

    ``fn(smiles)`` receives a ``list[str]`` and returns one number per molecule (a list, numpy
    array or tensor of shape ``[len(smiles)]``). Through an :class:`Oracle` it only ever sees
    valid, canonical, new SMILES (invalid strings score 0 without a call, repeats come from the
    cache), once per agent step. What the agent does with each outcome:

    * a number: the molecule's score (best kept in [0, 1]: REINVENT's ``sigma`` is tuned for
      that, and the replay memory keeps only molecules scoring above 0);
    * ``NaN`` (or ``None`` in a list): "could not score this one"; the molecule scores 0,
      counts as an oracle call and is listed in :attr:`Oracle.unscored`;
    * an exception raised by ``fn``, or ``inf``, a wrong length or non-numbers returned:
      :class:`ScoreError` naming the function and what went wrong (chained to the exception),
      which stops the run; with a checkpoint, rerunning resumes from the last one.

    With ``workers > 1`` each batch is split into ``workers`` chunks scored in a persistent
    pool of worker processes (:class:`stochgrad.parallel.ParallelMap`, ``spawn`` start), for
    expensive scores (docking, a simulation); the numbers are those of ``workers=1`` for any
    function that scores each molecule on its own. The workers import ``fn`` by its module and
    name, so it must be a ``def`` at module level of an importable ``.py`` file (a script
    using it needs the ``if __name__ == "__main__":`` guard), not a lambda, a nested function
    or one typed into an interactive session: anything else is refused here with a
    ``TypeError``. The pool starts on the first call; :meth:`close` (or a ``with`` block)
    stops it.

    Args:
        fn: ``list[str] -> scores``.
        workers: worker processes (1: score in this process).
        name: how messages and checkpoints name the function (default ``module:qualname``).
        timeout: seconds one chunk of a batch may take (``None``: no limit); past it a call
            raises :class:`stochgrad.parallel.ChunkTimeout` (the workers stopped; with
            ``workers=1`` the call is interrupted on the main thread, as in
            :func:`stochgrad.parallel.map_items`).

    Raises:
        TypeError: ``fn`` not callable, ``workers`` not an int, or ``fn`` not importable by
            worker processes when ``workers > 1``.
        ValueError: ``workers < 1``, ``timeout`` not a positive number.

    >>> score = BatchScore(lambda smiles: [len(s) for s in smiles], name="length")
    >>> score(["CCO", "c1ccccc1"])
    array([3., 8.])
    >>> Oracle(score, budget=10)(["OCC", "C1CC", "CCO"])  # canonical OCC is CCO; C1CC invalid
    array([3., 0., 3.])
    """

    def __init__(
        self,
        fn: Callable[[list[str]], Any],
        *,
        workers: int = 1,
        name: str | None = None,
        timeout: float | None = None,
    ):
        check_callable("fn", fn)
        self.fn = fn
        self.workers = check_int("workers", workers, minimum=1)
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {type(name).__name__}")
        self.name = _function_name(fn) if name is None else name
        self._pool: ParallelMap | None = None
        if timeout is not None and self.workers == 1:  # timed in this process
            self._pool = ParallelMap(_ChunkScorer(fn, self.name), backend="serial", timeout=timeout)
        if self.workers > 1:
            reason = _not_importable(fn)
            if reason is None:
                try:
                    self._pool = ParallelMap(
                        _ChunkScorer(fn, self.name),
                        backend="process",
                        num_workers=self.workers,
                        timeout=timeout,
                    )
                except TypeError as exc:
                    reason = str(exc)
            if reason is not None:
                raise TypeError(
                    f"score function {self.name} must be importable by worker processes for "
                    f"workers={self.workers}, but {reason}; define it with def at module level "
                    "in a .py file, or use workers=1"
                )

    def __call__(self, smiles: Sequence[str]) -> np.ndarray:
        """Scores ``float64 [len(smiles)]`` (NaN where ``fn`` gave NaN).

        Raises:
            TypeError: an entry of ``smiles`` is not a string.
            ScoreError: ``fn`` raised or returned something else than one number per molecule.
        """
        smiles = list(smiles)
        for s in smiles:
            if not isinstance(s, str):
                raise TypeError(f"smiles must be strings, got {type(s).__name__} {s!r}")
        if not smiles:
            return np.zeros(0)
        if self._pool is None:
            return _score_list(self.fn, smiles, self.name)
        return self._pool(_encode(smiles)).numpy().astype(np.float64)

    def close(self) -> None:
        """Stop the worker processes (a later call starts new ones)."""
        if self._pool is not None:
            self._pool.close()

    def __enter__(self) -> BatchScore:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"BatchScore({self.name}, workers={self.workers})"


@dataclass
class Oracle:
    """A scoring function with a budget of unique valid molecules and a cache (PMO convention).

    Args:
        score: maps a canonical SMILES to a score, or a :class:`BatchScore` (a function of a
            list of SMILES, called once per call of the oracle with the new molecules).
        budget: the maximum number of unique valid molecules scored.

    Attributes:
        history: ``(canonical smiles, score)`` in the order first scored.
        unscored: molecules a :class:`BatchScore` returned NaN for (each scored 0, and counted
            as a call).

    >>> o = Oracle(qed_score, budget=2)
    >>> s = o(["CCO", "OCC", "C1CC", "c1ccccc1", "CCN"])
    >>> o.calls, [round(float(x), 3) for x in s]
    (2, [0.407, 0.407, 0.0, 0.443, 0.0])
    """

    score: Callable[[str], float] | BatchScore
    budget: int
    cache: dict[str, float] = field(default_factory=dict)
    history: list[tuple[str, float]] = field(default_factory=list)
    unscored: list[str] = field(default_factory=list)

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
        if isinstance(self.score, BatchScore):
            return self._call_batch(smiles)
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

    def _call_batch(self, smiles: Sequence[str]) -> np.ndarray:
        """As the loop of :meth:`__call__`, with all new molecules scored in one call."""
        canon = [canonical(s) for s in smiles]
        new = list(dict.fromkeys(c for c in canon if c is not None and c not in self.cache))
        new = new[: max(self.budget - self.calls, 0)]
        if new:
            values = self.score(new)
            for can, value in zip(new, values.tolist(), strict=True):
                if math.isnan(value):
                    self.unscored.append(can)
                    value = 0.0
                self.cache[can] = value
                self.history.append((can, value))
        return np.array([0.0 if c is None else self.cache.get(c, 0.0) for c in canon])

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
    check_bool("finish", finish)
    if isinstance(scores, (str, bytes)):
        raise TypeError("scores must be a sequence of numbers, got a str")
    try:
        vals = np.asarray(scores, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(
            f"scores must be a sequence of numbers, got {type(scores).__name__}"
        ) from None
    if vals.ndim != 1 or vals.size == 0:
        raise ValueError("scores must be a non-empty 1-D sequence")
    vals = vals[:budget]
    if not np.isfinite(vals).all():
        raise ValueError("scores must be finite (the oracle's values of scored molecules)")
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
