"""Score-function estimator: exact replays, the fast and general paths, and bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import distributions as D

import stochgrad as sg
from stochgrad import _core, _dists

DT = torch.float64


def _normal(th):
    return D.Normal(th[0], th[1])


def quad(x):
    return (x - 2.0) ** 2


# ---------------------------------------------------------------------------------------------
# (1) seeded replays against the formula
# ---------------------------------------------------------------------------------------------
def test_normal_single_sample_replay():
    mu, sigma = 0.5, 1.3
    with pytest.warns(sg.SingleSampleWarning, match="num_samples=1"):
        est = sg.score_function(
            quad, _normal, torch.tensor([mu, sigma], dtype=DT), num_samples=1, seed=7
        )
    eps = torch.randn(1, generator=torch.Generator().manual_seed(7), dtype=DT)
    x = mu + sigma * eps
    expected = quad(x) * torch.cat([(x - mu) / sigma**2, ((x - mu) ** 2 - sigma**2) / sigma**3])
    torch.testing.assert_close(est.per_sample[0], expected, rtol=1e-13, atol=1e-13)
    torch.testing.assert_close(est.grad, expected, rtol=1e-13, atol=1e-13)


def test_bernoulli_logits_replay():
    logits = torch.tensor([0.3, -1.2], dtype=DT)
    est = sg.score_function(
        lambda b: b.sum(-1) ** 2,
        lambda lg: D.Independent(D.Bernoulli(logits=lg), 1),
        logits,
        num_samples=5,
        seed=3,
    )
    u = torch.rand(5, 2, generator=torch.Generator().manual_seed(3), dtype=DT)
    b = (u < torch.sigmoid(logits)).to(DT)
    expected = (b.sum(-1) ** 2).unsqueeze(1) * (b - torch.sigmoid(logits))
    torch.testing.assert_close(est.per_sample, expected, rtol=1e-13, atol=1e-13)


def test_categorical_replay():
    probs = torch.tensor([0.2, 0.5, 0.3], dtype=DT)
    est = sg.score_function(
        lambda k: k.to(DT) * 2.0 + 1.0,
        lambda p: D.Categorical(probs=p),
        probs,
        num_samples=6,
        seed=11,
    )
    idx = torch.multinomial(
        probs.reshape(1, 3), 6, True, generator=torch.Generator().manual_seed(11)
    )[0]
    onehot = torch.nn.functional.one_hot(idx, 3).to(DT)
    # log p(k) = log(p_k / sum p): d/dp_j = 1{j=k}/p_k - 1/sum(p), with sum(p) = 1.
    expected = (idx.to(DT) * 2 + 1).unsqueeze(1) * (onehot / probs - 1.0)
    torch.testing.assert_close(est.per_sample, expected, rtol=1e-12, atol=1e-12)


def test_general_path_matches_autograd_per_sample():
    """Gamma has no closed-form score here: forward-mode autograd, checked sample by sample."""
    theta = torch.tensor([2.0, 1.5], dtype=DT)

    def dist_fn(th):
        return D.Gamma(th[0], th[1])

    est = sg.score_function(quad, dist_fn, theta, num_samples=4, seed=5)
    leaves = _core.leaves_of((theta,))
    x = _dists.sample(dist_fn(*leaves), 4, torch.Generator().manual_seed(5))
    for i in range(4):  # a loop over 4 samples in a test, as the independent reference
        (g,) = torch.autograd.grad(dist_fn(leaves[0]).log_prob(x[i]), leaves[0])
        torch.testing.assert_close(est.per_sample[i], quad(x[i]) * g, rtol=1e-12, atol=1e-12)


def test_closed_form_and_general_paths_agree():
    """The same Normal through the closed-form score and through forward-mode autograd."""
    theta = torch.tensor([0.4, 0.9], dtype=DT)
    leaves = _core.leaves_of((theta,))
    d = _normal(leaves[0])
    x = _dists.sample(d, 50, torch.Generator().manual_seed(0))
    closed = sg.estimators.scores_per_sample(_normal, d, leaves, x)[0]
    general = _core.per_sample_log_prob_grads(_normal, leaves, x)[0]
    torch.testing.assert_close(closed, general, rtol=1e-12, atol=1e-12)


def test_many_distribution_parameters_use_batched_vjps():
    """More than 64 distribution-parameter elements: the chunked VJP path, same numbers."""
    loc = torch.linspace(-1, 1, 100, dtype=DT)
    log_scale = torch.full((100,), -0.2, dtype=DT)

    def dist_fn(m, s):
        return D.Independent(D.Normal(m, s.exp()), 1)

    est = sg.score_function(
        lambda x: (x**2).sum(-1), dist_fn, (loc, log_scale), num_samples=30, seed=1
    )
    leaves = _core.leaves_of((loc, log_scale))
    x = _dists.sample(dist_fn(*leaves), 30, torch.Generator().manual_seed(1))
    reference = _core.per_sample_log_prob_grads(dist_fn, leaves, x)
    fx = (x**2).sum(-1).unsqueeze(1)
    torch.testing.assert_close(est.per_sample[0], fx * reference[0], rtol=1e-11, atol=1e-11)
    torch.testing.assert_close(est.per_sample[1], fx * reference[1], rtol=1e-11, atol=1e-11)


# ---------------------------------------------------------------------------------------------
# structure, reproducibility, black boxes
# ---------------------------------------------------------------------------------------------
def test_tuple_params_give_tuple_results():
    loc, scale = torch.zeros(3), torch.ones(3)
    est = sg.score_function(
        lambda x: x.sum(-1), lambda m, s: D.Normal(m, s), (loc, scale), num_samples=100, seed=0
    )
    assert isinstance(est.grad, tuple) and len(est.grad) == 2
    assert est.per_sample[0].shape == (100, 3) and est.per_sample[1].shape == (100, 3)
    assert est.stderr[1].shape == (3,)


def test_same_seed_bit_identical_and_global_rng_untouched():
    theta = torch.tensor([0.5, 1.0])
    state = torch.get_rng_state()
    a = sg.score_function(quad, _normal, theta, num_samples=1000, baseline="loo", seed=42)
    b = sg.score_function(quad, _normal, theta, num_samples=1000, baseline="loo", seed=42)
    # the general path (Gamma) samples with torch's own sampler under a forked, seeded RNG
    c = sg.score_function(quad, lambda t: D.Gamma(t[0], t[1]), theta + 1, num_samples=100, seed=1)
    d = sg.score_function(quad, lambda t: D.Gamma(t[0], t[1]), theta + 1, num_samples=100, seed=1)
    assert torch.equal(torch.get_rng_state(), state)
    assert torch.equal(a.per_sample, b.per_sample) and torch.equal(c.per_sample, d.per_sample)
    e = sg.score_function(quad, _normal, theta, num_samples=1000, baseline="loo", seed=43)
    assert not torch.equal(a.per_sample, e.per_sample)


def test_black_box_numpy_objective_is_unbiased():
    theta = torch.tensor([0.3, 0.8], dtype=DT)
    est = sg.score_function(
        sg.black_box(np.cos), _normal, theta, num_samples=50_000, seed=0, baseline="loo"
    )
    exact = sg.exact_gradient(lambda x: torch.cos(x), _normal, theta)
    assert bool(((est.grad - exact).abs() < 5 * est.stderr).all())


def test_per_sample_memory_is_linear():
    est = sg.score_function(quad, _normal, torch.tensor([0.5, 1.0]), num_samples=200_000, seed=0)
    assert est.per_sample.shape == (200_000, 2)
    assert est.per_sample.numel() * est.per_sample.element_size() == 200_000 * 2 * 4


# ---------------------------------------------------------------------------------------------
# (3) bad input
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_samples": 0}, ValueError, "num_samples"),
        ({"num_samples": 1, "baseline": "loo"}, ValueError, "num_samples"),
        ({"num_samples": 2.5}, TypeError, "num_samples"),
        ({"num_samples": 10, "baseline": "nonsense"}, ValueError, "baseline"),
        ({"num_samples": 10, "baseline": "ema"}, ValueError, "EMABaseline"),
        ({"num_samples": 10, "seed": 1, "generator": torch.Generator()}, ValueError, "seed"),
        ({"num_samples": 10, "control_variate": "bogus"}, ValueError, "control_variate"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        sg.score_function(quad, _normal, torch.tensor([0.5, 1.0]), **kwargs)


def test_non_finite_f_values():
    with pytest.raises(ValueError, match="non-finite"):
        sg.score_function(
            lambda x: 1.0 / (x * 0), _normal, torch.tensor([0.5, 1.0]), num_samples=10
        )


def test_f_wrong_shape():
    with pytest.raises(ValueError, match="shape"):
        sg.score_function(
            lambda x: x.unsqueeze(1), _normal, torch.tensor([0.5, 1.0]), num_samples=10
        )


@pytest.mark.parametrize(
    ("dist_fn", "params", "match"),
    [
        (_normal, torch.tensor([0.5, -1.0]), "scale"),
        (lambda p: D.Bernoulli(probs=p), torch.tensor(1.5), "probs"),
        (lambda lam: D.Poisson(lam), torch.tensor(-2.0), "rate"),
        (lambda a: D.Dirichlet(a), torch.tensor([1.0, -1.0]), "concentration"),
    ],
)
def test_params_outside_constraints(dist_fn, params, match):
    with pytest.raises(ValueError, match=match):
        sg.score_function(
            lambda x: x.reshape(x.shape[0], -1).sum(-1), dist_fn, params, num_samples=10
        )


def test_params_type_errors():
    with pytest.raises(TypeError, match="params"):
        sg.score_function(quad, _normal, [0.5, 1.0], num_samples=10)
    with pytest.raises(TypeError, match="floating"):
        sg.score_function(quad, _normal, torch.tensor([1, 2]), num_samples=10)
    with pytest.raises(ValueError, match="finite"):
        sg.score_function(quad, _normal, torch.tensor([float("nan"), 1.0]), num_samples=10)
    with pytest.raises(TypeError, match="Distribution"):
        sg.score_function(quad, lambda th: th, torch.tensor([0.5, 1.0]), num_samples=10)


SELECTIONS = [
    (lambda t: D.Normal(t[0], t[1]), [0.5, 1.0]),
    (lambda t: D.Normal(t[1], t[0]), [1.5, 0.3]),
    (lambda t: D.Normal(t[-1, 0], t[0, -1]), [[0.5, 1.0], [0.2, 0.7]]),
    (lambda t: D.Normal(t[0], t[1]), [[0.5, 1.0, 0.1], [0.2, 0.7, 2.0]]),
    (lambda t: D.Normal(t[:, 0], t[:, 1]), [[0.5, 1.0], [0.2, 0.7]]),
    (lambda t: D.Normal(t[0], 2.0), [0.5, 1.0]),
    (lambda t: D.Normal(t[0], t[0] ** 2 + 0.1), [0.5, 1.0]),
    (lambda t: D.Normal(t[0], t[0]), [0.5, 1.0]),
    (lambda t: D.Bernoulli(logits=t[1]), [[0.5, 1.0], [0.2, -0.7]]),
]


@pytest.mark.parametrize(("dist_fn", "values"), SELECTIONS)
def test_chain_rule_routes_agree_with_autograd(dist_fn, values):
    """Selections of params (scattered without backward passes), repeated columns, and
    non-selections (Jacobian rows) all equal forward-mode autograd of log_prob."""
    theta = torch.tensor(values, dtype=DT)
    leaves = _core.leaves_of((theta,))
    d = dist_fn(*leaves)
    x = _dists.sample(d, 7, torch.Generator().manual_seed(0))
    fast = sg.estimators.scores_per_sample(dist_fn, d, leaves, x)[0]
    reference = _core.per_sample_log_prob_grads(dist_fn, leaves, x)[0]
    torch.testing.assert_close(fast, reference, rtol=1e-12, atol=1e-12)
