"""Barrier options up and down, out and in, calls and puts; one's own payoff of the path.

(1) seeded cases replayed against the formulas (the bridge's survival product below and above,
in-out parity on every path, the per-path Greek terms by finite differences of a numpy
payoff); (2) many paths against QuantLib's ``AnalyticBarrierEngine`` for the eight barrier
kinds, the Broadie-Glasserman-Kou corrected barrier for discrete monitoring, and a payoff of
one's own against QuantLib's geometric-average engine; (3) bad input.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stochgrad.apps.finance import (
    Market,
    Option,
    PathPayoff,
    barrier_survival,
    estimate_greeks,
    gbm_paths,
    payoff,
    quantlib_reference,
)
from stochgrad.apps.finance.reference import BGK_BETA, bgk_barrier
from stochgrad.apps.finance.terms import check_path_payoff, chunk_terms

ql = pytest.importorskip("QuantLib")

pytestmark = pytest.mark.usefixtures("one_thread")

#: (direction, knock, kind, barrier) with strike 100 and spot 100: the eight barrier options
COMBOS = [
    ("up", "out", "call", 120.0),
    ("up", "in", "call", 120.0),
    ("up", "out", "put", 110.0),
    ("up", "in", "put", 110.0),
    ("down", "out", "call", 90.0),
    ("down", "in", "call", 90.0),
    ("down", "out", "put", 85.0),
    ("down", "in", "put", 85.0),
]
IDS = [f"{d}-{k}-{c}" for d, k, c, _ in COMBOS]


def _barrier(direction: str, knock: str, kind: str, h: float, **kw) -> Option:
    return Option("barrier", 100.0, barrier=h, direction=direction, knock=knock, kind=kind, **kw)


def _np_payoff(s0, st, direction, knock, kind, h, k, vol, dt):
    """The one-step barrier payoff written out in numpy (the bridge's survival formula)."""
    vanilla = np.maximum(st - k, 0.0) if kind == "call" else np.maximum(k - st, 0.0)
    alive = (s0 < h) & (st < h) if direction == "up" else (s0 > h) & (st > h)
    cross = np.exp(-2.0 * np.log(h / s0) * np.log(h / st) / (vol**2 * dt))
    survive = np.where(alive, 1.0 - cross, 0.0)
    return vanilla * survive if knock == "out" else vanilla * (1.0 - survive)


# ---------------------------------------------------------------------------------------------
# (1) seeded cases replayed against the formulas
# ---------------------------------------------------------------------------------------------


def test_down_barrier_survival_replays_the_product_formula() -> None:
    paths = torch.tensor(
        [[95.0, 90.0, 99.0], [95.0, 79.0, 99.0], [95.0, 90.0, 99.0]], dtype=torch.float64
    )
    spot = torch.tensor([100.0, 100.0, 79.5], dtype=torch.float64)
    H, vol, dt = 80.0, 0.3, 0.1
    p = barrier_survival(paths, spot, H, vol, dt, direction="down")
    pts = [100.0, 95.0, 90.0, 99.0]
    expected = math.prod(
        1 - math.exp(-2 * math.log(a / H) * math.log(b / H) / (vol**2 * dt))
        for a, b in zip(pts[:-1], pts[1:], strict=True)
    )
    assert float(p[0]) == pytest.approx(expected, rel=1e-12)
    assert float(p[1]) == 0.0  # below the barrier on a date
    assert float(p[2]) == 0.0  # the spot itself is below it
    # the same paths seen from an up barrier above them all: the same formula, other side
    up = barrier_survival(paths[:1], 100.0, 120.0, vol, dt, direction="up")
    expected_up = math.prod(
        1 - math.exp(-2 * math.log(120 / a) * math.log(120 / b) / (vol**2 * dt))
        for a, b in zip(pts[:-1], pts[1:], strict=True)
    )
    assert float(up[0]) == pytest.approx(expected_up, rel=1e-12)


@pytest.mark.parametrize(("direction", "knock", "kind", "h"), COMBOS, ids=IDS)
def test_barrier_payoffs_replay_the_formula_and_in_out_parity_holds_per_path(
    direction: str, knock: str, kind: str, h: float
) -> None:
    mk = Market(100.0, 0.25, 0.03, 1.0, dividend=0.01)
    S, _ = gbm_paths(mk, 2000, 4, seed=3)
    dt = mk.maturity / 4
    last = S[:, -1]
    vanilla = torch.relu(last - 100.0) if kind == "call" else torch.relu(100.0 - last)
    # the bridge: vanilla times the product of the per-interval survival probabilities
    surv = np.ones(S.shape[0])
    prev = np.full(S.shape[0], 100.0)
    for i in range(S.shape[1]):
        cur = S[:, i].numpy()
        on_side = (prev < h) & (cur < h) if direction == "up" else (prev > h) & (cur > h)
        cross = np.exp(-2.0 * np.log(h / prev) * np.log(h / cur) / (mk.vol**2 * dt))
        surv *= np.where(on_side, 1.0 - cross, 0.0)
        prev = cur
    opt = _barrier(direction, knock, kind, h, steps=4)
    got = payoff(opt, S, mk.spot, mk.vol, dt)
    out = vanilla.numpy() * surv
    want = out if knock == "out" else vanilla.numpy() - out
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-12, atol=1e-12)
    # in-out parity, exactly on every path (bridge and discrete)
    for monitoring in ("bridge", "discrete"):
        o = payoff(_barrier(direction, "out", kind, h, steps=4, monitoring=monitoring), S, 100.0,
                   mk.vol, dt)  # fmt: skip
        i = payoff(_barrier(direction, "in", kind, h, steps=4, monitoring=monitoring), S, 100.0,
                   mk.vol, dt)  # fmt: skip
        assert torch.equal(i, vanilla - o), monitoring
        torch.testing.assert_close(i + o, vanilla, rtol=0.0, atol=1e-12)
    # discrete monitoring: knocked on a date at or beyond the barrier, nothing in between
    beyond = (S >= h) if direction == "up" else (S <= h)
    touched = beyond.any(dim=1).to(S.dtype)
    disc = payoff(_barrier(direction, knock, kind, h, steps=4, monitoring="discrete"), S, 100.0)
    want = vanilla * (1 - touched) if knock == "out" else vanilla * touched
    assert torch.equal(disc, want)
    assert 0 < int(touched.sum()) < S.shape[0]  # both kinds of paths were there


