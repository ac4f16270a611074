"""Factorised objectives (``batch_dims``): per-problem credit assignment in every estimator.

A batch of independent problems (a VAE's per-datapoint ELBO) has ``f`` returning ``[n, *B]``;
the estimate is the gradient of the sum over problems of ``E[f_b]``, each problem's score
weighted by its own value only. Checked here: seeded replays of the per-problem formulas,
unbiasedness against exact enumeration, the variance cut relative to multiplying every score by
the batch total, equality with the unfactorised terms for a single problem, the chain rule
through an encoder, and bad input.
"""

from __future__ import annotations

import pytest
import torch
from torch import distributions as D

import stochgrad as sg
from stochgrad.estimators import arm, disarm, gumbel_softmax, rebar, rloo, straight_through
from stochgrad.estimators.relaxed import Relax

DT = torch.float64
N = 20_000
LOGITS = torch.tensor(
    [[0.3, -0.5, 1.0], [0.0, 0.2, -1.0], [1.5, -0.3, 0.4], [-0.8, 0.9, 0.1]], dtype=DT
)
TARGETS = torch.tensor([0.5, 1.5, 2.5, 1.0], dtype=DT)


def f_per_problem(z):
    """``[n, 4, 3]`` -> ``[n, 4]``: problem b's value uses only ``z[:, b]``."""
    return (z.sum(-1) - TARGETS) ** 2


def f_total(z):
    return f_per_problem(z).sum(-1)


def independent(lg):
    return D.Independent(D.Bernoulli(logits=lg), 1)


def batch_shaped(lg):
    return D.Bernoulli(logits=lg)


def independent_probs(lg):
    return D.Independent(D.Bernoulli(probs=torch.sigmoid(lg)), 1)


def f_batch_shaped(z):  # a plain Bernoulli [4, 3] hands f samples [n, 4, 3] as well
    return f_per_problem(z)


class _SubclassedBernoulli(D.Bernoulli):
    """No closed-form score or sampler is registered for it: the general (forward-mode) path."""


def general_path(lg):
    return D.Independent(_SubclassedBernoulli(logits=lg), 1)


def _flat(v):
    if isinstance(v, tuple):
        return torch.cat([t.reshape(-1) for t in v])
    return v.reshape(-1)


def _assert_unbiased(est, exact, plain=None, n=N):
    grad, se, exact = _flat(est.grad), _flat(est.stderr), _flat(exact)
    tol = 5 * se + 1e-10 * (1 + exact.abs())
    if plain is not None:
        # Coefficients estimated from the same batch leave O(1/n) terms the first-order stderr
        # does not cover (see tests/test_unbiased.py): allow 5 plain single-sample deviations / n.
        tol = tol + 5 * _flat(plain.variance).sqrt() / n
    z = (grad - exact) / se
    assert bool(((grad - exact).abs() < tol).all()), f"z = {z.tolist()}"


# ---------------------------------------------------------------------------------------------
# (1) seeded replays of the per-problem formulas
# ---------------------------------------------------------------------------------------------
def _hand_samples(n, seed):
    """The Bernoulli sampler's draw: ``u ~ U(0,1)`` of shape ``[n, 4, 3]``, ``x = 1[u < p]``."""
    u = torch.rand((n, *LOGITS.shape), generator=torch.Generator().manual_seed(seed), dtype=DT)
    return (u < torch.sigmoid(LOGITS)).to(DT)


@pytest.mark.parametrize("baseline", [None, "loo", "mean", 0.7])
def test_score_function_replay_per_problem(baseline):
    n, seed = 6, 3
    est = sg.score_function(
        f_per_problem,
        independent,
        LOGITS,
        num_samples=n,
        seed=seed,
        baseline=baseline,
        batch_dims=1,
    )
    x = _hand_samples(n, seed)
    fx = f_per_problem(x)  # [n, 4]
    if baseline is None:
        b = torch.zeros(())
    elif baseline == "loo":
        b = torch.stack([torch.cat([fx[:i], fx[i + 1 :]]).mean(0) for i in range(n)])
    elif baseline == "mean":
        b = fx.mean(0)
    else:
        b = torch.tensor(baseline, dtype=DT)
    s = x - torch.sigmoid(LOGITS)  # d log p / d logits, [n, 4, 3]
    expected = (fx - b).unsqueeze(-1) * s
    torch.testing.assert_close(est.per_sample, expected, rtol=1e-12, atol=1e-12)
    assert est.info["batch_dims"] == 1
    assert est.biased == (baseline == "mean")


