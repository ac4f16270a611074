"""Gumbel tools, Gumbel-softmax / straight-through (biased), REBAR and RELAX (unbiased).

Three layers: seeded single samples replayed against the formulas written out by hand (the
paper's forms, not the module's); many-sample means against exact enumeration within 5 standard
errors (and the biased estimators shown biased); bad input.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import distributions as D

import stochgrad as sg
from stochgrad.estimators.relaxed import (
    Relax,
    concrete_sample,
    gumbel_max,
    gumbel_softmax,
    rebar,
    relaxed_bernoulli_sample,
    straight_through,
    straight_through_bernoulli,
    straight_through_categorical,
)
from tests.cases import CASES

DT = torch.float64
N = 10_000


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _flat(v):
    if isinstance(v, tuple):
        return torch.cat([t.reshape(-1) for t in v])
    return v.reshape(-1)


def _toy(b):
    return (b - 0.499) ** 2


def _bern_logits(lg):
    return D.Bernoulli(logits=lg)


# =============================================================================================
# layer 1: seeded replays of the formulas
# =============================================================================================
def test_gumbel_max_is_argmax_of_logits_plus_hand_drawn_gumbel():
    logits = torch.tensor([[0.1, 0.5, -0.2, 0.3], [2.0, -1.0, 0.0, 0.5]], dtype=DT)
    out = gumbel_max(logits, 7, generator=_gen(3))
    u = torch.rand((7, 2, 4), generator=_gen(3), dtype=DT)
    expected = (logits - torch.log(-torch.log(u))).argmax(-1)
    assert out.dtype == torch.long and out.shape == (7, 2)
    assert torch.equal(out, expected)
    assert torch.equal(gumbel_max(logits, 7, seed=3), out)  # seed is shorthand for a generator


def test_concrete_sample_formula_and_hard_straight_through():
    logits = torch.tensor([0.2, -0.4, 0.9], dtype=DT, requires_grad=True)
    lam = 0.7
    y = concrete_sample(logits, lam, 5, generator=_gen(4))
    u = torch.rand((5, 3), generator=_gen(4), dtype=DT)
    expected = torch.softmax((logits - torch.log(-torch.log(u))) / lam, -1)
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-14)
    # hard=True: the Gumbel-max one-hot forward, the relaxed sample's gradient backward
    w = torch.tensor([1.0, -2.0, 0.5], dtype=DT)
    yh = concrete_sample(logits, lam, 5, hard=True, generator=_gen(4))
    assert torch.equal(yh.detach(), F.one_hot(gumbel_max(logits, 5, seed=4), 3).to(DT))
    (g_hard,) = torch.autograd.grad((yh @ w).sum(), logits)
    (g_soft,) = torch.autograd.grad((expected @ w).sum(), logits)
    torch.testing.assert_close(g_hard, g_soft)


def test_relaxed_bernoulli_formula_and_hard_sample():
    logits = torch.tensor([0.3, -1.2], dtype=DT)
    y = relaxed_bernoulli_sample(logits, 0.4, 6, generator=_gen(5))
    u = torch.rand((6, 2), generator=_gen(5), dtype=DT)
    z = logits + torch.log(u) - torch.log(1 - u)
    torch.testing.assert_close(y, torch.sigmoid(z / 0.4), rtol=0, atol=1e-14)
    yh = relaxed_bernoulli_sample(logits, 0.4, 6, hard=True, generator=_gen(5))
    assert torch.equal(yh, (z > 0).to(DT))


def test_straight_through_samples_forward_exact_backward_identity():
    p = torch.tensor([0.2, 0.7, 0.5], dtype=DT, requires_grad=True)
    b = straight_through_bernoulli(p, 9, generator=_gen(6))
    u = torch.rand((9, 3), generator=_gen(6), dtype=DT)
    assert torch.equal(b.detach(), (u > 1 - p.detach()).to(DT))
    w = torch.tensor([1.0, -3.0, 2.0], dtype=DT)
    (gp,) = torch.autograd.grad((b * w).sum(), p)
    torch.testing.assert_close(gp, 9 * w)  # d b / d p := 1 for every sample

    q = torch.tensor([0.2, 0.3, 0.5], dtype=DT, requires_grad=True)
    y = straight_through_categorical(q, 9, generator=_gen(7))
    hard = F.one_hot(gumbel_max(torch.log(q.detach()), 9, seed=7), 3).to(DT)
    assert torch.equal(y.detach(), hard)
    (gq,) = torch.autograd.grad((y * w).sum(), q)
    torch.testing.assert_close(gq, 9 * w)


def test_gumbel_max_frequencies_match_softmax_chi_square():
    logits = torch.tensor([[0.1, 0.5, -0.2, 0.3, -1.0], [1.5, 0.0, -0.5, 0.2, 0.4]], dtype=DT)
    n = 20_000
    idx = gumbel_max(logits, n, seed=0)
    for row in range(2):
        counts = torch.bincount(idx[:, row], minlength=5).numpy()
        expected = n * torch.softmax(logits[row], -1).numpy()
        assert stats.chisquare(counts, expected).pvalue > 1e-3


def test_relaxed_samples_become_hard_as_temperature_falls():
    logits = torch.tensor([0.1, 0.5, -0.2, 0.3], dtype=DT)
    hard = F.one_hot(gumbel_max(logits, 2000, seed=1), 4).to(DT)
    gaps = [
        (concrete_sample(logits, lam, 2000, seed=1) - hard).abs().mean().item()
        for lam in (1.0, 0.1, 0.01, 0.001)
    ]
    assert all(a > b for a, b in zip(gaps, gaps[1:], strict=False)), gaps
    assert gaps[-1] < 1e-3

    lg = torch.tensor([0.4, -0.8], dtype=DT)
    bh = relaxed_bernoulli_sample(lg, 1.0, 2000, hard=True, seed=2)
    bgaps = [
        (relaxed_bernoulli_sample(lg, lam, 2000, seed=2) - bh).abs().mean().item()
        for lam in (1.0, 0.1, 0.01, 0.001)
    ]
    assert all(a > b for a, b in zip(bgaps, bgaps[1:], strict=False)), bgaps
    assert bgaps[-1] < 1e-3


def _rebar_by_hand_bernoulli(param: float, kind: str, seed: int, lam: float, eta: float, f):
    """One REBAR term from Tucker et al. (2017), Eq. 5, with the paper's conditional noise."""
    g = _gen(seed)
    u = torch.rand((1,), generator=g, dtype=DT)
    v = torch.rand((1,), generator=g, dtype=DT)
    x = torch.tensor(param, dtype=DT, requires_grad=True)
    if kind == "logits":
        theta, p = x, torch.sigmoid(x)
    else:
        theta, p = torch.log(x) - torch.log(1 - x), x
    z = theta + torch.log(u) - torch.log(1 - u)
    b = (z > 0).to(DT).detach()
    # u' ~ U(1 - p, 1) when b = 1 and U(0, 1 - p) when b = 0
    v_prime = b * (v * p + (1 - p)) + (1 - b) * v * (1 - p)
    z_tilde = theta + torch.log(v_prime) - torch.log(1 - v_prime)
    f_z, f_zt = f(torch.sigmoid(z / lam)), f(torch.sigmoid(z_tilde / lam))
    log_p = b * torch.log(p) + (1 - b) * torch.log(1 - p)
    (score,) = torch.autograd.grad(log_p.sum(), x, retain_graph=True)
    (d_fz,) = torch.autograd.grad(f_z.sum(), x, retain_graph=True)
    (d_fzt,) = torch.autograd.grad(f_zt.sum(), x)
    term = (f(b) - eta * f_zt.detach()) * score + eta * (d_fz - d_fzt)
    return term.reshape(()), int(b.item())