@pytest.mark.parametrize(("direction", "knock", "kind", "h"), COMBOS, ids=IDS)
def test_barrier_greeks_replay_the_per_path_terms(
    direction: str, knock: str, kind: str, h: float
) -> None:
    """One step: price, pathwise and likelihood-ratio delta and vega of 40 paths against the
    numpy payoff, differentiated by central differences at fixed normals (pathwise) or at
    fixed S_T with the lognormal score (likelihood ratio, plus the explicit S0 and vol terms)."""
    s0, vol, r, q, T, K = 100.0, 0.25, 0.04, 0.01, 1.0, 100.0
    mk = Market(s0, vol, r, T, dividend=q)
    n = 40
    res = estimate_greeks(_barrier(direction, knock, kind, h), mk, n, seed=21,
                          greeks=["delta", "vega"])  # fmt: skip
    z = np.random.default_rng(21).standard_normal((n, 1))[:, 0]  # seed= draws numpy normals
    disc = math.exp(-r * T)

    def st(s, v):
        return s * np.exp((r - q - 0.5 * v * v) * T + v * math.sqrt(T) * z)

    def f(s, v, end):
        return _np_payoff(s, end, direction, knock, kind, h, K, v, T)

    e = 1e-5
    price = f(s0, vol, st(s0, vol))
    terms = {
        ("price", "mc"): disc * price,
        ("delta", "pathwise"): disc
        * (f(s0 + e, vol, st(s0 + e, vol)) - f(s0 - e, vol, st(s0 - e, vol)))
        / (2 * e),
        ("vega", "pathwise"): disc
        * (f(s0, vol + e, st(s0, vol + e)) - f(s0, vol - e, st(s0, vol - e)))
        / (2 * e),
        ("delta", "lr"): disc
        * (
            price * z / (s0 * vol * math.sqrt(T))
            + (f(s0 + e, vol, st(s0, vol)) - f(s0 - e, vol, st(s0, vol))) / (2 * e)
        ),
        ("vega", "lr"): disc
        * (
            price * ((z**2 - 1) / vol - z * math.sqrt(T))
            + (f(s0, vol + e, st(s0, vol)) - f(s0, vol - e, st(s0, vol))) / (2 * e)
        ),
    }
    assert len(res.estimates) == len(terms)
    for (g, m), t in terms.items():
        est = res.get(g, m)
        assert est.value == pytest.approx(t.mean(), rel=1e-6, abs=1e-8), (g, m)
        assert est.stderr == pytest.approx(t.std(ddof=1) / math.sqrt(n), rel=1e-5, abs=1e-8)
    assert np.count_nonzero(price) >= 3  # the paths exercise the payoff


