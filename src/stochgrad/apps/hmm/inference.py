r"""Forward-backward, Viterbi and forward-filtering backward-sampling, in log space.

Everything works on a batch of equal-length sequences and loops over time only; the private
``_forward_logs``/``_forward_backward_logs`` also serve ``R`` models stacked along a leading
dimension. EM and the gradient fit use ``_posterior_marginals`` instead: the same likelihoods
and marginals of stacked models from a parallel prefix scan (a few batched operations per
round, :math:`\lceil \log_2 T \rceil` rounds, instead of a step per time point), with this
module's log-space pass as its fallback.

References:
    Rabiner (1989), "A tutorial on hidden Markov models", Proc. IEEE 77;
    Viterbi (1967), IEEE Trans. Inf. Theory 13;
    Frühwirth-Schnatter (1994), J. Time Ser. Anal. 15; Carter & Kohn (1994), Biometrika 81;
    Hillis & Steele (1986), "Data parallel algorithms", CACM 29 (the prefix scan).

>>> from stochgrad.apps.hmm.model import HMM
>>> hmm = HMM.from_probabilities([0.5, 0.5], [[1.0, 0.0], [0.0, 1.0]], rates=[1.0, 1.0])
>>> round(float(log_likelihood(hmm, [0.0, 0.0])), 6)
-2.0
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from torch import Tensor

from stochgrad._checks import check_int
from stochgrad.apps.hmm.emissions import _as_batch, emission_log_prob
from stochgrad.apps.hmm.model import HMM

__all__ = ["Posterior", "forward_backward", "log_likelihood", "sample_posterior", "viterbi"]


#: The most states :func:`sample_posterior` draws in one call (paths x sequences x length).
MAX_PATH_STATES = 2**27


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


class _Marginals(NamedTuple):
    """What EM and the gradient fit need of a posterior: ``[R, B]`` log-likelihoods,
    ``[R, B, T, K]`` state marginals and ``[R, B, T-1, K, K]`` pairwise marginals."""

    log_likelihood: Tensor
    gamma: Tensor
    xi: Tensor


#: Below this, a normaliser of the scan means entries near float64's underflow: use log space.
_SCAN_FLOOR = 1e-200


def _posterior_marginals(log_start: Tensor, log_P: Tensor, log_e: Tensor) -> _Marginals:
    r"""Likelihoods and posterior marginals of ``R`` stacked models by a parallel prefix scan.

    ``log_start`` ``[R, 1, K]``, ``log_P`` ``[R, K, K]``, ``log_e`` ``[R, B, T, K]``. The forward variables are the rows of the
    prefix products :math:`F_0 F_1 \cdots F_t`, with :math:`F_0 = \mathbb 1 (\pi \circ e_0)^\top`
    and :math:`F_t = P\,\mathrm{diag}(e_t)`, and the backward variables the rows of the
    transposed suffix products; both are computed together in :math:`\lceil\log_2 T\rceil`
    rounds of batched matrix products (Hillis & Steele 1986), each product scaled to sum 1,
    instead of :math:`2T` sequential steps. Emissions are scaled per time step by their largest
    state (:math:`e_t = \exp(\log e_t - m_t)`), so every entry is at most 1; the
    log-likelihood is :math:`\log \sum_k \pi_k e_0(k) + \sum_{t \ge 1} \log
    (\hat\alpha_{t-1}^\top P e_t) + \sum_t m_t` with :math:`\hat\alpha` normalised. Where
    any normaliser of a model falls below ``1e-200`` (entries could lose precision to
    underflow, or a marginal be 0/0), the log-space :func:`_forward_backward_logs` answers for
    that model. The results agree with it to rounding (about 1e-12 on the earthquake series),
    and each model's numbers are the same bits alone as in any stack (every operation, the
    choice of the log-space pass included, is per model).

    Reference: Hillis & Steele (1986), "Data parallel algorithms", CACM 29; Särkkä &
    García-Fernández (2021), "Temporal parallelization of Bayesian smoothers", IEEE TAC 66.
    """
    T, K = log_e.shape[-2], log_e.shape[-1]
    m = log_e.amax(-1, keepdim=True)
    le = log_e - m  # e_t = exp(le): largest entry 1 at every t
    lP = log_P.unsqueeze(-3).unsqueeze(-3)  # [R, 1, 1, K, K]
    # X[0]: forward factors F_0 (rows pi * e_0), then F_t = P diag(e_t); X[1]: a constant
    # start, then the backward factors reversed and transposed, F_{T-1}^T, ..., F_1^T. Rows of
    # the prefix products are then the alphas and (reversed) the betas, up to scale.
    X = torch.empty((2, *le.shape[:-1], K, K), dtype=le.dtype)
    torch.add(lP, le.unsqueeze(-2), out=X[0])
    X[0, ..., 0, :, :] = (log_start + le[..., 0, :]).unsqueeze(-2)
    torch.add(lP.transpose(-1, -2), le.flip(-2)[..., :-1, :, None], out=X[1, ..., 1:, :, :])
    X[1, ..., 0, :, :] = -2.0 * math.log(K)
    X.exp_()
    F = X[0, ..., 1:, :, :].clone()  # F_1 .. F_{T-1}: P_ij e_t(j)
    floors = []
    d = 1
    while d < T:
        tail = X[..., :-d, :, :] @ X[..., d:, :, :]
        norm = tail.sum((-1, -2), keepdim=True)
        floors.append(norm.amin((0, 2, 3, 4, 5)))
        torch.div(tail, norm, out=X[..., d:, :, :])
        d *= 2
    alpha = X[0, ..., 0, :]  # [R, B, T, K]; alpha_0 = pi * e_0, the prefix not rescaled
    start_mass = alpha[..., 0, :].sum(-1)
    alpha = alpha / alpha.sum(-1, keepdim=True)  # each row sums to 1
    beta = X[1, ..., 0, :].flip(-2)  # [R, B, T, K], up to a scale per t
    ab = alpha * beta
    ab_mass = ab.sum(-1, keepdim=True)
    gamma = ab / ab_mass
    floors += [start_mass.amin(1), ab_mass.amin((1, 2, 3))]
    ll = start_mass.log() + m.sum((-2, -1))
    if T > 1:
        step = (alpha[..., :-1, :] * F.sum(-1)).sum(-1)  # alpha_{t-1}^T P e_t
        ll = ll + step.log().sum(-1)
        xi = alpha[..., :-1, :, None] * F * beta[..., 1:, None, :]
        xi_mass = xi.sum((-1, -2), keepdim=True)
        xi = xi / xi_mass
        floors += [step.amin((1, 2)), xi_mass.amin((1, 2, 3, 4))]
    else:
        xi = F  # empty
    # every normaliser of a model well above underflow: its entries are finite and accurate
    low = ~(torch.stack(floors).amin(0) >= _SCAN_FLOOR)  # [R]; NaN counts as low
    if bool(low.any()):
        bad = low.nonzero()[:, 0]
        post = _forward_backward_logs(log_start[bad], log_P[bad], log_e[bad])
        ll[bad], gamma[bad], xi[bad] = post.log_likelihood, post.gamma, post.xi
    return _Marginals(ll, gamma, xi)


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
    num_samples = check_int("num_samples", num_samples, minimum=1)
    yb = _as_batch(hmm, y)
    if num_samples * yb.shape[0] * yb.shape[1] > MAX_PATH_STATES:
        raise ValueError(
            f"num_samples = {num_samples} paths of {yb.shape[0]} x {yb.shape[1]} states exceed "
            f"the limit of {MAX_PATH_STATES} drawn states (8 bytes each); draw fewer paths"
        )
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
