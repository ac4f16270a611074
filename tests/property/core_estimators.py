"""The core's estimators and samplers (``stochgrad.__all__``) as entries of the bad-input suite.

Two problems with independent references: a Normal, ``E[(x - 1)^2]`` with ``x ~ N(mu, sigma)``
(Gauss-Hermite quadrature), and three Bernoulli coordinates, ``E[(b_1 + b_2 + b_3 - 1.3)^2]``
(enumeration). Adding a function is one :class:`~tests.property.harness.Entry` in ``ENTRIES``.
"""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import strategies as st
from torch.distributions import Bernoulli, Categorical, Normal

import stochgrad as sg
from tests.property.harness import ACCEPT, EITHER, REFUSE, Entry, Wrong
from tests.property.references import (
    bernoulli_expectation_grad,
    check_estimate,
    check_shape_like,
    normal_expectation_grad,
)
from tests.property.values import (
    INF,
    NAN,
    bools,
    c,
    cf,
    choices,
    combine,
    dist_fns,
    floats,
    ints,
    objectives,
    one_of,
    seeds,
    tensors,
    torch_generators,
)

N = 400  # samples per estimator call: enough for the z-test, cheap


# ---------------------------------------------------------------------------------------------
# the two problems
# ---------------------------------------------------------------------------------------------
def normal_params() -> torch.Tensor:
    return torch.tensor([0.5, 1.2])


def normal_dist(th):
    return Normal(th[0], th[1])


def normal_f(x):
    return (x - 1.0) ** 2


def bern_params() -> torch.Tensor:
    return torch.tensor([0.3, -0.4, 0.8])


def bern_dist(lg):
    return Bernoulli(logits=lg)


def bern_f(b):
    return (b.sum(-1) - 1.3) ** 2


def categorical_dist(lg):
    return Categorical(logits=lg)


def normal_params_cases() -> st.SearchStrategy:
    """``[loc, scale]``: the generic tensor cases, a scale off its support, tuple forms."""
    scale = st.floats(max_value=0.0, min_value=-1e30, allow_nan=False).map(
        lambda v: cf(f"scale {v!r}", lambda: torch.tensor([0.5, v]), kind="generated scale <= 0")
    )
    forms = one_of(
        [
            c("empty tuple", ()),
            c("empty list", []),
            cf("tuple with None", lambda: (normal_params(), None)),
            cf("list of the tensor", lambda: [normal_params()], EITHER),
            cf("float64 tensor", lambda: normal_params().double(), ACCEPT),
            cf("non-contiguous view", lambda: torch.tensor([[0.5, 9.0], [1.2, 9.0]])[:, 0], ACCEPT),
        ]
    )
    return combine(tensors(normal_params, names=("f",), empty=EITHER), scale, forms)


def bern_params_cases() -> st.SearchStrategy:
    forms = one_of(
        [
            c("empty tuple", ()),
            cf("float64 tensor", lambda: bern_params().double(), ACCEPT),
            cf(
                "logits 50 (probability 1 to rounding)",
                lambda: torch.tensor([50.0, 0.0, 0.0]),
                EITHER,
            ),
        ]
    )
    return combine(tensors(bern_params, names=("f",), empty=EITHER), forms)


def baseline_cases() -> st.SearchStrategy:
    return one_of(
        [
            c("'nonsense'", "nonsense"),
            c("nan", NAN),
            c("inf", INF),
            c("True", True),
            c("object()", object()),
            c("a Baseline class, not an instance", sg.LeaveOneOutBaseline),
            c("complex", 3 + 0j),
            c("['loo']", ["loo"]),
            cf("0-d nan tensor", lambda: torch.tensor(NAN)),
            c("'loo'", "loo", ACCEPT),
            c("'mean'", "mean", ACCEPT),
            c("'optimal'", "optimal", ACCEPT),
            c("0.5", 0.5, ACCEPT),
            c("None", None, ACCEPT),
            cf("EMABaseline()", lambda: sg.EMABaseline(), ACCEPT),
            c("np.float64(0.5)", np.float64(0.5), EITHER),
            c("'LOO'", "LOO", EITHER),
        ]
    )


def _check_normal(est, call):
    check_estimate(est, call, normal_expectation_grad)


def _check_bern(est, call):
    check_estimate(est, call, bernoulli_expectation_grad)


