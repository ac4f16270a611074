"""Stochastic computation graphs (DiCE): exact enumeration, unbiased sampling, causality, bad input.

The reference is the expected cost written out by hand as a differentiable function of the
parameters (a sum over the support, or Gauss-Hermite quadrature for a Gaussian node); its
gradient and Hessian come from torch.autograd.functional, independently of the graph code.
Sampled checks use per-sample derivatives (each sample gets its own copy of the parameters,
``per_sample=True``), so their standard error is the sample standard deviation over sqrt(n).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch.distributions import Bernoulli, Categorical, Normal

from stochgrad.graph import StochasticGraph, TrackedTensor, magic_box

DT = torch.float64
# theta: logits of z1 ~ Categorical(3); w: logit of z2 ~ Bernoulli given z1 (one per value of z1)
X0 = torch.tensor([0.3, -0.5, 0.8, 0.2, -1.0, 0.6], dtype=DT)
A = torch.tensor([1.0, -2.0, 0.5], dtype=DT)
B = torch.tensor([[0.5, 2.0], [1.5, -1.0], [-0.7, 3.0]], dtype=DT)


pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------------------------------------
# the chain model z1 -> z2 with a cost at each level, and its exact expectation
# ---------------------------------------------------------------------------------------------
def _pick(v: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """v[z] for shared parameters [K]; row-wise v[i, z_i] for per-sample parameters [n, K]."""
    return v[z] if v.dim() == 1 else v.gather(-1, z.unsqueeze(-1)).squeeze(-1)


def chain(
    x, *, costs=("c1", "c2"), offset=0.0, offset1=0.0, baseline=None, value_baseline=False, dep=None
):
    """``model(graph)`` for parameters x = [theta (3), w (3)], shared [6] or per sample [n, 6]."""
    th, w = x[..., :3], x[..., 3:]

    def model(graph):
        z1 = graph.sample("z1", Categorical(logits=th), per_sample=True if x.dim() == 2 else None)
        wz = _pick(w, z1)
        b = baseline
        if value_baseline:  # E[c2 | z1]: computed from the ancestor only, so it is a fair baseline
            q = torch.sigmoid(wz.detach())
            b = offset + B[z1, 0] * (1 - q) + B[z1, 1] * q
        z2 = graph.sample("z2", Bernoulli(logits=wz), baseline=b)
        if "c1" in costs:
            graph.cost("c1", A[z1] + offset1 + (_pick(th, z1) - 1.0) ** 2, depends_on=dep)
        if "c2" in costs:
            graph.cost("c2", B[z1, z2.long()] + offset, depends_on=dep)

    return model


def chain_exact(x, *, costs=("c1", "c2"), offset=0.0, offset1=0.0):
    th, w = x[:3], x[3:]
    p, q = torch.softmax(th, 0), torch.sigmoid(w)
    total = torch.zeros((), dtype=x.dtype)
    if "c1" in costs:
        total = total + (p * (A + offset1 + (th - 1.0) ** 2)).sum()
    if "c2" in costs:
        total = total + (p * (q * B[:, 1] + (1 - q) * B[:, 0] + offset)).sum()
    return total


def reference(fn, x0=X0):
    x = x0.clone().requires_grad_()
    (g,) = torch.autograd.grad(fn(x), x)
    return g, torch.autograd.functional.hessian(fn, x0.clone())


def grad_hess(loss, x):
    (g,) = torch.autograd.grad(loss, x, create_graph=True)
    rows = [torch.autograd.grad(g[j], x, retain_graph=True)[0] for j in range(x.numel())]
    return g.detach(), torch.stack(rows)


def per_sample_derivs(make_model, x0, n, seed, **graph_kw):
    """Per-sample gradients [n, P] and Hessians [n, P, P] of the DiCE surrogate terms."""
    rep = x0.expand(n, -1).clone().requires_grad_()
    with StochasticGraph(n, seed=seed, **graph_kw) as graph:
        make_model(rep)(graph)
    terms = graph.surrogate(reduction="none")
    (g,) = torch.autograd.grad(terms.sum(), rep, create_graph=True)
    rows = [
        torch.autograd.grad(g[:, j].sum(), rep, retain_graph=True)[0] for j in range(g.shape[1])
    ]
    return graph, g.detach(), torch.stack(rows, dim=1)


def assert_unbiased(per_sample, exact, k=5.0):
    n = per_sample.shape[0]
    mean, se = per_sample.mean(0), per_sample.std(0) / math.sqrt(n)
    z = (mean - exact).abs() / (se + 1e-300)
    bad = (mean - exact).abs() > k * se + 1e-9
    assert not bool(bad.any()), f"mean off by more than {k} stderr: max z {float(z.max()):.2f}"


# ---------------------------------------------------------------------------------------------
# (1) exact: enumeration gives the true gradient and Hessian
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("dep", [None, "all"])
def test_enumeration_gradient_and_hessian_exact(dep):
    g_ref, h_ref = reference(chain_exact)
    x = X0.clone().requires_grad_()
    graph = StochasticGraph.enumerate(chain(x, dep=dep))
    assert graph.num_samples == 6 and float(graph.weights.sum()) == pytest.approx(1.0, abs=1e-12)
    loss = graph.surrogate()
    assert type(loss) is torch.Tensor and loss.item() == pytest.approx(chain_exact(X0).item())
    g, h = grad_hess(loss, x)
    assert type(g) is torch.Tensor
    assert (g - g_ref).abs().max() < 1e-6
    assert (h - h_ref).abs().max() < 1e-6


def test_enumeration_third_derivative_exact():
    """Infinitely differentiable: d^3/dt^3 E[c](x + t v) at t = 0 matches too."""
    v = torch.tensor([0.5, -1.0, 0.3, 1.0, 0.2, -0.7], dtype=DT)

    def third(fn):
        t = torch.zeros((), dtype=DT, requires_grad=True)
        y = fn(X0 + t * v)
        for _ in range(3):
            (y,) = torch.autograd.grad(y, t, create_graph=True)
        return y.item()

    exact = third(chain_exact)
    dice = third(lambda x: StochasticGraph.enumerate(chain(x)).surrogate())
    assert abs(dice - exact) < 1e-6 and abs(exact) > 1e-3


def test_enumeration_with_baseline_stays_exact():
    """Mao et al.'s baseline term has zero expectation at every order: exact with it as well."""
    g_ref, h_ref = reference(lambda x: chain_exact(x, offset=5.0))
    x = X0.clone().requires_grad_()
    graph = StochasticGraph.enumerate(chain(x, offset=5.0, value_baseline=True))
    g, h = grad_hess(graph.surrogate(), x)
    assert (g - g_ref).abs().max() < 1e-6 and (h - h_ref).abs().max() < 1e-6
    # an arbitrary constant baseline too
    graph = StochasticGraph.enumerate(chain(x, offset=5.0, baseline=-3.0))
    g, h = grad_hess(graph.surrogate(), x)
    assert (g - g_ref).abs().max() < 1e-6 and (h - h_ref).abs().max() < 1e-6


