"""Tests of option prices and Greeks by likelihood-ratio, pathwise and mixed estimators.

References are QuantLib's analytic engines (European, digital, continuous barrier, Heston);
tolerances are multiples of the reported standard error. The command is tested in
``tests/cli/test_greeks.py``, the study in ``tests/studies/test_greeks.py``.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import stochgrad as sg
from stochgrad import _dists
from stochgrad.apps.finance import (
    GREEKS,
    GBMPaths,
    Heston,
    HestonPaths,
    Market,
    Option,
    PathPayoff,
    barrier_survival,
    estimate_greeks,
    gbm_paths,
    heston_paths,
    lr_weights,
    payoff,
    quantlib_reference,
)
from stochgrad.checkpoint import CheckpointError, CheckpointMismatch
from stochgrad.gradient_estimate import GradientEstimate

ql = pytest.importorskip("QuantLib")

pytestmark = pytest.mark.usefixtures("one_thread")

MARKETS = [
    Market(100.0, 0.2, 0.05, 1.0),
    Market(100.0, 0.3, 0.02, 0.05),  # short maturity
    Market(90.0, 0.25, 0.0, 0.5),
]


# ---------------------------------------------------------------------------------------------
# (1) seeded cases replayed against the formulas
# ---------------------------------------------------------------------------------------------


def test_gbm_paths_replay_the_exact_lognormal_steps() -> None:
    mk = Market(100.0, 0.25, 0.03, 0.5)
    S, z = gbm_paths(mk, 4, 3, seed=7)
    zz = z.numpy()
    dt = 0.5 / 3
    expected = 100.0 * np.exp(np.cumsum((0.03 - 0.5 * 0.25**2) * dt + 0.25 * np.sqrt(dt) * zz, 1))
    np.testing.assert_allclose(S.numpy(), expected, rtol=1e-14)
    S2, _ = gbm_paths(mk, 4, 3, seed=7)
    assert torch.equal(S, S2)


def test_lr_weights_are_the_autograd_score_of_the_lognormal_density() -> None:
    """The hand-written weights equal d log p / d theta (and p''/p for gamma) from torch."""
    mk = Market(100.0, 0.2, 0.05, 0.7)
    S, z = gbm_paths(mk, 6, 1, seed=3)
    T = mk.maturity

    def logp(theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        s0, vol, r = theta
        d = torch.distributions.LogNormal(torch.log(s0) + (r - 0.5 * vol**2) * T, vol * T**0.5)
        return d.log_prob(x)

    theta = torch.tensor([mk.spot, mk.vol, mk.rate], dtype=torch.float64)
    x = S[:, 0]
    score = torch.func.vmap(torch.func.grad(logp), in_dims=(None, 0))(theta, x)
    hess = torch.func.vmap(torch.func.hessian(logp), in_dims=(None, 0))(theta, x)
    with pytest.warns(DeprecationWarning, match="score of the path law"):
        w = lr_weights(z, mk, T)  # now the registered score of GBMPaths
    torch.testing.assert_close(w["delta"], score[:, 0], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(w["vega"], score[:, 1], rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(w["rho"], score[:, 2], rtol=1e-10, atol=1e-12)
    # p''/p = (d log p)^2 + d^2 log p
    torch.testing.assert_close(w["gamma"], score[:, 0] ** 2 + hess[:, 0, 0], rtol=1e-10, atol=1e-12)


def test_estimates_replay_the_closed_form_per_path_terms() -> None:
    mk = Market(100.0, 0.2, 0.05, 1.0)
    opt = Option("call", 95.0)
    res = estimate_greeks(opt, mk, 7, seed=11)
    z = np.random.default_rng(11).standard_normal((7, 1))[:, 0]  # seed= draws numpy normals
    s0, vol, r, T, K = 100.0, 0.2, 0.05, 1.0, 95.0
    ST = s0 * np.exp((r - 0.5 * vol**2) * T + vol * np.sqrt(T) * z)
    disc = np.exp(-r * T)
    itm = ST > K
    f = np.maximum(ST - K, 0.0)
    terms = {
        ("price", "mc"): disc * f,
        ("delta", "lr"): disc * f * z / (s0 * vol * np.sqrt(T)),
        ("delta", "pathwise"): disc * itm * ST / s0,
        ("vega", "lr"): disc * f * ((z**2 - 1) / vol - z * np.sqrt(T)),
        ("vega", "pathwise"): disc * itm * ST * (np.log(ST / s0) - (r + 0.5 * vol**2) * T) / vol,
        ("rho", "lr"): disc * f * (np.sqrt(T) * z / vol - T),
        ("rho", "pathwise"): disc * itm * ST * T - T * disc * f,
        ("gamma", "lr"): disc
        * f
        * ((z**2 - 1) / (s0**2 * vol**2 * T) - z / (s0**2 * vol * np.sqrt(T))),
        ("gamma", "mixed"): disc * itm * ST / s0**2 * (z / (vol * np.sqrt(T)) - 1.0),
    }
    assert len(res.estimates) == len(terms)
    for (g, m), t in terms.items():
        e = res.get(g, m)
        assert e.value == pytest.approx(t.mean(), rel=1e-12, abs=1e-14), (g, m)
        assert e.stderr == pytest.approx(t.std(ddof=1) / np.sqrt(7), rel=1e-9), (g, m)
        lo, hi = e.ci95
        assert lo == pytest.approx(e.value - 1.96 * e.stderr, rel=1e-3)
        assert hi > e.value > lo


def test_bridge_survival_replays_the_product_formula() -> None:
    paths = torch.tensor([[105.0, 110.0, 101.0], [105.0, 121.0, 101.0]], dtype=torch.float64)
    s0, H, vol, dt = 100.0, 120.0, 0.3, 0.1
    p = barrier_survival(paths, s0, H, vol, dt)
    pts = [s0, 105.0, 110.0, 101.0]
    expected = np.prod(
        [
            1 - math.exp(-2 * math.log(H / a) * math.log(H / b) / (vol**2 * dt))
            for a, b in zip(pts[:-1], pts[1:], strict=True)
        ]
    )
    assert float(p[0]) == pytest.approx(expected, rel=1e-12)
    assert float(p[1]) == 0.0  # knocked out at a monitoring date
    pay = payoff(Option("barrier", 100.0, barrier=H, steps=3), paths, s0, vol, dt)
    assert float(pay[0]) == pytest.approx(1.0 * expected, rel=1e-12)
    naive = payoff(Option("barrier", 100.0, barrier=H, monitoring="discrete"), paths, s0)
    assert naive.tolist() == [1.0, 0.0]


def test_same_seed_same_numbers_and_heston_paths_shape() -> None:
    mk = Market(100.0, 0.2, 0.05, 1.0)
    a = estimate_greeks(Option("asian", 100.0, steps=4), mk, 3000, seed=5, chunk_size=1000)
    b = estimate_greeks(Option("asian", 100.0, steps=4), mk, 3000, seed=5, chunk_size=1000)
    assert [e.value for e in a.estimates] == [e.value for e in b.estimates]
    h = Heston(0.04, 1.5, 0.04, 0.5, -0.7)
    S, z = heston_paths(mk, h, 5, 4, seed=0)
    # first step: v0 is deterministic, so log S_1 is the exact Gaussian step
    dt = 0.25
    shock = math.sqrt(0.04 * dt) * (-0.7 * z[:, 0, 0] + math.sqrt(1 - 0.49) * z[:, 0, 1])
    torch.testing.assert_close(S[:, 0], 100.0 * torch.exp((0.05 - 0.02) * dt + shock))


def test_chunked_streaming_moments_equal_one_pass() -> None:
    """numpy's normal stream does not depend on the chunking: merged moments must match."""
    mk = Market(100.0, 0.2, 0.05, 1.0)
    opt = Option("put", 100.0)
    one = estimate_greeks(opt, mk, 5000, generator=np.random.default_rng(9), chunk_size=5000)
    many = estimate_greeks(opt, mk, 5000, generator=np.random.default_rng(9), chunk_size=777)
    for a, b in zip(one.estimates, many.estimates, strict=True):
        assert (a.greek, a.method) == (b.greek, b.method)
        assert b.value == pytest.approx(a.value, rel=1e-11, abs=1e-14)
        assert b.stderr == pytest.approx(a.stderr, rel=1e-9)
    z = np.random.default_rng(9).standard_normal(5000)
    ST = 100.0 * np.exp(0.03 + 0.2 * z)
    price = np.exp(-0.05) * np.maximum(100.0 - ST, 0.0)
    assert one.get("price", "mc").value == pytest.approx(price.mean(), rel=1e-12)