def test_optimal_baseline_replay_per_problem_and_element():
    n, seed = 6, 4
    est = sg.score_function(
        f_per_problem,
        independent,
        LOGITS,
        num_samples=n,
        seed=seed,
        baseline="optimal",
        batch_dims=1,
    )
    x = _hand_samples(n, seed)
    fx = f_per_problem(x).unsqueeze(-1)  # [n, 4, 1]
    s = x - torch.sigmoid(LOGITS)
    rows = []
    for i in range(n):
        keep = torch.arange(n) != i
        c = (fx[keep] * s[keep] ** 2).sum(0) / (s[keep] ** 2).sum(0)  # [4, 3]
        rows.append((fx[i] - c) * s[i])
    torch.testing.assert_close(est.per_sample, torch.stack(rows), rtol=1e-12, atol=1e-12)


def test_ema_baseline_is_elementwise_per_problem():
    ema = sg.EMABaseline(decay=0.5)
    first = sg.score_function(
        f_per_problem, independent, LOGITS, num_samples=50, seed=1, baseline=ema, batch_dims=1
    )
    plain = sg.score_function(
        f_per_problem, independent, LOGITS, num_samples=50, seed=1, batch_dims=1
    )
    torch.testing.assert_close(first.per_sample, plain.per_sample, rtol=0, atol=0)  # b = 0
    means = f_per_problem(_hand_samples(50, 1)).mean(0)
    torch.testing.assert_close(ema.value, means, rtol=1e-12, atol=1e-12)
    second = sg.score_function(
        f_per_problem, independent, LOGITS, num_samples=50, seed=2, baseline=ema, batch_dims=1
    )
    shifted = sg.score_function(
        lambda z: f_per_problem(z) - means,
        independent,
        LOGITS,
        num_samples=50,
        seed=2,
        batch_dims=1,
    )
    torch.testing.assert_close(second.per_sample, shifted.per_sample, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="per problem"):  # now holds 4 averages: not for [n]
        sg.score_function(f_total, independent, LOGITS, num_samples=5, seed=0, baseline=ema)


@pytest.mark.parametrize("method", ["arm", "disarm"])
def test_antithetic_replay_per_problem(method):
    n, seed = 5, 9
    fn = arm if method == "arm" else disarm
    est = fn(f_per_problem, independent, LOGITS, num_samples=n, seed=seed, batch_dims=1)
    u = torch.rand((n, 4, 3), generator=torch.Generator().manual_seed(seed), dtype=DT)
    p = torch.sigmoid(LOGITS)
    b, b_anti = (u < p).to(DT), (1.0 - u < p).to(DT)
    diff = (f_per_problem(b) - f_per_problem(b_anti)).unsqueeze(-1)  # [n, 4, 1]: per problem
    if method == "arm":
        expected = -diff * (u - 0.5)
    else:
        expected = 0.5 * diff * (b - b_anti) * torch.maximum(p, 1 - p)
    torch.testing.assert_close(est.per_sample, expected, rtol=1e-12, atol=1e-12)
    assert est.evaluations == 2 * n and est.info["batch_dims"] == 1


# ---------------------------------------------------------------------------------------------
# (2) unbiased against exact enumeration of the summed objective
# ---------------------------------------------------------------------------------------------
EXACT = {}


def _exact(dist_fn=independent):
    key = dist_fn.__name__
    if key not in EXACT:
        EXACT[key] = sg.exact_gradient(f_total, dist_fn, LOGITS)
    return EXACT[key]


