r"""Adam on one value (a float or a tensor), the one optimiser written out in the library.

Networks are trained with ``torch.optim``. This class serves the studies that move a single
value (a Bernoulli logit, a design): there ``torch.optim.Adam`` costs more per step than the
whole gradient estimate (its first step also imports ``torch._dynamo``, seconds of start-up),
and a float needs no tensor at all. The update is ``torch.optim.Adam``'s, step for step
(Kingma & Ba, ICLR 2015):

.. math::
    m \leftarrow \beta_1 m + (1-\beta_1) g,\quad v \leftarrow \beta_2 v + (1-\beta_2) g^2,\quad
    x \leftarrow x \mp \frac{\eta}{1-\beta_1^k}\, \frac{m}{\sqrt{v}/\sqrt{1-\beta_2^k} + \epsilon}.

>>> opt = Adam(0.0, lr=0.01)
>>> round(opt.step(0.5), 6)  # the first step moves by lr against the gradient's sign
-0.01
"""

from __future__ import annotations

import math
from typing import Any, Generic, TypeVar

import torch

from stochgrad._checks import check_float

__all__ = ["Adam"]

V = TypeVar("V", float, torch.Tensor)


class Adam(Generic[V]):
    """Adam on one value.

    Args:
        value: the starting point (a float, or a tensor of any shape).
        lr: the learning rate (> 0).
        betas: the moments' decay rates, each in [0, 1).
        eps: added to the denominator.
        maximize: ascend instead of descend.

    Attributes:
        value: the current point.
    """

    def __init__(
        self,
        value: V,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        *,
        maximize: bool = False,
    ):
        self.lr = check_float("lr", lr, minimum=0.0, open_min=True)
        self.beta1 = check_float("betas[0]", betas[0], minimum=0.0, maximum=1.0, open_max=True)
        self.beta2 = check_float("betas[1]", betas[1], minimum=0.0, maximum=1.0, open_max=True)
        self.eps = check_float("eps", eps, minimum=0.0)
        self.maximize = bool(maximize)
        self.value: V = value.detach().clone() if isinstance(value, torch.Tensor) else float(value)
        zero = torch.zeros_like(self.value) if isinstance(self.value, torch.Tensor) else 0.0
        self.m: V = zero
        self.v: V = zero.clone() if isinstance(zero, torch.Tensor) else 0.0
        self.k = 0

    def step(self, grad: V) -> V:
        """Apply one update with gradient ``grad``; return the new value."""
        self.k += 1
        self.m = self.beta1 * self.m + (1.0 - self.beta1) * grad
        self.v = self.beta2 * self.v + (1.0 - self.beta2) * grad * grad
        bc1 = 1.0 - self.beta1**self.k
        bc2 = 1.0 - self.beta2**self.k
        denom = self.v**0.5 / math.sqrt(bc2) + self.eps
        move = (self.lr / bc1) * self.m / denom
        self.value = self.value + move if self.maximize else self.value - move
        return self.value

    def state_dict(self) -> dict[str, Any]:
        """The state, for a checkpoint (tensors and numbers)."""
        clone = (lambda t: t.clone()) if isinstance(self.value, torch.Tensor) else (lambda t: t)
        return {"value": clone(self.value), "m": clone(self.m), "v": clone(self.v), "k": self.k}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict`."""
        conv = (
            (lambda t: torch.as_tensor(t).clone())
            if isinstance(self.value, torch.Tensor)
            else float
        )
        self.value, self.m, self.v = conv(state["value"]), conv(state["m"]), conv(state["v"])
        self.k = int(state["k"])