@pytest.mark.parametrize(("kind", "param"), [("logits", 0.3), ("probs", 0.35)])
def test_rebar_single_sample_replay_bernoulli(kind, param):
    def f(b):
        return (b - 0.45) ** 2 + 0.3 * b

    def dist_fn(t):
        return D.Bernoulli(logits=t) if kind == "logits" else D.Bernoulli(probs=t)

    seen = set()
    for seed in range(8):
        expected, b = _rebar_by_hand_bernoulli(param, kind, seed, 0.6, 0.7, f)
        seen.add(b)
        with pytest.warns(sg.SingleSampleWarning, match="rebar"):
            est = rebar(
                f,
                dist_fn,
                torch.tensor(param, dtype=DT),
                num_samples=1,
                temperature=0.6,
                eta=0.7,
                generator=_gen(seed),
            )
        torch.testing.assert_close(est.per_sample[0], expected, rtol=1e-10, atol=1e-12)
        assert est.evaluations == 3
    assert seen == {0, 1}  # both branches of the conditional sample were replayed


def test_rebar_single_sample_replay_one_hot_categorical():
    """Tucker et al. (2017), Appendix: z~_b = -log(-log v_b), z~_k = -log(-log v_k / p_k - log v_b)."""
    w = torch.tensor([1.0, -2.0, 0.5], dtype=DT)

    def f(x):
        return (x @ w - 0.3) ** 2

    lam, eta = 0.5, 0.8
    seen = set()
    for seed in range(10):
        g = _gen(seed)
        u = torch.rand((1, 3), generator=g, dtype=DT)
        v = torch.rand((1, 3), generator=g, dtype=DT)
        lg = torch.tensor([0.2, -0.4, 0.9], dtype=DT, requires_grad=True)
        p = torch.softmax(lg, -1)
        z = lg - torch.log(-torch.log(u))
        k = int(z.argmax(-1))
        seen.add(k)
        b = F.one_hot(torch.tensor([k]), 3).to(DT)
        zt_others = -torch.log(-torch.log(v) / p - torch.log(v[0, k]))
        z_tilde = torch.where(b > 0, -torch.log(-torch.log(v)), zt_others)
        f_z, f_zt = f(torch.softmax(z / lam, -1)), f(torch.softmax(z_tilde / lam, -1))
        (score,) = torch.autograd.grad(torch.log(p[k]), lg, retain_graph=True)
        (d_fz,) = torch.autograd.grad(f_z.sum(), lg, retain_graph=True)
        (d_fzt,) = torch.autograd.grad(f_zt.sum(), lg)
        expected = (f(b) - eta * f_zt.detach()) * score + eta * (d_fz - d_fzt)

        with pytest.warns(sg.SingleSampleWarning, match="rebar"):
            est = rebar(
                f,
                lambda t: D.OneHotCategorical(logits=t),
                torch.tensor([0.2, -0.4, 0.9], dtype=DT),
                num_samples=1,
                temperature=lam,
                eta=eta,
                generator=_gen(seed),
            )
        torch.testing.assert_close(est.per_sample[0], expected, rtol=1e-9, atol=1e-12)
    assert len(seen) >= 2


