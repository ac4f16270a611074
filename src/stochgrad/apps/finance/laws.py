r"""Path laws: geometric Brownian motion and Heston as ``torch.distributions`` the core accepts.

A draw is a whole path on the dates :math:`t_i = i\,\Delta t`, :math:`\Delta t = T/m`,
:math:`i = 0..m` (``steps = m``), column 0 being the spot :math:`S_0` (deterministic):

* :class:`GBMPaths`: ``[n, steps + 1]``, exact in log space with dividend yield :math:`q`,

  .. math:: \ln S_{t_{i+1}} = \ln S_{t_i} + (r - q - \tfrac12\sigma^2)\Delta t
            + \sigma\sqrt{\Delta t}\,Z_{i+1};

* :class:`HestonPaths`: ``[n, steps + 1, 2]``, the price ``[..., 0]`` and the (untruncated)
  variance ``[..., 1]`` of the full-truncation Euler scheme (Lord, Koekkoek & van Dijk 2010),
  :math:`v^+ = \max(v, 0)`,

  .. math::

      v_{i+1} = v_i + \kappa(\theta - v_i^+)\Delta t + \xi\sqrt{v_i^+\Delta t}\,Z^v_i, \quad
      \ln S_{i+1} = \ln S_i + (r - q - \tfrac12 v_i^+)\Delta t + \sqrt{v_i^+\Delta t}\,
      (\rho Z^v_i + \sqrt{1-\rho^2}\, Z^\perp_i).

Each has ``rsample`` (differentiable in every parameter: the pathwise estimator), ``log_prob``
of a path (the score-function estimator; for Heston the log-density of the discretised scheme
above) and a closed-form score registered with the core (:func:`stochgrad._dists.register_score`)
so that :func:`stochgrad.score_function` takes its fast path. So a Greek of any payoff of the path
is one call of a core estimator:

>>> import torch, stochgrad as sg
>>> law = lambda s0: GBMPaths(s0, 0.2, 0.05, 0.0, 1.0, steps=1)
>>> call = lambda x: torch.relu(x[:, -1] - 100.0)
>>> est = sg.pathwise(call, law, torch.tensor(100.0, dtype=torch.float64), num_samples=20_000,
...                   seed=0)
>>> abs(0.951229 * float(est.grad) - 0.6368) < 5 * 0.951229 * float(est.stderr)  # QuantLib's delta
True

``noise=`` fixes the standard normals (``[N, steps]``, Heston ``[N, steps, 2]``): the law then
draws them in order (``sample((k,))`` takes the next ``k`` rows; asking for more than ``N`` in all
raises ``ValueError``), so that every estimator built from the same noise sees the same paths
(common random numbers), and the normals can come from any generator (numpy's ziggurat is the
fastest float64 sampler on CPUs). A law with noise serves one estimator call: build a fresh one
(as ``dist_fn`` does) for each.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.autograd.forward_ad as fwad
from torch import Tensor
from torch.distributions import Distribution, constraints

from stochgrad import _core, _dists

__all__ = ["GBMPaths", "HestonPaths"]

_LOG_2PI = math.log(2.0 * math.pi)


def _dtype_of(values: Sequence[object], noise: Tensor | None) -> torch.dtype:
    """The noise's dtype, else the first floating tensor parameter's, else float64."""
    if noise is not None:
        return noise.dtype
    for v in values:
        if isinstance(v, Tensor) and v.is_floating_point():
            return v.dtype
    return torch.float64


def _scalar(name: str, value: object, dtype: torch.dtype) -> Tensor:
    if isinstance(value, bool) or not isinstance(value, (Tensor, int, float)):
        raise TypeError(f"{name} must be a number or a 0-dim tensor, got {type(value).__name__}")
    t = torch.as_tensor(value, dtype=dtype)  # the same tensor when it already has the dtype
    if t.dim() != 0:
        raise ValueError(f"{name} must be a scalar (0-dim tensor), got shape {list(t.shape)}")
    return t


def _check_noise(noise: object, shape: tuple[int, ...]) -> Tensor | None:
    if noise is None:
        return None
    if not isinstance(noise, Tensor) or not noise.is_floating_point():
        raise TypeError(f"noise must be a floating-point tensor, got {type(noise).__name__}")
    if noise.dim() != 1 + len(shape) or tuple(noise.shape[1:]) != shape or noise.shape[0] < 1:
        raise ValueError(
            f"noise must have shape [N, {', '.join(map(str, shape))}] (standard normals, one row "
            f"per path), got {list(noise.shape)}"
        )
    return noise.detach()


def _constant(t: Tensor) -> bool:
    """Whether ``t`` carries no derivative here: no autograd (when recording), forward-mode or
    ``torch.func`` tangent."""
    if (t.requires_grad and torch.is_grad_enabled()) or fwad.unpack_dual(t).tangent is not None:
        return False
    wrapped = getattr(torch._C._functorch, "is_functorch_wrapped_tensor", None)
    return wrapped is not None and not wrapped(t)


def _sqrt_pos(u: Tensor) -> Tensor:
    """:math:`\\sqrt{u}` for :math:`u \\ge 0` with a finite derivative everywhere (0 at 0)."""
    tiny = torch.finfo(u.dtype).tiny
    return torch.where(u > 0, u.clamp_min(tiny).sqrt(), torch.zeros((), dtype=u.dtype))


class _PathLaw(Distribution):
    """Shared machinery: sample shapes, the noise stream, the cache of the last draw."""

    has_rsample = True
    _noise_shape: tuple[int, ...]

    def _setup(self, steps: int, maturity: float, noise: object, channels: int) -> None:
        if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
            raise ValueError(f"steps must be an int >= 1, got {steps!r}")
        self._noise_shape = (steps,) if channels == 1 else (steps, channels)
        if isinstance(maturity, Tensor):
            maturity = float(maturity)
        if not isinstance(maturity, (int, float)) or not (0 < maturity < math.inf):
            raise ValueError(f"maturity must be a finite number > 0, got {maturity!r}")
        self.steps = steps
        self.maturity = float(maturity)
        self.dt = self.maturity / steps
        self.noise = _check_noise(noise, self._noise_shape)
        self._cursor = 0
        self._all: tuple[bool, Tensor] | None = None  # (grad mode, every path of the noise)
        self._drawn: tuple[Tensor, Tensor] | None = None  # (last sample, its normals)

    def _take(self, k: int) -> tuple[int, int]:
        """The rows ``[start, stop)`` of the noise for the next ``k`` draws."""
        start = self._cursor
        if start + k > self.noise.shape[0]:
            raise ValueError(
                f"noise: the law holds {self.noise.shape[0]} draws and {start} are used; "
                f"{k} more were asked for (build a fresh law for each estimator call)"
            )
        self._cursor = start + k
        return start, start + k

    def _draw(
        self,
        sample_shape: Sequence[int],
        fast: bool,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Draws ``[*sample_shape, *event_shape]``; remembers them with their normals."""
        shape = tuple(torch.Size(sample_shape))
        x, z = self._draw_flat(math.prod(shape), fast, generator)
        if tuple(x.shape) != (*shape, *self.event_shape):  # e.g. sample_shape () or (a, b)
            x = x.reshape(*shape, *self.event_shape)
        self._drawn = (x, z)
        return x

    def _draw_flat(
        self, k: int, fast: bool, generator: torch.Generator | None
    ) -> tuple[Tensor, Tensor]:
        if not fast and not torch.is_grad_enabled():  # no derivative wanted: the fast kernels
            fast = all(_constant(getattr(self, n)) for n in self.arg_constraints)
        if self.noise is None:
            shape, dtype, device = (k, *self._noise_shape), self.spot.dtype, self.spot.device
            z = _core.randn(shape, generator, dtype=dtype, device=device)
            return (self._fast_paths(z) if fast else self._paths(z)), z
        start, stop = self._take(k)
        if start == 0 and stop == self.noise.shape[0]:  # the whole noise at once
            z = self.noise
            return (self._fast_paths(z) if fast else self._paths(z)), z
        # served in pieces (the pathwise estimator redraws in chunks): every path computed once
        grad = not fast
        if self._all is None or self._all[0] != grad:
            full = self._fast_paths(self.noise) if fast else self._paths(self.noise)
            self._all = (grad, full)
        return self._all[1][start:stop], self.noise[start:stop]

    def rsample(self, sample_shape: Sequence[int] = torch.Size()) -> Tensor:
        """Paths differentiable in every parameter (normals from torch's global generator, or
        the next rows of ``noise``)."""
        return self._draw(sample_shape, fast=False)

    def sample(self, sample_shape: Sequence[int] = torch.Size()) -> Tensor:
        """Paths without gradient (the same numbers as :meth:`rsample`)."""
        with torch.no_grad():
            return self._draw(sample_shape, fast=True)

    def _floats(self, *names: str) -> list[float]:
        return [float(getattr(self, n).detach()) for n in names]

    def normals_of(self, x: Tensor) -> Tensor | None:
        """The standard normals that made ``x`` if it is this law's last draw, else ``None``."""
        if self._drawn is not None and x is self._drawn[0]:
            return self._drawn[1]
        return None

    def prices(self, x: Tensor) -> Tensor:
        """The price paths ``[..., steps + 1]`` of draws ``x``."""
        raise NotImplementedError

    # subclasses: _paths (differentiable), _fast_paths (no grad), log_prob