@pytest.mark.parametrize("monitoring", ["bridge", "discrete"])
def test_in_plus_out_is_the_vanilla_for_every_greek(monitoring: str) -> None:
    """On the same paths every per-path term of the in and the out sums to the vanilla's."""
    mk = Market(100.0, 0.2, 0.05, 1.0, dividend=0.02)
    kw = dict(steps=3, monitoring=monitoring)
    runs = {
        k: estimate_greeks(_barrier("down", k, "put", 90.0, **kw), mk, 3000, seed=8)
        for k in ("in", "out")
    }
    vanilla = estimate_greeks(PathPayoff(lambda x: torch.relu(100.0 - x[:, -1]), steps=3),
                              mk, 3000, seed=8)  # fmt: skip
    keys = [(e.greek, e.method) for e in runs["out"].estimates]
    assert keys == [(e.greek, e.method) for e in runs["in"].estimates]
    assert len(keys) == (9 if monitoring == "bridge" else 5)
    for g, m in keys:
        total = runs["in"].get(g, m).value + runs["out"].get(g, m).value
        want = vanilla.get(g, m).value
        assert total == pytest.approx(want, rel=1e-9, abs=1e-12), (g, m)


def test_a_payoff_of_ones_own_is_the_built_in_one_when_it_is_the_same_function() -> None:
    mk = Market(100.0, 0.2, 0.05, 1.0)
    mine = PathPayoff(lambda x: torch.relu(x[:, 1:].mean(dim=1) - 100.0), steps=6, name="avg")
    a = estimate_greeks(mine, mk, 2000, seed=4)
    b = estimate_greeks(Option("asian", 100.0, steps=6), mk, 2000, seed=4)
    assert [(e.greek, e.method, e.value, e.stderr) for e in a.estimates] == [
        (e.greek, e.method, e.value, e.stderr) for e in b.estimates
    ]


# ---------------------------------------------------------------------------------------------
# (2) many paths against QuantLib, tolerance from the standard error
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("direction", "knock", "kind", "h"), COMBOS, ids=IDS)
def test_every_barrier_greek_within_4_stderr_of_quantlib(
    direction: str, knock: str, kind: str, h: float
) -> None:
    mk = Market(100.0, 0.2, 0.05, 1.0, dividend=0.02)
    opt = _barrier(direction, knock, kind, h, steps=2)
    ref = quantlib_reference(opt, mk)
    res = estimate_greeks(opt, mk, 40_000, seed=7, reference=ref)
    assert len(res.estimates) == 9  # price; delta, vega, rho by lr and pw; gamma by lr and mixed
    for e in res.estimates:
        assert e.reference is not None and e.stderr > 0
        assert abs(e.z) < 4.0, (e.greek, e.method, e.value, e.reference, e.stderr)


@pytest.mark.parametrize(
    ("direction", "knock", "kind", "h"),
    [COMBOS[0], COMBOS[3], COMBOS[4], COMBOS[7]],
    ids=[IDS[0], IDS[3], IDS[4], IDS[7]],
)
def test_discrete_monitoring_against_the_bgk_continuity_correction(
    direction: str, knock: str, kind: str, h: float
) -> None:
    """50 dates against QuantLib's continuous price at the shifted barrier H e^{+-beta sigma
    sqrt(dt)} (an approximation to o(1/sqrt m): 5 standard errors of 40,000 paths)."""
    mk = Market(100.0, 0.2, 0.05, 1.0, dividend=0.02)
    opt = _barrier(direction, knock, kind, h, steps=50, monitoring="discrete")
    ref = quantlib_reference(opt, mk, continuity_correction=True)
    res = estimate_greeks(opt, mk, 40_000, greeks=["delta", "vega"], seed=9, reference=ref)
    assert [(e.greek, e.method) for e in res.estimates] == [
        ("price", "mc"), ("delta", "lr"), ("vega", "lr")
    ]  # fmt: skip
    for e in res.estimates:
        assert abs(e.z) < 5.0, (e.greek, e.method, e.value, e.reference, e.stderr)


