"""The main functions of the apps rl, hmm, telegraph, ebm and vi as entries of the suite.

Each entry's baseline is a small valid problem (a few states, tens of observations), so that an
accepted call costs milliseconds; checks are cheap invariants (probabilities at most one,
per-state policy gradients summing to zero, counts that are non-negative integers).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
from hypothesis import strategies as st

from stochgrad.apps import ebm as E
from stochgrad.apps import hmm as H
from stochgrad.apps import telegraph as TG
from stochgrad.apps import vi as V
from stochgrad.apps.rl import fourrooms as FR
from stochgrad.apps.rl import gym_trainer as GT
from stochgrad.apps.rl import multi_objective as MO
from stochgrad.apps.rl import tabular as TAB
from stochgrad.apps.telegraph.likelihood import histogram_nll
from tests.property.harness import ACCEPT, EITHER, REFUSE, Entry, Wrong
from tests.property.values import (
    bools,
    c,
    cf,
    choices,
    combine,
    floats,
    ints,
    one_of,
    remap,
    seeds,
    tensors,
    torch_generators,
)

F64 = torch.float64


def gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def not_objects(kind: str, *, optional: bool = False) -> st.SearchStrategy:
    """Values that are not the app's object (a model, an MDP, a config); ``None`` too unless
    it is the argument's default."""
    fixed = [c("str", kind), c("int 3", 3), cf("a tensor", lambda: torch.zeros(2))]
    if not optional:
        fixed.append(c("None", None))
    return one_of(fixed)


def config_entry(name: str, cls, base: dict, fields: dict) -> Entry:
    """A configuration dataclass whose constructor checks its fields."""
    return Entry(name, cls, lambda: dict(base), fields)


def _nonnegative(result, call):
    if float(result) < -1e-9:
        raise Wrong(f"negative: {float(result)}")


def _finite_leq_zero(result, call):
    t = torch.as_tensor(result).detach()
    if bool((t > 1e-9).any()):
        raise Wrong(f"a log-probability above 0: {t.max().item()}")


# ---------------------------------------------------------------------------------------------
# rl
# ---------------------------------------------------------------------------------------------
MDP = TAB.TabularMDP.random(num_states=3, num_actions=2, gamma=0.8, seed=0)


def _theta() -> torch.Tensor:
    return torch.zeros(3, 2, dtype=F64)


def _check_rows_sum_zero(result, call):
    grad = result if isinstance(result, torch.Tensor) else result.grad
    if tuple(grad.shape) != (3, 2):
        raise Wrong(f"gradient of shape {tuple(grad.shape)}, expected [3, 2]")
    # softmax logits: the score of each state's row sums to zero, so does every estimate
    if not torch.allclose(grad.sum(-1), torch.zeros(3, dtype=grad.dtype), atol=1e-8):
        raise Wrong(f"per-state rows do not sum to zero: {grad.sum(-1).tolist()}")


def _mdp_parts():
    return {
        "transitions": MDP.transitions.clone(),
        "rewards": MDP.rewards.clone(),
        "initial": MDP.initial.clone(),
        "gamma": 0.8,
    }


DEEP_SEA = MO.tabulate()


