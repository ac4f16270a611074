"""The rest of the core's public functions (``stochgrad.__all__``) as entries of the suite:
Fisher-identity gradients, the surrogate layer, baselines and advantage rules, returns, the
``GradientEstimate`` constructors, stochastic graphs, DiCE's magic box, the registries.

References for accepted calls are closed forms computed here: the Fisher gradient of a
softmax prior times a likelihood, the per-sample scores of a categorical, leave-one-out
advantages, discounted returns and GAE by their recursions, a mean and a sample variance.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.distributions import Bernoulli, Categorical, Distribution, Normal

import stochgrad as sg
from tests.property.core_estimators import baseline_cases
from tests.property.harness import ACCEPT, EITHER, REFUSE, Entry, Wrong
from tests.property.references import check_shape_like
from tests.property.values import (
    bools,
    c,
    cf,
    choices,
    combine,
    floats,
    ints,
    not_callables,
    one_of,
    seeds,
    tensors,
    torch_generators,
)


class Detached:
    """A value the wrappers below pass on as it is (not connected to the parameters)."""

    def __init__(self, value):
        self.value = value

    def __repr__(self) -> str:
        return f"Detached({self.value!r})"


def connect(value, theta: torch.Tensor):
    """``value + 0 * theta.sum()`` for a floating tensor that does not depend on ``theta``
    (the generated bad values are plain tensors; a log-joint or log-probabilities must be
    differentiable in the parameters to test what they carry); anything else as it is."""
    if isinstance(value, Detached):
        return value.value
    if (
        isinstance(value, torch.Tensor)
        and value.is_floating_point()
        and not value.is_meta
        and not value.requires_grad
        and theta.dtype == value.dtype
    ):
        return value + 0.0 * theta.sum()
    return value


LOGLIK = torch.tensor([-1.0, -2.0, -0.5], dtype=torch.float64)
THETA = (0.2, -0.1, 0.4)


def _fisher_base():
    theta = torch.tensor(THETA, dtype=torch.float64, requires_grad=True)
    return {"log_joint": torch.log_softmax(theta, 0) + LOGLIK, "params": theta}


def _fisher(log_joint=None, params=None, **kw):
    theta = params if isinstance(params, torch.Tensor) else torch.tensor(THETA, dtype=torch.float64)
    return sg.fisher_gradient(connect(log_joint, theta), params, **kw)


def _check_fisher(result, call):
    kw = call.kwargs
    check_shape_like(result.grad, kw["params"])
    if call.arg in ("log_joint", "params") or kw.get("samples"):
        return
    theta = kw["params"].detach()
    prior = torch.softmax(theta, 0)
    log_joint = torch.log_softmax(theta, 0) + LOGLIK
    if kw.get("posterior") is not None:
        post = torch.as_tensor(kw["posterior"]).double()
    else:
        measure = kw.get("log_measure")
        extra = 0.0 if measure is None else torch.as_tensor(measure).double()
        post = torch.softmax(log_joint + extra, -1).reshape(-1)
    # d/dtheta log_joint_k = e_k - softmax(theta): the posterior-weighted sum
    want = post - prior * post.sum()
    if not torch.allclose(result.grad.detach().double(), want, atol=1e-6):
        raise Wrong(f"grad {result.grad.tolist()} vs {want.tolist()}")


X_CAT = torch.tensor([0, 2, 1, 2, 0, 1, 2, 2])


def _surrogate_base():
    theta = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    log_probs = Categorical(logits=theta).log_prob(X_CAT)
    return {"log_probs": log_probs, "values": (X_CAT == 2).double(), "params": theta}


def _check_surrogate(result, call):
    kw = call.kwargs
    loss = result.loss
    if loss.dim() != 0:
        raise Wrong(f"loss of shape {tuple(loss.shape)}")
    if call.arg == "log_probs" or call.arg == "values":
        return
    if kw.get("advantage") is None and kw.get("weights") is None:
        want = (torch.as_tensor(kw["values"]).double() * kw["log_probs"].detach()).mean()
        sign = -1.0 if bool(kw.get("maximize")) else 1.0
        if abs(float(loss) - sign * float(want)) > 1e-9:
            raise Wrong(f"loss {float(loss)} vs mean(values * log_probs) {sign * float(want)}")


def _per_sample_gradients(log_probs=None, params=None):
    theta = params if isinstance(params, torch.Tensor) else torch.zeros(3, dtype=torch.float64)
    return sg.per_sample_gradients(connect(log_probs, theta), params)


def _check_psg(result, call):
    if call.arg == "log_probs":
        return
    want = torch.nn.functional.one_hot(X_CAT, 3).double() - 1.0 / 3
    if not torch.allclose(result[0].double(), want, atol=1e-10):
        raise Wrong("per-sample gradients differ from onehot(x) - softmax(theta)")


def _surrogate_estimate(params="baseline", batches=None):
    base = _surrogate_base()
    s = sg.surrogate_loss(base["log_probs"], base["values"])
    return s.estimate(
        base["params"] if isinstance(params, str) and params == "baseline" else params,
        batches=batches,
    )


def _check_surrogate_estimate(result, call):
    if not isinstance(result, sg.GradientEstimate):
        raise Wrong("not a GradientEstimate")


def _loo(values):
    v = values.double()
    n = v.shape[0]
    return v - (v.sum() - v) / (n - 1)


def _advantages(rule):
    def run(values=None, groups=None):
        return sg.baselines.resolve_baseline(rule).advantages(values, groups)

    return run


def _check_loo(result, call):
    kw = call.kwargs
    if kw.get("groups") is not None or call.arg != "values":
        return
    if not torch.allclose(result.double(), _loo(torch.as_tensor(kw["values"])), atol=1e-6):
        raise Wrong("leave-one-out advantages differ from f_i - mean of the others")


REWARDS = torch.tensor([1.0, 0.0, 2.0, -1.0, 0.5])


def _rtg(rewards, gamma, dones=None):
    out, acc = [], 0.0
    cont = [1.0] * len(rewards) if dones is None else [1.0 - float(d) for d in dones]
    for t in reversed(range(len(rewards))):
        acc = float(rewards[t]) + gamma * cont[t] * acc
        out.append(acc)
    return torch.tensor(out[::-1], dtype=torch.float64)


def _check_rtg(result, call):
    kw = call.kwargs
    r = torch.as_tensor(kw["rewards"])
    if r.dim() != 1:
        return
    want = _rtg(r, float(kw.get("gamma", 1.0)), kw.get("dones"))
    tol = 1e-5 if not result.is_floating_point() else max(1e-5, 20 * torch.finfo(result.dtype).eps)
    if not torch.allclose(result.double(), want, atol=tol, rtol=tol):
        raise Wrong(f"{result.tolist()} vs {want.tolist()}")


def _check_gae(result, call):
    kw = call.kwargs
    r, v = torch.as_tensor(kw["rewards"]).double(), torch.as_tensor(kw["values"]).double()
    if r.dim() != 1 or call.arg in ("rewards", "values"):
        return
    gamma, lam = float(kw.get("gamma", 0.99)), float(kw.get("lam", 0.95))
    last = float(kw.get("last_value", 0.0))
    dones = kw.get("dones")
    cont = [1.0] * len(r) if dones is None else [1.0 - float(d) for d in dones]
    adv, acc = [], 0.0
    for t in reversed(range(len(r))):
        nxt = last if t == len(r) - 1 else float(v[t + 1])
        delta = float(r[t]) + gamma * cont[t] * nxt - float(v[t])
        acc = delta + gamma * lam * cont[t] * acc
        adv.append(acc)
    want = torch.tensor(adv[::-1], dtype=torch.float64)
    adv = result[0]
    tol = 1e-5 if not adv.is_floating_point() else max(1e-5, 20 * torch.finfo(adv.dtype).eps)
    if not torch.allclose(adv.double(), want, atol=tol, rtol=tol):
        raise Wrong(f"advantages {result[0].tolist()} vs {want.tolist()}")


PER_SAMPLE = torch.tensor([[1.0, -2.0], [3.0, 0.5], [2.0, 1.0], [0.0, 4.0], [-1.0, 2.5]])


def _check_from_per_sample(result, call):
    ps = call.kwargs["per_sample"]
    if call.arg != "per_sample":
        ps = PER_SAMPLE
    if not isinstance(ps, torch.Tensor):
        return
    tol = max(1e-6, 20 * torch.finfo(ps.dtype).eps) if ps.is_floating_point() else 1e-6
    ps = ps.double()
    if not torch.allclose(result.grad.double(), ps.mean(0), atol=tol, rtol=tol):
        raise Wrong("grad is not the mean of the per-sample terms")
    if ps.shape[0] > 1 and not torch.allclose(
        result.variance.double(), ps.var(0), atol=tol, rtol=tol
    ):
        raise Wrong("variance is not the sample variance")


def _from_batch_sums(sums=None, sizes=None, **kw):
    return sg.GradientEstimate.from_batch_sums(sums, sizes, **kw)


def _check_from_batch_sums(result, call):
    kw = call.kwargs
    sizes = torch.as_tensor(kw["sizes"])
    if int(result.num_samples) != int(sizes.sum()):
        raise Wrong("num_samples is not the sum of the batch sizes")


class _Private(Distribution):
    """A distribution type of the suite's own, for the registration functions."""

    arg_constraints: dict = {}


