r"""Fitting by L-BFGS-B on the log-likelihood with the exact Fisher-identity gradient.

:func:`fit_gradient_batched` fits from many starting points at once. scipy's L-BFGS-B holds
its state inside one ``minimize`` call and optimises one vector, so ``R`` independent
optimisations cannot be one call without coupling them (one line search and one curvature
model for all). Instead each start runs its own ``minimize`` in a thread, and the threads
advance in lockstep: whenever every unfinished start has asked for its objective, one
vectorised evaluation (:func:`~stochgrad.apps.hmm.inference._posterior_marginals` over the
stacked models, then one call of :func:`stochgrad.fisher_gradient` for all their gradients)
answers them together. Each start follows exactly the path it follows alone (its numbers do
not depend on the other models in the stack), and the cost of ``R`` starts is that of the one
that needs the most evaluations, not the sum.

Reference: Byrd, Lu, Nocedal & Zhu (1995), SIAM J. Sci. Comput. 16 (L-BFGS-B).
"""

from __future__ import annotations

import contextlib
import math
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stochgrad._checks import check_float, check_int
from stochgrad.apps.hmm.emissions import _as_batch
from stochgrad.apps.hmm.fit_result import FitResult
from stochgrad.apps.hmm.gradient import _factor_gradient, _stacked_log_factors
from stochgrad.apps.hmm.inference import _posterior_marginals, log_likelihood
from stochgrad.apps.hmm.model import HMM

__all__ = ["fit_gradient", "fit_gradient_batched"]

#: Seconds to wait for the optimiser threads to stop after an interruption or an error.
_JOIN_SECONDS = 5.0


def fit_gradient(
    hmm: HMM,
    y: Any,
    *,
    max_iter: int = 1000,
    tol: float = 1e-11,
    min_sd: float = 1e-3,
) -> FitResult:
    r"""Fit by L-BFGS (scipy's L-BFGS-B) on the log-likelihood with the exact Fisher gradient.

    Objective :math:`-\sum_b \log p(y_b)`, gradient :math:`-`
    :func:`~stochgrad.apps.hmm.gradient.likelihood_gradient` (by :func:`stochgrad.fisher_gradient`
    from the forward-backward marginals), both from one forward-backward pass. Log-sds are
    bounded below by ``log(min_sd)`` (a Gaussian state collapsing on one point would make the
    likelihood unbounded). ``tol`` is L-BFGS-B's relative function tolerance ``ftol``. Logits
    keep a free additive constant per row; that flat direction does not affect the fit.

    Reference: Byrd, Lu, Nocedal & Zhu (1995), SIAM J. Sci. Comput. 16 (L-BFGS-B).

    >>> y = [0.0, 1.0, 0.0, 8.0, 9.0, 11.0, 1.0, 0.0]
    >>> init = HMM.from_probabilities([0.5, 0.5], [[0.9, 0.1], [0.1, 0.9]], rates=[2.0, 5.0])
    >>> res = fit_gradient(init, y, max_iter=50)
    >>> res.log_likelihood > float(log_likelihood(init, y)[0])
    True
    """
    if not isinstance(hmm, HMM):
        raise TypeError(f"hmm must be an HMM, got {type(hmm).__name__}")
    return fit_gradient_batched([hmm], y, max_iter=max_iter, tol=tol, min_sd=min_sd)[0]


def _flat(params: Sequence[Tensor]) -> np.ndarray:
    """``[R, n]``: each start's parameters side by side (float64)."""
    return torch.cat([p.detach().reshape(p.shape[0], -1) for p in params], 1).double().numpy()


