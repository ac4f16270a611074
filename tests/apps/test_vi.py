"""Tests of black-box variational inference for Bayesian logistic regression.

The study (estimators x seeds, variance tables) is tested in ``tests/studies/test_bbvi.py``, the
command in ``tests/cli/test_bbvi.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, special
from sklearn.datasets import load_breast_cancer
from sklearn.metrics import log_loss

from stochgrad.apps import vi
from stochgrad.apps.vi import (
    ELBO_ESTIMATORS,
    BBVICheckpoint,
    BBVIConfig,
    elbo_gradient,
    evaluations_per_step,
    expected_loglik_gradient,
    kl_to_prior,
    load_data,
    log_likelihood,
    mc_elbo,
    optimal_elbo,
    quadrature_elbo,
    samples_per_step,
    train,
)
from stochgrad.checkpoint import CheckpointMismatch

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def data():
    return load_data()


@pytest.fixture(scope="module")
def small(data):
    """60 data points, all 31 columns: the same model, cheap enough for many-sample checks."""
    X, y = data
    idx = torch.arange(0, 569, 10)[:60]
    return X[idx], y[idx]


def _q(dim: int, seed: int = 0, scale: float = -1.0):
    g = torch.Generator().manual_seed(seed)
    mu = 0.3 * torch.randn(dim, generator=g, dtype=torch.float64)
    ls = scale + 0.2 * torch.randn(dim, generator=g, dtype=torch.float64)
    return mu, ls


# --- data and closed forms against outside libraries -------------------------------------------


def test_data_is_standardised_breast_cancer_with_bias(data):
    X, y = data
    raw = load_breast_cancer()
    assert X.shape == (569, 31) and y.shape == (569,)
    np.testing.assert_allclose(X[:, :30].std(0, unbiased=False).numpy(), 1.0, atol=1e-12)
    np.testing.assert_array_equal(X[:, 30].numpy(), 1.0)
    ref = (raw.data - raw.data.mean(0)) / raw.data.std(0)
    np.testing.assert_allclose(X[:, :30].numpy(), ref, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(y.numpy(), 2.0 * raw.target - 1.0)


def test_log_likelihood_matches_sklearn_log_loss(data):
    X, y = data
    w = torch.randn(3, 31, generator=torch.Generator().manual_seed(1), dtype=X.dtype) * 0.3
    ll = log_likelihood(w, X, y)
    for s in range(3):
        p = special.expit((X @ w[s]).numpy())
        ref = -log_loss((y.numpy() > 0).astype(int), p, normalize=False)
        assert abs(float(ll[s]) - ref) < 1e-8 * abs(ref)


def test_kl_matches_torch_kl_divergence():
    mu, ls = _q(7, seed=3, scale=0.2)
    q = torch.distributions.Normal(mu, ls.exp())
    p = torch.distributions.Normal(torch.zeros(7, dtype=mu.dtype), torch.ones(7, dtype=mu.dtype))
    ref = torch.distributions.kl_divergence(q, p).sum()
    assert abs(float(kl_to_prior(mu, ls)) - float(ref)) < 1e-12


@pytest.mark.parametrize("where", ["init", "q"])
def test_quadrature_per_datum_matches_scipy_quad(data, where):
    """Each datum's 1-D expectation against adaptive quadrature (scipy.integrate.quad)."""
    X, y = data[0][::7], data[1][::7]
    if where == "init":
        mu, ls = torch.zeros(31, dtype=X.dtype), torch.zeros(31, dtype=X.dtype)
    else:
        mu, ls = _q(31, seed=2)
    kl = float(kl_to_prior(mu, ls))
    total = float(quadrature_elbo(mu, ls, X, y)) + kl
    m = (X @ mu).numpy()
    s = np.sqrt((X**2).numpy() @ np.exp(2 * ls.numpy()))
    yy = y.numpy()

    def expect(n: int) -> float:
        def integrand(t: float) -> float:
            return -np.logaddexp(0.0, -yy[n] * t) * np.exp(-0.5 * ((t - m[n]) / s[n]) ** 2)

        lo, hi = m[n] - 40 * s[n], m[n] + 40 * s[n]
        val, _ = integrate.quad(integrand, lo, hi, points=[0.0], epsabs=1e-13, epsrel=1e-13)
        return val / (s[n] * math.sqrt(2 * math.pi))

    ref = sum(expect(n) for n in range(X.shape[0]))
    assert abs(total - ref) < 1e-8 * X.shape[0]


