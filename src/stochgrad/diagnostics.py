r"""Comparing estimators on one problem: variance, cost, signal-to-noise, and bias against the truth.

For every method :func:`compare` reports, per coordinate of the flattened parameters,

- the gradient estimate and its standard error,
- the single-sample variance :math:`\operatorname{Var}[g_i]`,
- seconds per sample (wall time of the call divided by ``num_samples``),
- the work-normalised variance :math:`\operatorname{Var}[g_i] \cdot t` (variance per second of work),
- the single-sample signal-to-noise ratio :math:`|\mathbb{E} g| / \sqrt{\operatorname{Var} g_i}`,
- the bias z-score :math:`(\hat g - \nabla_\theta \mathbb{E} f)/\mathrm{se}` when
  :func:`stochgrad.exact_gradient` has a reference for the distribution.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

import torch
from torch import Tensor
from torch.distributions import Distribution

from stochgrad import _core
from stochgrad.estimators import ALL_ESTIMATORS
from stochgrad.estimators.auto import estimate
from stochgrad.exact import exact_gradient
from stochgrad.gradient_estimate import GradientEstimate, Params

DEFAULT_METHODS = (
    "score_function",
    "score_function:loo",
    "score_function:optimal",
    "pathwise",
    "measure_valued",
)


@dataclass
class ComparisonRow:
    """One method's figures (lists run over the flattened parameter coordinates)."""

    method: str
    grad: list[float] = field(default_factory=list)
    stderr: list[float] = field(default_factory=list)
    variance: list[float] = field(default_factory=list)
    seconds: float = float("nan")
    seconds_per_sample: float = float("nan")
    work_normalized_variance: list[float] = field(default_factory=list)
    snr: list[float] = field(default_factory=list)
    bias_z: list[float] | None = None
    evaluations: int = 0
    biased: bool = False
    error: str | None = None


@dataclass
class Comparison:
    """The rows of :func:`compare` with the exact gradient (or ``None``)."""

    rows: list[ComparisonRow]
    exact: list[float] | None
    num_samples: int

    def as_dicts(self) -> list[dict]:
        return [asdict(r) for r in self.rows]

    def row(self, method: str) -> ComparisonRow:
        for r in self.rows:
            if r.method == method:
                return r
        raise KeyError(method)

    def table(self, title: str = "Estimator comparison"):
        """A ``rich.table.Table`` of the rows."""
        from rich.markup import escape
        from rich.table import Table

        def fmt(values, spec=".4g"):
            if values is None:
                return "-"
            return ", ".join(format(v, spec) for v in values)

        table = Table(title=title)
        for col in ("method", "grad", "stderr", "variance", "s/sample", "work-norm var", "SNR"):
            table.add_column(col, justify="right" if col != "method" else "left")
        table.add_column(
            "bias z" if self.exact is not None else "bias z (no exact)", justify="right"
        )
        for r in self.rows:
            if r.error:
                table.add_row(escape(r.method), f"[red]{escape(r.error[:70])}[/red]", *[""] * 6)
                continue
            table.add_row(
                escape(r.method) + (" (biased)" if r.biased else ""),
                fmt(r.grad),
                fmt(r.stderr, ".2g"),
                fmt(r.variance, ".3g"),
                f"{r.seconds_per_sample:.2e}",
                fmt(r.work_normalized_variance, ".2e"),
                fmt(r.snr, ".3g"),
                fmt(r.bias_z, "+.2f"),
            )
        return table


def _runner(spec) -> tuple[str, Callable[..., GradientEstimate]]:
    """A method spec -> (label, callable(f, dist_fn, params, num_samples=, generator=))."""
    if isinstance(spec, tuple) and len(spec) == 2 and callable(spec[1]):
        return str(spec[0]), spec[1]
    if not isinstance(spec, str):
        raise TypeError(
            f"methods: each entry must be a name or a (label, callable) pair, got {spec!r}"
        )
    name, _, option = spec.partition(":")
    if name == "auto":
        return spec, lambda *a, **k: estimate(*a, **k)
    if name not in ALL_ESTIMATORS:
        raise ValueError(
            f"methods: unknown method {name!r}; expected one of {sorted(ALL_ESTIMATORS)} or 'auto', "
            "optionally with ':option' (e.g. 'score_function:loo', 'score_function:delta')"
        )
    fn = ALL_ESTIMATORS[name]
    if not option:
        return spec, fn
    if name != "score_function":
        raise ValueError(f"methods: {name!r} takes no option, got {spec!r}")
    key = "control_variate" if option == "delta" else "baseline"
    return spec, lambda *a, **k: fn(*a, **{key: option}, **k)