def test_gumbel_softmax_per_sample_terms_replayed():
    lg0 = torch.tensor([0.2, -0.4, 0.9], dtype=DT)
    w = torch.tensor([1.0, -2.0, 0.5], dtype=DT)

    def f(x):
        return torch.sin(x @ w)

    est = gumbel_softmax(
        f,
        lambda t: D.OneHotCategorical(logits=t),
        lg0,
        num_samples=3,
        temperature=0.3,
        generator=_gen(8),
    )
    u = torch.rand((3, 3), generator=_gen(8), dtype=DT)
    for i in range(3):
        lg = lg0.clone().requires_grad_(True)
        y = torch.softmax((lg - torch.log(-torch.log(u[i]))) / 0.3, -1)
        (gi,) = torch.autograd.grad(f(y[None])[0], lg)
        torch.testing.assert_close(est.per_sample[i], gi, rtol=1e-10, atol=1e-12)
    assert est.biased and est.method == "gumbel_softmax"


def test_untrained_relax_equals_rebar_sample_by_sample():
    # zero read-out: before any step RELAX's control variate is REBAR's (eta=1, lambda=0.5)
    th = torch.tensor(0.2, dtype=DT)
    a = Relax()(_toy, _bern_logits, th, num_samples=50, seed=9, train=False)
    b = rebar(_toy, _bern_logits, th, num_samples=50, seed=9)
    torch.testing.assert_close(a.per_sample, b.per_sample, rtol=1e-12, atol=1e-14)