def fit_gradient_batched(
    hmms: Sequence[HMM],
    y: Any,
    *,
    max_iter: int = 1000,
    tol: float = 1e-11,
    min_sd: float = 1e-3,
    on_finish: Callable[[int, FitResult], None] | None = None,
) -> list[FitResult]:
    r""":func:`fit_gradient` from several starting points at once (lockstep L-BFGS-B).

    Every start runs its own L-BFGS-B (as in :func:`fit_gradient`, with the same result); their
    objective and gradient evaluations are batched: one forward-backward pass over the stacked
    models and one call of :func:`stochgrad.fisher_gradient` serve all the starts still running.

    Args:
        hmms: starting models, all with one emission family, K, D and dtype.
        y: observations (see :func:`~stochgrad.apps.hmm.gradient.likelihood_gradient`).
        max_iter: as in :func:`fit_gradient`.
        tol: as in :func:`fit_gradient`.
        min_sd: as in :func:`fit_gradient`.
        on_finish: called ``on_finish(i, result)`` (in the calling thread) as soon as start
            ``i`` has finished, while the others go on; a checkpoint saves it there. An
            exception it raises (``KeyboardInterrupt``) stops every start.

    Returns:
        One :class:`~stochgrad.apps.hmm.fit_result.FitResult` per starting model, in order.

    Raises:
        ValueError: empty ``hmms``, mixed families or sizes, bad settings.

    Examples:
        >>> y = [0.0, 1.0, 0.0, 8.0, 9.0, 11.0, 1.0, 0.0]
        >>> inits = [HMM.from_probabilities([0.5, 0.5], [[0.9, 0.1], [0.1, 0.9]], rates=r)
        ...          for r in ([2.0, 5.0], [1.0, 9.0])]
        >>> [round(f.log_likelihood, 3) for f in fit_gradient_batched(inits, y, max_iter=100)]
        [-14.356, -14.356]
    """
    from scipy.optimize import minimize

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
    lgamma_y = torch.lgamma(yb + 1.0)[..., None] if first.emission == "poisson" else None
    # -inf logits (probability 0) cannot be optimised: start them at a large negative value
    stacked = [
        torch.stack([torch.where(p == -math.inf, torch.full_like(p, -30.0), p) for p in ps])
        for ps in zip(*(h.params() for h in hmms), strict=True)
    ]
    shapes = [p.shape[1:] for p in stacked]
    sizes = [math.prod(s) for s in shapes]
    dtype = first.start_logits.dtype
    R = len(hmms)
    histories: list[list[float]] = [[] for _ in range(R)]

    def unflatten(x: np.ndarray) -> list[Tensor]:
        flat = torch.as_tensor(x, dtype=dtype)  # [n, sum(sizes)]
        return [
            part.reshape(x.shape[0], *s)
            for part, s in zip(flat.split(sizes, 1), shapes, strict=True)
        ]

    def evaluate(starts: list[int], xs: list[np.ndarray]) -> list[tuple[float, np.ndarray]]:
        """Objective and gradient of ``starts`` at ``xs``, in one pass over the stack."""
        leaves = [p.detach().requires_grad_() for p in unflatten(np.stack(xs))]
        with torch.enable_grad():
            factors = _stacked_log_factors(leaves[0], leaves[1], leaves[2:], yb, lgamma_y)
            marg = _posterior_marginals(*(f.detach() for f in factors))
            est = _factor_gradient(leaves, factors, marg.gamma, marg.xi)
        lls = marg.log_likelihood.sum(-1).tolist()
        grads = _flat(est.grad)
        for r, ll in zip(starts, lls, strict=True):
            histories[r].append(ll)
        return [(-ll, -g) for ll, g in zip(lls, grads, strict=True)]

    bounds = []
    for name, n in zip(first.param_names, sizes, strict=True):
        bounds += [(math.log(min_sd) if name == "log_sds" else None, None)] * n
    options = {"maxiter": max_iter, "ftol": tol, "gtol": 1e-7, "maxls": 50}
    x0 = _flat(stacked)
    results: list[FitResult | None] = [None] * R

    def finish(r: int, res: Any) -> None:
        fitted = first.with_params([p[0] for p in unflatten(res.x[None])])
        ll = float(log_likelihood(fitted, yb).sum())
        results[r] = FitResult(
            fitted, ll, int(res.nit), bool(res.success), "gradient", histories[r]
        )
        if on_finish is not None:
            on_finish(r, results[r])

    def solve(r: int, fun: Callable[[np.ndarray], tuple[float, np.ndarray]]) -> Any:
        return minimize(fun, x0[r], jac=True, method="L-BFGS-B", bounds=bounds, options=options)

    with _one_blas_thread():
        if R == 1:
            finish(0, solve(0, lambda x: evaluate([0], [x])[0]))
        else:
            _lockstep(R, solve, evaluate, finish)
    out = [r for r in results if r is not None]
    if len(out) != R:  # pragma: no cover - every run either finishes or raises
        raise RuntimeError("fit_gradient_batched: a start ended without a result")
    return out


def _one_blas_thread() -> contextlib.AbstractContextManager:
    """BLAS on one thread while L-BFGS-B runs (threadpoolctl, where installed).

    L-BFGS-B's linear algebra is on vectors of a few dozen entries, where BLAS threads only
    add synchronisation: on a busy 2-core machine, scipy's OpenBLAS with its default threads
    made each L-BFGS-B iteration take milliseconds instead of microseconds.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - an optional speed-up
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


class _Stopped(Exception):
    """Raised inside an optimiser thread's objective when the run is stopped."""


def _lockstep(
    R: int,
    solve: Callable[[int, Callable[[np.ndarray], Any]], Any],
    evaluate: Callable[[list[int], list[np.ndarray]], list[Any]],
    finish: Callable[[int, Any], None],
) -> None:
    """Run ``solve(r, objective)`` for ``r < R`` in threads; batch their objective calls.

    The calling thread conducts: it lets one run go at a time (so no two threads compete for
    the interpreter) until that run asks for its objective or ends, and once every unfinished
    run waits, one ``evaluate`` answers them all. ``finish(r, result)`` runs here too. An
    exception here (``KeyboardInterrupt``) or in a run stops every run before it propagates.
    """
    requests: queue.SimpleQueue = queue.SimpleQueue()
    replies = [queue.SimpleQueue() for _ in range(R)]
    stop = threading.Event()

    def run(r: int) -> None:
        def objective(x: np.ndarray) -> Any:
            if stop.is_set():
                raise _Stopped
            requests.put(("evaluate", r, np.array(x, dtype=np.float64)))
            answer = replies[r].get()
            if answer is None:
                raise _Stopped
            return answer

        if replies[r].get() is None:  # the signal to start
            return
        try:
            res = solve(r, objective)
        except _Stopped:
            return
        except BaseException as exc:  # noqa: BLE001 - handed to the calling thread
            requests.put(("error", r, exc))
            return
        requests.put(("done", r, res))

    threads = [
        threading.Thread(target=run, args=(r,), name=f"stochgrad-lbfgs-{r}", daemon=True)
        for r in range(R)
    ]
    for t in threads:
        t.start()
    ended: set[int] = set()
    answers: dict[int, Any] = dict.fromkeys(range(R), True)
    try:
        while answers:
            waiting = {}
            for r, answer in answers.items():
                replies[r].put(answer)
                kind, _, payload = requests.get()  # from run r: the only one going
                if kind == "error":
                    ended.add(r)
                    raise payload
                if kind == "done":
                    ended.add(r)
                    finish(r, payload)
                else:
                    waiting[r] = payload
            if waiting:
                order = sorted(waiting)
                outs = evaluate(order, [waiting[i] for i in order])
                answers = dict(zip(order, outs, strict=True))
            else:
                answers = {}
    finally:
        stop.set()
        for r in range(R):
            if r not in ended:
                replies[r].put(None)
        for t in threads:
            t.join(_JOIN_SECONDS)