def compare(
    f: Callable,
    dist_fn: Callable[..., Distribution],
    params: Params,
    *,
    methods: Sequence = DEFAULT_METHODS,
    num_samples: int = 10_000,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    exact: Tensor | tuple | str | None = "auto",
) -> Comparison:
    r"""Run several estimators on one problem and tabulate their figures.

    Args:
        f: batch of samples ``[n, ...]`` -> values ``[n]``, as for the estimators.
        dist_fn: ``dist_fn(*params)`` -> a ``torch.distributions.Distribution``.
        params: a tensor or a tuple of tensors.
        methods: names (``"score_function"``, ``"score_function:loo"``, ``":optimal"``,
            ``":mean"``, ``":delta"``, ``"pathwise"``, ``"measure_valued"``, ``"auto"``) or
            ``(label, callable)`` pairs with the estimator signature.
        num_samples: samples per method, at least 2 (the figures are variances and standard
            errors).
        generator: explicit randomness (one stream, used by the methods in order).
        seed: shorthand for a generator seeded with ``seed`` (instead of ``generator``).
        exact: the true gradient, ``"auto"`` to try :func:`exact_gradient`, or ``None``.

    Returns:
        A :class:`Comparison`; methods that do not apply get a row with ``error`` set.

    Raises:
        ValueError: ``num_samples < 2``, an unknown method, ``exact`` of the wrong size or not
            finite.
        TypeError: ``f`` not callable, ``methods`` not a list, arguments of the wrong type.

    Examples:
        >>> import torch, stochgrad as sg
        >>> cmp = sg.compare(lambda x: (x - 2.0) ** 2,
        ...                  lambda th: torch.distributions.Normal(th[0], th[1]),
        ...                  torch.tensor([0.5, 1.0]), num_samples=2000, seed=0)
        >>> [r.method for r in cmp.rows][:2]
        ['score_function', 'score_function:loo']
    """
    _core.check_f(f)
    n = _core.check_num_samples(
        num_samples,
        2,
        why="compare reports standard errors and variances, which need at least 2 samples",
    )
    tensors = _core.as_params(params)[0]
    g = _core.make_generator(generator, seed, tensors[0].device)
    if isinstance(methods, str) or not isinstance(methods, Sequence):
        raise TypeError(
            f"methods must be a list of names or (label, callable) pairs, got "
            f"{type(methods).__name__} {methods!r} (one method: methods=[{methods!r}])"
        )
    runners = [_runner(m) for m in methods]
    if not runners:
        raise ValueError("methods must name at least one estimator")
    truth: Tensor | None
    if isinstance(exact, str):
        if exact != "auto":
            raise ValueError(f"exact must be a tensor, 'auto' or None, got {exact!r}")
        try:
            truth = _flat(exact_gradient(f, dist_fn, params))
        except ValueError:
            truth = None
    elif exact is None:
        truth = None
    else:
        truth = _check_exact(exact, sum(t.numel() for t in tensors))
    rows = []
    for label, fn in runners:
        try:
            fn(f, dist_fn, params, num_samples=min(n, 64), generator=g)  # warm-up
            start = time.perf_counter()
            est = fn(f, dist_fn, params, num_samples=n, generator=g)
            seconds = time.perf_counter() - start
        except (ValueError, TypeError, NotImplementedError) as exc:
            rows.append(ComparisonRow(method=label, error=str(exc)))
            continue
        grad, var, se = est.flat("grad"), est.flat("variance"), est.flat("stderr")
        per_sample = seconds / n
        row = ComparisonRow(
            method=label,
            grad=grad.tolist(),
            stderr=se.tolist(),
            variance=var.tolist(),
            seconds=seconds,
            seconds_per_sample=per_sample,
            work_normalized_variance=(var * per_sample).tolist(),
            snr=(grad.abs() / var.sqrt()).tolist(),
            evaluations=est.evaluations,
            biased=est.biased,
        )
        if truth is not None:
            diff = grad - truth.to(grad.dtype)
            # A zero-variance estimator has z = 0 when exact (to rounding) and inf otherwise.
            exact_match = diff.abs() <= 1e-10 * (1 + truth.to(grad.dtype).abs())
            z = torch.where(
                se > 0, diff / torch.where(se > 0, se, torch.ones_like(se)), diff * torch.inf
            )
            row.bias_z = torch.where(exact_match & (se == 0), torch.zeros_like(z), z).tolist()
        rows.append(row)
    return Comparison(rows=rows, exact=None if truth is None else truth.tolist(), num_samples=n)


def _check_exact(exact, size: int) -> Tensor:
    """``exact`` flattened, if it holds ``size`` finite real numbers (one per coordinate)."""
    try:
        truth = _flat(exact)
    except (TypeError, ValueError, RuntimeError) as exc:
        raise TypeError(
            f"exact must be a tensor (or a tuple of tensors) shaped like params, got "
            f"{type(exact).__name__}"
        ) from exc
    if truth.is_complex() or truth.dtype == torch.bool:
        raise TypeError(f"exact must hold real numbers, got dtype {truth.dtype}")
    if truth.numel() != size:
        raise ValueError(
            f"exact must hold one value per coordinate of params ({size}), got {truth.numel()}"
        )
    if not bool(torch.isfinite(truth).all()):
        raise ValueError(f"exact must be finite, got {truth.tolist()}")
    return truth


def _flat(value) -> Tensor:
    if isinstance(value, tuple):
        return torch.cat([torch.as_tensor(v).reshape(-1) for v in value])
    return torch.as_tensor(value).reshape(-1)
