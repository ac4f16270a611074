"""Tests of Bayesian experimental design: EIG estimators, design gradients, design optimisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

import stochgrad as sg
from stochgrad._optim import Adam
from stochgrad.apps import design as D
from stochgrad.apps.design import (
    DesignConfig,
    LinearGaussianModel,
    LogisticDoseResponse,
    eig_gradient,
    nmc_eig,
    optimize_design,
    pce_eig,
)
from stochgrad.checkpoint import CheckpointError, CheckpointMismatch

F64 = torch.float64
PRIOR_SD = torch.tensor([1.0, 1.5], dtype=F64)
X_PYRO = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], dtype=F64)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def linear() -> LinearGaussianModel:
    return LinearGaussianModel(torch.diag(PRIOR_SD**2), noise_sd=1.0)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ---------------------------------------------------------------------------------------------
# layer 1: one seeded case replayed against the formula
# ---------------------------------------------------------------------------------------------
def _replay_linear_draws(model, X, n, L, seed, pathwise=False):
    """The draws of the estimators in their order: theta0, (eps or y), contrastive thetas."""
    g = gen(seed)
    theta0 = torch.randn(n, 2, generator=g, dtype=F64) @ model.prior_chol.T
    eps = torch.randn(n, X.shape[0], generator=g, dtype=F64)
    theta_c = torch.randn(n, L, 2, generator=g, dtype=F64) @ model.prior_chol.T
    return theta0.numpy(), eps.numpy(), theta_c.numpy()


def _g_by_hand(X, y, theta0, theta_c, s, bound):
    """PCE / NMC term of one outer sample with scipy's normal log-density."""
    lp0 = stats.norm.logpdf(y, X @ theta0, s).sum()
    lpc = np.array([stats.norm.logpdf(y, X @ t, s).sum() for t in theta_c])
    if bound == "lower":
        lpc = np.concatenate([[lp0], lpc])
    return lp0 - (np.logaddexp.reduce(lpc) - math.log(len(lpc)))


@pytest.mark.parametrize("bound", ["lower", "upper"])
def test_eig_terms_replay_the_formula(linear, bound):
    n, L = 3, 4
    est = pce_eig(linear, X_PYRO, num_outer=n, num_inner=L, bound=bound, generator=gen(5))
    theta0, eps, theta_c = _replay_linear_draws(linear, X_PYRO, n, L, 5)
    X = X_PYRO.numpy()
    expected = [
        _g_by_hand(X, X @ theta0[i] + eps[i], theta0[i], theta_c[i], 1.0, bound) for i in range(n)
    ]
    np.testing.assert_allclose(est.per_sample.numpy(), expected, rtol=1e-12, atol=1e-12)
    assert est.value == pytest.approx(np.mean(expected), abs=1e-12)
    assert est.stderr == pytest.approx(np.std(expected, ddof=1) / math.sqrt(n), abs=1e-12)
    if bound == "lower":
        assert np.all(np.array(expected) <= math.log(L + 1) + 1e-12)  # the PCE ceiling


def test_nmc_is_the_upper_bound(linear):
    a = nmc_eig(linear, X_PYRO, num_outer=5, num_inner=3, generator=gen(1))
    b = pce_eig(linear, X_PYRO, num_outer=5, num_inner=3, bound="upper", generator=gen(1))
    assert a.method == "nmc" and torch.equal(a.per_sample, b.per_sample)


