r"""REBAR and RELAX: unbiased gradients of discrete expectations with a relaxation as control
variate (the conditional relaxed sample :math:`\tilde z \sim p(z \mid b)`), for any temperature,
scale and control-variate network; see :mod:`stochgrad.estimators.relaxed`.

References:
    Tucker, Mnih, Maddison, Lawson, Sohl-Dickstein (NeurIPS 2017), "REBAR"; Grathwohl, Choi,
    Wu, Roeder, Duvenaud (ICLR 2018), "Backpropagation through the void" (RELAX).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Distribution

from stochgrad import _core
from stochgrad._checks import check_bool, check_float, check_int, check_seed
from stochgrad.estimators._relaxation import (
    _check_eta,
    _check_temperature,
    _eval_differentiable,
    _finish,
    _grad_or_zeros,
    _Setup,
    _setup,
    _uniform,
)
from stochgrad.gradient_estimate import GradientEstimate, Params

__all__ = ["Relax", "rebar"]

#: The most hidden units of :class:`Relax`'s default network (``hidden * (inputs + 2)``
#: weights are built at the first call).
MAX_HIDDEN = 2**20


# ---------------------------------------------------------------------------------------------
# unbiased estimators: REBAR and RELAX
# ---------------------------------------------------------------------------------------------
@dataclass
class _Terms:
    per_phi: Tensor  # [n, *phi.shape] per-sample terms w.r.t. the stored parameter
    evaluations: int


def _control_variate_terms(
    f: Callable,
    s: _Setup,
    who: str,
    temperature,
    eta,
    net: Callable[[Tensor], Tensor] | None,
    include_f: bool,
    create_graph: bool,
) -> _Terms:
    r"""Per-sample :math:`[f(b) - c(\tilde z)] \nabla \log p(b) + \nabla c(z) - \nabla c(\tilde z)`.

    ``c(z) = eta * f(sigma(z)) [if include_f] + net(sigma(z)) [if net]``; all gradients are
    with respect to the per-sample copy of the stored parameter, in one backward pass each.
    With a factorised objective (``s.problem`` non-empty) ``f`` and ``c`` are ``[n, *B]``, the
    network sees each problem's relaxed sample separately, and each problem's score is weighted
    by its own ``f(b) - c(z~)``.
    """
    fam, n, g = s.fam, s.n, s.g
    phi_rep = fam.replicate(n)
    theta = fam.theta(phi_rep)
    shape = tuple(phi_rep.shape)
    u = _uniform(shape, phi_rep, g)
    v = _uniform(shape, phi_rep, g)
    z, y_hard = fam.hard(theta, u)
    z_tilde = fam.conditional(theta, y_hard, v)
    y, y_tilde = fam.relax(z, temperature), fam.relax(z_tilde, temperature)

    if include_f:
        x = torch.cat([fam.to_f(y_hard), fam.to_f(y), fam.to_f(y_tilde)])
        out = _eval_differentiable(f, x, 3 * n, who, s.problem)
        fb, fz, fzt = out[:n].detach(), out[n : 2 * n], out[2 * n :]
        c_z, c_zt = eta * fz, eta * fzt
        evaluations = 3 * n
    else:
        fb = _core.evaluate_f(f, fam.to_f(y_hard), n, shape=(n, *s.problem))
        c_z = c_zt = torch.zeros((n, *s.problem), dtype=theta.dtype, device=theta.device)
        evaluations = n
    if net is not None:
        m = s.num_problems
        r = net(torch.cat([y, y_tilde]).reshape(2 * n * m, -1))
        r = r.reshape(2 * n, *s.problem).to(theta.dtype)
        c_z, c_zt = c_z + r[:n], c_zt + r[n:]

    score = _grad_or_zeros(fam.log_prob(theta, y_hard, n).sum(), phi_rep)
    reparam = _grad_or_zeros((c_z - c_zt).sum(), phi_rep, create_graph=create_graph)
    coef = fb.to(theta.dtype) - (c_zt if create_graph else c_zt.detach())
    per_phi = s.view(coef, phi_rep) * score + reparam
    if not _core._all_finite(per_phi.detach()):
        # f is finite (checked): the control variate overflowed or its derivative did
        bad = int((~torch.isfinite(per_phi.detach())).sum())
        raise ValueError(
            f"{who}: {bad} per-sample term(s) are not finite in {theta.dtype}: the control "
            f"variate overflows with eta = {float(eta):.3g} and temperature = "
            f"{float(temperature):.3g}; use a smaller eta or a larger temperature"
        )
    return _Terms(per_phi, evaluations)


def rebar(
    f: Callable,
    dist_fn: Callable[..., Distribution],
    params: Params,
    *,
    num_samples: int,
    temperature: float = 0.5,
    eta: float = 1.0,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    batch_dims: int = 0,
) -> GradientEstimate:
    r"""REBAR: REINFORCE with the Concrete relaxation as control variate. Unbiased.

    .. math::

        \hat g = \big[f(b) - \eta f(\sigma_\lambda(\tilde z))\big] \nabla_\theta \log p(b;\theta)
          + \eta\, \nabla_\theta f(\sigma_\lambda(z)) - \eta\, \nabla_\theta f(\sigma_\lambda(\tilde z)),

    with :math:`z = z(\theta, u)` the reparameterised noisy logits, :math:`b = H(z)` the exact
    sample and :math:`\tilde z = \tilde z(\theta, v, b) \sim p(z \mid b)` the conditional relaxed
    sample (``b`` held fixed when differentiating). Unbiased for every temperature
    :math:`\lambda` and scale :math:`\eta`; they only change the variance (see :class:`Relax` to
    learn them).

    Args:
        f: differentiable torch function, batch ``[m, ...]`` -> ``[m]``. It is called once on
            ``3n`` rows: the ``n`` exact samples, then their relaxations :math:`\sigma(z)` and
            :math:`\sigma(\tilde z)`; rows must be evaluated independently. ``[m, *B]`` with
            ``batch_dims``.
        dist_fn: ``dist_fn(*params)`` -> ``Bernoulli``, ``Categorical`` or ``OneHotCategorical``
            (``logits`` or ``probs``, any batch shape, optionally ``Independent``).
        params: a tensor or a tuple of tensors.
        num_samples: number of samples ``n`` (with ``1``, ``variance`` and ``stderr`` are NaN
            and a :class:`~stochgrad.SingleSampleWarning` is issued).
        temperature: :math:`\lambda > 0`.
        eta: the control-variate scale :math:`\eta`.
        generator: explicit randomness (``u`` then ``v``, each
            ``torch.rand((n, *stored_param.shape))``).
        seed: shorthand for a generator seeded with ``seed`` (instead of ``generator``).
        batch_dims: how many leading batch dimensions of the distribution index independent
            problems :math:`B` (default ``0``). With ``k > 0`` ``f`` returns ``[m, *B]``, the
            value of problem ``b`` depending only on its own slice ``x[:, b]``; both
            :math:`f(b)` and the control variate :math:`\eta f(\sigma_\lambda(\tilde z))` that
            weight a problem's score are that problem's own, and the estimate is of the gradient
            of :math:`\sum_b \mathbb E[f_b]`.

    Returns:
        :class:`~stochgrad.estimate.GradientEstimate` with ``method="rebar"``,
        ``evaluations = 3n``.

    Raises:
        ValueError: temperature not > 0, an unsupported distribution, or ``f`` not
            differentiable (the message names ``score_function`` and ``disarm``).

    >>> import torch
    >>> est = rebar(lambda b: (b - 0.45) ** 2,
    ...             lambda lg: torch.distributions.Bernoulli(logits=lg),
    ...             torch.tensor(0.0), num_samples=1000, seed=0)
    >>> est.method, est.biased, est.evaluations
    ('rebar', False, 3000)

    Reference: Tucker, Mnih, Maddison, Lawson, Sohl-Dickstein (NeurIPS 2017), "REBAR: low-variance,
    unbiased gradient estimates for discrete latent variable models", Eq. (5) and Appendix.
    """
    lam = _check_temperature(temperature)
    eta_ = _check_eta(eta)
    s = _setup(f, dist_fn, params, num_samples, generator, seed, "rebar", batch_dims)
    terms = _control_variate_terms(f, s, "rebar", lam, eta_, None, True, False)
    return _finish(
        s,
        terms.per_phi,
        "rebar",
        False,
        terms.evaluations,
        {"temperature": float(lam), "eta": eta_},
    )


class _MLP(nn.Module):
    r"""``tanh`` MLP with one hidden layer on the centred relaxed sample ``2 y - 1``.

    Initialised from its own generator only (``nn.Linear`` would draw from the global RNG):
    hidden layer uniform in :math:`\pm 1/\sqrt{D}` as ``nn.Linear`` does, read-out zero so that
    RELAX starts as REBAR and the network grows from there.
    """

    def __init__(self, inputs: int, hidden: int, dtype: torch.dtype, generator: torch.Generator):
        super().__init__()
        bound = 1.0 / math.sqrt(inputs)

        def uniform(*shape: int) -> nn.Parameter:
            t = torch.empty(shape, dtype=dtype).uniform_(-bound, bound, generator=generator)
            return nn.Parameter(t)

        self.w1, self.b1 = uniform(hidden, inputs), uniform(hidden)
        self.w2 = nn.Parameter(torch.zeros(1, hidden, dtype=dtype))
        self.b2 = nn.Parameter(torch.zeros(1, dtype=dtype))

    def forward(self, y: Tensor) -> Tensor:
        h = torch.tanh(F.linear(2.0 * y - 1.0, self.w1, self.b1))
        return F.linear(h, self.w2, self.b2).squeeze(-1)


class Relax:
    r"""RELAX: an unbiased estimator with a learned control variate, trained to cut its variance.

    .. math::

        \hat g = \big[f(b) - c_\phi(\tilde z)\big] \nabla_\theta \log p(b;\theta)
          + \nabla_\theta c_\phi(z) - \nabla_\theta c_\phi(\tilde z), \qquad
        c_\phi(z) = \eta\, f(\sigma_\lambda(z)) + r_\rho(\sigma_\lambda(z)),

    unbiased for every :math:`\phi = (\rho, \lambda, \eta)`. Because :math:`\mathbb{E}[\hat g]`
    does not depend on :math:`\phi`, :math:`\nabla_\phi \mathbb{E}[\hat g^2] = \nabla_\phi
    \operatorname{Var}[\hat g]`; each call (with ``train=True``) takes one Adam step on
    :math:`\phi` along the gradient of the mean squared per-sample term
    :math:`\frac1n \sum_i \lVert \hat g_i \rVert^2`, differentiated through the estimator
    (``create_graph=True``).

    The default :math:`r_\rho` is the paper's toy network: one hidden layer of ``hidden=10``
    ``tanh`` units on the flattened relaxed sample (the relaxed one-hot for categoricals), built
    at the first call, with a zero read-out so that training starts from REBAR. ``hidden=0``
    drops it (REBAR with learned temperature and :math:`\eta`); ``include_f=False`` drops the
    :math:`\eta f` term, so that ``f`` may be a black box (the network alone is the control
    variate). The variance minimised is that of the per-sample gradient with respect to
    ``params`` when the chain rule is formed as a small Jacobian (at most 64 distribution
    parameters), otherwise that with respect to the distribution's stored logits or probs
    (``info["variance_objective"]`` says which).

    Args:
        net: a module mapping ``[m, D]`` relaxed samples to ``[m]`` (or ``[m, 1]``); default the
            MLP above.
        hidden: hidden units of the default MLP (``0``: no network; at most
            :data:`MAX_HIDDEN`).
        temperature: initial :math:`\lambda > 0` (learned as :math:`\log \lambda`).
        eta: initial :math:`\eta` (learned).
        lr: Adam step size for :math:`\phi`.
        include_f: include :math:`\eta f(\sigma_\lambda(z))` in :math:`c_\phi`.
        seed: seed of the default network's initialisation.

    >>> import torch
    >>> relax = Relax()
    >>> dist_fn = lambda lg: torch.distributions.Bernoulli(logits=lg)
    >>> est = relax(lambda b: (b - 0.499) ** 2, dist_fn, torch.tensor(0.0),
    ...             num_samples=16, seed=0)
    >>> est.method, est.biased, relax.steps
    ('relax', False, 1)

    Reference: Grathwohl, Choi, Wu, Roeder, Duvenaud (ICLR 2018), "Backpropagation through the
    void: optimizing control variates for black-box gradient estimation", Alg. 1 and Sec. 6.1.
    """

    def __init__(
        self,
        net: nn.Module | None = None,
        *,
        hidden: int = 10,
        temperature: float = 0.5,
        eta: float = 1.0,
        lr: float = 0.01,
        include_f: bool = True,
        seed: int = 0,
    ):
        t0 = _check_temperature(temperature)
        if isinstance(t0, Tensor):
            t0 = float(t0)
        self._init_temperature = float(t0)
        self._init_eta = _check_eta(eta)
        hidden = check_int("hidden", hidden, minimum=0, maximum=MAX_HIDDEN)
        lr = check_float("lr", lr, minimum=0.0, open_min=True)
        include_f = check_bool("include_f", include_f)
        seed = check_seed("seed", seed)
        if net is not None and not callable(net):
            raise TypeError(f"net must be a callable module, got {type(net).__name__}")
        if not include_f and net is None and hidden == 0:
            raise ValueError("include_f=False needs a network (hidden > 0 or net=...)")
        self.net = net
        self.hidden = hidden
        self.lr = lr
        self.include_f = include_f
        self.seed = seed
        self.steps = 0
        self.log_temperature: Tensor | None = None
        self.eta: Tensor | None = None
        self.optimizer: torch.optim.Adam | None = None
        self._inputs: int | None = None

    # -- state ---------------------------------------------------------------------------------
    def _build(self, inputs: int, like: Tensor) -> None:
        if self._inputs is not None:
            if inputs != self._inputs:
                raise ValueError(
                    f"this Relax was built for relaxed samples of {self._inputs} values, got "
                    f"{inputs}; use one Relax per problem"
                )
            return
        self._inputs = inputs
        dtype, device = like.dtype, like.device
        if self.net is None and self.hidden > 0:
            # initialised on the CPU from its own seed (reproducible on any device), then moved
            gen = torch.Generator().manual_seed(self.seed)
            self.net = _MLP(inputs, self.hidden, dtype, gen).to(device)
        self.log_temperature = torch.tensor(
            math.log(self._init_temperature), dtype=dtype, device=device, requires_grad=True
        )
        self.eta = torch.tensor(self._init_eta, dtype=dtype, device=device, requires_grad=True)
        self.optimizer = torch.optim.Adam(self.parameters(), lr=self.lr)

    def parameters(self) -> list[Tensor]:
        """The trained tensors: log-temperature, eta (if used) and the network's parameters."""
        if self.log_temperature is None:
            return []
        out = [self.log_temperature]
        if self.include_f:
            out.append(self.eta)
        if isinstance(self.net, nn.Module):
            out.extend(p for p in self.net.parameters() if p.requires_grad)
        return out

    @property
    def temperature(self) -> float:
        """The current temperature :math:`\\lambda`."""
        if self.log_temperature is None:
            return self._init_temperature
        return float(self.log_temperature.detach().exp())

    @property
    def eta_value(self) -> float:
        """The current scale :math:`\\eta` of :math:`f(\\sigma_\\lambda(z))` in the control variate."""
        return self._init_eta if self.eta is None else float(self.eta.detach())

    # -- the estimator -------------------------------------------------------------------------
    def __call__(
        self,
        f: Callable,
        dist_fn: Callable[..., Distribution],
        params: Params,
        *,
        num_samples: int,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        train: bool = True,
        batch_dims: int = 0,
    ) -> GradientEstimate:
        r"""RELAX estimate of :math:`\nabla_\theta \mathbb{E}_{p(b;\theta)}[f(b)]`, then one step on :math:`\phi`.

        Args:
            f: batch ``[m, ...]`` -> ``[m]``; differentiable unless ``include_f=False``
                (called once on ``3n`` rows as in :func:`rebar`, or on the ``n`` samples only).
            dist_fn: ``dist_fn(*params)`` -> ``Bernoulli``, ``Categorical`` or
                ``OneHotCategorical``.
            params: a tensor or a tuple of tensors.
            num_samples: number of samples ``n`` (with ``1``, ``variance`` and ``stderr`` are
                NaN and a :class:`~stochgrad.SingleSampleWarning` is issued).
            generator: explicit randomness.
            seed: shorthand for a generator seeded with ``seed`` (instead of ``generator``).
            train: take one optimiser step on the control variate after estimating.
            batch_dims: how many leading batch dimensions of the distribution index
                independent problems :math:`B` (default ``0``). With ``k > 0`` ``f`` returns
                ``[m, *B]`` (problem ``b``'s value depending only on ``x[:, b]``), the control
                variate is per problem, the network (shared by all problems) sees one problem's
                relaxed sample at a time, and each problem's score is weighted by its own
                :math:`f_b(b) - c_\phi(\tilde z_b)`. A ``Relax`` used with one problem size
                must keep it (its network's input size is fixed at the first call).

        Returns:
            :class:`~stochgrad.estimate.GradientEstimate` with ``method="relax"``, computed with
            the control variate as it was before the step; ``info`` holds the temperature,
            ``eta``, the ``variance_loss`` and which gradient it measures.
        """
        train = check_bool("train", train)
        s = _setup(f, dist_fn, params, num_samples, generator, seed, "relax", batch_dims)
        phi = s.fam.phi
        self._build(int(phi.numel()) // s.num_problems, phi)
        temperature = self.log_temperature.exp().to(phi.dtype)
        eta = self.eta.to(phi.dtype)
        net = self._net_fn()
        terms = _control_variate_terms(
            f, s, "relax", temperature, eta, net, self.include_f, create_graph=train
        )
        info: dict[str, Any] = {"temperature": self.temperature, "eta": self.eta_value}
        if s.problem:
            info["batch_dims"] = len(s.problem)
        parts = None
        if train:
            per = _core.chain_to_params([phi], [terms.per_phi], s.leaves, s.n)
            if all(p.requires_grad for p in per):
                objective, parts = "params", [p.detach() for p in per]
            else:  # the chain rule went through batched VJPs, which keep no graph
                per, objective = [terms.per_phi], "distribution parameters"
            loss = sum((p.reshape(s.n, -1) ** 2).sum(1).mean() for p in per)
            if loss.requires_grad:  # else no term depends on the control variate's parameters
                trained = self.parameters()
                grads = torch.autograd.grad(loss, trained, allow_unused=True)
                for p, gr in zip(self.parameters(), grads, strict=True):
                    p.grad = None if gr is None else gr.detach()
                self.optimizer.step()
            self.steps += 1
            info.update(variance_loss=float(loss.detach()), variance_objective=objective)
        if parts is None:
            parts = _core.chain_to_params([phi], [terms.per_phi.detach()], s.leaves, s.n)
        return GradientEstimate.from_per_sample(
            _core.pack(parts, s.is_tuple),
            method="relax",
            evaluations=terms.evaluations,
            info=info,
        )

    def _net_fn(self) -> Callable[[Tensor], Tensor] | None:
        net = self.net
        if net is None:
            return None
        p = next(iter(net.parameters()), None) if isinstance(net, nn.Module) else None

        def run(y: Tensor) -> Tensor:
            out = net(y if p is None else y.to(p.dtype))
            return out.reshape(y.shape[0])

        return run

    def __repr__(self) -> str:
        return (
            f"Relax(temperature={self.temperature:.4g}, eta={self.eta_value:.4g}, "
            f"hidden={self.hidden}, include_f={self.include_f}, steps={self.steps})"
        )