def test_quadrature_elbo_within_5_stderr_of_large_monte_carlo(data):
    X, y = data
    for seed, scale in ((0, 0.0), (1, -1.0)):
        mu, ls = _q(31, seed=seed, scale=scale)
        exact = float(quadrature_elbo(mu, ls, X, y))
        est, se = mc_elbo(mu, ls, X, y, 20_000, generator=torch.Generator().manual_seed(seed))
        assert abs(est - exact) < 5 * se, (est, exact, se)
        assert se < 0.01 * abs(exact)  # the check has power


def test_quadrature_converged_in_nodes(data):
    X, y = data
    z = torch.zeros(31, dtype=X.dtype)
    a, b = float(quadrature_elbo(z, z, X, y, 4096)), float(quadrature_elbo(z, z, X, y, 8192))
    assert abs(a - b) < 1e-8
    assert abs(float(quadrature_elbo(z, z, X, y, 256)) - b) > 1e-3  # so the default matters


def test_optimum_has_zero_gradient_and_beats_perturbations(small):
    X, y = small
    opt = optimal_elbo(X, y, nodes=1024)
    theta = torch.tensor(opt.mu + opt.log_sigma, dtype=X.dtype, requires_grad=True)
    value = quadrature_elbo(theta[:31], theta[31:], X, y, 1024)
    (g,) = torch.autograd.grad(value, theta)
    assert float(g.abs().max()) < 1e-5
    assert abs(float(value.detach()) - opt.elbo) < 1e-10
    assert opt.quadrature_change < 1e-8 and opt.elbo > opt.elbo_at_init
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _ in range(5):
            t = theta + 1e-2 * torch.randn(62, generator=gen, dtype=X.dtype)
            assert float(quadrature_elbo(t[:31], t[31:], X, y, 1024)) < opt.elbo


# --- the estimators --------------------------------------------------------------------------


def test_score_gradient_replays_the_formula(data):
    """One seeded draw of the no-baseline score function, recomputed by hand."""
    X, y = data
    mu, ls = _q(31, seed=4)
    batch = torch.tensor([3, 50, 100, 7])
    gm, gl = elbo_gradient(
        "score", mu, ls, X, y, 3, generator=torch.Generator().manual_seed(5), batch=batch
    )
    eps = torch.randn(3, 31, generator=torch.Generator().manual_seed(5), dtype=X.dtype)
    sigma = ls.exp()
    w = mu + sigma * eps
    f = (569 / 4) * torch.log(torch.sigmoid((w @ X[batch].T) * y[batch])).sum(1)
    ref_mu = (f[:, None] * eps / sigma).mean(0) - mu
    ref_ls = (f[:, None] * (eps**2 - 1.0)).mean(0) - (sigma**2 - 1.0)
    assert torch.allclose(gm, ref_mu, rtol=1e-10, atol=1e-10)
    assert torch.allclose(gl, ref_ls, rtol=1e-10, atol=1e-10)


