"""The estimators with parameters on a GPU (skipped without CUDA).

Random numbers are drawn on the generator's device, so a CPU generator gives the same samples
whether the parameters live on the CPU or on the GPU: the estimates then agree to
floating-point rounding. ``seed=`` makes its generator on the parameters' device (fast, and
reproducible on that device), and no generator draws there too. Distributions without a
sampler of the library's own (here the multivariate normal) draw from torch's global
generator of their device, seeded from the generator: reproducible on each device, but not
the same numbers on both.
"""

from __future__ import annotations

import pytest
import torch

import stochgrad as sg

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

D = torch.distributions
F64 = torch.float64


def _normal(th):
    return D.Normal(th[0], th[1])


def _bern(lg):
    return D.Independent(D.Bernoulli(logits=lg), 1)


def _pois(r):
    return D.Independent(D.Poisson(r), 1)


def _cat(lg):
    return D.Categorical(logits=lg)


def _mvn(m):
    return D.MultivariateNormal(m, torch.eye(2, dtype=m.dtype, device=m.device))


CASES = {
    "score normal": (sg.score_function, lambda x: (x - 1.0) ** 2, _normal, [0.3, 0.8], {"baseline": "loo"}),
    "score delta": (sg.score_function, torch.sin, _normal, [0.3, 0.8], {"control_variate": "delta"}),
    "score bernoulli": (sg.score_function, lambda z: (z.sum(-1) - 1.0) ** 2, _bern, [0.0, 0.5, -0.5], {}),
    "score poisson": (sg.score_function, lambda x: x.sum(-1) ** 2, _pois, [2.0, 3.0], {}),
    "score categorical": (sg.score_function, lambda k: (k.to(F64) - 1.0) ** 2, _cat, [0.0, 0.3, -0.2], {}),
    "score mvn": (sg.score_function, lambda x: (x**2).sum(-1), _mvn, [0.1, -0.2], {}),  # torch's sampler
    "pathwise normal": (sg.pathwise, lambda x: (x - 1.0) ** 2, _normal, [0.3, 0.8], {}),
    "pathwise mvn": (sg.pathwise, lambda x: (x**2).sum(-1), _mvn, [0.1, -0.2], {}),  # torch's sampler
    "measure-valued normal": (sg.measure_valued, lambda x: (x - 1.0) ** 2, _normal, [0.3, 0.8], {}),
    "measure-valued poisson": (sg.measure_valued, lambda x: x.sum(-1) ** 2, _pois, [2.0, 3.0], {}),
    "arm": (sg.arm, lambda z: (z.sum(-1) - 1.0) ** 2, _bern, [0.0, 0.5, -0.5], {}),
    "disarm": (sg.disarm, lambda z: (z.sum(-1) - 1.0) ** 2, _bern, [0.0, 0.5, -0.5], {}),
    "rloo": (sg.rloo, lambda z: (z.sum(-1) - 1.0) ** 2, _bern, [0.0, 0.5, -0.5], {}),
}  # fmt: skip


@pytest.mark.parametrize("name", list(CASES))
def test_cpu_generator_gives_the_same_estimate_on_cpu_and_gpu(name):
    fn, f, dist_fn, values, kw = CASES[name]

    def cpu_gen():
        return torch.Generator().manual_seed(0)

    cpu = fn(
        f, dist_fn, torch.tensor(values, dtype=F64), num_samples=500, generator=cpu_gen(), **kw
    )
    gpu_params = torch.tensor(values, dtype=F64, device="cuda")
    gpu = fn(f, dist_fn, gpu_params, num_samples=500, generator=cpu_gen(), **kw)
    assert gpu.grad.device.type == "cuda"
    if "mvn" in name:  # torch's own sampler: reproducible per device
        assert (gpu.grad.cpu() - cpu.grad).abs().max() < 5 * cpu.stderr.max()
    else:
        torch.testing.assert_close(gpu.grad.cpu(), cpu.grad, rtol=1e-6, atol=1e-9)
    # seed= draws on the GPU and repeats itself; so does an explicit CUDA generator
    a = fn(f, dist_fn, gpu_params, num_samples=500, seed=0, **kw)
    b = fn(f, dist_fn, gpu_params, num_samples=500, seed=0, **kw)
    assert a.grad.is_cuda and torch.equal(a.grad, b.grad)
    gen = torch.Generator(device="cuda").manual_seed(0)
    c = fn(f, dist_fn, gpu_params, num_samples=500, generator=gen, **kw)
    torch.testing.assert_close(c.grad, a.grad, rtol=0, atol=0)
    assert fn(f, dist_fn, gpu_params, num_samples=500, **kw).grad.is_cuda


def test_auto_and_exact_on_gpu():
    th = torch.tensor([0.3, 0.8], dtype=F64, device="cuda")
    est = sg.estimate(lambda x: (x - 1.0) ** 2, _normal, th, num_samples=500, seed=0)
    assert est.grad.is_cuda
    lg = torch.tensor([0.0, 0.5, -0.5], dtype=F64)
    f = lambda z: (z.sum(-1) - 1.0) ** 2  # noqa: E731
    exact_gpu = sg.exact_gradient(f, _bern, lg.cuda())
    assert exact_gpu.is_cuda
    torch.testing.assert_close(
        exact_gpu.cpu(), sg.exact_gradient(f, _bern, lg), rtol=1e-12, atol=1e-14
    )
    # quadrature: d/dmu E[(x-1)^2] = 2 (mu - 1), d/dsigma = 2 sigma
    q = sg.exact_gradient(lambda x: (x - 1.0) ** 2, _normal, th)
    assert q.is_cuda
    torch.testing.assert_close(q.cpu(), torch.tensor([2 * (0.3 - 1.0), 1.6], dtype=F64))
