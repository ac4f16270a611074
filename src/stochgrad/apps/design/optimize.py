r"""Design optimisation: projected stochastic gradient ascent of an EIG bound, checkpointed.

Step :math:`t` estimates :math:`\nabla_d B(d_t)` (:func:`~stochgrad.apps.design.eig_gradient`),
keeps its tangent part on the unit sphere, takes an Adam step up the bound
(:class:`stochgrad._optim.Adam`, ``maximize=True``) and projects back onto the feasible set
(:func:`project`). The reference EIG (closed form or quadrature) of every iterate is recorded.
:func:`optimize_design` saves its state through :mod:`stochgrad.checkpoint` every
``checkpoint_every`` steps and resumes from it exactly.

Reference: Foster et al. (AISTATS 2020), section 3 (stochastic gradient design optimisation).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from stochgrad._checks import check_choice, check_float, check_int, check_seed
from stochgrad._optim import Adam
from stochgrad.apps.design.eig import BOUNDS, GRADIENT_METHODS, eig_gradient
from stochgrad.apps.design.models import (
    LinearGaussianModel,
    LogisticDoseResponse,
    anisotropic_prior_cov,
    quadrature_optimum,
    uniform_doses,
)
from stochgrad.checkpoint import (
    RESTART_HINT,
    CheckpointError,
    check_settings,
    field,
    load_state,
    save_state,
)

__all__ = [
    "CONSTRAINTS",
    "DESIGN_MODELS",
    "DesignConfig",
    "OptimizationResult",
    "Problem",
    "make_problem",
    "optimize_design",
    "project",
]

#: The design problems of :func:`make_problem`.
DESIGN_MODELS = ("linear", "logistic")
#: The feasible sets of :func:`project`.
CONSTRAINTS = ("unit_norm", "box", "none")


def project(design: Tensor, constraint: str, box: tuple[float, float] = (-4.0, 4.0)) -> Tensor:
    """Project a design onto its feasible set.

    ``"unit_norm"``: :math:`d / \\lVert d\\rVert` (rows of a matrix design, each an observation);
    ``"box"``: clamp to ``[low, high]``; ``"none"``: unchanged.

    >>> project(torch.tensor([3.0, 4.0]), "unit_norm").tolist()
    [0.6000000238418579, 0.800000011920929]
    """
    constraint = check_choice("constraint", constraint, CONSTRAINTS)
    if not isinstance(design, Tensor) or not design.is_floating_point():
        raise TypeError(
            f"design must be a floating-point tensor, got "
            f"{getattr(design, 'dtype', type(design).__name__)}"
        )
    if design.dim() == 0 or design.numel() == 0:
        raise ValueError(f"design must have at least one number, got shape {list(design.shape)}")
    if design.device.type == "meta" or not bool(torch.isfinite(design).all()):
        raise ValueError("design must hold finite numbers")
    low, high = _check_box(box)
    if constraint == "unit_norm":
        norm = design.norm(dim=-1, keepdim=True)
        if bool((norm == 0).any()):
            raise ValueError("a unit-norm design cannot be projected from the zero vector")
        return design / norm
    if constraint == "box":
        return design.clamp(low, high)
    return design


def _check_box(box: Any) -> tuple[float, float]:
    """``box`` as ``(low, high)``, finite with ``low < high``; errors name ``box``."""
    if isinstance(box, (str, bytes)) or not isinstance(box, Sequence) or len(box) != 2:
        raise TypeError(f"box must be a pair (low, high), got {box!r}")
    low, high = check_float("box[0]", box[0]), check_float("box[1]", box[1])
    if not low < high:
        raise ValueError(f"box must have low < high, got {box!r}")
    return low, high


@dataclass(frozen=True)
class DesignConfig:
    """Settings of one design optimisation (stored in, and compared with, the checkpoint).

    Attributes:
        model: ``"linear"`` (one unit-norm observation, prior
            :func:`~stochgrad.apps.design.anisotropic_prior_cov`, noise sd 1) or ``"logistic"``
            (:class:`~stochgrad.apps.design.LogisticDoseResponse`, doses in a box).
        steps: Adam steps.
        lr: Adam learning rate.
        num_outer: N per gradient estimate.
        num_inner: L contrastive samples.
        method: ``"score"`` or ``"pathwise"``.
        bound: ``"lower"`` (PCE) or ``"upper"`` (NMC).
        seed: seeds the initial design and step ``t``'s generator (``seed * 1_000_003 + t``).
        num_doses: K (logistic only).
        average_last: the returned design averages the iterates of this final fraction of the
            steps (Polyak-Ruppert averaging, then projected); 0 keeps the last iterate.
        checkpoint_every: steps between checkpoints.
    """

    model: str = "linear"
    steps: int = 400
    lr: float = 0.05
    num_outer: int = 256
    num_inner: int = 256
    method: str = "pathwise"
    bound: str = "lower"
    seed: int = 0
    num_doses: int = 4
    average_last: float = 0.5
    checkpoint_every: int = 25

    def __post_init__(self) -> None:
        check_choice("model", self.model, DESIGN_MODELS)
        check_int("steps", self.steps, minimum=1)
        check_int("num_outer", self.num_outer, minimum=2)
        check_int("num_inner", self.num_inner, minimum=1)
        check_int("num_doses", self.num_doses, minimum=1)
        check_int("checkpoint_every", self.checkpoint_every, minimum=1)
        check_seed("seed", self.seed)
        check_float("lr", self.lr, minimum=0.0, open_min=True)
        check_float("average_last", self.average_last, minimum=0.0, maximum=1.0, open_max=True)
        check_choice("method", self.method, GRADIENT_METHODS)
        check_choice("bound", self.bound, BOUNDS)
        if self.model == "logistic" and self.method == "pathwise":
            raise ValueError(
                "method='pathwise' needs continuous outcomes; the logistic model's are Bernoulli: "
                "use method='score'"
            )
        if self.model == "logistic" and self.num_doses > LogisticDoseResponse.max_doses:
            raise ValueError(
                f"num_doses must be <= {LogisticDoseResponse.max_doses}, got {self.num_doses}"
            )


@dataclass
class Problem:
    """A model, its constraint, an initial design, and the reference EIG of any design."""

    model: Any
    constraint: str
    initial: Tensor
    exact_eig: Callable[[Tensor], float]
    optimum: Tensor | None = None  # known optimal design (linear)
    baseline: Tensor | None = None  # design to beat (logistic: uniform doses)


def make_problem(config: DesignConfig) -> Problem:
    """The model, constraint, seeded initial design and reference EIG for ``config.model``.

    ``linear``: unit-norm :math:`d\\in\\mathbb R^3`, one observation, prior
    :func:`~stochgrad.apps.design.anisotropic_prior_cov`, noise sd 1; initial design a seeded
    random unit vector; the optimum is the top eigenvector of the prior covariance.
    ``logistic``: ``num_doses`` doses in ``[-4, 4]``, starting from (and compared with)
    :func:`~stochgrad.apps.design.uniform_doses`.

    >>> p = make_problem(DesignConfig(model="linear"))
    >>> round(float(p.initial.norm()), 6), p.constraint
    (1.0, 'unit_norm')
    """
    if config.model == "linear":
        model = LinearGaussianModel(anisotropic_prior_cov(), noise_sd=1.0)
        g = torch.Generator().manual_seed(config.seed)
        init = project(torch.randn(3, generator=g, dtype=torch.float64), "unit_norm")
        evals, evecs = torch.linalg.eigh(model.prior_cov)
        top = evecs[:, -1]
        top = top * torch.sign(top @ init)  # the sign is free: take the closer one
        return Problem(model, "unit_norm", init, lambda d: float(model.exact_eig(d)), optimum=top)
    model = LogisticDoseResponse()
    init = uniform_doses(config.num_doses)
    return Problem(
        model, "box", init.clone(), lambda d: float(model.quadrature_eig(d)), baseline=init
    )


@dataclass
class OptimizationResult:
    """History and outcome of :func:`optimize_design`.

    Attributes:
        config: the settings, as a dict.
        designs: ``[steps + 1, *shape]`` iterates (the initial design first).
        estimates: ``[steps]`` bound estimates at the iterate each step differentiated.
        stderrs: ``[steps]`` their standard errors.
        exact: ``[steps + 1]`` reference EIG (closed form or quadrature) of each iterate.
        final_design: the averaged (or last) design; ``final_eig`` its reference EIG.
        optimum_design / optimum_eig: the known optimum (linear: the top eigenvector; logistic:
            the L-BFGS-B maximiser of the quadrature EIG,
            :func:`~stochgrad.apps.design.quadrature_optimum`).
        baseline_design / baseline_eig: the design to beat (logistic uniform doses) or None.
        angle_deg: angle between the final design and the optimum (linear), else None.
        relative_gap: (optimum EIG - final EIG) / optimum EIG.
        seconds: wall time of this call (a resumed call counts its own time only).
        resumed_from: the step the checkpoint restored (0 for a fresh start).
    """

    config: dict[str, Any]
    designs: Tensor
    estimates: Tensor
    stderrs: Tensor
    exact: Tensor
    final_design: Tensor
    final_eig: float
    optimum_design: Tensor | None = None
    optimum_eig: float | None = None
    baseline_design: Tensor | None = None
    baseline_eig: float | None = None
    angle_deg: float | None = None
    relative_gap: float | None = None
    seconds: float = 0.0
    resumed_from: int = 0

    def to_json(self) -> dict[str, Any]:
        """Plain values for JSON."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            out[key] = value.tolist() if isinstance(value, Tensor) else value
        return out