def _rl_entries() -> list[Entry]:
    theta_cases = tensors(_theta, integer=EITHER)
    mdp_cases = not_objects("mdp")
    return [
        Entry(
            "rl.tabular.reinforce",
            TAB.reinforce,
            lambda: {"mdp": MDP, "theta": _theta(), "num_trajectories": 200, "seed": 0},
            {
                "mdp": mdp_cases,
                "theta": theta_cases,
                "num_trajectories": ints(1, valid=(1, 2)),
                "horizon": ints(1, optional=True, valid=(1,)),
                "baseline": one_of(
                    [
                        c("'nonsense'", "nonsense"),
                        c("nan", float("nan")),
                        c("inf", float("inf")),
                        c("True", True),
                        c("['loo']", ["loo"]),
                        c("0.5", 0.5, ACCEPT),
                        c("'loo'", "loo", ACCEPT),
                        c("'value'", "value", ACCEPT),
                    ]
                ),
                "reward_to_go": bools(),
                "group_size": ints(1, optional=True, valid=(1, 2)),
                "seed": seeds(),
                "generator": torch_generators(),
            },
            check=_check_rows_sum_zero,
        ),
        Entry(
            "rl.tabular.exact_policy_gradient",
            TAB.exact_policy_gradient,
            lambda: {"mdp": MDP, "theta": _theta()},
            {"mdp": mdp_cases, "theta": theta_cases},
            check=_check_rows_sum_zero,
        ),
        Entry(
            "rl.tabular.TabularMDP",
            TAB.TabularMDP,
            _mdp_parts,
            {
                "transitions": tensors(lambda: MDP.transitions.clone(), "prob"),
                "rewards": tensors(lambda: MDP.rewards.clone()),
                "initial": tensors(lambda: MDP.initial.clone(), "prob"),
                "gamma": floats(0.0, 1.0, open_max=True, valid=(0.0,)),
            },
        ),
        Entry(
            "rl.multi_objective.value_iteration",
            MO.value_iteration,
            lambda: {"mdp": DEEP_SEA, "weights": [0.5, 0.5], "gamma": 0.9},
            {
                "mdp": not_objects("mdp"),
                "weights": one_of(
                    [
                        c("[nan, 1]", [float("nan"), 1.0]),
                        c("[-1, 0.5]", [-1.0, 0.5]),
                        c("[1.5]", [1.5]),
                        c("[]", []),
                        c("2-D", [[0.5]]),
                        c("str", "0.5,0.5"),
                        c("None", None),
                        c("[inf, 0]", [float("inf"), 0.0]),
                        c("complex", [0.5 + 1j]),
                        cf("meta tensor", lambda: torch.tensor([0.5], device="meta")),
                        c("three weights (three scalarisations)", [0.2, 0.3, 0.5], ACCEPT),
                        c("np.array", np.array([0.3, 0.7]), ACCEPT),
                    ]
                ),
                "gamma": floats(0.0, 1.0, open_min=True, valid=(1.0,)),
                "tol": floats(0.0, open_min=True),
                "max_iter": ints(1, huge=EITHER, valid=(1,)),
            },
        ),
        Entry(
            "rl.multi_objective.hypervolume_2d",
            MO.hypervolume_2d,
            lambda: {"points": [[1.0, -3.0], [2.0, -5.0]]},
            {
                "points": tensors(
                    lambda: torch.tensor([[1.0, -3.0], [2.0, -5.0]], dtype=F64),
                    numpy=ACCEPT,
                    empty=EITHER,
                    integer=ACCEPT,
                ),
                "ref": one_of(
                    [
                        c("[nan, 0]", [float("nan"), 0.0]),
                        c("one number", [0.0]),
                        c("None", None),
                        c("str", "0,-25"),
                        c("(0, -25)", (0.0, -25.0), ACCEPT),
                    ]
                ),
            },
            check=_nonnegative,
        ),
        config_entry(
            "rl.multi_objective.ReinforceConfig",
            MO.ReinforceConfig,
            {},
            {
                "iterations": ints(1, huge=EITHER),
                "batch": ints(1, huge=EITHER),
                "lr": floats(0.0, open_min=True),
                "baseline_lr": floats(0.0, 1.0, open_min=True),
                "horizon": ints(1, huge=EITHER),
                "restarts": ints(1, huge=EITHER),
            },
        ),
        Entry(
            "rl.multi_objective.train_reinforce",
            MO.train_reinforce,
            lambda: {
                "mdp": DEEP_SEA,
                "weights": [0.5, 0.5],
                "gamma": 0.9,
                "config": MO.ReinforceConfig(iterations=2, batch=4, horizon=20, restarts=1),
            },
            {
                "mdp": not_objects("mdp"),
                "gamma": floats(0.0, 1.0, open_min=True),
                "config": not_objects("config", optional=True),
                "seed": seeds(optional=False),
                "threads": ints(1, optional=True, huge=EITHER),
            },
        ),
        Entry(
            "rl.fourrooms.FourRooms",
            FR.FourRooms,
            lambda: {},
            {
                "goal": one_of(
                    [
                        c("a wall cell", (0, 0)),
                        c("outside the grid", (50, 50)),
                        c("negative", (-1, 3)),
                        c("str", "7,9"),
                        c("None", None),
                        c("three numbers", (7, 9, 1)),
                    ]
                ),
                "gamma": floats(0.0, 1.0, open_min=True),
                "p_intended": floats(0.0, 1.0),
            },
        ),
        config_entry(
            "rl.fourrooms.OptionCriticConfig",
            FR.OptionCriticConfig,
            {},
            {
                "num_options": ints(1, huge=EITHER),
                "lr_critic": floats(0.0, open_min=True),
                "epsilon": floats(0.0, 1.0),
                "temperature": floats(0.0, open_min=True),
                "xi": floats(),
                "max_steps": ints(1, huge=EITHER),
            },
        ),
        Entry(
            "rl.fourrooms.train_option_critic",
            FR.train_option_critic,
            lambda: {
                "env": FR.FourRooms(),
                "episodes": 2,
                "seeds": 1,
                "config": FR.OptionCriticConfig(max_steps=50),
            },
            {
                "env": not_objects("env"),
                "episodes": ints(1, huge=REFUSE, valid=(1,)),
                "seeds": one_of(
                    [
                        c("0 seeds", 0),
                        c("-1", -1),
                        c("[]", []),
                        c("['a']", ["a"]),
                        c("[1.5]", [1.5]),
                        c("[-1]", [-1]),
                        c("None", None),
                        c("[3, 4]", [3, 4], ACCEPT),
                    ]
                ),
                "config": not_objects("config", optional=True),
            },
        ),
        config_entry(
            "rl.gym_trainer.Config",
            GT.Config,
            {},
            {
                "env_id": one_of([c("''", ""), c("None", None), c("3", 3)]),
                "algo": choices(list(GT.ALGOS)),
                "num_envs": ints(1, huge=EITHER),
                "n_steps": ints(1, huge=EITHER),
                "gamma": floats(0.0, 1.0),
                "gae_lambda": floats(0.0, 1.0),
                "lr": floats(0.0, open_min=True),
                "max_grad_norm": floats(0.0, open_min=True),
                "threads": ints(1, huge=EITHER),
                "target_return": floats(optional=True),
            },
        ),
    ]