@pytest.mark.parametrize("numpy_rng", [False, True], ids=["torch-rng", "numpy-rng"])
def test_interrupted_run_resumed_equals_uninterrupted(tmp_path, numpy_rng: bool) -> None:
    mk = Market(100.0, 0.2, 0.05, 1.0)
    opt = Option("asian", 100.0, steps=3)

    def gen():
        return np.random.default_rng(4) if numpy_rng else torch.Generator().manual_seed(4)

    kw = dict(greeks=["delta", "gamma"], chunk_size=1000)
    full = estimate_greeks(opt, mk, 5000, generator=gen(), **kw)
    ckpt = tmp_path / "greeks.json"
    seen = []

    def stop_after_two(b: int) -> None:
        seen.append(b)
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        estimate_greeks(
            opt, mk, 5000, generator=gen(), checkpoint=ckpt, progress=stop_after_two, **kw
        )
    assert json.loads(ckpt.read_text())["done"] == 2000
    progress = []
    resumed = estimate_greeks(
        opt, mk, 5000, generator=gen(), checkpoint=ckpt, progress=progress.append, **kw
    )
    assert progress[0] == 2000 and sum(progress) == 5000
    assert [(e.value, e.stderr) for e in resumed.estimates] == [
        (e.value, e.stderr) for e in full.estimates
    ]
    with pytest.raises(CheckpointMismatch, match="other settings.*num_paths: 5000 saved, 6000 now"):
        estimate_greeks(opt, mk, 6000, generator=gen(), checkpoint=ckpt, **kw)
    again = estimate_greeks(opt, mk, 6000, generator=gen(), checkpoint=ckpt, restart=True, **kw)
    assert again.num_paths == 6000


