r"""The trainer: stochastic-gradient ascent on the ELBO with one estimator, resumable mid-run.

>>> X, y = load_data()
>>> r = train("pathwise", X, y, BBVIConfig(steps=2, eval_every=1, nodes=32, eval_samples=10), 0)
>>> r.curve_steps
[0, 1, 2]
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from stochgrad._checks import check_choice, check_float, check_int, check_seed
from stochgrad.apps.vi.estimators import (
    BUDGETS,
    _check_estimator,
    elbo_gradient,
    evaluations_per_step,
    samples_per_step,
)
from stochgrad.apps.vi.model import _check_data, load_data  # noqa: F401  (the doctests use it)
from stochgrad.apps.vi.optimum import mc_elbo, quadrature_elbo
from stochgrad.checkpoint import CheckpointError, RunCheckpoint

__all__ = ["OPTIMIZERS", "SCHEDULES", "BBVICheckpoint", "BBVIConfig", "BBVIRun", "train"]

#: Optimisers of :func:`train`: plain gradient ascent (the paper) or Adam (``torch.optim``).
OPTIMIZERS: tuple[str, ...] = ("sgd", "adam")
#: Learning-rate schedules: cosine decay to 0 over the steps, or constant.
SCHEDULES: tuple[str, ...] = ("cosine", "constant")


@dataclass
class BBVIConfig:
    """Settings of a training run (defaults: the paper's ``bayes_lr`` setup).

    Attributes:
        steps: gradient steps.
        num_samples: samples of q per step (under ``budget="samples"``).
        batch_size: minibatch size (drawn without replacement each step).
        lr: initial learning rate; cosine decay to 0 over ``steps`` when ``schedule="cosine"``.
        optimizer: ``"sgd"`` (plain gradient ascent, the paper) or ``"adam"``.
        schedule: ``"cosine"`` or ``"constant"``.
        budget: ``"samples"`` or ``"evaluations"`` (:func:`samples_per_step`).
        eval_every: steps between exact (quadrature) ELBO evaluations of the curve.
        eval_samples: samples of the Monte Carlo ELBO reported at the end (as in the paper).
        nodes: Gauss-Hermite nodes.
        checkpoint_every: steps between saves of a run in progress.
    """

    steps: int = 5000
    num_samples: int = 50
    batch_size: int = 32
    lr: float = 1e-3
    optimizer: str = "sgd"
    schedule: str = "cosine"
    budget: str = "samples"
    eval_every: int = 50
    eval_samples: int = 1000
    nodes: int = 4096
    checkpoint_every: int = 500

    def __post_init__(self) -> None:
        for name in ("steps", "num_samples", "batch_size", "eval_every", "checkpoint_every"):
            check_int(name, getattr(self, name), minimum=1)
        check_int("eval_samples", self.eval_samples, minimum=2)
        check_int("nodes", self.nodes, minimum=2)
        check_float("lr", self.lr, minimum=0.0, open_min=True)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_choice("budget", self.budget, BUDGETS)


@dataclass
class BBVIRun:
    r"""One training run: estimator ``key``, ``seed``, the exact ELBO curve and the final q.

    A run whose parameters leave the range where q is defined (non-finite, or
    :math:`|\lambda| > 50`, i.e. :math:`\sigma` beyond :math:`e^{\pm 50}`) stops there:
    ``diverged_at`` is that step and the final ELBOs are ``-inf``.
    """

    key: str
    seed: int
    curve_steps: list[int]
    curve_elbo: list[float]
    mu: list[float]
    log_sigma: list[float]
    final_elbo: float
    mc_elbo: float
    mc_stderr: float
    samples_per_step: int
    evaluations_per_step: int
    seconds: float
    diverged_at: int | None = None

    def to_state(self) -> dict[str, Any]:
        """Plain values for the checkpoint."""
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> BBVIRun:
        """Inverse of :meth:`to_state`."""
        return cls(**state)


class BBVICheckpoint(RunCheckpoint):
    """Finished runs and states of runs in progress (:class:`~stochgrad.checkpoint.RunCheckpoint`)."""

    result_type = BBVIRun


def _finite_q(mu: Tensor, log_sigma: Tensor) -> bool:
    with torch.no_grad():
        return bool(torch.isfinite(mu).all() and (log_sigma.abs() <= 50.0).all())


def _lr(config: BBVIConfig, step: int) -> float:
    if config.schedule == "constant":
        return config.lr
    return config.lr * 0.5 * (1.0 + math.cos(math.pi * step / config.steps))


def train(
    estimator: str,
    X: Tensor,
    y: Tensor,
    config: BBVIConfig,
    seed: int,
    *,
    checkpoint: BBVICheckpoint | None = None,
    state: dict[str, Any] | None = None,
    save: Callable[[dict[str, Any]], None] | None = None,
    progress: Callable[[int], None] | None = None,
    callback: Callable[[int], None] | None = None,
) -> BBVIRun:
    r"""Maximise the ELBO by stochastic gradients from :math:`\mu = 0, \lambda = 0`.

    Each step draws a minibatch of ``batch_size`` indices without replacement, estimates
    :math:`\nabla\mathcal L` (:func:`elbo_gradient`) and takes an ascent step with
    ``torch.optim.SGD`` or ``Adam`` at the (cosine-decayed) learning rate. All randomness comes
    from one ``torch.Generator`` seeded with ``seed``. The ELBO curve is exact (quadrature) every
    ``eval_every`` steps. The state of the run (parameters, optimiser, generator, curve) is
    saved every ``checkpoint_every`` steps, to a ``checkpoint`` or through ``save``, and a saved
    state is resumed; the resumed run equals the uninterrupted one.

    Args:
        estimator: a key of :data:`ELBO_ESTIMATORS`.
        X: ``[N, D]`` design matrix.
        y: ``[N]`` labels, ``-1`` or ``1``.
        config: the settings.
        seed: the run's seed.
        checkpoint: where to save and resume the state of this run, and record it finished
            (optional).
        state: instead of ``checkpoint``: a state given earlier to ``save``, to resume from.
        save: instead of ``checkpoint``: called with the state (tensors and plain values)
            every ``checkpoint_every`` steps.
        progress: called with the number of steps just done (after any save of them; on
            resuming, first with the steps already done).
        callback: deprecated name of ``progress``.

    Returns:
        A :class:`BBVIRun` (``seconds``: wall time of the run, over all its resumed parts).

    >>> X, y = load_data()
    >>> r = train("pathwise", X, y, BBVIConfig(steps=3, eval_every=1, nodes=32, eval_samples=10), 0)
    >>> r.curve_steps
    [0, 1, 2, 3]
    """
    if callback is not None:
        warnings.warn("train(callback=) is deprecated; pass progress=", DeprecationWarning, 2)
        progress = callback if progress is None else progress
    _check_estimator(estimator)
    _check_data(X, y)
    seed = check_seed("seed", seed)
    if checkpoint is not None:
        if state is not None or save is not None:
            raise ValueError("give checkpoint= or state=/save=, not both")
        state = checkpoint.partial.get((estimator, seed))

        def save(st: dict[str, Any]) -> None:
            checkpoint.save_partial(estimator, seed, st)

    start = time.perf_counter()
    dim, N = X.shape[1], X.shape[0]
    if config.batch_size > N:
        raise ValueError(f"batch_size must be <= {N} (the number of data), got {config.batch_size}")
    n = samples_per_step(estimator, config.num_samples, dim, config.budget)
    mu = torch.zeros(dim, dtype=X.dtype, requires_grad=True)
    log_sigma = torch.zeros(dim, dtype=X.dtype, requires_grad=True)
    opt_cls = torch.optim.SGD if config.optimizer == "sgd" else torch.optim.Adam
    opt = opt_cls([mu, log_sigma], lr=config.lr)
    g = torch.Generator().manual_seed(seed)
    curve_steps: list[int] = []
    curve_elbo: list[float] = []
    step = 0
    if state is not None:
        try:
            with torch.no_grad():
                mu.copy_(state["mu"])
                log_sigma.copy_(state["log_sigma"])
            opt.load_state_dict(state["optimizer"])
            g.set_state(state["rng"])
            curve_steps, curve_elbo = list(state["curve_steps"]), list(state["curve_elbo"])
            step = int(state["step"])
            start -= float(state["seconds"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            where = checkpoint.path if checkpoint is not None else "state"
            raise CheckpointError(
                f"{where}: the state of the {estimator} run (seed {seed}) could not be read "
                f"({type(exc).__name__}: {exc}); delete it, or rerun with --restart"
            ) from None
        if progress is not None and step:
            progress(step)

    def record() -> None:
        with torch.no_grad():
            curve_steps.append(step)
            curve_elbo.append(float(quadrature_elbo(mu, log_sigma, X, y, config.nodes)))

    if step == 0:
        record()
    diverged = None
    while step < config.steps:
        batch = torch.randperm(N, generator=g)[: config.batch_size]
        g_mu, g_ls = elbo_gradient(estimator, mu, log_sigma, X, y, n, generator=g, batch=batch)
        for group in opt.param_groups:
            group["lr"] = _lr(config, step)
        mu.grad, log_sigma.grad = -g_mu, -g_ls  # the optimisers minimise
        opt.step()
        step += 1
        if not _finite_q(mu, log_sigma):
            diverged = step
            if progress is not None:
                progress(config.steps - step + 1)
            break
        if step % config.eval_every == 0 or step == config.steps:
            record()
        if save is not None and step % config.checkpoint_every == 0 and step < config.steps:
            save(
                {
                    "step": step,
                    "mu": mu.detach().clone(),
                    "log_sigma": log_sigma.detach().clone(),
                    "optimizer": opt.state_dict(),
                    "rng": g.get_state(),
                    "curve_steps": list(curve_steps),
                    "curve_elbo": list(curve_elbo),
                    "seconds": time.perf_counter() - start,
                },
            )
        if progress is not None:
            progress(1)
    mu_f, ls_f = mu.detach(), log_sigma.detach()
    if diverged is None:
        mc, se = mc_elbo(mu_f, ls_f, X, y, config.eval_samples, generator=g)
        final = curve_elbo[-1]
    else:
        mc, se, final = -math.inf, 0.0, -math.inf
    run_ = BBVIRun(
        key=estimator,
        seed=seed,
        curve_steps=curve_steps,
        curve_elbo=curve_elbo,
        mu=mu_f.tolist(),
        log_sigma=ls_f.tolist(),
        final_elbo=final,
        mc_elbo=mc,
        mc_stderr=se,
        samples_per_step=n,
        evaluations_per_step=evaluations_per_step(estimator, n, dim),
        seconds=time.perf_counter() - start,
        diverged_at=diverged,
    )
    if checkpoint is not None:
        checkpoint.add(run_)
    return run_