# =============================================================================================
# layer 2: unbiased against exact enumeration; the relaxations shown biased
# =============================================================================================
UNBIASED_CASES = [
    c
    for c in CASES
    if c.name
    in (
        "bernoulli-probs",
        "bernoulli-logits",
        "product-of-10-bernoullis",
        "categorical-logits",
        "onehot-categorical-probs",
    )
]


def _relax_trained(f, dist_fn, params, seed):
    relax = Relax(lr=0.03, seed=seed)
    g = _gen(seed)
    for _ in range(30):
        relax(f, dist_fn, params, num_samples=8, generator=g)
    return relax


@pytest.mark.parametrize("method", ["rebar", "relax", "relax-trained"])
@pytest.mark.parametrize("case", UNBIASED_CASES, ids=[c.name for c in UNBIASED_CASES])
def test_unbiased_against_exact(case, method):
    seed = sum(map(ord, case.name + method))
    if method == "rebar":
        est = rebar(case.f, case.dist_fn, case.params, num_samples=N, temperature=0.4, seed=seed)
    else:
        relax = (
            _relax_trained(case.f, case.dist_fn, case.params, seed)
            if method == "relax-trained"
            else Relax(eta=0.5)
        )
        est = relax(case.f, case.dist_fn, case.params, num_samples=N, seed=seed, train=False)
    exact = _flat(case.exact()).to(DT)
    grad, se = _flat(est.grad), _flat(est.stderr)
    z = (grad - exact) / se
    assert bool((z.abs() < 5).all()), f"{case.name} {method}: z = {z.tolist()}"
    assert not est.biased and est.num_samples == N


def test_rebar_unbiased_categorical_batch_and_tuple_params():
    # a [2, 3] batch of categoricals whose logits are a product of two parameter tensors
    def f(k):
        return ((k - 1.3) ** 2).sum(-1) + k[:, 0] * k[:, 1]

    def dist_fn(a, s):
        return D.Categorical(logits=a * s)

    params = (
        torch.tensor([[0.1, 0.5, -0.2], [0.3, -1.0, 0.7]], dtype=DT),
        torch.tensor([1.5, 0.8, 1.0], dtype=DT),
    )
    exact = _flat(sg.exact_gradient(f, dist_fn, params))
    est = rebar(f, dist_fn, params, num_samples=N, seed=12)
    assert isinstance(est.grad, tuple) and est.per_sample[0].shape == (N, 2, 3)
    z = (_flat(est.grad) - exact) / _flat(est.stderr)
    assert bool((z.abs() < 5).all()), z.tolist()


@pytest.mark.parametrize(
    ("name", "run"),
    [
        ("gumbel_softmax", lambda *a, **k: gumbel_softmax(*a, temperature=0.5, **k)),
        ("gumbel_softmax-hard", lambda *a, **k: gumbel_softmax(*a, hard=True, **k)),
        ("straight_through", straight_through),
    ],
)
def test_relaxation_estimators_are_flagged_and_shown_biased(name, run):
    # E[(b - 0.499)^2], b ~ Bernoulli(0.3): exact gradient 1 - 2 * 0.499 = 0.002; the relaxed
    # objectives' gradients are nowhere near it (straight-through: 2 (0.3 - 0.499) = -0.398).
    case = next(c for c in CASES if c.name == "bernoulli-probs")
    est = run(case.f, case.dist_fn, case.params, num_samples=N, seed=13)
    assert est.biased
    z = (est.grad - case.exact()) / est.stderr
    assert abs(float(z)) > 10, f"{name}: z = {float(z)}"
    rb = rebar(case.f, case.dist_fn, case.params, num_samples=N, seed=13)
    assert abs(float((rb.grad - case.exact()) / rb.stderr)) < 5  # same problem, unbiased