# ---------------------------------------------------------------------------------------------
# hmm
# ---------------------------------------------------------------------------------------------
def _quakes() -> torch.Tensor:
    return H.load_earthquakes()[:30].clone()


HMM2 = H.random_hmm(_quakes(), 2, generator=gen())


def _check_fit(result, call):
    best = result[0]
    if best.log_likelihood > 1e-9:
        raise Wrong(f"a Poisson log-likelihood above 0: {best.log_likelihood}")
    max_iter = call.kwargs.get("max_iter", 1000)
    if best.n_iter > int(max_iter):
        raise Wrong(f"n_iter {best.n_iter} > max_iter {max_iter}")


def _check_posterior(result, call):
    # the marginals come from exp(log_alpha + log_beta - log L): rounding grows with |log L|
    tol = 1e-9 * (1.0 + float(result.log_likelihood.abs().max()))
    if not torch.allclose(result.gamma.sum(-1), torch.ones((), dtype=result.gamma.dtype), atol=tol):
        raise Wrong("posterior marginals do not sum to one")


def _hmm_entries() -> list[Entry]:
    y = tensors(_quakes, "counts", integer=ACCEPT, numpy=ACCEPT, shape=EITHER, huge=EITHER)
    hmm = not_objects("hmm")
    return [
        Entry(
            "hmm.fit_hmm",
            H.fit_hmm,
            lambda: {"y": _quakes(), "num_states": 2, "restarts": 1, "max_iter": 5},
            {
                "y": y,
                "num_states": ints(1, huge=REFUSE, valid=(1,)),
                "emission": choices(list(H.EMISSIONS)),
                "method": choices(list(H.FIT_METHODS)),
                "restarts": ints(1, huge=REFUSE, valid=(1,)),
                "seed": seeds(optional=False),
                "max_iter": ints(1, huge=EITHER, valid=(1,)),
            },
            check=_check_fit,
        ),
        Entry(
            "hmm.log_likelihood",
            H.log_likelihood,
            lambda: {"hmm": HMM2, "y": _quakes()},
            {"hmm": hmm, "y": y},
            check=_finite_leq_zero,
        ),
        Entry(
            "hmm.forward_backward",
            H.forward_backward,
            lambda: {"hmm": HMM2, "y": _quakes()},
            {"hmm": hmm, "y": y},
            check=_check_posterior,
        ),
        Entry(
            "hmm.viterbi", H.viterbi, lambda: {"hmm": HMM2, "y": _quakes()}, {"hmm": hmm, "y": y}
        ),
        Entry(
            "hmm.sample_posterior",
            H.sample_posterior,
            lambda: {"hmm": HMM2, "y": _quakes(), "num_samples": 4, "generator": gen()},
            {
                "hmm": hmm,
                "y": y,
                "num_samples": ints(1, valid=(1,)),
                "generator": torch_generators(seed_arg=None),
            },
        ),
        Entry(
            "hmm.sampled_likelihood_gradient",
            H.sampled_likelihood_gradient,
            lambda: {"hmm": HMM2, "y": _quakes(), "num_samples": 8, "generator": gen()},
            {
                "hmm": hmm,
                "y": y,
                "num_samples": ints(2, valid=(2,)),
                "generator": torch_generators(seed_arg=None),
            },
        ),
        Entry(
            "hmm.random_hmm",
            H.random_hmm,
            lambda: {"y": _quakes(), "num_states": 2, "generator": gen()},
            {
                "y": y,
                "num_states": ints(1, huge=REFUSE, valid=(1,)),
                "emission": choices(list(H.EMISSIONS)),
                "generator": torch_generators(optional=False, seed_arg=None),
            },
        ),
        Entry(
            "hmm.HMM",
            H.HMM,
            lambda: {
                "emission": "poisson",
                "start_logits": torch.zeros(2, dtype=F64),
                "trans_logits": torch.zeros(2, 2, dtype=F64),
                "log_rates": torch.tensor([1.0, 2.0], dtype=F64),
            },
            {
                "emission": choices(list(H.EMISSIONS)),
                "start_logits": tensors(lambda: torch.zeros(2, dtype=F64), neg_inf=EITHER),
                "trans_logits": tensors(lambda: torch.zeros(2, 2, dtype=F64), neg_inf=EITHER),
                "log_rates": tensors(lambda: torch.tensor([1.0, 2.0], dtype=F64)),
            },
            nonfinite_ok=(r"start_logits", r"trans_logits"),  # -inf: a probability of 0
        ),
        Entry(
            "hmm.baum_welch",
            H.baum_welch,
            lambda: {"hmm": HMM2, "y": _quakes(), "max_iter": 5},
            {
                "hmm": hmm,
                "y": y,
                "max_iter": ints(1, huge=EITHER, valid=(1,)),
                "tol": floats(0.0),
                "min_sd": floats(0.0, open_min=True),
            },
        ),
        Entry(
            "hmm.information_criteria",
            H.information_criteria,
            lambda: {"log_lik": -100.0, "num_params": 5, "num_obs": 30},
            {
                "log_lik": floats(),
                "num_params": ints(0, huge=EITHER),
                "num_obs": ints(1, huge=EITHER),
            },
        ),
    ]


