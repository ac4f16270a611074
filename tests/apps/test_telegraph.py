"""Tests of the telegraph model: exact pmf vs mpmath, Gillespie vs pmf, Fisher gradients, fits.

The command line is tested in ``tests/cli/test_telegraph.py``, the recovery study in
``tests/studies/test_telegraph_recovery.py``.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest
import torch
from scipy import integrate, optimize, stats

from stochgrad.apps import telegraph as T

D = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def _ref_log_pmf(n: int, a: float, b: float, k: float) -> mpmath.mpf:
    """log P(n) with mpmath at 50 digits: the textbook 1F1(a+n; a+b+n; -k) form where mpmath sums
    it quickly (k <= 100), Kummer's positive form e^{-k} 1F1(b; a+b+n; k) above."""
    mpmath.mp.dps = 50
    am, bm, km = mpmath.mpf(a), mpmath.mpf(b), mpmath.mpf(k)
    head = (
        n * mpmath.log(km)
        - mpmath.loggamma(n + 1)
        + mpmath.loggamma(am + n)
        - mpmath.loggamma(am)
        + mpmath.loggamma(am + bm)
        - mpmath.loggamma(am + bm + n)
    )
    if k <= 100:
        return head + mpmath.log(mpmath.hyp1f1(am + n, am + bm + n, -km))
    return head - km + mpmath.log(mpmath.hyp1f1(bm, am + bm + n, km))


# --------------------------------------------------------------------------------- (b) the pmf
@pytest.mark.parametrize("k", [10.0, 100.0, 1000.0, 3000.0])
def test_log_pmf_matches_mpmath_to_1e8(k: float) -> None:
    worst = 0.0
    for a in (0.01, 1.0, 100.0):
        for b in (0.01, 1.0, 100.0):
            ns = sorted({0, 1, 7, int(k * a / (a + b)), int(k / 2), int(k), int(1.6 * k) + 10})
            got = T.log_pmf(ns, a, b, k)
            for n, v in zip(ns, got.tolist(), strict=True):
                worst = max(worst, abs(float(mpmath.expm1(v - _ref_log_pmf(n, a, b, k)))))
    assert worst <= 1e-8


def test_log_pmf_textbook_form_at_large_k() -> None:
    # mpmath's hyp1f1 at -k (not the Kummer form) for a few points at k = 1000
    mpmath.mp.dps = 50
    for a, b, n in [(0.5, 5.0, 40), (2.0, 0.3, 700)]:
        ref = (
            mpmath.power(1000, n)
            / mpmath.factorial(n)
            * mpmath.rf(a, n)
            / mpmath.rf(a + b, n)
            * mpmath.hyp1f1(a + n, a + b + n, -1000)
        )
        got = float(T.log_pmf([n], a, b, 1000.0)[0])
        assert abs(float(mpmath.expm1(got - mpmath.log(ref)))) < 1e-8


def test_pmf_sums_to_one_and_has_the_closed_form_mean() -> None:
    a = torch.tensor([0.05, 0.5, 3.0, 50.0], dtype=D)
    b = torch.tensor([0.2, 5.0, 1.0, 0.5], dtype=D)
    k = torch.tensor([3000.0, 3000.0, 100.0, 10.0], dtype=D)
    n = torch.arange(4000)
    p = T.log_pmf(n, a, b, k).exp()
    assert p.shape == (4, 4000)
    torch.testing.assert_close(p.sum(1), torch.ones(4, dtype=D), rtol=0, atol=1e-10)
    mean = (p * n).sum(1)
    torch.testing.assert_close(mean, k * a / (a + b), rtol=1e-9, atol=0)


def test_gauss_jacobi_quadrature_fails_where_the_exact_method_does_not() -> None:
    ref = float(mpmath.exp(_ref_log_pmf(200, 0.5, 5.0, 3000.0)))
    quad = float(T.pmf_gauss_jacobi([200], 0.5, 5.0, 3000.0)[0])
    ours = float(T.log_pmf([200], 0.5, 5.0, 3000.0)[0].exp())
    assert abs(quad / ref - 1) > 0.10  # 50-node Gauss-Jacobi: ~14 % off
    assert abs(ours / ref - 1) < 1e-10
    # and it is fine where the Poisson factor is wide (small k)
    ref_small = float(mpmath.exp(_ref_log_pmf(3, 0.5, 5.0, 10.0)))
    assert abs(float(T.pmf_gauss_jacobi([3], 0.5, 5.0, 10.0)[0]) / ref_small - 1) < 1e-6