def test_straight_through_mean_is_the_known_biased_value():
    case = next(c for c in CASES if c.name == "bernoulli-probs")
    est = straight_through(case.f, case.dist_fn, case.params, num_samples=N, seed=14)
    # E[f'(b)] = 2 (p - 0.499) exactly; the estimate is within 5 stderr of that, not of 0.002
    assert abs(float(est.grad) - 2 * (0.3 - 0.499)) < 5 * float(est.stderr)


def test_relax_training_changes_parameters_and_cuts_variance():
    """The RELAX toy at theta = 0.5 (logit 0), f = (b - 0.499)^2, Adam lr 0.01."""
    th = torch.tensor(0.0, dtype=DT)
    reinforce = sg.score_function(_toy, _bern_logits, th, num_samples=50_000, seed=21)
    relax = Relax(lr=0.01, seed=0)
    before = relax(_toy, _bern_logits, th, num_samples=50_000, seed=22, train=False)
    initial = [p.detach().clone() for p in relax.parameters()]
    g = _gen(23)
    for _ in range(300):
        est = relax(_toy, _bern_logits, th, num_samples=16, generator=g)
    assert relax.steps == 300 and est.info["variance_objective"] == "params"
    changed = [
        not torch.equal(a, b.detach()) for a, b in zip(initial, relax.parameters(), strict=True)
    ]
    assert all(changed)  # log-temperature, eta and every network tensor moved
    after = relax(_toy, _bern_logits, th, num_samples=50_000, seed=22, train=False)
    ratio = float(after.variance / before.variance)
    assert ratio < 0.05, f"variance after/before training = {ratio}"
    assert float(after.variance) < 0.05 * float(reinforce.variance)
    exact = 0.25 * (1 - 2 * 0.499)  # p (1 - p) (f(1) - f(0)) at p = 1/2
    assert abs(float(after.grad) - exact) < 5 * float(after.stderr)


def test_relax_black_box_f_with_network_only_control_variate():
    case = next(c for c in CASES if c.name == "bernoulli-probs")
    relax = Relax(include_f=False, lr=0.03)
    f = sg.black_box(lambda b: (b - 0.499) ** 2)
    for _ in range(20):
        relax(f, case.dist_fn, case.params, num_samples=8, seed=1)
    est = relax(f, case.dist_fn, case.params, num_samples=N, seed=2, train=False)
    assert est.evaluations == N
    assert abs(float((est.grad - case.exact()) / est.stderr)) < 5


def test_relax_variance_objective_falls_back_for_many_distribution_parameters():
    # more than 64 distribution parameters behind a non-identity map: the chain rule runs as
    # batched VJPs without a graph, so the variance minimised is that w.r.t. the logits
    lg = torch.linspace(-1, 1, 80, dtype=DT)
    relax = Relax()
    est = relax(
        lambda b: (b.sum(-1) - 40.0) ** 2 / 80,
        lambda t: D.Independent(D.Bernoulli(logits=2.0 * t), 1),
        lg,
        num_samples=4,
        seed=0,
    )
    assert est.info["variance_objective"] == "distribution parameters"
    assert est.per_sample.shape == (4, 80) and math.isfinite(est.info["variance_loss"])


# =============================================================================================
# layer 3: bad input
# =============================================================================================
BAD_TEMPERATURES = [0.0, -1.0, float("nan"), float("inf")]


@pytest.mark.parametrize("t", BAD_TEMPERATURES)
def test_temperature_must_be_positive(t):
    th = torch.tensor(0.0)
    for call in (
        lambda: gumbel_softmax(_toy, _bern_logits, th, num_samples=2, temperature=t, seed=0),
        lambda: rebar(_toy, _bern_logits, th, num_samples=2, temperature=t, seed=0),
        lambda: concrete_sample(torch.zeros(3), t, 2, seed=0),
        lambda: relaxed_bernoulli_sample(torch.zeros(3), t, 2, seed=0),
        lambda: Relax(temperature=t),
    ):
        with pytest.raises(ValueError, match="temperature"):
            call()