@pytest.mark.parametrize("method", ["score", "pathwise"])
def test_gradient_per_sample_terms_replay_finite_differences(linear, method):
    """Per-sample gradient terms equal central differences of the hand-written term."""
    n, L, h = 3, 4, 1e-6
    est = eig_gradient(linear, X_PYRO, num_outer=n, num_inner=L, method=method, generator=gen(11))
    theta0, eps, theta_c = _replay_linear_draws(linear, X_PYRO, n, L, 11)
    X0 = X_PYRO.numpy()
    y_fixed = [X0 @ theta0[i] + eps[i] for i in range(n)]
    g0 = np.array(
        [_g_by_hand(X0, y_fixed[i], theta0[i], theta_c[i], 1.0, "lower") for i in range(n)]
    )
    expected = np.zeros((n, 3, 2))
    for i in range(n):
        baseline = (g0.sum() - g0[i]) / (n - 1)
        for j in np.ndindex(3, 2):
            E = np.zeros((3, 2))
            E[j] = h

            def g_at(X, i=i):
                y = X @ theta0[i] + eps[i] if method == "pathwise" else y_fixed[i]
                return _g_by_hand(X, y, theta0[i], theta_c[i], 1.0, "lower")

            dg = (g_at(X0 + E) - g_at(X0 - E)) / (2 * h)
            if method == "score":
                # d/dX log N(y; X theta, 1) = (y - X theta) theta^T
                score = np.outer(y_fixed[i] - X0 @ theta0[i], theta0[i])[j]
                expected[i][j] = (g0[i] - baseline) * score + dg
            else:
                expected[i][j] = dg
    np.testing.assert_allclose(est.per_sample.numpy(), expected, rtol=1e-6, atol=1e-7)
    assert est.info["eig"] == pytest.approx(g0.mean(), abs=1e-12)


@pytest.mark.parametrize("method", ["score", "pathwise"])
@pytest.mark.parametrize("bound", ["lower", "upper"])
def test_eig_estimate_carries_the_gradient_of_the_same_samples(linear, method, bound):
    """pce_eig(gradient=...) is one computation: its EIG is that of the same draws (equal to
    the plain estimate for the score method, which draws y as it does), its gradient is
    eig_gradient's, a GradientEstimate."""
    kw = dict(num_outer=6, num_inner=5, bound=bound)
    est = pce_eig(linear, X_PYRO, **kw, generator=gen(9), gradient=method)
    plain = pce_eig(linear, X_PYRO, **kw, generator=gen(9))
    g = eig_gradient(linear, X_PYRO, **kw, method=method, generator=gen(9))
    assert isinstance(est.gradient, sg.GradientEstimate) and plain.gradient is None
    assert torch.equal(est.gradient.per_sample, g.per_sample)
    assert est.gradient.method == f"eig_{method}" and est.gradient.biased
    assert est.value == g.info["eig"] and est.stderr == g.info["eig_stderr"]
    torch.testing.assert_close(est.per_sample, plain.per_sample, rtol=1e-14, atol=1e-14)
    nmc = nmc_eig(linear, X_PYRO, num_outer=6, num_inner=5, generator=gen(9), gradient=method)
    assert nmc.method == "nmc" and nmc.gradient.grad.shape == X_PYRO.shape
    # the fields of earlier releases, positional, still build one (without a gradient)
    old = D.EIGEstimate(plain.value, plain.stderr, plain.per_sample, "pce", 6, 5)
    assert old.gradient is None and old.num_inner == 5


def test_score_gradient_is_the_cores_loo_surrogate_plus_the_direct_term(linear):
    """The score terms replayed through the core: surrogate_loss(lp0, g, advantage="loo") gives
    the coefficients g_n - b_n; with d/dX log N(y; X theta0, 1) = (y - X theta0) theta0^T and
    the pathwise-at-fixed-y derivative of g (autograd of the hand formula in torch)."""
    n, L = 4, 3
    est = eig_gradient(linear, X_PYRO, num_outer=n, num_inner=L, method="score", generator=gen(4))
    theta0, eps, theta_c = (
        torch.from_numpy(a) for a in _replay_linear_draws(linear, X_PYRO, n, L, 4)
    )
    y = theta0 @ X_PYRO.T + eps
    X = X_PYRO.expand(n, 3, 2).clone().requires_grad_(True)
    normal = torch.distributions.Normal
    lp0 = normal(torch.einsum("nop,np->no", X, theta0), 1.0).log_prob(y).sum(-1)
    lpc = normal(torch.einsum("nop,nlp->nlo", X, theta_c), 1.0).log_prob(y[:, None]).sum(-1)
    g = lp0 - (torch.logsumexp(torch.cat([lp0[:, None], lpc], 1), 1) - math.log(L + 1))
    (direct,) = torch.autograd.grad(g.sum(), X)
    coef = sg.surrogate_loss(lp0.detach(), g.detach(), advantage="loo").coefficients
    score = (y - theta0 @ X_PYRO.T)[:, :, None] * theta0[:, None, :]
    expected = coef[:, None, None] * score + direct
    torch.testing.assert_close(est.per_sample, expected, rtol=1e-10, atol=1e-12)


