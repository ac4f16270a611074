r"""EM (Baum-Welch) with the closed-form M-step, from many starting points at once.

:func:`baum_welch_batched` stacks the starting models along a leading dimension, so one
forward-backward pass serves them all. Its state between two iterations (:class:`EMState`) is
handed to an ``on_iteration`` callback and can be passed back as ``state=`` to continue a run
exactly where it stopped: that is how an interrupted fit resumes from its checkpoint.

References:
    Baum, Petrie, Soules & Weiss (1970), "A maximization technique occurring in the statistical
    analysis of probabilistic functions of Markov chains", Ann. Math. Statist. 41;
    Dempster, Laird & Rubin (1977), JRSS B 39.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from stochgrad._checks import check_float, check_int
from stochgrad.apps.hmm.emissions import _as_batch, _stacked_emission
from stochgrad.apps.hmm.fit_result import FitResult
from stochgrad.apps.hmm.inference import _posterior_marginals, log_likelihood
from stochgrad.apps.hmm.model import HMM

__all__ = ["EMState", "baum_welch", "baum_welch_batched"]


@dataclass
class EMState:
    """A stacked EM run of ``R`` starts between two iterations: enough to continue it exactly.

    Attributes:
        start: ``[R, K]`` start logits.
        trans: ``[R, K, K]`` transition logits.
        emis: ``[log_rates [R, K]]`` (Poisson) or ``[means, log_sds]``, each ``[R, K, D]``.
        history: per start, the log-likelihood before each M-step.
        converged: per start, whether it has met the stopping rule.
        active: the starts still iterating.
        iteration: iterations done.

    The tensors are updated in place by the next iteration: copy them (or save them at once)
    to keep a state.
    """

    start: Tensor
    trans: Tensor
    emis: list[Tensor]
    history: list[list[float]]
    converged: list[bool]
    active: list[int]
    iteration: int = 0

    @classmethod
    def initial(cls, hmms: Sequence[HMM]) -> EMState:
        """The state before the first iteration from ``hmms``."""
        poisson = hmms[0].emission == "poisson"
        emis = (
            [torch.stack([h.log_rates for h in hmms])]
            if poisson
            else [torch.stack([h.means for h in hmms]), torch.stack([h.log_sds for h in hmms])]
        )
        R = len(hmms)
        return cls(
            torch.stack([h.start_logits for h in hmms]),
            torch.stack([h.trans_logits for h in hmms]),
            emis,
            [[] for _ in range(R)],
            [False] * R,
            list(range(R)),
        )

    def to_state(self) -> dict[str, Any]:
        """Tensors and plain values (for :func:`stochgrad.checkpoint.save_state`)."""
        return {
            "start": self.start,
            "trans": self.trans,
            "emis": list(self.emis),
            "history": [torch.tensor(h, dtype=torch.float64) for h in self.history],
            "converged": [bool(c) for c in self.converged],
            "active": [int(a) for a in self.active],
            "iteration": int(self.iteration),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> EMState:
        """Inverse of :meth:`to_state`."""
        return cls(
            state["start"],
            state["trans"],
            list(state["emis"]),
            [[float(v) for v in h.tolist()] for h in state["history"]],
            [bool(c) for c in state["converged"]],
            [int(a) for a in state["active"]],
            int(state["iteration"]),
        )


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

    >>> from stochgrad.apps.hmm.data import load_earthquakes
    >>> y = load_earthquakes()  # Zucchini & MacDonald's 2-state fit: -log L = 341.88
    >>> init = HMM.from_probabilities([0.9, 0.1], [[0.9, 0.1], [0.1, 0.9]], rates=[15.0, 26.0])
    >>> round(baum_welch(init, y, tol=1e-6).log_likelihood, 2)
    -341.88
    """
    if not isinstance(hmm, HMM):
        raise TypeError(f"hmm must be an HMM, got {type(hmm).__name__}")
    return baum_welch_batched([hmm], y, max_iter=max_iter, tol=tol, min_sd=min_sd)[0]


