r"""Hidden Markov models: forward-backward, Viterbi, and the likelihood gradient by Fisher's identity.

A hidden Markov model with :math:`K` states has a start distribution :math:`\pi`, a transition
matrix :math:`P` and per-state emissions :math:`p(y_t \mid z_t = k)`, Poisson (rate
:math:`\lambda_k`) or Gaussian with diagonal covariance (means :math:`\mu_k`, standard deviations
:math:`\sigma_k`). Everything here works on a batch of equal-length sequences ``[B, T]`` (Poisson)
or ``[B, T, D]`` (Gaussian), in log space, looping over time only.

The parameters are unconstrained (:class:`HMM`): start logits :math:`a`
(:math:`\pi = \mathrm{softmax}(a)`), transition-row logits :math:`A` (:math:`P_{i\cdot} =
\mathrm{softmax}(A_{i\cdot})`), log-rates :math:`\eta = \log\lambda`, or means and log-sds
:math:`s = \log\sigma`.

The log-derivative trick turns the gradient of the marginal likelihood into a posterior
expectation of the complete-data score (Fisher's identity):

.. math::

    \nabla_\theta \log p(y;\theta) = \frac{\nabla_\theta \sum_z p(y, z;\theta)}{p(y;\theta)}
    = \mathbb E_{z \sim p(z \mid y;\theta)}\big[\nabla_\theta \log p(y, z;\theta)\big].

The complete-data score is linear in the sufficient statistics :math:`\mathbb 1\{z_1 = k\}`,
:math:`\mathbb 1\{z_t = k\}` and :math:`\mathbb 1\{z_t = i, z_{t+1} = j\}`, so the expectation is
exact given the posterior marginals :math:`\gamma_{t}(k)` and pairwise marginals
:math:`\xi_t(i, j)` of the forward-backward algorithm (:func:`fisher_gradient`):

.. math::

    \partial_{a_k} = \gamma_1(k) - \pi_k, \quad
    \partial_{A_{ij}} = \textstyle\sum_t \xi_t(i,j) - P_{ij} \sum_{t<T} \gamma_t(i), \quad
    \partial_{\eta_k} = \textstyle\sum_t \gamma_t(k)\,(y_t - \lambda_k),

    \partial_{\mu_{kd}} = \textstyle\sum_t \gamma_t(k)\,\frac{y_{td} - \mu_{kd}}{\sigma_{kd}^2},
    \quad
    \partial_{s_{kd}} = \textstyle\sum_t \gamma_t(k)\,\Big[\frac{(y_{td} - \mu_{kd})^2}
    {\sigma_{kd}^2} - 1\Big].

The Monte Carlo version (:func:`monte_carlo_gradient`) draws :math:`z \sim p(z \mid y)` by
forward-filtering backward-sampling and averages the same score with one-hot statistics.
Fitting is by EM (Baum-Welch, closed-form M-step, :func:`baum_welch`) or by L-BFGS on the Fisher
gradient (:func:`fit_gradient`), from seeded random starts (:func:`fit_hmm`).

References:
    Baum, Petrie, Soules & Weiss (1970), "A maximization technique occurring in the statistical
    analysis of probabilistic functions of Markov chains", Ann. Math. Statist. 41;
    Rabiner (1989), "A tutorial on hidden Markov models", Proc. IEEE 77;
    Fisher (1925), "Theory of statistical estimation" (the score identity); Louis (1982), JRSS B 44;
    Frühwirth-Schnatter (1994) and Carter & Kohn (1994) (forward-filtering backward-sampling);
    Zucchini & MacDonald (2009), *Hidden Markov Models for Time Series* (the earthquake series).

>>> y = load_earthquakes()
>>> hmm = HMM.from_probabilities([0.5, 0.5], [[0.9, 0.1], [0.1, 0.9]], rates=[15.0, 25.0])
>>> round(float(log_likelihood(hmm, y)), 3) < 0
True
"""

from __future__ import annotations

import argparse
import csv
import importlib.resources
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stochgrad.gradient_estimate import GradientEstimate

__all__ = [
    "EMISSIONS",
    "HMM",
    "FitResult",
    "Posterior",
    "add_fit_arguments",
    "baum_welch",
    "baum_welch_batched",
    "complete_data_score",
    "emission_log_prob",
    "fisher_gradient",
    "fit_gradient",
    "fit_hmm",
    "forward_backward",
    "information_criteria",
    "load_earthquakes",
    "load_series",
    "log_likelihood",
    "monte_carlo_gradient",
    "random_hmm",
    "run_fit",
    "sample_posterior",
    "viterbi",
]

EMISSIONS = ("poisson", "gaussian")
_LOG_2PI = math.log(2.0 * math.pi)


# ---------------------------------------------------------------------------------------------
# the model
# ---------------------------------------------------------------------------------------------


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
        if self.emission not in EMISSIONS:
            raise ValueError(f"emission must be one of {EMISSIONS}, got {self.emission!r}")
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


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------