def test_same_seed_same_numbers(linear):
    a = eig_gradient(linear, X_PYRO, num_outer=8, num_inner=8, generator=gen(3))
    b = eig_gradient(linear, X_PYRO, num_outer=8, num_inner=8, generator=gen(3))
    assert torch.equal(a.per_sample, b.per_sample)


# ---------------------------------------------------------------------------------------------
# layer 2: many samples against closed forms, quadrature and Pyro
# ---------------------------------------------------------------------------------------------
def test_closed_form_matches_pyro_ground_truth(linear):
    from pyro.contrib.oed.glmm import known_covariance_linear_model
    from pyro.contrib.oed.util import linear_model_ground_truth

    pm = known_covariance_linear_model(
        torch.zeros(2, dtype=F64), PRIOR_SD, torch.tensor(1.0, dtype=F64)
    )
    truth = float(linear_model_ground_truth(pm, X_PYRO, "y", "w"))
    assert float(linear.exact_eig(X_PYRO)) == pytest.approx(truth, rel=1e-6)
    # the hand formula: X Sigma X^T is block diagonal with blocks 1 and 2.25 * ones(2, 2)
    assert float(linear.exact_eig(X_PYRO)) == pytest.approx(0.5 * math.log(2 * 5.5), rel=1e-12)


@pytest.mark.parametrize("estimator", ["nmc", "pce"])
def test_eig_estimates_match_closed_form(linear, estimator):
    fn = nmc_eig if estimator == "nmc" else pce_eig
    est = fn(linear, X_PYRO, num_outer=1500, num_inner=1000, generator=gen(0))
    exact = float(linear.exact_eig(X_PYRO))
    assert abs(est.value - exact) < 3 * est.stderr, (est.value, est.stderr, exact)
    assert est.stderr < 0.04


@pytest.mark.parametrize("method", ["score", "pathwise"])
def test_design_gradient_matches_closed_form(linear, method):
    est = eig_gradient(
        linear, X_PYRO, num_outer=1500, num_inner=600, method=method, generator=gen(2)
    )
    exact = linear.exact_eig_gradient(X_PYRO)
    z = (est.grad - exact) / est.stderr
    assert float(z.abs().max()) < 4.0, z
    # the estimate resolves the gradient: its error is small against the gradient's size
    assert float(est.stderr.max()) < 0.25 * float(exact.abs().max())


def test_pyro_nmc_eig_agrees(linear):
    import pyro
    from pyro.contrib.oed.eig import nmc_eig as pyro_nmc
    from pyro.contrib.oed.glmm import known_covariance_linear_model

    pm = known_covariance_linear_model(
        torch.zeros(2, dtype=F64), PRIOR_SD, torch.tensor(1.0, dtype=F64)
    )
    vals = []
    for r in range(8):
        pyro.set_rng_seed(r)
        vals.append(float(pyro_nmc(pm, X_PYRO, "y", "w", N=400, M=400)))
    pyro_mean, pyro_se = np.mean(vals), np.std(vals, ddof=1) / math.sqrt(len(vals))
    ours = nmc_eig(linear, X_PYRO, num_outer=1500, num_inner=400, generator=gen(4))
    joint = math.hypot(pyro_se, ours.stderr)
    assert abs(ours.value - pyro_mean) < 4 * joint, (ours.value, pyro_mean, joint)