UNBIASED = {
    "score": lambda **k: sg.score_function(f_per_problem, independent, LOGITS, **k),
    "score-batch-shaped": lambda **k: sg.score_function(f_batch_shaped, batch_shaped, LOGITS, **k),
    "loo": lambda **k: sg.score_function(f_per_problem, independent, LOGITS, baseline="loo", **k),
    "optimal": lambda **k: sg.score_function(
        f_per_problem, independent, LOGITS, baseline="optimal", **k
    ),
    "rloo": lambda **k: rloo(f_per_problem, independent, LOGITS, **k),
    "arm": lambda **k: arm(f_per_problem, independent, LOGITS, **k),
    "disarm": lambda **k: disarm(f_per_problem, independent, LOGITS, **k),
    "disarm-probs": lambda **k: disarm(f_per_problem, independent_probs, LOGITS, **k),
    "rebar": lambda **k: rebar(f_per_problem, independent, LOGITS, **k),
    "rebar-batch-shaped": lambda **k: rebar(f_batch_shaped, batch_shaped, LOGITS, **k),
}
WITH_COEFFICIENTS = {"loo", "optimal", "rloo"}


@pytest.mark.parametrize("name", list(UNBIASED))
def test_unbiased_against_exact(name):
    seed = sum(map(ord, name))
    est = UNBIASED[name](num_samples=N, seed=seed, batch_dims=1)
    plain = None
    if name in WITH_COEFFICIENTS:
        plain = UNBIASED["score"](num_samples=N, seed=seed, batch_dims=1)
    _assert_unbiased(est, _exact(), plain)
    assert not est.biased and est.info["batch_dims"] == 1


def test_unbiased_general_forward_mode_path():
    """A distribution without a closed-form score: per-problem weights in forward mode."""
    for baseline in (None, "loo"):
        est = sg.score_function(
            f_per_problem,
            general_path,
            LOGITS,
            num_samples=2000,
            seed=5,
            baseline=baseline,
            batch_dims=1,
        )
        _assert_unbiased(est, _exact(), n=2000)


def test_relax_unbiased_with_per_problem_control_variate():
    relax = Relax(hidden=5, seed=0)
    for step in range(3):
        relax(f_per_problem, independent, LOGITS, num_samples=256, seed=step, batch_dims=1)
    assert relax._inputs == 3  # the network sees one problem's relaxed sample at a time
    est = relax(
        f_per_problem, independent, LOGITS, num_samples=N, seed=11, batch_dims=1, train=False
    )
    _assert_unbiased(est, _exact())
    assert est.info["batch_dims"] == 1


def test_two_problem_dimensions_and_categorical():
    """``batch_dims=2`` over a [2, 2] grid of problems of one-hot categoricals."""
    logits = torch.tensor(
        [
            [[[0.2, -0.4, 1.0], [0.0, 0.5, -0.5]], [[1.2, 0.1, -0.3], [-1.0, 0.3, 0.6]]],
            [[[0.4, 0.4, -0.2], [0.9, -0.7, 0.0]], [[-0.2, 0.8, 0.3], [0.5, 0.5, -1.1]]],
        ],
        dtype=DT,
    )  # [2, 2, 2 factors, 3 categories]
    w = torch.tensor([0.0, 1.0, 3.0], dtype=DT)
    t = torch.tensor([[1.0, 2.0], [4.0, 0.5]], dtype=DT)

    def f(y):  # [n, 2, 2, 2, 3] -> [n, 2, 2]
        return ((y * w).sum((-1, -2)) - t) ** 2

    def dist_fn(lg):
        return D.Independent(D.OneHotCategorical(logits=lg), 1)

    exact = sg.exact_gradient(lambda y: f(y).sum((-1, -2)), dist_fn, logits)
    loo = sg.score_function(f, dist_fn, logits, num_samples=N, seed=1, baseline="loo", batch_dims=2)
    plain = sg.score_function(f, dist_fn, logits, num_samples=N, seed=1, batch_dims=2)
    _assert_unbiased(loo, exact, plain)
    _assert_unbiased(rebar(f, dist_fn, logits, num_samples=N, seed=2, batch_dims=2), exact)