def estimator(
    name: str,
    fn,
    problem: str,
    *,
    min_samples: int = 1,
    extra: dict | None = None,
    batches: bool = False,
    batch_dims: bool = True,
    parallel: bool = False,
    baseline: bool = False,
    wrong_family=None,
    defaults: dict | None = None,
) -> Entry:
    """An estimator with the signature ``(f, dist_fn, params, *, num_samples, ...)``."""
    if problem == "normal":
        good_f, good_dist, params, check = normal_f, normal_dist, normal_params_cases, _check_normal
        make = normal_params
    else:
        good_f, good_dist, params, check = bern_f, bern_dist, bern_params_cases, _check_bern
        make = bern_params
    bad = {
        "f": objectives(good_f),
        "dist_fn": dist_fns(good_dist, wrong_family),
        "params": params(),
        "num_samples": ints(min_samples, valid=(min_samples, N)),
        "seed": seeds(),
        "generator": torch_generators(),
    }
    if batches:
        bad["batches"] = ints(2, N, optional=True, valid=(2, N))
    if batch_dims:
        bad["batch_dims"] = combine(
            ints(0, valid=(0,)),
            one_of([c("1 (above the distribution's batch rank)", 1 if problem == "normal" else 2)]),
        )
    if parallel:
        bad["parallel"] = one_of(
            [
                c("'nonsense'", "nonsense"),
                c("3", 3),
                c("True", True),
                c("'serial'", "serial", ACCEPT),
            ]
        )
    if baseline:
        bad["baseline"] = baseline_cases()
    bad.update(extra or {})

    def base():
        return {
            "f": good_f,
            "dist_fn": good_dist,
            "params": make(),
            "num_samples": N,
            "seed": 0,
            **(defaults or {}),
        }

    return Entry(name, fn, base, bad, check=check, probe=dist_fn_error)


def _relax_call(**kw):
    return sg.Relax(hidden=4, seed=0)(**kw)


# ---------------------------------------------------------------------------------------------
# checks of the other functions
# ---------------------------------------------------------------------------------------------
def _check_exact(reference):
    def check(result, call):
        kw = call.kwargs
        if kw.get("return_value"):
            if not isinstance(result, tuple) or len(result) != 2:
                raise Wrong("return_value=True: expected (value, gradient)")
            result = result[1]
        ref = reference(call.exact, kw["dist_fn"], kw["params"])
        check_shape_like(result, kw["params"])
        parts = result if isinstance(result, tuple) else (result,)
        got = torch.cat([torch.as_tensor(r).double().reshape(-1) for r in parts])
        want = torch.cat([r.reshape(-1) for r in (ref if isinstance(ref, tuple) else (ref,))])
        eps = max(torch.finfo(torch.as_tensor(p).dtype).eps for p in parts)
        if not torch.allclose(got, want, rtol=max(1e-5, 20 * eps), atol=1e-7):
            raise Wrong(f"{got.tolist()} vs reference {want.tolist()}")

    return check


def _check_compare(result, call):
    if not isinstance(result, sg.Comparison):
        raise Wrong(f"returned {type(result).__name__}")


def dist_fn_error(kwargs) -> str | None:
    """The message of the error ``dist_fn(*params)`` raises on these arguments, if any."""
    params = kwargs["params"]
    args = tuple(params) if isinstance(params, (tuple, list)) else (params,)
    try:
        kwargs["dist_fn"](*args)
    except Exception as exc:  # noqa: BLE001 - the caller's own error, whatever it is
        return str(exc)
    return None


def _compare_refusal(result) -> str | None:
    """A comparison whose every method failed reports the input refused (each row's error)."""
    if isinstance(result, sg.Comparison) and all(r.error is not None for r in result.rows):
        return " | ".join(r.error for r in result.rows)
    return None


def _check_samples(kind):
    def check(result, call):
        kw = call.kwargs
        x = result
        logits = torch.as_tensor(kw.get("logits", kw.get("probs")))
        n = int(kw["num_samples"])
        if kind == "index":
            want = (n, *logits.shape[:-1])
        else:
            want = (n, *logits.shape)
        if tuple(x.shape) != want:
            raise Wrong(f"shape {tuple(x.shape)}, expected {want}")
        if kind == "index":
            if bool(((x < 0) | (x >= logits.shape[-1])).any()):
                raise Wrong("an index outside [0, K)")
        elif kind == "simplex":
            if not torch.allclose(x.detach().sum(-1).double(), torch.ones(()).double(), atol=1e-3):
                raise Wrong("rows do not sum to one")
            if bool((x < 0).any()):
                raise Wrong("negative entries")
        elif kind == "unit":
            if bool(((x < 0) | (x > 1)).any()):
                raise Wrong("entries outside [0, 1]")
        if kind == "binary" or kw.get("hard"):
            if not bool(((x == 0) | (x == 1)).all()):
                raise Wrong("hard samples that are not 0/1")

    return check


