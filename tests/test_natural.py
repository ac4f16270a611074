"""Natural-gradient tools: CG, Fisher-vector products (scores and KL Hessian), TRPO step."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical, Normal, kl_divergence

from stochgrad import natural as N

DT = torch.float64


def _matrix(fvp, dim):
    """The matrix of a linear map, column by column."""
    eye = torch.eye(dim, dtype=DT)
    return torch.stack([fvp(eye[j]) for j in range(dim)], dim=1)


def _categorical_fisher(logits):
    p = torch.softmax(logits, -1)
    return torch.diag(p) - torch.outer(p, p)


# ---------------------------------------------------------------------------------------------
# conjugate gradient
# ---------------------------------------------------------------------------------------------
def test_conjugate_gradient_solves_random_spd_system():
    g = torch.Generator().manual_seed(0)
    M = torch.randn(20, 20, generator=g, dtype=DT)
    A = M @ M.T + 5.0 * torch.eye(20, dtype=DT)
    b = torch.randn(20, generator=g, dtype=DT)
    x = N.conjugate_gradient(lambda v: A @ v, b, iters=60, tol=1e-28)
    expected = torch.linalg.solve(A, b)
    assert (x - expected).abs().max() < 1e-8
    assert (A @ x - b).abs().max() < 1e-8


def test_conjugate_gradient_default_iterations_exact_in_dimension_steps():
    g = torch.Generator().manual_seed(1)
    M = torch.randn(6, 6, generator=g, dtype=DT)
    A = M @ M.T + torch.eye(6, dtype=DT)
    b = torch.randn(6, generator=g, dtype=DT)
    x = N.conjugate_gradient(lambda v: A @ v, b)  # 10 >= 6 iterations
    assert (x - torch.linalg.solve(A, b)).abs().max() < 1e-8


def test_conjugate_gradient_zero_rhs_gives_zero():
    A = torch.eye(3, dtype=DT)
    assert torch.equal(
        N.conjugate_gradient(lambda v: A @ v, torch.zeros(3, dtype=DT)), torch.zeros(3, dtype=DT)
    )


# ---------------------------------------------------------------------------------------------
# score-based Fisher-vector products
# ---------------------------------------------------------------------------------------------
LOGITS = torch.tensor([0.3, -1.0, 0.8, 0.0], dtype=DT)
V = torch.tensor([1.0, -2.0, 0.5, 3.0], dtype=DT)


def _enumerated_scores(logits):
    """Scores of every outcome by autograd of log_prob (not the closed form)."""
    K = logits.shape[0]
    return torch.func.jacrev(lambda th: Categorical(logits=th).log_prob(torch.arange(K)))(logits)


def test_score_fvp_exact_on_enumerated_support_weighted_by_probabilities():
    scores = _enumerated_scores(LOGITS)  # [K, K]
    p = torch.softmax(LOGITS, -1)
    fvp = N.score_fvp(scores, weights=p)
    expected = _categorical_fisher(LOGITS) @ V
    assert (fvp(V) - expected).abs().max() < 1e-12
    # matrix form too, and damping adds lambda * v
    assert (_matrix(fvp, 4) - _categorical_fisher(LOGITS)).abs().max() < 1e-12
    damped = N.score_fvp(scores, weights=p, damping=0.3)
    assert (damped(V) - expected - 0.3 * V).abs().max() < 1e-12


def test_score_fvp_many_samples_matches_fisher_within_5_stderr():
    g = torch.Generator().manual_seed(0)
    p = torch.softmax(LOGITS, -1)
    n = 200_000
    x = torch.multinomial(p, n, replacement=True, generator=g)
    scores = torch.nn.functional.one_hot(x, 4).to(DT) - p  # d log p(x) / d logits
    terms = scores * (scores @ V)[:, None]  # [n, K], mean is the estimate
    got = N.score_fvp(scores)(V)
    assert (got - terms.mean(0)).abs().max() < 1e-12
    stderr = terms.std(0) / math.sqrt(n)
    z = (got - _categorical_fisher(LOGITS) @ V) / stderr
    assert z.abs().max() < 5, z


def test_score_fvp_matrix_right_hand_side():
    scores = _enumerated_scores(LOGITS)
    p = torch.softmax(LOGITS, -1)
    Vm = torch.stack([V, 2 * V], 1)
    out = N.score_fvp(scores, weights=p)(Vm)
    assert out.shape == (4, 2)
    assert (out[:, 1] - 2 * _categorical_fisher(LOGITS) @ V).abs().max() < 1e-12


# ---------------------------------------------------------------------------------------------
# KL-Hessian Fisher-vector products
# ---------------------------------------------------------------------------------------------
def test_kl_fvp_categorical_equals_closed_form_fisher():
    logits = LOGITS.clone().requires_grad_(True)
    fvp = N.kl_fvp(lambda: Categorical(logits=logits), [logits])
    assert (_matrix(fvp, 4) - _categorical_fisher(LOGITS)).abs().max() < 1e-8
    # does not move the parameters, and damping adds lambda * v
    assert torch.equal(logits.detach(), LOGITS)
    damped = N.kl_fvp(lambda: Categorical(logits=logits), logits, damping=0.5)
    assert (damped(V) - _categorical_fisher(LOGITS) @ V - 0.5 * V).abs().max() < 1e-8


def test_kl_fvp_batch_is_mean_over_batch():
    table = torch.tensor([[0.3, -1.0, 0.8], [2.0, 0.0, -0.5]], dtype=DT, requires_grad=True)
    fvp = N.kl_fvp(lambda: Categorical(logits=table), [table])
    F = _matrix(fvp, 6)
    expected = torch.block_diag(*[_categorical_fisher(row) for row in table.detach()]) / 2
    assert (F - expected).abs().max() < 1e-8


def test_kl_fvp_normal_loc_log_scale_equals_closed_form():
    loc = torch.tensor(0.7, dtype=DT, requires_grad=True)
    log_scale = torch.tensor(math.log(1.7), dtype=DT, requires_grad=True)
    fvp = N.kl_fvp(lambda: Normal(loc, log_scale.exp()), [loc, log_scale])
    F = _matrix(fvp, 2)
    expected = torch.diag(torch.tensor([1 / 1.7**2, 2.0], dtype=DT))
    assert (F - expected).abs().max() < 1e-8


def test_kl_fvp_module_matches_enumerated_score_fisher():
    """A linear softmax policy over 3 states: KL Hessian == exact score Fisher, averaged."""
    torch.manual_seed(0)
    policy = torch.nn.Linear(3, 4).to(DT)
    states = torch.eye(3, dtype=DT)
    params = list(policy.parameters())
    fvp = N.kl_fvp(lambda: Categorical(logits=policy(states)), params)
    P = sum(p.numel() for p in params)
    theta0 = N.flat_params(params)

    def log_probs(flat):  # [3 states, 4 actions] at flat parameters
        W = flat[:12].reshape(4, 3)
        b = flat[12:]
        return torch.log_softmax(states @ W.T + b, -1)

    jac = torch.func.jacrev(log_probs)(theta0).reshape(12, P)  # scores of (state, action)
    probs = log_probs(theta0).exp().reshape(12) / 3  # uniform over states
    exact = N.score_fvp(jac, weights=probs)
    v = torch.randn(P, generator=torch.Generator().manual_seed(1), dtype=DT)
    assert (fvp(v) - exact(v)).abs().max() < 1e-8


# ---------------------------------------------------------------------------------------------
# flat parameters
# ---------------------------------------------------------------------------------------------
def test_flat_params_round_trip_on_module():
    lin = torch.nn.Linear(3, 2).to(DT)
    flat = N.flat_params(lin.parameters())
    assert flat.shape == (8,) and not flat.requires_grad
    N.set_flat_params(lin.parameters(), flat + 1.0)
    assert torch.equal(N.flat_params(lin.parameters()), flat + 1.0)
    assert torch.equal(lin.bias.detach(), flat[6:] + 1.0)
    with pytest.raises(ValueError, match="8 elements"):
        N.set_flat_params(lin.parameters(), torch.zeros(7, dtype=DT))


def test_flat_grad_zero_for_unused_parameter():
    a = torch.ones(2, dtype=DT, requires_grad=True)
    b = torch.ones(3, dtype=DT, requires_grad=True)
    g = N.flat_grad((3 * a).sum(), [a, b])
    assert torch.equal(g, torch.tensor([3.0, 3.0, 0.0, 0.0, 0.0], dtype=DT))


# ---------------------------------------------------------------------------------------------
# trust-region step
# ---------------------------------------------------------------------------------------------
R = torch.tensor([1.0, 0.2, -0.5], dtype=DT)
THETA0 = torch.tensor([0.1, 0.4, -0.3], dtype=DT)


def _problem(kl_scale=1.0):
    theta = THETA0.clone().requires_grad_(True)

    def loss(th):
        return -(torch.softmax(th, 0) * R).sum()

    def kl(th):
        return kl_scale * kl_divergence(Categorical(logits=THETA0), Categorical(logits=th))

    grad = torch.autograd.grad(loss(theta), theta)[0]
    fvp = N.kl_fvp(lambda: Categorical(logits=theta), [theta], damping=1e-4)
    return loss, kl, grad, fvp


@pytest.mark.parametrize("max_kl", [1e-3, 1e-2, 0.1])
def test_trust_region_step_respects_max_kl_and_improves(max_kl):
    loss, kl, grad, fvp = _problem()
    new, info = N.trust_region_step(loss, kl, THETA0, grad, fvp, max_kl)
    assert info["accepted"]
    assert float(kl(new)) <= max_kl
    assert info["kl"] == pytest.approx(float(kl(new)))
    assert float(loss(new)) < float(loss(THETA0))
    assert info["loss_new"] < info["loss_old"]
    assert not torch.equal(new, THETA0)
    # the quadratic model puts the full step near the boundary: the KL reached is sizeable
    assert info["kl"] > 0.3 * max_kl * info["step_fraction"] ** 2


def test_trust_region_step_backtracks_when_kl_is_violated():
    loss, _, grad, fvp = _problem()
    _, kl3, _, _ = _problem(kl_scale=3.0)  # the full step has 3x the allowed KL
    new, info = N.trust_region_step(loss, kl3, THETA0, grad, fvp, 0.01, backtrack=0.8)
    assert info["accepted"] and info["num_backtracks"] >= 1
    assert info["step_fraction"] == pytest.approx(0.8 ** info["num_backtracks"])
    assert float(kl3(new)) <= 0.01


def test_trust_region_step_falls_back_when_no_improvement_possible():
    loss, kl, grad, fvp = _problem()
    # the "gradient" points uphill: every step along it increases the loss
    new, info = N.trust_region_step(loss, kl, THETA0, -grad, fvp, 0.01)
    assert not info["accepted"] and info["step_fraction"] == 0.0
    assert info["num_backtracks"] == 10
    assert torch.equal(new, THETA0)
    # a flat loss can never strictly improve either
    new, info = N.trust_region_step(lambda th: th.sum() * 0.0, kl, THETA0, grad, fvp, 0.01)
    assert not info["accepted"] and torch.equal(new, THETA0)
    # a zero gradient gives no direction at all
    new, info = N.trust_region_step(loss, kl, THETA0, torch.zeros(3, dtype=DT), fvp, 0.01)
    assert not info["accepted"] and torch.equal(new, THETA0)


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("max_kl", [0.0, -0.1, float("nan"), float("inf")])
def test_trust_region_rejects_bad_max_kl(max_kl):
    loss, kl, grad, fvp = _problem()
    with pytest.raises(ValueError, match="max_kl"):
        N.trust_region_step(loss, kl, THETA0, grad, fvp, max_kl)


def test_trust_region_rejects_bad_backtrack_steps_and_shapes():
    loss, kl, grad, fvp = _problem()
    with pytest.raises(ValueError, match="backtrack"):
        N.trust_region_step(loss, kl, THETA0, grad, fvp, 0.01, backtrack=1.0)
    with pytest.raises(ValueError, match="max_steps"):
        N.trust_region_step(loss, kl, THETA0, grad, fvp, 0.01, max_steps=0)
    with pytest.raises(ValueError, match="same shape"):
        N.trust_region_step(loss, kl, THETA0, grad[:2], fvp, 0.01)


@pytest.mark.parametrize("damping", [-1e-3, float("nan"), "a"])
def test_negative_damping_raises(damping):
    logits = LOGITS.clone().requires_grad_(True)
    with pytest.raises(ValueError, match="damping"):
        N.kl_fvp(lambda: Categorical(logits=logits), [logits], damping=damping)
    with pytest.raises(ValueError, match="damping"):
        N.score_fvp(_enumerated_scores(LOGITS), damping=damping)


def test_other_bad_input_raises():
    with pytest.raises(ValueError, match="iters"):
        N.conjugate_gradient(lambda v: v, torch.ones(2), iters=0)
    with pytest.raises(ValueError, match="tol"):
        N.conjugate_gradient(lambda v: v, torch.ones(2), tol=-1.0)
    with pytest.raises(ValueError, match="scores"):
        N.score_fvp(torch.ones(3))
    with pytest.raises(ValueError, match="weights"):
        N.score_fvp(torch.ones(3, 2), weights=torch.tensor([1.0, -1.0, 0.5]))
    with pytest.raises(ValueError, match="v must"):
        N.score_fvp(torch.ones(3, 2))(torch.ones(3))
    with pytest.raises(ValueError, match="require grad"):
        N.kl_fvp(lambda: Categorical(logits=LOGITS), [LOGITS])


def test_kl_fvp_independent_normal_vector():
    """Nested distributions are detached too: Independent(Normal) over two dimensions."""
    loc = torch.tensor([0.7, -1.0], dtype=DT, requires_grad=True)
    log_scale = torch.tensor([0.5, -0.2], dtype=DT, requires_grad=True)
    d = lambda: torch.distributions.Independent(Normal(loc, log_scale.exp()), 1)  # noqa: E731
    F = _matrix(N.kl_fvp(d, [loc, log_scale]), 4)
    s = log_scale.detach().exp()
    expected = torch.diag(torch.cat([1 / s**2, torch.full((2,), 2.0, dtype=DT)]))
    assert (F - expected).abs().max() < 1e-8