@pytest.mark.parametrize("method", ["gumbel_softmax", "straight_through", "rebar", "relax"])
def test_unsupported_distribution_names_the_supported_ones(method):
    fn = Relax() if method == "relax" else globals()[method]
    with pytest.raises(ValueError, match="Bernoulli, Categorical or OneHotCategorical"):
        fn(
            lambda x: x**2,
            lambda th: D.Normal(th[0], th[1]),
            torch.tensor([0.0, 1.0]),
            num_samples=4,
            seed=0,
        )
    with pytest.raises(ValueError, match="Poisson"):
        fn(lambda x: x**2, lambda r: D.Poisson(r), torch.tensor(2.0), num_samples=4, seed=0)


NOT_DIFFERENTIABLE = [
    sg.black_box(lambda b: (b - 0.499) ** 2),
    lambda b: ((b - 0.499) ** 2).detach(),
    lambda b: torch.as_tensor((b.numpy() - 0.499) ** 2),
]


@pytest.mark.parametrize("f", NOT_DIFFERENTIABLE, ids=["black_box", "detached", "numpy"])
@pytest.mark.parametrize("method", ["gumbel_softmax", "straight_through", "rebar", "relax"])
def test_non_differentiable_f_points_to_score_function_and_disarm(method, f):
    fn = Relax() if method == "relax" else globals()[method]
    with pytest.raises(ValueError, match="score_function") as info:
        fn(f, _bern_logits, torch.tensor(0.2), num_samples=4, seed=0)
    assert "disarm" in str(info.value) and method in str(info.value)


def test_other_bad_arguments():
    th = torch.tensor(0.2)
    with pytest.raises(ValueError, match="num_samples"):
        rebar(_toy, _bern_logits, th, num_samples=0, seed=0)
    with pytest.raises(ValueError, match="eta"):
        rebar(_toy, _bern_logits, th, num_samples=2, eta=float("nan"), seed=0)
    with pytest.raises(ValueError, match="either generator or seed"):
        gumbel_softmax(_toy, _bern_logits, th, num_samples=2, seed=0, generator=_gen(0))
    with pytest.raises(ValueError, match="one value per sample"):
        rebar(lambda b: b[:1], _bern_logits, th, num_samples=2, seed=0)
    with pytest.raises(ValueError, match="include_f=False needs a network"):
        Relax(include_f=False, hidden=0)
    with pytest.raises(TypeError, match="logits"):
        gumbel_max(np.zeros(3), 2, seed=0)
    relax = Relax()
    relax(_toy, _bern_logits, th, num_samples=2, seed=0)
    with pytest.raises(ValueError, match="one Relax per problem"):
        relax(
            lambda b: b.sum(-1),
            lambda t: D.Independent(D.Bernoulli(logits=t), 1),
            torch.zeros(3),
            num_samples=2,
            seed=0,
        )


def test_global_rng_is_left_alone():
    state = torch.get_rng_state()
    th = torch.tensor(0.1, dtype=DT)
    rebar(_toy, _bern_logits, th, num_samples=4, seed=0)
    gumbel_softmax(_toy, _bern_logits, th, num_samples=4, generator=_gen(1))
    Relax()(_toy, _bern_logits, th, num_samples=4, seed=2)
    gumbel_max(torch.zeros(3), 4, seed=3)
    assert torch.equal(torch.get_rng_state(), state)


def test_same_seed_same_numbers():
    case = next(c for c in CASES if c.name == "product-of-10-bernoullis")
    a = rebar(case.f, case.dist_fn, case.params, num_samples=64, seed=5)
    b = rebar(case.f, case.dist_fn, case.params, num_samples=64, seed=5)
    assert torch.equal(a.per_sample, b.per_sample)
    r1, r2 = Relax(seed=4), Relax(seed=4)
    for _ in range(3):
        e1 = r1(case.f, case.dist_fn, case.params, num_samples=8, seed=6)
        e2 = r2(case.f, case.dist_fn, case.params, num_samples=8, seed=6)
    assert torch.equal(e1.per_sample, e2.per_sample)