def load_series(path: str | Path, column: str | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """Read one numeric column of a CSV with a header.

    Without ``column`` the file must have exactly one column besides an optional time column
    (``year``, ``time``, ``date``, ``t``, ``index``; used as the x axis).

    Returns:
        ``(x, values, name)``: x axis (the time column, or 0..n-1), float values, column name.

    Raises:
        ValueError: missing column, ambiguous columns, non-numeric or empty data.
    """
    path = Path(path)
    with path.open(newline="") as fh:
        rows = list(csv.reader(fh))
    rows = [r for r in rows if any(c.strip() for c in r)]
    if len(rows) < 2:
        raise ValueError(f"{path}: expected a header and at least one data row")
    header = [h.strip() for h in rows[0]]
    time_cols = [h for h in header if h.lower() in ("year", "time", "date", "t", "index")]
    if column is None:
        rest = [h for h in header if h not in time_cols]
        if len(rest) != 1:
            raise ValueError(
                f"{path}: expected one data column besides a time column, found {rest}; pass column"
            )
        column = rest[0]
    if column not in header:
        raise ValueError(f"column {column!r} not in {path} (columns {header})")
    j = header.index(column)
    try:
        values = np.array([float(r[j]) for r in rows[1:]])
    except (ValueError, IndexError) as err:
        raise ValueError(f"column {column!r} of {path} must be numeric: {err}") from None
    if not np.all(np.isfinite(values)):
        raise ValueError(f"column {column!r} of {path} has non-finite values")
    x = np.arange(len(values), dtype=float)
    if time_cols and time_cols[0] != column:
        try:
            x = np.array([float(r[header.index(time_cols[0])]) for r in rows[1:]])
        except ValueError:
            pass
    return x, values, column


def _earthquakes_path() -> Any:
    return importlib.resources.files("stochgrad") / "data" / "earthquakes.csv"


def load_earthquakes() -> Tensor:
    """Annual counts of major earthquakes (magnitude >= 7), 1900-2006: float64 tensor ``[107]``.

    Zucchini & MacDonald (2009), Table 1.1; hmmlearn's Poisson HMM example.

    >>> y = load_earthquakes()
    >>> y.shape, int(y[0]), int(y.sum())
    (torch.Size([107]), 13, 2072)
    """
    with importlib.resources.as_file(_earthquakes_path()) as p:
        _, values, _ = load_series(p, "count")
    return torch.as_tensor(values, dtype=torch.float64)


# ---------------------------------------------------------------------------------------------
# forward-backward, Viterbi
# ---------------------------------------------------------------------------------------------


def _as_batch(hmm: HMM, y: Any) -> Tensor:
    """``[B, T]`` (Poisson) or ``[B, T, D]`` (Gaussian) in the model's dtype, validated."""
    dtype = hmm.start_logits.dtype
    y = torch.as_tensor(y, dtype=dtype)
    if hmm.emission == "poisson":
        if y.ndim == 1:
            y = y[None]
        if y.ndim != 2 or y.shape[1] < 1:
            raise ValueError(
                f"y must be [T] or [B, T] counts for a Poisson HMM, got shape {tuple(y.shape)}"
            )
        if not torch.isfinite(y).all() or (y < 0).any() or (y != y.round()).any():
            raise ValueError("y must hold non-negative integer counts for a Poisson HMM")
    else:
        D = hmm.dim
        if y.ndim == 1 and D == 1:
            y = y[None, :, None]
        elif y.ndim == 2:
            y = y[None]
        if y.ndim != 3 or y.shape[2] != D or y.shape[1] < 1:
            raise ValueError(
                f"y must be [T] (D = 1), [T, D] or [B, T, D] with D = {D} for this Gaussian HMM, "
                f"got shape {tuple(y.shape)}"
            )
        if not torch.isfinite(y).all():
            raise ValueError("y must be finite")
    return y


def emission_log_prob(hmm: HMM, y: Any) -> Tensor:
    r"""``[B, T, K]``: :math:`\log p(y_{bt} \mid z_{bt} = k)`.

    >>> hmm = HMM.from_probabilities([1.0], [[1.0]], rates=[2.0])
    >>> round(float(emission_log_prob(hmm, [0.0])), 6) == -2.0
    True
    """
    y = _as_batch(hmm, y)
    if hmm.emission == "poisson":
        return _stacked_emission(y, [hmm.log_rates[None]], torch.lgamma(y + 1.0)[..., None])[0]
    return _stacked_emission(y, [hmm.means[None], hmm.log_sds[None]], None)[0]


def _log_matmul(log_v: Tensor, M: Tensor) -> Tensor:
    """``log(exp(log_v) @ M)`` for ``log_v`` ``[B, K]``, shifted by the row max for stability.

    A matrix product is several times cheaper than ``logsumexp`` over ``[B, K, K]`` per step.
    """
    m = log_v.amax(-1, keepdim=True)
    return ((log_v - m).exp() @ M).log() + m


def _forward(hmm: HMM, log_e: Tensor) -> Tensor:
    """Log forward variables ``[B, T, K]`` (log-space, loop over time)."""
    return _forward_logs(
        torch.log_softmax(hmm.start_logits, -1), torch.softmax(hmm.trans_logits, -1), log_e
    )


def _forward_logs(log_start: Tensor, P: Tensor, log_e: Tensor) -> Tensor:
    """Forward pass on raw arrays; leading dims broadcast, so ``R`` stacked models work too.

    ``log_start`` ``[K]`` or ``[R, 1, K]``, ``P`` ``[K, K]`` or ``[R, K, K]``, ``log_e``
    ``[B, T, K]`` or ``[R, B, T, K]``; returns log alphas shaped like ``log_e``.
    """
    steps = log_e.unbind(-2)
    alphas = [log_start + steps[0]]
    for e in steps[1:]:
        alphas.append(_log_matmul(alphas[-1], P) + e)
    return torch.stack(alphas, -2)


def log_likelihood(hmm: HMM, y: Any) -> Tensor:
    r"""``[B]``: :math:`\log p(y_b)` by the forward algorithm (differentiable by autograd).

    >>> hmm = HMM.from_probabilities([0.5, 0.5], [[1.0, 0.0], [0.0, 1.0]], rates=[1.0, 1.0])
    >>> round(float(log_likelihood(hmm, [0.0, 0.0])), 6)
    -2.0
    """
    log_e = emission_log_prob(hmm, y)
    alpha = _forward(hmm, log_e)
    out = torch.logsumexp(alpha[:, -1], -1)
    if not torch.isfinite(out).all():
        raise ValueError("log-likelihood is not finite: y has zero probability under this model")
    return out


@dataclass(frozen=True)
class Posterior:
    r"""Forward-backward output for a batch ``[B]`` of sequences of length ``T``.

    Attributes:
        log_likelihood: ``[B]``.
        log_alpha: ``[B, T, K]`` log forward variables :math:`\log p(y_{1:t}, z_t)`.
        log_beta: ``[B, T, K]`` log backward variables :math:`\log p(y_{t+1:T} \mid z_t)`.
        gamma: ``[B, T, K]`` posterior state marginals :math:`p(z_t \mid y)`.
        xi: ``[B, T-1, K, K]`` pairwise marginals :math:`p(z_t = i, z_{t+1} = j \mid y)`.
    """

    log_likelihood: Tensor
    log_alpha: Tensor
    log_beta: Tensor
    gamma: Tensor
    xi: Tensor


def forward_backward(hmm: HMM, y: Any) -> Posterior:
    r"""Log-space forward-backward: likelihood, state marginals and pairwise marginals.

    .. math::

        \alpha_t(j) = e_t(j) \sum_i \alpha_{t-1}(i) P_{ij}, \quad
        \beta_t(i) = \sum_j P_{ij} e_{t+1}(j) \beta_{t+1}(j), \quad
        \gamma_t = \alpha_t \beta_t / p(y), \quad
        \xi_t(i,j) = \alpha_t(i) P_{ij} e_{t+1}(j) \beta_{t+1}(j) / p(y).

    Reference: Rabiner (1989), Sec. III.

    >>> hmm = HMM.from_probabilities([0.5, 0.5], [[0.9, 0.1], [0.2, 0.8]], rates=[1.0, 5.0])
    >>> post = forward_backward(hmm, [[0.0, 6.0, 4.0]])
    >>> post.gamma.shape, post.xi.shape, bool(torch.allclose(post.gamma.sum(-1), torch.ones(1, 3, dtype=torch.float64)))
    (torch.Size([1, 3, 2]), torch.Size([1, 2, 2, 2]), True)
    """
    log_e = emission_log_prob(hmm, y)
    log_start = torch.log_softmax(hmm.start_logits, -1)
    return _forward_backward_logs(log_start, torch.log_softmax(hmm.trans_logits, -1), log_e)


def _forward_backward_logs(log_start: Tensor, log_P: Tensor, log_e: Tensor) -> Posterior:
    """Forward-backward on raw arrays, shapes as in :func:`_forward_logs` (``R`` stacked models
    give ``[R, B]`` likelihoods, ``[R, B, T, K]`` marginals, ``[R, B, T-1, K, K]`` pairs)."""
    P = log_P.exp()
    log_alpha = _forward_logs(log_start, P, log_e)
    T = log_e.shape[-2]
    PT = P.transpose(-1, -2)
    steps = log_e.unbind(-2)
    betas = [torch.zeros_like(steps[0])]
    for t in range(T - 2, -1, -1):
        betas.append(_log_matmul(steps[t + 1] + betas[-1], PT))
    log_beta = torch.stack(betas[::-1], -2)
    ll = torch.logsumexp(log_alpha[..., -1, :], -1)
    if not torch.isfinite(ll).all():
        raise ValueError("log-likelihood is not finite: y has zero probability under this model")
    gamma = (log_alpha + log_beta - ll[..., None, None]).exp()
    log_xi = (
        log_alpha[..., :-1, :, None]
        + log_P[..., None, None, :, :]
        + (log_e[..., 1:, :] + log_beta[..., 1:, :])[..., None, :]
        - ll[..., None, None, None]
    )
    return Posterior(ll, log_alpha, log_beta, gamma, log_xi.exp())


def viterbi(hmm: HMM, y: Any) -> tuple[Tensor, Tensor]:
    r"""Most probable state paths :math:`\arg\max_z p(z \mid y)` by max-product in log space.

    Returns:
        ``(paths, log_prob)``: ``[B, T]`` int64 states and ``[B]`` :math:`\log p(y, \hat z)`.

    Reference: Viterbi (1967), IEEE Trans. Inf. Theory 13; Rabiner (1989), Sec. III-B.

    >>> hmm = HMM.from_probabilities([0.5, 0.5], [[0.9, 0.1], [0.1, 0.9]], rates=[1.0, 10.0])
    >>> viterbi(hmm, [0.0, 1.0, 12.0, 9.0])[0].tolist()
    [[0, 0, 1, 1]]
    """
    log_e = emission_log_prob(hmm, y)
    log_P = torch.log_softmax(hmm.trans_logits, -1)
    delta = torch.log_softmax(hmm.start_logits, -1) + log_e[:, 0]
    back = []
    for t in range(1, log_e.shape[1]):
        scores = delta[:, :, None] + log_P  # [B, i, j]
        delta, arg = scores.max(1)
        delta = delta + log_e[:, t]
        back.append(arg)
    best, state = delta.max(-1)
    path = [state]
    for arg in reversed(back):
        state = arg.gather(1, state[:, None])[:, 0]
        path.append(state)
    return torch.stack(path[::-1], 1), best


# ---------------------------------------------------------------------------------------------
# Fisher's identity: exact and Monte Carlo
# ---------------------------------------------------------------------------------------------


def _score_from_stats(
    hmm: HMM, y: Tensor, g0: Tensor, g: Tensor, n_trans: Tensor
) -> tuple[Tensor, ...]:
    """Complete-data score from (expected) statistics, summed over the batch axis.

    ``g0`` ``[..., B, K]`` (first state), ``g`` ``[..., B, T, K]`` (state indicators),
    ``n_trans`` ``[..., B, K, K]`` (transition counts); leading axes are kept.
    """
    pi = hmm.startprob
    P = hmm.transmat
    d_start = (g0 - pi).sum(-2)
    n_from = g[..., :-1, :].sum(-2)  # [..., B, K]
    d_trans = (n_trans - n_from[..., None] * P).sum(-3)
    if hmm.emission == "poisson":
        d_eta = (g * (y[..., None] - hmm.rates)).sum((-3, -2))
        return d_start, d_trans, d_eta
    r = (y[:, :, None, :] - hmm.means) / hmm.sds  # [B, T, K, D]
    gk = g[..., None]
    d_mu = (gk * r / hmm.sds).sum((-4, -3))
    d_s = (gk * (r.square() - 1.0)).sum((-4, -3))
    return d_start, d_trans, d_mu, d_s


def fisher_gradient(hmm: HMM, y: Any, posterior: Posterior | None = None) -> tuple[Tensor, ...]:
    r"""Exact :math:`\nabla_\theta \sum_b \log p(y_b)` by Fisher's identity from forward-backward.

    :math:`\nabla \log p(y) = \mathbb E_{z\mid y}[\nabla \log p(y, z)]`, the complete-data score
    with indicators replaced by the posterior marginals (formulas in the module docstring).

    Args:
        hmm: the model.
        y: ``[T]``/``[B, T]`` (Poisson) or ``[T]``/``[T, D]``/``[B, T, D]`` (Gaussian).
        posterior: reuse a :func:`forward_backward` result for the same ``hmm`` and ``y``.

    Returns:
        Tensors shaped like ``hmm.params()``: start logits, transition logits, then log-rates,
        or means and log-sds.

    Reference: Fisher (1925); Louis (1982), JRSS B 44, eq. (3.1).

    >>> hmm = HMM.from_probabilities([0.5, 0.5], [[0.9, 0.1], [0.2, 0.8]], rates=[1.0, 5.0])
    >>> [tuple(g.shape) for g in fisher_gradient(hmm, [0.0, 6.0, 4.0])]
    [(2,), (2, 2), (2,)]
    """
    yb = _as_batch(hmm, y)
    post = forward_backward(hmm, yb) if posterior is None else posterior
    if post.gamma.shape[:2] != yb.shape[:2]:
        raise ValueError("posterior does not match y's batch and length")
    return _score_from_stats(hmm, yb, post.gamma[:, 0], post.gamma, post.xi.sum(1))


def complete_data_score(hmm: HMM, y: Any, z: Tensor) -> tuple[Tensor, ...]:
    r"""Per-sample :math:`\nabla_\theta \log p(y, z)` (summed over the batch) for paths ``z``.

    Args:
        hmm: the model.
        y: observations (as in :func:`fisher_gradient`), batch ``B``.
        z: int64 state paths ``[S, B, T]`` (``[B, T]`` is taken as one sample).

    Returns:
        Tensors ``[S, *param.shape]``, one per parameter.

    >>> hmm = HMM.from_probabilities([0.5, 0.5], [[0.5, 0.5], [0.5, 0.5]], rates=[1.0, 2.0])
    >>> complete_data_score(hmm, [1.0], torch.tensor([[0]]))[2].tolist()
    [[0.0, 0.0]]
    """
    yb = _as_batch(hmm, y)
    z = torch.as_tensor(z)
    if z.ndim == 2:
        z = z[None]
    K = hmm.num_states
    if z.ndim != 3 or z.shape[1:] != yb.shape[:2]:
        raise ValueError(
            f"z must be [S, B, T] with [B, T] = {tuple(yb.shape[:2])}, got {tuple(z.shape)}"
        )
    if z.dtype.is_floating_point or (z < 0).any() or (z >= K).any():
        raise ValueError(f"z must hold integer states in 0..{K - 1}")
    g = torch.nn.functional.one_hot(z, K).to(hmm.start_logits.dtype)  # [S, B, T, K]
    n_trans = torch.einsum("sbti,sbtj->sbij", g[:, :, :-1], g[:, :, 1:])
    return _score_from_stats(hmm, yb, g[:, :, 0], g, n_trans)


def _gumbel_argmax(logits: Tensor, generator: torch.Generator | None) -> Tensor:
    u = torch.rand(logits.shape, dtype=logits.dtype, generator=generator)
    u = u.clamp_min(torch.finfo(logits.dtype).tiny)
    return (logits - torch.log(-torch.log(u))).argmax(-1)


def sample_posterior(
    hmm: HMM,
    y: Any,
    num_samples: int,
    *,
    generator: torch.Generator | None = None,
    posterior: Posterior | None = None,
) -> Tensor:
    r"""Draw ``z ~ p(z | y)`` by forward-filtering backward-sampling, ``[S, B, T]``.

    :math:`z_T \sim \alpha_T`, then :math:`p(z_t = i \mid z_{t+1}, y) \propto \alpha_t(i)
    P_{i z_{t+1}}`; categorical draws by the Gumbel-max trick, batched over samples and sequences.

    Reference: Frühwirth-Schnatter (1994), J. Time Ser. Anal. 15; Carter & Kohn (1994),
    Biometrika 81; Scott (2002), JASA 97.

    >>> hmm = HMM.from_probabilities([0.5, 0.5], [[0.9, 0.1], [0.1, 0.9]], rates=[1.0, 10.0])
    >>> sample_posterior(hmm, [0.0, 11.0], 3, generator=torch.Generator().manual_seed(0)).shape
    torch.Size([3, 1, 2])
    """
    if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"num_samples must be an integer >= 1, got {num_samples!r}")
    yb = _as_batch(hmm, y)
    post = forward_backward(hmm, yb) if posterior is None else posterior
    log_alpha = post.log_alpha  # [B, T, K]
    log_P = torch.log_softmax(hmm.trans_logits, -1)
    B, T, K = log_alpha.shape
    S = num_samples
    z = torch.empty(S, B, T, dtype=torch.int64)
    z[:, :, T - 1] = _gumbel_argmax(log_alpha[:, T - 1].expand(S, B, K), generator)
    for t in range(T - 2, -1, -1):
        # log_P[:, z_{t+1}] -> [S, B, K] column of the next state
        logits = log_alpha[:, t] + log_P.T[z[:, :, t + 1]]
        z[:, :, t] = _gumbel_argmax(logits, generator)
    return z


