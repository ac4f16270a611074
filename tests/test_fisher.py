"""Fisher's identity: the gradient of a marginal log-likelihood, enumerated, by factor marginals,
and sampled, against autograd of the marginal likelihood itself."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch.distributions import Normal

import stochgrad as sg

pytestmark = pytest.mark.usefixtures("one_thread")

D = torch.float64


# ---------------------------------------------------------------------------------------------
# a two-component Gaussian mixture: z enumerable
# ---------------------------------------------------------------------------------------------
Y = torch.tensor([-1.2, 0.3, 2.5, 1.7], dtype=D)


def mixture_params():
    return (
        torch.tensor([-1.0, 2.0], dtype=D, requires_grad=True),  # means
        torch.tensor([0.2, -0.4], dtype=D, requires_grad=True),  # mixing logits
    )


def mixture_log_joint(mu, logits):
    """``[4 observations, 2 components]``: log p(y_j, z_j = k)."""
    return torch.log_softmax(logits, 0) + Normal(mu, 1.0).log_prob(Y.unsqueeze(1))


def test_enumerated_equals_autograd_of_the_marginal():
    mu, logits = mixture_params()
    est = sg.fisher_gradient(mixture_log_joint(mu, logits), (mu, logits))
    marginal = mixture_log_joint(mu, logits).logsumexp(1).sum()
    ref = torch.autograd.grad(marginal, (mu, logits))
    for a, b in zip(est.grad, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)
    assert est.method == "fisher_exact" and float(est.stderr[0].abs().sum()) == 0


def test_sampled_posterior_draws_within_their_standard_error():
    mu, logits = mixture_params()
    with torch.no_grad():
        post = torch.softmax(mixture_log_joint(mu, logits), 1)
    n = 20_000
    g = torch.Generator().manual_seed(0)
    z = torch.multinomial(post, n, replacement=True, generator=g).T  # [n, 4] posterior draws
    lj = mixture_log_joint(mu, logits)
    log_joint = lj[torch.arange(4), z].sum(1)
    est = sg.fisher_gradient(log_joint, (mu, logits), samples=True)
    exact = sg.fisher_gradient(mixture_log_joint(mu, logits), (mu, logits))
    for a, b, se in zip(est.grad, exact.grad, est.stderr, strict=True):
        assert bool(((a - b).abs() < 5 * se).all()), (a, b, se)
    assert est.method == "fisher_sampled" and not est.biased


def test_importance_draws_are_self_normalised():
    mu, logits = mixture_params()
    n = 20_000
    g = torch.Generator().manual_seed(1)
    z = torch.randint(0, 2, (n, 4), generator=g)  # uniform proposal over each z_j
    lj = mixture_log_joint(mu, logits)
    log_joint = lj[torch.arange(4), z].sum(1)
    w = (log_joint.detach() - log_joint.detach().max()).exp()  # p(y, z) / q(z), q uniform
    est = sg.fisher_gradient(log_joint, (mu, logits), samples=True, weights=w)
    exact = sg.fisher_gradient(mixture_log_joint(mu, logits), (mu, logits))
    assert est.biased  # self-normalised
    for a, b, se in zip(est.grad, exact.grad, est.stderr, strict=True):
        assert bool(((a - b).abs() < 5 * se).all()), (a, b, se)


@pytest.mark.parametrize("weighted", [False, True])
def test_copies_give_the_per_sample_terms_of_the_batched_backward_passes(weighted):
    """One parameter copy per draw: one backward pass, the same terms as n of them."""
    mu, logits = mixture_params()
    n = 300
    g = torch.Generator().manual_seed(3)
    z = torch.randint(0, 2, (n, 4), generator=g)
    w = torch.rand(n, generator=g, dtype=D) + 0.1 if weighted else None
    shared = sg.fisher_gradient(
        mixture_log_joint(mu, logits)[torch.arange(4), z].sum(1),
        (mu, logits),
        samples=True,
        weights=w,
    )
    mu_c = mu.detach().expand(n, 2).clone().requires_grad_(True)
    lg_c = logits.detach().expand(n, 2).clone().requires_grad_(True)
    lj = torch.log_softmax(lg_c, 1)[:, None, :] + Normal(mu_c[:, None, :], 1.0).log_prob(
        Y[None, :, None]
    )  # [n, 4, 2]: draw i reads copy i
    log_joint = lj.gather(2, z[..., None]).squeeze(2).sum(1)
    est = sg.fisher_gradient(log_joint, (mu_c, lg_c), samples=True, weights=w, copies=True)
    assert est.info["copies"] and est.biased == weighted and est.num_samples == n
    for name in ("per_sample", "grad", "stderr"):
        for a, b in zip(getattr(est, name), getattr(shared, name), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)
    with pytest.raises(ValueError, match=r"every tensor is \[n = 300"):
        sg.fisher_gradient(log_joint, (mu, lg_c), samples=True, copies=True)
    with pytest.raises(ValueError, match="copies=True goes with samples=True"):
        sg.fisher_gradient(mixture_log_joint(mu, logits), (mu, logits), copies=True)
    with pytest.raises(TypeError, match="copies must be a bool"):
        sg.fisher_gradient(log_joint, (mu_c, lg_c), samples=True, copies=1)


# ---------------------------------------------------------------------------------------------
# a latent integrated on a grid
# ---------------------------------------------------------------------------------------------
def test_quadrature_nodes_with_their_weights():
    theta = torch.tensor([0.3, 0.2], dtype=D, requires_grad=True)  # z ~ N(m, e^s), y | z ~ N(z, 1)
    y = torch.tensor(1.4, dtype=D)
    nodes, weights = _legendre(200)
    z = 12.0 * nodes
    log_joint = Normal(theta[0], theta[1].exp()).log_prob(z) + Normal(z, 1.0).log_prob(y)
    est = sg.fisher_gradient(log_joint, theta, log_measure=(12.0 * weights).log())
    marginal = Normal(theta[0], (theta[1].exp() ** 2 + 1).sqrt()).log_prob(y)
    ref = torch.autograd.grad(marginal, theta)[0]
    torch.testing.assert_close(est.grad, ref, rtol=1e-9, atol=1e-10)


def _legendre(k: int):
    import numpy as np

    x, w = np.polynomial.legendre.leggauss(k)
    return torch.tensor(x, dtype=D), torch.tensor(w, dtype=D)


# ---------------------------------------------------------------------------------------------
# factor marginals: a small HMM, the posterior of each factor by brute force
# ---------------------------------------------------------------------------------------------
def test_factor_marginals_of_an_hmm():
    T, K = 4, 2
    y = torch.tensor([0.1, 1.9, 2.2, -0.3], dtype=D)
    init = torch.tensor([0.3, -0.3], dtype=D, requires_grad=True)
    trans = torch.tensor([[1.0, -0.5], [0.2, 0.4]], dtype=D, requires_grad=True)
    means = torch.tensor([0.0, 2.0], dtype=D, requires_grad=True)
    params = (init, trans, means)
    log_pi = torch.log_softmax(init, 0)
    log_a = torch.log_softmax(trans, 1)
    log_b = Normal(means, 1.0).log_prob(y.unsqueeze(1))  # [T, K]
    # posterior marginals by enumerating the K^T paths
    with torch.no_grad():
        paths = torch.tensor(list(itertools.product(range(K), repeat=T)))
        lp = log_pi[paths[:, 0]] + log_a[paths[:, :-1], paths[:, 1:]].sum(1)
        lp = lp + log_b[torch.arange(T), paths].sum(1)
        w = torch.softmax(lp, 0)
        gamma = torch.zeros(T, K, dtype=D)
        xi = torch.zeros(T - 1, K, K, dtype=D)
        for t in range(T):
            gamma[t].index_add_(0, paths[:, t], w)
        for t in range(T - 1):
            xi[t].index_put_((paths[:, t], paths[:, t + 1]), w, accumulate=True)
    factors = torch.cat([log_pi, log_a.expand(T - 1, K, K).reshape(-1), log_b.reshape(-1)])
    posterior = torch.cat([gamma[0], xi.reshape(-1), gamma.reshape(-1)])
    est = sg.fisher_gradient(factors, params, posterior=posterior)
    # autograd of the forward algorithm
    alpha = log_pi + log_b[0]
    for t in range(1, T):
        alpha = (alpha.unsqueeze(1) + log_a).logsumexp(0) + log_b[t]
    ref = torch.autograd.grad(alpha.logsumexp(0), params)
    for a, b in zip(est.grad, ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    assert est.info["mode"] == "factors"


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------
def test_bad_input():
    mu, logits = mixture_params()
    lj = mixture_log_joint(mu, logits)
    with pytest.raises(TypeError, match="log_joint"):
        sg.fisher_gradient([1.0], mu)
    with pytest.raises(ValueError, match="posterior must be shaped like"):
        sg.fisher_gradient(lj, (mu, logits), posterior=torch.ones(3))
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        sg.fisher_gradient(lj, (mu, logits), posterior=-torch.ones_like(lj))
    with pytest.raises(ValueError, match="weights go with samples"):
        sg.fisher_gradient(lj, (mu, logits), weights=torch.ones(4))
    with pytest.raises(ValueError, match=r"\[n\] with samples=True"):
        sg.fisher_gradient(lj, (mu, logits), samples=True)
    with pytest.raises(ValueError, match="probability 0"):
        sg.fisher_gradient(torch.full((3,), -torch.inf, dtype=D) + mu.sum(), mu)
    with pytest.raises(ValueError, match="require grad"):
        sg.fisher_gradient(lj, torch.zeros(2))