class GBMPaths(_PathLaw):
    r"""Geometric Brownian motion with a dividend yield on ``steps`` equal steps: ``[n, steps + 1]``.

    Args:
        spot: :math:`S_0 > 0`.
        vol: volatility :math:`\sigma > 0`.
        rate: risk-free rate :math:`r`.
        dividend: continuous dividend yield :math:`q` (the drift is :math:`r - q`).
        maturity: :math:`T > 0` (years).
        steps: number of equal steps :math:`m` (1: the terminal value only).
        noise: optional fixed standard normals ``[N, steps]`` drawn in order (see the module).
        validate_args: as in ``torch.distributions``.

    ``log_prob(x)`` is the density of :math:`S_{t_1..t_m}` given :math:`S_0` = ``spot`` (column 0
    of ``x`` is not read), :math:`\sum_i [-\tfrac12 Z_i^2 - \ln(\sigma\sqrt{2\pi\Delta t}) - \ln
    S_{t_i}]` with :math:`Z_i = (\ln(S_{t_i}/S_{t_{i-1}}) - (r - q - \sigma^2/2)\Delta t) /
    (\sigma\sqrt{\Delta t})`. Its score in closed form (registered with the core):
    :math:`\partial_{S_0} = Z_1/(S_0\sigma\sqrt{\Delta t})`, :math:`\partial_\sigma = \sum_i
    [(Z_i^2-1)/\sigma - Z_i\sqrt{\Delta t}]`, :math:`\partial_r = -\partial_q = \sqrt{\Delta t}
    \sum_i Z_i/\sigma`.

    >>> law = GBMPaths(100.0, 0.2, 0.05, 0.02, 1.0, steps=4)
    >>> x = law.sample((3,))
    >>> tuple(x.shape), bool((x[:, 0] == 100.0).all())
    ((3, 5), True)

    Reference: Glasserman (2004), *Monte Carlo Methods in Financial Engineering*, Sec. 3.2, 7.3.
    """

    arg_constraints = {
        "spot": constraints.positive,
        "vol": constraints.positive,
        "rate": constraints.real,
        "dividend": constraints.real,
    }
    support = constraints.independent(constraints.positive, 1)

    def __init__(
        self,
        spot: Tensor | float,
        vol: Tensor | float,
        rate: Tensor | float,
        dividend: Tensor | float = 0.0,
        maturity: float = 1.0,
        steps: int = 1,
        *,
        noise: Tensor | None = None,
        validate_args: bool | None = None,
    ):
        dtype = _dtype_of((spot, vol, rate, dividend), noise)
        self.spot = _scalar("spot", spot, dtype)
        self.vol = _scalar("vol", vol, dtype)
        self.rate = _scalar("rate", rate, dtype)
        self.dividend = _scalar("dividend", dividend, dtype)
        self._setup(steps, maturity, noise, 1)
        super().__init__(torch.Size(), torch.Size((self.steps + 1,)), validate_args)

    def _drift(self) -> Tensor:
        return (self.rate - self.dividend - 0.5 * self.vol * self.vol) * self.dt

    def _paths(self, z: Tensor) -> Tensor:
        incr = self._drift() + self.vol * math.sqrt(self.dt) * z
        logs = torch.log(self.spot) + torch.cumsum(incr, dim=-1)
        return torch.cat([self.spot.expand(z.shape[0], 1), torch.exp(logs)], dim=-1)

    def _fast_paths(self, z: Tensor) -> Tensor:
        """Time-major, in place, with Python scalars: a view ``[k, m + 1]`` of ``[m + 1, k]``."""
        s0, vol = float(self.spot.detach()), float(self.vol.detach())
        mu = float(self._drift().detach())
        b = vol * math.sqrt(self.dt)
        buf = torch.empty((self.steps + 1, z.shape[0]), dtype=z.dtype, device=z.device)
        start = torch.tensor(math.log(s0) + mu, dtype=z.dtype, device=z.device)
        if self.steps == 1:  # ln S_T = (ln S0 + mu) + b z in one pass, then exp
            torch.add(start, z[:, 0], alpha=b, out=buf[1])
        else:
            torch.add(torch.tensor(mu, dtype=z.dtype), z.T, alpha=b, out=buf[1:])
            buf[1].add_(math.log(s0))
            buf[1:].cumsum_(0)
        buf[1:].exp_()
        buf[0].fill_(s0)
        return buf.T

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        logs = torch.log(value[..., 1:])
        prev = torch.cat([torch.log(self.spot).expand(*logs.shape[:-1], 1), logs[..., :-1]], -1)
        sd = self.vol * math.sqrt(self.dt)
        z = (logs - prev - self._drift()) / sd
        per_step = -0.5 * z * z - torch.log(sd) - 0.5 * _LOG_2PI - logs
        return per_step.sum(-1)

    def normals(self, x: Tensor) -> Tensor:
        """The standard normals :math:`Z_i` of paths ``x`` (from the cache for the last draw)."""
        z = self.normals_of(x)
        if z is not None:
            return z
        s0, vol = self.spot.detach(), self.vol.detach()
        logs = torch.log(x[..., 1:])
        prev = torch.cat([torch.log(s0).expand(*logs.shape[:-1], 1), logs[..., :-1]], -1)
        return (logs - prev - self._drift().detach()) / (vol * math.sqrt(self.dt))

    def prices(self, x: Tensor) -> Tensor:
        return x

    def spot_scores(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r""":math:`\partial_{S_0}\ln p(x) = Z_1/(S_0\sigma\sqrt{\Delta t})` and its derivative
        :math:`\partial^2_{S_0}\ln p(x) = -Z_1/(S_0^2\sigma\sqrt{\Delta t}) - 1/(S_0^2\sigma^2
        \Delta t)` per path (the spot enters the first step only)."""
        z1 = self.normals(x).reshape(-1, self.steps)[:, 0]
        s0, sd = float(self.spot.detach()), float(self.vol.detach()) * math.sqrt(self.dt)
        return z1 * (1.0 / (s0 * sd)), z1 * (-1.0 / (s0 * s0 * sd)) - 1.0 / (s0 * sd) ** 2


def _gbm_score(d: GBMPaths, x: Tensor) -> list[tuple[Tensor, Tensor]]:
    """Closed-form score of :class:`GBMPaths` w.r.t. the parameters that require a gradient."""
    z = d.normals(x)
    if z.dim() != 2:
        z = z.reshape(-1, d.steps)
    vol = float(d.vol.detach())
    sdt = math.sqrt(d.dt)
    out = []
    if d.spot.requires_grad:
        out.append((d.spot, z[:, 0] * (1.0 / (float(d.spot.detach()) * vol * sdt))))
    if d.vol.requires_grad:
        out.append((d.vol, ((z * z - 1.0) / vol - z * sdt).sum(-1)))
    if d.rate.requires_grad or d.dividend.requires_grad:
        total = z.sum(-1) * (sdt / vol)
        if d.rate.requires_grad:
            out.append((d.rate, total))
        if d.dividend.requires_grad:
            out.append((d.dividend, -total))
    return out


class HestonPaths(_PathLaw):
    r"""Heston by full-truncation Euler on ``steps`` equal steps: draws ``[n, steps + 1, 2]``.

    ``x[..., 0]`` is the price path (column 0 the spot), ``x[..., 1]`` the untruncated variance
    (column 0 is :math:`v_0`).

    Args:
        spot: as in :class:`GBMPaths`.
        rate: as in :class:`GBMPaths`.
        dividend: as in :class:`GBMPaths`.
        maturity: as in :class:`GBMPaths`.
        steps: as in :class:`GBMPaths`.
        v0: initial variance.
        kappa: mean reversion.
        theta: long-run variance.
        xi: volatility of variance.
        rho: correlation (:math:`|\rho| < 1`).
        noise: optional fixed standard normals ``[N, steps, 2]`` (``[..., 0]`` drives the
            variance, ``[..., 1]`` the independent part of the price), drawn in order.
        validate_args: as in ``torch.distributions``.

    ``log_prob(x)`` is the log-density of the scheme: given :math:`(S_i, v_i)` with
    :math:`v_i^+ > 0` the next :math:`(v_{i+1}, \ln S_{i+1})` is bivariate Gaussian (standard
    deviations :math:`\xi\sqrt{v_i^+\Delta t}` and :math:`\sqrt{v_i^+\Delta t}`, correlation
    :math:`\rho`); a step from :math:`v_i \le 0` is deterministic (a point mass, contributing 0).
    So the score is that of a density only for parameters that do not move those point masses:
    the spot and :math:`v_0` (they enter the first step only, where :math:`v_0 > 0`), and
    :math:`\xi`, :math:`\rho`. The registered closed form covers the spot and :math:`v_0`
    (:math:`\partial_{S_0} \ln p = Z^\perp_1/(S_0\sqrt{(1-\rho^2)v_0\Delta t})`); the rate,
    dividend, :math:`\kappa` and :math:`\theta` are refused with a ``ValueError`` (use the
    pathwise estimator).

    >>> law = HestonPaths(100.0, 0.03, 0.0, 0.04, 1.5, 0.04, 0.5, -0.7, 1.0, steps=8)
    >>> tuple(law.sample((2,)).shape)
    (2, 9, 2)

    Reference: Lord, Koekkoek & van Dijk (2010), "A comparison of biased simulation schemes for
    stochastic volatility models", Quantitative Finance 10.
    """

    arg_constraints = {
        "spot": constraints.positive,
        "rate": constraints.real,
        "dividend": constraints.real,
        "v0": constraints.positive,
        "kappa": constraints.positive,
        "theta": constraints.positive,
        "xi": constraints.positive,
        "rho": constraints.interval(-1.0, 1.0),
    }
    support = constraints.independent(constraints.real, 2)

    def __init__(
        self,
        spot: Tensor | float,
        rate: Tensor | float,
        dividend: Tensor | float,
        v0: Tensor | float,
        kappa: Tensor | float,
        theta: Tensor | float,
        xi: Tensor | float,
        rho: Tensor | float,
        maturity: float = 1.0,
        steps: int = 100,
        *,
        noise: Tensor | None = None,
        validate_args: bool | None = None,
    ):
        values = (spot, rate, dividend, v0, kappa, theta, xi, rho)
        dtype = _dtype_of(values, noise)
        names = ("spot", "rate", "dividend", "v0", "kappa", "theta", "xi", "rho")
        for name, v in zip(names, values, strict=True):
            setattr(self, name, _scalar(name, v, dtype))
        self._setup(steps, maturity, noise, 2)
        super().__init__(torch.Size(), torch.Size((self.steps + 1, 2)), validate_args)
        if self._validate_args and not bool(self.rho.detach().abs() < 1.0):
            raise ValueError(f"rho must be in (-1, 1), got {float(self.rho)}")

    def _paths(self, z: Tensor) -> Tensor:
        zt = z.permute(1, 2, 0)  # [m, 2, k]: time-major
        if all(_constant(getattr(self, n)) for n in ("v0", "kappa", "theta", "xi")):
            var = self._fast_variance(zt)  # no derivative to carry: the in-place loop
        else:
            var = self._variance(zt)
        vp = var[:-1].clamp_min(0.0)
        rho_bar = torch.sqrt(1.0 - self.rho * self.rho)
        shock = self.rho * zt[:, 0] + rho_bar * zt[:, 1]
        dt = self.dt
        incr = (self.rate - self.dividend) * dt - (0.5 * dt) * vp + _sqrt_pos(vp * dt) * shock
        log_rel = torch.cat([torch.zeros_like(incr[:1]), torch.cumsum(incr, dim=0)])
        prices = self.spot * torch.exp(log_rel)  # [m + 1, k]; exactly the spot at t = 0
        return torch.stack([prices, var]).permute(2, 1, 0)  # [k, m + 1, 2]

    def _variance(self, zt: Tensor) -> Tensor:
        """The untruncated variances ``[m + 1, k]``, differentiable (a loop over time)."""
        dt, k = self.dt, zt.shape[-1]
        shock = self.xi * zt[:, 0]  # [m, k]
        pull, decay = self.kappa * self.theta * dt, self.kappa * dt
        v = self.v0.expand(k)
        vs = [v]
        for i in range(self.steps):
            vp = v.clamp_min(0.0)
            v = v + pull - decay * vp + _sqrt_pos(vp * dt) * shock[i]
            vs.append(v)
        return torch.stack(vs)

    def _fast_variance(self, zt: Tensor, out: Tensor | None = None) -> Tensor:
        """:meth:`_variance` without derivatives: in place (into ``out``), with Python scalars."""
        v0, kappa, theta, xi = self._floats("v0", "kappa", "theta", "xi")
        dt, m, k = self.dt, self.steps, zt.shape[-1]
        zv = zt[:, 0].detach()  # [m, k]
        if zv.stride(-1) != 1:
            zv = zv.contiguous()
        var = torch.empty((m + 1, k), dtype=zt.dtype, device=zt.device) if out is None else out
        var[0].fill_(v0)
        for i in range(m):
            vp = var[i].clamp_min(0.0)
            sv = vp.mul(dt).sqrt_().mul_(xi)
            torch.add(var[i], vp, alpha=-kappa * dt, out=var[i + 1])
            var[i + 1].add_(kappa * theta * dt).addcmul_(sv, zv[i])
        return var

    def _fast_paths(self, z: Tensor) -> Tensor:
        """Without derivatives: a view ``[k, steps + 1, 2]`` of ``[2, steps + 1, k]``."""
        spot, rate, dividend, rho = self._floats("spot", "rate", "dividend", "rho")
        dt, m, k = self.dt, self.steps, z.shape[0]
        zt = z.permute(1, 2, 0).contiguous()  # [m, 2, k]: each step reads contiguous rows
        buf = torch.empty((2, m + 1, k), dtype=z.dtype, device=z.device)
        self._fast_variance(zt, out=buf[1])
        vp = buf[1, :-1].clamp_min(0.0)
        incr = (zt[:, 0] * rho).add_(zt[:, 1], alpha=math.sqrt(1.0 - rho * rho))
        incr.mul_(vp.mul(dt).sqrt_()).add_(vp, alpha=-0.5 * dt).add_((rate - dividend) * dt)
        buf[0, 0].fill_(0.0)
        torch.cumsum(incr, dim=0, out=buf[0, 1:])
        buf[0, 1:].exp_().mul_(spot)
        buf[0, 0].fill_(spot)
        return buf.permute(2, 1, 0)

    def _first_step(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Standardised first-step residuals ``(a, b)`` of (variance, log price) in draws ``x``."""
        dt = self.dt
        x = x.reshape(-1, self.steps + 1, 2)
        sd = torch.sqrt(self.v0 * dt)
        a = (x[:, 1, 1] - self.v0 - self.kappa * (self.theta - self.v0) * dt) / (self.xi * sd)
        mean_l = torch.log(self.spot) + (self.rate - self.dividend - 0.5 * self.v0) * dt
        b = (torch.log(x[:, 1, 0]) - mean_l) / sd
        return a, b

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        dt = self.dt
        logs = torch.log(value[..., 1:, 0])
        v_next = value[..., 1:, 1]
        batch = logs.shape[:-1]
        log_prev = torch.cat([torch.log(self.spot).expand(*batch, 1), logs[..., :-1]], -1)
        v_prev = torch.cat([self.v0.expand(*batch, 1), value[..., 1:-1, 1]], -1)
        vp = v_prev.clamp_min(0.0)
        live = vp > 0
        sd = _sqrt_pos(vp * dt)
        safe = torch.where(live, sd, torch.ones((), dtype=sd.dtype))
        a = (v_next - v_prev - self.kappa * (self.theta - vp) * dt) / (self.xi * safe)
        b = (logs - log_prev - (self.rate - self.dividend - 0.5 * vp) * dt) / safe
        one_m = 1.0 - self.rho * self.rho
        quad = (a * a - 2.0 * self.rho * a * b + b * b) / one_m
        lp = -_LOG_2PI - torch.log(self.xi) - 2.0 * torch.log(safe) - 0.5 * torch.log(one_m)
        lp = lp - 0.5 * quad - logs
        return torch.where(live, lp, torch.zeros((), dtype=lp.dtype)).sum(-1)

    def prices(self, x: Tensor) -> Tensor:
        return x[..., 0]

    def spot_scores(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r""":math:`\partial_{S_0}\ln p(x) = Z^\perp_1/(S_0\sigma_\perp)` and
        :math:`\partial^2_{S_0}\ln p(x) = -Z^\perp_1/(S_0^2\sigma_\perp) - 1/(S_0\sigma_\perp)^2`
        per path, :math:`\sigma_\perp = \sqrt{(1-\rho^2)v_0\Delta t}` (the first step's log
        price given its variance; the spot enters nowhere else)."""
        perp = self._perp(x)
        s0 = float(self.spot.detach())
        sd = math.sqrt((1.0 - float(self.rho.detach()) ** 2) * float(self.v0.detach()) * self.dt)
        return perp * (1.0 / (s0 * sd)), perp * (-1.0 / (s0 * s0 * sd)) - 1.0 / (s0 * sd) ** 2

    def _residuals(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """First-step ``(a, b)`` (:meth:`_first_step`), from the cached normals when ``x`` is the
        last draw."""
        z = self.normals_of(x)
        if z is not None:
            rho = self.rho.detach()
            a = z.reshape(-1, self.steps, 2)[:, 0, 0]
            return a, rho * a + torch.sqrt(1.0 - rho * rho) * z.reshape(-1, self.steps, 2)[:, 0, 1]
        with torch.no_grad():
            return self._first_step(x)

    def _perp(self, x: Tensor) -> Tensor:
        r"""The first step's independent price normal :math:`Z^\perp_1` of draws ``x``."""
        z = self.normals_of(x)
        if z is not None:
            return z.reshape(-1, self.steps, 2)[:, 0, 1]
        a, b = self._residuals(x)
        rho = self.rho.detach()
        return (b - rho * a) / torch.sqrt(1.0 - rho * rho)


_HESTON_SCORED = ("spot", "v0")
_HESTON_AUTOGRAD = ("xi", "rho")
_HESTON_REFUSED = ("rate", "dividend", "kappa", "theta")


def _heston_score(d: HestonPaths, x: Tensor) -> list[tuple[Tensor, Tensor]] | None:
    """Closed-form score w.r.t. the spot and ``v0`` (first step); autograd for ``xi``, ``rho``."""
    bad = [n for n in _HESTON_REFUSED if getattr(d, n).requires_grad]
    if bad:
        raise ValueError(
            f"params: the score of the Heston scheme w.r.t. {', '.join(bad)} is not defined (a "
            "step from a variance <= 0 is a point mass that moves with it); use sg.pathwise"
        )
    if any(getattr(d, n).requires_grad for n in _HESTON_AUTOGRAD):
        return None  # the core differentiates log_prob
    out = []
    if d.spot.requires_grad:
        out.append((d.spot, d.spot_scores(x)[0]))
    if d.v0.requires_grad:
        a, b = d._residuals(x)
        dt, v0, rho = d.dt, d.v0.detach(), d.rho.detach()
        one_m = 1.0 - rho * rho
        sd = torch.sqrt(v0 * dt)
        kappa, xi = d.kappa.detach(), d.xi.detach()
        da = -(1.0 - kappa * dt) / (xi * sd) - a / (2.0 * v0)
        db = (0.5 * dt) / sd - b / (2.0 * v0)
        dq = ((a - rho * b) * da + (b - rho * a) * db) / one_m
        out.append((d.v0, -1.0 / v0 - dq))
    return out


def _sampler(d: _PathLaw, n: int, generator: torch.Generator | None) -> Tensor:
    return d._draw((n,), fast=True, generator=generator)


for _law, _score in ((GBMPaths, _gbm_score), (HestonPaths, _heston_score)):
    _dists.register_score(_law, _score)
    _dists.register_sampler(_law, _sampler)