def monte_carlo_gradient(
    hmm: HMM, y: Any, num_samples: int, *, generator: torch.Generator | None = None
) -> GradientEstimate:
    r"""Monte Carlo Fisher identity: average :math:`\nabla \log p(y, z^{(s)})`, :math:`z^{(s)} \sim p(z \mid y)`.

    Unbiased for :func:`fisher_gradient`; the posterior draws are exact (FFBS), independent.

    Returns:
        A :class:`~stochgrad.gradient_estimate.GradientEstimate` with tuple fields in the order of
        ``hmm.params()`` and per-sample terms ``[S, *param.shape]``.

    >>> hmm = HMM.from_probabilities([0.5, 0.5], [[0.9, 0.1], [0.1, 0.9]], rates=[1.0, 10.0])
    >>> est = monte_carlo_gradient(hmm, [0.0, 11.0, 9.0], 64, generator=torch.Generator().manual_seed(0))
    >>> est.num_samples, est.method
    (64, 'fisher_ffbs')
    """
    yb = _as_batch(hmm, y)
    post = forward_backward(hmm, yb)
    z = sample_posterior(hmm, yb, num_samples, generator=generator, posterior=post)
    per_sample = complete_data_score(hmm, yb, z)
    return GradientEstimate.from_per_sample(
        per_sample,
        method="fisher_ffbs",
        evaluations=num_samples,
        info={"log_likelihood": float(post.log_likelihood.sum())},
    )