def test_enumeration_of_vector_nodes():
    """A node with a batch of variables enumerates their Cartesian product."""
    p = torch.tensor([0.2, 0.7, 0.4], dtype=DT, requires_grad=True)

    def model(graph):
        z = graph.sample("z", Bernoulli(probs=p))
        graph.cost("c", (z * torch.tensor([1.0, 2.0, 3.0], dtype=DT)).sum(-1) ** 2)

    graph = StochasticGraph.enumerate(model)
    assert graph.num_samples == 8
    m = torch.tensor([1.0, 2.0, 3.0], dtype=DT)

    def exact(q):  # E[(m.z)^2] = sum m_i^2 q_i + sum_{i != j} m_i m_j q_i q_j
        mean = (m * q).sum()
        return mean**2 + (m**2 * q * (1 - q)).sum()

    g, h = grad_hess(graph.surrogate(), p)
    g_ref, h_ref = reference(exact, p.detach())
    assert (g - g_ref).abs().max() < 1e-6 and (h - h_ref).abs().max() < 1e-6


# ---------------------------------------------------------------------------------------------
# (1) one seeded sample replayed against the formula; (2) many samples against the exact values
# ---------------------------------------------------------------------------------------------
def test_replay_gradient_formula():
    x = X0.clone().requires_grad_()
    with StochasticGraph(8, seed=3) as graph:
        chain(x)(graph)
    loss = graph.surrogate()
    (g,) = torch.autograd.grad(loss, x)
    z1, z2 = graph.samples["z1"], graph.samples["z2"]
    assert isinstance(z1, TrackedTensor) and z1.dtype == torch.long and z2.shape == (8,)
    th, w = X0[:3], X0[3:]
    c1 = A[z1] + (th[z1] - 1.0) ** 2
    c2 = B[z1, z2.long()]
    s1 = torch.nn.functional.one_hot(z1, 3).to(DT) - torch.softmax(th, 0)  # d log p(z1) / d theta
    s2 = torch.nn.functional.one_hot(z1, 3).to(DT) * (z2 - torch.sigmoid(w[z1])).unsqueeze(1)
    dc1 = torch.nn.functional.one_hot(z1, 3).to(DT) * (2 * (th[z1] - 1.0)).unsqueeze(1)
    per = torch.cat([(c1 + c2).unsqueeze(1) * s1 + dc1, c2.unsqueeze(1) * s2], dim=1)
    torch.testing.assert_close(g, per.mean(0), rtol=1e-12, atol=1e-12)
    assert loss.item() == pytest.approx((c1 + c2).mean().item(), abs=1e-12)
    # same seed, same draw
    with StochasticGraph(8, seed=3) as again:
        chain(x)(again)
    assert torch.equal(again.samples["z1"], z1) and torch.equal(again.samples["z2"], z2)


