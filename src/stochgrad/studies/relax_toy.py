r"""The RELAX toy problem: gradient estimators for one Bernoulli variable, trained with Adam.

Minimise

.. math::

    L(\theta) = \mathbb E_{b \sim \mathrm{Bernoulli}(\theta)}\big[(b - t)^2\big]
              = \theta (1 - t)^2 + (1 - \theta)\, t^2, \qquad t = 0.499,

over :math:`\theta = \sigma(\alpha)` by Adam (learning rate 0.01) on the logit :math:`\alpha`,
which starts at 0 (:math:`\theta = 1/2`). The optimum is :math:`\theta = 0`, but the two values
of :math:`f` differ by only :math:`(1-t)^2 - t^2 = 0.002`, so the exact gradient

.. math::

    \frac{\partial L}{\partial \alpha} = \theta (1 - \theta)\big((1 - t)^2 - t^2\big)

is tiny next to the noise of a single-sample estimator: the toy separates estimators by their
variance. Every estimator gets **one sample per iteration** (one antithetic pair for DisARM),
except REINFORCE with the leave-one-out baseline, which needs two; the table lists the samples
and the evaluations of :math:`f` each estimator uses per iteration (DisARM and RLOO both use 2).

Recorded for every (estimator, seed) run: :math:`\theta` and the exact loss :math:`L(\theta)` at
every iteration, and the variance of the per-iteration gradient estimate at the current
:math:`\theta` every ``probe_every`` iterations, measured with ``probe_samples`` extra draws that
take no part in training (a separate random stream; stateful estimators such as RELAX are probed
on a copy, so probing neither trains them nor changes the run). For estimators whose per-sample
terms are independent copies of the single-sample estimator the probe is one call with
``probe_samples`` samples; for RLOO (whose terms share a baseline) it is ``probe_samples // 4``
independent calls of the two-sample estimator.

The variance at :math:`\theta = 1/2` is measured with ``half_samples`` draws at logit 0. RELAX's
control variate is learned, so for it (for any stateful estimator) that measurement follows
``warmup`` training steps with :math:`\theta` held at 1/2, on a separate copy of the estimator;
each training run itself starts from an untrained control variate, as in the paper.

Estimators are pluggable: :data:`TOY_ESTIMATORS` maps a key to an :class:`Estimator` whose
``make`` returns a callable with the library's signature ``(f, dist_fn, params, *, num_samples,
generator)``. REBAR, RELAX and Gumbel-softmax come from :mod:`stochgrad.estimators` when it
provides them and are skipped with a message otherwise.

The study (:func:`run_study`) is a grid of (estimator, seed) cells on
:func:`stochgrad.studies.scaffold.run_grid`: each finished run is checkpointed at once, and the
random streams of a run (:func:`~stochgrad.studies.scaffold.stream_generator`) depend only on its
estimator and seed, so a resumed study gives the numbers of an uninterrupted one. Adam on the
logit is :class:`stochgrad._optim.Adam` (a float, step for step ``torch.optim.Adam``).

References:
    Grathwohl, Choi, Wu, Roeder, Duvenaud (ICLR 2018), "Backpropagation through the Void:
    Optimizing control variates for black-box gradient estimation", Sec. 6.1, Fig. 1; Tucker et
    al. (NeurIPS 2017), "REBAR"; Dong, Mnih, Tucker (NeurIPS 2020), "DisARM".

>>> round(exact_loss(0.5), 6), round(exact_logit_gradient(0.0), 12)
(0.250001, 0.0005)
"""

from __future__ import annotations

import copy
import importlib
import math
import time
import warnings
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.distributions import Bernoulli

from stochgrad import _compat
from stochgrad._checks import check_choice, check_float, check_int, check_seed
from stochgrad._optim import Adam
from stochgrad.checkpoint import (
    RunCheckpoint,
    saved_float,
    saved_int,
    saved_tensor,
    saved_value,
)
from stochgrad.gradient_estimate import GradientEstimate, SingleSampleWarning
from stochgrad.studies.scaffold import run_grid, stream_generator

__all__ = [
    "DEFAULT_ESTIMATORS",
    "TARGET",
    "THRESHOLD",
    "TOY_ESTIMATORS",
    "Checkpoint",
    "Config",
    "Estimator",
    "RunResult",
    "Study",
    "SummaryRow",
    "availability",
    "curves",
    "exact_logit_gradient",
    "exact_loss",
    "run_one",
    "run_study",
    "step_variance",
    "summarise",
    "toy_dist",
    "toy_f",
    "variance_at_half",
]