# ---------------------------------------------------------------------------------------------
# fitting
# ---------------------------------------------------------------------------------------------


@dataclass
class FitResult:
    """One fit: the model, its total log-likelihood, iterations and whether it converged."""

    hmm: HMM
    log_likelihood: float
    n_iter: int
    converged: bool
    method: str
    history: list[float] = field(default_factory=list, repr=False)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


@torch.no_grad()
def baum_welch(
    hmm: HMM,
    y: Any,
    *,
    max_iter: int = 1000,
    tol: float = 1e-11,
    min_sd: float = 1e-3,
) -> FitResult:
    r"""Fit by EM (Baum-Welch) with the closed-form M-step.

    :math:`\pi \propto \sum_b \gamma_{b1}`, :math:`P_{ij} \propto \sum_{b,t} \xi_{bt}(i,j)`,
    :math:`\lambda_k = \sum \gamma_t(k) y_t / \sum \gamma_t(k)` (Poisson), weighted means and
    variances (Gaussian, sds floored at ``min_sd`` to keep the likelihood bounded). Stops when the
    log-likelihood gains less than ``tol`` (absolute) in an iteration.

    Reference: Baum et al. (1970); Dempster, Laird & Rubin (1977), JRSS B 39.

    >>> y = load_earthquakes()  # Zucchini & MacDonald's 2-state fit: -log L = 341.88
    >>> init = HMM.from_probabilities([0.9, 0.1], [[0.9, 0.1], [0.1, 0.9]], rates=[15.0, 26.0])
    >>> round(baum_welch(init, y, tol=1e-6).log_likelihood, 2)
    -341.88
    """
    return baum_welch_batched([hmm], y, max_iter=max_iter, tol=tol, min_sd=min_sd)[0]


