"""Every ``>>>`` example in the package runs and prints what it says."""

import doctest
import importlib
import pkgutil

import pytest

import stochgrad

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(stochgrad.__path__, prefix="stochgrad.")
    if not m.name.startswith("stochgrad.cli")
)


@pytest.mark.parametrize("name", MODULES)
def test_module_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} doctest failure(s) in {name}"