TARGET = 0.499
"""The target :math:`t` of RELAX's toy (REBAR's paper used 0.45)."""

DTYPE = torch.float64
THRESHOLD = 0.05
"""The study reports the first iteration at which :math:`\\theta` falls below this."""


# ---------------------------------------------------------------------------------------------
# the problem
# ---------------------------------------------------------------------------------------------
def toy_f(b: torch.Tensor, target: float = TARGET) -> torch.Tensor:
    """The objective :math:`(b - t)^2`, elementwise (``[n] -> [n]``; relaxed ``b`` welcome).

    >>> toy_f(torch.tensor([0.0, 1.0]))
    tensor([0.2490, 0.2510])
    """
    return (b - target) ** 2


def toy_dist(logit: torch.Tensor) -> Bernoulli:
    """:math:`\\mathrm{Bernoulli}(\\sigma(\\alpha))` parameterised by its logit."""
    return Bernoulli(logits=logit)


def exact_loss(theta, target: float = TARGET):
    r""":math:`L(\theta) = \theta (1-t)^2 + (1-\theta) t^2` (floats or arrays).

    >>> exact_loss(0.0) == TARGET**2
    True
    """
    return theta * (1.0 - target) ** 2 + (1.0 - theta) * target**2


def exact_logit_gradient(logit: float, target: float = TARGET) -> float:
    r""":math:`\partial L / \partial \alpha = \theta(1-\theta)((1-t)^2 - t^2)`, :math:`\theta = \sigma(\alpha)`.

    >>> round(exact_logit_gradient(0.0, target=0.45), 12)
    0.025
    """
    theta = _sigmoid(logit)
    return theta * (1.0 - theta) * ((1.0 - target) ** 2 - target**2)


def _sigmoid(x: float) -> float:
    if x >= 0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


# ---------------------------------------------------------------------------------------------
# estimators
# ---------------------------------------------------------------------------------------------
EstimatorFn = Callable[..., GradientEstimate]


@dataclass(frozen=True)
class Config:
    """Settings every run of one study shares (a checkpoint is reused only with equal settings).

    Attributes:
        iterations: Adam steps per run.
        lr: Adam's learning rate.
        target: :math:`t` in :math:`(b - t)^2`.
        probe_every: measure the gradient variance every this many iterations.
        probe_samples: draws per variance measurement (not used for training).
        half_samples: draws for the variance at :math:`\\theta = 1/2`.
        warmup: control-variate training steps at :math:`\\theta = 1/2` before that measurement
            (stateful estimators only).

    >>> Config(iterations=0)
    Traceback (most recent call last):
    ...
    ValueError: iterations must be >= 1, got 0
    """

    iterations: int = 5000
    lr: float = 0.01
    target: float = TARGET
    probe_every: int = 100
    probe_samples: int = 1000
    half_samples: int = 10_000
    warmup: int = 1000

    def __post_init__(self) -> None:
        for name in ("iterations", "probe_every", "probe_samples", "half_samples"):
            check_int(name, getattr(self, name), minimum=1)
        check_int("warmup", self.warmup, minimum=0)
        check_float("lr", self.lr, minimum=0.0, open_min=True)
        check_float("target", self.target)


@dataclass(frozen=True)
class Estimator:
    """One estimator of the study.

    Attributes:
        key: short name (``--estimators``).
        label: name in plots, the legend and the JSON.
        make: ``make(seed, config)`` -> a callable ``(f, dist_fn, params, *, num_samples,
            generator) -> GradientEstimate``; a fresh one per run (stateful ones keep state).
        samples_per_step: ``num_samples`` of a training step.
        stateful: the callable changes as it is called (RELAX trains its control variate);
            probes then run on a copy.
        iid_terms: per-sample terms are independent copies of the one-sample estimator, so one
            call with many samples measures the per-step variance (divided by
            ``samples_per_step``); otherwise the probe repeats the training call.
        biased: the estimator's expectation is not the true gradient.
        note: how it is configured, for the table's caption.
        probe_kwargs: extra keyword arguments of the probe calls (RELAX: ``train=False``).
        short: label in the terminal's table (at most 6 characters; ``label`` if empty).
    """

    key: str
    label: str
    make: Callable[[int, Config], EstimatorFn]
    samples_per_step: int = 1
    stateful: bool = False
    iid_terms: bool = True
    biased: bool = False
    note: str = ""
    probe_kwargs: dict[str, Any] = field(default_factory=dict)
    short: str = ""

    @property
    def table_label(self) -> str:
        """``short``, or ``label`` when no short label is set."""
        return self.short or self.label


