"""The binary-latent VAE on scikit-learn's digits (the app): data, exact bounds, training."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch.distributions import Bernoulli

from stochgrad.apps import datasets
from stochgrad.apps import discrete_vae as DV

pytestmark = pytest.mark.usefixtures("one_thread")

DT = torch.float64


@pytest.fixture(scope="module")
def data():
    return DV.load_binary_digits()


@pytest.fixture(scope="module")
def tiny(data):
    """A K = 8 model (2^8 = 256 latent states) whose q is far from its posterior.

    Weights scaled up from the default initialisation: the decoder depends strongly on z (a
    sharp posterior) and q is not uniform, so the bounds differ by about half a nat per digit.
    """
    train, test = (t.to(DT) for t in data)
    model = DV.BinaryVAE(8, 16, seed=3, pixel_mean=train.mean(0)).to(DT)
    with torch.no_grad():
        model.decoder[0].weight.mul_(6.0)
        model.encoder[0].weight.mul_(3.0)
    return model, test[:12]


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------
def test_data_shapes_and_binarisation(data):
    train, test = data
    assert train.shape == (1437, 64) and test.shape == (360, 64)
    assert train.dtype == torch.float32
    assert set(torch.cat([train, test]).unique().tolist()) == {0.0, 1.0}
    raw = load_digits().data
    # the split is a permutation of all 1797 binarised digits: same rows, same multiset
    both = np.concatenate([train.numpy(), test.numpy()]).astype(int)
    expected = (raw > 8).astype(int)
    key = lambda a: sorted(map(bytes, a.astype(np.uint8)))  # noqa: E731
    assert key(both) == key(expected)
    assert both.sum() == expected.sum()
    # 8 of 16 is off, 9 is on
    assert (raw == 8).any() and (raw == 9).any()


def test_split_is_fixed_and_seeded(data):
    again = DV.load_binary_digits()
    assert torch.equal(again[0], data[0]) and torch.equal(again[1], data[1])
    other = DV.load_binary_digits(seed=1)
    assert not torch.equal(other[1], data[1])
    train, test = DV.load_binary_digits(test_size=100, dtype=DT)
    assert train.shape == (1697, 64) and test.shape == (100, 64) and test.dtype == DT
    # the one digits loader of the library, in float32 by default here
    shared = datasets.load_binary_digits(dtype=torch.float32)
    assert torch.equal(shared[0], data[0]) and torch.equal(shared[1], data[1])


@pytest.mark.parametrize("size", [0, 1797, 5000])
def test_bad_test_size_raises(size):
    with pytest.raises(ValueError, match="test_size"):
        DV.load_binary_digits(test_size=size)


# ---------------------------------------------------------------------------------------------
# exact enumeration (K = 8): ELBO, IWAE bound, log p(x)
# ---------------------------------------------------------------------------------------------
def test_log_joint_matches_torch_distributions(tiny):
    model, x = tiny
    z = DV.latent_states(8, DT)[[0, 37, 255]].unsqueeze(1)  # [3, 1, 8]
    with torch.no_grad():
        dec = model.decoder(z)
        ref = Bernoulli(logits=dec).log_prob(x).sum(-1) + Bernoulli(
            logits=model.prior_logits
        ).log_prob(z).sum(-1)
        q = model.encode(x)
        ref_f = ref - Bernoulli(logits=q).log_prob(z).sum(-1)
        assert torch.allclose(model.log_joint(x, z), ref, atol=1e-10)
        assert torch.allclose(model.elbo_terms(x, z, q), ref_f, atol=1e-10)


def test_latent_states_enumerate_all():
    s = DV.latent_states(8)
    assert s.shape == (256, 8)
    assert len({tuple(r) for r in s.int().tolist()}) == 256
    with pytest.raises(ValueError, match="latents"):
        DV.latent_states(DV.MAX_ENUMERATION_LATENTS + 1)


def test_exact_log_likelihood_by_brute_force(tiny):
    model, x = tiny
    states = DV.latent_states(8, DT)
    with torch.no_grad():
        p = torch.zeros(x.shape[0], dtype=DT)
        for z in states:  # the slow, obvious way: p(x) = sum_z p(x|z) p(z)
            px_z = Bernoulli(logits=model.decoder(z)).log_prob(x).sum(-1).exp()
            pz = Bernoulli(logits=model.prior_logits).log_prob(z).sum().exp()
            p += px_z * pz
    assert torch.allclose(DV.exact_log_likelihood(model, x), p.log(), atol=1e-9)


def test_monte_carlo_elbo_matches_enumeration(tiny):
    model, x = tiny
    exact = DV.exact_elbo(model, x).detach()
    f = DV.elbo_samples(model, x, 20_000, torch.Generator().manual_seed(1))  # [n, B]
    mean, se = f.mean(0), f.std(0) / math.sqrt(f.shape[0])
    assert bool(((mean - exact).abs() < 5 * se).all()), (mean - exact) / se
    total_se = f.sum(1).std() / math.sqrt(f.shape[0])
    assert abs(float(f.sum(1).mean() - exact.sum())) < 5 * float(total_se)


def test_iwae_between_elbo_and_log_likelihood(tiny):
    model, x = tiny
    elbo = DV.exact_elbo(model, x).detach()
    logp = DV.exact_log_likelihood(model, x)
    assert bool((logp >= elbo).all())
    g = torch.Generator().manual_seed(2)
    reps = torch.stack([DV.iwae_bound(model, x, 100, g) for _ in range(50)])  # [R, B]
    mean, se = reps.mean(0), reps.std(0) / math.sqrt(reps.shape[0])
    # E[L_100] <= log p(x): Jensen; a few standard errors of slack for the estimate
    assert bool((mean <= logp + 5 * se + 1e-9).all())
    # E[L_100] >= ELBO, and here by much more than the noise (q is far from the posterior)
    assert float((logp - elbo).sum()) > 5.0
    assert bool((mean >= elbo - 5 * se).all())
    assert float(mean.sum() - elbo.sum()) > 5 * float(se.square().sum().sqrt())
    # the bound tightens towards log p(x) with k
    big = DV.iwae_bound(model, x, 20_000, g)
    assert float((logp - big).abs().max()) < 0.05
    with pytest.raises(ValueError, match="k must be"):
        DV.iwae_bound(model, x, 0, g)


@pytest.mark.parametrize("key", ["reinforce", "rloo", "disarm", "rebar"])
def test_encoder_gradient_is_unbiased(tiny, key):
    """Each estimator's encoder-logit gradient against autograd of the enumerated ELBO."""
    model, x = tiny
    x = x[:4]
    logits = model.encode(x).detach().requires_grad_(True)
    exact = torch.autograd.grad(DV.exact_elbo(model, x, logits).sum(), logits)[0]
    spec = DV.VAE_ESTIMATORS[key]
    config = DV.Config(samples=6 * 4000)
    est = DV.encoder_gradient(
        model, x, logits.detach(), spec, config, torch.Generator().manual_seed(4)
    )
    assert est.grad.shape == (4, 8) and not est.biased
    z = (est.grad - exact) / est.stderr
    assert float(z.abs().max()) < 5, z
    # one datapoint's estimate uses its own f only (batch_dims=1): rows are not all alike
    assert est.info.get("batch_dims") == 1