def _concrete_base():
    return {
        "logits": torch.tensor([[0.1, -0.3, 0.7], [1.0, 0.0, -1.0]]),
        "temperature": 0.5,
        "num_samples": 16,
        "seed": 0,
    }


def _categorical_probs():
    return torch.tensor([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1]])


def _sample_entries() -> list[Entry]:
    logits = _concrete_base()["logits"]
    probs = _categorical_probs
    common = {"num_samples": ints(1, valid=(1,)), "seed": seeds(), "generator": torch_generators()}
    temp = floats(0.0, open_min=True, valid=(1e-3,))
    return [
        Entry(
            "concrete_sample",
            sg.concrete_sample,
            _concrete_base,
            {
                "logits": tensors(
                    lambda: logits.clone(),
                    shape=ACCEPT,
                    neg_inf=EITHER,
                    empty=EITHER,
                    scalar=REFUSE,
                ),
                "temperature": temp,
                "hard": bools(),
                **common,
            },
            check=_check_samples("simplex"),
        ),
        Entry(
            "gumbel_max",
            sg.gumbel_max,
            lambda: {"logits": logits.clone(), "num_samples": 16, "seed": 0},
            {
                "logits": tensors(
                    lambda: logits.clone(),
                    shape=ACCEPT,
                    neg_inf=EITHER,
                    empty=EITHER,
                    scalar=REFUSE,
                ),
                **common,
            },
            check=_check_samples("index"),
        ),
        Entry(
            "relaxed_bernoulli_sample",
            sg.relaxed_bernoulli_sample,
            lambda: {
                "logits": torch.tensor([0.2, -1.0]),
                "temperature": 0.5,
                "num_samples": 16,
                "seed": 0,
            },
            {
                "logits": tensors(
                    lambda: torch.tensor([0.2, -1.0]), shape=ACCEPT, neg_inf=EITHER, empty=EITHER
                ),
                "temperature": temp,
                "hard": bools(),
                **common,
            },
            check=_check_samples("unit"),
        ),
        Entry(
            "straight_through_bernoulli",
            sg.straight_through_bernoulli,
            lambda: {"probs": torch.tensor([0.2, 0.9]), "num_samples": 16, "seed": 0},
            {
                "probs": tensors(
                    lambda: torch.tensor([0.2, 0.9]), "prob", shape=ACCEPT, empty=EITHER
                ),
                **common,
            },
            check=_check_samples("binary"),
        ),
        Entry(
            "straight_through_categorical",
            sg.straight_through_categorical,
            lambda: {"probs": probs(), "num_samples": 16, "seed": 0},
            {
                "probs": combine(
                    tensors(probs, "prob", shape=ACCEPT, empty=EITHER, scalar=REFUSE),
                    one_of([cf("rows not summing to one", lambda: probs() * 2)]),
                ),
                **common,
            },
            check=_check_samples("simplex"),
        ),
    ]


