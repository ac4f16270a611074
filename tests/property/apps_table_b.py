"""The main functions of the apps discrete_vae, design, offpolicy, finance and molecules as
entries of the suite.

References for accepted calls: the expected information gain of a linear-Gaussian design in
closed form (``0.5 logdet(I + D S D^T / s^2)``; nested Monte Carlo is an upper bound in
expectation, PCE a lower one), Black-Scholes for the price and delta of a European call,
``max(S_T - K, 0)`` for a call's payoff, probabilities in ``[0, 1]``.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from hypothesis import strategies as st
from scipy import stats

from stochgrad.apps import design as DS
from stochgrad.apps import discrete_vae as DV
from stochgrad.apps import finance as FI
from stochgrad.apps import molecules as MOL
from stochgrad.apps import offpolicy as OP
from tests.property.apps_table_a import config_entry, gen, not_objects
from tests.property.harness import ACCEPT, EITHER, REFUSE, Entry, Wrong
from tests.property.references import z_bound
from tests.property.values import (
    CallbackError,
    bools,
    c,
    cf,
    choices,
    combine,
    floats,
    ints,
    keep,
    not_callables,
    one_of,
    seeds,
    tensors,
    torch_generators,
)

F64 = torch.float64
NAN = float("nan")


def _in_unit(result, call):
    if not 0.0 <= float(result) <= 1.0:
        raise Wrong(f"{float(result)} outside [0, 1]")


# ---------------------------------------------------------------------------------------------
# discrete_vae
# ---------------------------------------------------------------------------------------------
def _vae() -> DV.BinaryVAE:
    return DV.BinaryVAE(latents=4, hidden=8, pixels=16, seed=0)


def _pixels() -> torch.Tensor:
    return (torch.rand(5, 16, generator=gen()) > 0.5).float()


def _logits() -> torch.Tensor:
    return torch.zeros(5, 4)


def _vae_config(**kw) -> DV.Config:
    return DV.Config(steps=1, samples=4, latents=4, hidden=8, batch_size=5, **kw)


def _discrete_vae_entries() -> list[Entry]:
    x = tensors(_pixels, "binary", integer=EITHER, boolean=EITHER, numpy=EITHER)
    model = not_objects("model")
    spec = DV.VAE_ESTIMATORS["rloo"]
    return [
        Entry(
            "discrete_vae.BinaryVAE",
            DV.BinaryVAE,
            lambda: {"latents": 4, "hidden": 8, "pixels": 16, "seed": 0},
            {
                "latents": ints(1, huge=REFUSE, valid=(1,)),
                "hidden": ints(0, huge=REFUSE, valid=(0,)),
                "pixels": ints(1, huge=REFUSE, valid=(1,)),
                "seed": seeds(optional=False),
                "pixel_mean": tensors(lambda: torch.full((16,), 0.5), "prob", optional=True),
            },
        ),
        Entry(
            "discrete_vae.exact_elbo",
            DV.exact_elbo,
            lambda: {"model": _vae(), "x": _pixels()},
            {"model": model, "x": x, "logits": tensors(_logits, optional=True)},
        ),
        Entry(
            "discrete_vae.iwae_bound",
            DV.iwae_bound,
            lambda: {"model": _vae(), "x": _pixels(), "k": 4, "generator": gen()},
            {
                "model": model,
                "x": x,
                "k": ints(1, huge=REFUSE, valid=(1,)),
                "generator": torch_generators(optional=False, seed_arg=None),
                "chunk": ints(1, huge=EITHER, valid=(1,)),
            },
        ),
        Entry(
            "discrete_vae.encoder_gradient",
            DV.encoder_gradient,
            lambda: {
                "model": _vae(),
                "x": _pixels(),
                "logits": _logits(),
                "spec": spec,
                "config": _vae_config(),
                "generator": gen(),
            },
            {
                "model": model,
                "x": x,
                "logits": tensors(_logits),
                "spec": not_objects("spec"),
                "config": not_objects("config"),
                "generator": torch_generators(optional=False, seed_arg=None),
            },
        ),
        Entry(
            "discrete_vae.sample_posterior",
            DV.sample_posterior,
            lambda: {"logits": _logits(), "num_samples": 3, "generator": gen()},
            {
                "logits": tensors(
                    _logits, shape=EITHER, neg_inf=EITHER, pos_inf=EITHER, empty=EITHER
                ),
                "num_samples": ints(1, huge=REFUSE, valid=(1,)),
                "generator": torch_generators(optional=False, seed_arg=None),
            },
        ),
        Entry(
            "discrete_vae.check_budget",
            DV.check_budget,
            lambda: {"keys": ["rloo"], "samples": 4},
            {
                "keys": one_of(
                    [
                        c("['nonsense']", ["nonsense"]),
                        c("str", "rloo"),
                        c("[3]", [3]),
                        c("None", None),
                    ]
                ),
                "samples": ints(1, huge=EITHER, valid=(2,)),
            },
        ),
        config_entry(
            "discrete_vae.Config",
            DV.Config,
            {},
            {
                "steps": ints(1, huge=EITHER),
                "samples": ints(1, huge=EITHER),
                "latents": ints(1, huge=EITHER),
                "hidden": ints(0, huge=EITHER),
                "batch_size": ints(1, huge=EITHER),
                "lr": floats(0.0, open_min=True),
                "temperature": floats(0.0, open_min=True),
                "eta": floats(),
                "probe_calls": ints(2, huge=EITHER),
            },
        ),
    ]


# ---------------------------------------------------------------------------------------------
# design
# ---------------------------------------------------------------------------------------------
PRIOR = torch.tensor([[1.0, 0.3], [0.3, 0.5]], dtype=F64)


def _linear() -> DS.LinearGaussianModel:
    return DS.LinearGaussianModel(PRIOR.clone(), noise_sd=1.0)


def _design() -> torch.Tensor:
    return torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=F64)


def _linear_eig(design: torch.Tensor) -> float:
    d = torch.as_tensor(design).detach().double().reshape(-1, PRIOR.shape[0])  # [p]: one row
    m = torch.eye(d.shape[0], dtype=F64) + d @ PRIOR @ d.T
    return 0.5 * float(torch.logdet(m))


def _eig_bound(side: str):
    def check(result, call):
        design = call.kwargs["design"]
        if call.arg == "model" or not isinstance(design, torch.Tensor):
            return
        truth = _linear_eig(design)
        tol = z_bound(call.kwargs.get("num_outer", 2) - 1) * result.stderr + 1e-9
        if side == "upper" and result.value < truth - tol:
            raise Wrong(f"nested MC {result.value} below the true EIG {truth} by more than {tol}")
        if side == "lower" and result.value > truth + tol:
            raise Wrong(f"PCE {result.value} above the true EIG {truth} by more than {tol}")

    return check


def _design_entries() -> list[Entry]:
    design = tensors(_design, shape=EITHER, huge=EITHER)
    common = {
        "model": not_objects("model"),
        "design": design,
        "num_outer": ints(2, huge=REFUSE, valid=(2,)),
        "num_inner": ints(1, huge=REFUSE, valid=(1,)),
        "generator": torch_generators(optional=False, seed_arg=None),
    }
    base = {"model": _linear(), "design": _design(), "num_outer": 32, "num_inner": 32}
    return [
        Entry(
            "design.nmc_eig",
            DS.nmc_eig,
            lambda: {**base, "design": _design(), "generator": gen()},
            {
                **common,
                "gradient": one_of(
                    [c("'nonsense'", "nonsense"), c("3", 3), c("'score'", "score", ACCEPT)]
                ),
            },
            check=_eig_bound("upper"),
        ),
        Entry(
            "design.pce_eig",
            DS.pce_eig,
            lambda: {**base, "design": _design(), "generator": gen()},
            {**common, "bound": choices(list(DS.BOUNDS))},
            check=_eig_bound("lower"),
        ),
        Entry(
            "design.eig_gradient",
            DS.eig_gradient,
            lambda: {**base, "design": _design(), "generator": gen()},
            {
                **common,
                "method": choices(list(DS.GRADIENT_METHODS)),
                "bound": choices(list(DS.BOUNDS)),
            },
        ),
        Entry(
            "design.LinearGaussianModel",
            DS.LinearGaussianModel,
            lambda: {"prior_cov": PRIOR.clone(), "noise_sd": 1.0},
            {
                "prior_cov": combine(
                    tensors(lambda: PRIOR.clone()),
                    one_of(
                        [
                            cf(
                                "not symmetric",
                                lambda: torch.tensor([[1.0, 0.9], [0.0, 1.0]], dtype=F64),
                            ),
                            cf(
                                "not positive definite",
                                lambda: torch.tensor([[1.0, 2.0], [2.0, 1.0]], dtype=F64),
                            ),
                        ]
                    ),
                ),
                "noise_sd": floats(0.0, open_min=True),
            },
        ),
        Entry(
            "design.LogisticDoseResponse",
            DS.LogisticDoseResponse,
            lambda: {},
            {
                "prior_mean": one_of(
                    [
                        c("(nan, 0)", (NAN, 0.0)),
                        c("one number", (2.0,)),
                        c("None", None),
                        c("str", "2,0"),
                    ]
                ),
                "prior_sd": one_of(
                    [
                        c("(0, 1)", (0.0, 1.0)),
                        c("(-1, 1)", (-1.0, 1.0)),
                        c("(inf, 1)", (float("inf"), 1.0)),
                        c("None", None),
                    ]
                ),
            },
        ),
        config_entry(
            "design.DesignConfig",
            DS.DesignConfig,
            {"steps": 3, "num_outer": 16, "num_inner": 16},
            {
                "model": choices(list(DS.DESIGN_MODELS)),
                "steps": ints(1, huge=EITHER),
                "lr": floats(0.0, open_min=True),
                "num_outer": ints(2, huge=EITHER),
                "method": choices(list(DS.GRADIENT_METHODS)),
                "seed": seeds(optional=False),
                "average_last": floats(0.0, 1.0, open_max=True),
            },
        ),
        Entry(
            "design.project",
            DS.project,
            lambda: {"design": _design(), "constraint": "unit_norm"},
            {
                "design": tensors(_design, shape=EITHER),
                "constraint": choices(list(DS.CONSTRAINTS)),
                "box": one_of(
                    [
                        c("(4, -4)", (4.0, -4.0)),
                        c("(nan, 4)", (NAN, 4.0)),
                        c("one number", (4.0,)),
                        c("None", None),
                    ]
                ),
            },
        ),
        Entry(
            "design.uniform_doses",
            DS.uniform_doses,
            lambda: {"num_doses": 4},
            {"num_doses": ints(1, huge=REFUSE, valid=(1,)), "low": floats(), "high": floats()},
        ),
    ]


# ---------------------------------------------------------------------------------------------
# offpolicy
# ---------------------------------------------------------------------------------------------
BANDIT = OP.SyntheticBandit(n_actions=3, dim_context=2)


def _logged() -> OP.LoggedData:
    return BANDIT.sample(40, generator=np.random.default_rng(0))


def _theta() -> torch.Tensor:
    return torch.zeros(3, 3, dtype=F64)


def _rounds() -> dict:
    d = _logged()
    return {
        "contexts": d.contexts.clone(),
        "actions": d.actions.clone(),
        "rewards": d.rewards.clone(),
        "propensities": d.propensities.clone(),
    }


def _round_cases() -> dict:
    return {
        "contexts": tensors(lambda: _rounds()["contexts"]),
        "actions": tensors(lambda: _rounds()["actions"], "index:3"),
        "rewards": tensors(lambda: _rounds()["rewards"], integer=ACCEPT),
        "propensities": tensors(lambda: _rounds()["propensities"], "open01"),
    }


def _check_value_range(result, call):
    kw = call.kwargs
    if kw.get("estimator") != "snips" or call.arg == "rewards":
        return
    r = torch.as_tensor(kw["rewards"]).double()
    if not float(r.min()) - 1e-9 <= result.value <= float(r.max()) + 1e-9:
        raise Wrong(f"SNIPS value {result.value} outside the rewards' range")


def _check_probs(result, call):
    if not torch.allclose(result.sum(-1), torch.ones((), dtype=result.dtype), atol=1e-9):
        raise Wrong("action probabilities do not sum to one")


def _offpolicy_entries() -> list[Entry]:
    rounds = _round_cases()
    grad_base = lambda: {"theta": _theta(), **_rounds()}  # noqa: E731
    theta = tensors(_theta, huge=EITHER)
    return [
        Entry("offpolicy.ips_gradient", OP.ips_gradient, grad_base, {"theta": theta, **rounds}),
        Entry("offpolicy.snips_gradient", OP.snips_gradient, grad_base, {"theta": theta, **rounds}),
        Entry(
            "offpolicy.dr_gradient",
            OP.dr_gradient,
            lambda: {**grad_base(), "reward_estimates": torch.zeros(40, 3, dtype=F64)},
            {
                "theta": theta,
                **rounds,
                "reward_estimates": tensors(lambda: torch.zeros(40, 3, dtype=F64)),
            },
        ),
        Entry(
            "offpolicy.offpolicy_value",
            OP.offpolicy_value,
            lambda: {
                "estimator": "snips",
                "probs": torch.full((40, 3), 1 / 3, dtype=F64),
                **{k: v for k, v in _rounds().items() if k != "contexts"},
            },
            {
                "estimator": choices(list(OP.VALUE_ESTIMATORS)),
                "probs": tensors(lambda: torch.full((40, 3), 1 / 3, dtype=F64), "prob"),
                "actions": rounds["actions"],
                "rewards": rounds["rewards"],
                "propensities": rounds["propensities"],
            },
            check=_check_value_range,
        ),
        Entry(
            "offpolicy.policy_probs",
            OP.policy_probs,
            lambda: {"theta": _theta(), "contexts": _rounds()["contexts"]},
            {"theta": theta, "contexts": rounds["contexts"]},
            check=_check_probs,
        ),
        Entry(
            "offpolicy.LoggedData",
            OP.LoggedData,
            lambda: {**_rounds(), "num_actions": 3},
            {**rounds, "num_actions": ints(2, optional=True, huge=REFUSE, valid=(3,))},
        ),
        Entry(
            "offpolicy.learn_policy",
            OP.learn_policy,
            lambda: {
                "data": _logged(),
                "estimator": "snips",
                "reward_model": "none",
                "iterations": 3,
            },
            {
                "data": not_objects("data"),
                "estimator": choices(list(OP.LEARNERS)),
                "reward_model": choices(list(OP.REWARD_MODELS)),
                "holdout": floats(0.0, 1.0, open_max=True),
                "iterations": ints(1, huge=REFUSE, valid=(1,)),
                "lr": floats(0.0, open_min=True),
                "folds": ints(2, huge=REFUSE),
                "C": floats(0.0, open_min=True),
                "seed": seeds(optional=False),
            },
        ),
        Entry(
            "offpolicy.SyntheticBandit",
            OP.SyntheticBandit,
            lambda: {"n_actions": 3, "dim_context": 2},
            {
                "n_actions": ints(2, huge=REFUSE, valid=(2,)),
                "dim_context": ints(1, huge=REFUSE, valid=(1,)),
                "beta": floats(),
                "random_state": ints(0, 2**32 - 1, valid=(0, 2**32 - 1)),  # numpy's legacy seeds
            },
        ),
        Entry(
            "offpolicy.split_rounds",
            OP.split_rounds,
            lambda: {"n": 40, "holdout": 0.2, "seed": 0},
            {
                "n": ints(2, huge=REFUSE, valid=(10,)),
                "holdout": floats(0.0, 1.0, open_max=True),
                "seed": seeds(optional=False),
            },
        ),
    ]


# ---------------------------------------------------------------------------------------------
# finance
# ---------------------------------------------------------------------------------------------
MARKET = {"spot": 100.0, "vol": 0.2, "rate": 0.01, "maturity": 1.0}


def _black_scholes(market: FI.Market, strike: float) -> dict[str, float]:
    s, v, r, t, q = market.spot, market.vol, market.rate, market.maturity, market.dividend
    d1 = (math.log(s / strike) + (r - q + v * v / 2) * t) / (v * math.sqrt(t))
    d2 = d1 - v * math.sqrt(t)
    price = s * math.exp(-q * t) * stats.norm.cdf(d1) - strike * math.exp(-r * t) * stats.norm.cdf(
        d2
    )
    return {"price": price, "delta": math.exp(-q * t) * stats.norm.cdf(d1)}


def _check_greeks(result, call):
    kw = call.kwargs
    option, market = kw["option"], kw["market"]
    if not isinstance(option, FI.Option) or option.payoff != "call" or kw.get("heston") is not None:
        return
    truth = _black_scholes(market, option.strike)
    for est in result.estimates:
        if est.greek in truth and est.num_paths >= 100:
            tol = z_bound(est.num_paths - 1) * est.stderr + 1e-6 * (1 + abs(truth[est.greek]))
            if abs(est.value - truth[est.greek]) > tol:
                raise Wrong(
                    f"{est.greek} ({est.method}) {est.value} vs Black-Scholes {truth[est.greek]}"
                )


def _call_paths(fn):
    return FI.PathPayoff(fn)


def _payoff_fns() -> st.SearchStrategy:
    """Bad user payoffs ``paths [n, steps] -> [n]`` (the finance analogue of a bad ``f``)."""

    def good(p):
        return (p[:, -1] - 100.0).clamp_min(0.0)

    def raises(p):
        raise CallbackError("payoff failed on purpose")

    def mutates(p):
        p.mul_(0.0)
        return good(p)

    names = ("fn", "payoff")
    return one_of(
        [
            c("payoff returning NaN", lambda p: good(p) * NAN, names=names),
            c("payoff returning inf", lambda p: good(p) + float("inf"), names=names),
            c("payoff returning [n, 2]", lambda p: torch.stack([good(p), good(p)], 1), names=names),
            c("payoff returning a scalar", lambda p: good(p).mean(), names=names),
            c("payoff returning None", lambda p: None, names=names),
            c("payoff raising", raises, names=names),
            c("payoff mutating its paths", mutates, EITHER, names=names),
            c("payoff returning numpy", lambda p: good(p.detach()).numpy(), EITHER, names=names),
            c("not callable", 3, names=names),
        ]
    )


def _greeks_of_payoff(fn, **kwargs):
    """:func:`estimate_greeks` of the caller's own payoff ``fn`` (a :class:`PathPayoff`)."""
    return FI.estimate_greeks(FI.PathPayoff(fn), **kwargs)