def test_gumbel_softmax_is_flagged_biased(tiny):
    model, x = tiny
    logits = model.encode(x).detach()
    est = DV.encoder_gradient(
        model, x, logits, DV.VAE_ESTIMATORS["gumbel"], DV.Config(samples=6),
        torch.Generator().manual_seed(0),
    )  # fmt: skip
    assert est.biased and est.grad.shape == logits.shape


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("key", list(DV.VAE_ESTIMATORS))
def test_one_step_changes_encoder_decoder_and_prior(data, key):
    train, _ = data
    config = DV.Config(samples=6, latents=8, hidden=16)
    model = DV.BinaryVAE(8, 16, seed=0, pixel_mean=train.mean(0))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    elbo = DV.train_step(
        model, opt, train[:32], DV.VAE_ESTIMATORS[key], config, torch.Generator().manual_seed(0)
    )
    assert math.isfinite(elbo) and elbo < 0
    after = model.state_dict()
    for name in ("encoder.0.weight", "encoder.2.weight", "decoder.0.weight", "decoder.2.bias",
                 "prior_logits"):  # fmt: skip
        assert not torch.equal(before[name], after[name]), name


def test_encoder_receives_minus_the_estimate(data):
    """The encoder's parameter gradient is the chain rule of -grad / B through e(x)."""
    train, _ = data
    x = train[:16]
    config = DV.Config(samples=4, latents=8, hidden=0)
    spec = DV.VAE_ESTIMATORS["rloo"]
    model = DV.BinaryVAE(8, 0, seed=0)
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # a zero step keeps the gradients
    DV.train_step(model, opt, x, spec, config, torch.Generator().manual_seed(5))
    est = DV.encoder_gradient(
        model, x, model.encode(x).detach(), spec, config, torch.Generator().manual_seed(5)
    )
    w_grad = -(est.grad / 16).T @ x  # d(logits)/dW for a linear encoder
    assert torch.allclose(model.encoder[0].weight.grad, w_grad, atol=1e-5)