def test_sampled_gradient_and_hessian_unbiased():
    g_ref, h_ref = reference(chain_exact)
    graph, g, h = per_sample_derivs(chain, X0, 20_000, seed=0)
    assert graph.dependencies == {"c1": ("z1",), "c2": ("z1", "z2")}
    assert_unbiased(g, g_ref)
    assert_unbiased(h, h_ref)
    # shared parameters (the ordinary use): same tolerance, from the per-sample spread
    x = X0.clone().requires_grad_()
    with StochasticGraph(20_000, seed=1) as shared:
        chain(x)(shared)
    g_mean, h_mean = grad_hess(shared.surrogate(), x)
    se_g, se_h = g.std(0) / math.sqrt(20_000), h.std(0) / math.sqrt(20_000)
    assert bool(((g_mean - g_ref).abs() <= 5 * se_g + 1e-9).all())
    assert bool(((h_mean - h_ref).abs() <= 5 * se_h + 1e-9).all())


def test_reparameterised_and_discrete_nodes_mixed():
    """x ~ Normal(mu, s) pathwise, then z ~ Bernoulli(sigmoid(a x)) by score; cost (x-1)^2 + 3z."""
    t, wq = np.polynomial.hermite.hermgauss(60)
    t, wq = torch.as_tensor(t, dtype=DT), torch.as_tensor(wq, dtype=DT) / math.sqrt(math.pi)

    def exact(p):  # Gauss-Hermite over x
        mu, s, a = p[0], p[1].exp(), p[2]
        return (
            (mu - 1.0) ** 2
            + s**2
            + 3.0 * (wq * torch.sigmoid(a * (mu + math.sqrt(2) * s * t))).sum()
        )

    def make(rep):
        def model(graph):
            x = graph.sample("x", Normal(rep[:, 0], rep[:, 1].exp()), reparam=True, per_sample=True)
            z = graph.sample("z", Bernoulli(logits=rep[:, 2] * x))
            graph.cost("c", (x - 1.0) ** 2 + 3.0 * z)

        return model

    p0 = torch.tensor([0.3, -0.4, 1.5], dtype=DT)
    g_ref, h_ref = reference(exact, p0)
    graph, g, h = per_sample_derivs(make, p0, 20_000, seed=1)
    assert "x" not in graph.log_probs and graph.ancestors["z"] == ("x",)
    assert graph.dependencies == {"c": ("x", "z")}
    assert_unbiased(g, g_ref)
    assert_unbiased(h, h_ref)


def test_reparameterised_node_is_pathwise():
    mu = torch.tensor(0.5, dtype=DT, requires_grad=True)
    with StochasticGraph(16, seed=2) as graph:
        x = graph.sample("x", Normal(mu, 2.0), reparam=True)
        graph.cost("c", x**2)
    (g,) = torch.autograd.grad(graph.surrogate(), mu)
    xs = graph.samples["x"].detach()
    assert graph.log_probs == {} and g.item() == pytest.approx((2 * xs).mean().item(), abs=1e-12)


