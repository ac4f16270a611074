r"""Choosing an estimator: a short pilot run, then the lowest work-normalised variance.

The work-normalised variance of an estimator is the variance of one per-sample term times the
time one sample costs, :math:`\operatorname{tr}\operatorname{Var}[g_i] \cdot t`; it is the
variance reached per second of computation, so the comparison is fair between a cheap noisy
estimator (score function) and an expensive quiet one (measure-valued, 2m evaluations a sample).

With ``cost="time"`` (the default) the choice rests on measured wall-clock time, so on a loaded
machine two runs with the same seed may choose differently (each choice is then reproducible from
the seed: ``info["auto"]["chosen"]`` names it). ``cost="evaluations"`` counts evaluations of
``f`` per sample instead, a choice that depends on the seed alone.

A pathwise candidate is dropped when ``f`` is a black box or not differentiable, when its
derivative vanishes at every sample while ``f`` varies (piecewise constant), and when its pilot
mean disagrees with the score function's by more than 5 combined standard errors (a jump that
differentiation cannot see).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch.distributions import Distribution

from stochgrad import _core
from stochgrad._checks import check_choice, check_int
from stochgrad.estimators.reparameterization import pathwise
from stochgrad.estimators.score import score_function
from stochgrad.estimators.weak_derivative import measure_valued
from stochgrad.gradient_estimate import GradientEstimate, Params

GENERAL_ESTIMATORS: dict[str, Callable[..., GradientEstimate]] = {
    "score_function": score_function,
    "pathwise": pathwise,
    "measure_valued": measure_valued,
}

_CONSISTENCY_Z = 5.0


def _pilot(
    name: str, fn, f, dist_fn, params, n: int, g, baseline, cost: str
) -> tuple[GradientEstimate, float]:
    """One pilot run: the estimate and its cost per sample (seconds or evaluations of f)."""
    kwargs = {"baseline": baseline} if name == "score_function" else {}
    # The first call warms caches (and is a pilot of its own); the second is measured.
    fn(f, dist_fn, params, num_samples=min(n, 64), generator=g, **kwargs)
    start = time.perf_counter()
    est = fn(f, dist_fn, params, num_samples=n, generator=g, **kwargs)
    if cost == "evaluations":
        return est, est.evaluations / n
    return est, (time.perf_counter() - start) / n


def estimate(
    f: Callable,
    dist_fn: Callable[..., Distribution],
    params: Params,
    *,
    num_samples: int,
    method: str = "auto",
    baseline=None,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    pilot_samples: int = 1000,
    cost: str = "time",
) -> GradientEstimate:
    r"""Estimate :math:`\nabla_\theta \mathbb{E}_{p(x;\theta)}[f(x)]` with a named or automatic method.

    Args:
        f: batch of samples ``[n, ...]`` -> values ``[n]``, as in :func:`score_function`.
        dist_fn: ``dist_fn(*params)`` -> a ``torch.distributions.Distribution``.
        params: a tensor or a tuple of tensors.
        num_samples: number of samples ``n``; at least 2 under ``"auto"`` (the choice rests on
            variances); a named method takes 1 (``variance`` and ``stderr`` then NaN, with a
            :class:`~stochgrad.SingleSampleWarning`).
        method: ``"auto"``, ``"score_function"``, ``"pathwise"`` or ``"measure_valued"``.
        baseline (str | float | Baseline | None): passed to the score function (``"loo"`` by
            default under ``"auto"``).
        generator: the random generator (or give ``seed``).
        seed: shorthand for a generator seeded with ``seed`` on the parameters' device.
        pilot_samples: samples per candidate in the pilot run of ``"auto"``.
        cost: ``"time"`` (seconds per sample, measured) or ``"evaluations"`` (evaluations of
            ``f`` per sample: deterministic given the seed).

    Returns:
        The estimate of the chosen method; under ``"auto"``, ``info["auto"]`` holds the pilot
        figures (work-normalised variance per candidate, or why it was excluded).

    Raises:
        ValueError: ``num_samples < 2`` under ``"auto"``, an unknown ``method`` or ``cost``,
            ``pilot_samples < 2``, no estimator applying; the chosen estimator's own errors
            (under ``"auto"``, the score function's error when it refuses the input: it
            applies to every input the others do).
        TypeError: ``f`` not callable, arguments of the wrong type.

    >>> import torch, stochgrad as sg
    >>> est = sg.estimate(lambda x: 3.0 * x,   # linear f: the pathwise terms do not vary at all
    ...                   lambda th: torch.distributions.Normal(th[0], th[1]),
    ...                   torch.tensor([0.5, 1.0]), num_samples=10_000, seed=0)
    >>> est.method
    'pathwise'
    """
    check_choice("method", method, ["auto", *GENERAL_ESTIMATORS])
    if method != "auto":
        kwargs = {"baseline": baseline} if baseline is not None else {}
        return GENERAL_ESTIMATORS[method](
            f, dist_fn, params, num_samples=num_samples, generator=generator, seed=seed, **kwargs
        )
    _core.check_f(f)
    n = _core.check_num_samples(
        num_samples,
        2,
        why='method="auto" compares the estimators by their variance, which needs at least 2 '
        "samples; name a method for a one-sample estimate",
    )
    check_choice("cost", cost, ["time", "evaluations"])
    pilot_samples = check_int("pilot_samples", pilot_samples, minimum=2)
    device = _core.as_params(params)[0][0].device
    g = _core.make_generator(generator, seed, device)
    if g is None:  # the pilot and the final run must come from one reproducible stream
        g = torch.Generator(device=device).manual_seed(_core.random_seed(None))
    sf_baseline = baseline if baseline is not None else "loo"
    n_pilot = max(2, min(pilot_samples, n))
    report: dict[str, dict] = {}
    pilots: dict[str, GradientEstimate] = {}
    for name, fn in GENERAL_ESTIMATORS.items():
        try:
            est, sec = _pilot(name, fn, f, dist_fn, params, n_pilot, g, sf_baseline, cost)
        except (ValueError, TypeError, NotImplementedError) as exc:
            if name == "score_function":
                # the estimator that applies to any input refuses it: its error is the answer
                # (it names the argument, or it is the caller's own f or dist_fn failing)
                raise
            report[name] = {"excluded": str(exc)}
            continue
        variance = est.flat("variance")
        if not bool(torch.isfinite(variance).all()):
            report[name] = {"excluded": "non-finite pilot variance"}
            continue
        pilots[name] = est
        report[name] = {
            "variance": float(variance.sum()),
            "cost_per_sample": sec,
            "work_normalized_variance": float(variance.sum()) * sec,
        }
    if "score_function" not in pilots:
        raise ValueError(f"estimate: no estimator applies: {report}")
    if "pathwise" in pilots:
        sf, pw = pilots["score_function"], pilots["pathwise"]
        se = (sf.flat("stderr") ** 2 + pw.flat("stderr") ** 2).sqrt()
        z = ((sf.flat("grad") - pw.flat("grad")).abs() / se.clamp_min(1e-300)).max()
        if float(z) > _CONSISTENCY_Z:
            del pilots["pathwise"]
            report["pathwise"] = {
                "excluded": f"pilot disagrees with the score function (z = {float(z):.1f}): f is "
                "probably discontinuous, so the pathwise estimator would be biased"
            }
    chosen = min(pilots, key=lambda k: report[k]["work_normalized_variance"])
    kwargs = {"baseline": sf_baseline} if chosen == "score_function" else {}
    final = GENERAL_ESTIMATORS[chosen](f, dist_fn, params, num_samples=n, generator=g, **kwargs)
    final.info["auto"] = {
        "chosen": chosen,
        "pilot_samples": n_pilot,
        "cost": cost,
        "candidates": report,
    }
    return final