def test_gbm_law_replays_the_steps_with_dividends_and_lognormal_log_prob() -> None:
    """Paths from given noise follow the exact step with drift r - q; log_prob is the sum of the
    log-normal step densities (torch's LogNormal), column 0 being the spot."""
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, 3, dtype=torch.float64, generator=g)
    s0, vol, r, q, T = 100.0, 0.25, 0.04, 0.03, 0.6
    dt = T / 3
    law = GBMPaths(s0, vol, r, q, T, steps=3, noise=z)
    x = law.sample((5,))
    expected = s0 * np.exp(
        np.cumsum((r - q - 0.5 * vol**2) * dt + vol * np.sqrt(dt) * z.numpy(), 1)
    )
    np.testing.assert_allclose(x[:, 1:].numpy(), expected, rtol=1e-13)
    assert (x[:, 0] == s0).all() and x.shape == (5, 4)
    again = GBMPaths(s0, vol, r, q, T, steps=3, noise=z).rsample((5,))
    torch.testing.assert_close(again, x, rtol=1e-13, atol=0.0)
    prev = torch.cat([torch.full((5, 1), s0, dtype=torch.float64), x[:, 1:-1]], 1)
    steps = torch.distributions.LogNormal(
        torch.log(prev) + (r - q - 0.5 * vol**2) * dt, vol * math.sqrt(dt)
    )
    torch.testing.assert_close(law.log_prob(x), steps.log_prob(x[:, 1:]).sum(1))


def test_closed_form_scores_are_autograd_of_log_prob() -> None:
    """The scores registered with the core equal d log_prob / d param per path, for the law's
    own draw (from its normals) and for any other paths (from the path)."""
    torch.manual_seed(3)

    def check(law, leaves, n):
        x = law.sample((n,))
        for draws in (x, x.clone()):  # the cached normals, then recovered from the paths
            scores = {id(p): s for p, s in _dists.closed_form_score(law, draws)}
            lp = law.log_prob(draws)
            for leaf in leaves:
                auto = torch.stack(
                    [torch.autograd.grad(lp[i], leaf, retain_graph=True)[0] for i in range(n)]
                )
                torch.testing.assert_close(scores[id(leaf)], auto, rtol=1e-9, atol=1e-12)

    for steps in (1, 4):
        p = [
            torch.tensor(v, dtype=torch.float64, requires_grad=True)
            for v in (90.0, 0.3, 0.05, 0.02)
        ]
        check(GBMPaths(*p, 0.8, steps=steps), p, 6)
    s0, v0 = (torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in (100.0, 0.05))
    check(HestonPaths(s0, 0.03, 0.01, v0, 1.5, 0.04, 0.5, -0.7, 1.0, steps=8), [s0, v0], 6)