# ---------------------------------------------------------------------------------------------
# (2) causality and baselines: same mean, less variance
# ---------------------------------------------------------------------------------------------
def test_causality_removes_noise_without_changing_the_mean():
    n = 20_000
    g_ref, _ = reference(lambda x: chain_exact(x, offset1=5.0))
    _, g_auto, _ = per_sample_derivs(lambda r: chain(r, offset1=5.0), X0, n, seed=4)
    _, g_all, _ = per_sample_derivs(
        lambda r: chain(r, offset1=5.0), X0, n, seed=4, depends_on="all"
    )
    assert_unbiased(g_auto, g_ref)
    assert_unbiased(g_all, g_ref)
    # theta: c1's extra credit to z2 carries no theta; w: c1 credited to z2 only adds noise
    torch.testing.assert_close(g_auto[:, :3], g_all[:, :3], rtol=1e-12, atol=1e-12)
    ratio = g_auto[:, 3:].var(0) / g_all[:, 3:].var(0)
    assert bool((ratio < 0.5).all()), ratio


def test_cost_upstream_of_a_node_gets_no_score_from_it():
    _, g_auto, _ = per_sample_derivs(lambda r: chain(r, costs=("c1",)), X0, 2000, seed=5)
    _, g_all, _ = per_sample_derivs(lambda r: chain(r, costs=("c1",), dep="all"), X0, 2000, seed=5)
    assert bool((g_auto[:, 3:] == 0).all())  # exactly zero: c1 is not downstream of z2
    assert bool((g_all[:, 3:] != 0).any())  # the non-causal version only adds zero-mean noise
    assert_unbiased(g_all[:, 3:], torch.zeros(3, dtype=DT))


@pytest.mark.parametrize("kind", ["value", "loo"])
def test_baseline_lowers_variance_and_stays_unbiased(kind):
    n, offset = 20_000, 10.0
    g_ref, h_ref = reference(lambda x: chain_exact(x, offset=offset))
    kw = {"value_baseline": True} if kind == "value" else {"baseline": "loo"}
    _, g0, h0 = per_sample_derivs(lambda r: chain(r, offset=offset), X0, n, seed=6)
    _, g1, h1 = per_sample_derivs(lambda r: chain(r, offset=offset, **kw), X0, n, seed=6)
    assert_unbiased(g1, g_ref)
    assert_unbiased(h1, h_ref)
    # z2's score terms (the w block, first and second order) lose the offset's noise
    assert bool((g1[:, 3:].var(0) < 0.5 * g0[:, 3:].var(0)).all())
    assert h1[:, 3:, :].var(0).sum() < 0.5 * h0[:, 3:, :].var(0).sum()


def test_baseline_rules():
    """A Baseline object and a plain callable get the detached downstream cost per sample."""
    from stochgrad.baselines import LeaveOneOutBaseline

    seen = {}

    def rule(down):
        seen["down"] = down
        return torch.full_like(down, 2.0)

    x = X0.clone().requires_grad_()
    for spec in (LeaveOneOutBaseline(), rule):
        with StochasticGraph(50, seed=7) as graph:
            chain(x, baseline=spec)(graph)
        graph.surrogate()
    assert not seen["down"].requires_grad
    torch.testing.assert_close(seen["down"], graph.costs["c2"].detach())
    # the value is unchanged by a baseline; the w-gradient is replayed by hand for b = 2
    z1, z2 = graph.samples["z1"], graph.samples["z2"]
    (g,) = torch.autograd.grad(graph.surrogate(), x)
    s2 = (z2 - torch.sigmoid(X0[3:][z1])) * (graph.costs["c2"].detach() - 2.0)
    expect = torch.zeros(3, dtype=DT).index_add_(0, z1, s2) / 50
    torch.testing.assert_close(g[3:], expect, rtol=1e-12, atol=1e-12)


# ---------------------------------------------------------------------------------------------
# automatic dependency tracking
# ---------------------------------------------------------------------------------------------
def test_tracking_follows_torch_operations():
    p = torch.tensor(0.5, dtype=DT)
    with StochasticGraph(4, seed=0) as graph:
        a = graph.sample("a", Bernoulli(probs=p))
        b = graph.sample("b", Bernoulli(probs=p))
        c = graph.sample("c", Normal(a, 1.0))  # parameters from a: one draw per sample
        graph.cost("ab", torch.stack([a, b]).sum(0))
        graph.cost("abs_c", c.abs())
        graph.cost("const", torch.ones(4, dtype=DT))
        _ = a.shape, len(a), a.dim(), a.dtype, repr(a)  # metadata and printing are not escapes
    assert c.shape == (4,)
    assert graph.ancestors == {"a": (), "b": (), "c": ("a",)}
    assert graph.dependencies == {"ab": ("a", "b"), "abs_c": ("a", "c"), "const": ()}
    assert graph.escaped == () and repr(a).startswith("tensor(")