RELAXED_MODULE = "stochgrad.estimators"
"""Where REBAR, RELAX and Gumbel-softmax are looked up (by their public names)."""


def _relaxed(name: str):
    """``stochgrad.estimators.<name>``; ``ImportError`` naming what is missing."""
    try:
        module = importlib.import_module(RELAXED_MODULE)
    except ImportError as exc:
        raise ImportError(f"{RELAXED_MODULE} is not available ({exc})") from exc
    if not hasattr(module, name):
        raise ImportError(f"{RELAXED_MODULE} has no {name!r}")
    return getattr(module, name)


def _exact(seed: int, config: Config) -> EstimatorFn:
    def exact(f, dist_fn, params, *, num_samples: int, generator=None) -> GradientEstimate:
        g = exact_logit_gradient(float(params), config.target)
        per = torch.full((num_samples,), g, dtype=DTYPE)
        return GradientEstimate.from_per_sample(per, method="exact", evaluations=0)

    return exact


def _reinforce(seed: int, config: Config) -> EstimatorFn:
    from stochgrad.estimators import score_function

    return score_function


def _rloo(seed: int, config: Config) -> EstimatorFn:
    from stochgrad.estimators import rloo

    return rloo


def _disarm(seed: int, config: Config) -> EstimatorFn:
    from stochgrad.estimators import disarm

    return disarm


def _arm(seed: int, config: Config) -> EstimatorFn:
    from stochgrad.estimators import arm

    return arm


def _rebar(seed: int, config: Config) -> EstimatorFn:
    return _relaxed("rebar")


def _gumbel(seed: int, config: Config) -> EstimatorFn:
    return _relaxed("gumbel_softmax")


def _relax(seed: int, config: Config) -> EstimatorFn:
    relax_cls = _relaxed("Relax")
    return relax_cls(seed=zlib.crc32(f"relax/{seed}".encode()))  # the network's initialisation


TOY_ESTIMATORS: dict[str, Estimator] = {
    e.key: e
    for e in (
        Estimator(
            "exact", "exact gradient", _exact, note="closed form, no sampling", short="exact"
        ),
        Estimator(
            "reinforce", "REINFORCE", _reinforce, note="score function, no baseline", short="SF"
        ),
        Estimator(
            "rloo",
            "REINFORCE + LOO",
            _rloo,
            samples_per_step=2,
            iid_terms=False,
            note="leave-one-out baseline: 2 samples per iteration",
            short="SF+LOO",
        ),
        Estimator("rebar", "REBAR", _rebar, note="temperature 0.5, eta 1 (fixed)", short="REBAR"),
        Estimator(
            "relax",
            "RELAX",
            _relax,
            stateful=True,
            note="control variate eta f(relaxed) + MLP(10 tanh), trained online (defaults)",
            probe_kwargs={"train": False},
            short="RELAX",
        ),
        Estimator(
            "gumbel",
            "Gumbel-softmax (biased)",
            _gumbel,
            biased=True,
            note="relaxed sample, temperature 0.5",
            short="GS*",
        ),
        Estimator(
            "disarm", "DisARM", _disarm, note="one antithetic pair: 2 evaluations", short="DisARM"
        ),
        Estimator("arm", "ARM", _arm, note="one antithetic pair: 2 evaluations", short="ARM"),
    )
}
"""Every estimator the study knows, in display order."""

DEFAULT_ESTIMATORS: tuple[str, ...] = (
    "exact",
    "reinforce",
    "rloo",
    "rebar",
    "relax",
    "gumbel",
    "disarm",
)
"""The seven of the default study (``arm`` is available on request)."""


def availability(key: str, config: Config | None = None) -> str | None:
    """``None`` when the estimator can run here, else the reason it cannot.

    >>> availability("disarm") is None
    True
    """
    if key not in TOY_ESTIMATORS:
        return f"unknown estimator {key!r}; expected one of {list(TOY_ESTIMATORS)}"
    try:
        TOY_ESTIMATORS[key].make(0, config or Config())
    except ImportError as exc:
        return str(exc)
    return None