def test_log_pmf_broadcasts_counts_per_parameter_set() -> None:
    n = torch.tensor([[0, 5], [3, 1]])
    a = torch.tensor([0.5, 2.0], dtype=D)
    out = T.log_pmf(n, a, 1.0, 20.0)
    for i in range(2):
        for j in range(2):
            expect = T.log_pmf([int(n[i, j])], float(a[i]), 1.0, 20.0)[0]
            torch.testing.assert_close(out[i, j], expect, rtol=1e-13, atol=0)


# ------------------------------------------------------------------------------ (c) gradients
def test_exact_fisher_identity_equals_autograd_of_the_exact_log_pmf() -> None:
    theta = torch.tensor([0.3, 4.0, 800.0], dtype=D, requires_grad=True)
    n = torch.tensor([0, 20, 60, 300])
    T.log_pmf(n, *theta).sum().backward()
    exact = T.fisher_gradient_exact(n, 0.3, 4.0, 800.0)
    assert exact.shape == (4, 3)
    torch.testing.assert_close(exact.sum(0), theta.grad, rtol=1e-8, atol=1e-10)
    # count by count, with rates broadcast per count
    a = torch.tensor([0.5, 2.0, 1.0], dtype=D, requires_grad=True)
    counts = torch.tensor([[1, 5, 9], [0, 2, 30]])
    T.log_pmf(counts.T, a, 3.0, 20.0).sum().backward()
    exact = T.fisher_gradient_exact(counts, a.detach(), 3.0, 20.0)
    torch.testing.assert_close(exact[..., 0].sum(0), a.grad, rtol=1e-8, atol=1e-10)