# ---------------------------------------------------------------------------------------------
# (3) the point of it: per-problem credit assignment cuts the variance
# ---------------------------------------------------------------------------------------------
def test_factorised_score_function_has_much_lower_variance():
    for baseline, stat in ((None, torch.max), ("loo", torch.median)):
        fact = sg.score_function(
            f_per_problem,
            independent,
            LOGITS,
            num_samples=N,
            seed=1,
            baseline=baseline,
            batch_dims=1,
        )
        whole = sg.score_function(
            f_total, independent, LOGITS, num_samples=N, seed=1, baseline=baseline
        )
        ratio = fact.variance / whole.variance
        # Without a baseline every element's term is cut (max ratio ~0.3); with LOO the batch
        # total's fluctuations from the other problems are what remains (median ~0.17).
        assert float(stat(ratio)) < 0.5, (baseline, ratio)
        torch.testing.assert_close(
            fact.grad, whole.grad, atol=6 * float(whole.stderr.max()), rtol=0
        )


# ---------------------------------------------------------------------------------------------
# (4) one problem: the factorised terms are the unfactorised ones
# ---------------------------------------------------------------------------------------------
ONE = LOGITS[:1]


def f_one(z):  # [n, 1, 3] -> [n, 1]
    return (z.sum(-1) - 1.5) ** 2 + z[..., 0] * z[..., 2]


EQUIVALENT = {
    "score": lambda f, **k: sg.score_function(f, independent, ONE, **k),
    "loo": lambda f, **k: sg.score_function(f, independent, ONE, baseline="loo", **k),
    "optimal": lambda f, **k: sg.score_function(f, independent, ONE, baseline="optimal", **k),
    "loo-general": lambda f, **k: sg.score_function(f, general_path, ONE, baseline="loo", **k),
    "arm": lambda f, **k: arm(f, independent, ONE, **k),
    "disarm": lambda f, **k: disarm(f, independent, ONE, **k),
    "rebar": lambda f, **k: rebar(f, independent, ONE, **k),
    "gumbel_softmax": lambda f, **k: gumbel_softmax(f, independent, ONE, hard=True, **k),
    "straight_through": lambda f, **k: straight_through(f, independent, ONE, **k),
}


@pytest.mark.parametrize("name", list(EQUIVALENT))
def test_single_problem_equals_unfactorised(name):
    run = EQUIVALENT[name]
    fact = run(f_one, num_samples=64, seed=2, batch_dims=1)
    unfact = run(lambda z: f_one(z).squeeze(-1), num_samples=64, seed=2)
    exact_match = name in ("score", "arm", "disarm", "rebar", "gumbel_softmax", "straight_through")
    tol = 0.0 if exact_match else 1e-13  # else sums over [n, 1] vs [n]: rounding only
    torch.testing.assert_close(fact.per_sample, unfact.per_sample, rtol=tol, atol=tol)
    if name == "optimal":
        # The second-order stderr term of the optimal baseline exists for batch_dims=0 only.
        assert bool((unfact.stderr >= fact.stderr).all())
    else:
        torch.testing.assert_close(fact.stderr, unfact.stderr, rtol=1e-12, atol=1e-15)
    assert fact.info["batch_dims"] == 1 and "batch_dims" not in unfact.info


@pytest.mark.parametrize("name", ["gumbel_softmax", "straight_through"])
def test_biased_pathwise_estimators_equal_the_summed_objective(name):
    """For the pathwise (biased) estimators per-problem values change nothing but the shape."""
    fn = gumbel_softmax if name == "gumbel_softmax" else straight_through
    fact = fn(f_per_problem, independent, LOGITS, num_samples=200, seed=3, batch_dims=1)
    whole = fn(f_total, independent, LOGITS, num_samples=200, seed=3)
    torch.testing.assert_close(fact.per_sample, whole.per_sample, rtol=1e-13, atol=1e-13)
    assert fact.biased


# ---------------------------------------------------------------------------------------------
# (5) the chain rule through an encoder
# ---------------------------------------------------------------------------------------------
X = torch.tensor(
    [[1.0, 0.5, -0.3, 0.2], [-0.4, 1.2, 0.8, -1.0], [0.3, -0.7, 0.5, 1.1], [0.9, 0.1, -1.2, 0.4]],
    dtype=DT,
)
W0 = torch.tensor(
    [[0.3, -0.2, 0.5], [0.1, 0.4, -0.6], [-0.5, 0.2, 0.3], [0.2, -0.1, 0.1]], dtype=DT
)
B0 = torch.tensor([0.1, -0.2, 0.3], dtype=DT)


