r"""The discrete-VAE study: one binary VAE trained per (estimator, seed), checkpointed mid-run.

Every estimator of :data:`~stochgrad.apps.discrete_vae.VAE_ESTIMATORS` trains the model of
:mod:`stochgrad.apps.discrete_vae` on the digits with the same budget, initialisation and
minibatches (the seed fixes both); only the encoder's gradient estimator changes. A run records
the test ELBO every ``eval_every`` steps, the variance of the encoder-logit gradient every
``probe_every`` steps (``probe_calls`` independent calls of the training estimator on a fixed
minibatch of ``probe_batch`` test digits, summed over the :math:`B \times K` logits), and at
the end the test ELBO with ``final_samples`` samples and the importance-weighted bound
(``iwae_k``).

The study (:func:`run_study`) is a grid of (estimator, seed) cells on
:func:`stochgrad.studies.scaffold.run_grid`. A finished run is checkpointed at once and a run
in progress every ``checkpoint_every`` steps (model, optimiser, random streams, record so far),
through the scaffold's ``save`` callback; a resumed study continues it and gives bit for bit the
numbers of an uninterrupted one.

>>> from stochgrad.apps.discrete_vae import Config
>>> small = Config(steps=2, samples=2, latents=4, hidden=0, eval_every=1, probe_every=2,
...                probe_calls=2, final_samples=2, iwae_k=2)
>>> study = run_study(["rloo"], [0], small)
>>> study.of("rloo")[0].eval_steps
[0, 1, 2]
"""

from __future__ import annotations

import copy
import math
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from stochgrad._checks import check_choice, check_seed
from stochgrad.apps.discrete_vae import (
    VAE_ESTIMATORS,
    BinaryVAE,
    Config,
    check_budget,
    elbo_samples,
    gradient_variance,
    iwae_bound,
    load_binary_digits,
    train_step,
)
from stochgrad.checkpoint import (
    RunCheckpoint,
    saved_float,
    saved_int,
    saved_numbers,
    saved_value,
)
from stochgrad.studies.scaffold import (
    run_grid,
    saved_generator_state,
    saved_module_state,
    saved_optimizer_state,
)

__all__ = [
    "STREAMS",
    "Checkpoint",
    "Config",
    "RunResult",
    "Study",
    "SummaryRow",
    "log10_variance",
    "paired_differences",
    "run_one",
    "run_study",
    "stream",
    "summarise",
]


# ---------------------------------------------------------------------------------------------
# one run, checkpointable
# ---------------------------------------------------------------------------------------------
def stream(seed: int, key: str, name: str) -> torch.Generator:
    """The generator of one random stream of one run (independent streams by name).

    ``key=""`` names a stream every estimator shares (the minibatch order): runs with the same
    seed see the same minibatches, a paired comparison. (Seeded from a hash of
    ``discrete-vae/<seed>/<key>/<name>``: the streams of the published numbers.)
    """
    return torch.Generator().manual_seed(zlib.crc32(f"discrete-vae/{seed}/{key}/{name}".encode()))


STREAMS = ("batches", "train", "probe", "eval")