@torch.no_grad()
def baum_welch_batched(
    hmms: Sequence[HMM],
    y: Any,
    *,
    max_iter: int = 1000,
    tol: float = 1e-11,
    min_sd: float = 1e-3,
) -> list[FitResult]:
    r"""EM from several starting points at once: :func:`baum_welch` for each of ``hmms``.

    The models are stacked along a leading dimension, so one forward-backward pass (a loop over
    time of batched matrix products) serves every start; a start leaves the batch when it has
    converged, and its result is the one :func:`baum_welch` gives alone (to rounding). This
    is what makes random restarts cheap: the cost of ten restarts is close to that of the
    slowest one, not the sum.

    Args:
        hmms: starting models, all with one emission family, K and D.
        y: observations (see :func:`fisher_gradient`).
        max_iter, tol, min_sd: as in :func:`baum_welch`.

    Returns:
        One :class:`FitResult` per starting model, in order.

    Raises:
        ValueError: empty ``hmms``, mixed families or sizes, bad settings.

    >>> y = load_earthquakes()
    >>> inits = [HMM.from_probabilities([0.5, 0.5], [[0.9, 0.1], [0.1, 0.9]], rates=r)
    ...          for r in ([15.0, 26.0], [10.0, 30.0])]
    >>> [round(f.log_likelihood, 2) for f in baum_welch_batched(inits, y, tol=1e-6)]
    [-341.88, -341.88]
    """
    max_iter = _check_int("max_iter", max_iter, 1)
    if not (tol >= 0):
        raise ValueError(f"tol must be >= 0, got {tol!r}")
    if not (min_sd > 0):
        raise ValueError(f"min_sd must be > 0, got {min_sd!r}")
    hmms = list(hmms)
    if not hmms or not all(isinstance(h, HMM) for h in hmms):
        raise ValueError("hmms must be a non-empty sequence of HMM")
    first = hmms[0]
    shape = (first.emission, first.num_states, first.dim, first.start_logits.dtype)
    if any((h.emission, h.num_states, h.dim, h.start_logits.dtype) != shape for h in hmms):
        raise ValueError("hmms must share the emission family, num_states, dim and dtype")
    yb = _as_batch(first, y)
    poisson = first.emission == "poisson"
    # parameters of all starts, stacked: [R, K], [R, K, K], [R, K] or [R, K, D] (x2)
    start = torch.stack([h.start_logits for h in hmms])
    trans = torch.stack([h.trans_logits for h in hmms])
    emis = (
        [torch.stack([h.log_rates for h in hmms])]
        if poisson
        else [torch.stack([h.means for h in hmms]), torch.stack([h.log_sds for h in hmms])]
    )
    R = len(hmms)
    history: list[list[float]] = [[] for _ in range(R)]
    converged = [False] * R
    active = torch.arange(R)
    tiny = torch.finfo(yb.dtype).tiny
    lgamma_y = torch.lgamma(yb + 1.0)[..., None] if poisson else None
    for _ in range(max_iter):
        post = _forward_backward_logs(
            torch.log_softmax(start[active], -1)[:, None, :],
            torch.log_softmax(trans[active], -1),
            _stacked_emission(yb, [e[active] for e in emis], lgamma_y),
        )
        lls = post.log_likelihood.sum(-1).tolist()
        moving = []
        for j, r in enumerate(active.tolist()):  # bookkeeping per start, not per sample
            history[r].append(lls[j])
            if len(history[r]) > 1 and history[r][-1] - history[r][-2] < tol:
                converged[r] = True
            else:
                moving.append(j)
        if not moving:
            active = active[:0]
            break
        keep = torch.tensor(moving)
        idx = active[keep]
        g, xi = post.gamma[keep], post.xi[keep]  # [r, B, T, K], [r, B, T-1, K, K]
        pi = g[:, :, 0].sum(1)
        start[idx] = (pi / pi.sum(-1, keepdim=True)).clamp_min(tiny).log()
        pairs = xi.sum((1, 2))
        # a state never left (or never visited) keeps its row
        rows = pairs.sum(-1, keepdim=True)
        trans[idx] = torch.where(
            rows > 0, (pairs / rows.clamp_min(tiny)).clamp_min(tiny).log(), trans[idx]
        )
        w = g.sum((1, 2)).clamp_min(tiny)  # [r, K]
        if poisson:
            rate = torch.einsum("rbtk,bt->rk", g, yb) / w
            emis[0][idx] = rate.clamp_min(tiny).log()
        else:
            mu = torch.einsum("rbtk,btd->rkd", g, yb) / w[..., None]
            dev = (yb[None, :, :, None, :] - mu[:, None, None]).square()
            var = torch.einsum("rbtk,rbtkd->rkd", g, dev) / w[..., None]
            emis[0][idx] = mu
            emis[1][idx] = 0.5 * var.clamp_min(min_sd**2).log()
        active = idx
    out = []
    for r in range(R):
        if poisson:
            hmm = HMM("poisson", start[r], trans[r], log_rates=emis[0][r])
        else:
            hmm = HMM("gaussian", start[r], trans[r], means=emis[0][r], log_sds=emis[1][r])
        if not converged[r]:
            history[r].append(float(log_likelihood(hmm, yb).sum()))
        h = history[r]
        out.append(FitResult(hmm, h[-1], len(h) - 1, converged[r], "em", h))
    return out


