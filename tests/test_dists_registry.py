"""Registering a closed-form score and a seeded sampler for one's own Distribution class."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import Distribution, Normal, constraints

import stochgrad as sg
from stochgrad import _dists

pytestmark = pytest.mark.usefixtures("one_thread")


class Shifted(Distribution):
    """A Gumbel location family of one's own: x = loc - ln E, E ~ Exp(1),
    log p = -(x - loc) - exp(-(x - loc)), score d/dloc = 1 - exp(-(x - loc)) = 1 - E."""

    arg_constraints = {"loc": constraints.real}
    has_rsample = True

    def __init__(self, loc: torch.Tensor):
        self.loc = loc
        super().__init__(torch.Size(), torch.Size(), validate_args=False)

    def rsample(self, sample_shape=()):
        e = torch.empty(torch.Size(sample_shape), dtype=self.loc.dtype).exponential_()
        return self.loc - torch.log(e)

    def log_prob(self, x):
        return -(x - self.loc) - torch.exp(-(x - self.loc))


@pytest.fixture
def registered():
    """Register score and sampler for Shifted (counting calls), and remove them afterwards."""
    calls = {"score": 0, "sampler": 0}

    def score(d, x):
        calls["score"] += 1
        return [(d.loc, 1.0 - torch.exp(-(x - d.loc.detach())))]

    def sampler(d, n, generator):
        calls["sampler"] += 1
        e = torch.empty(n, dtype=d.loc.dtype).exponential_(generator=generator)
        return d.loc.detach() - torch.log(e)

    assert _dists.register_score(Shifted, score) is score
    assert _dists.register_sampler(Shifted, sampler) is sampler
    yield calls
    _dists.SCORES.pop(Shifted, None)
    _dists.SAMPLERS.pop(Shifted, None)


def test_the_score_function_uses_the_registered_score_and_sampler(registered) -> None:
    """Seeded replay: the sampler's draws from the generator, per sample f(x) (1 - E)."""
    loc = torch.tensor(0.5, dtype=torch.float64)
    est = sg.score_function(lambda x: x**2, Shifted, loc, num_samples=5, seed=3)
    assert registered == {"score": 1, "sampler": 1}
    e = torch.empty(5, dtype=torch.float64).exponential_(generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(est.per_sample, (0.5 - torch.log(e)) ** 2 * (1.0 - e))


def test_the_registered_score_gives_the_exact_gradient_on_average(registered) -> None:
    """d/dloc E[x^2] = 2 (loc + gamma) (Euler's gamma): within 5 standard errors (fixed seed)."""
    loc = torch.tensor(0.5, dtype=torch.float64)
    est = sg.score_function(lambda x: x**2, Shifted, loc, num_samples=200_000, seed=0)
    exact = 2.0 * (0.5 + 0.5772156649015329)
    assert abs(float(est.grad) - exact) < 5 * float(est.stderr)


def test_without_registration_the_core_falls_back_to_autograd_of_log_prob() -> None:
    """f = 1 gives the autograd score 1 - E per draw; f = x at the same draws x = loc - ln E."""
    assert Shifted not in _dists.SCORES and Shifted not in _dists.SAMPLERS
    loc = torch.tensor(0.5, dtype=torch.float64)
    one = sg.score_function(lambda x: torch.ones_like(x), Shifted, loc, num_samples=1000, seed=0)
    lin = sg.score_function(lambda x: x, Shifted, loc, num_samples=1000, seed=0)
    e = 1.0 - one.per_sample
    assert bool((e > 0).all())
    torch.testing.assert_close(lin.per_sample, (0.5 - torch.log(e)) * (1.0 - e))


def test_a_score_returning_none_falls_back_to_autograd(registered) -> None:
    _dists.register_score(Shifted, lambda d, x: None)
    loc = torch.tensor(0.5, dtype=torch.float64)
    a = sg.score_function(lambda x: x**2, Shifted, loc, num_samples=50, seed=1)
    del _dists.SCORES[Shifted]
    b = sg.score_function(lambda x: x**2, Shifted, loc, num_samples=50, seed=1)
    torch.testing.assert_close(a.per_sample, b.per_sample)


@pytest.mark.parametrize("register", [_dists.register_score, _dists.register_sampler])
def test_bad_registrations_raise(register) -> None:
    with pytest.raises(TypeError, match="dist_type must be a torch.distributions.Distribution"):
        register(int, lambda *a: None)
    with pytest.raises(TypeError, match="dist_type"):
        register(Normal(0.0, 1.0), lambda *a: None)
    with pytest.raises(TypeError, match="fn must be callable"):
        register(Shifted, "score")