def test_logistic_quadrature_matches_scipy_for_one_dose():
    """EIG = h(E p) - E h(p) for one dose, by scipy's adaptive quadrature (nested quad_vec)."""
    m = LogisticDoseResponse()
    x = 0.7
    (a0, c0), (sa, sc) = m.prior_mean.tolist(), m.prior_sd.tolist()

    def normal_pdf(v, mu, sd):
        return math.exp(-0.5 * ((v - mu) / sd) ** 2) / (sd * math.sqrt(2 * math.pi))

    def h(p):
        return -(p * math.log(p) + (1 - p) * math.log1p(-p)) if 0 < p < 1 else 0.0

    def over_threshold(a):
        def f(c):
            p = 1.0 / (1.0 + math.exp(-a * (x - c)))
            return normal_pdf(c, c0, sc) * np.array([p, h(p)])

        inner, _ = integrate.quad_vec(f, c0 - 9 * sc, c0 + 9 * sc, epsabs=1e-11)
        return normal_pdf(a, a0, sa) * inner

    (mean_p, mean_h), _ = integrate.quad_vec(over_threshold, a0 - 9 * sa, a0 + 9 * sa, epsabs=1e-11)
    ours = float(m.quadrature_eig(torch.tensor([x], dtype=F64)))
    assert ours == pytest.approx(h(mean_p) - mean_h, abs=1e-6)


def test_logistic_estimates_match_quadrature():
    m = LogisticDoseResponse()
    d = torch.tensor([-1.0, 0.0, 1.0, 2.0], dtype=F64)
    ref = float(m.quadrature_eig(d))
    assert ref == pytest.approx(float(m.quadrature_eig(d, order=80)), abs=1e-5)
    for fn in (nmc_eig, pce_eig):
        est = fn(m, d, num_outer=1500, num_inner=500, generator=gen(6))
        assert abs(est.value - ref) < 3 * est.stderr, (fn.__name__, est.value, est.stderr, ref)
    g = eig_gradient(m, d, num_outer=2000, num_inner=300, method="score", generator=gen(7))
    z = (g.grad - m.quadrature_eig_gradient(d)) / g.stderr
    assert float(z.abs().max()) < 4.0, z


# ---------------------------------------------------------------------------------------------
# design optimisation
# ---------------------------------------------------------------------------------------------
def test_adam_ascent_steps_replay_the_formula():
    """Two ascent steps of the optimiser's Adam (the shared one, maximize=True) against Kingma &
    Ba's update with bias-corrected moments."""
    opt = Adam(torch.zeros(2, dtype=F64), lr=0.1, maximize=True)
    g1 = torch.tensor([2.0, -0.5], dtype=F64)
    g2 = torch.tensor([1.0, 3.0], dtype=F64)
    x1 = opt.step(g1).clone()
    x2 = opt.step(g2)
    b1, b2, eps = 0.9, 0.999, 1e-8
    m1, v1 = (1 - b1) * g1.numpy(), (1 - b2) * g1.numpy() ** 2
    e1 = 0.1 * (m1 / (1 - b1)) / (np.sqrt(v1 / (1 - b2)) + eps)
    m2, v2 = b1 * m1 + (1 - b1) * g2.numpy(), b2 * v1 + (1 - b2) * g2.numpy() ** 2
    e2 = e1 + 0.1 * (m2 / (1 - b1**2)) / (np.sqrt(v2 / (1 - b2**2)) + eps)
    np.testing.assert_allclose(x1.numpy(), e1, rtol=1e-14)
    np.testing.assert_allclose(x2.numpy(), e2, rtol=1e-14)
    assert opt.state_dict()["k"] == 2


def test_unit_norm_ascent_reaches_top_eigenvector():
    res = optimize_design(
        DesignConfig(model="linear", steps=60, lr=0.08, num_outer=32, num_inner=32, seed=0)
    )
    evals, evecs = np.linalg.eigh(D.anisotropic_prior_cov().numpy())  # numpy's LAPACK
    top = evecs[:, -1]
    cos = abs(float(res.final_design.numpy() @ top))
    best = 0.5 * math.log1p(evals[-1])  # EIG of the top eigenvector, noise sd 1
    assert res.optimum_eig == pytest.approx(best, rel=1e-12)
    assert (best - res.final_eig) / best < 0.01
    assert math.degrees(math.acos(min(cos, 1.0))) < 2.0
    assert float(res.exact[0]) < 0.9 * best  # it started far from the optimum