def test_fisher_identity_by_scipy_quadrature_to_1e6() -> None:
    a, b, k, n = 0.7, 2.0, 30.0, 5
    post = lambda x: stats.beta.pdf(x, a, b) * stats.poisson.pmf(n, k * x)  # noqa: E731
    from scipy.special import digamma

    Z = integrate.quad(post, 0, 1, points=[n / k], limit=200, epsabs=0, epsrel=1e-12)[0]
    terms = [
        lambda x: np.log(x) - digamma(a) + digamma(a + b),
        lambda x: np.log1p(-x) - digamma(b) + digamma(a + b),
        lambda x: n / k - x,
    ]
    quad = [
        integrate.quad(
            lambda x, h=h: h(x) * post(x), 0, 1, points=[n / k], limit=200, epsabs=0, epsrel=1e-12
        )[0]
        / Z
        for h in terms
    ]
    exact = T.fisher_gradient_exact(n, a, b, k)
    np.testing.assert_allclose(exact.numpy(), quad, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("method", ["posterior", "prior"])
def test_fisher_gradient_mc_within_5_stderr_of_finite_differences(method: str) -> None:
    a, b, k, n = 0.8, 1.5, 40.0, 12
    h = 1e-5
    fd = []
    for i in range(3):
        p = [a, b, k]
        up, dn = list(p), list(p)
        up[i] += h * p[i]
        dn[i] -= h * p[i]
        fd.append(float(T.log_pmf([n], *up)[0] - T.log_pmf([n], *dn)[0]) / (2 * h * p[i]))
    g = torch.Generator().manual_seed(3)
    est = T.fisher_gradient(n, a, b, k, num_samples=20000, generator=g, method=method)
    z = (est.grad.numpy() - np.array(fd)) / est.stderr.numpy()
    assert np.all(np.abs(z) < 5), z
    assert np.all(est.stderr.numpy() < 0.05 * np.abs(fd) + 1e-3)
    # one term per draw from the core's one backward pass over per-draw copies of the rates
    assert est.info["copies"] and est.per_sample.shape == (est.num_samples, 3)


@pytest.mark.parametrize("method", ["posterior", "prior"])
def test_fisher_gradient_of_many_counts_within_5_stderr_of_exact(method: str) -> None:
    counts = torch.tensor([[1, 5, 9], [0, 2, 30]])
    k_on = torch.tensor([0.5, 2.0, 1.0], dtype=D)
    g = torch.Generator().manual_seed(4)
    est = T.fisher_gradient(counts, k_on, 3.0, 20.0, num_samples=1000, generator=g, method=method)
    exact = T.fisher_gradient_exact(counts, k_on, 3.0, 20.0)
    assert est.grad.shape == est.stderr.shape == (2, 3, 3)
    assert est.per_sample.shape == (1000, 2, 3, 3) and est.ess.shape == (2, 3)
    z = (est.grad - exact) / est.stderr
    assert bool((z.abs() < 5).all()), z


def test_fisher_estimate_is_a_gradient_estimate_from_the_core() -> None:
    from stochgrad.gradient_estimate import GradientEstimate

    g = torch.Generator().manual_seed(0)
    post = T.fisher_gradient(3, 1.0, 2.0, 10.0, num_samples=200, generator=g)
    prior = T.fisher_gradient(3, 1.0, 2.0, 10.0, num_samples=200, generator=g, method="prior")
    for est in (post, prior):
        assert isinstance(est, T.FisherEstimate) and isinstance(est, GradientEstimate)
        assert est.method == "fisher_sampled" and est.num_samples == 200
        torch.testing.assert_close(est.grad, est.per_sample.mean(0), rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(
            est.stderr, est.per_sample.std(0) / math.sqrt(200), rtol=1e-12, atol=0
        )
        assert est.snr.shape == (3,) and est.snr_of_mean() > 0
    assert not post.biased and prior.biased  # self-normalised importance sampling
    assert float(post.ess) == 200 and 1 < float(prior.ess) < 200
    assert prior.info["importance_weighted"] and not post.info["importance_weighted"]


def test_fisher_gradient_posterior_replays_the_formula() -> None:
    """Exact posterior draws (mixture index, then two gammas) and the complete-data score."""
    from scipy.special import digamma, gammaln

    a, b, k, n, S = 1.3, 2.0, 10.0, 4, 5
    est = T.fisher_gradient(n, a, b, k, num_samples=S, generator=torch.Generator().manual_seed(7))
    J = int(math.ceil(k + 12 * math.sqrt(k) + 60))
    j = np.arange(J)
    log_pi = gammaln(b + j) - gammaln(a + b + n + j) + j * np.log(k) - gammaln(j + 1)
    pi = np.exp(log_pi - log_pi.max())
    g = torch.Generator().manual_seed(7)
    jj = torch.multinomial(torch.tensor(pi / pi.sum()), S, replacement=True, generator=g)
    ga = torch._standard_gamma(torch.full((S,), a + n, dtype=D), generator=g).numpy()
    gb = torch._standard_gamma(torch.tensor(b) + jj.to(D), generator=g).numpy()
    x = ga / (ga + gb)
    h = np.stack(
        [
            np.log(x) - digamma(a) + digamma(a + b),
            np.log1p(-x) - digamma(b) + digamma(a + b),
            n / k - x,
        ],
        -1,
    )
    np.testing.assert_allclose(est.per_sample.numpy(), h, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(est.grad.numpy(), h.mean(0), rtol=1e-10)
    np.testing.assert_allclose(est.stderr.numpy(), h.std(0, ddof=1) / math.sqrt(S), rtol=1e-10)


def test_fisher_gradient_prior_replays_the_formula() -> None:
    a, b, k, n = 1.3, 2.0, 10.0, 4
    est = T.fisher_gradient(
        n, a, b, k, num_samples=3, generator=torch.Generator().manual_seed(11), method="prior"
    )
    g = torch.Generator().manual_seed(11)
    ga = torch._standard_gamma(torch.full((3,), a, dtype=D), generator=g)
    gb = torch._standard_gamma(torch.full((3,), b, dtype=D), generator=g)
    x = (ga / (ga + gb)).numpy()
    w = stats.poisson.pmf(n, k * x)
    w = w / w.sum()
    from scipy.special import digamma

    h = np.stack(
        [
            np.log(x) - digamma(a) + digamma(a + b),
            np.log1p(-x) - digamma(b) + digamma(a + b),
            n / k - x,
        ],
        -1,
    )
    np.testing.assert_allclose(est.grad.numpy(), (w[:, None] * h).sum(0), rtol=1e-10)
    np.testing.assert_allclose(est.per_sample.numpy(), 3 * w[:, None] * h, rtol=1e-10)
    np.testing.assert_allclose(est.ess.numpy(), 1 / (w**2).sum(), rtol=1e-10)


def test_same_seed_same_numbers() -> None:
    e1 = T.fisher_gradient(
        3, 1.0, 1.0, 5.0, num_samples=50, generator=torch.Generator().manual_seed(0)
    )
    e2 = T.fisher_gradient(
        3, 1.0, 1.0, 5.0, num_samples=50, generator=torch.Generator().manual_seed(0)
    )
    assert torch.equal(e1.grad, e2.grad)
    s1 = T.simulate(0.5, 1.0, 20.0, 30, generator=torch.Generator().manual_seed(2))
    s2 = T.simulate(0.5, 1.0, 20.0, 30, generator=torch.Generator().manual_seed(2))
    assert torch.equal(s1, s2)


# ----------------------------------------------------------------------------- (a) simulation
def test_sample_stationary_replays_beta_poisson() -> None:
    x = T.sample_stationary(2.0, 3.0, 15.0, 4, generator=torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    ga = torch._standard_gamma(torch.full((4,), 2.0, dtype=D), generator=g)
    gb = torch._standard_gamma(torch.full((4,), 3.0, dtype=D), generator=g)
    expect = torch.poisson(15.0 * ga / (ga + gb), generator=g).long()
    assert torch.equal(x, expect)


@pytest.mark.parametrize("method", ["gillespie", "exact"])
def test_simulated_counts_follow_the_pmf(method: str) -> None:
    a, b, k, C = 0.5, 1.0, 20.0, 2000
    x = T.simulate(a, b, k, C, generator=torch.Generator().manual_seed(7), method=method).numpy()
    mean = k * a / (a + b)
    assert abs(x.mean() - mean) < 5 * x.std() / math.sqrt(C)
    # chi-square goodness of fit on bins with >= 5 expected cells
    p = T.log_pmf(torch.arange(200), a, b, k).exp().numpy()
    expected = C * p
    obs = np.bincount(x, minlength=200)[:200]
    keep = expected >= 5
    f_exp = np.append(expected[keep], C - expected[keep].sum())
    f_obs = np.append(obs[keep], C - obs[keep].sum())
    assert stats.chisquare(f_obs, f_exp, ddof=0).pvalue > 1e-3


def test_gillespie_batch_of_genes_has_their_means() -> None:
    a = torch.tensor([0.2, 2.0], dtype=D)
    b = torch.tensor([1.0, 0.5], dtype=D)
    k = torch.tensor([30.0, 10.0], dtype=D)
    x = T.simulate(a, b, k, 800, generator=torch.Generator().manual_seed(1)).to(D)
    assert x.shape == (2, 800)
    se = x.std(1) / math.sqrt(800)
    assert torch.all((x.mean(1) - k * a / (a + b)).abs() < 5 * se)


# -------------------------------------------------------------------------------- (d) fitting
def test_fit_reaches_the_maximum_scipy_finds() -> None:
    kin = torch.tensor([[0.4, 2.0, 60.0], [2.0, 1.0, 20.0]], dtype=D)
    x = T.sample_stationary(*kin.T, 800, generator=torch.Generator().manual_seed(4))
    fits = T.fit_genes(x, ci=False)
    for i in range(2):
        xi = x[i]

        def nll(u: np.ndarray, xi=xi) -> float:
            return -float(T.log_pmf(xi, *np.exp(u)).sum())

        res = optimize.minimize(
            nll,
            np.log(kin[i].numpy()),
            method="Nelder-Mead",
            options={"xatol": 1e-8, "fatol": 1e-8, "maxiter": 4000},
        )
        assert fits.log_likelihood[i] >= -res.fun - 1e-4
        rel = abs(fits.burst_size[i] / (np.exp(res.x[2] - res.x[1])) - 1)
        assert rel < 1e-2


def test_profile_interval_endpoint_has_deviance_chi2_quantile() -> None:
    x = T.sample_stationary(0.5, 3.0, 40.0, 600, generator=torch.Generator().manual_seed(9))[None]
    fit = T.fit_genes(x)
    assert not fit.non_identifiable[0]
    assert fit.bf_low[0] < fit.burst_frequency[0] < fit.bf_high[0]
    assert fit.bs_low[0] < fit.burst_size[0] < fit.bs_high[0]
    xi = x[0]
    for bf in (fit.bf_low[0], fit.bf_high[0]):

        def nll(v: np.ndarray, bf=bf) -> float:  # v = (log k_off, log burst size)
            return -float(T.log_pmf(xi, bf, np.exp(v[0]), np.exp(v[0] + v[1])).sum())

        v0 = np.log([fit.k_off[0], fit.burst_size[0]])
        prof = optimize.minimize(
            nll, v0, method="Nelder-Mead", options={"xatol": 1e-7, "fatol": 1e-9}
        )
        dev = 2 * (fit.log_likelihood[0] + prof.fun)
        assert abs(dev - 3.841) < 0.15, dev


def test_ci_ratio_threshold_follows_from_the_10_percent_target() -> None:
    # 95 % interval -> log-scale sd s = ln(U/L) / (2 z_0.975); median |error| = z_0.75 s = 10 %
    z975, z75 = stats.norm.ppf(0.975), stats.norm.ppf(0.75)
    assert T.MAX_CI_RATIO == pytest.approx(math.exp(2 * z975 * 0.10 / z75), rel=1e-6)
    # and a lognormal estimate with that interval ratio has median |relative error| 10 %
    # (sample-median stderr ~ 0.5 / (sqrt(n) * density) ~ 2.6e-4 here; 5 stderr)
    s = math.log(T.MAX_CI_RATIO) / (2 * z975)
    z = torch.randn(200_000, generator=torch.Generator().manual_seed(0), dtype=D)
    med = (torch.exp(s * z) - 1).abs().median().item()
    assert abs(med - 0.10) < 1.3e-3


def test_near_poisson_gene_is_structurally_non_identifiable() -> None:
    # k_on >> k_off: counts are nearly Poisson, the profiles run flat to the parameter box
    x = T.sample_stationary(20.0, 0.2, 30.0, 500, generator=torch.Generator().manual_seed(2))[None]
    fit = T.fit_genes(x)
    assert fit.bf_structural[0] and fit.bs_structural[0] and fit.non_identifiable[0]
    assert not (fit.bf_practical[0] or fit.bs_practical[0])  # the two kinds are exclusive
    # flatness checked independently: a Poisson-limit point with a 100x larger burst size
    # (k_off -> 0, k_on large) is within the 95 % profile cut of the maximum
    m = float(x.double().mean())
    ll = float(T.log_pmf(x[0], 1e3, m / (100 * fit.burst_size[0]), m).sum())
    assert fit.log_likelihood[0] - ll < 1.92


def test_bursty_gene_burst_kinetics_identifiable_though_k_off_k_syn_are_not() -> None:
    # k_off = 50 >> 1: the negative-binomial limit, only k_on and k_syn/k_off matter
    a, b, k = 0.5, 50.0, 1000.0
    x = T.sample_stationary(a, b, k, 1000, generator=torch.Generator().manual_seed(2))[None]
    fit = T.fit_genes(x)
    assert not (fit.bf_structural[0] or fit.bf_practical[0] or fit.non_identifiable[0])
    assert not (fit.bs_structural[0] or fit.bs_practical[0])
    assert fit.bf_ci_ratio[0] <= T.MAX_CI_RATIO and fit.bs_ci_ratio[0] <= T.MAX_CI_RATIO
    assert fit.bf_low[0] < a < fit.bf_high[0] and fit.bs_low[0] < k / b < fit.bs_high[0]
    # k_off and k_syn individually are loose: doubling both at fixed burst size costs < 1.92,
    # so the 95 % profile region of k_off spans more than a factor 2 (burst size's: < 1.79)
    ll = float(T.log_pmf(x[0], fit.k_on[0], 2 * fit.k_off[0], 2 * fit.k_syn[0]).sum())
    assert fit.log_likelihood[0] - ll < 1.92


def test_tiny_data_gene_is_practically_non_identifiable() -> None:
    x = T.sample_stationary(0.3, 2.0, 40.0, 30, generator=torch.Generator().manual_seed(2))[None]
    fit = T.fit_genes(x)
    assert fit.bf_practical[0] and fit.bs_practical[0]
    assert not (fit.bf_structural[0] or fit.bs_structural[0])
    assert fit.bf_ci_ratio[0] > T.MAX_CI_RATIO
    # the ratio is the user's choice: a lax threshold accepts the same intervals
    lax = T.fit_genes(x, max_ci_ratio=1.01 * max(fit.bf_ci_ratio[0], fit.bs_ci_ratio[0]))
    assert not lax.non_identifiable[0]
    np.testing.assert_allclose(lax.bf_low, fit.bf_low)


def test_resumed_fit_equals_uninterrupted(tmp_path) -> None:
    kin, x = T.simulate_table(4, 300, 3, method="exact")
    full = T.fit_counts(x, chunk_size=2, ci=False)
    ckpt = tmp_path / "fit.pt"
    seen = []

    def stop(n: int) -> None:
        seen.append(n)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        T.fit_counts(x, chunk_size=2, ci=False, checkpoint=ckpt, progress=stop)
    assert ckpt.exists() and seen == [2]
    done = []
    resumed = T.fit_counts(x, chunk_size=2, ci=False, checkpoint=ckpt, progress=done.append)
    assert done == [2, 2]  # the saved chunk is reported, one chunk is fitted
    for c in T.GeneFits.COLUMNS:
        np.testing.assert_array_equal(getattr(resumed, c), getattr(full, c))
    with pytest.raises(ValueError, match="other settings"):
        T.fit_counts(x[:, :200], chunk_size=2, ci=False, checkpoint=ckpt)


def test_resume_reports_the_chunks_found_and_restart_discards_them(tmp_path) -> None:
    _, x = T.simulate_table(6, 200, 5, method="exact")
    ckpt = tmp_path / "fit.pt"
    full = T.fit_counts(x, chunk_size=2, ci=False, checkpoint=ckpt)
    found = []
    again = T.fit_counts(
        x, chunk_size=2, ci=False, checkpoint=ckpt, on_resume=lambda *a: found.append(a)
    )
    assert found == [(3, 3)]  # every chunk finished: nothing is refitted
    np.testing.assert_array_equal(again.k_on, full.k_on)
    found.clear()
    seen = []
    T.fit_counts(
        x,
        chunk_size=2,
        ci=False,
        checkpoint=ckpt,
        restart=True,
        progress=seen.append,
        on_resume=lambda *a: found.append(a),
    )
    assert found == [] and seen == [2, 2, 2]  # restarted: all three chunks fitted afresh


def test_checkpoint_holds_one_run_per_chunk_and_reads_earlier_keys(tmp_path) -> None:
    from stochgrad.checkpoint import load_state, save_state

    _, x = T.simulate_table(4, 200, 3, method="exact")
    ckpt = tmp_path / "fit.pt"
    full = T.fit_counts(x, chunk_size=2, ci=False, checkpoint=ckpt)
    state = load_state(ckpt)
    assert sorted(tuple(k) for k, _ in state["runs"]) == [("chunk", 0), ("chunk", 1)]
    # a checkpoint of an earlier release keyed its chunks ("chunk<i>", 0)
    state["runs"] = [[[f"chunk{k[1]}", 0], run] for k, run in state["runs"]]
    save_state(state, ckpt)
    seen = []
    resumed = T.fit_counts(x, chunk_size=2, ci=False, checkpoint=ckpt, progress=seen.append)
    assert seen == [4]  # both chunks found, none refitted
    for c in T.GeneFits.COLUMNS:
        np.testing.assert_array_equal(getattr(resumed, c), getattr(full, c))


def test_all_zero_genes_get_nan_and_every_flag() -> None:
    _, x = T.simulate_table(3, 100, 1, method="exact")
    x[1] = 0
    fits = T.fit_counts(x, ci=False)
    assert np.isnan(fits.k_on[1]) and not np.isnan(fits.k_on[[0, 2]]).any()
    for c in T.GeneFits.FLAGS:
        assert getattr(fits, c)[1]


# ------------------------------------------------------------------------------ input tables
def test_read_counts_detects_and_forces_the_orientation(tmp_path) -> None:
    _, x = T.simulate_table(3, 40, 1, method="exact")
    labelled = tmp_path / "counts.csv"
    rows = ["gene," + ",".join(f"cell{j}" for j in range(40))]
    rows += [f"g{i}," + ",".join(map(str, r)) for i, r in enumerate(x.tolist())]
    labelled.write_text("\n".join(rows) + "\n")
    m, names, how = T.read_counts(labelled)
    assert np.array_equal(m, x.numpy()) and names == ["g0", "g1", "g2"]
    assert "header's first cell names genes" in how
    # the same table written cells x genes without labels: orientation forced, never guessed
    flat = tmp_path / "t.csv"
    np.savetxt(flat, m.T, fmt="%d", delimiter=",")
    back, _, how = T.read_counts(flat, genes_in="columns")
    assert np.array_equal(back, m) and "--genes-in" in how
    with pytest.raises(ValueError, match="--genes-in"):
        T.read_counts(flat)  # 40 rows x 3 columns and no labels: undecidable, not guessed


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", "empty counts table"),
        ("\n\n", "empty counts table"),
        ("gene,c1,c2\n", "no counts found"),
        ("gene,c1,c2\nA,1,x\nB,2,3\n", r"line 2, column 3: 'x' is not a number"),
        ("1,2,3\n4,-1,6\n", "non-negative integers, got -1"),
        ("1,2,3\n4,1.5,6\n", "non-negative integers, got 1.5"),
        ("1,2,3\n4,5\n", r"line 2 has 2 fields where the first data row \(line 1\) has 3"),
        ("A,B\n1,2,3\n4,5,6\n", r"the header \(line 1\) has 2 fields but the data rows have 3"),
    ],
)
def test_read_counts_refuses_careless_tables(tmp_path, text: str, match: str) -> None:
    path = tmp_path / "c.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as err:
        T.read_counts(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_read_counts_refuses_a_binary_file(tmp_path) -> None:
    path = tmp_path / "c.csv"
    path.write_bytes(b"\xff\xfe\x00\x01" * 10)
    with pytest.raises(ValueError, match=r"not UTF-8 text: byte 0xff at offset 0 \(line 1\)"):
        T.read_counts(path)


def test_read_kinetics_keeps_float64_rates(tmp_path) -> None:
    path = tmp_path / "k.csv"
    path.write_text("gene,k_on,k_off,k_syn\nA,0.3,2.7,33.3\nB,1e-2,5,100\n")
    kin = T.read_kinetics(path)
    assert kin.dtype == torch.float64
    # an earlier release read the rates as float32 first: 0.3 became 0.30000001192...
    assert kin.tolist() == [[0.3, 2.7, 33.3], [0.01, 5.0, 100.0]]
    for text, match in [
        ("gene,k_on,k_off\nA,1,2\n", "missing k_syn"),
        ("k_on,k_off,k_syn\n", "no genes"),
        ("k_on,k_off,k_syn\n1,0,3\n", "line 2: k_off must be a finite number > 0, got '0'"),
        ("k_on,k_off,k_syn\n1,2,fast\n", "k_syn must be a finite number > 0, got 'fast'"),
        ("", "empty kinetics table"),
    ]:
        path.write_text(text)
        with pytest.raises(ValueError, match=match):
            T.read_kinetics(path)


def test_names_that_moved_out_of_the_app_warn_and_still_work(tmp_path) -> None:
    from stochgrad.cli import telegraph as cli_telegraph
    from stochgrad.studies import telegraph_recovery

    with pytest.warns(DeprecationWarning, match="recovery_study"):
        assert T.recovery_study is telegraph_recovery.recovery_study
    with pytest.warns(DeprecationWarning, match="RecoveryResult"):
        assert T.RecoveryResult is telegraph_recovery.RecoveryResult
    for name in ("write_fits", "recovery_markdown", "plot_recovery"):
        with pytest.warns(DeprecationWarning, match=name):
            assert getattr(T, name) is getattr(cli_telegraph, name)
    with pytest.raises(AttributeError):
        T.no_such_name  # noqa: B018


def test_the_app_imports_neither_the_cli_nor_the_studies() -> None:
    import ast
    import pathlib

    package = pathlib.Path(T.__file__).parent
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for name in names:
                assert not name.startswith(("stochgrad.cli", "stochgrad.studies")), path
                assert name.split(".")[0] not in ("argparse", "rich", "matplotlib"), path
        assert len(path.read_text().splitlines()) <= 700, path


# ------------------------------------------------------------------------------- bad input
def test_bad_input_raises() -> None:
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="k_on"):
        T.log_pmf([1], 0.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="k_syn"):
        T.log_pmf([1], 1.0, 1.0, float("nan"))
    with pytest.raises(ValueError, match="n must hold non-negative"):
        T.log_pmf([-1], 1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="n must hold non-negative integers"):
        T.log_pmf([1.5], 1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="num_samples"):
        T.fisher_gradient(1, 1.0, 1.0, 1.0, num_samples=1, generator=g)
    with pytest.raises(ValueError, match="method"):
        T.fisher_gradient(1, 1.0, 1.0, 1.0, num_samples=5, generator=g, method="x")
    with pytest.raises(ValueError, match="at least one count"):
        T.fisher_gradient(
            torch.tensor([], dtype=torch.long), 1.0, 1.0, 1.0, num_samples=5, generator=g
        )
    with pytest.raises(ValueError, match="k_off"):
        T.fisher_gradient_exact(1, 1.0, -1.0, 1.0)
    with pytest.raises(ValueError, match="method"):
        T.simulate(1.0, 1.0, 1.0, 3, generator=g, method="tau-leap")
    with pytest.raises(ValueError, match="t_end"):
        T.simulate(1.0, 1.0, 1.0, 3, generator=g, t_end=-1.0)
    with pytest.raises(TypeError, match="num_cells"):
        T.simulate(1.0, 1.0, 1.0, 2.5, generator=g)
    with pytest.raises(ValueError, match="only zero counts"):
        T.fit_genes(torch.tensor([[0, 0, 0], [1, 2, 0]]))
    with pytest.raises(ValueError, match="genes, cells"):
        T.fit_genes(torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="max_ci_ratio"):
        T.fit_genes(torch.tensor([[1, 2, 3]]), max_ci_ratio=1.0)
    with pytest.raises(ValueError, match="genes_in"):
        T.read_counts("x.csv", genes_in="diagonal")
    with pytest.raises(TypeError, match="num_samples"):
        T.fisher_gradient(1, 1.0, 1.0, 1.0, num_samples=2.0, generator=g)
    with pytest.raises(ValueError, match="num_cells must be >= 1"):
        T.sample_stationary(1.0, 1.0, 1.0, 0, generator=g)
    with pytest.raises(ValueError, match="at least 2 cells"):
        T.fit_counts(torch.tensor([[1], [2]]), backend="process")  # refused before any worker
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        T.fit_counts(torch.tensor([[1, 2], [2, 3]]), chunk_size=0)
    with pytest.raises(ValueError, match="max_ci_ratio"):
        T.fit_counts(torch.tensor([[1, 2], [2, 3]]), max_ci_ratio=0.5)