def test_bgk_barrier_is_the_shifted_level_and_moves_with_the_volatility() -> None:
    mk = Market(100.0, 0.3, 0.05, 0.5)
    up = _barrier("up", "out", "call", 120.0, steps=10, monitoring="discrete")
    down = _barrier("down", "in", "put", 80.0, steps=10, monitoring="discrete")
    shift = BGK_BETA * 0.3 * math.sqrt(0.05)
    assert bgk_barrier(up, mk) == pytest.approx(120.0 * math.exp(shift), rel=1e-14)
    assert bgk_barrier(down, mk) == pytest.approx(80.0 * math.exp(-shift), rel=1e-14)
    zeta = pytest.importorskip("scipy.special").zeta
    assert BGK_BETA == pytest.approx(-zeta(0.5) / math.sqrt(2 * math.pi), rel=1e-12)
    # vega of the corrected price includes the barrier's own move with sigma
    shifted = _barrier("up", "out", "call", bgk_barrier(up, mk), steps=10)
    plain = quantlib_reference(shifted, mk)
    corrected = quantlib_reference(up, mk, continuity_correction=True)
    assert corrected["price"] == pytest.approx(plain["price"], rel=1e-10)
    assert corrected["delta"] == pytest.approx(plain["delta"], rel=1e-6)
    assert abs(corrected["vega"] - plain["vega"]) > 0.1


def test_a_spot_beyond_the_barrier_gives_zero_or_the_vanilla() -> None:
    mk = Market(100.0, 0.2, 0.05, 1.0)
    out = quantlib_reference(_barrier("down", "out", "call", 105.0), mk)
    assert out == dict.fromkeys(("price", "delta", "gamma", "vega", "rho"), 0.0)
    knocked_in = quantlib_reference(_barrier("down", "in", "call", 105.0), mk)
    call = quantlib_reference(Option("call", 100.0), mk)
    assert knocked_in == pytest.approx(call, rel=1e-12)
    S, _ = gbm_paths(mk, 50, 3, seed=0)
    assert torch.equal(payoff(_barrier("down", "out", "call", 105.0, steps=3), S, 100.0, 0.2, 1 / 3),
                       torch.zeros(50, dtype=S.dtype))  # fmt: skip


def test_a_payoff_on_some_dates_against_quantlibs_geometric_average() -> None:
    """One's own payoff: the geometric average of months 3, 6, 9 and 12 of a 12-date path is
    QuantLib's discrete geometric-average Asian on 4 quarterly dates; every Greek by every
    method within 4 standard errors."""
    mk = Market(100.0, 0.25, 0.04, 1.0, dividend=0.01)
    quarterly = PathPayoff(
        lambda x: torch.relu(torch.log(x[:, 3::3]).mean(dim=1).exp() - 95.0),
        steps=12,
        name="quarterly geometric",
    )
    check_path_payoff(quarterly, mk)
    ref = quantlib_reference(Option("geometric", 95.0, steps=4), mk)
    res = estimate_greeks(quarterly, mk, 40_000, seed=12, reference=ref)
    assert len(res.estimates) == 9
    for e in res.estimates:
        assert abs(e.z) < 4.0, (e.greek, e.method, e.value, e.reference, e.stderr)


# ---------------------------------------------------------------------------------------------
# (3) bad input
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda: _barrier("sideways", "out", "call", 120.0), ValueError, "direction"),
        (lambda: _barrier("up", "through", "call", 120.0), ValueError, "knock"),
        (lambda: _barrier("up", "out", "straddle", 120.0), ValueError, "kind"),
        (lambda: Option("asian", 100.0, kind="put"), ValueError, "kind applies to payoff='barrier'"),
        (lambda: Option("call", 100.0, direction="down"), ValueError, "direction applies"),
        (lambda: _barrier("up", "out", "call", 100.0), ValueError, "barrier must exceed strike"),
        (lambda: _barrier("down", "out", "put", 100.0), ValueError, "barrier must be below strike"),
        (lambda: _barrier("down", "in", "put", float("nan")), ValueError, "barrier"),
        (lambda: barrier_survival(torch.ones(1, 1), 1.0, 2.0, 0.2, 1.0, "left"), ValueError,
         "direction"),
        (lambda: bgk_barrier(Option("call", 100.0), Market(100.0, 0.2, 0.0, 1.0)), ValueError,
         "barrier option"),
        (lambda: PathPayoff(lambda x: x[:, -1], reads_spot="yes"), TypeError, "reads_spot"),
        (lambda: PathPayoff(lambda x: x[:, -1], pathwise_ok=1), TypeError, "pathwise_ok"),
    ],
    ids=["direction", "knock", "kind", "kind-on-asian", "direction-on-call", "worthless-up-out",
         "worthless-down-out", "nan-barrier", "survival-direction", "bgk-not-barrier",
         "reads-spot-not-bool", "pathwise-ok-not-bool"],
)  # fmt: skip
def test_bad_barriers_and_flags_raise_naming_the_argument(make, error, match) -> None:
    with pytest.raises(error, match=match):
        make()


