"""Names that moved keep working for one release, with a DeprecationWarning; clear names."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import stochgrad as sg


def test_estimate_is_the_function_and_its_old_module_still_imports():
    assert callable(sg.estimate) and sg.estimate.__module__ == "stochgrad.estimators.auto"
    with pytest.warns(DeprecationWarning, match="stochgrad.gradient_estimate"):
        from stochgrad.estimate import GradientEstimate
    assert GradientEstimate is sg.GradientEstimate
    assert callable(sg.estimate)  # the import did not shadow the function


@pytest.mark.parametrize(
    ("old", "name", "new"),
    [
        ("stochgrad.estimators.pathwise", "pathwise", "stochgrad.estimators.reparameterization"),
        ("stochgrad.estimators.arm", "disarm", "stochgrad.estimators.discrete"),
        (
            "stochgrad.estimators.measure_valued",
            "register_weak_derivative",
            "stochgrad.estimators.weak_derivative",
        ),  # fmt: skip
    ],
)
def test_renamed_estimator_modules(old, name, new):
    with pytest.warns(DeprecationWarning, match=new):
        value = getattr(importlib.import_module(old), name)
    assert value is getattr(importlib.import_module(new), name)


def test_moved_modules_warn_in_a_fresh_interpreter():
    code = (
        "import warnings; warnings.simplefilter('error', DeprecationWarning)\n"
        "try:\n    import stochgrad.argtypes\nexcept DeprecationWarning as w: print('W', w)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "stochgrad.cli.argtypes" in out.stdout


def test_moved_attributes():
    with pytest.warns(DeprecationWarning, match="GENERAL_ESTIMATORS"):
        old = sg.ESTIMATORS
    assert old is sg.GENERAL_ESTIMATORS
    with pytest.warns(DeprecationWarning, match="stochgrad.studies.variance"):
        from stochgrad.studies import quadratic_variance
    assert quadratic_variance("pathwise", delta=1.0, sigma=0.5) == (1.0, 6.0)
    with pytest.raises(AttributeError):
        sg.no_such_name  # noqa: B018