# ---------------------------------------------------------------------------------------------
# one run
# ---------------------------------------------------------------------------------------------
@dataclass
class RunResult:
    """One (estimator, seed) training run.

    Attributes:
        key: estimator key.
        seed: the seed.
        theta: :math:`\\theta` after each of ``0 .. iterations`` updates.
        loss: the exact loss :math:`L(\\theta)` at the same points.
        probe_iterations: where the gradient variance was measured.
        probe_variance: the variance of the per-iteration gradient estimate there.
        variance_half: that variance at :math:`\\theta = 1/2` (``half_samples`` draws).
        evaluations: evaluations of ``f`` per iteration.
        seconds: wall time of the run.
    """

    key: str
    seed: int
    theta: np.ndarray
    loss: np.ndarray
    probe_iterations: np.ndarray
    probe_variance: np.ndarray
    variance_half: float
    evaluations: int
    seconds: float

    def first_below(self, threshold: float = THRESHOLD) -> int | None:
        """First iteration with :math:`\\theta` below ``threshold`` (``None`` if never)."""
        hits = np.flatnonzero(self.theta < threshold)
        return int(hits[0]) if hits.size else None

    def to_state(self) -> dict[str, Any]:
        """Plain types and tensors, for ``torch.save(..., weights_only=True)`` round trips."""
        out: dict[str, Any] = {}
        for k, v in asdict(self).items():
            out[k] = torch.from_numpy(np.asarray(v)) if isinstance(v, np.ndarray) else v
        return out

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RunResult:
        """Inverse of :meth:`to_state`; ``ValueError``/``TypeError`` naming a field that does
        not hold what :meth:`to_state` writes (:func:`run_study` also checks the lengths
        against its settings)."""
        theta = saved_tensor(state, "theta", shape=(None,), dtype=DTYPE, finite=True, minimum=0.0)
        if theta.numel() < 2 or bool((theta > 1.0).any()):
            raise ValueError("theta must hold 2 or more probabilities in [0, 1]")
        n = theta.numel()
        probes = saved_tensor(state, "probe_iterations", shape=(None,), dtype=torch.int64)
        if probes.numel() == 0 or bool((probes.diff() <= 0).any()):
            raise ValueError("probe_iterations must be increasing")
        if int(probes[0]) != 0 or int(probes[-1]) != n - 1:
            raise ValueError(f"probe_iterations must run from 0 to {n - 1} (theta's last index)")
        return cls(
            key=check_choice("key", saved_value(state, "key"), TOY_ESTIMATORS),
            seed=check_seed("seed", saved_value(state, "seed")),
            theta=theta.numpy(),
            loss=saved_tensor(state, "loss", shape=(n,), dtype=DTYPE, finite=True).numpy(),
            probe_iterations=probes.numpy(),
            probe_variance=saved_tensor(
                state,
                "probe_variance",
                shape=(probes.numel(),),
                dtype=DTYPE,
                finite=True,
                minimum=0.0,
            ).numpy(),
            variance_half=saved_float(state, "variance_half", minimum=0.0),
            evaluations=saved_int(state, "evaluations", minimum=0),
            seconds=saved_float(state, "seconds", minimum=0.0),
        )

    def check(self, key: tuple[str, int], config: Config) -> None:
        """Raise ``ValueError`` unless this is the run ``key`` of a study with ``config``."""
        if (self.key, self.seed) != tuple(key):
            raise ValueError(f"it holds the run {self.key}/{self.seed}")
        if self.theta.size != config.iterations + 1:
            raise ValueError(
                f"theta holds {self.theta.size} values, not {config.iterations + 1} "
                "(iterations + 1)"
            )
        expected = np.arange(0, config.iterations + 1, config.probe_every)
        if expected[-1] != config.iterations:
            expected = np.append(expected, config.iterations)
        if not np.array_equal(self.probe_iterations, expected):
            raise ValueError("probe_iterations are not those of probe_every")