def test_knock_ins_that_always_knock_in_are_allowed_and_are_the_vanilla() -> None:
    """An up-and-in call with H <= K (a down-and-in put with H >= K) pays only on paths that
    crossed H: it is the vanilla option, by QuantLib's barrier engine too."""
    mk = Market(100.0, 0.2, 0.05, 1.0)
    for kind, h, k in (("call", 105.0, 110.0), ("put", 95.0, 90.0)):
        direction = "up" if kind == "call" else "down"
        opt = Option("barrier", k, barrier=h, direction=direction, knock="in", kind=kind)
        ref = quantlib_reference(opt, mk)
        vanilla = quantlib_reference(Option(kind, k), mk)
        assert ref["price"] == pytest.approx(vanilla["price"], rel=1e-9)
        S, _ = gbm_paths(mk, 500, 4, seed=2)
        vanilla_paths = payoff(Option(kind, k), S, 100.0)
        paths = payoff(Option(**{**opt.__dict__, "monitoring": "discrete", "steps": 4}), S, 100.0)
        assert torch.equal(paths, vanilla_paths)


@pytest.mark.parametrize(
    ("fn", "kw", "error", "match"),
    [
        (lambda x: x[:, -1:], {}, ValueError, r"one value per path, shape \[64\]"),
        (lambda x: torch.log(x[:, -1] - 100.0), {}, ValueError, "NaN or infinite values on"),
        (lambda x: x[:, -1] > 100.0, {}, TypeError, "floating-point"),
        (lambda x: x[:, -1].tolist(), {}, TypeError, "must return a torch tensor"),
        (lambda x: x[:, 5], {}, ValueError, "failed on paths of shape .64, 2.: IndexError"),
        (lambda x: (x[:, -1] > 100.0).double(), {}, ValueError, "does not depend differentiably"),
        (lambda x: torch.from_numpy(x.detach().numpy()[:, -1] * 1.0) + 0 * x[:, -1], {},
         ValueError, "cannot be differentiated by torch"),
        (lambda x: torch.relu(x[:, -1] - x[:, 0]), {}, ValueError, "declare reads_spot=True"),
    ],
    ids=["shape", "nan", "bool", "list", "raises", "jumps", "numpy", "reads-spot"],
)  # fmt: skip
def test_check_path_payoff_refuses_a_payoff_that_would_fail_or_mislead(fn, kw, error, match):
    mk = Market(100.0, 0.2, 0.05, 1.0)
    with pytest.raises(error, match=match):
        check_path_payoff(PathPayoff(fn, name="mine", **kw), mk)


def test_a_payoff_that_jumps_passes_when_declared_and_the_check_returns_its_values() -> None:
    mk = Market(100.0, 0.2, 0.05, 1.0)
    digital = PathPayoff(lambda x: (x[:, -1] > 100.0).double(), pathwise_ok=False)
    values = check_path_payoff(digital, mk, num_paths=10, seed=1)
    assert values.shape == (10,) and set(values.tolist()) <= {0.0, 1.0}
    spot = PathPayoff(lambda x: torch.relu(x[:, -1] - x[:, 0]), reads_spot=True)
    assert check_path_payoff(spot, mk).shape == (64,)
    with pytest.raises(TypeError, match="PathPayoff"):
        check_path_payoff(Option("call", 100.0), mk)


def test_estimates_refuse_a_payoff_of_the_wrong_shape_naming_it() -> None:
    mk = Market(100.0, 0.2, 0.05, 1.0)
    z = torch.randn(5, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    bad = PathPayoff(lambda x: x[:, -1:] - 100.0, name="column")
    with pytest.raises(ValueError, match="payoff 'column' must return one value per path"):
        chunk_terms(bad, mk, None, z, {"delta": ["lr"]})
    with pytest.raises(ValueError, match="payoff 'column'"):
        estimate_greeks(bad, mk, 10, greeks=["delta"], methods=["pathwise"], seed=0)


def test_option_dict_leaves_out_the_default_barrier_shape() -> None:
    """Checkpoints of runs started before direction/knock/kind existed still match."""
    from stochgrad.apps.finance import Option
    from stochgrad.apps.finance.greeks import option_dict

    old = option_dict(Option("barrier", 100.0, barrier=120.0))
    assert not {"direction", "knock", "kind"} & set(old)
    new = option_dict(Option("barrier", 100.0, barrier=80.0, direction="down", knock="in"))
    assert new["direction"] == "down" and new["knock"] == "in" and "kind" not in new