# ---------------------------------------------------------------------------------------------
# telegraph
# ---------------------------------------------------------------------------------------------
def _counts() -> torch.Tensor:
    return TG.sample_stationary(
        torch.tensor([1.0, 0.5]),
        torch.tensor([2.0, 1.0]),
        torch.tensor([20.0, 10.0]),
        60,
        generator=gen(),
    )


def _rate(valid=(1.0,)):
    """A telegraph rate: a positive number, or an array of them (one per gene)."""
    arrays_ok = {"list [3]"}
    return remap(
        floats(0.0, open_min=True, valid=valid, huge=EITHER),
        lambda case: dataclasses.replace(case, expect=EITHER) if case.label in arrays_ok else case,
    )


def _check_counts(result, call):
    t = torch.as_tensor(result)
    if t.is_floating_point() and not bool((t == t.round()).all()):
        raise Wrong("counts that are not integers")
    if bool((t < 0).any()):
        raise Wrong("negative counts")


def _hist() -> torch.Tensor:
    return torch.tensor([[3.0, 5.0, 2.0, 1.0, 0.0], [1.0, 0.0, 4.0, 2.0, 2.0]], dtype=F64)


def _telegraph_entries() -> list[Entry]:
    # NaN is a missing cell, dropped per gene (documented)
    counts = tensors(
        _counts, "counts", integer=ACCEPT, numpy=ACCEPT, shape=EITHER, huge=EITHER, nan=EITHER
    )
    rates = {"k_on": _rate(), "k_off": _rate((2.0,)), "k_syn": _rate((20.0,))}
    return [
        Entry(
            "telegraph.log_pmf",
            TG.log_pmf,
            lambda: {"n": [0, 3, 10], "k_on": 1.0, "k_off": 2.0, "k_syn": 20.0},
            {
                "n": combine(
                    tensors(
                        lambda: torch.tensor([0, 3, 10]),
                        "counts",
                        shape=EITHER,
                        numpy=ACCEPT,
                        empty=EITHER,
                    ),
                    one_of(
                        [
                            c("10**7 (a huge count)", [10**7], EITHER),
                            c("10**12", [10**12], EITHER),
                            c("99999999999999999999999", [99999999999999999999999]),
                            c("[2.5]", [2.5]),
                        ]
                    ),
                ),
                **rates,
            },
            check=_finite_leq_zero,
        ),
        Entry(
            "telegraph.simulate",
            TG.simulate,
            lambda: {"k_on": 1.0, "k_off": 2.0, "k_syn": 20.0, "num_cells": 10, "generator": gen()},
            {
                **rates,
                "num_cells": ints(1, huge=REFUSE, valid=(1,)),
                "generator": torch_generators(optional=False, seed_arg=None),
                "t_end": floats(0.0, open_min=True, optional=True),
                "method": choices(["gillespie", "tau_leap"]),
            },
            check=_check_counts,
        ),
        Entry(
            "telegraph.sample_stationary",
            TG.sample_stationary,
            lambda: {"k_on": 1.0, "k_off": 2.0, "k_syn": 20.0, "num_cells": 10, "generator": gen()},
            {
                **rates,
                "num_cells": ints(1, huge=REFUSE, valid=(1,)),
                "generator": torch_generators(optional=False, seed_arg=None),
            },
            check=_check_counts,
        ),
        Entry(
            "telegraph.fit_genes",
            TG.fit_genes,
            lambda: {"counts": _counts(), "ci": False, "max_iter": 20},
            {
                "counts": counts,
                "ci": bools(),
                "max_iter": ints(1, huge=EITHER, valid=(1,)),
                "max_ci_ratio": floats(1.0, open_min=True),
            },
            nonfinite_ok=(r"(bf|bs)_(low|high|ci_ratio)",),
            timeout=30.0,
        ),
        Entry(
            "telegraph.fit_counts",
            TG.fit_counts,
            lambda: {"counts": _counts(), "ci": False, "max_iter": 20},
            {
                "counts": counts,
                "chunk_size": ints(1, optional=True, huge=EITHER, valid=(1,)),
                "backend": one_of([c("'nonsense'", "nonsense"), c("None", None), c("3", 3)]),
                "num_workers": ints(1, optional=True, huge=REFUSE),
                "names": one_of(
                    [
                        c("one name too few", ["a"]),
                        c("str", "ab"),
                        c("[1, 2]", [1, 2]),
                        c("['a', 'b']", ["a", "b"], ACCEPT),
                    ]
                ),
            },
            nonfinite_ok=(r"(bf|bs)_(low|high|ci_ratio)",),
            timeout=30.0,
        ),
        Entry(
            "telegraph.fisher_gradient",
            TG.fisher_gradient,
            lambda: {
                "n": [3, 5],
                "k_on": 1.0,
                "k_off": 2.0,
                "k_syn": 20.0,
                "num_samples": 50,
                "generator": gen(),
            },
            {
                "n": tensors(lambda: torch.tensor([3, 5]), "counts", shape=EITHER, numpy=ACCEPT),
                **rates,
                "num_samples": ints(1, valid=(2,)),
                "generator": torch_generators(optional=False, seed_arg=None),
                "method": choices(["posterior", "prior"]),
            },
        ),
        Entry(
            "telegraph.moment_estimates",
            TG.moment_estimates,
            lambda: {"counts": _counts()},
            {"counts": counts},
            nonfinite_ok=(r"\.",),  # moment estimates are inf/NaN where the moments do not fit
        ),
        Entry(
            "telegraph.histogram_nll",
            histogram_nll,
            lambda: {
                "k_on": torch.tensor([1.0, 0.5], dtype=F64),
                "k_off": torch.tensor([2.0, 1.0], dtype=F64),
                "k_syn": torch.tensor([5.0, 3.0], dtype=F64),
                "hist": _hist(),
            },
            {
                "k_on": tensors(lambda: torch.tensor([1.0, 0.5], dtype=F64), "positive"),
                "k_syn": tensors(lambda: torch.tensor([5.0, 3.0], dtype=F64), "positive"),
                # cells per count (weights may be fractional; never negative)
                "hist": tensors(_hist, "nonneg", integer=ACCEPT),
                "order": ints(0, 2, valid=(0, 2)),
            },
        ),
    ]