def _estimate_entries() -> list[Entry]:
    # a small but not tiny temperature: at 1e-3 REBAR's per-sample terms are so heavy-tailed
    # that 400 samples underestimate their spread (seed 0: stderr 0.0008 where 4000 samples
    # show 0.12), and a z-test against the exact gradient would be meaningless
    temp = floats(0.0, open_min=True, valid=(0.05,))
    gauss_vs_discrete = categorical_dist
    out = [
        estimator(
            "score_function",
            sg.score_function,
            "normal",
            batches=True,
            parallel=True,
            baseline=True,
            extra={
                "control_variate": one_of(
                    [
                        c("'nonsense'", "nonsense"),
                        c("3", 3),
                        c("True", True),
                        c("the DeltaMethod class", sg.DeltaMethod),
                        c("'delta'", "delta", ACCEPT),
                        cf("DeltaMethod()", lambda: sg.DeltaMethod(), ACCEPT),
                    ]
                )
            },
        ),
        estimator(
            "pathwise",
            sg.pathwise,
            "normal",
            batches=True,
            batch_dims=False,
            extra={"baseline": one_of([c("'loo'", "loo"), c("3", 3), c("None", None, ACCEPT)])},
        ),
        estimator(
            "measure_valued",
            sg.measure_valued,
            "normal",
            batches=True,
            batch_dims=False,
            extra={"baseline": one_of([c("'loo'", "loo"), c("3", 3), c("None", None, ACCEPT)])},
        ),
        estimator("rloo", sg.rloo, "bernoulli", min_samples=2, parallel=True),
        estimator("arm", sg.arm, "bernoulli", wrong_family=gauss_vs_discrete),
        estimator("disarm", sg.disarm, "bernoulli", wrong_family=gauss_vs_discrete),
        estimator(
            "rebar",
            sg.rebar,
            "bernoulli",
            wrong_family=lambda th: Normal(th, 1.0),
            extra={"temperature": temp, "eta": floats()},
        ),
        estimator(
            "gumbel_softmax",
            sg.gumbel_softmax,
            "bernoulli",
            wrong_family=lambda th: Normal(th, 1.0),
            extra={"temperature": temp, "hard": bools()},
        ),
        estimator(
            "straight_through",
            sg.straight_through,
            "bernoulli",
            wrong_family=lambda th: Normal(th, 1.0),
        ),
        estimator(
            "Relax()(...)",
            _relax_call,
            "bernoulli",
            wrong_family=lambda th: Normal(th, 1.0),
            extra={"train": bools()},
        ),
        estimator(
            "estimate",
            sg.estimate,
            "normal",
            min_samples=2,
            batch_dims=False,
            baseline=True,
            defaults={"pilot_samples": 100, "cost": "evaluations"},
            extra={
                "method": choices(["auto", "score_function", "pathwise", "measure_valued"]),
                "pilot_samples": ints(2, huge=EITHER, valid=(2,)),
                "cost": choices(["time", "evaluations"]),
            },
        ),
    ]
    cmp = estimator(
        "compare",
        sg.compare,
        "normal",
        min_samples=2,
        batch_dims=False,
        defaults={"methods": ["score_function", "pathwise"], "num_samples": 200},
        extra={
            "methods": one_of(
                [
                    c("a str", "pathwise"),
                    c("empty list", []),
                    c("['nonsense']", ["nonsense"]),
                    c("[3]", [3]),
                    c("None", None),
                    c("['score_function:loo']", ["score_function:loo"], ACCEPT),
                ]
            ),
            "exact": one_of(
                [
                    c("'nonsense'", "nonsense"),
                    cf("wrong size", lambda: torch.zeros(3)),
                    cf("NaN", lambda: torch.tensor([NAN, 0.0])),
                    c("3", 3),
                    c("None", None, ACCEPT),
                    c("'auto'", "auto", ACCEPT),
                    cf("the true gradient", lambda: torch.tensor([-1.0, 2.4]), ACCEPT),
                ]
            ),
        },
    )
    out.append(
        Entry(
            cmp.name,
            cmp.fn,
            cmp.baseline,
            cmp.bad,
            check=_check_compare,
            refusal=_compare_refusal,
            probe=dist_fn_error,
            nonfinite_ok=(r"rows\[\d+\]\.(seconds|seconds_per_sample)",),
        )
    )
    for name, problem, ref, make, dist in (
        ("exact_gradient", "bernoulli", bernoulli_expectation_grad, bern_params, bern_dist),
        ("exact_gradient[normal]", "normal", normal_expectation_grad, normal_params, normal_dist),
    ):
        good_f = bern_f if problem == "bernoulli" else normal_f
        out.append(
            Entry(
                name,
                sg.exact_gradient,
                lambda make=make, dist=dist, good_f=good_f: {
                    "f": good_f,
                    "dist_fn": dist,
                    "params": make(),
                },
                {
                    "f": objectives(good_f),
                    "dist_fn": dist_fns(dist),
                    "params": bern_params_cases()
                    if problem == "bernoulli"
                    else normal_params_cases(),
                    "max_configurations": ints(
                        1, huge=EITHER, valid=(8 if problem == "bernoulli" else 1,)
                    ),
                    "epsrel": floats(0.0, open_min=True, valid=(1e-6,)),
                    "return_value": bools(),
                },
                check=_check_exact(ref),
            )
        )
    return out


ENTRIES: list[Entry] = _estimate_entries() + _sample_entries()