def _finance_entries() -> list[Entry]:
    market = lambda: FI.Market(**MARKET)  # noqa: E731
    return [
        Entry(
            "finance.estimate_greeks",
            FI.estimate_greeks,
            lambda: {
                "option": FI.Option("call", 100.0),
                "market": market(),
                "num_paths": 4000,
                "greeks": ["price", "delta"],
                "seed": 0,
            },
            {
                "option": not_objects("option"),
                "market": not_objects("market"),
                # a price or Greek reports a standard error: 2 paths at least
                "num_paths": ints(2, huge=REFUSE, valid=(2,)),
                "greeks": one_of(
                    [
                        c("['nonsense']", ["nonsense"]),
                        c("str", "delta"),
                        c("[]", []),
                        c("[3]", [3]),
                        c("['vega']", ["vega"], ACCEPT),
                    ]
                ),
                "methods": one_of(
                    [
                        c("['nonsense']", ["nonsense"]),
                        c("str", "lr"),
                        c("[]", []),
                        c("['lr']", ["lr"], ACCEPT),
                    ]
                ),
                "seed": seeds(optional=False),
                "generator": torch_generators(optional=False, numpy=ACCEPT),
                "chunk_size": ints(1, huge=EITHER, valid=(1000,)),
                "dtype": one_of(
                    [
                        c("torch.int64", torch.int64),
                        c("str", "float64"),
                        c("np.float64", np.float64),
                        c("torch.float32", torch.float32, ACCEPT),
                    ]
                ),
            },
            check=_check_greeks,
        ),
        Entry(
            "finance.estimate_greeks(PathPayoff(fn))",
            _greeks_of_payoff,
            lambda: {
                "fn": lambda p: (p[:, -1] - 100.0).clamp_min(0.0),
                "market": market(),
                "num_paths": 2000,
                "greeks": ["price"],
                "seed": 0,
            },
            {"fn": _payoff_fns()},
        ),
        Entry(
            "finance.Market",
            FI.Market,
            lambda: dict(MARKET),
            {
                "spot": floats(0.0, open_min=True),
                "vol": floats(0.0, open_min=True),
                "rate": floats(),
                "maturity": floats(0.0, open_min=True),
                "dividend": floats(),
            },
        ),
        Entry(
            "finance.Option",
            FI.Option,
            lambda: {"payoff": "call", "strike": 100.0},
            {
                "payoff": choices(list(FI.PAYOFFS)),
                "strike": floats(0.0, open_min=True),
                "barrier": floats(0.0, open_min=True, optional=True),
                "steps": ints(1, huge=EITHER),
                "monitoring": choices(list(FI.MONITORING)),
                "cash": floats(0.0, open_min=True),
                "direction": choices(["up", "down"]),
                "knock": choices(["out", "in"]),
                "kind": choices(["call", "put"]),
            },
        ),
        Entry(
            "finance.Heston",
            FI.Heston,
            lambda: {"v0": 0.04, "kappa": 1.5, "theta": 0.04, "xi": 0.3, "rho": -0.5},
            {
                "v0": floats(0.0, open_min=True),
                "kappa": floats(0.0, open_min=True),
                "theta": floats(0.0, open_min=True),
                "xi": floats(0.0, open_min=True),
                "rho": floats(-1.0, 1.0, open_min=True, open_max=True),
            },
        ),
        Entry(
            "finance.PathPayoff",
            FI.PathPayoff,
            lambda: {"fn": lambda p: p[:, -1]},
            {
                "fn": not_callables(),
                "steps": ints(1, huge=EITHER),
                "name": one_of([c("None", None), c("3", 3)]),
                "pathwise_ok": bools(),
                "reads_spot": bools(),
            },
        ),
        Entry(
            "finance.payoff",
            FI.payoff,
            lambda: {
                "option": FI.Option("call", 100.0),
                "paths": torch.tensor([[90.0], [110.0], [100.0]], dtype=F64),
                "spot": 100.0,
            },
            {
                "option": not_objects("option"),
                "paths": tensors(
                    lambda: torch.tensor([[90.0], [110.0], [100.0]], dtype=F64),
                    "positive",
                    shape=EITHER,
                ),
                "spot": floats(0.0, open_min=True),
            },
            check=_check_call_payoff,
        ),
        Entry(
            "finance.gbm_paths",
            FI.gbm_paths,
            lambda: {"market": market(), "num_paths": 10, "num_steps": 2, "seed": 0},
            {
                "market": not_objects("market"),
                "num_paths": ints(1, huge=REFUSE, valid=(1,)),
                "num_steps": ints(1, huge=REFUSE, valid=(1,)),
                "seed": seeds(optional=False),
                "generator": torch_generators(optional=False, numpy=ACCEPT),
                "dtype": one_of([c("torch.int64", torch.int64), c("str", "float64")]),
            },
        ),
    ]