def _stacked_emission(yb: Tensor, emis: Sequence[Tensor], lgamma_y: Tensor | None) -> Tensor:
    """``[R, B, T, K]`` emission log-probabilities of ``R`` stacked models."""
    if lgamma_y is not None:  # Poisson: emis = (log_rates [R, K],)
        eta = emis[0][:, None, None, :]
        return yb[None, ..., None] * eta - eta.exp() - lgamma_y[None]
    means, log_sds = (e[:, None, None] for e in emis)  # [R, 1, 1, K, D]
    z = (yb[None, :, :, None, :] - means) / log_sds.exp()
    return (-0.5 * z.square() - log_sds - 0.5 * _LOG_2PI).sum(-1)


def _flatten(params: Sequence[Tensor]) -> np.ndarray:
    return torch.cat([p.detach().reshape(-1) for p in params]).double().numpy()


def _unflatten(x: np.ndarray, like: Sequence[Tensor]) -> tuple[Tensor, ...]:
    out, i = [], 0
    for p in like:
        n = p.numel()
        out.append(torch.as_tensor(x[i : i + n], dtype=p.dtype).reshape(p.shape))
        i += n
    return tuple(out)


def fit_gradient(
    hmm: HMM,
    y: Any,
    *,
    max_iter: int = 1000,
    tol: float = 1e-11,
    min_sd: float = 1e-3,
) -> FitResult:
    r"""Fit by L-BFGS (scipy's L-BFGS-B) on the log-likelihood with the exact Fisher gradient.

    Objective :math:`-\sum_b \log p(y_b)`, gradient :math:`-`:func:`fisher_gradient`, both from
    one forward-backward pass. Log-sds are bounded below by ``log(min_sd)`` (a Gaussian state
    collapsing on one point would make the likelihood unbounded). ``tol`` is L-BFGS-B's
    relative function tolerance ``ftol``. Logits keep a free additive constant per row; that
    flat direction does not affect the fit.

    Reference: Byrd, Lu, Nocedal & Zhu (1995), SIAM J. Sci. Comput. 16 (L-BFGS-B).

    >>> y = [0.0, 1.0, 0.0, 8.0, 9.0, 11.0, 1.0, 0.0]
    >>> init = HMM.from_probabilities([0.5, 0.5], [[0.9, 0.1], [0.1, 0.9]], rates=[2.0, 5.0])
    >>> res = fit_gradient(init, y, max_iter=50)
    >>> res.log_likelihood > float(log_likelihood(init, y)[0])
    True
    """
    from scipy.optimize import minimize

    max_iter = _check_int("max_iter", max_iter, 1)
    if not (min_sd > 0):
        raise ValueError(f"min_sd must be > 0, got {min_sd!r}")
    yb = _as_batch(hmm, y)
    like = hmm.params()
    # -inf logits (probability 0) cannot be optimised: start them at a large negative value
    like = tuple(torch.where(p == -math.inf, torch.full_like(p, -30.0), p) for p in like)
    history: list[float] = []

    @torch.no_grad()
    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        model = hmm.with_params(_unflatten(x, like))
        post = forward_backward(model, yb)
        ll = float(post.log_likelihood.sum())
        history.append(ll)
        return -ll, -_flatten(fisher_gradient(model, yb, post))

    bounds = []
    for name, p in zip(hmm.param_names, like, strict=True):
        low = math.log(min_sd) if name == "log_sds" else None
        bounds += [(low, None)] * p.numel()
    res = minimize(
        objective,
        _flatten(like),
        jac=True,
        method="L-BFGS-B",
        bounds=bounds,
        options={"maxiter": max_iter, "ftol": tol, "gtol": 1e-7, "maxls": 50},
    )
    fitted = hmm.with_params(_unflatten(res.x, like))
    ll = float(log_likelihood(fitted, yb).sum())
    return FitResult(fitted, ll, int(res.nit), bool(res.success), "gradient", history)


def random_hmm(
    y: Any, num_states: int, emission: str = "poisson", *, generator: torch.Generator
) -> HMM:
    r"""A random starting point for fitting, drawn from ``generator``.

    Start and transition rows :math:`\sim` Dirichlet(1) (normalised exponentials); Poisson rates
    and Gaussian means are observations picked at random (plus 0.5 for rates, keeping them
    positive); Gaussian sds are the data's per-dimension sd.

    >>> hmm = random_hmm(load_earthquakes(), 3, generator=torch.Generator().manual_seed(0))
    >>> hmm.num_states, hmm.emission
    (3, 'poisson')
    """
    K = _check_int("num_states", num_states, 1)
    if emission not in EMISSIONS:
        raise ValueError(f"emission must be one of {EMISSIONS}, got {emission!r}")
    probe = HMM.from_probabilities(
        [1.0],
        [[1.0]],
        **({"rates": [1.0]} if emission == "poisson" else {"means": [[0.0]], "sds": [[1.0]]}),
    )
    if emission == "gaussian":
        yy = torch.as_tensor(y, dtype=torch.float64)
        D = 1 if yy.ndim == 1 else int(yy.shape[-1])
        probe = HMM.from_probabilities(
            [1.0], [[1.0]], means=torch.zeros(1, D), sds=torch.ones(1, D)
        )
    yb = _as_batch(probe, y)
    flat = yb.reshape(-1, 1) if emission == "poisson" else yb.reshape(-1, yb.shape[-1])
    e = -torch.log(torch.rand(K + 1, K, dtype=torch.float64, generator=generator))
    pi = e[0] / e[0].sum()
    P = e[1:] / e[1:].sum(-1, keepdim=True)
    pick = flat[torch.randint(flat.shape[0], (K,), generator=generator)]
    if emission == "poisson":
        return HMM.from_probabilities(pi, P, rates=pick[:, 0] + 0.5)
    sd = flat.std(0) if flat.shape[0] > 1 else torch.ones(flat.shape[1], dtype=flat.dtype)
    sd = torch.where(sd > 0, sd, torch.ones_like(sd))
    return HMM.from_probabilities(pi, P, means=pick, sds=sd.expand(K, -1))


