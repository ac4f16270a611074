"""The shared argument checks: TypeError for a wrong type, ValueError for a wrong value, the
argument named in both."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from stochgrad._checks import (
    check_callable,
    check_choice,
    check_float,
    check_int,
    check_numpy_generator,
    check_probability,
    check_seed,
    check_torch_generator,
)


def test_check_int():
    assert check_int("n", np.int64(3), minimum=1) == 3
    assert type(check_int("n", np.int64(3))) is int
    for bad in (True, 2.0, "3", None):
        with pytest.raises(TypeError, match="^n must be an int"):
            check_int("n", bad)
    with pytest.raises(ValueError, match="n must be >= 1, got 0"):
        check_int("n", 0, minimum=1)
    with pytest.raises(ValueError, match="n must be <= 5, got 6"):
        check_int("n", 6, maximum=5)


def test_check_float():
    assert check_float("lr", 1) == 1.0
    assert check_float("lr", torch.tensor(0.5)) == 0.5
    for bad in (True, "0.1", None, [1.0]):
        with pytest.raises(TypeError, match="^lr must be a real number"):
            check_float("lr", bad)
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="lr must be finite"):
            check_float("lr", bad)
    with pytest.raises(ValueError, match="lr must be > 0"):
        check_float("lr", 0.0, minimum=0.0, open_min=True)
    assert check_float("lr", 0.0, minimum=0.0) == 0.0
    with pytest.raises(ValueError, match="lr must be < 1"):
        check_float("lr", 1.0, maximum=1.0, open_max=True)


def test_check_probability_choice_callable_seed():
    assert check_probability("p", 1.0) == 1.0
    with pytest.raises(ValueError, match="p must be > 0"):
        check_probability("p", 0.0, open_low=True)
    assert check_choice("method", "em", ["em", "gradient"]) == "em"
    with pytest.raises(ValueError, match=r"method must be one of \['em', 'gradient'\]"):
        check_choice("method", "EM", ["em", "gradient"])
    with pytest.raises(TypeError, match="method must be one of"):
        check_choice("method", 1, ["em"])
    assert check_callable("f", len) is len
    with pytest.raises(TypeError, match="f must be callable, got int"):
        check_callable("f", 3)
    assert check_seed("seed", 2**63 - 1) == 2**63 - 1
    with pytest.raises(ValueError, match="seed must be <= "):
        check_seed("seed", 2**70)
    with pytest.raises(ValueError, match="seed must be >= 0"):
        check_seed("seed", -1)


def test_generators():
    g = torch.Generator()
    assert check_torch_generator(g) is g
    with pytest.raises(TypeError, match="generator must be a torch.Generator"):
        check_torch_generator(np.random.default_rng(0))
    r = np.random.default_rng(0)
    assert check_numpy_generator(r) is r
    with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
        check_numpy_generator(g, "rng")