# ---------------------------------------------------------------------------------------------
# ebm
# ---------------------------------------------------------------------------------------------
def _rbm() -> E.RBM:
    return E.RBM(
        torch.full((6, 3), 0.1, dtype=F64), torch.zeros(6, dtype=F64), torch.zeros(3, dtype=F64)
    )


def _binary() -> torch.Tensor:
    return (torch.rand(20, 6, generator=gen()) > 0.5).to(F64)


def _ebm_entries() -> list[Entry]:
    data = tensors(_binary, "binary", integer=EITHER, boolean=EITHER, numpy=EITHER)
    rbm = not_objects("rbm")
    tiny = {"num_hidden": 3, "epochs": 1, "batch_size": 10}
    return [
        Entry(
            "ebm.RBM",
            E.RBM,
            lambda: {
                "W": torch.full((6, 3), 0.1, dtype=F64),
                "b": torch.zeros(6, dtype=F64),
                "c": torch.zeros(3, dtype=F64),
            },
            {
                "W": tensors(lambda: torch.full((6, 3), 0.1, dtype=F64)),
                "b": tensors(lambda: torch.zeros(6, dtype=F64)),
                "c": tensors(lambda: torch.zeros(3, dtype=F64)),
            },
        ),
        Entry(
            "ebm.log_likelihood",
            E.log_likelihood,
            lambda: {"rbm": _rbm(), "v": _binary()},
            {"rbm": rbm, "v": data},
            check=_finite_leq_zero,
        ),
        Entry(
            "ebm.sampled_gradient",
            E.sampled_gradient,
            lambda: {"rbm": _rbm(), "data": _binary(), "num_samples": 16, "generator": gen()},
            {
                "rbm": rbm,
                "data": data,
                "num_samples": ints(1, valid=(2,)),
                "method": choices(["exact", "cd", "pcd"]),
                "k": ints(1, huge=REFUSE, valid=(1,)),
                "generator": torch_generators(optional=False, seed_arg=None),
            },
        ),
        Entry(
            "ebm.train_rbm",
            E.train_rbm,
            lambda: {"train": _binary(), "config": E.TrainConfig(**tiny)},
            {
                "train": data,
                "config": not_objects("config", optional=True),
                "test": tensors(
                    _binary, "binary", integer=EITHER, boolean=EITHER, numpy=EITHER, optional=True
                ),
            },
        ),
        config_entry(
            "ebm.TrainConfig",
            E.TrainConfig,
            tiny,
            {
                "num_hidden": ints(1, huge=EITHER),
                "epochs": ints(1, huge=EITHER),
                "method": choices(list(E.TRAIN_METHODS)),
                "k": ints(1, huge=EITHER),
                "lr": floats(0.0, open_min=True),
                "lr_final_fraction": floats(0.0, 1.0),
                "batch_size": ints(1, huge=EITHER),
                "momentum": floats(0.0, 1.0, open_max=True),
                "weight_decay": floats(0.0),
                "init_std": floats(0.0, open_min=True),
                "data_visible_bias": bools(),
                "seed": seeds(optional=False),
            },
        ),
        Entry(
            "ebm.sample_model",
            E.sample_model,
            lambda: {"rbm": _rbm(), "num_samples": 8, "generator": gen()},
            {
                "rbm": rbm,
                "num_samples": ints(1, huge=REFUSE, valid=(1,)),
                "generator": torch_generators(optional=False, seed_arg=None),
            },
        ),
        Entry(
            "ebm.log_partition",
            E.log_partition,
            lambda: {"rbm": _rbm()},
            {"rbm": rbm, "chunk": ints(1, huge=EITHER, valid=(1,))},
        ),
    ]