def _check_state(state: EMState, hmms: Sequence[HMM]) -> EMState:
    if not isinstance(state, EMState):
        raise TypeError(f"state must be an EMState, got {type(state).__name__}")
    first = hmms[0]
    R, K = len(hmms), first.num_states
    shapes = [tuple(e.shape) for e in state.emis]
    want = [(R, K)] if first.emission == "poisson" else [(R, K, first.dim)] * 2
    if (
        tuple(state.start.shape) != (R, K)
        or tuple(state.trans.shape) != (R, K, K)
        or shapes != want
        or len(state.history) != R
        or len(state.converged) != R
        or any(not 0 <= a < R for a in state.active)
    ):
        raise ValueError("state does not match hmms (number of starts, states or dimension)")
    return state


def _put(dst: Tensor, idx: Tensor, whole: bool, value: Tensor) -> None:
    """``dst[idx] = value``; a plain copy when ``idx`` is every row in order."""
    if whole:
        dst.copy_(value)
    else:
        dst[idx] = value


@torch.no_grad()
def baum_welch_batched(
    hmms: Sequence[HMM],
    y: Any,
    *,
    max_iter: int = 1000,
    tol: float = 1e-11,
    min_sd: float = 1e-3,
    state: EMState | None = None,
    on_iteration: Callable[[EMState, list[int]], None] | None = None,
) -> list[FitResult]:
    r"""EM from several starting points at once: :func:`baum_welch` for each of ``hmms``.

    The models are stacked along a leading dimension, so one forward-backward pass (a parallel
    prefix scan over time of batched matrix products,
    :func:`~stochgrad.apps.hmm.inference._posterior_marginals`) serves every start; a start
    leaves the batch when it has converged, and its result is the one :func:`baum_welch` gives
    alone. This is what makes random restarts cheap: the cost of ten restarts is close to that
    of the slowest one, not the sum.

    Args:
        hmms: starting models, all with one emission family, K and D.
        y: observations (see :func:`~stochgrad.apps.hmm.gradient.likelihood_gradient`).
        max_iter: as in :func:`baum_welch`.
        tol: as in :func:`baum_welch`.
        min_sd: as in :func:`baum_welch`.
        state: continue this run (an :class:`EMState` handed to ``on_iteration`` by an earlier
            call with the same ``hmms``, ``y`` and settings) instead of starting at ``hmms``:
            the results are those of an uninterrupted run.
        on_iteration: called ``on_iteration(state, finished)`` after every iteration, with the
            starts that converged in it (a checkpoint saves ``state.to_state()``).

    Returns:
        One :class:`FitResult` per starting model, in order.

    Raises:
        ValueError: empty ``hmms``, mixed families or sizes, bad settings, a ``state`` of
            other sizes.

    Examples:
        >>> from stochgrad.apps.hmm.data import load_earthquakes
        >>> y = load_earthquakes()
        >>> inits = [HMM.from_probabilities([0.5, 0.5], [[0.9, 0.1], [0.1, 0.9]], rates=r)
        ...          for r in ([15.0, 26.0], [10.0, 30.0])]
        >>> [round(f.log_likelihood, 2) for f in baum_welch_batched(inits, y, tol=1e-6)]
        [-341.88, -341.88]
    """
    max_iter = check_int("max_iter", max_iter, minimum=1)
    tol = check_float("tol", tol, minimum=0.0)
    min_sd = check_float("min_sd", min_sd, minimum=0.0, open_min=True)
    hmms = list(hmms)
    if not hmms or not all(isinstance(h, HMM) for h in hmms):
        raise ValueError("hmms must be a non-empty sequence of HMM")
    first = hmms[0]
    shape = (first.emission, first.num_states, first.dim, first.start_logits.dtype)
    if any((h.emission, h.num_states, h.dim, h.start_logits.dtype) != shape for h in hmms):
        raise ValueError("hmms must share the emission family, num_states, dim and dtype")
    yb = _as_batch(first, y)
    poisson = first.emission == "poisson"
    st = EMState.initial(hmms) if state is None else _check_state(state, hmms)
    # parameters of all starts, stacked: [R, K], [R, K, K], [R, K] or [R, K, D] (x2)
    start, trans, emis = st.start, st.trans, st.emis
    history, converged = st.history, st.converged
    R = len(hmms)
    active = torch.tensor(st.active, dtype=torch.int64)
    tiny = torch.finfo(yb.dtype).tiny
    lgamma_y = torch.lgamma(yb + 1.0)[..., None] if poisson else None
    # [2, B*T]: one product gives the posterior weight of each state and its weighted counts
    ones_y = torch.stack([torch.ones_like(yb), yb]).reshape(2, -1) if poisson else None
    everyone = list(range(R))
    for it in range(st.iteration, max_iter):
        if active.numel() == 0:
            break
        whole = st.active == everyone  # no start has left: the whole stack, without copies
        if whole:
            a_start, a_trans, a_emis = start, trans, emis
        else:
            a_start, a_trans, a_emis = start[active], trans[active], [e[active] for e in emis]
        post = _posterior_marginals(
            torch.log_softmax(a_start, -1)[:, None, :],
            torch.log_softmax(a_trans, -1),
            _stacked_emission(yb, a_emis, lgamma_y),
        )
        lls = post.log_likelihood.sum(-1).tolist()
        moving, finished = [], []
        for j, r in enumerate(active.tolist()):  # bookkeeping per start, not per sample
            history[r].append(lls[j])
            if len(history[r]) > 1 and history[r][-1] - history[r][-2] < tol:
                converged[r] = True
                finished.append(r)
            else:
                moving.append(j)
        if not moving:
            active = active[:0]
        else:
            g, xi = post.gamma, post.xi  # [r, B, T, K], [r, B, T-1, K, K]
            if finished:
                keep = torch.tensor(moving)
                g, xi, idx = g[keep], xi[keep], active[keep]
                whole = False
            else:
                idx = active
            pi = g[:, :, 0].sum(1)
            _put(start, idx, whole, (pi / pi.sum(-1, keepdim=True)).clamp_min(tiny).log())
            pairs = xi.sum((1, 2))
            # a state never left (or never visited) keeps its row
            rows = pairs.sum(-1, keepdim=True)
            old = trans if whole else trans[idx]
            new = (pairs / rows.clamp_min(tiny)).clamp_min(tiny).log()
            _put(trans, idx, whole, torch.where(rows > 0, new, old))
            if poisson:
                wy = ones_y @ g.reshape(g.shape[0], -1, g.shape[-1])  # [r, 2, K]
                rate = wy[:, 1] / wy[:, 0].clamp_min(tiny)
                _put(emis[0], idx, whole, rate.clamp_min(tiny).log())
            else:
                w = g.sum((1, 2)).clamp_min(tiny)  # [r, K]
                mu = torch.einsum("rbtk,btd->rkd", g, yb) / w[..., None]
                dev = (yb[None, :, :, None, :] - mu[:, None, None]).square()
                var = torch.einsum("rbtk,rbtkd->rkd", g, dev) / w[..., None]
                _put(emis[0], idx, whole, mu)
                _put(emis[1], idx, whole, 0.5 * var.clamp_min(min_sd**2).log())
            active = idx
        st.active = active.tolist()
        st.iteration = it + 1
        if on_iteration is not None:
            on_iteration(st, finished)
    out = []
    for r in range(R):
        if poisson:
            hmm = HMM("poisson", start[r], trans[r], log_rates=emis[0][r])
        else:
            hmm = HMM("gaussian", start[r], trans[r], means=emis[0][r], log_sds=emis[1][r])
        h = list(history[r])
        if not converged[r]:
            h.append(float(log_likelihood(hmm, yb).sum()))
        out.append(FitResult(hmm, h[-1], len(h) - 1, converged[r], "em", h))
    return out