def test_logistic_optimised_design_beats_uniform():
    res = optimize_design(
        DesignConfig(model="logistic", method="score", steps=40, lr=0.1, num_outer=64, num_inner=64)
    )
    uniform = D.uniform_doses(4)
    assert torch.equal(res.baseline_design, uniform)
    assert float(res.designs.min()) >= -4.0 and float(res.designs.max()) <= 4.0
    assert res.final_eig > res.baseline_eig + 0.1, (res.final_eig, res.baseline_eig)
    # the deterministic reference (L-BFGS-B on the quadrature EIG) bounds it from above
    assert res.final_eig <= res.optimum_eig + 1e-9
    assert res.relative_gap == pytest.approx((res.optimum_eig - res.final_eig) / res.optimum_eig)


def test_resume_equals_uninterrupted(tmp_path):
    cfg = DesignConfig(steps=6, num_outer=8, num_inner=8, checkpoint_every=2)
    full = optimize_design(cfg)

    class Stop(Exception):
        pass

    count = {"n": 0}

    def interrupt(k):
        count["n"] += k
        if count["n"] == 3:
            raise Stop

    ckpt = tmp_path / "c.pt"
    with pytest.raises(Stop):
        optimize_design(cfg, checkpoint=ckpt, progress=interrupt)
    restored, advanced = [], []
    resumed = optimize_design(
        cfg, checkpoint=ckpt, on_resume=restored.append, progress=advanced.append
    )
    assert resumed.resumed_from == 2 and restored == [2]
    assert advanced == [2, 1, 1, 1, 1]  # the restored steps at once, then one per step
    assert torch.equal(resumed.designs, full.designs)
    assert torch.equal(resumed.estimates, full.estimates)
    assert torch.equal(resumed.exact, full.exact)
    assert torch.equal(resumed.final_design, full.final_design)
    with pytest.raises(CheckpointMismatch, match="other settings.*num_inner"):
        optimize_design(DesignConfig(steps=6, num_outer=8, num_inner=9), checkpoint=ckpt)
    # resume=False starts afresh and overwrites the checkpoint
    again = optimize_design(cfg, checkpoint=ckpt, resume=False)
    assert again.resumed_from == 0 and torch.equal(again.designs, full.designs)


def test_resume_reads_a_checkpoint_of_the_earlier_private_adam(tmp_path):
    """Checkpoints written before the shared Adam (``design`` beside ``optimizer`` = m, v, t)
    still resume, to the numbers of an uninterrupted run."""
    from stochgrad.checkpoint import load_state, save_state

    cfg = DesignConfig(steps=4, num_outer=8, num_inner=8, checkpoint_every=2)
    full = optimize_design(cfg)
    ckpt = tmp_path / "c.pt"

    class Stop(Exception):
        pass

    def stop_after_two(k, seen=[]):  # noqa: B006 - a counter
        seen.append(k)
        if len(seen) == 2:
            raise Stop

    with pytest.raises(Stop):
        optimize_design(cfg, checkpoint=ckpt, progress=stop_after_two)
    state = load_state(ckpt)
    assert state["step"] == 2
    new = state.pop("optimizer")
    state["design"] = new["value"]
    state["optimizer"] = {"m": new["m"], "v": new["v"], "t": new["k"]}
    save_state(state, ckpt)
    resumed = optimize_design(cfg, checkpoint=ckpt)
    assert resumed.resumed_from == 2
    assert torch.equal(resumed.designs, full.designs)


def test_initial_reference_eig_is_kept_in_float64():
    """The reference EIG of the initial design is recorded exactly (it was rounded to float32)."""
    cfg = DesignConfig(steps=2, num_outer=8, num_inner=8)
    res = optimize_design(cfg)
    problem = D.make_problem(cfg)
    assert res.exact.dtype == torch.float64
    assert float(res.exact[0]) == problem.exact_eig(problem.initial)


