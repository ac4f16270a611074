"""Tests of ``sg.compare``: the rows, their figures, bias z-scores, error rows and the rich table."""

from __future__ import annotations

import math

import pytest
import torch
from rich.console import Console
from torch.distributions import Bernoulli, MultivariateNormal, Normal

import stochgrad as sg
from stochgrad.diagnostics import DEFAULT_METHODS

F64 = torch.float64
MU, SIGMA, A = 0.5, 1.0, 2.0


def _normal(th):
    return Normal(th[0], th[1])


def _quadratic(x):
    return (x - A) ** 2


THETA = torch.tensor([MU, SIGMA], dtype=F64)
EXACT = [2 * (MU - A), 2 * SIGMA]  # E[(x - a)^2] = (mu - a)^2 + s^2


def _render(cmp) -> str:
    console = Console(record=True, width=200)
    console.print(cmp.table())
    return console.export_text()


@pytest.fixture(scope="module")
def normal_cmp():
    methods = [*DEFAULT_METHODS, "score_function:delta", "score_function:mean", "auto"]
    return sg.compare(_quadratic, _normal, THETA, methods=methods, num_samples=20_000, seed=0)


# ---------------------------------------------------------------------------------------------
# rows and their figures
# ---------------------------------------------------------------------------------------------
def test_rows_in_order_with_consistent_figures(normal_cmp):
    cmp = normal_cmp
    assert [r.method for r in cmp.rows] == [
        *DEFAULT_METHODS,
        "score_function:delta",
        "score_function:mean",
        "auto",
    ]
    assert cmp.num_samples == 20_000
    assert cmp.exact == pytest.approx(EXACT, abs=1e-8)
    for r in cmp.rows:
        assert r.error is None, r
        assert len(r.grad) == len(r.stderr) == len(r.variance) == 2
        assert r.seconds > 0
        assert r.seconds_per_sample == pytest.approx(r.seconds / 20_000, rel=1e-12)
        for g, se, v, w, snr in zip(
            r.grad, r.stderr, r.variance, r.work_normalized_variance, r.snr, strict=True
        ):
            assert v > 0 and se > 0
            if r.method.endswith((":loo", ":optimal")):  # plus an O(1/n^2) second-order term
                assert se >= math.sqrt(v / 20_000)
                assert se == pytest.approx(math.sqrt(v / 20_000), rel=1e-3)
            else:
                assert se == pytest.approx(math.sqrt(v / 20_000), rel=1e-9)
            assert w == pytest.approx(v * r.seconds_per_sample, rel=1e-9)
            assert snr == pytest.approx(abs(g) / math.sqrt(v), rel=1e-9)
        for g, se, z, ex in zip(r.grad, r.stderr, r.bias_z, EXACT, strict=True):
            assert z == pytest.approx((g - ex) / se, rel=1e-6, abs=1e-9)
    assert cmp.row("measure_valued").evaluations == 2 * 2 * 20_000  # 2 evaluations per param
    assert cmp.row("pathwise").evaluations == 20_000
    assert cmp.row("score_function:mean").biased
    assert not cmp.row("score_function:loo").biased


def test_bias_z_small_for_unbiased_methods(normal_cmp):
    for r in normal_cmp.rows:
        if not r.biased:
            assert all(abs(z) < 5 for z in r.bias_z), (r.method, r.bias_z)


def test_given_exact_tensor_is_used():
    # A (wrong) truth passed in is what the z-scores are measured against.
    truth = torch.tensor([123.0, -45.0], dtype=F64)
    cmp = sg.compare(
        _quadratic,
        _normal,
        THETA,
        methods=["score_function:mean"],
        num_samples=500,
        seed=1,
        exact=truth,
    )
    r = cmp.row("score_function:mean")
    assert r.biased
    assert cmp.exact == truth.tolist()
    assert r.bias_z == pytest.approx(
        [(g - t) / s for g, t, s in zip(r.grad, truth.tolist(), r.stderr, strict=True)]
    )
    assert r.bias_z[0] < -50 and r.bias_z[1] > 50


def test_figures_are_the_estimators_own():
    # compare draws from one stream in order: a 64-sample warm-up, then the timed run, per method.
    n = 300
    cmp = sg.compare(
        _quadratic,
        _normal,
        THETA,
        methods=["score_function", "pathwise", "score_function:loo"],
        num_samples=n,
        seed=5,
    )
    g = torch.Generator().manual_seed(5)
    expected = []
    for fn, kw in [
        (sg.score_function, {}),
        (sg.pathwise, {}),
        (sg.score_function, {"baseline": "loo"}),
    ]:
        fn(_quadratic, _normal, THETA, num_samples=64, generator=g, **kw)
        expected.append(fn(_quadratic, _normal, THETA, num_samples=n, generator=g, **kw))
    for r, est in zip(cmp.rows, expected, strict=True):
        assert r.grad == est.grad.tolist()
        assert r.variance == est.variance.tolist()


def test_exact_none_gives_no_bias_z():
    cmp = sg.compare(
        _quadratic,
        _normal,
        THETA,
        methods=["score_function", "pathwise"],
        num_samples=500,
        seed=0,
        exact=None,
    )
    assert cmp.exact is None
    assert all(r.bias_z is None for r in cmp.rows)
    assert all(r.grad for r in cmp.rows)
    assert "bias z (no exact)" in _render(cmp)


def test_exact_auto_without_reference_gives_no_bias_z():
    loc = torch.zeros(2, dtype=F64)
    cmp = sg.compare(
        lambda x: (x**2).sum(-1),
        lambda m: MultivariateNormal(m, torch.eye(2, dtype=F64)),
        loc,
        methods=["pathwise"],
        num_samples=500,
        seed=0,
    )
    assert cmp.exact is None
    assert cmp.rows[0].bias_z is None and cmp.rows[0].error is None


