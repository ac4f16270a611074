"""Fitting from seeded random restarts (:func:`fit_hmm`), checkpointed while it runs.

Both methods run every restart at once. EM (:func:`~stochgrad.apps.hmm.em.baum_welch_batched`)
saves its stacked state every ``checkpoint_every`` iterations and whenever a restart converges,
so an interrupted fit resumes from the last saved iteration and ends with the numbers of an
uninterrupted one. Gradient fits (:func:`~stochgrad.apps.hmm.gradient_fit.fit_gradient_batched`,
L-BFGS-B in lockstep, whose inner state lives in scipy) save each restart as it finishes; the
restarts not finished start again on resume, and reach the numbers they reach in one run.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stochgrad._checks import (
    check_choice,
    check_float,
    check_int,
    check_seed,
    check_torch_generator,
)
from stochgrad.apps.hmm.em import EMState, baum_welch_batched
from stochgrad.apps.hmm.emissions import _as_batch, as_observations
from stochgrad.apps.hmm.fit_result import FitResult
from stochgrad.apps.hmm.gradient_fit import fit_gradient_batched
from stochgrad.apps.hmm.model import EMISSIONS, HMM
from stochgrad.checkpoint import (
    CheckpointError,
    check_settings,
    field,
    load_state,
    save_state,
)

__all__ = ["FIT_METHODS", "fit_hmm", "information_criteria", "random_hmm"]

#: The fitting methods of :func:`fit_hmm`.
FIT_METHODS = ("em", "gradient")
#: The most hidden states a fit takes (transition matrices are K x K, each step K^2 work).
MAX_STATES = 4096
#: The most random restarts of one fit.
MAX_RESTARTS = 100_000


def random_hmm(
    y: Any, num_states: int, emission: str = "poisson", *, generator: torch.Generator
) -> HMM:
    r"""A random starting point for fitting, drawn from ``generator``.

    Start and transition rows :math:`\sim` Dirichlet(1) (normalised exponentials); Poisson rates
    and Gaussian means are observations picked at random (plus 0.5 for rates, keeping them
    positive); Gaussian sds are the data's per-dimension sd.

    >>> from stochgrad.apps.hmm.data import load_earthquakes
    >>> hmm = random_hmm(load_earthquakes(), 3, generator=torch.Generator().manual_seed(0))
    >>> hmm.num_states, hmm.emission
    (3, 'poisson')
    """
    K = check_int("num_states", num_states, minimum=1, maximum=MAX_STATES)
    check_choice("emission", emission, EMISSIONS)
    check_torch_generator(generator)
    probe = HMM.from_probabilities(
        [1.0],
        [[1.0]],
        **({"rates": [1.0]} if emission == "poisson" else {"means": [[0.0]], "sds": [[1.0]]}),
    )
    if emission == "gaussian":
        yy = as_observations(y)
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


def _digest(y: Tensor) -> str:
    return hashlib.sha256(
        y.contiguous().numpy().tobytes() + str(tuple(y.shape)).encode()
    ).hexdigest()[:16]


def _load(
    path: Path, settings: dict[str, Any]
) -> tuple[dict[int, FitResult], tuple[list[int], EMState] | None]:
    """Finished restarts and the mid-run EM state of a checkpoint made with ``settings``."""
    state = load_state(path)
    check_settings(field(state, "settings", path, dict), settings, path)
    try:
        done = {int(r): FitResult.from_state(f) for r, f in field(state, "runs", path, list)}
        em = field(state, "em", path)
        partial = None if em is None else ([int(r) for r in em["restarts"]], EMState.from_state(em))
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
        raise CheckpointError(
            f"{path}: a restart could not be read ({exc}); delete it, or rerun with --restart, "
            "to start afresh"
        ) from None
    return done, partial


def _save(
    path: Path,
    settings: dict[str, Any],
    done: dict[int, FitResult],
    partial: tuple[list[int], EMState] | None,
) -> None:
    em = None if partial is None else {"restarts": list(partial[0]), **partial[1].to_state()}
    runs = [[r, f.to_state()] for r, f in sorted(done.items())]
    save_state({"settings": settings, "runs": runs, "em": em}, path)


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
    resume: bool = True,
    checkpoint_every: int = 10,
    progress: Callable[[int], None] | None = None,
    on_resume: Callable[[int, int], None] | None = None,
    callback: Callable[[int, FitResult], None] | None = None,
) -> tuple[FitResult, list[FitResult]]:
    """Fit from ``restarts`` seeded random starts (:func:`random_hmm`); keep the best.

    Restart ``r`` draws its start from a generator seeded by ``SeedSequence([seed, r])``, so a
    restart's result does not depend on the others. EM runs all restarts at once
    (:func:`~stochgrad.apps.hmm.em.baum_welch_batched`), and so do gradient fits
    (:func:`~stochgrad.apps.hmm.gradient_fit.fit_gradient_batched`).

    With ``checkpoint`` (a ``.pt`` file), the work is saved while it runs: EM's stacked state
    every ``checkpoint_every`` iterations and whenever a restart converges, a gradient fit's
    restart when it finishes. Repeating the call resumes from the last save (with ``resume``)
    and gives the results of an uninterrupted run.

    Args:
        y: observations (see :func:`~stochgrad.apps.hmm.gradient.likelihood_gradient`).
        num_states: K >= 1 (at most :data:`MAX_STATES`).
        emission: ``"poisson"`` or ``"gaussian"``.
        method: ``"em"`` (:func:`~stochgrad.apps.hmm.em.baum_welch`) or ``"gradient"``
            (:func:`~stochgrad.apps.hmm.gradient_fit.fit_gradient`).
        restarts: number of random starts >= 1 (at most :data:`MAX_RESTARTS`).
        seed: base seed.
        max_iter: iteration cap per restart.
        checkpoint: ``.pt`` file of the work done (created; reused if its settings match).
        resume: continue from ``checkpoint`` when it exists (otherwise it is overwritten).
        checkpoint_every: EM iterations between two saves.
        progress: ``progress(n)``: ``n`` more restarts finished (``n`` may be 0: a save
            without a finished restart), called after the work is saved; restarts found
            finished in the checkpoint are reported first.
        on_resume: called ``on_resume(finished_restarts, em_iteration)`` when a checkpoint with
            work in it is loaded, before any work.
        callback: called ``callback(r, result)`` after each restart (also restored ones).

    Returns:
        ``(best, all_results)``.

    Raises:
        ValueError: bad settings or data.
        stochgrad.checkpoint.CheckpointMismatch: a checkpoint made with other settings.
        stochgrad.checkpoint.CheckpointError: a corrupt or foreign checkpoint.

    >>> best, runs = fit_hmm([0.0, 1.0, 0.0, 8.0, 9.0, 11.0, 1.0, 0.0], 2, restarts=2, max_iter=100)
    >>> len(runs), best.hmm.num_states
    (2, 2)
    """
    K = check_int("num_states", num_states, minimum=1, maximum=MAX_STATES)
    restarts = check_int("restarts", restarts, minimum=1, maximum=MAX_RESTARTS)
    max_iter = check_int("max_iter", max_iter, minimum=1)
    every = check_int("checkpoint_every", checkpoint_every, minimum=1)
    seed = check_seed("seed", seed)
    check_choice("method", method, FIT_METHODS)
    check_choice("emission", emission, EMISSIONS)
    y_t = as_observations(y)
    settings = {
        "num_states": K,
        "emission": emission,
        "method": method,
        "restarts": restarts,
        "seed": seed,
        "max_iter": max_iter,
        "data_sha": _digest(y_t),
    }

    def start(r: int) -> HMM:
        g = torch.Generator().manual_seed(_restart_seed(seed, r))
        return random_hmm(y_t, K, emission, generator=g)

    first = start(0)  # validates y for the emission family before any work
    done: dict[int, FitResult] = {}
    partial: tuple[list[int], EMState] | None = None
    ckpt = None if checkpoint is None else Path(checkpoint)
    if ckpt is not None and resume and ckpt.exists():
        done, partial = _load(ckpt, settings)
        if on_resume is not None and (done or partial):
            on_resume(len(done), partial[1].iteration if partial else 0)
    todo = [r for r in range(restarts) if r not in done]
    if partial is not None and (method != "em" or partial[0] != todo):
        partial = None  # not the run this call would make: start it afresh
    if progress is not None and (done or partial):
        progress(len(done) + (sum(partial[1].converged) if partial else 0))

    if method == "gradient" and todo:  # all L-BFGS-B starts in lockstep, saved as they end

        def on_finish(i: int, fit: FitResult) -> None:
            done[todo[i]] = fit
            if ckpt is not None:
                _save(ckpt, settings, done, None)
            if progress is not None:
                progress(1)

        hmms = [first if r == 0 else start(r) for r in todo]
        fit_gradient_batched(hmms, y_t, max_iter=max_iter, on_finish=on_finish)
    if method == "em" and todo:  # all EM starts in one stacked run
        state = None if partial is None else partial[1]

        def on_iteration(st: EMState, finished: list[int]) -> None:
            if not finished and st.iteration % every:
                return
            if ckpt is not None:
                _save(ckpt, settings, done, (todo, st))
            if progress is not None:
                progress(len(finished))

        hmms = [first if r == 0 else start(r) for r in todo]
        fits = baum_welch_batched(
            hmms, y_t, max_iter=max_iter, state=state, on_iteration=on_iteration
        )
        capped = sum(not f.converged for f in fits)
        done.update(zip(todo, fits, strict=True))
        if ckpt is not None:
            _save(ckpt, settings, done, None)
        if progress is not None and capped:
            progress(capped)
    results = []
    for r in range(restarts):
        results.append(done[r])
        if callback is not None:
            callback(r, done[r])
    best = max(results, key=lambda f: f.log_likelihood)
    return best, results


def information_criteria(log_lik: float, num_params: int, num_obs: int) -> tuple[float, float]:
    """``(AIC, BIC)`` = ``(-2 log L + 2 p, -2 log L + p log n)``.

    >>> information_criteria(-10.0, 2, 100)[0]
    24.0
    """
    log_lik = check_float("log_lik", log_lik)
    num_params = check_int("num_params", num_params, minimum=0)
    num_obs = check_int("num_obs", num_obs, minimum=1)
    return -2.0 * log_lik + 2.0 * num_params, -2.0 * log_lik + num_params * math.log(num_obs)
