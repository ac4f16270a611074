r"""The Bernoulli-Bernoulli restricted Boltzmann machine: energy, free energy, conditionals, Gibbs.

Visible :math:`v \in \{0,1\}^V`, hidden :math:`h \in \{0,1\}^H`, weights :math:`W` [V, H],
biases :math:`b` [V], :math:`c` [H]:

.. math::

    E(v, h) = -v^\top W h - b^\top v - c^\top h, \qquad
    F(v) = -b^\top v - \sum_j \operatorname{softplus}(c_j + v^\top W_{:,j}).

>>> rbm = RBM(torch.zeros(3, 2), torch.zeros(3), torch.zeros(2))
>>> rbm.num_visible, rbm.num_hidden
(3, 2)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.nn.functional import softplus

from stochgrad._checks import check_float, check_int, check_torch_generator

__all__ = [
    "DTYPE",
    "RBM",
    "all_binary",
    "energy",
    "free_energy",
    "gibbs_step",
    "hidden_probs",
    "visible_probs",
]

#: Every tensor of the RBM code is float64.
DTYPE = torch.float64


@dataclass
class RBM:
    """Parameters of a Bernoulli-Bernoulli RBM (float64 tensors).

    Attributes:
        W: [V, H] weights.
        b: [V] visible biases.
        c: [H] hidden biases.

    Raises:
        ValueError: shapes that do not fit together, or non-finite entries.

    >>> rbm = RBM(torch.zeros(3, 2), torch.zeros(3), torch.zeros(2))
    >>> rbm.num_visible, rbm.num_hidden
    (3, 2)
    """

    W: Tensor
    b: Tensor
    c: Tensor

    def __post_init__(self) -> None:
        for name in ("W", "b", "c"):
            value = getattr(self, name)
            if not isinstance(value, Tensor):
                raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
            if value.is_complex() or value.dtype == torch.bool:
                raise TypeError(f"{name} must hold real numbers, got dtype {value.dtype}")
            if value.device != self.W.device:
                raise ValueError(
                    f"{name} must be on the device of W ({self.W.device}), got {value.device}"
                )
            setattr(self, name, value.to(DTYPE))
        if (
            self.W.ndim != 2
            or self.b.shape != (self.W.shape[0],)
            or self.c.shape != (self.W.shape[1],)
        ):
            raise ValueError(
                f"W must be [V, H], b [V] and c [H], got {tuple(self.W.shape)}, "
                f"{tuple(self.b.shape)} and {tuple(self.c.shape)}"
            )
        if not all(torch.isfinite(t).all() for t in (self.W, self.b, self.c)):
            raise ValueError("W, b and c must be finite")

    @property
    def num_visible(self) -> int:
        return int(self.W.shape[0])

    @property
    def num_hidden(self) -> int:
        return int(self.W.shape[1])

    def params(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(W, b, c)``."""
        return self.W, self.b, self.c

    def clone(self) -> RBM:
        return RBM(self.W.clone(), self.b.clone(), self.c.clone())

    @classmethod
    def init(
        cls,
        num_visible: int,
        num_hidden: int,
        *,
        generator: torch.Generator,
        std: float = 0.01,
        data: Tensor | None = None,
    ) -> RBM:
        r"""Weights :math:`\mathcal N(0, \mathrm{std}^2)`, hidden biases 0, visible biases 0 or
        :math:`\log(\bar v_i / (1 - \bar v_i))` of the data's means (Hinton 2010, section 8).

        Args:
            num_visible: V >= 1.
            num_hidden: H >= 1.
            generator: source of the random weights.
            std: standard deviation of the weights (> 0).
            data: [N, V] binary data for the visible biases (means clipped to [0.01, 0.99]).

        >>> RBM.init(4, 2, generator=torch.Generator().manual_seed(0)).W.shape
        torch.Size([4, 2])
        """
        num_visible = check_int("num_visible", num_visible, minimum=1)
        num_hidden = check_int("num_hidden", num_hidden, minimum=1)
        std = check_float("std", std, minimum=0.0, open_min=True)
        W = std * torch.randn(num_visible, num_hidden, generator=generator, dtype=DTYPE)
        b = torch.zeros(num_visible, dtype=DTYPE)
        if data is not None:
            data = _check_binary("data", data, num_visible)
            p = data.mean(0).clamp(0.01, 0.99)
            b = torch.log(p / (1 - p))
        return cls(W, b, torch.zeros(num_hidden, dtype=DTYPE))

    @classmethod
    def from_sklearn(cls, model: Any) -> RBM:
        """The RBM of a fitted :class:`sklearn.neural_network.BernoulliRBM`.

        Its ``components_`` is [H, V]; ``intercept_visible_`` and ``intercept_hidden_`` are the
        biases.
        """
        return cls(
            torch.as_tensor(np.asarray(model.components_).T.copy()),
            torch.as_tensor(np.asarray(model.intercept_visible_).copy()),
            torch.as_tensor(np.asarray(model.intercept_hidden_).copy()),
        )


def check_rbm(rbm: Any) -> RBM:
    """``rbm`` if it is an :class:`RBM`; ``TypeError`` naming it otherwise."""
    if not isinstance(rbm, RBM):
        raise TypeError(f"rbm must be an RBM, got {type(rbm).__name__}")
    return rbm


