r"""Per-chunk Greek estimates: each a call of a core estimator on a payoff of the path.

For one chunk of standard normals the model's path law (:class:`~stochgrad.apps.finance.laws.
GBMPaths` or :class:`~stochgrad.apps.finance.laws.HestonPaths`) is built on that noise, so that
every estimator sees the same paths, and the Greeks of :math:`V = e^{-rT}\,\mathbb E[f(x)]` are

- likelihood ratio (``"lr"``): :func:`stochgrad.score_function` of the payoff ``f`` under the
  law, w.r.t. the spot (delta), the volatility (vega; :math:`v_0` under Heston) and the rate
  (rho, minus :math:`T` times the price for the discount). A payoff that depends on a parameter
  explicitly adds :math:`\mathbb E[\partial_\theta f]` at the same paths (the barrier's bridge
  factor reads the spot in column 0 and the volatility);
- pathwise: :func:`stochgrad.pathwise` of ``f`` (the spot in column 0 is differentiated with
  the path), plus the same explicit terms;
- gamma, second order, as the likelihood ratio of a first-order per-path delta :math:`h(x; S_0)`
  (:math:`\Gamma = \mathbb E[h\,\partial_{S_0}\ln p + \partial_{S_0} h]`): :func:`stochgrad.
  score_function` of :math:`h` plus the explicit :math:`\partial_{S_0} h` at the same paths, with
  :math:`h = \nabla_x f \cdot \partial x/\partial S_0` the pathwise delta (``"mixed"``) or
  :math:`h = f\,\partial_{S_0}\ln p + \partial_{x_0} f` the likelihood-ratio delta (``"lr"``);
  the scores :math:`\partial_{S_0}\ln p` and :math:`\partial^2_{S_0}\ln p` come from the law's
  ``log_prob`` by forward-mode autodiff.

Each returns :class:`~stochgrad.gradient_estimate.GradientEstimate` of the undiscounted
expectation and the factor (:math:`e^{-rT}`) to apply, or the per-path values for the price.

Reference: Glasserman (2004), *Monte Carlo Methods in Financial Engineering*, Ch. 7.

>>> from stochgrad.apps.finance.market import Market, Option
>>> z = torch.randn(1000, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
>>> out = chunk_terms(Option("call", 100.0), Market(100.0, 0.2, 0.05, 1.0), None, z,
...                   {"delta": ["lr"]})
>>> est, scale = out[("delta", "lr")]
>>> est.method, est.num_samples
('score_function', 1000)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor
from torch.distributions import Distribution

import stochgrad as sg
from stochgrad import _dists
from stochgrad._checks import check_int, check_seed
from stochgrad.apps.finance.market import Heston, Market, Option
from stochgrad.apps.finance.paths import gbm_law, heston_law
from stochgrad.apps.finance.payoffs import path_payoff
from stochgrad.gradient_estimate import GradientEstimate

__all__ = [
    "PathPayoff",
    "check_path_payoff",
    "chunk_terms",
    "gbm_terms",
    "heston_terms",
    "lr_weights",
]

#: ``(greek, method) -> (estimate or per-path values, factor)``
Terms = dict[tuple[str, str], tuple[GradientEstimate | Tensor, float]]


@dataclass(frozen=True)
class PathPayoff:
    r"""A payoff of the whole path: ``fn(paths [n, steps + 1]) -> [n]``, undiscounted.

    Column 0 of ``paths`` is the spot :math:`S_0`, columns ``1..steps`` the prices at
    :math:`t_i = iT/m`.

    Args:
        fn: the payoff, a torch function of the paths (differentiable for the pathwise and
            mixed estimators; any function, even a black box, for the likelihood ratio).
        steps: the number of dates :math:`m`.
        name: a label (results, checkpoints).
        pathwise_ok: whether ``fn`` is Lipschitz in the path (pathwise derivatives unbiased);
            ``False`` for a discontinuous payoff (a digital): pathwise and mixed are refused.
        reads_spot: whether ``fn`` reads column 0. The likelihood ratio differentiates the law
            of columns ``1..steps`` only, so it then adds :math:`\mathbb E[\partial f/\partial
            x_0]` (by forward-mode autodiff of ``fn``).

    Any callable works: a lookback put on 12 dates, :math:`(\max_i S_{t_i} - S_T)`, reads every
    date but the spot; a basket of dates (the mean of dates 3, 6, 9, 12 against a strike) picks
    columns; both are Lipschitz in the path, so pathwise Greeks apply. A payoff that jumps (a
    digital, a knock-out without a bridge) is declared ``pathwise_ok=False``.

    >>> straddle = PathPayoff(lambda x: (x[:, -1] - 100.0).abs(), name="straddle")
    >>> straddle.fn(torch.tensor([[100.0, 90.0]]))
    tensor([10.])
    >>> lookback = PathPayoff(lambda x: x[:, 1:].amax(dim=1) - x[:, -1], steps=12, name="lookback")
    >>> dates = PathPayoff(lambda x: (x[:, 3::3].mean(dim=1) - 100.0).relu(), steps=12, name="dates")
    """

    fn: Callable[[Tensor], Tensor]
    steps: int = 1
    name: str = "custom"
    pathwise_ok: bool = True
    reads_spot: bool = False

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise TypeError(f"fn must be callable (paths [n, steps + 1] -> [n]), got {self.fn!r}")
        object.__setattr__(self, "steps", check_int("steps", self.steps, minimum=1))
        if not isinstance(self.name, str) or not self.name:
            raise TypeError(f"name must be a non-empty str, got {self.name!r}")
        for flag in ("pathwise_ok", "reads_spot"):
            if not isinstance(getattr(self, flag), bool):
                raise TypeError(f"{flag} must be a bool, got {getattr(self, flag)!r}")

    @property
    def payoff(self) -> str:
        """The label (what :class:`~stochgrad.apps.finance.market.Option` calls its payoff)."""
        return self.name

    def num_steps(self, heston: Heston | None = None) -> int:
        """The number of dates (GBM or Heston alike)."""
        return self.steps

    def checked(self, paths: Tensor) -> Tensor:
        """``fn(paths)``, refused with a ``TypeError``/``ValueError`` naming the payoff unless
        it is a floating-point tensor with one value per path (shape ``[n]``)."""
        return self._check_output(paths, self.fn(paths))

    def _check_output(self, paths: Tensor, out: Any) -> Tensor:
        n = paths.shape[0]
        if not isinstance(out, Tensor):
            raise TypeError(
                f"payoff {self.name!r} must return a torch tensor of shape [{n}] (one value per "
                f"path), got {type(out).__name__}"
            )
        if tuple(out.shape) != (n,):
            raise ValueError(
                f"payoff {self.name!r} must return one value per path, shape [{n}] for paths of "
                f"shape {list(paths.shape)}; got shape {list(out.shape)}"
            )
        if not out.is_floating_point():
            # an indicator as bool or int would have no pathwise derivative, silently
            raise TypeError(
                f"payoff {self.name!r} must return floating-point values, got {out.dtype} "
                "(convert with .to(paths.dtype); a jump such as an indicator is not Lipschitz: "
                "declare pathwise_ok=False)"
            )
        return out


def check_path_payoff(
    payoff: PathPayoff,
    market: Market,
    heston: Heston | None = None,
    *,
    num_paths: int = 64,
    seed: int = 0,
) -> Tensor:
    """Run ``payoff`` on a few paths of the model and refuse it with a clear error if it fails.

    Checks, before a long run, what :func:`chunk_terms` would find only later or never: that
    ``fn`` runs on paths ``[n, steps + 1]``, returns a floating-point tensor ``[n]`` without NaN
    or infinity and, when it is declared Lipschitz (``pathwise_ok``), that torch can
    differentiate it (forward mode, as the pathwise estimator does).

    Args:
        payoff: the payoff.
        market: the market whose paths it is tried on.
        heston: Heston dynamics (``None``: GBM).
        num_paths: how many paths.
        seed: the seed of those paths.

    Returns:
        The payoff's values on the paths, ``[num_paths]``.

    Raises:
        TypeError: ``payoff`` is not a :class:`PathPayoff`, or ``fn`` returns something other
            than a floating-point tensor.
        ValueError: ``fn`` raises, returns the wrong shape or non-finite values, or cannot be
            differentiated while ``pathwise_ok`` says it can.

    >>> from stochgrad.apps.finance.market import Market
    >>> bad = PathPayoff(lambda x: x[:, -1:] - 100.0, name="column")
    >>> check_path_payoff(bad, Market(100.0, 0.2, 0.05, 1.0))
    Traceback (most recent call last):
    ...
    ValueError: payoff 'column' must return one value per path, shape [64] for paths of shape [64, 2]; got shape [64, 1]
    """
    if not isinstance(payoff, PathPayoff):
        raise TypeError(f"payoff must be a PathPayoff, got {type(payoff).__name__}")
    n = check_int("num_paths", num_paths, minimum=1)
    m = payoff.num_steps(heston)
    g = torch.Generator().manual_seed(check_seed("seed", seed))
    shape = (n, m) if heston is None else (n, m, 2)
    z = torch.randn(*shape, generator=g, dtype=torch.float64)
    if heston is None:
        x = gbm_law(market, m, z).sample((n,))
    else:
        x = heston_law(market, heston, m, z).sample((n,))[..., 0]
    try:
        out = payoff.fn(x)
    except Exception as exc:  # the user's code: say which payoff failed, and how
        raise ValueError(
            f"payoff {payoff.name!r} failed on paths of shape {list(x.shape)}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    out = payoff._check_output(x, out)
    bad = int((~torch.isfinite(out)).sum())
    if bad:
        raise ValueError(
            f"payoff {payoff.name!r} returned NaN or infinite values on {bad} of {n} sample paths"
        )
    if payoff.pathwise_ok:
        with torch.enable_grad():  # a comparison or an indicator cuts the graph
            connected = payoff.fn(x.detach().requires_grad_()).requires_grad
        if not connected:
            raise ValueError(
                f"payoff {payoff.name!r} does not depend differentiably on the path (an "
                "indicator or a comparison?): a payoff that jumps is not Lipschitz; declare "
                "pathwise_ok=False (the likelihood ratio only)"
            )
        try:
            _jvp(payoff.checked, x)
            spot_only = torch.zeros_like(x)
            spot_only[:, 0] = 1.0  # moving the spot alone: nonzero where the payoff reads it
            d_spot = _jvp(payoff.checked, x, spot_only)
        except Exception as exc:
            raise ValueError(
                f"payoff {payoff.name!r} cannot be differentiated by torch "
                f"({type(exc).__name__}: {exc}); write it with torch operations, or declare it "
                "not Lipschitz (pathwise_ok=False) for the likelihood ratio only"
            ) from exc
        if not payoff.reads_spot and bool((d_spot != 0).any()):
            raise ValueError(
                f"payoff {payoff.name!r} reads column 0 (the spot) but is declared "
                "reads_spot=False: its likelihood-ratio delta would miss that term; declare "
                "reads_spot=True"
            )
    return out


def _jvp(fn: Callable[[Tensor], Tensor], x: Tensor, tangent: Tensor | None = None) -> Tensor:
    """Directional derivative of ``fn`` at ``x`` (forward mode; ``tangent`` default ones)."""
    t = torch.ones_like(x) if tangent is None else tangent
    return torch.func.jvp(fn, (x,), (t,))[1]


def _with_spot(paths: Tensor, u: Tensor) -> Tensor:
    """``paths`` with column 0 (the spot) replaced by ``u`` (a scalar, possibly dual)."""
    return torch.cat([u.expand(paths.shape[0], 1), paths[:, 1:]], dim=1)


def _component(est: GradientEstimate, j: int, k: int) -> GradientEstimate:
    """The estimate of parameter ``j`` of ``k`` (``est`` itself for one parameter)."""
    if k == 1:
        return est
    return GradientEstimate(
        grad=est.grad[j],
        per_sample=est.per_sample[j],
        variance=est.variance[j],
        stderr=est.stderr[j],
        num_samples=est.num_samples,
        method=est.method,
        biased=est.biased,
        evaluations=est.evaluations,
        info=dict(est.info),
    )


def _plus(est: GradientEstimate, extra: Tensor | None, **info: Any) -> GradientEstimate:
    """``est`` with the per-path ``extra`` terms added (the explicit derivatives)."""
    if extra is None:
        return est
    return GradientEstimate.from_per_sample(
        est.per_sample + extra.to(est.per_sample.dtype),
        method=est.method,
        biased=est.biased,
        evaluations=est.evaluations,
        info=est.info | info,
    )


class _Recorder:
    """Wraps the payoff of the draws and keeps the last paths and values it saw."""

    def __init__(self, fn: Callable[[Tensor], Tensor]):
        self.fn = fn
        self.paths: Tensor | None = None
        self.values: Tensor | None = None

    def __call__(self, x: Tensor) -> Tensor:
        out = self.fn(x)
        self.paths, self.values = x.detach(), out.detach()
        return out


class _Model:
    """One chunk: the law on its noise, the payoff of its draws, the Greeks' parameters."""

    def __init__(
        self, option: Option | PathPayoff, market: Market, heston: Heston | None, z: Tensor
    ):
        self.market, self.heston, self.z = market, heston, z
        self.n, self.m = z.shape[0], z.shape[1]
        self.dt = market.maturity / self.m
        self.disc = market.discount
        self.vol = torch.tensor(market.vol, dtype=z.dtype)
        self.param = {"delta": "spot", "vega": "vol" if heston is None else "v0", "rho": "rate"}
        names = ("spot", "vol", "rate", "dividend")  # every parameter of the law, as tensors
        if heston is not None:
            names = ("spot", "rate", "dividend", "v0", "kappa", "theta", "xi", "rho")
        self.values = {
            name: torch.tensor(
                getattr(market if hasattr(market, name) else heston, name), dtype=z.dtype
            )
            for name in names
        }
        if isinstance(option, PathPayoff):
            user = option.checked
            self.fn: Callable[[Tensor, Tensor], Tensor] = lambda S, vol: user(S)
            self.reads_spot, self.explicit_vol = option.reads_spot, False
        else:
            self.fn = lambda S, vol: path_payoff(option, vol, self.dt)(S)
            bridge = option.payoff == "barrier" and option.monitoring == "bridge"
            self.reads_spot = self.explicit_vol = bridge and heston is None

    def law(self, **params: Tensor) -> Distribution:
        values = self.values | params
        if self.heston is None:
            return gbm_law(self.market, self.m, self.z, **values)
        return heston_law(self.market, self.heston, self.m, self.z, **values)

    def dist_fn(self, names: list[str]) -> Callable[..., Distribution]:
        return lambda *ps: self.law(**dict(zip(names, ps, strict=True)))

    def leaves(self, names: list[str]) -> Tensor | tuple[Tensor, ...]:
        ts = tuple(self.values[n] for n in names)
        return ts[0] if len(ts) == 1 else ts

    def prices(self, x: Tensor) -> Tensor:
        return x if self.heston is None else x[..., 0]

    def payoff(self, x: Tensor) -> Tensor:
        """The payoff of draws ``x`` (the volatility a constant: explicit terms come apart)."""
        return self.fn(self.prices(x), self.vol)

    # explicit derivatives at fixed paths -----------------------------------------------------
    def d_spot(self, S: Tensor) -> Tensor:
        r""":math:`\partial f / \partial x_0` per path (column 0 moved, the rest fixed)."""
        return _jvp(lambda u: self.fn(_with_spot(S, u), self.vol), self.values["spot"])

    def d2_spot(self, S: Tensor) -> Tensor:
        s0 = self.values["spot"]
        return _jvp(lambda v: _jvp(lambda u: self.fn(_with_spot(S, u), self.vol), v), s0)

    def d_vol(self, S: Tensor) -> Tensor:
        r""":math:`\partial f / \partial \sigma` per path at fixed paths (the bridge factor)."""
        return _jvp(lambda u: self.fn(S, u), self.vol)

    def spot_scores(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r""":math:`\partial_{S_0}\ln p(x)` and :math:`\partial^2_{S_0}\ln p(x)`: the law's closed
        forms, else forward-mode autodiff of its ``log_prob``."""
        x = x.detach()
        law = self.law()
        if hasattr(law, "spot_scores"):
            return law.spot_scores(x)

        def score(u: Tensor) -> Tensor:
            return _jvp(lambda w: self.law(spot=w).log_prob(x), u)

        return torch.func.jvp(score, (self.values["spot"],), (torch.ones_like(self.vol),))


def chunk_terms(
    option: Option | PathPayoff,
    market: Market,
    heston: Heston | None,
    z: Tensor,
    wanted: dict[str, list[str]],
) -> Terms:
    """The requested ``(greek, method)`` estimates for one chunk of normals ``z``.

    Args:
        option: the payoff (an :class:`~stochgrad.apps.finance.market.Option` or a
            :class:`PathPayoff`).
        market: spot, volatility, rate, dividend yield, maturity.
        heston: the Heston dynamics, or ``None`` for GBM.
        z: standard normals ``[n, steps]`` (GBM) or ``[n, steps, 2]`` (Heston).
        wanted: ``{greek: [method, ...]}``; the price (``"mc"``) is always returned.

    Returns:
        ``{(greek, method): (estimate, factor)}``: a ``GradientEstimate`` of the undiscounted
        derivative (the price: its per-path payoffs) and the factor :math:`e^{-rT}`.
    """
    md = _Model(option, market, heston, z)
    n, disc, T = md.n, md.disc, market.maturity
    out: Terms = {}
    price: Tensor | None = None
    for method, estimator in (("lr", sg.score_function), ("pathwise", sg.pathwise)):
        greeks = [g for g in ("delta", "vega", "rho") if method in wanted.get(g, [])]
        if not greeks:
            continue
        names = [md.param[g] for g in greeks]
        rec = _Recorder(md.payoff)
        est = estimator(rec, md.dist_fn(names), md.leaves(names), num_samples=n)
        S, f = md.prices(rec.paths), rec.values
        price = f if price is None else price
        for j, g in enumerate(greeks):
            e = _component(est, j, len(greeks))
            if g == "delta" and method == "lr" and md.reads_spot:
                e = _plus(e, md.d_spot(S), explicit="spot")
            elif g == "vega" and md.explicit_vol:
                e = _plus(e, md.d_vol(S), explicit="vol")
            elif g == "rho":  # the discount e^{-rT} depends on r too
                e = _plus(e, -T * f, discount=True)
            out[(g, method)] = (e, disc)
    for method in ("lr", "mixed"):
        if method in wanted.get("gamma", []):
            out[("gamma", method)] = (_gamma(md, method), disc)
    if price is None:
        price = md.payoff(md.law().sample((n,)))
    out[("price", "mc")] = (price, disc)
    return out


def _gamma(md: _Model, method: str) -> GradientEstimate:
    r"""Gamma as the likelihood ratio of a per-path delta :math:`h(x; S_0)`.

    :math:`\Gamma = \mathbb E[h\,\partial_{S_0}\ln p] + \mathbb E[\partial_{S_0} h]`: the first
    term is :func:`stochgrad.score_function` of :math:`h`, the second is added per path.
    """
    explicit: dict[str, Tensor] = {}
    s0 = md.values["spot"]

    def lr_delta(x: Tensor) -> Tensor:  # h = f s + f_0;  d h = f_0 s + f ds + f_00
        S = md.prices(x)
        f = md.fn(S, md.vol)
        s, ds = md.spot_scores(x)
        h, dh = f * s, f * ds
        if md.reads_spot:
            f0, f00 = md.d_spot(S), md.d2_spot(S)
            h, dh = h + f0, dh + f0 * s + f00
        explicit["dh"] = dh
        return h

    def pathwise_delta(x: Tensor) -> Tensor:  # h = grad f . dS/dS0 (dS/dS0 = S/S0)
        S = md.prices(x)

        def h_at(u: Tensor) -> Tensor:
            Su = _with_spot(S, u)
            return _jvp(lambda y: md.fn(y, md.vol), Su, Su / u)

        h, dh = torch.func.jvp(h_at, (s0,), (torch.ones_like(s0),))
        explicit["dh"] = dh
        return h

    fn = lr_delta if method == "lr" else pathwise_delta
    est = sg.score_function(fn, md.dist_fn(["spot"]), s0, num_samples=md.n)
    name = "score_function" if method == "lr" else "pathwise+score_function"
    out = _plus(est, explicit["dh"], order=2, delta=method)
    return GradientEstimate(
        grad=out.grad,
        per_sample=out.per_sample,
        variance=out.variance,
        stderr=out.stderr,
        num_samples=out.num_samples,
        method=name,
        biased=out.biased,
        evaluations=out.evaluations,
        info=out.info,
    )


def lr_weights(z: Tensor, market: Market, dt: float) -> dict[str, Tensor]:
    r"""Deprecated: the likelihood-ratio weights of GBM paths from their normals ``z`` ``[n, m]``.

    The weights are now the score of the path law (:class:`~stochgrad.apps.finance.laws.
    GBMPaths`, registered with the core) that :func:`stochgrad.score_function` applies; this
    returns that score (``delta``, ``vega``, ``rho``, w.r.t. ``spot``, ``vol``, ``rate``) and
    the second-order weight :math:`\partial^2_{S_0}p/p` (``gamma``). Removed in the next release.

    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     w = lr_weights(torch.tensor([[1.0]], dtype=torch.float64), Market(100.0, 0.2, 0.0, 1.0), 1.0)
    >>> float(w["delta"]), float(w["vega"]), float(w["rho"])
    (0.05, -1.0, 5.0)
    """
    warnings.warn(
        "lr_weights is deprecated: the likelihood-ratio weights are the score of the path law "
        "(stochgrad.apps.finance.GBMPaths) that stochgrad.score_function applies; it will be "
        "removed in the next release",
        DeprecationWarning,
        stacklevel=2,
    )
    m = z.shape[1]
    mk = Market(market.spot, market.vol, market.rate, dt * m, market.dividend)
    z = z.to(torch.float64)
    params = {n: torch.tensor(getattr(mk, n), dtype=z.dtype, requires_grad=True)
              for n in ("spot", "vol", "rate")}  # fmt: skip
    law = gbm_law(mk, m, z, **params)
    x = law.sample((z.shape[0],))
    scores = {id(p): s for p, s in _dists.closed_form_score(law, x)}
    out = {
        g: scores[id(params[n])] for g, n in (("delta", "spot"), ("vega", "vol"), ("rho", "rate"))
    }
    s, ds = _Model(Option("call", 1.0), mk, None, z).spot_scores(x)
    out["gamma"] = s * s + ds
    return out


def _deprecated(old: str) -> None:
    warnings.warn(
        f"stochgrad.apps.finance.terms.{old} is deprecated: use chunk_terms (the same Greeks, as "
        "GradientEstimates of the core estimators); it will be removed in the next release",
        DeprecationWarning,
        stacklevel=3,
    )


def gbm_terms(option: Option, market: Market, z: Tensor, wanted: dict[str, list[str]]) -> Terms:
    """Deprecated: :func:`chunk_terms` under GBM."""
    _deprecated("gbm_terms")
    return chunk_terms(option, market, None, z, wanted)


def heston_terms(
    option: Option, market: Market, heston: Heston, z: Tensor, wanted: dict[str, list[str]]
) -> Terms:
    """Deprecated: :func:`chunk_terms` under Heston."""
    _deprecated("heston_terms")
    return chunk_terms(option, market, heston, z, wanted)