def _restart_seed(seed: int, restart: int) -> int:
    return int(np.random.SeedSequence([int(seed), int(restart)]).generate_state(1)[0])


def fit_hmm(
    y: Any,
    num_states: int,
    emission: str = "poisson",
    *,
    method: str = "em",
    restarts: int = 10,
    seed: int = 0,
    max_iter: int = 1000,
    checkpoint: str | Path | None = None,
    callback: Callable[[int, FitResult], None] | None = None,
) -> tuple[FitResult, list[FitResult]]:
    """Fit from ``restarts`` seeded random starts (:func:`random_hmm`); keep the best.

    Restart ``r`` draws its start from a generator seeded by ``SeedSequence([seed, r])``, so a
    restart's result does not depend on the others. EM runs all restarts at once
    (:func:`baum_welch_batched`); gradient fits run one after another. With ``checkpoint`` (a JSON file) each
    finished restart is saved at once and reused when the same call is repeated: an interrupted
    run resumed this way gives the same results as an uninterrupted one.

    Args:
        y: observations (see :func:`fisher_gradient`).
        num_states: K >= 1.
        emission: ``"poisson"`` or ``"gaussian"``.
        method: ``"em"`` (:func:`baum_welch`) or ``"gradient"`` (:func:`fit_gradient`).
        restarts: number of random starts >= 1.
        seed: base seed.
        max_iter: iteration cap per restart.
        checkpoint: JSON file of finished restarts (created; reused if its settings match).
        callback: called ``callback(r, result)`` after each restart (also restored ones).

    Returns:
        ``(best, all_results)``.

    Raises:
        ValueError: bad settings, or a checkpoint made with other settings.

    >>> best, runs = fit_hmm([0.0, 1.0, 0.0, 8.0, 9.0, 11.0, 1.0, 0.0], 2, restarts=2, max_iter=100)
    >>> len(runs), best.hmm.num_states
    (2, 2)
    """
    K = _check_int("num_states", num_states, 1)
    restarts = _check_int("restarts", restarts, 1)
    max_iter = _check_int("max_iter", max_iter, 1)
    if method not in ("em", "gradient"):
        raise ValueError(f"method must be 'em' or 'gradient', got {method!r}")
    if emission not in EMISSIONS:
        raise ValueError(f"emission must be one of {EMISSIONS}, got {emission!r}")
    y_t = torch.as_tensor(y, dtype=torch.float64)
    settings = {
        "num_states": K,
        "emission": emission,
        "method": method,
        "seed": int(seed),
        "max_iter": max_iter,
        "data_sha": _digest(y_t),
    }
    done: dict[int, FitResult] = {}
    ckpt = None if checkpoint is None else Path(checkpoint)
    if ckpt is not None and ckpt.exists():
        saved = json.loads(ckpt.read_text())
        if saved.get("settings") != settings:
            raise ValueError(
                f"checkpoint {ckpt} was made with other settings ({saved.get('settings')} vs {settings}); "
                "delete it or start afresh"
            )
        for r, d in saved["runs"].items():
            done[int(r)] = FitResult(
                HMM.from_dict(d["hmm"]), d["log_likelihood"], d["n_iter"], d["converged"], method
            )

    def start(r: int) -> HMM:
        g = torch.Generator().manual_seed(_restart_seed(seed, r))
        return random_hmm(y_t, K, emission, generator=g)

    todo = [r for r in range(restarts) if r not in done]
    batched: dict[int, FitResult] = {}
    if method == "em" and todo:  # all EM starts in one stacked run
        fits = baum_welch_batched([start(r) for r in todo], y_t, max_iter=max_iter)
        batched = dict(zip(todo, fits, strict=True))
    results = []
    for r in range(restarts):
        if r not in done:
            done[r] = (
                batched[r] if method == "em" else fit_gradient(start(r), y_t, max_iter=max_iter)
            )
            if ckpt is not None:
                _save_checkpoint(ckpt, settings, done)
        results.append(done[r])
        if callback is not None:
            callback(r, done[r])
    best = max(results, key=lambda f: f.log_likelihood)
    return best, results


def _digest(y: Tensor) -> str:
    import hashlib

    return hashlib.sha256(
        y.contiguous().numpy().tobytes() + str(tuple(y.shape)).encode()
    ).hexdigest()[:16]


def _save_checkpoint(path: Path, settings: dict, done: dict[int, FitResult]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "settings": settings,
        "runs": {
            str(r): {
                "hmm": f.hmm.to_dict(),
                "log_likelihood": f.log_likelihood,
                "n_iter": f.n_iter,
                "converged": f.converged,
            }
            for r, f in sorted(done.items())
        },
    }
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(state, indent=1))
    tmp.replace(path)


def information_criteria(log_lik: float, num_params: int, num_obs: int) -> tuple[float, float]:
    """``(AIC, BIC)`` = ``(-2 log L + 2 p, -2 log L + p log n)``.

    >>> information_criteria(-10.0, 2, 100)[0]
    24.0
    """
    if num_obs < 1 or num_params < 0:
        raise ValueError("num_obs must be >= 1 and num_params >= 0")
    return -2.0 * log_lik + 2.0 * num_params, -2.0 * log_lik + num_params * math.log(num_obs)


# ---------------------------------------------------------------------------------------------
# command line: stochgrad hmm fit
# ---------------------------------------------------------------------------------------------