@pytest.mark.parametrize("how", ["python", "numpy", "if", "inplace"])
def test_values_leaving_torch_are_credited_conservatively(how):
    p = torch.tensor(0.5, dtype=DT)
    with StochasticGraph(4, seed=0) as graph:
        a = graph.sample("a", Bernoulli(probs=p))
        b = graph.sample("b", Bernoulli(probs=p))
        if how == "python":
            v = torch.tensor([float(x) for x in a])
        elif how == "numpy":
            v = np.asarray(a) * 2.0
        elif how == "if":
            v = torch.ones(4) if bool(a[0] == 1) else torch.zeros(4)
        else:
            v = torch.zeros(4, dtype=DT)
            v.copy_(a)
        graph.cost("v", v)
        graph.cost("w", b * 1.0)
    assert graph.escaped == ("a",)
    assert graph.dependencies == {"v": ("a",), "w": ("a", "b")}


def test_escaped_cost_still_exact_under_enumeration():
    """A cost computed in numpy from z1 is still credited to z1: the gradient stays exact."""
    g_ref, h_ref = reference(chain_exact)
    x = X0.clone().requires_grad_()
    a_np = A.numpy()

    def model(graph):
        th, w = x[:3], x[3:]
        z1 = graph.sample("z1", Categorical(logits=th))
        z2 = graph.sample("z2", Bernoulli(logits=w[z1]))
        idx = np.asarray(z1)
        graph.cost("c1", torch.as_tensor(a_np[idx]) + (th[torch.as_tensor(idx)] - 1.0) ** 2)
        graph.cost("c2", B[z1, z2.long()])

    graph = StochasticGraph.enumerate(model)
    assert graph.dependencies["c1"] == ("z1",)
    g, h = grad_hess(graph.surrogate(), x)
    assert (g - g_ref).abs().max() < 1e-6 and (h - h_ref).abs().max() < 1e-6


def test_explicit_depends_on():
    x = X0.clone().requires_grad_()
    with StochasticGraph(10, seed=0) as graph:
        z1 = graph.sample("z1", Categorical(logits=x[:3]))
        z2 = graph.sample("z2", Bernoulli(logits=x[3:][z1]))
        graph.cost("c", z2 * 1.0, depends_on=["z2"])  # ancestors are added
        graph.cost("d", torch.ones(10, dtype=DT), depends_on="all")
        with pytest.raises(ValueError, match=r"omits node\(s\) \['z2'\]"):
            graph.cost("e", z2 * 1.0, depends_on=["z1"])
    assert graph.dependencies == {"c": ("z1", "z2"), "d": ("z1", "z2")}
    assert graph.depends(z2 + z1) == ("z1", "z2")


def test_magic_box_value_and_derivatives():
    tau = torch.tensor([0.3, -1.2], dtype=DT, requires_grad=True)
    box = magic_box(tau * 2.0)
    assert torch.equal(box.detach(), torch.ones(2, dtype=DT))
    (g,) = torch.autograd.grad(box.sum(), tau, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), tau)
    torch.testing.assert_close(g.detach(), torch.full((2,), 2.0, dtype=DT))
    torch.testing.assert_close(h, torch.full((2,), 4.0, dtype=DT))


# ---------------------------------------------------------------------------------------------
# (3) bad input
# ---------------------------------------------------------------------------------------------
def test_cost_with_wrong_shape():
    with StochasticGraph(5, seed=0) as graph:
        z = graph.sample("z", Bernoulli(probs=torch.tensor(0.5)))
        with pytest.raises(ValueError, match=r"shape \[5\]; got shape \[5, 1\]"):
            graph.cost("c", z.unsqueeze(1))
        with pytest.raises(ValueError, match="do not reduce"):
            graph.cost("c", z.mean())
        with pytest.raises(ValueError, match=r"got shape \[4\]"):
            graph.cost("c", torch.ones(4))
        with pytest.raises(ValueError, match="value must be finite"):
            graph.cost("c", z / 0.0 - z / 0.0)
        with pytest.raises(TypeError, match="must be a tensor"):
            graph.cost("c", object())