def test_pathwise_gradient_replays_the_formula(data):
    X, y = data
    mu, ls = _q(31, seed=6)
    batch = torch.tensor([0, 1, 2])
    gm, gl = elbo_gradient(
        "pathwise", mu, ls, X, y, 2, generator=torch.Generator().manual_seed(7), batch=batch
    )
    eps = torch.randn(2, 31, generator=torch.Generator().manual_seed(7), dtype=X.dtype)
    sigma = ls.exp()
    w = mu + sigma * eps
    Xb, yb = X[batch], y[batch]
    # d/dw log sigmoid(y x.w) = y x sigmoid(-y x.w)
    grad_w = (569 / 3) * (torch.sigmoid(-(w @ Xb.T) * yb) * yb) @ Xb
    assert torch.allclose(gm, grad_w.mean(0) - mu, rtol=1e-10, atol=1e-10)
    ref_ls = (grad_w * eps * sigma).mean(0) - (sigma**2 - 1.0)
    assert torch.allclose(gl, ref_ls, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(
    ("estimator", "n"),
    [("score", 50_000), ("loo", 20_000), ("delta", 4000), ("pathwise", 4000), ("mvd", 1000)],
)
def test_estimators_unbiased_against_quadrature_gradient(small, estimator, n):
    X, y = small
    mu, ls = _q(31, seed=8, scale=-1.5)
    mu_t, ls_t = mu.clone().requires_grad_(True), ls.clone().requires_grad_(True)
    expected = quadrature_elbo(mu_t, ls_t, X, y, 1024) + kl_to_prior(mu_t, ls_t)
    exact = torch.cat(torch.autograd.grad(expected, (mu_t, ls_t)))
    est = expected_loglik_gradient(
        estimator, mu, ls, X, y, n, generator=torch.Generator().manual_seed(9)
    )
    grad, se = est.flat("grad"), est.flat("stderr")
    z = (grad - exact) / se
    assert float(z.abs().max()) < 5, (estimator, z)
    assert float(se.median()) < 0.1 * float(exact.abs().max())  # the check has power


def test_budget_accounting():
    assert evaluations_per_step("mvd", 50, 31) == 50 * 2 * 62
    assert samples_per_step("pathwise", 50, 31, "evaluations") == 6200
    assert samples_per_step("mvd", 50, 31, "evaluations") == 50
    assert samples_per_step("score", 50, 31) == 50
    est = expected_loglik_gradient(
        "mvd",
        torch.zeros(4, dtype=torch.float64),
        torch.zeros(4, dtype=torch.float64),
        torch.ones(3, 4, dtype=torch.float64),
        torch.tensor([1.0, -1.0, 1.0], dtype=torch.float64),
        5,
        generator=torch.Generator().manual_seed(0),
    )
    assert est.evaluations == evaluations_per_step("mvd", 5, 4)


def test_gradient_variance_ranks_pathwise_below_score(small):
    X, y = small
    mu, ls = _q(31, seed=10, scale=-1.0)
    g = torch.Generator().manual_seed(0)
    vs_mu, vs_ls = vi.gradient_variance("score", mu, ls, X, y, 10, 30, generator=g)
    vp_mu, vp_ls = vi.gradient_variance("pathwise", mu, ls, X, y, 10, 30, generator=g)
    assert float((vp_mu / vs_mu).median()) < 0.1 and float((vp_ls / vs_ls).median()) < 0.1


# --- training, checkpoint ---------------------------------------------------------------


def _tiny(**kw) -> BBVIConfig:
    base = dict(steps=6, num_samples=4, eval_every=2, nodes=64, eval_samples=20)
    base.update(kw)
    return BBVIConfig(**base)


def test_train_is_seeded_and_improves(data):
    X, y = data
    cfg = _tiny(steps=20, lr=1e-3)
    a, b = train("pathwise", X, y, cfg, 3), train("pathwise", X, y, cfg, 3)
    assert a.curve_elbo == b.curve_elbo and a.mu == b.mu
    assert train("pathwise", X, y, cfg, 4).mu != a.mu
    assert a.curve_elbo[-1] > a.curve_elbo[0] + 100 and a.diverged_at is None
    assert a.samples_per_step == 4 and a.evaluations_per_step == 4
    assert abs(a.mc_elbo - a.final_elbo) < 5 * a.mc_stderr


def test_divergence_is_reported_not_raised(data):
    """Four score-function samples at lr 1: steps of thousands in log_sigma."""
    X, y = data
    progress = []
    r = train("score", X, y, _tiny(steps=50, lr=1.0), 0, progress=progress.append)
    assert r.diverged_at is not None and r.diverged_at < 50
    assert r.final_elbo == -math.inf and r.mc_elbo == -math.inf
    assert sum(progress) == 50


@pytest.mark.parametrize("estimator", ["delta", "mvd"])
def test_resumed_equals_uninterrupted(data, tmp_path, estimator):
    X, y = data
    cfg = _tiny(steps=7, checkpoint_every=2, optimizer="adam", lr=1e-2)
    whole = train(estimator, X, y, cfg, 1)
    ckpt = BBVICheckpoint(tmp_path / "c.pt", cfg)
    done = []

    def stop(k: int) -> None:
        done.append(k)
        if sum(done) == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(estimator, X, y, cfg, 1, checkpoint=ckpt, progress=stop)
    again = BBVICheckpoint(tmp_path / "c.pt", cfg)
    assert again.load() == 0 and again.partial[(estimator, 1)]["step"] == 4
    progress = []
    resumed = train(estimator, X, y, cfg, 1, checkpoint=again, progress=progress.append)
    assert progress[0] == 4 and sum(progress) == 7
    assert resumed.curve_elbo == whole.curve_elbo
    assert resumed.mu == whole.mu and resumed.log_sigma == whole.log_sigma
    assert resumed.mc_elbo == whole.mc_elbo
    final = BBVICheckpoint(tmp_path / "c.pt", cfg)
    assert final.load() == 1 and not final.partial
    with pytest.raises(CheckpointMismatch, match="other settings.*steps: 7 saved, 8 now"):
        BBVICheckpoint(tmp_path / "c.pt", _tiny(steps=8)).load()


# --- bad input -------------------------------------------------------------------------------


def test_bad_input_raises(data):
    X, y = data
    z = torch.zeros(31, dtype=X.dtype)
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="estimator must be one of"):
        elbo_gradient("reinforce", z, z, X, y, 5, generator=g)
    with pytest.raises(ValueError, match="mu and log_sigma"):
        elbo_gradient("loo", z, z[:3], X, y, 5, generator=g)
    with pytest.raises(ValueError, match="finite"):
        elbo_gradient("loo", z * float("nan"), z, X, y, 5, generator=g)
    with pytest.raises(ValueError, match="columns"):
        quadrature_elbo(z[:5], z[:5], X, y)
    with pytest.raises(ValueError, match="-1 and \\+1"):
        quadrature_elbo(z, z, X, (y + 1) / 2)
    with pytest.raises(ValueError, match="num_samples"):
        elbo_gradient("loo", z, z, X, y, 1, generator=g)
    with pytest.raises(ValueError, match="num_samples"):
        elbo_gradient("pathwise", z, z, X, y, 0, generator=g)
    with pytest.raises(ValueError, match="nodes"):
        quadrature_elbo(z, z, X, y, 1)
    with pytest.raises(ValueError, match="budget"):
        samples_per_step("loo", 5, 31, "flops")
    with pytest.raises(ValueError, match="lr"):
        BBVIConfig(lr=-1.0)
    with pytest.raises(ValueError, match="optimizer"):
        BBVIConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="steps"):
        BBVIConfig(steps=0)
    with pytest.raises(ValueError, match="batch_size"):
        train("loo", X, y, _tiny(batch_size=1000), 0)
    with pytest.raises(TypeError, match="tensors"):
        quadrature_elbo(np.zeros(31), z, X, y)
    with pytest.raises(ValueError, match="estimator must be one of"):
        samples_per_step("reinforce", 5, 31)
    with pytest.raises(TypeError, match="steps"):
        BBVIConfig(steps=2.5)
    with pytest.raises(ValueError, match="nodes"):
        BBVIConfig(nodes=1)


