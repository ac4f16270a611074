"""The outcome of one fit (:class:`FitResult`), saved and restored exactly for checkpoints."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from stochgrad.apps.hmm.model import HMM

__all__ = ["FitResult"]


@dataclass
class FitResult:
    """One fit: the model, its total log-likelihood, iterations and whether it converged.

    Attributes:
        hmm: the fitted model.
        log_likelihood: :math:`\\sum_b \\log p(y_b)` at ``hmm``.
        n_iter: iterations (EM steps, or L-BFGS iterations).
        converged: whether the stopping rule was met before the iteration cap.
        method: ``"em"`` or ``"gradient"``.
        history: the log-likelihood at every evaluation.
    """

    hmm: HMM
    log_likelihood: float
    n_iter: int
    converged: bool
    method: str
    history: list[float] = field(default_factory=list, repr=False)

    def to_state(self) -> dict[str, Any]:
        """Tensors and plain values (the parameters exactly, not rounded through probabilities)."""
        return {
            "hmm": self.hmm.to_state(),
            "log_likelihood": float(self.log_likelihood),
            "n_iter": int(self.n_iter),
            "converged": bool(self.converged),
            "method": self.method,
            "history": torch.tensor(self.history, dtype=torch.float64),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> FitResult:
        """Inverse of :meth:`to_state`."""
        return cls(
            HMM.from_state(state["hmm"]),
            float(state["log_likelihood"]),
            int(state["n_iter"]),
            bool(state["converged"]),
            str(state["method"]),
            [float(v) for v in state["history"].tolist()],
        )