_HISTORY = ("designs", "estimates", "stderrs", "exact")


def _state(config: DesignConfig, step: int, opt: Adam, hist: dict[str, list[Tensor]]) -> dict:
    return {
        "config": asdict(config),
        "step": step,
        "optimizer": opt.state_dict(),
        "history": {k: torch.stack(v) if v else torch.empty(0) for k, v in hist.items()},
    }


def _restore(path: Path, config: DesignConfig, opt: Adam) -> tuple[int, dict[str, list[Tensor]]]:
    """Load a checkpoint of :func:`optimize_design` into ``opt``; return (step, history)."""
    state = load_state(path)
    check_settings(field(state, "config", path, dict), asdict(config), path)
    step = field(state, "step", path, int)
    saved = field(state, "optimizer", path, dict)
    if "t" in saved:  # written by the private Adam of earlier releases
        saved = {"value": field(state, "design", path, Tensor), "m": saved["m"], "v": saved["v"],
                 "k": saved["t"]}  # fmt: skip
    history = field(state, "history", path, dict)
    try:
        opt.load_state_dict(saved)
        hist = {k: list(history[k].unbind(0)) if history[k].numel() else [] for k in _HISTORY}
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{path}: not a design checkpoint ({exc}); {RESTART_HINT}") from None
    if not 0 <= step <= config.steps or len(hist["designs"]) != step + 1:
        raise CheckpointError(
            f"{path}: inconsistent design checkpoint (step {step}); {RESTART_HINT}"
        )
    return step, hist