# --- names of earlier releases -----------------------------------------------------------------


def test_estimators_is_a_deprecated_name_of_elbo_estimators():
    assert list(ELBO_ESTIMATORS) == ["score", "loo", "delta", "pathwise", "mvd"]
    with pytest.warns(DeprecationWarning, match="ELBO_ESTIMATORS"):
        old = vi.ESTIMATORS
    assert old is ELBO_ESTIMATORS


@pytest.mark.parametrize("name", ["run_bbvi", "variance_table", "VarianceTable", "BBVIResult"])
def test_study_names_moved_to_the_study_with_a_warning(name):
    from stochgrad.studies import bbvi as study

    with pytest.warns(DeprecationWarning, match=f"stochgrad.studies.bbvi.{name}"):
        assert getattr(vi, name) is getattr(study, name)
    with pytest.raises(AttributeError):
        vi.no_such_name  # noqa: B018


def test_train_callback_is_a_deprecated_name_of_progress(data):
    X, y = data
    seen = []
    with pytest.warns(DeprecationWarning, match="progress="):
        train("pathwise", X, y, _tiny(steps=3), 0, callback=seen.append)
    assert seen == [1, 1, 1]


def test_state_and_save_hooks_resume_exactly_through_a_pt_file(data, tmp_path):
    """What ``save`` receives survives save_state/load_state (the study's checkpoint)."""
    from stochgrad.checkpoint import load_state, save_state

    X, y = data
    cfg = _tiny(steps=6, checkpoint_every=2, optimizer="adam", lr=1e-2)
    whole = train("loo", X, y, cfg, 2)
    path = tmp_path / "s.pt"
    steps = []

    def stop(k):
        steps.append(k)
        if sum(steps) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train("loo", X, y, cfg, 2, save=lambda st: save_state(st, path), progress=stop)
    state = load_state(path)
    assert state["step"] == 2
    resumed = train("loo", X, y, cfg, 2, state=state)
    assert resumed.curve_elbo == whole.curve_elbo and resumed.mu == whole.mu
    assert resumed.mc_elbo == whole.mc_elbo
    with pytest.raises(ValueError, match="could not be read"):
        train("loo", X, y, cfg, 2, state={"step": 2})
    with pytest.raises(ValueError, match="not both"):
        train("loo", X, y, cfg, 2, state=state, checkpoint=BBVICheckpoint(path, cfg))
