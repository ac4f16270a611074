"""The txburst-style reference fit, the exact likelihood's derivatives, and the batched fit
against the reference.

Layers: (1) the reference's start, objective and optimiser call replayed by hand, and the closed-
form gradient and Hessian of the histogram likelihood against automatic differentiation of
``log_pmf_table``; (2) the batched fit's exact log-likelihood at least the reference's (minus
1e-3 nats) on a few hundred simulated genes, some with ``k_off`` pressed onto its lower bound;
(3) bad input raises.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch
from scipy.optimize import minimize
from scipy.special import betaln, roots_jacobi
from scipy.stats import poisson

from stochgrad.apps import telegraph as T
from stochgrad.apps.telegraph import fit as F
from stochgrad.apps.telegraph.likelihood import histogram_nll, log_pmf_table
from stochgrad.apps.telegraph.reference import (
    TXBURST_BOUNDS,
    TXBURST_FALLBACK,
    fit_gene_txburst,
    fit_genes_txburst,
    txburst_nll,
    txburst_start,
)

D = torch.float64
pytestmark = pytest.mark.usefixtures("one_thread")


# ------------------------------------------------------------------ (1) the reference, by hand
def test_box_is_txbursts_and_the_fits() -> None:
    # txburstML.py: bnds = ((1e-3, 1e3), (1e-3, 1e3), (1, 1e4)); fallback start [10, 10, 10]
    assert TXBURST_BOUNDS == ((1e-3, 1e3), (1e-3, 1e3), (1.0, 1e4))
    assert TXBURST_FALLBACK == (10.0, 10.0, 10.0)
    assert tuple(T.BOUNDS[k] for k in ("k_on", "k_off", "k_syn")) == TXBURST_BOUNDS


def test_start_is_the_moment_estimate_checked_by_hand() -> None:
    # counts 0, 0, 1, 2, 4, 9: n(n-1) = 0, 0, 0, 2, 12, 72 and n(n-1)(n-2) = 0, 0, 0, 0, 24, 504,
    # so m1 = 8/3, m2 = 86/6 = 43/3, m3 = 528/6 = 88 and r = (8/3, 43/8, 264/43)
    r1, r2, r3 = Fraction(8, 3), Fraction(43, 8), Fraction(264, 43)
    den = r1 * r2 - 2 * r1 * r3 + r2 * r3
    e = r1 - 2 * r2 + r3
    expect = [
        2 * r1 * (r3 - r2) / den,
        2 * (r3 - r2) * (r1 - r3) * (r2 - r1) / (den * e),
        (2 * r1 * r3 - r1 * r2 - r2 * r3) / e,
    ]
    got = txburst_start([0, 0, 1, 2, 4, 9])
    np.testing.assert_allclose(got[0], [float(v) for v in expect], rtol=1e-12)
    # the same as the batched fit's start where both are usable (and inside the box)
    ours = T.moment_estimates(torch.tensor([[0, 0, 1, 2, 4, 9]])).numpy()
    np.testing.assert_allclose(got, ours, rtol=1e-12)
    # a missing cell (NaN) is left out, as txburst drops it
    np.testing.assert_allclose(txburst_start([0, 0, np.nan, 1, 2, 4, 9]), got, rtol=1e-15)


@pytest.mark.parametrize(
    "counts",
    [
        [0, 1, 0, 1, 1],  # m2 = 0
        [0, 0, 0, 5],  # r = (5/4, 4, 3): k_on < 0
        [3, 3, 3, 3],  # r = (3, 2, 1): E = r1 - 2 r2 + r3 = 0
    ],
)
def test_unusable_moments_fall_back_to_txbursts_start(counts: list[int]) -> None:
    np.testing.assert_array_equal(txburst_start(counts), [TXBURST_FALLBACK])


def test_objective_replays_the_scripts_quadrature() -> None:
    values = np.array([0.0, 0.0, 3.0, 7.0, 7.0, 20.0])
    a, b, k = 0.7, 2.5, 30.0
    y, w = roots_jacobi(50, b - 1.0, a - 1.0)
    pmf = w * poisson.pmf(values[:, None], k * (1 + y) / 2)
    p = np.exp(-betaln(a, b) + (1 - a - b) * np.log(2)) * pmf.sum(1)
    assert txburst_nll([a, b, k], values) == pytest.approx(-np.log(p + 1e-10).sum(), rel=1e-13)


def test_fit_is_lbfgsb_from_the_start_within_the_box() -> None:
    x = T.sample_stationary(0.4, 3.0, 40.0, 150, generator=torch.Generator().manual_seed(3))
    vals = x.numpy().astype(float)
    est, nll, start, ok, nfev = fit_gene_txburst(vals)
    lo, hi = np.array(TXBURST_BOUNDS).T
    res = minimize(
        txburst_nll, np.clip(start, lo, hi), args=(vals,), method="L-BFGS-B", bounds=TXBURST_BOUNDS
    )
    np.testing.assert_array_equal(est, res.x)
    assert nll == res.fun and ok == res.success and nfev == res.nfev
    np.testing.assert_array_equal(start, txburst_start(vals)[0])
    # a start outside the box (here k_syn < 1) is moved onto it, as L-BFGS-B does
    tiny = fit_gene_txburst([0] * 60 + [1] * 3)
    assert np.all(tiny[0] >= lo) and np.all(tiny[0] <= hi)


def test_batched_reference_is_the_per_gene_one() -> None:
    _, x = T.simulate_table(3, 120, 5, method="exact")
    fits = fit_genes_txburst(x)
    for g in range(3):
        est, nll, *_ = fit_gene_txburst(x[g].numpy())
        np.testing.assert_array_equal(fits.params[g], est)
        assert fits.objective[g] == nll


# ---------------------------------------------------------- (1) the likelihood's derivatives
@pytest.mark.parametrize(
    "rates",
    [
        (0.5, 2.0, 30.0),
        (0.05, 10.0, 800.0),
        (20.0, 0.2, 30.0),
        (1e-3, 1e-3, 1.0),
        (1e3, 1e-3, 1e4),
        (0.01, 100.0, 1e4),
        (1e3, 1e3, 1e4),
    ],
)
def test_histogram_nll_gradient_and_hessian_are_autograds(rates: tuple) -> None:
    x = T.sample_stationary(*rates, 300, generator=torch.Generator().manual_seed(1))
    n_max = int(x.max())
    hist = torch.bincount(x, minlength=n_max + 1).to(D)[None]
    theta = torch.tensor([rates], dtype=D) * torch.tensor([1.1, 0.9, 1.05], dtype=D)

    def nll(t: torch.Tensor) -> torch.Tensor:
        return -(hist * log_pmf_table(t[:, 0], t[:, 1], t[:, 2], n_max)).sum()

    t = theta.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(nll(t), t, create_graph=True)
    H = torch.stack([torch.autograd.grad(g[0, i], t, retain_graph=True)[0][0] for i in range(3)])
    f2, g2, H2 = histogram_nll(theta[:, 0], theta[:, 1], theta[:, 2], hist)
    f0, _, _ = histogram_nll(theta[:, 0], theta[:, 1], theta[:, 2], hist, order=0)
    # both sum 300 cells' log-probabilities, each exact to ~1e-12 relative
    assert float(f2[0]) == pytest.approx(float(nll(theta)), rel=1e-9)
    assert float(f0[0]) == float(f2[0])
    torch.testing.assert_close(g2[0], g[0].detach(), rtol=1e-9, atol=1e-9 * g.abs().max().item())
    torch.testing.assert_close(H2[0], H, rtol=1e-7, atol=1e-7 * H.abs().max().item())


def test_histogram_nll_rows_of_different_lengths_are_each_their_own() -> None:
    _, x = T.simulate_table(5, 200, 2, method="exact")
    hist = F._histograms(x)
    theta = torch.tensor([[0.5, 2.0, 30.0]] * 5, dtype=D)
    f, g, H = histogram_nll(*theta.T, hist)
    for i in range(5):
        top = int(x[i].max())
        fi, gi, Hi = histogram_nll(*theta[i : i + 1].T, hist[i : i + 1, : top + 1])
        torch.testing.assert_close(f[i], fi[0], rtol=1e-13, atol=0)
        torch.testing.assert_close(H[i], Hi[0], rtol=1e-10, atol=1e-10)


# ------------------------------------------------------------------ the optimiser in the box
def test_projected_newton_follows_a_ridge_oblique_to_a_bound_into_the_corner() -> None:
    # f = 50 (u0 - u1)^2 + exp(-(u0 + u1)): a valley along u0 = u1 falling towards the upper
    # bound 1 of both; a step clipped coordinate by coordinate leaves the valley and fails
    def fgh(u: torch.Tensor, idx: torch.Tensor):
        d, s = u[:, 0] - u[:, 1], torch.exp(-(u[:, 0] + u[:, 1]))
        f = 50 * d**2 + s
        g = torch.stack((100 * d - s, -100 * d - s), 1)
        H = torch.stack(
            (torch.stack((100 + s, -100 + s), 1), torch.stack((-100 + s, 100 + s), 1)), 1
        )
        return f, g, H

    lo, hi = torch.full((2,), -5.0, dtype=D), torch.ones(2, dtype=D)
    u, f, g, H, conv = F._newton(fgh, torch.tensor([[-4.0, -3.0], [0.9, -4.0]], dtype=D), lo, hi)
    torch.testing.assert_close(u, torch.ones(2, 2, dtype=D), rtol=0, atol=1e-9)
    assert conv.all()


# ------------------------------------------------- (2) the fit against the reference, per gene
def _hard_genes(C: int, seed: int) -> np.ndarray:
    """Random kinetics, near-Poisson genes (k_off in [0.001, 0.01]) and Poisson counts: the
    last two are where a local fit presses k_off onto its lower bound and can stop short."""
    _, x = T.simulate_table(10, C, seed, method="exact")
    g = torch.Generator().manual_seed(10_000 + seed)
    u = torch.rand(20, 3, generator=g, dtype=D)
    lo, hi = (
        torch.tensor([1.0, 0.001, 2.0], dtype=D).log(),
        torch.tensor([10.0, 0.01, 20.0], dtype=D).log(),
    )
    k_on, k_off, bs = (lo + u * (hi - lo)).exp().T
    near = T.sample_stationary(k_on, k_off, bs * k_off, C, generator=g)
    rate = torch.exp(torch.rand(20, 1, generator=g, dtype=D) * 4.0)
    poisson = torch.poisson(rate.expand(-1, C).contiguous(), generator=g).long()
    x = torch.cat((x, near, poisson)).numpy()
    return x[x.sum(1) > 0]


def test_fit_never_below_the_reference_by_more_than_1e_3_nats() -> None:
    # the failure this guards against: 10 of 3,000 simulated genes once ended up to 12.7 nats
    # below the txburst-style fit, k_off pressed to ~0.007 where 0.064 was better; on these 49
    # genes a single-start Newton fit ends 5 genes below by up to 0.025 nats
    x = _hard_genes(150, 3)
    ours = T.fit_genes(x, ci=False)
    ref = fit_genes_txburst(x)
    ll = [
        T.log_pmf(torch.from_numpy(x), *torch.from_numpy(p).T).sum(1).numpy()
        for p in (np.stack((ours.k_on, ours.k_off, ours.k_syn), 1), ref.params)
    ]
    diff = ll[0] - ll[1]
    lower = T.BOUNDS["k_off"][0] * 1.0001
    # the hard cases are there: genes on the k_off bound in one fit or the other
    assert int(((ours.k_off < lower) | (ref.k_off < lower)).sum()) >= 8
    assert diff.min() >= -1e-3, (diff.min(), int(diff.argmin()))


def test_bad_input_raises() -> None:
    with pytest.raises(ValueError, match="non-negative integers"):
        txburst_start([1, -2, 3])
    with pytest.raises(ValueError, match="non-negative integers"):
        fit_gene_txburst([1.5, 2, 3])
    with pytest.raises(TypeError, match="counts"):
        txburst_start(np.array([True, False]))
    with pytest.raises(ValueError, match="fewer than 2 observed cells"):
        txburst_start([[np.nan, 4.0, np.nan]])
    with pytest.raises(ValueError, match="only zero counts"):
        fit_genes_txburst([[0, 0, 0], [1, 2, 3]])
    with pytest.raises(ValueError, match="one gene"):
        fit_gene_txburst([[1, 2, 3], [4, 5, 6]])
    with pytest.raises(ValueError, match=r"\[cells\] or \[genes, cells\]"):
        txburst_start(np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="backend"):
        fit_genes_txburst([[1, 2, 3]], backend="threads")
    one = torch.ones(1, dtype=D)
    with pytest.raises(ValueError, match="order"):
        histogram_nll(one, one, one, torch.ones(1, 3), order=1)
    with pytest.raises(ValueError, match="hist must be"):
        histogram_nll(one, one, one, torch.ones(2, 3))
    with pytest.raises(ValueError, match="non-negative finite"):
        histogram_nll(one, one, one, -torch.ones(1, 3))
    with pytest.raises(ValueError, match="k_off"):
        histogram_nll(one, -one, one, torch.ones(1, 3))
