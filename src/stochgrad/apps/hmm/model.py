r"""The hidden Markov model in its unconstrained parametrisation (:class:`HMM`).

A model with :math:`K` states has start logits :math:`a` (:math:`\pi = \mathrm{softmax}(a)`),
transition-row logits :math:`A` (:math:`P_{i\cdot} = \mathrm{softmax}(A_{i\cdot})`) and per-state
emissions: Poisson log-rates :math:`\eta = \log\lambda`, or Gaussian means and log-sds
:math:`s = \log\sigma` (diagonal covariance).

>>> hmm = HMM.from_probabilities([0.5, 0.5], [[0.9, 0.1], [0.1, 0.9]], rates=[15.0, 25.0])
>>> hmm.num_states, hmm.emission
(2, 'poisson')
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from stochgrad._checks import check_choice

__all__ = ["EMISSIONS", "HMM"]

#: The emission families.
EMISSIONS = ("poisson", "gaussian")


@dataclass(frozen=True)
class HMM:
    r"""An HMM in its unconstrained parametrisation.

    Attributes:
        emission: ``"poisson"`` or ``"gaussian"``.
        start_logits: ``[K]``, :math:`\pi = \mathrm{softmax}(a)`.
        trans_logits: ``[K, K]``, row :math:`i` of :math:`P` is ``softmax(trans_logits[i])``.
        log_rates: ``[K]`` (Poisson only).
        means: ``[K, D]`` (Gaussian only).
        log_sds: ``[K, D]`` (Gaussian only).

    Raises:
        ValueError: wrong emission name, shapes or non-finite values.

    >>> hmm = HMM.from_probabilities([1.0, 0.0], [[0.5, 0.5], [0.0, 1.0]], means=[[0.0], [2.0]], sds=[[1.0], [1.0]])
    >>> hmm.num_states, hmm.dim, tuple(hmm.transmat[1].tolist())
    (2, 1, (0.0, 1.0))
    """

    emission: str
    start_logits: Tensor
    trans_logits: Tensor
    log_rates: Tensor | None = None
    means: Tensor | None = None
    log_sds: Tensor | None = None

    def __post_init__(self) -> None:
        check_choice("emission", self.emission, EMISSIONS)
        for name in ("start_logits", "trans_logits", "log_rates", "means", "log_sds"):
            value = getattr(self, name)
            if (value is not None or name == "start_logits") and not isinstance(value, Tensor):
                raise TypeError(f"{name} must be a tensor, got {type(value).__name__}")
            if value is not None and value.device != self.start_logits.device:
                raise ValueError(
                    f"{name} must be on the device of start_logits ({self.start_logits.device}), "
                    f"got {value.device}"
                )
        a, A = self.start_logits, self.trans_logits
        if not isinstance(a, Tensor) or a.ndim != 1 or a.numel() < 1:
            raise ValueError("start_logits must be a 1-D tensor [K] with K >= 1")
        K = a.shape[0]
        if not isinstance(A, Tensor) or A.shape != (K, K):
            raise ValueError(
                f"trans_logits must be a tensor [{K}, {K}], got {getattr(A, 'shape', A)}"
            )
        if self.emission == "poisson":
            if self.log_rates is None or self.log_rates.shape != (K,):
                raise ValueError(f"a Poisson HMM needs log_rates of shape [{K}]")
            if self.means is not None or self.log_sds is not None:
                raise ValueError("a Poisson HMM takes log_rates, not means/log_sds")
            emis = (self.log_rates,)
        else:
            m, s = self.means, self.log_sds
            if m is None or s is None or m.ndim != 2 or m.shape[0] != K or s.shape != m.shape:
                raise ValueError(f"a Gaussian HMM needs means and log_sds of equal shape [{K}, D]")
            if self.log_rates is not None:
                raise ValueError("a Gaussian HMM takes means/log_sds, not log_rates")
            emis = (m, s)
        for name, t in zip(
            ("start_logits", "trans_logits", *self._emission_names()), (a, A, *emis), strict=True
        ):
            if t.dtype not in (torch.float32, torch.float64):
                raise TypeError(f"{name} must be a float32/float64 tensor, got {t.dtype}")
            # -inf logits encode probability 0 and are allowed; nan and +inf are not.
            if torch.isnan(t).any() or (t == math.inf).any():
                raise ValueError(f"{name} must not contain nan or +inf")
            if name not in ("start_logits", "trans_logits") and not torch.isfinite(t).all():
                raise ValueError(f"{name} must be finite")
        if (A == -math.inf).all(-1).any() or (a == -math.inf).all():
            raise ValueError("every row of start/transition probabilities needs a positive entry")

    # -- constructors and views ----------------------------------------------------------------

    @classmethod
    def from_probabilities(
        cls,
        startprob: Any,
        transmat: Any,
        *,
        rates: Any = None,
        means: Any = None,
        sds: Any = None,
        dtype: torch.dtype = torch.float64,
    ) -> HMM:
        """Build from probabilities and natural emission parameters (rates, or means and sds).

        ``means``/``sds`` may be ``[K]`` (univariate) or ``[K, D]``. Rows must sum to one.
        """

        def prob(name: str, x: Any, shape_ndim: int) -> Tensor:
            t = torch.as_tensor(x, dtype=dtype)
            if (
                t.ndim != shape_ndim
                or (t < 0).any()
                or not torch.allclose(t.sum(-1), torch.ones((), dtype=dtype), atol=1e-8)
            ):
                raise ValueError(f"{name} must be non-negative with rows summing to 1, got {x!r}")
            return t

        pi = prob("startprob", startprob, 1)
        P = prob("transmat", transmat, 2)
        if (rates is None) == (means is None):
            raise ValueError("give either rates (Poisson) or means and sds (Gaussian)")
        if rates is not None:
            r = torch.as_tensor(rates, dtype=dtype)
            if not (torch.isfinite(r).all() and (r > 0).all()):
                raise ValueError(f"rates must be finite and > 0, got {rates!r}")
            return cls("poisson", pi.log(), P.log(), log_rates=r.log())
        if sds is None:
            raise ValueError("a Gaussian HMM needs sds with the means")
        m = torch.as_tensor(means, dtype=dtype)
        s = torch.as_tensor(sds, dtype=dtype)
        m = m[:, None] if m.ndim == 1 else m
        s = s[:, None] if s.ndim == 1 else s
        if not (torch.isfinite(s).all() and (s > 0).all()):
            raise ValueError(f"sds must be finite and > 0, got {sds!r}")
        return cls("gaussian", pi.log(), P.log(), means=m, log_sds=s.log())

    def _emission_names(self) -> tuple[str, ...]:
        return ("log_rates",) if self.emission == "poisson" else ("means", "log_sds")

    @property
    def param_names(self) -> tuple[str, ...]:
        """Names of :meth:`params`, in order."""
        return ("start_logits", "trans_logits", *self._emission_names())

    def params(self) -> tuple[Tensor, ...]:
        """The unconstrained parameters as a tuple (the order of :attr:`param_names`)."""
        return tuple(getattr(self, n) for n in self.param_names)

    def with_params(self, params: Sequence[Tensor]) -> HMM:
        """A copy with the parameters replaced (same order as :meth:`params`)."""
        if len(params) != len(self.param_names):
            raise ValueError(
                f"expected {len(self.param_names)} tensors {self.param_names}, got {len(params)}"
            )
        return HMM(self.emission, **dict(zip(self.param_names, params, strict=True)))

    @property
    def num_states(self) -> int:
        """K."""
        return int(self.start_logits.shape[0])

    @property
    def dim(self) -> int:
        """D, the observation dimension (1 for Poisson)."""
        return 1 if self.emission == "poisson" else int(self.means.shape[1])

    @property
    def startprob(self) -> Tensor:
        """:math:`\\pi`."""
        return torch.softmax(self.start_logits, -1)

    @property
    def transmat(self) -> Tensor:
        """:math:`P`, row-stochastic."""
        return torch.softmax(self.trans_logits, -1)

    @property
    def rates(self) -> Tensor:
        """Poisson rates :math:`\\lambda`."""
        if self.log_rates is None:
            raise ValueError("rates: this is a Gaussian HMM")
        return self.log_rates.exp()

    @property
    def sds(self) -> Tensor:
        """Gaussian standard deviations."""
        if self.log_sds is None:
            raise ValueError("sds: this is a Poisson HMM")
        return self.log_sds.exp()

    def state_means(self) -> Tensor:
        """Mean of each state's emission, ``[K, D]``."""
        return self.rates[:, None] if self.emission == "poisson" else self.means

    def num_free_parameters(self) -> int:
        """Free parameters (for AIC/BIC): ``(K-1) + K(K-1) + K`` (Poisson) or ``+ 2KD`` (Gaussian)."""
        K = self.num_states
        emis = K if self.emission == "poisson" else 2 * K * self.dim
        return (K - 1) + K * (K - 1) + emis

    def to_dict(self) -> dict[str, Any]:
        """Natural parameters as plain lists (JSON)."""
        out: dict[str, Any] = {
            "emission": self.emission,
            "startprob": self.startprob.tolist(),
            "transmat": self.transmat.tolist(),
        }
        if self.emission == "poisson":
            out["rates"] = self.rates.tolist()
        else:
            out["means"] = self.means.tolist()
            out["sds"] = self.sds.tolist()
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> HMM:
        """Inverse of :meth:`to_dict`."""
        if d.get("emission") == "poisson":
            return cls.from_probabilities(d["startprob"], d["transmat"], rates=d["rates"])
        return cls.from_probabilities(d["startprob"], d["transmat"], means=d["means"], sds=d["sds"])

    def to_state(self) -> dict[str, Any]:
        """The unconstrained parameters, exactly (tensors; for a checkpoint)."""
        return {"emission": self.emission, **{n: getattr(self, n) for n in self.param_names}}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> HMM:
        """Inverse of :meth:`to_state`."""
        emission = state["emission"]
        names = ("log_rates",) if emission == "poisson" else ("means", "log_sds")
        return cls(
            emission,
            state["start_logits"],
            state["trans_logits"],
            **{n: state[n] for n in names},
        )