def _graph_sample(**kw):
    with sg.StochasticGraph(num_samples=4, seed=0) as g:
        return g.sample(**kw)


def _graph_cost(**kw):
    with sg.StochasticGraph(num_samples=4, seed=0) as g:
        th = torch.tensor(0.3, requires_grad=True)
        g.sample("x", Bernoulli(logits=th))
        g.cost(**kw)
    return g.surrogate()


def _graph_surrogate(reduction="mean"):
    with sg.StochasticGraph(num_samples=4, seed=0) as g:
        th = torch.tensor(0.3, requires_grad=True)
        x = g.sample("x", Bernoulli(logits=th))
        g.cost("c", x * 2.0)
    return g.surrogate(reduction)


def _check_graph_sample(result, call):
    if tuple(result.shape[:1]) != (4,):
        raise Wrong(f"samples of shape {tuple(result.shape)}, expected [4, ...]")


def _enumerate_model(g):
    th = torch.tensor(0.3, requires_grad=True)
    x = g.sample("x", Bernoulli(logits=th))
    g.cost("c", x * 2.0)


def _check_ones(result, call):
    if result.is_meta:  # an elementwise op of a meta tensor: shape only
        return
    if not bool((result.detach() == 1).all()):
        raise Wrong("magic_box is not one")


