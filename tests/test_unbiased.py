"""Every estimator is unbiased on the registry of test cases: |estimate - exact| < 5 stderr."""

from __future__ import annotations

import pytest
import torch

import stochgrad as sg
from tests.cases import CASES

NUM_SAMPLES = 20_000


def _run(method: str, case, seed: int):
    name, _, option = method.partition(":")
    kwargs = {}
    if option == "delta":
        kwargs["control_variate"] = "delta"
    elif option:
        kwargs["baseline"] = option
    fn = sg.GENERAL_ESTIMATORS[name]
    return fn(case.f, case.dist_fn, case.params, num_samples=NUM_SAMPLES, seed=seed, **kwargs)


def _flat(v):
    if isinstance(v, tuple):
        return torch.cat([t.reshape(-1) for t in v])
    return v.reshape(-1)


PAIRS = [(c, m) for c in CASES for m in c.methods]


@pytest.mark.parametrize(("case", "method"), PAIRS, ids=[f"{c.name}-{m}" for c, m in PAIRS])
def test_unbiased(case, method):
    seed = sum(map(ord, case.name + method))
    est = _run(method, case, seed)
    exact = _flat(case.exact()).to(torch.float64)
    grad, se = _flat(est.grad).to(torch.float64), _flat(est.stderr).to(torch.float64)
    # A zero-variance estimator (e.g. measure-valued on a Bernoulli) must be exact to rounding.
    tol = 5 * se + 1e-10 * (1 + exact.abs())
    if ":" in method:
        # Coefficients estimated leave-one-out make the terms weakly dependent: the reported
        # stderr is the first-order one, and when the baseline or control variate is (nearly)
        # perfect that first order vanishes and O(1/n) terms remain, of the size of the plain
        # estimator's single-sample deviation over n. Allow 5 of those as well.
        plain = _run("score_function", case, seed)
        tol = tol + 5 * _flat(plain.variance).to(torch.float64).sqrt() / NUM_SAMPLES
    z = (grad - exact) / se
    assert bool(((grad - exact).abs() < tol).all()), f"{case.name} {method}: z = {z.tolist()}"
    assert est.num_samples == NUM_SAMPLES
    assert not est.biased


def test_exact_enumeration_agrees_with_closed_form_for_registry_bernoulli():
    case = next(c for c in CASES if c.name == "bernoulli-probs")
    exact = sg.exact_gradient(case.f, case.dist_fn, case.params)
    torch.testing.assert_close(exact, case.exact(), rtol=1e-12, atol=1e-12)