@pytest.mark.parametrize("content", [b"", b"garbage", b"PK\x03\x04 truncated"])
def test_bad_checkpoint_is_one_clear_error(tmp_path, content):
    ckpt = tmp_path / "c.pt"
    ckpt.write_bytes(content)
    with pytest.raises(CheckpointError, match="c.pt"):
        optimize_design(DesignConfig(steps=2, num_outer=8, num_inner=8), checkpoint=ckpt)


# ---------------------------------------------------------------------------------------------
# layer 3: bad input
# ---------------------------------------------------------------------------------------------
def test_bad_input_raises(linear):
    with pytest.raises(ValueError, match="design must be"):
        pce_eig(linear, torch.ones(3, 3), num_outer=4, num_inner=2, generator=gen(0))
    with pytest.raises(ValueError, match="num_outer must be >= 2"):
        pce_eig(linear, X_PYRO, num_outer=1, num_inner=2, generator=gen(0))
    with pytest.raises(ValueError, match="num_inner must be >= 1"):
        nmc_eig(linear, X_PYRO, num_outer=4, num_inner=0, generator=gen(0))
    with pytest.raises(TypeError, match="generator"):
        pce_eig(linear, X_PYRO, num_outer=4, num_inner=2, generator=None)
    with pytest.raises(ValueError, match="bound"):
        pce_eig(linear, X_PYRO, num_outer=4, num_inner=2, bound="middle", generator=gen(0))
    with pytest.raises(ValueError, match="design must be finite"):
        pce_eig(
            linear, torch.tensor([float("nan"), 0.0]), num_outer=4, num_inner=2, generator=gen(0)
        )
    with pytest.raises(ValueError, match="discrete outcomes"):
        eig_gradient(
            LogisticDoseResponse(),
            torch.zeros(2),
            num_outer=4,
            num_inner=2,
            method="pathwise",
            generator=gen(0),
        )
    with pytest.raises(ValueError, match="method must be"):
        eig_gradient(linear, X_PYRO, num_outer=4, num_inner=2, method="magic", generator=gen(0))
    with pytest.raises(ValueError, match="method must be"):
        eig_gradient(linear, X_PYRO, num_outer=4, num_inner=2, method=None, generator=gen(0))
    with pytest.raises(ValueError, match="gradient must be"):
        pce_eig(linear, X_PYRO, num_outer=4, num_inner=2, generator=gen(0), gradient="magic")
    with pytest.raises(ValueError, match="gradient='pathwise' needs outcomes"):
        nmc_eig(
            LogisticDoseResponse(),
            torch.zeros(2),
            num_outer=4,
            num_inner=2,
            generator=gen(0),
            gradient="pathwise",
        )
    with pytest.raises(ValueError, match="positive definite"):
        LinearGaussianModel(torch.tensor([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ValueError, match="noise_sd"):
        LinearGaussianModel(torch.eye(2), noise_sd=0.0)
    with pytest.raises(ValueError, match="prior_sd"):
        LogisticDoseResponse(prior_sd=(1.0, -1.0))
    with pytest.raises(ValueError, match="doses"):
        LogisticDoseResponse().quadrature_eig(torch.zeros(17))
    with pytest.raises(ValueError, match="zero vector"):
        D.project(torch.zeros(3), "unit_norm")
    with pytest.raises(ValueError, match="constraint"):
        D.project(torch.ones(3), "ball")
    with pytest.raises(TypeError, match="num_outer must be an int"):
        pce_eig(linear, X_PYRO, num_outer=4.0, num_inner=2, generator=gen(0))
    with pytest.raises(ValueError, match="steps must be >= 1"):
        DesignConfig(steps=0)
    with pytest.raises(ValueError, match="num_doses must be <= 16"):
        DesignConfig(model="logistic", method="score", num_doses=17)
    with pytest.raises(ValueError, match="pathwise"):
        DesignConfig(model="logistic", method="pathwise")
    with pytest.raises(ValueError, match="lr"):
        DesignConfig(lr=-1.0)
    with pytest.raises(ValueError, match="model"):
        DesignConfig(model="quadratic")
