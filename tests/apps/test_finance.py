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
from stochgrad.apps.finance import (
    GREEKS,
    Heston,
    Market,
    Option,
    barrier_survival,
    estimate_greeks,
    gbm_paths,
    heston_paths,
    lr_weights,
    payoff,
    quantlib_reference,
)
from stochgrad.checkpoint import CheckpointError, CheckpointMismatch

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
    w = lr_weights(z, mk, T)
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