def optimize_design(
    config: DesignConfig,
    *,
    checkpoint: str | Path | None = None,
    resume: bool = True,
    progress: Callable[[int], None] | None = None,
    on_resume: Callable[[int], None] | None = None,
    callback: Callable[[int], None] | None = None,
) -> OptimizationResult:
    r"""Projected stochastic gradient ascent (Adam) of the PCE/NMC bound over designs.

    Step :math:`t`: estimate :math:`\nabla_d B(d_t)` (:func:`~stochgrad.apps.design.eig_gradient`,
    generator seeded with ``seed * 1_000_003 + t``), keep its tangent part
    :math:`(I - d d^\top)\nabla_d B` on the unit sphere, take an Adam step up :math:`B`
    (:class:`stochgrad._optim.Adam`, ``maximize=True``), project onto the feasible set
    (:func:`project`). The reference EIG of every iterate is recorded. With ``checkpoint``,
    the state (Adam's value and moments, the history) is saved every ``checkpoint_every`` steps
    and at the end, and a later call with the same settings continues from it: the result
    equals an uninterrupted run.

    Args:
        config: a :class:`DesignConfig`.
        checkpoint: ``.pt`` file to resume from and save to (None: no checkpoint).
        resume: continue from ``checkpoint`` when it exists (otherwise it is overwritten).
        progress: called with a number of steps: those restored from the checkpoint at once,
            then 1 after each step (after the step's checkpoint, when one is due).
        on_resume: called with the restored step when a checkpoint is loaded.
        callback: deprecated name of ``progress``.

    Returns:
        An :class:`OptimizationResult`.

    Raises:
        stochgrad.checkpoint.CheckpointMismatch: the checkpoint was made with other settings
            (a ``ValueError``).
        stochgrad.checkpoint.CheckpointError: the checkpoint is corrupt or foreign.

    Reference: Foster et al. (AISTATS 2020), section 3 (stochastic gradient design optimisation).

    >>> res = optimize_design(DesignConfig(steps=3, num_outer=16, num_inner=16))
    >>> res.designs.shape
    torch.Size([4, 3])
    """
    if callback is not None:
        warnings.warn(
            "optimize_design(callback=...) is now progress=...; callback will be removed in the "
            "next release",
            DeprecationWarning,
            stacklevel=2,
        )
        progress = progress or callback
    start = time.perf_counter()
    problem = make_problem(config)
    model = problem.model
    opt = Adam(problem.initial.detach().clone(), lr=config.lr, maximize=True)
    hist: dict[str, list[Tensor]] = {k: [] for k in _HISTORY}
    step0 = 0
    ckpt = Path(checkpoint) if checkpoint is not None else None
    if ckpt is not None and resume and ckpt.exists():
        step0, hist = _restore(ckpt, config, opt)
        if on_resume is not None:
            on_resume(step0)
        if progress is not None and step0:
            progress(step0)
    if not hist["designs"]:
        hist["designs"].append(opt.value.clone())
        hist["exact"].append(torch.tensor(problem.exact_eig(opt.value), dtype=torch.float64))

    def save(step: int) -> None:
        if ckpt is not None:
            save_state(_state(config, step, opt, hist), ckpt)

    for t in range(step0, config.steps):
        param = opt.value
        gen = torch.Generator().manual_seed(config.seed * 1_000_003 + t)
        est = eig_gradient(
            model,
            param,
            num_outer=config.num_outer,
            num_inner=config.num_inner,
            method=config.method,
            bound=config.bound,
            generator=gen,
        )
        grad = est.grad.reshape(param.shape)
        if problem.constraint == "unit_norm":
            # Tangent component only: Adam's per-coordinate scaling of the radial part (which
            # the projection discards anyway) would otherwise bend the path.
            grad = grad - (grad * param).sum(-1, keepdim=True) * param
        opt.value = project(opt.step(grad), problem.constraint)
        hist["designs"].append(opt.value.clone())
        hist["estimates"].append(torch.tensor(est.info["eig"], dtype=torch.float64))
        hist["stderrs"].append(torch.tensor(est.info["eig_stderr"], dtype=torch.float64))
        hist["exact"].append(torch.tensor(problem.exact_eig(opt.value), dtype=torch.float64))
        if (t + 1) % config.checkpoint_every == 0 or t + 1 == config.steps:
            save(t + 1)
        if progress is not None:
            progress(1)

    designs = torch.stack(hist["designs"])
    tail = max(1, int(round(config.average_last * config.steps)))
    final = project(designs[-tail:].mean(0), problem.constraint)
    final_eig = problem.exact_eig(final)
    result = OptimizationResult(
        config=asdict(config),
        designs=designs,
        estimates=torch.stack(hist["estimates"]),
        stderrs=torch.stack(hist["stderrs"]),
        exact=torch.stack(hist["exact"]),
        final_design=final,
        final_eig=final_eig,
        seconds=time.perf_counter() - start,
        resumed_from=step0,
    )
    if problem.optimum is not None:
        best = problem.exact_eig(problem.optimum)
        cos = float((final @ problem.optimum).abs().clamp(max=1.0))
        result.optimum_design = problem.optimum
        result.optimum_eig = best
        result.angle_deg = math.degrees(math.acos(cos))
        result.relative_gap = (best - final_eig) / best
    if problem.baseline is not None:
        result.baseline_design = problem.baseline
        result.baseline_eig = problem.exact_eig(problem.baseline)
        best, best_eig = quadrature_optimum(model, problem.initial)
        result.optimum_design, result.optimum_eig = best, best_eig
        result.relative_gap = (best_eig - final_eig) / best_eig
    return result