def _check_binary(name: str, x: Any, width: int, device: torch.device | None = None) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.is_complex():
        raise TypeError(f"{name} must hold 0 and 1, got a complex tensor")
    if device is not None and x.device != device:
        raise ValueError(f"{name} must be on the model's device ({device}), got {x.device}")
    if x.ndim != 2 or x.shape[1] != width:
        raise ValueError(f"{name} must be [N, {width}], got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one row")
    x = x.to(DTYPE)
    if not ((x == 0) | (x == 1)).all():
        raise ValueError(f"{name} must contain only 0 and 1")
    return x


def all_binary(n: int) -> Tensor:
    """All :math:`2^n` binary vectors of length ``n`` as a [2^n, n] float64 tensor (row ``i`` is
    ``i`` in binary, most significant bit first).

    >>> all_binary(2)
    tensor([[0., 0.],
            [0., 1.],
            [1., 0.],
            [1., 1.]], dtype=torch.float64)
    """
    n = check_int("n", n, minimum=0, maximum=24)
    bits = 2 ** torch.arange(n - 1, -1, -1)
    return ((torch.arange(2**n)[:, None] & bits) > 0).to(DTYPE)


def energy(rbm: RBM, v: Tensor, h: Tensor) -> Tensor:
    r""":math:`E(v, h) = -v^\top W h - b^\top v - c^\top h` per row of ``v`` [N, V] and ``h`` [N, H].

    >>> rbm = RBM(torch.ones(1, 1), torch.ones(1), torch.ones(1))
    >>> energy(rbm, torch.ones(1, 1), torch.ones(1, 1))
    tensor([-3.], dtype=torch.float64)
    """
    v, h = v.to(DTYPE), h.to(DTYPE)
    if (
        v.shape[:-1] != h.shape[:-1]
        or v.shape[-1] != rbm.num_visible
        or h.shape[-1] != rbm.num_hidden
    ):
        raise ValueError(
            f"v must be [N, {rbm.num_visible}] and h [N, {rbm.num_hidden}], "
            f"got {tuple(v.shape)} and {tuple(h.shape)}"
        )
    return -((v @ rbm.W) * h).sum(-1) - v @ rbm.b - h @ rbm.c


def free_energy(rbm: RBM, v: Tensor) -> Tensor:
    r""":math:`F(v) = -b^\top v - \sum_j \operatorname{softplus}(c_j + (v W)_j)`, so that
    :math:`p(v) \propto e^{-F(v)}`; ``v`` [N, V] -> [N].

    >>> rbm = RBM(torch.zeros(2, 1), torch.zeros(2), torch.zeros(1))
    >>> free_energy(rbm, torch.zeros(1, 2))  # -log 2
    tensor([-0.6931], dtype=torch.float64)
    """
    v = v.to(DTYPE)
    if v.ndim != 2 or v.shape[1] != rbm.num_visible:
        raise ValueError(f"v must be [N, {rbm.num_visible}], got {tuple(v.shape)}")
    return -(v @ rbm.b) - softplus(v @ rbm.W + rbm.c).sum(-1)


def hidden_probs(rbm: RBM, v: Tensor) -> Tensor:
    r""":math:`p(h_j = 1 \mid v) = \sigma(c_j + (v W)_j)`; [N, V] -> [N, H].

    >>> hidden_probs(RBM(torch.zeros(2, 1), torch.zeros(2), torch.zeros(1)), torch.ones(1, 2))
    tensor([[0.5000]], dtype=torch.float64)
    """
    return torch.sigmoid(v.to(DTYPE) @ rbm.W + rbm.c)


def visible_probs(rbm: RBM, h: Tensor) -> Tensor:
    r""":math:`p(v_i = 1 \mid h) = \sigma(b_i + (W h)_i)`; [N, H] -> [N, V].

    >>> visible_probs(RBM(torch.zeros(2, 1), torch.zeros(2), torch.zeros(1)), torch.ones(1, 1))
    tensor([[0.5000, 0.5000]], dtype=torch.float64)
    """
    return torch.sigmoid(h.to(DTYPE) @ rbm.W.T + rbm.b)


def gibbs_step(rbm: RBM, v: Tensor, *, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    r"""One block-Gibbs sweep :math:`h \sim p(h \mid v)`, :math:`v' \sim p(v' \mid h)`.

    The uniforms are drawn hidden first, then visible, each as one [N, width] block, so a run
    can be replayed exactly from the same generator.

    Returns:
        ``(v_new, h)``: [N, V] and [N, H] of 0./1.

    >>> g = torch.Generator().manual_seed(0)
    >>> v, h = gibbs_step(RBM.init(3, 2, generator=g), torch.zeros(5, 3), generator=g)
    >>> v.shape, h.shape
    (torch.Size([5, 3]), torch.Size([5, 2]))
    """
    check_rbm(rbm)
    check_torch_generator(generator)
    ph = hidden_probs(rbm, v)
    h = (torch.rand(ph.shape, generator=generator, dtype=DTYPE) < ph).to(DTYPE)
    pv = visible_probs(rbm, h)
    v_new = (torch.rand(pv.shape, generator=generator, dtype=DTYPE) < pv).to(DTYPE)
    return v_new, h