def add_fit_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``stochgrad hmm fit``."""
    parser.add_argument(
        "data",
        nargs="?",
        default=None,
        help="CSV with a header (default: the bundled earthquake counts)",
    )
    parser.add_argument(
        "--column", default=None, help="column to fit (default: the only data column)"
    )
    parser.add_argument("--states", type=int, default=2, help="number of hidden states")
    parser.add_argument("--emission", choices=EMISSIONS, default="poisson")
    parser.add_argument("--method", choices=("em", "gradient"), default="em")
    parser.add_argument("--restarts", type=int, default=10, help="random starts (seeded)")
    parser.add_argument("--seed", type=int, default=0, help="base seed of the random starts")
    parser.add_argument("--max-iter", type=int, default=1000, help="iterations per start")
    parser.add_argument("-o", "--out", type=Path, default=Path("runs/hmm"), help="output folder")
    parser.add_argument(
        "--resume", action="store_true", help="reuse finished restarts from the checkpoint in --out"
    )


def _plot_fit(
    path: Path,
    x: np.ndarray,
    values: np.ndarray,
    hmm: HMM,
    states: np.ndarray,
    title: str,
    ylabel: str = "value",
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    means = hmm.state_means()[:, 0].numpy()
    fig, ax = plt.subplots(figsize=(7, 3.6))
    ax.plot(x, values, "o-", color="0.55", ms=3, lw=0.8, label="data")
    ax.step(x, means[states], where="mid", color="C3", lw=1.8, label="Viterbi state mean")
    for k, m in enumerate(means):
        ax.axhline(m, color=f"C{k}", lw=0.6, ls=":")
    ax.set_xlabel("year" if x.size and x[0] > 1000 else "t")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(loc="upper right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_fit(args: argparse.Namespace, console: Any) -> int:
    """Fit a Gaussian or Poisson HMM to one series by EM or by gradient ascent, from random restarts.

    Prints the fitted parameters, log-likelihood, AIC and BIC; writes ``hmm_fit.json``,
    ``hmm_fit.png`` (the series with the Viterbi state means) and ``hmm_checkpoint.json`` (the
    finished restarts; ``--resume`` reuses them) into ``--out``.
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    try:
        if args.data is None:
            with importlib.resources.as_file(_earthquakes_path()) as p:
                x, values, name = load_series(p, args.column or "count")
            source = "earthquakes (bundled)"
        else:
            x, values, name = load_series(args.data, args.column)
            source = str(args.data)
        _check_int("--states", args.states, 1)
        _check_int("--restarts", args.restarts, 1)
    except (ValueError, OSError) as err:
        console.print(f"[red]{err}[/red]")
        return 2
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "hmm_checkpoint.json"
    if not args.resume and ckpt.exists():
        ckpt.unlink()
    y = torch.as_tensor(values, dtype=torch.float64)
    start = time.perf_counter()
    try:
        columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, TimeElapsedColumn(), console=console, transient=True) as progress:
            task = progress.add_task(f"{args.method} fits", total=args.restarts)
            best, runs = fit_hmm(
                y,
                args.states,
                args.emission,
                method=args.method,
                restarts=args.restarts,
                seed=args.seed,
                max_iter=args.max_iter,
                checkpoint=ckpt,
                callback=lambda r, f: progress.advance(task),
            )
    except ValueError as err:
        console.print(f"[red]{err}[/red]")
        return 2
    seconds = time.perf_counter() - start
    hmm = best.hmm
    # order states by their mean, for a readable table
    order = torch.argsort(hmm.state_means()[:, 0])
    perm = hmm.with_params(
        (
            hmm.start_logits[order],
            hmm.trans_logits[order][:, order],
            *(p[order] for p in hmm.params()[2:]),
        )
    )
    paths, _ = viterbi(perm, y)
    states = paths[0].numpy()
    n = y.numel()
    aic, bic = information_criteria(best.log_likelihood, perm.num_free_parameters(), n)

    table = Table(
        title=f"{args.states}-state {args.emission} HMM, {args.method} ({source}, column {name})"
    )
    table.add_column("state", justify="right")
    table.add_column("start prob", justify="right")
    if perm.emission == "poisson":
        table.add_column("rate", justify="right")
    else:
        table.add_column("mean", justify="right")
        table.add_column("sd", justify="right")
    table.add_column("transition row", justify="left")
    table.add_column("Viterbi count", justify="right")
    P = perm.transmat
    for k in range(perm.num_states):
        row = [str(k), f"{float(perm.startprob[k]):.4f}"]
        if perm.emission == "poisson":
            row.append(f"{float(perm.rates[k]):.4f}")
        else:
            row += [f"{float(perm.means[k, 0]):.4f}", f"{float(perm.sds[k, 0]):.4f}"]
        row += ["  ".join(f"{float(p):.4f}" for p in P[k]), str(int((states == k).sum()))]
        table.add_row(*row)
    console.print(table)
    lls = [f.log_likelihood for f in runs]
    hits = sum(
        abs(v - best.log_likelihood) < 1e-4 * max(1.0, abs(best.log_likelihood)) for v in lls
    )
    console.print(
        f"log-likelihood {best.log_likelihood:.4f} (-log L = {-best.log_likelihood:.4f}); "
        f"AIC {aic:.3f}; BIC {bic:.3f}; {perm.num_free_parameters()} parameters, {n} observations; "
        f"best reached by {hits}/{len(runs)} restarts; {seconds:.1f} s"
    )
    result = {
        "source": source,
        "column": name,
        "num_states": args.states,
        "emission": args.emission,
        "method": args.method,
        "restarts": args.restarts,
        "seed": args.seed,
        "log_likelihood": best.log_likelihood,
        "aic": aic,
        "bic": bic,
        "num_parameters": perm.num_free_parameters(),
        "num_observations": n,
        "params": perm.to_dict(),
        "viterbi_states": states.tolist(),
        "restart_log_likelihoods": lls,
        "restart_converged": [f.converged for f in runs],
        "restart_iterations": [f.n_iter for f in runs],
        "seconds": seconds,
    }
    (out / "hmm_fit.json").write_text(json.dumps(result, indent=1))
    _plot_fit(
        out / "hmm_fit.png",
        x,
        values,
        perm,
        states,
        f"{args.states}-state {args.emission} HMM ({args.method}): log L = {best.log_likelihood:.2f}",
        ylabel=name,
    )
    console.print(f"wrote {out / 'hmm_fit.json'} and {out / 'hmm_fit.png'}")
    return 0