def step_variance(
    spec: Estimator,
    fn: EstimatorFn,
    f: Callable,
    logit: float,
    draws: int,
    generator: torch.Generator,
) -> float:
    """Variance of one training step's gradient estimate at ``logit``, from ``draws`` draws.

    Stateful estimators are called on a deep copy, so the measurement does not change them.
    """
    if spec.stateful:
        fn = copy.deepcopy(fn)
    x = torch.tensor(logit, dtype=DTYPE)
    if spec.iid_terms:
        n = max(2, draws)
        est = fn(f, toy_dist, x, num_samples=n, generator=generator, **spec.probe_kwargs)
        return float(est.variance) / spec.samples_per_step
    reps = max(2, draws // 4)
    grads = torch.tensor(
        [
            float(
                fn(
                    f,
                    toy_dist,
                    x,
                    num_samples=spec.samples_per_step,
                    generator=generator,
                    **spec.probe_kwargs,
                ).grad
            )
            for _ in range(reps)
        ],
        dtype=DTYPE,
    )
    return float(grads.var())


def _one_sample_steps(fn: Callable) -> Callable:
    """``fn`` without :class:`~stochgrad.SingleSampleWarning`: the toy trains on one sample per
    step on purpose (the paper's setting) and measures variance across steps, not within one."""

    def call(*args: Any, **kwargs: Any) -> GradientEstimate:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SingleSampleWarning)
            return fn(*args, **kwargs)

    return call


def variance_at_half(spec: Estimator, seed: int, config: Config) -> float:
    """Per-step gradient variance at :math:`\\theta = 1/2` (after a warm-up if stateful)."""
    f = _objective(config)
    fn = _one_sample_steps(spec.make(seed, config))
    g = stream_generator(seed, spec.key, "half")
    if spec.stateful:
        zero = torch.tensor(0.0, dtype=DTYPE)
        for _ in range(config.warmup):
            fn(f, toy_dist, zero, num_samples=spec.samples_per_step, generator=g)
    return step_variance(spec, fn, f, 0.0, config.half_samples, g)


def _objective(config: Config) -> Callable:
    if config.target == TARGET:
        return toy_f
    return lambda b: toy_f(b, config.target)