# ---------------------------------------------------------------------------------------------
# vi
# ---------------------------------------------------------------------------------------------
def _xy() -> tuple[torch.Tensor, torch.Tensor]:
    g = gen()
    X = torch.randn(30, 3, generator=g, dtype=F64)
    y = (torch.rand(30, generator=g) > 0.5).to(F64) * 2 - 1
    return X, y


def _vi_base(**extra):
    X, y = _xy()
    return {
        "mu": torch.zeros(3, dtype=F64),
        "log_sigma": torch.zeros(3, dtype=F64),
        "X": X,
        "y": y,
        **extra,
    }


def _vi_entries() -> list[Entry]:
    common = {
        "mu": tensors(lambda: torch.zeros(3, dtype=F64), huge=EITHER),
        "log_sigma": tensors(lambda: torch.zeros(3, dtype=F64), huge=EITHER),
        "X": tensors(lambda: _xy()[0], huge=EITHER),
        "y": combine(
            tensors(lambda: _xy()[1], integer=ACCEPT),
            one_of([cf("labels 0/1", lambda: (_xy()[1] > 0).to(F64))]),
        ),
    }
    return [
        Entry(
            "vi.elbo_gradient",
            V.elbo_gradient,
            lambda: _vi_base(estimator="pathwise", num_samples=8, generator=gen()),
            {
                "estimator": choices(list(V.ELBO_ESTIMATORS)),
                **common,
                "num_samples": ints(1, valid=(2,)),
                "generator": torch_generators(optional=False, seed_arg=None),
                "batch": tensors(lambda: torch.arange(5), "index:30", optional=True, shape=EITHER),
            },
        ),
        Entry(
            "vi.mc_elbo",
            V.mc_elbo,
            lambda: _vi_base(num_samples=50, generator=gen()),
            {
                **common,
                "num_samples": ints(2, valid=(2,)),
                "generator": torch_generators(optional=False, seed_arg=None),
            },
        ),
        Entry(
            "vi.kl_to_prior",
            V.kl_to_prior,
            lambda: {"mu": torch.zeros(3, dtype=F64), "log_sigma": torch.zeros(3, dtype=F64)},
            {"mu": common["mu"], "log_sigma": common["log_sigma"]},
            check=_nonnegative,
        ),
        config_entry(
            "vi.BBVIConfig",
            V.BBVIConfig,
            {},
            {
                "steps": ints(1, huge=EITHER),
                "num_samples": ints(1, huge=EITHER),
                "batch_size": ints(1, huge=EITHER),
                "lr": floats(0.0, open_min=True),
                "optimizer": choices(list(V.OPTIMIZERS)),
                "schedule": choices(list(V.SCHEDULES)),
                "budget": choices(list(V.BUDGETS)),
                "eval_samples": ints(2, huge=EITHER),
                "nodes": ints(2, huge=EITHER),
            },
        ),
    ]


ENTRIES: list[Entry] = (
    _rl_entries() + _hmm_entries() + _telegraph_entries() + _ebm_entries() + _vi_entries()
)