def test_heston_law_log_prob_is_the_bivariate_gaussian_scheme() -> None:
    """First step of the draws replayed; log_prob of a path sums torch's bivariate normal
    densities of (v, log S) over the steps from a positive variance (plus the Jacobian 1/S)."""
    mk, h = Market(100.0, 0.2, 0.05, 1.0, dividend=0.02), Heston(0.04, 1.5, 0.04, 0.9, -0.7)
    z = torch.randn(400, 4, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    law = HestonPaths(100.0, 0.05, 0.02, 0.04, 1.5, 0.04, 0.9, -0.7, 1.0, steps=4, noise=z)
    x = law.sample((400,))
    dt = 0.25
    shock = math.sqrt(0.04 * dt) * (-0.7 * z[:, 0, 0] + math.sqrt(1 - 0.49) * z[:, 0, 1])
    torch.testing.assert_close(x[:, 1, 0], 100.0 * torch.exp((0.05 - 0.02 - 0.02) * dt + shock))
    S, v = x[..., 0], x[..., 1]
    assert law.prices(x) is not None and torch.equal(law.prices(x), S)
    expected = torch.zeros(400, dtype=torch.float64)
    for i in range(4):
        vp = v[:, i].clamp_min(0.0)
        live = vp > 0
        mean = torch.stack(
            [v[:, i] + 1.5 * (0.04 - vp) * dt, torch.log(S[:, i]) + (0.03 - 0.5 * vp) * dt], -1
        )
        sd = torch.sqrt(vp[live] * dt)
        cov = torch.stack([torch.stack([0.81 * sd**2, -0.7 * 0.9 * sd**2], -1),
                           torch.stack([-0.7 * 0.9 * sd**2, sd**2], -1)], -2)  # fmt: skip
        mvn = torch.distributions.MultivariateNormal(mean[live], cov)
        y = torch.stack([v[:, i + 1], torch.log(S[:, i + 1])], -1)[live]
        expected[live] += mvn.log_prob(y) - torch.log(S[live, i + 1])
    assert bool((v[:, 1:] <= 0).any())  # xi = 0.9: some steps start from a variance <= 0
    torch.testing.assert_close(law.log_prob(x), expected, rtol=1e-10, atol=1e-10)
    assert mk.dividend == 0.02 and h.v0 == 0.04


def test_deprecated_terms_are_the_chunk_terms() -> None:
    from stochgrad.apps.finance.terms import chunk_terms, gbm_terms, heston_terms

    mk, opt, h = (
        Market(100.0, 0.2, 0.05, 1.0),
        Option("call", 100.0, steps=2),
        Heston(0.04, 1.5, 0.04, 0.5, -0.7),
    )
    z = torch.randn(50, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    zh = torch.randn(50, 2, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    wanted = {"delta": ["lr", "pathwise"]}
    with pytest.warns(DeprecationWarning, match="use chunk_terms"):
        old = gbm_terms(opt, mk, z, wanted)
    with pytest.warns(DeprecationWarning, match="use chunk_terms"):
        old_h = heston_terms(opt, mk, h, zh, wanted)
    for a, b in (
        (old, chunk_terms(opt, mk, None, z, wanted)),
        (old_h, chunk_terms(opt, mk, h, zh, wanted)),
    ):
        assert a.keys() == b.keys()
        assert float(a[("delta", "lr")][0].grad) == float(b[("delta", "lr")][0].grad)


def test_noise_is_served_in_order_to_chunked_draws() -> None:
    """The pathwise estimator redraws in chunks: a law on fixed noise serves them in order."""
    z = torch.randn(1200, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    full = GBMPaths(100.0, 0.2, 0.05, 0.01, 1.0, steps=3, noise=z).sample((1200,))
    law = GBMPaths(100.0, 0.2, 0.05, 0.01, 1.0, steps=3, noise=z)
    parts = torch.cat([law.rsample((512,)), law.rsample((512,)), law.rsample((176,))])
    torch.testing.assert_close(parts, full, rtol=1e-13, atol=0.0)
    with pytest.raises(ValueError, match="noise: the law holds 1200 draws"):
        law.rsample((1,))
    # Heston: the in-place sampler, and rsample with and without a derivative in the variance
    zh = torch.randn(300, 6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    v0 = torch.tensor(0.04, dtype=torch.float64, requires_grad=True)
    args = (100.0, 0.03, 0.01, 0.04, 1.5, 0.04, 0.9, -0.7, 0.5, 6)
    fast = HestonPaths(*args, noise=zh).sample((300,))
    plain = HestonPaths(*args, noise=zh).rsample((300,))
    graph = HestonPaths(*args[:3], v0, *args[4:], noise=zh).rsample((300,))
    assert graph.requires_grad and bool((fast[:, 1:, 1] < 0).any())
    torch.testing.assert_close(plain, fast, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(graph.detach(), fast, rtol=1e-12, atol=1e-12)


def test_estimates_are_the_core_estimators_on_the_path_law() -> None:
    """The LR and pathwise deltas of estimate_greeks are sg.score_function and sg.pathwise of
    the payoff under GBMPaths on the same normals, discounted; each result carries the run's
    GradientEstimate (per_sample: one row per chunk)."""
    mk = Market(100.0, 0.2, 0.05, 1.0, dividend=0.03)
    opt = Option("asian", 100.0, steps=3)
    res = estimate_greeks(opt, mk, 3000, greeks=["delta", "gamma"], seed=8, chunk_size=1000)
    z = torch.from_numpy(np.random.default_rng(8).standard_normal((3000, 3)))
    f = lambda x: torch.relu(x[:, 1:].mean(1) - 100.0)  # noqa: E731
    spot = torch.tensor(100.0, dtype=torch.float64)
    for method, estimator in (("lr", sg.score_function), ("pathwise", sg.pathwise)):
        means = []
        for k in range(3):

            def law(s: torch.Tensor, k: int = k) -> GBMPaths:
                return GBMPaths(s, 0.2, 0.05, 0.03, 1.0, 3, noise=z[1000 * k : 1000 * (k + 1)])

            means.append(mk.discount * float(estimator(f, law, spot, num_samples=1000).grad))
        e = res.get("delta", method)
        assert e.value == pytest.approx(np.mean(means), rel=1e-12)
        g = e.gradient
        assert isinstance(g, GradientEstimate) and g.num_samples == 3000
        assert g.method == {"lr": "score_function", "pathwise": "pathwise"}[method]
        assert float(g.grad) == e.value and float(g.stderr) == e.stderr
        assert float(g.variance) == pytest.approx(e.std**2, rel=1e-12)
        torch.testing.assert_close(g.per_sample, torch.tensor(means, dtype=torch.float64))
    mixed = res.get("gamma", "mixed").gradient
    assert mixed.method == "pathwise+score_function" and mixed.info["chunks"] == 3


# ---------------------------------------------------------------------------------------------
# (2) many paths against QuantLib, tolerance from the standard error
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mk", MARKETS, ids=["T1", "T0.05", "T0.5"])
@pytest.mark.parametrize(
    "opt",
    [
        Option("call", 100.0),
        Option("put", 105.0),
        Option("digital", 100.0),
        Option("barrier", 100.0, barrier=115.0),
        Option("geometric", 100.0, steps=5),
    ],
    ids=["call", "put", "digital", "barrier", "geometric-asian"],
)
def test_every_estimate_within_4_stderr_of_quantlib(opt: Option, mk: Market) -> None:
    ref = quantlib_reference(opt, mk)
    res = estimate_greeks(opt, mk, 40_000, seed=2024, reference=ref)
    assert len(res.estimates) >= 5
    for e in res.estimates:
        assert e.reference is not None and e.stderr > 0
        assert abs(e.z) < 4.0, (e.greek, e.method, e.value, e.reference, e.stderr)


def test_bridge_is_exact_on_several_steps_and_naive_monitoring_is_biased() -> None:
    mk = Market(100.0, 0.2, 0.05, 1.0)
    ref = quantlib_reference(Option("barrier", 100.0, barrier=120.0), mk)
    bridge = estimate_greeks(
        Option("barrier", 100.0, barrier=120.0, steps=8),
        mk,
        20_000,
        greeks=["delta"],
        seed=1,
        reference=ref,
    )
    for e in bridge.estimates:
        assert abs(e.z) < 4.0, (e.greek, e.method, e.z)
    naive = estimate_greeks(
        Option("barrier", 100.0, barrier=120.0, steps=8, monitoring="discrete"),
        mk,
        20_000,
        greeks=["delta"],
        methods=["lr"],
        seed=1,
        reference=ref,
    ).get("price", "mc")
    # missing the crossings between dates overprices the knock-out call, by far
    assert naive.z > 10.0


def test_lr_is_sg_score_function_on_the_lognormal_density() -> None:
    """The library's score-function estimator on the terminal density gives the LR delta."""
    mk = Market(100.0, 0.2, 0.05, 1.0)
    T, K = mk.maturity, 100.0
    ref = quantlib_reference(Option("call", K), mk)

    def dist_fn(s0: torch.Tensor) -> torch.distributions.Distribution:
        return torch.distributions.LogNormal(
            torch.log(s0) + (mk.rate - 0.5 * mk.vol**2) * T, mk.vol * math.sqrt(T)
        )

    est = sg.score_function(
        lambda x: mk.discount * torch.relu(x - K),
        dist_fn,
        torch.tensor(mk.spot, dtype=torch.float64),
        num_samples=40_000,
        seed=3,
    )
    assert abs(float(est.grad) - ref["delta"]) < 4.0 * float(est.stderr)
    ours = estimate_greeks(Option("call", K), mk, 40_000, greeks=["delta"], methods=["lr"], seed=3)
    e = ours.get("delta", "lr")
    # same estimator: same per-path spread (to sampling error)
    assert e.std == pytest.approx(float(est.variance) ** 0.5, rel=0.05)


def test_asian_lr_and_pathwise_agree_and_pathwise_has_lower_spread() -> None:
    mk = Market(100.0, 0.2, 0.05, 1.0)
    opt = Option("asian", 100.0, steps=6)
    a = estimate_greeks(opt, mk, 30_000, greeks=["delta", "vega", "rho"], seed=10)
    b = estimate_greeks(opt, mk, 30_000, greeks=["delta", "vega", "rho"], seed=11)
    for g in ("delta", "vega", "rho"):
        lr, pw = a.get(g, "lr"), b.get(g, "pathwise")
        assert abs(lr.value - pw.value) < 4.0 * math.hypot(lr.stderr, pw.stderr), g
        assert pw.std < lr.std, g


def test_heston_call_against_analytic_heston_engine() -> None:
    mk = Market(100.0, 0.2, 0.03, 0.5)
    h = Heston(0.04, 2.0, 0.04, 0.4, -0.6)
    opt = Option("call", 100.0, steps=32)
    ref = quantlib_reference(opt, mk, h)
    res = estimate_greeks(opt, mk, 20_000, heston=h, seed=4, reference=ref)
    methods = {(e.greek, e.method) for e in res.estimates}
    assert {("delta", "lr"), ("delta", "pathwise"), ("gamma", "mixed"), ("rho", "pathwise")} <= (
        methods
    )
    for e in res.estimates:
        assert abs(e.z) < 4.0, (e.greek, e.method, e.value, e.reference, e.stderr)


@pytest.mark.parametrize("q", [0.01, 0.04, 0.1])
@pytest.mark.parametrize("kind", ["call", "put"])
def test_dividends_within_4_stderr_of_quantlib(kind: str, q: float) -> None:
    mk = Market(100.0, 0.25, 0.05, 0.75, dividend=q)
    opt = Option(kind, 95.0)
    ref = quantlib_reference(opt, mk)
    res = estimate_greeks(opt, mk, 40_000, greeks=["delta", "vega"], seed=11, reference=ref)
    assert {(e.greek, e.method) for e in res.estimates} == {
        ("price", "mc"), ("delta", "lr"), ("delta", "pathwise"), ("vega", "lr"),
        ("vega", "pathwise")}  # fmt: skip
    for e in res.estimates:
        assert abs(e.z) < 4.0, (e.greek, e.method, e.value, e.reference, e.stderr)


@pytest.mark.parametrize(
    "opt",
    [Option("digital", 100.0), Option("barrier", 100.0, barrier=125.0, steps=4)],
    ids=["digital", "barrier"],
)
def test_digital_and_barrier_with_dividends_against_quantlib(opt: Option) -> None:
    mk = Market(100.0, 0.2, 0.05, 1.0, dividend=0.03)
    ref = quantlib_reference(opt, mk)
    res = estimate_greeks(opt, mk, 40_000, seed=12, reference=ref)
    assert len(res.estimates) >= 5
    for e in res.estimates:
        assert abs(e.z) < 4.0, (e.greek, e.method, e.value, e.reference, e.stderr)


def test_heston_vega_is_dv_dv0_against_quantlib_differences() -> None:
    """Vega under Heston is dV/dv0: the score of the scheme w.r.t. v0 (LR) and the pathwise
    derivative, against central differences of AnalyticHestonEngine's price in v0."""
    mk = Market(100.0, 0.2, 0.03, 0.5, dividend=0.02)
    h = Heston(0.05, 2.0, 0.04, 0.3, -0.5)  # Feller: 2 kappa theta = 0.16 >= xi^2 = 0.09
    opt = Option("put", 100.0, steps=25)
    ref = quantlib_reference(opt, mk, h)
    res = estimate_greeks(opt, mk, 40_000, heston=h, greeks=["vega"], seed=13, reference=ref)
    for method in ("lr", "pathwise"):
        e = res.get("vega", method)
        assert abs(e.z) < 4.0, (method, e.value, e.reference, e.stderr)
    assert res.get("vega", "lr").gradient.method == "score_function"


def test_a_custom_payoff_of_the_path_against_quantlib() -> None:
    """A straddle written as a function of the path: estimate_greeks and the core estimators
    called directly on GBMPaths both agree with QuantLib's call + put (with dividends)."""
    mk = Market(100.0, 0.25, 0.04, 0.75, dividend=0.03)
    call, put = (quantlib_reference(Option(k, 105.0), mk) for k in ("call", "put"))
    ref = {g: call[g] + put[g] for g in call}
    straddle = PathPayoff(lambda x: (x[:, -1] - 105.0).abs(), name="straddle")
    res = estimate_greeks(straddle, mk, 40_000, seed=14, reference=ref)
    assert len(res.estimates) == 9 and res.to_dict()["option"]["payoff"] == "straddle"
    for e in res.estimates:
        assert abs(e.z) < 4.0, (e.greek, e.method, e.value, e.reference, e.stderr)

    def law(s0: torch.Tensor, vol: torch.Tensor) -> GBMPaths:
        return GBMPaths(s0, vol, mk.rate, mk.dividend, mk.maturity, steps=1)

    theta = (torch.tensor(100.0, dtype=torch.float64), torch.tensor(0.25, dtype=torch.float64))
    for estimator in (sg.score_function, sg.pathwise):
        est = estimator(straddle.fn, law, theta, num_samples=40_000, seed=15)
        for g, grad, se in zip(("delta", "vega"), est.grad, est.stderr, strict=True):
            assert abs(mk.discount * float(grad) - ref[g]) < 4.0 * mk.discount * float(se)


def test_a_payoff_reading_the_spot_adds_its_derivative_to_the_likelihood_ratio() -> None:
    """(S_T - S0)^+ (strike at the spot) is homogeneous of degree 1 in S0: delta = price / S0.
    The likelihood ratio differentiates the law of the dates only, so it needs reads_spot=True."""
    mk = Market(100.0, 0.2, 0.05, 1.0, dividend=0.02)
    price = quantlib_reference(Option("call", 100.0), mk)["price"]
    fn = lambda x: torch.relu(x[:, -1] - x[:, 0])  # noqa: E731
    res = estimate_greeks(PathPayoff(fn, reads_spot=True), mk, 40_000, greeks=["delta"], seed=16,
                          reference={"price": price, "delta": price / 100.0})  # fmt: skip
    for e in res.estimates:
        assert abs(e.z) < 4.0, (e.greek, e.method, e.value, e.reference, e.stderr)
    wrong = estimate_greeks(PathPayoff(fn), mk, 40_000, greeks=["delta"], methods=["lr"], seed=16)
    assert (
        abs(wrong.get("delta", "lr").value - price / 100.0) > 10 * wrong.get("delta", "lr").stderr
    )


# ---------------------------------------------------------------------------------------------
# (3) bad input
# ---------------------------------------------------------------------------------------------


def test_pathwise_on_discontinuous_payoffs_is_refused() -> None:
    mk = Market(100.0, 0.2, 0.05, 1.0)
    with pytest.raises(ValueError, match="likelihood ratio"):
        estimate_greeks(Option("digital", 100.0), mk, 10, methods=["pathwise"], seed=0)
    with pytest.raises(ValueError, match="likelihood ratio"):
        estimate_greeks(
            Option("barrier", 100.0, barrier=120.0, steps=5, monitoring="discrete"),
            mk,
            10,
            greeks=["gamma"],
            methods=["mixed"],
            seed=0,
        )
    with pytest.raises(ValueError, match="mixed"):
        estimate_greeks(
            Option("call", 100.0), mk, 10, greeks=["gamma"], methods=["pathwise"], seed=0
        )
    # by default the refused ones are listed, never silently zero
    res = estimate_greeks(Option("digital", 100.0), mk, 10, seed=0)
    assert "pathwise" in res.refused["delta"] and "mixed" in res.refused["gamma"]
    assert all(e.method in ("mc", "lr") for e in res.estimates)


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Market(100.0, -0.2, 0.05, 1.0), "vol"),
        (lambda: Market(float("nan"), 0.2, 0.05, 1.0), "spot"),
        (lambda: Market(100.0, 0.2, 0.05, 0.0), "maturity"),
        (lambda: Option("barrier", 100.0), "barrier is required"),
        (lambda: Option("barrier", 100.0, barrier=90.0), "barrier must exceed strike"),
        (lambda: Option("lookback", 100.0), "payoff"),
        (lambda: Option("asian", 100.0, steps=0), "steps"),
        (lambda: Option("call", 100.0, monitoring="daily"), "monitoring"),
        (lambda: Heston(0.04, 1.5, 0.04, 0.5, 1.0), "rho"),
        (lambda: Heston(-0.04, 1.5, 0.04, 0.5, 0.0), "v0"),
    ],
)
def test_bad_parameters_raise(make, match) -> None:
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_estimator_arguments_raise() -> None:
    mk = Market(100.0, 0.2, 0.05, 1.0)
    call = Option("call", 100.0)
    with pytest.raises(ValueError, match="num_paths"):
        estimate_greeks(call, mk, 0, seed=0)
    with pytest.raises(ValueError, match="generator= or seed="):
        estimate_greeks(call, mk, 10)
    with pytest.raises(ValueError, match="not both"):
        estimate_greeks(call, mk, 10, seed=0, generator=torch.Generator())
    with pytest.raises(ValueError, match="greeks"):
        estimate_greeks(call, mk, 10, greeks=["theta"], seed=0)
    with pytest.raises(ValueError, match="methods"):
        estimate_greeks(call, mk, 10, methods=["finite-difference"], seed=0)
    with pytest.raises(ValueError, match="bridge"):
        estimate_greeks(
            Option("barrier", 100.0, barrier=120.0),
            mk,
            10,
            heston=Heston(0.04, 1.5, 0.04, 0.5, -0.7),
            seed=0,
        )
    with pytest.raises(ValueError, match="dtype"):
        estimate_greeks(call, mk, 10, seed=0, dtype=torch.int64)
    with pytest.raises(TypeError, match="strike"):
        Option("call", "abc")
    with pytest.raises(TypeError, match="generator"):
        estimate_greeks(call, mk, 10, generator=0)


def test_state_and_save_hooks_resume_exactly_through_a_pt_file(tmp_path) -> None:
    """The state handed to ``save`` is plain data: through save_state/load_state (what the
    study's checkpoint does) it resumes to the uninterrupted numbers, torch and numpy streams."""
    from stochgrad.checkpoint import load_state, save_state

    mk = Market(100.0, 0.2, 0.05, 1.0)
    opt = Option("barrier", 100.0, barrier=125.0, steps=3)
    for gen in (lambda: torch.Generator().manual_seed(1), lambda: np.random.default_rng(1)):
        full = estimate_greeks(opt, mk, 3000, generator=gen(), chunk_size=700)
        path = tmp_path / "state.pt"

        def save(st, path=path):
            save_state(st, path)

        def stop(b, path=path):
            if load_state(path)["done"] >= 1400:
                raise KeyboardInterrupt

        with pytest.raises(KeyboardInterrupt):
            estimate_greeks(
                opt, mk, 3000, generator=gen(), chunk_size=700, save=save, progress=stop
            )
        state = load_state(path)
        assert state["done"] == 1400
        seen = []
        again = estimate_greeks(
            opt, mk, 3000, generator=gen(), chunk_size=700, state=state, progress=seen.append
        )
        assert seen[0] == 1400 and sum(seen) == 3000
        assert [(e.greek, e.method, e.value, e.stderr) for e in again.estimates] == [
            (e.greek, e.method, e.value, e.stderr) for e in full.estimates
        ]
    with pytest.raises(CheckpointMismatch, match="chunk_size: 700 saved, 800 now"):
        estimate_greeks(opt, mk, 3000, generator=gen(), chunk_size=800, state=state)


@pytest.mark.parametrize("content", ["", "{not json", '{"config": 1}', "[1, 2]"])
def test_bad_checkpoint_file_is_one_clear_error(tmp_path, content: str) -> None:
    ckpt = tmp_path / "greeks.json"
    ckpt.write_text(content)
    with pytest.raises(CheckpointError) as exc:
        estimate_greeks(Option("call", 100.0), Market(100.0, 0.2, 0.05, 1.0), 10, seed=0,
                        checkpoint=ckpt)  # fmt: skip
    text = str(exc.value)
    assert str(ckpt) in text and "\n" not in text and "restart" in text


def test_callback_is_deprecated_and_checkpoint_excludes_save(tmp_path):
    mk, call = Market(100.0, 0.2, 0.05, 1.0), Option("call", 100.0)
    seen = []
    with pytest.warns(DeprecationWarning, match="progress="):
        estimate_greeks(call, mk, 30, seed=0, chunk_size=10, callback=seen.append)
    assert seen == [10, 10, 10]
    with pytest.raises(ValueError, match="not both"):
        estimate_greeks(call, mk, 10, seed=0, checkpoint=tmp_path / "c.json", save=print)


def test_every_greek_is_estimated_by_default() -> None:
    res = estimate_greeks(Option("call", 100.0), Market(100.0, 0.2, 0.05, 1.0), 100, seed=0)
    assert {e.greek for e in res.estimates} == set(GREEKS)


def test_bad_laws_and_payoffs_raise() -> None:
    with pytest.raises(ValueError, match="noise must have shape \\[N, 3\\]"):
        GBMPaths(100.0, 0.2, 0.05, 0.0, 1.0, steps=3, noise=torch.zeros(4, 2))
    with pytest.raises(ValueError, match="steps"):
        GBMPaths(100.0, 0.2, 0.05, 0.0, 1.0, steps=0)
    with pytest.raises(ValueError, match="maturity"):
        GBMPaths(100.0, 0.2, 0.05, 0.0, -1.0)
    with pytest.raises(ValueError, match="spot must be a scalar"):
        GBMPaths(torch.ones(2), 0.2, 0.05)
    with pytest.raises(TypeError, match="vol must be a number"):
        GBMPaths(100.0, "0.2", 0.05)
    with pytest.raises(ValueError, match="vol"):
        GBMPaths(100.0, -0.2, 0.05, validate_args=True)
    with pytest.raises(ValueError, match="rho must be in"):
        HestonPaths(100.0, 0.0, 0.0, 0.04, 1.0, 0.04, 0.5, 1.0, validate_args=True)
    rate = torch.tensor(0.03, dtype=torch.float64)
    heston = lambda r: HestonPaths(100.0, r, 0.0, 0.04, 1.5, 0.04, 0.5, -0.7, 1.0, 4)  # noqa: E731
    with pytest.raises(ValueError, match="w.r.t. rate is not defined.*sg.pathwise"):
        sg.score_function(lambda x: x[:, -1, 0], heston, rate, num_samples=10, seed=0)
    with pytest.raises(TypeError, match="fn must be callable"):
        PathPayoff("call")
    with pytest.raises(ValueError, match="steps"):
        PathPayoff(lambda x: x[:, -1], steps=0)
    with pytest.raises(TypeError, match="option must be an Option or a PathPayoff"):
        estimate_greeks("call", Market(100.0, 0.2, 0.05, 1.0), 10, seed=0)
    with pytest.raises(ValueError, match="dividend"):
        Market(100.0, 0.2, 0.05, 1.0, dividend=float("nan"))
    refused = estimate_greeks(PathPayoff(lambda x: (x[:, -1] > 100).double(), pathwise_ok=False),
                              Market(100.0, 0.2, 0.05, 1.0), 100, seed=0)  # fmt: skip
    assert "pathwise_ok=False" in refused.refused["delta"]["pathwise"]