def run_one(
    key: str,
    seed: int,
    config: Config,
    progress: Callable[[int], None] | None = None,
) -> RunResult:
    """Train the logit with estimator ``key`` for ``config.iterations`` Adam steps.

    Args:
        key: a :data:`TOY_ESTIMATORS` key.
        seed: selects the random streams (training, probes, warm-up) and RELAX's initialisation.
        config: the shared settings.
        progress: called with the number of iterations done since the last call.

    Returns:
        :class:`RunResult`.

    >>> r = run_one("exact", 0, Config(iterations=3, probe_every=1))
    >>> bool((np.diff(r.theta) < 0).all()), r.probe_variance.tolist()
    (True, [0.0, 0.0, 0.0, 0.0])
    """
    spec = TOY_ESTIMATORS[key]
    start = time.perf_counter()
    f = _objective(config)
    variance_half = variance_at_half(spec, seed, config)
    fn = _one_sample_steps(spec.make(seed, config))
    train = stream_generator(seed, key, "train")
    probe = stream_generator(seed, key, "probe")
    opt = Adam(0.0, lr=config.lr)
    iters = config.iterations
    theta = np.empty(iters + 1)
    theta[0] = 0.5
    probe_iterations = np.arange(0, iters + 1, config.probe_every, dtype=np.int64)
    if probe_iterations[-1] != iters:
        probe_iterations = np.append(probe_iterations, iters)
    probe_variance = np.empty(probe_iterations.size)
    next_probe = 0
    evaluations = 0
    chunk = max(1, iters // 100)
    for k in range(iters + 1):
        if next_probe < probe_iterations.size and probe_iterations[next_probe] == k:
            probe_variance[next_probe] = step_variance(
                spec, fn, f, opt.value, config.probe_samples, probe
            )
            next_probe += 1
        if k == iters:
            break
        est = fn(
            f,
            toy_dist,
            torch.tensor(opt.value, dtype=DTYPE),
            num_samples=spec.samples_per_step,
            generator=train,
        )
        evaluations = est.evaluations
        theta[k + 1] = _sigmoid(opt.step(float(est.grad)))
        if progress is not None and (k + 1) % chunk == 0:
            progress(chunk)
    if progress is not None and iters % chunk:
        progress(iters % chunk)
    return RunResult(
        key=key,
        seed=seed,
        theta=theta,
        loss=exact_loss(theta, config.target),
        probe_iterations=probe_iterations,
        probe_variance=probe_variance,
        variance_half=variance_half,
        evaluations=evaluations,
        seconds=time.perf_counter() - start,
    )


# ---------------------------------------------------------------------------------------------
# the study: many runs, checkpointed
# ---------------------------------------------------------------------------------------------
class Checkpoint(RunCheckpoint):
    """The checkpoint file of :func:`run_study` (see :class:`stochgrad.checkpoint.RunCheckpoint`)."""

    result_type = RunResult


@dataclass
class Study:
    """The outcome of :func:`run_study`.

    Attributes:
        config: the shared settings.
        keys: the estimators that ran, in display order.
        seeds: the seeds.
        runs: ``(key, seed) -> RunResult``.
        skipped: estimator key -> why it did not run.
        resumed: how many runs were loaded from the checkpoint instead of run.
        seconds: wall time of the runs done now.
    """

    config: Config
    keys: list[str]
    seeds: list[int]
    runs: dict[tuple[str, int], RunResult]
    skipped: dict[str, str] = field(default_factory=dict)
    resumed: int = 0
    seconds: float = 0.0

    def of(self, key: str) -> list[RunResult]:
        """The runs of estimator ``key``, seed by seed."""
        return [self.runs[(key, s)] for s in self.seeds]


def run_study(
    keys: Sequence[str],
    seeds: Sequence[int],
    config: Config = Config(),
    checkpoint: str | Path | None = None,
    *,
    resume: bool = True,
    progress: Callable[[int], None] | None = None,
    on_run: Callable[[RunResult], None] | None = None,
    on_resume: Callable[[int, int], None] | None = None,
) -> Study:
    """Run every (estimator, seed) cell not already finished in the checkpoint.

    Args:
        keys: :data:`TOY_ESTIMATORS` keys; unavailable ones are skipped (see
            :attr:`Study.skipped`).
        seeds: the seeds (at least one).
        config: shared settings.
        checkpoint: a ``.pt`` file saving each finished run (``None``: nothing is saved).
        resume: reuse the finished runs of ``checkpoint`` (otherwise it is started afresh).
        progress: called with iterations done (for a progress bar; resumed runs count at once).
        on_run: called with each run finished now.
        on_resume: called once, before any work, with the numbers of finished and of partly
            run cells found in ``checkpoint``, when there are any.

    Returns:
        :class:`Study`.

    Raises:
        ValueError: an unknown estimator, no seed, or a checkpoint made with other settings
            (:class:`~stochgrad.checkpoint.CheckpointMismatch`).

    Examples:
        >>> study = run_study(["exact"], [0, 1], Config(iterations=5, probe_every=5))
        >>> [round(float(r.theta[-1]), 4) for r in study.of("exact")]
        [0.4875, 0.4875]
    """
    keys = list(dict.fromkeys(keys))
    unknown = [k for k in keys if k not in TOY_ESTIMATORS]
    if unknown or not keys:
        raise ValueError(f"estimators: unknown {unknown}; expected some of {list(TOY_ESTIMATORS)}")
    seeds = [check_seed("seeds", s) for s in dict.fromkeys(seeds)]
    if not seeds:
        raise ValueError("seeds: expected at least one seed")
    skipped = {k: r for k in keys if (r := availability(k, config)) is not None}
    ready = [k for k in keys if k not in skipped]

    def run_cell(cell: tuple[str, int], state: Any, save: Any) -> RunResult:
        return run_one(cell[0], cell[1], config, progress)

    grid = run_grid(
        [(k, s) for k in ready for s in seeds],
        run_cell,
        config=config,
        result_type=RunResult,
        checkpoint=checkpoint,
        resume=resume,
        progress=progress,
        cell_units=lambda cell: config.iterations,  # run_one advances the bar itself
        on_result=None if on_run is None else (lambda cell, run: on_run(run)),
        on_resume=on_resume,
        check_result=lambda cell, run: run.check(cell, config),
    )
    return Study(config, ready, seeds, grid.results, skipped, grid.resumed, grid.seconds)


# ---------------------------------------------------------------------------------------------
# summaries
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SummaryRow:
    """One estimator's line of the table (means over seeds).

    Attributes:
        key: estimator key.
        label: display name.
        samples: samples per iteration.
        evaluations: evaluations of ``f`` per iteration.
        final_theta: mean final :math:`\\theta`; ``final_theta_sd`` its spread over seeds.
        final_loss: mean final exact loss.
        below_iteration: median first iteration with :math:`\\theta < 0.05` over the seeds that
            got there (``None`` if none did); ``below_seeds`` how many did.
        mean_log_variance: mean over seeds and probes (iteration 0 excluded: it is the
            :math:`\\theta = 1/2` column) of the natural log of the per-step gradient variance;
            ``nan`` for the exact gradient.
        variance_half: mean over seeds of the per-step variance at :math:`\\theta = 1/2`.
        ratio_half: ``variance_half`` over REINFORCE's (``nan`` without REINFORCE).
        biased: the estimator is biased.
    """

    key: str
    label: str
    samples: int
    evaluations: int
    final_theta: float
    final_theta_sd: float
    final_loss: float
    below_iteration: float | None
    below_seeds: int
    mean_log_variance: float
    variance_half: float
    ratio_half: float
    biased: bool


def _log_variance(v: np.ndarray) -> np.ndarray:
    """Natural log with exact zeros (the exact gradient; DisARM at 1/2) as NaN."""
    v = np.asarray(v, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(v > 0, np.log(np.where(v > 0, v, 1.0)), np.nan)


def summarise(study: Study) -> list[SummaryRow]:
    """One :class:`SummaryRow` per estimator that ran."""
    half = {k: float(np.mean([r.variance_half for r in study.of(k)])) for k in study.keys}
    ref = half.get("reinforce", float("nan"))
    rows = []
    for key in study.keys:
        spec = TOY_ESTIMATORS[key]
        runs = study.of(key)
        finals = np.array([r.theta[-1] for r in runs])
        below = [b for r in runs if (b := r.first_below()) is not None]
        logs = np.concatenate([_log_variance(r.probe_variance[1:]) for r in runs])
        finite = logs[np.isfinite(logs)]
        rows.append(
            SummaryRow(
                key=key,
                label=spec.label,
                samples=spec.samples_per_step,
                evaluations=int(runs[0].evaluations),
                final_theta=float(finals.mean()),
                final_theta_sd=float(finals.std(ddof=1)) if finals.size > 1 else 0.0,
                final_loss=float(np.mean([r.loss[-1] for r in runs])),
                below_iteration=float(np.median(below)) if below else None,
                below_seeds=len(below),
                mean_log_variance=float(finite.mean()) if finite.size else float("nan"),
                variance_half=half[key],
                ratio_half=half[key] / ref if ref > 0 else float("nan"),
                biased=spec.biased,
            )
        )
    return rows


def curves(study: Study, key: str, every: int = 10) -> dict[str, list[float]]:
    """Mean and standard deviation over seeds of loss, theta and log variance."""
    runs = study.of(key)
    idx = np.arange(0, study.config.iterations + 1, every)
    if idx[-1] != study.config.iterations:
        idx = np.append(idx, study.config.iterations)
    loss = np.stack([r.loss[idx] for r in runs])
    theta = np.stack([r.theta[idx] for r in runs])
    logv = np.stack([_log_variance(r.probe_variance) for r in runs])
    with warnings.catch_warnings():  # all-NaN columns (the exact gradient) are expected
        warnings.simplefilter("ignore", RuntimeWarning)
        logv_mean = np.nanmean(logv, 0)
        logv_sd = np.nanstd(logv, 0)
    return {
        "iterations": idx.tolist(),
        "loss_mean": loss.mean(0).tolist(),
        "loss_sd": loss.std(0).tolist(),
        "theta_mean": theta.mean(0).tolist(),
        "theta_sd": theta.std(0).tolist(),
        "probe_iterations": runs[0].probe_iterations.tolist(),
        "log_variance_mean": _nan_to_none(logv_mean),
        "log_variance_sd": _nan_to_none(logv_sd),
    }


def _nan_to_none(values) -> list[float | None]:
    return [None if not math.isfinite(float(v)) else float(v) for v in values]


_MOVED = {
    "ESTIMATORS": (__name__, "TOY_ESTIMATORS"),
    "run_generator": ("stochgrad.studies.scaffold", "stream_generator"),
}


def __getattr__(name: str) -> Any:
    """Names renamed in this release (``ESTIMATORS``, ``run_generator``), with a warning."""
    return _compat.moved_attribute(__name__, name, _MOVED)
