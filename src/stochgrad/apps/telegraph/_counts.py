"""Checks of the telegraph model's inputs: rates, counts, and the largest count it takes."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

DTYPE = torch.float64
"""The dtype of every rate, likelihood and fit."""


MAX_RATE = 1e6
r"""The largest rate (:math:`k_{on}`, :math:`k_{off}`, :math:`k_{syn}`, in units of the mRNA
degradation rate) the likelihood, the simulations and the Fisher gradients take.

The exact likelihood sums a Kummer series of about :math:`k_{syn}` terms and a Gillespie
simulation steps through every event (about :math:`2 k_{syn}` per unit of time), so their cost
grows with the rates; :math:`10^6` is a hundred times the fit's box
(:data:`~stochgrad.apps.telegraph.fit.BOUNDS`: :math:`k_{syn} \le 10^4`,
:math:`k_{on}, k_{off} \le 10^3`)."""


def _on_cpu(t: Tensor, name: str) -> Tensor:
    if t.device.type == "meta":
        raise ValueError(f"{name} must hold values, got a tensor on the 'meta' device")
    return t.cpu()  # the telegraph model runs in float64 on the CPU


def _as_param(value: Any, name: str) -> Tensor:
    if isinstance(value, bool) or (isinstance(value, Tensor) and value.dtype == torch.bool):
        raise TypeError(f"{name} must be a positive number or tensor of rates, got a bool")
    try:
        t = value if isinstance(value, Tensor) else torch.as_tensor(value, dtype=DTYPE)
    except (TypeError, ValueError, RuntimeError, OverflowError):
        raise TypeError(
            f"{name} must be a positive number or tensor of rates, got {type(value).__name__}"
        ) from None
    if t.is_complex() or not (t.is_floating_point() or t.dtype in _INT_DTYPES):
        raise TypeError(f"{name} must hold real rates, got dtype {t.dtype}")
    t = _on_cpu(t, name).to(DTYPE)
    if not torch.isfinite(t).all() or (t <= 0).any():
        raise ValueError(f"{name} must be finite and > 0, got {value!r}")
    if t.numel() and float(t.max()) > MAX_RATE:
        raise ValueError(
            f"{name} must be at most MAX_RATE = {MAX_RATE:g} (in units of the mRNA degradation "
            f"rate; the likelihood's and the simulations' cost grow with it), got "
            f"{float(t.max()):.6g}"
        )
    return t


_INT_DTYPES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


MAX_COUNT = 100_000
r"""The largest count the likelihood takes (:func:`log_pmf`, :func:`log_pmf_table`,
:func:`histogram_nll`, and so every fit).

Why a limit: the exact likelihood runs a recurrence down from the largest count, so its cost
grows with that count (about 0.02 ms per count per evaluation, order 2 five times that), and a
fit evaluates it a few hundred times; unbounded, one stray count of 10^7 in a table costs minutes
and gigabytes. Within the fit's box (:data:`~stochgrad.apps.telegraph.fit.BOUNDS`,
:math:`k_{syn} \le 10^4`, ``txburst``'s) a count of :math:`10^5` has probability below
:math:`e^{-10^5}`: such a count is a data error (read counts instead of UMIs, merged barcodes),
not an mRNA number."""


def _too_large(name: str, value: float) -> ValueError:
    return ValueError(
        f"{name} must be at most MAX_COUNT = {MAX_COUNT:,}, got {value:.6g}: the exact "
        "likelihood's cost grows with the largest count, and the telegraph model's box "
        "(k_syn <= 1e4) makes such a count impossible (UMI counts, not read counts, are "
        "expected)"
    )


def _as_counts(n: Any, name: str = "n") -> Tensor:
    try:
        t = torch.as_tensor(n)
    except (RuntimeError, OverflowError, ValueError, TypeError) as exc:  # beyond int64, or text
        if "overflow" not in str(exc).lower():
            raise TypeError(
                f"{name} must hold non-negative integers, got {type(n).__name__}"
            ) from None
        raise _too_large(name, float(np.max(np.asarray(n, dtype=object)))) from None
    if t.dtype == torch.bool:
        raise TypeError(f"{name} must hold non-negative integers, got a bool tensor")
    if not (t.is_floating_point() or t.dtype in _INT_DTYPES):
        raise TypeError(f"{name} must hold non-negative integers, got dtype {t.dtype}")
    t = _on_cpu(t, name)
    if t.is_floating_point():
        if not torch.isfinite(t).all() or (t != t.round()).any():
            raise ValueError(f"{name} must hold non-negative integers, got non-integer values")
    if t.numel() and bool((t < 0).any()):
        raise ValueError(f"{name} must hold non-negative integers, got a negative value")
    if t.numel() and float(t.max()) > MAX_COUNT:
        raise _too_large(name, float(t.max()))
    return t.long()