def encoder(w, b):
    return D.Independent(D.Bernoulli(logits=X @ w + b), 1)


ENCODER = {
    "loo": lambda **k: sg.score_function(f_per_problem, encoder, (W0, B0), baseline="loo", **k),
    "disarm": lambda **k: disarm(f_per_problem, encoder, (W0, B0), **k),
    "rebar": lambda **k: rebar(f_per_problem, encoder, (W0, B0), **k),
}


@pytest.mark.parametrize("name", list(ENCODER))
def test_encoder_chain_rule_unbiased(name):
    exact = sg.exact_gradient(f_total, encoder, (W0, B0))
    est = ENCODER[name](num_samples=N, seed=7, batch_dims=1)
    plain = None
    if name == "loo":
        plain = sg.score_function(
            f_per_problem, encoder, (W0, B0), num_samples=N, seed=7, batch_dims=1
        )
    assert isinstance(est.grad, tuple) and est.grad[0].shape == W0.shape
    _assert_unbiased(est, exact, plain)


def test_encoder_with_many_distribution_parameters_batched_vjps():
    """24 problems x 3 latents = 72 logits (> 64): per-sample VJPs; exact one problem at a time."""
    gen = torch.Generator().manual_seed(0)
    inputs = torch.randn(24, 4, generator=gen, dtype=DT)
    targets = torch.rand(24, generator=gen, dtype=DT) * 3
    w = 0.5 * torch.randn(4, 3, generator=gen, dtype=DT)

    def f(z):
        return (z.sum(-1) - targets) ** 2

    exact = sum(
        sg.exact_gradient(
            lambda z, b=b: (z.sum(-1) - targets[b]) ** 2,
            lambda w_, b=b: D.Independent(D.Bernoulli(logits=inputs[b] @ w_), 1),
            w,
        )
        for b in range(24)
    )
    est = sg.score_function(
        f,
        lambda w_: D.Independent(D.Bernoulli(logits=inputs @ w_), 1),
        w,
        num_samples=8000,
        seed=3,
        batch_dims=1,
    )
    _assert_unbiased(est, exact, n=8000)


# ---------------------------------------------------------------------------------------------
# (6) bad input
# ---------------------------------------------------------------------------------------------
ALL = {
    "score_function": sg.score_function,
    "rloo": rloo,
    "arm": arm,
    "disarm": disarm,
    "rebar": rebar,
    "gumbel_softmax": gumbel_softmax,
    "straight_through": straight_through,
    "relax": lambda *a, **k: Relax()(*a, **k),
}


@pytest.mark.parametrize("name", list(ALL))
def test_f_returning_one_value_per_sample_is_refused(name):
    with pytest.raises(ValueError, match=r"f must return .*per problem.*\[\d+, 4\]"):
        ALL[name](f_total, independent, LOGITS, num_samples=10, seed=0, batch_dims=1)


@pytest.mark.parametrize("name", list(ALL))
@pytest.mark.parametrize("batch_dims", [-1, 2, 1.0, True, "1"])
def test_bad_batch_dims(name, batch_dims):
    with pytest.raises(ValueError, match="batch_dims"):
        ALL[name](f_per_problem, independent, LOGITS, num_samples=10, seed=0, batch_dims=batch_dims)


def test_unsupported_combinations_raise():
    with pytest.raises(ValueError, match="control_variate"):
        sg.score_function(
            f_per_problem,
            independent,
            LOGITS,
            num_samples=10,
            control_variate="delta",
            batch_dims=1,
        )
    with pytest.raises(ValueError, match="baseline.*batch_dims"):
        sg.score_function(
            f_per_problem,
            independent,
            LOGITS,
            num_samples=10,
            baseline=sg.LearnedBaseline(),
            batch_dims=1,
        )
    with pytest.raises(ValueError, match="optimal.*closed-form"):
        sg.score_function(
            f_per_problem, general_path, LOGITS, num_samples=10, baseline="optimal", batch_dims=1
        )