def test_tuple_params_flattened():
    mu = torch.tensor(MU, dtype=F64)
    sigma = torch.tensor(SIGMA, dtype=F64)
    cmp = sg.compare(
        _quadratic,
        lambda m, s: Normal(m, s),
        (mu, sigma),
        methods=["pathwise"],
        num_samples=5000,
        seed=0,
    )
    assert cmp.exact == pytest.approx(EXACT, abs=1e-8)
    r = cmp.rows[0]
    assert len(r.grad) == 2
    assert all(abs(z) < 5 for z in r.bias_z)


# ---------------------------------------------------------------------------------------------
# methods that do not apply, custom methods, bad input
# ---------------------------------------------------------------------------------------------
def test_method_that_does_not_apply_gets_an_error_row():
    cmp = sg.compare(
        lambda b: (b - 0.25) ** 2,
        Bernoulli,
        torch.tensor(0.3, dtype=F64),
        methods=["score_function:loo", "pathwise"],
        num_samples=2000,
        seed=0,
    )
    ok, bad = cmp.rows
    assert ok.error is None and ok.grad
    assert abs(ok.bias_z[0]) < 5  # exact: d/dp E = (1 - 0.25)^2 - 0.25^2 = 0.5
    assert cmp.exact == pytest.approx([0.5], abs=1e-12)
    assert bad.method == "pathwise"
    assert bad.error and "rsample" in bad.error
    assert bad.grad == [] and bad.bias_z is None
    text = _render(cmp)
    assert "pathwise" in text and "rsample" in text


def test_label_callable_methods():
    calls = []

    def mine(f, dist_fn, params, *, num_samples, generator=None):
        calls.append(num_samples)
        return sg.score_function(
            f, dist_fn, params, num_samples=num_samples, generator=generator, baseline="optimal"
        )

    def broken(f, dist_fn, params, *, num_samples, generator=None):
        raise ValueError("not today")

    cmp = sg.compare(
        _quadratic,
        _normal,
        THETA,
        methods=[("mine", mine), ("broken", broken)],
        num_samples=4000,
        seed=0,
    )
    assert [r.method for r in cmp.rows] == ["mine", "broken"]
    assert calls == [64, 4000]  # warm-up, then the timed run
    assert all(abs(z) < 5 for z in cmp.row("mine").bias_z)
    assert cmp.row("broken").error == "not today"


def test_unknown_method_raises():
    with pytest.raises(ValueError, match="methods") as info:
        sg.compare(_quadratic, _normal, THETA, methods=["reinforce"], num_samples=10)
    assert "score_function" in str(info.value)
    with pytest.raises(ValueError, match="option"):
        sg.compare(_quadratic, _normal, THETA, methods=["pathwise:loo"], num_samples=10)
    with pytest.raises(TypeError, match="methods"):
        sg.compare(_quadratic, _normal, THETA, methods=[42], num_samples=10)
    with pytest.raises(ValueError, match="methods"):
        sg.compare(_quadratic, _normal, THETA, methods=[], num_samples=10)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="exact"):
        sg.compare(_quadratic, _normal, THETA, methods=["pathwise"], num_samples=10, exact="yes")
    with pytest.raises(ValueError, match="num_samples"):
        sg.compare(_quadratic, _normal, THETA, methods=["pathwise"], num_samples=0)
    with pytest.raises(ValueError, match="generator or seed"):
        sg.compare(
            _quadratic,
            _normal,
            THETA,
            methods=["pathwise"],
            num_samples=10,
            seed=1,
            generator=torch.Generator(),
        )


def test_row_lookup_and_dicts(normal_cmp):
    with pytest.raises(KeyError):
        normal_cmp.row("nope")
    dicts = normal_cmp.as_dicts()
    assert [d["method"] for d in dicts] == [r.method for r in normal_cmp.rows]
    assert set(dicts[0]) >= {
        "method",
        "grad",
        "stderr",
        "variance",
        "seconds_per_sample",
        "work_normalized_variance",
        "snr",
        "bias_z",
        "evaluations",
        "biased",
        "error",
    }


# ---------------------------------------------------------------------------------------------
# the table
# ---------------------------------------------------------------------------------------------
def test_table_renders_headers_and_rows(normal_cmp):
    text = _render(normal_cmp)
    for header in (
        "method",
        "grad",
        "stderr",
        "variance",
        "s/sample",
        "work-norm var",
        "SNR",
        "bias z",
    ):
        assert header in text, header
    assert "bias z (no exact)" not in text
    assert "Estimator comparison" in text
    for r in normal_cmp.rows:
        assert r.method in text
    assert "score_function:mean (biased)" in text
    # The pathwise gradient appears as printed with 4 significant digits.
    assert format(normal_cmp.row("pathwise").grad[0], ".4g") in text


def test_error_text_with_brackets_renders_verbatim():
    def broken(f, dist_fn, params, *, num_samples, generator=None):
        raise ValueError("x must have shape [n, d]; got [batch] [/n]")

    cmp = sg.compare(_quadratic, _normal, THETA, methods=[("broken", broken)], num_samples=10)
    assert "[n, d]" in _render(cmp)


def test_bias_z_finite_for_an_exact_zero_variance_estimator():
    cmp = sg.compare(
        lambda b: b,
        Bernoulli,
        torch.tensor(0.3, dtype=F64),
        methods=["measure_valued"],
        num_samples=1000,
        seed=0,
    )
    r = cmp.rows[0]
    assert r.variance == [0.0]
    assert r.grad == pytest.approx(cmp.exact, abs=1e-12)  # f(1) - f(0) = 1, exactly right
    assert all(math.isfinite(z) and abs(z) < 5 for z in r.bias_z), r.bias_z