def _check_call_payoff(result, call):
    paths = call.kwargs["paths"]
    if call.arg != "paths" or not isinstance(paths, torch.Tensor):
        paths = torch.tensor([[90.0], [110.0], [100.0]], dtype=F64)
    want = (torch.as_tensor(paths).double()[:, -1] - 100.0).clamp_min(0.0)
    if not torch.allclose(result.double(), want):
        raise Wrong(f"{result.tolist()} vs max(S_T - K, 0) {want.tolist()}")


# ---------------------------------------------------------------------------------------------
# molecules
# ---------------------------------------------------------------------------------------------
def _logp() -> torch.Tensor:
    return torch.tensor([-10.0, -12.0, -9.0, -11.0])


def _scores() -> torch.Tensor:
    return torch.tensor([0.2, 0.8, 0.5, 0.1])


def _molecules_entries() -> list[Entry]:
    logp = tensors(_logp, "logprob", integer=EITHER)
    score = tensors(_scores, integer=EITHER)
    smiles_list = one_of(
        [
            c("[]", []),
            c("str (not a list)", "CCO"),
            c("[None]", [None]),
            c("[3]", [3]),
            c("['not a molecule']", ["not a molecule", "CCO"], EITHER),
        ]
    )
    return [
        Entry(
            "molecules.policy_loss",
            MOL.policy_loss,
            lambda: {
                "method": "reinvent",
                "agent_logp": _logp(),
                "prior_logp": _logp() - 1.0,
                "score": _scores(),
            },
            {
                "method": choices(list(MOL.METHODS)),
                "agent_logp": logp,
                "prior_logp": logp,
                "score": score,
                "sigma": floats(0.0),
                "beta": floats(0.0),
                "likelihood_penalty": floats(0.0),
                "advantage": choices(list(MOL.ADVANTAGES)),
                "groups": tensors(lambda: torch.tensor([0, 0, 1, 1]), optional=True),
            },
        ),
        Entry(
            "molecules.reinforce_surrogate",
            MOL.reinforce_surrogate,
            lambda: {
                "agent_logp": _logp().requires_grad_(True),
                "prior_logp": _logp() - 1.0,
                "score": _scores(),
            },
            {
                "agent_logp": logp,
                "prior_logp": logp,
                "score": score,
                "beta": floats(0.0),
                "advantage": choices(list(MOL.ADVANTAGES)),
                "groups": tensors(lambda: torch.tensor([0, 0, 1, 1]), optional=True),
            },
        ),
        Entry(
            "molecules.top_auc",
            MOL.top_auc,
            lambda: {"scores": [0.1, 0.5, 0.3], "budget": 10},
            {
                "scores": one_of(
                    [
                        c("[nan]", [NAN, 0.5]),
                        c("[inf]", [float("inf")]),
                        c("None", None),
                        c("str", "0.1"),
                        c("[]", [], EITHER),
                        c("a score above 1", [1.5], EITHER),
                    ]
                ),
                "budget": ints(1, huge=EITHER, valid=(1,)),
                "top_n": ints(1, huge=EITHER, valid=(1,)),
                "freq_log": ints(1, huge=EITHER, valid=(1,)),
                "finish": bools(),
            },
        ),
        Entry(
            "molecules.tanimoto_similarity",
            MOL.tanimoto_similarity,
            lambda: {"smiles": "CCO", "target": "CCN"},
            {
                "smiles": one_of(
                    [
                        c("None", None),
                        c("3", 3),
                        c("''", "", EITHER),
                        c("not a molecule", "xyz(", EITHER),
                    ]
                ),
                "target": one_of([c("None", None), c("3", 3), c("not a molecule", "xyz(")]),
            },
            check=_in_unit,
        ),
        Entry(
            "molecules.internal_diversity",
            MOL.internal_diversity,
            lambda: {"smiles": ["CCO", "CCN", "c1ccccc1"]},
            {"smiles": smiles_list, "chunk": ints(1, huge=EITHER, valid=(1,))},
            check=_in_unit,
            nonfinite_ok=(),
        ),
        Entry(
            "molecules.moses_metrics",
            MOL.moses_metrics,
            lambda: {"generated": ["CCO", "CCN", "c1ccccc1"], "train": ["CCO"]},
            {
                "generated": smiles_list,
                "train": one_of([c("str", "CCO"), c("[3]", [3]), c("None", None, ACCEPT)]),
                "unique_at": ints(1, huge=EITHER, valid=(1,)),
                "diversity_sample": ints(1, optional=True, huge=EITHER),
                "seed": seeds(optional=False),
            },
            # documented: novelty is NaN without training SMILES, uniqueness and diversity NaN
            # without a valid molecule
            nonfinite_ok=(r"novelty", r"uniqueness", r"internal_diversity"),
        ),
        Entry(
            "molecules.make_objective",
            MOL.make_objective,
            lambda: {"name": "qed"},
            {
                "name": one_of(
                    [c("'nonsense'", "nonsense"), c("None", None), c("3", 3), c("''", "")]
                ),
                "target": one_of([c("3", 3), c("not a molecule", "xyz(")]),
                "weights": one_of(
                    [
                        c("str", "qed"),
                        c("{'qed': nan}", {"qed": NAN}),
                        c("{'nonsense': 1}", {"nonsense": 1.0}),
                    ]
                ),
            },
        ),
        Entry(
            "molecules.Oracle",
            MOL.Oracle,
            lambda: {"score": MOL.qed_score, "budget": 10},
            {"score": not_callables(), "budget": ints(1, huge=EITHER, valid=(1,))},
        ),
        Entry(
            "molecules.BatchScore",
            MOL.BatchScore,
            lambda: {"fn": lambda xs: [1.0] * len(xs)},
            {
                "fn": not_callables(),
                "workers": ints(1, huge=REFUSE, valid=(1,)),
                "name": one_of([c("3", 3)]),
            },
        ),
        Entry(
            "molecules.AgentConfig",
            MOL.AgentConfig,
            lambda: {},
            {
                "method": choices(list(MOL.METHODS)),
                "sigma": floats(0.0),
                "beta": floats(0.0),
                "batch_size": ints(2, huge=EITHER),
                "lr": floats(0.0, open_min=True),
                "replay_size": ints(0, huge=EITHER, valid=(24,)),  # >= the default replay_batch
                "max_steps": ints(1, huge=EITHER),
                "advantage": choices(list(MOL.ADVANTAGES)),
                "group_size": ints(2, optional=True, huge=EITHER),
            },
        ),
        Entry(
            "molecules.squash_logp",
            MOL.squash_logp,
            lambda: {"value": 1.0},
            {
                "value": combine(
                    keep(
                        floats(huge=EITHER),
                        lambda case: case.label not in ("nan", "np.nan", "inf", "-inf"),
                    ),
                    one_of(
                        [
                            c("nan (an invalid molecule)", NAN, ACCEPT),
                            c("inf", float("inf"), EITHER),
                            c("-inf", -float("inf"), EITHER),
                        ]
                    ),
                ),
                "scale": floats(0.0, open_min=True),
            },
            check=_in_unit,
        ),
        Entry(
            "molecules.tokenize",
            MOL.tokenize,
            lambda: {"smiles": "CCO"},
            {"smiles": one_of([c("None", None), c("3", 3), c("['CCO']", ["CCO"])])},
        ),
    ]


ENTRIES: list[Entry] = (
    _discrete_vae_entries()
    + _design_entries()
    + _offpolicy_entries()
    + _finance_entries()
    + _molecules_entries()
)