def test_sampling_outside_the_context():
    graph = StochasticGraph(3)
    d = Bernoulli(probs=torch.tensor(0.5))
    with pytest.raises(RuntimeError, match="inside `with StochasticGraph"):
        graph.sample("z", d)
    with graph:
        graph.sample("z", d)
    with pytest.raises(RuntimeError, match="finished"):
        graph.sample("y", d)
    with pytest.raises(RuntimeError, match="finished"):
        graph.cost("c", torch.ones(3))
    with pytest.raises(RuntimeError, match="records once"), graph:
        pass
    with pytest.raises(ValueError, match="no costs recorded"):
        graph.surrogate()


def test_unknown_depends_on_name():
    with StochasticGraph(3) as graph:
        graph.sample("z", Bernoulli(probs=torch.tensor(0.5)))
        with pytest.raises(ValueError, match=r"unknown node\(s\) \['nope'\]"):
            graph.cost("c", torch.ones(3), depends_on=["nope"])
        with pytest.raises(ValueError, match="'auto', 'all' or a list"):
            graph.cost("c", torch.ones(3), depends_on="z")
        with pytest.raises(TypeError, match="'auto', 'all' or a list"):
            graph.cost("c", torch.ones(3), depends_on=3)
    with pytest.raises(ValueError, match="'auto' or 'all'"):
        StochasticGraph(3, depends_on="some")


def test_non_distribution_and_bad_nodes():
    with StochasticGraph(3, seed=0) as graph:
        with pytest.raises(TypeError, match="must be a torch.distributions.Distribution"):
            graph.sample("z", torch.tensor(0.5))
        with pytest.raises(TypeError, match="non-empty string"):
            graph.sample("", Bernoulli(probs=torch.tensor(0.5)))
        with pytest.raises(ValueError, match="needs a distribution with rsample"):
            graph.sample("z", Bernoulli(probs=torch.tensor(0.5)), reparam=True)
        z = graph.sample("z", Bernoulli(probs=torch.tensor(0.5)))
        with pytest.raises(ValueError, match="already used"):
            graph.sample("z", Bernoulli(probs=torch.tensor(0.5)))
        with pytest.raises(ValueError, match=r"batch_shape must start with num_samples=3"):
            graph.sample("y", Bernoulli(probs=z[0] * 0.5 + 0.2))
        with pytest.raises(ValueError, match="per_sample=False"):
            graph.sample("y", Bernoulli(probs=z * 0.5 + 0.2), per_sample=False)
        with pytest.raises(ValueError, match="uses each sample's own cost"):
            graph.sample("y", Bernoulli(probs=torch.tensor(0.5)), baseline="mean")
        with pytest.raises(ValueError, match=r"shape \[\] or \[3\]"):
            graph.sample("y", Bernoulli(probs=torch.tensor(0.5)), baseline=torch.ones(2))
        with pytest.raises(ValueError, match="no score term"):
            graph.sample("y", Normal(0.0, 1.0), reparam=True, baseline=1.0)
        with pytest.raises(ValueError, match="must satisfy"):
            graph.sample("y", Bernoulli(probs=torch.tensor(1.5), validate_args=False))
    with StochasticGraph(3) as other, pytest.raises(ValueError, match="another StochasticGraph"):
        other.cost("c", z * 1.0)
    with pytest.raises(ValueError, match="needs num_samples >= 2"), StochasticGraph(1) as g1:
        g1.sample("y", Bernoulli(probs=torch.tensor(0.5)), baseline="loo")
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        StochasticGraph(0)


def test_enumeration_refuses_what_it_cannot_enumerate():
    def continuous(graph):
        graph.sample("x", Normal(torch.tensor(0.0), 1.0))

    with pytest.raises(ValueError, match="finite support"):
        StochasticGraph.enumerate(continuous)

    def big(graph):
        graph.sample("z", Bernoulli(probs=torch.full((30,), 0.5)))

    with pytest.raises(ValueError, match="more than max_configurations"):
        StochasticGraph.enumerate(big)

    calls = []

    def changing(graph):  # a second node appears only on the second run
        calls.append(1)
        graph.sample("a", Bernoulli(probs=torch.tensor(0.5)))
        if len(calls) > 1:
            graph.sample("b", Bernoulli(probs=torch.tensor(0.5)))

    with pytest.raises(ValueError, match="structure changed"):
        StochasticGraph.enumerate(changing)