def test_budget_rule():
    assert [DV.VAE_ESTIMATORS[k].num_samples(12) for k in DV.VAE_ESTIMATORS] == [12, 12, 6, 4, 12]
    DV.check_budget(list(DV.VAE_ESTIMATORS), 6)
    for bad, match in ((4, "divisible by 3"), (3, "divisible by 2"), (1, "RLOO needs at least 2")):
        with pytest.raises(ValueError, match=match):
            DV.check_budget(list(DV.VAE_ESTIMATORS), bad)
    with pytest.raises(ValueError, match="at least 2"):
        DV.check_budget(["rloo"], 1)
    with pytest.raises(ValueError, match="unknown"):
        DV.check_budget(["relax"], 6)


@pytest.mark.parametrize(
    "kwargs",
    [{"steps": 0}, {"samples": 0}, {"hidden": -1}, {"lr": 0.0}, {"lr": float("nan")},
     {"probe_calls": 1}, {"temperature": -1.0}, {"eta": float("inf")}],
)  # fmt: skip
def test_bad_config_raises(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        DV.Config(**kwargs)


@pytest.mark.parametrize("kwargs", [{"batch_size": 2.5}, {"steps": True}, {"lr": "0.1"}])
def test_config_of_the_wrong_type_raises(kwargs):
    with pytest.raises(TypeError, match=next(iter(kwargs))):
        DV.Config(**kwargs)


def test_bad_model_raises():
    with pytest.raises(ValueError, match="latents"):
        DV.BinaryVAE(0)
    with pytest.raises(ValueError, match="hidden"):
        DV.BinaryVAE(4, -2)


# ---------------------------------------------------------------------------------------------
# names that moved to the study, or were renamed
# ---------------------------------------------------------------------------------------------
def test_moved_names_still_work_with_a_warning():
    from stochgrad.studies import discrete_vae as study

    with pytest.warns(DeprecationWarning, match="VAE_ESTIMATORS"):
        assert DV.ESTIMATORS is DV.VAE_ESTIMATORS
    for name in ("run_study", "run_one", "Study", "RunResult", "Checkpoint", "summarise",
                 "SummaryRow", "paired_differences", "stream", "STREAMS"):  # fmt: skip
        with pytest.warns(DeprecationWarning, match=f"stochgrad.studies.discrete_vae.{name}"):
            assert getattr(DV, name) is getattr(study, name)
    with pytest.raises(AttributeError):
        DV.plot  # noqa: B018 - the plot is the command line's now
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        from stochgrad.apps.discrete_vae import BinaryVAE, load_binary_digits  # noqa: F401