def _other_entries() -> list[Entry]:
    real5 = lambda: REWARDS.clone()  # noqa: E731
    return (
        [
            Entry(
                "fisher_gradient",
                _fisher,
                _fisher_base,
                {
                    "log_joint": combine(
                        tensors(
                            lambda: _fisher_base()["log_joint"].detach(),
                            shape=EITHER,
                            grad=EITHER,
                            neg_inf=EITHER,
                        ),
                        one_of(
                            [
                                cf(
                                    "not depending on params",
                                    lambda: Detached(_fisher_base()["log_joint"].detach()),
                                )
                            ]
                        ),
                    ),
                    "params": combine(
                        tensors(
                            lambda: torch.tensor([0.2, -0.1, 0.4], dtype=torch.float64),
                            shape=EITHER,
                            grad=EITHER,
                        ),
                        one_of([c("empty tuple", ())]),
                    ),
                    "posterior": tensors(
                        lambda: torch.tensor([0.3, 0.3, 0.4], dtype=torch.float64),
                        "prob",
                        optional=True,
                        shape=REFUSE,
                    ),
                    "log_measure": tensors(
                        lambda: torch.zeros(3, dtype=torch.float64),
                        optional=True,
                        shape=EITHER,
                        neg_inf=EITHER,
                    ),
                    "samples": bools(),
                    "copies": bools(),
                    "dim": ints(-1, 0, huge=REFUSE, valid=(0, -1)),
                },
                check=_check_fisher,
            ),
            Entry(
                "surrogate_loss",
                sg.surrogate_loss,
                _surrogate_base,
                {
                    "log_probs": tensors(
                        lambda: _surrogate_base()["log_probs"].detach(),
                        grad=EITHER,
                        names=("values",),
                    ),
                    "values": tensors(
                        lambda: (X_CAT == 2).double(),
                        integer=ACCEPT,
                        boolean=EITHER,
                        names=("log_probs",),
                    ),
                    "advantage": combine(baseline_cases(), one_of([c("'grpo'", "grpo", ACCEPT)])),
                    "groups": tensors(
                        lambda: torch.tensor([0, 0, 0, 0, 1, 1, 1, 1]), "real", optional=True
                    ),
                    "weights": tensors(
                        lambda: torch.full((8,), 0.5, dtype=torch.float64), "nonneg", optional=True
                    ),
                    "self_normalize": bools(),
                    "params": one_of(
                        [
                            cf("a tensor without grad", lambda: torch.zeros(3)),
                            c("3", 3),
                            c("empty list", []),
                            c("None (optional)", None, ACCEPT),
                        ]
                    ),
                    "maximize": bools(),
                },
                check=_check_surrogate,
            ),
            Entry(
                "per_sample_gradients",
                _per_sample_gradients,
                _surrogate_base_psg,
                {
                    "log_probs": combine(
                        tensors(lambda: _surrogate_base()["log_probs"].detach(), grad=EITHER),
                        one_of(
                            [
                                cf(
                                    "not depending on params",
                                    lambda: Detached(_surrogate_base()["log_probs"].detach()),
                                )
                            ]
                        ),
                    ),
                    "params": one_of(
                        [
                            cf("a tensor without grad", lambda: torch.zeros(3)),
                            c("3", 3),
                            c("empty list", []),
                            c("None", None),
                            cf(
                                "a meta-device tensor",
                                lambda: torch.zeros(3, device="meta", requires_grad=True),
                            ),
                        ]
                    ),
                },
                check=_check_psg,
            ),
            Entry(
                "Surrogate.estimate",
                _surrogate_estimate,
                lambda: {"params": "baseline", "batches": None},
                {
                    "params": one_of(
                        [
                            cf("a tensor without grad", lambda: torch.zeros(3)),
                            c("3", 3),
                            c("empty list", []),
                            c("None", None, EITHER),
                        ]
                    ),
                    "batches": ints(2, 8, optional=True, valid=(2, 8)),
                },
                check=_check_surrogate_estimate,
            ),
            Entry(
                "LeaveOneOutBaseline.advantages",
                _advantages("loo"),
                lambda: {"values": real5(), "groups": None},
                {
                    "values": tensors(real5, integer=ACCEPT),
                    "groups": tensors(lambda: torch.tensor([0, 0, 1, 1, 1]), optional=True),
                },
                check=_check_loo,
            ),
            Entry(
                "GroupNormalizedBaseline.advantages",
                _advantages("grpo"),
                lambda: {"values": real5(), "groups": torch.tensor([0, 0, 1, 1, 1])},
                {
                    "values": tensors(real5, integer=ACCEPT),
                    "groups": tensors(lambda: torch.tensor([0, 0, 1, 1, 1]), optional=True),
                },
            ),
            Entry(
                "ConstantBaseline", sg.ConstantBaseline, lambda: {"value": 0.5}, {"value": floats()}
            ),
            Entry(
                "EMABaseline",
                sg.EMABaseline,
                lambda: {"decay": 0.9, "init": None},
                {
                    "decay": floats(0.0, 1.0, open_max=True, valid=(0.0,)),
                    "init": floats(optional=True),
                },
            ),
            Entry(
                "GroupNormalizedBaseline",
                sg.GroupNormalizedBaseline,
                lambda: {"scale": True, "eps": 1e-4},
                {"scale": bools(), "eps": floats(0.0, valid=(0.0,))},
            ),
            Entry(
                "LearnedBaseline",
                sg.LearnedBaseline,
                lambda: {"module": None, "lr": 0.01, "steps": 1},
                {
                    "module": one_of(
                        [c("3", 3), c("str", "mlp"), cf("a tensor", lambda: torch.zeros(2))]
                    ),
                    "lr": floats(0.0, open_min=True),
                    "steps": ints(1, huge=EITHER),
                    "context_fn": not_callables(optional=True),
                },
            ),
            Entry(
                "reward_to_go",
                sg.reward_to_go,
                lambda: {"rewards": real5(), "gamma": 0.9},
                {
                    "rewards": tensors(real5, integer=ACCEPT, shape=EITHER),
                    "gamma": floats(0.0, 1.0, valid=(0.0, 1.0)),
                    "dones": tensors(
                        lambda: torch.tensor([0.0, 1.0, 0.0, 0.0, 1.0]),
                        "binary",
                        optional=True,
                        boolean=ACCEPT,
                    ),
                },
                check=_check_rtg,
            ),
            Entry(
                "gae",
                sg.gae,
                lambda: {
                    "rewards": real5(),
                    "values": torch.tensor([0.5, 0.2, 0.1, 0.0, 0.3]),
                    "gamma": 0.9,
                    "lam": 0.8,
                },
                {
                    "rewards": tensors(real5, integer=ACCEPT, shape=EITHER),
                    "values": tensors(lambda: torch.tensor([0.5, 0.2, 0.1, 0.0, 0.3])),
                    "gamma": floats(0.0, 1.0, valid=(0.0, 1.0)),
                    "lam": floats(0.0, 1.0, valid=(0.0, 1.0)),
                    "dones": tensors(
                        lambda: torch.tensor([0.0, 1.0, 0.0, 0.0, 1.0]),
                        "binary",
                        optional=True,
                        boolean=ACCEPT,
                    ),
                    "last_value": floats(),
                },
                check=_check_gae,
            ),
            Entry(
                "GradientEstimate.from_per_sample",
                sg.GradientEstimate.from_per_sample,
                lambda: {"per_sample": PER_SAMPLE.clone(), "method": "demo"},
                {
                    "per_sample": tensors(lambda: PER_SAMPLE.clone(), shape=EITHER, integer=EITHER),
                    "biased": bools(),
                    "evaluations": ints(0, optional=True, huge=EITHER),
                    "extra_variance_of_mean": tensors(
                        lambda: torch.tensor([0.1, 0.2]), "nonneg", optional=True
                    ),
                },
                check=_check_from_per_sample,
            ),
            Entry(
                "GradientEstimate.from_batch_sums",
                _from_batch_sums,
                lambda: {
                    "sums": torch.tensor([[4.0, 1.0], [8.0, -1.0]]),
                    "sizes": torch.tensor([2, 2]),
                    "method": "demo",
                },
                {
                    # [B] is the batch sums of a scalar parameter: another shape, still valid
                    "sums": tensors(lambda: torch.tensor([[4.0, 1.0], [8.0, -1.0]]), shape=EITHER),
                    "sizes": combine(
                        tensors(lambda: torch.tensor([2, 2]), "counts"),
                        one_of([cf("a zero size", lambda: torch.tensor([2, 0]))]),
                    ),
                    "evaluations": ints(0, optional=True, huge=EITHER),
                },
                check=_check_from_batch_sums,
            ),
            Entry(
                "StochasticGraph",
                sg.StochasticGraph,
                lambda: {"num_samples": 4, "seed": 0},
                {
                    "num_samples": ints(1, valid=(1,)),
                    "seed": seeds(),
                    "generator": torch_generators(),
                    "depends_on": choices(["auto", "all"]),
                },
            ),
            Entry(
                "StochasticGraph.sample",
                _graph_sample,
                lambda: {
                    "name": "x",
                    "dist": Bernoulli(logits=torch.tensor(0.3, requires_grad=True)),
                },
                {
                    "name": one_of([c("None", None), c("3", 3), c("''", "", EITHER)]),
                    "dist": one_of(
                        [
                            c("None", None),
                            cf("a tensor", lambda: torch.zeros(2)),
                            c("a Distribution class", Normal),
                            cf(
                                "a meta-device Normal",
                                lambda: Normal(
                                    torch.zeros((), device="meta"),
                                    torch.ones((), device="meta"),
                                    validate_args=False,
                                ),
                            ),
                        ]
                    ),
                    "reparam": bools(),
                    "per_sample": bools(optional=True),
                },
                check=_check_graph_sample,
            ),
            Entry(
                "StochasticGraph.cost",
                _graph_cost,
                lambda: {"name": "c", "value": torch.ones(4)},
                {
                    "name": one_of([c("None", None), c("3", 3), c("'x' (a sample's name)", "x")]),
                    "value": tensors(
                        lambda: torch.ones(4), shape=EITHER, integer=EITHER, boolean=EITHER
                    ),
                },
            ),
            Entry(
                "StochasticGraph.surrogate",
                _graph_surrogate,
                lambda: {"reduction": "mean"},
                {"reduction": choices(["mean", "sum"])},
            ),
            Entry(
                "StochasticGraph.enumerate",
                sg.StochasticGraph.enumerate,
                lambda: {"model": _enumerate_model},
                {
                    "model": not_callables(),
                    "depends_on": choices(["auto", "all"]),
                    "max_configurations": ints(1, huge=EITHER, valid=(2,)),
                },
            ),
            Entry(
                "magic_box",
                sg.magic_box,
                lambda: {"tau": torch.tensor([0.3, -1.0], requires_grad=True)},
                {
                    "tau": tensors(
                        lambda: torch.tensor([0.3, -1.0]),
                        shape=ACCEPT,
                        huge=ACCEPT,
                        meta=EITHER,
                        empty=EITHER,
                    )
                },
                check=_check_ones,
            ),
            Entry("black_box", sg.black_box, lambda: {"fn": np.sin}, {"fn": not_callables()}),
        ]
        + [
            Entry(
                name,
                fn,
                lambda: {"dist_type": _Private, "fn": lambda *a: None},
                {
                    "dist_type": one_of(
                        [
                            c("int", int),
                            c("str", "Normal"),
                            c("None", None),
                            c("torch.Tensor", torch.Tensor),
                            c("an instance", 3),
                        ]
                    ),
                    "fn": not_callables(),
                },
            )
            for name, fn in (
                ("register_sampler", sg.register_sampler),
                ("register_score", sg.register_score),
                ("register_weak_derivative", sg.register_weak_derivative),
            )
        ]
        + [
            Entry(
                "Relax",
                sg.Relax,
                lambda: {"hidden": 4, "seed": 0},
                {
                    "net": one_of(
                        [c("3", 3), c("str", "mlp"), cf("a tensor", lambda: torch.zeros(2))]
                    ),
                    "hidden": ints(0, valid=(0,)),
                    "temperature": floats(0.0, open_min=True),
                    "eta": floats(),
                    "lr": floats(0.0, open_min=True),
                    "include_f": bools(),
                    "seed": seeds(optional=False),
                },
            ),
        ]
    )


def _surrogate_base_psg():
    base = _surrogate_base()
    return {"log_probs": base["log_probs"], "params": base["params"]}


ENTRIES: list[Entry] = _other_entries()