@dataclass
class RunResult:
    """The record of one (estimator, seed) run.

    Attributes:
        key, seed: which run.
        eval_steps: steps at which the test ELBO was estimated (0 and every ``eval_every``).
        test_elbo: those estimates (``eval_samples`` samples per test digit).
        train_elbo: mean sampled training ELBO over the steps since the previous evaluation.
        probe_steps: steps at which the gradient variance was measured.
        variance: those variances (summed over the probe minibatch's logits).
        final_elbo, final_elbo_se: final test ELBO (``final_samples`` per digit) and its
            standard error.
        final_iwae, final_iwae_se: final importance-weighted bound (``iwae_k``) and its standard
            error over test digits.
        samples_per_step, evaluations_per_step: the estimator's ``num_samples`` and evaluations
            of :math:`f_x` per datapoint.
        train_seconds: wall time of the training steps alone.
        seconds: wall time of the run (with evaluations and probes).
    """

    key: str
    seed: int
    eval_steps: list[int] = field(default_factory=list)
    test_elbo: list[float] = field(default_factory=list)
    train_elbo: list[float] = field(default_factory=list)
    probe_steps: list[int] = field(default_factory=list)
    variance: list[float] = field(default_factory=list)
    final_elbo: float = float("nan")
    final_elbo_se: float = float("nan")
    final_iwae: float = float("nan")
    final_iwae_se: float = float("nan")
    samples_per_step: int = 0
    evaluations_per_step: int = 0
    train_seconds: float = 0.0
    seconds: float = 0.0

    def to_state(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_state(cls, state: dict[str, Any], *, finished: bool = True) -> RunResult:
        """Inverse of :meth:`to_state`; ``ValueError``/``TypeError`` naming a field that does
        not hold what :meth:`to_state` writes (:func:`run_study` also checks the steps against
        its settings). ``finished=False``: the record of a run in progress, whose final
        numbers are not there yet (NaN)."""
        eval_steps = _steps(state, "eval_steps")
        probe_steps = _steps(state, "probe_steps")
        test_elbo = saved_numbers(state, "test_elbo")
        train_elbo = saved_numbers(state, "train_elbo", finite=False)
        variance = saved_numbers(state, "variance", minimum=0.0)
        pairs = {
            ("eval_steps", "test_elbo"): (eval_steps, test_elbo),
            ("eval_steps", "train_elbo"): (eval_steps, train_elbo),
            ("probe_steps", "variance"): (probe_steps, variance),
        }
        for (a, b), (x, y) in pairs.items():
            if len(x) != len(y):
                raise ValueError(f"{a} and {b} must hold as many values, got {len(x)} and {len(y)}")
        if not all(math.isfinite(v) for v in train_elbo[1:]) or (
            train_elbo and math.isinf(train_elbo[0])
        ):  # NaN only at step 0: no training before it
            raise ValueError("train_elbo must be finite (NaN only at step 0)")

        def final(key: str, minimum: float | None = None) -> float:
            value = saved_float(state, key, finite=finished, minimum=minimum)
            if not finished and math.isinf(value):
                raise ValueError(f"{key} must be finite or NaN, got {value}")
            return value

        return cls(
            key=check_choice("key", saved_value(state, "key"), VAE_ESTIMATORS),
            seed=check_seed("seed", saved_value(state, "seed")),
            eval_steps=eval_steps,
            test_elbo=test_elbo,
            train_elbo=train_elbo,
            probe_steps=probe_steps,
            variance=variance,
            final_elbo=final("final_elbo"),
            final_elbo_se=final("final_elbo_se", 0.0),
            final_iwae=final("final_iwae"),
            final_iwae_se=final("final_iwae_se", 0.0),
            samples_per_step=saved_int(state, "samples_per_step", minimum=1),
            evaluations_per_step=saved_int(state, "evaluations_per_step", minimum=1),
            train_seconds=saved_float(state, "train_seconds", minimum=0.0),
            seconds=saved_float(state, "seconds", minimum=0.0),
        )

    def check(self, key: tuple[str, int], config: Config, last: int | None = None) -> None:
        """Raise ``ValueError`` unless this is the record of run ``key`` under ``config``,
        finished, or (``last``) in progress after step ``last``."""
        if (self.key, self.seed) != tuple(key):
            raise ValueError(f"it holds the run {self.key}/{self.seed}")
        last = config.steps if last is None else last
        for name, every in (("eval", config.eval_every), ("probe", config.probe_every)):
            expected = [s for s in range(last + 1) if _due(s, every, config.steps)]
            if getattr(self, f"{name}_steps") != expected:
                raise ValueError(f"{name}_steps are not those of steps and {name}_every")
        spec = VAE_ESTIMATORS[self.key]
        n = spec.num_samples(config.samples)
        if (self.samples_per_step, self.evaluations_per_step) != (
            n,
            n * spec.evaluations_per_sample,
        ):
            raise ValueError("samples_per_step or evaluations_per_step are not this estimator's")


def _steps(state: dict[str, Any], key: str) -> list[int]:
    steps = saved_numbers(state, key, int, minimum=0)
    if any(b <= a for a, b in zip(steps[:-1], steps[1:], strict=True)):
        raise ValueError(f"{key} must increase")
    return steps


def _due(step: int, every: int, last: int) -> bool:
    return step % every == 0 or step == last


def _check_run_state(
    state: Any,
    key: tuple[str, int],
    config: Config,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
) -> None:
    """Raise ``ValueError``/``TypeError`` naming the field unless ``state`` is a mid-run state
    of run ``key`` under ``config`` that ``model`` and ``optimizer`` (fresh) can continue."""
    step = saved_int(state, "step", minimum=1, maximum=config.steps - 1)
    if step % config.checkpoint_every:
        raise ValueError(f"step must be a multiple of checkpoint_every, got {step}")
    saved_module_state(state, "model", model)
    saved_optimizer_state(state, "optimizer", optimizer)
    generators = saved_value(state, "generators", dict)
    if set(generators) != set(STREAMS):
        raise ValueError(f"generators must hold the streams {list(STREAMS)}")
    for name in STREAMS:
        saved_generator_state(generators, name)
    result = RunResult.from_state(saved_value(state, "result", dict), finished=False)
    result.check(key, config, last=step)
    pending = saved_numbers(state, "train_elbos")
    if len(pending) != step - result.eval_steps[-1]:
        raise ValueError("train_elbos must hold one value per step since the last evaluation")


def run_one(
    key: str,
    seed: int,
    config: Config,
    data: tuple[Tensor, Tensor],
    *,
    state: dict[str, Any] | None = None,
    save: Callable[[dict[str, Any]], None] | None = None,
    progress: Callable[[int], None] | None = None,
) -> RunResult:
    """Train one VAE with estimator ``key`` for ``config.steps`` steps.

    Args:
        key: a :data:`~stochgrad.apps.discrete_vae.VAE_ESTIMATORS` key.
        seed: the model's initialisation and the random streams (minibatches shared by all
            estimators of a seed).
        config: the shared settings.
        data: ``(train, test)`` from :func:`~stochgrad.apps.discrete_vae.load_binary_digits`.
        state: a mid-run state from ``save`` to continue from (same key, seed and config).
        save: called with the mid-run state every ``checkpoint_every`` steps.
        progress: called with the number of steps done since the last call.

    Returns:
        :class:`RunResult`.

    >>> small = Config(steps=2, samples=2, latents=4, hidden=0, eval_every=1, probe_every=2,
    ...                probe_calls=2, final_samples=2, iwae_k=2)
    >>> r = run_one("rloo", 0, small, load_binary_digits())
    >>> r.eval_steps, r.probe_steps, r.evaluations_per_step
    ([0, 1, 2], [0, 2], 2)
    """
    spec = VAE_ESTIMATORS[key]
    check_budget([key], config.samples)
    train, test = data
    torch_dtype = train.dtype
    model = BinaryVAE(config.latents, config.hidden, seed=seed, pixel_mean=train.mean(0)).to(
        torch_dtype
    )
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    gens = {name: stream(seed, "" if name == "batches" else key, name) for name in STREAMS}
    probe_x = test[: config.probe_batch]
    result = RunResult(
        key,
        seed,
        samples_per_step=spec.num_samples(config.samples),
        evaluations_per_step=spec.num_samples(config.samples) * spec.evaluations_per_sample,
    )
    start_step, train_elbos = 0, []
    if state is not None:
        _check_run_state(state, (key, seed), config, model, optimizer)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        for name, g in gens.items():
            g.set_state(state["generators"][name])
        result = RunResult.from_state(state["result"], finished=False)
        start_step, train_elbos = int(state["step"]), list(state["train_elbos"])
    begin = time.perf_counter() - result.seconds
    last = config.steps

    def snapshot(step: int) -> dict[str, Any]:
        """The mid-run state, copied (training goes on changing the tensors in place)."""
        result.seconds = time.perf_counter() - begin
        return {
            "step": step,
            "model": copy.deepcopy(model.state_dict()),
            "optimizer": copy.deepcopy(optimizer.state_dict()),
            "generators": {name: g.get_state() for name, g in gens.items()},
            "result": result.to_state(),
            "train_elbos": list(train_elbos),
        }

    for step in range(start_step, last + 1):
        if step > start_step or state is None:  # a resumed step was already measured
            if _due(step, config.probe_every, last):
                result.probe_steps.append(step)
                result.variance.append(
                    gradient_variance(model, probe_x, spec, config, gens["probe"])
                )
            if _due(step, config.eval_every, last):
                elbo = elbo_samples(model, test, config.eval_samples, gens["eval"])
                result.eval_steps.append(step)
                result.test_elbo.append(float(elbo.mean()))
                result.train_elbo.append(
                    float(np.mean(train_elbos)) if train_elbos else float("nan")
                )
                train_elbos = []
            if step > start_step and save is not None and step % config.checkpoint_every == 0:
                if step < last:
                    save(snapshot(step))
        if step == last:
            break
        idx = torch.randperm(train.shape[0], generator=gens["batches"])[: config.batch_size]
        t0 = time.perf_counter()
        train_elbos.append(train_step(model, optimizer, train[idx], spec, config, gens["train"]))
        result.train_seconds += time.perf_counter() - t0
        if progress is not None:
            progress(1)

    final = elbo_samples(model, test, config.final_samples, gens["eval"]).mean(0)
    iwae = iwae_bound(model, test, config.iwae_k, gens["eval"])
    n = test.shape[0]
    result.final_elbo = float(final.mean())
    result.final_elbo_se = float(final.std() / math.sqrt(n))
    result.final_iwae = float(iwae.mean())
    result.final_iwae_se = float(iwae.std() / math.sqrt(n))
    result.seconds = time.perf_counter() - begin
    return result


# ---------------------------------------------------------------------------------------------
# the study: every (estimator, seed), checkpointed
# ---------------------------------------------------------------------------------------------
class Checkpoint(RunCheckpoint):
    """The checkpoint file of :func:`run_study`: finished runs and mid-run states (see
    :class:`stochgrad.checkpoint.RunCheckpoint`)."""

    result_type = RunResult


@dataclass
class Study:
    """The outcome of :func:`run_study`.

    Attributes:
        config: the shared settings.
        keys: the estimators, in display order.
        seeds: the seeds.
        runs: ``(key, seed) -> RunResult``.
        resumed: finished runs loaded from the checkpoint instead of run.
        continued: runs continued from a mid-run state.
        seconds: wall time of the work done now.
    """

    config: Config
    keys: list[str]
    seeds: list[int]
    runs: dict[tuple[str, int], RunResult]
    resumed: int = 0
    continued: int = 0
    seconds: float = 0.0

    def of(self, key: str) -> list[RunResult]:
        """The runs of estimator ``key``, seed by seed."""
        return [self.runs[(key, s)] for s in self.seeds]


def run_study(
    keys: Sequence[str],
    seeds: Sequence[int],
    config: Config = Config(),  # noqa: B008 - frozen, never mutated
    checkpoint: str | Path | None = None,
    *,
    resume: bool = True,
    data: tuple[Tensor, Tensor] | None = None,
    progress: Callable[[int], None] | None = None,
    on_run: Callable[[RunResult], None] | None = None,
    on_resume: Callable[[int, int], None] | None = None,
) -> Study:
    """Run every (estimator, seed) cell not already finished in the checkpoint.

    Args:
        keys: :data:`~stochgrad.apps.discrete_vae.VAE_ESTIMATORS` keys.
        seeds: the seeds (at least one).
        config: shared settings.
        checkpoint: a ``.pt`` file saving each finished run, and each run in progress every
            ``checkpoint_every`` steps (``None``: nothing is saved).
        resume: reuse finished runs and continue mid-run states from ``checkpoint`` (otherwise
            it is started afresh).
        data: ``(train, test)``; default :func:`~stochgrad.apps.discrete_vae.load_binary_digits`.
        progress: called with steps done (for a progress bar; the steps of finished and of
            continued runs found in the checkpoint count at once).
        on_run: called with each run finished now.
        on_resume: called once, before any work, with the numbers of finished and of partly
            run cells found in ``checkpoint``, when there are any.

    Returns:
        :class:`Study`.

    Raises:
        ValueError: an unknown estimator, a budget an estimator cannot use, no seed, or a
            checkpoint made with other settings (:class:`~stochgrad.checkpoint.CheckpointMismatch`).
    """
    keys = list(dict.fromkeys(keys))
    check_budget(keys, config.samples)
    seeds = [check_seed("seeds", s) for s in dict.fromkeys(seeds)]
    if not seeds:
        raise ValueError("seeds: expected at least one seed")
    data = load_binary_digits() if data is None else data

    def run_cell(cell: tuple[str, int], state: dict[str, Any] | None, save) -> RunResult:
        if state is not None and progress is not None:
            progress(int(state["step"]))
        return run_one(cell[0], cell[1], config, data, state=state, save=save, progress=progress)

    def check_state(cell: tuple[str, int], state: Any) -> None:
        model = BinaryVAE(config.latents, config.hidden, seed=cell[1], pixel_mean=data[0].mean(0))
        model = model.to(data[0].dtype)
        optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
        _check_run_state(state, cell, config, model, optimizer)

    grid = run_grid(
        [(k, s) for k in keys for s in seeds],
        run_cell,
        config=config,
        result_type=RunResult,
        checkpoint=checkpoint,
        resume=resume,
        progress=progress,
        cell_units=lambda cell: config.steps,  # run_one advances the bar itself
        on_result=None if on_run is None else (lambda cell, run: on_run(run)),
        on_resume=on_resume,
        check_result=lambda cell, run: run.check(cell, config),
        check_state=check_state,
    )
    return Study(config, keys, seeds, grid.results, grid.resumed, grid.continued, grid.seconds)


# ---------------------------------------------------------------------------------------------
# summaries
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SummaryRow:
    """One estimator's line of the table (over seeds).

    Attributes:
        key, label: the estimator.
        samples: ``num_samples`` per step; evaluations: evaluations of :math:`f_x` per datapoint
            and step.
        elbo, elbo_sd: final test ELBO, mean and standard deviation over seeds.
        iwae, iwae_sd: final importance-weighted bound, mean and sd over seeds.
        log10_variance: mean over seeds and probes (step 0 excluded) of
            :math:`\\log_{10}` of the summed gradient variance.
        train_seconds: mean wall time of the training steps of one run.
        seconds: mean wall time of one run (with evaluations and probes).
        biased: the estimator is biased.
    """

    key: str
    label: str
    samples: int
    evaluations: int
    elbo: float
    elbo_sd: float
    iwae: float
    iwae_sd: float
    log10_variance: float
    train_seconds: float
    seconds: float
    biased: bool


def _sd(values: np.ndarray) -> float:
    return float(values.std(ddof=1)) if values.size > 1 else float("nan")


def log10_variance(values: Sequence[float]) -> np.ndarray:
    """:math:`\\log_{10}` of variances, a zero (no spread at all) as NaN.

    >>> log10_variance([100.0, 0.0]).tolist()
    [2.0, nan]
    """
    v = np.asarray(values, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(v > 0, np.log10(np.where(v > 0, v, 1.0)), np.nan)


def summarise(study: Study) -> list[SummaryRow]:
    """One :class:`SummaryRow` per estimator."""
    rows = []
    for key in study.keys:
        runs = study.of(key)
        spec = VAE_ESTIMATORS[key]
        elbo = np.array([r.final_elbo for r in runs])
        iwae = np.array([r.final_iwae for r in runs])
        probes = [r.variance[1:] if len(r.variance) > 1 else r.variance for r in runs]
        logs = np.concatenate([log10_variance(v) for v in probes])
        finite = logs[np.isfinite(logs)]
        rows.append(
            SummaryRow(
                key=key,
                label=spec.label,
                samples=runs[0].samples_per_step,
                evaluations=runs[0].evaluations_per_step,
                elbo=float(elbo.mean()),
                elbo_sd=_sd(elbo),
                iwae=float(iwae.mean()),
                iwae_sd=_sd(iwae),
                log10_variance=float(finite.mean()) if finite.size else float("nan"),
                train_seconds=float(np.mean([r.train_seconds for r in runs])),
                seconds=float(np.mean([r.seconds for r in runs])),
                biased=spec.biased,
            )
        )
    return rows


def paired_differences(study: Study, reference: str = "reinforce") -> dict[str, list[float]]:
    """Final test ELBO minus ``reference``'s, seed by seed (same initialisation and minibatches).

    Empty when ``reference`` did not run.
    """
    if reference not in study.keys:
        return {}
    ref = study.of(reference)
    return {
        key: [r.final_elbo - q.final_elbo for r, q in zip(study.of(key), ref, strict=True)]
        for key in study.keys
        if key != reference
    }
