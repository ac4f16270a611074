"""The result every estimator returns, and the warning for an estimate without a spread."""

from __future__ import annotations

import math
import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from stochgrad._checks import check_bool, check_device, check_int
from stochgrad._core import _all_finite

Params = Tensor | tuple[Tensor, ...]


class SingleSampleWarning(UserWarning):
    """An estimate from one sample: ``grad`` is defined, ``variance`` and ``stderr`` are not (NaN).

    The estimators return such an estimate (one sample is a valid unbiased estimate) and warn
    with this class; functions that need a standard error (:func:`stochgrad.compare`,
    :func:`stochgrad.estimate` with ``method="auto"``) refuse ``num_samples=1`` instead. Silence
    it where one sample is meant, e.g. a seeded replay of one term::

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", sg.SingleSampleWarning)
            est = sg.score_function(f, dist_fn, theta, num_samples=1, seed=0)

    >>> import warnings, torch, stochgrad as sg
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     est = sg.pathwise(lambda x: x**2, lambda t: torch.distributions.Normal(t, 1.0),
    ...                       torch.tensor(0.0), num_samples=1, seed=0)
    >>> caught[0].category.__name__, bool(est.stderr.isnan())
    ('SingleSampleWarning', True)
    """


_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _outside_level() -> int:
    """The ``stacklevel`` (counted from the caller of this function) of the first frame
    outside this package: the user's line, however deep inside the library the warning is."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    return level


def warn_single_sample(method: str, num_samples: int, stacklevel: int | None = None) -> None:
    """Warn (:class:`SingleSampleWarning`) when an estimate rests on one sample.

    :meth:`GradientEstimate.from_per_sample` warns by itself for one row; functions that build
    their estimate otherwise call this. ``stacklevel`` counts from this function; ``None``
    points at the first caller outside the library.
    """
    if num_samples == 1:
        warnings.warn(
            f"{method}: num_samples=1 gives a gradient estimate without a spread: variance and "
            "stderr are undefined (NaN); use num_samples >= 2 for a standard error",
            SingleSampleWarning,
            stacklevel=_outside_level() if stacklevel is None else stacklevel,
        )


def _var_mean(t: Tensor) -> tuple[Tensor, Tensor]:
    """Variance (ddof 1) and mean over the samples of ``[n, ...]`` terms.

    Many samples of one value each (a scalar parameter: a Greek) go through float64 dot
    products, several times faster on a CPU than ``torch.var_mean``'s reduction for a million
    rows; everything else through ``torch.var_mean``.
    """
    if t[0].numel() == 1 and t.is_floating_point() and t.shape[0] >= 65536:
        if t.dtype != torch.float64:  # accumulated in float64, returned in the terms' dtype
            var, mean = _var_mean(t.to(torch.float64))
            return var.to(t.dtype), mean.to(t.dtype)
        flat = t.reshape(-1)
        n = flat.shape[0]
        total = flat.sum()
        mean = total / n
        shape = t.shape[1:]
        # sum of squares minus n mean^2: two passes, no temporary; kept only while the
        # cancellation costs less than 1e-6 of the result (else the centred form below)
        square = flat.dot(flat)
        spread = square - total * mean
        if bool(spread > 1e-6 * square):
            return (spread / (n - 1)).reshape(shape), mean.reshape(shape)
        centred = flat - mean
        return (centred.dot(centred) / (n - 1)).reshape(shape), mean.reshape(shape)
    return torch.var_mean(t, 0)


def batch_variance(sums: Tensor, sizes: Tensor) -> Tensor:
    r"""Variance of one term estimated from ``B`` batch sums: :math:`\frac{1}{B-1}\sum_b n_b
    (S_b / n_b - \sum_c S_c / n)^2`, unbiased for independent terms.

    Args:
        sums: ``[B, ...]`` the sums :math:`S_b` of the terms of each batch.
        sizes: ``[B]`` the numbers of terms :math:`n_b` (each at least 1).

    >>> batch_variance(torch.tensor([4.0, 8.0]), torch.tensor([2, 2]))  # terms 1, 3 | 2, 6
    tensor(4.)
    """
    batches = sums.shape[0]
    count = sizes.reshape(batches, *([1] * (sums.dim() - 1))).to(sums.dtype)
    grad = sums.sum(0) / int(sizes.sum())
    spread = sums / count  # one [B, ...] temporary, worked on in place
    return spread.sub_(grad).square_().mul_(count).sum(0) / (batches - 1)


def _terms(name: str, value: Any) -> tuple[tuple[Tensor, ...], bool]:
    """``value`` (a tensor or a non-empty tuple of tensors ``[rows, ...]``) as a tuple, checked:
    floating point, on one device, at least one dimension, the same number of rows."""
    if (
        isinstance(value, Tensor)
        and value.is_floating_point()
        and value.dim()
        and not value.is_meta
    ):
        return (value,), False  # one tensor, nothing to compare it with
    is_tuple = isinstance(value, tuple)
    parts = value if is_tuple else (value,)
    if not parts:
        raise TypeError(f"{name} must be a tensor or a non-empty tuple of tensors, got ()")
    device, rows = None, None
    for i, t in enumerate(parts):
        label = f"{name}[{i}]" if is_tuple else name
        if not isinstance(t, Tensor):
            raise TypeError(
                f"{label} must be a torch.Tensor [rows, *param.shape] (or a tuple of them), got "
                f"{type(t).__name__}"
            )
        if not t.is_floating_point():
            raise TypeError(f"{label} must be a floating-point tensor, got dtype {t.dtype}")
        check_device(label, t, device, of=f"{name}[0]")
        device = t.device
        if t.dim() == 0:
            raise ValueError(
                f"{label} must have a leading dimension of rows [rows, *param.shape], got a "
                "0-d tensor"
            )
        if rows is not None and t.shape[0] != rows:
            raise ValueError(f"{label} has {t.shape[0]} rows, {name}[0] has {rows}")
        rows = t.shape[0]
    return parts, is_tuple


def _extra(value: Any, grad: tuple[Tensor, ...], is_tuple: bool) -> tuple[Tensor, ...] | None:
    """``extra_variance_of_mean`` as a tuple shaped like ``grad`` (``None`` stays ``None``)."""
    if value is None:
        return None
    name = "extra_variance_of_mean"
    if isinstance(value, tuple) != is_tuple or (is_tuple and len(value) != len(grad)):
        raise TypeError(
            f"{name} must be shaped like grad: "
            + (f"a tuple of {len(grad)} tensors" if is_tuple else "a tensor")
            + f", got {type(value).__name__}"
        )
    parts = value if is_tuple else (value,)
    for i, (e, g) in enumerate(zip(parts, grad, strict=True)):
        label = f"{name}[{i}]" if is_tuple else name
        if not isinstance(e, Tensor) or not e.is_floating_point():
            what = f"dtype {e.dtype}" if isinstance(e, Tensor) else type(e).__name__
            raise TypeError(f"{label} must be a floating-point tensor shaped like grad, got {what}")
        check_device(label, e, g.device, of="the terms")
        if e.shape != g.shape:
            raise ValueError(
                f"{label} must be shaped like grad {list(g.shape)}, got {list(e.shape)}"
            )
    return parts


def _stderr_checked(
    grad: tuple[Tensor, ...],
    variance: tuple[Tensor, ...],
    n: int,
    extra: tuple[Tensor, ...] | None,
    method: str,
    name: str = "per_sample",
) -> tuple[Tensor, ...]:
    """``sqrt(variance / n (+ extra))`` per parameter, refusing a non-finite ``grad``, a variance
    that overflowed and an ``extra`` that is negative or not finite.

    One synchronisation when all is well: the sum of the standard error (of ``grad`` for one
    row, whose variance is NaN by design).
    """
    if extra is None and len(grad) == 1:  # the common case, with no more work than needed
        g, se = grad[0], variance[0].div(n).sqrt_()
        # a finite variance means finite terms and a finite mean (a NaN or infinite term, or
        # an overflowing mean, makes it NaN or infinite): one sum to watch, as before
        total = float((g if n == 1 else se).sum()) if g.numel() else 0.0
        if math.isfinite(total):
            return (se,)
        stderr: tuple[Tensor, ...] = (se,)
    elif extra is None:
        stderr = tuple((v / n).sqrt() for v in variance)
    else:
        stderr = tuple((v / n + e).sqrt() for v, e in zip(variance, extra, strict=True))
    watched = grad if n == 1 else tuple(g + se for g, se in zip(grad, stderr, strict=True))
    flat = watched[0] if len(watched) == 1 else torch.cat([w.reshape(-1) for w in watched])
    if extra is not None:
        flat_extra = torch.cat([e.reshape(-1) for e in extra])
        negative = (flat_extra < 0).any()
        flat = flat.sum() + torch.where(negative, float("nan"), 0.0)
    if _all_finite(flat):
        return stderr
    flat_grad = torch.cat([g.reshape(-1) for g in grad])
    if not _all_finite(flat_grad):
        raise ValueError(
            f"{method}: the gradient estimate is not finite ({flat_grad}): {name} holds "
            "non-finite terms; a parameter may sit on the boundary of its constraint (e.g. a "
            "probability of exactly 0 or 1)"
        )
    if extra is not None:
        flat_extra = torch.cat([e.reshape(-1) for e in extra])
        if not _all_finite(flat_extra) or bool((flat_extra < 0).any()):
            raise ValueError(
                f"extra_variance_of_mean must be finite and >= 0 (a variance), got {flat_extra}"
            )
    if n > 1 and not _all_finite(torch.cat([t.reshape(-1) for t in stderr])):
        dtype = grad[0].dtype
        raise ValueError(
            f"{method}: the variance of the terms in {name} is not finite: their squares "
            f"overflow {dtype} (largest {torch.finfo(dtype).max:.3g}); compute the terms in "
            "float64, or rescale f"
        )
    return stderr  # finite parts whose sum overflowed


def _flags(biased: Any, evaluations: Any) -> tuple[bool, int | None]:
    """``biased`` a bool, ``evaluations`` ``None`` or an int >= 0 (plain values pass at once)."""
    if biased is not True and biased is not False:
        biased = check_bool("biased", biased)
    if evaluations is not None and (type(evaluations) is not int or evaluations < 0):
        evaluations = check_int("evaluations", evaluations, minimum=0)
    return biased, evaluations


def _sizes(sizes: Any, batches: int, device: torch.device) -> Tensor:
    """``sizes`` of :meth:`GradientEstimate.from_batch_sums`: ``[B]`` integers >= 1."""
    if not isinstance(sizes, Tensor):
        raise TypeError(f"sizes must be an integer tensor [B], got {type(sizes).__name__}")
    if sizes.is_floating_point() or sizes.is_complex() or sizes.dtype == torch.bool:
        raise TypeError(f"sizes must be an integer tensor [B], got dtype {sizes.dtype}")
    check_device("sizes", sizes, device, of="sums")
    if sizes.shape != (batches,) or not bool((sizes >= 1).all()):
        raise ValueError(
            f"sizes must be [B] = [{batches}] batch sizes, each >= 1, got {sizes.tolist()}"
        )
    return sizes


@dataclass(frozen=True)
class GradientEstimate:
    r"""A Monte Carlo gradient estimate with its per-sample terms and their spread.

    ``grad`` is the mean of ``per_sample`` over the sample axis; ``variance`` is the unbiased
    sample variance of one per-sample term, and ``stderr = sqrt(variance / num_samples)`` the
    standard error of ``grad``. When ``params`` was a tuple of tensors every field is a tuple in
    the same order.

    One sample: ``variance`` and ``stderr`` are undefined and hold NaN (``grad`` is the one
    term). The estimators then warn with :class:`SingleSampleWarning`; :func:`stochgrad.compare`
    and :func:`stochgrad.estimate` with ``method="auto"``, which need a standard error, refuse
    ``num_samples=1``.

    Memory: ``per_sample`` holds ``num_samples`` times the parameters' size (64 samples of a
    1M-weight float32 network: 256 MB). Estimators given ``batches=B`` keep ``B`` batch means
    instead (``info["batch_means"] = B``): ``per_sample`` is then ``[B, *param.shape]``, rows
    whose mean is still ``grad``, and ``variance`` is estimated from the spread of the batch
    means (``B - 1`` degrees of freedom; see :meth:`from_batch_sums`).

    Attributes:
        grad: the gradient estimate, shaped like ``params``.
        per_sample: ``[num_samples, *param.shape]`` terms whose mean is ``grad`` (``[B, ...]``
            rows with batch means).
        variance: variance of one per-sample term, shaped like ``params``.
        stderr: standard error of ``grad``, shaped like ``params``.
        num_samples: number of samples.
        method: the estimator's name (``"score_function"``, ``"pathwise"``, ...).
        biased: ``True`` for estimators whose expectation is not the true gradient.
        evaluations: how many times ``f`` was evaluated (work, for diagnostics): at the
            samples, plus any point a control variate needs (the mean, for ``"delta"``).
        info: estimator-specific extras (the baseline's value, the pilot run of ``auto``, ...).
        samples: ``[num_samples, ...]`` the samples :math:`x_i \sim p` the estimator drew, a
            reference, no copy: the tensor ``f`` received (``score_function``), its values
            detached (``pathwise``), the samples the coupled points were built from
            (``measure_valued``); ``None`` for estimates built from terms alone.

    >>> import torch
    >>> est = GradientEstimate.from_per_sample(torch.tensor([[1.0], [3.0]]), method="demo")
    >>> est.grad
    tensor([2.])
    """

    grad: Params
    per_sample: Params
    variance: Params
    stderr: Params
    num_samples: int
    method: str
    biased: bool = False
    evaluations: int = 0
    info: dict[str, Any] = field(default_factory=dict)
    samples: Tensor | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_per_sample(
        cls,
        per_sample: Params,
        *,
        method: str,
        biased: bool = False,
        evaluations: int | None = None,
        info: dict[str, Any] | None = None,
        extra_variance_of_mean: Params | None = None,
        samples: Tensor | None = None,
    ) -> GradientEstimate:
        """Build an estimate from per-sample terms (a tensor or a tuple of tensors).

        ``extra_variance_of_mean`` (shaped like ``grad``, finite and >= 0) is added to
        ``variance / n`` in the standard error, for estimators whose per-sample terms are not
        independent. With one row ``variance`` and ``stderr`` are NaN (undefined) and a
        :class:`SingleSampleWarning` is issued.

        Raises:
            TypeError: ``per_sample`` not a floating-point tensor (or a tuple of them),
                ``biased`` not a bool, ``evaluations`` not an int.
            ValueError: no rows, tensors on another device (or ``meta``), a non-finite mean,
                a variance that overflows the terms' dtype, ``evaluations < 0``, a negative or
                non-finite ``extra_variance_of_mean``.
        """
        parts, is_tuple = _terms("per_sample", per_sample)
        biased, evaluations = _flags(biased, evaluations)
        n = int(parts[0].shape[0])
        if n == 0:
            raise ValueError(
                f"{method}: per_sample must hold at least one row [n >= 1, *param.shape], got "
                f"shape {list(parts[0].shape)}"
            )
        if n > 1 and not is_tuple:
            variance, mean = _var_mean(parts[0])
            grad, variance = (mean,), (variance,)
        elif n > 1:
            pairs = [_var_mean(t) for t in parts]
            variance = tuple(v for v, _ in pairs)
            grad = tuple(m for _, m in pairs)
        else:
            warn_single_sample(method, 1)
            grad = tuple(t.mean(0) for t in parts)
            variance = tuple(torch.full_like(t[0], float("nan")) for t in parts)
        extra = _extra(extra_variance_of_mean, grad, is_tuple)
        stderr = _stderr_checked(grad, variance, n, extra, method)
        pack = tuple if is_tuple else (lambda xs: xs[0])
        return cls(
            grad=pack(grad),
            per_sample=per_sample,
            variance=pack(variance),
            stderr=pack(stderr),
            num_samples=n,
            method=method,
            biased=biased,
            evaluations=n if evaluations is None else evaluations,
            info=dict(info or {}),
            samples=samples,
        )

    @classmethod
    def from_batch_sums(
        cls,
        sums: Params,
        sizes: Tensor,
        *,
        method: str,
        biased: bool = False,
        evaluations: int | None = None,
        info: dict[str, Any] | None = None,
        extra_variance_of_mean: Params | None = None,
        samples: Tensor | None = None,
    ) -> GradientEstimate:
        r"""Build an estimate from the sums of the per-sample terms over ``B`` batches.

        With :math:`S_b` the sum of the :math:`n_b` terms of batch :math:`b`, :math:`n =
        \sum_b n_b`, the mean is :math:`\bar g = \sum_b S_b / n` and the variance of one term
        is estimated from the batch means :math:`m_b = S_b / n_b`,

        .. math::

            \hat\sigma^2 = \frac{1}{B - 1} \sum_b n_b\, (m_b - \bar g)^2,

        unbiased for independent terms (:math:`\mathbb{E}\sum_b n_b (m_b - \bar g)^2 = (B-1)
        \sigma^2`) but with ``B - 1`` degrees of freedom instead of ``n - 1``: its relative
        standard error is about :math:`\sqrt{2/(B-1)}` (for Gaussian terms). The standard
        error is :math:`\sqrt{\hat\sigma^2/n}` (plus ``extra_variance_of_mean``). ``per_sample``
        holds the rows :math:`S_b B / n`, whose mean is :math:`\bar g`; ``info["batch_means"]``
        is ``B``.

        Args:
            sums: ``[B, *param.shape]`` (a tensor or a tuple of tensors), the batch sums.
            sizes: ``[B]`` the number of samples in each batch (each at least 1).
            method: the estimator's name.
            biased: whether the estimator's expectation is not the true gradient.
            evaluations: evaluations of ``f`` (default ``n``).
            info: estimator-specific extras (``"batch_means"`` is added).
            extra_variance_of_mean: added to ``variance / n`` in the standard error.
            samples: the samples drawn, if any.

        Returns:
            The estimate, ``num_samples = sizes.sum()``.

        Raises:
            TypeError: ``sums`` not floating point, ``sizes`` not an integer tensor.
            ValueError: fewer than 2 batches, an empty batch, a non-finite mean, tensors on
                different devices (or ``meta``).

        >>> import torch
        >>> terms = torch.tensor([[1.0], [3.0], [2.0], [6.0]])  # two batches of two
        >>> est = GradientEstimate.from_batch_sums(
        ...     terms.reshape(2, 2, 1).sum(1), torch.tensor([2, 2]), method="demo")
        >>> est.grad, est.num_samples, est.info["batch_means"]
        (tensor([3.]), 4, 2)
        >>> est.variance  # (2 (2 - 3)^2 + 2 (4 - 3)^2) / (2 - 1)
        tensor([4.])
        """
        parts, is_tuple = _terms("sums", sums)
        batches = int(parts[0].shape[0])
        if batches < 2:
            raise ValueError(
                f"sums must hold B >= 2 batch sums [B, *param.shape] (a variance needs at least "
                f"2 batch means), got {batches}"
            )
        sizes = _sizes(sizes, batches, parts[0].device)
        biased, evaluations = _flags(biased, evaluations)
        n = int(sizes.sum())

        def stats(total: Tensor) -> tuple[Tensor, Tensor, Tensor]:
            # the mean, the variance of one term, and rows whose mean is the mean
            return total.sum(0) / n, batch_variance(total, sizes), total * (batches / n)

        triples = [stats(t) for t in parts]
        grad, variance, rows = (tuple(p[k] for p in triples) for k in range(3))
        extra = _extra(extra_variance_of_mean, grad, is_tuple)
        stderr = _stderr_checked(grad, variance, n, extra, method, "sums")
        pack = tuple if is_tuple else (lambda xs: xs[0])
        return cls(
            grad=pack(grad),
            per_sample=pack(rows),
            variance=pack(variance),
            stderr=pack(stderr),
            num_samples=n,
            method=method,
            biased=biased,
            evaluations=n if evaluations is None else evaluations,
            info={**(info or {}), "batch_means": batches},
            samples=samples,
        )

    @property
    def snr(self) -> Params:
        r"""Signal-to-noise ratio of one per-sample term, :math:`|\text{grad}| /
        \sqrt{\text{variance}}`, elementwise (as :func:`stochgrad.compare` reports it)."""
        if isinstance(self.grad, tuple):
            return tuple(g.abs() / v.sqrt() for g, v in zip(self.grad, self.variance, strict=True))
        return self.grad.abs() / self.variance.sqrt()

    def snr_of_mean(self) -> float:
        r"""One number for the whole estimate: :math:`\lVert\text{grad}\rVert /
        \sqrt{\sum \text{stderr}^2}`, the norm of the gradient over the size of its error
        (above about 1, the estimate points somewhere; below, it is mostly noise)."""
        noise = float((self.flat("stderr") ** 2).sum().sqrt())
        signal = float(self.flat("grad").norm())
        return signal / noise if noise > 0 else float("inf")

    def flat(self, name: str = "grad") -> Tensor:
        """One field (``grad``, ``variance``, ``stderr``) flattened and concatenated over params."""
        value = getattr(self, name)
        if isinstance(value, tuple):
            return torch.cat([v.reshape(-1) for v in value])
        return value.reshape(-1)

    def __repr__(self) -> str:  # short: per_sample can be millions of rows
        return (
            f"GradientEstimate(method={self.method!r}, grad={self.grad}, stderr={self.stderr}, "
            f"num_samples={self.num_samples}, biased={self.biased})"
        )
